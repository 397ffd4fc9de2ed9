"""The pure pipeline: raw tables and settings in, contract tables out. No I/O, no Excel.

raw --stage--> staged --customer_month_facts--> facts --build_panel--> snapshots
    --apply_rules / score_rfm--> labels and scores --build_outputs--> contract tables
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import pandas as pd

from crm_xl.config import Config
from crm_xl.core.facts import customer_month_facts
from crm_xl.core.outputs import build_outputs
from crm_xl.core.rfm import score_rfm
from crm_xl.core.rules import apply_rules
from crm_xl.core.snapshots import build_panel, check_memory
from crm_xl.core.staging import stage

T = TypeVar("T")


def run(transactions: pd.DataFrame, customers: pd.DataFrame, products: pd.DataFrame,
        config: Mapping[str, Any] | Config | None = None, *, today: dt.date | None = None,
        memory_limit: int | None = None) -> dict[str, pd.DataFrame]:
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
        Bytes the run may use: a history that would not fit (customers x ``history_months``)
        stops with a :class:`ConfigError` naming history_months before anything is computed.
        ``None``: not checked. The CLI and the workbook pass the memory available.

    Returns
    -------
    dict
        Table name -> DataFrame, in the order and with the columns of ``docs/outputs.md``.

    Raises
    ------
    ConfigError
        A setting is invalid (the message names it and what is allowed).
    InputError
        A table cannot be used at all (a required column missing, no usable transaction).
    """
    return run_timed(transactions, customers, products, config, today=today, memory_limit=memory_limit)[0]


def run_timed(transactions: pd.DataFrame, customers: pd.DataFrame, products: pd.DataFrame,
              config: Mapping[str, Any] | Config | None = None, *, today: dt.date | None = None,
              memory_limit: int | None = None) -> tuple[dict[str, pd.DataFrame], dict[str, float]]:
    """:func:`run`, also returning the seconds each layer took (for the CLI and the benchmark)."""
    clock = _Clock()
    cfg = Config.from_mapping(config)
    staged = clock("staging", stage, transactions, customers, products, cfg,
                   None if today is None else pd.Timestamp(today))
    check_memory(len(staged.customers), cfg, memory_limit)
    facts = clock("facts", customer_month_facts, staged.lines, cfg.measure)
    panel = clock("snapshots", build_panel, facts, staged.entry_dates, staged.report_month, cfg)
    labels = clock("rules", apply_rules, panel, cfg)
    scores = clock("rfm", score_rfm, panel, labels, cfg)
    counts = {"transactions": len(transactions), "customers": len(customers), "products": len(products)}
    tables = clock("outputs", build_outputs, staged, panel, labels, scores, cfg, counts)
    return tables, clock.seconds


class _Clock:
    """Runs a step and keeps how long it took."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def __call__(self, name: str, step: Callable[..., T], *args: Any) -> T:
        started = time.perf_counter()
        result = step(*args)
        self.seconds[name] = time.perf_counter() - started
        return result
