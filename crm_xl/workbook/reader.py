"""Reading a workbook's inputs: the three raw tables (or the files Config points to) and the settings.

python-calamine (Rust) reads the tables: a 100k-row Raw sheet in about half a second, where
openpyxl needs several. What calamine does not show is read from the sheet XML
(:mod:`crm_xl.workbook.cells`): error cells (``#N/A``) get their error text back, which staging
reports as ``error_value`` rows; formulas saved without their values are a data-quality warning
(most of a required column: the refresh stops); rows typed below a Raw table are a warning; an
error value in a Config value cell stops the refresh naming the cell. Tables are found by name
ignoring case, as Excel names them.

Nothing here changes the file.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from crm_xl.config import (
    INPUT_COLUMNS,
    MAP_PREFIX,
    REQUIRED_COLUMNS,
    SEGMENT_NOTE_COLUMNS,
    Config,
    header_key,
    map_key,
)
from crm_xl.core.coerce import EXCEL_ERRORS
from crm_xl.core.columns import contract_headers
from crm_xl.errors import ConfigError, InputError
from crm_xl.io.dialect import DETECT, CsvOptions
from crm_xl.workbook import layout
from crm_xl.workbook.cells import FileBook, table_name
from crm_xl.workbook.package import WorkbookPackageError, find_tables_in
from crm_xl.workbook.sheetxml import column_letter
from crm_xl.workbook.untrusted import check_sheets, file_named_on_config, open_package, reading

if TYPE_CHECKING:
    from python_calamine import CalamineWorkbook

_EXAMPLES = 5


@dataclasses.dataclass(frozen=True)
class WorkbookInputs:
    """What a refresh needs from the workbook.

    ``first_data_row`` gives, per raw table, the sheet row (1-based) of its first data row, so
    data-quality row numbers can be shown as sheet rows; ``None`` when the table came from a file.
    """

    raw: dict[str, pd.DataFrame]
    settings: dict[str, Any]
    workbook_settings: dict[str, Any]
    first_data_row: dict[str, int | None]
    setting_cells: dict[str, str]
    log: pd.DataFrame
    read_notes: tuple[dict[str, object], ...] = ()


@dataclasses.dataclass(frozen=True)
class SheetTable:
    """A raw table read from its sheet: ``frame`` indexed by sheet row (blank rows dropped), the sheet
    row of its first data row, how many data rows its range has, and what the sheet says beyond the
    values: per header the sheet rows of formulas saved without their values, and the sheet rows
    below the table that hold values (typed under it without extending it)."""

    frame: pd.DataFrame
    first_data_row: int
    rows: int
    uncached: dict[str, list[int]] = dataclasses.field(default_factory=dict)
    rows_below: tuple[int, ...] = ()


def read_inputs(path: str | Path, allow_files_from: Sequence[str | Path] = ()) -> WorkbookInputs:
    """Raw tables and settings of a crm_xl workbook; :class:`InputError` naming the sheet/table if unusable.

    ``allow_files_from``: folders outside the workbook's own from which Config may name files
    (:func:`~crm_xl.workbook.untrusted.file_named_on_config`)."""
    path = Path(path)
    book = open_book(path)
    try:
        return assemble_inputs(book, path.parent, lambda table: read_sheet_table(book, table), allow_files_from)
    finally:
        book.close()


def assemble_inputs(book: Any, folder: Path | None, read_table: Callable[[layout.Table], SheetTable],
                    allow_files_from: Sequence[str | Path] = ()) -> WorkbookInputs:
    """Settings, raw tables and log from an open workbook, shared by the file and the live reader.

    ``book`` answers like a python-calamine workbook (``table_names``, ``get_table_by_name``);
    ``read_table`` reads one raw table from it; a raw table named as a file on Config is read from
    that file instead, relative to ``folder`` (and only from there, or from ``allow_files_from``).
    ``read_notes`` holds the data-quality rows about how the tables were read, their example rows as
    the user finds them (sheet rows).
    """
    settings, workbook_settings, cells = read_config(book)
    options = CsvOptions.from_settings(workbook_settings)
    columns = column_config(settings, cells)
    raw: dict[str, pd.DataFrame] = {}
    first_rows: dict[str, int | None] = {}
    notes: list[dict[str, object]] = []
    for name, table in layout.RAW_TABLES.items():
        source = workbook_settings.get(f"{name}_file")
        if source:
            file_cell = cells[f"{name}_file"]
            if folder is None:
                raise InputError(layout.CONFIG, f"{file_cell} ({name}_file) names the file {source}, but this workbook "
                                                f"has no folder to read it from (xlwings Lite, in Excel on the web or "
                                                f"for Mac): paste the rows into {table.sheet} and clear {file_cell}, "
                                                "or refresh in desktop Excel or with crm-xl refresh")
            raw[name], found = read_file(folder, str(source), name, file_cell, options, columns.headers(name),
                                         allow_files_from)
            first_rows[name] = None
            notes += found
            check_headers(name, list(raw[name].columns), columns, cells, (name, f"{source} (named in {file_cell})"))
        else:
            read = read_table(table)
            raw[name], first_rows[name] = read.frame, read.first_data_row
            check_headers(name, list(raw[name].columns), columns, cells, (table.sheet, f"table {table.name}"))
            notes += sheet_notes(name, table, read, columns)
    return WorkbookInputs(raw=raw, settings=settings, workbook_settings=workbook_settings,
                          first_data_row=first_rows, setting_cells=cells, log=read_log(book), read_notes=tuple(notes))


def sheet_notes(name: str, table: layout.Table, read: SheetTable, columns: Config) -> list[dict[str, object]]:
    """Data-quality rows about what the sheet holds beyond the table's values; :class:`InputError`
    when most cells of a required column are formulas saved without their values (the figures
    would be blanks, i.e. zeros, with status OK)."""
    notes = []
    holds = {header_key(header): column for column, header in columns.headers(name).items()}
    contract = {c.name for c in INPUT_COLUMNS[name]}
    for header, rows in read.uncached.items():
        key = header_key(header)
        column = holds.get(key) or (key if key in contract else str(header))
        if column in REQUIRED_COLUMNS[name] and len(rows) > read.rows / 2:
            raise InputError(table.sheet, f"table {table.name}: {len(rows):,} of {read.rows:,} cells of {header} "
                                          f"(e.g. rows {_rows_text(rows)}) hold formulas saved without their values, "
                                          "by a program that does not calculate: open and save the workbook in Excel "
                                          "first", column)
        notes.append(_note(name, column, "formula_without_value", rows,
                           f"formulas saved without their values (by a program that does not calculate) read as "
                           f"blank cells: open and save the workbook in Excel first, so {header} holds numbers"))
    if read.rows_below:
        rows = list(read.rows_below)
        notes.append(_note(name, "(sheet)", "rows_outside_table", rows,
                           f"{len(rows):,} rows below {table.name} on sheet '{table.sheet}' hold values but are "
                           "outside the table, so the refresh does not read them: resize the table to take them in "
                           "(Table Design > Resize Table) or delete them"))
    return notes


def _note(table: str, column: str, rule: str, rows: list[int], message: str) -> dict[str, object]:
    return {"table": table, "column": column, "rule": rule, "severity": "warning", "rows": len(rows),
            "example_rows": _rows_text(rows), "example_values": "", "message": message}


def _rows_text(rows: list[int]) -> str:
    return ", ".join(str(r) for r in rows[:_EXAMPLES])


def read_log(book: CalamineWorkbook) -> pd.DataFrame:
    """Earlier refreshes' log lines (the refresh appends to them); empty if the table is missing."""
    headers = layout.LOG_TABLE.headers
    name = table_name(book, layout.LOG_TABLE.name)
    if name is None:
        return pd.DataFrame(columns=headers)
    rows = [r for r in book.get_table_by_name(name).to_python() if any(v not in ("", None) for v in r)]
    return pd.DataFrame(rows, columns=headers)


