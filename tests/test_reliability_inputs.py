"""Inputs that used to go wrong silently, on real workbooks and files (issue 10, points 3, 4, 12-19).

Each test builds a real .xlsm (the committed template, the golden fixture loaded), edits its XML the
way other programs write it where needed (error cells, formulas without values, rows under a table,
renamed tables), and runs the real CLI or refresh. A refused command must be one line naming the
file or cell, exit 2, and leave the workbook byte-identical.
"""

from __future__ import annotations

import copy
import os
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
import test_excel_refresh as live_tests
from conftest import one_error_line
from python_calamine import CalamineWorkbook
from test_workbook_refresh import (
    GOLDEN,
    GOLDEN_SETTINGS,
    NOW,
    calamine_tables,
    config_cell,
    edit_part,
    folder_state,
    golden_raw,
    make_book,
    quality_rows,
)

import crm_xl
from crm_xl.cli import main
from crm_xl.config import Config
from crm_xl.core.coerce import EXCEL_ERRORS
from crm_xl.core.snapshots import memory_needed
from crm_xl.errors import ConfigError, CrmXlError, InputError
from crm_xl.io import machine
from crm_xl.io.csv import read_csv
from crm_xl.workbook import layout
from crm_xl.workbook.book import load_raw, new_workbook, set_settings
from crm_xl.workbook.package import find_tables
from crm_xl.workbook.reader import read_inputs
from crm_xl.workbook.refresh import refresh_workbook
from crm_xl.workbook.sheetxml import CELL_TEXT_LIMIT, Block, column_letter, cut_text, excel_serials

# --- helpers ---------------------------------------------------------------------------------------------


def sheet_part(book: Path, table: str) -> str:
    return find_tables(book)[table].sheet_part


def set_cells(book: Path, table: str, cells: dict[str, str]) -> None:
    """Replace whole cells (``{"B3": '<c r="B3" t="e"><v>#N/A</v></c>'}``) of the sheet holding ``table``."""
    def edit(xml: bytes) -> bytes:
        for ref, cell in cells.items():
            xml, found = re.subn(rb'<c r="%s"(?: [^>]*?)?(?:/>|>.*?</c>)' % ref.encode(), cell.encode(), xml, count=1)
            assert found, ref
        return xml
    edit_part(book, sheet_part(book, table), edit)


def cell_ref(setting: str) -> str:
    return config_cell(setting).split("!")[1]


def write_csv(path: Path, frame: pd.DataFrame) -> Path:
    frame.to_csv(path, index=False)
    return path


def output_table(book: Path, name: str) -> pd.DataFrame:
    """One table of the workbook as python-calamine reads it (the Raw sheets may hold errors it cannot)."""
    workbook = CalamineWorkbook.from_path(str(book), load_tables=True)
    try:
        table = workbook.get_table_by_name(name)
        return pd.DataFrame(table.to_python(), columns=list(table.columns))
    finally:
        workbook.close()


def refreshed(book: Path) -> dict[str, pd.DataFrame]:
    return refresh_workbook(book, now=NOW).tables


@pytest.fixture
def book(tmp_path: Path) -> Path:
    """The golden data and Config in a fresh workbook, in its own folder."""
    return make_book(tmp_path / "book.xlsm")


# --- Loading never breaks Raw ----------------------------------------------------------------------------


def assert_load_refused(book: Path, capsys: pytest.CaptureFixture[str], args: list[str], *needles: str) -> None:
    before = folder_state(book.parent)
    assert main(["load", str(book), *args]) == 2
    one_error_line(capsys, *needles)
    assert folder_state(book.parent) == before, "a refused load changed or left files"


def test_load_refuses_a_semicolon_file_read_with_the_wrong_delimiter(book: Path, tmp_path: Path, capsys) -> None:
    semi = tmp_path / "tx.csv"
    golden_raw()["transactions"].to_csv(semi, index=False, sep=";")
    assert_load_refused(book, capsys, ["--transactions", str(semi), "--set", "csv_delimiter=,"],
                        "tx.csv", "required column", "nothing was loaded")


