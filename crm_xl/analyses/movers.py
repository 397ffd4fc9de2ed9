"""Movers and the tier migration matrix: who changed tier or state in the report month, and how tiers flow.

``movers`` is built from customer_snapshot (the report month with last month's tier and state beside
it), ``tier_migration`` from tier_transitions: both reuse the core's labels and reasons instead of
recomputing any rule. The definitions are in ``docs/business_logic.md`` (section "Movers and tier
migration").
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from crm_xl.config import TIERS
from crm_xl.contract import MIGRATION_SCOPES as SCOPES
from crm_xl.contract import MOVES, TRANSITION_TIERS
from crm_xl.core.pipeline import CoreRun

#: The order in which the kinds are decided, first match wins (see the docs for why).
MOVE_PRECEDENCE: tuple[str, ...] = ("new", "reactivated", "lost", "lapsing", "upgrade", "downgrade")
#: tier_migration's second scope pools the moves into this many latest months.
POOLED_MONTHS = 12

_NOT_ACTIVE, _PROSPECT, _NEW_TO_BASE = TRANSITION_TIERS[len(TIERS):]
_FROM_TIERS = TRANSITION_TIERS
_TO_TIERS = TRANSITION_TIERS[:-1]          # nobody leaves the base, so New to base is never a to_tier
_PASSIVE = TIERS.index("Passive")


def movers_view(core: CoreRun) -> dict[str, pd.DataFrame]:
    """The ``movers`` and ``tier_migration`` tables."""
    return {"movers": movers(core.tables["customer_snapshot"], core.config.active_window_months,
                             core.config.reactivation_gap_months),
            "tier_migration": tier_migration(core.tables["tier_transitions"])}


def _text(values: pd.Series) -> np.ndarray:
    """A label column as an object array of str, "" where blank."""
    return values.astype(object).where(values.notna(), "").to_numpy(dtype=object).astype(str)


def _rank(labels: np.ndarray) -> np.ndarray:
    """Rank of a transition label in TRANSITION_TIERS (Diamond = 0)."""
    return pd.Categorical(labels, categories=list(TRANSITION_TIERS)).codes.astype("int64")


def movers(snapshot: pd.DataFrame, active_window: int = 12, reactivation_gap: int = 12) -> pd.DataFrame:
    """One row per customer whose tier or state moved in the report month (see :data:`MOVE_PRECEDENCE`)."""
    tier, prev_tier = _text(snapshot["value_tier"]), _text(snapshot["previous_value_tier"])
    state, prev_state = _text(snapshot["lifecycle_state"]), _text(snapshot["previous_lifecycle_state"])
    event = _text(snapshot["lifecycle_event"])
    to_tier = np.where(tier != "", tier, np.where(state == "prospect", _PROSPECT, _NOT_ACTIVE))
    from_tier = np.where(prev_tier != "", prev_tier,
                         np.where(prev_state == "", _NEW_TO_BASE, np.where(prev_state == "prospect", _PROSPECT,
                                                                           _NOT_ACTIVE)))
    to_rank, from_rank = _rank(to_tier), _rank(from_tier)
    both_tiered = (tier != "") & (prev_tier != "")
    returned = (prev_state == "lost") & (tier != "")     # back from Not Active without the event (gap > window)
    conditions = {
        "new": event == "New",
        "reactivated": (event == "Reactivated") | returned,
        "lost": event == "Lost",
        "lapsing": (to_rank == _PASSIVE) & (prev_tier != "") & (from_rank < _PASSIVE),
        "upgrade": both_tiered & (to_rank < from_rank),
        "downgrade": both_tiered & (to_rank > from_rank),
    }
    code = np.select([conditions[m] for m in MOVE_PRECEDENCE], [MOVES.index(m) for m in MOVE_PRECEDENCE], -1)
    rows = np.flatnonzero(code >= 0)
    order = np.lexsort((snapshot["customer_id"].to_numpy(dtype=object, na_value="")[rows].astype(str),
                        from_rank[rows], to_rank[rows], code[rows]))
    rows = rows[order]
    picked = snapshot.iloc[rows]
    move = code[rows]
    frame = pd.DataFrame({
        "report_month": picked["report_month"].to_numpy(),
        "customer_id": picked["customer_id"].astype("str").to_numpy(),
        "customer_name": picked["customer_name"].astype("str").to_numpy(),
        "move": pd.Categorical.from_codes(move, categories=pd.Index(list(MOVES), dtype="str")),
        "from_tier": pd.Categorical(from_tier[rows], categories=pd.Index(list(_FROM_TIERS), dtype="str")),
        "to_tier": pd.Categorical(to_tier[rows], categories=pd.Index(list(_TO_TIERS), dtype="str")),
        "from_state": picked["previous_lifecycle_state"].to_numpy(),
        "to_state": picked["lifecycle_state"].to_numpy(),
        "opt_email": picked["opt_email"].to_numpy(),
        "opt_sms": picked["opt_sms"].to_numpy(),
        "opt_phone": picked["opt_phone"].to_numpy(),
        "last_core_date": picked["last_core_date"].to_numpy(),
        "reason": _reasons(picked, move, from_tier[rows], to_tier[rows], active_window, reactivation_gap),
    })
    for column in ("from_state", "to_state"):
        frame[column] = pd.Categorical(frame[column], categories=snapshot["lifecycle_state"].cat.categories)
    for column in ("opt_email", "opt_sms", "opt_phone"):
        frame[column] = pd.array(frame[column], dtype=snapshot[column].dtype)
    frame["customer_name"] = frame["customer_name"].where(picked["customer_name"].notna().to_numpy())
    return frame.astype({"customer_id": "str", "customer_name": "str"})


def _reasons(picked: pd.DataFrame, move: np.ndarray, from_tier: np.ndarray, to_tier: np.ndarray,
             active_window: int, reactivation_gap: int) -> pd.Series:
    """``From -> To: why`` per mover, the why being the row's own tier_reason (without its leading
    ``Tier: ``, the arrow says the tier) and, for the lifecycle kinds, what happened."""
    reasons = _text(picked["tier_reason"])
    detail = [reason.removeprefix(f"{label}: ") for reason, label in zip(reasons, to_tier, strict=True)]
    last = picked["last_core_date"].dt.strftime("%Y-%m-%d").fillna("none").to_numpy(dtype=object)
    silent = np.where(_text(picked["lifecycle_event"]) == "Reactivated", reactivation_gap, active_window)
    news = {
        MOVES.index("new"): lambda i: f"first core purchase this month; {detail[i]}",
        MOVES.index("reactivated"): lambda i: f"bought again after {silent[i]}+ months without a core purchase; "
                                              f"{detail[i]}",
        MOVES.index("lapsing"): lambda i: f"{detail[i]}; last core purchase {last[i]}",
        MOVES.index("lost"): lambda i: f"{detail[i]}; last core purchase {last[i]}",
    }
    texts = [f"{from_tier[i]} -> {to_tier[i]}: " + (news[m](i) if m in news else detail[i])
             for i, m in enumerate(move)]
    return pd.Series(texts, dtype="str")


def tier_migration(transitions: pd.DataFrame) -> pd.DataFrame:
    """Row-normalised migration matrix of the report month and of the last 12 months pooled, every
    (from_tier, to_tier) cell in rank order, zeros included; share blank where the from_tier had nobody."""
    months = np.sort(pd.unique(transitions["report_month"]))
    latest = months[-1:] if len(months) else months
    frames = [_matrix(transitions, scope, latest if scope == SCOPES[0] else months[-POOLED_MONTHS:])
              for scope in SCOPES]
    frame = pd.concat(frames, ignore_index=True)
    frame["scope"] = pd.Categorical(frame["scope"], categories=pd.Index(list(SCOPES), dtype="str"))
    for column, names in (("from_tier", _FROM_TIERS), ("to_tier", _TO_TIERS)):
        frame[column] = pd.Categorical(frame[column], categories=pd.Index(list(names), dtype="str"))
    return frame


def _matrix(transitions: pd.DataFrame, scope: str, months: np.ndarray) -> pd.DataFrame:
    rows = transitions[transitions["report_month"].isin(months)]
    from_code = pd.Categorical(rows["from_tier"], categories=list(_FROM_TIERS)).codes.astype("int64")
    to_code = pd.Categorical(rows["to_tier"], categories=list(_TO_TIERS)).codes.astype("int64")
    size = len(_FROM_TIERS) * len(_TO_TIERS)
    counts = np.bincount(from_code * len(_TO_TIERS) + to_code, weights=rows["customers"].to_numpy(dtype="float64"),
                         minlength=size).astype("int64").reshape(len(_FROM_TIERS), len(_TO_TIERS))
    totals = counts.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(totals > 0, counts / np.maximum(totals, 1), np.nan)
    report_month = months.max() if len(months) else np.datetime64("NaT", "s")
    return pd.DataFrame({
        "scope": scope,
        "report_month": np.full(size, report_month, dtype="datetime64[s]"),
        "months": np.full(size, len(months), dtype="int64"),
        "from_tier": np.repeat(np.asarray(_FROM_TIERS, dtype=object), len(_TO_TIERS)),
        "to_tier": np.tile(np.asarray(_TO_TIERS, dtype=object), len(_FROM_TIERS)),
        "customers": counts.ravel(),
        "share": share.ravel(),
    })
