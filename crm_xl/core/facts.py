"""Facts layer: transaction lines aggregated to one row per customer and calendar month.

This is the only place that touches transaction lines; every rule after it reads these facts.
The contract is deliberately narrow so the same aggregation can run elsewhere (DuckDB, Spark)
for histories that outgrow one machine::

    lines:  customer_key int64, invoice_key int64, date datetime64, quantity float64,
            units, revenue exact micro-units, kind int8 (0 other, 1 core, 2 entry)
    facts:  customer_key int64, month datetime64 (first day of the month),
            core_units, core_revenue exact micro-units,
            core_invoices int64 (distinct invoices with a core line in the month),
            first_core_date, last_core_date, first_entry_date datetime64
    invoice_links:
            customer_key int64, month datetime64, gap_months int64, links int64
            (an invoice with core lines in several months links each of those months to the
            previous one; ``links`` counts the invoices with that gap arriving in that month)

An order is a distinct invoice with a core line inside the window, whichever month its other lines
fall in. Summing ``core_invoices`` over a window counts an invoice once per month it touches, so the
windows subtract the links that lie wholly inside them: a link of gap g arriving in month s joins
two months of one invoice in every window that reaches back to s - g, i.e. in windows of length
k > g ending in s … s - g + k - 1 (see ``snapshots``). The equivalent SQL, for the record::

    WITH core AS (SELECT * FROM lines WHERE kind = 1 AND quantity > 0 AND units > 0),  -- revenue > 0
                                                                       -- with measure = revenue
         invoice_months AS (SELECT DISTINCT customer_key, invoice_key, date_trunc('month', date) AS month
                            FROM core)
    -- facts
    SELECT customer_key, date_trunc('month', date) AS month,
           SUM(units) AS core_units, SUM(revenue) AS core_revenue,
           COUNT(DISTINCT invoice_key) AS core_invoices,
           MIN(date) AS first_core_date, MAX(date) AS last_core_date,
           NULL AS first_entry_date       -- MIN(date) of kind = 2 AND quantity > 0, full-joined on the key
    FROM core GROUP BY 1, 2 ORDER BY 1, 2;
    -- invoice_links
    SELECT customer_key, month, gap_months, COUNT(*) AS links
    FROM (SELECT customer_key, month, DATEDIFF('month', LAG(month) OVER (
                 PARTITION BY customer_key, invoice_key ORDER BY month), month) AS gap_months
          FROM invoice_months) WHERE gap_months IS NOT NULL
    GROUP BY 1, 2, 3 ORDER BY 1, 2, 3;

Exact micro-units are whole numbers of millionths (``units`` 1.5 is 1500000, see
:mod:`crm_xl.core.exact`): int64, or Python integers in an object column when int64 could
overflow. Their sums are exact in any order, so tiers never depend on how lines are sorted; in
SQL they are DECIMAL(38, 6) or BIGINT millionths.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from crm_xl.core import exact
from crm_xl.core.staging import KIND_CORE, KIND_ENTRY

FACT_COLUMNS = ("customer_key", "month", "core_units", "core_revenue", "core_invoices",
                "first_core_date", "last_core_date", "first_entry_date")
LINK_COLUMNS = ("customer_key", "month", "gap_months", "links")


@dataclasses.dataclass(frozen=True)
class Facts:
    """The two fact tables of the contract above, both sorted by customer_key and month."""

    months: pd.DataFrame          # FACT_COLUMNS
    invoice_links: pd.DataFrame   # LINK_COLUMNS


def customer_month_facts(lines: pd.DataFrame, measure: str = "units") -> Facts:
    """Aggregate lines to customer x month facts (see the module docstring for the contract).

    ``measure`` (``units`` or ``revenue``) decides what a purchase is: a core line whose quantity
    and measure are both > 0. With units that is every core line of quantity > 0; with revenue a
    free core line adds nothing, so it is no purchase either (no order, no first or last date).
    """
    day = lines["date"].to_numpy().astype("datetime64[D]").astype("int64")
    month = lines["date"].to_numpy().astype("datetime64[M]").astype("int64")
    base = int(month.min()) if len(month) else 0
    span = int(month.max()) - base + 1 if len(month) else 1
    key = lines["customer_key"].to_numpy() * span + (month - base)
    positive = lines["quantity"].to_numpy() > 0
    kind = lines["kind"].to_numpy()
    core = positive & (kind == KIND_CORE) & (lines[measure].to_numpy() > 0)
    entry = positive & (kind == KIND_ENTRY)

    core_keys, group, sums = _aggregate_core(key[core], day[core], lines["units"].to_numpy()[core],
                                             lines["revenue"].to_numpy()[core])
    invoices, links = _invoice_months(core_keys, group, lines["customer_key"].to_numpy()[core],
                                      lines["invoice_key"].to_numpy()[core], span)
    entry_keys, first_entry = _group_min(key[entry], day[entry])
    both = np.sort(np.concatenate([core_keys, entry_keys]))   # both sorted and distinct already
    keys = both[_group_starts(both)]
    at_core, at_entry = np.searchsorted(keys, core_keys), np.searchsorted(keys, entry_keys)

    def spread(values: np.ndarray, at: np.ndarray, fill: float) -> np.ndarray:
        out = exact.zeros(len(keys), values.dtype) if fill == 0 else np.full(len(keys), fill)
        out[at] = values
        return out

    link_keys, gaps, counts = links
    return fact_tables(
        customer=keys // span, month=keys % span + base, units=spread(sums["units"], at_core, 0),
        revenue=spread(sums["revenue"], at_core, 0), invoices=spread(invoices, at_core, 0),
        first_core_day=spread(sums["first_day"], at_core, np.nan),
        last_core_day=spread(sums["last_day"], at_core, np.nan), first_entry_day=spread(first_entry, at_entry, np.nan),
        links=(link_keys // span, link_keys % span + base, gaps, counts))


def fact_tables(*, customer: np.ndarray, month: np.ndarray, units: np.ndarray, revenue: np.ndarray,
                invoices: np.ndarray, first_core_day: np.ndarray, last_core_day: np.ndarray,
                first_entry_day: np.ndarray, links: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]) -> Facts:
    """The contract's two frames from their columns, whoever computed them (numpy here, or an engine
    of ``crm_xl.engines``), so every engine's facts have the same types.

    Months are counted from 1970-01 and days from 1970-01-01 (float, NaN for none); units and
    revenue are exact micro-units (int64 or Python integers); rows already sorted by customer and
    month. ``links`` is (customer, month, gap_months, links) for :data:`LINK_COLUMNS`.
    """
    link_customer, link_month, gaps, counts = links
    months = pd.DataFrame({
        "customer_key": np.asarray(customer, dtype="int64"),
        "month": _months(np.asarray(month, dtype="int64")),
        "core_units": units,
        "core_revenue": revenue,
        "core_invoices": np.asarray(invoices, dtype="int64"),
        "first_core_date": _days_to_dates(np.asarray(first_core_day, dtype="float64")),
        "last_core_date": _days_to_dates(np.asarray(last_core_day, dtype="float64")),
        "first_entry_date": _days_to_dates(np.asarray(first_entry_day, dtype="float64")),
    }, copy=False)
    invoice_links = pd.DataFrame({"customer_key": np.asarray(link_customer, dtype="int64"),
                                  "month": _months(np.asarray(link_month, dtype="int64")),
                                  "gap_months": np.asarray(gaps, dtype="int64"),
                                  "links": np.asarray(counts, dtype="int64")}, copy=False)
    return Facts(months=months, invoice_links=invoice_links)


def _months(months: np.ndarray) -> np.ndarray:
    return months.astype("datetime64[M]").astype("datetime64[s]")


def _group_starts(sorted_keys: np.ndarray) -> np.ndarray:
    return np.flatnonzero(np.concatenate(([True], sorted_keys[1:] != sorted_keys[:-1]))) if len(sorted_keys) \
        else np.zeros(0, dtype="int64")


def _group_min(key: np.ndarray, day: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(key, kind="stable")
    starts = _group_starts(key[order])
    if not len(starts):
        return key[:0], day[:0]
    return key[order][starts], np.minimum.reduceat(day[order], starts)


def _aggregate_core(key: np.ndarray, day: np.ndarray, units: np.ndarray, revenue: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Sums and first/last day per key (customer-month) of the core lines: the sorted keys, each
    line's group (its key's position among them) and the aggregates."""
    order = np.argsort(key, kind="stable")
    sorted_key = key[order]
    starts = _group_starts(sorted_key)
    if not len(starts):
        empty = np.zeros(0)
        return key[:0], key[:0], {"units": units[:0], "revenue": revenue[:0], "first_day": empty, "last_day": empty}
    is_start = np.zeros(len(key), dtype="int64")
    is_start[starts] = 1
    group = np.empty(len(key), dtype="int64")
    group[order] = np.cumsum(is_start) - 1
    return sorted_key[starts], group, {
        "units": np.add.reduceat(units[order], starts),
        "revenue": np.add.reduceat(revenue[order], starts),
        "first_day": np.minimum.reduceat(day[order], starts).astype("float64"),
        "last_day": np.maximum.reduceat(day[order], starts).astype("float64"),
    }


