"""The live Refresh (crm_xl.excel.refresh) against the real xlwings Book API, through xlwings' remote engine.

``xw.Book(json=payload)`` is the engine behind xlwings Server: it implements the Book/Sheet/Range/Table
API over a JSON description of the workbook and records what would be done in Excel as
``book.json()["actions"]`` (setValues, resizeTable, setNumberFormat, alert, ...). It is part of xlwings
PRO and needs a license key; ``XLWINGS_LICENSE_KEY=noncommercial`` is the documented key for
noncommercial use, which this open-source project's tests are. xlwings checks the key when it is
imported (and when ``xlwings.pro`` is imported), so the fixture below sets it and registers the engine
if xlwings was imported earlier without one. The tests skip when the engine still cannot be loaded.

The payload is what xlwings' VBA client (``Remote.bas``) sends: every sheet's values from A1 (blank
cells null, dates as ISO text "yyyy-mm-ddTHH:MM:SS.000Z"), and per sheet its tables with absolute
addresses of the whole range, header row and data body. It is built from a workbook made by
``new_workbook`` + ``load_raw`` (the golden fixture) + ``set_settings`` (report_month 2024-12,
history_months 24), read with python-calamine. The recorded actions are replayed on a grid of cells to
get each written table, which must equal what the headless refresh writes into a copy of the same file.
"""

from __future__ import annotations

import copy
import datetime as dt
import importlib
import inspect
import math
import os
import re
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from python_calamine import CalamineWorkbook

from crm_xl import contract
from crm_xl.errors import InputError
from crm_xl.io import machine
from crm_xl.io.csv import read_csv
from crm_xl.workbook import layout
from crm_xl.workbook.book import load_raw, new_workbook, set_settings
from crm_xl.workbook.refresh import refresh_workbook
from crm_xl.workbook.sheetxml import column_letter

GOLDEN = Path(__file__).parent / "fixtures" / "golden"
VBA = Path(__file__).resolve().parents[1] / "workbook" / "vba" / "CrmXl.bas"
RAW_NAMES = ("transactions", "customers", "products")
SETTINGS = {"report_month": "2024-12", "history_months": 24}
NOW = dt.datetime(2025, 2, 3, 4, 5, 6)
WRITTEN = (*layout.OUTPUT_TABLES, *layout.CHART_TABLES, layout.STATUS_TABLE.name)
BOOK_NAME = "golden.xlsm"

live = importlib.import_module("crm_xl.excel.refresh")     # the module (crm_xl.excel.refresh is the function)


# --- the remote engine --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def xw():
    """xlwings with its remote engine registered (the key set before xlwings.pro is imported)."""
    with pytest.MonkeyPatch.context() as mp:
        if not os.environ.get("XLWINGS_LICENSE_KEY"):
            mp.setenv("XLWINGS_LICENSE_KEY", "noncommercial")
        import xlwings

        added = None
        if "remote" not in [engine.name for engine in xlwings.engines]:
            try:
                from xlwings.pro import _xlremote
            except Exception as exc:   # LicenseError, ImportError: no usable key / no PRO code
                pytest.skip(f"xlwings' remote engine (xw.Book(json=...)) is unavailable: {exc}")
            added = xlwings.main.Engine(impl=_xlremote.engine)
            xlwings.engines.add(added)
        yield xlwings
        if added is not None:   # leave xlwings as other test modules found it
            xlwings.engines.engines.remove(added)
            xlwings.engines.engines_by_name.pop("remote", None)


# --- building the payload ----------------------------------------------------------------------------


def golden_raw() -> dict[str, pd.DataFrame]:
    return {name: read_csv(GOLDEN / f"{name}.csv", name) for name in RAW_NAMES}


def make_book(path: Path, raw: dict[str, pd.DataFrame] | None = None, check: bool = True,
              **settings: object) -> Path:
    new_workbook(path)
    load_raw(path, golden_raw() if raw is None else raw, check=check)   # check=False: a broken Raw on purpose
    set_settings(path, {**SETTINGS, **settings})
    return path


