"""The campaign fields of customer_snapshot (docs/business_logic.md 14.1), each recomputed here on the
bundled sample in plain Python: the tier and state fields from customer_history month by month, the
purchase fields from the raw transactions. Written apart from crm_xl.core.campaign on purpose."""

from __future__ import annotations

import datetime as dt
import itertools
import statistics

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import crm_xl
from crm_xl.config import STATES, TIERS
from crm_xl.io import sample

RANK = {tier: i for i, tier in enumerate(TIERS)}


@pytest.fixture(scope="module")
def sample_run() -> tuple[dict[str, pd.DataFrame], dict[str, pd.DataFrame]]:
    raw = sample.generate()
    return raw, crm_xl.run(**raw)


def _blank(value: object) -> bool:
    return value is None or value is pd.NA or value is pd.NaT or (isinstance(value, float) and value != value)


def _histories(history: pd.DataFrame) -> dict[str, list[tuple[pd.Timestamp, object, object]]]:
    out: dict[str, list] = {}
    for row in history.sort_values("report_month").itertuples(index=False):
        out.setdefault(str(row.customer_id), []).append((row.report_month, row.value_tier, row.lifecycle_state))
    return out


def _expected_label_fields(months: list, rows: list, report_month: pd.Timestamp) -> dict[str, object]:
    by_month = {month: (tier, state) for month, tier, state in rows}
    tiers_seen = [tier for _, tier, _ in rows]
    active = [t for t in tiers_seen if not _blank(t) and t != "Passive"]
    recent = [by_month[m][0] for m in months[-12:] if m in by_month and not _blank(by_month[m][0])]
    now_tier, now_state = by_month[report_month]
    before = by_month.get(months[-2], (None, None))[0] if len(months) > 1 else None
    if _blank(before) and _blank(now_tier):
        change = None
    elif _blank(before):
        change = "new"
    elif _blank(now_tier):
        change = "left"
    else:
        change = {True: "up", False: "down"}[RANK[now_tier] < RANK[before]] if now_tier != before else "same"
    run = 0
    for month in reversed(months):
        if month in by_month and by_month[month][1] == now_state:
            run += 1
        else:
            break
    return {"last_active_tier": active[-1] if active else None,
            "peak_tier_12m": min(recent, key=RANK.__getitem__) if recent else None,
            "tier_change": change, "months_in_state": run, "state_since": months[len(months) - run]}


def test_tier_and_state_fields_follow_the_history(sample_run):
    _, tables = sample_run
    history, snapshot = tables["customer_history"], tables["customer_snapshot"]
    months = sorted(history["report_month"].unique())
    report_month = months[-1]
    histories = _histories(history)
    for row in snapshot.itertuples(index=False):
        expected = _expected_label_fields(months, histories[row.customer_id], report_month)
        for field, value in expected.items():
            got = getattr(row, field)
            assert (_blank(got) and _blank(value)) or got == value, (row.customer_id, field, got, value)


def _core_lines(raw: dict[str, pd.DataFrame], report_end: pd.Timestamp) -> pd.DataFrame:
    products = raw["products"].set_index("product_id")
    lines = raw["transactions"].copy()
    lines = lines[lines["product_id"].isin(products.index) & (lines["quantity"] > 0)
                  & (pd.to_datetime(lines["invoice_date"]) <= report_end)]
    lines["category"] = products.loc[lines["product_id"], "category"].to_numpy()
    lines["units"] = lines["quantity"] * products.loc[lines["product_id"], "unit_size"].to_numpy()
    return lines


def test_purchase_fields_follow_the_transactions(sample_run):
    raw, tables = sample_run
    snapshot = tables["customer_snapshot"].set_index("customer_id")
    report_end = (snapshot["report_month"].iloc[0] + pd.offsets.MonthEnd(0)).normalize()
    lines = _core_lines(raw, report_end)
    lines = lines[lines["customer_id"].isin(snapshot.index)]
    checked = 0
    for customer, own in lines.groupby("customer_id"):
        row = snapshot.loc[customer]
        last_any = pd.to_datetime(own["invoice_date"]).max().normalize()
        assert row["days_since_last_purchase"] == (report_end - last_any).days
        core = own[own["category"] == "consumable"]
        if core.empty:
            assert _blank(row["favourite_product"]) and _blank(row["expected_next_purchase"])
            continue
        totals = core.groupby("product_id")["units"].sum()
        favourite = sorted(totals[totals == totals.max()].index)[0]
        assert row["favourite_product"] == favourite
        assert row["favourite_category"] == "consumable"
        days = sorted({d.date() for d in pd.to_datetime(core["invoice_date"])})
        if len(days) < 2:
            assert _blank(row["expected_next_purchase"])
            continue
        median = statistics.median((b - a).days for a, b in itertools.pairwise(days))
        due = days[-1] + dt.timedelta(days=int(median + 0.5))
        assert row["expected_next_purchase"].date() == due, customer
        checked += 1
    assert checked > 1000      # the sample's regular buyers were all compared


