"""The workbook's layout as data: sheets, tables, columns, formats, settings rows, chart tables.

This module is the single source that both the template builder (:mod:`crm_xl.workbook.template`)
and the refresh read, so a sheet, table or column is named in one place only. It holds no Excel
library code: only names, positions and the pure derivation of the chart tables.

Tables are anchored at a sheet cell (row, column, 0-based) and always start with their header row.
Output tables carry the contract's table name (what Power BI reads); the workbook's own tables
(raw, config, status, log, chart data) are prefixed ``tbl_`` or ``chart_``.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from crm_xl import contract

# The core's validation rules (private there) are read, not copied, so the sheet's dropdowns and
# ranges cannot drift from what the core accepts.
from crm_xl.config import (
    CHOICES,
    DECIMAL_RANGES,
    DEFAULT_SEGMENT_MAP,
    EVENTS,
    INPUT_COLUMNS,
    INT_RANGES,
    STATES,
    THRESHOLDS,
    TIERS,
    Config,
)
from crm_xl.io.dialect import CSV_SETTINGS

# --- column types and their number formats ------------------------------------------------------

#: Excel number format per column type (contract types plus the raw tables' types). ``label`` is
#: text from a fixed list; text columns are formatted "@" so that ids typed or pasted into a blank
#: table keep their leading zeros.
NUMBER_FORMATS: dict[str, str] = {
    "month": "yyyy-mm",
    "date": "yyyy-mm-dd",
    "integer": "#,##0",
    "decimal": "#,##0.00",
    "text": "@",
    "label": "@",
    "datetime": "yyyy-mm-dd hh:mm:ss",
    "general": "General",
}


@dataclass(frozen=True)
class Column:
    """One table column: its header and its type (a key of :data:`NUMBER_FORMATS`)."""

    name: str
    type: str

    @property
    def number_format(self) -> str:
        return NUMBER_FORMATS[self.type]


@dataclass(frozen=True)
class Table:
    """An Excel table: name, sheet, top-left cell of its header row (0-based) and its columns."""

    name: str
    sheet: str
    columns: tuple[Column, ...]
    row: int = 0
    col: int = 0

    @property
    def headers(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def last_col(self) -> int:
        return self.col + len(self.columns) - 1


def _cols(*pairs: tuple[str, str]) -> tuple[Column, ...]:
    return tuple(Column(name, kind) for name, kind in pairs)


# --- sheets --------------------------------------------------------------------------------------

START, CONFIG = "Start", "Config"
RAW_TRANSACTIONS, RAW_CUSTOMERS, RAW_PRODUCTS = "Raw Transactions", "Raw Customers", "Raw Products"
PIVOTS, CHARTS, LOG, XLWINGS_CONF = "Pivots", "Charts", "Log", "xlwings.conf"
#: One sheet per chart table: the refresh rewrites a sheet's single table, and each can then grow
#: down on its own.
CHART_SHEETS: dict[str, str] = {"chart_tier_mix": "Chart Tiers", "chart_events": "Chart Events",
                                "chart_states": "Chart States"}

_ACRONYMS = {"rfm": "RFM", "clv": "CLV"}


def sheet_title(table_name: str) -> str:
    """The sheet of an output table: ``customer_snapshot`` -> "Customer Snapshot", ``rfm_cut_points``
    -> "RFM Cut Points"."""
    return " ".join(_ACRONYMS.get(word, word.capitalize()) for word in table_name.split("_"))


OUTPUT_SHEETS: dict[str, str] = {name: sheet_title(name) for name in contract.TABLE_NAMES
                                  if name not in contract.FILE_TABLES}

#: Every sheet, in workbook order. VBA document modules are Sheet1..SheetN in this order.
SHEETS: tuple[str, ...] = (
    START, CONFIG, RAW_TRANSACTIONS, RAW_CUSTOMERS, RAW_PRODUCTS,
    *OUTPUT_SHEETS.values(),
    PIVOTS, CHARTS, *CHART_SHEETS.values(), LOG, XLWINGS_CONF,
)

#: Sheets a user never needs to see: the chart tables (Charts shows them) and xlwings.conf
#: (``crm-xl excel-setup`` fills it in).
HIDDEN_SHEETS: frozenset[str] = frozenset({*CHART_SHEETS.values(), XLWINGS_CONF})
#: Tab colour per sheet role: what the user fills in, what the refresh writes, the views, the rest.
TAB_COLOURS: dict[str, str] = {"input": "#ED7D31", "output": "#4472C4", "view": "#70AD47", "technical": "#A5A5A5"}


def sheet_role(sheet: str) -> str:
    """``input``, ``output``, ``view`` or ``technical``: the role that gives a sheet its tab colour."""
    if sheet in (CONFIG, RAW_TRANSACTIONS, RAW_CUSTOMERS, RAW_PRODUCTS):
        return "input"
    if sheet in OUTPUT_SHEETS.values():
        return "output"
    if sheet in (START, PIVOTS, CHARTS):
        return "view"
    return "technical"


# --- raw tables (the user's data; a refresh never changes them) ----------------------------------

RAW_TABLES: dict[str, Table] = {
    "transactions": Table("tbl_transactions", RAW_TRANSACTIONS, _cols(
        ("invoice_id", "text"), ("invoice_date", "date"), ("customer_id", "text"), ("product_id", "text"),
        ("quantity", "decimal"), ("revenue", "decimal"), ("store_id", "text"))),
    "customers": Table("tbl_customers", RAW_CUSTOMERS, _cols(
        ("customer_id", "text"), ("customer_name", "text"), ("customer_group", "text"), ("city", "text"),
        ("created_date", "date"), ("email", "text"), ("mobile_number", "text"),
        ("opt_email", "integer"), ("opt_sms", "integer"), ("opt_phone", "integer"))),
    "products": Table("tbl_products", RAW_PRODUCTS, _cols(
        ("product_id", "text"), ("product_name", "text"), ("brand", "text"), ("category", "text"),
        ("unit_size", "decimal"))),
}

# --- output tables (the contract) ----------------------------------------------------------------

OUTPUT_TABLES: dict[str, Table] = {
    name: Table(name, OUTPUT_SHEETS[name], tuple(Column(c, kind) for c, kind, _ in cols))
    for name, (_, cols) in contract.TABLES.items() if name in OUTPUT_SHEETS
}

#: Label columns that get one fill colour per value (conditional formatting on output sheets).
LABEL_COLOURS: dict[str, dict[str, str]] = {
    "value_tier": {"Diamond": "#B4E5F2", "Platinum": "#D9D9E8", "Gold": "#FBE29F", "Silver": "#E4E4E4",
                   "Bronze": "#EAC9A8", "Passive": "#F4F4F4"},
    "lifecycle_state": {"prospect": "#EDEDED", "new": "#C6EFCE", "active": "#A9D08E", "lapsing": "#FFEB9C",
                        "lost": "#FFC7CE", "reactivated": "#BDD7EE"},
    "rfm_segment": {"Champions": "#63BE7B", "Loyal Customers": "#A9D08E", "Potential Loyalist": "#C6EFCE",
                    "Recent Customers": "#BDD7EE", "Promising": "#DDEBF7", "Customers Needing Attention": "#FFEB9C",
                    "About To Sleep": "#FCE4D6", "At Risk": "#F8CBAD", "Can't Lose Them": "#FF9999",
                    "Hibernating": "#E4E4E4", "Lost": "#BFBFBF"},
}

# --- Config sheet --------------------------------------------------------------------------------

#: Workbook-only settings: where the refresh reads raw data from (and the dialect of those CSV
#: files) and how much history the sheet keeps. They are not settings of the core (``crm_xl.run`` never sees them).
WORKBOOK_SETTINGS: dict[str, tuple[str, str]] = {
    "transactions_file": ("", "Optional CSV/Parquet file read instead of tbl_transactions (for more rows than "
                              "Excel holds): in the workbook's folder or below, as a relative path (files "
                              "elsewhere need crm-xl refresh --allow-files-from DIR)"),
    "customers_file": ("", "Optional CSV/Parquet file read instead of tbl_customers"),
    "products_file": ("", "Optional CSV/Parquet file read instead of tbl_products"),
    **CSV_SETTINGS,
    "history_rows_in_sheet": ("500000", "Most customer_history rows kept in its sheet (latest months first); the "
                                        "full history is also written to a file beside the workbook when cut"),
}
HISTORY_ROWS_RANGE = (1, 1_048_575)   # one row of the sheet is the header

CONFIG_TABLE = Table("tbl_config", CONFIG, _cols(
    ("setting", "text"), ("value", "text"), ("default", "text"), ("description", "text")), row=3)
SEGMENT_MAP_TABLE = Table("tbl_segment_map", CONFIG, _cols(("rfm_segment", "text"), ("cells", "text")),
                          row=3, col=5)


#: The header column of tbl_columns: what the user's data calls each contract column.
YOUR_HEADER = "your header"
#: Beside the segment map on the Config sheet (not below it, where a grown segment map would run into
#: it): one row per input column, read as the ``map.<table>.<column>`` settings.
COLUMNS_TABLE = Table("tbl_columns", CONFIG, _cols(
    ("table", "text"), ("column", "text"), (YOUR_HEADER, "text"), ("description", "text")), row=3, col=8)


def columns_rows() -> list[tuple[str, str, str, str]]:
    """(table, column, your header, description) rows of tbl_columns: every input column, your header blank."""
    return [(table, c.name, "", ("Required. " if c.required else "Optional. ") + c.description)
            for table, columns in INPUT_COLUMNS.items() for c in columns]


def config_rows() -> list[tuple[str, str, str, str]]:
    """(setting, value, default, description) rows of tbl_config: every core setting except the
    segment map (it has its own table), then the workbook settings. Value starts as the default."""
    rows = [(key, value, value, help_text) for key, value, help_text in Config().as_rows() if key != "segment_map"]
    rows += [(key, default, default, help_text) for key, (default, help_text) in WORKBOOK_SETTINGS.items()]
    return rows


def segment_map_rows() -> list[tuple[str, str]]:
    """The default segment map as (rfm_segment, cells) rows, cells like "55 54 45"."""
    return [(name, " ".join(codes)) for name, codes in DEFAULT_SEGMENT_MAP]


@dataclass(frozen=True)
class Validation:
    """Data validation of one setting's value cell: a dropdown, whole numbers or decimals."""

    kind: str                       # "list", "integer" or "decimal"
    choices: tuple[str, ...] = ()
    minimum: float = 0
    maximum: float | None = None

    @property
    def message(self) -> str:
        if self.kind == "list":
            return "Choose one of: " + ", ".join(self.choices)
        if self.maximum is None:
            return f"A number >= {_plain(self.minimum)}"
        if self.kind == "decimal":
            return f"A number from {_plain(self.minimum)} to {_plain(self.maximum)}"
        return f"A whole number from {_plain(self.minimum)} to {_plain(self.maximum)}"


