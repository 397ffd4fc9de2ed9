"""Facts layer: transaction lines aggregated to one row per customer and calendar month.

This is the only place that touches transaction lines; every rule after it reads these facts.
The contract is deliberately narrow so the same aggregation can run elsewhere (DuckDB, Spark)
for histories that outgrow one machine::

    lines:  customer_key int64, invoice_key int64, date datetime64, quantity float64,
            units float64, revenue float64, kind int8 (0 other, 1 core, 2 entry)
    facts:  customer_key int64, month datetime64 (first day of the month),
            core_units, core_revenue float64,
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
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from crm_xl.staging import KIND_CORE, KIND_ENTRY

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
    core_frame = pd.DataFrame({"key": key[core], "units": lines["units"].to_numpy()[core],
                               "revenue": lines["revenue"].to_numpy()[core], "day": day[core],
                               "customer": customer[core], "invoice": lines["invoice_key"].to_numpy()[core]})
    grouped = core_frame.groupby("key", sort=True)
    core_agg = pd.DataFrame({
        "core_units": grouped["units"].sum(),
        "core_revenue": grouped["revenue"].sum(),
        "first_core_day": grouped["day"].min(),
        "last_core_day": grouped["day"].max(),
        "core_invoices": _invoices_per_key(core_frame),
    })
    entry_agg = pd.Series(day[entry]).groupby(key[entry], sort=True).min().rename("first_entry_day")
    facts = pd.concat([core_agg, entry_agg], axis=1).sort_index()
    keys = facts.index.to_numpy()
    out = pd.DataFrame({
        "customer_key": keys // span,
        "month": ((keys % span) + base).astype("datetime64[M]").astype("datetime64[s]"),
        "core_units": facts["core_units"].fillna(0.0).to_numpy(dtype="float64"),
        "core_revenue": facts["core_revenue"].fillna(0.0).to_numpy(dtype="float64"),
        "core_invoices": facts["core_invoices"].fillna(0).to_numpy(dtype="int64"),
    })
    for name in ("first_core", "last_core", "first_entry"):
        out[f"{name}_date"] = _days_to_dates(facts[f"{name}_day"].to_numpy(dtype="float64"))
    return out


def _invoices_per_key(core: pd.DataFrame) -> pd.Series:
    """Distinct invoices per customer-month; an invoice whose lines span months counts once, in its first."""
    per_month = core[["key", "customer", "invoice"]].drop_duplicates(["key", "invoice"])
    first = per_month.sort_values("key", kind="stable").drop_duplicates(["customer", "invoice"])
    return first.groupby("key", sort=True).size()


def _days_to_dates(days: np.ndarray) -> np.ndarray:
    dates = np.full(len(days), np.datetime64("NaT"), dtype="datetime64[s]")
    present = ~np.isnan(days)
    dates[present] = days[present].astype("int64").astype("datetime64[D]").astype("datetime64[s]")
    return dates
