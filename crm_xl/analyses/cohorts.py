"""Cohort retention: customers grouped by the month of their first core purchase, followed month by month.

The semantics are those of openretailscience's ``CohortAnalysis``: a cohort is the distinct customers
whose first core purchase fell in one calendar month, and a cohort's share active in a later month is
the distinct customers of the cohort who bought core in that month divided by the cohort's size (its
month 0, so month 0 is always 1.0). Everything is read from ``customer_history``:

* a customer's cohort is the month of their ``first_core_date``;
* a customer is *active* in a month when they bought core in it: their ``last_core_date`` (the latest
  core purchase up to the month's end) falls in that month. This is the same as ``m1 > 0``, and keeps
  holding with ``measure = revenue`` (a core line counts only when its measure is > 0);
* volume and revenue are the cohort's ``m1`` and ``revenue_m1`` in that month (only active customers
  have any).

Only cohorts whose first core month is inside the history range are shown: an earlier cohort would
be counted only from the history's first month, where its month 0 (its size) is not seen. Every
(cohort, months since) pair up to the report month is listed, months nobody bought included, so the
triangle has no holes.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from crm_xl import contract
from crm_xl.core.pipeline import CoreRun

#: Decimals kept of summed volumes and revenues: the core counts in millionths, so float noise of
#: the sum (0.30000000000000004) is dropped and the table is the same whatever the row order.
_DECIMALS = 6
_DAY_SECONDS = 86_400


def cohort_views(core: CoreRun) -> dict[str, pd.DataFrame]:
    """The ``cohort_retention`` table from the core's ``customer_history``."""
    return {"cohort_retention": cohort_retention(core.tables["customer_history"])}


def _seconds(values: pd.Series) -> np.ndarray:
    """A date column as int64 seconds since 1970 (NaT: the smallest int64, below every date)."""
    return values.to_numpy(dtype="datetime64[s]").view("int64")


def cohort_retention(history: pd.DataFrame) -> pd.DataFrame:
    """One row per first-core-month cohort and month since (0 = the cohort's own month), cohorts and
    months in ascending order; see the module doc for the definitions."""
    columns = contract.columns("cohort_retention")
    if history.empty:
        return _typed(pd.DataFrame({c: [] for c in columns}))
    month = _seconds(history["report_month"])
    lo, hi = month.min(), month.max()
    starts = np.arange(lo.astype("datetime64[s]").astype("datetime64[M]"),
                       hi.astype("datetime64[s]").astype("datetime64[M]") + 1).astype("datetime64[s]").view("int64")
    n = len(starts)
    first = _seconds(history["first_core_date"])
    keep = first >= lo                          # a first core purchase inside the history (NaT: none yet)
    month, first = month[keep], first[keep]
    # Month arithmetic on millions of dates is slow in numpy (a calendar per element), a binary search
    # too: each date's day since the history start looks its month up in a table of those days (a date
    # is at most its month's end, 31 days past the last month start).
    day = _DAY_SECONDS
    month_of_day = np.searchsorted((starts - lo) // day, np.arange((hi - lo) // day + 32), side="right") - 1
    cohort = month_of_day[(first - lo) // day]
    since = month_of_day[(month - lo) // day] - cohort
    # the latest core purchase up to the month's end falls in the month: bought core in it
    bought = _seconds(history["last_core_date"])[keep] >= month
    cell = cohort * n + since
    size = n * n

    def total(weights: np.ndarray | None) -> np.ndarray:
        return np.bincount(cell, weights=weights, minlength=size)

    rows = total(None).astype("int64")
    active = total(bought).round().astype("int64")
    volume = total(history["m1"].to_numpy(dtype="float64")[keep]).round(_DECIMALS)
    revenue = total(history["revenue_m1"].to_numpy(dtype="float64")[keep]).round(_DECIMALS)
    cohort_size = rows.reshape(n, n)[:, 0]
    c, k = np.divmod(np.arange(size), n)
    listed = (c + k < n) & (cohort_size[c] > 0)
    c, k = c[listed], k[listed]
    sizes = cohort_size[c]
    frame = pd.DataFrame({
        "cohort": starts[c].astype("datetime64[s]"),
        "months_since": k.astype("int64"),
        "report_month": starts[c + k].astype("datetime64[s]"),
        "cohort_size": sizes,
        "active": active[listed],
        "share_active": active[listed] / sizes,
        "volume": volume[listed],
        "revenue": revenue[listed],
    })
    return _typed(frame[columns])


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    types = {"cohort": "datetime64[s]", "report_month": "datetime64[s]", "months_since": "int64",
             "cohort_size": "int64", "active": "int64", "share_active": "float64", "volume": "float64",
             "revenue": "float64"}
    return frame.astype(types).reset_index(drop=True)