def _plain(number: float) -> str:
    """1048575 as 1,048,575 (``:g`` would show 1.04858e+06), 0.5 as 0.5."""
    return f"{int(number):,}" if float(number).is_integer() else repr(float(number))


def config_validations() -> dict[str, Validation]:
    """Data validation per setting, from the core's own rules (so the sheet and the core agree)."""
    rules: dict[str, Validation] = {key: Validation("list", choices) for key, choices in CHOICES.items()}
    rules["use_created_date"] = Validation("list", ("TRUE", "FALSE"))
    rules.update({key: Validation("integer", minimum=low, maximum=high) for key, (low, high) in INT_RANGES.items()})
    rules.update({key: Validation("decimal", minimum=0) for key in THRESHOLDS})
    rules.update({key: Validation("decimal", minimum=low, maximum=high) for key, (low, high) in DECIMAL_RANGES.items()})
    rules["history_rows_in_sheet"] = Validation("integer", minimum=HISTORY_ROWS_RANGE[0],
                                                maximum=HISTORY_ROWS_RANGE[1])
    return rules


def config_cell_type(key: str, rules: dict[str, Validation] | None = None) -> str:
    """The column type (number format) of a setting's value cell: ``general`` where the value is a
    number or a dropdown choice, so what a user types is stored as a number (whole and decimal
    validation reject numbers stored as text); ``text`` for the rest, so 2024-12 or 1; 2 stay as typed
    instead of becoming a date."""
    return "general" if key in (config_validations() if rules is None else rules) else "text"


