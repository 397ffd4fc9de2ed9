"""Rewriting Excel tables inside a real .xlsm package (crm_xl.workbook.package / sheetxml).

The fixture workbook is made with XlsxWriter: a table sheet with conditional formatting and a
frozen header, a second table below a title row with a chart bound to it, a raw sheet with plain
data, a form button, the Excel-authored VBA project shipped in xlwings' quickstart workbook, and
an injected calcChain part. Every check reads the result back with openpyxl and python-calamine.
"""

from __future__ import annotations

import datetime as dt
import io
import re
import shutil
import struct
import subprocess
import time
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import numpy as np
import openpyxl
import pandas as pd
import pytest
import xlsxwriter
from python_calamine import CalamineWorkbook

from crm_xl.workbook import package, sheetxml
from crm_xl.workbook.package import TableColumnsError, WorkbookPackageError, rewrite_tables

xlwings = pytest.importorskip("xlwings")

CUSTOMER_COLUMNS = ["customer_id", "name", "amount", "first_date", "orders", "opted_in"]
TRICKY_TEXT = ["=SUM(A1:A2)", "+1", "-2", "@home", "_x0041_", "tab\tand\nnewline", "ctrl\x01\x1f", "üñíçødé ✓ 𝄞",
               "  both  ", "a & b <c> \"d\"", "cr\rlf"]


# --- fixture workbook -------------------------------------------------------------------------------


def _vba_project() -> bytes:
    quickstart = Path(xlwings.__file__).parent / "quickstart_standalone.xlsm"
    with zipfile.ZipFile(quickstart) as zf:
        return zf.read("xl/vbaProject.bin")


def _add_calc_chain(path: Path) -> None:
    """XlsxWriter writes no calcChain; add one as Excel would, to check the rewrite drops it."""
    tmp = path.with_suffix(".tmp")
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as out:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == "[Content_Types].xml":
                data = data.replace(b"</Types>", b'<Override PartName="/xl/calcChain.xml" ContentType="application/'
                                    b'vnd.openxmlformats-officedocument.spreadsheetml.calcChain+xml"/></Types>')
            elif info.filename == "xl/_rels/workbook.xml.rels":
                data = data.replace(b"</Relationships>", b'<Relationship Id="rId99" Type="http://schemas.openxml'
                                    b'formats.org/officeDocument/2006/relationships/calcChain" Target="calcChain.xml"'
                                    b"/></Relationships>")
            out.writestr(info, data)
        out.writestr("xl/calcChain.xml", '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<calcChain '
                     'xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><c r="C2" i="3"/></calcChain>')
    tmp.replace(path)


