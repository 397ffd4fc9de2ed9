"""kpis and segment_shares against loops over customer_history, hand-made examples, the golden answer
key and properties; then the refreshed sample workbook read back: the views' sheets, tables, formulas,
charts and the Start rows (and, with LibreOffice, the formulas' values once recalculated)."""

from __future__ import annotations

import math
import re
import shutil
import subprocess
import zipfile
from collections import defaultdict

import openpyxl
import pandas as pd
import pytest
from hypothesis import given, settings
from test_movers import _run, histories

import crm_xl
from crm_xl.config import STATES, TIERS
from crm_xl.io.sample import generate
from crm_xl.workbook import layout


@pytest.fixture(scope="module")
def sample() -> dict[str, pd.DataFrame]:
    return crm_xl.run(**generate())


def kpis_by_hand(history: pd.DataFrame) -> dict[pd.Timestamp, dict[str, float]]:
    """Per month, counted row by row; rates from the second month on (they need the month before)."""
    rows = defaultdict(list)
    for r in history.to_dict("records"):
        rows[r["report_month"]].append(r)
    out, before, prev_month = {}, None, None
    for month in sorted(rows):
        now = rows[month]
        k = {"customers": len(now), "active": sum(r["activity_status"] == "Active" for r in now),
             "volume": sum(r["m1"] for r in now), "revenue": sum(r["revenue_m1"] for r in now)}
        for event in ("New", "Lost", "Reactivated"):
            k[event.lower()] = sum(r["lifecycle_event"] == event for r in now)
        for tier in TIERS:
            in_tier = sum(r["value_tier"] == tier for r in now)
            k[f"share_{tier.lower()}"] = in_tier / k["active"] if k["active"] else None
        if before is not None:
            was = {r["customer_id"]: r for r in before}
            active_before = [c for c, r in was.items() if r["activity_status"] == "Active"]
            lost_before = [c for c, r in was.items() if r["lifecycle_state"] == STATES[4]]  # Churned
            still = {r["customer_id"] for r in now if r["activity_status"] == "Active"}
            k["active_last_month"] = len(active_before)
            k["inactive_last_month"] = len(lost_before)
            k["churn_rate"] = k["lost"] / len(active_before) if active_before else None
            k["retention_rate"] = sum(c in still for c in active_before) / len(active_before) if active_before else None
            k["reactivation_rate"] = sum(c in still for c in lost_before) / len(lost_before) if lost_before else None
            k["active_mom"] = k["active"] / out[prev_month]["active"] - 1 if out[prev_month]["active"] else None
            k["revenue_mom"] = k["revenue"] / out[prev_month]["revenue"] - 1 if out[prev_month]["revenue"] else None
        out[month], before, prev_month = k, now, month
    return out


def _same(got: object, want: object) -> bool:
    if want is None:
        return got is None or (isinstance(got, float) and math.isnan(got))
    return math.isclose(float(got), float(want), rel_tol=1e-9, abs_tol=1e-9)


def assert_kpis_match(kpis: pd.DataFrame, history: pd.DataFrame) -> None:
    want = kpis_by_hand(history)
    assert list(kpis["report_month"]) == sorted(want)
    problems = [(month, column, row[column], value) for row in kpis.to_dict("records")
                for month in [row["report_month"]] for column, value in want[month].items()
                if not _same(row[column], value)]
    assert not problems, problems[:10]


def test_kpis_agree_with_loops_over_the_history(sample):
    assert_kpis_match(sample["kpis"], sample["customer_history"])
    assert len(sample["kpis"]) == 24


def test_first_month_rates_come_from_the_month_before_the_history():
    """The first history month's rates use the extra month the core computes: they equal that month's
    rates in a run with one more history month."""
    short = crm_xl.run(**generate(), config={"report_month": "2025-12", "history_months": 3})["kpis"]
    long = crm_xl.run(**generate(), config={"report_month": "2025-12", "history_months": 4})["kpis"]
    columns = ["active_last_month", "inactive_last_month", "churn_rate", "retention_rate", "reactivation_rate"]
    pd.testing.assert_frame_equal(short[columns].iloc[[0]].reset_index(drop=True),
                                  long[columns].iloc[[1]].reset_index(drop=True))
    assert short[["active_mom", "churn_rate_mom"]].iloc[0].isna().all()     # no month before in this table


