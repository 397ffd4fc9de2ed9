"""Files on disk: the adapters that read and write plain files, with no Excel involved.

``csv`` reads the three raw tables from CSV files (pyarrow) and writes output tables as CSV, with
``dialect`` detecting (or taking from settings) the delimiter, encoding and decimal separator;
``files`` is the one place for temp-file-then-rename writes; ``sample`` generates the synthetic
sample company (``crm-xl sample``) and writes it as CSV; ``machine`` is what the computer offers a
run (today's date, the memory available), which the adapters pass to the pure core.

What it may import: the standard library, pandas, numpy, pyarrow, the shared top-level modules and
``crm_xl.core``. It knows nothing of workbooks or live Excel: ``crm_xl.workbook``, ``crm_xl.excel``,
``crm_xl.powerbi`` and ``crm_xl.cli`` build on it, never the reverse (``tests/test_architecture.py``).
"""
