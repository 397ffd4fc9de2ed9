"""The headless workbook refresh with real files: new + load + refresh, read back by two readers.

The golden fixture (tests/fixtures/golden) is loaded into a fresh copy of the committed template
with ``load_raw``, Config is set with ``set_settings`` (report_month 2024-12, history_months 24),
and ``refresh_workbook`` runs with a fixed ``now``. The result is read back with python-calamine
and openpyxl and compared with ``crm_xl.run`` on the same raw data; the package parts a refresh
must not touch are compared as raw zip bytes; bad inputs must raise one clear CrmXlError and
leave the file byte-identical. LibreOffice checks are slow and skipped when soffice is absent.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import re
import shutil
import stat
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import openpyxl
import pandas as pd
import pytest
import xlsxwriter
from conftest import one_error_line
from python_calamine import CalamineWorkbook

import crm_xl
from crm_xl import contract
from crm_xl.cli import main
from crm_xl.errors import ConfigError, CrmXlError, InputError
from crm_xl.io.csv import read_csv
from crm_xl.workbook import layout
from crm_xl.workbook.book import load_raw, new_workbook, set_settings
from crm_xl.workbook.package import find_tables
from crm_xl.workbook.reader import read_inputs
from crm_xl.workbook.refresh import refresh_workbook

GOLDEN = Path(__file__).parent / "fixtures" / "golden"
RAW_NAMES = ("transactions", "customers", "products")
GOLDEN_SETTINGS = {"report_month": "2024-12", "history_months": 24}
NOW = dt.datetime(2025, 2, 3, 4, 5, 6)
WRITTEN_TABLES = (*layout.OUTPUT_TABLES, *layout.CHART_TABLES, layout.STATUS_TABLE.name)


# --- helpers ---------------------------------------------------------------------------------------


def golden_raw() -> dict[str, pd.DataFrame]:
    return {name: read_csv(GOLDEN / f"{name}.csv", name) for name in RAW_NAMES}


def make_book(path: Path, raw: dict[str, pd.DataFrame] | None = None, check: bool = True,
              **settings: object) -> Path:
    """A fresh workbook at ``path`` holding ``raw`` (default: the golden fixture) and the golden Config."""
    new_workbook(path)
    load_raw(path, golden_raw() if raw is None else raw, check=check)   # check=False: a broken Raw on purpose
    set_settings(path, {**GOLDEN_SETTINGS, **settings})
    return path


def raw_entries(path: Path) -> dict[str, bytes]:
    """Each zip entry's stored (compressed) bytes, as they sit in the file."""
    out = {}
    with zipfile.ZipFile(path) as zf, open(path, "rb") as fh:
        for info in zf.infolist():
            fh.seek(info.header_offset + 26)
            name_len, extra_len = int.from_bytes(fh.read(2), "little"), int.from_bytes(fh.read(2), "little")
            fh.seek(info.header_offset + 30 + name_len + extra_len)
            out[info.filename] = fh.read(info.compress_size)
    return out


