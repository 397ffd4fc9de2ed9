"""Fast, lifetimes-compatible RFM summary of a transaction log.

:func:`lifetimes_summary` is a vectorised drop-in replacement for
``lifetimes.utils.summary_data_from_transaction_data`` (lifetimes 0.11.3). It
returns the same frame, with the same index and dtypes and the same values,
without importing lifetimes. It factorizes customer ids and dates, sorts once
on an integer key, and reduces with numpy and pandas groupby on integer codes.
It has no Python loop per customer.

Notes on parity
---------------
lifetimes sorts the log by ``[customer, datetime[, monetary]]`` *before* parsing
the dates, then groups by ``(period, customer)`` in order of first appearance.
This function copies that behaviour on purpose, including these quirks:

* With string dates whose text order is not their time order (e.g.
  ``"1/10/2020" < "1/2/2020"``), the transaction that lifetimes treats as the
  "first" one (left out of ``monetary_value``) is the first one in text order.
  The default ``observation_period_end`` is the text maximum of the column,
  parsed afterwards.
* Without ``datetime_format``, pandas infers the format from the first non-null
  date in that sorted order.
* Period sums and means use the same pandas groupby kernels, in the same row
  order, as lifetimes. So floating-point results agree bit for bit.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from pandas.api.types import is_datetime64_any_dtype, is_numeric_dtype

__all__ = ["SUPPORTED_FREQS", "lifetimes_summary"]

#: Frequencies that lifetimes 0.11.3 accepts under pandas 3. Each must be both a
#: pandas period alias and a fixed-length numpy timedelta unit.
SUPPORTED_FREQS: tuple[str, ...] = ("D", "W", "h", "s", "ms", "us", "ns")

_INT64_MAX = np.iinfo(np.int64).max
_NAT_ORDINAL = np.iinfo(np.int64).min  # pandas' iNaT


def _strip_tz(index: pd.DatetimeIndex) -> pd.DatetimeIndex:
    """Drop the time zone but keep the wall time, as ``to_period`` does."""
    return index.tz_localize(None) if index.tz is not None else index


def _period_end(value: Any, datetime_format: str | None, freq: str, what: str) -> pd.Timestamp:
    """Parse ``value`` like lifetimes and return the start of its period."""
    if isinstance(value, pd.Period):
        value = value.to_timestamp()
    try:
        ts = pd.to_datetime(value, format=datetime_format)
    except (ValueError, TypeError, OverflowError) as exc:
        raise ValueError(f"cannot parse {what} {value!r} as a datetime: {exc}") from exc
    if not isinstance(ts, pd.Timestamp) or pd.isna(ts):
        raise ValueError(f"{what} must be a single valid datetime, got {value!r}")
    if ts.tz is not None:
        ts = ts.tz_localize(None)
    return ts.to_period(freq).to_timestamp()


def _factorize(values: pd.Series) -> tuple[np.ndarray, pd.Index]:
    """``pandas.factorize(values, sort=True)``, faster when ``values`` is already sorted.

    Transaction logs are often sorted by customer. For a sorted string or
    numeric column without NaN, the codes come from comparing neighbours, with
    no hashing and no sort.
    """
    n = len(values)
    if (
        n > 1
        and (isinstance(values.dtype, pd.StringDtype) or values.dtype.kind in "iuf")
        and not values.hasnans
    ):
        arr = values.array
        if not np.asarray(arr[1:] < arr[:-1], dtype=bool).any():
            new = np.empty(n, dtype=bool)
            new[0] = True
            new[1:] = np.asarray(arr[1:] != arr[:-1], dtype=bool)
            return np.cumsum(new) - 1, pd.Index(arr.take(np.flatnonzero(new)))
    return pd.factorize(values, sort=True)


def _stable_argsort(key: np.ndarray) -> np.ndarray:
    """Stable argsort of a non-negative int64 key.

    numpy's stable sort is a radix sort for 16-bit keys, so the key is sorted
    16 bits at a time (LSD radix). That beats timsort on shuffled data. Data
    that is already sorted, as transaction logs often are, is returned at once.
    """
    n = key.size
    if n < 2 or bool(np.all(key[1:] >= key[:-1])):
        return np.arange(n)
    max_key = int(key.max())
    if max_key >= 1 << 48:  # more than three radix passes: timsort is as fast
        return np.argsort(key, kind="stable")
    order = np.argsort((key & 0xFFFF).astype(np.uint16), kind="stable")
    shift = 16
    while max_key >> shift:
        digit = ((key[order] >> shift) & 0xFFFF).astype(np.uint16)
        order = order[np.argsort(digit, kind="stable")]
        shift += 16
    return order


def _sort_order(
    cust_key: np.ndarray, date_key: np.ndarray, n_dates: int, mon_key: np.ndarray | None
) -> np.ndarray:
    """Return the row order of lifetimes' ``sort_values([customer, date[, monetary]])``.

    ``cust_key`` and ``date_key`` are dense sort ranks with NaN already mapped
    to the largest rank. The sort is stable. Ties on ``(customer, date)`` are
    broken by the monetary value, with NaN last, as pandas does.
    """
    n = cust_key.size
    n_cust = int(cust_key.max()) + 1 if n else 0
    if n_cust * (n_dates + 1) >= _INT64_MAX:  # pragma: no cover - needs about 3e9 distinct values
        return np.lexsort((date_key, cust_key) if mon_key is None else (mon_key, date_key, cust_key))
    key = cust_key * np.int64(n_dates + 1) + date_key
    order = _stable_argsort(key)
    if mon_key is not None and n > 1:
        ks = key[order]
        same = ks[1:] == ks[:-1]
        if same.any():
            in_run = np.zeros(n, dtype=bool)
            in_run[1:] |= same
            in_run[:-1] |= same
            pos = np.flatnonzero(in_run)
            sub = order[pos]
            # Runs of equal key keep their positions; only their order within changes.
            order[pos] = sub[np.lexsort((mon_key[sub], ks[pos]))]
    return order


def _date_ordinals(
    dates: pd.Series,
    date_uniques: pd.Index,
    sorted_codes: np.ndarray,
    datetime_col: str,
    datetime_format: str | None,
    freq: str,
) -> np.ndarray:
    """Period ordinal for each distinct date, plus ``iNaT`` at position ``n_dates`` for NaN."""
    if is_datetime64_any_dtype(dates.dtype):
        parsed = pd.DatetimeIndex(date_uniques)
    else:
        # Parse the distinct values in the order they first appear in the
        # sorted log. pandas infers a missing format from the first non-null
        # value, which is then the same value lifetimes' parse sees first.
        valid = sorted_codes[sorted_codes < date_uniques.size]
        first_seen = pd.unique(valid)
        try:
            raw = pd.to_datetime(date_uniques.take(first_seen), format=datetime_format)
        except (ValueError, TypeError, OverflowError) as exc:
            raise ValueError(f"cannot parse column {datetime_col!r} as datetimes: {exc}") from exc
        if not isinstance(raw, pd.DatetimeIndex):
            raise ValueError(f"cannot parse column {datetime_col!r} as datetimes (got {raw.dtype})")
        parsed = _strip_tz(raw).take(np.argsort(first_seen, kind="stable"))
    ordinals = np.empty(date_uniques.size + 1, dtype=np.int64)
    ordinals[:-1] = _strip_tz(parsed).to_period(freq).asi8
    ordinals[-1] = _NAT_ORDINAL
    return ordinals


def _ages(
    min_o: np.ndarray,
    max_o: np.ndarray,
    end_ts: pd.Timestamp,
    end_ordinal: int,
    freq: str,
    freq_multiplier: float,
) -> tuple[np.ndarray, np.ndarray]:
    """``T`` and ``recency`` computed with lifetimes' own arithmetic.

    lifetimes computes ``(later - earlier) / np.timedelta64(1, freq) / freq_multiplier``
    on the period start timestamps. Both columns depend only on whole numbers
    of periods. When there are fewer distinct period numbers than customers,
    the same expression is evaluated once per period number and looked up.
    """
    unit = np.timedelta64(1, freq)
    first = int(min_o.min()) if min_o.size else end_ordinal
    if end_ordinal - first + 1 <= min_o.size:
        ordinals = np.arange(first, end_ordinal + 1)
        stamps = pd.Series(pd.PeriodIndex.from_ordinals(ordinals, freq=freq).to_timestamp())
        # t_table[i]: T of a customer whose first period is first + i.
        t_table = ((end_ts - stamps) / unit / freq_multiplier).to_numpy(dtype=np.float64)
        # r_table[d]: recency of a customer whose first and last periods are d apart
        # (periods have a fixed length, so this does not depend on where they start).
        r_table = ((stamps - stamps.iloc[0]) / unit / freq_multiplier).to_numpy(dtype=np.float64)
        return t_table[min_o - first], r_table[max_o - min_o]
    min_ts = pd.Series(pd.PeriodIndex.from_ordinals(min_o, freq=freq).to_timestamp())
    max_ts = pd.Series(pd.PeriodIndex.from_ordinals(max_o, freq=freq).to_timestamp())
    T = ((end_ts - min_ts) / unit / freq_multiplier).to_numpy(dtype=np.float64)
    recency = ((max_ts - min_ts) / unit / freq_multiplier).to_numpy(dtype=np.float64)
    return T, recency


def lifetimes_summary(
    transactions: pd.DataFrame,
    customer_id_col: str,
    datetime_col: str,
    monetary_value_col: str | None = None,
    observation_period_end: Any = None,
    freq: str = "D",
    *,
    datetime_format: str | None = None,
    include_first_transaction: bool = False,
    freq_multiplier: float = 1,
) -> pd.DataFrame:
    """Summarise a transaction log into lifetimes' RFM frame.

    Gives exactly what ``lifetimes.utils.summary_data_from_transaction_data``
    returns for the same arguments, and is much faster.

    Parameters
    ----------
    transactions : pandas.DataFrame
        Transaction log with one row per purchase. It must hold at least the
        customer id column and the datetime column.
    customer_id_col : str
        Column with the customer id. Rows with a missing id are ignored.
    datetime_col : str
        Column with the datetime of the purchase. It may hold datetimes or
        strings, which are parsed with ``pandas.to_datetime`` and
        ``datetime_format``. Rows with a missing date are ignored.
    monetary_value_col : str, optional
        Column with the monetary value of each purchase. When given, the
        output has a ``monetary_value`` column.
    observation_period_end : datetime-like or str, optional
        End of the observation period (the "calibration" date). It is parsed
        with ``datetime_format``. Transactions in later periods are dropped.
        Defaults to the maximum of ``datetime_col``. As in lifetimes, this is
        the maximum of the raw column, which for strings is the text maximum.
        A ``pandas.Period`` is accepted too.
    freq : {"D", "W", "h", "s", "ms", "us", "ns"}, default "D"
        Length of one time period. Dates are bucketed with
        ``DatetimeIndex.to_period(freq)``. "W" means weeks that end on Sunday,
        as in pandas.
    datetime_format : str, optional
        ``strftime`` format for parsing string dates and a string
        ``observation_period_end``. If not given, pandas infers it.
    include_first_transaction : bool, default False
        If True, the first period's purchase counts in ``frequency`` and in
        ``monetary_value``. Leave it False for lifetimes' fitters.
    freq_multiplier : float, default 1
        ``recency`` and ``T`` are divided by this, e.g. ``freq="h"`` with
        ``freq_multiplier=24`` gives fractional days.

    Returns
    -------
    pandas.DataFrame
        One row per customer with at least one transaction up to
        ``observation_period_end``. The index is the customer id, named
        ``customer_id_col`` and sorted. All columns are float64:

        ``frequency``
            Number of *repeat* purchases: the number of distinct periods with
            a purchase, minus one (not minus one with
            ``include_first_transaction``).
        ``recency``
            Age of the customer at their last purchase: periods between the
            first and the last purchase period. It is 0 if frequency is 0.
        ``T``
            Age of the customer at the end of the observation period: periods
            between the first purchase period and the period of
            ``observation_period_end``.
        ``monetary_value``
            Only if ``monetary_value_col`` is given. The mean, over the repeat
            purchase periods, of the value spent in each period (values in one
            period are summed first). The first purchase period is left out.
            It is 0 for customers with frequency 0.

    Raises
    ------
    ValueError
        If a column is missing, dates or ``observation_period_end`` cannot be
        parsed, the monetary column is not numeric, ``freq`` is not supported,
        or there is no valid date.
    TypeError
        If ``transactions`` is not a DataFrame.
    """
    cust, dates, mon = _columns(transactions, customer_id_col, datetime_col, monetary_value_col, freq)
    end_ts = _observation_end(dates, observation_period_end, datetime_col, datetime_format, freq)
    end_ordinal = end_ts.to_period(freq).ordinal
    log = _sort_log(cust, dates, mon, customer_id_col, datetime_col)
    rows, vc, vo = _rows_in_window(log, dates, datetime_col, datetime_format, freq, end_ordinal)
    ids, gc, go = _period_groups(vc, vo)
    gsum = None if mon is None else _period_sums(mon, rows, ids)

    cstarts, count, min_o, max_o = _customer_periods(gc, go)
    frequency = (count if include_first_transaction else count - 1).astype(np.float64)
    T, recency = _ages(min_o, max_o, end_ts, end_ordinal, freq, freq_multiplier)
    index = _customer_index(log.cust_uniques, gc[cstarts], customer_id_col)
    data = {"frequency": frequency, "recency": recency, "T": T}
    if gsum is not None:
        data["monetary_value"] = _monetary_value(gsum, gc, cstarts, include_first_transaction)
    return pd.DataFrame(data, index=index)


# The steps of lifetimes_summary, in the order it runs them.


def _columns(
    transactions: pd.DataFrame,
    customer_id_col: str,
    datetime_col: str,
    monetary_value_col: str | None,
    freq: str,
) -> tuple[pd.Series, pd.Series, pd.Series | None]:
    """Check the arguments; return the customer, date and (optional) monetary columns."""
    if not isinstance(transactions, pd.DataFrame):
        raise TypeError(f"transactions must be a pandas DataFrame, got {type(transactions).__name__}")
    if freq not in SUPPORTED_FREQS:
        raise ValueError(f"freq must be one of {', '.join(map(repr, SUPPORTED_FREQS))}; got {freq!r}")
    for label, col in (
        ("customer_id_col", customer_id_col),
        ("datetime_col", datetime_col),
        ("monetary_value_col", monetary_value_col),
    ):
        if col is not None and col not in transactions.columns:
            raise ValueError(f"{label} column {col!r} not found in transactions")

    cust = transactions[customer_id_col]
    dates = transactions[datetime_col]
    mon = transactions[monetary_value_col] if monetary_value_col is not None else None
    if mon is not None and not is_numeric_dtype(mon.dtype):
        raise ValueError(f"monetary_value_col column {monetary_value_col!r} must be numeric, got {mon.dtype}")
    return cust, dates, mon


def _observation_end(
    dates: pd.Series, observation_period_end: Any, datetime_col: str, datetime_format: str | None, freq: str
) -> pd.Timestamp:
    """Start of the period of the observation end, as lifetimes computes it.

    Without ``observation_period_end`` that is the maximum of the raw column (for strings the
    text maximum), parsed afterwards.
    """
    if observation_period_end is not None:
        return _period_end(observation_period_end, datetime_format, freq, "observation_period_end")
    try:
        raw_max = dates.max()
    except TypeError as exc:
        raise ValueError(f"cannot take the maximum of column {datetime_col!r}: {exc}") from exc
    if pd.isna(raw_max):
        raise ValueError(f"column {datetime_col!r} has no valid datetime")
    return _period_end(raw_max, datetime_format, freq, f"maximum of column {datetime_col!r}")


class _SortedLog(NamedTuple):
    """The log factorized, and the row order of lifetimes' ``sort_values([customer, date[, monetary]])``."""

    cust_key: np.ndarray  # dense sort rank of each row's customer; missing -> len(cust_uniques)
    date_key: np.ndarray  # dense sort rank of each row's raw date value; missing -> len(date_uniques)
    cust_uniques: pd.Index
    date_uniques: pd.Index
    order: np.ndarray


