"""Intermediate layer: month-end snapshots of every customer, computed from the facts only.

For each report month and each customer in the base, the calendar-month windows (M1 ... M25,
M_total), order counts, first/last dates, tenure, AMC and AOS. Everything is computed on a dense
customers x months grid with numpy, for all customers and months at once.

Windows are sliding sums of non-negative monthly values (never differences of running totals), so
a month without purchases is exactly 0. Measures are summed as exact micro-units
(:mod:`crm_xl.core.exact`), so every window is exact whatever the order of the lines, and M25 and
M_total of the same months are the same number; the float figures are made from those integers.
Rules that ask "is M_k > 0" or "is M_a = M_b" read counts of months whose measure is > 0
(integers, exact), see :attr:`Panel.purchase_months`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import numpy as np
import pandas as pd

from crm_xl.config import Config
from crm_xl.core import exact
from crm_xl.core.facts import Facts

_BLANK = np.iinfo(np.int64).min  # "no date" in day-number arrays
OUTPUT_WINDOWS = (1, 6, 12, 13, 24, 25)
#: Memory one customer-month of the history takes at the peak of a run: the panel's ~25 arrays,
#: the grids they are summed on, labels, scores and the customer_history table. Measured at
#: 520-620 bytes on pandas 3 (5,000 to 20,000 customers x 25 to 241 months), taken as 96 values
#: of 8 bytes so the estimate errs on the safe side (tests/test_reliability_inputs.py measures it).
BYTES_PER_CUSTOMER_MONTH = 96 * 8


def memory_needed(n_customers: int, config: Config) -> int:
    """Bytes the customers x months grids of a run need (every customer in the base every month)."""
    return n_customers * (config.history_months + 1) * BYTES_PER_CUSTOMER_MONTH


def size_text(n_bytes: int) -> str:
    for unit, size in (("GB", 2**30), ("MB", 2**20)):
        if n_bytes >= size:
            return f"{n_bytes / size:,.1f} {unit}"
    return f"{n_bytes / 2**10:,.0f} KB"


@dataclasses.dataclass(frozen=True)
class Panel:
    """Customer x report-month snapshot values, one entry per row of the history.

    Rows are ordered by report month, then by customer_key (= customer_id order). Row arrays are
    views of the month-major grids where every customer is in the base every month. ``months`` are
    the report months computed; the first one precedes the requested history and exists only so
    the first history month has a "last month" for transitions.
    """

    months: pd.PeriodIndex
    month_pos: np.ndarray          # index into ``months`` per row
    customer_key: np.ndarray       # index into staged customers per row
    measure: dict[int, np.ndarray]           # window length -> measure sum (0 = M_total), float units
    tier_measure: np.ndarray                 # measure over the tier window, exact micro-units
    revenue: dict[int, np.ndarray]           # window length -> core revenue sum
    invoices: dict[int, np.ndarray]          # window length -> distinct core invoices
    purchase_months: dict[int, np.ndarray]   # window length -> months whose measure is > 0
    rfm_monetary: np.ndarray
    first_core_day: np.ndarray     # int day numbers, _BLANK when none yet
    last_core_day: np.ndarray
    first_device_day: np.ndarray
    month_end_day: np.ndarray      # last day of the report month, per row

    @property
    def rows(self) -> int:
        return len(self.customer_key)

    def month_rows(self, month_pos: int) -> slice:
        """The rows of one month (rows are month-major, so they are contiguous)."""
        start, stop = np.searchsorted(self.month_pos, [month_pos, month_pos + 1])
        return slice(int(start), int(stop))


def build_panel(all_facts: Facts, entry_dates: np.ndarray, report_month: pd.Period, config: Config) -> Panel:
    """Snapshots for ``history_months`` report months ending at ``report_month`` (plus one before),
    of the customers whose base-entry dates are ``entry_dates`` (by customer_key; NaT = from the start)."""
    facts = all_facts.months
    n_cust = len(entry_dates)
    n_months = config.history_months + 1
    last = _ordinal(report_month)
    first = last - n_months + 1
    lookback = max(max(OUTPUT_WINDOWS), config.active_window_months + 1, config.tier_window_months,
                   config.reactivation_gap_months + 1, config.rfm_window_months)
    base = first - lookback + 1                       # grid column 1; column 0 gathers all earlier months
    n_cols = last - base + 2

    cust = facts["customer_key"].to_numpy()
    flat = _grid_columns(facts["month"], base) * n_cust + cust     # grids are months x customers, month-major
    size = n_cols * n_cust
    late = flat >= n_cust                             # not in column 0

    present = _presence(entry_dates, first, n_months)
    everyone = bool(present.all())
    if everyone:   # the usual case: every cell of the grid is a row of the history, no copy needed
        month_pos = np.repeat(np.arange(n_months), n_cust)
        customer_key = np.tile(np.arange(n_cust), n_months)
    else:
        month_pos, customer_key = np.nonzero(present)
    mask = None if everyone else present.ravel()
    first_col = first - base + 1

    def picked(matrix: np.ndarray, buffer: np.ndarray | None = None) -> np.ndarray:
        """The history rows' cells of a (months x customers) matrix: a view of it when every cell is
        a row, else into ``buffer`` (one per grid: fresh memory for each window costs more in page
        faults than the copy)."""
        if mask is None:
            return matrix.ravel()
        return np.compress(mask, matrix.ravel(), out=buffer)

    def rows(matrix: np.ndarray, dtype: str = "float64", buffer: np.ndarray | None = None) -> np.ndarray:
        """One value per history row, always a fresh array (the grid it comes from is reused)."""
        # only a view of the grid or the shared buffer needs copying; np.compress without one is fresh
        return picked(matrix, buffer).astype(dtype, copy=mask is None or buffer is not None)

    def windows(weights: np.ndarray, lengths: set[int], dtype: str = "float64") -> dict[int, np.ndarray]:
        """Window sums of one count as row arrays; each grid is dropped as soon as it is summed."""
        grid = np.bincount(flat, weights=weights, minlength=size).reshape(n_cols, n_cust)
        buffer = None if mask is None else np.empty(len(month_pos), dtype=grid.dtype)
        return {k: rows(v, dtype, buffer) for k, v in _window_sums(grid, first_col, n_months, lengths)}

    def exact_windows(micro: np.ndarray, lengths: set[int],
                      keep: int | None = None) -> tuple[dict[int, np.ndarray], np.ndarray | None]:
        """Window sums of exact micro-units, as float units; the ``keep`` window also exactly."""
        grid = exact.zeros(size, micro.dtype)
        # facts are one row per customer-month, so only column 0 (every month before the grid) gathers
        # several: a plain assignment elsewhere, much faster than np.add.at over every row
        grid[flat[late]] = micro[late]
        np.add.at(grid, flat[~late], micro[~late])
        shown, kept = {}, None
        buffer = None if mask is None else np.empty(len(month_pos), dtype=grid.dtype)
        for k, sums in _window_sums(grid.reshape(n_cols, n_cust), first_col, n_months, lengths):
            cells = picked(sums, buffer)
            shown[k] = exact.to_float(cells)
            if k == keep:
                kept = cells.copy()
        return shown, kept

    measure_col = "core_units" if config.measure == "units" else "core_revenue"
    monetary_col = "core_units" if config.rfm_monetary == "units" else "core_revenue"
    invoices = facts["core_invoices"].to_numpy().astype("float64")
    measure = facts[measure_col].to_numpy()
    measure_windows = {*OUTPUT_WINDOWS, config.active_window_months, config.tier_window_months}
    if monetary_col == measure_col:
        measure_windows.add(config.rfm_window_months)
    measure_sums, tier_measure = exact_windows(measure, measure_windows, keep=config.tier_window_months)
    rfm_window = {config.rfm_window_months}
    rfm_monetary = (measure_sums if monetary_col == measure_col else
                    exact_windows(facts[monetary_col].to_numpy(), rfm_window)[0])[config.rfm_window_months]
    revenue_sums, _ = exact_windows(facts["core_revenue"].to_numpy(), {1, 12})
    invoice_sums = windows(invoices, {6, config.tier_window_months, config.rfm_window_months}, "int64")
    for k, linked in _linked_months(all_facts.invoice_links, set(invoice_sums), base, n_cols, n_cust, first_col,
                                    n_months):
        invoice_sums[k] -= rows(linked, "int64")
    month_counts = windows((measure > 0).astype("float64"),
                           {1, config.active_window_months, config.active_window_months + 1,
                            config.tier_window_months, config.reactivation_gap_months + 1}, "int64")

    last_core = _running_last(facts, flat, size, n_cols, n_cust, "last_core_date")[first_col:]
    first_core = _first_per_customer(facts, n_cust, "first_core_date")
    first_device = _first_per_customer(facts, n_cust, "first_entry_date")
    months = pd.period_range(end=report_month, periods=n_months, freq="M")
    month_ends = months.to_timestamp(how="end").normalize().to_numpy().astype("datetime64[D]").astype("int64")

    def as_of(day_per_customer: np.ndarray) -> np.ndarray:  # a once-only date, blank before it happened
        day = day_per_customer[customer_key]
        return np.where(day <= month_ends[month_pos], day, _BLANK)

    return Panel(
        months=months, month_pos=month_pos, customer_key=customer_key,
        measure=measure_sums, tier_measure=tier_measure, revenue=revenue_sums, invoices=invoice_sums,
        purchase_months=month_counts,
        rfm_monetary=rfm_monetary, first_core_day=as_of(first_core), last_core_day=rows(last_core, "int64"),
        first_device_day=as_of(first_device), month_end_day=month_ends[month_pos],
    )


def _ordinal(month: pd.Period) -> int:
    return month.year * 12 + month.month - 1


def _grid_columns(months: pd.Series, base: int, shift: np.ndarray | int = 0) -> np.ndarray:
    """Grid column of each month (moved on by ``shift`` months): 1 for ``base``, 0 gathering every earlier month."""
    ordinal = months.to_numpy().astype("datetime64[M]").astype("int64") + 1970 * 12 + shift
    return np.clip(ordinal - base + 1, 0, None)


def _linked_months(links: pd.DataFrame, lengths: set[int], base: int, n_cols: int, n_cust: int, first_col: int,
                   n_months: int) -> Iterator[tuple[int, np.ndarray]]:
    """(k, months x customers count of invoice links inside each k-month window), for the report months.

    A window's invoice-months minus its links is its distinct invoices: the months an invoice
    touches inside one window are consecutive among its months, so they are joined by one link
    fewer than there are months. A link of gap g arriving in month s lies inside the windows of
    length k > g that end in s … s - g + k - 1; k = 0 (all history) holds every link up to its
    month. Each interval is a +1 and a -1 on a difference grid, summed down the months.
    """
    if links.empty:
        return
    start = _grid_columns(links["month"], base)
    cust = links["customer_key"].to_numpy()
    gap, count = links["gap_months"].to_numpy(), links["links"].to_numpy().astype("float64")
    months = links["month"]
    for k in sorted(lengths):
        inside = np.ones(len(gap), dtype=bool) if k == 0 else gap < k
        if not inside.any():
            continue
        flat = [start[inside] * n_cust + cust[inside]]
        weights = [count[inside]]
        if k:   # the window no longer reaches the link's earlier month from column start - gap + k on
            stop = np.minimum(_grid_columns(months[inside], base, k - gap[inside]), n_cols)
            flat.append(stop * n_cust + cust[inside])
            weights.append(-count[inside])
        diff = np.bincount(np.concatenate(flat), weights=np.concatenate(weights), minlength=(n_cols + 1) * n_cust)
        running = np.cumsum(diff.reshape(n_cols + 1, n_cust)[:n_cols], axis=0)
        yield k, running[first_col: first_col + n_months]


def _window_sums(grid: np.ndarray, first_col: int, n_months: int,
                 lengths: set[int]) -> Iterator[tuple[int, np.ndarray]]:
    """(k, sum of the last k months up to each report month) for k = 0 (all history, always) and each k
    in ``lengths``.

    ``grid`` is months x customers; the results' rows are the report months from ``first_col`` on.
    One running total down the months, and each window is the difference of two of its rows (the
    grid reaches back ``first_col`` >= k months before the first report month): one subtraction
    per window rather than k additions. Exact for the integer grids; the float grids hold counts.
    The results are views of two arrays: use each before asking for the next.
    """
    report = slice(first_col, first_col + n_months)
    running = np.cumsum(grid, axis=0)
    yield 0, running[report]
    # one buffer for every window (each is used before the next is asked for): fresh memory for each
    # would cost the kernel more than the subtraction
    window = np.empty_like(running[report])
    for k in sorted(lengths - {0}):
        yield k, np.subtract(running[report], running[first_col - k: first_col - k + n_months], out=window)


def _day_numbers(dates: pd.Series) -> np.ndarray:
    values = dates.to_numpy().astype("datetime64[D]")
    days = values.astype("int64")
    return np.where(np.isnat(values), _BLANK, days)


def _running_last(facts: pd.DataFrame, flat: np.ndarray, size: int, n_cols: int, n_cust: int,
                  column: str) -> np.ndarray:
    """Latest date up to each grid month (months x customers), _BLANK before the first."""
    days = _day_numbers(facts[column])
    grid = np.full(size, _BLANK, dtype="int64")
    np.maximum.at(grid, flat, days)
    return np.maximum.accumulate(grid.reshape(n_cols, n_cust), axis=0)


def _first_per_customer(facts: pd.DataFrame, n_cust: int, column: str) -> np.ndarray:
    """Earliest date per customer over all history; a far-future day number when none."""
    days = _day_numbers(facts[column])
    days = np.where(days == _BLANK, np.iinfo(np.int64).max, days)
    first = np.full(n_cust, np.iinfo(np.int64).max, dtype="int64")
    np.minimum.at(first, facts["customer_key"].to_numpy(), days)
    return first


def panel_keys(entry_dates: np.ndarray, months: pd.PeriodIndex) -> np.ndarray:
    """The customer_key of each row of the panel's ``months`` (consecutive), in row order: who is in
    the base at each month's end, month by month. A month's rows depend only on the entry dates."""
    return np.nonzero(_presence(entry_dates, _ordinal(months[0]), len(months)))[1]


def rows_per_month(entry_dates: np.ndarray, report_month: pd.Period, n_months: int,
                   ranges: list[tuple[int, int]]) -> np.ndarray:
    """(ranges x months) how many of customers lo .. hi - 1 are rows of each of the ``n_months``
    report months ending at ``report_month``: the row layout of customer partitions' panels, known
    from the entry dates before any panel is built."""
    first = _ordinal(report_month) - n_months + 1
    # the panel position of each customer's first month in the base (n_months: never)
    joins = np.minimum(np.maximum(_entry_months(entry_dates), first) - first, n_months)
    return np.array([np.cumsum(np.bincount(joins[lo:hi], minlength=n_months + 1))[:n_months]
                     for lo, hi in ranges], dtype="int64").reshape(len(ranges), n_months)


def _presence(entry_dates: np.ndarray, first: int, n_months: int) -> np.ndarray:
    """(months x customers) True where the customer is in the base at that month's end."""
    month_ord = np.arange(first, first + n_months)
    return _entry_months(entry_dates)[None, :] <= month_ord[:, None]


def _entry_months(entry_dates: np.ndarray) -> np.ndarray:
    """Each customer's base-entry month ordinal, as staging decided it (blank: in the base from the start)."""
    entry = _day_numbers(pd.Series(entry_dates))
    return np.where(entry == _BLANK, np.iinfo(np.int64).min, _month_of_day(np.where(entry == _BLANK, 0, entry)))


def _month_of_day(days: np.ndarray) -> np.ndarray:
    return days.astype("datetime64[D]").astype("datetime64[M]").astype("int64") + 1970 * 12
