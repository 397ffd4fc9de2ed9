"""The pure core pipeline: raw tables and settings in, the core's contract tables out. No I/O, no Excel.

raw --stage--> staged --customer_month_facts--> facts --build_panel--> snapshots
    --apply_rules / score_rfm--> labels and scores --build_outputs--> contract tables
staged --customer_facts--> per-customer facts (the snapshot's campaign fields)

The analyst views (movers, cohorts, KPIs, CLV, ...) are built on these tables by
:mod:`crm_xl.analyses.report`, which is what ``crm_xl.run`` runs.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import pandas as pd

from crm_xl.config import Config
from crm_xl.core.customer_facts import customer_facts
from crm_xl.core.facts import Facts, customer_month_facts
from crm_xl.core.outputs import assemble, build_outputs
from crm_xl.core.partitions import plan_partitions, run_partitions
from crm_xl.core.rfm import score_rfm
from crm_xl.core.rules import apply_rules
from crm_xl.core.snapshots import build_panel
from crm_xl.core.staging import Staged, stage

T = TypeVar("T")


@dataclass(frozen=True)
class CoreRun:
    """What the core computed: its contract tables, the staged inputs they came from (the analyses
    that need order-level detail, such as CLV, read ``staged.lines``), the settings and the seconds
    each layer took."""

    tables: dict[str, pd.DataFrame]
    staged: Staged
    config: Config
    seconds: dict[str, float]
    #: customer_history's rows of the month before the history (computed for its transitions): what
    #: the history store keeps so a later refresh whose history starts a month later can reuse it
    lead_history: pd.DataFrame | None = None


def run_core(transactions: pd.DataFrame, customers: pd.DataFrame, products: pd.DataFrame,
             config: Mapping[str, Any] | Config | None = None, *, today: dt.date | None = None,
             memory_limit: int | None = None,
             facts_function: Callable[[pd.DataFrame, str], Facts] = customer_month_facts,
             partitions: int | None = None) -> CoreRun:
    """The core's tables from the three raw tables (parameters and errors as ``crm_xl.run``).

    ``facts_function`` computes the facts layer (same contract as :func:`customer_month_facts`, the default);
    ``crm_xl.engines`` has one per engine, the core itself knows none of them. ``partitions``: see
    :func:`finish_core`.
    """
    prepared = prepare_core(transactions, customers, products, config, today=today, memory_limit=memory_limit,
                            facts_function=facts_function)
    return finish_core(prepared, partitions=partitions)


@dataclass(frozen=True)
class Prepared:
    """The layers every month shares, computed once from all the lines: the staged inputs, the
    customer x month facts and the per-customer facts. :func:`finish_core` makes the snapshots and
    everything after them; an incremental refresh (``crm_xl.store``) looks at the facts in between
    to decide how many months it has to recompute."""

    staged: Staged
    facts: Facts
    per_customer: pd.DataFrame
    config: Config
    counts: dict[str, int]
    seconds: dict[str, float]
    #: customer partitions the snapshots and everything after them need to fit the memory limit
    partitions: int = 1


def prepare_core(transactions: pd.DataFrame, customers: pd.DataFrame, products: pd.DataFrame,
                 config: Mapping[str, Any] | Config | None = None, *, today: dt.date | None = None,
                 memory_limit: int | None = None,
                 facts_function: Callable[[pd.DataFrame, str], Facts] = customer_month_facts) -> Prepared:
    """Staging, facts and per-customer facts (the first half of :func:`run_core`).

    The memory plan is made here, before the facts, for the whole history (a run that computes
    fewer months still holds every month's rows of customer_history): how many customer partitions
    the grids need (:mod:`crm_xl.core.partitions`), or a :class:`ConfigError` naming history_months."""
    clock = Clock()
    cfg = Config.from_mapping(config)
    staged = clock("staging", stage, transactions, customers, products, cfg,
                   None if today is None else pd.Timestamp(today))
    partitions = plan_partitions(len(staged.customers), cfg, memory_limit)
    facts = clock("facts", facts_function, staged.lines, cfg.measure)
    per_customer = clock("customer_facts", customer_facts, staged.lines, staged.products["product_id"],
                         len(staged.customers), cfg.measure)
    counts = {"transactions": len(transactions), "customers": len(customers), "products": len(products)}
    return Prepared(staged, facts, per_customer, cfg, counts, clock.seconds, partitions)


def finish_core(prepared: Prepared, *, months: int | None = None,
                earlier: pd.DataFrame | None = None, partitions: int | None = None) -> CoreRun:
    """Snapshots, rules, RFM and the contract tables (the second half of :func:`run_core`).

    ``months`` computes only the latest report months (default: ``history_months``, every one):
    each month's figures read the facts of that month and the months before it, never the other
    history months, so they are the same whichever months are computed with them. The per-month
    tables then hold those months only (and ``history_rows`` counts them); ``earlier`` gives the
    customer_history rows (report_month, customer_id, value_tier, lifecycle_state) of every history
    month before them, and of the month before the history, for the snapshot's campaign fields,
    which look back over the whole history.

    ``partitions`` computes them for that many ranges of customers, one after the other, with the
    same tables (:mod:`crm_xl.core.partitions`); default: as the memory plan of :func:`prepare_core`
    needs, one when the grids fit.
    """
    cfg, staged = prepared.config, prepared.staged
    clock = Clock()
    panel_config = cfg if months is None else dataclasses.replace(cfg, history_months=months)
    parts = prepared.partitions if partitions is None else partitions
    if parts > 1:
        done = run_partitions(staged, prepared.facts, prepared.per_customer, cfg, panel_config, parts, earlier,
                              clock)
        tables, lead = clock("outputs", assemble, staged, done.part, done.cut_points, done.segment_names,
                             done.months, cfg, prepared.counts)
        return CoreRun(tables, staged, cfg, {**prepared.seconds, **clock.seconds}, lead)
    panel = clock("snapshots", build_panel, prepared.facts, staged.entry_dates, staged.report_month, panel_config)
    labels = clock("rules", apply_rules, panel, cfg)
    scores = clock("rfm", score_rfm, panel, labels, cfg)
    tables, lead = clock("outputs", build_outputs, staged, panel, labels, scores, prepared.per_customer, cfg,
                         prepared.counts, earlier)
    return CoreRun(tables, staged, cfg, {**prepared.seconds, **clock.seconds}, lead)


class Clock:
    """Runs a step and keeps how long it took (for the CLI and the benchmark)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def __call__(self, name: str, step: Callable[..., T], *args: Any) -> T:
        started = time.perf_counter()
        result = step(*args)
        # a step run once per customer partition adds up
        self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started
        return result
