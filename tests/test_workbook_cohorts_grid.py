"""The Cohort Retention and RFM Grid sheets and the segment map's description and action columns, in real
workbooks: the golden data loaded into a fresh template, refreshed headless, read back with openpyxl
(sheets, tables, conditional formats, formulas, charts) and python-calamine."""

from __future__ import annotations

import datetime as dt
import re
import shutil
import subprocess
import zipfile
from pathlib import Path

import openpyxl
import pandas as pd
import pytest
import xlsxwriter

import crm_xl
from crm_xl.config import DEFAULT_SEGMENT_MAP, DEFAULT_SEGMENT_NOTES, Config
from crm_xl.io.csv import read_csv
from crm_xl.workbook import layout
from crm_xl.workbook.book import load_raw, new_workbook, set_settings
from crm_xl.workbook.package import find_tables
from crm_xl.workbook.reader import read_inputs, read_settings
from crm_xl.workbook.refresh import refresh_workbook
from crm_xl.workbook.sheetxml import Block, column_letter

GOLDEN = Path(__file__).parent / "fixtures" / "golden"
SOFFICE = shutil.which("soffice") or shutil.which("libreoffice")
NOW = dt.datetime(2025, 2, 3, 4, 5, 6)
SETTINGS = {"report_month": "2024-12", "history_months": 24}


def _golden_raw() -> dict[str, pd.DataFrame]:
    return {name: read_csv(GOLDEN / f"{name}.csv", name) for name in ("transactions", "customers", "products")}


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("views") / "loaded.xlsm"
    new_workbook(path)
    load_raw(path, _golden_raw())
    set_settings(path, SETTINGS)
    return path


@pytest.fixture(scope="module")
def refreshed(loaded: Path) -> Path:
    path = Path(shutil.copy2(loaded, loaded.with_name("refreshed.xlsm")))
    refresh_workbook(path, now=NOW)
    return path


@pytest.fixture(scope="module")
def expected(loaded: Path) -> dict[str, pd.DataFrame]:
    inputs = read_inputs(loaded)
    return crm_xl.run(**inputs.raw, config=inputs.settings)


def _rows(sheet, table: layout.Table, count: int) -> pd.DataFrame:
    values = list(sheet.iter_rows(min_row=table.row + 1, max_row=table.row + 1 + count, min_col=table.col + 1,
                                  max_col=table.last_col + 1, values_only=True))
    return pd.DataFrame(values[1:], columns=list(values[0]))


def _colour_scales(sheet) -> dict[str, list[str]]:
    """sqref -> the rule types of each conditional-format range of a sheet."""
    rules_by_range = sheet.conditional_formatting._cf_rules.items()
    return {str(rng.sqref): [rule.type for rule in rules] for rng, rules in rules_by_range}


def test_cohort_retention_sheet_holds_the_table_with_a_heat_map(refreshed: Path, expected: dict[str, pd.DataFrame]
                                                                ) -> None:
    book = openpyxl.load_workbook(refreshed, keep_vba=True)
    table = layout.OUTPUT_TABLES["cohort_retention"]
    sheet = book[table.sheet]
    assert table.sheet == "Cohort Retention" and table.name in sheet.tables
    want = expected["cohort_retention"]
    assert len(want) > 10
    assert sheet.tables[table.name].ref == f"A1:{column_letter(table.last_col)}{len(want) + 1}"
    got = _rows(sheet, table, len(want))
    assert got["cohort_size"].tolist() == want["cohort_size"].tolist()
    assert got["share_active"].tolist() == pytest.approx(want["share_active"].tolist())
    assert [pd.Timestamp(v) for v in got["cohort"]] == list(want["cohort"])
    share = column_letter(table.col + table.headers.index("share_active"))
    assert _colour_scales(sheet)[f"{share}2:{share}1048576"] == ["colorScale"]


