"""Monthly KPIs: the base, its flows and rates, volume and revenue, tier and segment mix, month over month.

Built from the core's summary tables, never from the customer-month history: monthly_summary has every
count of a month (and its volume and revenue), tier_transitions what each customer was the month
before (also for the first history month, from the extra month the core computes). So the view costs
the same for 1,000 customers as for a million. Definitions: ``docs/business_logic.md``, section 14.3.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from crm_xl.config import TIERS
from crm_xl.contract import TRANSITION_TIERS
from crm_xl.core.pipeline import CoreRun

_NOT_ACTIVE = TRANSITION_TIERS[len(TIERS)]
#: kpis' tier-share columns, one per tier in rank order.
TIER_SHARE_COLUMNS: tuple[str, ...] = tuple(f"share_{tier.lower()}" for tier in TIERS)
#: Figures whose month-over-month change is a relative change (this / last - 1).
RELATIVE_CHANGE = ("customers", "active", "new", "reactivated", "lost", "volume", "revenue", "volume_per_active",
                   "revenue_per_active")
#: Rates whose month-over-month change is a difference (in points of a share).
POINT_CHANGE = ("churn_rate", "retention_rate", "reactivation_rate")


def kpis_view(core: CoreRun) -> dict[str, pd.DataFrame]:
    """The ``kpis`` and ``segment_shares`` tables."""
    summary = core.tables["monthly_summary"]
    return {"kpis": kpis(summary, core.tables["tier_transitions"]), "segment_shares": segment_shares(summary)}


class _Months:
    """Sums per report month of rows picked by a mask, on numpy arrays (the tables are small, and
    pandas' per-call overhead would be most of the view's time)."""

    def __init__(self, months: np.ndarray) -> None:
        self.months = np.unique(months)

    def sum(self, month: np.ndarray, mask: np.ndarray, values: np.ndarray) -> np.ndarray:
        position = np.searchsorted(self.months, month[mask])
        return np.bincount(position, weights=values[mask], minlength=len(self.months))


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, blank (NaN) where the denominator is 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denominator > 0, numerator / np.where(denominator > 0, denominator, 1), np.nan)


def _before(values: np.ndarray) -> np.ndarray:
    """Last month's value of each month (NaN for the first)."""
    return np.concatenate([[np.nan], values[:-1]]) if len(values) else values.astype("float64")


def kpis(summary: pd.DataFrame, transitions: pd.DataFrame) -> pd.DataFrame:
    """One row per report month, months ascending (see the contract for the columns)."""
    month, dimension = summary["report_month"].to_numpy(), summary["dimension"].to_numpy(dtype=object)
    category = summary["category"].to_numpy(dtype=object)
    customers = summary["customers"].to_numpy(dtype="float64")
    at = _Months(month)

    def count(dim: str, cat: str | None = None, values: np.ndarray = customers) -> np.ndarray:
        mask = (dimension == dim) if cat is None else (dimension == dim) & (category == cat)
        return at.sum(month, mask, values)

    t_month = transitions["report_month"].to_numpy()
    tiered_from = transitions["from_tier"].isin(TIERS).to_numpy()
    tiered_to = transitions["to_tier"].isin(TIERS).to_numpy()
    inactive_from = (transitions["from_tier"] == _NOT_ACTIVE).to_numpy()
    moved = transitions["customers"].to_numpy(dtype="float64")
    columns: dict[str, np.ndarray] = {
        "customers": count("activity_status"),
        "active": count("activity_status", "Active"),
        "new": count("lifecycle_event", "New"),
        "reactivated": count("lifecycle_event", "Reactivated"),
        "lost": count("lifecycle_event", "Lost"),
        "active_last_month": at.sum(t_month, tiered_from, moved),
        "inactive_last_month": at.sum(t_month, inactive_from, moved),
    }
    retained = at.sum(t_month, tiered_from & tiered_to, moved)
    won_back = at.sum(t_month, inactive_from & tiered_to, moved)
    columns["churn_rate"] = _ratio(columns["lost"], columns["active_last_month"])
    columns["retention_rate"] = _ratio(retained, columns["active_last_month"])
    columns["reactivation_rate"] = _ratio(won_back, columns["inactive_last_month"])
    columns["volume"] = count("activity_status", values=summary["volume_m1"].to_numpy(dtype="float64"))
    columns["revenue"] = count("activity_status", values=summary["revenue_m1"].to_numpy(dtype="float64"))
    columns["volume_per_active"] = _ratio(columns["volume"], columns["active"])
    columns["revenue_per_active"] = _ratio(columns["revenue"], columns["active"])
    for tier, column in zip(TIERS, TIER_SHARE_COLUMNS, strict=True):
        columns[column] = _ratio(count("value_tier", tier), columns["active"])
    for column in RELATIVE_CHANGE:
        before = _before(columns[column])
        columns[f"{column}_mom"] = _ratio(columns[column] - before, np.nan_to_num(before))
    for column in POINT_CHANGE:
        columns[f"{column}_mom"] = columns[column] - _before(columns[column])
    frame = pd.DataFrame({"report_month": at.months.astype("datetime64[s]"), **columns})
    counts = ["customers", "active", "new", "reactivated", "lost", "active_last_month", "inactive_last_month"]
    return frame.astype(dict.fromkeys(counts, "int64"))


def segment_shares(summary: pd.DataFrame) -> pd.DataFrame:
    """Per month and RFM segment (in segment-map order): customers, share of the scored customers and
    its change against last month. Long, so a renamed or added segment is a row, not a new column."""
    rows = summary.loc[summary["dimension"] == "rfm_segment", ["report_month", "category", "customers"]]
    rows = rows.rename(columns={"category": "rfm_segment"}).reset_index(drop=True)
    scored = rows.groupby("report_month")["customers"].transform("sum")
    rows["share"] = _ratio(rows["customers"].to_numpy(dtype="float64"), scored.to_numpy(dtype="float64"))
    rows["share_mom"] = (rows["share"] - rows.groupby("rfm_segment", sort=False)["share"].shift(1)).astype("float64")
    rows["customers"] = rows["customers"].astype("int64")
    rows["rfm_segment"] = rows["rfm_segment"].astype("str")
    rows["report_month"] = rows["report_month"].astype("datetime64[s]")
    return rows
