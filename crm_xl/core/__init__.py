"""The pure core: raw tables and a Config in, the contract's output tables out.

It runs in one direction, a module a step: ``staging`` (with ``columns``, ``coerce`` and
``quality``) maps the user's headers, types and keys the raw tables and logs data quality and
every rejected row; ``facts`` is the one boundary over transaction lines
(customer × calendar-month aggregates); ``snapshots`` builds the month-end windows; ``rules`` and
``rfm`` assign status, tier, event, lifecycle state and RFMT segments; ``reasons`` explains them;
``outputs`` shapes the contract tables; ``pipeline`` runs the steps in order. ``exact`` is the
integer (micro-unit) arithmetic that thresholds are decided in, so no rounding moves a customer.

What it may import: pandas, numpy, pyarrow, the standard library and the shared top-level modules
(``crm_xl.config``, ``crm_xl.contract``, ``crm_xl.errors``, ``crm_xl._version``). Never an adapter
(``crm_xl.io``, ``crm_xl.workbook``, ``crm_xl.excel``, ``crm_xl.powerbi``, ``crm_xl.cli``), never
xlwings, never ``crm_xl.analyses`` (analyses read the core, not the other way round). No I/O:
no files, no clock, no network. ``tests/test_architecture.py`` reads the imports to keep it so.
"""