def build_workbook(path: Path) -> Path:
    """The test workbook described in the module docstring."""
    wb = xlsxwriter.Workbook(str(path))
    wb.set_properties({"created": dt.datetime(2024, 1, 1)})
    date_fmt = wb.add_format({"num_format": "yyyy-mm-dd"})
    money_fmt = wb.add_format({"num_format": "#,##0.00"})
    month_fmt = wb.add_format({"num_format": "mmm yyyy"})
    bold = wb.add_format({"bold": True})

    ws = wb.add_worksheet("Customers")
    rows = [["C1", "Ann", 10.5, dt.date(2024, 1, 5), 3, True],
            ["C2", "Bob", 20.25, dt.date(2024, 2, 6), 1, False],
            ["C3", "Cid", 30.0, dt.date(2024, 3, 7), 2, True]]
    ws.add_table(0, 0, len(rows), len(CUSTOMER_COLUMNS) - 1, {
        "name": "tbl_customers", "data": rows,
        "columns": [{"header": "customer_id"}, {"header": "name"}, {"header": "amount", "format": money_fmt},
                    {"header": "first_date", "format": date_fmt}, {"header": "orders"}, {"header": "opted_in"}]})
    ws.conditional_format(1, 2, len(rows), 2, {"type": "cell", "criteria": ">", "value": 15,
                                               "format": wb.add_format({"bg_color": "#FFC7CE"})})
    ws.freeze_panes(1, 0)
    ws.set_column(0, 5, 14)

    summary = wb.add_worksheet("Month Summary")
    summary.write(0, 0, "Monthly summary", bold)
    months = [dt.date(2024, m, 1) for m in (1, 2, 3, 4)]
    summary.add_table(2, 1, 2 + len(months), 2, {
        "name": "tbl_summary", "data": [[m, 10 * (i + 1)] for i, m in enumerate(months)],
        "columns": [{"header": "month", "format": month_fmt}, {"header": "customers"}]})
    chart = wb.add_chart({"type": "column"})
    chart.add_series({"name": "='Month Summary'!$C$3", "categories": "='Month Summary'!$B$4:$B$7",
                      "values": "='Month Summary'!$C$4:$C$7"})
    summary.insert_chart("E3", chart)

    raw = wb.add_worksheet("Raw")
    raw.write_row(0, 0, ["id", "value", "note"])
    for i in range(1, 50):
        raw.write_row(i, 0, [i, i * 1.5, f"row {i}"])
    raw.write_formula(0, 4, "=SUM(B2:B50)")
    raw.insert_button("F2", {"macro": "Refresh", "caption": "Refresh", "width": 100, "height": 30})

    wb.add_vba_project(io.BytesIO(_vba_project()), is_stream=True)
    wb.close()
    _add_calc_chain(path)
    return path


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_workbook(tmp_path_factory.mktemp("template") / "book.xlsm")


@pytest.fixture
def book(template: Path, tmp_path: Path) -> Path:
    path = tmp_path / "book.xlsm"
    shutil.copyfile(template, path)
    return path


def customers_df(n: int) -> pd.DataFrame:
    """n customers whose text cycles through values Excel would otherwise mangle."""
    rng = np.random.default_rng(7)
    amount = rng.normal(100, 30, n).round(2)
    amount[::5] = np.nan
    dates = pd.Series(pd.date_range("2023-01-01", periods=n, freq="D"))
    dates[1::7] = pd.NaT
    return pd.DataFrame({
        "customer_id": [f"{i:05d}" for i in range(n)],
        "name": [TRICKY_TEXT[i % len(TRICKY_TEXT)] for i in range(n)],
        "amount": amount,
        "first_date": dates,
        "orders": pd.array([None if i % 4 == 3 else i for i in range(n)], dtype="Int64"),
        "opted_in": [i % 2 == 0 for i in range(n)],
    })


def summary_df(n: int) -> pd.DataFrame:
    return pd.DataFrame({"month": pd.date_range("2020-01-01", periods=n, freq="MS"),
                         "customers": np.arange(n, dtype=np.int64) * 3})


# --- helpers ------------------------------------------------------------------------------------------


def raw_entries(path: Path) -> dict[str, tuple[int, bytes]]:
    """name -> (CRC, compressed bytes) straight from the file, without decompressing."""
    out = {}
    with zipfile.ZipFile(path) as zf, open(path, "rb") as f:
        for info in zf.infolist():
            f.seek(info.header_offset)
            head = f.read(30)
            name_len, extra_len = struct.unpack("<2H", head[26:30])
            f.seek(info.header_offset + 30 + name_len + extra_len)
            out[info.filename] = (info.CRC, f.read(info.compress_size))
    return out


def part(path: Path, name: str) -> str:
    with zipfile.ZipFile(path) as zf:
        return zf.read(name).decode("utf-8")


def expected_cell(value: object) -> object:
    """What a reader should give back for a written value (blank cells are None)."""
    if value is None or value is pd.NA or value is pd.NaT or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, str):
        return value or None
    return value


