"""Threshold calibration (issue 12, point 6): the calibration and calibration_mix tables, checked
against a separate computation, hand examples with ties, the 1-point property, the re-run of the
rules with the proposed thresholds, and ``crm-xl calibrate`` on a real workbook."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import crm_xl
from crm_xl.cli import main
from crm_xl.errors import ConfigError
from crm_xl.io.csv import read_raw_folder
from crm_xl.workbook.reader import open_book, read_log, read_settings

SAMPLE = Path(__file__).resolve().parent.parent / "sample_data"
TIERS = ["Diamond", "Platinum", "Gold", "Silver", "Bronze"]
PRODUCTS = pd.DataFrame({"product_id": ["P1"], "category": ["consumable"], "unit_size": [1]})


def _book(months: dict[str, list[tuple[int, int]]], config: dict | None = None) -> dict[str, pd.DataFrame]:
    """Customers whose 6 months (2024-01 .. 2024-06) each hold (units, orders) bought on the 10th."""
    rows = []
    for customer, per_month in months.items():
        for month, (units, orders) in enumerate(per_month, 1):
            for k in range(orders):
                rows.append((f"{customer}-{month}-{k}", f"2024-{month:02d}-{10 + k:02d}", customer, "P1",
                             units / orders if k else units - (orders - 1) * (units / orders), 1))
    tx = pd.DataFrame(rows, columns=["invoice_id", "invoice_date", "customer_id", "product_id", "quantity",
                                     "revenue"])
    customers = pd.DataFrame({"customer_id": list(months)})
    return crm_xl.run(tx, customers, PRODUCTS, {"report_month": "2024-06", "history_months": 1,
                                                "calibration_months": 1, **(config or {})})


def _pooled_shares(history: pd.DataFrame, months: int = 6) -> pd.Series:
    """The tier shares of the tiered Active customer-months of the last ``months`` months, written
    apart from the view: plain pandas over customer_history."""
    last = sorted(history["report_month"].unique())[-months:]
    rows = history[history["report_month"].isin(last)]
    tiers = rows["value_tier"].astype(object)
    tiers = tiers[tiers.notna() & (tiers != "Passive")]
    return tiers.value_counts(normalize=True).reindex(TIERS, fill_value=0.0)


@pytest.fixture(scope="module")
def sample() -> dict[str, pd.DataFrame]:
    return read_raw_folder(SAMPLE)


@pytest.fixture(scope="module")
def sample_tables(sample) -> dict[str, pd.DataFrame]:
    return crm_xl.run(**sample)


def test_the_proposal_gives_the_shares_it_predicts_when_the_rules_run_again(sample, sample_tables):
    proposal = sample_tables["calibration"]
    mix = sample_tables["calibration_mix"].set_index("value_tier")
    current = _pooled_shares(sample_tables["customer_history"])
    assert np.allclose(mix["current_share"].to_numpy(), current.to_numpy(), atol=1e-6)
    thresholds = dict(zip(proposal["setting"], proposal["proposed"], strict=True))
    again = crm_xl.run(**sample, config=thresholds)
    shares = _pooled_shares(again["customer_history"])
    assert np.allclose(mix["proposed_share"].to_numpy(), shares.to_numpy(), atol=1e-6)
    # the sample has no large ties: every share is within 1 point of its target
    assert (np.abs(shares.to_numpy() - mix["target_share"].to_numpy()) <= 0.01 + 1e-9).all()
    assert (mix["note"] == "within 1 point of the target").all()
    # and the run with the proposed thresholds proposes them again
    assert again["calibration"]["proposed"].tolist() == proposal["proposed"].tolist()


def test_the_table_lists_every_threshold_with_its_current_value(sample_tables):
    proposal = sample_tables["calibration"].set_index("setting")
    assert list(proposal.index) == ["t_high", "t_mid_high", "t_mid", "a_high", "f_high", "f_mid"]
    assert proposal["current"].tolist() == [1000, 200, 50, 1500, 6, 3]
    p = proposal["proposed"]
    assert p["t_mid"] <= p["t_mid_high"] <= p["t_high"] and p["f_mid"] <= p["f_high"]
    assert all(float(v).is_integer() for v in (p["f_high"], p["f_mid"]))


def _best_amc_threshold(amc: list[Fraction], share: float) -> tuple[Fraction, float]:
    """Brute force: over every distinct value as the cut (everything at or above it in), the one whose
    share is nearest ``share`` (a tie: the higher cut)."""
    best = None
    for value in sorted(set(amc)):
        got = sum(a >= value for a in amc) / len(amc)
        if best is None or abs(got - share) <= abs(best[1] - share):
            best = (value, got)
    return best


def test_silver_cut_matches_a_brute_force_search_and_keeps_ties_together():
    # 20 customers: AMC 10, 20, ..., 200 (units per month x 6 months), all Bronze or Silver by the default
    # thresholds; a block of 6 tied at AMC 30. Target Silver-or-above 50%: the nearest split is the cut
    # whose share is nearest 50% without splitting the tie.
    amc = [10, 20] + [30] * 6 + list(range(40, 160, 10))
    months = {f"C{i:02d}": [(a, 1)] * 6 for i, a in enumerate(amc)}
    tables = _book(months, {"target_share_diamond": 0.001, "target_share_platinum": 0.001,
                            "target_share_gold": 0.001, "target_share_silver": 0.497})
    proposal = tables["calibration"].set_index("setting")["proposed"]
    mix = tables["calibration_mix"].set_index("value_tier")
    t_mid = Fraction(str(proposal["t_mid"]))
    cut, share = _best_amc_threshold([Fraction(a) for a in amc], 0.5)
    assert sum(Fraction(a) >= t_mid for a in amc) / len(amc) == pytest.approx(share)
    # the proposed number splits where the cut value does: nothing lies between it and the cut
    below = max([a for a in amc if a < cut], default=0)
    assert below < t_mid <= cut
    assert mix["proposed_count"].sum() == len(amc)
    # rerun with the proposal: the six tied at 30 share one tier, and Silver-or-above is the brute force's
    thresholds = dict(zip(tables["calibration"]["setting"], tables["calibration"]["proposed"], strict=True))
    again = _book(months, thresholds)["customer_history"].set_index("customer_id")["value_tier"]
    assert again[[f"C{i:02d}" for i in range(2, 8)]].nunique() == 1
    assert again.isin(["Silver", "Gold", "Platinum", "Diamond"]).mean() == pytest.approx(share)


def test_a_tie_that_prevents_a_target_is_named():
    # 10 customers of AMC 100 and 10 of AMC 10: a Silver target of 30% cannot be met (0% or 50%)
    months = {**{f"H{i}": [(100, 1)] * 6 for i in range(10)}, **{f"L{i}": [(10, 1)] * 6 for i in range(10)}}
    tables = _book(months, {"target_share_diamond": 0.01, "target_share_platinum": 0.01,
                            "target_share_gold": 0.01, "target_share_silver": 0.30})
    mix = tables["calibration_mix"].set_index("value_tier")
    assert mix.loc["Diamond", "proposed_share"] == 0 and "target" in mix.loc["Diamond", "note"]
    off = mix[mix["note"] != "within 1 point of the target"]
    assert set(off.index) >= {"Silver"}
    assert "kept together" in mix.loc["Silver", "note"]
    assert abs(mix["proposed_share"] - mix["target_share"])[mix["note"] == "within 1 point of the target"].max() \
        <= 0.01 + 1e-9


def test_roundest_threshold_is_exact_on_a_non_decimal_amc():
    # A's AMC is 290 / 6 = 48.333..., D's 289.8 / 6 = 48.3: a Silver-or-above target of 50% cuts at A
    # (A and B in), and the roundest number in (48.3, 48.333...] is 48.33, which the exact comparison
    # puts A above and D below
    months = {"A": [(50, 1)] * 5 + [(40, 1)], "D": [(50, 1)] * 5 + [(39.8, 1)], "B": [(50, 1)] * 6,
              "C": [(5, 1)] * 6}
    config = {"target_share_diamond": 0.01, "target_share_platinum": 0.01, "target_share_gold": 0.01,
              "target_share_silver": 0.47}
    tables = _book(months, config)
    history = tables["customer_history"].set_index("customer_id")
    assert (history.at["A", "m6"], history.at["D", "m6"]) == (290, 289.8)
    proposal = dict(zip(tables["calibration"]["setting"], tables["calibration"]["proposed"], strict=True))
    assert proposal["t_mid"] == 48.33
    tiers = _book(months, {**config, **proposal})["customer_history"].set_index("customer_id")["value_tier"]
    assert tiers.to_dict() == {"A": "Silver", "D": "Bronze", "B": "Silver", "C": "Bronze"}


@st.composite
def _amc_sets(draw: st.DrawFn) -> list[int]:
    return draw(st.lists(st.integers(1, 60), min_size=8, max_size=40))


@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(_amc_sets(), st.sampled_from([(0.03, 0.07, 0.15, 0.30), (0.1, 0.1, 0.2, 0.2), (0.05, 0.05, 0.3, 0.4)]))
def test_each_share_is_within_a_point_unless_a_tie_is_named(units, goal):
    months = {f"C{i:02d}": [(u * 10, 1 + u % 7)] * 6 for i, u in enumerate(units)}
    keys = ["target_share_diamond", "target_share_platinum", "target_share_gold", "target_share_silver"]
    config = dict(zip(keys, goal, strict=True))
    tables = _book(months, config)
    mix = tables["calibration_mix"].set_index("value_tier")
    on = mix["note"] == "within 1 point of the target"
    assert (abs(mix["proposed_share"] - mix["target_share"])[on] <= 0.01 + 1e-6).all()
    assert (abs(mix["proposed_share"] - mix["target_share"])[~on] > 0.01).all()
    # the rules with the proposed thresholds give the predicted mix
    thresholds = dict(zip(tables["calibration"]["setting"], tables["calibration"]["proposed"], strict=True))
    again = _book(months, {**config, **thresholds})
    assert np.allclose(_pooled_shares(again["customer_history"], 1).to_numpy(), mix["proposed_share"].to_numpy(),
                       atol=1e-6)


def test_no_tiered_customer_keeps_the_current_thresholds():
    # C1 last bought in 2023-05: Not Active in 2024-06, so no tiered customer-month at all
    tx = pd.DataFrame({"invoice_id": ["I1"], "invoice_date": ["2023-05-10"], "customer_id": ["C1"],
                       "product_id": ["P1"], "quantity": [5], "revenue": [5]})
    tables = crm_xl.run(tx, pd.DataFrame({"customer_id": ["C1"]}), PRODUCTS,
                        {"report_month": "2024-06", "history_months": 1})
    proposal = tables["calibration"]
    assert (proposal["proposed"] == proposal["current"]).all()
    assert proposal["note"].str.contains("nothing to calibrate on").all()
    assert (tables["calibration_mix"]["proposed_count"] == 0).all()


@pytest.mark.parametrize(("setting", "value", "message"), [
    ("target_share_gold", "1.2", "a share between 0 and 1"),
    ("target_share_silver", "0.8", "must sum below 1"),
    ("calibration_months", "0", "calibration_months"),
])
def test_bad_targets_name_the_setting(setting, value, message):
    with pytest.raises(ConfigError, match=message) as caught:
        crm_xl.run(pd.DataFrame(), pd.DataFrame(), PRODUCTS, {setting: value})
    assert setting in str(caught.value)


def _thresholds_of(book: Path) -> dict[str, float]:
    settings_, _, _ = read_settings(book)
    return {k: float(settings_[k]) for k in ("t_high", "t_mid_high", "t_mid", "a_high", "f_high", "f_mid")}


def test_calibrate_prints_and_changes_nothing_without_apply(tmp_path, capsys):
    book = tmp_path / "book.xlsm"
    assert main(["new", str(book), "--sample"]) == 0
    before = book.read_bytes()
    capsys.readouterr()
    assert main(["calibrate", str(book)]) == 0
    out = capsys.readouterr().out
    assert "t_high" in out and "Diamond" in out and "Nothing was changed" in out
    assert book.read_bytes() == before


def test_calibrate_apply_writes_config_and_the_log(tmp_path, capsys, sample_tables):
    book = tmp_path / "book.xlsm"
    assert main(["new", str(book), "--sample"]) == 0
    assert main(["calibrate", str(book), "--apply"]) == 0
    out = capsys.readouterr().out
    proposal = sample_tables["calibration"]
    expected = dict(zip(proposal["setting"], proposal["proposed"], strict=True))
    assert _thresholds_of(book) == expected
    opened = open_book(book, ("tbl_log",))
    try:
        log = read_log(opened)
    finally:
        opened.close()
    assert len(log) == 1 and log.at[0, "level"] == "info"
    assert log.at[0, "message"].startswith("calibrate --apply: t_high 1,000 -> ")
    assert "noted in the Log" in out
    # a second --apply has nothing left to change and writes nothing
    after = book.read_bytes()
    assert main(["calibrate", str(book), "--apply"]) == 0
    assert "nothing to change" in capsys.readouterr().out
    assert book.read_bytes() == after
    # the refresh then fills the Calibration sheets with the applied thresholds as current
    assert main(["refresh", str(book), "--quiet"]) == 0
    from python_calamine import CalamineWorkbook

    with CalamineWorkbook.from_path(str(book), load_tables=True) as workbook:
        rows = workbook.get_table_by_name("calibration").to_python()
    assert [r[0] for r in rows] == list(expected)
    assert [float(r[2]) for r in rows] == list(expected.values())
    assert [float(r[3]) for r in rows] == list(expected.values())
