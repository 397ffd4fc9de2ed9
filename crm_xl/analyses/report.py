"""The whole report: the core's tables, then every analyst view built on them.

This is what ``crm_xl.run`` runs and what every adapter (CLI, workbook, live Excel) calls, so each
produces the same tables. A view is a function ``(CoreRun) -> {table name: DataFrame}`` listed in
:data:`VIEWS`; it reads the core's contract tables (and, where it needs order-level detail, the
staged lines), never recomputes them, and its tables are contract tables like the core's.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from typing import Any

import pandas as pd

from crm_xl import contract
from crm_xl.analyses.calibration import calibration
from crm_xl.analyses.clv import clv
from crm_xl.analyses.cohorts import cohort_views
from crm_xl.analyses.kpis import kpis_view
from crm_xl.analyses.movers import movers_view
from crm_xl.analyses.rfm_grid import rfm_grid_views
from crm_xl.config import Config
from crm_xl.core.pipeline import Clock, CoreRun, run_core
from crm_xl.engines import DEFAULT_ENGINE, facts_function
from crm_xl.engines.pages import small_pages

View = Callable[[CoreRun], dict[str, pd.DataFrame]]

#: (timing name, view) in the order they run; a later view may read an earlier one's tables.
VIEWS: tuple[tuple[str, View], ...] = (
    ("movers", movers_view),
    ("kpis", kpis_view),
    ("calibration", calibration),
    ("cohorts", cohort_views),
    ("rfm_grid", rfm_grid_views),
    ("clv", clv),
)


def run(transactions: pd.DataFrame, customers: pd.DataFrame, products: pd.DataFrame,
        config: Mapping[str, Any] | Config | None = None, *, today: dt.date | None = None,
        memory_limit: int | None = None, engine: str = DEFAULT_ENGINE,
        partitions: int | None = None) -> dict[str, pd.DataFrame]:
    """Compute every output table from the three raw tables.

    Parameters
    ----------
    transactions, customers, products
        The raw tables as given (see ``docs/business_logic.md`` for their columns). They are not
        modified.
    config
        A :class:`Config`, or a mapping of setting name to value such as
        ``{"report_month": "2024-12", "history_months": 24}``; missing settings take defaults.
    today
        The date of the run, for the one rule that needs it: lines dated more than a month after
        it are a ``future_date`` warning and left out of the default report month. ``None`` (the
        default, so the same inputs always give the same tables): every line is plausible. The
        CLI and the workbook pass the computer's date.
    memory_limit
        Bytes the run may use. When the customers x months grids would not fit, the snapshots,
        rules and outputs are computed for one range of customers at a time (same tables, a
        little slower); a history whose rows alone would not fit stops with a
        :class:`ConfigError` naming history_months before anything is computed. ``None``: not
        checked. The CLI and the workbook pass the memory available.
    engine
        Where the facts (transaction lines to customer x month) are computed: ``"numpy"`` (in
        memory, the default), ``"duckdb"`` or ``"spark"`` (``pip install 'crm-xl[duckdb]'`` or
        ``'crm-xl[spark]'``). Every engine gives the same tables; see ``docs/engines.md``.
    partitions
        Compute the snapshots, rules and outputs in this many ranges of customers, one after the
        other (``None``, the default: as ``memory_limit`` needs, one when everything fits). The
        tables are the same whatever the number; see "Customer partitions" in ``docs/engines.md``.

    Returns
    -------
    dict
        Table name -> DataFrame, in the order and with the columns of ``docs/outputs.md``.

    Raises
    ------
    ConfigError
        A setting is invalid (the message names it and what is allowed), or ``engine`` is unknown.
    CrmXlError
        The engine's library is not installed (the message gives the pip command).
    InputError
        A table cannot be used at all (a required column missing, no usable transaction).
    """
    return run_timed(transactions, customers, products, config, today=today, memory_limit=memory_limit,
                     engine=engine, partitions=partitions)[0]


def run_timed(transactions: pd.DataFrame, customers: pd.DataFrame, products: pd.DataFrame,
              config: Mapping[str, Any] | Config | None = None, *, today: dt.date | None = None,
              memory_limit: int | None = None, engine: str = DEFAULT_ENGINE, partitions: int | None = None
              ) -> tuple[dict[str, pd.DataFrame], dict[str, float]]:
    """:func:`run`, also returning the seconds each layer and view took (for the CLI and the benchmark)."""
    facts = facts_function(engine)      # an unknown or missing engine stops before any work
    with small_pages():
        core = run_core(transactions, customers, products, config, today=today, memory_limit=memory_limit,
                        facts_function=facts, partitions=partitions)
        return with_views(core)


def with_views(core: CoreRun) -> tuple[dict[str, pd.DataFrame], dict[str, float]]:
    """The core's tables and every view's, in contract order, and the seconds of each step."""
    clock = Clock()
    tables = dict(core.tables)
    for name, view in VIEWS:
        step = CoreRun(tables, core.staged, core.config, core.seconds)
        tables.update(clock(name, view, step))
    missing = [name for name in contract.TABLE_NAMES if name not in tables]
    if missing:     # a contract table no step builds is a bug of ours, not of the user's data
        raise RuntimeError(f"no step builds the contract tables {missing}")
    return {name: tables[name] for name in contract.TABLE_NAMES}, {**core.seconds, **clock.seconds}