def excel_unescape(value: object) -> object:
    """Decode ``_xHHHH_`` as Excel (and calamine) do; openpyxl leaves cell text escaped."""
    if isinstance(value, str):
        return re.sub(r"_x([0-9A-Fa-f]{4})_", lambda m: chr(int(m.group(1), 16)), value)
    return value


def openpyxl_rows(path: Path, sheet: str) -> list[tuple]:
    wb = openpyxl.load_workbook(path, read_only=True)
    try:
        return [tuple(excel_unescape(v) for v in r) for r in wb[sheet].iter_rows(values_only=True)]
    finally:
        wb.close()


def calamine_rows(path: Path, sheet: str) -> list[list]:
    return CalamineWorkbook.from_path(str(path)).get_sheet_by_name(sheet).to_python(skip_empty_area=False)


REWRITTEN = {"xl/worksheets/sheet1.xml", "xl/worksheets/sheet2.xml", "xl/tables/table1.xml", "xl/tables/table2.xml",
             "xl/charts/chart1.xml", "xl/_rels/workbook.xml.rels", "[Content_Types].xml"}


# --- the rewrite --------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [40, 2, 0])
def test_untouched_parts_are_byte_identical(book: Path, tmp_path: Path, n: int) -> None:
    dst = tmp_path / "out.xlsm"
    report = rewrite_tables(book, dst, {"tbl_customers": customers_df(n), "tbl_summary": summary_df(n)})
    before, after = raw_entries(book), raw_entries(dst)
    assert set(report.rewritten_parts) == REWRITTEN
    assert report.dropped_parts == ("xl/calcChain.xml",)
    assert list(after) == [name for name in before if name != "xl/calcChain.xml"]  # source order kept
    for name in after:
        if name not in REWRITTEN:
            assert after[name] == before[name], name
    assert report.copied_parts == len(before) - len(REWRITTEN) - 1
    for must_survive in ("xl/vbaProject.bin", "xl/worksheets/sheet3.xml", "xl/drawings/vmlDrawing1.vml",
                         "xl/drawings/drawing1.xml", "xl/styles.xml", "xl/workbook.xml"):
        assert must_survive in after and after[must_survive] == before[must_survive]
    assert "calcChain" not in part(dst, "[Content_Types].xml")
    assert "calcChain" not in part(dst, "xl/_rels/workbook.xml.rels")
    with zipfile.ZipFile(dst) as zf:
        assert zf.testzip() is None
        for name in REWRITTEN:
            ET.fromstring(zf.read(name))  # well-formed XML


@pytest.mark.parametrize("n", [40, 2, 1, 0])
def test_values_read_back_with_openpyxl_and_calamine(book: Path, tmp_path: Path, n: int) -> None:
    dst = tmp_path / "out.xlsm"
    df = customers_df(n)
    rewrite_tables(book, dst, {"tbl_customers": df})
    expected = [tuple(CUSTOMER_COLUMNS)]
    for rec in df.astype(object).itertuples(index=False):
        row = [expected_cell(v) for v in rec]
        if row[3] is not None:
            row[3] = row[3].to_pydatetime()
        expected.append(tuple(row))
    got = openpyxl_rows(dst, "Customers")
    if n == 0:  # the one blank data row an Excel table needs has no cells
        assert got == [tuple(CUSTOMER_COLUMNS)]
    else:
        assert got == expected
    cal = calamine_rows(dst, "Customers")
    assert [tuple(r) for r in cal[:1]] == [tuple(CUSTOMER_COLUMNS)]
    for exp, row in zip(expected[1:], cal[1:], strict=True):
        row = [None if v == "" else v for v in row]
        assert row[0] == exp[0] and row[1] == exp[1]
        assert row[2] == exp[2]
        assert row[3] == (exp[3] and exp[3].date())  # a date-only cell: calamine gives a date
        assert row[4] == (None if exp[4] is None else float(exp[4]))
        assert row[5] == exp[5]