def test_load_refuses_a_file_without_a_usable_line(book: Path, tmp_path: Path, capsys) -> None:
    tx = golden_raw()["transactions"].assign(invoice_date="2024.13.01")
    assert_load_refused(book, capsys, ["--transactions", str(write_csv(tmp_path / "tx.csv", tx))],
                        "tx.csv: not loaded", "no usable transactions", "bad_date", "Nothing was written")


def test_load_refuses_a_file_with_only_a_header(book: Path, tmp_path: Path, capsys) -> None:
    empty = write_csv(tmp_path / "tx.csv", golden_raw()["transactions"].iloc[:0])
    assert_load_refused(book, capsys, ["--transactions", str(empty)], "tx.csv", "the table is empty")


def test_load_refuses_customers_that_match_no_transaction(book: Path, tmp_path: Path, capsys) -> None:
    customers = golden_raw()["customers"]
    customers["customer_id"] = "X" + customers["customer_id"]
    assert_load_refused(book, capsys, ["--customers", str(write_csv(tmp_path / "c.csv", customers))],
                        "c.csv: not loaded", "unknown_customer", "in one command")


def test_load_refuses_products_without_a_core_category_before_any_transaction(tmp_path: Path, capsys) -> None:
    fresh = new_workbook(tmp_path / "fresh.xlsm")
    products = golden_raw()["products"].assign(category="Coffee Pods")
    file = str(write_csv(tmp_path / "p.csv", products))
    assert_load_refused(fresh, capsys, ["--products", file], "p.csv", "core_categories", "Coffee Pods")
    assert main(["load", str(fresh), "--products", file, "--set", "core_categories=Coffee Pods"]) == 0
    assert read_inputs(fresh).settings["core_categories"] == "Coffee Pods"


def test_a_fresh_book_loads_one_table_at_a_time(tmp_path: Path, capsys) -> None:
    fresh = new_workbook(tmp_path / "fresh.xlsm")
    for name in ("transactions", "customers", "products"):
        assert main(["load", str(fresh), f"--{name}", str(GOLDEN / f"{name}.csv")]) == 0, capsys.readouterr().err
    set_settings(fresh, GOLDEN_SETTINGS)
    assert len(refreshed(fresh)["customer_snapshot"]) == 19      # 21 less the 2 anonymous


def test_load_goes_ahead_when_the_refresh_stops_for_something_it_does_not_touch(book: Path, capsys) -> None:
    set_settings(book, {"measure": "volume"})
    customers = golden_raw()["customers"].assign(city="Porto")
    path = write_csv(book.parent / "c.csv", customers)
    assert main(["load", str(book), "--customers", str(path)]) == 0
    err = capsys.readouterr().err
    assert "the refresh will still stop until this is fixed" in err and config_cell("measure") in err
    assert set(read_inputs(book).raw["customers"]["city"]) == {"Porto"}


def test_load_warns_that_config_names_a_file_for_the_table(book: Path, capsys) -> None:
    shutil.copy(GOLDEN / "transactions.csv", book.parent / "tx.csv")
    set_settings(book, {"transactions_file": "tx.csv"})
    assert main(["load", str(book), "--transactions", str(GOLDEN / "transactions.csv")]) == 0
    err = capsys.readouterr().err
    assert "the refresh reads transactions from tx.csv" in err and config_cell("transactions_file") in err


def test_load_raw_refuses_in_python_too(book: Path) -> None:
    before = book.read_bytes()
    broken = golden_raw()["transactions"].assign(quantity="many")
    with pytest.raises(InputError, match=r"transactions: not loaded.*are not numbers"):
        load_raw(book, {"transactions": broken}, sources={"transactions": "transactions"})
    assert book.read_bytes() == before
    load_raw(book, {"transactions": broken}, check=False)      # on purpose, as the tests of a broken Raw do
    with pytest.raises(InputError, match="are not numbers"):
        refreshed(book)


# --- Dates out of range and the report month -------------------------------------------------------------


