"""Staging: ids, dates and numbers typed the way users mean them; the data-quality log; fatal errors."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pandas as pd
import pytest

import crm_xl
from crm_xl import InputError
from crm_xl.core.pipeline import run_core

PRODUCTS = pd.DataFrame({"product_id": ["P1", "D1", "A1"], "category": ["consumable", "device", "accessories"],
                         "unit_size": [10, 1, 1]})
CONFIG = {"report_month": "2024-03", "history_months": 3}


def make_transactions(customer_id: list, invoice_date: object = "2024-03-05", product_id: object = "P1",
                      quantity: object = 1, revenue: object = 1.0, invoice_id: object = None) -> pd.DataFrame:
    """Transaction lines; scalars repeat, lists give one value per line (object columns, as mixed as given)."""
    n = len(customer_id)

    def column(value: object) -> pd.Series:
        return pd.Series(value if isinstance(value, list) else [value] * n, dtype=object)

    if invoice_id is None:
        invoice_id = [f"I{i + 1}" for i in range(n)]
    return pd.DataFrame({"invoice_id": column(invoice_id), "invoice_date": column(invoice_date),
                         "customer_id": column(customer_id), "product_id": column(product_id),
                         "quantity": column(quantity), "revenue": column(revenue)})


def make_customers(customer_id: list, **columns: list) -> pd.DataFrame:
    frame = pd.DataFrame({"customer_id": pd.Series(customer_id, dtype=object)})
    for name, values in columns.items():
        frame[name] = pd.Series(values, dtype=object)
    return frame


def run(transactions: pd.DataFrame, customers: pd.DataFrame, products: pd.DataFrame = PRODUCTS,
        **config: object) -> dict[str, pd.DataFrame]:
    """The core's tables (staging is the core's; the analyst views, e.g. CLV's notes on too few customers,
    are tested with their views)."""
    return run_core(transactions=transactions, customers=customers, products=products.copy(),
                    config={**CONFIG, **config}).tables


def snapshot_by_id(result: dict[str, pd.DataFrame]) -> pd.DataFrame:
    return result["customer_snapshot"].set_index("customer_id")


def history_row(result: dict[str, pd.DataFrame], customer_id: str, month: str) -> pd.Series:
    history = result["customer_history"]
    rows = history[(history["customer_id"] == customer_id) & (history["report_month"] == pd.Timestamp(month))]
    assert len(rows) == 1, f"expected one row for {customer_id} {month}, got {len(rows)}"
    return rows.iloc[0]


def quality_rules(result: dict[str, pd.DataFrame]) -> dict[tuple[str, str, str], pd.Series]:
    quality = result["data_quality"]
    keys = list(zip(quality["table"], quality["column"], quality["rule"], strict=True))
    assert len(keys) == len(set(keys)), "a rule is logged twice for the same table and column"
    return {key: quality.iloc[i] for i, key in enumerate(keys)}


# --- ids ----------------------------------------------------------------------------------------


def test_leading_zeros_are_kept_and_distinct():
    result = run(make_transactions(["00123", "123", "123"]), make_customers(["00123", "123"]))
    snapshot = snapshot_by_id(result)
    assert set(snapshot.index) == {"00123", "123"}
    assert snapshot.loc["00123", "m1"] == 10
    assert snapshot.loc["123", "m1"] == 20


@pytest.mark.parametrize("master_id", [123, 123.0, "123", " 123 ", "123.0", np.int64(123), np.float64(123)],
                         ids=repr)
def test_numeric_id_forms_are_one_id(master_id):
    tx = make_transactions([123, 123.0, "123", " 123 ", "123.0", "00123"])
    result = run(tx, make_customers([master_id, "00123"]))
    snapshot = snapshot_by_id(result)
    assert sorted(snapshot.index) == ["00123", "123"]
    assert snapshot.loc["123", "m1"] == 50
    assert snapshot.loc["123", "o6"] == 5
    assert snapshot.loc["00123", "m1"] == 10
    assert "unknown_customer" not in set(result["data_quality"]["rule"])


def test_id_columns_typed_by_excel_as_numbers():
    tx = make_transactions([0, 0, 0])
    tx["customer_id"] = pd.Series([123.0, 123.0, 7.0])           # float64, as Excel gives
    tx["product_id"] = pd.Series([1, 1, 2])                      # int64
    customers = pd.DataFrame({"customer_id": pd.Series([7, 123])})
    products = pd.DataFrame({"product_id": [1.0, 2.0], "category": ["consumable", "device"], "unit_size": [10, 1]})
    result = run(tx, customers, products)
    snapshot = snapshot_by_id(result)
    assert sorted(snapshot.index) == ["123", "7"]
    assert snapshot.loc["123", "m1"] == 20
    assert snapshot.loc["7", "m1"] == 0
    assert snapshot.loc["7", "first_device_date"] == pd.Timestamp("2024-03-05")
    assert problems(result).empty


def test_id_columns_as_text_dtype():
    tx = make_transactions(["123", " 123 ", "123.0", "0042"])
    for column in tx.columns:
        tx[column] = tx[column].astype("str")
    customers = pd.DataFrame({"customer_id": pd.array(["123", "0042"], dtype="str")})
    snapshot = snapshot_by_id(run(tx, customers))
    assert snapshot.loc["123", "m1"] == 30
    assert snapshot.loc["0042", "m1"] == 10


def test_master_text_keeps_leading_zeros():
    customers = make_customers(["C1"], mobile_number=["0912345678"], customer_name=["  Ann  "])
    snapshot = snapshot_by_id(run(make_transactions(["C1"]), customers))
    assert snapshot.loc["C1", "mobile_number"] == "0912345678"


@pytest.mark.parametrize("invoice_ids", [[1001.0, "1001"], [1001.0, 1001], [" 1001 ", 1001.0], ["A7", " A7"]],
                         ids=repr)
def test_invoice_id_forms_are_one_invoice(invoice_ids):
    tx = make_transactions(["C1", "C1"], invoice_id=invoice_ids)
    assert snapshot_by_id(run(tx, make_customers(["C1"]))).loc["C1", "o6"] == 1


# --- dates --------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [
    45300, 45300.0, 45300.75, np.int64(45300), "45300", "2024-01-09", " 2024-01-09 ", "2024-01-09 13:45:00",
    "2024-01-09T23:59:59", dt.date(2024, 1, 9), dt.datetime(2024, 1, 9, 15, 30),
    pd.Timestamp("2024-01-09 08:00"), pd.Timestamp("2024-01-09 08:00", tz="Europe/Lisbon"),
], ids=repr)
def test_date_forms(value):
    result = run(make_transactions(["C1"], invoice_date=[value]), make_customers(["C1"]))
    january = history_row(result, "C1", "2024-01")
    assert january["first_core_date"] == pd.Timestamp("2024-01-09")
    assert january["m1"] == 10
    march = history_row(result, "C1", "2024-03")
    assert march["recency_days"] == (pd.Timestamp("2024-03-31") - pd.Timestamp("2024-01-09")).days
    assert "bad_date" not in set(result["data_quality"]["rule"])


@pytest.mark.parametrize(("serial", "day"), [
    (45300.9999995, "2024-01-09"),        # 23:59:59.957: 43 ms before midnight
    (45300.9999999, "2024-01-09"),        # 8.6 ms before midnight, still 23:59:59.991
    (45300.0000001, "2024-01-09"),
    (45300.999999995, "2024-01-10"),      # 0.4 ms before midnight: midnight, to the millisecond
    (45300.99999999999, "2024-01-10"),    # float noise of a calculation that meant midnight
    (45301 - 2**-40, "2024-01-10"),
])
@pytest.mark.parametrize("form", [float, repr], ids=["number", "text"])
def test_an_excel_serial_is_rounded_to_the_millisecond_then_its_day_taken(serial, day, form):
    result = run(make_transactions(["C1"], invoice_date=[form(serial)]), make_customers(["C1"]))
    assert history_row(result, "C1", "2024-01")["first_core_date"] == pd.Timestamp(day)


@pytest.mark.parametrize("tz", [None, "Europe/Lisbon"])
def test_datetime_column_with_time_parts(tz):
    tx = make_transactions(["C1", "C1"], invoice_date=["x", "x"])
    tx["invoice_date"] = pd.to_datetime(pd.Series(["2024-01-09 23:59:59", "2024-03-31 18:00:00"])).dt.tz_localize(tz)
    result = run(tx, make_customers(["C1"]))
    march = history_row(result, "C1", "2024-03")
    assert march["first_core_date"] == pd.Timestamp("2024-01-09")
    assert march["last_core_date"] == pd.Timestamp("2024-03-31")
    assert march["recency_days"] == 0


def test_mixed_date_column():
    dates = [45300, "2024-02-10", dt.datetime(2024, 3, 1, 12), "2024-03-02 10:00:00"]
    result = run(make_transactions(["C1"] * 4, invoice_date=dates), make_customers(["C1"]))
    assert [history_row(result, "C1", m)["m1"] for m in ("2024-01", "2024-02", "2024-03")] == [10, 10, 20]


@pytest.mark.parametrize("garbage", ["garbage", "31/02/2024", "2024-02-30", True, "45300 days"], ids=repr)
def test_garbage_date_is_a_bad_date(garbage):
    tx = make_transactions(["C1", "C1", "C1"], invoice_date=["2024-01-09", garbage, "2024-03-01"])
    result = run(tx, make_customers(["C1"]))
    rule = quality_rules(result)[("transactions", "invoice_date", "bad_date")]
    assert (rule["severity"], rule["rows"], rule["example_rows"]) == ("warning", 1, "2")
    assert history_row(result, "C1", "2024-03")["m_total"] == 20       # the line is left out


def test_blank_date_is_left_out():
    result = run(make_transactions(["C1", "C1"], invoice_date=["2024-01-09", None]), make_customers(["C1"]))
    rules = quality_rules(result)
    assert ("transactions", "invoice_date", "bad_date") not in rules
    assert history_row(result, "C1", "2024-03")["m_total"] == 10
    assert result["run_info"].set_index("item").loc["transactions_used", "value"] == "1"


# --- numbers ------------------------------------------------------------------------------------


def test_numbers_from_text():
    tx = make_transactions(["C1", "C1", "C1"], quantity=["5", " 7 ", "1 000"], revenue=["10.5", " 2 ", "1"])
    products = PRODUCTS.astype({"unit_size": object})
    products["unit_size"] = [" 10 ", "1", "1.0"]
    result = run(tx, make_customers(["C1"]), products)
    march = history_row(result, "C1", "2024-03")
    assert march["m1"] == (5 + 7 + 1000) * 10
    assert march["revenue_m1"] == pytest.approx(13.5)
    assert problems(result).empty


def test_text_dtype_numbers():
    tx = make_transactions(["C1", "C1"], quantity=["5", " 7 "], revenue=["1", "2"]).astype("str")
    result = run(tx, make_customers(["C1"]).astype("str"), PRODUCTS.astype("str"))
    assert history_row(result, "C1", "2024-03")["m1"] == 120


@pytest.mark.parametrize("bad", ["abc", "", "5 pcs", None], ids=repr)
def test_non_numeric_quantity_is_left_out(bad):
    tx = make_transactions(["C1", "C1", "C1"], quantity=[2, bad, 3])
    result = run(tx, make_customers(["C1"]))
    rule = quality_rules(result)[("transactions", "quantity", "bad_quantity")]
    assert (rule["severity"], rule["rows"], rule["example_rows"]) == ("warning", 1, "2")
    march = history_row(result, "C1", "2024-03")
    assert march["m1"] == 50
    assert march["o6"] == 2


@pytest.mark.parametrize("bad", ["inf", "-inf", " Infinity ", "nan", math.inf, -math.inf], ids=repr)
def test_infinite_quantity_is_a_bad_quantity(bad):
    tx = make_transactions(["C1", "C1", "C1"], quantity=[2, bad, 3])
    result = run(tx, make_customers(["C1"]))
    rule = quality_rules(result)[("transactions", "quantity", "bad_quantity")]
    assert (rule["rows"], rule["example_rows"]) == (1, "2")
    assert history_row(result, "C1", "2024-03")["m1"] == 50


@pytest.mark.parametrize("dtype", ["float64", "str"])
def test_infinite_revenue_and_unit_size_are_bad_numbers_in_typed_columns(dtype):
    tx = make_transactions(["C1", "C1"], quantity=[1, 2], revenue=[1.5, math.inf]).astype({"revenue": dtype})
    products = PRODUCTS.astype({"unit_size": "float64"})
    products.loc[1, "unit_size"] = math.inf
    result = run(tx, make_customers(["C1"]), products.astype({"unit_size": dtype}))
    rules = quality_rules(result)
    assert rules[("transactions", "revenue", "bad_revenue")]["example_rows"] == "2"
    assert rules[("products", "unit_size", "bad_unit_size")]["example_rows"] == "2"
    assert history_row(result, "C1", "2024-03")["revenue_m1"] == 1.5


# --- the data-quality log -----------------------------------------------------------------------


def _all_rules_inputs() -> dict[str, pd.DataFrame]:
    products = pd.DataFrame({
        "product_id": ["P1", "D1", "BADSZ", "ODD", "P1", "", "ZERO"],
        "category": ["consumable", "device", "consumable", "gadget", "device", "consumable", "consumable"],
        "unit_size": ["10", "1", "abc", "1", "5", "1", "0"],
    })
    customers = make_customers(
        ["C1", "C2", "C1", "", "ANON", "C3"],
        customer_group=["Retail", "Retail", "Office", "Retail", " general ", "Retail"],
        created_date=["2024-01-01", "2024-01-01", "2024-01-01", "2024-01-01", "2024-01-01", "notadate"],
        opt_email=[1, 0, 1, 1, 1, 2],
        opt_sms=["", "yes", "1", "0", "1", 0.0],
    )
    rows = [  # invoice_id, invoice_date, customer_id, product_id, quantity, revenue
        ("I1", "2024-01-05", "C1", "P1", 2, 1.0),         # 1 ok
        ("I2", "2024-01-06", "C1", "P1", -1, -1.0),       # 2 return_line
        ("", "2024-01-07", "C2", "P1", 0, 0.0),           # 3 zero_quantity, missing_invoice_id
        ("I4", "2024-03-01", "C2", "P1", 3, 3.0),         # 4 ok
        ("I5", "2024-04-01", "C1", "P1", 1, 1.0),         # 5 after_report_month
        ("I6", "2024-01-05", "", "P1", 1, 1.0),           # 6 missing_customer_id
        ("I7", "2024-01-05", "C9", "P1", 1, 1.0),         # 7 unknown_customer
        ("I8", "2024-01-05", "ANON", "P1", 1, 1.0),       # 8 anonymous_customer
        ("I9", "2024-01-05", "C1", "XX", 1, 1.0),         # 9 unknown_product
        ("I10", "x", "C1", "P1", 1, 1.0),                 # 10 bad_date
        ("I11", "2024-01-05", "C1", "BADSZ", 1, 1.0),     # 11 bad_unit_size
        ("I12", "2024-01-05", "C2", "ODD", 1, 1.0),       # 12 unknown category: non-core, counts nowhere
        ("I13", "2024-01-05", "C1", None, 1, 1.0),        # 13 missing_product_id
        ("I14", "2024-01-05", "C1", "P1", "abc", 1.0),    # 14 bad_quantity
        ("I15", "2024-01-05", "C1", "P1", 1, "z"),        # 15 bad_revenue (counted as 0)
        (None, "2024-01-07", "C2", "P1", 1, 1.0),         # 16 missing_invoice_id (same day as row 3)
    ]
    transactions = pd.DataFrame(rows, columns=["invoice_id", "invoice_date", "customer_id", "product_id",
                                               "quantity", "revenue"]).astype(object)
    return {"transactions": transactions, "customers": customers, "products": products}


EXPECTED_RULES = {  # (table, column, rule): (severity, rows, example_rows)
    ("customers", "customer_id", "missing_customer_id"): ("warning", 1, "4"),
    ("customers", "customer_id", "duplicate_customer_id"): ("warning", 1, "3"),
    ("customers", "created_date", "bad_date"): ("warning", 1, "6"),
    ("customers", "opt_email", "bad_opt_in"): ("warning", 1, "6"),
    ("customers", "opt_sms", "bad_opt_in"): ("warning", 1, "2"),
    ("customers", "customer_group", "anonymous_customer"): ("info", 1, "5"),
    ("products", "product_id", "missing_product_id"): ("warning", 1, "6"),
    ("products", "product_id", "duplicate_product_id"): ("warning", 1, "5"),
    ("products", "unit_size", "bad_unit_size"): ("warning", 2, "3, 7"),
    ("products", "category", "unknown_category"): ("warning", 1, "4"),
    ("transactions", "product_id", "line_in_unknown_category"): ("warning", 1, "12"),
    ("transactions", "customer_id", "missing_customer_id"): ("warning", 1, "6"),
    ("transactions", "customer_id", "anonymous_customer"): ("info", 1, "8"),
    ("transactions", "customer_id", "unknown_customer"): ("warning", 1, "7"),
    ("transactions", "product_id", "missing_product_id"): ("warning", 1, "13"),
    ("transactions", "product_id", "unknown_product"): ("warning", 1, "9"),
    ("transactions", "product_id", "bad_unit_size"): ("warning", 1, "11"),
    ("transactions", "invoice_date", "bad_date"): ("warning", 1, "10"),
    ("transactions", "quantity", "bad_quantity"): ("warning", 1, "14"),
    ("transactions", "revenue", "bad_revenue"): ("warning", 1, "15"),
    ("transactions", "quantity", "return_line"): ("info", 1, "2"),
    ("transactions", "quantity", "zero_quantity"): ("info", 1, "3"),
    ("transactions", "invoice_id", "missing_invoice_id"): ("info", 2, "3, 16"),
    ("transactions", "invoice_date", "after_report_month"): ("info", 1, "5"),
    ("transactions", "invoice_date", "empty_month"): ("warning", 1, ""),
    ("(all)", "(any)", "rejected_lines"): ("info", 13, ""),
}


def _run_all_rules(index_offset: int = 0) -> dict[str, pd.DataFrame]:
    inputs = _all_rules_inputs()
    for table in inputs.values():
        table.index = table.index + index_offset
    return run_core(**inputs, config=CONFIG).tables


@pytest.fixture(scope="module")
def all_rules_result() -> dict[str, pd.DataFrame]:
    return _run_all_rules()


@pytest.mark.parametrize("key", list(EXPECTED_RULES), ids=lambda k: ".".join(k))
def test_data_quality_rule(all_rules_result, key):
    rules = quality_rules(all_rules_result)
    assert key in rules, f"{key} not in data_quality"
    rule = rules[key]
    assert (rule["severity"], rule["rows"], rule["example_rows"]) == EXPECTED_RULES[key]
    assert rule["message"]


def test_data_quality_has_no_other_rules(all_rules_result):
    assert set(quality_rules(all_rules_result)) == set(EXPECTED_RULES)
    assert set(all_rules_result["data_quality"]["severity"]) <= {"error", "warning", "info"}


def test_data_quality_example_values(all_rules_result):
    rules = quality_rules(all_rules_result)
    assert rules[("transactions", "customer_id", "unknown_customer")]["example_values"] == "C9"
    assert rules[("transactions", "product_id", "unknown_product")]["example_values"] == "XX"
    assert rules[("transactions", "invoice_date", "bad_date")]["example_values"] == "x"
    assert rules[("products", "category", "unknown_category")]["example_values"] == "gadget"
    assert rules[("transactions", "invoice_date", "empty_month")]["example_values"] == "2024-02"


def test_data_quality_rows_are_positions_not_index_labels(all_rules_result):
    shifted = _run_all_rules(index_offset=100)
    pd.testing.assert_frame_equal(shifted["data_quality"], all_rules_result["data_quality"])
    pd.testing.assert_frame_equal(shifted["customer_history"], all_rules_result["customer_history"])


def test_problem_rows_are_left_out_of_the_figures(all_rules_result):
    snapshot = snapshot_by_id(all_rules_result)
    assert sorted(snapshot.index) == ["C1", "C2", "C3"]                  # ANON, "" and C9 are not analysed
    # C1: row 1 (2 x 10 units) and row 15 (1 x 10, revenue unreadable -> 0); the rest left out.
    assert snapshot.loc["C1", "m_total"] == 30
    assert snapshot.loc["C1", "o6"] == 2
    assert snapshot.loc["C1", "revenue_total"] == pytest.approx(1.0)
    # C2: rows 4 (3 x 10) and 16 (1 x 10); the zero line and the unknown-category line count nowhere.
    assert snapshot.loc["C2", "m_total"] == 40
    assert snapshot.loc["C2", "o6"] == 2                                 # rows 3 + 16 are one invoice
    assert pd.isna(snapshot.loc["C2", "first_device_date"])              # unknown category is not entry
    assert snapshot.loc["C1", "lifecycle_state"] == "Regular"


def test_duplicate_master_rows_first_row_wins(all_rules_result):
    snapshot = snapshot_by_id(all_rules_result)
    assert snapshot.loc["C1", "customer_group"] == "Retail"              # not the later "Office" row
    assert snapshot.loc["C1", "opt_email"] == 1
    # P1's later row says device / unit_size 5: ignored, P1 stays consumable with unit_size 10.
    assert history_row(all_rules_result, "C1", "2024-01")["m1"] == 30


def test_bad_opt_ins_become_blank(all_rules_result):
    snapshot = snapshot_by_id(all_rules_result)
    assert pd.isna(snapshot.loc["C2", "opt_sms"])                        # "yes"
    assert pd.isna(snapshot.loc["C3", "opt_email"])                      # 2
    assert snapshot.loc["C3", "opt_sms"] == 0
    assert snapshot.loc["C2", "opt_email"] == 0
    assert pd.isna(snapshot.loc["C3", "created_date"])                   # "notadate"


def test_example_rows_show_at_most_five():
    tx = make_transactions(["C1"] + [f"X{i}" for i in range(7)])
    result = run(tx, make_customers(["C1"]))
    rule = quality_rules(result)[("transactions", "customer_id", "unknown_customer")]
    assert rule["rows"] == 7
    assert rule["example_rows"] == "2, 3, 4, 5, 6"


def problems(result: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The data-quality rows other than the note that March (data through the 5th) is partial."""
    quality = result["data_quality"]
    assert list(quality.loc[quality["rule"] == "partial_month", "example_values"]) == ["2024-03-05"]
    return quality[quality["rule"] != "partial_month"]