def test_text_is_never_a_formula_and_keeps_every_character(book: Path, tmp_path: Path) -> None:
    dst = tmp_path / "out.xlsm"
    df = customers_df(len(TRICKY_TEXT))
    rewrite_tables(book, dst, {"tbl_customers": df})
    sheet = part(dst, "xl/worksheets/sheet1.xml")
    assert "<f>" not in sheet and "<f " not in sheet
    assert "_x005F_x0041_" in sheet and "_x0001_" in sheet and "_x000D_" in sheet
    assert '<t xml:space="preserve">  both  </t>' in sheet
    names = [r[1] for r in openpyxl_rows(dst, "Customers")[1:]]
    assert names == TRICKY_TEXT
    assert [r[1] for r in calamine_rows(dst, "Customers")[1:]] == TRICKY_TEXT
    wb = openpyxl.load_workbook(dst)
    assert all(wb["Customers"].cell(i + 2, 2).data_type == "s" for i in range(len(TRICKY_TEXT)))


@pytest.mark.parametrize(("n", "ref"), [(40, "A1:F41"), (2, "A1:F3"), (0, "A1:F2")])
def test_table_ref_dimension_and_formats_cover_the_data(book: Path, tmp_path: Path, n: int, ref: str) -> None:
    dst = tmp_path / "out.xlsm"
    report = rewrite_tables(book, dst, {"tbl_customers": customers_df(n)})
    assert report.tables["tbl_customers"].ref == ref
    table = part(dst, "xl/tables/table1.xml")
    assert f'ref="{ref}"' in re.search(r"<table\b[^>]*>", table).group()
    assert f'<autoFilter ref="{ref}"' in table
    sheet = part(dst, "xl/worksheets/sheet1.xml")
    assert f'<dimension ref="{ref}"/>' in sheet
    last = ref.split(":")[1][1:]
    assert f'sqref="C2:C{last}"' in sheet  # the conditional format follows the data
    assert '<pane ySplit="1"' in sheet and "<tablePart " in sheet
    wb = openpyxl.load_workbook(dst)
    ws = wb["Customers"]
    assert ws.freeze_panes == "A2"
    assert ws.tables["tbl_customers"].ref == ref
    if n:
        assert ws["D2"].number_format == "yyyy-mm-dd" and ws["C3"].number_format == "#,##0.00"
        assert ws["C2"].value is None and ws["C2"].number_format == "#,##0.00"  # blank cells keep the format


def test_rows_above_the_table_are_kept_and_the_chart_follows(book: Path, tmp_path: Path) -> None:
    dst = tmp_path / "out.xlsm"
    rewrite_tables(book, dst, {"tbl_summary": summary_df(12)})
    assert openpyxl_rows(dst, "Month Summary")[0][0] == "Monthly summary"
    sheet = part(dst, "xl/worksheets/sheet2.xml")
    assert '<dimension ref="A1:C15"/>' in sheet
    chart = part(dst, "xl/charts/chart1.xml")
    assert "<c:f>'Month Summary'!$B$4:$B$15</c:f>" in chart
    assert "<c:f>'Month Summary'!$C$4:$C$15</c:f>" in chart
    assert "<c:f>'Month Summary'!$C$3</c:f>" in chart  # the series name cell does not move
    assert "numCache" not in chart
    rows = openpyxl_rows(dst, "Month Summary")
    assert rows[3][1:] == (dt.datetime(2020, 1, 1), 0) and rows[14][1:] == (dt.datetime(2020, 12, 1), 33)
    wb = openpyxl.load_workbook(dst)
    assert wb["Month Summary"]["B4"].number_format == "mmm yyyy"