def test_out_of_range_dates_stay_as_written_through_load_and_are_rejected(book: Path, capsys) -> None:
    tx = golden_raw()["transactions"].astype({"invoice_date": object})
    tx.loc[3, "invoice_date"] = "2301-02-10"        # data row 4: sheet row 5
    tx.loc[7, "invoice_date"] = "1850-02-10"        # sheet row 9
    assert main(["load", str(book), "--transactions", str(write_csv(book.parent / "tx.csv", tx))]) == 0
    raw = read_inputs(book).raw["transactions"]
    assert (raw.loc[5, "invoice_date"], raw.loc[9, "invoice_date"]) == ("2301-02-10", "1850-02-10")
    set_settings(book, {"report_month": None})
    tables = refreshed(book)
    row = quality_rows(tables, "date_out_of_range")
    assert (row["rows"].tolist(), row["example_rows"].tolist()) == ([2], ["5, 9"])
    assert tables["run_info"].set_index("item").loc["report_month_used", "value"] == "2025-01"
    rejected = pd.read_csv(book.with_name("book_rejected_lines.csv"))
    assert rejected.loc[rejected["rule"] == "date_out_of_range", "row"].tolist() == [5, 9]


def test_a_date_excel_cannot_show_is_loaded_as_text(book: Path) -> None:
    tx = golden_raw()["transactions"]
    tx["invoice_date"] = pd.to_datetime(tx["invoice_date"]).astype("datetime64[s]")
    tx.loc[0, "invoice_date"] = pd.Timestamp("1850-02-10")
    load_raw(book, {"transactions": tx})
    assert read_inputs(book).raw["transactions"].loc[2, "invoice_date"] == "1850-02-10"


def test_excel_serials_reach_9999_without_wrapping_round() -> None:
    dates = pd.Series(pd.to_datetime(["2301-02-10", "9999-12-31", "1900-03-01"]).astype("datetime64[s]"))
    assert excel_serials(dates).tolist() == [146504.0, 2958465.0, 61.0]


def test_a_line_far_in_the_future_does_not_move_the_workbooks_report_month(book: Path) -> None:
    tx = golden_raw()["transactions"].astype({"invoice_date": object})
    tx.loc[9, "invoice_date"] = "2042-01-10"        # sheet row 11; NOW is 2025-02-03
    load_raw(book, {"transactions": tx})
    set_settings(book, {"report_month": None})
    tables = refreshed(book)
    info = tables["run_info"].set_index("item")["value"]
    assert (info["report_month_used"], info["data_through"]) == ("2025-01", "2025-01-02")
    row = quality_rows(tables, "future_date")
    assert (row["example_rows"].tolist(), row["example_values"].tolist()) == (["11"], ["2042-01-10"])


def test_the_cli_run_ignores_a_line_dated_centuries_ahead(tmp_path: Path, capsys) -> None:
    tx = golden_raw()["transactions"].astype({"invoice_date": object})
    tx.loc[0, "invoice_date"] = "2200-01-01"        # a date in range, 170 years after any clock running this
    paths = {name: GOLDEN / f"{name}.csv" for name in ("customers", "products")}
    assert main(["run", "--transactions", str(write_csv(tmp_path / "tx.csv", tx)), "--customers",
                 str(paths["customers"]), "--products", str(paths["products"]), "--out", str(tmp_path / "out")]) == 0
    assert "report month 2025-01" in capsys.readouterr().out
    quality = pd.read_csv(tmp_path / "out" / "data_quality.csv")
    assert quality.loc[quality["rule"] == "future_date", "example_rows"].tolist() == ["2"]   # line 2 of tx.csv


def test_a_report_month_before_the_data_stops_naming_its_cell(book: Path, capsys) -> None:
    before = book.read_bytes()
    assert main(["refresh", str(book), "--quiet", "--set", "report_month=2019-05"]) == 2
    one_error_line(capsys, "report_month", config_cell("report_month"), "2019-05", "2021-12-30")
    assert book.read_bytes() == before


def test_last_complete_before_the_data_stops_too() -> None:
    tx = pd.DataFrame({"invoice_id": ["I1", "I2"], "invoice_date": ["2024-01-10", "2024-01-20"],
                       "customer_id": "C1", "product_id": "P1", "quantity": 1, "revenue": 1.0})
    products = pd.DataFrame({"product_id": ["P1"], "category": ["consumable"], "unit_size": [1]})
    with pytest.raises(ConfigError, match=r"2023-12 \(last_complete is 2023-12\) is before the first transaction"):
        crm_xl.run(tx, pd.DataFrame({"customer_id": ["C1"]}), products, config={"report_month": "last_complete"})


