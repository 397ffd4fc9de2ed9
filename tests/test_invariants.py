"""Properties that hold for any input: generated small transaction sets over a few customers, products
and months, with returns, zero lines, device and accessory lines, anonymous customers and missing
invoice ids."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import crm_xl
from crm_xl.config import STATES, TIERS

MONTHS = pd.period_range("2023-01", periods=8, freq="M")
CUSTOMERS = ("C1", "C2", "C3", "C4")
ANONYMOUS = "A1"
# unit sizes include decimals (litres), so sums are not all exact integers
PRODUCTS = pd.DataFrame({
    "product_id": ["P10", "P033", "P15", "D1", "X1"],
    "category": ["consumable", "consumable", "consumable", "device", "accessories"],
    "unit_size": [10.0, 0.33, 1.5, 1.0, 1.0],
})
CORE = {"P10": 10.0, "P033": 0.33, "P15": 1.5}
WINDOWS = ("m1", "m6", "m12", "m13", "m24", "m25", "m_total")
SCORES = {"recency_days": "r_score", "frequency": "f_score", "monetary": "m_score", "tenure_months": "t_score"}

FAST = settings(max_examples=15, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])


@dataclasses.dataclass
class Case:
    transactions: pd.DataFrame
    customers: pd.DataFrame

    def run(self, months: int = len(MONTHS), **config: object) -> dict[str, pd.DataFrame]:
        """Run on copies, report month = the ``months``-th month; unusable inputs are rejected."""
        settings_ = {"report_month": str(MONTHS[months - 1]), "history_months": months, **config}
        try:
            return crm_xl.run(transactions=self.transactions.copy(), customers=self.customers.copy(),
                              products=PRODUCTS.copy(), config=settings_)
        except crm_xl.InputError:
            assume(False)
            raise


line = st.fixed_dictionaries({
    "customer_id": st.sampled_from([*CUSTOMERS, ANONYMOUS]),
    "product_id": st.sampled_from(list(PRODUCTS["product_id"])),
    "month": st.integers(0, len(MONTHS) - 1),
    "day": st.integers(1, 28),
    "quantity": st.sampled_from([-2, -1, 0, 1, 1, 2, 3, 5]),
    "cents": st.integers(-500, 5000),
    "invoice": st.one_of(st.none(), st.integers(0, 3)),
    # a receipt number reused in other months (and by other customers), or one invoice delivered
    # in parts across a month end: an order is still one invoice inside each window
    "reused": st.booleans(),
})


@st.composite
def cases(draw: st.DrawFn) -> Case:
    lines = draw(st.lists(line, min_size=1, max_size=30))
    created = draw(st.lists(st.one_of(st.none(), st.integers(-3, len(MONTHS) - 1)),
                            min_size=len(CUSTOMERS), max_size=len(CUSTOMERS)))
    tx = pd.DataFrame({
        "invoice_id": ["" if x["invoice"] is None else f"R{x['invoice']}" if x["reused"]
                       else f"{x['customer_id']}-{x['month']}-{x['invoice']}" for x in lines],
        "invoice_date": [f"{MONTHS[x['month']]}-{x['day']:02d}" for x in lines],
        "customer_id": [x["customer_id"] for x in lines],
        "product_id": [x["product_id"] for x in lines],
        "quantity": [float(x["quantity"]) for x in lines],
        "revenue": [x["cents"] / 100 for x in lines],
    })
    customers = pd.DataFrame({
        "customer_id": [*CUSTOMERS, ANONYMOUS],
        "customer_group": ["Retail", "Office", "", "Retail", "General"],
        "created_date": pd.to_datetime(
            [None if m is None else (MONTHS[0] + m).to_timestamp() + pd.Timedelta(days=4) for m in created]
            + [None]),
    })
    return Case(tx, customers)


def _month_start(dates: pd.Series) -> pd.Series:
    return dates.dt.to_period("M").dt.to_timestamp()


# --- labels -------------------------------------------------------------------------------------


@FAST
@given(cases())
def test_one_lifecycle_state_per_customer_month(case):
    history = case.run()["customer_history"]
    assert not history.duplicated(["report_month", "customer_id"]).any()
    assert history["lifecycle_state"].notna().all()
    assert set(history["lifecycle_state"].astype(str)) <= set(STATES)
    assert ANONYMOUS not in set(history["customer_id"])


@FAST
@given(cases())
def test_activity_tier_and_event_rules(case):
    history = case.run()["customer_history"]
    active = history["activity_status"].astype(str) == "Active"
    assert history["activity_status"].notna().all()
    assert (active == (history["m12"] > 0)).all(), "Active iff m12 > 0"
    assert (history["value_tier"].isna() == ~active).all(), "value_tier blank iff not Active"
    assert set(history["value_tier"].dropna().astype(str)) <= set(TIERS)
    assert (history.loc[active & (history["m6"] == 0), "value_tier"] == "Passive").all()
    first_core_month = _month_start(history["first_core_date"])
    is_new = history["lifecycle_event"] == "New"
    assert (history.loc[is_new, "report_month"] == first_core_month[is_new]).all(), \
        "New only in the first core month"
    in_first_core_month = history["report_month"] == first_core_month
    assert (history.loc[in_first_core_month, "lifecycle_event"] == "New").all(), \
        "the first core month is New"
    assert (history.loc[is_new, "m1"] == history.loc[is_new, "m_total"]).all()
    lost = history["lifecycle_event"] == "Lost"
    assert (history.loc[lost, "m12"] == 0).all() and (history.loc[lost, "m13"] > 0).all()


# --- RFM scores ---------------------------------------------------------------------------------


@FAST
@given(cases())
def test_rfm_scores_are_1_to_5_and_blank_without_core_purchase(case):
    history = case.run()["customer_history"]
    no_core = history["first_core_date"].isna()
    for column in ("r_score", "f_score", "m_score", "t_score", "fm_score"):
        scores = history[column]
        assert (scores.isna() == no_core).all(), f"{column} blank iff no core purchase yet"
        assert scores.dropna().between(1, 5).all(), f"{column} outside 1..5"
    assert (history["rfm_segment"].isna() == no_core).all()
    assert (history["rfm_code"].isna() == no_core).all()


@FAST
@given(cases(), st.sampled_from(["units", "revenue"]), st.sampled_from(["quantile", "fixed"]))
def test_equal_values_share_the_score(case, monetary, method):
    history = case.run(rfm_monetary=monetary, rfm_method=method)["customer_history"]
    scored = history[history["r_score"].notna()]
    for value, score in SCORES.items():
        per_value = scored.groupby(["report_month", scored[value].astype("float64")])[score].nunique()
        assert (per_value <= 1).all(), f"equal {value} got different {score}:\n{per_value[per_value > 1]}"
        # and a larger value never scores worse (recency: never better)
        for _, month in scored.groupby("report_month"):
            ordered = month.sort_values(value)[score].astype("int64").to_numpy()
            steps = np.diff(ordered)
            assert (steps <= 0).all() if value == "recency_days" else (steps >= 0).all()


def test_equal_monetary_values_share_the_score_with_decimal_unit_sizes():
    """2 x 0.33 + 3 x 0.33 and 5 x 0.33 must be one value (no 1.6500000000000001) with one score."""
    tx = pd.DataFrame({"invoice_id": ["1", "2", "3"], "invoice_date": ["2023-01-05"] * 3,
                       "customer_id": ["C1", "C1", "C2"], "product_id": ["P033"] * 3, "quantity": [2, 3, 5],
                       "revenue": [1.0, 1.0, 1.0]})
    customers = pd.DataFrame({"customer_id": ["C1", "C2"]})
    history = Case(tx, customers).run(months=1)["customer_history"]
    assert history["monetary"].nunique() == 1 and history["m1"].nunique() == 1
    assert history["m_score"].nunique() == 1


# --- figures ------------------------------------------------------------------------------------


@FAST
@given(cases())
def test_windows_are_nested(case):
    history = case.run()["customer_history"]
    for shorter, longer in itertools.pairwise(WINDOWS):
        # 1e-9 relative slack for summation order; test_windows_are_nested_exactly is exact
        bad = history[history[shorter] > history[longer] * (1 + 1e-9) + 1e-12]
        assert bad.empty, f"{shorter} > {longer}:\n{bad[['report_month', 'customer_id', *WINDOWS]]}"
    assert (history["m1"] >= 0).all()


def test_windows_are_nested_exactly():
    """M_total (all history) and M25 (sliding) of 20 + 0.33 + 0.33 must be the same number."""
    tx = pd.DataFrame({"invoice_id": ["1", "2", "3"], "invoice_date": ["2023-01-01", "2023-02-01", "2023-03-01"],
                       "customer_id": ["C2"] * 3, "product_id": ["P10", "P033", "P033"], "quantity": [2.0, 1.0, 1.0],
                       "revenue": [0.0] * 3})
    history = Case(tx, pd.DataFrame({"customer_id": ["C2"]})).run(months=3)["customer_history"]
    for shorter, longer in itertools.pairwise(WINDOWS):
        assert (history[shorter] <= history[longer]).all(), f"{shorter} > {longer}"


def _naive_figures(case: Case) -> pd.DataFrame:
    """m windows, o6 and dates recomputed line by line from the brief's rules."""
    tx = case.transactions
    known = tx["customer_id"].isin(CUSTOMERS)
    dates = pd.to_datetime(tx["invoice_date"])
    month = dates.dt.to_period("M")
    core = known & tx["product_id"].isin(list(CORE)) & (tx["quantity"] > 0)
    device = known & (tx["product_id"] == "D1") & (tx["quantity"] > 0)
    units = tx["quantity"] * tx["product_id"].map(CORE).fillna(0.0)
    invoice = tx["invoice_id"].where(tx["invoice_id"] != "", tx["customer_id"] + "|" + tx["invoice_date"])
    rows = []
    for report in MONTHS:
        for customer in CUSTOMERS:
            mine = tx["customer_id"] == customer
            upto = month <= report
            row = {"report_month": report.to_timestamp(), "customer_id": customer}
            for name, back in (("m1", 1), ("m6", 6), ("m12", 12), ("m13", 13), ("m24", 24), ("m25", 25)):
                row[name] = units[core & mine & upto & (month > report - back)].sum()
            row["m_total"] = units[core & mine & upto].sum()
            row["o6"] = invoice[core & mine & upto & (month > report - 6)].nunique()
            row["frequency"] = invoice[core & mine & upto & (month > report - 12)].nunique()
            row["first_core_date"] = dates[core & mine & upto].min()
            row["last_core_date"] = dates[core & mine & upto].max()
            row["first_device_date"] = dates[device & mine & upto].min()
            rows.append(row)
    return pd.DataFrame(rows)