def _json_value(value: Any) -> Any:
    """A cell value as the VBA client's JSON has it."""
    if value == "":
        return None
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    if isinstance(value, dt.date):
        return f"{value.isoformat()}T00:00:00.000Z"
    if isinstance(value, dt.time | dt.timedelta):
        return str(value)
    return value


def _address(r1: int, c1: int, r2: int, c2: int) -> str:
    """Absolute A1 address from 0-based corners, like VBA's Range.Address."""
    return f"${column_letter(c1)}${r1 + 1}:${column_letter(c2)}${r2 + 1}"


def book_payload(path: Path, **book: Any) -> dict[str, Any]:
    """The JSON xlwings' VBA client would send for the workbook at ``path``."""
    wb = CalamineWorkbook.from_path(str(path), load_tables=True)
    try:
        tables: dict[str, list[dict[str, Any]]] = {name: [] for name in wb.sheet_names}
        for name in wb.table_names:
            table = wb.get_table_by_name(name)
            (first, left), (last, right) = table.start, table.end   # first data cell, last cell (0-based)
            tables[table.sheet].append({
                "name": name, "range_address": _address(first - 1, left, last, right),
                "header_row_range_address": _address(first - 1, left, first - 1, right),
                "data_body_range_address": _address(first, left, last, right),
                "total_row_range_address": None, "show_headers": True, "show_totals": False,
                "table_style": "TableStyleMedium2", "show_autofilter": True,
            })
        sheets = []
        for name in wb.sheet_names:
            sheet = wb.get_sheet_by_name(name)
            rows = [[_json_value(v) for v in row] for row in sheet.to_python()]
            top, left = sheet.start if rows else (0, 0)
            width = left + max((len(r) for r in rows), default=0)
            values = [[None] * width for _ in range(top)] + [[None] * left + r + [None] * (width - left - len(r))
                                                              for r in rows]
            sheets.append({"name": name, "values": values or [[]], "pictures": [], "tables": tables[name]})
    finally:
        wb.close()
    import xlwings

    return {"client": "VBA", "version": xlwings.__version__,
            "book": {"name": BOOK_NAME, "active_sheet_index": 0, "selection": "A1", **book},
            "names": [], "sheets": sheets}


# --- replaying the actions ---------------------------------------------------------------------------


class Replay:
    """The workbook's cells and table ranges after the recorded actions (values only)."""

    def __init__(self, payload: dict[str, Any], actions: list[dict[str, Any]]) -> None:
        self.sheets = [s["name"] for s in payload["sheets"]]
        self.cells = [{(r, c): v for r, row in enumerate(s["values"]) for c, v in enumerate(row) if v is not None}
                      for s in payload["sheets"]]
        self.tables = {t["name"]: (i, t["range_address"]) for i, s in enumerate(payload["sheets"])
                       for t in s["tables"]}
        by_index = {(i, j): t["name"] for i, s in enumerate(payload["sheets"]) for j, t in enumerate(s["tables"])}
        for action in actions:
            func, sheet = action["func"], action["sheet_position"]
            if func == "setValues":
                for dr, row in enumerate(action["values"]):
                    for dc, value in enumerate(row):
                        self.cells[sheet][(action["start_row"] + dr, action["start_column"] + dc)] = value
            elif func == "rangeClearContents":
                for dr in range(action["row_count"]):
                    for dc in range(action["column_count"]):
                        self.cells[sheet].pop((action["start_row"] + dr, action["start_column"] + dc), None)
            elif func == "resizeTable":
                index, address = action["args"]
                self.tables[by_index[(sheet, index)]] = (sheet, address)

    def table(self, name: str) -> tuple[list[str], list[list[Any]]]:
        sheet, address = self.tables[name]
        (r1, c1), (r2, c2) = _tuples(address)
        grid = [[self.cells[sheet].get((r, c)) for c in range(c1, c2 + 1)] for r in range(r1, r2 + 1)]
        return [str(h) for h in grid[0]], grid[1:]


