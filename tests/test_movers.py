"""movers and tier_migration, each against a computation written here from customer_history or the
golden answer key (plain loops), hand-made examples, and hypothesis properties on random histories."""

from __future__ import annotations

import datetime as dt
import math
from collections import Counter

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import crm_xl
from crm_xl.config import STATES, TIERS
from crm_xl.contract import MOVES, TRANSITION_TIERS
from crm_xl.io.sample import generate

BUYING = TIERS[:-1]     # Diamond .. Bronze


def _blank(value: object) -> bool:
    return value is None or value is pd.NA or value is pd.NaT or (isinstance(value, float) and math.isnan(value)) \
        or value == ""


def _tier_label(tier: object, state: object, in_base: bool) -> str:
    """The tier_transitions label of one customer-month, written out by hand."""
    if not in_base:
        return "New to base"
    if not _blank(tier):
        return str(tier)
    return "Prospect" if state == STATES[0] else "Not Active"


def expected_kind(prev: dict | None, now: dict) -> str | None:
    """The documented rule, case by case (precedence new, reactivated, lost, lapsing, upgrade, downgrade)."""
    tier, event = now["value_tier"], now["lifecycle_event"]
    prev_tier = None if prev is None or _blank(prev["value_tier"]) else prev["value_tier"]
    prev_state = None if prev is None else prev["lifecycle_state"]
    if event == "New":
        return "new"
    if event == "Reactivated" or (prev_state == "lost" and not _blank(tier)):
        return "reactivated"
    if event == "Lost":
        return "lost"
    if _blank(tier) or prev_tier is None:
        return None
    if tier == "Passive" and prev_tier in BUYING:
        return "lapsing"
    if TIERS.index(tier) < TIERS.index(prev_tier):
        return "upgrade"
    if TIERS.index(tier) > TIERS.index(prev_tier):
        return "downgrade"
    return None


def movers_from_history(history: pd.DataFrame) -> dict[str, tuple[str, str, str]]:
    """customer_id -> (move, from_tier, to_tier) from the history's last two months, row by row."""
    months = sorted(history["report_month"].unique())
    latest, before = months[-1], months[-2]
    previous = {r["customer_id"]: r for r in history[history["report_month"] == before].to_dict("records")}
    out = {}
    for now in history[history["report_month"] == latest].to_dict("records"):
        prev = previous.get(now["customer_id"])
        kind = expected_kind(prev, now)
        if kind is not None:
            from_tier = _tier_label(None if prev is None else prev["value_tier"],
                                    None if prev is None else prev["lifecycle_state"], prev is not None)
            out[now["customer_id"]] = (kind, from_tier, _tier_label(now["value_tier"], now["lifecycle_state"], True))
    return out


@pytest.fixture(scope="module")
def sample() -> dict[str, pd.DataFrame]:
    return crm_xl.run(**generate())


def test_movers_agree_with_a_loop_over_the_history(sample):
    want = movers_from_history(sample["customer_history"])
    movers = sample["movers"]
    got = {r.customer_id: (r.move, r.from_tier, r.to_tier) for r in movers.itertuples()}
    assert got == want
    assert len(movers) == len(want) > 100
    assert set(movers["move"]) == set(MOVES)       # the sample has every kind


def test_movers_carry_the_snapshot_columns(sample):
    snapshot = sample["customer_snapshot"].set_index("customer_id")
    for row in sample["movers"].itertuples():
        master = snapshot.loc[row.customer_id]
        assert row.customer_name == master["customer_name"]
        assert row.to_state == master["lifecycle_state"]
        assert (row.from_state if not _blank(row.from_state) else None) == (
            None if _blank(master["previous_lifecycle_state"]) else master["previous_lifecycle_state"])
        for column in ("opt_email", "opt_sms", "opt_phone"):
            a, b = getattr(row, column), master[column]
            assert (_blank(a) and _blank(b)) or a == b
        assert row.reason.startswith(f"{row.from_tier} -> {row.to_tier}: ")
        assert row.report_month == snapshot["report_month"].iloc[0]


def test_movers_are_sorted_by_kind_then_tier_rank_then_id(sample):
    movers = sample["movers"]
    rank = {t: i for i, t in enumerate(TRANSITION_TIERS)}
    keys = [(MOVES.index(r.move), rank[r.to_tier], rank[r.from_tier], r.customer_id) for r in movers.itertuples()]
    assert keys == sorted(keys)


def test_reasons_reuse_the_tier_reason_and_say_what_happened(sample):
    movers = sample["movers"].set_index("customer_id")
    reasons = sample["customer_snapshot"].set_index("customer_id")["tier_reason"]
    for customer, row in movers.iterrows():
        detail = str(reasons[customer]).removeprefix(f"{row['to_tier']}: ")
        assert detail in row["reason"], (customer, row["reason"])
        if row["move"] == "new":
            assert "first core purchase this month" in row["reason"]
        if row["move"] in ("lapsing", "lost"):
            assert f"last core purchase {row['last_core_date']:%Y-%m-%d}" in row["reason"]


