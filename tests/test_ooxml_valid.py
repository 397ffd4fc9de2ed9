"""Schema and semantic validation of what we write (issue 11): the template, a refreshed small
book, and one after excel-setup, checked by openxml-audit (a port of the Open XML SDK validator,
what Excel's own file checks follow). A mutant proves the validator does reject a broken part."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from crm_xl.workbook.book import TEMPLATE, load_raw, new_workbook, set_settings
from crm_xl.workbook.refresh import refresh_workbook
from crm_xl.workbook.xlwings_conf import set_interpreter

openxml_audit = pytest.importorskip("openxml_audit")
GOLDEN = Path(__file__).parent / "fixtures" / "golden"


def errors_of(path: Path) -> list[str]:
    result = openxml_audit.OpenXmlValidator().validate(path)
    return [str(error) for error in result.errors]


@pytest.fixture(scope="module")
def refreshed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from crm_xl.io.csv import read_csv

    path = tmp_path_factory.mktemp("ooxml") / "golden.xlsm"
    new_workbook(path)
    load_raw(path, {name: read_csv(GOLDEN / f"{name}.csv", name) for name in ("transactions", "customers", "products")})
    set_settings(path, {"report_month": "2024-12", "history_months": 24})
    refresh_workbook(path)
    set_interpreter(path, "windows", r"C:\crm\Scripts\python.exe")
    return path


def test_the_template_is_valid() -> None:
    assert errors_of(TEMPLATE) == []


def test_a_refreshed_book_is_valid(refreshed: Path) -> None:
    assert errors_of(refreshed) == []


def test_the_validator_rejects_a_broken_sheet(refreshed: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.xlsm"
    with zipfile.ZipFile(refreshed) as src, zipfile.ZipFile(broken, "w", zipfile.ZIP_DEFLATED) as out:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == "xl/worksheets/sheet1.xml":
                data = data.replace(b"<sheetData>", b"<sheetData><notARow/>", 1)
            out.writestr(info, data)
    assert any("notARow" in error for error in errors_of(broken))