#: The tables :func:`read_config` reads, and all those the reader reads: the sheets calamine parses,
#: so the sheets :func:`open_book` checks first.
CONFIG_TABLES = (layout.CONFIG_TABLE.name, layout.SEGMENT_MAP_TABLE.name, layout.COLUMNS_TABLE.name)
READ_TABLES = (*(t.name for t in layout.RAW_TABLES.values()), *CONFIG_TABLES, layout.LOG_TABLE.name)


def open_book(path: Path, tables: tuple[str, ...] = READ_TABLES) -> _Book:
    """The workbook opened with calamine, once the file and the sheets of ``tables`` passed the checks
    of :mod:`crm_xl.workbook.untrusted` (an encrypted or damaged file, a zip bomb, a stray far cell that
    would make calamine allocate the whole grid are each one :class:`InputError`)."""
    with open_package(path) as zf, reading(path):
        try:
            found = find_tables_in(zf)
        except WorkbookPackageError as exc:
            raise InputError("workbook", f"{path.name}: {exc}") from None
        infos = [found[name.lower()] for name in tables if name.lower() in found]
        check_sheets(zf, path, {info.sheet_part: info.sheet for info in infos})
    from python_calamine import CalamineWorkbook  # not at import: xlwings Lite (Pyodide) has no calamine

    with reading(path):
        book = FileBook(CalamineWorkbook.from_path(str(path), load_tables=True), path)
    return _Book(book, path, {info.name.lower(): f"sheet '{info.sheet}', part {info.sheet_part}" for info in infos})