def test_the_first_campaign_is_one_filter(sample_run):
    """The issue's campaign: Gold customers with email opt-in who lapsed (lapsing or lost)."""
    _, tables = sample_run
    snapshot, history = tables["customer_snapshot"], tables["customer_history"]
    lapsed = snapshot["lifecycle_state"].isin([STATES[3], STATES[4]]) & (snapshot["opt_email"] == 1)
    got = set(snapshot.loc[lapsed & (snapshot["last_active_tier"] == "Gold"), "customer_id"])
    was_gold = {}
    for row in history.sort_values("report_month").itertuples(index=False):
        if not _blank(row.value_tier) and row.value_tier != "Passive":
            was_gold[row.customer_id] = row.value_tier == "Gold"
    want = {c for c in snapshot.loc[lapsed, "customer_id"] if was_gold.get(c)}
    assert got == want and len(got) == 42


def test_snapshot_opens_with_what_a_campaign_filters_on(sample_run):
    _, tables = sample_run
    assert list(tables["customer_snapshot"].columns[:8]) == [
        "customer_id", "customer_name", "lifecycle_state", "value_tier", "rfm_segment",
        "opt_email", "opt_sms", "opt_phone"]


_DAYS = st.lists(st.integers(min_value=0, max_value=400), min_size=1, max_size=8)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(days=_DAYS, quantities=st.lists(st.integers(min_value=1, max_value=60), min_size=8, max_size=8),
       products=st.lists(st.sampled_from(["POD10", "POD50", "BEAN250"]), min_size=8, max_size=8))
def test_expected_next_purchase_and_favourite_for_any_purchases(days, quantities, products):
    start = dt.date(2023, 1, 1)
    dates = [start + dt.timedelta(days=d) for d in days]
    transactions = pd.DataFrame({
        "invoice_id": [f"I{i}" for i in range(len(dates))], "invoice_date": [d.isoformat() for d in dates],
        "customer_id": "C1", "product_id": products[:len(dates)], "quantity": quantities[:len(dates)],
        "revenue": 1.0})
    product_master = pd.DataFrame({"product_id": ["POD10", "POD50", "BEAN250"], "category": "consumable",
                                   "unit_size": [10, 50, 250]})
    customers = pd.DataFrame({"customer_id": ["C1"], "customer_group": "Retail", "created_date": "2020-01-01"})
    row = crm_xl.run(transactions, customers, product_master,
                     {"report_month": "2024-03", "history_months": 2})["customer_snapshot"].iloc[0]
    distinct = sorted(set(dates))
    if len(distinct) < 2:
        assert _blank(row["expected_next_purchase"])
    else:
        median = statistics.median((b - a).days for a, b in itertools.pairwise(distinct))
        assert row["expected_next_purchase"].date() == distinct[-1] + dt.timedelta(days=int(median + 0.5))
    units = {}
    for product, quantity in zip(products[:len(dates)], quantities[:len(dates)], strict=True):
        units[product] = units.get(product, 0) + quantity * {"POD10": 10, "POD50": 50, "BEAN250": 250}[product]
    assert row["favourite_product"] == min(p for p, u in units.items() if u == max(units.values()))



@pytest.mark.parametrize("dtype", ["int64", "object"])
def test_customer_facts_by_hand(dtype):
    """Exact totals pick the favourite (as Python integers too, past int64), ties go to the lowest
    product_id whatever the master's row order, and the median keeps both middle gaps."""
    from crm_xl.core.customer_facts import NO_DAY, customer_facts

    big = 2**62 if dtype == "object" else 10**6
    day = pd.to_datetime(["2024-01-01", "2024-01-03", "2024-01-10", "2024-01-10", "2024-02-01", "2024-01-05"])
    lines = pd.DataFrame({
        "customer_key": [0, 0, 0, 0, 0, 2], "product_key": [1, 0, 1, 0, 2, 0], "date": day,
        "quantity": [1.0, 1.0, 1.0, 1.0, 1.0, 1.0], "kind": [1, 1, 1, 1, 0, 1],
        "units": pd.array([big, big, big, big, 5 * big, 7], dtype=dtype).to_numpy(dtype=dtype),
    })
    products = pd.Series(["Z9", "A1", "M5"])          # product_key 1 has the lowest id
    facts = customer_facts(lines, products, n_customers=3).set_index("customer_key")
    assert facts.loc[0, "favourite_product_key"] == 1       # tie of 2 x big each: A1 beats Z9
    assert facts.loc[2, "favourite_product_key"] == 0
    assert facts.loc[1, "favourite_product_key"] == -1 and facts.loc[1, "last_purchase_day"] == NO_DAY
    assert facts.loc[0, "purchase_days"] == 3                # the other-category line is no core purchase
    assert (facts.loc[0, "median_gap_low"], facts.loc[0, "median_gap_high"]) == (2, 7)
    assert facts.loc[0, "last_purchase_day"] == pd.Timestamp("2024-02-01").toordinal() - 719163
