"""Build the macro-enabled template ``workbook/crm_xl.xlsm`` from text sources, deterministically.

Three steps, each chosen because it works on Linux without Excel:

1. **VBA project** (:func:`build_vba_project`): pyopenvba adds a VBA project to an XlsxWriter
   skeleton that has the same sheets (so the document modules ThisWorkbook, Sheet1..SheetN match
   the final workbook), then our modules are added from text: the xlwings standalone module and its
   Dictionary class from the *installed* xlwings package (the module names its DLL by version, so it
   must match the xlwings the user runs) and every ``.bas``/``.cls`` file of ``workbook/vba``.
2. **Workbook** (:func:`build_xlsx`): XlsxWriter writes sheets, tables, formats, validation,
   conditional formats, charts and the Refresh button, and embeds the VBA project.
3. **PivotTables** (:func:`add_pivots`): XlsxWriter cannot write them, so hand-written pivot parts
   (cache source = the output table's name, ``refreshOnLoad``, no saved records) are added at zip
   level; Excel and LibreOffice rebuild them from the tables when the file is opened.

Determinism: pyopenvba writes the same project for the same sources; XlsxWriter is given a fixed
creation date; the final zip is written with fixed timestamps and a fixed part order. Same sources
and library versions give the same bytes.
"""

from __future__ import annotations

import datetime as dt
import io
import math
import re
import tempfile
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

import pandas as pd

from crm_xl.contract import MIGRATION_SCOPES
from crm_xl.io.files import replace_atomically
from crm_xl.workbook import layout as L
from crm_xl.workbook.sheetxml import column_letter

VBA_DIR = Path(__file__).resolve().parents[2] / "workbook" / "vba"
DEFAULT_OUT = Path("workbook") / "crm_xl.xlsm"
#: Fixed document dates: a build must not depend on the clock.
FIXED_CREATED = dt.datetime(2025, 1, 1)
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)
_MAX_ROW = 1_048_575          # last row index of a sheet (0-based)

# ---------------------------------------------------------------------------------------------------
# VBA
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VbaModule:
    """One VBA module from text: its name, its source (CRLF) and whether it is a class module."""

    name: str
    source: str
    is_class: bool = False


def vba_text(path: Path) -> str:
    """A VBA source file as VBA stores it: cp1252 text with CRLF line ends.

    Read as bytes on purpose: ``Path.read_text`` and git may turn CRLF into LF, and the same
    module must give the same project whichever line ends the checkout has.
    """
    text = path.read_bytes().decode("cp1252")
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "\r\n")


def xlwings_dir() -> Path:
    import xlwings

    return Path(xlwings.__file__).parent


def vba_modules(vba_dir: Path = VBA_DIR) -> list[VbaModule]:
    """The project's modules: xlwings and Dictionary from the installed xlwings, then every
    ``.bas`` (standard) and ``.cls`` (class) file of ``vba_dir`` in name order."""
    modules = [VbaModule("xlwings", vba_text(xlwings_dir() / "xlwings.bas")),
               VbaModule("Dictionary", vba_text(xlwings_dir() / "addin" / "Dictionary.cls"), is_class=True)]
    for path in sorted(Path(vba_dir).iterdir()):
        if path.suffix.lower() in (".bas", ".cls"):
            source = vba_text(path)
            declared = re.search(r'^Attribute VB_Name = "([^"]+)"', source, re.MULTILINE)
            if declared and declared.group(1) != path.stem:
                raise ValueError(f"{path}: Attribute VB_Name is {declared.group(1)!r}, expected {path.stem!r}")
            modules.append(VbaModule(path.stem, source, is_class=path.suffix.lower() == ".cls"))
    return modules


def build_vba_project(modules: Iterable[VbaModule], sheets: Iterable[str] = L.SHEETS) -> bytes:
    """``vbaProject.bin`` with a document module per sheet plus ``modules``.

    pyopenvba works on files, so it gets a throwaway XlsxWriter skeleton with the same sheets: its
    ``add_vba_project`` then creates ThisWorkbook and Sheet1..SheetN, the code names the final
    workbook declares with ``set_vba_name``.
    """
    import xlsxwriter
    from pyopenvba import ExcelFile, VBAModuleKind

    with tempfile.TemporaryDirectory(prefix="crm_xl_vba_") as tmp:
        skeleton = Path(tmp) / "skeleton.xlsm"
        book = xlsxwriter.Workbook(str(skeleton))
        book.set_properties({"created": FIXED_CREATED})
        for sheet in sheets:
            book.add_worksheet(sheet)
        book.close()
        with ExcelFile(skeleton) as excel:
            project = excel.add_vba_project()
            for module in modules:
                kind = VBAModuleKind.other if module.is_class else VBAModuleKind.standard
                project.add_module(module.name, module.source, kind=kind)
            excel.save()
        with ExcelFile(skeleton) as excel:
            return _compile_from_source(excel.vba_project_bytes())


#: [MS-OVBA] 2.3.4.1: Reserved1 0x61CC, Version 0xFFFF, Reserved2 0x00, Reserved3 0x0000 and no
#: performance cache. Version 0xFFFF tells every Office build that the cache is not its own, so it
#: compiles the modules from their source on open (what LibreOffice and xlwings' own workbook
#: write); pyopenvba's 0x00B5 with a zeroed cache claims to be Office 2010's compiled code.
_VBA_PROJECT_STREAM = bytes.fromhex("CC61FFFF000000")


def _compile_from_source(project: bytes) -> bytes:
    """``vbaProject.bin`` with its ``_VBA_PROJECT`` stream set to :data:`_VBA_PROJECT_STREAM`."""
    from pyopenvba.cfb import CFB

    cfb = CFB.from_bytes(project)
    cfb.write_stream_in_storage("VBA", "_VBA_PROJECT", _VBA_PROJECT_STREAM)
    return cfb.to_bytes()


# ---------------------------------------------------------------------------------------------------
# Workbook
# ---------------------------------------------------------------------------------------------------


