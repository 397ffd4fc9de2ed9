"""The golden example: customer_history must agree row for row with an independent implementation.

expected_history.csv (tests/fixtures/golden) holds the month-end figures that a SQL implementation of
the brief's rules produces for 21 persona customers (report_month 2024-12, history_months 24).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

import crm_xl

KEY = ["report_month", "customer_id"]
NUMBER_COLUMNS = ["m_total", "m1", "m6", "m12", "m13", "m24", "m25", "o6", "tenure_months", "amc", "aos"]
DATE_COLUMNS = ["first_core_date", "last_core_date", "first_device_date"]
LABEL_COLUMNS = ["activity_status", "value_tier", "lifecycle_event"]
# The answer key writes amc / aos with 6 decimals.
REL_TOL, ABS_TOL = 1e-6, 1e-6


def _as_text(values: pd.Series, date_format: str | None = None) -> pd.Series:
    """A column as plain text, blank ("") where missing, for comparing with the CSV answer key."""
    if date_format is not None:
        return values.dt.strftime(date_format).astype(object).where(values.notna(), "")
    return values.astype(object).where(values.notna(), "").map(str)


def compare_with_expected(history: pd.DataFrame, expected: pd.DataFrame) -> list[str]:
    """Every difference between customer_history and the answer key, as readable lines."""
    problems: list[str] = []
    missing_columns = [c for c in expected.columns if c not in history.columns]
    if missing_columns:
        return [f"customer_history lacks columns {missing_columns}"]
    got = history.copy()
    got["report_month"] = _as_text(got["report_month"], "%Y-%m")
    got["customer_id"] = _as_text(got["customer_id"])
    got_keys = set(zip(got["report_month"], got["customer_id"], strict=True))
    exp_keys = set(zip(expected["report_month"], expected["customer_id"], strict=True))
    if got_keys != exp_keys:
        problems.append(f"rows only in customer_history: {sorted(got_keys - exp_keys)[:10]}")
        problems.append(f"rows only in expected_history: {sorted(exp_keys - got_keys)[:10]}")
        return problems
    assert not got.duplicated(KEY).any(), "customer_history has duplicate (report_month, customer_id) rows"
    got = got.set_index(KEY).loc[pd.MultiIndex.from_frame(expected[KEY])].reset_index()
    exp = expected.reset_index(drop=True)

    def report(column: str, row: int, want: str, have: object) -> None:
        problems.append(f"{exp.at[row, 'report_month']} {exp.at[row, 'customer_id']} {column}: "
                        f"expected {want!r}, got {have!r}")

    for column in NUMBER_COLUMNS:
        have = got[column].astype("Float64").to_numpy(dtype="float64", na_value=np.nan)
        for row, want in enumerate(exp[column]):
            if want == "":
                if not np.isnan(have[row]):
                    report(column, row, want, have[row])
            elif np.isnan(have[row]) or not math.isclose(have[row], float(want), rel_tol=REL_TOL,
                                                         abs_tol=ABS_TOL):
                report(column, row, want, have[row])
    for column in DATE_COLUMNS:
        have = _as_text(got[column], "%Y-%m-%d")
        for row in np.flatnonzero(have.to_numpy() != exp[column].to_numpy()):
            report(column, row, exp.at[row, column], have.iat[row])
    for column in LABEL_COLUMNS:
        have = _as_text(got[column])
        for row in np.flatnonzero(have.to_numpy() != exp[column].to_numpy()):
            report(column, row, exp.at[row, column], have.iat[row])
    return problems


def assert_matches_expected(history: pd.DataFrame, expected: pd.DataFrame) -> None:
    problems = compare_with_expected(history, expected)
    shown = "\n".join(problems[:30])
    assert not problems, f"{len(problems)} differences from expected_history.csv:\n{shown}"


def _typed(inputs: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """The golden tables as a typed reader (or Excel) gives them: numbers as numbers, dates as dates."""
    tx = inputs["transactions"].copy()
    tx["quantity"] = pd.to_numeric(tx["quantity"])
    tx["revenue"] = pd.to_numeric(tx["revenue"])
    tx["invoice_date"] = pd.to_datetime(tx["invoice_date"])
    customers = inputs["customers"].copy()
    customers["created_date"] = pd.to_datetime(customers["created_date"])
    customers["opt_email"] = pd.to_numeric(customers["opt_email"])
    products = inputs["products"].copy()
    products["unit_size"] = pd.to_numeric(products["unit_size"])
    return {"transactions": tx, "customers": customers, "products": products}


def _customer_number(customer_id: str) -> int:
    return int(customer_id.lstrip("G"))            # G01 -> 1, G99 -> 99


def _numeric_ids(inputs: dict[str, pd.DataFrame], as_float: bool) -> dict[str, pd.DataFrame]:
    """Every id as a number (Excel stores numeric-looking ids as floats when ``as_float``)."""
    typed = _typed(inputs)
    product_numbers = {pid: 101 + i for i, pid in enumerate(inputs["products"]["product_id"])}
    number_type = "float64" if as_float else "int64"
    tx = typed["transactions"]
    tx["customer_id"] = tx["customer_id"].map(_customer_number).astype(number_type)
    tx["product_id"] = tx["product_id"].map(lambda p: product_numbers.get(p, 999)).astype(number_type)
    tx["invoice_id"] = tx["invoice_id"].str.removeprefix("INV").astype("int64").astype(number_type)
    customers = typed["customers"]
    customers["customer_id"] = customers["customer_id"].map(_customer_number).astype(number_type)
    products = typed["products"]
    products["product_id"] = products["product_id"].map(product_numbers).astype(number_type)
    return typed


def test_golden_fixture_is_the_shared_one(golden_inputs, golden_expected):
    assert len(golden_expected) == 24 * 19  # 21 master customers, 2 anonymous
    assert set(golden_inputs["customers"]["customer_id"]) >= set(golden_expected["customer_id"])


def test_customer_history_matches_expected_from_text_input(golden_result, golden_expected):
    assert_matches_expected(golden_result["customer_history"], golden_expected)


def test_customer_history_covers_every_expected_row_once(golden_result, golden_expected):
    history = golden_result["customer_history"]
    assert not history.duplicated(KEY).any()
    assert len(history) == len(golden_expected)
    assert set(history["customer_id"]) == set(golden_expected["customer_id"])
    assert not {"G11", "G12"} & set(history["customer_id"])          # anonymous: General / " general "
    assert "G21" in set(history["customer_id"])                       # a blank group is not anonymous


def test_golden_from_typed_input_gives_the_same_tables(golden_inputs, golden_config, golden_result,
                                                       golden_expected):
    result = crm_xl.run(**_typed(golden_inputs), config=golden_config)
    assert_matches_expected(result["customer_history"], golden_expected)
    for name in ("customer_history", "customer_snapshot", "monthly_summary", "tier_transitions",
                 "rfm_cut_points"):
        pd.testing.assert_frame_equal(result[name], golden_result[name], check_exact=True, obj=name)


@pytest.mark.parametrize("as_float", [False, True], ids=["int_ids", "float_ids"])
def test_golden_with_numeric_ids(golden_inputs, golden_config, golden_expected, as_float):
    result = crm_xl.run(**_numeric_ids(golden_inputs, as_float), config=golden_config)
    expected = golden_expected.copy()
    expected["customer_id"] = expected["customer_id"].map(lambda c: str(_customer_number(c)))
    assert_matches_expected(result["customer_history"], expected)
    assert result["customer_history"]["customer_id"].str.fullmatch(r"\d+").all()   # "1", never "1.0"


def test_golden_data_quality_reports_the_planted_problems(golden_result):
    quality = golden_result["data_quality"]
    rules = {(t, r): n for t, r, n in quality[["table", "rule", "rows"]].itertuples(index=False)}
    assert rules[("transactions", "unknown_customer")] == 1          # G99
    assert rules[("transactions", "unknown_product")] == 1           # XXX9
    assert rules[("customers", "anonymous_customer")] == 2           # G11, G12
    assert ("transactions", "return_line") in rules
    assert ("transactions", "zero_quantity") in rules
    assert ("transactions", "after_report_month") in rules           # G16's 2025-01 purchase


def test_expected_comparison_detects_a_difference(golden_result, golden_expected):
    """The comparator itself must not be vacuous."""
    history = golden_result["customer_history"].copy()
    history.loc[0, "m6"] += 1
    history["value_tier"] = history["value_tier"].cat.add_categories(["Wrong"])
    history.loc[1, "value_tier"] = "Wrong"
    history.loc[2, "last_core_date"] = pd.NaT
    problems = compare_with_expected(history, golden_expected)
    assert len(problems) == 3, problems
    assert compare_with_expected(history.iloc[1:], golden_expected)
