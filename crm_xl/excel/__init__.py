"""Live Excel through xlwings: the Refresh button's entry point and the worksheet functions.

``crm_xl.excel.refresh()`` is what the template's Refresh macro runs
(``RunPython "import crm_xl.excel; crm_xl.excel.refresh()"``); the worksheet functions
(``CRM_SEGMENT`` & co.) live in :mod:`crm_xl.excel.udfs`, the module named on the workbook's
xlwings.conf sheet. See ``docs/excel.md``.

What it may import: xlwings, ``crm_xl.core``, ``crm_xl.workbook`` (the layout, the reader and the
refresh plan it shares with the headless refresh) and the shared top-level modules; never ``crm_xl.cli``.
"""

from __future__ import annotations

from crm_xl.excel.refresh import refresh

__all__ = ["refresh"]