def test_gold_to_silver_reads_like_a_sentence():
    """A hand-made downgrade: 600 pods in June and 600 in November. November's 6 months hold 1,200 pods
    (AMC 200 = T_mid_high: Gold); in December June has left the window: 600 pods, AMC 100: Silver."""
    lines = [("I1", "2024-06-10", 60), ("I2", "2024-11-10", 60)]   # 60 x POD10 = 600 pods each
    tx = pd.DataFrame({"invoice_id": [i for i, _, _ in lines], "invoice_date": [d for _, d, _ in lines],
                       "customer_id": "C1", "product_id": "POD10", "quantity": [q for _, _, q in lines],
                       "revenue": 1.0})
    customers = pd.DataFrame({"customer_id": ["C1"], "customer_name": ["Ana"], "created_date": ["2020-01-01"],
                              "opt_email": [1]})
    products = pd.DataFrame({"product_id": ["POD10"], "category": ["consumable"], "unit_size": [10]})
    tables = crm_xl.run(tx, customers, products, config={"report_month": "2024-12", "history_months": 2})
    movers = tables["movers"]
    assert movers[["customer_id", "move", "from_tier", "to_tier"]].values.tolist() == [["C1", "downgrade", "Gold",
                                                                                          "Silver"]]
    assert movers["reason"].iloc[0] == "Gold -> Silver: averages 100 units a month: ≥ 50 for Silver, < 200 for Gold"
    assert movers["opt_email"].iloc[0] == 1 and movers["customer_name"].iloc[0] == "Ana"


def test_golden_personas_agree_with_the_answer_key(golden_result, golden_expected):
    """The answer key (an independent SQL implementation) has tier and event per month; a customer
    with a core purchase and no tier is Not Active (lost state)."""
    key = golden_expected
    def label(row: dict) -> str:
        if row["value_tier"]:
            return row["value_tier"]
        return "Not Active" if row["first_core_date"] else "Prospect"
    before = {r["customer_id"]: r for r in key[key["report_month"] == "2024-11"].to_dict("records")}
    want = {}
    for now in key[key["report_month"] == "2024-12"].to_dict("records"):
        prev = before[now["customer_id"]]
        kind = None
        if now["lifecycle_event"] == "New":
            kind = "new"
        elif now["lifecycle_event"] == "Reactivated" or (label(prev) == "Not Active" and now["value_tier"]):
            kind = "reactivated"
        elif now["lifecycle_event"] == "Lost":
            kind = "lost"
        elif now["value_tier"] and prev["value_tier"]:
            a, b = TIERS.index(prev["value_tier"]), TIERS.index(now["value_tier"])
            kind = ("lapsing" if now["value_tier"] == "Passive" else "upgrade" if b < a else "downgrade") \
                if a != b else None
        if kind:
            want[now["customer_id"]] = (kind, label(prev), label(now))
    got = {r.customer_id: (r.move, r.from_tier, r.to_tier) for r in golden_result["movers"].itertuples()}
    assert got == want
    assert want, "the personas include movers in 2024-12"


# --- tier_migration ----------------------------------------------------------------------------------


def migration_by_hand(transitions: pd.DataFrame, months: list) -> dict[tuple[str, str], tuple[int, float]]:
    counts: Counter = Counter()
    for r in transitions[transitions["report_month"].isin(months)].itertuples():
        counts[(r.from_tier, r.to_tier)] += r.customers
    totals: Counter = Counter()
    for (from_tier, _), n in counts.items():
        totals[from_tier] += n
    return {cell: (n, n / totals[cell[0]]) for cell, n in counts.items()}


def test_tier_migration_normalises_tier_transitions(sample):
    transitions, migration = sample["tier_transitions"], sample["tier_migration"]
    months = sorted(transitions["report_month"].unique())
    for scope, used in (("month", months[-1:]), ("12 months", months[-12:])):
        rows = migration[migration["scope"] == scope]
        assert (rows["months"] == len(used)).all()
        assert (rows["report_month"] == months[-1]).all()
        want = migration_by_hand(transitions, used)
        for r in rows.itertuples():
            n, share = want.get((r.from_tier, r.to_tier), (0, None))
            assert r.customers == n
            if n:
                assert r.share == pytest.approx(share, rel=1e-12)
        assert rows["customers"].sum() == sum(n for n, _ in want.values())


def test_tier_migration_is_the_full_grid_in_rank_order(sample):
    migration = sample["tier_migration"]
    grid = [(f, t) for f in TRANSITION_TIERS for t in TRANSITION_TIERS[:-1]]
    for scope in ("month", "12 months"):
        rows = migration[migration["scope"] == scope]
        assert list(zip(rows["from_tier"], rows["to_tier"], strict=True)) == grid
    assert list(migration["scope"].drop_duplicates()) == ["month", "12 months"]


