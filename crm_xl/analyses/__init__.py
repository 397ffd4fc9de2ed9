"""Pure analyses on top of the core's results or of plain transaction tables.

Today ``lifetimes_compat`` (the lifetimes-compatible RFM summary behind ``crm_xl.lifetimes_summary``);
the movers, cohorts, KPIs, threshold calibration and CLV analyses land here next, each in a module
of its own that reads the core's tables and returns tables.

What it may import: pandas, numpy, scipy, the standard library, the shared top-level modules
(``crm_xl.config``, ``crm_xl.contract``, ``crm_xl.errors``), ``crm_xl.core`` and ``crm_xl.engines`` (the
report picks the facts function of the engine it is asked for). Never an adapter
(``crm_xl.io``, ``crm_xl.workbook``, ``crm_xl.excel``, ``crm_xl.powerbi``, ``crm_xl.cli``) and never
xlwings; no I/O. ``tests/test_architecture.py`` reads the imports to keep it so.
"""