@FAST
@given(cases())
def test_figures_match_a_naive_recomputation(case):
    history = case.run()["customer_history"]
    naive = _naive_figures(case).set_index(["report_month", "customer_id"])
    got = history.set_index(["report_month", "customer_id"])
    naive = naive.loc[got.index]
    for column in ("m1", "m6", "m12", "m13", "m24", "m25", "m_total"):
        np.testing.assert_allclose(got[column].to_numpy(), naive[column].to_numpy(), rtol=1e-9, atol=1e-9,
                                   err_msg=column)
    assert (got["o6"].to_numpy() == naive["o6"].to_numpy()).all()
    scored = got["frequency"].notna().to_numpy()
    assert (got["frequency"].to_numpy()[scored] == naive["frequency"].to_numpy()[scored]).all()
    for column in ("first_core_date", "last_core_date", "first_device_date"):
        np.testing.assert_array_equal(got[column].to_numpy().astype("datetime64[D]"),
                                      naive[column].to_numpy().astype("datetime64[D]"), err_msg=column)


order_line = st.fixed_dictionaries({
    "customer_id": st.sampled_from(CUSTOMERS[:2]),
    "product_id": st.sampled_from(["P10", "P15", "D1"]),
    "month": st.integers(0, len(MONTHS) - 1),
    "quantity": st.sampled_from([-1, 0, 1, 2]),
    "invoice": st.sampled_from(["R1", "R2", "R3", ""]),
})