def test_pooled_shares_are_not_the_average_of_monthly_shares():
    """The 12-month scope pools counts: a month with 1 Gold customer weighs less than one with 3."""
    transitions = pd.DataFrame({
        "report_month": pd.to_datetime(["2024-01-01", "2024-01-01", "2024-02-01"]).astype("datetime64[s]"),
        "from_tier": ["Gold", "Gold", "Gold"], "to_tier": ["Gold", "Silver", "Silver"], "customers": [2, 1, 1]})
    from crm_xl.analyses.movers import tier_migration
    rows = tier_migration(transitions).set_index(["scope", "from_tier", "to_tier"])
    assert rows.loc[("12 months", "Gold", "Silver"), "share"] == pytest.approx(0.5)       # 2 of 4
    assert rows.loc[("12 months", "Gold", "Gold"), "share"] == pytest.approx(0.5)         # not (2/3 + 0) / 2
    assert rows.loc[("month", "Gold", "Silver"), "share"] == 1.0                           # February alone
    assert math.isnan(rows.loc[("month", "Silver", "Gold"), "share"])                     # nobody was Silver
    assert rows.loc[("12 months", "Gold", "Gold"), "customers"] == 2
    assert rows.loc[("12 months", "Gold", "Gold"), "months"] == 2


# --- hypothesis -----------------------------------------------------------------------------------------

_MONTHS = pd.period_range("2023-01", "2024-06", freq="M")


@st.composite
def histories(draw: st.DrawFn) -> pd.DataFrame:
    n = draw(st.integers(1, 40))
    customers = draw(st.lists(st.sampled_from([f"C{i}" for i in range(6)]), min_size=n, max_size=n))
    months = draw(st.lists(st.integers(0, len(_MONTHS) - 1), min_size=n, max_size=n))
    packs = draw(st.lists(st.sampled_from([1, 3, 10, 40, 150]), min_size=n, max_size=n))
    products = draw(st.lists(st.sampled_from(["POD10", "POD50", "DEV1"]), min_size=n, max_size=n))
    return pd.DataFrame({
        "invoice_id": [f"I{i}" for i in range(n)],
        "invoice_date": [(_MONTHS[m].start_time + dt.timedelta(days=9)).strftime("%Y-%m-%d") for m in months],
        "customer_id": customers, "product_id": products, "quantity": packs, "revenue": 5.0})


_PRODUCTS = pd.DataFrame({"product_id": ["POD10", "POD50", "DEV1"], "category": ["consumable", "consumable", "device"],
                          "unit_size": [10, 50, 1]})


def _run(tx: pd.DataFrame) -> dict[str, pd.DataFrame]:
    customers = pd.DataFrame({"customer_id": [f"C{i}" for i in range(6)], "created_date": "2022-06-01"})
    return crm_xl.run(tx, customers, _PRODUCTS, config={"report_month": "2024-06", "history_months": 14})


@settings(max_examples=40)
@given(histories())
def test_properties_of_movers_and_migration(tx):
    tables = _run(tx)
    movers, migration, history = tables["movers"], tables["tier_migration"], tables["customer_history"]
    # every from_tier with somebody in it sends all of them somewhere
    for (_, _), rows in migration.groupby(["scope", "from_tier"], observed=True):
        if rows["customers"].sum():
            assert rows["share"].sum() == pytest.approx(1.0)
        else:
            assert rows["share"].isna().all()
    # a mover is exactly a customer whose tier label changed (entering the base as a prospect is no move)
    months = sorted(history["report_month"].unique())
    before = history[history["report_month"] == months[-2]].set_index("customer_id")
    changed = set()
    for row in history[history["report_month"] == months[-1]].itertuples():
        in_base = row.customer_id in before.index
        prev = before.loc[row.customer_id] if in_base else None
        was = _tier_label(None if prev is None else prev["value_tier"],
                          None if prev is None else prev["lifecycle_state"], in_base)
        now = _tier_label(row.value_tier, row.lifecycle_state, True)
        if was != now and (was, now) != ("New to base", "Prospect"):
            changed.add(row.customer_id)
    assert set(movers["customer_id"]) == changed
    assert movers_from_history(history) == {r.customer_id: (r.move, r.from_tier, r.to_tier)
                                            for r in movers.itertuples()}
    assert not movers["customer_id"].duplicated().any()


def test_movers_view_is_deterministic(sample):
    again = crm_xl.run(**generate())
    for name in ("movers", "tier_migration"):
        pd.testing.assert_frame_equal(sample[name], again[name])
    assert np.array_equal(sample["movers"]["customer_id"].to_numpy(), again["movers"]["customer_id"].to_numpy())
