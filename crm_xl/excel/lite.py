"""xlwings Lite: the Refresh and the CRM_ functions in Excel on the web and for Mac, with Python
running in the browser (Pyodide), over the same code as desktop Excel.

xlwings Lite hands a script an ``xw.Book`` of the open workbook (the remote-engine Book API the
desktop refresh already works with) and registers the functions ``main.py`` holds. So a Lite
workbook's ``main.py`` is one line::

    from crm_xl.excel.lite import *  # noqa: F403 - crm_refresh and the CRM_ functions

What differs from the desktop, and why:

* **no folder**: the workbook lives in the browser, so nothing is written beside it (the sheet
  keeps the latest months of customer_history that fit; the status says what was left out), no
  file named on Config can be read (a clear error says so), and there is no lock to take;
* **no threads** (Pyodide cannot start one): the core then hashes its columns one after the other;
* **the functions' tables** are those of the last Refresh in this browser session: Lite functions
  cannot read the workbook's sheets, so after reopening the workbook they answer
  ``#CRM: not refreshed yet`` until Refresh is pressed once.

See docs/excel.md (xlwings Lite) for adding it to a workbook and its requirements.
"""

from __future__ import annotations

import xlwings as xw

from crm_xl.excel.refresh import refresh
from crm_xl.excel.udfs import CRM_EVENT, CRM_EXPLAIN, CRM_METRIC, CRM_RFM, CRM_SEGMENT, CRM_STATE, CRM_TIER

__all__ = ["CRM_EVENT", "CRM_EXPLAIN", "CRM_METRIC", "CRM_RFM", "CRM_SEGMENT", "CRM_STATE", "CRM_TIER",
           "crm_refresh"]


@xw.script(button="[btn_crm_refresh]Start!A10", show_taskpane=True)
def crm_refresh(book: xw.Book) -> None:
    """Refresh: recompute every output table from Raw and Config, as the desktop Refresh button does."""
    refresh(book, folder=False)
