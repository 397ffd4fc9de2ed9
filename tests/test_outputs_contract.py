"""The output contract (crm_xl/contract.py, docs/outputs.md): names, order, columns, dtypes, sums."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import crm_xl
from crm_xl import contract
from crm_xl.config import EVENTS, STATES, STATUSES, TIERS
from crm_xl.core.pipeline import run_core

DOCS = Path(__file__).resolve().parents[1] / "docs" / "outputs.md"
TRANSITION_LABELS = {*TIERS, "Not Active", "Prospect", "New to base"}


def dtype_matches(kind: str, dtype: object) -> bool:
    """Is a pandas dtype one the contract type allows?"""
    if kind in ("month", "date"):
        return pd.api.types.is_datetime64_dtype(dtype)
    if kind == "integer":
        return dtype in (np.dtype("int64"), pd.Int64Dtype(), pd.Int8Dtype())
    if kind in ("decimal", "share"):
        return dtype == np.dtype("float64")
    if kind == "text":   # repetitive text (history ids, codes, reasons) is dictionary-encoded
        return isinstance(dtype, pd.StringDtype) or (
            isinstance(dtype, pd.CategoricalDtype) and isinstance(dtype.categories.dtype, pd.StringDtype))
    if kind == "label":
        return isinstance(dtype, (pd.CategoricalDtype, pd.StringDtype))
    raise AssertionError(f"unknown contract type {kind!r}")


def test_dtype_matches_helper():
    assert dtype_matches("text", pd.Series(["a"], dtype="str").dtype)
    assert dtype_matches("text", pd.Series(["a"], dtype="str").astype("category").dtype)
    assert not dtype_matches("text", pd.Series([1], dtype="category").dtype)
    assert not dtype_matches("text", pd.Series(["a"], dtype=object).dtype)
    assert dtype_matches("integer", pd.Series([1], dtype="Int8").dtype)
    assert not dtype_matches("decimal", pd.Series([1]).dtype)
    assert dtype_matches("month", pd.Series(pd.to_datetime(["2024-01-01"])).dtype)


# --- names, order, columns ----------------------------------------------------------------------


def test_tables_are_returned_in_contract_order(golden_result):
    assert list(golden_result) == list(crm_xl.TABLE_NAMES)
    assert crm_xl.TABLE_NAMES == contract.TABLE_NAMES
    assert all(isinstance(table, pd.DataFrame) for table in golden_result.values())


@pytest.mark.parametrize("table", contract.TABLE_NAMES)
def test_columns_are_the_contracts(golden_result, table):
    columns = list(golden_result[table].columns)
    expected = contract.columns(table)
    if table == "customer_snapshot":
        assert columns[: len(expected)] == expected
        extras = columns[len(expected):]
        assert extras == ["persona"], "extra master columns come after the contract's, in master order"
    else:
        assert columns == expected
    assert golden_result[table].index.equals(pd.RangeIndex(len(golden_result[table])))


def test_contract_column_names_are_unique():
    for table in contract.TABLE_NAMES:
        names = contract.columns(table)
        assert len(names) == len(set(names)), table


def test_docs_outputs_md_is_generated_from_the_contract():
    assert DOCS.read_text(encoding="utf-8") == contract.contract_markdown()


# --- dtypes -------------------------------------------------------------------------------------

def _column_params() -> list:
    params = []
    for table in contract.TABLE_NAMES:
        for name, kind, _ in contract.TABLES[table][1]:
            params.append(pytest.param(table, name, kind, id=f"{table}.{name}"))
    return params


@pytest.mark.parametrize(("table", "column", "kind"), _column_params())
def test_column_dtype_is_the_contract_type(golden_result, table, column, kind):
    dtype = golden_result[table][column].dtype
    assert dtype_matches(kind, dtype), f"{table}.{column}: contract type {kind}, dtype {dtype}"


def _no_core_purchase_inputs() -> dict[str, pd.DataFrame]:
    """Only a device, an accessory and a return: nobody has a core purchase."""
    return {
        "transactions": pd.DataFrame({
            "invoice_id": ["1", "2", "3"], "invoice_date": ["2024-01-05", "2024-02-05", "2024-03-05"],
            "customer_id": ["C1", "C1", "C2"], "product_id": ["D1", "A1", "P1"], "quantity": [1, 1, -2],
            "revenue": [100.0, 5.0, -3.0]}),
        "customers": pd.DataFrame({"customer_id": ["C1", "C2"]}),
        "products": pd.DataFrame({"product_id": ["P1", "D1", "A1"],
                                  "category": ["consumable", "device", "accessories"], "unit_size": [10, 1, 1]}),
    }


def _dtypes_disagreeing(result: dict[str, pd.DataFrame], reference: dict[str, pd.DataFrame]) -> list[str]:
    """Columns whose dtype differs from the golden run's, or breaks the contract type."""
    problems = []
    for table in contract.TABLE_NAMES:
        for name, kind, _ in contract.TABLES[table][1]:
            dtype, ref = result[table][name].dtype, reference[table][name].dtype
            same_kind = (dtype == ref or (isinstance(dtype, pd.CategoricalDtype)
                                          and isinstance(ref, pd.CategoricalDtype)))
            if not same_kind or not dtype_matches(kind, dtype):
                problems.append(f"{table}.{name}: {dtype} (golden run: {ref}, contract: {kind})")
    return problems