def test_clean_input_has_an_empty_data_quality_table():
    result = run(make_transactions(["C1", "C2"], invoice_date="2024-03-31"), make_customers(["C1", "C2"]))
    assert result["data_quality"].empty
    assert list(result["data_quality"].columns) == crm_xl.contract.columns("data_quality")


def test_anonymous_group_is_matched_ignoring_case_and_spaces():
    customers = make_customers(["C1", "C2", "C3", "C4"], customer_group=["GENERAL", " General ", "", "Generalist"])
    result = run(make_transactions(["C1", "C2", "C3", "C4"]), customers)
    assert sorted(snapshot_by_id(result).index) == ["C3", "C4"]
    assert quality_rules(result)[("transactions", "customer_id", "anonymous_customer")]["rows"] == 2


def test_header_names_ignore_case_and_spaces():
    tx = make_transactions(["C1"]).rename(columns=lambda c: f" {c.upper()} ")
    products = PRODUCTS.rename(columns=str.title)
    result = run(tx, make_customers(["C1"]).rename(columns={"customer_id": "Customer_ID"}), products)
    assert snapshot_by_id(result).loc["C1", "m1"] == 10


# --- fatal errors -------------------------------------------------------------------------------

REQUIRED = [("transactions", c) for c in ("invoice_id", "invoice_date", "customer_id", "product_id", "quantity",
                                          "revenue")] + [("customers", "customer_id")] + [
    ("products", c) for c in ("product_id", "category", "unit_size")]