def test_retention_curve_chart_follows_its_refreshed_table(refreshed: Path, expected: dict[str, pd.DataFrame]) -> None:
    curve = layout.chart_tables(expected)["chart_cohort_curve"]
    book = openpyxl.load_workbook(refreshed, keep_vba=True)
    sheet = book[layout.COHORT_CURVE_TABLE.sheet]
    assert sheet.sheet_state == "hidden"
    got = _rows(sheet, layout.COHORT_CURVE_TABLE, len(curve))
    assert got["months_since"].tolist() == curve["months_since"].tolist() and got["months_since"][0] == "month 0"
    assert got["share_active"].tolist() == pytest.approx(curve["share_active"].tolist())
    assert sheet.cell(2, 2).number_format == "0.0%"
    index = [spec.table for spec in layout.ALL_CHARTS].index("chart_cohort_curve")   # parts in sheet order
    with zipfile.ZipFile(refreshed) as package:
        names = sorted((n for n in package.namelist() if re.fullmatch(r"xl/charts/chart\d+\.xml", n)),
                       key=lambda n: int(re.search(r"\d+", n).group()))
        xml = package.read(names[index]).decode()
    rows = len(curve) + 1
    assert "<c:lineChart>" in xml
    assert f"<c:f>'Chart Cohorts'!$A$2:$A${rows}</c:f>" in xml and f"<c:f>'Chart Cohorts'!$B$2:$B${rows}</c:f>" in xml
    assert 'formatCode="0%"' in xml


def test_rfm_grid_sheet_blocks_are_formulas_over_the_table(refreshed: Path, expected: dict[str, pd.DataFrame]) -> None:
    book = openpyxl.load_workbook(refreshed, keep_vba=True)
    table = layout.OUTPUT_TABLES["rfm_grid"]
    sheet = book["RFM Grid"]
    assert table.sheet == "RFM Grid" and table.row == layout.RFM_GRID_TABLE_ROW
    assert sheet.tables["rfm_grid"].ref == f"A{table.row + 1}:{column_letter(table.last_col)}{table.row + 26}"
    got = _rows(sheet, table, 25)
    assert got["customers"].tolist() == expected["rfm_grid"]["customers"].tolist()
    assert got["rfm_segment"].tolist() == expected["rfm_grid"]["rfm_segment"].tolist()
    scales = _colour_scales(sheet)
    top = layout.RFM_GRID_TITLE_ROW
    for i, block in enumerate(layout.RFM_GRID_BLOCKS):
        left = layout.rfm_grid_block_col(i)
        assert sheet.cell(top + 1, left + 1).value == block.title
        assert [sheet.cell(top + 2, left + 2 + j).value for j in range(5)] == [1, 2, 3, 4, 5]       # FM
        assert [sheet.cell(top + 3 + j, left + 1).value for j in range(5)] == [5, 4, 3, 2, 1]       # R
        block_ref = f"{column_letter(left + 1)}{top + 3}:{column_letter(left + 5)}{top + 7}"
        for j in range(5):
            for fm in range(1, 6):
                formula = sheet.cell(top + 3 + j, left + 1 + fm).value
                r = 5 - j
                if block.column == "rfm_segment":
                    assert f'MATCH("{r}{fm}",rfm_grid[cell],0)' in formula and "rfm_grid[rfm_segment]" in formula
                else:
                    assert formula == (f"=SUMIFS(rfm_grid[{block.column}],rfm_grid[r_score],{r},"
                                       f"rfm_grid[fm_score],{fm})")
        assert scales[block_ref] == (["colorScale"] if block.heat_map else ["cellIs"] * 11), block.column
    customers = column_letter(table.col + table.headers.index("customers"))
    assert scales[f"{customers}{table.row + 2}:{customers}1048576"] == ["colorScale"]


@pytest.fixture(scope="module")
def calculated(refreshed: Path, tmp_path_factory: pytest.TempPathFactory) -> openpyxl.Workbook:
    """The refreshed book as a spreadsheet calculates it: LibreOffice converts it, openpyxl reads the values."""
    if SOFFICE is None:
        pytest.skip("LibreOffice (soffice) is not installed")
    out = tmp_path_factory.mktemp("calculated")
    done = subprocess.run([SOFFICE, f"-env:UserInstallation={(out / 'profile').as_uri()}", "--headless",
                           "--norestore", "--convert-to", "xlsx", "--outdir", str(out), str(refreshed)],
                          capture_output=True, text=True, timeout=240, check=False)
    assert done.returncode == 0, done.stderr
    return openpyxl.load_workbook(out / "refreshed.xlsx", data_only=True)


