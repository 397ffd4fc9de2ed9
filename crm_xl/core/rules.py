"""Rules layer: activity status, value tier, lifecycle event and lifecycle state per customer-month.

Reads the snapshot panel only. Labels are integer codes into the name tuples of
:mod:`crm_xl.config` (-1 = blank) so the big history stays small until the outputs layer names
them. The rules, their order and defaults are those of ``docs/business_logic.md``.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from crm_xl.config import STATES, Config
from crm_xl.core.snapshots import _BLANK, Panel

# Codes into config.TIERS / EVENTS / STATES.
DIAMOND, PLATINUM, GOLD, SILVER, BRONZE, PASSIVE = range(6)
NEW, LOST, REACTIVATED = range(3)
PROSPECT, STATE_NEW, ACTIVE, LAPSING, STATE_LOST, STATE_REACTIVATED = range(len(STATES))
_DIGITS = 9  # AMC and AOS are compared to thresholds at 9 decimals, so 1200/6 is exactly 200


@dataclasses.dataclass(frozen=True)
class Labels:
    """Derived figures and rule outcomes, aligned with the panel's rows."""

    amc: np.ndarray
    aos: np.ndarray                # NaN when there was no order in the tier window
    orders_tier: np.ndarray        # invoices in the tier window (O6 by default)
    tenure_months: np.ndarray      # -1 before the first core purchase
    has_core: np.ndarray           # any core purchase up to the month's end
    active: np.ndarray
    tier: np.ndarray               # -1 when not active
    event: np.ndarray              # -1 when no event
    state: np.ndarray


def apply_rules(panel: Panel, config: Config) -> Labels:
    """Evaluate every rule for every row of the panel at once."""
    window = config.tier_window_months
    amc = np.round(panel.measure[window] / window, _DIGITS)
    orders = panel.invoices[window]
    with np.errstate(divide="ignore", invalid="ignore"):
        aos = np.where(orders > 0, np.round(panel.measure[window] / np.maximum(orders, 1), _DIGITS), np.nan)
    has_core = panel.first_core_day != _BLANK
    month_ord = panel.months.year.to_numpy() * 12 + panel.months.month.to_numpy() - 1
    first_core_month = _month_ordinal(np.where(has_core, panel.first_core_day, 0))
    tenure = np.where(has_core, month_ord[panel.month_pos] - first_core_month + 1, -1)

    pm = panel.purchase_months
    active = pm[config.active_window_months] > 0
    tier = _value_tier(active, pm[window] == 0, amc, aos, orders, config)
    event = _lifecycle_event(pm, config)
    state = _lifecycle_state(has_core, active, tier, event)
    return Labels(amc=amc, aos=aos, orders_tier=orders, tenure_months=tenure, has_core=has_core,
                  active=active, tier=tier, event=event, state=state)


def _month_ordinal(days: np.ndarray) -> np.ndarray:
    return days.astype("datetime64[D]").astype("datetime64[M]").astype("int64") + 1970 * 12


def _value_tier(active: np.ndarray, passive: np.ndarray, amc: np.ndarray, aos: np.ndarray,
                orders: np.ndarray, cfg: Config) -> np.ndarray:
    """First match wins: Passive, Diamond, Platinum, Gold, Silver, Bronze; blank when not active."""
    with np.errstate(invalid="ignore"):
        high_aos = aos >= cfg.a_high
    conditions = [
        passive,
        (amc >= cfg.t_high) & high_aos & (orders >= cfg.f_high),
        (amc >= cfg.t_high) & (orders >= cfg.f_mid),
        amc >= cfg.t_mid_high,
        amc >= cfg.t_mid,
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