def test_dtypes_do_not_depend_on_the_master_columns_given(golden_result):
    inputs = _no_core_purchase_inputs()
    inputs["transactions"]["product_id"] = ["P1", "P1", "P1"]
    inputs["transactions"]["quantity"] = [1, 2, 3]
    result = crm_xl.run(**inputs, config={"report_month": "2024-03", "history_months": 3})
    assert _dtypes_disagreeing(result, golden_result) == []
    assert result["customer_snapshot"]["customer_name"].isna().all()       # added, blank


def test_dtypes_when_tables_are_empty(golden_result):
    result = crm_xl.run(**_no_core_purchase_inputs(), config={"report_month": "2024-03", "history_months": 3})
    assert _dtypes_disagreeing(result, golden_result) == []


def test_a_report_month_before_anyone_entered_stops_rather_than_give_empty_tables(golden_inputs):
    # the golden customers are created 2021-12-01: nobody is in the base in 2021-06
    with pytest.raises(crm_xl.ConfigError, match=r"report_month.*before the first transaction"):
        crm_xl.run(**golden_inputs, config={"report_month": "2021-06", "history_months": 3})


# --- label values -------------------------------------------------------------------------------


@pytest.mark.parametrize(("column", "allowed"), [
    ("activity_status", STATUSES), ("value_tier", TIERS), ("lifecycle_event", EVENTS),
    ("lifecycle_state", STATES), ("previous_value_tier", TIERS), ("previous_lifecycle_state", STATES),
])
def test_label_values_come_from_their_lists(golden_result, column, allowed):
    values = golden_result["customer_snapshot"][column].dropna().astype(str)
    assert set(values) <= set(allowed)
    if column in golden_result["customer_history"]:
        assert set(golden_result["customer_history"][column].dropna().astype(str)) <= set(allowed)


def test_rfm_code_is_the_four_scores(golden_result):
    history = golden_result["customer_history"]
    scored = history[history["r_score"].notna()]
    expected = ("R" + scored["r_score"].astype(str) + "F" + scored["f_score"].astype(str)
                + "M" + scored["m_score"].astype(str) + "T" + scored["t_score"].astype(str))
    assert (scored["rfm_code"].astype(str) == expected).all()
    assert history.loc[history["r_score"].isna(), "rfm_code"].isna().all()


def test_snapshot_is_the_last_history_month(golden_result):
    """Every figure as the history's last month has it; the segment reason adds the customer's values
    (tests/test_reasons.py), so it is compared with its values taken out."""
    snapshot, history = golden_result["customer_snapshot"], golden_result["customer_history"]
    last = history[history["report_month"] == history["report_month"].max()].reset_index(drop=True)
    assert (snapshot["report_month"] == pd.Timestamp("2024-12-01")).all()
    without_values = snapshot["segment_reason"].astype(str).str.replace(
        r"recency [\d,]+ days?: R(\d) is (.+?) days; [\d,]+ orders? in (.+?): F(\d) is (.+?); (revenue )?[\d,.]+ (.*?)"
        r"in (.+?): M(\d) is ([^;]+)", r"recency \2 days (R\1); \5 in \3 (F\4); \6\10 \7in \8 (M\9)", regex=True)
    snapshot = snapshot.assign(segment_reason=without_values.astype("category"))
    columns = [c for c in contract.columns("customer_history") if c != "customer_id"]
    left = snapshot.sort_values("customer_id")[columns].reset_index(drop=True)
    right = last.assign(customer_id=last["customer_id"].astype(str)).sort_values("customer_id")[columns]
    pd.testing.assert_frame_equal(left, right.reset_index(drop=True), check_categorical=False)


