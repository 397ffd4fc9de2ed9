"""The history store: every month a refresh computed, kept as Parquet, and the incremental refresh
that reuses it.

- :mod:`~crm_xl.store.digests`: what each month was computed from (pure).
- :mod:`~crm_xl.store.history`: the folder of Parquet files and its manifest.
- :mod:`~crm_xl.store.frames`: stored Arrow tables back to the core's DataFrame types.
- :mod:`~crm_xl.store.incremental`: :func:`run_with_store`, ``crm_xl.run`` over a store.

What it may import: the core, the analyses, the engines, ``crm_xl.io`` (atomic files, locks) and
the shared top-level modules; never the workbook, Excel, Power BI or the CLI, which call it.
See docs/history_store.md.
"""

from crm_xl.store.incremental import RefreshPlan, StoreRun, run_with_store

__all__ = ["RefreshPlan", "StoreRun", "run_with_store"]