@settings(max_examples=60, deadline=None, derandomize=True)
@given(st.lists(order_line, min_size=1, max_size=25))
def test_orders_are_distinct_invoices_with_a_core_line_inside_each_window(lines):
    """O6 and frequency (12 months) against a set count per window: receipts reused across months,
    invoices delivered in parts, returns, devices and lines without an invoice id."""
    tx = pd.DataFrame({"invoice_id": [x["invoice"] for x in lines],
                       "invoice_date": [f"{MONTHS[x['month']]}-15" for x in lines],
                       "customer_id": [x["customer_id"] for x in lines],
                       "product_id": [x["product_id"] for x in lines],
                       "quantity": [float(x["quantity"]) for x in lines], "revenue": [1.0] * len(lines)})
    history = Case(tx, pd.DataFrame({"customer_id": list(CUSTOMERS[:2])})).run()["customer_history"]
    for row in history.itertuples():
        report = pd.Period(row.report_month, freq="M")
        for column, back in (("o6", 6), ("frequency", 12)):
            orders = {x["invoice"] or f"{x['customer_id']}|{x['month']}" for x in lines
                      if x["customer_id"] == row.customer_id and x["product_id"] != "D1" and x["quantity"] > 0
                      and report - back < MONTHS[x["month"]] <= report}
            got = getattr(row, column)
            assert (0 if pd.isna(got) else got) == len(orders), (column, row.report_month, row.customer_id)