def _tuples(address: str) -> tuple[tuple[int, int], tuple[int, int]]:
    """0-based (row, col) corners of "$A$1:$C$9" or "A1:C9"."""
    found = re.fullmatch(r"\$?([A-Z]+)\$?(\d+)(?::\$?([A-Z]+)\$?(\d+))?", address)
    assert found, address
    a, r, b, s = found.groups()

    def col(letters: str) -> int:
        n = 0
        for ch in letters:
            n = n * 26 + ord(ch) - 64
        return n - 1

    return (int(r) - 1, col(a)), (int(s or r) - 1, col(b or a))


_EXCEL_EPOCH = dt.datetime(1899, 12, 30)


def _norm(value: Any) -> Any:
    """A cell value in one comparable form: what the cell holds (a date is its Excel serial number;
    floats rounded; blanks None)."""
    if value is None or value == "":
        return None
    if isinstance(value, dt.date):
        stamp = value if isinstance(value, dt.datetime) else dt.datetime.combine(value, dt.time())
        return round((stamp - _EXCEL_EPOCH).total_seconds() / 86_400, 9)
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return round(float(value), 9)
    return value


def _rows(rows: list[list[Any]]) -> list[list[Any]]:
    normalised = [[_norm(v) for v in row] for row in rows]
    return [row for row in normalised if any(v is not None for v in row)]


def headless_tables(path: Path) -> dict[str, tuple[list[str], list[list[Any]]]]:
    wb = CalamineWorkbook.from_path(str(path), load_tables=True)
    try:
        return {name: ([str(c) for c in wb.get_table_by_name(name).columns], wb.get_table_by_name(name).to_python())
                for name in (*WRITTEN, layout.LOG_TABLE.name)}
    finally:
        wb.close()


# --- fixtures ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def golden_book(tmp_path_factory) -> Path:
    return make_book(tmp_path_factory.mktemp("live") / BOOK_NAME)


@pytest.fixture(scope="module")
def golden_payload(golden_book: Path) -> dict[str, Any]:
    return book_payload(golden_book)


@pytest.fixture(scope="module")
def headless(golden_book: Path, tmp_path_factory) -> dict[str, tuple[list[str], list[list[Any]]]]:
    copy_path = tmp_path_factory.mktemp("headless") / BOOK_NAME
    shutil.copyfile(golden_book, copy_path)
    refresh_workbook(copy_path, now=NOW)
    return headless_tables(copy_path)


@pytest.fixture(scope="module")
def golden_run(xw, golden_payload: dict[str, Any], tmp_path_factory) -> tuple[list[dict[str, Any]], Replay]:
    """refresh() on the golden payload; the recorded actions and their replay."""
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp_path_factory.mktemp("cwd"))   # the remote book's fullname is its bare name
        book = xw.Book(json=copy.deepcopy(golden_payload))
        live.refresh(book, now=NOW)
    actions = book.json()["actions"]
    return actions, Replay(golden_payload, actions)


