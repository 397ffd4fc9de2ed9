"""The .xlsm file adapter: the workbook's layout as data, the template built from text, the
zip-level package rewriter and the headless refresh (``crm-xl new``, ``load``, ``refresh``).

What it may import: ``crm_xl.core`` and ``crm_xl.analyses`` (through ``crm_xl.analyses.report``,
which runs both), ``crm_xl.io`` and the shared top-level modules; xlsxwriter, pyopenvba and
xlwings only to build the template. It never imports ``crm_xl.excel`` (live Excel builds on this
adapter, not the reverse) or ``crm_xl.cli``.
See ``docs/workbook.md``.
"""
