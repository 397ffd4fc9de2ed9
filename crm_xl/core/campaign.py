"""Campaign fields of customer_snapshot: what a campaign manager filters on beyond this month's labels.

"Gold customers with email opt-in who lapsed" needs the tier a customer had before lapsing (lapsing
customers are Passive, lost ones have no tier): every field here reads one customer's months of the
panel, or the per-customer facts, so it runs per customer partition like the rules.

Months are counted within the history range (``history_months``): a state that began before the
history's first month shows that month as ``state_since``.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from crm_xl.config import TIERS
from crm_xl.core.rules import Labels
from crm_xl.core.snapshots import _BLANK, Panel

TIER_CHANGES = ("up", "down", "same", "new", "left")
_PASSIVE = TIERS.index("Passive")
_OUT = -2               # not in the base that month (a blank tier is -1)
PEAK_MONTHS = 12


@dataclasses.dataclass(frozen=True)
class LabelMonths:
    """Tier and state codes of the report month's customers (``keys``, by customer_key) in every
    month of the history and the month before it: months x customers grids, ``_OUT`` where a
    customer was not in the base yet, -1 for a blank label."""

    months: pd.PeriodIndex
    keys: np.ndarray
    tiers: np.ndarray
    states: np.ndarray


def label_months(panel: Panel, labels: Labels, customer_ids: pd.Series,
                 earlier: pd.DataFrame | None = None) -> LabelMonths:
    """The panel's labels as grids; with ``earlier`` (customer_history rows of the months before the
    panel's first history month, the panel's own first month included), those months come first."""
    keys = panel.customer_key[panel.month_rows(len(panel.months) - 1)]
    tiers, states = _grid(panel, labels.tier, keys), _grid(panel, labels.state, keys)
    if earlier is None:
        return LabelMonths(panel.months, keys, tiers, states)
    months = pd.PeriodIndex(pd.to_datetime(earlier["report_month"]).drop_duplicates().sort_values(), freq="M")
    if not len(months) or months[-1] != panel.months[0] or len(months) != months[-1].ordinal - months[0].ordinal + 1:
        raise RuntimeError(f"the earlier months {list(months.astype(str))} do not end where the panel begins "
                           f"({panel.months[0]})")
    month_pos = pd.PeriodIndex(pd.to_datetime(earlier["report_month"]), freq="M").asi8 - months[0].ordinal
    column = _columns_of(keys, len(customer_ids))[pd.Index(customer_ids).get_indexer(earlier["customer_id"])]
    kept = column >= 0

    def grid(codes: pd.Series) -> np.ndarray:
        out = np.full((len(months), len(keys)), _OUT, dtype="int8")
        out[month_pos[kept], column[kept]] = codes.cat.codes.to_numpy()[kept]
        return out

    # the panel's first month is the last earlier month: the stored one is taken, both are the same
    return LabelMonths(months.append(panel.months[1:]), keys, np.vstack([grid(earlier["value_tier"]), tiers[1:]]),
                       np.vstack([grid(earlier["lifecycle_state"]), states[1:]]))


def campaign_fields(panel: Panel, months: LabelMonths, per_customer: pd.DataFrame, products: pd.DataFrame
                    ) -> pd.DataFrame:
    """The campaign columns for the report month's customers, indexed by customer_key."""
    last = len(months.months) - 1
    rows = panel.month_rows(len(panel.months) - 1)
    keys, tiers, states = months.keys, months.tiers, months.states
    since = _run_start(states, first=1)
    facts = per_customer.set_index("customer_key").reindex(keys)
    month_end = panel.month_end_day[rows]
    return pd.DataFrame({
        "last_active_tier": _tier_labels(_latest_where(tiers[1:], (tiers[1:] >= 0) & (tiers[1:] != _PASSIVE))),
        "peak_tier_12m": _tier_labels(_best(tiers[max(last - PEAK_MONTHS + 1, 0):])),
        "tier_change": _changes(tiers[last - 1] if last >= 1 else np.full(len(keys), _OUT), tiers[last]),
        "months_in_state": (last - since + 1).astype("int64"),
        "state_since": months.months[since].to_timestamp().to_numpy().astype("datetime64[s]"),
        "days_since_last_purchase": _days_since(facts["last_purchase_day"], month_end),
        "expected_next_purchase": _expected_next(panel.last_core_day[rows], facts),
        **_favourite(facts["favourite_product_key"], products),
    }, index=keys)