def config_cell_value(key: str, text: str, rules: dict[str, Validation] | None = None) -> object:
    """A setting's text as a typed cell: numbers as numbers and TRUE/FALSE as booleans, so Excel's data
    validation (which rejects numbers stored as text) accepts the value; text it cannot type stays text."""
    rule = (config_validations() if rules is None else rules).get(key)
    if text == "" or rule is None:
        return text
    if rule.kind in ("integer", "decimal"):
        try:
            number = float(text)
        except ValueError:
            return text
        return int(number) if number.is_integer() else number
    if rule.choices == ("TRUE", "FALSE") and text.upper() in rule.choices:
        return text.upper() == "TRUE"
    return text


# --- Start, Log -----------------------------------------------------------------------------------

STATUS_TABLE = Table("tbl_status", START, _cols(("item", "text"), ("value", "text")), row=11)
#: Rows of tbl_status; the refresh rewrites the values.
STATUS_ITEMS: tuple[str, ...] = ("last refresh", "report month", "data through", "rows read", "customers", "status",
                                 "refresh id")
STATUS_INITIAL = {"last refresh": "never", "status": "not refreshed yet: press Refresh"}

LOG_TABLE = Table("tbl_log", LOG, _cols(("time", "datetime"), ("level", "text"), ("message", "text")))

