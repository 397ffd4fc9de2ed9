"""The whole semantic model of a workbook: the contract's tables with their M partitions, the calendar,
the label dimensions, the relationships, the parameters and the measures."""

from __future__ import annotations

from crm_xl import contract
from crm_xl.powerbi import dax, m
from crm_xl.powerbi.model import (
    CALENDAR,
    HISTORY_TABLE,
    Column,
    Label,
    Model,
    Parameter,
    Table,
    contract_columns,
    labels,
    output_tables,
    relationships,
)


def build_model(workbook_path: str, history_parquet_path: str, *, use_parquet: bool = False,
                segments: tuple[str, ...] | None = None, web: bool = False) -> Model:
    """The model over one workbook; ``segments``: the workbook's RFM segments in map order (default map
    when None); ``use_parquet``: read the full history from its Parquet file (the sheet is capped);
    ``web``: the paths are https addresses of files in OneDrive or SharePoint."""
    names = output_tables()
    label_dims = labels(segments)
    tables = [_output_table(name, web) for name in names]
    tables.append(_calendar())
    tables += [_label_table(label) for label in label_dims]
    history = next(t for t in tables if t.name == HISTORY_TABLE)
    tables[tables.index(history)] = Table(history.name, history.description, history.columns, history.partition_kind,
                                          history.source, history.contract_table,
                                          measures=dax.measures(transitions="tier_transitions" in names))
    parameters = (
        Parameter(m.WORKBOOK_PATH, m.text(workbook_path), "Text", "Full path of the refreshed workbook (.xlsm) "
                  "Power BI reads, e.g. C:\\Reports\\crm.xlsm (or its https address in OneDrive/SharePoint when the "
                  "project was made with --web)"),
        Parameter(m.HISTORY_PARQUET_PATH, m.text(history_parquet_path), "Text", "Full path of "
                  "BOOK_customer_history.parquet, the full history a refresh writes beside a workbook whose "
                  "customer_history sheet is capped (history_rows_in_sheet), or of the customer_history folder of "
                  "a history store (crm-xl refresh --store: every month it holds)"),
        Parameter(m.USE_HISTORY_PARQUET, m.logical(use_parquet), "Logical", "true: load customer_history from "
                  "HistoryParquetPath (all months); false: from the workbook's table (the months the sheet keeps)"),
    )
    return Model(tuple(tables), relationships(names, label_dims), parameters)


def _output_table(name: str, web: bool) -> Table:
    meaning = contract.TABLES[name][0]
    return Table(name, meaning, contract_columns(name), "m",
                 m.output_table(name, parquet=name == HISTORY_TABLE, web=web), contract_table=name)


def _calendar() -> Table:
    columns = (
        Column("Date", "dateTime", "Every day of the history's months", "yyyy-mm-dd", "[Date]", is_key=True),
        Column("Month", "dateTime", "The first day of the month: what the facts' report_month holds", "yyyy-mm",
               "[Month]"),
        Column("Year", "int64", "Calendar year", "0", "[Year]"),
        Column("Month Number", "int64", "1-12", "0", "[Month Number]"),
    )
    return Table(CALENDAR, "The month calendar (marked as the date table): one row per day of the history's "
                 "months; relate and slice by Month.", columns, "calculated", dax.calendar_table(),
                 data_category="Time")


def _label_table(label: Label) -> Table:
    columns = (
        Column(label.column, "string", f"The {label.column} values, sorted by rank", sort_by="rank"),
        Column("rank", "int64", "Position in the workbook's order (1 first)", "0", hidden=True),
        Column("colour", "string", "The fill colour the workbook gives this value (hex)"),
    )
    return Table(label.table, f"Label dimension of {label.column}: a fixed order and the workbook's colours.",
                 columns, "m", m.label_table(label))