def test_previous_columns_are_last_months_values(golden_result):
    snapshot, history = golden_result["customer_snapshot"], golden_result["customer_history"]
    before = history[history["report_month"] == pd.Timestamp("2024-11-01")]
    before = before.assign(customer_id=before["customer_id"].astype(str)).set_index("customer_id")
    snap = snapshot.set_index("customer_id")
    for column in ("value_tier", "lifecycle_state"):
        expected = before[column].astype(object).reindex(snap.index).fillna("")
        got = snap[f"previous_{column}"].astype(object).fillna("")
        assert got.tolist() == expected.tolist(), column


# --- monthly_summary and tier_transitions ---------------------------------------------------------


def _base_per_month(result: dict[str, pd.DataFrame]) -> pd.Series:
    return result["customer_history"].groupby("report_month").size()


@pytest.mark.parametrize("dimension", ["lifecycle_state", "activity_status"])
def test_monthly_summary_shares_sum_to_one(golden_result, dimension):
    summary = golden_result["monthly_summary"]
    rows = summary[summary["dimension"] == dimension]
    totals = rows.groupby("report_month")["share"].sum()
    assert len(totals) == 24
    np.testing.assert_allclose(totals.to_numpy(), 1.0, atol=1e-5)
    customers = rows.groupby("report_month")["customers"].sum()
    pd.testing.assert_series_equal(customers, _base_per_month(golden_result), check_names=False)


def test_monthly_summary_lists_every_category_every_month(golden_result):
    summary = golden_result["monthly_summary"]
    categories = {"lifecycle_state": STATES, "activity_status": STATUSES, "value_tier": TIERS,
                  "lifecycle_event": EVENTS,
                  "rfm_segment": tuple(golden_result["segment_map"]["rfm_segment"].unique())}
    assert set(summary["dimension"]) == set(categories)
    for dimension, names in categories.items():
        rows = summary[summary["dimension"] == dimension]
        for month, group in rows.groupby("report_month"):
            assert sorted(group["category"]) == sorted(names), (dimension, month)
    assert (summary["customers"] >= 0).all()


def test_monthly_summary_counts_match_history(golden_result):
    summary = golden_result["monthly_summary"]
    history = golden_result["customer_history"]
    tiers = summary[summary["dimension"] == "value_tier"].set_index(["report_month", "category"])["customers"]
    counted = history.groupby(["report_month", history["value_tier"].astype(str)]).size()
    for (month, tier), count in counted.items():
        if tier in TIERS:
            assert tiers.loc[(month, tier)] == count
    volume = summary[summary["dimension"] == "lifecycle_state"].groupby("report_month")["volume_m1"].sum()
    np.testing.assert_allclose(volume.to_numpy(), history.groupby("report_month")["m1"].sum().to_numpy())


def test_monthly_summary_has_every_history_month(golden_inputs):
    """Every category every month, zeros included, also in months where nobody is in the base yet."""
    # the golden customers are created 2021-12-01: 2021-09 .. 2021-11 have an empty base
    result = crm_xl.run(**golden_inputs, config={"report_month": "2022-02", "history_months": 6})
    months = result["monthly_summary"]["report_month"].drop_duplicates()
    assert list(months) == list(pd.date_range("2021-09-01", periods=6, freq="MS"))


def test_tier_transitions_count_every_customer_in_the_base(golden_result):
    transitions = golden_result["tier_transitions"]
    per_month = transitions.groupby("report_month")["customers"].sum()
    pd.testing.assert_series_equal(per_month, _base_per_month(golden_result), check_names=False)
    assert set(transitions["from_tier"]) | set(transitions["to_tier"]) <= TRANSITION_LABELS
    assert "New to base" not in set(transitions["to_tier"])
    assert (transitions["customers"] > 0).all()
    assert not transitions.duplicated(["report_month", "from_tier", "to_tier"]).any()