class _Book:
    """A workbook (:class:`~crm_xl.workbook.cells.FileBook`: tables by name ignoring case, error cells
    and formulas without values seen) whose table reads name the sheet and part when the file is
    damaged, and only of the sheets :func:`open_book` checked."""

    def __init__(self, book: FileBook, path: Path, parts: dict[str, str]) -> None:
        self._book, self._path, self._parts = book, path, parts
        self.table_names = book.table_names
        self.sheet_names = book.sheet_names

    def get_table_by_name(self, name: str) -> Any:
        key = name.lower()
        if key in {t.lower() for t in self.table_names} and key not in self._parts:
            raise RuntimeError(f"table {name}: its sheet was not checked before calamine reads it (open_book's tables)")
        with reading(self._path, self._parts.get(key)):
            return self._book.get_table_by_name(name)

    def close(self) -> None:
        self._book.close()


def _table(book: CalamineWorkbook, table: layout.Table) -> Any:
    name = table_name(book, table.name)
    if name is None:
        where = (f"sheet '{table.sheet}'" if table.sheet in book.sheet_names
                 else f"the workbook (no sheet '{table.sheet}')")
        raise InputError(table.sheet, f"Excel table {table.name} not found in {where}; the refresh needs the "
                                      f"template's tables (crm-xl new makes a fresh workbook)")
    return book.get_table_by_name(name)


def read_sheet_table(book: FileBook, table: layout.Table) -> SheetTable:
    """One raw table from its sheet, with what the sheet XML says about it (see :class:`SheetTable`)."""
    found = _table(book, table)
    headers = [str(h).strip() for h in found.columns]
    frame, first_data_row = raw_frame(headers, found.to_python(), found.start[0])
    uncached: dict[str, list[int]] = {}
    for row, col in found.uncached:
        uncached.setdefault(headers[col], []).append(first_data_row + row)
    return SheetTable(frame, first_data_row, len(found.to_python()), uncached, found.rows_below)


def raw_frame(headers: list[str], rows: list[list[Any]], start_row: int) -> tuple[pd.DataFrame, int]:
    """A raw table's cells as the core gets them: blanks as None, blank rows dropped, index = sheet
    row; and the sheet row of its first data row. ``start_row``: the first data cell's row, 0-based."""
    frame = pd.DataFrame(rows, columns=headers, dtype=object) if rows else pd.DataFrame(columns=headers, dtype=object)
    frame = frame.replace({"": None})
    blank = frame.isna().all(axis=1).to_numpy()
    # Blank rows inside a table (a deleted row, the template's placeholder row) carry no data:
    # they are skipped, keeping each remaining row's index = its position in the table.
    frame = frame[~blank]
    first_data_row = start_row + 1      # the start is the first data cell (0-based), below the header
    frame.index = frame.index + first_data_row
    return frame, first_data_row