def _columns_of(keys: np.ndarray, n_customers: int) -> np.ndarray:
    """Per customer_key, its column among ``keys``; -1 for a customer not among them."""
    column = np.full(n_customers, -1, dtype="int64")
    column[keys] = np.arange(len(keys))
    return column


def _grid(panel: Panel, codes: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """months x the report month's customers, ``_OUT`` where a customer was not in the base yet."""
    column = _columns_of(keys, int(panel.customer_key.max()) + 1 if panel.rows else 0)
    grid = np.full((len(panel.months), len(keys)), _OUT, dtype="int8")
    at = column[panel.customer_key]
    kept = at >= 0
    grid[panel.month_pos[kept], at[kept]] = codes[kept]
    return grid


def _latest_where(grid: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per column, the grid's value in the latest month where ``mask`` holds; -1 where it never does."""
    if not len(grid):
        return np.full(grid.shape[1], -1, dtype="int64")
    back = mask[::-1].argmax(axis=0)
    found = mask.any(axis=0)
    values = grid[len(grid) - 1 - back, np.arange(grid.shape[1])].astype("int64")
    return np.where(found, values, -1)


def _best(grid: np.ndarray) -> np.ndarray:
    """Per column, the best (lowest-ranked) tier; -1 where the customer had none."""
    ranked = np.where(grid >= 0, grid, len(TIERS)).min(axis=0, initial=len(TIERS))
    return np.where(ranked < len(TIERS), ranked, -1).astype("int64")


def _tier_labels(codes: np.ndarray) -> pd.Categorical:
    return pd.Categorical.from_codes(codes.astype("int32"), categories=pd.Index(list(TIERS), dtype="str"))


def _changes(before: np.ndarray, now: np.ndarray) -> pd.Categorical:
    """up / down / same by tier rank (Passive ranks last), new (no tier last month), left (no tier now)."""
    had, has = before >= 0, now >= 0
    code = np.select([had & has & (now < before), had & has & (now > before), had & has & (now == before),
                      ~had & has, had & ~has], [0, 1, 2, 3, 4], default=-1)
    return pd.Categorical.from_codes(code.astype("int32"), categories=pd.Index(list(TIER_CHANGES), dtype="str"))


def _run_start(grid: np.ndarray, first: int) -> np.ndarray:
    """Per column, the first month (from ``first``) of the run of equal values ending in the last month."""
    last = len(grid) - 1
    differs = grid[first:] != grid[last]
    any_differs = differs.any(axis=0)
    latest_differ = last - differs[::-1].argmax(axis=0)
    return np.where(any_differs, latest_differ + 1, first).astype("int64")


def _days_since(last_day: pd.Series, month_end: np.ndarray) -> pd.arrays.IntegerArray:
    day = last_day.to_numpy(dtype="float64", na_value=np.nan)
    blank = np.isnan(day) | (day == float(np.iinfo(np.int64).min))
    return pd.arrays.IntegerArray(np.where(blank, 0, month_end - np.nan_to_num(day)).astype("int64"), blank)


def _expected_next(last_core_day: np.ndarray, facts: pd.DataFrame) -> np.ndarray:
    """The last core purchase plus the customer's median gap between purchase days (half up)."""
    low = facts["median_gap_low"].to_numpy(dtype="float64", na_value=-1)
    high = facts["median_gap_high"].to_numpy(dtype="float64", na_value=-1)
    known = (low >= 0) & (last_core_day != _BLANK)
    out = np.full(len(low), np.datetime64("NaT"), dtype="datetime64[s]")
    gap = (low[known].astype("int64") + high[known].astype("int64") + 1) // 2
    out[known] = (last_core_day[known] + gap).astype("datetime64[D]").astype("datetime64[s]")
    return out


def _favourite(product_key: pd.Series, products: pd.DataFrame) -> dict[str, pd.Series]:
    key = product_key.to_numpy(dtype="float64", na_value=-1).astype("int64")
    found = key >= 0
    columns = {}
    for out, source in (("favourite_product", "product_id"), ("favourite_product_name", "product_name"),
                        ("favourite_category", "category")):
        values = pd.Series(pd.NA, index=product_key.index, dtype="str")
        values[found] = products[source].to_numpy()[key[found]]
        columns[out] = values
    return columns