# --- Error values, formulas and the Config sheet ---------------------------------------------------------

# The ways programs write an error cell: Excel's plain error, a failed formula, a shared formula (its
# first cell and a follower) and a dynamic-array formula, attributes in either order.
_ERROR_CELLS = ('<c r="{ref}" s="3" t="e"><v>{error}</v></c>',
                '<c r="{ref}" s="3" t="e"><f>VLOOKUP(A2,Other!A:B,2,FALSE)</f><v>{error}</v></c>',
                '<c t="e" s="3" r="{ref}"><f t="shared" ref="C2:C9" si="0">X2</f><v>{error}</v></c>',
                '<c r="{ref}" s="3" t="e"><f t="shared" si="0"/><v>{error}</v></c>',
                '<c r="{ref}" s="3" cm="1" t="e"><f t="array" ref="{ref}">SEQUENCE(3)</f><v>{error}</v></c>')
_EXCEL_365 = ("#N/A", "#VALUE!", "#REF!", "#DIV/0!", "#NUM!", "#NAME?", "#NULL!", "#SPILL!", "#CALC!",
              "#GETTING_DATA", "#BLOCKED!", "#CONNECT!", "#FIELD!", "#UNKNOWN!", "#BUSY!", "#PYTHON!", "#EXTERNAL!")


def test_every_excel_error_value_in_raw_cells_is_read_and_rejected(book: Path, capsys) -> None:
    assert set(_EXCEL_365) <= EXCEL_ERRORS
    cells = {f"C{row}": _ERROR_CELLS[i % len(_ERROR_CELLS)].format(ref=f"C{row}", error=error)
             for i, (row, error) in enumerate(zip(range(2, 19), _EXCEL_365, strict=True))}
    set_cells(book, "tbl_transactions", cells)
    raw = read_inputs(book).raw["transactions"]
    assert raw.loc[2:18, "customer_id"].tolist() == list(_EXCEL_365)
    assert main(["refresh", str(book), "--quiet"]) == 0, capsys.readouterr().err
    sheet = output_table(book, "data_quality").set_index(["table", "column", "rule"])
    row = sheet.loc[("transactions", "customer_id", "error_value")]
    assert (row["rows"], row["example_rows"]) == (17, "2, 3, 4, 5, 6")
    rejected = pd.read_csv(book.with_name("book_rejected_lines.csv"))
    assert rejected.loc[rejected["rule"] == "error_value", "row"].tolist() == list(range(2, 19))


def test_error_ids_in_the_customer_master_never_merge_into_one_customer(book: Path) -> None:
    set_cells(book, "tbl_customers", {f"A{row}": _ERROR_CELLS[1].format(ref=f"A{row}", error="#N/A")
                                      for row in (3, 4, 5)})
    tables = refreshed(book)
    assert "#N/A" not in set(tables["customer_snapshot"]["customer_id"])
    row = quality_rows(tables, "error_value")
    assert (row["table"].tolist(), row["rows"].tolist(), row["example_rows"].tolist()) == (
        ["customers"], [3], ["3, 4, 5"])
    assert tables["run_info"].set_index("item").loc["customers_analysed", "value"] == "16"   # 21 - 2 anonymous - 3


def test_csv_files_with_error_text_are_treated_like_error_cells(tmp_path: Path) -> None:
    tx = golden_raw()["transactions"].astype({"customer_id": object, "revenue": object})
    tx.loc[0, "customer_id"], tx.loc[1, "revenue"], tx.loc[2, "customer_id"] = "#N/A", "#SPILL!", " #REF! "
    path = write_csv(tmp_path / "tx.csv", tx)
    tables = crm_xl.run(read_csv(path, "transactions"), *(read_csv(GOLDEN / f"{n}.csv", n)
                                                           for n in ("customers", "products")), GOLDEN_SETTINGS)
    quality = tables["data_quality"].set_index(["column", "rule"])
    assert quality.loc[("customer_id", "error_value"), "rows"] == 2
    assert quality.loc[("revenue", "error_value"), "example_values"] == "#SPILL!"