def _inputs() -> dict[str, pd.DataFrame]:
    return {"transactions": make_transactions(["C1"]), "customers": make_customers(["C1"]),
            "products": PRODUCTS.copy()}


@pytest.mark.parametrize(("table", "column"), REQUIRED, ids=lambda v: v)
def test_missing_required_column_names_table_and_column(table, column):
    inputs = _inputs()
    inputs[table] = inputs[table].drop(columns=[column])
    with pytest.raises(InputError) as info:
        crm_xl.run(**inputs, config=CONFIG)
    assert info.value.table == table
    assert info.value.column == column
    assert table in str(info.value) and column in str(info.value)


def test_empty_transactions_is_fatal():
    inputs = _inputs()
    inputs["transactions"] = inputs["transactions"].iloc[:0]
    with pytest.raises(InputError) as info:
        crm_xl.run(**inputs, config=CONFIG)
    assert info.value.table == "transactions"
    assert "empty" in str(info.value)


def test_no_usable_transactions_is_fatal():
    inputs = _inputs()
    inputs["transactions"] = make_transactions(["C9", "C9", None], quantity=[1, 1, 1])
    with pytest.raises(InputError) as info:
        crm_xl.run(**inputs, config=CONFIG)
    assert info.value.table == "transactions"
    assert "usable" in str(info.value)


