"""Engines: where the facts run. Each computes the facts layer's two tables (the contract in
:mod:`crm_xl.core.facts`) from the staged lines, identical to the in-memory numpy code's, so every
table after them is the same whichever engine ran.

- ``numpy``: :func:`crm_xl.core.facts.customer_month_facts`, in memory (the default).
- ``duckdb``: the same aggregation as SQL on embedded DuckDB (``pip install 'crm-xl[duckdb]'``).
- ``spark``: the same SQL on PySpark, a local session unless one is active
  (``pip install 'crm-xl[spark]'``, needs Java 17+).

The core never imports this package: :func:`crm_xl.core.pipeline.run_core` takes the facts
function as a parameter and :mod:`crm_xl.analyses.report` picks it here by name.

What it may import: the standard library, numpy, pandas, pyarrow, the engines' own libraries
(imported only when that engine is chosen), ``crm_xl.core`` and the shared top-level modules. Never
an adapter, never ``crm_xl.analyses``. See docs/engines.md.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from crm_xl.core.facts import Facts
from crm_xl.errors import ConfigError, CrmXlError

FactsFunction = Callable[[pd.DataFrame, str], Facts]


@dataclass(frozen=True)
class Engine:
    """An engine: the module holding its ``customer_month_facts`` and the package it needs."""

    name: str
    module: str
    package: str | None = None     # import name of the library it needs, None: nothing beyond crm_xl's own
    extra: str | None = None       # the crm-xl extra that installs it


ENGINES: dict[str, Engine] = {engine.name: engine for engine in (
    Engine("numpy", "crm_xl.core.facts"),
    Engine("duckdb", "crm_xl.engines.duckdb_facts", "duckdb", "duckdb"),
    Engine("spark", "crm_xl.engines.spark_facts", "pyspark", "spark"),
)}
DEFAULT_ENGINE = "numpy"


def check_engine(name: object) -> Engine:
    """The engine called ``name``, or a :class:`ConfigError` naming the allowed ones."""
    if not isinstance(name, str) or name not in ENGINES:
        allowed = ", ".join(repr(known) for known in ENGINES)
        raise ConfigError("engine", f"must be one of {allowed}, got {name!r}")
    return ENGINES[name]


def facts_function(name: object) -> FactsFunction:
    """The facts function of engine ``name`` (``lines, measure -> Facts``), its library imported.

    Raises :class:`ConfigError` for an unknown name and :class:`CrmXlError` with the pip command
    when the engine's library is not installed.
    """
    engine = check_engine(name)
    if engine.package is not None and importlib.util.find_spec(engine.package) is None:
        raise CrmXlError(f"engine {engine.name!r} needs the {engine.package} package, which is not installed: "
                         f"pip install 'crm-xl[{engine.extra}]' (or run with engine='{DEFAULT_ENGINE}')")
    return importlib.import_module(engine.module).customer_month_facts
