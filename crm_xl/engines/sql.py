"""The facts as SQL, shared by the SQL engines: the lines handed over as Arrow, the queries, and
the results read back into the contract's frames (:func:`crm_xl.core.facts.fact_tables`).

Everything is integer arithmetic. Dates become day and month numbers (from 1970-01-01 and
1970-01), orders are ``COUNT(DISTINCT invoice_key)``, units and revenue are exact micro-units
summed as BIGINT: staging makes them int64 only when no customer's sum can overflow it. When it
could (an object column of Python integers), each value is cut into 32-bit limbs
(v = sum of limb_j * 2**(32 j), every limb but the top one in [0, 2**32)); each limb's sum is a
BIGINT sum that cannot overflow (fewer than 2**31 lines a group) and the exact totals are put
back together in Python. So no engine ever sums a float or a decimal type of its own.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from crm_xl.core.facts import Facts, fact_tables
from crm_xl.core.staging import KIND_CORE, KIND_ENTRY

LIMB_BITS = 32
MEASURES = ("units", "revenue")


@dataclass(frozen=True)
class Dialect:
    """What differs between the engines' SQL: the day number of a timestamp."""

    day: str          # a format string over the timestamp column's name


DUCKDB = Dialect(day="(CAST({0} AS DATE) - DATE '1970-01-01')")
SPARK = Dialect(day="datediff(CAST({0} AS DATE), DATE '1970-01-01')")


@dataclass(frozen=True)
class LineTable:
    """The staged lines as the engines read them: an Arrow table and how many limbs each measure
    has (0: one plain int64 column)."""

    table: pa.Table
    limbs: dict[str, int]

    def columns(self, measure: str) -> list[str]:
        return [measure] if not self.limbs[measure] else [f"{measure}_{j}" for j in range(self.limbs[measure])]


def line_table(lines: pd.DataFrame) -> LineTable:
    """The columns the facts read, as Arrow (zero-copy for the numeric and date columns)."""
    columns = {name: pa.array(lines[name].to_numpy()) for name in ("customer_key", "invoice_key", "date",
                                                                    "quantity", "kind")}
    limbs = {}
    for measure in MEASURES:
        values = lines[measure].to_numpy()
        if values.dtype == object:
            parts = split_limbs(values)
            limbs[measure] = len(parts)
            columns.update({f"{measure}_{j}": pa.array(part) for j, part in enumerate(parts)})
        else:
            limbs[measure] = 0
            columns[measure] = pa.array(values.astype("int64", copy=False))
    return LineTable(pa.table(columns), limbs)


def split_limbs(values: np.ndarray) -> list[np.ndarray]:
    """Python integers as int64 limbs of 32 bits, lowest first; the top limb signed, below 2**31."""
    top_bits = max((abs(int(v)).bit_length() for v in values), default=0) + 1      # + the sign
    count = max(1, -(-top_bits // LIMB_BITS))
    mask = (1 << LIMB_BITS) - 1
    parts = [((values >> (LIMB_BITS * j)) & mask).astype("int64") for j in range(count - 1)]
    return [*parts, (values >> (LIMB_BITS * (count - 1))).astype("int64")]


def join_limbs(sums: list[np.ndarray]) -> np.ndarray:
    """The exact totals (Python integers) from the limbs' sums."""
    total = np.full(len(sums[0]), 0, dtype=object)
    for j, part in enumerate(sums):
        total = total + (part.astype(object) << (LIMB_BITS * j))
    return total


def _positive(columns: list[str]) -> str:
    """SQL for "the value these limbs make is > 0" (the lower limbs are never negative)."""
    *lower, top = columns
    if not lower:
        return f"{top} > 0"
    return f"({top} > 0 OR ({top} = 0 AND ({' OR '.join(f'{c} > 0' for c in lower)})))"


def core_query(lines: LineTable, measure: str, dialect: Dialect, source: str) -> str:
    """The purchase lines (see the facts contract): core, quantity > 0 (NaN is not) and measure > 0,
    with their day and month numbers."""
    limb_columns = ", ".join(c for m in MEASURES for c in lines.columns(m))
    return (f"SELECT customer_key, invoice_key, {dialect.day.format('date')} AS day, "
            f"(year(date) - 1970) * 12 + month(date) - 1 AS month, {limb_columns} FROM {source} "
            f"WHERE kind = {KIND_CORE} AND quantity > 0 AND NOT isnan(quantity) "
            f"AND {_positive(lines.columns(measure))}")


def months_query(lines: LineTable, dialect: Dialect, source: str, core: str) -> str:
    """One row per customer-month with a purchase or an entry line, sorted."""
    sums = ", ".join(f"CAST(SUM({c}) AS BIGINT) AS {c}" for m in MEASURES for c in lines.columns(m))
    filled = ", ".join(f"COALESCE(p.{c}, 0) AS {c}" for m in MEASURES for c in lines.columns(m))
    return f"""
        WITH purchases AS (
            SELECT customer_key, month, {sums}, COUNT(DISTINCT invoice_key) AS invoices,
                   MIN(day) AS first_day, MAX(day) AS last_day
            FROM {core} GROUP BY customer_key, month),
        entries AS (
            SELECT customer_key, (year(date) - 1970) * 12 + month(date) - 1 AS month,
                   MIN({dialect.day.format('date')}) AS first_entry_day
            FROM {source} WHERE kind = {KIND_ENTRY} AND quantity > 0 AND NOT isnan(quantity)
            GROUP BY 1, 2)
        SELECT COALESCE(p.customer_key, e.customer_key) AS customer_key, COALESCE(p.month, e.month) AS month,
               {filled}, COALESCE(p.invoices, 0) AS invoices, p.first_day, p.last_day, e.first_entry_day
        FROM purchases p FULL OUTER JOIN entries e ON p.customer_key = e.customer_key AND p.month = e.month
        ORDER BY 1, 2"""


def links_query(core: str) -> str:
    """Invoice links: an invoice's months joined to their previous ones (see the facts contract)."""
    return f"""
        WITH invoice_months AS (SELECT DISTINCT customer_key, invoice_key, month FROM {core}),
        steps AS (
            SELECT customer_key, month,
                   month - LAG(month) OVER (PARTITION BY customer_key, invoice_key ORDER BY month) AS gap_months
            FROM invoice_months)
        SELECT customer_key, month, gap_months, COUNT(*) AS links FROM steps
        WHERE gap_months IS NOT NULL GROUP BY customer_key, month, gap_months ORDER BY 1, 2, 3"""


def read_facts(lines: LineTable, months: pa.Table, links: pa.Table) -> Facts:
    """The engine's two result tables as the contract's frames."""
    def ints(table: pa.Table, name: str) -> np.ndarray:
        return table.column(name).to_numpy().astype("int64", copy=False)

    def days(name: str) -> np.ndarray:      # NULL (no such line) -> NaN
        return months.column(name).cast(pa.float64()).to_numpy()

    def measure(name: str) -> np.ndarray:
        sums = [ints(months, c) for c in lines.columns(name)]
        return join_limbs(sums) if lines.limbs[name] else sums[0]

    return fact_tables(
        customer=ints(months, "customer_key"), month=ints(months, "month"), units=measure("units"),
        revenue=measure("revenue"), invoices=ints(months, "invoices"), first_core_day=days("first_day"),
        last_core_day=days("last_day"), first_entry_day=days("first_entry_day"),
        links=tuple(ints(links, c) for c in ("customer_key", "month", "gap_months", "links")))