@pytest.mark.parametrize(("table", "column"), [("transactions", "quantity"), ("transactions", "revenue"),
                                               ("products", "unit_size")])
def test_a_mostly_unreadable_number_column_is_fatal(table, column):
    """Decimal commas read as text would give revenue 0 and exit 0: more than half unreadable stops the run."""
    inputs = _inputs()
    inputs["transactions"] = make_transactions(["C1"] * 5)
    inputs["products"] = PRODUCTS.astype({"unit_size": object})
    values = ["109,65", "12,5", "109,65", "1.234,56", ""] if table == "transactions" else ["0,5", "1", "2,5"]
    inputs[table] = inputs[table].assign(**{column: pd.Series(values, dtype=object)})
    with pytest.raises(InputError) as info:
        crm_xl.run(**inputs, config=CONFIG)
    assert (info.value.table, info.value.column) == (table, column)
    message = str(info.value)
    assert message.startswith(f"{table}.{column}: ")
    examples = "'109,65', '12,5', '1.234,56'" if table == "transactions" else "'0,5', '2,5'"
    assert f"of {4 if table == 'transactions' else 3} values are not numbers (e.g. {examples})" in message
    assert "csv_decimal" in message and "fix the column" in message


def test_half_unreadable_is_still_a_warning():
    inputs = _inputs()
    inputs["transactions"] = make_transactions(["C1"] * 4, revenue=["1,5", "abc", "2", "3.5"])
    quality = crm_xl.run(**inputs, config=CONFIG)["data_quality"].set_index("rule")
    assert quality.loc["bad_revenue", "rows"] == 2


