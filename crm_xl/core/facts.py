"""Facts layer: transaction lines aggregated to one row per customer and calendar month.

This is the only place that touches transaction lines; every rule after it reads these facts.
The contract is deliberately narrow so the same aggregation can run elsewhere (DuckDB, Spark)
for histories that outgrow one machine::

    lines:  customer_key int64, invoice_key int64, date datetime64, quantity float64,
            units, revenue exact micro-units, kind int8 (0 other, 1 core, 2 entry)
    facts:  customer_key int64, month datetime64 (first day of the month),
            core_units, core_revenue exact micro-units,
            core_invoices int64 (distinct invoices, each counted in the month of its first core line),
            first_core_date, last_core_date, first_entry_date datetime64

The equivalent SQL, for the record::

    SELECT customer_key, date_trunc('month', date) AS month,
           SUM(units) FILTER (WHERE kind = 1 AND quantity > 0)               AS core_units,
           SUM(revenue) FILTER (WHERE kind = 1 AND quantity > 0)             AS core_revenue,
           COUNT(DISTINCT invoice_key) FILTER (WHERE kind = 1 AND quantity > 0
                 AND month = first_invoice_month)                   AS core_invoices,
           MIN(date) FILTER (WHERE kind = 1 AND quantity > 0)                AS first_core_date,
           MAX(date) FILTER (WHERE kind = 1 AND quantity > 0)                AS last_core_date,
           MIN(date) FILTER (WHERE kind = 2 AND quantity > 0)                AS first_entry_date
    FROM lines  -- with first_invoice_month = MIN(month) OVER (PARTITION BY customer_key, invoice_key)
    GROUP BY 1, 2 ORDER BY 1, 2

Exact micro-units are whole numbers of millionths (``units`` 1.5 is 1500000, see
:mod:`crm_xl.core.exact`): int64, or Python integers in an object column when int64 could
overflow. Their sums are exact in any order, so tiers never depend on how lines are sorted; in
SQL they are DECIMAL(38, 6) or BIGINT millionths.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from crm_xl.core.staging import KIND_CORE, KIND_ENTRY

FACT_COLUMNS = ("customer_key", "month", "core_units", "core_revenue", "core_invoices",
                "first_core_date", "last_core_date", "first_entry_date")


def customer_month_facts(lines: pd.DataFrame) -> pd.DataFrame:
    """Aggregate lines to customer x month facts (see the module docstring for the contract)."""
    day = lines["date"].to_numpy().astype("datetime64[D]").astype("int64")
    month = lines["date"].to_numpy().astype("datetime64[M]").astype("int64")
    base = int(month.min()) if len(month) else 0
    span = int(month.max()) - base + 1 if len(month) else 1
    key = lines["customer_key"].to_numpy() * span + (month - base)
    positive = lines["quantity"].to_numpy() > 0
    kind = lines["kind"].to_numpy()
    core = positive & (kind == KIND_CORE)
    entry = positive & (kind == KIND_ENTRY)

    customer = lines["customer_key"].to_numpy()
    core_keys, core = _aggregate_core(key[core], customer[core], lines["invoice_key"].to_numpy()[core], day[core],
                                      lines["units"].to_numpy()[core], lines["revenue"].to_numpy()[core])
    entry_keys, first_entry = _group_min(key[entry], day[entry])
    both = np.sort(np.concatenate([core_keys, entry_keys]))   # both sorted and distinct already
    keys = both[_group_starts(both)]
    at_core, at_entry = np.searchsorted(keys, core_keys), np.searchsorted(keys, entry_keys)

    def spread(values: np.ndarray, at: np.ndarray, fill: float) -> np.ndarray:
        out = np.full(len(keys), fill, dtype=values.dtype if fill == 0 else "float64")
        out[at] = values
        return out

    return pd.DataFrame({
        "customer_key": keys // span,
        "month": ((keys % span) + base).astype("datetime64[M]").astype("datetime64[s]"),
        "core_units": spread(core["units"], at_core, 0.0),
        "core_revenue": spread(core["revenue"], at_core, 0.0),
        "core_invoices": spread(core["invoices"], at_core, 0),
        "first_core_date": _days_to_dates(spread(core["first_day"], at_core, np.nan)),
        "last_core_date": _days_to_dates(spread(core["last_day"], at_core, np.nan)),
        "first_entry_date": _days_to_dates(spread(first_entry, at_entry, np.nan)),
    }, copy=False)


def _group_starts(sorted_keys: np.ndarray) -> np.ndarray:
    return np.flatnonzero(np.concatenate(([True], sorted_keys[1:] != sorted_keys[:-1]))) if len(sorted_keys) \
        else np.zeros(0, dtype="int64")


def _group_min(key: np.ndarray, day: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(key, kind="stable")
    starts = _group_starts(key[order])
    if not len(starts):
        return key[:0], day[:0]
    return key[order][starts], np.minimum.reduceat(day[order], starts)


def _aggregate_core(key: np.ndarray, customer: np.ndarray, invoice: np.ndarray, day: np.ndarray,
                    units: np.ndarray, revenue: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Sums, first/last day and distinct invoices per key (customer-month) of the core lines."""
    order = np.argsort(key, kind="stable")
    sorted_key = key[order]
    starts = _group_starts(sorted_key)
    if not len(starts):
        empty = np.zeros(0)
        return key[:0], {"units": units[:0], "revenue": revenue[:0], "invoices": np.zeros(0, dtype="int64"),
                         "first_day": empty, "last_day": empty}
    keys = sorted_key[starts]
    group = np.empty(len(key), dtype="int64")         # each line's customer-month, numbered in key order
    is_start = np.zeros(len(key), dtype="int64")
    is_start[starts] = 1
    group[order] = np.cumsum(is_start) - 1
    # An invoice counts once per customer, in the month of its first core line: keep, for every
    # (customer, invoice), the smallest group (groups grow with the month) and count those per group.
    pairs, _ = pd.factorize(customer * (int(invoice.max()) + 1) + invoice)   # both keys are < 2**31
    first_group = np.full(int(pairs.max()) + 1, len(keys), dtype="int64")
    np.minimum.at(first_group, pairs, group)
    invoices = np.bincount(first_group, minlength=len(keys))
    return keys, {
        "units": np.add.reduceat(units[order], starts),
        "revenue": np.add.reduceat(revenue[order], starts),
        "invoices": invoices.astype("int64"),
        "first_day": np.minimum.reduceat(day[order], starts).astype("float64"),
        "last_day": np.maximum.reduceat(day[order], starts).astype("float64"),
    }


def _days_to_dates(days: np.ndarray) -> np.ndarray:
    dates = np.full(len(days), np.datetime64("NaT"), dtype="datetime64[s]")
    present = ~np.isnan(days)
    dates[present] = days[present].astype("int64").astype("datetime64[D]").astype("datetime64[s]")
    return dates