def test_same_inputs_give_identical_bytes(book: Path, tmp_path: Path) -> None:
    tables = {"tbl_customers": customers_df(25), "tbl_summary": summary_df(7)}
    rewrite_tables(book, tmp_path / "a.xlsm", tables)
    rewrite_tables(book, tmp_path / "b.xlsm", tables)
    assert (tmp_path / "a.xlsm").read_bytes() == (tmp_path / "b.xlsm").read_bytes()
    rewrite_tables(tmp_path / "a.xlsm", tmp_path / "a.xlsm", tables)  # in place, refreshed twice
    assert (tmp_path / "a.xlsm").read_bytes() == (tmp_path / "b.xlsm").read_bytes()


def test_vba_and_button_survive(book: Path, tmp_path: Path) -> None:
    dst = tmp_path / "out.xlsm"
    rewrite_tables(book, dst, {"tbl_customers": customers_df(5)})
    wb = openpyxl.load_workbook(dst, keep_vba=True)
    assert wb.vba_archive is not None and "xl/vbaProject.bin" in wb.vba_archive.namelist()
    assert "Refresh" in part(dst, "xl/drawings/vmlDrawing1.vml")
    assert raw_entries(dst)["xl/vbaProject.bin"] == raw_entries(book)["xl/vbaProject.bin"]
    assert calamine_rows(dst, "Raw")[5][:3] == [5.0, 7.5, "row 5"]


def _folder_state(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir()}


@pytest.mark.parametrize("bad", ["columns", "order", "table", "style", "style-column", "duplicate"])
def test_failure_leaves_dst_untouched_and_no_temp_file(book: Path, bad: str) -> None:
    before = _folder_state(book.parent)
    df = customers_df(10)
    kwargs: dict = {}
    if bad == "columns":
        tables = {"tbl_customers": df.drop(columns="orders")}
    elif bad == "order":
        tables = {"tbl_customers": df[df.columns[::-1]]}
    elif bad == "table":
        tables = {"tbl_customers": df, "tbl_missing": df}
    elif bad == "duplicate":
        tables = {"tbl_customers": df.set_axis([*df.columns[:-1], "NAME"], axis=1)}
        kwargs["allow_new_columns"] = True
    elif bad == "style-column":
        tables, kwargs["styles"] = {"tbl_customers": df}, {"tbl_customers": {"no such column": 0}}
    else:
        tables, kwargs["styles"] = {"tbl_customers": df}, {"tbl_customers": {"amount": 9999}}
    with pytest.raises(WorkbookPackageError) as err:
        rewrite_tables(book, book, tables, **kwargs)
    if bad in ("columns", "order"):
        assert isinstance(err.value, TableColumnsError) and "allow_new_columns" in str(err.value)
    assert _folder_state(book.parent) == before


