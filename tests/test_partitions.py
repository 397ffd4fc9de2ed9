"""Customer partitions (crm_xl.core.partitions): the same tables whatever the number of partitions,
and the memory plan that chooses it."""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import crm_xl
from crm_xl.config import Config
from crm_xl.core.partitions import MAX_PARTITIONS, bounds, plan_partitions
from crm_xl.core.pipeline import finish_core, prepare_core
from crm_xl.core.snapshots import memory_needed
from crm_xl.errors import ConfigError
from crm_xl.io.sample import generate


def assert_same_tables(got: dict[str, pd.DataFrame], want: dict[str, pd.DataFrame]) -> None:
    assert list(got) == list(want)
    for name in want:
        pd.testing.assert_frame_equal(got[name], want[name], check_exact=True, obj=name)


@pytest.mark.parametrize("parts", [2, 3, 19, 40])
def test_every_golden_table_is_the_same_in_partitions(golden_inputs, golden_config, golden_result, parts) -> None:
    """19 golden customers: 19 partitions of one each, and more partitions than customers."""
    assert_same_tables(crm_xl.run(**golden_inputs, config=golden_config, partitions=parts), golden_result)


@pytest.fixture(scope="module")
def messy() -> dict[str, pd.DataFrame]:
    return generate(n_customers=300, months=18, end_month="2025-06", seed=11, messy=True)


@pytest.mark.parametrize("settings_", [{}, {"rfm_population": "all_buyers"}, {"measure": "revenue"},
                                       {"rfm_method": "fixed"}, {"use_created_date": False}],
                         ids=["default", "all_buyers", "revenue", "fixed_cuts", "no_created_date"])
def test_every_table_of_messy_data_is_the_same_in_partitions(messy, settings_) -> None:
    want = crm_xl.run(**messy, config=settings_)
    for parts in (2, 7):
        assert_same_tables(crm_xl.run(**messy, config=settings_, partitions=parts), want)


def test_the_reason_texts_really_differ_between_partitions(messy) -> None:
    """The parity above means something: each partition makes texts the others do not (merged by
    first use), and the quintiles of one partition are not the whole base's."""
    from crm_xl.core.partitions import _panel
    from crm_xl.core.rfm import cut_points, rfm_values, scored_values
    from crm_xl.core.rules import apply_rules

    prepared = prepare_core(**messy)
    panel = _panel(prepared.staged, prepared.facts, prepared.config, 0, 100)
    labels = apply_rules(panel, prepared.config)
    alone = cut_points(scored_values(panel, *rfm_values(panel, labels, prepared.config)), prepared.config,
                       len(panel.months))
    whole = crm_xl.run(**messy)["rfm_cut_points"]
    last = whole[whole["report_month"] == whole["report_month"].max()].set_index("field")
    assert any(tuple(alone[(len(panel.months) - 1, field)]) != tuple(last.loc[field, ["cut_1", "cut_2", "cut_3",
                                                                                       "cut_4"]])
               for field in ("recency", "frequency", "monetary"))
    halves = [crm_xl.run(**messy, partitions=2)["customer_history"]]
    texts = halves[0]["tier_reason"].astype(str)
    first_half = halves[0]["customer_id"].isin(prepared.staged.customers["customer_id"].iloc[:150])
    assert set(texts[first_half]) - set(texts[~first_half]) and set(texts[~first_half]) - set(texts[first_half])


def test_a_refresh_of_the_latest_months_is_the_same_in_partitions(messy) -> None:
    """finish_core as the history store calls it: fewer months, the earlier ones given."""
    prepared = prepare_core(**messy)
    full = finish_core(prepared).tables["customer_history"]
    months = pd.to_datetime(full["report_month"]).drop_duplicates().sort_values()
    earlier = full[pd.to_datetime(full["report_month"]) <= months.iloc[-4]]
    want = finish_core(prepare_core(**messy), months=3, earlier=earlier)   # a fresh log of notes each
    got = finish_core(prepare_core(**messy), months=3, earlier=earlier, partitions=4)
    assert_same_tables(got.tables, want.tables)
    pd.testing.assert_frame_equal(got.lead_history, want.lead_history, check_exact=True)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), customers=st.integers(2, 40), parts=st.integers(2, 45))
def test_partitions_never_change_a_table(seed: int, customers: int, parts: int) -> None:
    tables = generate(n_customers=customers, months=8, end_month="2025-03", seed=seed, messy=True)
    want = crm_xl.run(**tables, config={"history_months": 6})
    assert_same_tables(crm_xl.run(**tables, config={"history_months": 6}, partitions=parts), want)


# --- the plan --------------------------------------------------------------------------------------------


def test_one_partition_when_the_grids_fit_or_the_memory_is_not_known() -> None:
    config = Config(history_months=36)
    assert plan_partitions(100_000, config, None) == 1
    assert plan_partitions(100_000, config, memory_needed(100_000, config)) == 1


def test_enough_partitions_for_the_grids_beside_the_held_rows() -> None:
    config = Config(history_months=36)
    # 100,000 x 37 cells: 2,841.6 MB of grids in one piece, 1,894.4 MB of held rows; 2 GiB leaves
    # 253.1 MB for one partition's grids: 2,841.6 / 253.1 -> 12 partitions
    assert plan_partitions(100_000, config, 2 * 2**30) == 12
    assert plan_partitions(100_000, config, int(2.5 * 2**30)) == 4   # 789.95 MB left: 3.6 -> 4


def test_a_history_whose_rows_alone_do_not_fit_names_history_months() -> None:
    with pytest.raises(ConfigError, match=r"history_months.*36 months of 100,000 customers need about 2\.6 GB of "
                                          r"memory \(1\.8 GB in customer partitions\) and 1\.0 GB is available: "
                                          r"set history_months to 19 or less"):
        plan_partitions(100_000, Config(history_months=36), 2**30)


def test_no_more_partitions_than_customers_or_the_cap() -> None:
    assert plan_partitions(5, Config(history_months=24), 5 * 25 * 512 + 25 * 768) == 5
    assert [hi - lo for lo, hi in bounds(10, 3)] == [3, 3, 4]
    assert bounds(2, 5) == [(0, 1), (1, 2)]
    huge = MAX_PARTITIONS * 100
    months = Config(history_months=1)
    least = huge * 2 * 512 + 100 * 2 * 768
    assert plan_partitions(huge, months, least) == MAX_PARTITIONS
    with pytest.raises(ConfigError):
        plan_partitions(huge, months, least - 1)


def test_a_run_too_big_for_its_memory_in_one_piece_runs_in_partitions(golden_inputs, golden_config,
                                                                       golden_result) -> None:
    """The memory limit alone sends the run into partitions, with the same tables."""
    config = Config.from_mapping(golden_config)
    prepared = prepare_core(**golden_inputs, config=golden_config, memory_limit=memory_needed(19, config) - 1)
    assert prepared.partitions > 1
    assert_same_tables(crm_xl.run(**golden_inputs, config=golden_config, memory_limit=memory_needed(19, config) - 1),
                       golden_result)
