"""crm_xl: CRM analytics for Excel — lifecycle states, value tiers and RFMT segments.

The public API is what this module exports; everything else is private and may change.

>>> import crm_xl
>>> tables = crm_xl.run(transactions=tx, customers=cust, products=prod,      # doctest: +SKIP
...                     config={"report_month": "2024-12", "history_months": 24})
>>> tables["customer_snapshot"]                                              # doctest: +SKIP
"""

from __future__ import annotations

from crm_xl._version import __version__
from crm_xl.analyses.lifetimes_compat import lifetimes_summary
from crm_xl.analyses.report import run
from crm_xl.config import Config
from crm_xl.contract import TABLE_NAMES
from crm_xl.errors import ConfigError, CrmXlError, InputError

__all__ = ["TABLE_NAMES", "Config", "ConfigError", "CrmXlError", "InputError", "__version__",
           "lifetimes_summary", "run"]