def parts(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as zf:
        return {info.filename: zf.read(info) for info in zf.infolist()}


def folder_state(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


def norm(value: object) -> object:
    """A cell value in one comparable form: None for blank, float for numbers, date for midnight datetimes."""
    if value is None or value is pd.NA or value is pd.NaT or (isinstance(value, str) and value == ""):
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | float | np.integer | np.floating):
        return float(value)
    if isinstance(value, dt.datetime | pd.Timestamp):
        value = pd.Timestamp(value).to_pydatetime()
        return value.date() if value.time() == dt.time(0) else value
    return value


def rows_of(frame: pd.DataFrame) -> list[list[object]]:
    return [[norm(v) for v in row] for row in frame.astype(object).itertuples(index=False)]


def same(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    return a == b


def assert_rows_equal(name: str, got: list[list[object]], want: list[list[object]]) -> None:
    assert len(got) == len(want), f"{name}: {len(got)} rows in the workbook, {len(want)} expected"
    bad = [(i, j, g, w) for i, (grow, wrow) in enumerate(zip(got, want, strict=True))
           for j, (g, w) in enumerate(zip(grow, wrow, strict=True)) if not same(g, w)]
    assert not bad, f"{name}: {len(bad)} cells differ, first (row, col, workbook, expected): {bad[:5]}"


def calamine_tables(path: Path) -> dict[str, pd.DataFrame]:
    """Every Excel table of the workbook as read by python-calamine (values normalised with :func:`norm`)."""
    book = CalamineWorkbook.from_path(str(path), load_tables=True)
    try:
        out = {}
        for name in book.table_names:
            table = book.get_table_by_name(name)
            rows = [[norm(v) for v in row] for row in table.to_python()]
            rows = [r for r in rows if any(v is not None for v in r)]  # an empty table keeps one blank row
            out[name] = pd.DataFrame(rows, columns=list(table.columns), dtype=object)
        return out
    finally:
        book.close()


def openpyxl_tables(path: Path, names: list[str]) -> dict[str, pd.DataFrame]:
    """The named tables as read by openpyxl (its own XML reader, independent of calamine)."""
    wb = openpyxl.load_workbook(path, keep_vba=True)
    out = {}
    for ws in wb.worksheets:
        for table in ws.tables.values():
            name = table.displayName
            if name not in names:
                continue
            cells = [[norm(c.value) for c in row] for row in ws[table.ref]]
            body = [r for r in cells[1:] if any(v is not None for v in r)]
            out[name] = pd.DataFrame(body, columns=[str(h) for h in cells[0]], dtype=object)
    wb.close()
    return out


def expected_sheet_tables(result: dict[str, pd.DataFrame], header_row: int = 1) -> dict[str, pd.DataFrame]:
    """What the refresh should write for ``crm_xl.run``'s result: data_quality rows as sheet rows."""
    quality = result["data_quality"].copy()
    for i, row in quality.iterrows():
        if row["example_rows"] and row["table"] in RAW_NAMES:
            quality.at[i, "example_rows"] = ", ".join(str(int(p) + header_row)
                                                      for p in row["example_rows"].split(", "))
    return {**result, "data_quality": quality}


def status_of(path: Path) -> dict[str, str]:
    frame = calamine_tables(path)[layout.STATUS_TABLE.name]
    return dict(zip(frame["item"], frame["value"], strict=True))


def quality_rows(result: dict[str, pd.DataFrame], rule: str) -> pd.DataFrame:
    quality = result["data_quality"]
    return quality[quality["rule"] == rule]


def edit_part(path: Path, part: str, edit) -> None:
    """Rewrite one part of the zip (as a user's other tool would), the rest unchanged."""
    tmp = path.with_name(path.name + ".edit")
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as out:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == part:
                new = edit(data)
                assert new != data, f"the edit did not change {part}"
                data = new
            out.writestr(info, data)
    tmp.replace(path)


# --- fixtures ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def books(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``loaded``: the golden data and Config in a fresh workbook; ``refreshed``: the same, refreshed once."""
    folder = tmp_path_factory.mktemp("books")
    loaded = make_book(folder / "loaded.xlsm")
    refreshed = folder / "refreshed.xlsm"
    shutil.copy2(loaded, refreshed)
    refresh_workbook(refreshed, now=NOW)
    return {"loaded": loaded, "refreshed": refreshed}


@pytest.fixture
def loaded(books: dict[str, Path], tmp_path: Path) -> Path:
    """A private copy of the loaded (not yet refreshed) golden workbook."""
    return Path(shutil.copy2(books["loaded"], tmp_path / "book.xlsm"))


@pytest.fixture(scope="module")
def expected(books: dict[str, Path]) -> dict[str, pd.DataFrame]:
    """crm_xl.run on the raw tables and settings read back from the workbook, the way the refresh reads them."""
    inputs = read_inputs(books["loaded"])
    return crm_xl.run(**inputs.raw, config=inputs.settings)


# --- 1. end to end ------------------------------------------------------------------------------------


def test_load_round_trip_gives_the_same_outputs_as_the_csv_files(expected: dict[str, pd.DataFrame]) -> None:
    """Loading the CSVs into Raw and reading them back loses nothing the core uses."""
    from_csv = crm_xl.run(**golden_raw(), config=dict(GOLDEN_SETTINGS))
    for name in contract.TABLE_NAMES:
        if name == "run_info":
            continue  # input row counts and timings
        assert_rows_equal(name, rows_of(expected[name]), rows_of(from_csv[name]))


def test_every_output_table_holds_the_cores_result(books: dict[str, Path], expected: dict[str, pd.DataFrame]) -> None:
    got = calamine_tables(books["refreshed"])
    want = expected_sheet_tables(expected)
    customer_columns = list(read_csv(GOLDEN / "customers.csv", "customers").columns)
    for name in layout.OUTPUT_TABLES:    # the sheets; rejected_lines is a file beside the book
        assert name in got, f"no Excel table {name} in the refreshed workbook"
        columns, spec = list(got[name].columns), contract.columns(name)
        if name == "customer_snapshot":
            assert columns[:len(spec)] == spec
            assert set(columns[len(spec):]) <= set(customer_columns), "extra snapshot columns are master columns"
        else:
            assert columns == spec, name
        assert columns == [str(c) for c in want[name].columns], name
        if name == "run_info":
            assert len(got[name]) == len(want[name])
            continue
        assert_rows_equal(name, rows_of(got[name]), rows_of(want[name]))


def test_openpyxl_reads_the_same_tables_as_calamine(books: dict[str, Path]) -> None:
    names = [*layout.OUTPUT_TABLES, *layout.CHART_TABLES, layout.STATUS_TABLE.name, layout.LOG_TABLE.name]
    by_calamine = calamine_tables(books["refreshed"])
    by_openpyxl = openpyxl_tables(books["refreshed"], names)
    assert sorted(by_openpyxl) == sorted(names)
    for name in names:
        assert list(by_openpyxl[name].columns) == list(by_calamine[name].columns), name
        assert_rows_equal(name, rows_of(by_openpyxl[name]), rows_of(by_calamine[name]))


def test_chart_status_and_log_tables(books: dict[str, Path], expected: dict[str, pd.DataFrame]) -> None:
    got = calamine_tables(books["refreshed"])
    for name, frame in layout.chart_tables(expected).items():
        assert list(got[name].columns) == list(frame.columns)
        assert_rows_equal(name, rows_of(got[name]), rows_of(frame))
    status = status_of(books["refreshed"])
    assert list(status) == list(layout.STATUS_ITEMS)
    assert status["report month"] == "2024-12"
    assert status["data through"] == "2025-01-02"      # the golden extract runs past the report month
    assert status["customers"] == f"{len(expected['customer_snapshot']):,}" == "19"
    assert status["last refresh"] == NOW.strftime("%Y-%m-%d %H:%M:%S")
    assert status["rows read"] == "transactions 353, customers 21, products 5"
    # the golden extract's two, and the CLV view's: 19 customers are too few for its models
    assert status["status"].startswith("OK with 3 data-quality warnings")
    log = got[layout.LOG_TABLE.name]
    assert list(log["time"]) == [NOW] * 5
    assert list(log["level"]) == ["info", "warning", "warning", "warning", "info"]
    assert log["message"].iloc[0] == "refresh: transactions 353 rows, customers 21 rows, products 5 rows read"
    assert "unknown_customer x1 (rows 266)" in log["message"].iloc[1]  # G99 sits on sheet row 266
    assert "clv_not_fitted" in log["message"].iloc[3]
    assert log["message"].iloc[4].startswith("refresh done in ") and log["message"].iloc[4].endswith("19 customers")


def test_charts_cover_every_refreshed_month(books: dict[str, Path], expected: dict[str, pd.DataFrame]) -> None:
    """The template's charts point at their tables' one blank row; after a refresh they span all months
    (the Charts sheet's chart tables, the KPIs sheet's kpis table below its headline block, the retention
    curve: every month since of its table)."""
    chart_tables = layout.chart_tables(expected)
    months = len(chart_tables["chart_tier_mix"])
    assert len(expected["kpis"]) == months
    with zipfile.ZipFile(books["refreshed"]) as package:
        charts = [package.read(n).decode() for n in sorted(package.namelist(), key=lambda n: (len(n), n))
                  if re.fullmatch(r"xl/charts/chart\d+\.xml", n)]
    assert len(charts) == len(layout.ALL_CHARTS)
    for xml, spec in zip(charts, layout.ALL_CHARTS, strict=True):
        table = spec.source
        first = table.row + 2
        sheet = f"'{table.sheet}'" if " " in table.sheet else table.sheet     # Excel quotes names with spaces
        # every month (or month since, or holdout row) of its refreshed table, or the rows a fixed table
        # always has
        rows = spec.min_rows or len(chart_tables[spec.table] if spec.table in chart_tables else expected[spec.table])
        if not rows:
            continue        # an empty table (no CLV fit on so few customers): the template's row stays
        assert f"<c:f>{sheet}!$A${first}:$A${first + rows - 1}</c:f>" in xml, spec
        assert f"{sheet}!$A${first}</c:f>" not in xml
        assert xml.count("<c:val>") == len(spec.series)


def test_data_quality_rows_are_sheet_rows(books: dict[str, Path]) -> None:
    quality = calamine_tables(books["refreshed"])["data_quality"].set_index("rule")
    # transactions.csv line 266 (header = line 1) holds G99; the table's header is sheet row 1 too
    assert quality.loc["unknown_customer", "example_rows"] == "266"
    assert quality.loc["unknown_product", "example_rows"] == "267"
    with zipfile.ZipFile(books["refreshed"]) as zf:
        xml = zf.read(find_tables(books["refreshed"])["tbl_transactions"].sheet_part).decode()
    assert re.search(r'<row r="266"[^>]*>.*?G99.*?</row>', xml)


def test_golden_history_in_the_workbook_matches_the_answer_key(books: dict[str, Path]) -> None:
    history = calamine_tables(books["refreshed"])["customer_history"]
    answer = pd.read_csv(GOLDEN / "expected_history.csv", dtype=str, keep_default_na=False)
    assert len(history) == len(answer) == 456

    def text(value: object, kind: str) -> str:
        if value is None:
            return ""
        if kind == "month":
            return value.strftime("%Y-%m")
        if kind == "date":
            return value.strftime("%Y-%m-%d")
        return str(value)

    types = {c: t for c, t, _ in contract.TABLES["customer_history"][1]}
    got = history.assign(report_month=[text(v, "month") for v in history["report_month"]])
    got = got.set_index(["report_month", "customer_id"]).loc[list(zip(answer["report_month"], answer["customer_id"],
                                                                          strict=True))]
    problems = []
    for column in answer.columns[2:]:
        for (key, want), have in zip(zip(got.index, answer[column], strict=True), got[column], strict=True):
            if types[column] in ("integer", "decimal"):
                ok = (want == "" and have is None) or (want != "" and have is not None
                                                       and math.isclose(have, float(want), rel_tol=1e-6, abs_tol=1e-6))
            else:
                ok = text(have, types[column]) == want
            if not ok:
                problems.append(f"{key} {column}: expected {want!r}, got {have!r}")
    assert not problems, f"{len(problems)} differences, first: {problems[:10]}"


# --- 2. what a refresh must not change ----------------------------------------------------------------


def test_refresh_keeps_vba_button_raw_config_and_pivots_byte_identical(books: dict[str, Path]) -> None:
    before, after = raw_entries(books["loaded"]), raw_entries(books["refreshed"])
    tables = find_tables(books["loaded"])
    kept = {"xl/vbaProject.bin", "[Content_Types].xml", "xl/workbook.xml", "xl/_rels/workbook.xml.rels"}
    kept |= {tables[t.name].sheet_part for t in layout.RAW_TABLES.values()}
    kept |= {tables[t.name].table_part for t in layout.RAW_TABLES.values()}
    kept |= {tables[layout.CONFIG_TABLE.name].sheet_part}
    kept |= {n for n in before if n.startswith(("xl/drawings/", "xl/pivotCache/", "xl/pivotTables/", "xl/theme/"))}
    kept |= {n for n in before if n.startswith("xl/worksheets/_rels/")}
    assert any(n.endswith(".vml") for n in kept), "the template has a VML drawing (the Refresh button)"
    assert any(n.startswith("xl/pivotTables/") for n in kept)
    changed = sorted(n for n in kept if before[n] != after.get(n))
    assert not changed, f"a refresh changed parts it must keep: {changed}"
    assert list(before) == list(after), "entries were added, dropped or reordered"
    # styles.xml may change only by formats added: every cell format of before is still there, in order
    if before["xl/styles.xml"] != after["xl/styles.xml"]:
        xfs_before = re.search(rb"<cellXfs\b.*?</cellXfs>", parts(books["loaded"])["xl/styles.xml"], re.S).group()
        xfs_after = re.search(rb"<cellXfs\b.*?</cellXfs>", parts(books["refreshed"])["xl/styles.xml"], re.S).group()
        old = re.findall(rb"<xf\b.*?(?:/>|</xf>)", xfs_before, re.S)
        assert re.findall(rb"<xf\b.*?(?:/>|</xf>)", xfs_after, re.S)[:len(old)] == old


def test_vba_modules_survive_the_refresh(books: dict[str, Path]) -> None:
    from oletools.olevba import VBA_Parser

    parser = VBA_Parser(str(books["refreshed"]))
    try:
        modules = {name.rsplit(".", 1)[0]: code for _, _, name, code in parser.extract_macros()}
    finally:
        parser.close()
    assert {"CrmXl", "xlwings_udfs", "xlwings"} <= set(modules)
    assert "RunPython" in modules["CrmXl"]
    with zipfile.ZipFile(books["refreshed"]) as zf:
        assert "macroEnabled" in zf.read("[Content_Types].xml").decode()
        assert zf.testzip() is None


# --- 3. twice ------------------------------------------------------------------------------------------


def test_refreshing_twice_gives_identical_output_sheets(books: dict[str, Path], tmp_path: Path) -> None:
    first = books["refreshed"]
    second = Path(shutil.copy2(first, tmp_path / "twice.xlsm"))
    refresh_workbook(second, now=NOW)
    tables = find_tables(first)
    a, b = parts(first), parts(second)
    for name in WRITTEN_TABLES:
        info = tables[name.lower()]
        if name != layout.STATUS_TABLE.name:    # its refresh id is new at each refresh
            assert a[info.sheet_part] == b[info.sheet_part], f"sheet {info.sheet} differs after a second refresh"
        assert a[info.table_part] == b[info.table_part], f"table part of {name} differs after a second refresh"
    status_a, status_b = status_of(first), status_of(second)
    assert status_a.pop("refresh id") != status_b.pop("refresh id") and status_a == status_b
    log_part, start_part = tables[layout.LOG_TABLE.name].sheet_part, tables[layout.STATUS_TABLE.name].sheet_part
    assert sorted(n for n in a if a[n] != b.get(n)) == sorted({log_part, tables["tbl_log"].table_part, start_part})
    log_a, log_b = calamine_tables(first)["tbl_log"], calamine_tables(second)["tbl_log"]
    assert len(log_b) == 2 * len(log_a)
    # the log keeps the first refresh's lines as they were, then adds the second's; only the
    # elapsed seconds may differ between the two refreshes (they follow the machine's load)
    assert rows_of(log_b.iloc[:len(log_a)]) == rows_of(log_a)
    assert without_timings(log_b.iloc[len(log_a):]) == without_timings(log_a)


ELAPSED = re.compile(r"done in \d+\.\d s")


def without_timings(log: pd.DataFrame) -> list[list[object]]:
    """Log rows with the elapsed seconds masked, after checking each is where it belongs."""
    rows = rows_of(log)
    assert sum(bool(ELAPSED.search(str(row[-1]))) for row in rows) == 1, "one 'done in N s' line per refresh"
    return [[*row[:-1], ELAPSED.sub("done in <elapsed> s", str(row[-1]))] for row in rows]


# --- 4. bad input ----------------------------------------------------------------------------------------


def assert_refresh_fails(book: Path, error: type[CrmXlError], *needles: str) -> str:
    """The refresh raises ``error`` naming every needle; the folder (the workbook included) is unchanged."""
    folder = book.parent
    before = folder_state(folder) if folder.is_dir() else {}
    with pytest.raises(error) as caught:
        refresh_workbook(book, now=NOW)
    message = str(caught.value)
    for needle in needles:
        assert needle in message, f"{needle!r} not in {message!r}"
    assert "\n" not in message
    if folder.is_dir():
        assert folder_state(folder) == before, "the refresh changed or left files behind"
    return message


def config_cell(key: str) -> str:
    """The value cell of a setting on the Config sheet, from the layout (not from the reader)."""
    index = [row[0] for row in layout.config_rows()].index(key)
    letter = chr(ord("A") + layout.CONFIG_TABLE.col + 1)
    return f"Config!{letter}{layout.CONFIG_TABLE.row + 2 + index}"


def test_bad_config_value_names_its_cell(loaded: Path) -> None:
    set_settings(loaded, {"measure": "volume"})
    message = assert_refresh_fails(loaded, ConfigError, "measure", config_cell("measure"), "volume")
    assert config_cell("measure") == "Config!B11"
    assert "units" in message


def test_contradicting_thresholds_name_the_cell_that_was_changed(loaded: Path) -> None:
    set_settings(loaded, {"t_mid": 300})          # above t_mid_high's default 200
    message = assert_refresh_fails(loaded, ConfigError, config_cell("t_mid"), "t_mid (300) <= t_mid_high (200)")
    assert config_cell("t_mid_high") not in message


def test_bad_history_rows_setting_names_its_cell(loaded: Path) -> None:
    set_settings(loaded, {"history_rows_in_sheet": "lots"})
    assert_refresh_fails(loaded, ConfigError, "history_rows_in_sheet", config_cell("history_rows_in_sheet"))


def test_renamed_required_column(tmp_path: Path) -> None:
    raw = golden_raw()
    raw["transactions"] = raw["transactions"].rename(columns={"quantity": "qty"})
    book = make_book(tmp_path / "book.xlsm", raw, check=False)
    assert_refresh_fails(book, InputError, layout.RAW_TRANSACTIONS, "tbl_transactions", "'quantity'", "qty")


def test_text_in_a_number_column_is_a_data_quality_row(tmp_path: Path) -> None:
    raw = golden_raw()
    tx = raw["transactions"].astype({"quantity": object})
    tx.loc[9, "quantity"] = "twelve"            # data row 10 -> sheet row 11
    raw["transactions"] = tx
    book = make_book(tmp_path / "book.xlsm", raw)
    result = refresh_workbook(book, now=NOW).tables
    bad = quality_rows(result, "bad_quantity")
    assert (bad["rows"].tolist(), bad["example_rows"].tolist(), bad["example_values"].tolist()) == (
        [1], ["11"], ["twelve"])
    sheet = calamine_tables(book)["data_quality"].set_index("rule")
    assert sheet.loc["bad_quantity", "example_rows"] == "11"


def test_excel_error_value_in_a_date_cell(loaded: Path) -> None:
    part = find_tables(loaded)["tbl_transactions"].sheet_part
    edit_part(loaded, part, lambda xml: re.sub(rb'<c r="B3"( s="\d+")?>(<v>[^<]*</v>)?</c>',
                                               rb'<c r="B3"\1 t="e"><v>#N/A</v></c>', xml, count=1))
    inputs = read_inputs(loaded)
    assert inputs.raw["transactions"].loc[3, "invoice_date"] == "#N/A"
    assert inputs.raw["transactions"].loc[2, "invoice_date"] is not None
    result = refresh_workbook(loaded, now=NOW).tables
    bad = quality_rows(result, "error_value")
    assert (bad["table"].tolist(), bad["column"].tolist(), bad["rows"].tolist(), bad["example_rows"].tolist(),
            bad["example_values"].tolist()) == (["transactions"], ["invoice_date"], [1], ["3"], ["#N/A"])
    assert quality_rows(result, "missing_date").empty and quality_rows(result, "bad_date").empty


def test_error_value_in_the_first_data_row(loaded: Path) -> None:
    part = find_tables(loaded)["tbl_transactions"].sheet_part
    edit_part(loaded, part, lambda xml: re.sub(rb'<c r="E2"( s="\d+")?>(<v>[^<]*</v>)?</c>',
                                               rb'<c r="E2"\1 t="e"><v>#VALUE!</v></c>', xml, count=1))
    result = refresh_workbook(loaded, now=NOW).tables
    bad = quality_rows(result, "error_value")
    assert (bad["column"].tolist(), bad["example_rows"].tolist(), bad["example_values"].tolist()) == (
        ["quantity"], ["2"], ["#VALUE!"])
    assert quality_rows(result, "bad_quantity").empty


def test_blank_rows_inside_a_table_are_skipped(tmp_path: Path) -> None:
    raw = golden_raw()
    tx = raw["transactions"].astype(object)
    blank = pd.DataFrame([[None] * tx.shape[1]] * 2, columns=tx.columns, dtype=object)
    tx.loc[20, "quantity"] = "n/a"              # data row 21 -> sheet row 22, then 2 blank rows above it: 24
    raw["transactions"] = pd.concat([tx.iloc[:5], blank, tx.iloc[5:]], ignore_index=True)
    book = make_book(tmp_path / "book.xlsm", raw)
    inputs = read_inputs(book)
    assert len(inputs.raw["transactions"]) == 353
    assert 7 not in inputs.raw["transactions"].index and 8 not in inputs.raw["transactions"].index
    result = refresh_workbook(book, now=NOW).tables
    assert quality_rows(result, "bad_quantity")["example_rows"].tolist() == ["24"]
    assert quality_rows(result, "unknown_customer")["example_rows"].tolist() == ["268"]
    assert status_of(book)["rows read"] == "transactions 353, customers 21, products 5"


def test_not_a_workbook(tmp_path: Path) -> None:
    book = tmp_path / "book.xlsm"
    book.write_text("invoice_id,invoice_date\n1,2024-01-01\n")
    assert_refresh_fails(book, InputError, "book.xlsm", "not an Excel workbook")


def test_a_zip_that_is_not_a_workbook(tmp_path: Path) -> None:
    book = tmp_path / "book.xlsm"
    with zipfile.ZipFile(book, "w") as zf:
        zf.writestr("hello.txt", "not a spreadsheet")
    assert_refresh_fails(book, InputError, "book.xlsm")


def test_missing_file(tmp_path: Path) -> None:
    assert_refresh_fails(tmp_path / "nowhere.xlsm", InputError, "file not found", "nowhere.xlsm")


def test_missing_folder(tmp_path: Path) -> None:
    assert_refresh_fails(tmp_path / "no" / "book.xlsm", InputError, "file not found")


def test_workbook_open_in_excel(loaded: Path) -> None:
    (loaded.parent / f"~${loaded.name}").write_bytes(b"\x00" * 162)
    assert_refresh_fails(loaded, InputError, "open in Excel", f"~${loaded.name}")


def test_read_only_file(loaded: Path) -> None:
    """Refused even as root (who may write a 0444 file): no write bit means read-only."""
    loaded.chmod(0o444)
    try:
        assert_refresh_fails(loaded, InputError, "read-only")
    finally:
        loaded.chmod(0o644)


def test_read_only_folder(loaded: Path) -> None:
    folder = loaded.parent
    folder.chmod(0o555)
    try:
        assert_refresh_fails(loaded, InputError, "read-only")
    finally:
        folder.chmod(0o755)


def _config_only_workbook(path: Path, with_raw: bool) -> Path:
    """A workbook with the Config tables (and optionally the Raw tables) but none of the others."""
    wb = xlsxwriter.Workbook(str(path))
    ws = wb.add_worksheet(layout.CONFIG)
    rows = [[k, str(GOLDEN_SETTINGS.get(k, v)), d, h] for k, v, d, h in layout.config_rows()]
    t = layout.CONFIG_TABLE
    ws.add_table(t.row, t.col, t.row + len(rows), t.last_col,
                 {"name": t.name, "data": rows, "columns": [{"header": h} for h in t.headers]})
    seg = layout.SEGMENT_MAP_TABLE
    segs = [list(r) for r in layout.segment_map_rows()]
    ws.add_table(seg.row, seg.col, seg.row + len(segs), seg.last_col,
                 {"name": seg.name, "data": segs, "columns": [{"header": h} for h in seg.headers]})
    if with_raw:
        for name, table in layout.RAW_TABLES.items():
            frame = golden_raw()[name]
            data = [[None if pd.isna(v) else v.to_pydatetime() if isinstance(v, pd.Timestamp) else v for v in row]
                    for row in frame.itertuples(index=False)]
            sheet = wb.add_worksheet(table.sheet)
            sheet.add_table(0, 0, len(frame), frame.shape[1] - 1, {
                "name": table.name, "data": data,
                "columns": [{"header": str(c)} for c in frame.columns]})
    wb.close()
    return path


def test_missing_raw_table(tmp_path: Path) -> None:
    book = _config_only_workbook(tmp_path / "book.xlsm", with_raw=False)
    assert_refresh_fails(book, InputError, "tbl_transactions", f"no sheet '{layout.RAW_TRANSACTIONS}'")


def test_missing_output_tables(tmp_path: Path) -> None:
    """Raw and Config are there but the output sheets are not: a clear error, not a traceback."""
    book = _config_only_workbook(tmp_path / "book.xlsm", with_raw=True)
    assert read_inputs(book).raw["transactions"].shape == (353, 7)
    assert_refresh_fails(book, InputError, "book.xlsm", "customer_snapshot")


def test_table_part_deleted_from_the_package(loaded: Path) -> None:
    info = find_tables(loaded)["tbl_transactions"]
    rels = f"xl/worksheets/_rels/{Path(info.sheet_part).name}.rels"
    edit_part(loaded, rels, lambda xml: re.sub(rb"<Relationship [^>]*/table[^>]*/>", b"", xml))
    assert_refresh_fails(loaded, InputError, "tbl_transactions", layout.RAW_TRANSACTIONS)


# --- 5. history beyond the sheet --------------------------------------------------------------------------


def test_history_rows_in_sheet_keeps_latest_whole_months(loaded: Path, expected: dict[str, pd.DataFrame]) -> None:
    set_settings(loaded, {"history_rows_in_sheet": 50})
    result = refresh_workbook(loaded, now=NOW)
    parquet = loaded.with_name("book_customer_history.parquet")
    assert result.history_file == parquet and parquet.is_file()
    full = pd.read_parquet(parquet)
    assert list(full.columns) == contract.columns("customer_history")
    assert_rows_equal("parquet history", rows_of(full), rows_of(expected["customer_history"]))
    per_month = expected["customer_history"].groupby("report_month", observed=True).size().sort_index()
    kept_months = per_month[per_month[::-1].cumsum()[::-1] <= 50].index
    assert 1 <= len(kept_months) < len(per_month)
    sheet = calamine_tables(loaded)["customer_history"]
    assert len(sheet) <= 50
    assert sorted(set(sheet["report_month"])) == [m.date() for m in kept_months]
    want = expected["customer_history"][expected["customer_history"]["report_month"].isin(kept_months)]
    assert_rows_equal("history in the sheet", rows_of(sheet), rows_of(want))
    assert "book_customer_history.parquet" in status_of(loaded)["status"]
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(parquet.stat().st_mode) == 0o666 & ~umask, "the Parquet file is private (mkstemp's 0600)"
    assert sorted(p.name for p in loaded.parent.iterdir()) == ["book.xlsm", "book_customer_history.parquet",
                                                               "book_rejected_lines.csv"]


def test_history_file_is_not_left_stale(loaded: Path) -> None:
    """Once written, the Parquet file follows every refresh (Power BI may read it), even when all fits."""
    set_settings(loaded, {"history_rows_in_sheet": 50})
    refresh_workbook(loaded, now=NOW)
    set_settings(loaded, {"history_rows_in_sheet": 500000, "report_month": "2024-06"})
    result = refresh_workbook(loaded, now=NOW)
    full = pd.read_parquet(loaded.with_name("book_customer_history.parquet"))
    assert full["report_month"].max() == pd.Timestamp("2024-06-01")
    assert len(full) == len(result.tables["customer_history"]) == len(calamine_tables(loaded)["customer_history"])


def test_new_and_refreshed_workbooks_are_not_private(tmp_path: Path) -> None:
    book = make_book(tmp_path / "book.xlsm")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(book.stat().st_mode) == 0o666 & ~umask
    refresh_workbook(book, now=NOW)
    assert stat.S_IMODE(book.stat().st_mode) == 0o666 & ~umask


def test_set_settings_changes_only_the_config_sheet(loaded: Path) -> None:
    before = raw_entries(loaded)
    set_settings(loaded, {"t_high": 1200, "use_created_date": False, "core_categories": "consumable, pods"})
    after = raw_entries(loaded)
    config_part = find_tables(loaded)[layout.CONFIG_TABLE.name].sheet_part
    assert sorted(n for n in before if before[n] != after[n]) == [config_part]
    settings = read_inputs(loaded).settings
    assert (settings["t_high"], settings["use_created_date"], settings["core_categories"]) == (
        1200, False, "consumable, pods")
    with pytest.raises(InputError, match="no setting"):
        set_settings(loaded, {"no_such_setting": 1})


# --- 6. CLI -------------------------------------------------------------------------------------------------


def test_cli_new_load_refresh(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    book = tmp_path / "book.xlsm"
    assert main(["new", str(book)]) == 0
    assert "Wrote" in capsys.readouterr().out
    args = ["load", str(book)] + [a for n in RAW_NAMES for a in (f"--{n}", str(GOLDEN / f"{n}.csv"))]
    assert main(args) == 0
    assert "transactions 353 rows" in capsys.readouterr().out
    assert main(["refresh", str(book), "--quiet"]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    assert "19 customers" in captured.out and f"Refreshed {book}" in captured.out
    assert main(["refresh", str(book)]) == 0
    err = capsys.readouterr().err
    assert "reading book.xlsm" in err and "writing" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["book.xlsm", "book_rejected_lines.csv"]


def test_cli_new_with_sample(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    book = tmp_path / "sample.xlsm"
    assert main(["new", str(book), "--sample"]) == 0
    assert "sample data" in capsys.readouterr().out
    inputs = read_inputs(book)
    assert len(inputs.raw["transactions"]) > 10_000 and len(inputs.raw["customers"]) > 1_000
    assert main(["new", str(book), "--sample"]) == 2
    one_error_line(capsys, "already exists")


def test_cli_errors_are_one_line(tmp_path: Path, loaded: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["refresh", str(tmp_path / "missing.xlsm"), "--quiet"]) == 2
    one_error_line(capsys, "file not found")
    text = tmp_path / "text.xlsm"
    text.write_text("hello")
    assert main(["refresh", str(text), "--quiet"]) == 2
    one_error_line(capsys, "not an Excel workbook")
    assert main(["load", str(text), "--transactions", str(GOLDEN / "transactions.csv")]) == 2
    one_error_line(capsys, "text.xlsm")
    assert text.read_text() == "hello"
    assert main(["load", str(loaded)]) == 2
    one_error_line(capsys, "--transactions")
    assert main(["load", str(loaded), "--transactions", str(tmp_path / "none.csv")]) == 2
    one_error_line(capsys, "none.csv")
    set_settings(loaded, {"measure": "volume"})
    before = loaded.read_bytes()
    assert main(["refresh", str(loaded), "--quiet"]) == 2
    one_error_line(capsys, config_cell("measure"), "volume")
    lock = loaded.parent / f"~${loaded.name}"
    lock.write_bytes(b"")
    assert main(["refresh", str(loaded), "--quiet"]) == 2
    one_error_line(capsys, "open in Excel")
    assert main(["load", str(loaded), "--transactions", str(GOLDEN / "transactions.csv")]) == 2
    one_error_line(capsys, "open in Excel")
    lock.unlink()
    assert loaded.read_bytes() == before
    bare = _config_only_workbook(tmp_path / "bare.xlsm", with_raw=True)
    assert main(["refresh", str(bare), "--quiet"]) == 2
    one_error_line(capsys, "customer_snapshot")


@pytest.mark.slow
def test_cli_sample_workbook_refresh(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The README's main command: a sample workbook made and refreshed headless (3,000 customers, ~4 s)."""
    book = tmp_path / "sample.xlsm"
    assert main(["new", str(book), "--sample"]) == 0
    assert main(["refresh", str(book), "--quiet"]) == 0
    assert "Refreshed" in capsys.readouterr().out
    status = status_of(book)
    assert status["report month"] == "2025-12" and status["status"].startswith("OK")
    tables = calamine_tables(book)
    assert all(len(tables[name]) > 0 for name in layout.OUTPUT_TABLES)
    rejected = pd.read_csv(book.with_name("sample_rejected_lines.csv"), encoding="utf-8-sig")
    assert len(rejected) == rule_rows(tables["data_quality"], "rejected_lines") > 0


def rule_rows(quality: pd.DataFrame, rule: str) -> int:
    return int(quality.loc[quality["rule"] == rule, "rows"].iloc[0])


# --- 7. LibreOffice ---------------------------------------------------------------------------------------------

SOFFICE = shutil.which("soffice")
needs_soffice = pytest.mark.skipif(SOFFICE is None, reason="LibreOffice (soffice) is not installed: the "
                                   "open-and-convert checks need it (install libreoffice-calc to run them)")


def soffice_convert(book: Path, target: str, out: Path, profile: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SOFFICE, f"-env:UserInstallation={profile.as_uri()}", "--headless", "--norestore",
                           "--convert-to", target, "--outdir", str(out), str(book)],
                          capture_output=True, text=True, timeout=240, check=False)


@pytest.fixture(scope="module")
def small_refreshed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A refreshed workbook of a small sample (300 customers, 14 months)."""
    from crm_xl.io.sample import generate

    book = tmp_path_factory.mktemp("lo") / "small.xlsm"
    new_workbook(book)
    load_raw(book, generate(n_customers=300, months=14))
    refresh_workbook(book, now=NOW)
    return book


@pytest.mark.slow
@needs_soffice
def test_libreoffice_converts_the_refreshed_workbook_to_pdf(books: dict[str, Path], tmp_path: Path) -> None:
    """Every sheet printed (the golden book: ~2 s; the 300-customer sample takes about a minute)."""
    done = soffice_convert(books["refreshed"], "pdf", tmp_path / "pdf", tmp_path / "profile")
    pdf = tmp_path / "pdf" / "refreshed.pdf"
    assert done.returncode == 0, done.stderr
    assert pdf.is_file() and pdf.stat().st_size > 10_000, (done.stdout, done.stderr)
    assert pdf.read_bytes()[:5] == b"%PDF-"


@pytest.mark.slow
@needs_soffice
def test_libreoffice_exports_the_customer_snapshot_sheet_as_csv(small_refreshed: Path, tmp_path: Path) -> None:
    sheet_no = layout.SHEETS.index(layout.OUTPUT_SHEETS["customer_snapshot"]) + 1
    # CSV filter tokens: separator, quote, UTF-8, first line, cell formats, language, quoted text, detect
    # special numbers, "save as shown", formulas, remove space, then the sheet number (LibreOffice >= 7.2)
    target = f"csv:Text - txt - csv (StarCalc):44,34,76,1,,0,false,true,false,false,false,{sheet_no}"
    done = soffice_convert(small_refreshed, target, tmp_path / "csv", tmp_path / "profile")
    files = list((tmp_path / "csv").glob("*.csv"))
    assert done.returncode == 0 and len(files) == 1, (done.stdout, done.stderr)
    frame = pd.read_csv(files[0], dtype=str, keep_default_na=False)
    spec = contract.columns("customer_snapshot")
    assert list(frame.columns[:len(spec)]) == spec
    snapshot = calamine_tables(small_refreshed)["customer_snapshot"]
    assert len(frame) == len(snapshot)
    assert list(frame["customer_id"]) == [str(v) for v in snapshot["customer_id"]]


# --- raw data from files named on Config -------------------------------------------------------------


def test_raw_tables_can_come_from_files_named_on_config(tmp_path: Path, expected: dict[str, pd.DataFrame]) -> None:
    """For histories beyond a sheet: CSV (relative to the workbook) and Parquet files replace the tables."""
    book = new_workbook(tmp_path / "files.xlsm")
    shutil.copy(GOLDEN / "transactions.csv", tmp_path / "tx.csv")
    read_csv(GOLDEN / "customers.csv", "customers").to_parquet(tmp_path / "customers.parquet")
    load_raw(book, {"products": read_csv(GOLDEN / "products.csv", "products")})
    set_settings(book, {**GOLDEN_SETTINGS, "transactions_file": "tx.csv",
                        "customers_file": str(tmp_path / "customers.parquet")})
    inputs = read_inputs(book)
    assert len(inputs.raw["transactions"]) == 353 and inputs.first_data_row["transactions"] is None
    result = refresh_workbook(book, now=NOW)
    got = result.tables["customer_history"].sort_values(["report_month", "customer_id"]).reset_index(drop=True)
    want = expected["customer_history"].sort_values(["report_month", "customer_id"]).reset_index(drop=True)
    pd.testing.assert_series_equal(got["m_total"], want["m_total"])
    pd.testing.assert_series_equal(got["value_tier"].astype(str), want["value_tier"].astype(str))
    # rows of a CSV file named on Config are its line numbers (header = line 1), as in a CSV run
    g99 = next(i for i, line in enumerate((tmp_path / "tx.csv").read_text().splitlines(), start=1) if ",G99," in line)
    quality = result.tables["data_quality"].set_index("rule")
    assert quality.loc["unknown_customer", "example_rows"] == str(g99)
    rejected = result.tables["rejected_lines"]
    assert rejected.loc[rejected["rule"] == "unknown_customer", "row"].tolist() == [g99]


def test_a_missing_raw_file_names_its_config_cell(tmp_path: Path) -> None:
    book = make_book(tmp_path / "missing.xlsm", transactions_file="nowhere.csv")
    before = book.read_bytes()
    with pytest.raises(InputError, match=r"Config!B\d+ does not exist"):
        refresh_workbook(book, now=NOW)
    assert book.read_bytes() == before


# --- CSV dialects of the files read (Excel in other locales) -----------------------------------------


def write_pt_csv(path: Path, frame: pd.DataFrame) -> Path:
    """A table as Excel saves "CSV" in a Portuguese locale: ; between fields, decimal commas, Windows-1252."""
    frame.to_csv(path, index=False, sep=";", decimal=",", encoding="cp1252", lineterminator="\r\n")
    return path


def test_cli_load_reads_a_semicolon_csv(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    book = new_workbook(tmp_path / "book.xlsm")
    customers = golden_raw()["customers"]
    customers.loc[0, "city"] = "Évora"
    write_pt_csv(tmp_path / "tx.csv", golden_raw()["transactions"])
    write_pt_csv(tmp_path / "customers.csv", customers)
    assert main(["load", str(book), "--transactions", str(tmp_path / "tx.csv"),
                 "--customers", str(tmp_path / "customers.csv")]) == 0
    captured = capsys.readouterr()
    assert "transactions 353 rows (delimiter ';', decimal comma)" in captured.out
    assert "customers 21 rows (delimiter ';', cp1252)" in captured.out
    assert "customers.csv is not UTF-8" in captured.err
    raw = read_inputs(book).raw
    assert list(raw["transactions"].columns) == list(golden_raw()["transactions"].columns)
    revenue = golden_raw()["transactions"]["revenue"].sum()
    assert raw["transactions"]["revenue"].astype(float).sum() == pytest.approx(revenue)
    assert raw["customers"]["city"].iloc[0] == "Évora"


def test_cli_load_csv_settings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    book = new_workbook(tmp_path / "book.xlsm")
    write_pt_csv(tmp_path / "tx.csv", golden_raw()["transactions"])
    before = book.read_bytes()
    assert main(["load", str(book), "--transactions", str(tmp_path / "tx.csv"), "--set", "csv_encoding=klingon"]) == 2
    one_error_line(capsys, "Config 'csv_encoding'", "klingon")
    assert book.read_bytes() == before
    assert main(["load", str(book), "--transactions", str(tmp_path / "tx.csv"), "--set", "csv_delimiter=;",
                 "--set", "csv_decimal=,"]) == 0
    assert read_inputs(book).raw["transactions"]["revenue"].iloc[1] == 238.8


def test_files_named_on_config_in_excel_pt_csv(tmp_path: Path, expected: dict[str, pd.DataFrame]) -> None:
    """The *_file settings read CSV the same way; a Windows-1252 file is a warning on Data Quality and in the Log."""
    book = new_workbook(tmp_path / "pt.xlsm")
    raw = golden_raw()
    write_pt_csv(tmp_path / "tx.csv", raw["transactions"])
    customers = raw["customers"]
    customers.loc[0, "customer_name"] = "João"
    write_pt_csv(tmp_path / "customers.csv", customers)
    load_raw(book, {"products": raw["products"]})
    set_settings(book, {**GOLDEN_SETTINGS, "transactions_file": "tx.csv", "customers_file": "customers.csv"})
    result = refresh_workbook(book, now=NOW)
    got = result.tables["customer_history"].sort_values(["report_month", "customer_id"]).reset_index(drop=True)
    want = expected["customer_history"].sort_values(["report_month", "customer_id"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(got, want)
    note = quality_rows(result.tables, "not_utf8")
    assert (note["table"].tolist(), note["severity"].tolist()) == (["customers"], ["warning"])
    tables = calamine_tables(book)
    assert "not_utf8" in tables["data_quality"]["rule"].tolist()
    assert any("customers.csv is not UTF-8" in str(m) for m in tables["tbl_log"]["message"])
    # the same files with the dialect set on Config, decimals read as points: refused, not counted as 0
    set_settings(book, {"csv_delimiter": ";", "csv_encoding": "cp1252", "csv_decimal": "."})
    assert_refresh_fails(book, InputError, "transactions.", "are not numbers", "csv_decimal")


@pytest.mark.parametrize(("key", "value"), [("csv_delimiter", "ab"), ("csv_decimal", ";"), ("csv_encoding", "x")])
def test_bad_csv_setting_names_its_cell(loaded: Path, key: str, value: str) -> None:
    set_settings(loaded, {key: value})
    assert_refresh_fails(loaded, ConfigError, f"Config '{key}'", config_cell(key), repr(value))


def test_rejected_lines_beside_the_book_name_their_sheet_rows(books: dict[str, Path]) -> None:
    """BOOK_rejected_lines.csv lists G99 and XXX9 at the Raw sheet rows that hold them (read with openpyxl)."""
    book = books["refreshed"]
    rejected = pd.read_csv(book.with_name(f"{book.stem}_rejected_lines.csv"), dtype=str, keep_default_na=False,
                           encoding="utf-8-sig")
    assert sorted(rejected["rule"]) == ["unknown_customer", "unknown_product"]
    sheet = openpyxl.load_workbook(book, read_only=True)[layout.RAW_TRANSACTIONS]
    for row in rejected.itertuples():
        invoice = next(sheet.iter_rows(min_row=int(row.row), max_row=int(row.row), max_col=1, values_only=True))[0]
        assert f"invoice_id={invoice} |" in row.values, (row.row, invoice)
    assert "266" in rejected["row"].tolist()                        # G99, as data_quality says