def column_config(settings: dict[str, Any], cells: dict[str, str]) -> Config:
    """The ``map.*`` settings (the Columns table) parsed alone, so the raw tables can be read and checked
    before the core runs; a :class:`ConfigError` names the Columns table's cell."""
    try:
        return Config.from_mapping({k: v for k, v in settings.items() if k.startswith(MAP_PREFIX)})
    except ConfigError as exc:
        raise at_cell(exc, cells) from None


def check_headers(name: str, headers: list[str], columns: Config, cells: dict[str, str],
                  where: tuple[str, str]) -> None:
    """The core's header check (after mapping) on raw table ``name``, before the core runs: the error
    says ``where`` it is (the sheet or file, and the table) and the Columns table's cell that fixes it."""
    try:
        contract_headers(headers, name, columns)
    except InputError as exc:
        fix = f" (its row in the Columns table: {_columns_cell(exc.setting, cells)})" if exc.setting else ""
        raise InputError(where[0], f"{where[1]}: {exc.message}{fix}", exc.column, exc.setting) from None


def _columns_cell(key: str | None, cells: dict[str, str]) -> str:
    return cells.get(key or "", f"the Columns table ({layout.COLUMNS_TABLE.name})")


def read_config(book: CalamineWorkbook) -> tuple[dict[str, Any], dict[str, Any], dict[str, str]]:
    """Settings from tbl_config and tbl_segment_map, with the address of each setting's value cell."""
    config = _table(book, layout.CONFIG_TABLE)
    start_row, start_col = config.start     # the first data cell (0-based), one row below the header
    value_col = column_letter(start_col + 1)
    settings: dict[str, Any] = {}
    workbook_settings: dict[str, Any] = {}
    cells: dict[str, str] = {}
    uncached = {row for row, col in getattr(config, "uncached", ()) if col == 1}
    for offset, row in enumerate(config.to_python()):
        if not row or row[0] in ("", None):
            continue
        key, value = str(row[0]).strip(), row[1] if len(row) > 1 else None
        cell = f"{layout.CONFIG}!{value_col}{start_row + 1 + offset}"
        if key in cells:        # which row wins would be an accident of the order: neither does
            raise ConfigError(key, f"the setting is on the {layout.CONFIG} sheet twice, in {cells[key]} and {cell}: "
                                   "delete one of the two rows")
        cells[key] = cell
        _check_cell(key, value, cells[key], offset in uncached)
        if key in layout.WORKBOOK_SETTINGS:
            workbook_settings[key] = value
        else:
            settings[key] = value
    rows = _segment_rows(book, cells)
    if rows:
        settings["segment_map"] = rows
    _read_columns(book, settings, cells)
    check_workbook_settings(workbook_settings, cells)
    return settings, workbook_settings, cells


def _segment_rows(book: CalamineWorkbook, cells: dict[str, str]) -> list[tuple[Any, ...]]:
    """tbl_segment_map's rows as (segment, cells) or, when the table has description and action columns
    (found by header: an older workbook has only the first two), (segment, cells, description, action);
    sets the table's cell in ``cells``."""
    segments = _table(book, layout.SEGMENT_MAP_TABLE)
    seg_row, seg_col = segments.start
    headers = [str(h).strip().lower() for h in segments.columns]
    notes = [headers.index(name) for name in SEGMENT_NOTE_COLUMNS if name in headers]
    if len(notes) < len(SEGMENT_NOTE_COLUMNS):
        notes = []
    rows = []
    for offset, row in enumerate(segments.to_python()):
        for col in (0, 1, *notes):
            if col < len(row):
                _check_cell("segment_map", row[col],
                            f"{layout.CONFIG}!{column_letter(seg_col + col)}{seg_row + 1 + offset}")
        if len(row) > 1 and row[0] not in ("", None):
            rows.append((row[0], row[1], *(row[col] if col < len(row) else None for col in notes)))
    if rows:
        cells["segment_map"] = f"{layout.CONFIG}!{column_letter(seg_col)}{seg_row + 1}"
    return rows