def _invoice_months(keys: np.ndarray, group: np.ndarray, customer: np.ndarray, invoice: np.ndarray,
                    span: int) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Distinct invoices per customer-month (aligned with ``keys``; ``group`` is each line's
    customer-month) and the links between the months of each (customer, invoice): (customer-month
    key, gap in months, number of invoices), sorted.
    """
    none = np.zeros(0, dtype="int64")
    if not len(group):
        return none, (none, none, none)
    # one number per (customer, invoice) pair, then one per (pair, customer-month): below 2**62
    pair, _ = pd.factorize(customer * (int(invoice.max()) + 1) + invoice)
    code = np.sort(pair.astype("int64") * len(keys) + group)           # by pair, then month
    code = code[_group_starts(code)]
    pair_of, group_of = code // len(keys), code % len(keys)
    invoices = np.bincount(group_of, minlength=len(keys)).astype("int64")
    linked = np.flatnonzero(pair_of[1:] == pair_of[:-1]) + 1
    month = keys % span
    gap = month[group_of[linked]] - month[group_of[linked - 1]]
    link, counts = np.unique(keys[group_of[linked]] * span + gap, return_counts=True)
    return invoices, (link // span, link % span, counts.astype("int64"))


def _days_to_dates(days: np.ndarray) -> np.ndarray:
    dates = np.full(len(days), np.datetime64("NaT"), dtype="datetime64[s]")
    present = ~np.isnan(days)
    dates[present] = days[present].astype("int64").astype("datetime64[D]").astype("datetime64[s]")
    return dates