class _Formats:
    """XlsxWriter formats, created once per workbook (each add_format adds a style record)."""

    def __init__(self, book: Any) -> None:
        self.book = book
        self.title = book.add_format({"bold": True, "font_size": 16, "font_color": "#1F3864"})
        self.subtitle = book.add_format({"bold": True, "font_size": 12, "font_color": "#1F3864"})
        self.note = book.add_format({"italic": True, "font_color": "#595959"})
        self.wrap = book.add_format({"text_wrap": True, "valign": "top"})
        # a conditional format (dxf) only: whole numbers of a decimal column without ".00"
        self.whole = book.add_format({"num_format": L.NUMBER_FORMATS["integer"]})
        self.header = book.add_format({"bold": True, "bottom": 1})
        self.change = book.add_format({"num_format": "+0.0%;-0.0%;0.0%"})
        self.arrow = book.add_format({"align": "center", "bold": True})
        self.heat = book.add_format({"num_format": "0.0%;-0.0%;", "border": 1, "border_color": "#D9D9D9"})
        self._font: dict[str, Any] = {}
        # the heat maps' and grids' headers (the RFM grid, the cohort triangle)
        self.grid_header = book.add_format({"bold": True, "align": "center", "bg_color": "#D9E1F2"})
        self._number: dict[str, Any] = {}
        self._fill: dict[str, Any] = {}

    def number(self, column_type: str) -> Any:
        if column_type not in self._number:
            self._number[column_type] = self.book.add_format({"num_format": L.NUMBER_FORMATS[column_type]})
        return self._number[column_type]

    def font(self, colour: str) -> Any:
        if colour not in self._font:
            self._font[colour] = self.book.add_format({"font_color": colour})
        return self._font[colour]

    def fill(self, colour: str) -> Any:
        if colour not in self._fill:
            self._fill[colour] = self.book.add_format({"bg_color": colour})
        return self._fill[colour]


def _cell(value: Any) -> Any:
    """A pandas value as XlsxWriter writes it: blanks as None, timestamps as datetimes."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    if hasattr(value, "item"):          # numpy scalars
        return value.item()
    return value


def _rows(frame: pd.DataFrame | None, width: int) -> list[list[Any]]:
    """Table body rows; an empty table gets one blank row (an Excel table needs a data row)."""
    if frame is None or frame.empty:
        return [[None] * width]
    return [[_cell(v) for v in row] for row in frame.astype(object).itertuples(index=False, name=None)]


#: Narrowest width per column type: wide enough for 10,000,000 and 10,000,000.00 (Excel shows #####
#: for a number wider than its column).
_MIN_WIDTHS = {"integer": 12, "decimal": 15, "share": 9}


def _width(column: L.Column) -> float:
    fixed = L.WIDE_COLUMNS.get(column.name) or {"date": 12, "month": 10, "datetime": 19}.get(column.type)
    if fixed is not None:
        return fixed
    return max(_MIN_WIDTHS.get(column.type, 10), min(len(column.name) + 3, 40))


def write_table(ws: Any, fmt: _Formats, table: L.Table, frame: pd.DataFrame | None = None,
                style: str = "Table Style Medium 2", column_formats: bool = True) -> int:
    """An Excel table at its layout position, typed by column; returns its last row index.

    With ``column_formats`` each column also gets its number format as the column style, so rows
    typed or pasted below the table later are formatted like the table (only on sheets where a
    column belongs to one table).
    """
    rows = _rows(None if frame is None else frame[table.headers], len(table.columns))
    last_row = table.row + len(rows)
    ws.add_table(table.row, table.col, last_row, table.last_col, {
        "name": table.name, "style": style,
        "columns": [{"header": c.name, "format": fmt.number(c.type)} for c in table.columns],
        "data": rows,
    })
    for j, column in enumerate(table.columns):
        ws.set_column(table.col + j, table.col + j, _width(column), fmt.number(column.type) if column_formats else None)
    return last_row


def _label_formats(ws: Any, fmt: _Formats, table: L.Table) -> None:
    """One fill per label value on tier / state / segment columns (and their previous-month twins)."""
    for j, column in enumerate(table.columns):
        colours = L.label_colours(column.name)
        if not colours:
            continue
        col = table.col + j
        for label, colour in colours.items():
            ws.conditional_format(table.row + 1, col, _MAX_ROW, col, {
                "type": "cell", "criteria": "==", "value": '"' + label.replace('"', '""') + '"',
                "format": fmt.fill(colour)})


def _whole_units(ws: Any, fmt: _Formats, table: L.Table) -> None:
    """Units read 1,240, not 1,240.00: measure columns show decimals only where a value has them."""
    for j, column in enumerate(table.columns):
        if column.name in L.WHOLE_WHEN_WHOLE:
            col = table.col + j
            top = f"{column_letter(col)}{table.row + 2}"
            ws.conditional_format(table.row + 1, col, _MAX_ROW, col, {
                "type": "formula", "criteria": f"=AND(ISNUMBER({top}),MOD({top},1)=0)", "format": fmt.whole})


def _data_sheet(ws: Any, fmt: _Formats, table: L.Table, frame: pd.DataFrame | None = None) -> int:
    """A sheet holding one table: typed columns, autofilter, label colours, the header frozen when the
    table starts at A1 (below a block of figures, freezing it would leave little room to scroll), with
    its leading columns where FROZEN_COLUMNS says. Returns the table's last row."""
    last_row = write_table(ws, fmt, table, frame)
    if table.row == 0:
        ws.freeze_panes(1, L.FROZEN_COLUMNS.get(table.name, 0))
    _label_formats(ws, fmt, table)
    _whole_units(ws, fmt, table)
    _heat_maps(ws, table)
    _text_is_meant(ws, table)
    return last_row


def _colour_scale() -> dict[str, Any]:
    low, middle, high = L.HEAT_MAP_COLOURS
    return {"type": "3_color_scale", "min_color": low, "mid_color": middle, "max_color": high}


def _heat_maps(ws: Any, table: L.Table) -> None:
    """A colour scale on each heat-map column, down to the sheet's last row: the refresh rewrites the
    rows, and the range stays as it is."""
    for name in L.HEAT_MAP_COLUMNS.get(table.name, ()):
        col = table.col + table.headers.index(name)
        ws.conditional_format(table.row + 1, col, _MAX_ROW, col, _colour_scale())


