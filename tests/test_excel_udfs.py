"""The worksheet functions (crm_xl.excel.udfs) as plain Python: on Linux the xlwings decorators do
nothing, so the functions are called directly, on single values and on ranges (lists of lists).

Data: crm_xl.run on the golden fixture (report_month 2024-12, history_months 24).
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import inspect
import io
import os
import re
import sys
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xlwings

from crm_xl import contract
from crm_xl.core.coerce import normalize_ids
from crm_xl.excel import udfs

ROOT = Path(__file__).resolve().parents[1]
BAS = ROOT / "workbook" / "vba" / "xlwings_udfs.bas"
UDF_FILE = Path(udfs.__file__)
BOOK = "golden.xlsm"
FUNCTIONS = {
    "CRM_SEGMENT": "value_tier", "CRM_TIER": "value_tier", "CRM_STATE": "lifecycle_state",
    "CRM_EVENT": "lifecycle_event", "CRM_RFM": "rfm_code", "CRM_EXPLAIN": "tier_reason",
}
LATEST, EARLY = "2024-12", "2023-06"
#: The functions of the clv table and the column each returns.
CLV_FUNCTIONS = {"CRM_PALIVE": "p_alive", "CRM_CLV": "clv"}
SAMPLE = ROOT / "sample_data"


@pytest.fixture(autouse=True)
def fresh_cache(monkeypatch):
    """Every test starts with no cached workbook and no calling workbook (plain Python)."""
    monkeypatch.setattr(udfs, "_caller_book", lambda: None)
    udfs.clear()
    yield
    udfs.clear()


@pytest.fixture
def tables(golden_result) -> dict[str, pd.DataFrame]:
    """Copies of the golden output tables (the session's result stays untouched)."""
    return {name: frame.copy() for name, frame in golden_result.items()}


@pytest.fixture
def primed(tables) -> dict[str, pd.DataFrame]:
    udfs.prime(BOOK, tables, "value_tier")
    return tables


def snap(tables, customer_id: str, column: str):
    frame = tables["customer_snapshot"]
    return frame.loc[frame["customer_id"] == customer_id, column].iloc[0]


def hist(tables, month: str, customer_id: str, column: str):
    frame = tables["customer_history"]
    rows = frame[(frame["report_month"] == pd.Timestamp(month)) & (frame["customer_id"].astype(str) == customer_id)]
    return rows[column].iloc[0]


def cell(value):
    """What a function returns for a table value: blanks as "", numbers as float, dates as datetime."""
    if value is None or value is pd.NA or value is pd.NaT or (isinstance(value, float) and np.isnan(value)):
        return ""
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        return float(value)
    return value


def with_ids(tables, mapping: dict[str, str]) -> dict[str, pd.DataFrame]:
    """The tables with some customer ids renamed (in the snapshot and the history)."""
    out = dict(tables)
    for name in ("customer_snapshot", "customer_history"):
        frame = tables[name].copy()
        frame["customer_id"] = frame["customer_id"].astype(str).replace(mapping)
        out[name] = frame
    return out


# --- not refreshed, shapes, each function ------------------------------------------------------------


def test_not_refreshed_is_a_text_in_the_shape_of_the_ids():
    assert udfs.CRM_SEGMENT("G01") == "#CRM: not refreshed yet"
    assert udfs.CRM_METRIC([["G01", "G02"], ["G03", "G04"]], "m12") == [["#CRM: not refreshed yet"] * 2] * 2
    assert udfs.CRM_TIER(["G01", "G02", "G03"]) == ["#CRM: not refreshed yet"] * 3


def test_prime_with_empty_tables_is_not_refreshed(tables):
    empty = {name: frame.iloc[0:0] for name, frame in tables.items()}
    udfs.prime(BOOK, empty, "value_tier")
    assert udfs.CRM_STATE("G01") == "#CRM: not refreshed yet"


@pytest.mark.parametrize(("name", "column"), FUNCTIONS.items())
def test_every_function_on_a_value_and_a_range(primed, name, column):
    func = getattr(udfs, name)
    assert func("G01") == cell(snap(primed, "G01", column))
    ids = [["G01", "G02", "G09"], ["G17", None, "G06"]]
    out = func(ids)
    assert out == [[cell(snap(primed, i, column)) if i else "" for i in row] for row in ids]
    assert func([[i] for i in ("G01", "G02")]) == [[cell(snap(primed, i, column))] for i in ("G01", "G02")]
    assert func(["G01", "G09"]) == [cell(snap(primed, i, column)) for i in ("G01", "G09")]   # 1-D stays 1-D
    assert func([["G01"]]) == [[cell(snap(primed, "G01", column))]]      # one cell as Excel passes it (ndim=2)
    assert func([["G01"]], [[None]]) == [[cell(snap(primed, "G01", column))]]


@pytest.mark.parametrize(("name", "column"), FUNCTIONS.items())
def test_every_function_for_a_history_month(primed, name, column):
    func = getattr(udfs, name)
    assert func("G01", EARLY) == cell(hist(primed, EARLY, "G01", column))
    assert func([["G01"], ["G17"]], EARLY) == [[cell(hist(primed, EARLY, i, column))] for i in ("G01", "G17")]


def test_golden_values_spot_check(primed):
    assert udfs.CRM_SEGMENT("G01") == "Diamond"
    assert udfs.CRM_STATE("G09") == "Prospect"
    assert udfs.CRM_EVENT("G17") == "Lost"
    assert udfs.CRM_EVENT("G01") == ""
    assert udfs.CRM_TIER("G06") == ""            # not active: no tier
    assert udfs.CRM_EXPLAIN("G01").startswith("Diamond: averages 1,600 units a month")


# --- ids -----------------------------------------------------------------------------------------------


def test_number_and_text_spellings_are_one_id_and_leading_zeros_count(tables):
    udfs.prime(BOOK, with_ids(tables, {"G01": "123", "G02": "00123"}), "value_tier")
    g01, g02 = snap(tables, "G01", "value_tier"), snap(tables, "G02", "value_tier")
    assert g01 != g02
    for spelling in (123, 123.0, "123", " 123 ", "123.0", np.int64(123), np.float64(123.0)):
        assert udfs.CRM_TIER(spelling) == g01, spelling
    assert udfs.CRM_TIER("00123") == g02
    assert udfs.CRM_TIER(" 00123 ") == g02
    assert udfs.CRM_TIER("0123") == "#CRM: unknown customer 0123"
    assert udfs.CRM_TIER([[123.0], ["00123"], ["123"]]) == [[g01], [g02], [g01]]
    assert udfs.CRM_STATE(123.0, EARLY) == hist(tables, EARLY, "G01", "lifecycle_state")


def test_ids_stored_as_numbers_in_the_tables(tables):
    """Read back from Excel, numeric-looking ids may come as floats; they still match."""
    renamed = with_ids(tables, {"G01": "123"})
    snapshot = renamed["customer_snapshot"].iloc[[0]].copy()
    snapshot["customer_id"] = [123.0]
    history = renamed["customer_history"]
    history = history[history["customer_id"] == "123"].copy()
    history["customer_id"] = 123.0
    data = udfs.load_tables_from_frames(snapshot, history, "value_tier")
    assert list(data.ids) == ["123"]
    assert data.lookup(["123"], "value_tier", None) == [snap(tables, "G01", "value_tier")]
    assert data.history().ids == {"123": 0}


def test_id_normalization_agrees_with_the_core():
    samples = [123, 123.0, "123", " 123 ", "123.0", "123.", "00123", " 00123", "1.5", 1.5, "abc", " ", "",
               None, float("nan"), "G01", 10**15, "1e3", True]
    core = normalize_ids(pd.Series(samples, dtype=object)).tolist()
    ours = [udfs._id_key(value) for value in samples]
    assert ours == [None if pd.isna(v) else v for v in core]


def test_unknown_and_blank_ids(primed):
    assert udfs.CRM_SEGMENT(999) == "#CRM: unknown customer 999"
    assert udfs.CRM_SEGMENT(999.0) == "#CRM: unknown customer 999"
    assert udfs.CRM_SEGMENT("nobody") == "#CRM: unknown customer nobody"
    assert udfs.CRM_SEGMENT(None) == ""
    assert udfs.CRM_SEGMENT("  ") == ""
    assert udfs.CRM_SEGMENT([["G01"], ["x"], [None]]) == [["Diamond"], ["#CRM: unknown customer x"], [""]]
    assert udfs.CRM_SEGMENT("x", EARLY) == "#CRM: unknown customer x"


def test_customer_not_in_the_base_that_month(tables):
    history = tables["customer_history"]
    early = (history["customer_id"] == "G01") & (history["report_month"] < pd.Timestamp("2024-01-01"))
    udfs.prime(BOOK, {**tables, "customer_history": history[~early]}, "value_tier")
    assert udfs.CRM_STATE("G01", EARLY) == "#CRM: customer G01 is not in the base in 2023-06"
    assert udfs.CRM_STATE("G01", "2024-06") == hist(tables, "2024-06", "G01", "lifecycle_state")


# --- month argument ------------------------------------------------------------------------------------


def _serial(day: dt.date) -> float:
    return float((day - dt.date(1899, 12, 30)).days)


@pytest.mark.parametrize("month", [
    None, "", "  ", float("nan"), LATEST, "2024-12-31", "2024/12", dt.date(2024, 12, 15),
    dt.datetime(2024, 12, 31, 23, 59), pd.Timestamp("2024-12-01"), _serial(dt.date(2024, 12, 1)),
    _serial(dt.date(2024, 12, 31)) + 0.75, str(int(_serial(dt.date(2024, 12, 9)))), np.datetime64("2024-12-05"),
])
def test_month_forms_for_the_latest_month(primed, month):
    assert udfs.CRM_METRIC("G01", "m1", month) == cell(snap(primed, "G01", "m1"))
    assert udfs.CRM_METRIC("G01", "customer_name", month) == "Customer 01"


@pytest.mark.parametrize("month", [
    EARLY, "2023-6", "2023-06-30", dt.date(2023, 6, 1), dt.datetime(2023, 6, 15, 12), _serial(dt.date(2023, 6, 20)),
    [["2023-06"]],
])
def test_month_forms_for_a_history_month(primed, month):
    expected = cell(hist(primed, EARLY, "G01", "m_total"))
    assert expected != cell(snap(primed, "G01", "m_total"))
    out = udfs.CRM_METRIC("G01", "m_total", month)
    assert out == ([[expected]] if isinstance(month, list) else expected)


def test_unknown_and_bad_months(primed):
    assert udfs.CRM_SEGMENT("G01", "2019-01") == "#CRM: no month 2019-01 in the history"
    assert udfs.CRM_SEGMENT([["G01"], ["G02"]], dt.date(2030, 1, 1)) == [["#CRM: no month 2030-01 in the history"]] * 2
    for bad in ("abc", "2024-13", -5.0, 1e9, True):
        assert udfs.CRM_SEGMENT("G01", bad).startswith("#CRM: month "), bad
    assert udfs.CRM_METRIC("G01", "customer_name", EARLY) == (
        "#CRM: customer_name is not in the history, only in the latest month (2024-12)")


def test_month_range_broadcasts_against_the_ids(primed):
    months = [[EARLY, LATEST, None, "nope"]]
    out = udfs.CRM_STATE([["G01"], ["G17"]], months)
    assert len(out) == 2 and all(len(row) == 4 for row in out)
    for row, customer in zip(out, ("G01", "G17"), strict=True):
        assert row[0] == hist(primed, EARLY, customer, "lifecycle_state")
        assert row[1] == row[2] == snap(primed, customer, "lifecycle_state")
        assert row[3].startswith("#CRM: month nope")
    mismatch = udfs.CRM_STATE([["G01"], ["G02"], ["G03"]], [[EARLY], [LATEST]])
    assert mismatch == [["#CRM: month and metric must be one cell or a range the shape of the ids"]] * 3


# --- CRM_METRIC ---------------------------------------------------------------------------------------------

_SNAPSHOT_COLUMNS = [(name, kind) for name, kind, _ in contract.TABLES["customer_snapshot"][1] if name != "customer_id"]
_HISTORY_COLUMNS = {name for name, _, _ in contract.TABLES["customer_history"][1]}


@pytest.mark.parametrize(("column", "kind"), _SNAPSHOT_COLUMNS)
def test_metric_for_every_contract_column(primed, column, kind):
    for customer in ("G01", "G09", "G17"):   # an active, a prospect (many blanks), a lost customer
        expected = cell(snap(primed, customer, column))
        assert udfs.CRM_METRIC(customer, column) == expected
        if kind in ("integer", "decimal"):
            assert expected == "" or isinstance(expected, float)
        if column in _HISTORY_COLUMNS and column != "report_month":
            assert udfs.CRM_METRIC(customer, column, EARLY) == cell(hist(primed, EARLY, customer, column))
    assert udfs.CRM_METRIC([["G01", "G09"]], column) == [[cell(snap(primed, c, column)) for c in ("G01", "G09")]]


def test_metric_names_are_forgiving_and_unknown_names_list_the_known(primed):
    m12 = cell(snap(primed, "G01", "m12"))
    assert udfs.CRM_METRIC("G01", "M12") == m12
    assert udfs.CRM_METRIC("G01", " m12 ") == m12
    bad = udfs.CRM_METRIC("G01", "foo")
    assert bad.startswith("#CRM: unknown metric foo (known: customer_name, ")
    assert ", m1, m6, m12, " in bad and bad.endswith(")")
    assert udfs.CRM_METRIC("G01", None).startswith("#CRM: no metric name given (known: ")
    assert udfs.CRM_METRIC([["G01"], [None]], "foo") == [[bad], [""]]
    assert udfs.CRM_METRIC("G01", "customer_id").startswith("#CRM: unknown metric customer_id")


def test_metric_range_of_names_makes_a_table(primed):
    out = udfs.CRM_METRIC([["G01"], ["G02"]], [["m1", "value_tier", "bogus"]])
    assert [row[:2] for row in out] == [[cell(snap(primed, c, "m1")), snap(primed, c, "value_tier")]
                                       for c in ("G01", "G02")]
    assert all(row[2].startswith("#CRM: unknown metric bogus") for row in out)


def test_metric_dates_are_dates(primed):
    first = udfs.CRM_METRIC("G01", "first_core_date")
    assert isinstance(first, dt.datetime) and first == snap(primed, "G01", "first_core_date").to_pydatetime()
    assert udfs.CRM_METRIC("G09", "first_core_date") == ""


# --- CRM_RFM, CRM_SEGMENT setting ------------------------------------------------------------------------


def test_rfm_code_and_blank_for_the_customers_not_scored(primed):
    snapshot = primed["customer_snapshot"]
    ids = snapshot["customer_id"].tolist()
    codes = udfs.CRM_RFM([[i] for i in ids])
    for customer, state, (code,) in zip(ids, snapshot["lifecycle_state"].astype(str), codes, strict=True):
        if state in ("Prospect", "Churned"):     # rfm_population = active: only Active customers are scored
            assert code == "", customer
        else:
            assert re.fullmatch(r"R[1-5]F[1-5]M[1-5]T[1-5]", code), (customer, code)
    assert udfs.CRM_RFM("G01") == "R3F3M5T4"   # among the Active customers: R3 F3 M5 T4, FM 4
    assert udfs.CRM_RFM("G09") == ""


def test_segment_follows_udf_segment(tables):
    udfs.prime(BOOK, tables, "rfm_segment")
    assert udfs.CRM_SEGMENT("G01") == snap(tables, "G01", "rfm_segment") == "Loyal Customers"
    assert udfs.CRM_SEGMENT("G09") == ""
    assert udfs.CRM_EXPLAIN("G01") == snap(tables, "G01", "segment_reason")
    assert udfs.CRM_SEGMENT("G05", EARLY) == hist(tables, EARLY, "G05", "rfm_segment")
    udfs.prime(BOOK, tables, "value_tier")
    assert udfs.CRM_SEGMENT("G01") == "Diamond"
    assert udfs.CRM_EXPLAIN("G01") == snap(tables, "G01", "tier_reason")


# --- prime and clear -----------------------------------------------------------------------------------------


def test_prime_replaces_stale_values(primed):
    assert udfs.CRM_TIER("G01") == "Diamond"
    assert udfs.CRM_METRIC("G01", "m12", EARLY) == cell(hist(primed, EARLY, "G01", "m12"))   # history indexed
    changed = {name: frame.copy() for name, frame in primed.items()}
    snapshot, history = changed["customer_snapshot"], changed["customer_history"]
    snapshot["value_tier"] = snapshot["value_tier"].astype(str)
    snapshot.loc[snapshot["customer_id"] == "G01", "value_tier"] = "Gold"
    history.loc[(history["customer_id"] == "G01") & (history["report_month"] == pd.Timestamp(EARLY)), "m12"] = 7.5
    udfs.prime(BOOK, changed, "value_tier")
    assert udfs.CRM_TIER("G01") == "Gold"
    assert udfs.CRM_TIER([["G01"]]) == [["Gold"]]
    assert udfs.CRM_METRIC("G01", "m12", EARLY) == 7.5


def test_clear_one_book_or_all(tables, monkeypatch):
    current = {"book": None}
    monkeypatch.setattr(udfs, "_caller_book", lambda: current["book"])
    monkeypatch.setattr(udfs, "load_tables_from_book", lambda book: None)   # the books hold no tables
    udfs.prime("A.xlsm", tables, "value_tier")
    udfs.prime("B.xlsm", tables, "rfm_segment")
    current["book"] = types.SimpleNamespace(fullname="A.xlsm", name="A.xlsm")
    assert udfs.CRM_SEGMENT("G01") == "Diamond"
    current["book"] = types.SimpleNamespace(fullname="B.xlsm", name="B.xlsm")
    assert udfs.CRM_SEGMENT("G01") == "Loyal Customers"
    udfs.clear("B.xlsm")
    assert udfs.CRM_SEGMENT("G01") == "#CRM: not refreshed yet"
    current["book"] = types.SimpleNamespace(fullname="A.xlsm", name="A.xlsm")
    assert udfs.CRM_SEGMENT("G01") == "Diamond"
    udfs.clear()
    assert udfs.CRM_SEGMENT("G01") == "#CRM: not refreshed yet"


def test_without_a_calling_book_the_last_primed_book_answers(tables):
    udfs.prime("A.xlsm", tables, "rfm_segment")
    udfs.prime("B.xlsm", tables, "value_tier")
    assert udfs.CRM_SEGMENT("G01") == "Diamond"
    udfs.clear("B.xlsm")
    assert udfs.CRM_SEGMENT("G01") == "#CRM: not refreshed yet"


# --- reading the workbook's own tables (new Python process) ---------------------------------------------


class _FakeRange:
    def __init__(self, frame, reads, name):
        self.frame, self.reads, self.name = frame, reads, name

    def options(self, convert, **options):
        assert convert is pd.DataFrame and options.get("index") is False
        return self

    @property
    def value(self):
        self.reads.append(self.name)
        return self.frame.copy()


class _FakeBook:
    """Just the part of the xlwings Book API the loader uses: book.sheets[s].tables[t].range.options().value."""

    def __init__(self, fullname, frames):
        self.fullname = self.name = fullname
        self.reads: list[str] = []
        self.sheets = {}
        for name, frame in frames.items():
            self.put(name, frame)

    def put(self, name, frame):
        """The table ``name`` now holds ``frame`` (what a refresh elsewhere leaves in the workbook)."""
        from crm_xl.workbook import layout
        spec = layout.STATUS_TABLE if name == layout.STATUS_TABLE.name else layout.OUTPUT_TABLES[name]
        rng = _FakeRange(frame, self.reads, name)
        self.sheets[spec.sheet] = types.SimpleNamespace(tables={name: types.SimpleNamespace(range=rng)})


def _as_read_from_excel(frame: pd.DataFrame) -> pd.DataFrame:
    """Roughly what xlwings gives back: plain objects/floats, numbers where the sheet has numbers."""
    out = frame.astype(object).where(frame.notna(), None)
    for column in frame.columns:
        if pd.api.types.is_numeric_dtype(frame[column].dtype):
            out[column] = pd.to_numeric(frame[column], errors="coerce").astype(float)
    return out


def test_reads_the_workbook_tables_once_when_not_cached(tables, monkeypatch):
    renamed = with_ids(tables, {"G01": "123"})
    snapshot = _as_read_from_excel(renamed["customer_snapshot"])
    snapshot.loc[snapshot["customer_id"] == "123", "customer_id"] = 123.0     # a number in the sheet
    run_info = tables["run_info"].copy()
    run_info.loc[run_info["item"] == "setting.udf_segment", "value"] = "rfm_segment"
    book = _FakeBook(r"C:\crm\crm.xlsm", {"customer_snapshot": snapshot, "run_info": run_info,
                                          "customer_history": _as_read_from_excel(renamed["customer_history"])})
    monkeypatch.setattr(udfs, "_caller_book", lambda: book)
    assert udfs.CRM_SEGMENT("123") == "Loyal Customers"           # udf_segment from run_info
    assert udfs.CRM_TIER([["123"], [123], ["G02"]]) == [["Diamond"], ["Diamond"], ["Platinum"]]
    for _ in range(100):
        udfs.CRM_STATE("G02")
    assert sorted(book.reads) == ["customer_snapshot", "run_info"]         # once, history not yet
    assert udfs.CRM_STATE("123", EARLY) == hist(tables, EARLY, "G01", "lifecycle_state")
    assert udfs.CRM_METRIC("G05", "m12", EARLY) == cell(hist(tables, EARLY, "G05", "m12"))
    assert sorted(book.reads) == ["customer_history", "customer_snapshot", "run_info"]
    assert udfs.CRM_METRIC(123, "first_core_date") == snap(tables, "G01", "first_core_date")
    # a refresh then primes the same workbook: the new tables answer, nothing is read again
    udfs.prime(r"C:\crm\crm.xlsm", tables, "value_tier")
    assert udfs.CRM_SEGMENT("G01") == "Diamond"
    assert len(book.reads) == 3


def test_a_workbook_never_refreshed_is_read_again_only_after_a_pause(tables, monkeypatch):
    blank_row = pd.DataFrame([[None] * len(tables["customer_snapshot"].columns)],
                             columns=tables["customer_snapshot"].columns)     # an empty Excel table
    book = _FakeBook("new.xlsm", {"customer_snapshot": blank_row})
    monkeypatch.setattr(udfs, "_caller_book", lambda: book)
    # a pause far longer than the loop can take, however busy the machine, so the test never races the clock
    monkeypatch.setattr(udfs.UdfCache, "retry_seconds", 1e9)
    for _ in range(50):
        assert udfs.CRM_SEGMENT("G01") == "#CRM: not refreshed yet"
    assert book.reads == ["customer_snapshot"]
    monkeypatch.setattr(udfs.UdfCache, "retry_seconds", 0.0)
    assert udfs.CRM_SEGMENT("G01") == "#CRM: not refreshed yet"
    assert book.reads == ["customer_snapshot"] * 2
    no_tables = types.SimpleNamespace(fullname="other.xlsx", name="other.xlsx", sheets={})
    monkeypatch.setattr(udfs, "_caller_book", lambda: no_tables)
    assert udfs.CRM_SEGMENT([["G01"]]) == [["#CRM: not refreshed yet"]]


def status(refresh_id):
    return pd.DataFrame({"item": ["last refresh", "refresh id"], "value": ["2025-01-01 10:00:00", refresh_id]})


@pytest.fixture
def clock(monkeypatch):
    """The cache's clock, moved by the test: no test waits for or races real time."""
    now = [1000.0]
    monkeypatch.setattr(udfs.UdfCache, "clock", staticmethod(lambda: now[0]))
    return now


def test_a_refresh_made_elsewhere_is_seen_at_the_next_recalculation(tables, clock, monkeypatch):
    """A headless refresh (or a Refresh in another Python) changes the refresh id on Start: the next
    recalculation reads it once, sees the change and reloads; the cells of one recalculation share one read."""
    book = _FakeBook("crm.xlsm", {"customer_snapshot": tables["customer_snapshot"], "tbl_status": status("r1")})
    monkeypatch.setattr(udfs, "_caller_book", lambda: book)
    assert udfs.CRM_TIER("G01") == "Diamond"
    for _ in range(1000):                              # one recalculation of 1,000 cells
        udfs.CRM_TIER("G02")
    assert book.reads.count("tbl_status") == 1 and book.reads.count("customer_snapshot") == 1
    renamed = tables["customer_snapshot"].copy()
    renamed.loc[renamed["customer_id"] == "G01", "value_tier"] = "Bronze"
    book.put("customer_snapshot", renamed)
    book.put("tbl_status", status("r2"))
    assert udfs.CRM_TIER("G01") == "Diamond"           # same recalculation: not asked again yet
    clock[0] += udfs.UdfCache.check_seconds
    assert udfs.CRM_TIER("G01") == "Bronze"            # the next one sees r2 and reloads
    assert book.reads.count("customer_snapshot") == 2
    clock[0] += udfs.UdfCache.check_seconds
    assert udfs.CRM_TIER("G01") == "Bronze" and book.reads.count("customer_snapshot") == 2   # r2 still: no reload


def test_tables_primed_by_a_refresh_give_way_to_a_later_refresh(tables, clock, monkeypatch):
    book = _FakeBook("crm.xlsm", {"customer_snapshot": with_ids(tables, {"G01": "X1"})["customer_snapshot"],
                                  "tbl_status": status("r1")})
    monkeypatch.setattr(udfs, "_caller_book", lambda: book)
    udfs.prime("crm.xlsm", tables, "value_tier", "r1")
    clock[0] += udfs.UdfCache.check_seconds
    assert udfs.CRM_TIER("G01") == "Diamond" and "customer_snapshot" not in book.reads   # r1 is what it holds
    book.put("tbl_status", status("r2"))
    clock[0] += udfs.UdfCache.check_seconds
    assert udfs.CRM_TIER("X1") == "Diamond" and udfs.CRM_TIER("G01") == "#CRM: unknown customer G01"


def test_a_book_from_before_refresh_ids_is_never_reloaded(tables, clock, monkeypatch):
    book = _FakeBook("old.xlsm", {"customer_snapshot": tables["customer_snapshot"]})
    monkeypatch.setattr(udfs, "_caller_book", lambda: book)
    for _ in range(3):
        assert udfs.CRM_TIER("G01") == "Diamond"
        clock[0] += udfs.UdfCache.check_seconds
    assert book.reads.count("customer_snapshot") == 1


def test_history_beyond_the_sheet_comes_from_the_parquet_beside_the_book(tables, clock, monkeypatch, tmp_path):
    """After an Excel restart the sheet holds only the latest months; the full history is the refresh's
    Parquet file beside the book, used only when it carries the same refresh id."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from crm_xl.workbook.refresh import REFRESH_ID_KEY

    history = tables["customer_history"]
    latest = history[history["report_month"] == history["report_month"].max()]
    path = tmp_path / "crm.xlsm"
    book = _FakeBook(str(path), {"customer_snapshot": tables["customer_snapshot"], "customer_history": latest,
                                 "tbl_status": status("r7")})
    monkeypatch.setattr(udfs, "_caller_book", lambda: book)

    def sidecar(refresh_id):
        table = pa.Table.from_pandas(history, preserve_index=False)
        pq.write_table(table.replace_schema_metadata({**table.schema.metadata, REFRESH_ID_KEY: refresh_id.encode()}),
                       tmp_path / "crm_customer_history.parquet")

    sidecar("r6")                                     # from an earlier refresh: not trusted
    assert udfs.CRM_STATE("G17", EARLY).startswith("#CRM: no month")
    udfs.clear()
    sidecar("r7")
    assert udfs.CRM_STATE("G17", EARLY) == hist(tables, EARLY, "G17", "lifecycle_state")
    assert "customer_history" in book.reads           # the sheet was read only for the untrusted file


def test_load_tables_from_frames_without_history(tables):
    data = udfs.load_tables_from_frames(tables["customer_snapshot"], None)
    assert data.udf_segment == "value_tier" and not data.empty
    assert data.lookup(["G01", None, "zz"], "value_tier", None) == ["Diamond", "", "#CRM: unknown customer zz"]
    with pytest.raises(udfs._CellError, match="no month 2023-06 in the history"):
        data.lookup(["G01"], "value_tier", 2023 * 12 + 5)


def _remote_payload(frames: dict[str, pd.DataFrame]) -> dict:
    """An xlwings remote-engine book payload holding each frame as an Excel table from A1 of its sheet."""
    from xlwings.utils import col_name

    from crm_xl.workbook import layout

    def value(v):
        if v is None or v is pd.NA or v is pd.NaT or (isinstance(v, float) and np.isnan(v)):
            return None
        if isinstance(v, (pd.Timestamp, dt.datetime)):
            return v.strftime("%Y-%m-%dT%H:%M:%S.000Z")
        return v.item() if isinstance(v, np.generic) else v

    sheets = []
    for name, frame in frames.items():
        rows = [list(frame.columns)] + [[value(v) for v in row] for row in frame.astype(object).itertuples(index=False)]
        last, n = col_name(len(frame.columns)), len(rows)
        sheets.append({"name": layout.OUTPUT_TABLES[name].sheet, "values": rows, "pictures": [], "tables": [{
            "name": name, "range_address": f"A1:{last}{n}", "header_row_range_address": f"A1:{last}1",
            "data_body_range_address": f"A2:{last}{n}", "total_row_range_address": None, "show_headers": True,
            "show_totals": False, "show_autofilter": True, "table_style": "TableStyleMedium2",
            "columns": list(frame.columns)}]})
    return {"client": "Office.js", "version": xlwings.__version__,
            "book": {"name": "crm.xlsm", "active_sheet_index": 0, "selection": "A1"}, "names": [], "sheets": sheets}


@pytest.mark.skipif(not os.environ.get("XLWINGS_LICENSE_KEY"),
                    reason="the xlwings remote engine (xw.Book(json=...)) needs XLWINGS_LICENSE_KEY, e.g. "
                           "'noncommercial' for this open-source project's own tests")
def test_reads_tables_through_the_real_xlwings_book_api(tables, monkeypatch):
    names = ("customer_snapshot", "customer_history", "run_info")
    book = xlwings.Book(json=_remote_payload({name: tables[name] for name in names}))
    data = udfs.load_tables_from_book(book)
    assert data is not None and len(data.ids) == len(tables["customer_snapshot"])
    monkeypatch.setattr(udfs, "_caller_book", lambda: book)
    assert udfs.CRM_SEGMENT([["G01"], ["G09"]]) == [["Diamond"], [""]]
    assert udfs.CRM_RFM("G01") == "R3F3M5T4"
    assert udfs.CRM_STATE("G17", EARLY) == hist(tables, EARLY, "G17", "lifecycle_state")
    assert udfs.CRM_METRIC("G01", "first_core_date") == snap(tables, "G01", "first_core_date").to_pydatetime()
    assert udfs._CACHE.keys() == ["crm.xlsm"]


# --- never a Python error ---------------------------------------------------------------------------------


def test_unexpected_errors_become_text(primed, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(udfs.BookData, "lookup", boom)
    assert udfs.CRM_SEGMENT("G01") == "#CRM: RuntimeError: disk on fire"
    assert udfs.CRM_SEGMENT([["G01"], ["G02"]]) == [["#CRM: RuntimeError: disk on fire"]] * 2


def test_odd_inputs_do_not_raise(primed):
    assert udfs.CRM_SEGMENT(object()).startswith("#CRM: unknown customer")
    assert udfs.CRM_SEGMENT([]) == []
    assert udfs.CRM_SEGMENT(dt.date(2024, 1, 1)) == "#CRM: unknown customer 2024-01-01"
    assert udfs.CRM_METRIC("G01", 12).startswith("#CRM: unknown metric 12")


# --- the VBA wrappers name these functions with these arguments --------------------------------------------


def _bas_functions() -> dict[str, tuple[list[str], list[str], str]]:
    """Function -> (declared arguments with 'Optional', arguments passed to CallUDF, module) from the .bas."""
    text = BAS.read_text()
    out = {}
    for match in re.finditer(r"^Function (\w+)\(([^)]*)\)\n(.*?)^End Function", text, re.M | re.S):
        name, declared, body = match.groups()
        call = re.search(r'XLPy\.CallUDF\("([\w.]+)", "(\w+)", Array\(([^)]*)\), ThisWorkbook, Application\.Caller\)',
                         body)
        assert call and call.group(2) == name, name
        out[name] = ([a.strip() for a in declared.split(",")], [a.strip() for a in call.group(3).split(",")],
                     call.group(1))
    return out


def test_wrappers_match_the_python_functions():
    wrappers = _bas_functions()
    python = {name for name in dir(udfs) if name.startswith("CRM_") and callable(getattr(udfs, name))}
    assert set(wrappers) == python == {*FUNCTIONS, "CRM_METRIC", *CLV_FUNCTIONS}
    for name, (declared, passed, module) in wrappers.items():
        assert module == "crm_xl.excel.udfs"
        params = inspect.signature(getattr(udfs, name)).parameters.values()
        expected = [("Optional " if p.default is not inspect.Parameter.empty else "") + p.name for p in params]
        assert declared == expected, name
        assert passed == [p.name for p in params], name
        assert "caller" not in passed
    assert wrappers["CRM_SEGMENT"][0] == ["customer_id", "Optional month"]
    assert wrappers["CRM_METRIC"][0] == ["customer_id", "metric", "Optional month"]
    assert wrappers["CRM_PALIVE"][0] == wrappers["CRM_CLV"][0] == ["customer_id"]


def test_xlwings_own_generator_writes_the_shipped_wrappers(monkeypatch):
    """Run xlwings' generate_vba_wrapper (Windows-only module, its COM imports stubbed) on this module
    decorated for real: the result must be the committed xlwings_udfs.bas, byte for byte."""
    for name in ("pythoncom", "pywintypes", "win32com", "win32com.client"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    sys.modules["pythoncom"].CoInitialize = lambda: None
    sys.modules["win32com.client"].Dispatch = None
    sys.modules["win32com"].client = sys.modules["win32com.client"]
    monkeypatch.delitem(sys.modules, "xlwings.udfs", raising=False)
    try:
        import xlwings.udfs as xlwings_udfs

        monkeypatch.setattr(xlwings, "func", xlwings_udfs.xlfunc)
        monkeypatch.setattr(xlwings, "arg", xlwings_udfs.xlarg)
        monkeypatch.setattr(xlwings, "ret", xlwings_udfs.xlret)
        spec = importlib.util.spec_from_file_location("_crm_udfs_decorated", UDF_FILE)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        assert module.CRM_METRIC.__xlfunc__["args"][1]["options"] == {"ndim": 2}
        buffer = io.StringIO()
        writer = xlwings_udfs.VBAWriter(buffer)
        writer.writeln('Attribute VB_Name = "xlwings_udfs"')   # the header import_udfs writes
        writer.writeln("'Autogenerated code by xlwings - changes will be lost with next import!")
        writer.writeln("""#Const App = "Microsoft Excel" 'Adjust when using outside of Excel""")
        xlwings_udfs.generate_vba_wrapper("crm_xl.excel.udfs", module, buffer,
                                          types.SimpleNamespace(Name="crm_xl.xlsm"))
    finally:
        sys.modules.pop("xlwings.udfs", None)
        if hasattr(xlwings, "udfs"):
            delattr(xlwings, "udfs")
    assert buffer.getvalue() == BAS.read_text()


# --- CRM_PALIVE and CRM_CLV (the clv table) -------------------------------------------------------------


@pytest.fixture(scope="module")
def sample_tables() -> dict[str, pd.DataFrame]:
    """crm_xl.run on the bundled sample (3,000 customers): a full clv table."""
    import crm_xl
    from crm_xl.io.csv import read_raw_folder

    return crm_xl.run(**read_raw_folder(SAMPLE))


def _clv_value(tables, customer_id: str, column: str) -> float:
    frame = tables["clv"]
    return float(frame.loc[frame["customer_id"] == customer_id, column].iloc[0])


@pytest.mark.parametrize(("name", "column"), CLV_FUNCTIONS.items())
def test_clv_functions_on_a_value_and_a_range(sample_tables, name, column):
    udfs.prime(BOOK, sample_tables, "value_tier")
    func = getattr(udfs, name)
    ids = sample_tables["clv"]["customer_id"].iloc[[0, 7, 300]].tolist()
    assert func(ids[0]) == _clv_value(sample_tables, ids[0], column)
    assert func([[i] for i in ids]) == [[_clv_value(sample_tables, i, column)] for i in ids]
    assert func([ids]) == [[_clv_value(sample_tables, i, column) for i in ids]]
    assert func([[None], [""]]) == [[""], [""]]


def test_clv_functions_say_why_a_customer_has_no_value(sample_tables):
    udfs.prime(BOOK, sample_tables, "value_tier")
    snapshot = sample_tables["customer_snapshot"]
    never = snapshot.loc[snapshot["first_core_date"].isna(), "customer_id"].astype(str).iloc[0]
    assert never not in set(sample_tables["clv"]["customer_id"])
    assert udfs.CRM_PALIVE(never) == f"#CRM: no CLV for customer {never}: no core purchase yet"
    assert udfs.CRM_CLV("no such id") == "#CRM: unknown customer no such id"


def test_clv_functions_when_the_models_could_not_be_fitted(primed):
    """The golden fixture has too few repeat buyers: the clv table is empty, and the cells say so."""
    assert primed["clv"].empty
    text = udfs.CRM_CLV("G01")
    assert text.startswith("#CRM: no CLV in this refresh") and "clv.status" in text
    assert udfs.CRM_PALIVE("nobody") == "#CRM: unknown customer nobody"


def test_blank_clv_cells_are_blank(sample_tables):
    """clv is blank when only the order-value model failed; p_alive is still there."""
    tables = dict(sample_tables)
    tables["clv"] = sample_tables["clv"].assign(clv=np.nan)
    udfs.prime(BOOK, tables, "value_tier")
    first = tables["clv"]["customer_id"].iloc[0]
    assert udfs.CRM_CLV(first) == ""
    assert udfs.CRM_PALIVE(first) == _clv_value(tables, first, "p_alive")


def test_clv_functions_not_refreshed():
    assert udfs.CRM_PALIVE("G01") == udfs.NOT_REFRESHED
    assert udfs.CRM_CLV([["G01"], ["G02"]]) == [[udfs.NOT_REFRESHED], [udfs.NOT_REFRESHED]]


def test_clv_is_read_from_the_workbook_only_when_asked_for(sample_tables, clock, monkeypatch):
    """A reopened workbook: the clv sheet is read at the first CRM_PALIVE/CRM_CLV, once; a refresh made
    elsewhere (a new refresh id) makes the next recalculation read it again."""
    clv = _as_read_from_excel(sample_tables["clv"])
    book = _FakeBook(r"C:\crm\crm.xlsm", {"customer_snapshot": _as_read_from_excel(sample_tables["customer_snapshot"]),
                                           "run_info": sample_tables["run_info"], "clv": clv,
                                           "tbl_status": status("r1")})
    monkeypatch.setattr(udfs, "_caller_book", lambda: book)
    first = clv["customer_id"].iloc[0]
    assert udfs.CRM_SEGMENT(first) == cell(snap(sample_tables, first, "value_tier"))
    assert "clv" not in book.reads
    for _ in range(100):
        assert udfs.CRM_PALIVE(first) == pytest.approx(_clv_value(sample_tables, first, "p_alive"))
    assert udfs.CRM_CLV(first) == pytest.approx(_clv_value(sample_tables, first, "clv"))
    assert book.reads.count("clv") == 1
    book.put("clv", clv.assign(clv=123.0))
    book.put("tbl_status", status("r2"))
    clock[0] += udfs.UdfCache.check_seconds
    assert udfs.CRM_CLV(first) == 123.0
    assert book.reads.count("clv") == 2
