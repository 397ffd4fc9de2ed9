"""Threshold calibration: the six tier thresholds that give the target tier shares on the data.

The thresholds of the seed system are placeholders. This view proposes T_high, T_mid_high, T_mid,
A_high, F_high and F_mid so that, over the last ``calibration_months`` report months pooled, the
tiered Active customer-months (those with a tier other than Passive: no threshold moves a Passive
customer) fall into Diamond, Platinum, Gold and Silver in the ``target_share_*`` proportions, Bronze
taking the rest.

How (docs/business_logic.md section 9.1 describes it for an analyst):

- Every threshold is cut at a value the data holds, and everything at or above it is in: equal
  values are never split (ties kept together), so a share can miss its target by the size of the
  block of equal values at the cut; the ``note`` says so where that is more than 1 point.
- Top down: Platinum-or-above (AMC >= T_high and O >= F_mid), Diamond inside it (also AOS >= A_high
  and O >= F_high), then Gold-or-above (AMC >= T_mid_high), then Silver-or-above (AMC >= T_mid).
  Each cut is the one whose tier share is nearest the target given the tiers above it (T_mid: the
  nearer of the Silver and the Bronze share, whichever is worse, so Bronze does not collect the
  rounding of every tier above).
- F_mid is the median order count of the heaviest customers (the top Gold-or-above share by AMC),
  F_high that of Platinum-or-above: Platinum is the frequent part of the heavy buyers, Diamond the
  frequent part of Platinum. Each is lowered where too few customers order that often to reach the
  share.
- The proposed number is the roundest decimal (fewest significant digits) that splits the data at
  the same place as the cut value, so rounding never moves a share: 150 rather than 147.833333333
  when no customer-month lies between 140 and 147.8.

Comparisons are exact as in the rules (:mod:`crm_xl.core.exact`): AMC >= T is M >= T x window in
micro-units.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from fractions import Fraction

import numpy as np
import pandas as pd

from crm_xl import contract
from crm_xl.config import TARGET_SHARES, THRESHOLDS, Config
from crm_xl.core import exact
from crm_xl.core.pipeline import CoreRun

#: The tiers the thresholds place, top first (Passive is decided by the tier window alone).
TIERS = ("Diamond", "Platinum", "Gold", "Silver", "Bronze")
TOLERANCE = 0.01        # a share within 1 point of its target is on target
_EPS = 1e-12            # shares are ratios of counts: this absorbs float noise in comparing them
_ROUNDS = 3             # Platinum-or-above and Diamond are cut again with the Diamond share found

_RULES = {
    "t_high": "Platinum and Diamond need AMC ≥ t_high",
    "t_mid_high": "Gold needs AMC ≥ t_mid_high",
    "t_mid": "Silver needs AMC ≥ t_mid",
    "a_high": "Diamond needs AOS ≥ a_high",
    "f_high": "Diamond needs O ≥ f_high orders in the tier window",
    "f_mid": "Platinum needs O ≥ f_mid orders in the tier window",
}


@dataclasses.dataclass(frozen=True)
class Pool:
    """The pooled customer-months the thresholds place: window sums in micro-units and order counts."""

    measure: np.ndarray     # M over the tier window, micro-units (int64; object beyond int64)
    orders: np.ndarray      # O over the tier window
    current: np.ndarray     # index into TIERS of the tier each row has now
    window: int
    months: int

    @property
    def size(self) -> int:
        return len(self.measure)

    @functools.cached_property
    def order(self) -> np.ndarray:
        """The rows by measure, ascending: each cut reads its rows' sorted measures from it in one pass."""
        return np.argsort(self.measure, kind="stable")

    @functools.cached_property
    def values(self) -> np.ndarray:
        """The distinct measures, ascending."""
        ordered = self.measure[self.order]
        return ordered[_starts(ordered)] if len(ordered) else ordered


def _starts(ordered: np.ndarray) -> np.ndarray:
    """Where each run of equal values of a sorted array begins."""
    return np.flatnonzero(np.concatenate(([True], ordered[1:] != ordered[:-1])))


@dataclasses.dataclass(frozen=True)
class _Cut:
    """A threshold cut at a value the data holds (or above all): the share it gives and the next
    nearest share on the other side of the target (what ties left as the alternative)."""

    threshold: float
    share: float
    alternative: float