def _rfm_grid_blocks(ws: Any, fmt: _Formats) -> None:
    """The RFM grid as 5 x 5 blocks above the rfm_grid table, R 5 at the top and FM 1 at the left, each cell
    a formula over the table (one source of truth; Excel and LibreOffice calculate them when the file opens)."""
    table = L.OUTPUT_TABLES["rfm_grid"]
    ws.write(0, 0, "RFM grid of the report month: rows R (recency score), columns FM (frequency and monetary "
                   "score); every cell adds up the rfm_grid table below", fmt.subtitle)
    ws.write(1, 0, "Segment names, descriptions and actions come from the segment map on Config "
                   "(tbl_segment_map). Customers not scored (not in rfm_population) are in no cell.", fmt.note)
    top = L.RFM_GRID_TITLE_ROW
    for i, block in enumerate(L.RFM_GRID_BLOCKS):
        left = L.rfm_grid_block_col(i)
        ws.write(top, left, block.title, fmt.subtitle)
        ws.write(top + 1, left, "R \\ FM", fmt.grid_header)
        for j in range(5):
            ws.write(top + 1, left + 1 + j, j + 1, fmt.grid_header)
            ws.write(top + 2 + j, left, 5 - j, fmt.grid_header)
        for j in range(5):
            for fm in range(1, 6):
                # no cached value: LibreOffice then calculates the cell on open (a cached 0 it would show)
                ws.write_formula(top + 2 + j, left + fm, _grid_formula(table.name, block.column, 5 - j, fm),
                                 fmt.number(block.type), "")
        cells = (top + 2, left + 1, top + 6, left + 5)
        if block.heat_map:
            ws.conditional_format(*cells, _colour_scale())
        else:
            for label, colour in L.LABEL_COLOURS["rfm_segment"].items():
                ws.conditional_format(*cells, {"type": "cell", "criteria": "==",
                                               "value": '"' + label.replace('"', '""') + '"',
                                               "format": fmt.fill(colour)})
        for col in range(left, left + 6):
            wanted = 8 if col == left else 12 if block.heat_map else 24
            if col <= table.last_col:       # never narrower than the table's column below
                ws.set_column(col, col, max(wanted, _width(table.columns[col - table.col])))
            else:
                ws.set_column(col, col, wanted, None if block.heat_map or col == left else fmt.wrap)


def _cohort_triangle_sheet(ws: Any, fmt: _Formats) -> None:
    """The classic cohort triangle as formulas over cohort_retention (one source of truth), written
    without cached values so Excel and LibreOffice calculate them on open, coloured as a heat map."""
    tri, table = L.COHORT_TRIANGLE_LAYOUT, L.OUTPUT_TABLES["cohort_retention"].name
    month, percent = fmt.number("month"), fmt.number("share")
    ws.write(0, 0, "Cohort retention: share of each cohort (customers by the month of their first core purchase) "
                   "buying core, by months since that month", fmt.title)
    ws.write(1, 0, f"Formulas over the {table} table (Cohort Retention sheet), recalculated when the file opens: "
                   f"the latest {tri.size} cohorts, {tri.size} months each; blank = not reached by the report month.",
             fmt.note)
    m, first = f"$B${tri.month_row + 1}", f"$B${tri.first_row + 1}"
    ws.write(tri.month_row, 0, "report month")   # 1/(1/x): 0, the MAX of an empty table, shows blank
    ws.write_formula(tri.month_row, 1, f"=IFERROR(1/(1/MAX({table}[report_month])),\"\")", month, "")
    ws.write(tri.first_row, 0, "first cohort shown")
    ws.write_formula(tri.first_row, 1, f"=IFERROR(1/(1/MAX(MIN({table}[cohort]),EDATE(MAX({table}[cohort]),"
                                       f"-{tri.size - 1}))),\"\")", month, "")
    ws.write(tri.header_row - 1, tri.first_month_col, "months since the cohort's first core month", fmt.note)
    for col, title in enumerate(("cohort", "customers", "first row")):
        ws.write(tri.header_row, col, title, fmt.grid_header)
    for k in range(tri.size):
        ws.write(tri.header_row, tri.first_month_col + k, k, fmt.grid_header)
    for i in range(tri.size):
        row = tri.header_row + 1 + i
        a, c = f"$A{row + 1}", f"$C{row + 1}"
        ws.write_formula(row, 0, f'=IFERROR(IF(EDATE({first},{i})>MAX({table}[cohort]),"",EDATE({first},{i})),"")',
                         month, "")
        ws.write_formula(row, 1, f'=IFERROR(INDEX({table}[cohort_size],{c}),"")', fmt.number("integer"), "")
        ws.write_formula(row, 2, f'=IFERROR(MATCH({a},{table}[cohort],0),"")', None, "")
        for k in range(tri.size):
            header = f"{column_letter(tri.first_month_col + k)}${tri.header_row + 1}"
            ws.write_formula(row, tri.first_month_col + k,
                             f'=IF({c}="","",IF(EDATE({a},{header})>{m},"",INDEX({table}[share_active],{c}+{header})))',
                             percent, "")
    ws.conditional_format(tri.header_row + 1, tri.first_month_col, tri.last_row, tri.last_col, _colour_scale())
    ws.set_column(0, 0, 18)
    ws.set_column(1, 1, 12)
    ws.set_column(2, 2, None, None, {"hidden": True})
    ws.set_column(tri.first_month_col, tri.last_col, 6)
    ws.freeze_panes(tri.header_row + 1, tri.first_month_col)


def _grid_formula(table: str, column: str, r: int, fm: int) -> str:
    """One grid cell: the cell's segment name, or the column's value of the cell (0 for an empty table)."""
    if column == "rfm_segment":
        return f'=IFERROR(INDEX({table}[{column}],MATCH("{r}{fm}",{table}[cell],0)),"")'
    return f"=SUMIFS({table}[{column}],{table}[r_score],{r},{table}[fm_score],{fm})"


def _text_is_meant(ws: Any, table: L.Table) -> None:
    """No "number stored as text" marks on text columns: ids like 00042 are text on purpose, and
    Excel would flag every one of 70,000 rows green."""
    ranges = [f"{letter}{table.row + 1}:{letter}{_MAX_ROW + 1}" for j, c in enumerate(table.columns)
              if c.type in ("text", "label") for letter in [column_letter(table.col + j)]]
    if ranges:
        ws.ignore_errors({"number_stored_as_text": " ".join(ranges)})