@pytest.mark.slow
def test_libreoffice_calculates_the_grid_blocks_from_the_refreshed_table(calculated: openpyxl.Workbook,
                                                                         expected: dict[str, pd.DataFrame]) -> None:
    """The blocks' formulas, calculated by a spreadsheet, show the rfm_grid table's values cell by cell."""
    sheet = calculated["RFM Grid"]
    grid = expected["rfm_grid"].set_index("cell")
    assert grid["customers"].sum() > 0
    top = layout.RFM_GRID_TITLE_ROW
    for i, block in enumerate(layout.RFM_GRID_BLOCKS):
        left = layout.rfm_grid_block_col(i)
        for j in range(5):
            for fm in range(1, 6):
                value = sheet.cell(top + 3 + j, left + 1 + fm).value
                want = grid.loc[f"{5 - j}{fm}", block.column]
                assert value == (want if block.column == "rfm_segment" else pytest.approx(want)), (block.column, j, fm)


@pytest.mark.slow
def test_libreoffice_calculates_the_cohort_triangle_from_the_refreshed_table(calculated: openpyxl.Workbook,
                                                                             expected: dict[str, pd.DataFrame]) -> None:
    """Each triangle row is a cohort of cohort_retention (the latest ones, oldest first) with its size and its
    share_active by months since; blank beyond the report month."""
    tri, sheet = layout.COHORT_TRIANGLE_LAYOUT, calculated[layout.COHORT_TRIANGLE]
    cohorts = expected["cohort_retention"]
    shares = {(pd.Timestamp(r.cohort), r.months_since): r.share_active for r in cohorts.itertuples()}
    sizes = dict(zip(cohorts["cohort"], cohorts["cohort_size"], strict=False))
    seen = 0
    for i in range(tri.size):
        row = tri.header_row + 2 + i
        cohort = sheet.cell(row, 1).value
        if cohort in (None, ""):
            continue
        cohort = pd.Timestamp(cohort)
        seen += cohort in sizes
        size = sheet.cell(row, 2).value
        assert size == sizes[cohort] if cohort in sizes else size in (None, ""), cohort
        for k in range(tri.size):
            value = sheet.cell(row, tri.first_month_col + 1 + k).value
            want = shares.get((cohort, k)) if cohort in sizes else None
            assert (value in (None, "")) if want is None else value == pytest.approx(want), (cohort, k)
    assert seen == cohorts["cohort"].nunique() > 3       # the golden history is shorter than the triangle


def test_cohort_triangle_sheet_is_formulas_over_the_table(refreshed: Path) -> None:
    tri = layout.COHORT_TRIANGLE_LAYOUT
    sheet = openpyxl.load_workbook(refreshed, keep_vba=True)[layout.COHORT_TRIANGLE]
    assert not sheet.tables and sheet.sheet_state == "visible"
    assert [sheet.cell(tri.header_row + 1, tri.first_month_col + 1 + k).value for k in range(tri.size)] == \
        list(range(tri.size))
    cell = sheet.cell(tri.header_row + 3, tri.first_month_col + 3).value          # the second cohort, month 2
    assert "INDEX(cohort_retention[share_active],$C8+F$6)" in cell and "EDATE($A8,F$6)>$B$3" in cell
    assert "MATCH($A8,cohort_retention[cohort],0)" in sheet.cell(tri.header_row + 3, 3).value
    assert sheet.column_dimensions["C"].hidden
    block = (f"{column_letter(tri.first_month_col)}{tri.header_row + 2}:"
             f"{column_letter(tri.last_col)}{tri.last_row + 1}")
    assert _colour_scales(sheet)[block] == ["colorScale"]


def _with_text(path: Path, cells: dict[str, str]) -> None:
    """Type text into Config cells (inline strings), as a user editing the sheet would."""
    part = find_tables(path)[layout.SEGMENT_MAP_TABLE.name].sheet_part
    tmp = path.with_name(path.name + ".edit")
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as out:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == part:
                for ref, text in cells.items():
                    new = f'<c r="{ref}" t="inlineStr"><is><t>{text}</t></is></c>' if text else f'<c r="{ref}"/>'
                    data, found = re.subn(rb'<c r="%s"(?: [^>]*?)?(?:/>|>.*?</c>)' % ref.encode(), new.encode(),
                                          data, count=1)
                    assert found, ref
            out.writestr(info, data)
    tmp.replace(path)