def calibration(core: CoreRun) -> dict[str, pd.DataFrame]:
    """The ``calibration`` and ``calibration_mix`` tables: proposed thresholds and the tier mix they give."""
    config = core.config
    pool = pool_of(core.tables["customer_history"], config)
    proposed, notes = propose(pool, config) if pool.size else (_current(config), {})
    return {"calibration": _threshold_table(config, proposed, pool),
            "calibration_mix": _mix_table(config, pool, proposed, notes)}


def pool_of(history: pd.DataFrame, config: Config) -> Pool:
    """The tiered Active customer-months of the last ``calibration_months`` report months."""
    months = np.sort(pd.unique(history["report_month"]))[-config.calibration_months:]
    # value_tier's codes follow config.TIERS: Diamond .. Bronze are 0 .. 4, Passive 5, blank -1
    assert tuple(history["value_tier"].cat.categories[:len(TIERS)]) == TIERS
    codes = history["value_tier"].cat.codes.to_numpy()
    take = (codes >= 0) & (codes < len(TIERS))
    if len(months):
        take &= history["report_month"].to_numpy() >= months[0]
    rows = np.flatnonzero(take)
    window = config.tier_window_months
    # micro-units as int64, or Python integers (object) for sums beyond int64, as in the rules
    if window == 6:   # m6 and o6 are the window itself: exact
        measure = exact.to_micro(history["m6"].to_numpy(dtype="float64")[rows])
        orders = history["o6"].to_numpy(dtype="int64")[rows]
    else:             # amc (9 decimals) x window is the window sum to far below a micro-unit
        amc = history["amc"].to_numpy(dtype="float64")[rows]
        measure = exact.to_micro(amc * window)
        aos = history["aos"].to_numpy(dtype="float64")[rows]
        with np.errstate(invalid="ignore", divide="ignore"):
            orders = np.where(np.isnan(aos), 0, np.rint(amc * window / aos)).astype("int64")
    return Pool(measure, orders, codes[rows].astype("int64"), window, len(months))


def tiers_of(pool: Pool, thresholds: dict[str, float]) -> np.ndarray:
    """Each pooled row's tier (index into TIERS) under ``thresholds``, by the rules' exact comparisons."""
    m, o, w = pool.measure, pool.orders, pool.window
    amc = {name: exact.mean_at_least(m, w, thresholds[name]) for name in ("t_high", "t_mid_high", "t_mid")}
    aos = (o > 0) & exact.mean_at_least(m, np.maximum(o, 1), thresholds["a_high"])
    f_high, f_mid = (exact.count_at_least(o, thresholds[name]) for name in ("f_high", "f_mid"))
    conditions = [amc["t_high"] & aos & f_high, amc["t_high"] & f_mid, amc["t_mid_high"], amc["t_mid"]]
    return np.select(conditions, [0, 1, 2, 3], default=4).astype("int64")


def shares(tiers: np.ndarray) -> np.ndarray:
    """Share of the rows in each tier of TIERS."""
    return np.bincount(tiers, minlength=len(TIERS)) / max(len(tiers), 1)


def targets(config: Config) -> np.ndarray:
    """Target share per tier of TIERS: the four settings, and Bronze the rest."""
    wanted = [getattr(config, key) for key in TARGET_SHARES]
    return np.array([*wanted, 1 - sum(wanted)])


def propose(pool: Pool, config: Config) -> tuple[dict[str, float], dict[str, str]]:
    """(threshold setting -> proposed value, tier -> why ties kept it off its target) for a non-empty pool."""
    goal = targets(config)
    n, m, o = pool.size, pool.measure, pool.orders
    every = np.ones(n, dtype=bool)
    heavy = _amc_cut(pool, every, goal[:3].sum(), 0.0)
    f_mid = _frequency(o, m >= _need(heavy.threshold, pool), o >= 0, n, goal[:2].sum())
    diamond_share, plat_goal = goal[0], goal[:2].sum()
    for _ in range(_ROUNDS):
        frequent = o >= f_mid
        plat = _amc_cut(pool, frequent, plat_goal, 0.0)
        plat_plus = frequent & (m >= _need(plat.threshold, pool))
        f_high = _frequency(o, plat_plus, plat_plus, n, goal[0], lowest=f_mid)
        diamond = _aos_cut(pool, plat_plus & (o >= f_high), goal[0])
        if diamond.share == diamond_share:
            break
        diamond_share, plat_goal = diamond.share, diamond.share + goal[1]
    plat_share = plat_plus.sum() / n
    gold = _amc_cut(pool, every, plat_share + goal[2], plat_share, most=plat.threshold)
    gold_plus = gold.share + plat_share
    silver = _amc_cut(pool, every, gold_plus + goal[3], gold_plus, most=gold.threshold, bronze=goal[4])
    proposed = {"t_high": plat.threshold, "t_mid_high": gold.threshold, "t_mid": silver.threshold,
                "a_high": diamond.threshold, "f_high": float(f_high), "f_mid": float(f_mid)}
    got = shares(tiers_of(pool, proposed))
    cuts = {"Diamond": diamond, "Gold": gold, "Silver": silver}
    notes = {tier: _tie_note(tier, got[i], goal[i], cuts.get(tier)) for i, tier in enumerate(TIERS)
             if abs(got[i] - goal[i]) > TOLERANCE + _EPS}
    return proposed, notes