START_TEXT = (
    "Lifecycle states, value tiers and RFM segments for every customer and month, from three extracts.",
    "1. Paste your data into the Raw sheets (or name CSV/Parquet files on Config for very large histories).",
    "2. Check the settings on Config: every one has a default and a description.",
    "3. Press Refresh: every output sheet, the chart tables, Charts and Pivots are rebuilt; Raw and Config are "
    "never changed.",
    "Customer Snapshot doubles as the campaign list: filter it by tier, state, event and opt-ins.",
    "Worksheet functions (Windows): give them a whole range, =CRM_SEGMENT(A2:A10001) spills one answer per id in "
    "one call (one cell at a time costs a trip to Python per cell); also CRM_TIER, CRM_STATE, CRM_EVENT, CRM_RFM, "
    "CRM_METRIC(ids, name), CRM_EXPLAIN, each with an optional month; CRM_PALIVE(ids) and CRM_CLV(ids) from the "
    "CLV sheet.",
)
BUTTON_CELL = (9, 0)          # A10, between the text and tbl_status


def _start_sheet(ws: Any, fmt: _Formats) -> None:
    ws.write(0, 0, "CRM analytics workbook (crm_xl)", fmt.title)
    for i, line in enumerate(START_TEXT):
        ws.write(2 + i, 0, line)
    ws.insert_button(*BUTTON_CELL, {"macro": "Refresh", "caption": "Refresh", "width": 128, "height": 32})
    ws.write(BUTTON_CELL[0], 2, "Recompute everything from Raw and Config (needs Python with crm-xl; see xlwings.conf)",
             fmt.note)
    status = pd.DataFrame({"item": list(L.STATUS_ITEMS),
                           "value": [L.STATUS_INITIAL.get(item, "") for item in L.STATUS_ITEMS]})
    write_table(ws, fmt, L.STATUS_TABLE, status, style="Table Style Light 1", column_formats=False)
    ws.set_column(0, 0, 16)
    ws.set_column(1, 1, 36)


def _config_sheet(ws: Any, fmt: _Formats) -> None:
    rules = L.config_validations()
    ws.write(0, 0, "Settings", fmt.title)
    ws.write(1, 0, "Edit the value column; a blank value means the default. Dropdowns and ranges show what is "
                   "allowed. The segment map (right) assigns every (R, FM) cell to one segment, with what the "
                   "segment is and what to do with it (edit them freely); the Columns table (far right) names your "
                   "data's own headers.", fmt.note)
    rows = [(key, L.config_cell_value(key, value, rules), L.config_cell_value(key, default, rules), text)
            for key, value, default, text in L.config_rows()]
    table = L.CONFIG_TABLE
    write_table(ws, fmt, table, pd.DataFrame(rows, columns=table.headers), column_formats=False)
    for i, (key, value, default, _text) in enumerate(rows):
        cell_format = fmt.number(L.config_cell_type(key, rules))
        for j, cell in ((1, value), (2, default)):
            ws.write(table.row + 1 + i, table.col + j, cell, cell_format)
        rule = rules.get(key)
        if rule is not None:
            ws.data_validation(table.row + 1 + i, table.col + 1, table.row + 1 + i, table.col + 1,
                               _validation_options(rule, key))
    write_table(ws, fmt, L.SEGMENT_MAP_TABLE, pd.DataFrame(L.segment_map_rows(), columns=L.SEGMENT_MAP_TABLE.headers),
                style="Table Style Medium 4", column_formats=False)
    columns = L.COLUMNS_TABLE
    write_table(ws, fmt, columns, pd.DataFrame(L.columns_rows(), columns=columns.headers),
                style="Table Style Medium 7", column_formats=False)
    ws.write(columns.row - 1, columns.col, "Columns: where your data names a column otherwise, type its header "
                                           "in 'your header' (blank = the column's own name)", fmt.note)
    ws.set_column(0, 0, 26)
    ws.set_column(1, 2, 22)
    ws.set_column(3, 3, 90, fmt.wrap)
    segments = L.SEGMENT_MAP_TABLE
    ws.set_column(segments.col, segments.col, 28)
    ws.set_column(segments.col + 1, segments.col + 1, 14)
    ws.set_column(segments.col + 2, segments.last_col, 45, fmt.wrap)
    ws.set_column(columns.col, columns.col, 14)
    ws.set_column(columns.col + 1, columns.col + 2, 18)
    ws.set_column(columns.col + 3, columns.col + 3, 60, fmt.wrap)
    ws.freeze_panes(table.row + 1, 0)


def _validation_options(rule: L.Validation, key: str) -> dict[str, Any]:
    options: dict[str, Any] = {"ignore_blank": True, "input_title": key[:32], "input_message": rule.message[:255],
                               "error_title": f"Invalid {key}"[:32], "error_message": rule.message[:255]}
    if rule.kind == "list":
        options.update(validate="list", source=list(rule.choices))
    elif rule.maximum is None:
        options.update(validate=rule.kind, criteria=">=", value=rule.minimum)
    else:
        options.update(validate=rule.kind, criteria="between", minimum=rule.minimum, maximum=rule.maximum)
    return options


def _chart_data_sheets(sheets: dict[str, Any], fmt: _Formats, frames: dict[str, pd.DataFrame] | None
                       ) -> dict[str, int]:
    """Each chart table on its own sheet; returns each table's last row (for the chart ranges)."""
    last = {}
    for name, table in L.CHART_TABLES.items():
        ws = sheets[table.sheet]
        last[name] = write_table(ws, fmt, table, (frames or {}).get(name), style="Table Style Light 9")
        ws.freeze_panes(1, 0)
    return last


def _charts_sheet(ws: Any, book: Any, fmt: _Formats, last_rows: dict[str, int]) -> None:
    ws.write(0, 0, "Charts (from the Chart sheets' tables, rewritten by each refresh)", fmt.title)
    for spec in L.CHARTS_LAYOUT:
        ws.insert_chart(spec.anchor, _chart(book, spec, last_rows[spec.table]))