def test_failure_mid_stream_leaves_dst_untouched(book: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = _folder_state(book.parent)

    def broken(*args, **kwargs):
        yield b"<sheetData>"
        raise RuntimeError("disk full, say")

    monkeypatch.setattr(sheetxml, "iter_sheet_data", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        rewrite_tables(book, book, {"tbl_customers": customers_df(10)})
    assert _folder_state(book.parent) == before


def test_new_columns_when_allowed(book: Path, tmp_path: Path) -> None:
    dst = tmp_path / "out.xlsm"
    df = customers_df(4).drop(columns="orders").assign(**{"segment & <tier>": "Gold"})
    report = rewrite_tables(book, dst, {"TBL_CUSTOMERS": df}, allow_new_columns=True)
    assert report.tables["tbl_customers"].columns_changed
    info = package.find_tables(dst)["tbl_customers"]
    assert list(info.columns) == list(df.columns) and info.ref == "A1:F5"
    assert openpyxl_rows(dst, "Customers")[1][-1] == "Gold"
    assert openpyxl.load_workbook(dst)["Customers"].tables["tbl_customers"].tableColumns[-1].name == "segment & <tier>"
    ids = re.findall(r'<tableColumn id="(\d+)"', part(dst, "xl/tables/table1.xml"))
    assert len(set(ids)) == len(ids) == 6


def test_styles_by_index_and_by_number_format(book: Path, tmp_path: Path) -> None:
    styles_xml = package.read_styles(book)
    date_xf = sheetxml.find_number_format_xf(styles_xml, "yyyy-mm-dd")
    assert date_xf is not None
    assert sheetxml.find_number_format_xf(styles_xml, "0.000") is None
    dst = tmp_path / "out.xlsm"
    report = rewrite_tables(book, dst, {"tbl_summary": summary_df(3)},
                            styles={"tbl_summary": {"month": date_xf, "customers": "0.000"}})
    assert "xl/styles.xml" in report.rewritten_parts
    new_xf = report.style_indexes["tbl_summary"]["customers"]
    assert new_xf == len(sheetxml.cell_xfs(styles_xml))  # appended: existing indexes keep their meaning
    ws = openpyxl.load_workbook(dst)["Month Summary"]
    assert ws["B4"].number_format == "yyyy-mm-dd" and ws["C4"].number_format == "0.000"
    again, index = sheetxml.add_number_format_xf(package.read_styles(dst), "0.000")
    assert index == new_xf and again == package.read_styles(dst)


def test_not_a_workbook(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.xlsm"
    bogus.write_text("hello")
    with pytest.raises(WorkbookPackageError, match="not a workbook"):
        rewrite_tables(bogus, bogus, {})
    assert bogus.read_text() == "hello" and [p.name for p in tmp_path.iterdir()] == ["bogus.xlsm"]


# --- zip writer and cell encoding ------------------------------------------------------------------------


def test_zip64_records_when_sizes_exceed_the_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    """The zip64 path, exercised with a tiny limit instead of a 4 GiB entry."""
    monkeypatch.setattr(package.ZipWriter, "zip64_limit", 100)
    src_buf = io.BytesIO()
    with zipfile.ZipFile(src_buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("copied.txt", b"x" * 5000)
    out = io.BytesIO()
    writer = package.ZipWriter(out)
    with zipfile.ZipFile(src_buf) as src:
        writer.copy_raw(src_buf, src.infolist()[0])
    payload = bytes(range(256)) * 40
    writer.write_stream("streamed.xml", [payload[:5000], memoryview(payload)[5000:]])
    writer.write_stream("small.xml", [b"<a/>"])
    writer.close()
    assert b"PK\x06\x06" in out.getvalue()
    with zipfile.ZipFile(out) as zf:
        assert zf.testzip() is None
        assert zf.read("copied.txt") == b"x" * 5000 and zf.read("streamed.xml") == payload
        assert zf.read("small.xml") == b"<a/>"


def test_escape_text_matches_excel_rules() -> None:
    assert sheetxml.escape_text("_x0041_") == "_x005F_x0041_"
    assert sheetxml.escape_text("a\x01b\rc") == "a_x0001_b_x000D_c"
    assert sheetxml.escape_text("<&>") == "&lt;&amp;&gt;"
    assert sheetxml.text_element(" x") == '<t xml:space="preserve"> x</t>'
    assert sheetxml.column_letter(16383) == "XFD" and sheetxml.column_index("XFD") == 16383


def test_cell_types_by_dtype() -> None:
    df = pd.DataFrame({
        "f": [1.5, np.nan, np.inf], "b": pd.array([True, None, False], dtype="boolean"),
        "d": pd.to_datetime(["2024-01-01", None, "1900-01-01"]),
        "t": pd.to_datetime(["2024-01-01 12:00", None, "1900-02-28 00:00"]),
        "c": pd.Categorical(["x&y", None, ""]), "i": pd.array([1, None, -2], dtype="Int64"),
        "m": pd.period_range("2024-01", periods=3, freq="M"), "o": [1, "a", None],
    })
    buf = io.BytesIO()
    block = sheetxml.write_sheet_data(buf, df, top=2, left=1, styles={"d": 5}, chunk_rows=2)
    xml = buf.getvalue().decode()
    assert block.ref == "B2:I5" and xml.startswith('<dimension ref="B2:I5"/><sheetData><row r="2">')
    assert '<c r="B3"><v>1.5</v></c><c r="C3" t="b"><v>1</v></c><c r="D3" s="5"><v>45292</v></c>' in xml
    assert '<c r="E3"><v>45292.5</v></c>' in xml and '<c r="F3" t="inlineStr"><is><t>x&amp;y</t></is></c>' in xml
    assert '<row r="4"><c r="J4"' not in xml and '<c r="B4"' not in xml and '<c r="B5"' not in xml  # NaN, inf
    assert '<c r="D4" s="5"/>' in xml  # a blank cell keeps its column's style
    assert '<c r="D5" s="5"><v>1</v></c><c r="E5"><v>59</v></c>' in xml  # Excel's 1900 leap-year bug
    assert '<c r="F5"' not in xml  # "" is a blank cell
    assert '<c r="H3"><v>45292</v></c>' in xml and '<c r="I4" t="inlineStr"><is><t>a</t></is></c>' in xml


# --- LibreOffice and timing (slow) -------------------------------------------------------------------------


@pytest.mark.slow
def test_libreoffice_converts_the_rewritten_file(book: Path, tmp_path: Path) -> None:
    soffice = shutil.which("soffice") or shutil.which("libreoffice")
    if soffice is None:
        pytest.skip("LibreOffice (soffice) is not installed: apt-get install libreoffice-calc-nogui")
    dst = tmp_path / "out.xlsm"
    rewrite_tables(book, dst, {"tbl_customers": customers_df(30), "tbl_summary": summary_df(12)})
    outdir = tmp_path / "lo"
    profile = f"-env:UserInstallation=file://{tmp_path / 'lo-profile'}"
    csv_filter = "csv:Text - txt - csv (StarCalc):44,34,76,1,,0,false,true,false,false,false,-1"  # every sheet
    for target in (csv_filter, "pdf"):
        run = subprocess.run([soffice, profile, "--headless", "--convert-to", target, "--outdir", str(outdir),
                              str(dst)], capture_output=True, text=True, timeout=180)
        assert run.returncode == 0, run.stdout + run.stderr
    assert (outdir / "out.pdf").stat().st_size > 1000
    customers = pd.read_csv(outdir / "out-Customers.csv", dtype=str, keep_default_na=False)
    assert list(customers.columns) == CUSTOMER_COLUMNS and len(customers) == 30
    assert customers["customer_id"].iloc[3] == "00003" and customers["name"].iloc[0] == "=SUM(A1:A2)"
    summary = pd.read_csv(outdir / "out-Month Summary.csv", header=None, dtype=str, keep_default_na=False)
    assert summary.iloc[14, 2] == "33"


@pytest.mark.slow
def test_timing_100k_rows_by_30_columns(template: Path, tmp_path: Path) -> None:
    n = 100_000
    rng = np.random.default_rng(1)
    base = customers_df(n)
    cols = {**{c: base[c] for c in CUSTOMER_COLUMNS}}
    for j in range(12):
        cols[f"x{j}"] = rng.normal(size=n).round(3)
    for j in range(6):
        cols[f"k{j}"] = rng.integers(0, 10_000, n)
    for j in range(6):
        cols[f"s{j}"] = pd.Categorical(rng.choice(["Gold", "Silver", "Bronze", "New & <odd>"], n))
    df = pd.DataFrame(cols)
    assert df.shape == (n, 30)
    dst = tmp_path / "big.xlsm"
    start = time.perf_counter()
    rewrite_tables(template, dst, {"tbl_customers": df}, allow_new_columns=True)
    elapsed = time.perf_counter() - start
    print(f"\nrewrite of 100k x 30: {elapsed:.2f} s, {dst.stat().st_size / 1e6:.1f} MB")
    assert calamine_rows(dst, "Customers")[n][0] == f"{n - 1:05d}"
