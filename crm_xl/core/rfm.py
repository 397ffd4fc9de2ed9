"""RFMT layer: recency, frequency, monetary and tenure scores 1-5 per snapshot month, and segments.

Scores come from four cut points per field and month: quintiles of that month's values
(``rfm_method = quantile``) or the fixed cut points of the config. A value's score depends only
on how many cut points lie below it, so equal values always share a score. Higher is better:
recent purchases, more orders, more volume and longer tenure score 5.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import numpy as np
import pandas as pd

from crm_xl.config import SCORE_FIELDS, Config
from crm_xl.core.rules import Labels
from crm_xl.core.snapshots import Panel

_QUANTILES = (0.2, 0.4, 0.6, 0.8)
_CUT_DIGITS = 6


@dataclasses.dataclass(frozen=True)
class Scores:
    """Values and scores per panel row (score 0 = not scored: outside ``rfm_population`` that month)."""

    scored: np.ndarray              # in the month's scored population
    values: dict[str, np.ndarray]   # field -> value (NaN before the first core purchase)
    scores: dict[str, np.ndarray]   # field -> 0..5 (int8)
    fm: np.ndarray                  # ceil((F + M) / 2), 0 when not scored
    segment: np.ndarray             # index into ``segment_names``, -1 when not scored
    segment_names: tuple[str, ...]
    cut_points: pd.DataFrame


#: Four cut points per (panel month position, field); a month without one is not scored on it.
Cuts = dict[tuple[int, str], np.ndarray]


def score_rfm(panel: Panel, labels: Labels, config: Config, cuts: Cuts | None = None) -> Scores:
    """Score, month by month, the customers of ``rfm_population``: those Active at the month's end
    (the seed system's RFMT, cut points from them alone), or everyone with a core purchase so far.

    ``cuts`` gives the cut points (:func:`cut_points` of every customer's :func:`scored_values`)
    when the panel holds one customer partition: quintiles are the only figures that read across
    customers, so a partitioned run computes them once, centrally, from every partition."""
    scored, values = rfm_values(panel, labels, config)
    scores = {field: np.zeros(panel.rows, dtype="int8") for field in SCORE_FIELDS}
    cut_rows = []
    for m, field, rows, in_month, month_values in _month_fields(panel, scored, values):
        month_cuts = _cut_points(month_values, field, config) if cuts is None else cuts.get((m, field))
        if month_cuts is None:
            continue
        below = np.searchsorted(month_cuts, month_values, side="left")   # cut points strictly below
        field_scores = np.empty(len(month_values), dtype="int8")
        field_scores[:] = 5 - below if field == "recency" else 1 + below
        target = scores[field][rows]
        target[in_month] = field_scores
        cut_rows.append((panel.months[m].to_timestamp(), field, config.rfm_method, *month_cuts, len(month_values)))
    fm = np.where(scored, np.ceil((scores["frequency"] + scores["monetary"]) / 2), 0).astype("int8")
    segment_names, grid = _segment_grid(config)
    segment = np.where(scored, grid[scores["recency"], fm], -1).astype("int8")
    cut_frame = pd.DataFrame(cut_rows, columns=["report_month", "field", "method", "cut_1", "cut_2",
                                                "cut_3", "cut_4", "customers_scored"])
    return Scores(scored=scored, values=values, scores=scores, fm=fm, segment=segment, segment_names=segment_names,
                  cut_points=cut_frame)


def rfm_values(panel: Panel, labels: Labels, config: Config) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Who is scored, and the four values of every row (NaN before the first core purchase)."""
    buyers = labels.has_core    # the values are facts of every buyer, shown even when not scored
    scored = labels.active if config.rfm_population == "active" else buyers
    # np.where with NaN already gives fresh float64 arrays: no further copy
    values = {
        "recency": np.where(buyers, panel.month_end_day - panel.last_core_day, np.nan).astype("float64", copy=False),
        "frequency": np.where(buyers, panel.invoices[config.rfm_window_months], np.nan).astype("float64", copy=False),
        "monetary": np.where(buyers, panel.rfm_monetary, np.nan),
        "tenure": np.where(buyers, labels.tenure_months, np.nan).astype("float64", copy=False),
    }
    return scored, values


def scored_values(panel: Panel, scored: np.ndarray, values: dict[str, np.ndarray]) -> dict[tuple[int, str], np.ndarray]:
    """The scored rows' values, per (panel month position, field): all the cut points read."""
    return {(m, field): month_values for m, field, _, _, month_values in _month_fields(panel, scored, values)}


def _month_fields(panel: Panel, scored: np.ndarray, values: dict[str, np.ndarray]
                  ) -> Iterator[tuple[int, str, slice, np.ndarray, np.ndarray]]:
    """Per (month position, field): the month's rows, which of them are scored, and their values."""
    bounds = np.searchsorted(panel.month_pos, np.arange(len(panel.months) + 1))
    for m in range(len(panel.months)):
        rows = slice(bounds[m], bounds[m + 1])
        in_month = scored[rows]
        for field in SCORE_FIELDS:
            yield m, field, rows, in_month, values[field][rows][in_month]


def cut_points(month_values: dict[tuple[int, str], np.ndarray], config: Config, n_months: int) -> Cuts:
    """The cut points of every (month, field) from its scored values (in any order: quantiles sort)."""
    out: Cuts = {}
    for m in range(n_months):
        for field in SCORE_FIELDS:
            cuts = _cut_points(month_values.get((m, field), np.empty(0)), field, config)
            if cuts is not None:
                out[(m, field)] = cuts
    return out


def _cut_points(values: np.ndarray, field: str, config: Config) -> np.ndarray | None:
    if config.rfm_method == "fixed":
        return np.asarray(config.cuts_for(field), dtype="float64")
    if len(values) == 0:
        return None
    return np.round(np.quantile(values, _QUANTILES), _CUT_DIGITS)


def _segment_grid(config: Config) -> tuple[tuple[str, ...], np.ndarray]:
    """A 6x6 lookup (R, FM) -> segment index; row/column 0 unused (not scored)."""
    names = tuple(dict.fromkeys(name for name, _ in config.segment_map))
    grid = np.full((6, 6), -1, dtype="int8")
    for (r, fm), name in config.segment_lookup.items():
        grid[r, fm] = names.index(name)
    return names, grid


def rfm_code_categories() -> list[str]:
    """All 625 codes R?F?M?T? in code order: index (r-1)*125 + (f-1)*25 + (m-1)*5 + (t-1)."""
    return [f"R{r}F{f}M{m}T{t}" for r in range(1, 6) for f in range(1, 6) for m in range(1, 6) for t in range(1, 6)]


def rfm_code_index(scores: Scores) -> np.ndarray:
    """Index into :func:`rfm_code_categories` per row, -1 when not scored."""
    s = scores.scores
    code = ((s["recency"].astype("int32") - 1) * 125 + (s["frequency"] - 1) * 25
            + (s["monetary"] - 1) * 5 + (s["tenure"] - 1))
    return np.where(s["recency"] > 0, code, -1)
