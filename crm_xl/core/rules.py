"""Rules layer: activity status, value tier, lifecycle event and lifecycle state per customer-month.

Reads the snapshot panel only. Labels are integer codes into the name tuples of
:mod:`crm_xl.config` (-1 = blank) so the big history stays small until the outputs layer names
them. The rules, their order and defaults are those of ``docs/business_logic.md``.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from crm_xl.config import STATES, Config
from crm_xl.core import exact
from crm_xl.core.snapshots import _BLANK, Panel

# Codes into config.TIERS / EVENTS / STATES.
DIAMOND, PLATINUM, GOLD, SILVER, BRONZE, PASSIVE = range(6)
NEW, LOST, REACTIVATED = range(3)
PROSPECT, STATE_NEW, ACTIVE, LAPSING, STATE_LOST, STATE_REACTIVATED = range(len(STATES))
_DIGITS = 9  # AMC and AOS as shown; the thresholds are compared exactly (see Labels.meets)
_ROUNDABLE = 2.0**53 / 10**_DIGITS   # below it a float still has 9 decimals to round to


@dataclasses.dataclass(frozen=True)
class Labels:
    """Derived figures and rule outcomes, aligned with the panel's rows."""

    amc: np.ndarray                # as shown: the float nearest M/window, at 9 decimals
    aos: np.ndarray                # as shown, NaN when there was no order in the tier window
    orders_tier: np.ndarray        # invoices in the tier window (O6 by default)
    tenure_months: np.ndarray      # -1 before the first core purchase
    has_core: np.ndarray           # any core purchase up to the month's end
    active: np.ndarray
    tier: np.ndarray               # -1 when not active
    event: np.ndarray              # -1 when no event
    state: np.ndarray
    meets: dict[str, np.ndarray]   # threshold setting -> where AMC (AOS, orders) >= it, exactly


def apply_rules(panel: Panel, config: Config) -> Labels:
    """Evaluate every rule for every row of the panel at once."""
    window = config.tier_window_months
    amc = _shown_ratio(panel.measure[window], window)
    orders = panel.invoices[window]
    aos = np.where(orders > 0, _shown_ratio(panel.measure[window], np.maximum(orders, 1)), np.nan)
    has_core = panel.first_core_day != _BLANK
    month_ord = panel.months.year.to_numpy() * 12 + panel.months.month.to_numpy() - 1
    first_core_month = _month_ordinal(np.where(has_core, panel.first_core_day, 0))
    tenure = np.where(has_core, month_ord[panel.month_pos] - first_core_month + 1, -1)

    pm = panel.purchase_months
    active = pm[config.active_window_months] > 0
    meets = _thresholds_met(panel.tier_measure, orders, config)
    tier = _value_tier(active, pm[window] == 0, meets)
    event = _lifecycle_event(pm, config)
    state = _lifecycle_state(has_core, active, tier, event)
    return Labels(amc=amc, aos=aos, orders_tier=orders, tenure_months=tenure, has_core=has_core,
                  active=active, tier=tier, event=event, state=state, meets=meets)


def _shown_ratio(measure: np.ndarray, divisor: int | np.ndarray) -> np.ndarray:
    """A float ratio as shown: at 9 decimals (1200 / 6 is 200, 290 / 6 is 48.333333333) where
    floats hold 9 decimals; larger ratios as they are, since rounding them would move them."""
    ratio = measure / divisor
    return np.where(np.abs(ratio) < _ROUNDABLE, np.round(ratio, _DIGITS), ratio)


def _month_ordinal(days: np.ndarray) -> np.ndarray:
    # day numbers viewed as dates, not copied: one fresh array, then in place
    months = days.astype("int64", copy=False).view("datetime64[D]").astype("datetime64[M]").view("int64")
    months += 1970 * 12
    return months


def _thresholds_met(tier_measure: np.ndarray, orders: np.ndarray, cfg: Config) -> dict[str, np.ndarray]:
    """AMC >= T, AOS >= A and O >= F for each threshold, decided on the exact window sum.

    No division: AMC >= T is M >= T x window and AOS >= A is M >= A x O (with O > 0), in exact
    micro-units, so a customer exactly on a threshold is on it whatever the magnitudes.
    """
    window = cfg.tier_window_months
    ordered = orders > 0
    return {
        **{name: exact.mean_at_least(tier_measure, window, getattr(cfg, name))
           for name in ("t_high", "t_mid_high", "t_mid")},
        "a_high": ordered & exact.mean_at_least(tier_measure, np.maximum(orders, 1), cfg.a_high),
        **{name: exact.count_at_least(orders, getattr(cfg, name)) for name in ("f_high", "f_mid")},
    }


def _value_tier(active: np.ndarray, passive: np.ndarray, meets: dict[str, np.ndarray]) -> np.ndarray:
    """First match wins: Passive, Diamond, Platinum, Gold, Silver, Bronze; blank when not active."""
    conditions = [
        passive,
        meets["t_high"] & meets["a_high"] & meets["f_high"],
        meets["t_high"] & meets["f_mid"],
        meets["t_mid_high"],
        meets["t_mid"],
    ]
    tier = np.select(conditions, [PASSIVE, DIAMOND, PLATINUM, GOLD, SILVER], default=BRONZE)
    return np.where(active, tier, -1).astype("int8")


def _lifecycle_event(pm: dict[int, np.ndarray], cfg: Config) -> np.ndarray:
    """At most one event, first match wins: New, Lost, Reactivated.

    Written on purchase-month counts, which is the brief's volume form exactly: M1 > 0 and
    M1 = M_total means this month is the only month with a purchase; M12 = 0 and M13 > 0 means no
    purchase in 12 months but one 13 months back; M1 = M13 and M_total > M13 means a purchase this
    month, none in the 12 months before, and some earlier.
    """
    window = cfg.active_window_months
    gap = cfg.reactivation_gap_months
    bought_now = pm[1] > 0
    new = bought_now & (pm[0] == 1)
    lost = (pm[window] == 0) & (pm[window + 1] > 0)
    reactivated = bought_now & (pm[gap + 1] == 1) & (pm[0] > 1)
    return np.select([new, lost, reactivated], [NEW, LOST, REACTIVATED], default=-1).astype("int8")


def _lifecycle_state(has_core: np.ndarray, active: np.ndarray, tier: np.ndarray,
                     event: np.ndarray) -> np.ndarray:
    """Exactly one state per customer-month, first match wins (see the business-logic doc)."""
    conditions = [
        ~has_core,
        event == NEW,
        event == REACTIVATED,
        ~active,
        tier == PASSIVE,
    ]
    choices = [PROSPECT, STATE_NEW, STATE_REACTIVATED, STATE_LOST, LAPSING]
    return np.select(conditions, choices, default=ACTIVE).astype("int8")