def _chart(book: Any, spec: L.Chart, last: int) -> Any:
    """A chart whose series read its table's columns down to ``last`` (the refresh moves that row)."""
    table = spec.source
    first, last = table.row + 1, max(last, table.row + spec.min_rows)
    category = table.col + table.headers.index(spec.category_column)
    # named after its table, so the live refresh finds each chart by name to re-range it
    chart = book.add_chart({"type": spec.type, "name": spec.name,
                            **({"subtype": spec.subtype} if spec.subtype else {})})
    colours = L.series_colours(spec)
    for name in spec.series:
        col = table.col + table.headers.index(name)
        colour = colours.get(name)
        # the tables' pale label fills, outlined so they still read on white
        look = {"fill": {"color": colour}, "border": {"color": "#7F7F7F", "width": 0.5}} if colour else {}
        if spec.type == "line" and not spec.categories.startswith("report_month"):
            look["marker"] = {"type": "circle"}     # a few labelled points (not months): each one visible
        chart.add_series({"name": [table.sheet, table.row, col],
                          "categories": [table.sheet, first, category, last, category],
                          "values": [table.sheet, first, col, last, col], **look})
    chart.set_title({"name": spec.title})
    x_axis = {"num_format": spec.x_format, "num_font": {"rotation": -45}} if spec.x_format else {}
    chart.set_x_axis({**x_axis, **({"name": spec.x_title} if spec.x_title else {})})
    chart.set_y_axis({"num_format": spec.number_format, "major_gridlines": {"visible": True},
                      **({"name": spec.y_title} if spec.y_title else {})})
    chart.set_legend({"position": "right" if spec.sheet == L.CHARTS else "bottom"})
    chart.set_size({"width": spec.size[0], "height": spec.size[1]})
    chart.show_hidden_data()   # the chart tables' sheets are hidden
    return chart


_GOOD, _BAD = "#00875A", "#C00000"


def _kpis_sheet(ws: Any, book: Any, fmt: _Formats, last_rows: dict[str, int]) -> None:
    """The KPIs sheet above its table: the latest month's headline figures (formulas reading the kpis
    table, so they follow every refresh), their change with an arrow, and the charts."""
    types = {c.name: c.type for c in L.OUTPUT_TABLES["kpis"].columns}
    ws.write(0, 0, "KPIs of the latest month", fmt.title)
    ws.write_formula(0, 3, "=IFERROR(MAX(kpis[report_month]),\"\")", fmt.number("month"))
    ws.write(1, 0, "From the kpis table below (one row per month). Change: rates in points, the rest relative to "
                   "last month. The arrow is green when the move is good news.", fmt.note)
    top = L.HEADLINE_TOP
    for j, header in enumerate(L.HEADLINE_HEADERS):
        ws.write(top, j, header, fmt.header)
    for i, headline in enumerate(L.HEADLINES, 1):
        row = top + i
        this, last, change, arrow = L.headline_formulas(headline, row + 1)
        ws.write(row, 0, headline.caption)
        ws.write_formula(row, 1, this, fmt.number(types[headline.column]))
        ws.write_formula(row, 2, last, fmt.number(types[headline.column]))
        ws.write_formula(row, 3, change, fmt.change)
        ws.write_formula(row, 4, arrow, fmt.arrow)
        for symbol, good in ((L.UP, headline.up_is_good), (L.DOWN, not headline.up_is_good)):
            ws.conditional_format(row, 4, row, 4, {"type": "cell", "criteria": "==", "value": f'"{symbol}"',
                                                   "format": fmt.font(_GOOD if good else _BAD)})
    ws.set_column(0, 0, 28)     # the table's columns below are narrower than these; numbers still fit
    ws.set_column(1, 4, 15)
    for spec in L.KPI_CHARTS:
        ws.insert_chart(spec.anchor, _chart(book, spec, last_rows[spec.table]))


def _migration_sheet(ws: Any, fmt: _Formats) -> None:
    """Heat maps above the long tier_migration table: from_tier rows x to_tier columns, one per scope,
    each cell a SUMIFS over the table, coloured by share (zeros shown blank)."""
    ws.write(0, 0, "Tier migration: of the customers in each tier (rows), the share in each tier a month later "
                   "(columns)", fmt.title)
    ws.write(1, 0, "Rows sum to 100%. Left: the report month; right: the last 12 months pooled. Read from the "
                   "tier_migration table below.", fmt.note)
    for k, scope in enumerate(MIGRATION_SCOPES):
        top, left = L.migration_origin(k)
        ws.write(top - 1, left, f"Scope: {scope}", fmt.subtitle)
        ws.write(top, left, "from \\ to", fmt.header)
        for j, to_tier in enumerate(L.MIGRATION_TO, 1):
            ws.write(top, left + j, to_tier, fmt.header)
        for i, from_tier in enumerate(L.MIGRATION_FROM, 1):
            ws.write(top + i, left, from_tier, fmt.header)
            for j in range(1, len(L.MIGRATION_TO) + 1):
                from_cell = f"${column_letter(left)}{top + i + 1}"
                to_cell = f"{column_letter(left + j)}${top + 1}"
                ws.write_formula(top + i, left + j, L.migration_formula(scope, from_cell, to_cell), fmt.heat)
        ws.conditional_format(top + 1, left + 1, top + len(L.MIGRATION_FROM), left + len(L.MIGRATION_TO), {
            "type": "2_color_scale", "min_type": "num", "min_value": 0, "max_type": "num", "max_value": 1,
            "min_color": "#FFFFFF", "max_color": "#4472C4"})
        table_end = L.OUTPUT_TABLES["tier_migration"].last_col   # the table's columns keep their widths
        for col in range(max(left, table_end + 1), left + len(L.MIGRATION_TO) + 1):
            ws.set_column(col, col, 12 if col == left else 10)


def _table_charts(sheets: dict[str, Any], book: Any, last_rows: dict[str, int]) -> None:
    """The charts beside output tables (layout.TABLE_CHARTS), down to the table's last row."""
    for spec in L.TABLE_CHARTS:
        sheets[spec.sheet].insert_chart(spec.anchor, _chart(book, spec, last_rows[spec.table]))


