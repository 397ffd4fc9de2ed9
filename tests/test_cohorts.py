"""cohort_retention: first-core-month cohorts followed month by month (crm_xl/analyses/cohorts.py).

Checked against an independent computation written here with plain loops over customer_history rows
(and over the golden answer key, tests/fixtures/golden/expected_history.csv), a hand-computed
example, hypothesis properties on generated histories, and the chart table derived from it.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import crm_xl
from crm_xl import contract
from crm_xl.analyses.cohorts import cohort_retention
from crm_xl.io.csv import read_csv, read_raw_folder
from crm_xl.workbook import layout

GOLDEN = Path(__file__).parent / "fixtures" / "golden"
SAMPLE = Path(__file__).parents[1] / "sample_data"


def _month(value: object) -> pd.Period | None:
    if value is None or (not isinstance(value, str) and pd.isna(value)) or value == "":
        return None
    return pd.Period(pd.Timestamp(value), freq="M")


def loop_cohorts(rows: list[dict[str, object]]) -> dict[tuple[pd.Period, int], dict[str, float]]:
    """The cohort table by plain loops: rows are customer_history rows as dicts (report_month, customer_id,
    first_core_date, last_core_date, m1 and optionally revenue_m1)."""
    months = sorted({_month(r["report_month"]) for r in rows})
    first_shown, last = months[0], months[-1]
    cohort_of: dict[str, pd.Period] = {}
    for r in rows:
        first = _month(r["first_core_date"])
        if first is not None:
            cohort_of[str(r["customer_id"])] = first
    members: dict[pd.Period, set[str]] = defaultdict(set)
    for customer, cohort in cohort_of.items():
        if cohort >= first_shown:
            members[cohort].add(customer)
    by_key = {(_month(r["report_month"]), str(r["customer_id"])): r for r in rows}
    out = {}
    for cohort, customers in members.items():
        month, since = cohort, 0
        while month <= last:
            active, volume, revenue = 0, 0.0, 0.0
            for customer in customers:
                row = by_key[(month, customer)]
                if _month(row["last_core_date"]) == month:
                    active += 1
                volume += float(row["m1"])
                revenue += float(row.get("revenue_m1", 0.0))
            out[(cohort, since)] = {"cohort_size": len(customers), "active": active,
                                    "share_active": active / len(customers), "volume": volume, "revenue": revenue}
            month, since = month + 1, since + 1
    return out


def as_dict(table: pd.DataFrame) -> dict[tuple[pd.Period, int], dict[str, float]]:
    return {(pd.Period(r.cohort, freq="M"), int(r.months_since)):
            {"cohort_size": r.cohort_size, "active": r.active, "share_active": r.share_active, "volume": r.volume,
             "revenue": r.revenue} for r in table.itertuples()}


def assert_same(got: dict, want: dict, fields: tuple[str, ...]) -> None:
    assert sorted(got) == sorted(want)
    for key, row in want.items():
        for name in fields:
            assert got[key][name] == pytest.approx(row[name], abs=1e-6), (key, name)


@pytest.fixture(scope="module")
def sample_tables() -> dict[str, pd.DataFrame]:
    return crm_xl.run(**read_raw_folder(SAMPLE))


@pytest.fixture(scope="module")
def golden_tables() -> dict[str, pd.DataFrame]:
    raw = {name: read_csv(GOLDEN / f"{name}.csv", name) for name in ("transactions", "customers", "products")}
    return crm_xl.run(**raw, config={"report_month": "2024-12", "history_months": 24})


def test_sample_equals_the_loop_over_customer_history(sample_tables: dict[str, pd.DataFrame]) -> None:
    history = sample_tables["customer_history"]
    rows = history[["report_month", "customer_id", "first_core_date", "last_core_date", "m1",
                    "revenue_m1"]].to_dict("records")
    assert_same(as_dict(sample_tables["cohort_retention"]), loop_cohorts(rows),
                ("cohort_size", "active", "share_active", "volume", "revenue"))


def test_golden_personas_equal_the_answer_key(golden_tables: dict[str, pd.DataFrame]) -> None:
    """Sizes, actives and volumes from the independent SQL answer key, not from our history."""
    expected = pd.read_csv(GOLDEN / "expected_history.csv", dtype=str, keep_default_na=False)
    want = loop_cohorts(expected.to_dict("records"))
    table = golden_tables["cohort_retention"]
    assert_same(as_dict(table), want, ("cohort_size", "active", "share_active", "volume"))
    assert len(table) > 0 and table["cohort"].min() >= pd.Timestamp("2023-01-01")


def test_columns_and_types_follow_the_contract(sample_tables: dict[str, pd.DataFrame]) -> None:
    table = sample_tables["cohort_retention"]
    assert list(table.columns) == contract.columns("cohort_retention")
    assert str(table["cohort"].dtype) == str(sample_tables["customer_history"]["report_month"].dtype)
    cohort = table["cohort"].dt.year * 12 + table["cohort"].dt.month
    assert (table["report_month"].dt.year * 12 + table["report_month"].dt.month - cohort == table["months_since"]).all()
    assert table.equals(table.sort_values(["cohort", "months_since"]).reset_index(drop=True))


def _run(lines: list[tuple[str, str, str, int]], history_months: int = 4) -> pd.DataFrame:
    """crm_xl.run on (customer, date, product, quantity) lines, report month 2024-04."""
    transactions = pd.DataFrame([(f"I{i}", date, customer, product, quantity, 4.5 * quantity)
                                 for i, (customer, date, product, quantity) in enumerate(lines)],
                                columns=["invoice_id", "invoice_date", "customer_id", "product_id", "quantity",
                                         "revenue"])
    ids = sorted({line[0] for line in lines})
    customers = pd.DataFrame({"customer_id": ids, "customer_group": "Retail", "created_date": "2020-01-01"})
    products = pd.DataFrame({"product_id": ["POD10", "DEV1"], "category": ["consumable", "device"],
                             "unit_size": [10, 1]})
    config = {"report_month": "2024-04", "history_months": history_months}
    return crm_xl.run(transactions, customers, products, config)["cohort_retention"]


def test_hand_computed_example() -> None:
    table = _run([
        ("C1", "2024-01-05", "POD10", 2), ("C1", "2024-03-09", "POD10", 1),
        ("C2", "2024-01-20", "POD10", 1), ("C2", "2024-02-02", "POD10", 1), ("C2", "2024-04-30", "POD10", 3),
        ("C3", "2024-02-14", "POD10", 1),
        ("C4", "2023-11-03", "POD10", 1), ("C4", "2024-02-10", "POD10", 1),   # cohort before the history
        ("C5", "2024-01-10", "DEV1", 1),                                      # never bought core
        ("C6", "2024-03-01", "POD10", -1),                                    # a return is no purchase
    ])
    got = [(r.cohort.strftime("%Y-%m"), r.months_since, r.report_month.strftime("%Y-%m"), r.cohort_size, r.active,
            r.share_active, r.volume, r.revenue) for r in table.itertuples()]
    assert got == [
        ("2024-01", 0, "2024-01", 2, 2, 1.0, 30.0, 13.5),
        ("2024-01", 1, "2024-02", 2, 1, 0.5, 10.0, 4.5),
        ("2024-01", 2, "2024-03", 2, 1, 0.5, 10.0, 4.5),
        ("2024-01", 3, "2024-04", 2, 1, 0.5, 30.0, 13.5),
        ("2024-02", 0, "2024-02", 1, 1, 1.0, 10.0, 4.5),
        ("2024-02", 1, "2024-03", 1, 0, 0.0, 0.0, 0.0),
        ("2024-02", 2, "2024-04", 1, 0, 0.0, 0.0, 0.0),
    ]


def test_no_history_gives_an_empty_typed_table() -> None:
    dates = {c: pd.Series(dtype="datetime64[s]") for c in ("report_month", "first_core_date", "last_core_date")}
    numbers = {c: pd.Series(dtype="float64") for c in ("m1", "revenue_m1")}
    empty = cohort_retention(pd.DataFrame(dates | numbers))
    assert list(empty.columns) == contract.columns("cohort_retention") and empty.empty
    assert empty["months_since"].dtype == "int64"


# --- properties on generated histories -------------------------------------------------------------

_customers = st.lists(st.tuples(st.integers(-3, 7),                     # first core month (0 = history start)
                                st.lists(st.integers(0, 7), max_size=6),  # later purchase months
                                st.integers(1, 9)),                       # units per purchase
                      min_size=1, max_size=12)


def _history(customers: list[tuple[int, list[int], int]], months: int = 8) -> pd.DataFrame:
    """customer_history rows as the core writes them, for customers given as (first month, purchase months,
    units); month 0 is 2024-01 and a customer is in the base from the history start."""
    start = pd.Period("2024-01", freq="M")
    rows = []
    for n, (first, later, units) in enumerate(customers):
        bought = sorted({first, *(m for m in later if m > first)})
        for k in range(months):
            past = [m for m in bought if m <= k]
            in_month = k in bought
            last = (start + past[-1]).to_timestamp() + pd.Timedelta(days=n % 28) if past else pd.NaT
            rows.append({"report_month": (start + k).to_timestamp(), "customer_id": f"C{n}",
                         "first_core_date": (start + first).to_timestamp() if past else pd.NaT,
                         "last_core_date": last,
                         "m1": float(units) if in_month else 0.0, "revenue_m1": 0.5 * units if in_month else 0.0})
    frame = pd.DataFrame(rows)
    for column in ("report_month", "first_core_date", "last_core_date"):
        frame[column] = frame[column].astype("datetime64[s]")
    return frame


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_customers)
def test_properties_and_the_loop_agree(customers: list[tuple[int, list[int], int]]) -> None:
    history = _history(customers)
    table = cohort_retention(history)
    assert_same(as_dict(table), loop_cohorts(history.to_dict("records")),
                ("cohort_size", "active", "share_active", "volume", "revenue"))
    assert (table.loc[table["months_since"] == 0, "share_active"] == 1.0).all()
    assert (table["active"] <= table["cohort_size"]).all()
    assert (table.groupby("cohort")["cohort_size"].nunique() == 1).all()
    last = table["report_month"].max() if len(table) else None
    for _, group in table.groupby("cohort"):     # every month since the cohort up to the last month, no holes
        assert list(group["months_since"]) == list(range(len(group)))
        assert group["report_month"].iloc[-1] == last
    inside = {c for c in range(8) if any(first == c for first, _, _ in customers)}
    assert table["cohort"].nunique() == len(inside)


def test_same_history_in_another_row_order_gives_the_same_table() -> None:
    history = _history([(0, [1, 3], 2), (1, [2], 5), (-2, [0, 4], 1), (3, [], 7)])
    shuffled = history.sample(frac=1.0, random_state=3).reset_index(drop=True)
    pd.testing.assert_frame_equal(cohort_retention(history), cohort_retention(shuffled))


def test_retention_curve_chart_table_weighs_every_customer_the_same() -> None:
    table = pd.DataFrame({"months_since": [0, 1, 0], "active": [4, 1, 2], "cohort_size": [4, 4, 2]})
    curve = layout.cohort_curve_table(table)
    assert curve.to_dict("list") == {"months_since": ["month 0", "month 1"], "share_active": [1.0, 0.25]}


def test_retention_curve_of_the_sample(sample_tables: dict[str, pd.DataFrame]) -> None:
    cohorts = sample_tables["cohort_retention"]
    curve = layout.chart_tables(sample_tables)["chart_cohort_curve"]
    assert len(curve) == cohorts["months_since"].max() + 1 and curve["share_active"].iloc[0] == 1.0
    for k, share in enumerate(curve["share_active"]):
        rows = cohorts[cohorts["months_since"] == k]
        assert share == pytest.approx(rows["active"].sum() / rows["cohort_size"].sum())
    assert np.all((curve["share_active"] >= 0) & (curve["share_active"] <= 1))
