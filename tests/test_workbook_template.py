"""The Excel template: built from text deterministically, up to date, and readable by independent tools."""

from __future__ import annotations

import ast
import io
import re
import shutil
import types
import zipfile
from pathlib import Path

import pandas as pd
import pytest

import crm_xl
from crm_xl import contract
from crm_xl.config import SETTINGS_HELP, TIERS, Config
from crm_xl.workbook import layout as L
from crm_xl.workbook import template

pytest.importorskip("xlsxwriter")
pytest.importorskip("pyopenvba")
pytest.importorskip("xlwings")

ROOT = Path(__file__).parents[1]
COMMITTED = ROOT / "workbook" / "crm_xl.xlsm"


def parts_of(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as z:
        return {info.filename: z.read(info) for info in z.infolist()}


def differing_parts(a: dict[str, bytes], b: dict[str, bytes]) -> list[str]:
    return sorted(name for name in set(a) | set(b) if a.get(name) != b.get(name))


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return template.build_template(tmp_path_factory.mktemp("tpl") / "crm_xl.xlsm")


# --- reproducible and up to date ------------------------------------------------------------------


def test_two_builds_give_identical_bytes(built: Path, tmp_path: Path) -> None:
    again = template.build_template(tmp_path / "again.xlsm")
    assert again.read_bytes() == built.read_bytes()


def test_committed_template_is_up_to_date(built: Path) -> None:
    """Fails when workbook/vba, the layout or the builder changed without `crm-xl template`.

    Compared part by part (names, order and uncompressed contents), not as zip bytes: the deflate
    stream may differ between zlib builds (e.g. zlib-ng) while every part is the same.
    """
    assert COMMITTED.exists(), "workbook/crm_xl.xlsm is missing: run `crm-xl template`"
    committed, fresh = parts_of(COMMITTED), parts_of(built)
    stale = differing_parts(committed, fresh)
    assert not stale, f"workbook/crm_xl.xlsm is out of date in {stale}: run `crm-xl template`"
    assert list(committed) == list(fresh)


def test_an_edited_vba_source_changes_the_template(built: Path, tmp_path: Path) -> None:
    sources = shutil.copytree(template.VBA_DIR, tmp_path / "vba")
    bas = sources / "CrmXl.bas"
    bas.write_bytes(bas.read_bytes() + b"' one more comment\r\n")
    edited = template.build_template(tmp_path / "edited.xlsm", vba_dir=sources)
    assert differing_parts(parts_of(built), parts_of(edited)) == ["xl/vbaProject.bin"]


def test_line_endings_of_the_sources_do_not_matter(built: Path, tmp_path: Path) -> None:
    """A checkout with LF (or CRLF) line ends builds the same template."""
    sources = shutil.copytree(template.VBA_DIR, tmp_path / "vba")
    for path in sources.iterdir():
        data = path.read_bytes().replace(b"\r\n", b"\n")
        path.write_bytes(data.replace(b"\n", b"\r\n") if path.name.startswith("C") else data)
    assert template.build_template(tmp_path / "eol.xlsm", vba_dir=sources).read_bytes() == built.read_bytes()


def test_module_name_must_match_the_file_name(tmp_path: Path) -> None:
    (tmp_path / "Other.bas").write_text('Attribute VB_Name = "Wrong"\nSub X()\nEnd Sub\n')
    with pytest.raises(ValueError, match="VB_Name"):
        template.vba_modules(tmp_path)


# --- VBA -----------------------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_olevba_reads_every_module(built: Path) -> None:
    from oletools.olevba import VBA_Parser

    parser = VBA_Parser(str(built))
    try:
        modules = {name.rsplit(".", 1)[0]: code for _, _, name, code in parser.extract_macros()}
    finally:
        parser.close()
    assert {"CrmXl", "xlwings_udfs", "xlwings", "Dictionary", "ThisWorkbook"} <= set(modules)
    assert {f"Sheet{i}" for i in range(1, len(L.SHEETS) + 1)} <= set(modules)
    assert re.search(r"^Sub Refresh\(\)", modules["CrmXl"], re.MULTILINE)
    assert 'RunPython "import crm_xl.excel; crm_xl.excel.refresh()"' in modules["CrmXl"]
    # when xlwings reports a failure itself, the status bar does not go on saying "starting Python"
    after = modules["CrmXl"].split("RunPython ", 1)[1]
    assert re.search(r"^\s*If CStr\(Application\.StatusBar\) = STARTING Then Application\.StatusBar = False",
                     after, re.MULTILINE)
    assert "crm-xl doctor" in modules["CrmXl"]
    assert "Function CRM_SEGMENT(customer_id, Optional month)" in modules["xlwings_udfs"]
    assert 'XLPy.CallUDF("crm_xl.excel.udfs", "CRM_SEGMENT"' in modules["xlwings_udfs"]
    assert "Function RunPython(" in modules["xlwings"]
    # Insert Function help, once Python has run
    assert re.search(r"^Sub RegisterFunctionHelp\(\)", modules["CrmFunctionHelp"], re.MULTILINE)
    assert re.search(r"^\s*RegisterFunctionHelp\s*$", after, re.MULTILINE)


def test_vba_project_asks_office_to_compile_from_source(built: Path) -> None:
    """[MS-OVBA] 2.3.4.1: the _VBA_PROJECT stream is exactly 0x61CC, version 0xFFFF, two reserved
    zeros and no performance cache; olefile (not the library that wrote it) reads it back."""
    import olefile

    with zipfile.ZipFile(built) as zf:
        project = zf.read("xl/vbaProject.bin")
    ole = olefile.OleFileIO(io.BytesIO(project))
    try:
        assert ole.openstream("VBA/_VBA_PROJECT").read() == bytes.fromhex("CC61FFFF000000")
        assert ole.exists("VBA/dir") and ole.exists("VBA/CrmXl")
    finally:
        ole.close()


def _xlwings_generated_udf_module(functions: dict[str, list[str]], module_name: str) -> str:
    """What xlwings' ImportPythonUDFs writes, by running its own generator on stand-in functions.

    xlwings.udfs imports pythoncom (Windows only), so its ``generate_vba_wrapper`` is compiled from
    the installed source on its own, with the VBAWriter it uses.
    """
    import xlwings
    from xlwings.utils import VBAWriter

    source = (Path(xlwings.__file__).parent / "udfs.py").read_text()
    node = next(n for n in ast.parse(source).body
                if isinstance(n, ast.FunctionDef) and n.name == "generate_vba_wrapper")
    namespace: dict[str, object] = {"VBAWriter": VBAWriter}
    exec(compile(ast.Module([node], []), "xlwings/udfs.py", "exec"), namespace)

    module = types.SimpleNamespace()
    for name, args in functions.items():
        def stub() -> None: ...
        stub.__xlfunc__ = {"name": name, "sub": False, "call_in_wizard": True, "volatile": False,  # type: ignore[attr-defined]
                           "args": [{"name": a.strip("[]"), "vba": None, "vararg": False,
                                     **({"optional": None} if a.startswith("[") else {})} for a in args]}
        setattr(module, name, stub)
    out = io.StringIO()
    writer = VBAWriter(out)
    writer.writeln('Attribute VB_Name = "xlwings_udfs"')
    writer.writeln("'Autogenerated code by xlwings - changes will be lost with next import!")
    writer.writeln("""#Const App = "Microsoft Excel" 'Adjust when using outside of Excel""")
    namespace["generate_vba_wrapper"](module_name, module, out, types.SimpleNamespace(Name="crm_xl.xlsm"))
    return out.getvalue()


def test_udf_wrappers_are_what_xlwings_generates() -> None:
    functions = {name: ["customer_id", "[month]"]
                 for name in ("CRM_SEGMENT", "CRM_TIER", "CRM_STATE", "CRM_EVENT", "CRM_RFM", "CRM_EXPLAIN")}
    functions["CRM_METRIC"] = ["customer_id", "metric", "[month]"]
    functions.update({name: ["customer_id"] for name in ("CRM_PALIVE", "CRM_CLV")})
    expected = _xlwings_generated_udf_module(functions, "crm_xl.excel.udfs")
    shipped = (template.VBA_DIR / "xlwings_udfs.bas").read_bytes().decode("cp1252").replace("\r\n", "\n")
    assert shipped == expected


def test_function_help_module_is_generated_from_the_docstrings() -> None:
    from crm_xl.excel import function_help

    shipped = (template.VBA_DIR / "CrmFunctionHelp.bas").read_bytes().decode("cp1252").replace("\r\n", "\n")
    assert shipped == function_help.vba_module(), "run: python -m crm_xl.excel.function_help > " \
                                                  "workbook/vba/CrmFunctionHelp.bas"


def test_function_help_gives_every_wrapper_its_description_and_one_text_per_argument() -> None:
    """Read back from the VBA text, independently of the generator: each function of xlwings_udfs.bas gets one
    MacroOptions call naming it, in category CRM, with as many argument texts as the wrapper has arguments,
    and every line is valid VBA as far as quotes, lengths and continuations go."""
    wrappers = (template.VBA_DIR / "xlwings_udfs.bas").read_bytes().decode("cp1252")
    arity = {name: len([a for a in args.split(",") if a.strip()])
             for name, args in re.findall(r"^Function (CRM_\w+)\(([^)]*)\)", wrappers, re.MULTILINE)}
    help_text = (template.VBA_DIR / "CrmFunctionHelp.bas").read_bytes().decode("cp1252").replace("\r\n", "\n")
    calls = re.split(r"\n(?=    Application\.MacroOptions )", help_text.split("On Error Resume Next\n", 1)[1])
    found = {}
    for call in calls:
        if "MacroOptions" not in call:
            continue
        statement = call.split("\n    On Error GoTo 0")[0]
        lines = statement.split("\n")
        assert len(lines) <= 25 and all(len(line) <= 1023 for line in lines)     # VBA's limits
        assert all(line.endswith(" _") for line in lines[:-1]) and not lines[-1].endswith("_")
        for line in lines:
            assert line.replace('""', "").count('"') % 2 == 0, line   # every literal closed
        name = re.search(r"'!(CRM_\w+)\"", statement).group(1)
        assert 'Category:="CRM"' in statement
        description = re.search(r'Description:="((?:[^"]|"")*)"', statement).group(1)
        assert 20 < len(description) <= 255
        texts = re.findall(r'"((?:[^"]|"")+)"', statement.split("ArgumentDescriptions:=Array(", 1)[1])
        found[name] = len(texts)
    assert found == arity


# --- sheets and tables ---------------------------------------------------------------------------------


def _all_tables() -> list[L.Table]:
    return [L.STATUS_TABLE, L.CONFIG_TABLE, L.SEGMENT_MAP_TABLE, L.COLUMNS_TABLE, *L.RAW_TABLES.values(),
            *L.OUTPUT_TABLES.values(), *L.CHART_TABLES.values(), L.GLOSSARY_TABLE, L.LOG_TABLE]


def test_layout_names_every_sheet_and_output_table() -> None:
    assert L.SHEETS[:5] == ("Start", "Config", "Raw Transactions", "Raw Customers", "Raw Products")
    assert L.SHEETS[-11:] == ("Pivots", "Charts", "Cohort Triangle", "Chart Tiers", "Chart Events", "Chart States",
                              "Chart Tier Revenue", "Chart Cohorts", "Glossary", "Log", "xlwings.conf")
    sheets_of_tables = [t.sheet for t in _all_tables() if t.sheet != L.CONFIG]
    assert len(sheets_of_tables) == len(set(sheets_of_tables))   # the refresh rewrites one table per sheet
    assert L.OUTPUT_SHEETS["customer_snapshot"] == "Customer Snapshot"
    assert L.OUTPUT_SHEETS["rfm_cut_points"] == "RFM Cut Points"
    assert set(L.OUTPUT_TABLES) == set(contract.TABLE_NAMES) - set(contract.FILE_TABLES)
    assert all(len(s) <= 31 for s in L.SHEETS) and len(set(L.SHEETS)) == len(L.SHEETS)
    names = [t.name for t in _all_tables()]
    assert len(set(names)) == len(names)
    for name in L.OUTPUT_TABLES:
        assert L.OUTPUT_TABLES[name].headers == contract.columns(name)


def test_openpyxl_sees_every_sheet_and_table_with_its_headers(built: Path) -> None:
    import openpyxl

    book = openpyxl.load_workbook(built, keep_vba=True)
    assert tuple(book.sheetnames) == L.SHEETS
    for table in _all_tables():
        sheet = book[table.sheet]
        assert table.name in sheet.tables, (table.sheet, table.name)
        ref = sheet.tables[table.name].ref
        header = next(sheet.iter_rows(min_row=table.row + 1, max_row=table.row + 1, min_col=table.col + 1,
                                      max_col=table.last_col + 1, values_only=True))
        assert list(header) == table.headers, table.name
        assert ref.split(":")[0] == sheet.cell(table.row + 1, table.col + 1).coordinate
    snapshot = book["Customer Snapshot"]
    assert snapshot.freeze_panes == "C2"      # the header row, and id and name while scrolling right
    columns = L.OUTPUT_TABLES["customer_snapshot"].columns
    formats = {c.name: snapshot.cell(2, j + 1).number_format for j, c in enumerate(columns)}
    assert formats["report_month"] == "yyyy-mm"
    assert formats["first_core_date"] == "yyyy-mm-dd"
    assert formats["o6"] == "#,##0" and formats["m12"] == "#,##0.00" and formats["customer_id"] == "@"
    assert book["Raw Transactions"].freeze_panes == "A2"


def test_sheets_read_as_a_user_expects(built: Path) -> None:
    """Technical sheets hidden, tabs coloured by role, no green marks on text ids, numbers wide
    enough for 10,000,000.00, charts still drawn from their hidden tables."""
    import openpyxl

    book = openpyxl.load_workbook(built)
    for name in L.SHEETS:
        sheet = book[name]
        assert (sheet.sheet_state == "hidden") == (name in L.HIDDEN_SHEETS), name
        assert sheet.sheet_properties.tabColor.rgb.endswith(L.TAB_COLOURS[L.sheet_role(name)][1:]), name
    assert L.START not in L.HIDDEN_SHEETS and L.CONFIG not in L.HIDDEN_SHEETS
    parts = parts_of(built)
    for table in [*L.RAW_TABLES.values(), *L.OUTPUT_TABLES.values()]:
        sheet = book[table.sheet]
        xml = parts[f"xl/worksheets/sheet{L.SHEETS.index(table.sheet) + 1}.xml"].decode()
        ignored = re.search(r'<ignoredError sqref="([^"]+)" numberStoredAsText="1"/>', xml)
        text_columns = {openpyxl.utils.get_column_letter(table.col + j + 1) for j, c in enumerate(table.columns)
                        if c.type in ("text", "label")}
        letters = {ref.split(":")[0].rstrip("0123456789") for ref in ignored.group(1).split()} if ignored else set()
        assert letters == text_columns, table.name
        widths = {n: float(w) for lo, hi, w in re.findall(r'<col min="(\d+)" max="(\d+)" width="([\d.]+)"', xml)
                  for n in range(int(lo), int(hi) + 1)}
        for j, column in enumerate(table.columns):
            if column.type not in ("integer", "decimal"):
                continue
            shown = f"{10_000_000:,.2f}" if column.type == "decimal" else f"{10_000_000:,}"
            assert widths[table.col + j + 1] >= len(shown) + 1, (table.name, column.name)
    charts = [parts[n].decode() for n in parts if re.fullmatch(r"xl/charts/chart\d+\.xml", n)]
    # what Excel writes for "Show data in hidden rows and columns": no plotVisOnly (XlsxWriter's show_hidden_data)
    assert charts and not any("<c:plotVisOnly" in chart for chart in charts)


def test_calamine_sees_every_sheet_and_table(built: Path) -> None:
    from python_calamine import CalamineWorkbook

    book = CalamineWorkbook.from_path(str(built), load_tables=True)
    assert tuple(book.sheet_names) == L.SHEETS
    assert sorted(book.table_names) == sorted(t.name for t in _all_tables())
    for table in _all_tables():
        found = book.get_table_by_name(table.name)
        assert (found.sheet, list(found.columns)) == (table.sheet, table.headers)
    conf = book.get_sheet_by_name("xlwings.conf").to_python()
    keys = {row[0]: row[1] for row in conf[:len(L.XLWINGS_CONF_ROWS)]}
    assert keys["UDF Modules"] == "crm_xl.excel.udfs" and keys["Use UDF Server"] is False
    assert conf[len(L.XLWINGS_CONF_ROWS)][0] == ""          # xlwings stops at the first blank key
    # a key on the sheet wins over the user's xlwings config even when blank: none is left blank
    assert all(value != "" for value in keys.values()) and "Interpreter_Win" not in keys


def test_button_is_bound_to_the_refresh_macro(built: Path) -> None:
    parts = parts_of(built)
    start_rels = parts["xl/worksheets/_rels/sheet1.xml.rels"].decode()
    vml_target = re.search(r'Target="\.\./drawings/(vmlDrawing\d+\.vml)"', start_rels).group(1)
    vml = parts[f"xl/drawings/{vml_target}"].decode()
    assert 'ObjectType="Button"' in vml
    assert "<x:FmlaMacro>[0]!Refresh</x:FmlaMacro>" in vml
    assert ">Refresh<" in vml


def test_pivot_parts_refresh_on_load_from_the_output_tables(built: Path) -> None:
    parts = parts_of(built)
    caches = sorted(n for n in parts if n.startswith("xl/pivotCache/pivotCacheDefinition"))
    tables = sorted(n for n in parts if re.fullmatch(r"xl/pivotTables/pivotTable\d+\.xml", n))
    assert len(caches) == len(tables) == len(L.PIVOTS_LAYOUT)
    for n, pivot in enumerate(L.PIVOTS_LAYOUT, 1):
        cache = parts[f"xl/pivotCache/pivotCacheDefinition{n}.xml"].decode()
        assert 'refreshOnLoad="true"' in cache and 'saveData="false"' in cache
        assert f'<worksheetSource name="{pivot.table}"/>' in cache
        assert re.findall(r'cacheField name="([^"]+)"', cache) == contract.columns(pivot.table)
        definition = parts[f"xl/pivotTables/pivotTable{n}.xml"].decode()
        assert f'name="{pivot.name}"' in definition
        assert definition.count('axis="axisRow"') == len(pivot.rows)
        assert definition.count('axis="axisCol"') == len(pivot.cols)
        assert definition.count("<pageField ") == len(pivot.pages)
    pivots_sheet = L.SHEETS.index("Pivots") + 1
    assert "pivotTable1.xml" in parts[f"xl/worksheets/_rels/sheet{pivots_sheet}.xml.rels"].decode()
    assert "<pivotCaches>" in parts["xl/workbook.xml"].decode()
    assert {p.table for p in L.PIVOTS_LAYOUT} == {"monthly_summary", "tier_transitions"}


def test_pivots_open_in_excel_ui_terms(built: Path) -> None:
    """Data captions differ from every source field ignoring case (Excel's UI refuses "Customers"
    for "customers"), and month fields show as yyyy-mm through a format that styles.xml defines."""
    import xml.etree.ElementTree as ET

    ns = {"m": "http://schemas.openxmlformats.org/spreadsheetml/2006/main"}
    parts = parts_of(built)
    styles = ET.fromstring(parts["xl/styles.xml"])
    codes = {int(f.get("numFmtId")): f.get("formatCode") for f in styles.iterfind("m:numFmts/m:numFmt", ns)}
    for n, pivot in enumerate(L.PIVOTS_LAYOUT, 1):
        definition = ET.fromstring(parts[f"xl/pivotTables/pivotTable{n}.xml"])
        cache = ET.fromstring(parts[f"xl/pivotCache/pivotCacheDefinition{n}.xml"])
        sources = {c.lower() for c in pivot.source_columns}
        captions = [d.get("name") for d in definition.iterfind("m:dataFields/m:dataField", ns)]
        assert captions and not {c.lower() for c in captions} & sources
        fields = definition.findall("m:pivotFields/m:pivotField", ns)
        cache_fields = cache.findall("m:cacheFields/m:cacheField", ns)
        for column, field, cached in zip(pivot.source_columns, fields, cache_fields, strict=True):
            kind = next(c.type for c in L.OUTPUT_TABLES[pivot.table].columns if c.name == column)
            if kind == "month":
                assert codes[int(cached.get("numFmtId"))] == "yyyy-mm"
                if field.get("axis"):
                    assert codes[int(field.get("numFmtId"))] == "yyyy-mm"
            else:
                assert cached.get("numFmtId") == "0"


def test_charts_are_bound_to_the_chart_tables(built: Path) -> None:
    parts = parts_of(built)
    charts = [parts[n].decode() for n in sorted(parts) if re.fullmatch(r"xl/charts/chart\d+\.xml", n)]
    assert len(charts) == len(L.ALL_CHARTS)
    for xml, spec in zip(charts, L.ALL_CHARTS, strict=True):
        assert xml.count("<c:ser>") == len(spec.series)
        sheet = spec.source.sheet
        assert (f"'{sheet}'!" if " " in sheet else f"<c:f>{sheet}!") in xml      # Excel quotes names with spaces
    at = {spec: xml for spec, xml in zip(L.ALL_CHARTS, charts, strict=True)}
    assert '<c:grouping val="stacked"/>' in at[L.CHARTS_LAYOUT[0]] and "<c:areaChart>" in at[L.CHARTS_LAYOUT[2]]
    for chart in L.TABLE_CHARTS:
        # over the rows the table always has, even in the empty template (else its one blank row)
        sheet = L.OUTPUT_SHEETS[chart.table]
        span = f"$A$2:$A${chart.min_rows + 1}" if chart.min_rows > 1 else "$A$2"
        assert f"<c:f>'{sheet}'!{span}</c:f>" in at[chart]


def test_config_table_has_data_validation(built: Path) -> None:
    import openpyxl

    sheet = openpyxl.load_workbook(built)["Config"]
    table = L.CONFIG_TABLE
    row_of = {sheet.cell(r, table.col + 1).value: r for r in range(table.row + 2, table.row + 2 + len(L.config_rows()))}
    rules = {}
    for dv in sheet.data_validations.dataValidation:
        for cell_range in dv.sqref.ranges:
            rules[cell_range.min_row] = dv
    value_col = table.col + 2
    measure = rules[row_of["measure"]]
    assert measure.type == "list" and measure.formula1 == '"units,revenue"'
    assert rules[row_of["use_created_date"]].formula1 == '"TRUE,FALSE"'
    months = rules[row_of["history_months"]]
    assert (months.type, months.formula1, months.formula2) == ("whole", "1", "600")
    assert months.operator in (None, "between")    # between is the default, left out by XlsxWriter
    assert (rules[row_of["t_high"]].type, rules[row_of["t_high"]].operator) == ("decimal", "greaterThanOrEqual")
    assert rules[row_of["history_rows_in_sheet"]].type == "whole"
    assert all(next(iter(dv.sqref.ranges)).min_col == value_col for dv in sheet.data_validations.dataValidation)
    assert sheet.cell(row_of["history_months"], value_col).value == 24          # a number, not text
    assert sheet.cell(row_of["use_created_date"], value_col).value is True



def test_config_values_can_be_typed_as_their_validation_expects(built: Path) -> None:
    """A number typed into a Text-formatted cell is stored as text, which whole/decimal validation
    rejects: validated cells are General, free-text ones Text (so 2024-12 stays text, not a date);
    each range is the engine's own and reads as plain numbers."""
    import openpyxl

    from crm_xl.config import INT_RANGES, Config

    sheet = openpyxl.load_workbook(built)["Config"]
    table = L.CONFIG_TABLE
    rows = {sheet.cell(r, table.col + 1).value: r for r in range(table.row + 2, table.row + 2 + len(L.config_rows()))}
    validated = {next(iter(dv.sqref.ranges)).min_row: dv for dv in sheet.data_validations.dataValidation}
    for key, row in rows.items():
        for col in (table.col + 2, table.col + 3):      # value and default
            expected = "General" if row in validated else "@"
            assert sheet.cell(row, col).number_format == expected, (key, col)
    for key, (low, high) in INT_RANGES.items():
        rule = validated[rows[key]]
        assert (int(rule.formula1), int(rule.formula2)) == (low, high)
        Config.from_mapping({key: high})                # the sheet's maximum is one the refresh takes
        with pytest.raises(crm_xl.ConfigError):
            Config.from_mapping({key: high + 1})
    messages = " ".join(dv.prompt or "" for dv in sheet.data_validations.dataValidation)
    assert "1,048,575" in messages and "e+" not in messages


# --- layout data ---------------------------------------------------------------------------------------


def test_config_rows_cover_every_setting_and_parse_back_to_the_defaults() -> None:
    rows = L.config_rows()
    keys = [r[0] for r in rows]
    assert keys == [k for k in SETTINGS_HELP if k != "segment_map"] + list(L.WORKBOOK_SETTINGS)
    assert all(r[1] == r[2] and r[3] for r in rows)
    core = {key: value for key, value, _, _ in rows if key in SETTINGS_HELP}
    segment_map = pd.DataFrame(L.segment_map_rows(), columns=L.SEGMENT_MAP_TABLE.headers)
    assert Config.from_mapping({**core, "segment_map": segment_map}) == Config()
    # a workbook made before the description and action columns reads the same
    assert Config.from_mapping({**core, "segment_map": segment_map.iloc[:, :2]}) == Config()
    assert {row[0]: row[1] for row in L.segment_map_rows()}["Champions"] == "55 54 45"
    assert L.WORKBOOK_SETTINGS["history_rows_in_sheet"][0] == "500000"


def test_chart_tables_from_monthly_summary() -> None:
    jan, feb = pd.Timestamp("2025-01-01"), pd.Timestamp("2025-02-01")
    rows = [(feb, "value_tier", "Gold", 5), (jan, "value_tier", "Gold", 3), (jan, "value_tier", "Diamond", 1),
            (jan, "lifecycle_event", "New", 4), (feb, "lifecycle_event", "Lost", 2),
            (jan, "lifecycle_state", "Regular", 7), (feb, "lifecycle_state", "Churned", 1),
            (jan, "rfm_segment", "Gone Cold", 9), (jan, "activity_status", "Active", 8)]
    summary = pd.DataFrame(rows, columns=["report_month", "dimension", "category", "customers"])
    summary["revenue_m1"] = summary["customers"] * 2.5
    cohorts = pd.DataFrame({"months_since": [0, 0, 1], "active": [2, 3, 1], "cohort_size": [2, 3, 2]})
    out = L.chart_tables({"monthly_summary": summary, "cohort_retention": cohorts})
    assert set(out) == {"chart_tier_mix", "chart_events", "chart_states", "chart_tier_revenue", "chart_cohort_curve"}
    assert out.pop("chart_cohort_curve").to_dict("list") == {"months_since": ["month 0", "month 1"],
                                                             "share_active": [1.0, 0.5]}
    revenue = out.pop("chart_tier_revenue")
    assert revenue[list(TIERS)].to_numpy().tolist() == [[2.5, 0, 7.5, 0, 0, 0], [0, 0, 12.5, 0, 0, 0]]
    assert all(str(revenue[c].dtype) == "float64" for c in revenue.columns[1:])
    tiers = out["chart_tier_mix"]
    assert list(tiers.columns) == ["report_month", *TIERS]
    assert list(tiers["report_month"]) == [jan, feb]
    assert tiers[list(TIERS)].to_numpy().tolist() == [[1, 0, 3, 0, 0, 0], [0, 0, 5, 0, 0, 0]]
    events = out["chart_events"]
    assert events.to_dict("list") == {"report_month": [jan, feb], "New": [4, 0], "Lost": [0, 2], "Reactivated": [0, 0]}
    states = out["chart_states"].set_index("report_month")
    assert states.loc[jan, "Regular"] == 7 and states.loc[feb, "Churned"] == 1 and states.loc[feb, "Regular"] == 0
    for name, frame in out.items():
        assert list(frame.columns) == L.CHART_TABLES[name].headers
        assert all(str(frame[c].dtype) == "int64" for c in frame.columns[1:])


def test_chart_tables_on_a_real_run(golden_result: dict[str, pd.DataFrame]) -> None:
    out = L.chart_tables(golden_result)
    summary = golden_result["monthly_summary"]
    tiers = summary[summary["dimension"] == "value_tier"].groupby("report_month")["customers"].sum()
    assert out["chart_tier_mix"].set_index("report_month")[list(TIERS)].sum(axis=1).tolist() == tiers.tolist()
    assert len(out["chart_states"]) == summary["report_month"].nunique()


# --- command line --------------------------------------------------------------------------------------


def test_cli_template_writes_the_file(tmp_path: Path, built: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from crm_xl.cli import main

    out = tmp_path / "sub" / "book.xlsm"
    assert main(["template", "--out", str(out)]) == 0
    assert out.read_bytes() == built.read_bytes()
    assert "Wrote the template" in capsys.readouterr().out


def test_pivots_open_on_one_dimension_with_tiers_in_rank_order(built: Path) -> None:
    """The month pivot opens on value_tier (not on every dimension summed), and both pivots list tiers
    Diamond first: the fields' items are the cache's known values in rank order, the page item one of them."""
    import xml.etree.ElementTree as ET

    ns = {"m": "http://schemas.openxmlformats.org/spreadsheetml/2006/main"}
    parts = parts_of(built)
    for n, pivot in enumerate(L.PIVOTS_LAYOUT, 1):
        cache = ET.fromstring(parts[f"xl/pivotCache/pivotCacheDefinition{n}.xml"])
        definition = ET.fromstring(parts[f"xl/pivotTables/pivotTable{n}.xml"])
        items = {f.get("name"): [s.get("v") for s in f.iterfind("m:sharedItems/m:s", ns)]
                 for f in cache.iterfind("m:cacheFields/m:cacheField", ns)}
        fields = definition.findall("m:pivotFields/m:pivotField", ns)
        for column, order in pivot.orders:
            assert items[column] == list(order)
            field = fields[pivot.source_columns.index(column)]
            assert [int(i.get("x")) for i in field.iterfind("m:items/m:item", ns)] == list(range(len(order)))
        pages = {pivot.source_columns[int(p.get("fld"))]: p.get("item")
                 for p in definition.iterfind("m:pageFields/m:pageField", ns)}
        for column, value in pivot.selected:
            assert items[column][int(pages[column])] == value
    summary = next(p for p in L.PIVOTS_LAYOUT if p.table == "monthly_summary")
    assert dict(summary.selected) == {"dimension": "value_tier"}
    assert summary.items("category")[:len(TIERS)] == TIERS
    lowered = [c.lower() for c in summary.items("category")]
    assert len(lowered) == len(set(lowered))      # Excel's items ignore case


def test_chart_series_take_the_tables_label_colours(built: Path) -> None:
    parts = parts_of(built)
    charts = [parts[n].decode() for n in sorted(parts) if re.fullmatch(r"xl/charts/chart\d+\.xml", n)]
    for xml, spec in zip(charts, L.ALL_CHARTS, strict=True):
        colours = L.series_colours(spec)
        if not colours:
            continue
        labels = list(spec.series)
        series = xml.split("<c:ser>")[1:]
        assert len(series) == len(labels)
        for label, ser in zip(labels, series, strict=True):
            assert f'<a:srgbClr val="{colours[label].lstrip("#").upper()}"/>' in ser, (spec.table, label)


def test_measure_columns_show_whole_units_without_decimals(built: Path) -> None:
    sheet = L.SHEETS.index("Customer History") + 1
    xml = parts_of(built)[f"xl/worksheets/sheet{sheet}.xml"].decode()
    table = L.OUTPUT_TABLES["customer_history"]
    for name in ("m1", "m6", "m_total"):
        letter = template.column_letter(table.headers.index(name))
        assert f"MOD({letter}2,1)=0" in xml, name
