"""The history store and the incremental refresh (issue 14.1, 14.2).

Every case runs a refresh over a store that an earlier refresh filled, then a full rebuild of the
same inputs with no store, and asserts the two give the same tables (every column, type and
category, exactly) and the same bytes once written as CSV; and that the store was really used
where it could be (``plan.reused``), so a store that silently recomputed everything would fail.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crm_xl.analyses.report import run
from crm_xl.errors import InputError
from crm_xl.io.csv import write_tables
from crm_xl.io.sample import generate
from crm_xl.store import run_with_store
from crm_xl.store.history import MONTH_TABLES, HistoryStore

CONFIG = {"report_month": "2024-10", "history_months": 12}


@pytest.fixture(scope="module")
def raw() -> dict[str, pd.DataFrame]:
    return generate(n_customers=400, months=30, end_month="2024-12", seed=11, messy=True)


def until(raw: dict[str, pd.DataFrame], last_day: str) -> dict[str, pd.DataFrame]:
    """The extract as it looked on ``last_day``: later lines not there yet."""
    lines = raw["transactions"]
    return {**raw, "transactions": lines[lines["invoice_date"] <= pd.Timestamp(last_day)].reset_index(drop=True)}


def assert_same_as_full(raw: dict[str, pd.DataFrame], config: dict[str, object], tables: dict[str, pd.DataFrame],
                        tmp_path: Path) -> None:
    full = run(**raw, config=config)
    assert list(tables) == list(full)
    for name, frame in full.items():
        pd.testing.assert_frame_equal(tables[name], frame, check_exact=True, check_categorical=True, obj=name)
    written = {}
    for label, result in (("store", tables), ("full", full)):
        folder = tmp_path / f"csv_{label}"
        write_tables(result, folder, run_id="same")
        written[label] = {p.name: p.read_bytes() for p in sorted(folder.glob("*.csv"))}
    assert written["store"] == written["full"]


def refresh(raw: dict[str, pd.DataFrame], config: dict[str, object], store: Path):
    return run_with_store(**raw, config=config, store=store)


def recomputed_from(raw: dict[str, pd.DataFrame], changed: dict[str, pd.DataFrame], tmp_path: Path) -> pd.Period:
    """Fill a store from ``raw``, refresh it with ``changed``: the first month the refresh computed
    (after checking its tables are a full rebuild's)."""
    store = tmp_path / "store"
    refresh(raw, CONFIG, store)
    result = refresh(changed, CONFIG, store)
    assert_same_as_full(changed, CONFIG, result.tables, tmp_path)
    return result.plan.months[result.plan.reused]


def test_appended_months_reuse_the_stored_ones(raw: dict[str, pd.DataFrame], tmp_path: Path) -> None:
    store = tmp_path / "store"
    first = refresh(until(raw, "2024-10-31"), CONFIG, store)
    assert first.plan.full and first.plan.reason == "the store is empty"
    later = {"report_month": "2024-12", "history_months": 12}
    second = refresh(raw, later, store)
    # the history now starts two months later: 10 of its months were stored, the 2 new ones computed
    assert (second.plan.reused, second.plan.computed) == (10, 2)
    assert "2024-11 is not in the store yet" in second.plan.describe()
    assert_same_as_full(raw, later, second.tables, tmp_path)


def test_refreshing_the_same_inputs_again_computes_only_the_report_month(raw: dict[str, pd.DataFrame],
                                                                          tmp_path: Path) -> None:
    store = tmp_path / "store"
    data = until(raw, "2024-10-31")
    refresh(data, CONFIG, store)
    again = refresh(data, CONFIG, store)
    assert (again.plan.reused, again.plan.computed) == (11, 1)
    assert "nothing changed" in again.plan.reason
    assert_same_as_full(data, CONFIG, again.tables, tmp_path)


def test_a_late_line_recomputes_from_its_month(raw: dict[str, pd.DataFrame], tmp_path: Path) -> None:
    store = tmp_path / "store"
    refresh(raw, CONFIG, store)
    lines = raw["transactions"]
    late = lines[(lines["invoice_date"] >= "2024-06-01") & (lines["invoice_date"] < "2024-07-01")].head(1).copy()
    late["invoice_id"] = "LATE-1"
    late["invoice_date"] = pd.Timestamp("2024-06-15")
    changed = {**raw, "transactions": pd.concat([lines, late], ignore_index=True)}
    result = refresh(changed, CONFIG, store)
    months = result.plan.months
    assert months[result.plan.reused] == pd.Period("2024-06", "M")
    assert "the inputs up to 2024-06 changed" in result.plan.reason
    assert_same_as_full(changed, CONFIG, result.tables, tmp_path)


def test_a_corrected_line_recomputes_from_its_month(raw: dict[str, pd.DataFrame], tmp_path: Path) -> None:
    lines = raw["transactions"].copy()
    at = lines.index[(lines["invoice_date"] >= "2024-03-01") & (lines["invoice_date"] < "2024-04-01")][0]
    lines.loc[at, "quantity"] = lines.loc[at, "quantity"] * 40       # a typo fixed in the source system
    assert recomputed_from(raw, {**raw, "transactions": lines}, tmp_path) == pd.Period("2024-03", "M")


def test_a_new_customer_recomputes_from_the_month_they_enter(raw: dict[str, pd.DataFrame], tmp_path: Path) -> None:
    customers = raw["customers"]
    # sorts before every other id, so every later customer's position (customer_key) moves
    newcomer = customers.iloc[[5]].copy()
    newcomer["customer_id"] = "A000001"
    newcomer["created_date"] = pd.Timestamp("2024-08-20")
    line = raw["transactions"].iloc[[0]].copy()
    line["customer_id"], line["invoice_id"], line["invoice_date"] = "A000001", "NEW-1", pd.Timestamp("2024-09-02")
    changed = {**raw, "customers": pd.concat([customers, newcomer], ignore_index=True),
               "transactions": pd.concat([raw["transactions"], line], ignore_index=True)}
    assert recomputed_from(raw, changed, tmp_path) == pd.Period("2024-08", "M")


def test_a_customer_without_created_date_changes_every_month(raw: dict[str, pd.DataFrame], tmp_path: Path) -> None:
    store = tmp_path / "store"
    refresh(raw, CONFIG, store)
    newcomer = raw["customers"].iloc[[3]].copy()
    newcomer["customer_id"], newcomer["created_date"] = "Z999999", pd.NaT    # in the base from the start
    changed = {**raw, "customers": pd.concat([raw["customers"], newcomer], ignore_index=True)}
    result = refresh(changed, CONFIG, store)
    assert result.plan.full
    assert_same_as_full(changed, CONFIG, result.tables, tmp_path)


@pytest.mark.parametrize("change", [{"t_mid_high": 150}, {"measure": "revenue"}, {"rfm_population": "all_buyers"}])
def test_a_settings_change_rebuilds_everything(raw: dict[str, pd.DataFrame], tmp_path: Path,
                                               change: dict[str, object]) -> None:
    store = tmp_path / "store"
    refresh(raw, CONFIG, store)
    config = {**CONFIG, **change}
    result = refresh(raw, config, store)
    assert result.plan.full and "settings" in result.plan.reason
    assert_same_as_full(raw, config, result.tables, tmp_path)
    # the store now holds the new settings' months: the next refresh reuses them
    assert refresh(raw, config, store).plan.reused == 11


def test_a_longer_history_computes_the_months_it_lacks(raw: dict[str, pd.DataFrame], tmp_path: Path) -> None:
    store = tmp_path / "store"
    refresh(raw, CONFIG, store)
    longer = {**CONFIG, "history_months": 18}
    result = refresh(raw, longer, store)
    assert result.plan.full            # its first months (and the one before) were never computed
    assert_same_as_full(raw, longer, result.tables, tmp_path)
    shorter = {**CONFIG, "history_months": 6}
    again = refresh(raw, shorter, store)
    assert again.plan.reused == 5
    assert_same_as_full(raw, shorter, again.tables, tmp_path)


def test_the_store_keeps_older_months_and_drops_what_the_inputs_contradict(raw: dict[str, pd.DataFrame],
                                                                            tmp_path: Path) -> None:
    store = tmp_path / "store"
    refresh(until(raw, "2024-10-31"), CONFIG, store)
    refresh(raw, {"report_month": "2024-12", "history_months": 12}, store)
    stored = HistoryStore(store).parts("customer_history")
    # 2023-10 (the first run's month before its history) .. 2024-12: the history beyond history_months stays
    assert min(stored) == pd.Period("2023-10", "M") and max(stored) == pd.Period("2024-12", "M")
    manifest = json.loads((store / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["report_month"] == "2024-12" and manifest["schema_version"] == 1
    assert set(manifest["tables"]) == {*MONTH_TABLES, "facts", "invoice_links"}
    assert manifest["tables"]["customer_history"]["2024-12"]["rows"] == stored[pd.Period("2024-12", "M")].rows
    # a refresh for an earlier report month: later months cannot be vouched for, they go
    refresh(raw, CONFIG, store)
    assert max(HistoryStore(store).parts("customer_history")) == pd.Period("2024-10", "M")
    assert not (store / "customer_history" / "month=2024-12").exists()


def test_the_store_is_read_by_duckdb_as_one_table(raw: dict[str, pd.DataFrame], tmp_path: Path) -> None:
    duckdb = pytest.importorskip("duckdb")
    store = tmp_path / "store"
    result = refresh(raw, CONFIG, store)
    history = duckdb.sql(f"SELECT month, count(*) AS n, sum(m1) AS m1 FROM read_parquet("
                         f"'{store}/customer_history/*/*.parquet', hive_partitioning = true) "
                         "GROUP BY month ORDER BY month").df()
    expected = result.tables["customer_history"].groupby("report_month")
    shown = history[history["month"] >= "2023-11"].reset_index(drop=True)
    assert shown["n"].tolist() == expected.size().tolist()
    np.testing.assert_allclose(shown["m1"], expected["m1"].sum().to_numpy())
    [(units,)] = duckdb.sql(f"SELECT sum(core_units) FROM read_parquet('{store}/facts/*/*.parquet')").fetchall()
    history = result.tables["customer_history"]
    # the facts are exact DECIMAL(38, 6): the last month's M_total is every core unit up to it
    assert float(units) == history.loc[history["report_month"] == history["report_month"].max(), "m_total"].sum()


def test_a_damaged_month_file_is_recomputed(raw: dict[str, pd.DataFrame], tmp_path: Path) -> None:
    store = tmp_path / "store"
    refresh(raw, CONFIG, store)
    damaged = store / "customer_history" / "month=2024-05" / "part-0.parquet"
    damaged.write_bytes(damaged.read_bytes()[:100])        # a disk that filled up half-way
    result = refresh(raw, CONFIG, store)
    assert result.plan.months[result.plan.reused] == pd.Period("2024-05", "M")
    assert_same_as_full(raw, CONFIG, result.tables, tmp_path)
    assert pq.read_table(damaged).num_rows > 0


def test_a_month_written_from_other_inputs_is_not_reused(raw: dict[str, pd.DataFrame], tmp_path: Path) -> None:
    """A refresh that stopped after rewriting some months: each file's own digest decides, not the manifest."""
    store, other = tmp_path / "store", tmp_path / "other"
    refresh(raw, CONFIG, store)
    lines = raw["transactions"].copy()
    lines.loc[lines.index[lines["invoice_date"] >= "2024-02-01"][0], "quantity"] = 999
    refresh({**raw, "transactions": lines}, CONFIG, other)
    shutil.copy(other / "monthly_summary" / "month=2024-04" / "part-0.parquet",
                store / "monthly_summary" / "month=2024-04" / "part-0.parquet")
    result = refresh(raw, CONFIG, store)
    assert result.plan.months[result.plan.reused] == pd.Period("2024-04", "M")
    assert_same_as_full(raw, CONFIG, result.tables, tmp_path)


def test_a_folder_holding_other_files_is_not_taken_for_a_store(raw: dict[str, pd.DataFrame], tmp_path: Path) -> None:
    (tmp_path / "Documents").mkdir()
    (tmp_path / "Documents" / "budget.xlsx").write_bytes(b"mine")
    with pytest.raises(InputError, match="not a crm_xl history store"):
        refresh(raw, CONFIG, tmp_path / "Documents")
    assert (tmp_path / "Documents" / "budget.xlsx").read_bytes() == b"mine"


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(first_end=st.integers(0, 5), second_end=st.integers(0, 5), history=st.integers(1, 14),
       change_month=st.one_of(st.none(), st.integers(0, 13)), seed=st.integers(0, 3))
def test_any_sequence_of_two_refreshes_equals_a_full_rebuild(tmp_path_factory: pytest.TempPathFactory,
                                                             first_end: int, second_end: int, history: int,
                                                             change_month: int | None, seed: int) -> None:
    raw = generate(n_customers=60, months=24, end_month="2024-12", seed=seed, messy=True)
    store = tmp_path_factory.mktemp("store")
    month = pd.Period("2024-12", "M")
    first = {"report_month": str(month - first_end), "history_months": history}
    second = {"report_month": str(month - second_end), "history_months": history}
    run_with_store(**raw, config=first, store=store)
    data = raw
    if change_month is not None:     # drop one month's first line: a correction in the source system
        lines = raw["transactions"]
        start = (month - change_month).to_timestamp()
        in_month = lines.index[(lines["invoice_date"] >= start)
                               & (lines["invoice_date"] < start + pd.DateOffset(months=1))]
        data = {**raw, "transactions": lines.drop(in_month[:1]).reset_index(drop=True)}
    result = run_with_store(**data, config=second, store=store)
    full = run(**data, config=second)
    for name, frame in full.items():
        pd.testing.assert_frame_equal(result.tables[name], frame, check_exact=True, obj=name)


def test_crm_xl_run_with_a_store_writes_the_same_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from crm_xl.cli import main

    data = Path(__file__).parent / "fixtures" / "golden"
    store = tmp_path / "store"
    plain, first, second = tmp_path / "plain", tmp_path / "first", tmp_path / "second"
    assert main(["run", "--data", str(data), "--out", str(plain)]) == 0
    assert main(["run", "--data", str(data), "--out", str(first), "--store", str(store)]) == 0
    assert "all" in capsys.readouterr().out
    assert main(["run", "--data", str(data), "--out", str(second), "--store", str(store)]) == 0
    out = capsys.readouterr().out
    assert "months reused" in out and str(store) in out
    for csv in sorted(plain.glob("*.csv")):
        assert (second / csv.name).read_bytes() == csv.read_bytes() == (first / csv.name).read_bytes(), csv.name
    assert (store / "manifest.json").is_file()


def test_crm_xl_refresh_keeps_its_store_beside_the_workbook(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import zipfile

    from crm_xl.cli import main
    from crm_xl.workbook import layout
    from crm_xl.workbook.package import find_tables

    plain, stored = tmp_path / "plain.xlsm", tmp_path / "crm.xlsm"
    assert main(["new", str(plain), "--sample"]) == 0
    shutil.copy2(plain, stored)
    assert main(["refresh", str(plain), "--quiet"]) == 0
    assert main(["refresh", str(stored), "--quiet", "--store"]) == 0
    assert (tmp_path / "crm_history" / "manifest.json").is_file()
    assert main(["refresh", str(stored), "--quiet", "--store"]) == 0
    assert "months reused" in capsys.readouterr().out

    def parts(book: Path) -> dict[str, bytes]:
        with zipfile.ZipFile(book) as package:
            return {name: package.read(name) for name in package.namelist()}

    tables = find_tables(plain)
    # only the Log (a line per refresh) and the Start sheet (refresh id, time) may differ
    allowed = {tables[layout.LOG_TABLE.name].sheet_part, tables[layout.LOG_TABLE.name].table_part,
               tables[layout.STATUS_TABLE.name].sheet_part}
    a, b = parts(plain), parts(stored)
    assert {name for name in a if a[name] != b.get(name)} <= allowed


def test_a_store_filled_by_one_engine_serves_another(raw: dict[str, pd.DataFrame], tmp_path: Path) -> None:
    """The engines give the same facts, hence the same digests: the store does not care which ran."""
    pytest.importorskip("duckdb")
    store = tmp_path / "store"
    refresh(until(raw, "2024-10-31"), CONFIG, store)
    later = {"report_month": "2024-12", "history_months": 12}
    result = run_with_store(**raw, config=later, store=store, engine="duckdb")
    assert result.plan.reused == 10
    assert_same_as_full(raw, later, result.tables, tmp_path)


def test_a_second_refresh_of_the_same_store_waits_then_says_who_holds_it(raw: dict[str, pd.DataFrame],
                                                                         tmp_path: Path) -> None:
    import threading

    from crm_xl.io.locks import LockedError, locked

    store = tmp_path / "store"
    refresh(raw, CONFIG, store)
    held, release, errors = threading.Event(), threading.Event(), []

    def hold() -> None:
        with locked(store):
            held.set()
            release.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait(30)
    try:
        run_with_store(**raw, config=CONFIG, store=store, wait=0.2)
    except LockedError as exc:
        errors.append(str(exc))
    finally:
        release.set()
        holder.join()
    assert errors and "store is being changed by" in errors[0]


def test_a_file_given_as_the_store_is_a_clear_error(raw: dict[str, pd.DataFrame], tmp_path: Path) -> None:
    (tmp_path / "store.txt").write_text("notes", encoding="utf-8")
    with pytest.raises(InputError, match="is a file, not a folder"):
        refresh(raw, CONFIG, tmp_path / "store.txt")