def test_tier_transitions_agree_with_history(golden_result):
    history = golden_result["customer_history"]
    label = history["value_tier"].astype(object).where(history["value_tier"].notna(),
                                                       np.where(history["first_core_date"].notna(),
                                                                "Not Active", "Prospect"))
    frame = history[["report_month", "customer_id"]].assign(tier=label.to_numpy())
    frame["customer_id"] = frame["customer_id"].astype(str)
    wide = frame.pivot(index="customer_id", columns="report_month", values="tier")
    transitions = golden_result["tier_transitions"].set_index(["report_month", "from_tier", "to_tier"])
    for previous, month in zip(wide.columns[:-1], wide.columns[1:], strict=True):
        moves = pd.DataFrame({"from": wide[previous], "to": wide[month]}).value_counts()
        for (came_from, went_to), count in moves.items():
            assert transitions.loc[(month, came_from, went_to), "customers"] == count


# --- the small tables ---------------------------------------------------------------------------


def test_segment_map_table_covers_every_cell_once(golden_result):
    table = golden_result["segment_map"]
    assert len(table) == 25
    assert sorted(table["cell"]) == sorted(f"{r}{fm}" for r in range(1, 6) for fm in range(1, 6))
    assert (table["cell"] == table["r_score"].astype(str) + table["fm_score"].astype(str)).all()


def test_rfm_cut_points_are_ordered_and_complete(golden_result):
    cuts = golden_result["rfm_cut_points"]
    assert set(cuts["field"]) == {"recency", "frequency", "monetary", "tenure"}
    assert not cuts.duplicated(["report_month", "field"]).any()
    values = cuts[["cut_1", "cut_2", "cut_3", "cut_4"]].to_numpy()
    assert (np.diff(values, axis=1) >= 0).all()
    history = golden_result["customer_history"]
    scored = history[history["r_score"].notna()].groupby("report_month").size()
    per_month = cuts.groupby("report_month")["customers_scored"].max()
    pd.testing.assert_series_equal(per_month, scored, check_names=False)


def test_run_info_records_the_run(golden_result):
    info = golden_result["run_info"].set_index("item")["value"]
    assert info.index.is_unique
    assert info["report_month_used"] == "2024-12"
    assert info["crm_xl_version"] == crm_xl.__version__
    assert info["history_rows"] == str(len(golden_result["customer_history"]))
    assert info["setting.history_months"] == "24"


def test_empty_data_quality_table_keeps_its_columns_and_types():
    inputs = _no_core_purchase_inputs()
    inputs["transactions"]["quantity"] = [1, 1, 2]
    inputs["transactions"]["invoice_date"] = ["2024-01-05", "2024-02-05", "2024-03-31"]   # March is complete
    result = crm_xl.run(**inputs, config={"report_month": "2024-03", "history_months": 3})
    # too few customers for the CLV models: their warnings are the only rows (typed like the rest)
    assert result["data_quality"]["rule"].str.startswith("clv_").all()
    for name, kind, _ in contract.TABLES["data_quality"][1]:
        assert dtype_matches(kind, result["data_quality"][name].dtype), name
    quality = run_core(**inputs, config={"report_month": "2024-03", "history_months": 3}).tables["data_quality"]
    assert quality.empty
    assert list(quality.columns) == contract.columns("data_quality")
    for name, kind, _ in contract.TABLES["data_quality"][1]:
        assert dtype_matches(kind, quality[name].dtype), name


@pytest.mark.parametrize("clash", ["value_tier", "m1", "report_month"])
def test_master_column_clashing_with_an_output_column(clash):
    """A master column named like an output column (e.g. from an earlier export) must not shadow it."""
    inputs = _no_core_purchase_inputs()
    inputs["transactions"]["quantity"] = [1, 1, 2]
    inputs["customers"][clash] = "stale"
    snapshot = crm_xl.run(**inputs, config={"report_month": "2024-03", "history_months": 3})["customer_snapshot"]
    assert snapshot.columns.is_unique
    assert list(snapshot.columns[: len(contract.columns("customer_snapshot"))]) == contract.columns(
        "customer_snapshot")
    assert (snapshot[clash].astype(str) != "stale").all()
    extras = snapshot.iloc[:, len(contract.columns("customer_snapshot")):]
    assert (extras.astype(str) == "stale").any().any(), "the master's column is kept, under another name"


def test_data_quality_lists_the_most_severe_findings_first():
    from crm_xl.io import sample

    severities = crm_xl.run(**sample.generate(n_customers=400))["data_quality"]["severity"]
    ranks = [{"error": 0, "warning": 1, "info": 2}[s] for s in severities]
    assert len(set(ranks)) > 1 and ranks == sorted(ranks)