def _sort_log(
    cust: pd.Series, dates: pd.Series, mon: pd.Series | None, customer_id_col: str, datetime_col: str
) -> _SortedLog:
    """Sort the log as lifetimes does: on the raw values, before the dates are parsed."""
    try:
        cust_codes, cust_uniques = _factorize(cust)
        date_codes, date_uniques = pd.factorize(dates, sort=True)
    except TypeError as exc:
        raise ValueError(f"cannot sort columns {customer_id_col!r} / {datetime_col!r}: {exc}") from exc
    n_cust, n_dates = len(cust_uniques), len(date_uniques)
    cust_key = np.where(cust_codes < 0, n_cust, cust_codes).astype(np.int64, copy=False)
    date_key = np.where(date_codes < 0, n_dates, date_codes).astype(np.int64, copy=False)
    mon_key = None if mon is None else mon.to_numpy(dtype=np.float64, na_value=np.nan)
    order = _sort_order(cust_key, date_key, n_dates, mon_key)
    return _SortedLog(cust_key, date_key, cust_uniques, date_uniques, order)


def _rows_in_window(
    log: _SortedLog,
    dates: pd.Series,
    datetime_col: str,
    datetime_format: str | None,
    freq: str,
    end_ordinal: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The rows with a valid date up to the end period, in lifetimes' sorted order.

    Returns the original positions of those rows (``rows``), then the customer codes and period
    ordinals of the leading ones that have a customer id. Rows with a missing customer id sort
    last; lifetimes' groupby drops them, but they stay in ``rows`` for the period sums.
    """
    sorted_date_key = log.date_key[log.order]
    ordinals_u = _date_ordinals(dates, log.date_uniques, sorted_date_key, datetime_col, datetime_format, freq)
    ords = ordinals_u[sorted_date_key]
    in_window = (ords != _NAT_ORDINAL) & (ords <= end_ordinal)
    rows = log.order[in_window]
    cc, ords = log.cust_key[rows], ords[in_window]
    n_valid = int(np.searchsorted(cc, len(log.cust_uniques)))
    return rows, cc[:n_valid], ords[:n_valid]


def _period_groups(vc: np.ndarray, vo: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Number the (customer, period) groups as lifetimes' ``groupby(sort=False)`` does.

    Groups are numbered in order of first appearance in the sorted log. Returns the group id of
    each row, and the customer code and period ordinal of each group. Sorted by customer then
    date, the periods of a customer run in time order, except for string dates whose text order
    is not chronological: only then is the slower path needed.
    """
    if vc.size < 2 or np.all((vc[1:] != vc[:-1]) | (vo[1:] >= vo[:-1])):
        return _groups_in_order(vc, vo)
    return _groups_by_first_appearance(vc, vo)


def _groups_in_order(vc: np.ndarray, vo: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`_period_groups` when each group's rows are contiguous: a new group at each change."""
    new_group = np.ones(vc.size, dtype=bool)
    new_group[1:] = (vc[1:] != vc[:-1]) | (vo[1:] != vo[:-1])
    ids = np.cumsum(new_group) - 1
    starts = np.flatnonzero(new_group)
    return ids, vc[starts], vo[starts]


def _groups_by_first_appearance(vc: np.ndarray, vo: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`_period_groups` when a customer's periods are out of time order (string dates)."""
    n_valid = vc.size
    perm = np.lexsort((vo, vc))  # stable: rows keep their order within a group
    pc, po = vc[perm], vo[perm]
    new_group = np.ones(n_valid, dtype=bool)
    new_group[1:] = (pc[1:] != pc[:-1]) | (po[1:] != po[:-1])
    starts = np.flatnonzero(new_group)
    gorder = np.argsort(perm[starts])  # groups by first appearance
    rank = np.empty(starts.size, dtype=np.int64)
    rank[gorder] = np.arange(starts.size)
    ids = np.empty(n_valid, dtype=np.int64)
    ids[perm] = rank[np.cumsum(new_group) - 1]
    return ids, pc[starts][gorder], po[starts][gorder]


def _period_sums(mon: pd.Series, rows: np.ndarray, ids: np.ndarray) -> pd.Series:
    """Monetary sum of each (customer, period) group, in group id order.

    Sums in lifetimes' row order and with the same group ids, missing customers included as
    dropped (NaN) groups. pandas then picks the same kernel as for lifetimes (reduceat if the ids
    are monotonic and there is no NaN, else compensated sums), so the floats agree.
    """
    key: np.ndarray = ids
    if ids.size < rows.size:
        key = np.full(rows.size, np.nan)
        key[: ids.size] = ids
    vals = pd.Series(mon.array.take(rows), copy=False)
    return vals.groupby(key, sort=False).sum().reset_index(drop=True)


def _customer_periods(gc: np.ndarray, go: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per customer: position of its first group, number of periods, first and last period ordinal.

    A customer's groups are contiguous (groups are numbered in sorted-log order).
    """
    n_groups = gc.size
    cust_start = np.ones(n_groups, dtype=bool)
    if n_groups > 1:
        cust_start[1:] = gc[1:] != gc[:-1]
    cstarts = np.flatnonzero(cust_start)
    count = np.diff(np.append(cstarts, n_groups))
    if n_groups:
        min_o = np.minimum.reduceat(go, cstarts)
        max_o = np.maximum.reduceat(go, cstarts)
    else:
        min_o = max_o = np.empty(0, dtype=np.int64)
    return cstarts, count, min_o, max_o


def _customer_index(cust_uniques: pd.Index, codes: np.ndarray, name: str) -> pd.Index:
    """The output index: the customer ids of ``codes``, named ``name``."""
    index = cust_uniques.take(codes)
    if index.dtype == object:
        index = pd.Index(index.to_numpy(dtype=object))  # re-infer, as groupby does
    index.name = name
    return index


def _monetary_value(
    gsum: pd.Series, gc: np.ndarray, cstarts: np.ndarray, include_first_transaction: bool
) -> np.ndarray:
    """Mean of each customer's period sums, the first period left out unless included; 0 if none."""
    if not include_first_transaction:
        if gsum.dtype.kind in "biu":
            gsum = gsum.astype(np.float64)  # lifetimes' NaN assignment upcasts the same way
        gsum.iloc[cstarts] = np.nan  # leave the first period out of the mean
    means = gsum.groupby(gc, sort=True).mean().fillna(0)
    return means.to_numpy(dtype=np.float64)