def test_golden_personas(golden_result, golden_expected):
    """Counts per month straight from the answer key (an independent SQL implementation)."""
    kpis = golden_result["kpis"].set_index(golden_result["kpis"]["report_month"].dt.strftime("%Y-%m"))
    for month, rows in golden_expected.groupby("report_month"):
        row = kpis.loc[month]
        assert row["customers"] == len(rows)
        assert row["active"] == (rows["activity_status"] == "Active").sum()
        for event in ("New", "Lost", "Reactivated"):
            assert row[event.lower()] == (rows["lifecycle_event"] == event).sum(), (month, event)
        assert row["volume"] == pytest.approx(rows["m1"].astype(float).sum())
        for tier in TIERS:
            share = (rows["value_tier"] == tier).sum() / max(1, (rows["activity_status"] == "Active").sum())
            assert row[f"share_{tier.lower()}"] == pytest.approx(share)


def test_a_hand_computed_month():
    """Four customers, February 2024: C1 buys both months (retained), C2 bought only in February 2023
    and is Lost in February 2024 (13 months later, the report month counting as 1), C3 comes back in
    February after 14 silent months (reactivated), C4 is new in February."""
    tx = pd.DataFrame({"invoice_id": ["1", "2", "3", "4", "5", "6"],
                       "invoice_date": ["2024-01-10", "2024-02-10", "2023-02-15", "2022-12-10", "2024-02-12",
                                        "2024-02-20"],
                       "customer_id": ["C1", "C1", "C2", "C3", "C3", "C4"], "product_id": "P",
                       "quantity": [10, 20, 1, 1, 5, 8], "revenue": [10.0, 20.0, 1.0, 1.0, 5.0, 8.0]})
    customers = pd.DataFrame({"customer_id": ["C1", "C2", "C3", "C4"], "created_date": "2020-01-01"})
    products = pd.DataFrame({"product_id": ["P"], "category": ["consumable"], "unit_size": [1]})
    kpis = crm_xl.run(tx, customers, products, config={"report_month": "2024-02", "history_months": 2})["kpis"]
    feb = kpis.iloc[-1]
    # January: active C1 and C2 (C2's purchase is 12 months back); C3 lost; C4 a prospect
    assert (feb["active_last_month"], feb["inactive_last_month"]) == (2, 1)
    assert (feb["customers"], feb["active"], feb["new"], feb["reactivated"], feb["lost"]) == (4, 3, 1, 1, 1)
    assert feb["churn_rate"] == 0.5 and feb["retention_rate"] == 0.5 and feb["reactivation_rate"] == 1.0
    assert feb["volume"] == 33 and feb["revenue"] == 33 and feb["revenue_per_active"] == 11
    assert feb["active_mom"] == pytest.approx(3 / 2 - 1) and feb["revenue_mom"] == pytest.approx(33 / 10 - 1)
    assert kpis.iloc[0]["churn_rate"] == 0       # January: C2 was the one active customer of December, still active
    assert feb["churn_rate_mom"] == pytest.approx(0.5)


def test_segment_shares(sample):
    shares, history = sample["segment_shares"], sample["customer_history"]
    scored = history[history["rfm_segment"].notna()]
    for (month, segment), n in scored.groupby(["report_month", "rfm_segment"], observed=True).size().items():
        row = shares[(shares["report_month"] == month) & (shares["rfm_segment"] == segment)]
        assert row["customers"].item() == n
        assert row["share"].item() == pytest.approx(n / (scored["report_month"] == month).sum())
    assert shares.groupby("report_month")["share"].sum().to_numpy() == pytest.approx(1.0)
    last, before = sorted(shares["report_month"].unique())[-2:][::-1]
    for segment in shares["rfm_segment"].unique():
        pick = shares[shares["rfm_segment"] == segment].set_index("report_month")
        assert pick.loc[last, "share_mom"] == pytest.approx(pick.loc[last, "share"] - pick.loc[before, "share"])


