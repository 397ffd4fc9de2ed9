"""Tests of the synthetic data generator ``crm_xl.io.sample`` (small sizes: the whole file runs in seconds)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crm_xl.io import sample

TX_COLUMNS = ["invoice_id", "invoice_date", "customer_id", "product_id", "quantity", "revenue", "store_id"]
CUSTOMER_COLUMNS = ["customer_id", "customer_name", "customer_group", "city", "created_date", "email",
                    "mobile_number", "opt_email", "opt_sms", "opt_phone"]
PRODUCT_COLUMNS = ["product_id", "product_name", "brand", "category", "unit_size"]
CATEGORIES = {"device", "consumable", "accessories", "spare_parts"}


@pytest.fixture(scope="module")
def default() -> dict[str, pd.DataFrame]:
    return sample.generate()


@pytest.fixture(scope="module")
def small() -> dict[str, pd.DataFrame]:
    return sample.generate(n_customers=600, months=24, end_month="2024-06", seed=7)


def _core_monthly_units(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """customer x month units of core lines with quantity > 0 (customers of the master, not anonymous)."""
    tx, cust, prod = tables["transactions"], tables["customers"], tables["products"]
    named = cust[cust["customer_group"].fillna("").str.strip().str.lower() != "general"]
    lines = tx.merge(prod[["product_id", "category", "unit_size"]], on="product_id")
    lines = lines[(lines["category"] == "consumable") & (lines["quantity"] > 0)
                  & lines["customer_id"].isin(named["customer_id"])]
    lines = lines.assign(units=lines["quantity"] * lines["unit_size"],
                         month=lines["invoice_date"].dt.to_period("M"))
    return lines


# ---- determinism ----------------------------------------------------------------------------------
def test_same_arguments_give_identical_frames(small):
    again = sample.generate(n_customers=600, months=24, end_month="2024-06", seed=7)
    for name in ("transactions", "customers", "products"):
        pd.testing.assert_frame_equal(small[name], again[name])


def test_another_seed_gives_other_data(small):
    other = sample.generate(n_customers=600, months=24, end_month="2024-06", seed=8)
    assert not other["transactions"].equals(small["transactions"])


def test_write_csv_is_byte_identical(tmp_path, small):
    first = sample.write_csv(small, tmp_path / "a")
    second = sample.write_csv(sample.generate(n_customers=600, months=24, end_month="2024-06", seed=7),
                              tmp_path / "b")
    assert sorted(first) == ["customers", "products", "transactions"]
    for name, path in first.items():
        assert path.name == f"{name}.csv"
        assert path.read_bytes() == second[name].read_bytes()


# ---- schema -----------------------------------------------------------------------------------------
def test_columns_and_dtypes(default):
    tx, cust, prod = default["transactions"], default["customers"], default["products"]
    assert list(tx.columns) == TX_COLUMNS
    assert list(cust.columns) == CUSTOMER_COLUMNS
    assert list(prod.columns) == PRODUCT_COLUMNS
    for frame, cols in ((tx, ["invoice_id", "customer_id", "product_id", "store_id"]),
                        (cust, ["customer_id", "customer_name", "customer_group", "city", "email",
                                "mobile_number"]),
                        (prod, ["product_id", "product_name", "brand", "category"])):
        for col in cols:
            assert pd.api.types.is_string_dtype(frame[col]), col
    for frame, col in ((tx, "invoice_date"), (cust, "created_date")):
        assert pd.api.types.is_datetime64_dtype(frame[col]), col
        assert (frame[col] == frame[col].dt.normalize()).all(), f"{col} has a time part"
    assert tx["quantity"].dtype == np.int64
    assert tx["revenue"].dtype == np.float64
    assert np.allclose(tx["revenue"], tx["revenue"].round(2), rtol=0, atol=1e-9)
    assert prod["unit_size"].dtype == np.int64
    for col in ("opt_email", "opt_sms", "opt_phone"):
        assert cust[col].dtype == "Int64"
        assert cust[col].isna().any()
        assert set(cust[col].dropna().unique()) <= {0, 1}


def test_id_formats(default):
    tx, cust = default["transactions"], default["customers"]
    assert tx["invoice_id"].str.fullmatch(r"INV\d{7}").all()
    assert tx["store_id"].str.fullmatch(r"S\d{2}").all()
    assert cust["customer_id"].str.fullmatch(r"C\d{6}|0\d{6}").all()
    assert cust["customer_id"].str.startswith("C000").any()
    mobiles = cust["mobile_number"].dropna()
    assert mobiles.str.fullmatch(r"09\d{8}").all()
    assert cust["mobile_number"].isna().any()


def test_products(default):
    prod = default["products"]
    assert 20 <= len(prod) <= 40
    assert prod["product_id"].is_unique
    assert prod["product_id"].is_monotonic_increasing
    assert set(prod["category"]) >= CATEGORIES
    assert set(prod["category"]) - CATEGORIES == {"gift_card"}
    sizes = dict(zip(prod["product_name"], prod["unit_size"], strict=True))
    assert sizes["Pods Classic x10"] == 10
    assert sizes["Pods Classic x50"] == 50
    assert sizes["Beans Espresso 250 g"] == 250
    assert (prod.loc[prod["category"].isin(["device", "accessories"]), "unit_size"] == 1).all()


def test_transactions_sorted_and_invoices_consistent(default):
    tx = default["transactions"]
    resorted = tx.sort_values(["invoice_date", "invoice_id", "product_id"], kind="stable", ignore_index=True)
    pd.testing.assert_frame_equal(tx, resorted)
    per_invoice = tx.groupby("invoice_id").agg(dates=("invoice_date", "nunique"),
                                               customers=("customer_id", "nunique"),
                                               stores=("store_id", "nunique"), lines=("product_id", "size"))
    assert (per_invoice[["dates", "customers", "stores"]] == 1).all().all()
    assert (per_invoice["lines"] > 1).mean() > 0.2  # several lines per invoice is common
    assert not tx.duplicated(["invoice_id", "product_id"]).any()
    # the dates cover every month of the window, spread over the days of the month
    months = tx["invoice_date"].dt.to_period("M")
    assert months.min() == pd.Period("2023-01", "M")
    assert months.max() == pd.Period("2025-12", "M")
    assert months.nunique() == 36
    assert tx["invoice_date"].dt.day.nunique() == 31


def test_signs_of_quantity_and_revenue(default):
    tx = default["transactions"]
    assert (tx.loc[tx["quantity"] > 0, "revenue"] > 0).all()
    assert (tx.loc[tx["quantity"] < 0, "revenue"] < 0).all()
    assert (tx.loc[tx["quantity"] == 0, "revenue"] == 0).all()
    assert not np.signbit(tx.loc[tx["revenue"] == 0, "revenue"]).any()  # no "-0.0" in the CSV


# ---- target size ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(("n_customers", "months", "target"),
                         [(2_000, 36, 20_000), (2_000, 12, 20_000), (1_000, 24, 60_000)])
def test_target_transactions(n_customers, months, target):
    tables = sample.generate(n_customers=n_customers, months=months, target_transactions=target)
    assert abs(len(tables["transactions"]) / target - 1) <= 0.10
    assert len(tables["customers"]) == n_customers + 1  # + the duplicated row


def test_unreachable_target_warns():
    with pytest.warns(UserWarning, match="below what"):
        tables = sample.generate(n_customers=1_000, months=12, target_transactions=10)
    assert len(tables["transactions"]) > 10


# ---- business cases that must be in the data ----------------------------------------------------------
def test_returns_refer_to_earlier_purchases(default):
    tx = default["transactions"]
    returns = tx[tx["quantity"] < 0]
    assert 0.01 < len(returns) / len(tx) < 0.05
    bought = (tx[tx["quantity"] > 0].groupby(["customer_id", "product_id"])
              .agg(first=("invoice_date", "min"), qty=("quantity", "sum")))
    back = returns.groupby(["customer_id", "product_id"]).agg(first=("invoice_date", "min"),
                                                              qty=("quantity", "sum"))
    joined = back.merge(bought, left_index=True, right_index=True, how="left", suffixes=("", "_bought"))
    assert joined["first_bought"].notna().all()
    assert (joined["first_bought"] < joined["first"]).all()
    assert (-joined["qty"] <= joined["qty_bought"]).all()
    assert (tx["quantity"] == 0).any()


def test_anonymous_group_holds_walk_in_sales(default):
    tx, cust = default["transactions"], default["customers"]
    anonymous = cust.loc[cust["customer_group"].str.strip().str.lower() == "general", "customer_id"]
    assert 1 <= len(anonymous) <= 10
    lines = tx[tx["customer_id"].isin(anonymous)]
    assert len(lines) / len(tx) > 0.01
    assert lines.groupby("customer_id").size().min() > 100  # many purchases per id
    assert lines.loc[lines["quantity"] > 0, "quantity"].median() <= 5  # small ones


def test_customers_without_core_purchases(default):
    tx, cust, prod = default["transactions"], default["customers"], default["products"]
    lines = tx.merge(prod[["product_id", "category"]], on="product_id", how="left")
    cats = lines[lines["quantity"] > 0].groupby("customer_id")["category"].agg(set)
    device_only = cats[cats.map(lambda c: "device" in c and "consumable" not in c)]
    accessory_only = cats[cats.map(lambda c: c <= {"accessories", "spare_parts"})]
    never = set(cust["customer_id"]) - set(tx["customer_id"])
    assert len(device_only) >= 50
    assert len(accessory_only) >= 30
    assert len(never) >= 100


def test_messiness(default):
    tx, cust, prod = default["transactions"], default["customers"], default["products"]
    unknown_customer = ~tx["customer_id"].isin(cust["customer_id"])
    assert 0.001 <= unknown_customer.mean() <= 0.004
    unknown_product = ~tx["product_id"].isin(prod["product_id"])
    assert 1 <= unknown_product.sum() <= 5
    assert (tx["product_id"].map(dict(zip(prod["product_id"], prod["category"], strict=True)))
            == "gift_card").any()
    assert cust["customer_id"].duplicated().sum() == 1
    assert cust[cust["customer_id"].duplicated(keep=False)].drop_duplicates().shape[0] == 1  # exact copy
    assert 1 <= cust["customer_group"].isna().sum() <= 0.02 * len(cust)
    assert cust["customer_id"].str.fullmatch(r"0\d+").any()  # digit-only ids with leading zeros
    assert (cust["customer_group"] == "General").any()


def test_clean_mode_has_no_deliberate_problems():
    tables = sample.generate(n_customers=800, months=18, messy=False)
    tx, cust, prod = tables["transactions"], tables["customers"], tables["products"]
    assert len(cust) == 800
    assert cust["customer_id"].is_unique
    assert cust["customer_id"].str.startswith("C").all()
    assert cust["customer_group"].notna().all()
    assert set(cust["customer_group"]) == {"Retail", "Office", "HoReCa", "General"}
    assert set(prod["category"]) == CATEGORIES
    assert tx["customer_id"].isin(cust["customer_id"]).all()
    assert tx["product_id"].isin(prod["product_id"]).all()
    assert (tx["quantity"] < 0).any()  # returns are business, not messiness


def test_end_month_exercises_tiers_and_events(default):
    """An independent mini implementation of the reference rules at the end month (2025-12)."""
    lines = _core_monthly_units(default)
    end = pd.Period("2025-12", "M")
    age = (end.ordinal - lines["month"].map(lambda p: p.ordinal)).astype(int)
    lines = lines.assign(age=age)
    g = lines.groupby("customer_id")

    def window(n):
        return lines[lines["age"] < n].groupby("customer_id")["units"].sum()

    m1, m6, m12, m13 = window(1), window(6), window(12), window(13)
    total = g["units"].sum()
    o6 = lines[lines["age"] < 6].groupby("customer_id")["invoice_id"].nunique()
    f = pd.DataFrame({"m1": m1, "m6": m6, "m12": m12, "m13": m13, "total": total, "o6": o6}).fillna(0)
    amc = f["m6"] / 6
    aos = f["m6"] / f["o6"].where(f["o6"] > 0)
    active = f["m12"] > 0
    diamond = active & (amc >= 1000) & (aos >= 1500) & (f["o6"] >= 6)
    platinum = active & ~diamond & (f["m6"] > 0) & (amc >= 1000) & (f["o6"] >= 3)
    rest = active & (f["m6"] > 0) & ~diamond & ~platinum
    assert diamond.sum() >= 10
    assert platinum.sum() >= 10
    assert (rest & (amc >= 200)).sum() >= 10  # Gold
    assert (rest & (amc >= 50) & (amc < 200)).sum() >= 10  # Silver
    assert (rest & (amc > 0) & (amc < 50)).sum() >= 10  # Bronze
    assert (active & (f["m6"] == 0)).sum() >= 10  # Passive / lapsing
    assert ((f["m1"] > 0) & (f["m1"] == f["total"])).sum() >= 5  # New
    assert ((f["m12"] == 0) & (f["m13"] > 0)).sum() >= 5  # Lost
    reactivated = (f["m1"] > 0) & (f["m1"] == f["m13"]) & (f["total"] > f["m13"])
    assert reactivated.sum() >= 5


def test_new_customers_buy_a_device_first(default):
    tx, prod = default["transactions"], default["products"]
    cat = tx["product_id"].map(dict(zip(prod["product_id"], prod["category"], strict=True)))
    bought = tx[tx["quantity"] > 0].assign(category=cat)
    first = bought.groupby(["customer_id", "category"])["invoice_date"].min().unstack()
    both = first.dropna(subset=["device", "consumable"])
    assert len(both) > 100
    # mostly the device first (a few buy pods on the day, or a gift card / unknown id muddles it)
    assert (both["device"] <= both["consumable"]).mean() > 0.95


# ---- CSV round trip -----------------------------------------------------------------------------------
def test_leading_zeros_survive_csv(tmp_path, default):
    paths = sample.write_csv(default, tmp_path)
    cust = pd.read_csv(paths["customers"], dtype=str, keep_default_na=False)
    tx = pd.read_csv(paths["transactions"], dtype=str, keep_default_na=False)
    original = default["customers"]
    assert cust["customer_id"].tolist() == original["customer_id"].tolist()
    assert cust["mobile_number"].tolist() == original["mobile_number"].fillna("").tolist()
    assert cust["customer_id"].str.startswith("0").any()
    assert tx["customer_id"].tolist() == default["transactions"]["customer_id"].tolist()
    assert tx["invoice_date"].str.fullmatch(r"\d{4}-\d{2}-\d{2}").all()
    assert cust["created_date"].str.fullmatch(r"\d{4}-\d{2}-\d{2}").all()
    assert set(cust["opt_email"]) <= {"0", "1", ""}
    assert (cust["customer_group"] == "").any()
    assert paths["transactions"].read_bytes().count(b"\r") == 0


def test_csv_reads_back_to_the_same_values(tmp_path, small):
    paths = sample.write_csv(small, tmp_path)
    tx = pd.read_csv(paths["transactions"], dtype={"invoice_id": str, "customer_id": str, "product_id": str,
                                                   "store_id": str}, parse_dates=["invoice_date"])
    original = small["transactions"]
    assert (tx["invoice_date"].to_numpy() == original["invoice_date"].to_numpy()).all()
    assert (tx["quantity"].to_numpy() == original["quantity"].to_numpy()).all()
    assert (tx["revenue"].to_numpy() == original["revenue"].to_numpy()).all()


# ---- any arguments -------------------------------------------------------------------------------------
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n_customers=st.integers(1, 80), months=st.integers(1, 30), seed=st.integers(0, 2**32 - 1),
       messy=st.booleans(), end_month=st.sampled_from(["2020-02", "2024-12", "2025-07"]))
def test_invariants_for_any_arguments(n_customers, months, seed, messy, end_month):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tables = sample.generate(n_customers=n_customers, months=months, seed=seed, messy=messy,
                                 end_month=end_month)
    tx, cust = tables["transactions"], tables["customers"]
    assert list(tx.columns) == TX_COLUMNS
    assert len(cust) == n_customers + (1 if messy and n_customers > 1 else 0)
    if len(tx):
        end = pd.Period(end_month, "M")
        assert tx["invoice_date"].max().to_period("M") <= end
        assert tx["invoice_date"].min().to_period("M") >= end - (months - 1)
        assert tx["invoice_id"].is_monotonic_increasing
        assert tx.groupby("invoice_id")["invoice_date"].nunique().eq(1).all()
        assert not tx.duplicated(["invoice_id", "product_id"]).any()
        assert (np.sign(tx["quantity"]) == np.sign(tx["revenue"])).all()