def _glossary_sheet(ws: Any, fmt: _Formats) -> None:
    ws.write(0, 0, "Glossary: every column of every output table", fmt.title)
    ws.write(1, 0, "Rewritten by each refresh from the crm_xl that ran it (docs/outputs.md holds the same).", fmt.note)
    table = L.GLOSSARY_TABLE
    write_table(ws, fmt, table, L.glossary_frame(), style="Table Style Light 9", column_formats=False)
    ws.freeze_panes(table.row + 1, 2)
    ws.set_column(0, 0, 20)
    ws.set_column(1, 1, 26)
    ws.set_column(2, 2, 10)
    ws.set_column(3, 3, 110, fmt.wrap)


def _pivots_sheet(ws: Any, fmt: _Formats) -> None:
    ws.write(0, 0, "PivotTables", fmt.title)
    ws.write(1, 0, "Rebuilt from the output tables whenever the file is opened (in Excel also: Data > Refresh All).",
             fmt.note)
    for pivot in L.PIVOTS_LAYOUT:
        first_row = _cell_row(pivot.location) - len(pivot.pages) - 2
        ws.write(first_row, 0, pivot.title, fmt.subtitle)
    ws.set_column(0, 0, 22)


def _cell_row(ref: str) -> int:
    """0-based row of the first cell of an A1 reference like ``A6:C8``."""
    return int(re.match(r"[A-Z]+(\d+)", ref).group(1)) - 1


def _log_sheet(ws: Any, fmt: _Formats) -> None:
    _data_sheet(ws, fmt, L.LOG_TABLE)
    ws.set_column(2, 2, 100)


def _xlwings_conf_sheet(ws: Any, fmt: _Formats) -> None:
    """Keys from A1 down, no header: xlwings reads A:B until the first blank key."""
    for i, (key, value, note) in enumerate(L.XLWINGS_CONF_ROWS):
        ws.write_string(i, 0, key)
        if isinstance(value, bool):
            ws.write_boolean(i, 1, value)
        elif value:
            ws.write_string(i, 1, value)
        ws.write_string(i, 2, note, fmt.note)
    notes = ("Settings for xlwings (the Refresh button and the CRM_ worksheet functions). Keys run from A1 down to "
             "the first blank cell and override the xlwings add-in and any xlwings.conf file, even when blank.",
             "Which Python Excel starts: run  crm-xl excel-setup BOOK.xlsm  with the Python that has crm-xl (or make "
             "the book with crm-xl new on that machine); it adds Interpreter_Win / Interpreter_Mac (or Conda Path "
             "and Conda Env) above. See docs/excel.md.")
    for i, line in enumerate(notes, L.XLWINGS_CONF_NOTES_ROW - 1):
        ws.write_string(i, 0, line, fmt.note)
    ws.set_column(0, 0, 18)
    ws.set_column(1, 1, 22)
    ws.set_column(2, 2, 100)


def _tabs(sheets: dict[str, Any]) -> None:
    """Tab colours by role (what to fill in, what to read, what is technical); the chart tables and
    xlwings.conf are hidden: nobody reads them, and Refresh and ``crm-xl excel-setup`` keep them."""
    for name, ws in sheets.items():
        colour = L.TAB_COLOURS.get(L.sheet_role(name))
        if colour:
            ws.set_tab_color(colour)
        if name in L.HIDDEN_SHEETS:
            ws.hide()


def build_xlsx(vba_project: bytes, tables: dict[str, pd.DataFrame] | None = None) -> bytes:
    """The workbook (without pivots) as bytes. ``tables`` optionally fills the output and chart
    tables (previews and tests); the template itself is built with empty tables."""
    import xlsxwriter

    buffer = io.BytesIO()
    book = xlsxwriter.Workbook(buffer, {"in_memory": True, "strings_to_formulas": False,
                                        "strings_to_numbers": False, "strings_to_urls": False})
    book.set_properties({"title": "CRM analytics (crm_xl)", "author": "crm_xl", "created": FIXED_CREATED})
    book.add_vba_project(io.BytesIO(vba_project), is_stream=True)
    book.set_vba_name("ThisWorkbook")
    sheets = {name: book.add_worksheet(name) for name in L.SHEETS}
    for i, sheet in enumerate(sheets.values(), 1):
        sheet.set_vba_name(f"Sheet{i}")
        # Printing or exporting to PDF: landscape, all columns on one page wide.
        sheet.set_landscape()
        sheet.fit_to_pages(1, 0)
    fmt = _Formats(book)

    _start_sheet(sheets[L.START], fmt)
    _config_sheet(sheets[L.CONFIG], fmt)
    for table in L.RAW_TABLES.values():
        _data_sheet(sheets[table.sheet], fmt, table)
    last_rows = {name: _data_sheet(sheets[table.sheet], fmt, table, (tables or {}).get(name))
                 for name, table in L.OUTPUT_TABLES.items()}
    _rfm_grid_blocks(sheets[L.OUTPUT_TABLES["rfm_grid"].sheet], fmt)
    chart_frames = L.chart_tables(tables) if tables else None
    last_rows.update(_chart_data_sheets(sheets, fmt, chart_frames))
    _charts_sheet(sheets[L.CHARTS], book, fmt, last_rows)
    _kpis_sheet(sheets[L.KPIS_SHEET], book, fmt, last_rows)
    _migration_sheet(sheets[L.MIGRATION_SHEET], fmt)
    _table_charts(sheets, book, last_rows)
    _cohort_triangle_sheet(sheets[L.COHORT_TRIANGLE], fmt)
    _pivots_sheet(sheets[L.PIVOTS], fmt)
    _glossary_sheet(sheets[L.GLOSSARY], fmt)
    _log_sheet(sheets[L.LOG], fmt)
    _xlwings_conf_sheet(sheets[L.XLWINGS_CONF], fmt)
    _tabs(sheets)
    sheets[L.START].activate()
    book.close()
    return buffer.getvalue()


# ---------------------------------------------------------------------------------------------------
# PivotTables (zip level)
# ---------------------------------------------------------------------------------------------------