@pytest.mark.parametrize("table", ["transactions", "customers", "products"])
@pytest.mark.parametrize("value", [None, [], {"customer_id": ["C1"]}, pd.Series(["C1"], name="customer_id")],
                         ids=["None", "list", "dict", "Series"])
def test_non_dataframe_input_names_the_table(table, value):
    inputs = _inputs()
    inputs[table] = value
    with pytest.raises(InputError) as info:
        crm_xl.run(**inputs, config=CONFIG)
    assert info.value.table == table
    assert table in str(info.value)


def test_input_errors_are_crm_xl_errors():
    assert issubclass(InputError, crm_xl.CrmXlError)


# --- raw inputs are not modified ----------------------------------------------------------------


def _golden_typed(golden_inputs: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    typed = {name: frame.copy() for name, frame in golden_inputs.items()}
    typed["transactions"]["quantity"] = pd.to_numeric(typed["transactions"]["quantity"])
    typed["transactions"]["invoice_date"] = pd.to_datetime(typed["transactions"]["invoice_date"])
    typed["customers"]["created_date"] = pd.to_datetime(typed["customers"]["created_date"])
    typed["products"]["unit_size"] = pd.to_numeric(typed["products"]["unit_size"])
    return typed


@pytest.mark.parametrize("which", ["all_rules", "golden_text", "golden_typed"])
def test_raw_inputs_are_not_modified(which, golden_inputs):
    inputs = {"all_rules": _all_rules_inputs, "golden_text": lambda: golden_inputs,
              "golden_typed": lambda: _golden_typed(golden_inputs)}[which]()
    for frame in inputs.values():
        frame.index = pd.RangeIndex(10, 10 + len(frame))                 # a non-default index, too
    copies = {name: frame.copy(deep=True) for name, frame in inputs.items()}
    crm_xl.run(**inputs, config={"report_month": "2024-03" if which == "all_rules" else "2024-12"})
    for name, frame in inputs.items():
        pd.testing.assert_frame_equal(frame, copies[name], check_exact=True, obj=name)
        assert list(frame.columns) == list(copies[name].columns)


def test_a_revenue_below_a_millionth_is_a_free_line_as_the_facts_count_it():
    """Under measure=revenue, 1e-7 rounds to 0 micro-units: no purchase, and counted as free_core_line."""
    tx = make_transactions(["C1", "C2"], revenue=[1e-7, 5.0])
    result = run(tx, make_customers(["C1", "C2"]), measure="revenue")
    free = quality_rules(result)[("transactions", "revenue", "free_core_line")]
    assert (free["rows"], free["example_rows"]) == (1, "1")
    assert snapshot_by_id(result).loc["C1", "lifecycle_state"] == "Prospect"


def test_a_fatal_message_never_points_at_a_table_it_did_not_write() -> None:
    """A refresh that stops writes no Data Quality table: the message itself must say what was found."""
    from crm_xl.core.quality import QualityLog

    log = QualityLog()
    assert "data-quality" not in log.summary("transactions")
    log.add_note("transactions", "invoice_date", "future_date", "info", 4, "2031-01-01", "far after today")
    assert "future_date: 4 rows" in log.summary("transactions")