# --- chart data ------------------------------------------------------------------------------------

_CHART_DEFS: dict[str, tuple[str, tuple[str, ...]]] = {
    "chart_tier_mix": ("value_tier", TIERS),
    "chart_events": ("lifecycle_event", EVENTS),
    "chart_states": ("lifecycle_state", STATES),
}


def _chart_tables() -> dict[str, Table]:
    return {name: Table(name, CHART_SHEETS[name],
                        (Column("report_month", "month"), *(Column(c, "integer") for c in categories)))
            for name, (_, categories) in _CHART_DEFS.items()}


#: Pivot-shaped tables (one per chart sheet) the charts are bound to: report_month + one column per label.
CHART_TABLES: dict[str, Table] = _chart_tables()


def chart_tables(tables: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """The three chart tables from ``monthly_summary``: customers per month and label, one column per
    label in the contract's order (zeros where a label is absent), months ascending.

    chart_tier_mix counts active customers per value tier (only active customers have a tier),
    chart_events the New / Lost / Reactivated events, chart_states every lifecycle state.
    """
    summary = tables["monthly_summary"]
    months = pd.Index(sorted(pd.unique(summary["report_month"])), name="report_month")
    out = {}
    for name, (dimension, categories) in _CHART_DEFS.items():
        rows = summary[summary["dimension"].astype(str) == dimension]
        wide = rows.pivot_table(index="report_month", columns=rows["category"].astype(str), values="customers",
                                aggfunc="sum", observed=True)
        wide = wide.reindex(index=months, columns=list(categories)).fillna(0).astype("int64")
        wide.columns.name = None
        out[name] = wide.reset_index()[CHART_TABLES[name].headers]
    return out


@dataclass(frozen=True)
class Chart:
    """A native chart on the Charts sheet bound to a chart table (all its label columns as series)."""

    table: str
    type: str                   # XlsxWriter chart type
    subtype: str | None
    title: str
    anchor: str                 # top-left cell on the Charts sheet


CHARTS_LAYOUT: tuple[Chart, ...] = (
    Chart("chart_tier_mix", "column", "stacked", "Active customers by value tier", "B3"),
    Chart("chart_events", "column", None, "Lifecycle events per month", "B24"),
    Chart("chart_states", "area", "stacked", "Customers by lifecycle state", "B45"),
)



@dataclass(frozen=True)
class TableChart:
    """A native chart on an output sheet, its series read from columns of an output table (not a chart
    table): categories from its first column, one series per following column (so the live refresh,
    which finds the chart by its name, can point it at the table's first columns again). The headless
    refresh re-ranges it when it rewrites that table."""

    name: str                   # the chart's name (the live refresh finds it by it)
    sheet: str                  # the sheet that shows it
    table: str                  # the output table it reads
    categories: str
    series: tuple[str, ...]
    type: str                   # XlsxWriter chart type
    title: str
    x_title: str
    y_title: str
    anchor: str


TABLE_CHARTS: tuple[TableChart, ...] = (
    TableChart("chart_clv_holdout", OUTPUT_SHEETS["clv"], "clv_holdout", "calibration_orders",
               ("actual_holdout_orders", "predicted_holdout_orders"), "line",
               "Holdout check: actual vs predicted order days per customer",
               "Repeat order days in the calibration period", "Mean order days in the holdout months", "J2"),
)

# --- pivots ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pivot:
    """A PivotTable over an output table, rebuilt by Excel/LibreOffice when the file opens.

    ``location`` is where the body starts; page (filter) fields sit two rows above it.
    """

    name: str
    table: str
    rows: tuple[str, ...]
    cols: tuple[str, ...]
    pages: tuple[str, ...]
    # (column, sum|count|average, caption); Excel refuses a caption equal to a source column's
    # name ignoring case ("Customers" for "customers"), so captions say what they count
    data: tuple[tuple[str, str, str], ...]
    location: str
    title: str

    @property
    def source_columns(self) -> list[str]:
        return OUTPUT_TABLES[self.table].headers


PIVOTS_LAYOUT: tuple[Pivot, ...] = (
    # Bounded size (about 10 x 10 tiers): first, so the month pivot below can grow down freely.
    Pivot("pvt_tier_transitions", "tier_transitions", rows=("from_tier",), cols=("to_tier",),
          pages=("report_month",), data=(("customers", "sum", "Number of customers"),), location="A6:C8",
          title="Tier transitions: rows = tier last month, columns = tier this month (filter a month above)"),
    Pivot("pvt_monthly_summary", "monthly_summary", rows=("report_month",), cols=("category",),
          pages=("dimension",), data=(("customers", "sum", "Number of customers"),), location="A25:C27",
          title="Customers per month and category: choose one dimension in the filter (e.g. value_tier)"),
)

# --- xlwings.conf -----------------------------------------------------------------------------------

#: (key, value, note) rows of the xlwings.conf sheet, from A1 down without a header (xlwings reads
#: column A as keys and column B as values until the first blank cell; column C is for people).
#: No interpreter rows: a key on the sheet wins over the user's own xlwings config even when blank,
#: so ``crm-xl new`` / ``crm-xl excel-setup`` add them with real values (crm_xl.workbook.xlwings_conf).
XLWINGS_CONF_ROWS: tuple[tuple[str, str | bool, str], ...] = (
    ("UDF Modules", "crm_xl.excel.udfs", "Python module with the worksheet functions CRM_SEGMENT & co."),
    ("Debug UDFs", False, "Keep FALSE (TRUE is for xlwings developers)"),
    # FALSE: Refresh runs in a Python process of its own (xlwings' COM server times calls out after about
    # 90 s); the functions still run in the COM server and reload when the refresh id on Start changes
    ("Use UDF Server", False, "FALSE: Refresh runs in its own Python process, without the UDF server's 90 s limit; "
                              "the CRM_ functions see each refresh by its refresh id"),
    ("Show Console", False, "TRUE shows a console window with Python's output (troubleshooting)"),
)
#: First row of the notes below the keys: the rows between stay free for the keys excel-setup adds.
XLWINGS_CONF_NOTES_ROW = 12
