"""The same extract gives the same figures whatever types its columns arrive in: pandas'
nullable dtypes (``convert_dtypes()``, ``dtype="string"``), Parquet round trips, 64-bit integer
ids, categorical columns, CSV files with UTC offsets."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

import crm_xl
from crm_xl import contract
from crm_xl.io.csv import read_csv

GOLDEN_CONFIG = {"report_month": "2024-12", "history_months": 24}   # as conftest's golden_result


def _typed(inputs: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """The golden tables as a user's typed extract: numbers as numbers, the rest text."""
    out = {name: frame.copy() for name, frame in inputs.items()}
    out["transactions"]["quantity"] = pd.to_numeric(out["transactions"]["quantity"])
    out["transactions"]["revenue"] = pd.to_numeric(out["transactions"]["revenue"])
    out["products"]["unit_size"] = pd.to_numeric(out["products"]["unit_size"])
    return out


def _assert_same_tables(a: dict[str, pd.DataFrame], b: dict[str, pd.DataFrame]) -> None:
    """Contract columns identical, dtypes included; the user's extra master columns (carried with
    the dtype they came in) identical in value."""
    for name in a:
        # rejected_lines shows each raw value as the table holds it: the text "3.0" or the number 3
        ours = [c for c in contract.columns(name) if (name, c) != ("rejected_lines", "values")]
        pd.testing.assert_frame_equal(a[name][ours], b[name][ours], check_exact=True, obj=name)
        extras = [c for c in a[name].columns if c not in contract.columns(name)]
        assert extras == [c for c in b[name].columns if c not in contract.columns(name)]
        assert a[name][extras].astype(object).equals(b[name][extras].astype(object)), f"{name}: extra columns"


@pytest.mark.parametrize("convert", [
    pytest.param(lambda f: f.convert_dtypes(), id="convert_dtypes"),
    pytest.param(lambda f: f.astype({c: "string" for c in f.columns if f[c].dtype == "str"}), id="string"),
    pytest.param(lambda f: f.astype({c: "category" for c in f.columns if f[c].dtype == "str"}), id="category"),
])
def test_nullable_and_categorical_dtypes_give_the_same_tables(golden_inputs, golden_result, convert) -> None:
    typed = _typed(golden_inputs)
    _assert_same_tables(golden_result, crm_xl.run(**_typed(golden_inputs), config=dict(GOLDEN_CONFIG)))
    converted = {name: convert(frame) for name, frame in typed.items()}
    _assert_same_tables(golden_result, crm_xl.run(**converted, config=dict(GOLDEN_CONFIG)))


def test_a_parquet_round_trip_gives_the_same_tables(golden_inputs, golden_result, tmp_path: Path) -> None:
    read = {}
    for name, frame in _typed(golden_inputs).items():
        frame.convert_dtypes().to_parquet(tmp_path / f"{name}.parquet")
        read[name] = pd.read_parquet(tmp_path / f"{name}.parquet")
    assert str(read["transactions"]["invoice_date"].dtype) == "string"
    _assert_same_tables(golden_result, crm_xl.run(**read, config=dict(GOLDEN_CONFIG)))


def _one_customer_frames(ids: pd.Series) -> dict[str, pd.DataFrame]:
    tx = pd.DataFrame({"invoice_id": ids, "invoice_date": "2024-01-10", "customer_id": ids,
                       "product_id": "P", "quantity": 1.0, "revenue": 1.0})
    return {"transactions": tx, "customers": pd.DataFrame({"customer_id": ids.drop_duplicates()}),
            "products": pd.DataFrame({"product_id": ["P"], "category": ["consumable"], "unit_size": [1.0]})}


@pytest.mark.parametrize("dtype", ["int64", "Int64", "uint64"])
def test_integer_ids_beyond_2_53_keep_every_digit(dtype: str, tmp_path: Path) -> None:
    ids = pd.Series([123456789012345678, 123456789012345679, 9007199254740993], dtype=dtype)
    frames = _one_customer_frames(ids)
    frames["transactions"].to_parquet(tmp_path / "tx.parquet")
    frames["transactions"] = pd.read_parquet(tmp_path / "tx.parquet")
    snapshot = crm_xl.run(**frames, config={"report_month": "2024-01", "history_months": 1})["customer_snapshot"]
    assert sorted(snapshot["customer_id"].astype(str)) == ["123456789012345678", "123456789012345679",
                                                            "9007199254740993"]
    assert snapshot["o6"].tolist() == [1, 1, 1]      # three invoices, not merged through float64


def test_csv_timestamps_with_offsets_are_on_the_date_written(tmp_path: Path) -> None:
    path = tmp_path / "transactions.csv"
    path.write_text("invoice_id,invoice_date,customer_id,product_id,quantity,revenue\n"
                    "I1,2024-02-01T00:30+01:00,C1,P,1,1\nI2,2024-01-31T23:30:00Z,C1,P,1,1\n"
                    "I3,2024-02-29 23:59:59-08:00,C1,P,1,1\n", encoding="utf-8")
    tx = read_csv(path, "transactions")
    assert tx["invoice_date"].dt.strftime("%Y-%m-%d %H:%M").tolist() == [
        "2024-02-01 00:30", "2024-01-31 23:30", "2024-02-29 23:59"]
    as_text = tx.assign(invoice_date=tx["invoice_date"].dt.strftime("%Y-%m-%dT%H:%M+01:00"))
    frames = _one_customer_frames(pd.Series(["C1"]))
    for transactions in (tx, as_text):
        history = crm_xl.run(transactions, frames["customers"], frames["products"],
                             config={"report_month": "2024-02", "history_months": 2})["customer_history"]
        assert history["m1"].tolist() == [1.0, 2.0], "January holds one line, February two"


def test_a_csv_date_column_with_a_bad_value_stays_text_for_staging_to_report(tmp_path: Path) -> None:
    path = tmp_path / "transactions.csv"
    path.write_text("invoice_id,invoice_date,customer_id,product_id,quantity,revenue\n"
                    "I1,2024-02-01,C1,P,1,1\nI2,2024-02-31,C1,P,1,1\nI3,,C1,P,1,1\n", encoding="utf-8")
    tx = read_csv(path, "transactions")
    assert tx["invoice_date"].tolist()[:2] == ["2024-02-01", "2024-02-31"]
    frames = _one_customer_frames(pd.Series(["C1"]))
    quality = crm_xl.run(tx, frames["customers"], frames["products"],
                         config={"report_month": "2024-02", "history_months": 1})["data_quality"]
    bad = quality[quality["rule"] == "bad_date"]
    assert bad["rows"].tolist() == [1] and bad["example_values"].tolist() == ["2024-02-31"]
