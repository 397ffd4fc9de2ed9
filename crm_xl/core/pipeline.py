"""The pure core pipeline: raw tables and settings in, the core's contract tables out. No I/O, no Excel.

raw --stage--> staged --customer_month_facts--> facts --build_panel--> snapshots
    --apply_rules / score_rfm--> labels and scores --build_outputs--> contract tables
staged --customer_facts--> per-customer facts (the snapshot's campaign fields)

The analyst views (movers, cohorts, KPIs, CLV, ...) are built on these tables by
:mod:`crm_xl.analyses.report`, which is what ``crm_xl.run`` runs.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import pandas as pd

from crm_xl.config import Config
from crm_xl.core.customer_facts import customer_facts
from crm_xl.core.facts import Facts, customer_month_facts
from crm_xl.core.outputs import build_outputs
from crm_xl.core.rfm import score_rfm
from crm_xl.core.rules import apply_rules
from crm_xl.core.snapshots import build_panel, check_memory
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


def run_core(transactions: pd.DataFrame, customers: pd.DataFrame, products: pd.DataFrame,
             config: Mapping[str, Any] | Config | None = None, *, today: dt.date | None = None,
             memory_limit: int | None = None,
             facts_function: Callable[[pd.DataFrame, str], Facts] = customer_month_facts) -> CoreRun:
    """The core's tables from the three raw tables (parameters and errors as ``crm_xl.run``).

    ``facts_function`` computes the facts layer (same contract as :func:`customer_month_facts`, the default);
    ``crm_xl.engines`` has one per engine, the core itself knows none of them.
    """
    clock = Clock()
    cfg = Config.from_mapping(config)
    staged = clock("staging", stage, transactions, customers, products, cfg,
                   None if today is None else pd.Timestamp(today))
    check_memory(len(staged.customers), cfg, memory_limit)
    facts = clock("facts", facts_function, staged.lines, cfg.measure)
    per_customer = clock("customer_facts", customer_facts, staged.lines, staged.products["product_id"],
                         len(staged.customers), cfg.measure)
    panel = clock("snapshots", build_panel, facts, staged.entry_dates, staged.report_month, cfg)
    labels = clock("rules", apply_rules, panel, cfg)
    scores = clock("rfm", score_rfm, panel, labels, cfg)
    counts = {"transactions": len(transactions), "customers": len(customers), "products": len(products)}
    tables = clock("outputs", build_outputs, staged, panel, labels, scores, per_customer, cfg, counts)
    return CoreRun(tables, staged, cfg, clock.seconds)


class Clock:
    """Runs a step and keeps how long it took (for the CLI and the benchmark)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def __call__(self, name: str, step: Callable[..., T], *args: Any) -> T:
        started = time.perf_counter()
        result = step(*args)
        self.seconds[name] = time.perf_counter() - started
        return result
