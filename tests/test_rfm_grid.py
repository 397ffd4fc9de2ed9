"""rfm_grid: the report month's scored customers in the 25 (R, FM) cells (crm_xl/analyses/rfm_grid.py).

Checked against a plain loop over customer_snapshot rows with the brief's segment map written out here,
a hand-computed example, hypothesis properties, the golden personas and another rfm_population.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import crm_xl
from crm_xl import contract
from crm_xl.analyses.rfm_grid import rfm_grid
from crm_xl.config import Config
from crm_xl.io.csv import read_csv, read_raw_folder

GOLDEN = Path(__file__).parent / "fixtures" / "golden"
SAMPLE = Path(__file__).parents[1] / "sample_data"
# The brief's 11 segments, typed out here rather than read from the code.
BRIEF = {"Champions": "55 54 45", "Loyal Customers": "53 44 35 34", "Potential Loyalist": "52 42 43 33",
         "Recent Customers": "51", "Promising": "41 31", "Customers Needing Attention": "32 23 22",
         "About To Sleep": "21", "At Risk": "25 24 13", "Can't Lose Them": "15 14", "Hibernating": "12",
         "Gone Cold": "11"}
SEGMENT_OF = {cell: name for name, cells in BRIEF.items() for cell in cells.split()}


def loop_grid(snapshot: pd.DataFrame) -> dict[str, tuple[int, float]]:
    """cell -> (customers, revenue_m12) by a loop over the snapshot; FM recomputed from F and M."""
    out = {f"{r}{fm}": (0, 0.0) for r in range(1, 6) for fm in range(1, 6)}
    for row in snapshot.itertuples():
        if pd.isna(row.r_score):
            continue
        fm = math.ceil((row.f_score + row.m_score) / 2)
        customers, revenue = out[f"{row.r_score}{fm}"]
        out[f"{row.r_score}{fm}"] = (customers + 1, revenue + row.revenue_m12)
    return out


def check_against_loop(tables: dict[str, pd.DataFrame]) -> None:
    grid, snapshot = tables["rfm_grid"], tables["customer_snapshot"]
    want = loop_grid(snapshot)
    assert list(grid["cell"]) == [f"{r}{fm}" for r in range(5, 0, -1) for fm in range(1, 6)]
    scored = int(snapshot["r_score"].notna().sum())
    for row in grid.itertuples():
        assert (row.customers, row.revenue_m12) == (want[row.cell][0], pytest.approx(want[row.cell][1], abs=1e-6))
        assert row.rfm_segment == SEGMENT_OF[row.cell]
        assert row.cell == f"{row.r_score}{row.fm_score}"
        assert row.share == pytest.approx(row.customers / scored)
    assert (grid["report_month"] == snapshot["report_month"].iloc[0]).all()


@pytest.fixture(scope="module")
def sample_tables() -> dict[str, pd.DataFrame]:
    return crm_xl.run(**read_raw_folder(SAMPLE))


def test_sample_equals_the_loop(sample_tables: dict[str, pd.DataFrame]) -> None:
    check_against_loop(sample_tables)
    assert list(sample_tables["rfm_grid"].columns) == contract.columns("rfm_grid")


def test_golden_personas_equal_the_loop() -> None:
    raw = {name: read_csv(GOLDEN / f"{name}.csv", name) for name in ("transactions", "customers", "products")}
    tables = crm_xl.run(**raw, config={"report_month": "2024-12", "history_months": 24})
    check_against_loop(tables)
    assert tables["rfm_grid"]["customers"].sum() == (tables["customer_snapshot"]["activity_status"] == "Active").sum()


def test_all_buyers_population_is_counted_too() -> None:
    tables = crm_xl.run(**read_raw_folder(SAMPLE), config={"rfm_population": "all_buyers"})
    check_against_loop(tables)


def test_hand_computed_example() -> None:
    snapshot = pd.DataFrame({
        "report_month": pd.Series([pd.Timestamp("2024-12-01")] * 5, dtype="datetime64[s]"),
        "r_score": pd.array([5, 5, 1, None, 3], dtype="Int64"),
        "fm_score": pd.array([5, 5, 1, None, 2], dtype="Int64"),
        "revenue_m12": [100.0, 50.5, 3.0, 999.0, 10.0],
    })
    grid = rfm_grid(snapshot, Config()).set_index("cell")
    assert grid.loc["55", ["customers", "revenue_m12", "rfm_segment"]].tolist() == [2, 150.5, "Champions"]
    assert grid.loc["11", ["customers", "revenue_m12", "rfm_segment"]].tolist() == [1, 3.0, "Gone Cold"]
    assert grid.loc["32", ["customers", "rfm_segment"]].tolist() == [1, "Customers Needing Attention"]
    assert grid.loc["55", "share"] == 0.5 and grid["customers"].sum() == 4
    assert grid["revenue_m12"].sum() == 163.5          # the unscored customer's revenue is in no cell
    assert (grid.drop(index=["55", "11", "32"])["customers"] == 0).all()


def test_nobody_scored_gives_25_empty_cells_with_blank_shares() -> None:
    snapshot = pd.DataFrame({"report_month": pd.Series([pd.Timestamp("2024-12-01")], dtype="datetime64[s]"),
                             "r_score": pd.array([None], dtype="Int64"), "fm_score": pd.array([None], dtype="Int64"),
                             "revenue_m12": [0.0]})
    grid = rfm_grid(snapshot, Config())
    assert len(grid) == 25 and grid["customers"].sum() == 0 and grid["share"].isna().all()


def test_a_users_segment_map_names_the_cells() -> None:
    cells = [f"{r}{fm}" for r in range(1, 6) for fm in range(1, 6)]
    config = Config.from_mapping({"segment_map": f"Top: 55; Rest: {' '.join(c for c in cells if c != '55')}"})
    snapshot = pd.DataFrame({"report_month": pd.Series([pd.Timestamp("2024-12-01")], dtype="datetime64[s]"),
                             "r_score": pd.array([5], dtype="Int64"), "fm_score": pd.array([5], dtype="Int64"),
                             "revenue_m12": [1.0]})
    grid = rfm_grid(snapshot, config).set_index("cell")
    assert grid.loc["55", "rfm_segment"] == "Top" and set(grid.drop(index="55")["rfm_segment"]) == {"Rest"}


_score = st.one_of(st.none(), st.integers(1, 5))


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(_score, st.integers(1, 5), st.floats(0, 1e6, allow_nan=False)), max_size=40))
def test_counts_add_up_to_the_scored_customers(rows: list[tuple[int | None, int, float]]) -> None:
    snapshot = pd.DataFrame({
        "report_month": pd.Series([pd.Timestamp("2024-12-01")] * len(rows), dtype="datetime64[s]"),
        "r_score": pd.array([r for r, _, _ in rows], dtype="Int64"),
        "fm_score": pd.array([None if r is None else fm for r, fm, _ in rows], dtype="Int64"),
        "revenue_m12": [v for _, _, v in rows]})
    grid = rfm_grid(snapshot, Config())
    scored = sum(r is not None for r, _, _ in rows)
    assert len(grid) == 25 and grid["customers"].sum() == scored
    assert grid["revenue_m12"].sum() == pytest.approx(sum(v for r, _, v in rows if r is not None), rel=1e-9, abs=1e-6)
    if scored:
        assert grid["share"].sum() == pytest.approx(1.0)
    assert np.all(grid["customers"] >= 0)
