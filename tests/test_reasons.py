"""Reasons a marketer reads, names that cannot be confused, and the Glossary (issue 12, point 7)."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import crm_xl
from crm_xl import contract
from crm_xl.cli import main
from crm_xl.config import EVENTS, STATES, STATUSES, TIERS, Config
from crm_xl.io.csv import read_raw_folder
from crm_xl.workbook import layout

SAMPLE = Path(__file__).resolve().parent.parent / "sample_data"
PRODUCTS = pd.DataFrame({"product_id": ["P1"], "category": ["consumable"], "unit_size": [1]})
FIXED = {"rfm_method": "fixed", "rfm_cuts_recency": "30, 60, 120, 240", "rfm_cuts_frequency": "1, 2, 4, 8",
         "rfm_cuts_monetary": "100, 500, 2000, 10000"}


def _run(lines: list[tuple[str, str, float]], config: dict, table: str = "customer_snapshot") -> pd.DataFrame:
    """customer_snapshot (or the report month's customer_history) of (customer, date, pods) lines, one
    invoice each."""
    tx = pd.DataFrame({"invoice_id": [f"I{i}" for i in range(len(lines))], "invoice_date": [d for _, d, _ in lines],
                       "customer_id": [c for c, _, _ in lines], "product_id": "P1",
                       "quantity": [q for _, _, q in lines], "revenue": 1})
    customers = pd.DataFrame({"customer_id": sorted({c for c, _, _ in lines})})
    tables = crm_xl.run(tx, customers, PRODUCTS, {"report_month": "2024-12", "history_months": 1, "unit_name": "pods",
                                                  **config})
    frame = tables[table]
    if table == "customer_history":
        frame = frame[frame["report_month"] == frame["report_month"].max()]
    return frame.set_index("customer_id")


def test_hand_computed_tier_reasons():
    snapshot = _run([
        ("SIL", "2024-08-10", 500), ("SIL", "2024-12-10", 320),            # 820 / 6 = 136.67 a month
        ("GLD", "2024-12-10", 6000),                                      # AMC 1,000 but one order
        ("PAS", "2024-03-10", 40),                                        # nothing in the last 6 months
        *[("DIA", f"2024-{m:02d}-1{k}", 1000) for m in range(7, 13) for k in range(2)],   # 2,000 a month, 12 orders
    ], {})
    reason = snapshot["tier_reason"]
    assert reason["SIL"] == "Silver: averages 136.67 pods a month: ≥ 50 for Silver, < 200 for Gold"
    assert reason["GLD"] == "Gold: averages 1,000 pods a month: ≥ 200 for Gold; 1 order in 6 months: < 3 for Platinum"
    assert reason["PAS"] == "Passive: 40 pods in the last 12 months, none in the last 6 months"
    assert reason["DIA"] == ("Platinum: averages 2,000 pods a month: ≥ 1,000 for Platinum; 12 orders in 6 months: "
                             "≥ 3 for Platinum; 1,000 pods an order: < 1,500 for Diamond")


def test_revenue_measure_reads_in_revenue():
    snapshot = _run([("C1", "2024-12-10", 5)], {"measure": "revenue"})
    assert snapshot.at["C1", "tier_reason"] == "Bronze: averages 0.17 in revenue a month: < 50 for Silver"


_SEGMENT_LINES = [("PL", "2024-03-10", 600), ("PL", "2024-07-10", 540), ("PL", "2024-11-25", 500),
                  ("RE", "2023-01-10", 50), ("RE", "2024-12-20", 12000)]


def test_hand_computed_segment_reasons_with_fixed_cut_points():
    # PL: last purchase 2024-11-25 (36 days before 31 December), 3 orders, 1,640 pods in 12 months
    # R4 (31-60 days), F3 (3-4 orders: above 2, up to 4), M3 (above 500, up to 2,000); FM = ceil(6 / 2) = 3
    snapshot = _run(_SEGMENT_LINES, FIXED)
    assert snapshot.at["PL", "recency_days"] == 36 and snapshot.at["PL", "monetary"] == 1640
    assert snapshot.at["PL", "segment_reason"] == (
        "Potential Loyalist, cell 43: recency 36 days: R4 is 31–60 days; 3 orders in 12 months: F3 is 3–4 orders; "
        "1,640 pods in 12 months: M3 is over 500 up to 2,000")
    # RE came back after 23 silent months: recency 11 days (R5), 1 order (F1), 12,000 pods (M5), FM 3: cell 53
    assert snapshot.at["RE", "lifecycle_event"] == "Reactivated"
    assert snapshot.at["RE", "segment_reason"] == (
        "Loyal Customers, cell 53: recency 11 days: R5 is up to 30 days; 1 order in 12 months: F1 is up to 1 order; "
        "12,000 pods in 12 months: M5 is over 10,000; reactivated this month, after 12 months or more without a "
        "core purchase")


def test_history_segment_reasons_give_the_ranges_and_leave_the_values_to_their_columns():
    history = _run(_SEGMENT_LINES, FIXED, "customer_history")
    assert history.at["PL", "segment_reason"] == (
        "Potential Loyalist, cell 43: recency 31–60 days (R4); 3–4 orders in 12 months (F3); over 500 up to "
        "2,000 pods in 12 months (M3)")
    assert history.at["RE", "segment_reason"] == (
        "Loyal Customers, cell 53: recency up to 30 days (R5); up to 1 order in 12 months (F1); over 10,000 "
        "pods in 12 months (M5); reactivated this month, after 12 months or more without a core purchase")


_RANGE = re.compile(r"^(up to [\d,]+|[\d,]+ or more|over [\d,.]+(?: up to [\d,.]+)?|up to [\d,.]+|[\d,]+(?:–[\d,]+)?)")


def _in_range(value: float, text: str) -> bool:
    """Whether ``value`` is in a range as the text writes it, read independently of the code."""
    number = [float(n.replace(",", "")) for n in re.findall(r"\d[\d,]*(?:\.\d+)?", text)]
    if text.startswith("up to"):
        return value <= number[0]
    if text.startswith("over"):
        return value > number[0] and (len(number) == 1 or value <= number[1])
    if "or more" in text:
        return value >= number[0]
    return number[0] <= value <= number[-1]


@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 5), st.integers(1, 364), st.integers(1, 3000)), min_size=5, max_size=30),
       st.booleans())
def test_every_score_range_holds_the_rows_value(lines, fixed):
    """Digits make it true: the row's recency, frequency and monetary lie in the ranges its text gives, and the
    snapshot's text shows those values as the columns hold them."""
    tx = [(f"C{c}", (pd.Timestamp("2024-12-31") - pd.Timedelta(days=d)).strftime("%Y-%m-%d"), q) for c, d, q in lines]
    config = FIXED if fixed else {}
    snapshot = _run(tx, config)
    history = _run(tx, config, "customer_history")
    scored = snapshot[snapshot["r_score"].notna()]
    assert len(scored)
    for customer, row in scored.iterrows():
        parts = re.match(r"^.+, cell (\d)(\d): recency ([\d,]+) days?: R(\d) is (.+) days; ([\d,]+) orders? in 12 "
                         r"months: F(\d) is (.+); ([\d,.]+) pods in 12 months: M(\d) is (.+)$", row["segment_reason"])
        assert parts, row["segment_reason"]
        r, fm, days, r_again, recency, orders_n, f, orders, monetary_n, m, monetary = parts.groups()
        assert (int(r), int(fm), int(r_again), int(f), int(m)) == (row["r_score"], row["fm_score"], row["r_score"],
                                                                   row["f_score"], row["m_score"])
        assert [float(n.replace(",", "")) for n in (days, orders_n, monetary_n)] == pytest.approx(
            [row["recency_days"], row["frequency"], row["monetary"]], abs=0.005)
        assert _in_range(row["recency_days"], _RANGE.match(recency).group()), row["segment_reason"]
        assert _in_range(row["frequency"], _RANGE.match(orders).group()), row["segment_reason"]
        assert _in_range(row["monetary"], _RANGE.match(monetary).group()), row["segment_reason"]
        assert int(fm) == math.ceil((int(f) + int(m)) / 2)
        assert history.at[customer, "segment_reason"] == (
            f"{row['rfm_segment']}, cell {r}{fm}: recency {recency} days (R{r}); {orders} in 12 months (F{f}); "
            f"{monetary} pods in 12 months (M{m})")


def test_no_two_labels_read_alike_ignoring_case():
    """monthly_summary's category column holds every dimension's labels: Excel's pivot merges equal
    text ignoring case, so no label may repeat another's."""
    labels = [*STATUSES, *TIERS, *EVENTS, *STATES, *(name for name, _ in Config().segment_map)]
    folded = [label.casefold() for label in labels]
    assert len(set(folded)) == len(folded), sorted(label for label in labels if folded.count(label.casefold()) > 1)
    tables = crm_xl.run(**read_raw_folder(SAMPLE))
    categories = tables["monthly_summary"].drop_duplicates(["dimension", "category"])["category"]
    assert categories.str.casefold().is_unique
    # the three lost-like labels and the two active-like ones stay apart
    assert {"Lost", "Churned", "Gone Cold"} <= set(labels) and {"Active", "Regular"} <= set(labels)


def test_label_colours_name_the_labels():
    assert set(layout.LABEL_COLOURS["lifecycle_state"]) == set(STATES)
    assert set(layout.LABEL_COLOURS["value_tier"]) == set(TIERS)
    assert set(layout.LABEL_COLOURS["rfm_segment"]) == {name for name, _ in Config().segment_map}


def test_glossary_lists_every_column_of_every_table():
    glossary = layout.glossary_frame()
    expected = [(table, name, kind, meaning) for table, (_, columns) in contract.TABLES.items()
                for name, kind, meaning in columns]
    assert list(glossary.itertuples(index=False, name=None)) == expected
    assert set(glossary["table"]) == set(contract.TABLE_NAMES)


def test_glossary_sheet_of_a_refreshed_book(tmp_path):
    from python_calamine import CalamineWorkbook

    book = tmp_path / "book.xlsm"
    assert main(["new", str(book), "--sample"]) == 0
    assert main(["refresh", str(book), "--quiet"]) == 0
    with CalamineWorkbook.from_path(str(book), load_tables=True) as workbook:
        rows = workbook.get_table_by_name(layout.GLOSSARY_TABLE.name).to_python()
        snapshot = workbook.get_sheet_by_name(layout.OUTPUT_SHEETS["customer_snapshot"]).to_python()
    assert [tuple(r) for r in rows] == list(layout.glossary_frame().itertuples(index=False, name=None))
    # the sample book names its unit: pods
    header = snapshot[0]
    reasons = [r[header.index("tier_reason")] for r in snapshot[1:]]
    assert any(" pods a month" in text for text in reasons)


@pytest.mark.parametrize("value", ["", "  "])
def test_blank_unit_name_is_the_default(value):
    assert Config.from_mapping({"unit_name": value}).unit_name == "units"
