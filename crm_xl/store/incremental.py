"""Incremental refresh: recompute from the earliest month whose inputs changed, reuse the stored months.

Every refresh stages all the lines and computes the facts (that is how it learns what changed);
then, instead of every history month, it computes only the months from the first one the store
cannot vouch for, and takes the months before it from the store. The tables are the same as a
full rebuild's, byte for byte once written (``tests/test_store.py`` checks it on appended months,
late and corrected lines, new customers and changed settings):

- a month's figures depend on that month and the earlier ones only (:mod:`crm_xl.store.digests`),
  and the core computes the latest months with the same lookback whatever the first one is
  (:func:`crm_xl.core.pipeline.finish_core`);
- the stored rows come back with the fresh tables' types (categories, nullable integers, dates)
  and in the same order: month, then customer_id;
- the views (movers, KPIs, cohorts, CLV, ...) always run on the whole spliced history.

A settings change, a new crm_xl version, or a customer in the base from the start (no created_date)
appearing or leaving changes every month: a full rebuild, which then fills the store again.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from crm_xl._version import __version__
from crm_xl.analyses.report import with_views
from crm_xl.config import STATES, TIERS, Config
from crm_xl.core.pipeline import Clock, CoreRun, Prepared, finish_core, prepare_core
from crm_xl.core.snapshots import panel_keys
from crm_xl.engines import DEFAULT_ENGINE, facts_function
from crm_xl.engines.pages import small_pages
from crm_xl.io.files import new_id
from crm_xl.io.locks import DEFAULT_WAIT, locked
from crm_xl.store.digests import SCHEMA_VERSION, InputDigests, input_digests
from crm_xl.store.frames import fact_partitions, like, month_tables, same_texts, spliced, with_history_rows
from crm_xl.store.history import FACT_TABLES, MONTH_TABLES, HistoryStore, Part


@dataclasses.dataclass(frozen=True)
class RefreshPlan:
    """Which history months a refresh takes from the store and which it computes, and why."""

    months: pd.PeriodIndex          # the history months of this run
    reused: int                     # how many of the first ones come from the store
    reason: str                     # why the first computed month had to be computed

    @property
    def computed(self) -> int:
        return len(self.months) - self.reused

    @property
    def full(self) -> bool:
        return self.reused == 0

    def describe(self) -> str:
        """One line for the CLI and the workbook's Log."""
        if self.full:
            return f"history store: all {len(self.months)} months computed ({self.reason})"
        first = self.months[self.reused]
        return (f"history store: {self.reused} months reused, {self.computed} computed from {first} "
                f"({self.reason})")


@dataclasses.dataclass(frozen=True)
class StoreRun:
    """The tables of a refresh over a history store, the seconds per step and what it reused."""

    tables: dict[str, pd.DataFrame]
    seconds: dict[str, float]
    plan: RefreshPlan


def run_with_store(transactions: pd.DataFrame, customers: pd.DataFrame, products: pd.DataFrame,
                   config: Mapping[str, Any] | Config | None = None, *, store: str | Path,
                   today: dt.date | None = None, memory_limit: int | None = None, engine: str = DEFAULT_ENGINE,
                   wait: float = DEFAULT_WAIT, run_id: str | None = None) -> StoreRun:
    """``crm_xl.run``'s tables, reusing the months ``store`` holds and writing the ones computed back.

    Parameters and errors as :func:`crm_xl.run`; ``store`` is the store's folder (made on first
    use; a folder holding anything else is refused), ``wait`` the seconds to wait for another
    refresh writing the same store, ``run_id`` what the written files are stamped with.
    """
    facts = facts_function(engine)
    with small_pages():
        prepared = prepare_core(transactions, customers, products, config, today=today, memory_limit=memory_limit,
                                facts_function=facts)
        clock = Clock()
        digests = clock("digests", input_digests, prepared)
        history = HistoryStore(store)
        history.folder.mkdir(parents=True, exist_ok=True)
        with locked(history.folder, wait=wait):
            parts = {table: history.parts(table) for table in (*MONTH_TABLES, *FACT_TABLES)}
            plan = plan_refresh(prepared.staged.report_month, prepared.config.history_months, digests, parts)
            core = clock("store_read", _core_tables, prepared, history, plan)
            tables, seconds = with_views(core)
            clock("store_write", _write_back, history, prepared, core, tables, plan, digests, parts,
                  run_id or new_id())
        return StoreRun(tables, {**seconds, **clock.seconds}, plan)


def plan_refresh(report_month: pd.Period, history_months: int, digests: InputDigests,
                 parts: Mapping[str, Mapping[pd.Period, Part]]) -> RefreshPlan:
    """How many leading history months the store can give: every per-month table of each one (and
    customer_history of the month before the history, which the first month's transitions and
    the campaign fields read) written from this run's settings and inputs. The report month itself
    is always computed: the snapshot and its reasons are built from it."""
    months = pd.period_range(end=report_month, periods=history_months, freq="M")

    def valid(table: str, month: pd.Period) -> bool:
        return _vouched(parts, table, month, digests)

    reused = 0
    if valid("customer_history", months[0] - 1):
        while reused < len(months) - 1 and all(valid(table, months[reused]) for table in MONTH_TABLES):
            reused += 1
    first_needed = months[reused] if reused else months[0] - 1
    return RefreshPlan(months, reused, _reason(first_needed, report_month, digests, parts.get("customer_history", {})))