def _run(xw, payload: dict[str, Any], where: Path, **kwargs: Any) -> list[dict[str, Any]]:
    """refresh() on a payload (the book is opened last, so it is the remote app's active book)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(where)
        book = xw.Book(json=copy.deepcopy(payload))
        live.refresh(book, now=NOW, **kwargs)
    return book.json()["actions"]


def _funcs(actions: list[dict[str, Any]], func: str) -> list[dict[str, Any]]:
    return [a for a in actions if a["func"] == func]


def _sheet_positions(payload: dict[str, Any], tables: tuple[str, ...]) -> set[int]:
    return {i for i, s in enumerate(payload["sheets"]) for t in s["tables"] if t["name"] in tables}


# --- the live refresh writes what the headless one writes ---------------------------------------------


@pytest.mark.parametrize("name", WRITTEN)
def test_live_tables_equal_headless(golden_run, headless, name: str) -> None:
    _, replay = golden_run
    live_headers, live_rows = replay.table(name)
    headless_headers, headless_rows = headless[name]
    assert live_headers == headless_headers
    if name == layout.STATUS_TABLE.name:     # each refresh has its own id
        live_status, headless_status = dict(_rows(live_rows)), dict(_rows(headless_rows))
        assert live_status.pop("refresh id") != headless_status.pop("refresh id")
        assert live_status == headless_status
        return
    assert _rows(live_rows) == _rows(headless_rows)


def test_golden_run_has_data(golden_run, headless) -> None:
    """The comparison above is not vacuous: the snapshot and history have rows, and the tables resized."""
    actions, replay = golden_run
    assert len(_rows(replay.table("customer_snapshot")[1])) == len(_rows(headless["customer_snapshot"][1])) > 10
    assert len(_rows(replay.table("customer_history")[1])) > 100
    resized = {a["args"][1] for a in _funcs(actions, "resizeTable")}
    assert replay.tables["customer_snapshot"][1] in resized
    assert not _funcs(actions, "alert")


def test_log_appends_refresh_lines(golden_run) -> None:
    _, replay = golden_run
    headers, rows = replay.table(layout.LOG_TABLE.name)
    assert headers == layout.LOG_TABLE.headers
    rows = _rows(rows)
    assert rows[0][0] == _norm(NOW) and rows[0][1] == "info" and rows[0][2].startswith("refresh:")
    assert rows[-1][2].startswith("refresh done in")


def test_text_columns_formatted_as_text_before_values(golden_run, golden_payload) -> None:
    """Strings are protected from becoming formulas/numbers: "@" is set on text columns before values."""
    actions, replay = golden_run
    sheet = replay.tables["customer_snapshot"][0]
    on_sheet = [(i, a) for i, a in enumerate(actions) if a["sheet_position"] == sheet]
    values_at = min(i for i, a in on_sheet if a["func"] == "setValues" and len(a["values"]) > 1)   # header + rows
    formats = {(a["start_column"], a["column_count"]): (i, a["args"][0]) for i, a in on_sheet
               if a["func"] == "setNumberFormat"}
    headers = layout.OUTPUT_TABLES["customer_snapshot"].headers
    text_columns = [j for j, c in enumerate(layout.OUTPUT_TABLES["customer_snapshot"].columns) if c.type == "text"]
    assert text_columns
    for j in text_columns:
        run = next(((i, fmt) for (start, count), (i, fmt) in formats.items() if start <= j < start + count), None)
        assert run is not None, headers[j]
        assert run[1] == "@" and run[0] < values_at, headers[j]


def test_each_table_is_written_in_one_assignment(golden_run) -> None:
    """Header and rows go to Excel in one setValues per table (a round trip per table, not per part)."""
    actions, replay = golden_run
    for name in WRITTEN:
        sheet, address = replay.tables[name]
        (top, left), (bottom, _right) = _tuples(address)
        writes = [a for a in actions if a["func"] == "setValues" and a["sheet_position"] == sheet
                  and a["start_row"] >= top and a["start_column"] == left]
        rows = len(replay.table(name)[1])
        if rows > 1 or replay.table(name)[1][0][0] not in (None, ""):
            assert len(writes) == 1 and len(writes[0]["values"]) == bottom - top + 1, name


def test_formula_like_text_written_as_text(xw, tmp_path) -> None:
    """Customer names starting with = + - @ arrive unchanged, in a column formatted "@"."""
    raw = golden_raw()
    names = ["=HYPERLINK(\"x\")", "+31 shop", "-minus", "@home", "00123"]
    raw["customers"].loc[: len(names) - 1, "customer_name"] = names
    path = make_book(tmp_path / BOOK_NAME, raw)
    payload = book_payload(path)
    replay = Replay(payload, _run(xw, payload, tmp_path))
    headers, rows = replay.table("customer_snapshot")
    col = headers.index("customer_name")
    assert set(names) <= {row[col] for row in rows}


def test_charts_read_their_whole_tables_again(xw, golden_payload, tmp_path) -> None:
    """Excel does not extend a chart's series when its table grows: each chart of the Charts sheet,
    found by its name (its table's), gets the table's new range as its source; others are left alone."""
    payload = copy.deepcopy(golden_payload)
    charts_sheet = next(s for s in payload["sheets"] if s["name"] == layout.CHARTS)
    charts_sheet["charts"] = [{"name": spec.table, "chart_type": "column_clustered"} for spec in layout.CHARTS_LAYOUT]
    charts_sheet["charts"].append({"name": "my own chart", "chart_type": "line"})
    actions = _run(xw, payload, tmp_path)
    replay = Replay(payload, actions)
    sourced = [a["args"] for a in actions if a["func"] == "setChartSourceData"]
    assert [index for index, _, _ in sourced] == list(range(len(layout.CHARTS_LAYOUT)))
    for (_index, sheet, address), spec in zip(sourced, layout.CHARTS_LAYOUT, strict=True):
        table = layout.CHART_TABLES[spec.table]
        assert sheet == table.sheet
        assert _tuples(address) == _tuples(replay.tables[spec.table][1])     # the table as rewritten
        assert len(replay.table(spec.table)[1]) > 1                           # grown past the template's row 2


def test_the_clv_holdout_chart_reads_its_table_again(xw, golden_payload, tmp_path) -> None:
    """The chart on the CLV sheet (layout.TABLE_CHARTS) is found by its name and pointed at its table's
    categories and series columns, the leading ones."""
    payload = copy.deepcopy(golden_payload)
    spec = layout.TABLE_CHARTS[0]
    sheet = next(s for s in payload["sheets"] if s["name"] == spec.sheet)
    sheet["charts"] = [{"name": spec.name, "chart_type": "line"}]
    actions = _run(xw, payload, tmp_path)
    replay = Replay(payload, actions)
    sourced = [a["args"] for a in actions if a["func"] == "setChartSourceData"]
    assert len(sourced) == 1
    _index, on_sheet, address = sourced[0]
    table = layout.OUTPUT_TABLES[spec.table]
    assert on_sheet == table.sheet
    written = _tuples(replay.tables[spec.table][1])
    assert _tuples(address)[0] == written[0]
    assert _tuples(address)[1] == (written[1][0], written[0][1] + len(spec.series))


def test_screen_updating_and_calculation_restored(golden_run) -> None:
    actions, _ = golden_run
    screen = [a["args"][0] for a in _funcs(actions, "setScreenUpdating")]
    calculation = [a["args"][0] for a in _funcs(actions, "setCalculation")]
    assert screen[0] is False and screen[-1] is True
    assert calculation[0] == "Manual" and calculation[-1] == "Automatic"   # VBA client: mode unknown, default
    first_value = next(i for i, a in enumerate(actions) if a["func"] == "setValues")
    last_value = max(i for i, a in enumerate(actions) if a["func"] == "setValues")
    assert actions.index(_funcs(actions, "setCalculation")[0]) < first_value
    assert actions.index(_funcs(actions, "setCalculation")[-1]) > last_value


def test_manual_calculation_stays_manual(xw, golden_payload, tmp_path) -> None:
    """A client that reports the mode (Office.js sends it) gets its own mode back."""
    payload = copy.deepcopy(golden_payload)
    payload["book"]["calculation"] = "Manual"
    actions = _run(xw, payload, tmp_path)
    assert [a["args"][0] for a in _funcs(actions, "setCalculation")] == ["Manual", "Manual"]


def test_history_cap_writes_parquet_beside_book(xw, tmp_path) -> None:
    path = make_book(tmp_path / "src" / BOOK_NAME, history_rows_in_sheet=40)
    payload = book_payload(path)
    where = tmp_path / "live"
    where.mkdir()
    replay = Replay(payload, _run(xw, payload, where))
    copy_path = tmp_path / "headless" / BOOK_NAME
    copy_path.parent.mkdir()
    shutil.copyfile(path, copy_path)
    refresh_workbook(copy_path, now=NOW)
    expected = headless_tables(copy_path)["customer_history"][1]
    assert _rows(replay.table("customer_history")[1]) == _rows(expected)
    assert 0 < len(_rows(expected)) <= 40
    parquet = where / "golden_customer_history.parquet"
    assert len(pd.read_parquet(parquet)) == len(pd.read_parquet(copy_path.with_name(parquet.name))) > 40
    rejected = where / "golden_rejected_lines.csv"              # G99 and XXX9, as the headless refresh lists them
    live_rejected, headless_rejected = (pd.read_csv(p, dtype=str, encoding="utf-8-sig")
                                        for p in (rejected, copy_path.with_name(rejected.name)))
    live_status = dict(_rows(replay.table(layout.STATUS_TABLE.name)[1]))
    assert set(live_rejected.pop("refresh_id")) == {live_status["refresh id"]}
    assert len(headless_rejected.pop("refresh_id").unique()) == 1
    assert live_rejected.equals(headless_rejected) and len(live_rejected) == 2
    assert not [p for p in where.iterdir() if p not in (parquet, rejected)]     # no temporary file left


# --- errors --------------------------------------------------------------------------------------------


def test_bad_config_one_alert_and_no_output_writes(xw, tmp_path) -> None:
    path = make_book(tmp_path / BOOK_NAME, measure="volume")
    payload = book_payload(path)
    actions = _run(xw, payload, tmp_path)
    alerts = _funcs(actions, "alert")
    assert len(alerts) == 1
    prompt, title, _buttons, mode, _callback = alerts[0]["args"]
    assert "measure" in prompt and "'volume'" in prompt and re.search(r"Config!B\d+", prompt)
    assert "units" in prompt and "revenue" in prompt            # how to fix: the allowed values
    assert title == "CRM refresh" and mode == "critical"
    outputs = _sheet_positions(payload, (*layout.OUTPUT_TABLES, *layout.CHART_TABLES, layout.STATUS_TABLE.name))
    assert not [a for a in actions if a["sheet_position"] in outputs]
    log_sheet = _sheet_positions(payload, (layout.LOG_TABLE.name,))
    written = {a["sheet_position"] for a in actions if a["func"] in ("setValues", "resizeTable", "rangeClearContents")}
    assert written == log_sheet
    messages = [row[2] for row in _rows(Replay(payload, actions).table(layout.LOG_TABLE.name)[1])]
    assert any(m.startswith("refresh stopped: Config 'measure'") for m in messages)


def test_missing_raw_column_names_the_sheet(xw, tmp_path) -> None:
    raw = golden_raw()
    raw["transactions"] = raw["transactions"].drop(columns=["revenue"])
    path = make_book(tmp_path / BOOK_NAME, raw, check=False)
    actions = _run(xw, book_payload(path), tmp_path)
    (alert,) = _funcs(actions, "alert")
    assert "Raw Transactions" in alert["args"][0] and "revenue" in alert["args"][0]


def test_unexpected_error_short_alert_and_traceback_in_log(xw, golden_payload, tmp_path, monkeypatch) -> None:
    def boom(_inputs: object, **_machine: object) -> None:
        raise RuntimeError("something broke")

    monkeypatch.setattr(live, "compute", boom)
    actions = _run(xw, golden_payload, tmp_path)
    (alert,) = _funcs(actions, "alert")
    assert "RuntimeError: something broke" in alert["args"][0] and "Traceback" not in alert["args"][0]
    messages = [row[2] for row in _rows(Replay(golden_payload, actions).table(layout.LOG_TABLE.name)[1])]
    assert any(m.startswith("traceback for support:") and "Traceback" in m and "boom" in m for m in messages)
    outputs = _sheet_positions(golden_payload, WRITTEN)
    assert not [a for a in actions if a["sheet_position"] in outputs]


def test_a_refresh_fitted_in_customer_partitions_says_so_in_the_log(xw, golden_payload, tmp_path,
                                                                    monkeypatch) -> None:
    # the golden 19 customers x 25 months x 768 bytes: 364,800 in one piece; 300 KB = 307,200 less the
    # 243,200 held (x 512) leaves 64,000 for the grids of one partition: 364,800 / 64,000 -> 6 partitions
    monkeypatch.setenv(machine.MEMORY_LIMIT_VARIABLE, "300KB")
    actions = _run(xw, golden_payload, tmp_path)
    assert not _funcs(actions, "alert")
    messages = [row[2] for row in _rows(Replay(golden_payload, actions).table(layout.LOG_TABLE.name)[1])]
    assert [m for m in messages if m.startswith("computed in ")] == [
        "computed in 6 customer partitions, one after the other: all 19 customers' 25 months need about 356 KB "
        "of memory at once and 300 KB was available (the tables are the same; more memory is faster)"]


def test_status_bar_unsupported_engine_does_not_fail(golden_run) -> None:
    """The remote engine has no status bar (it raises NotImplementedError): the refresh still completes."""
    actions, _ = golden_run
    assert _funcs(actions, "setValues") and not _funcs(actions, "alert")


def test_status_bar_messages(xw, golden_payload, tmp_path, monkeypatch) -> None:
    shown: list[str] = []
    monkeypatch.setattr(live, "_status_bar", lambda _app, message: shown.append(message))
    _run(xw, golden_payload, tmp_path)
    assert shown[0].startswith("reading") and shown[1].startswith("computing (")
    total = len(WRITTEN) + 2        # and tbl_log, tbl_glossary
    writes = [m for m in shown if m.startswith("writing ")]
    assert len(writes) == total and writes[0] == f"writing {total} tables (1/{total}: customer_snapshot)..."
    final = shown[-1]
    assert re.fullmatch(r"refreshed \d+ customers, \d+ months in \d+\.\d s", final), final


def test_udf_cache_primed_after_success(xw, golden_payload, tmp_path, monkeypatch) -> None:
    import sys
    import types

    calls: list[tuple[Any, ...]] = []
    fake = types.ModuleType("crm_xl.excel.udfs")
    fake.prime = lambda *args: calls.append(args)       # type: ignore[attr-defined]
    fake.book_key = lambda book: str(book.fullname)     # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "crm_xl.excel.udfs", fake)
    monkeypatch.setattr(importlib.import_module("crm_xl.excel"), "udfs", fake, raising=False)
    _run(xw, golden_payload, tmp_path)
    (call,) = calls
    book_key, tables, segment, refresh_id = call
    assert book_key.endswith(BOOK_NAME) and segment == "value_tier"
    assert set(contract.TABLE_NAMES) <= set(tables)
    assert len(refresh_id) > 8      # the id written to tbl_status, which other processes compare with


# --- pure helpers ------------------------------------------------------------------------------------------


def test_cell_values_blank_for_missing() -> None:
    frame = pd.DataFrame({"a": pd.array([1, None], dtype="Int64"), "b": ["x", None], "c": [1.5, math.nan],
                          "d": pd.Categorical(["Gold", None])})
    assert live.cell_values(frame) == [[1, "x", 1.5, "Gold"], ["", "", "", ""]]


def test_cell_values_are_what_every_engine_takes_as_they_are() -> None:
    """Dates go as Excel serial numbers (the column's date format is set first), whole days and times."""
    frame = pd.DataFrame({"d": pd.to_datetime(["2024-01-31", None, "2024-02-01 06:00"], format="ISO8601")
                          .astype("datetime64[s]")})
    assert live.cell_values(frame) == [[45322.0], [""], [45323.25]]


def test_format_runs_groups_adjacent_columns() -> None:
    assert list(live._format_runs(["@", "@", None, "0", "0", "@"])) == [(0, 2, "@"), (3, 5, "0"), (5, 6, "@")]


# --- the VBA names Python that exists ------------------------------------------------------------------------


def test_vba_refresh_macro_calls_existing_python() -> None:
    source = VBA.read_text(encoding="utf-8")
    calls = re.findall(r'RunPython\s+"([^"]+)"', source)
    assert calls, "no RunPython call in CrmXl.bas"
    for code in calls:
        statements = [s.strip() for s in code.split(";") if s.strip()]
        imports = [s.split()[1] for s in statements if s.startswith("import ")]
        (call,) = [s for s in statements if not s.startswith("import ")]
        found = re.fullmatch(r"([\w.]+)\(\)", call)
        assert found, call
        dotted = found.group(1)
        module_name = max((m for m in imports if dotted.startswith(m + ".")), key=len)
        target: Any = importlib.import_module(module_name)
        for part in dotted[len(module_name) + 1:].split("."):
            target = getattr(target, part)
        assert callable(target), dotted
        required = [p for p in inspect.signature(target).parameters.values()
                    if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        assert not required, f"{dotted} needs arguments {required}"


class _Used:
    """A sheet's UsedRange as COM shows it: Find over formulas, Calculate."""

    def __init__(self, formulas: list[str], calls: list[str], name: str) -> None:
        self.formulas, self.calls, self.name = formulas, calls, name

    def Find(self, what: str, LookIn: int, LookAt: int) -> object | None:
        self.calls.append(f"find {self.name}")
        assert (LookIn, LookAt) == (-4123, 2)      # in formulas, part of the cell
        return next((f for f in self.formulas if what in f), None)

    def Calculate(self) -> None:
        self.calls.append(f"calculate {self.name}")


def test_only_sheets_with_crm_formulas_are_recalculated() -> None:
    """After the refresh: the user's sheets holding a CRM_ formula are recalculated, nothing else; the
    big sheets the refresh wrote are never searched (and CalculateFull of every workbook is not used)."""
    import types

    calls: list[str] = []
    sheets = {"Campaign": ["=CRM_SEGMENT(A2:A500)"], "Notes": ["=SUM(B2:B9)"], "Customer History": [],
              layout.START: []}
    book = types.SimpleNamespace(sheets=[types.SimpleNamespace(name=n, api=types.SimpleNamespace(
        UsedRange=_Used(f, calls, n))) for n, f in sheets.items()])
    live._recalculate(book)
    assert calls == ["find Campaign", "calculate Campaign", "find Notes", f"find {layout.START}"]


def test_a_onedrive_book_xlwings_cannot_place_is_a_message_not_a_bug(monkeypatch) -> None:
    """xlwings maps a OneDrive/SharePoint URL to the synced folder or raises XlwingsError naming the
    setting to make: the refresh shows that as an input error with where to set it."""
    import types

    import xlwings

    class OnlineBook(types.SimpleNamespace):
        @property
        def fullname(self) -> str:
            raise xlwings.XlwingsError("Couldn't find the local OneDrive for Business folder. Please configure "
                                       "the ONEDRIVE_COMMERCIAL_WIN setting, see: xlwings.org/error.")

    with pytest.raises(InputError, match=r"ONEDRIVE_COMMERCIAL_WIN setting.*xlwings\.conf sheet"):
        live._book_path(OnlineBook())
