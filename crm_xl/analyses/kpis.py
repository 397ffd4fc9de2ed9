"""Monthly KPIs: the base, its flows and rates, volume and revenue, tier and segment mix, month over month.

Built from the core's summary tables, never from the customer-month history: monthly_summary has every
count of a month (and its volume and revenue), tier_transitions what each customer was the month
before (also for the first history month, from the extra month the core computes). So the view costs
the same for 1,000 customers as for a million. Definitions: ``docs/business_logic.md``, section "KPIs".
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


def _counts(summary: pd.DataFrame, dimension: str, column: str = "customers") -> pd.DataFrame:
    """Month x category of one dimension of monthly_summary."""
    rows = summary[summary["dimension"] == dimension]
    wide = rows.pivot(index="report_month", columns="category", values=column)
    return wide.sort_index()


def _ratio(numerator: pd.Series, denominator: pd.Series) -> pd.Series:
    """numerator / denominator as float, blank where the denominator is 0."""
    den = denominator.astype("float64")
    return (numerator.astype("float64") / den.where(den > 0)).astype("float64")


def kpis(summary: pd.DataFrame, transitions: pd.DataFrame) -> pd.DataFrame:
    """One row per report month, months ascending (see the contract for the columns)."""
    status = _counts(summary, "activity_status")
    events = _counts(summary, "lifecycle_event")
    tiers = _counts(summary, "value_tier")
    months = status.index
    tiered = transitions["from_tier"].isin(TIERS)
    came_from = transitions.assign(
        active_before=np.where(tiered, transitions["customers"], 0),
        retained=np.where(tiered & transitions["to_tier"].isin(TIERS), transitions["customers"], 0),
        inactive_before=np.where(transitions["from_tier"] == _NOT_ACTIVE, transitions["customers"], 0),
        won_back=np.where((transitions["from_tier"] == _NOT_ACTIVE) & transitions["to_tier"].isin(TIERS),
                          transitions["customers"], 0),
    ).groupby("report_month")[["active_before", "retained", "inactive_before", "won_back"]].sum()
    came_from = came_from.reindex(months, fill_value=0)
    volume = _counts(summary, "activity_status", "volume_m1").sum(axis=1)
    revenue = _counts(summary, "activity_status", "revenue_m1").sum(axis=1)
    frame = pd.DataFrame({
        "customers": status.sum(axis=1).astype("int64"),
        "active": status["Active"].astype("int64"),
        "new": events["New"].astype("int64"),
        "reactivated": events["Reactivated"].astype("int64"),
        "lost": events["Lost"].astype("int64"),
        "active_last_month": came_from["active_before"].astype("int64"),
        "inactive_last_month": came_from["inactive_before"].astype("int64"),
    }, index=months)
    frame["churn_rate"] = _ratio(frame["lost"], frame["active_last_month"])
    frame["retention_rate"] = _ratio(came_from["retained"], frame["active_last_month"])
    frame["reactivation_rate"] = _ratio(came_from["won_back"], frame["inactive_last_month"])
    frame["volume"] = volume.astype("float64")
    frame["revenue"] = revenue.astype("float64")
    frame["volume_per_active"] = _ratio(frame["volume"], frame["active"])
    frame["revenue_per_active"] = _ratio(frame["revenue"], frame["active"])
    for tier, column in zip(TIERS, TIER_SHARE_COLUMNS, strict=True):
        frame[column] = _ratio(tiers[tier], frame["active"])
    for column in RELATIVE_CHANGE:
        before = frame[column].shift(1)
        frame[f"{column}_mom"] = _ratio(frame[column] - before, before)
    for column in POINT_CHANGE:
        frame[f"{column}_mom"] = (frame[column] - frame[column].shift(1)).astype("float64")
    frame = frame.reset_index()
    frame["report_month"] = frame["report_month"].astype("datetime64[s]")
    return frame


def segment_shares(summary: pd.DataFrame) -> pd.DataFrame:
    """Per month and RFM segment (in segment-map order): customers, share of the scored customers and
    its change against last month. Long, so a renamed or added segment is a row, not a new column."""
    rows = summary.loc[summary["dimension"] == "rfm_segment", ["report_month", "category", "customers"]]
    rows = rows.rename(columns={"category": "rfm_segment"}).reset_index(drop=True)
    scored = rows.groupby("report_month")["customers"].transform("sum")
    rows["share"] = _ratio(rows["customers"], scored)
    rows["share_mom"] = (rows["share"] - rows.groupby("rfm_segment", sort=False)["share"].shift(1)).astype("float64")
    rows["customers"] = rows["customers"].astype("int64")
    rows["rfm_segment"] = rows["rfm_segment"].astype("str")
    rows["report_month"] = rows["report_month"].astype("datetime64[s]")
    return rows