# --- history is stable, runs are deterministic --------------------------------------------------


def _values(frame: pd.DataFrame) -> pd.DataFrame:
    """Categorical columns as their text values: categories listing what else occurred may differ."""
    out = frame.copy()
    for column in out.columns:
        if isinstance(out[column].dtype, pd.CategoricalDtype):
            out[column] = pd.Series(out[column].to_numpy(dtype=object), index=out.index, dtype="str")
    return out


def _assert_history_prefix(case: Case, months: int) -> None:
    """Running on the lines up to month ``months`` gives the same rows as the full run, months 1..months."""
    later = case.run()["customer_history"]
    cut = pd.to_datetime(case.transactions["invoice_date"]).dt.to_period("M") <= MONTHS[months - 1]
    try:
        earlier = crm_xl.run(transactions=case.transactions[cut].reset_index(drop=True),
                             customers=case.customers.copy(), products=PRODUCTS.copy(),
                             config={"report_month": str(MONTHS[months - 1]), "history_months": months})
    except crm_xl.InputError:               # nothing usable up to that month
        return
    overlap = later[later["report_month"] <= MONTHS[months - 1].to_timestamp()].reset_index(drop=True)
    # values only: dtypes are the contract test's business (see test_outputs_contract)
    pd.testing.assert_frame_equal(_values(overlap), _values(earlier["customer_history"]), check_exact=True,
                                  check_dtype=False)


@FAST
@given(cases(), st.integers(1, len(MONTHS) - 1))
def test_later_months_do_not_change_earlier_history(case, months):
    _assert_history_prefix(case, months)


def test_later_months_do_not_change_earlier_history_without_created_date():
    """C2 has no created_date and first buys in month 3: months 1-2 must not depend on that purchase."""
    tx = pd.DataFrame({"invoice_id": ["1", "2"], "invoice_date": ["2023-01-10", "2023-03-10"],
                       "customer_id": ["C1", "C2"], "product_id": ["P10", "P10"], "quantity": [1.0, 1.0],
                       "revenue": [1.0, 1.0]})
    customers = pd.DataFrame({"customer_id": ["C1", "C2"], "customer_group": ["Retail", "Retail"]})
    _assert_history_prefix(Case(tx, customers), 2)


def _assert_same_tables(first: dict[str, pd.DataFrame], second: dict[str, pd.DataFrame],
                        row_positions_may_differ: bool = False) -> None:
    assert list(first) == list(second)
    for name in first:
        left, right = first[name], second[name]
        if name == "data_quality" and row_positions_may_differ:
            keep = ["table", "column", "rule", "severity", "rows"]
            left = left[keep].sort_values(keep[:3]).reset_index(drop=True)
            right = right[keep].sort_values(keep[:3]).reset_index(drop=True)
        pd.testing.assert_frame_equal(left, right, check_exact=True, obj=name)


@FAST
@given(cases())
def test_same_input_gives_identical_tables(case):
    _assert_same_tables(case.run(), case.run())


@FAST
@given(cases(), st.randoms(use_true_random=False))
def test_shuffled_input_rows_give_identical_tables(case, rnd):
    order = list(range(len(case.transactions)))
    rnd.shuffle(order)
    shuffled = Case(case.transactions.iloc[order].reset_index(drop=True), case.customers)
    _assert_same_tables(case.run(), shuffled.run(), row_positions_may_differ=True)


def test_line_order_does_not_change_the_figures():
    """20 + 0.33 + 0.33 and 0.33 + 0.33 + 20: the same lines in another order, the same tables."""
    tx = pd.DataFrame({"invoice_id": ["1", "2", "3"], "invoice_date": ["2023-06-01"] * 3,
                       "customer_id": ["C2"] * 3, "product_id": ["P10", "P033", "P033"], "quantity": [2.0, 1.0, 1.0],
                       "revenue": [0.0] * 3})
    customers = pd.DataFrame({"customer_id": ["C2"]})
    forward = Case(tx, customers).run()
    backward = Case(tx.iloc[::-1].reset_index(drop=True), customers).run()
    _assert_same_tables(forward, backward, row_positions_may_differ=True)
