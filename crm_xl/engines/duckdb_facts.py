"""The facts on embedded DuckDB: the staged lines registered as Arrow (no copy), the queries of
:mod:`crm_xl.engines.sql`, the results read back as Arrow. A fresh in-memory database a call."""

from __future__ import annotations

import duckdb
import pandas as pd

from crm_xl.core.facts import Facts
from crm_xl.engines.sql import DUCKDB, core_query, line_table, links_query, months_query, read_facts


def customer_month_facts(lines: pd.DataFrame, measure: str = "units") -> Facts:
    """:func:`crm_xl.core.facts.customer_month_facts`, computed by DuckDB."""
    table = line_table(lines)
    with duckdb.connect(":memory:") as con:
        con.register("lines", table.table)
        con.execute(f"CREATE TEMP TABLE core AS {core_query(table, measure, DUCKDB, 'lines')}")
        months = con.sql(months_query(table, DUCKDB, "lines", "core")).to_arrow_table()
        links = con.sql(links_query("core")).to_arrow_table()
    return read_facts(table, months, links)
