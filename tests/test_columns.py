"""Extracts with their own headers: the map.<table>.<column> settings and the workbook's Columns table.

Real files throughout: CSVs with renamed headers, workbooks made with new_workbook, the command line.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
from conftest import one_error_line

import crm_xl
from crm_xl.cli import main
from crm_xl.config import INPUT_COLUMNS, map_key
from crm_xl.core.quality import source_rows
from crm_xl.errors import ConfigError, InputError
from crm_xl.io.csv import file_rows, read_csv_file, write_tables
from crm_xl.workbook import layout
from crm_xl.workbook.book import new_workbook, set_settings
from crm_xl.workbook.reader import read_settings
from crm_xl.workbook.refresh import refresh_workbook

GOLDEN = Path(__file__).parent / "fixtures" / "golden"
RAW_NAMES = ("transactions", "customers", "products")
SETTINGS = {"report_month": "2024-12", "history_months": "24"}
#: An extract's own headers for some contract columns.
RENAMES = {
    "transactions": {"invoice_id": "Invoice No", "invoice_date": "Date", "customer_id": "Customer",
                     "quantity": "Qty", "revenue": "Net"},
    "customers": {"customer_id": "Cust ID", "created_date": "Since"},
    "products": {"unit_size": "Size"},
}
MAP = {map_key(table, column): header for table, renames in RENAMES.items() for column, header in renames.items()}


def golden_text() -> dict[str, pd.DataFrame]:
    return {name: pd.read_csv(GOLDEN / f"{name}.csv", dtype=str, keep_default_na=False) for name in RAW_NAMES}


def renamed(tables: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    return {name: frame.rename(columns=RENAMES[name]) for name, frame in tables.items()}


def write_renamed_csvs(folder: Path) -> Path:
    folder.mkdir(exist_ok=True)
    for name, frame in renamed(golden_text()).items():
        frame.to_csv(folder / f"{name}.csv", index=False)
    return folder


def renamed_csvs(folder: Path) -> dict[str, pd.DataFrame]:
    """The renamed CSVs as the CSV reader gives them, told the mapping."""
    return {name: read_csv_file(folder / f"{name}.csv", name, headers=RENAMES[name]).frame for name in RAW_NAMES}


def without_map_rows(run_info: pd.DataFrame) -> pd.DataFrame:
    return run_info[~run_info["item"].str.startswith("setting.map.")].reset_index(drop=True)


def assert_same_tables(left: dict[str, pd.DataFrame], right: dict[str, pd.DataFrame], check_dtype: bool = True) -> None:
    assert list(left) == list(right)
    for name in left:
        pd.testing.assert_frame_equal(left[name], right[name], obj=name, check_dtype=check_dtype)


def columns_cell(key: str) -> str:
    """The "your header" cell of a map setting, from the layout (not from the reader)."""
    rows = [map_key(table, column) for table, column, _, _ in layout.columns_rows()]
    table = layout.COLUMNS_TABLE
    letter = chr(ord("A") + table.col + table.headers.index(layout.YOUR_HEADER))
    return f"Config!{letter}{table.row + 2 + rows.index(key)}"


# --- the core -----------------------------------------------------------------------------------------


def test_mapped_headers_give_the_tables_of_contract_headers() -> None:
    plain = crm_xl.run(**golden_text(), config=SETTINGS)
    mapped = crm_xl.run(**renamed(golden_text()), config={**SETTINGS, **MAP})
    assert_same_tables({**plain, "run_info": without_map_rows(plain["run_info"])},
                       {**mapped, "run_info": without_map_rows(mapped["run_info"])})
    info = dict(zip(mapped["run_info"]["item"], mapped["run_info"]["value"], strict=True))
    assert info["setting.map.transactions.invoice_id"] == "Invoice No"


def test_mapped_headers_match_ignoring_case_and_spaces_and_may_swap() -> None:
    plain = crm_xl.run(**golden_text(), config=SETTINGS)
    tables = golden_text()
    tables["transactions"] = tables["transactions"].rename(columns={"invoice_id": " customer_ID",
                                                                    "customer_id": "INVOICE_ID "})
    swapped = crm_xl.run(**tables, config={**SETTINGS, "map.transactions.invoice_id": "Customer_id",
                                           "map.transactions.customer_id": " invoice_id"})
    pd.testing.assert_frame_equal(plain["customer_history"], swapped["customer_history"])


def test_the_raw_tables_are_not_changed() -> None:
    tables = renamed(golden_text())
    before = {name: frame.copy() for name, frame in tables.items()}
    crm_xl.run(**tables, config={**SETTINGS, **MAP})
    assert_same_tables(before, tables)


@pytest.mark.parametrize(("config", "needles"), [
    ({"map.orders.invoice_id": "Invoice No"}, ["Config 'map.orders.invoice_id'", "unknown table 'orders'",
                                               "transactions, customers, products"]),
    ({"map.transactions.invoice": "Invoice No"}, ["Config 'map.transactions.invoice'", "no column 'invoice'",
                                                  "invoice_id, invoice_date"]),
    ({"map.transactions.invoice_id": "Customer", "map.transactions.customer_id": "customer "},
     ["Config 'map.transactions.customer_id'", "transactions.invoice_id and transactions.customer_id",
      "would both read the header"]),
    ({"map.transactions.invoice_id": "Customer_ID"},
     ["Config 'map.transactions.invoice_id'", "transactions.invoice_id and transactions.customer_id",
      "'customer_id'"]),
], ids=["unknown_table", "unknown_column", "two_columns_one_header", "mapped_to_another_columns_name"])
def test_bad_map_settings_are_config_errors(config: dict[str, str], needles: list[str]) -> None:
    with pytest.raises(ConfigError) as error:
        crm_xl.run(**golden_text(), config=config)
    for needle in needles:
        assert needle in str(error.value)


def test_a_mapped_header_not_in_the_table_names_table_header_headers_and_setting() -> None:
    with pytest.raises(InputError) as error:
        crm_xl.run(**renamed(golden_text()), config={**MAP, "map.transactions.invoice_id": "Invoice Number"})
    assert str(error.value) == (
        "transactions.invoice_id: the header 'Invoice Number' that map.transactions.invoice_id names for invoice_id "
        "is not in the table (headers found: Invoice No, Date, Customer, product_id, Qty, Net, store_id); set "
        "map.transactions.invoice_id to the header that holds invoice_id, or blank for 'invoice_id'")
    assert error.value.setting == "map.transactions.invoice_id"


def test_a_mapped_header_beside_a_column_named_like_the_contract_column_is_an_error() -> None:
    tables = renamed(golden_text())
    tables["customers"]["customer_id"] = tables["customers"]["Cust ID"]     # an older id column left in
    with pytest.raises(InputError) as error:
        crm_xl.run(**tables, config=MAP)
    assert "customers.customer_id: the table has both the header 'Cust ID' (map.customers.customer_id) and a " \
           "column 'customer_id'" in str(error.value)


def test_a_mapped_header_found_twice_is_an_error() -> None:
    tables = renamed(golden_text())
    tables["products"]["size "] = tables["products"]["Size"]
    with pytest.raises(InputError) as error:
        crm_xl.run(**tables, config=MAP)
    assert "the header 'Size' that map.products.unit_size names for unit_size is the header of 2 columns" \
           in str(error.value)


def test_a_required_column_missing_says_which_setting_maps_it() -> None:
    with pytest.raises(InputError) as error:
        crm_xl.run(**renamed(golden_text()), config=SETTINGS)
    assert "transactions.invoice_id: required column 'invoice_id' is missing (columns found: Invoice No, " \
           in str(error.value)
    assert str(error.value).endswith("set map.transactions.invoice_id to that header")


# --- files and the command line ------------------------------------------------------------------------


def test_a_renamed_csv_column_is_read_as_the_column_it_holds(tmp_path: Path) -> None:
    path = tmp_path / "tx.csv"
    path.write_text("Invoice No;Date;Customer;product_id;Qty;Net\n"
                    "007;2024-01-10;00123;POD10;2;9,50\n", encoding="utf-8")
    file = read_csv_file(path, "transactions", headers=RENAMES["transactions"])
    row = file.frame.iloc[0]
    assert (row["Invoice No"], row["Customer"], row["Net"]) == ("007", "00123", 9.5)
    assert row["Date"] == pd.Timestamp("2024-01-10")


def test_run_set_map_writes_the_files_of_run_with_the_config(tmp_path: Path) -> None:
    data = write_renamed_csvs(tmp_path / "data")
    sets = [arg for key, header in {**SETTINGS, **MAP}.items() for arg in ("--set", f"{key}={header}")]
    assert main(["run", "--data", str(data), "--out", str(tmp_path / "cli"), *sets]) == 0
    api = crm_xl.run(**renamed_csvs(data), config={**SETTINGS, **MAP})
    write_tables({**api, **source_rows(api, file_rows())}, tmp_path / "api")   # the CLI numbers rows as file lines
    for name in crm_xl.TABLE_NAMES:
        assert (tmp_path / "cli" / f"{name}.csv").read_bytes() == (tmp_path / "api" / f"{name}.csv").read_bytes()


def test_run_takes_each_table_from_its_own_file(tmp_path: Path) -> None:
    golden = tmp_path / "golden"
    shutil.copytree(GOLDEN, golden)
    parquet = tmp_path / "x.parquet"
    read_csv_file(golden / "transactions.csv", "transactions").frame.to_parquet(parquet)
    (golden / "transactions.csv").unlink()
    assert main(["run", "--data", str(golden), "--transactions", str(parquet), "--out", str(tmp_path / "pq")]) == 0
    assert main(["run", "--data", str(GOLDEN), "--out", str(tmp_path / "csv")]) == 0
    history = (tmp_path / "pq" / "customer_history.csv").read_bytes()
    assert history == (tmp_path / "csv" / "customer_history.csv").read_bytes()


def test_run_with_a_missing_file_names_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "gone.parquet"
    assert main(["run", "--data", str(GOLDEN), "--customers", str(missing), "--out", str(tmp_path / "o")]) == 2
    one_error_line(capsys, "customers", "file not found", "gone.parquet")


# --- the workbook ---------------------------------------------------------------------------------------


def test_template_lists_every_input_column_in_the_columns_table(tmp_path: Path) -> None:
    book = new_workbook(tmp_path / "book.xlsm")
    settings, _, cells = read_settings(book)
    keys = [map_key(table, c.name) for table, columns in INPUT_COLUMNS.items() for c in columns]
    assert [k for k in cells if k.startswith("map.")] == keys
    assert not any(k.startswith("map.") for k in settings)     # blank: the contract's own names
    # M: beside the segment map's four columns (rfm_segment, cells, description, action)
    assert cells["map.transactions.invoice_id"] == columns_cell("map.transactions.invoice_id") == "Config!M5"


def loaded_renamed(tmp_path: Path, *extra: str) -> Path:
    """A new workbook with the renamed CSVs loaded and the mapping set, all through the command line."""
    data = write_renamed_csvs(tmp_path / "data")
    book = tmp_path / "book.xlsm"
    assert main(["new", str(book)]) == 0
    sets = [arg for key, header in {**SETTINGS, **MAP}.items() for arg in ("--set", f"{key}={header}")]
    files = [arg for name in RAW_NAMES for arg in (f"--{name}", str(data / f"{name}.csv"))]
    assert main(["load", str(book), *files, *sets, *extra]) == 0
    return book


def test_the_columns_table_gives_the_tables_of_run(tmp_path: Path) -> None:
    book = loaded_renamed(tmp_path)
    settings, _, _ = read_settings(book)
    assert settings["map.transactions.invoice_id"] == "Invoice No"
    result = refresh_workbook(book).tables
    expected = crm_xl.run(**renamed_csvs(tmp_path / "data"), config={**SETTINGS, **MAP})
    # the workbook numbers rows as sheet rows: the Raw tables start at A1, so as the CSV files' lines;
    # an extra master column (persona) is object-typed from a sheet and text-typed from a CSV
    sheet_rows = {**expected, **source_rows(expected, file_rows())}
    assert_same_tables(sheet_rows, result, check_dtype=False)


def test_a_mapped_header_missing_in_the_workbook_names_its_cell(tmp_path: Path) -> None:
    book = loaded_renamed(tmp_path)
    set_settings(book, {"map.products.unit_size": "Pack Size"})
    before = book.read_bytes()
    with pytest.raises(InputError) as error:
        refresh_workbook(book)
    message = str(error.value)
    assert message.startswith("Raw Products.unit_size: table tbl_products: the header 'Pack Size' that "
                              "map.products.unit_size names")
    assert "(headers found: product_id, product_name, brand, category, Size)" in message
    assert message.endswith(f"(its row in the Columns table: {columns_cell('map.products.unit_size')})")
    assert book.read_bytes() == before


def test_two_columns_on_one_header_in_the_workbook_names_the_cell(tmp_path: Path) -> None:
    book = loaded_renamed(tmp_path)
    set_settings(book, {"map.transactions.product_id": "Customer"})
    with pytest.raises(ConfigError) as error:
        refresh_workbook(book)
    assert str(error.value).startswith(f"Config 'map.transactions.product_id': "
                                       f"{columns_cell('map.transactions.product_id')}: transactions.customer_id "
                                       f"and transactions.product_id would both read the header 'Customer'")


def test_load_checks_every_file_before_touching_the_workbook(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    data = write_renamed_csvs(tmp_path / "data")
    book = new_workbook(tmp_path / "book.xlsm")
    set_settings(book, MAP)
    before = book.read_bytes()
    customers = pd.read_csv(data / "customers.csv", dtype=str).rename(columns={"Cust ID": "Client"})
    customers.to_csv(data / "customers.csv", index=False)
    files = [arg for name in RAW_NAMES for arg in (f"--{name}", str(data / f"{name}.csv"))]
    assert main(["load", str(book), *files, "--set", "report_month=2024-11"]) == 2
    one_error_line(capsys, "customers.customer_id: customers.csv: the header 'Cust ID' that map.customers.customer_id "
                           "names for customer_id is not in the table (headers found: Client,", "nothing was loaded")
    assert book.read_bytes() == before
    assert main(["load", str(book), "--transactions", str(GOLDEN / "transactions.csv")]) == 2
    one_error_line(capsys, "transactions.invoice_id: transactions.csv: the header 'Invoice No'")
    assert book.read_bytes() == before


def test_load_help_says_it_replaces(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["load", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "Replace each Raw table given" in text and "not appended to" in text
    assert "--set SETTING=VALUE" in text


def test_refresh_set_moves_to_another_month_and_writes_the_config_cell(tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    book = loaded_renamed(tmp_path)
    assert main(["refresh", str(book), "--quiet", "--set", "report_month=2024-11", "--set", "history_months=3"]) == 0
    assert "report month 2024-11" in capsys.readouterr().out
    settings, _, _ = read_settings(book)
    assert (settings["report_month"], settings["history_months"]) == ("2024-11", 3)
    expected = crm_xl.run(**renamed_csvs(tmp_path / "data"), config={**MAP, "report_month": "2024-11",
                                                                      "history_months": 3})
    pd.testing.assert_frame_equal(refresh_workbook(book).tables["customer_snapshot"], expected["customer_snapshot"],
                                  check_dtype=False)


def test_refresh_set_with_a_bad_value_is_one_line_and_changes_nothing(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    book = loaded_renamed(tmp_path)
    before = book.read_bytes()
    for bad, needles in [("report_month=Dec", ("Config 'report_month'", "expected a month like 2024-12")),
                         ("t_mid=5000", ("Config 't_mid'", "t_mid (5000)")),
                         ("csv_decimal=x", ("Config 'csv_decimal'", "got 'x'")),
                         ("map.transactions.invoice=No", ("Config 'map.transactions.invoice'", "no column")),
                         ("segment_map=Champions: 55", ("Config 'segment_map'", "tbl_segment_map")),
                         ("report_month", ("--set expects SETTING=VALUE",))]:
        assert main(["refresh", str(book), "--quiet", "--set", bad]) == 2
        one_error_line(capsys, *needles)
    assert book.read_bytes() == before


def test_a_refresh_that_fails_after_set_puts_the_workbook_back(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    book = loaded_renamed(tmp_path)
    before = book.read_bytes()
    assert main(["refresh", str(book), "--quiet", "--set", "map.transactions.quantity=Units"]) == 2
    one_error_line(capsys, "the header 'Units' that map.transactions.quantity names",
                   columns_cell("map.transactions.quantity"))
    assert book.read_bytes() == before
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".~")]


def test_load_set_writes_any_setting(tmp_path: Path) -> None:
    book = loaded_renamed(tmp_path)
    settings, workbook_settings, _ = read_settings(book)
    assert settings["report_month"] == "2024-12"
    assert main(["load", str(book), "--customers", str(tmp_path / "data" / "customers.csv"),
                 "--set", "measure=revenue", "--set", "csv_delimiter=,"]) == 0
    settings, workbook_settings, _ = read_settings(book)
    assert (settings["measure"], workbook_settings["csv_delimiter"]) == ("revenue", ",")


def test_the_raw_sheets_and_the_columns_table_list_the_input_columns() -> None:
    """The Raw tables' template columns, the Columns table and the core's typing lists name the same columns."""
    from crm_xl.core import staging

    for name, table in layout.RAW_TABLES.items():
        assert sorted(table.headers) == sorted(c.name for c in INPUT_COLUMNS[name])
    customer_columns = {c.name for c in INPUT_COLUMNS["customers"]}
    assert {*staging.TEXT_CUSTOMER_COLUMNS, *staging.OPT_IN_COLUMNS, "created_date"} <= customer_columns
    assert [(t, c) for t, c, _, _ in layout.columns_rows()] == [
        (t, c.name) for t, columns in INPUT_COLUMNS.items() for c in columns]


def test_two_headers_that_read_as_one_column_are_an_error_naming_both(golden_inputs, golden_config):
    """"quantity" and "Quantity " would both be read as quantity; which one is used must not depend on
    their order."""
    golden_inputs["transactions"]["Quantity "] = "7"
    with pytest.raises(crm_xl.InputError, match=r"'quantity' and 'Quantity ' both read as the column quantity"):
        crm_xl.run(**golden_inputs, config=golden_config)