def _vouched(parts: Mapping[str, Mapping[pd.Period, Part]], table: str, month: pd.Period,
             digests: InputDigests) -> bool:
    """Whether the stored file of ``table`` and ``month`` was computed from this run's settings and inputs."""
    part = parts.get(table, {}).get(month)
    return part is not None and part.settings == digests.settings and part.inputs == digests.chain(month)


def _reason(first_needed: pd.Period, report: pd.Period, digests: InputDigests,
            stored: Mapping[pd.Period, Part]) -> str:
    same = {month: part for month, part in stored.items() if part.settings == digests.settings}
    if not stored:
        return "the store is empty"
    if not same:
        return "the settings or the crm_xl version changed since the store was written"
    changed = digests.first_difference({month: part.inputs for month, part in same.items()})
    if changed is not None and changed <= first_needed:
        return f"the inputs up to {changed} changed: new, late or corrected lines, or customers"
    if first_needed not in same:
        return f"{first_needed} is not in the store yet"
    if first_needed == report:
        return "nothing changed; the report month is always computed"
    return f"{first_needed} is not completely in the store"


def _core_tables(prepared: Prepared, history: HistoryStore, plan: RefreshPlan) -> CoreRun:
    if plan.full:
        return finish_core(prepared)
    reused = plan.months[:plan.reused]
    lead = history.read("customer_history", [reused[0] - 1])
    keys = panel_keys(prepared.staged.entry_dates, pd.period_range(reused[0] - 1, reused[-1], freq="M"))
    earlier = like(history.read("customer_history", [reused[0] - 1, *reused]), _label_frame(prepared), keys)
    core = finish_core(prepared, months=plan.computed, earlier=earlier)
    tables = dict(core.tables)
    for table in MONTH_TABLES:
        tables[table] = spliced(table, history.read(table, reused), tables[table], lead,
                                keys[lead.num_rows:] if table == "customer_history" else None)
    tables["customer_snapshot"] = same_texts(tables["customer_snapshot"], core.tables["customer_history"],
                                             tables["customer_history"])
    tables["run_info"] = with_history_rows(tables["run_info"], len(tables["customer_history"]))
    return dataclasses.replace(core, tables=tables)


def _label_frame(prepared: Prepared) -> pd.DataFrame:
    """An empty frame with the types the campaign fields read the earlier months in."""
    ids = pd.Index(prepared.staged.customers["customer_id"].to_numpy(), dtype="str")
    return pd.DataFrame({
        "report_month": pd.Series([], dtype="datetime64[s]"),
        "customer_id": pd.Categorical([], categories=ids),
        "value_tier": pd.Categorical([], categories=pd.Index(list(TIERS), dtype="str")),
        "lifecycle_state": pd.Categorical([], categories=pd.Index(list(STATES), dtype="str")),
    })


def _write_back(history: HistoryStore, prepared: Prepared, core: CoreRun, tables: dict[str, pd.DataFrame],
                plan: RefreshPlan, digests: InputDigests, parts: Mapping[str, Mapping[pd.Period, Part]],
                run_id: str) -> None:
    """Write every month this run computed, remove every stored month its inputs contradict, then
    the manifest. Months before the history that are still valid stay: the store keeps the history
    beyond history_months."""
    report = plan.months[-1]

    def valid(table: str, month: pd.Period) -> bool:
        return _vouched(parts, table, month, digests)

    fresh: dict[str, dict[pd.Period, pa.Table]] = {
        table: month_tables(tables[table], plan.months[plan.reused:]) for table in MONTH_TABLES}
    if plan.full and core.lead_history is not None:
        fresh["customer_history"].update(month_tables(core.lead_history, [plan.months[0] - 1]))
    fresh.update(fact_partitions(prepared.facts, prepared.staged.customers["customer_id"],
                                 lambda table, month: not valid(table, month)))
    writes = [(table, month, data) for table, by_month in fresh.items() for month, data in by_month.items()
              if not valid(table, month)]
    # Parquet encoding releases the GIL: two files at a time use both cores of a small machine
    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(lambda job: history.write(job[0], job[1], job[2], settings=digests.settings,
                                                inputs=digests.chain(job[1]), run_id=run_id), writes))
    kept: dict[str, dict[str, dict[str, object]]] = {}
    for table in (*MONTH_TABLES, *FACT_TABLES):
        kept[table] = {}
        for month, part in sorted(parts[table].items()):
            if month in fresh.get(table, {}):
                continue
            if month > report or not valid(table, month):
                history.remove(table, month)
            else:
                kept[table][str(month)] = {"rows": part.rows, "run_id": part.run_id, "inputs": part.inputs}
        for month, data in fresh.get(table, {}).items():
            kept[table][str(month)] = {"rows": data.num_rows, "run_id": run_id if not valid(table, month)
                                       else parts[table][month].run_id, "inputs": digests.chain(month)}
        kept[table] = dict(sorted(kept[table].items()))
    history.write_manifest({
        "schema_version": SCHEMA_VERSION, "crm_xl_version": __version__, "run_id": run_id,
        "report_month": str(report), "history_months": len(plan.months), "settings": digests.settings,
        "last_refresh": {"reused_months": plan.reused, "computed_months": plan.computed, "reason": plan.reason},
        "tables": kept,
    })