def _uncached(rows: range, column: str = "F") -> dict[str, str]:
    """Formula cells saved without their values, as a program that does not calculate writes them."""
    return {f"{column}{r}": f'<c r="{column}{r}" s="6"><f>E{r}*4.5</f></c>' for r in rows}


def test_a_few_formulas_without_values_are_a_warning_naming_the_column(book: Path) -> None:
    set_cells(book, "tbl_transactions", _uncached(range(2, 7)))
    row = quality_rows(refreshed(book), "formula_without_value")
    assert (row["column"].tolist(), row["rows"].tolist(), row["example_rows"].tolist()) == (
        ["revenue"], [5], ["2, 3, 4, 5, 6"])
    assert "open and save the workbook in Excel first" in row["message"].iloc[0]


def test_a_required_column_of_formulas_without_values_stops_the_refresh(book: Path, capsys) -> None:
    set_cells(book, "tbl_transactions", _uncached(range(2, 250)))
    before = folder_state(book.parent)
    assert main(["refresh", str(book), "--quiet"]) == 2
    one_error_line(capsys, "tbl_transactions", "248 of 353 cells of revenue",
                   "open and save the workbook in Excel first")
    assert folder_state(book.parent) == before


@pytest.mark.parametrize("cell", ['<c r="{ref}" s="3" t="e"><f>Gone!A1</f><v>#REF!</v></c>',
                                  '<c r="{ref}" s="3" t="e"><f>SORT(A1:A3)</f><v>#SPILL!</v></c>',
                                  '<c r="{ref}" s="3"><f>TEXT(TODAY(),"yyyy-mm")</f></c>'],
                         ids=["ref", "spill", "no value"])
def test_an_error_in_a_config_value_cell_names_the_cell(book: Path, capsys, cell: str) -> None:
    ref = cell_ref("report_month")
    set_cells(book, layout.CONFIG_TABLE.name, {ref: cell.format(ref=ref)})
    before = folder_state(book.parent)
    assert main(["refresh", str(book), "--quiet"]) == 2
    one_error_line(capsys, "report_month", config_cell("report_month"))
    assert folder_state(book.parent) == before


def test_a_setting_twice_on_config_names_both_cells(book: Path, capsys) -> None:
    """Which of two rows for one setting wins would be an accident of their order: neither does."""
    measure = cell_ref("measure")                    # the value cell; its setting name is one column left
    row = int(re.sub(r"[A-Z]+", "", measure))
    key = f"A{row}"
    set_cells(book, layout.CONFIG_TABLE.name, {key: f'<c r="{key}" t="inlineStr"><is><t>history_months</t></is></c>'})
    before = folder_state(book.parent)
    assert main(["refresh", str(book), "--quiet"]) == 2
    one_error_line(capsys, "'history_months'", "twice", config_cell("history_months"), f"Config!{measure}")
    assert folder_state(book.parent) == before


def test_an_error_in_the_columns_table_or_the_segment_map_names_its_cell(book: Path) -> None:
    columns = Block.parse(find_tables(book)[layout.COLUMNS_TABLE.name].ref)
    column = columns.first_col + layout.COLUMNS_TABLE.headers.index(layout.YOUR_HEADER)
    ref = f"{column_letter(column)}{columns.first_row + 1}"         # its first row: transactions.invoice_id
    set_cells(book, layout.CONFIG_TABLE.name, {ref: f'<c r="{ref}" t="e"><f>X</f><v>#N/A</v></c>'})
    with pytest.raises(ConfigError, match=rf"map\.transactions\.invoice_id.*Config!{ref} holds the Excel error #N/A"):
        read_inputs(book)
    fresh = make_book(book.with_name("segments.xlsm"))
    segments = Block.parse(find_tables(fresh)[layout.SEGMENT_MAP_TABLE.name].ref)
    first = f"{column_letter(segments.first_col)}{segments.first_row + 1}"
    set_cells(fresh, layout.CONFIG_TABLE.name, {first: f'<c r="{first}" t="e"><v>#VALUE!</v></c>'})
    with pytest.raises(ConfigError, match=rf"segment_map.*Config!{first} holds the Excel error #VALUE!"):
        read_inputs(fresh)


# --- the live refresh (xlwings' remote engine, as in tests/test_excel_refresh.py) ---------------------------

xw = live_tests.xw      # the fixture: xlwings with its remote engine