def test_renamed_segments_are_rows_not_columns(golden_inputs, golden_config):
    from crm_xl.config import DEFAULT_SEGMENT_MAP

    renamed = "; ".join(f"{'Best' if name == 'Champions' else name}: {' '.join(codes)}"
                        for name, codes in DEFAULT_SEGMENT_MAP)
    tables = crm_xl.run(**golden_inputs, config={**golden_config, "segment_map": renamed})
    assert "Best" in set(tables["segment_shares"]["rfm_segment"])
    assert "Champions" not in set(tables["segment_shares"]["rfm_segment"])


@settings(max_examples=40)
@given(histories())
def test_properties_of_kpis(tx):
    tables = _run(tx)
    kpis = tables["kpis"]
    assert_kpis_match(kpis, tables["customer_history"])
    rated = kpis["churn_rate"].notna()
    # leaving the active window is the Lost event: retention is exactly 1 - churn
    assert (kpis.loc[rated, "retention_rate"] + kpis.loc[rated, "churn_rate"]).to_numpy() == pytest.approx(1.0)
    tiered = kpis["active"] > 0
    assert kpis.loc[tiered, list(f"share_{t.lower()}" for t in TIERS)].sum(axis=1).to_numpy() == pytest.approx(1.0)


# --- the refreshed workbook -----------------------------------------------------------------------------


def _table(book: openpyxl.Workbook, sheet: str, name: str) -> pd.DataFrame:
    ws = book[sheet]
    ref = ws.tables[name].ref
    rows = [[c.value for c in row] for row in ws[ref]]
    return pd.DataFrame(rows[1:], columns=rows[0])


def test_refreshed_workbook_has_the_views_sheets_and_tables(refreshed_sample):
    path, tables = refreshed_sample
    book = openpyxl.load_workbook(path)
    for name, sheet in (("movers", "Movers"), ("tier_migration", "Tier Migration"), ("kpis", "KPIs"),
                        ("segment_shares", "Segment Shares")):
        assert layout.OUTPUT_SHEETS[name] == sheet and sheet in book.sheetnames
        got = _table(book, sheet, name)
        want = tables[name]
        assert list(got.columns) == list(want.columns)
        assert len(got) == len(want) > 0, name
        key = want.columns[1]
        assert [str(v) for v in got[key]] == [str(v) for v in want[key].astype(object)], name
    kpis = _table(book, "KPIs", "kpis")
    assert kpis["revenue"].iloc[-1] == pytest.approx(tables["kpis"]["revenue"].iloc[-1])
    ref = book["KPIs"].tables["kpis"].ref
    assert ref.startswith(f"A{layout.OUTPUT_ANCHORS['kpis'][0] + 1}:")
    assert book["KPIs"]["B5"].number_format == "#,##0"
    assert book["KPIs"].cell(layout.OUTPUT_ANCHORS["kpis"][0] + 2, 9).number_format == layout.NUMBER_FORMATS["share"]


def test_headline_and_heat_map_formulas_survive_the_refresh(refreshed_sample):
    path, _ = refreshed_sample
    book = openpyxl.load_workbook(path)
    kpis = book["KPIs"]
    for i, headline in enumerate(layout.HEADLINES, layout.HEADLINE_TOP + 2):
        assert kpis.cell(i, 1).value == headline.caption
        assert kpis.cell(i, 2).value == layout.headline_formulas(headline, i)[0]
        assert f"kpis[{headline.change}]" in kpis.cell(i, 4).value
    migration = book["Tier Migration"]
    top, left = layout.migration_origin(1)
    assert migration.cell(top + 2, left + 2).value == layout.migration_formula("12 months", f"$K{top + 2}", "L$5")


