"""Facts layer, per customer: what the campaign fields need from the lines beyond the month facts.

Like :mod:`crm_xl.core.facts` this reads transaction lines (already cut at the report month's
end) once, grouped by customer only, so it runs per customer partition anywhere. The contract::

    customer_key int64            every customer with a usable line
    last_purchase_day int64       day number of the latest line of quantity > 0, any category
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

CUSTOMER_FACT_COLUMNS = ("customer_key", "last_purchase_day", "purchase_days", "median_gap_low", "median_gap_high",
                         "favourite_product_key")


def customer_facts(lines: pd.DataFrame, product_ids: pd.Series, measure: str = "units") -> pd.DataFrame:
    """Per-customer facts (see the module docstring); ``product_ids`` by product_key, for ties."""
    customer = lines["customer_key"].to_numpy()
    day = lines["date"].to_numpy().astype("datetime64[D]").astype("int64")
    positive = lines["quantity"].to_numpy() > 0
    core = positive & (lines["kind"].to_numpy() == KIND_CORE) & (lines[measure].to_numpy() > 0)
    keys = np.unique(customer[positive])
    frame = pd.DataFrame({"customer_key": keys.astype("int64")})
    frame["last_purchase_day"] = _group_max(customer[positive], day[positive], keys)
    low, high, days = _median_gaps(customer[core], day[core], keys)
    frame["purchase_days"], frame["median_gap_low"], frame["median_gap_high"] = days, low, high
    frame["favourite_product_key"] = _favourites(customer[core], lines["product_key"].to_numpy()[core],
                                                 lines[measure].to_numpy()[core], product_ids, keys)
    return frame


def _group_max(customer: np.ndarray, day: np.ndarray, keys: np.ndarray) -> np.ndarray:
    out = np.full(len(keys), np.iinfo(np.int64).min, dtype="int64")
    np.maximum.at(out, np.searchsorted(keys, customer), day)
    return out


def _median_gaps(customer: np.ndarray, day: np.ndarray, keys: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The two middle gaps between a customer's distinct purchase days, and the number of days."""
    low = np.full(len(keys), -1, dtype="int64")
    high = low.copy()
    if not len(customer):
        return low, high, np.zeros(len(keys), dtype="int64")
    span = int(day.max() - day.min()) + 1
    pair = np.unique(customer * span + (day - day.min()))          # distinct (customer, day), sorted
    who, when = pair // span, pair % span
    days = np.bincount(np.searchsorted(keys, who), minlength=len(keys)).astype("int64")
    same = who[1:] == who[:-1]
    gap_who, gaps = who[1:][same], (when[1:] - when[:-1])[same]
    gap_order = np.lexsort((gaps, gap_who))
    gap_who, gaps = gap_who[gap_order], gaps[gap_order]
    counted, start, count = np.unique(gap_who, return_index=True, return_counts=True)
    at = np.searchsorted(keys, counted)
    low[at] = gaps[start + (count - 1) // 2]
    high[at] = gaps[start + count // 2]
    return low, high, days


def _favourites(customer: np.ndarray, product: np.ndarray, amount: np.ndarray, product_ids: pd.Series,
                keys: np.ndarray) -> np.ndarray:
    """Per customer the product with the largest exact total; ties to the lowest product_id."""
    out = np.full(len(keys), -1, dtype="int64")
    if not len(customer):
        return out
    n_products = max(len(product_ids), 1)
    pair = customer * n_products + product
    order = np.argsort(pair, kind="stable")
    sorted_pair = pair[order]
    starts = np.flatnonzero(np.concatenate(([True], sorted_pair[1:] != sorted_pair[:-1])))
    totals = np.add.reduceat(amount[order], starts)        # exact: whole micro-units
    pairs = sorted_pair[starts]
    who, what = pairs // n_products, pairs % n_products
    # the rank of each product_id in text order, so ties never depend on the master's row order
    rank = np.empty(len(product_ids), dtype="int64")
    rank[np.argsort(product_ids.astype("str").to_numpy(), kind="stable")] = np.arange(len(product_ids))
    best = np.lexsort((rank[what], -_orderable(totals), who))
    first = np.concatenate(([True], who[best][1:] != who[best][:-1]))
    winners = best[first]
    out[np.searchsorted(keys, who[winners])] = what[winners]
    return out


def _orderable(totals: np.ndarray) -> np.ndarray:
    """int64 totals as they are; Python-integer totals (past int64) as their exact dense ranks."""
    if totals.dtype != object:
        return totals
    return pd.Series(totals).rank(method="dense").to_numpy().astype("int64")