def _payload_cell(payload: dict, sheet: str, ref: str, value: object) -> None:
    row, col = int(re.sub(r"[A-Z]", "", ref)) - 1, ord(ref[0]) - ord("A")
    values = next(s for s in payload["sheets"] if s["name"] == sheet)["values"]
    values[row][col] = value


def test_live_refresh_names_the_config_cell_holding_an_error(xw, book: Path, tmp_path: Path) -> None:
    payload = live_tests.book_payload(book)
    _payload_cell(payload, layout.CONFIG, cell_ref("report_month"), "#REF!")
    (alert,) = live_tests._funcs(live_tests._run(xw, payload, tmp_path), "alert")
    assert config_cell("report_month") in alert["args"][0] and "#REF!" in alert["args"][0]


def test_live_refresh_rejects_error_values_and_notes_rows_below_a_table(xw, book: Path, tmp_path: Path) -> None:
    payload = live_tests.book_payload(book)
    _payload_cell(payload, layout.RAW_TRANSACTIONS, "C2", "#SPILL!")     # xlwings gives errors as text
    sheet = next(s for s in payload["sheets"] if s["name"] == layout.RAW_TRANSACTIONS)
    width = len(sheet["values"][0])
    sheet["values"] += [[None] * width, ["INV-LATE", "2025-01-02"] + [None] * (width - 2)]   # rows 355 and 356
    actions = live_tests._run(xw, payload, tmp_path)
    assert not live_tests._funcs(actions, "alert")
    inputs = live_tests.live.read_book_inputs(xw.Book(json=copy.deepcopy(payload)))
    assert inputs.raw["transactions"].loc[2, "customer_id"] == "#SPILL!"
    below = [n for n in inputs.read_notes if n["rule"] == "rows_outside_table"]
    assert [(n["rows"], n["example_rows"]) for n in below] == [(1, "356")]


# --- Excel's limits ---------------------------------------------------------------------------------------