_MAIN_NS = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
_REL_NS = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_PKG_REL_NS = "http://schemas.openxmlformats.org/package/2006/relationships"
_REL_CACHE = _REL_NS + "/pivotCacheDefinition"
_REL_PIVOT = _REL_NS + "/pivotTable"
_CT_CACHE = "application/vnd.openxmlformats-officedocument.spreadsheetml.pivotCacheDefinition+xml"
_CT_PIVOT = "application/vnd.openxmlformats-officedocument.spreadsheetml.pivotTable+xml"
_XML_DECL = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
_FIRST_CACHE_ID = 101


def pivot_cache_xml(pivot: L.Pivot, formats: dict[str, int] | None = None) -> str:
    """A cache with the table as its source and no records: ``refreshOnLoad`` makes Excel and
    LibreOffice read the table on open, so a refresh only rewrites the table. One ``<m/>`` shared
    item per field, the shape Excelize writes and Excel accepts. ``formats`` gives the number
    format id of a column (see :func:`pivot_formats`), 0 (General) for the others."""
    formats = formats or {}
    fields = "".join(f'<cacheField name={quoteattr(c)} numFmtId="{formats.get(c, 0)}">{_shared_items(pivot.items(c))}'
                     f'</cacheField>' for c in pivot.source_columns)
    return (f'{_XML_DECL}<pivotCacheDefinition xmlns="{_MAIN_NS}" saveData="false" refreshOnLoad="true" '
            f'backgroundQuery="false" createdVersion="3" refreshedVersion="8" minRefreshableVersion="3">'
            f'<cacheSource type="worksheet"><worksheetSource name={quoteattr(pivot.table)}/></cacheSource>'
            f'<cacheFields count="{len(pivot.source_columns)}">{fields}</cacheFields></pivotCacheDefinition>')


def _shared_items(items: tuple[str, ...]) -> str:
    """The cache's items of a field: the known values in their order (the pivot fields list them
    in this order), else one blank item."""
    if not items:
        return '<sharedItems containsBlank="true" count="1"><m/></sharedItems>'
    return f'<sharedItems count="{len(items)}">' + "".join(f"<s v={quoteattr(v)}/>" for v in items) + "</sharedItems>"


def _field_items(pivot: L.Pivot, column: str) -> str:
    count = max(len(pivot.items(column)), 1)
    return f'<items count="{count}">' + "".join(f'<item x="{i}"/>' for i in range(count)) + "</items>"


def _page_field(pivot: L.Pivot, column: str, index: int) -> str:
    selected = dict(pivot.selected).get(column)
    item = f' item="{pivot.items(column).index(selected)}"' if selected is not None else ""
    return f'<pageField fld="{index}"{item} hier="-1"/>'


def pivot_formats(pivot: L.Pivot, styles_xml: bytes) -> dict[str, int]:
    """Number format id per month column of the pivot's source, from the workbook's styles: in
    General a month item would read as a day serial (45292), not 2024-01."""
    months = [c.name for c in L.OUTPUT_TABLES[pivot.table].columns if c.type == "month"]
    if not months:
        return {}
    code = quoteattr(L.NUMBER_FORMATS["month"])
    found = re.search(rb'<numFmt numFmtId="(\d+)" formatCode=' + code.encode() + rb"/>", styles_xml)
    if found is None:
        raise ValueError(f"xl/styles.xml has no number format {code}: cannot format the pivot's months")
    return dict.fromkeys(months, int(found.group(1)))


def pivot_table_xml(pivot: L.Pivot, cache_id: int, formats: dict[str, int] | None = None) -> str:
    """The PivotTable definition: row, column, page and data fields by position in the source;
    ``formats`` as for :func:`pivot_cache_xml`."""
    formats = formats or {}
    columns = pivot.source_columns
    index = {c: i for i, c in enumerate(columns)}
    data_columns = {column for column, _, _ in pivot.data}
    axis = {**{c: "axisRow" for c in pivot.rows}, **{c: "axisCol" for c in pivot.cols},
            **{c: "axisPage" for c in pivot.pages}}
    fields = []
    for column in columns:
        number_format = f' numFmtId="{formats[column]}"' if column in formats else ""
        if column in axis:
            fields.append(f'<pivotField axis="{axis[column]}"{number_format} compact="false" outline="false" '
                          f'showAll="false" defaultSubtotal="false">{_field_items(pivot, column)}</pivotField>')
        elif column in data_columns:
            fields.append('<pivotField dataField="true" compact="false" outline="false" showAll="false"/>')
        else:
            fields.append('<pivotField compact="false" outline="false" showAll="false"/>')
    col_fields = [index[c] for c in pivot.cols] + ([-2] if len(pivot.data) > 1 else [])
    parts = [
        f'{_XML_DECL}<pivotTableDefinition xmlns="{_MAIN_NS}" name={quoteattr(pivot.name)} cacheId="{cache_id}" '
        f'dataCaption="Values" showError="false" updatedVersion="8" minRefreshableVersion="3" showDrill="true" '
        f'useAutoFormatting="true" pageOverThenDown="false" rowGrandTotals="true" colGrandTotals="true" '
        f'mergeItem="false" createdVersion="3" compact="false" compactData="false">',
        f'<location ref="{pivot.location}" firstHeaderRow="1" firstDataRow="1" firstDataCol="1"'
        + (f' rowPageCount="{len(pivot.pages)}" colPageCount="1"' if pivot.pages else "") + "/>",
        f'<pivotFields count="{len(columns)}">{"".join(fields)}</pivotFields>',
        f'<rowFields count="{len(pivot.rows)}">' + "".join(f'<field x="{index[c]}"/>' for c in pivot.rows)
        + '</rowFields><rowItems count="1"><i><x/></i></rowItems>',
    ]
    if col_fields:
        parts.append(f'<colFields count="{len(col_fields)}">' + "".join(f'<field x="{i}"/>' for i in col_fields)
                     + "</colFields>")
    parts.append('<colItems count="1"><i/></colItems>')
    if pivot.pages:
        parts.append(f'<pageFields count="{len(pivot.pages)}">'
                     + "".join(_page_field(pivot, c, index[c]) for c in pivot.pages) + "</pageFields>")
    parts.append(f'<dataFields count="{len(pivot.data)}">'
                 + "".join(f'<dataField name={quoteattr(caption)} fld="{index[c]}" subtotal="{how}" baseField="0" '
                           f'baseItem="0"/>' for c, how, caption in pivot.data) + "</dataFields>")
    parts.append('<pivotTableStyleInfo name="PivotStyleMedium9" showRowHeaders="1" showColHeaders="1" '
                 'showRowStripes="0" showColStripes="0" showLastColumn="1"/></pivotTableDefinition>')
    return "".join(parts)


