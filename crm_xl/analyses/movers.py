"""Movers and the tier migration matrix: who changed tier or state in the report month, and how tiers flow.

``movers`` is built from customer_snapshot (the report month with last month's tier and state beside
it), ``tier_migration`` from tier_transitions: both reuse the core's labels and reasons instead of
recomputing any rule. The definitions are in ``docs/business_logic.md``, sections 14.1 (movers) and
14.2 (tier migration).
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from crm_xl.config import CHURNED, EVENTS, PROSPECT, STATES, TIERS
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


def _codes(values: pd.Series, names: tuple[str, ...]) -> np.ndarray:
    """Positions of a label column's values in ``names`` (-1 = blank); cheap on the core's categoricals."""
    return pd.Categorical(values, categories=list(names)).codes.astype("int64")


_LABEL = {name: i for i, name in enumerate(TRANSITION_TIERS)}
_PROSPECT_STATE, _LOST_STATE = STATES.index(PROSPECT), STATES.index(CHURNED)
_NEW, _LOST, _REACTIVATED = (EVENTS.index(e) for e in ("New", "Lost", "Reactivated"))


_SNAPSHOT_COLUMNS = ["report_month", "customer_id", "customer_name", "previous_lifecycle_state", "lifecycle_state",
                     "lifecycle_event", "opt_email", "opt_sms", "opt_phone", "last_core_date", "tier_reason"]


def movers(snapshot: pd.DataFrame, active_window: int = 12, reactivation_gap: int = 12) -> pd.DataFrame:
    """One row per customer whose tier or state moved in the report month (see :data:`MOVE_PRECEDENCE`)."""
    tier, prev_tier = _codes(snapshot["value_tier"], TIERS), _codes(snapshot["previous_value_tier"], TIERS)
    state, prev_state = _codes(snapshot["lifecycle_state"], STATES), _codes(snapshot["previous_lifecycle_state"],
                                                                            STATES)
    event = _codes(snapshot["lifecycle_event"], EVENTS)
    # ranks in TRANSITION_TIERS: a tier is its own rank, so tier codes are label codes
    to_rank = np.where(tier >= 0, tier, np.where(state == _PROSPECT_STATE, _LABEL[_PROSPECT], _LABEL[_NOT_ACTIVE]))
    from_rank = np.where(prev_tier >= 0, prev_tier,
                         np.where(prev_state < 0, _LABEL[_NEW_TO_BASE],
                                  np.where(prev_state == _PROSPECT_STATE, _LABEL[_PROSPECT], _LABEL[_NOT_ACTIVE])))
    both_tiered = (tier >= 0) & (prev_tier >= 0)
    returned = (prev_state == _LOST_STATE) & (tier >= 0)   # back from Not Active without the event (gap > window)
    conditions = {
        "new": event == _NEW,
        "reactivated": (event == _REACTIVATED) | returned,
        "lost": event == _LOST,
        "lapsing": (tier == _PASSIVE) & (prev_tier >= 0) & (prev_tier < _PASSIVE),
        "upgrade": both_tiered & (tier < prev_tier),
        "downgrade": both_tiered & (tier > prev_tier),
    }
    code = np.select([conditions[m] for m in MOVE_PRECEDENCE], [MOVES.index(m) for m in MOVE_PRECEDENCE], -1)
    rows = np.flatnonzero(code >= 0)
    ids = snapshot["customer_id"].iloc[rows].to_numpy(dtype=object, na_value="").astype(str)
    order = np.lexsort((ids, from_rank[rows], to_rank[rows], code[rows]))
    rows = rows[order]
    picked = snapshot[_SNAPSHOT_COLUMNS].iloc[rows]
    move, from_code, to_code = code[rows], from_rank[rows], to_rank[rows]
    names = np.asarray(TRANSITION_TIERS, dtype=object)
    frame = pd.DataFrame({
        "report_month": picked["report_month"].to_numpy(),
        "customer_id": picked["customer_id"].astype("str").to_numpy(),
        "customer_name": picked["customer_name"].astype("str").to_numpy(),
        "move": pd.Categorical.from_codes(move, categories=pd.Index(list(MOVES), dtype="str")),
        "from_tier": pd.Categorical.from_codes(from_code, categories=pd.Index(list(_FROM_TIERS), dtype="str")),
        "to_tier": pd.Categorical.from_codes(to_code, categories=pd.Index(list(_TO_TIERS), dtype="str")),
        "from_state": picked["previous_lifecycle_state"].to_numpy(),
        "to_state": picked["lifecycle_state"].to_numpy(),
        "opt_email": picked["opt_email"].to_numpy(),
        "opt_sms": picked["opt_sms"].to_numpy(),
        "opt_phone": picked["opt_phone"].to_numpy(),
        "last_core_date": picked["last_core_date"].to_numpy(),
        "reason": _reasons(picked, move, names[from_code], names[to_code], active_window, reactivation_gap),
    })
    for column in ("from_state", "to_state"):
        frame[column] = pd.Categorical(frame[column], categories=pd.Index(list(STATES), dtype="str"))
    for column in ("opt_email", "opt_sms", "opt_phone"):
        frame[column] = pd.array(frame[column], dtype=snapshot[column].dtype)
    return frame.astype({"customer_id": "str", "customer_name": "str"})


def _reasons(picked: pd.DataFrame, move: np.ndarray, from_tier: np.ndarray, to_tier: np.ndarray,
             active_window: int, reactivation_gap: int) -> pd.Series:
    """``From -> To: why`` per mover, the why being the row's own tier_reason (without a leading
    ``Tier: ``, the arrow says the tier) and, for the lifecycle kinds, what happened. Built on object
    arrays (elementwise ``+`` in C): one conversion to text at the end, not one per step."""
    labels = "|".join(re.escape(label) for label in TRANSITION_TIERS)
    detail = pd.Series(_text(picked["tier_reason"]), dtype="str").str.replace(f"^(?:{labels}): ", "", regex=True)
    detail = detail.to_numpy(dtype=object)
    last = picked["last_core_date"].dt.strftime("%Y-%m-%d").fillna("none").to_numpy(dtype=object)
    silent = np.where(_text(picked["lifecycle_event"]) == "Reactivated", reactivation_gap, active_window)
    why = {
        MOVES.index("new"): "first core purchase this month; " + detail,
        MOVES.index("reactivated"): "bought again after " + silent.astype(str).astype(object)
                                    + "+ months without a core purchase; " + detail,
        MOVES.index("lapsing"): detail + "; last core purchase " + last,
        MOVES.index("lost"): detail + "; last core purchase " + last,
    }
    text = from_tier.astype(object) + " -> " + to_tier.astype(object) + ": " + detail
    for kind, words in why.items():
        hit = move == kind
        text[hit] = (from_tier[hit].astype(object) + " -> " + to_tier[hit].astype(object) + ": " + words[hit])
    return pd.Series(text, dtype="str")


def tier_migration(transitions: pd.DataFrame) -> pd.DataFrame:
    """Row-normalised migration matrix of the report month and of the last 12 months pooled, every
    (from_tier, to_tier) cell in rank order, zeros included; share blank where the from_tier had nobody."""
    month = transitions["report_month"].to_numpy()
    months = np.unique(month)
    cell = (_codes(transitions["from_tier"], _FROM_TIERS) * len(_TO_TIERS)
            + _codes(transitions["to_tier"], _TO_TIERS))
    customers = transitions["customers"].to_numpy(dtype="float64")
    frames = [_matrix(scope, cell, customers, month, months[-1:] if scope == SCOPES[0] else months[-POOLED_MONTHS:])
              for scope in SCOPES]
    frame = pd.concat(frames, ignore_index=True)
    frame["scope"] = pd.Categorical.from_codes(np.repeat(np.arange(len(SCOPES)), len(_FROM_TIERS) * len(_TO_TIERS)),
                                               categories=pd.Index(list(SCOPES), dtype="str"))
    return frame


def _matrix(scope: str, cell: np.ndarray, customers: np.ndarray, month: np.ndarray,
            months: np.ndarray) -> pd.DataFrame:
    size = len(_FROM_TIERS) * len(_TO_TIERS)
    used = np.isin(month, months)
    counts = np.bincount(cell[used], weights=customers[used], minlength=size).astype("int64")
    totals = counts.reshape(len(_FROM_TIERS), len(_TO_TIERS)).sum(axis=1).repeat(len(_TO_TIERS))
    share = np.where(totals > 0, counts / np.maximum(totals, 1), np.nan)
    report_month = months.max() if len(months) else np.datetime64("NaT", "s")
    cells = np.arange(size)
    return pd.DataFrame({
        "scope": scope,
        "report_month": np.full(size, report_month, dtype="datetime64[s]"),
        "months": np.full(size, len(months), dtype="int64"),
        "from_tier": pd.Categorical.from_codes(cells // len(_TO_TIERS), categories=pd.Index(list(_FROM_TIERS),
                                                                                               dtype="str")),
        "to_tier": pd.Categorical.from_codes(cells % len(_TO_TIERS), categories=pd.Index(list(_TO_TIERS), dtype="str")),
        "customers": counts,
        "share": share,
    })