def test_text_longer_than_a_cell_is_cut_with_a_data_quality_row(book: Path) -> None:
    customers = golden_raw()["customers"]
    customers.loc[0, "customer_name"] = "x" * 40_000
    customers.loc[1, "city"] = "\U0001F600" * 20_000          # 40,000 UTF-16 units in 20,000 characters
    write_csv(book.parent / "customers.csv", customers)
    set_settings(book, {"customers_file": "customers.csv"})
    tables = refreshed(book)
    notes = quality_rows(tables, "text_truncated")
    assert (notes["table"].tolist(), notes["column"].tolist(), notes["example_rows"].tolist()) == (
        ["customer_snapshot"] * 2, ["customer_name", "city"], ["1", "2"])
    assert "text_truncated" in calamine_tables(book)["data_quality"]["rule"].tolist()
    snapshot = calamine_tables(book)["customer_snapshot"]
    assert len(snapshot["customer_name"].iloc[0]) == CELL_TEXT_LIMIT
    assert snapshot["city"].iloc[1] == "\U0001F600" * (CELL_TEXT_LIMIT // 2)


def test_cut_text_counts_as_excel_does_and_never_splits_a_character() -> None:
    assert cut_text("a" * CELL_TEXT_LIMIT) == "a" * CELL_TEXT_LIMIT
    assert cut_text("a" + "\U0001F600" * CELL_TEXT_LIMIT) == "a" + "\U0001F600" * (CELL_TEXT_LIMIT // 2)
    assert len(cut_text("é" * 40_000)) == CELL_TEXT_LIMIT


def test_the_live_writer_cuts_long_text_too() -> None:
    frame = pd.DataFrame({"name": pd.Series(["x" * 40_000, "short"], dtype="str"),
                          "segment": pd.Categorical(["y" * 33_000, "z"])})
    assert [[len(v) for v in row] for row in live_tests.live.cell_values(frame)] == [[CELL_TEXT_LIMIT] * 2, [5, 1]]


def test_load_cuts_raw_text_with_a_warning(book: Path, capsys) -> None:
    customers = golden_raw()["customers"]
    customers.loc[0, "customer_name"] = "x" * 40_000
    assert main(["load", str(book), "--customers", str(write_csv(book.parent / "c.csv", customers))]) == 0
    assert "c.csv: 1 values of customer_name are longer than the 32,767 characters" in capsys.readouterr().err
    assert len(read_inputs(book).raw["customers"].iloc[0]["customer_name"]) == CELL_TEXT_LIMIT


def test_table_names_are_found_ignoring_case(book: Path, capsys) -> None:
    renames = {"tbl_transactions": "TBL_Transactions", "tbl_config": "Tbl_Config", "tbl_columns": "TBL_COLUMNS",
               "customer_snapshot": "Customer_Snapshot", "tbl_log": "Tbl_Log"}
    for old, new in renames.items():
        part = find_tables(book)[old].table_part
        edit_part(book, part, lambda xml, old=old, new=new: xml.replace(f'"{old}"'.encode(), f'"{new}"'.encode()))
    assert main(["load", str(book), "--transactions", str(GOLDEN / "transactions.csv")]) == 0
    assert main(["refresh", str(book), "--quiet", "--set", "report_month=2024-11"]) == 0, capsys.readouterr().err
    assert len(calamine_tables(book)["Customer_Snapshot"]) == 19
    assert read_inputs(book).settings["report_month"] == "2024-11"


def test_rows_typed_below_a_raw_table_are_a_warning(book: Path) -> None:
    def below(xml: bytes) -> bytes:
        rows = (b'<row r="360"><c r="A360" t="inlineStr"><is><t>INV-LATE</t></is></c><c r="E360"><v>3</v></c></row>'
                b'<row r="361"><c r="B361" s="3"/></row><row r="400"><c r="J400"><v>7</v></c></row>')
        return xml.replace(b"</sheetData>", rows + b"</sheetData>")
    edit_part(book, sheet_part(book, "tbl_transactions"), below)
    row = quality_rows(refreshed(book), "rows_outside_table")
    assert (row["table"].tolist(), row["rows"].tolist(), row["example_rows"].tolist()) == (
        ["transactions"], [1], ["360"])         # 361 is only formatted, J400 is outside the table's columns
    assert "Resize Table" in row["message"].iloc[0]


def test_a_failed_write_names_the_book_never_its_temporary_file(book: Path, capsys, monkeypatch) -> None:
    before = folder_state(book.parent)
    replace = os.replace

    def full_disk(src: object, dst: object) -> None:
        if Path(str(src)).name.startswith(".~"):
            raise OSError(28, "No space left on device", str(src), None, str(dst))
        replace(src, dst)

    monkeypatch.setattr(os, "replace", full_disk)
    assert main(["refresh", str(book), "--quiet"]) == 2
    err = one_error_line(capsys, "No space left on device", "book.xlsm was not changed")
    assert ".~" not in err and ".tmp" not in err
    assert folder_state(book.parent) == before


# --- Memory -----------------------------------------------------------------------------------------------


def test_a_history_too_big_for_the_memory_stops_the_cli_naming_history_months(tmp_path: Path, capsys,
                                                                              monkeypatch) -> None:
    monkeypatch.setenv(machine.MEMORY_LIMIT_VARIABLE, "1MB")
    assert main(["run", "--data", str(GOLDEN), "--out", str(tmp_path / "out"), "--set", "history_months=600"]) == 2
    # 19 customers x 601 months x 768 bytes = 8,769,792 bytes; in partitions of one customer each,
    # 19 x 601 x 512 bytes held + 601 x 768 for one partition's grids = 6,308,096 bytes; 1 MB =
    # 1,048,576 bytes hold 1,048,576 // (19 x 512 + 768) = 99 months, so history_months = 98
    one_error_line(capsys, "history_months", "600 months of 19 customers need about 8.4 MB",
                   "(6.0 MB in customer partitions)", "1.0 MB is available", "set history_months to 98 or less")
    assert not (tmp_path / "out").exists()


def test_a_run_fitted_in_customer_partitions_says_so(tmp_path: Path, capsys, monkeypatch) -> None:
    """It takes longer than one piece, and the user is told why; the same tables are written."""
    args = ["run", "--data", str(GOLDEN), "--set", "history_months=600"]
    assert main([*args, "--out", str(tmp_path / "whole")]) == 0
    assert "customer partitions" not in capsys.readouterr().out
    # 8.4 MB in one piece, 6.0 MB in partitions of one customer (the test above): 7 MB needs partitions
    monkeypatch.setenv(machine.MEMORY_LIMIT_VARIABLE, "7MB")
    assert main([*args, "--out", str(tmp_path / "parts")]) == 0
    out = capsys.readouterr().out
    assert re.search(r"computed in \d+ customer partitions, one after the other: all 19 customers' 601 months "
                     r"need about 8.4 MB of memory at once and 7.0 MB was available", out), out
    for name in ("customer_history", "customer_snapshot", "monthly_summary"):
        assert (tmp_path / "parts" / f"{name}.csv").read_bytes() == (tmp_path / "whole" / f"{name}.csv").read_bytes()


def test_a_workbook_refresh_fitted_in_customer_partitions_says_so(book: Path, monkeypatch) -> None:
    whole = refresh_workbook(book, now=NOW)
    assert whole.memory_note == ""
    # 19 customers x 25 months: 356 KB in one piece; 243 KB held + 19 KB for one customer's grids
    monkeypatch.setenv(machine.MEMORY_LIMIT_VARIABLE, "300KB")
    parts = refresh_workbook(book, now=NOW)
    assert "customer partitions" in parts.memory_note and "300 KB was available" in parts.memory_note
    log = CalamineWorkbook.from_path(str(book)).get_sheet_by_name(layout.LOG_TABLE.sheet).to_python()
    assert sum(parts.memory_note in row for row in log) == 1      # the analyst in Excel reads it in the Log
    pd.testing.assert_frame_equal(parts.tables["customer_history"], whole.tables["customer_history"])


def test_the_workbook_names_the_history_months_cell(book: Path, monkeypatch) -> None:
    monkeypatch.setenv(machine.MEMORY_LIMIT_VARIABLE, "200KB")     # 19 customers x 25 months need 356 KB
    with pytest.raises(ConfigError, match=rf"history_months.*{config_cell('history_months')}.*or less"):
        refreshed(book)


def test_the_memory_available_is_read_from_the_system(monkeypatch) -> None:
    available = machine.available_memory()
    if os.path.exists("/proc/meminfo"):
        total = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1)) * 1024
        assert 0 < available <= total
    monkeypatch.setenv(machine.MEMORY_LIMIT_VARIABLE, "2.5GB")
    assert machine.memory_limit() == min(int(2.5 * 2**30), available or int(2.5 * 2**30))
    monkeypatch.setenv(machine.MEMORY_LIMIT_VARIABLE, "lots")
    with pytest.raises(CrmXlError, match="CRM_XL_MEMORY_LIMIT='lots'"):
        machine.memory_limit()