def test_kpi_charts_cover_the_refreshed_table(refreshed_sample):
    """The headless refresh re-ranged the new charts: the kpis series run to the table's last row."""
    path, tables = refreshed_sample
    months = len(tables["kpis"])
    with zipfile.ZipFile(path) as package:
        charts = [package.read(n).decode() for n in sorted(package.namelist(), key=lambda n: (len(n), n))
                  if re.fullmatch(r"xl/charts/chart\d+\.xml", n)]
    assert len(charts) == len(layout.ALL_CHARTS)
    kpi_charts = [xml for xml, spec in zip(charts, layout.ALL_CHARTS, strict=True) if spec in layout.KPI_CHARTS]
    assert len(kpi_charts) == len(layout.KPI_CHARTS) == 3
    for xml, spec in zip(kpi_charts, layout.KPI_CHARTS, strict=True):
        table = spec.source
        first, last = table.row + 2, table.row + 1 + months
        refs = re.findall(r"<c:f>([^<]*)</c:f>", xml)
        values = [r for r in refs if re.search(r"\$\d+:\$[A-Z]+\$\d+$", r)]
        assert len(values) == 2 * len(spec.series)      # categories and values of each series
        sheet = f"'{table.sheet}'!" if " " in table.sheet else f"{table.sheet}!"     # as Excel quotes sheet names
        assert all(r.endswith(f"${last}") and f"${first}:" in r and r.startswith(sheet) for r in values), refs


def test_start_shows_the_headline_kpis(refreshed_sample):
    path, tables = refreshed_sample
    status = _table(openpyxl.load_workbook(path), "Start", "tbl_status").set_index("item")["value"]
    latest = tables["kpis"].iloc[-1]
    assert status["active customers"].startswith(f"{latest['active']:,} (")
    assert "vs 2025-11" in status["active customers"]
    assert status["churn rate"].startswith(f"{latest['churn_rate']:.1%} (") and "points vs" in status["churn rate"]
    assert status["revenue"].startswith(f"{latest['revenue']:,.0f} (")
    arrow = layout.UP if latest["lost_mom"] > 0 else layout.DOWN
    assert f"({arrow} {abs(latest['lost_mom']):.1%} vs" in status["lost"]


SOFFICE = shutil.which("soffice")


@pytest.mark.slow
@pytest.mark.skipif(SOFFICE is None, reason="LibreOffice (soffice) is not installed")
def test_formulas_read_the_refreshed_tables_once_recalculated(refreshed_sample, tmp_path):
    """LibreOffice told to recalculate on load: the headline block shows the kpis table's latest and
    previous month, and the heat maps tier_migration's shares."""
    path, tables = refreshed_sample
    profile = tmp_path / "profile"
    (profile / "user").mkdir(parents=True)
    (profile / "user" / "registrymodifications.xcu").write_text(
        '<?xml version="1.0" encoding="UTF-8"?><oor:items xmlns:oor="http://openoffice.org/2001/registry">'
        '<item oor:path="/org.openoffice.Office.Calc/Formula/Load"><prop oor:name="OOXMLRecalcMode" oor:op="fuse">'
        "<value>0</value></prop></item></oor:items>", encoding="utf-8")
    done = subprocess.run([SOFFICE, f"-env:UserInstallation={profile.as_uri()}", "--headless", "--norestore",
                           "--convert-to", "xlsx", "--outdir", str(tmp_path), str(path)],
                          capture_output=True, text=True, timeout=300, check=False)
    converted = tmp_path / "sample.xlsx"
    assert done.returncode == 0 and converted.is_file(), (done.stdout, done.stderr)
    book = openpyxl.load_workbook(converted, data_only=True)
    kpis, latest, before = book["KPIs"], tables["kpis"].iloc[-1], tables["kpis"].iloc[-2]
    for i, headline in enumerate(layout.HEADLINES, layout.HEADLINE_TOP + 2):
        assert kpis.cell(i, 2).value == pytest.approx(latest[headline.column]), headline
        assert kpis.cell(i, 3).value == pytest.approx(before[headline.column]), headline
        change = latest[headline.change]
        assert kpis.cell(i, 4).value == pytest.approx(change), headline
        assert kpis.cell(i, 5).value == (layout.UP if change > 0 else layout.DOWN if change < 0 else layout.FLAT)
    migration = tables["tier_migration"].set_index(["scope", "from_tier", "to_tier"])["share"]
    sheet = book["Tier Migration"]
    for k, scope in enumerate(("month", "12 months")):
        top, left = layout.migration_origin(k)
        for i, from_tier in enumerate(layout.MIGRATION_FROM, 1):
            for j, to_tier in enumerate(layout.MIGRATION_TO, 1):
                want = migration[(scope, from_tier, to_tier)]
                got = sheet.cell(top + 1 + i, left + 1 + j).value
                assert got == pytest.approx(0.0 if math.isnan(want) else want), (scope, from_tier, to_tier)