def test_the_template_segment_map_has_description_and_action_beside_it(loaded: Path) -> None:
    tables = find_tables(loaded)
    segments, columns = layout.SEGMENT_MAP_TABLE, layout.COLUMNS_TABLE
    assert segments.headers == ["rfm_segment", "cells", "description", "action"]
    assert Block.parse(tables[segments.name].ref).last_col < Block.parse(tables[columns.name].ref).first_col
    assert Block.parse(tables[columns.name].ref).first_col == columns.col == segments.last_col + 2
    book = openpyxl.load_workbook(loaded, keep_vba=True)
    rows = _rows(book[layout.CONFIG], segments, len(DEFAULT_SEGMENT_MAP))
    assert rows["rfm_segment"].tolist() == [name for name, _ in DEFAULT_SEGMENT_MAP]
    assert rows["description"].tolist() == [DEFAULT_SEGMENT_NOTES[n][0] for n, _ in DEFAULT_SEGMENT_MAP]
    assert all(rows["action"]) and all(len(text) < 140 for text in rows["action"])
    # the Columns table still reads where it now sits
    assert read_inputs(loaded).settings.get("map.transactions.invoice_id") in (None, "")


def test_edited_descriptions_and_actions_survive_the_refresh(loaded: Path, tmp_path: Path) -> None:
    book = Path(shutil.copy2(loaded, tmp_path / "edited.xlsm"))
    at = Block.parse(find_tables(book)[layout.SEGMENT_MAP_TABLE.name].ref)
    row = at.first_row + 1                              # below the header (1-based): Champions
    description, action = (f"{column_letter(at.first_col + j)}{row}" for j in (2, 3))
    _with_text(book, {description: "Our best pod buyers", action: ""})
    result = refresh_workbook(book, now=NOW)
    segment_map = result.tables["segment_map"]
    champions = segment_map[segment_map["rfm_segment"] == "Champions"]
    assert len(champions) == 3
    assert set(champions["description"]) == {"Our best pod buyers"} and set(champions["action"]) == {""}
    loyal = segment_map[segment_map["rfm_segment"] == "Loyal Customers"]
    assert set(loyal["description"]) == {DEFAULT_SEGMENT_NOTES["Loyal Customers"][0]}
    sheet = openpyxl.load_workbook(book, keep_vba=True)["Segment Map"]
    written = _rows(sheet, layout.OUTPUT_TABLES["segment_map"], len(segment_map))
    assert written.loc[written["rfm_segment"] == "Champions", "description"].tolist() == ["Our best pod buyers"] * 3
    # the Config sheet itself is left as the user typed it
    assert openpyxl.load_workbook(book, keep_vba=True)[layout.CONFIG][description].value == "Our best pod buyers"
    refresh_workbook(book, now=NOW)
    assert set(read_inputs(book).settings["segment_map"][0][2:]) == {"Our best pod buyers", ""}


def _old_config_workbook(path: Path, segments: list[tuple[str, str]]) -> Path:
    """A Config sheet as workbooks made before the description and action columns had it: a two-column
    segment map and the Columns table at its old place (column I)."""
    wb = xlsxwriter.Workbook(str(path))
    ws = wb.add_worksheet(layout.CONFIG)
    rows = [[k, str(SETTINGS.get(k, v)), d, h] for k, v, d, h in layout.config_rows()]
    t = layout.CONFIG_TABLE
    ws.add_table(t.row, t.col, t.row + len(rows), t.last_col,
                 {"name": t.name, "data": rows, "columns": [{"header": h} for h in t.headers]})
    ws.add_table(3, 5, 3 + len(segments), 6, {"name": layout.SEGMENT_MAP_TABLE.name,
                                              "data": [list(s) for s in segments],
                                              "columns": [{"header": "rfm_segment"}, {"header": "cells"}]})
    columns = [list(r) for r in layout.columns_rows()]
    columns[0][2] = "Invoice No"
    ws.add_table(3, 8, 3 + len(columns), 11, {"name": layout.COLUMNS_TABLE.name, "data": columns,
                                              "columns": [{"header": h} for h in layout.COLUMNS_TABLE.headers]})
    wb.close()
    return path


def test_an_older_two_column_segment_map_still_reads(tmp_path: Path) -> None:
    segments = [(name, " ".join(codes)) for name, codes in DEFAULT_SEGMENT_MAP]
    segments[-1] = ("Gone", "11")
    settings, _, cells = read_settings(_old_config_workbook(tmp_path / "old.xlsm", segments))
    config = Config.from_mapping(settings)
    assert config.segment_lookup == {**Config().segment_lookup, (1, 1): "Gone"}
    assert config.segment_note("Champions") == DEFAULT_SEGMENT_NOTES["Champions"]
    assert config.segment_note("Gone") == ("", "")
    assert config.headers("transactions") == {"invoice_id": "Invoice No"}
    assert cells["segment_map"] == "Config!F5"
