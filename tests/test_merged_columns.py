"""Customer partitions' rows written into one run's columns (crm_xl.core.merged_columns), against a
concatenation and stable sort by month, computed here independently."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from crm_xl.core.merged_columns import MergedFrame, block_starts, places_of
from crm_xl.core.partitions import bounds
from crm_xl.core.snapshots import rows_per_month


def sorted_places(sizes: np.ndarray) -> list[np.ndarray]:
    """Where each partition's rows land when every partition's rows are concatenated and sorted by month."""
    months = np.concatenate([np.repeat(np.arange(sizes.shape[1]), row) for row in sizes])
    landing = np.argsort(np.argsort(months, kind="stable"), kind="stable")
    edges = np.concatenate([[0], np.cumsum(sizes.sum(axis=1))])
    return [landing[lo:hi] for lo, hi in itertools.pairwise(edges)]


@given(st.integers(1, 8).flatmap(lambda parts: st.integers(1, 6).flatmap(
    lambda months: arrays("int64", (parts, months), elements=st.integers(0, 6)))))
def test_places_are_where_a_stable_sort_by_month_puts_the_rows(sizes) -> None:
    starts = block_starts(sizes)
    for part, want in enumerate(sorted_places(sizes)):
        np.testing.assert_array_equal(places_of(starts[part], sizes[part]), want)


def test_places_of_a_hand_worked_layout() -> None:
    # month 0: partition 0 has 1 row, partition 1 has 2; month 1: 2 and 3 -> rows 0 | 1 2 | 3 4 | 5 6 7
    sizes = np.array([[1, 2], [2, 3]])
    starts = block_starts(sizes)
    assert starts.tolist() == [[0, 3], [1, 5]]
    assert places_of(starts[0], sizes[0]).tolist() == [0, 3, 4]
    assert places_of(starts[1], sizes[1]).tolist() == [1, 2, 5, 6, 7]


def test_rows_per_month_counts_who_is_in_the_base_each_month() -> None:
    entry = pd.to_datetime(pd.Series(["2024-01-15", None, "2024-03-31", "2023-06-01", "2024-05-02", None])
                           ).to_numpy()
    months = pd.period_range(end="2024-04", periods=4, freq="M")          # 2024-01 .. 2024-04
    ranges = bounds(len(entry), 3)                                        # [0, 2) [2, 4) [4, 6)
    joined = pd.Series(entry).dt.to_period("M")
    want = [[sum(1 for key in range(lo, hi) if pd.isna(joined[key]) or joined[key] <= month) for month in months]
            for lo, hi in ranges]
    assert want == [[2, 2, 2, 2], [1, 1, 2, 2], [1, 1, 1, 1]]
    assert rows_per_month(entry, months[-1], len(months), ranges).tolist() == want


@pytest.fixture()
def whole() -> pd.DataFrame:
    """A run's table, month-major: every kind of column the partitions write."""
    rng = np.random.default_rng(5)
    n = 40
    reasons = np.array([f"AMC {v} < 50" for v in range(12)], dtype=object)
    return pd.DataFrame({
        "report_month": np.repeat(np.array(["2024-01-01", "2024-02-01"], dtype="datetime64[s]"), n // 2),
        "m1": rng.normal(size=n),
        "o6": rng.integers(0, 9, size=n),
        "r_score": pd.array(np.where(rng.random(n) < 0.3, None, rng.integers(1, 6, size=n)), dtype="Int64"),
        "value_tier": pd.Categorical.from_codes(rng.integers(-1, 3, size=n), categories=["Gold", "Silver", "Bronze"]),
        "tier_reason": pd.Series(np.where(rng.random(n) < 0.2, None, reasons[rng.integers(0, 12, size=n)])),
        "note": pd.array(rng.choice(["a", "b", None], size=n), dtype="string"),
    })


def test_partitions_written_into_place_give_the_whole_table(whole) -> None:
    # partitions 0 and 1 split each month's customers 8 + 12; each partition numbers its own reason texts
    sizes = np.array([[8, 8], [12, 12]])
    in_month = np.tile(np.arange(20), 2)
    merged = MergedFrame(len(whole))
    for part, rows in enumerate([in_month < 8, in_month >= 8]):
        piece = whole[rows].reset_index(drop=True)
        piece["tier_reason"] = piece["tier_reason"].astype("category")     # its own texts, sorted
        merged.put(piece, places_of(block_starts(sizes)[part], sizes[part]))
        assert piece.empty                                                  # freed as it is written
    got = merged.frame()
    texts = whole["tier_reason"].dropna().drop_duplicates().tolist()       # one run: numbered by first use
    want = whole.assign(tier_reason=pd.Categorical(whole["tier_reason"], categories=texts))
    pd.testing.assert_frame_equal(got, want, check_exact=True)


def test_a_column_whose_values_widen_keeps_every_value() -> None:
    merged = MergedFrame(4)
    merged.put(pd.DataFrame({"x": np.array([1, 2], dtype="int64")}), np.array([0, 2]))
    merged.put(pd.DataFrame({"x": np.array([0.5, 1.5])}), np.array([1, 3]))
    assert merged.frame()["x"].tolist() == [1.0, 0.5, 2.0, 1.5]