def _check_cell(key: str, value: Any, cell: str, uncached: bool = False) -> None:
    """A Config value cell holding an Excel error (``#REF!``) or a formula without its value would
    silently mean the default: :class:`ConfigError` naming the cell instead."""
    if isinstance(value, str) and value.strip() in EXCEL_ERRORS:
        raise ConfigError(key, f"{cell} holds the Excel error {value.strip()} (a formula that failed, e.g. a "
                               "reference to a deleted cell): type the value, or clear the cell for the default")
    if uncached:
        raise ConfigError(key, f"{cell} holds a formula saved without its value (by a program that does not "
                               "calculate): open and save the workbook in Excel first, or type the value")


def read_settings(path: str | Path) -> tuple[dict[str, Any], dict[str, Any], dict[str, str]]:
    """:func:`read_config` of the workbook at ``path`` (its raw tables are not read)."""
    path = Path(path)
    book = open_book(path, CONFIG_TABLES)
    try:
        return read_config(book)
    finally:
        book.close()


def at_cell(exc: ConfigError, cells: dict[str, str]) -> ConfigError:
    """``exc`` naming the workbook cell of its setting, when it has one."""
    cell = cells.get(exc.key)
    return ConfigError(exc.key, f"{cell}: {str(exc).split(': ', 1)[-1]}") if cell else exc


def _read_columns(book: CalamineWorkbook, settings: dict[str, Any], cells: dict[str, str]) -> None:
    """The Columns table as ``map.<table>.<column>`` settings (a blank header: the contract's own name),
    each with its "your header" cell. A workbook made before the table existed maps nothing."""
    name = table_name(book, layout.COLUMNS_TABLE.name)
    if name is None:
        return
    found = book.get_table_by_name(name)
    start_row, start_col = found.start
    at = {h: i for i, h in enumerate(layout.COLUMNS_TABLE.headers)}
    letter = column_letter(start_col + at[layout.YOUR_HEADER])
    for offset, row in enumerate(found.to_python()):
        table, column = (str(row[at[h]]).strip() for h in ("table", "column"))
        if not table and not column:
            continue
        key = map_key(table, column)
        cells[key] = f"{layout.CONFIG}!{letter}{start_row + 1 + offset}"
        header = row[at[layout.YOUR_HEADER]]
        _check_cell(key, header, cells[key])
        if header not in ("", None):
            settings[key] = header


def check_workbook_settings(values: dict[str, Any], cells: dict[str, str]) -> None:
    """Validate the workbook-only settings in place (history_rows_in_sheet becomes a number); a
    :class:`ConfigError` names the cell."""
    try:
        CsvOptions.from_settings(values)
    except ConfigError as exc:
        raise at_cell(exc, cells) from None
    raw = values.get("history_rows_in_sheet")
    low, high = layout.HISTORY_ROWS_RANGE
    if raw in (None, ""):
        values["history_rows_in_sheet"] = int(layout.WORKBOOK_SETTINGS["history_rows_in_sheet"][0])
        return
    try:
        number = float(raw)
    except (TypeError, ValueError):
        number = float("nan")
    if not (number == int(number) if number == number else False) or not low <= number <= high:
        raise at_cell(ConfigError("history_rows_in_sheet", f"got {raw!r}; allowed: a whole number from {low} to "
                                                           f"{high:,}"), cells)
    values["history_rows_in_sheet"] = int(number)


def read_file(folder: Path, source: str, name: str, cell: str, options: CsvOptions = DETECT,
              headers: dict[str, str] | None = None, allow_files_from: Sequence[str | Path] = ()
              ) -> tuple[pd.DataFrame, list[dict[str, object]]]:
    """A raw table from the CSV or Parquet file named on the Config sheet, and the data-quality notes
    about how it was read (a CSV file that is not UTF-8); ``headers`` as for
    :func:`~crm_xl.io.csv.read_csv_file`. Only a file in ``folder`` (the workbook's) or below, or in
    ``allow_files_from``, is read: the workbook may come from someone else."""
    from crm_xl.io.csv import read_raw_file

    path = file_named_on_config(folder, source, name, cell, f"{name}_file", allow_files_from)
    if not path.is_file():
        raise InputError(name, f"the file named in {cell} does not exist: {path}")
    return read_raw_file(path, name, options, headers, named_in=cell)
