"""Power Query M: each output table read from the workbook by its Excel table name and typed from the
contract (ids stay text, months and dates become dates), the history from Parquet when switched on,
and the label dimensions as literal tables."""

from __future__ import annotations

from crm_xl import contract
from crm_xl.powerbi.model import TYPES, Label

WORKBOOK_PATH, HISTORY_PARQUET_PATH, USE_HISTORY_PARQUET = "WorkbookPath", "HistoryParquetPath", "UseHistoryParquet"
INDENT = "    "


def text(value: str) -> str:
    """An M text literal."""
    return '"' + value.replace('"', '""') + '"'


def _steps(steps: list[tuple[str, str]], result: str) -> str:
    body = ",\n".join(f"{INDENT}{name} = {expression}" for name, expression in steps)
    return f"let\n{body}\nin\n{INDENT}{result}"


def column_types(table: str) -> str:
    """The ``{{"column", type}, ...}`` list of ``Table.TransformColumnTypes`` from the contract."""
    pairs = ", ".join(f"{{{text(name)}, {TYPES[kind][2]}}}" for name, kind, _ in contract.TABLES[table][1])
    return "{" + pairs + "}"


def contents(path: str, web: bool) -> str:
    """A file's bytes: ``File.Contents`` for a path (a gateway refreshes it in the service), ``Web.Contents``
    for the https address of a file in OneDrive or SharePoint (the service refreshes it without a gateway)."""
    return f"{'Web' if web else 'File'}.Contents({path})"


def _workbook_steps(table: str, web: bool) -> list[tuple[str, str]]:
    """The workbook's Excel table of that name: Power BI's Excel connector loads tables, not sheets."""
    return [("Workbook", f"Excel.Workbook({contents(WORKBOOK_PATH, web)}, true)"),
            ("Source", f'Workbook{{[Item = {text(table)}, Kind = "Table"]}}[Data]')]


def output_table(table: str, *, parquet: bool = False, web: bool = False) -> str:
    """The partition of a contract table; ``parquet``: the history, from Parquet when UseHistoryParquet
    is on (the sheet keeps only the latest months that fit; M is lazy, so the workbook is then not read
    for it): HistoryParquetPath is the full file a capped refresh writes, or the customer_history
    folder of a history store (every month it holds, a file each; docs/history_store.md)."""
    steps = _workbook_steps(table, web)
    if parquet:
        workbook_source = steps[-1][1]
        steps[-1] = ("Source", f"if {USE_HISTORY_PARQUET} then {_history_parquet(web)} else {workbook_source}")
    steps.append(("Typed", f"Table.TransformColumnTypes(Source, {column_types(table)})"))
    return _steps(steps, "Typed")


def _history_parquet(web: bool) -> str:
    """The Parquet history: one file, or (a local or shared folder) every month file of a store."""
    one_file = f"Parquet.Document({contents(HISTORY_PARQUET_PATH, web)})"
    if web:         # a store folder online would need SharePoint.Files and the site's address: one file only
        return one_file
    store = (f"Table.Combine(List.Transform(Table.SelectRows(Folder.Files({HISTORY_PARQUET_PATH}), "
             f'each [Name] = "part-0.parquet")[Content], Parquet.Document))')
    return f'(if Text.EndsWith(Text.Lower({HISTORY_PARQUET_PATH}), ".parquet") then {one_file} else {store})'


def label_table(label: Label) -> str:
    """A label dimension as a literal table: the value, its rank (1 first) and the workbook's colour."""
    rows = ", ".join(f"{{{text(value)}, {rank}, {text(label.colours.get(value, ''))}}}"
                     for rank, value in enumerate(label.values, start=1))
    return _steps([("Source", f"#table(type table [{label.column} = text, rank = Int64.Type, colour = text], "
                              f"{{{rows}}})")], "Source")


def parameter(value: str, kind: str) -> str:
    """A parameter's expression: its value with the metadata that makes Power BI show it as a parameter."""
    return f'{value} meta [IsParameterQuery = true, Type = "{kind}", IsParameterQueryRequired = true]'


def logical(value: bool) -> str:
    return "true" if value else "false"