def _rels(entries: list[tuple[str, str, str]]) -> bytes:
    body = "".join(f'<Relationship Id="{rid}" Type="{kind}" Target="{target}"/>' for rid, kind, target in entries)
    return f'{_XML_DECL}<Relationships xmlns="{_PKG_REL_NS}">{body}</Relationships>'.encode()


def _next_rid(rels_xml: str) -> int:
    return max((int(x) for x in re.findall(r'Id="rId(\d+)"', rels_xml)), default=0) + 1


def add_pivots(parts: dict[str, bytes], pivots: Iterable[L.Pivot] = L.PIVOTS_LAYOUT,
               sheet: str = L.PIVOTS) -> dict[str, bytes]:
    """The package parts with the pivots added on ``sheet``: cache and table parts, their
    relationships, content types and the workbook's ``<pivotCaches>``."""
    parts = dict(parts)
    sheet_part = f"xl/worksheets/sheet{L.SHEETS.index(sheet) + 1}.xml"
    sheet_rels_name = sheet_part.replace("worksheets/", "worksheets/_rels/") + ".rels"
    workbook = parts["xl/workbook.xml"].decode()
    workbook_rels = parts["xl/_rels/workbook.xml.rels"].decode()
    content_types = parts["[Content_Types].xml"].decode()
    sheet_rels = parts.get(sheet_rels_name, _rels([])).decode()
    caches = []
    for n, pivot in enumerate(pivots, 1):
        cache_id = _FIRST_CACHE_ID + n - 1
        cache_part, table_part = f"xl/pivotCache/pivotCacheDefinition{n}.xml", f"xl/pivotTables/pivotTable{n}.xml"
        formats = pivot_formats(pivot, parts["xl/styles.xml"])
        parts[cache_part] = pivot_cache_xml(pivot, formats).encode()
        parts[table_part] = pivot_table_xml(pivot, cache_id, formats).encode()
        parts[f"xl/pivotTables/_rels/pivotTable{n}.xml.rels"] = _rels(
            [("rId1", _REL_CACHE, f"../pivotCache/pivotCacheDefinition{n}.xml")])
        rid = _next_rid(workbook_rels)
        workbook_rels = workbook_rels.replace("</Relationships>", f'<Relationship Id="rId{rid}" Type="{_REL_CACHE}" '
                                              f'Target="pivotCache/pivotCacheDefinition{n}.xml"/></Relationships>')
        caches.append(f'<pivotCache cacheId="{cache_id}" r:id="rId{rid}"/>')
        srid = _next_rid(sheet_rels)
        sheet_rels = sheet_rels.replace("</Relationships>", f'<Relationship Id="rId{srid}" Type="{_REL_PIVOT}" '
                                        f'Target="../pivotTables/pivotTable{n}.xml"/></Relationships>')
        content_types = content_types.replace("</Types>", (
            f'<Override PartName="/{cache_part}" ContentType="{_CT_CACHE}"/>'
            f'<Override PartName="/{table_part}" ContentType="{_CT_PIVOT}"/></Types>'))
    # CT_Workbook order: ... definedNames, calcPr, oleSize, customWorkbookViews, pivotCaches, ...
    block = "<pivotCaches>" + "".join(caches) + "</pivotCaches>"
    match = re.search(r"<calcPr[^>]*/>|</calcPr>", workbook)
    if match is None:
        raise ValueError("xl/workbook.xml has no <calcPr>: cannot place <pivotCaches>")
    workbook = workbook[:match.end()] + block + workbook[match.end():]
    if 'xmlns:r="' not in workbook[:workbook.index(">", workbook.index("<workbook"))]:
        raise ValueError("xl/workbook.xml does not declare the r: namespace on <workbook>")
    parts["xl/workbook.xml"] = workbook.encode()
    parts["xl/_rels/workbook.xml.rels"] = workbook_rels.encode()
    parts[sheet_rels_name] = sheet_rels.encode()
    parts["[Content_Types].xml"] = content_types.encode()
    return parts


# ---------------------------------------------------------------------------------------------------
# Package
# ---------------------------------------------------------------------------------------------------


def read_parts(package: bytes) -> dict[str, bytes]:
    """Every part of a zip package, in the zip's order."""
    with zipfile.ZipFile(io.BytesIO(package)) as z:
        return {info.filename: z.read(info) for info in z.infolist()}


def write_package(parts: dict[str, bytes]) -> bytes:
    """A zip with a fixed timestamp and the parts in the given order: same parts, same bytes.
    ``[Content_Types].xml`` comes first, as Office writes it."""
    names = sorted(parts, key=lambda n: n != "[Content_Types].xml")
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for name in names:
            info = zipfile.ZipInfo(name, _ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o600 << 16
            z.writestr(info, parts[name], compresslevel=6)
    return out.getvalue()


def build_template_bytes(vba_dir: Path = VBA_DIR, tables: dict[str, pd.DataFrame] | None = None) -> bytes:
    """The template as bytes (see :func:`build_template`)."""
    vba_project = build_vba_project(vba_modules(Path(vba_dir)))
    parts = add_pivots(read_parts(build_xlsx(vba_project, tables)))
    return write_package(parts)


def build_template(path: Path | str = DEFAULT_OUT, vba_dir: Path | str = VBA_DIR,
                   tables: dict[str, pd.DataFrame] | None = None) -> Path:
    """Build the .xlsm template at ``path`` from the VBA sources in ``vba_dir`` and the layout.

    ``tables`` (output tables of ``crm_xl.run``) fill the output and chart sheets, for previews;
    the committed template has empty tables. The file is written whole or not at all.
    """
    path = Path(path)
    package = build_template_bytes(Path(vba_dir), tables)
    path.parent.mkdir(parents=True, exist_ok=True)
    replace_atomically(path, lambda temp: temp.write_bytes(package))
    return path