@pytest.mark.slow
def test_the_memory_estimate_is_not_below_what_a_run_uses(tmp_path: Path) -> None:
    """The peak resident memory of a real run (a fresh process) stays within the estimate."""
    import subprocess
    import sys

    script = (
        "import resource, gc, crm_xl\n"
        "from crm_xl.io.sample import generate\n"
        "t = generate(n_customers=8000, months=36, end_month='2025-12', seed=7)\n"
        "gc.collect(); base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "crm_xl.run(**t, config={'history_months': 120, 'use_created_date': False})\n"
        "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) * 1024)\n")
    used = int(subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout)
    assert used <= memory_needed(8000, Config(history_months=120))


# --- the whole input made mostly of junk still never raises a traceback -----------------------------------


def test_error_values_in_every_raw_column_still_give_one_line(book: Path, capsys) -> None:
    """Every cell of the first data row of every Raw table an Excel 365 error: the refresh runs."""
    for table in ("tbl_transactions", "tbl_customers", "tbl_products"):
        info = find_tables(book)[table]
        width = len(info.columns)
        cells = {f"{chr(65 + c)}2": _ERROR_CELLS[0].format(ref=f"{chr(65 + c)}2", error=_EXCEL_365[7 + c])
                 for c in range(width)}
        set_cells(book, table, cells)
    assert main(["refresh", str(book), "--quiet"]) == 0, capsys.readouterr().err
    rules = output_table(book, "data_quality")
    assert set(rules.loc[rules["rule"] == "error_value", "table"]) == {"transactions", "customers", "products"}