def _need(threshold: float, pool: Pool) -> int:
    """The smallest window sum (micro-units) whose AMC reaches ``threshold``."""
    return math.ceil(exact.decimal_of(threshold) * pool.window * exact.SCALE)


def _amc_cut(pool: Pool, eligible: np.ndarray, goal: float, above: float, most: float | None = None,
             bronze: float | None = None) -> _Cut:
    """The AMC threshold over the ``eligible`` rows whose share (less ``above``, the share of the
    tiers above) is nearest ``goal - above``, at most ``most``. With ``bronze``, the one whose worse
    error of this tier and of Bronze (the rest) is smallest."""
    values = pool.values                # every row's value bounds the roundest number: ties never split
    ordered = pool.measure[pool.order][eligible[pool.order]]
    starts = _starts(ordered) if len(ordered) else np.array([], dtype="int64")
    candidates, counts = ordered[starts], starts     # rows of the eligible below each distinct value
    if most is not None:   # the last candidate is the tier above's own cut: this tier empty
        keep = candidates < _need(most, pool)
        candidates = np.append(candidates[keep], _need(most, pool))
        counts = np.append(counts[keep], np.searchsorted(ordered, _need(most, pool), side="left"))
    share = (eligible.sum() - counts) / pool.size
    tier = share - above
    error = np.abs(tier - (goal - above))
    if bronze is not None:
        error = np.maximum(error, np.abs((1 - share) - bronze))
    scale = Fraction(1, pool.window * exact.SCALE)
    if most is None and (not len(candidates) or abs(goal - above) < error.min()):   # none at all is nearest
        return _Cut(float(_round_above(Fraction(int(values.max(initial=0))) * scale)), 0.0,
                    float(tier.max(initial=0.0)))
    best = len(error) - 1 - int(np.argmin(error[::-1]))   # ties: the higher threshold
    value = int(candidates[best])
    if most is not None and best == len(candidates) - 1:
        threshold = most
    else:
        at = int(np.searchsorted(values, value, side="left"))
        lo = Fraction(int(values[at - 1])) * scale if at else Fraction(0)
        threshold = _roundest(lo, Fraction(value) * scale)
    return _Cut(threshold, float(tier[best]), _other_side(tier, goal - above, best))


def _aos_cut(pool: Pool, eligible: np.ndarray, goal: float) -> _Cut:
    """The AOS threshold over the ``eligible`` rows whose share is nearest ``goal``.

    Float ratios rank the values (equal fractions divide to the same float); each distinct value's
    exact fraction bounds the roundest number.
    """
    m, o = pool.measure[eligible], pool.orders[eligible]
    if not len(m):
        return _Cut(1.0, 0.0, 0.0)
    ratio = (m / o).astype("float64")
    distinct, first = np.unique(ratio, return_index=True)
    share = (len(ratio) - np.searchsorted(np.sort(ratio), distinct, side="left")) / pool.size
    error = np.abs(share - goal)
    if abs(goal) < error.min():
        top = int(first[-1])
        return _Cut(float(_round_above(Fraction(int(m[top]), int(o[top]) * exact.SCALE))), 0.0, float(share[-1]))
    best = len(error) - 1 - int(np.argmin(error[::-1]))
    value = Fraction(int(m[first[best]]), int(o[first[best]]) * exact.SCALE)
    lo = Fraction(int(m[first[best - 1]]), int(o[first[best - 1]]) * exact.SCALE) if best else Fraction(0)
    return _Cut(_roundest(lo, value), float(share[best]), _other_side(share, goal, best))


def _other_side(share: np.ndarray, goal: float, best: int) -> float:
    """The share nearest ``goal`` on the other side of it from the chosen one (itself if none)."""
    other = share[(share - goal) * (share[best] - goal) < 0]
    return float(other[np.argmin(np.abs(other - goal))]) if len(other) else float(share[best])


