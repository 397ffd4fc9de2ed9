"""The Power BI adapter: a Power BI Project (PBIP: a TMDL semantic model and a PBIR report) generated
from the output contract, so Power BI Desktop opens a typed star schema over a refreshed workbook.

It may import crm_xl.contract, crm_xl.config, crm_xl.errors and crm_xl.workbook.layout (sheet and table names, label
colours); nothing in core or analyses imports it. One concern per module: ``model`` (tables, columns,
relationships from the contract), ``m`` (Power Query M), ``dax`` (measures), ``tmdl`` (TMDL text),
``report`` (PBIR pages) and ``project`` (the folder on disk).
"""
