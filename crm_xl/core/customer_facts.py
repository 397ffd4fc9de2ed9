"""Facts layer, per customer: what the campaign fields need from the lines beyond the month facts.

Like :mod:`crm_xl.core.facts` this reads transaction lines (already cut at the report month's
end) once, grouped by customer only, so it runs per customer partition anywhere. The contract::

    customer_key int64            every analysed customer, 0 .. n - 1
    last_purchase_day int64       day number of the latest line of quantity > 0, any category
                                  (NO_DAY without one)
    purchase_days int64           distinct days with a core purchase (as in facts: quantity and
                                  measure > 0)
    median_gap_low / _high int64  the two middle gaps (days) between consecutive core purchase
                                  days; equal when the number of gaps is odd; -1 under 2 days
    favourite_product_key int64   the core product with the largest measure, all history; ties go
                                  to the lowest product_id; -1 without a core purchase

The two middle gaps are kept (not their mean) so the expected next purchase is exact in integer
days: ``last core purchase + (low + high + 1) // 2``, the median rounded half up.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from crm_xl.core.staging import KIND_CORE

NO_DAY = np.iinfo(np.int64).min     # no purchase: as the panel's blank day
CUSTOMER_FACT_COLUMNS = ("customer_key", "last_purchase_day", "purchase_days", "median_gap_low", "median_gap_high",
                         "favourite_product_key")


def customer_facts(lines: pd.DataFrame, product_ids: pd.Series, n_customers: int, measure: str = "units"
                   ) -> pd.DataFrame:
    """Per-customer facts (see the module docstring), one row per customer_key 0 .. n_customers - 1;
    ``product_ids`` by product_key, for ties."""
    customer = lines["customer_key"].to_numpy()
    day = lines["date"].to_numpy().astype("datetime64[D]").astype("int64")
    positive = lines["quantity"].to_numpy() > 0
    core = positive & (lines["kind"].to_numpy() == KIND_CORE) & (lines[measure].to_numpy() > 0)
    frame = pd.DataFrame({"customer_key": np.arange(n_customers, dtype="int64")})
    frame["last_purchase_day"] = _group_max(customer[positive], day[positive], n_customers)
    low, high, days = _median_gaps(customer[core], day[core], n_customers)
    frame["purchase_days"], frame["median_gap_low"], frame["median_gap_high"] = days, low, high
    frame["favourite_product_key"] = _favourites(customer[core], lines["product_key"].to_numpy()[core],
                                                 lines[measure].to_numpy()[core], product_ids, n_customers)
    return frame


def _group_max(customer: np.ndarray, day: np.ndarray, n_customers: int) -> np.ndarray:
    out = np.full(n_customers, NO_DAY, dtype="int64")
    np.maximum.at(out, customer, day)
    return out


def _distinct_sorted(values: np.ndarray) -> np.ndarray:
    """np.unique without its hashing (slower here than a sort of int64)."""
    ordered = np.sort(values)
    return ordered[np.concatenate(([True], ordered[1:] != ordered[:-1]))] if len(ordered) else ordered


def _median_gaps(customer: np.ndarray, day: np.ndarray, n_customers: int
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The two middle gaps between a customer's distinct purchase days, and the number of days."""
    low = np.full(n_customers, -1, dtype="int64")
    high = low.copy()
    if not len(customer):
        return low, high, np.zeros(n_customers, dtype="int64")
    first = int(day.min())
    span = int(day.max()) - first + 1
    pair = _distinct_sorted(customer * span + (day - first))          # (customer, day), by customer then day
    who, when = pair // span, pair % span
    days = np.bincount(who, minlength=n_customers).astype("int64")
    same = who[1:] == who[:-1]
    gap_who = who[1:][same]
    # gaps < span, so one sort orders them by customer, then size
    ordered = np.sort(gap_who * span + (when[1:] - when[:-1])[same])
    gap_who, gaps = ordered // span, ordered % span
    count = np.bincount(gap_who, minlength=n_customers)
    start = np.concatenate(([0], np.cumsum(count)[:-1]))
    has = count > 0
    low[has] = gaps[start[has] + (count[has] - 1) // 2]
    high[has] = gaps[start[has] + count[has] // 2]
    return low, high, days


def _favourites(customer: np.ndarray, product: np.ndarray, amount: np.ndarray, product_ids: pd.Series,
                n_customers: int) -> np.ndarray:
    """Per customer the product with the largest exact total; ties to the lowest product_id."""
    out = np.full(n_customers, -1, dtype="int64")
    if not len(customer):
        return out
    n_products = max(len(product_ids), 1)
    pair = customer * n_products + product
    order = np.argsort(pair)              # any order within a pair: exact integer sums do not depend on it
    sorted_pair = pair[order]
    starts = np.flatnonzero(np.concatenate(([True], sorted_pair[1:] != sorted_pair[:-1])))
    totals = np.add.reduceat(amount[order], starts)
    who, what = sorted_pair[starts] // n_products, sorted_pair[starts] % n_products
    # pairs are sorted by customer: each customer's pairs are one run
    runs = np.flatnonzero(np.concatenate(([True], who[1:] != who[:-1])))
    best = np.maximum.reduceat(totals, runs)
    owner = np.repeat(np.arange(len(runs)), np.diff(np.append(runs, len(who))))
    # the rank of each product_id in text order, so ties never depend on the master's row order
    rank = np.empty(len(product_ids), dtype="int64")
    rank[np.argsort(product_ids.astype("str").to_numpy(), kind="stable")] = np.arange(len(product_ids))
    candidate_rank = np.where(totals == best[owner], rank[what], len(product_ids))
    winner_rank = np.minimum.reduceat(candidate_rank, runs)
    by_rank = np.argsort(rank)
    out[who[runs]] = by_rank[winner_rank]
    return out