def _frequency(orders: np.ndarray, group: np.ndarray, eligible: np.ndarray, n: int, goal: float,
               lowest: int = 1) -> int:
    """The lower median order count of ``group``, lowered (not below ``lowest``) while fewer
    ``eligible`` rows than ``goal`` (less a point) order that often."""
    counts = np.sort(orders[group])
    count = max(int(counts[(len(counts) - 1) // 2]) if len(counts) else lowest, lowest)
    while count > lowest and (eligible & (orders >= count)).sum() / n < goal - TOLERANCE - _EPS:
        count -= 1
    return count


def _roundest(lo: Fraction, hi: Fraction) -> float:
    """The decimal with the fewest significant digits in (lo, hi], as a float that reads back exactly."""
    exponent = math.floor(math.log10(hi)) if hi > 0 else 0
    for e in range(exponent, -16, -1):
        step = Fraction(10) ** e
        value = math.floor(hi / step) * step
        shown = float(value)
        if value > lo and lo < exact.decimal_of(shown) <= hi:
            return shown
    return float(hi)


def _round_above(lo: Fraction) -> Fraction:
    """A round number above ``lo``: the next multiple of its leading power of ten."""
    e = math.floor(math.log10(lo)) if lo > 0 else 0
    step = Fraction(10) ** e
    return (math.floor(lo / step) + 1) * step


def _tie_note(tier: str, share: float, goal: float, cut: _Cut | None) -> str:
    text = f"{share:.1%} against the target {goal:.1%}"
    if cut is not None and cut.alternative != cut.share:
        text += f": equal values at the cut are kept together, and the next split gives {cut.alternative:.1%}"
    elif tier == "Platinum":
        text += ": Platinum is what Platinum-or-above leaves after Diamond, both cut at tied values"
    elif tier == "Bronze":
        text += ": Bronze takes what the tiers above leave"
    else:
        text += ": equal values at the cut are kept together"
    return text


def _current(config: Config) -> dict[str, float]:
    return {name: float(getattr(config, name)) for name in THRESHOLDS}


def _threshold_table(config: Config, proposed: dict[str, float], pool: Pool) -> pd.DataFrame:
    how = {
        "t_high": "cut so that Platinum-or-above is nearest the Diamond + Platinum targets",
        "t_mid_high": "cut so that Gold is nearest its target",
        "t_mid": "cut so that the worse of Silver and Bronze is nearest its target",
        "a_high": "cut inside Platinum-or-above so that Diamond is nearest its target",
        "f_high": "median order count of Platinum-or-above (lowered if too few reach the Diamond target)",
        "f_mid": "median order count of the heaviest customers (lowered if too few reach the Platinum target)",
    }
    note = {name: how[name] for name in THRESHOLDS} if pool.size else \
        dict.fromkeys(THRESHOLDS, f"no tiered Active customer in the last {config.calibration_months} report "
                                  "months: nothing to calibrate on, the current value is kept")
    frame = pd.DataFrame({
        "setting": list(THRESHOLDS),
        "rule": [_RULES[name].replace("O ≥", f"O{config.tier_window_months} ≥") for name in THRESHOLDS],
        "current": [float(getattr(config, name)) for name in THRESHOLDS],
        "proposed": [proposed[name] for name in THRESHOLDS],
        "note": [note[name] for name in THRESHOLDS],
    })
    assert list(frame.columns) == contract.columns("calibration")
    return frame.astype({"setting": "str", "rule": "str", "note": "str"})


def _mix_table(config: Config, pool: Pool, proposed: dict[str, float], notes: dict[str, str]) -> pd.DataFrame:
    goal = targets(config)
    now = np.bincount(pool.current[pool.current >= 0], minlength=len(TIERS))
    new = np.bincount(tiers_of(pool, proposed), minlength=len(TIERS)) if pool.size else now
    n = max(pool.size, 1)
    frame = pd.DataFrame({
        "value_tier": list(TIERS),
        "target_share": np.round(goal, 6),
        "current_count": now.astype("int64"),
        "current_share": np.round(now / n, 6),
        "proposed_count": new.astype("int64"),
        "proposed_share": np.round(new / n, 6),
        "note": [notes.get(tier, "within 1 point of the target" if pool.size else "no data") for tier in TIERS],
    })
    assert list(frame.columns) == contract.columns("calibration_mix")
    return frame.astype({"value_tier": "str", "note": "str"})
