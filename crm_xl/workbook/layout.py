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
from crm_xl.analyses.calibration import TIERS as CALIBRATED_TIERS

# The core's validation rules (private there) are read, not copied, so the sheet's dropdowns and
# ranges cannot drift from what the core accepts.
from crm_xl.config import (
    CHOICES,
    CHURNED,
    DECIMAL_RANGES,
    DEFAULT_SEGMENT_MAP,
    DEFAULT_SEGMENT_NOTES,
    EVENTS,
    INPUT_COLUMNS,
    INT_RANGES,
    NEWCOMER,
    RETURNING,
    SEGMENT_NOTE_COLUMNS,
    STATES,
    STATUSES,
    TARGET_SHARES,
    THRESHOLDS,
    TIERS,
    Config,
)
from crm_xl.core.outputs import SUMMARY_DIMENSIONS
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
    "share": "0.0%",
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
GLOSSARY = "Glossary"
#: The cohort triangle: formulas over cohort_retention, on a sheet of their own (no table: never rewritten).
COHORT_TRIANGLE = "Cohort Triangle"
#: One sheet per chart table: the refresh rewrites a sheet's single table, and each can then grow
#: down on its own.
CHART_SHEETS: dict[str, str] = {"chart_tier_mix": "Chart Tiers", "chart_events": "Chart Events",
                                "chart_states": "Chart States", "chart_tier_revenue": "Chart Tier Revenue",
                                "chart_cohort_curve": "Chart Cohorts"}

_ACRONYMS = {"rfm": "RFM", "kpis": "KPIs", "clv": "CLV"}


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
    PIVOTS, CHARTS, COHORT_TRIANGLE, *CHART_SHEETS.values(), GLOSSARY, LOG, XLWINGS_CONF,
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
    if sheet in (START, PIVOTS, CHARTS, COHORT_TRIANGLE, GLOSSARY):
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

#: The RFM Grid sheet: the 5 x 5 blocks (formulas over rfm_grid) fill the rows above its table, which
#: the refresh keeps as they are (it rewrites a sheet from its table's header row down).
RFM_GRID_TABLE_ROW = 12
#: Output tables that do not start at A1: (row, column) of their header cell. What sits above them (the
#: KPIs sheet's headline figures and charts, the Tier Migration sheet's heat maps, the RFM grid's blocks)
#: reads the table with formulas, and the refresh keeps the rows above a table as they are.
OUTPUT_ANCHORS: dict[str, tuple[int, int]] = {"rfm_grid": (RFM_GRID_TABLE_ROW, 0), "kpis": (37, 0),
                                              "tier_migration": (16, 0)}

OUTPUT_TABLES: dict[str, Table] = {
    name: Table(name, OUTPUT_SHEETS[name], tuple(Column(c, kind) for c, kind, _ in cols),
                *OUTPUT_ANCHORS.get(name, (0, 0)))
    for name, (_, cols) in contract.TABLES.items() if name in OUTPUT_SHEETS
}

#: Heat maps: a three-colour scale (low red, middle yellow, high green) on these columns of output tables.
HEAT_MAP_COLUMNS: dict[str, tuple[str, ...]] = {"cohort_retention": ("share_active",), "rfm_grid": ("customers",)}
HEAT_MAP_COLOURS = ("#F8696B", "#FFEB84", "#63BE7B")


@dataclass(frozen=True)
class GridBlock:
    """A 5 x 5 block on the RFM Grid sheet: one rfm_grid column by R (rows, 5 at the top) and FM (columns)."""

    column: str                 # the rfm_grid column shown
    title: str
    type: str                   # number format (a key of NUMBER_FORMATS)
    heat_map: bool              # a colour scale over the block (else label colours, for segment names)


RFM_GRID_BLOCKS: tuple[GridBlock, ...] = (
    GridBlock("customers", "Customers", "integer", True),
    GridBlock("rfm_segment", "Segment (from the segment map on Config)", "general", False),
    GridBlock("share", "Share of scored customers", "share", True),
    GridBlock("revenue_m12", "Core revenue, last 12 months", "decimal", True),
)
#: Rows of the grid blocks: a title row, the FM header row, then R 5 down to R 1.
RFM_GRID_TITLE_ROW = 3


@dataclass(frozen=True)
class Triangle:
    """The Cohort Triangle sheet: the latest ``size`` cohorts as rows (oldest first), months since 0 ..
    size - 1 as columns, each cell the cohort's share_active found in cohort_retention by formula.

    Cells (0-based): the report month and the first cohort shown in column B of ``month_row`` and
    ``first_row``; the header on ``header_row``: cohort, customers, the cohort's first row in the table
    (a hidden helper, so each cell is one INDEX rather than a search), then the months since.
    """

    size: int = 36
    month_row: int = 2
    first_row: int = 3
    header_row: int = 5
    first_month_col: int = 3

    @property
    def last_row(self) -> int:
        return self.header_row + self.size

    @property
    def last_col(self) -> int:
        return self.first_month_col + self.size - 1


COHORT_TRIANGLE_LAYOUT = Triangle()


def rfm_grid_block_col(index: int) -> int:
    """First sheet column of the index-th grid block: an R label column, five FM columns, a gap."""
    return index * 7

# by position, so the colours follow the state names (config.STATES)
_STATE_COLOURS = dict(zip(STATES, ("#EDEDED", "#C6EFCE", "#A9D08E", "#FFEB9C", "#FFC7CE", "#BDD7EE"), strict=True))
#: Label columns that get one fill colour per value (conditional formatting on output sheets; the
#: charts' series take the same colours).
LABEL_COLOURS: dict[str, dict[str, str]] = {
    "value_tier": {"Diamond": "#B4E5F2", "Platinum": "#D9D9E8", "Gold": "#FBE29F", "Silver": "#E4E4E4",
                   "Bronze": "#EAC9A8", "Passive": "#F4F4F4"},
    "lifecycle_state": _STATE_COLOURS,
    # an event takes the colour of the state it leads to
    # an event takes the colour of the state it leads to
    "lifecycle_event": dict(zip(EVENTS, (_STATE_COLOURS[s] for s in (NEWCOMER, CHURNED, RETURNING)), strict=True)),
    "rfm_segment": {"Champions": "#63BE7B", "Loyal Customers": "#A9D08E", "Potential Loyalist": "#C6EFCE",
                    "Recent Customers": "#BDD7EE", "Promising": "#DDEBF7", "Customers Needing Attention": "#FFEB9C",
                    "About To Sleep": "#FCE4D6", "At Risk": "#F8CBAD", "Can't Lose Them": "#FF9999",
                    "Hibernating": "#E4E4E4", "Gone Cold": "#BFBFBF"},
}

#: Columns coloured like another label column: the previous month's and the campaign fields' tiers and states.
_COLOURED_AS = {"previous_value_tier": "value_tier", "previous_lifecycle_state": "lifecycle_state",
                "last_active_tier": "value_tier", "peak_tier_12m": "value_tier"}


def label_colours(column: str) -> dict[str, str]:
    """Fill colour per value of a label column (empty when the column is not coloured)."""
    return LABEL_COLOURS.get(_COLOURED_AS.get(column, column), {})


#: Leading columns kept in view while scrolling right: a campaign list is read by id and name.
FROZEN_COLUMNS: dict[str, int] = {"customer_snapshot": 2}
#: Measure columns (units by default): whole values show without decimals, fractional ones with two.
WHOLE_WHEN_WHOLE = frozenset({"m_total", "m1", "m6", "m12", "m13", "m24", "m25", "monetary", "volume_m1"})
#: Columns of long text, wide enough to read a whole reason without opening the cell.
WIDE_COLUMNS: dict[str, int] = {"tier_reason": 70, "segment_reason": 90, "message": 80, "example_values": 40,
                                 "example_rows": 24, "values": 60, "description": 60}

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
SEGMENT_MAP_TABLE = Table("tbl_segment_map", CONFIG, _cols(("rfm_segment", "text"), ("cells", "text"),
                                                           *((c, "text") for c in SEGMENT_NOTE_COLUMNS)),
                          row=3, col=5)


#: The header column of tbl_columns: what the user's data calls each contract column.
YOUR_HEADER = "your header"
#: Beside the segment map on the Config sheet (not below it, where a grown segment map would run into
#: it): one row per input column, read as the ``map.<table>.<column>`` settings.
COLUMNS_TABLE = Table("tbl_columns", CONFIG, _cols(
    ("table", "text"), ("column", "text"), (YOUR_HEADER, "text"), ("description", "text")), row=3,
    col=SEGMENT_MAP_TABLE.last_col + 2)


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


def segment_map_rows() -> list[tuple[str, str, str, str]]:
    """The default segment map as (rfm_segment, cells, description, action) rows, cells like "55 54 45"."""
    return [(name, " ".join(codes), *DEFAULT_SEGMENT_NOTES[name]) for name, codes in DEFAULT_SEGMENT_MAP]


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
    rules.update({key: Validation("decimal", minimum=0, maximum=1) for key in TARGET_SHARES})
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
#: The report month's headline KPIs on Start (item -> kpis column), written by the refresh as text with
#: their change against last month, so Start reads right without recalculating.
STATUS_KPIS: dict[str, str] = {"active customers": "active", "new customers": "new", "reactivated": "reactivated",
                               "lost": "lost", "churn rate": "churn_rate", "revenue": "revenue"}
STATUS_ITEMS: tuple[str, ...] = ("last refresh", "report month", "data through", "rows read", "customers", "status",
                                 "refresh id", *STATUS_KPIS)
STATUS_INITIAL = {"last refresh": "never", "status": "not refreshed yet: press Refresh"}

LOG_TABLE = Table("tbl_log", LOG, _cols(("time", "datetime"), ("level", "text"), ("message", "text")))

# --- Glossary ---------------------------------------------------------------------------------------

#: Every column of every output table, from the contract: the template writes it and each refresh
#: rewrites it, so a workbook's Glossary always describes the tables of the crm_xl that refreshed it.
GLOSSARY_TABLE = Table("tbl_glossary", GLOSSARY, _cols(("table", "text"), ("column", "text"), ("type", "text"),
                                                       ("meaning", "text")), row=2)


def glossary_frame() -> pd.DataFrame:
    """(table, column, type, meaning) for every column of every table of :data:`contract.TABLES`, in its order."""
    rows = [(table, name, kind, meaning) for table, (_, columns) in contract.TABLES.items()
            for name, kind, meaning in columns]
    return pd.DataFrame(rows, columns=GLOSSARY_TABLE.headers, dtype="str")

# --- chart data ------------------------------------------------------------------------------------

#: chart table -> (monthly_summary dimension, its categories, the summary column the cells hold)
_CHART_DEFS: dict[str, tuple[str, tuple[str, ...], str]] = {
    "chart_tier_mix": ("value_tier", TIERS, "customers"),
    "chart_events": ("lifecycle_event", EVENTS, "customers"),
    "chart_states": ("lifecycle_state", STATES, "customers"),
    "chart_tier_revenue": ("value_tier", TIERS, "revenue_m1"),
}
_CHART_VALUE_TYPES = {"customers": "integer", "revenue_m1": "decimal"}


#: The average retention curve: months since the first core month (as text, "month 3", so Excel takes the
#: column as the chart's categories when the live refresh re-points it) and the share still active.
COHORT_CURVE_TABLE = Table("chart_cohort_curve", CHART_SHEETS["chart_cohort_curve"],
                           _cols(("months_since", "text"), ("share_active", "share")))


def _chart_tables() -> dict[str, Table]:
    tables = {name: Table(name, CHART_SHEETS[name],
                          (Column("report_month", "month"), *(Column(c, _CHART_VALUE_TYPES[value])
                                                              for c in categories)))
              for name, (_, categories, value) in _CHART_DEFS.items()}
    return {**tables, COHORT_CURVE_TABLE.name: COHORT_CURVE_TABLE}


#: Pivot-shaped tables (one per chart sheet) the charts are bound to: report_month + one column per label.
CHART_TABLES: dict[str, Table] = _chart_tables()


def chart_tables(tables: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """The chart tables from ``monthly_summary``: customers (or revenue) per month and label, one column
    per label in the contract's order (zeros where a label is absent), months ascending.

    chart_tier_mix counts active customers per value tier (only active customers have a tier),
    chart_events the New / Lost / Reactivated events, chart_states every lifecycle state,
    chart_tier_revenue the core revenue of each tier's customers in the month.
    """
    summary = tables["monthly_summary"]
    months = pd.Index(sorted(pd.unique(summary["report_month"])), name="report_month")
    out = {}
    for name, (dimension, categories, value) in _CHART_DEFS.items():
        rows = summary[summary["dimension"].astype(str) == dimension]
        wide = rows.pivot_table(index="report_month", columns=rows["category"].astype(str), values=value,
                                aggfunc="sum", observed=True)
        dtype = "int64" if _CHART_VALUE_TYPES[value] == "integer" else "float64"
        wide = wide.reindex(index=months, columns=list(categories)).fillna(0).astype(dtype)
        wide.columns.name = None
        out[name] = wide.reset_index()[CHART_TABLES[name].headers]
    out[COHORT_CURVE_TABLE.name] = cohort_curve_table(tables["cohort_retention"])
    return out


def cohort_curve_table(cohorts: pd.DataFrame) -> pd.DataFrame:
    """chart_cohort_curve from ``cohort_retention``: per months since, the active customers of every cohort
    seen that far over those cohorts' customers (each customer weighs the same), months ascending."""
    sums = cohorts.groupby("months_since", sort=True)[["active", "cohort_size"]].sum()
    return pd.DataFrame({"months_since": [f"month {k}" for k in sums.index],
                         "share_active": (sums["active"] / sums["cohort_size"]).to_numpy(dtype="float64")},
                        columns=COHORT_CURVE_TABLE.headers).astype({"months_since": "str", "share_active": "float64"})


@dataclass(frozen=True)
class Chart:
    """A native chart bound to a table: a chart table (every label column a series), or named columns
    of an output table; the category axis is ``categories`` (blank: the table's first column, the
    report_month)."""

    table: str
    type: str                   # XlsxWriter chart type
    subtype: str | None
    title: str
    anchor: str                 # top-left cell on its sheet
    sheet: str = CHARTS
    columns: tuple[str, ...] = ()       # blank: every column after the first
    number_format: str = "#,##0"        # of the value axis
    size: tuple[int, int] = (880, 380)
    categories: str = ""
    x_format: str | None = "yyyy-mm"    # None: the categories are labels, not months
    # the rows the table always has: the series span them from the start, so a live refresh (which
    # cannot re-range a chart of chosen columns) fills them
    min_rows: int = 0
    x_title: str = ""
    y_title: str = ""
    chart_name: str = ""                # blank: the table's name (and the first chosen column)

    @property
    def category_column(self) -> str:
        return self.categories or self.source.headers[0]

    @property
    def name(self) -> str:
        """The chart's name in the workbook (the live refresh finds a chart by it)."""
        return self.chart_name or "_".join((self.table, *self.columns[:1]))

    @property
    def leading(self) -> bool:
        """Whether categories and series are the table's first columns: one range the live refresh can
        point the chart at."""
        return self.source.headers[: 1 + len(self.series)] == [self.category_column, *self.series]

    @property
    def source(self) -> Table:
        return CHART_TABLES[self.table] if self.table in CHART_TABLES else OUTPUT_TABLES[self.table]

    @property
    def series(self) -> tuple[str, ...]:
        return self.columns or tuple(self.source.headers[1:])


def series_colours(chart: Chart) -> dict[str, str]:
    """Fill colour per series of a chart bound to a chart table: that label's colour in the tables."""
    if chart.table not in _CHART_DEFS:
        return {}
    return label_colours(_CHART_DEFS[chart.table][0])


#: Charts beside an output table on its own sheet.
TABLE_CHARTS: tuple[Chart, ...] = (
    # on the CLV sheet, beside the clv table, reading clv_holdout's leading columns
    Chart("clv_holdout", "line", None, "Holdout check: actual vs predicted order days per customer", "J2",
          sheet=OUTPUT_SHEETS["clv"], columns=("actual_holdout_orders", "predicted_holdout_orders"),
          number_format="0.0", size=(720, 360), categories="calibration_orders", x_format=None,
          x_title="Repeat order days in the calibration period", y_title="Mean order days in the holdout months",
          chart_name="chart_clv_holdout"),
    Chart("calibration_mix", "column", None, "Tier mix: target, current thresholds, proposed thresholds", "J2",
          sheet=OUTPUT_SHEETS["calibration_mix"], columns=("target_share", "current_share", "proposed_share"),
          number_format="0%", size=(640, 340), categories="value_tier", x_format=None,
          min_rows=len(CALIBRATED_TIERS)),
)

CHARTS_LAYOUT: tuple[Chart, ...] = (
    Chart("chart_tier_mix", "column", "stacked", "Active customers by value tier", "B3"),
    Chart("chart_events", "column", None, "Lifecycle events per month", "B24"),
    Chart("chart_states", "area", "stacked", "Customers by lifecycle state", "B45"),
    Chart("chart_cohort_curve", "line", None, "Retention curve: share of a cohort buying core, by months since its "
                                              "first core month (all cohorts)", "B66", x_format=None,
          number_format="0%"),
)

# --- the KPIs and Tier Migration sheets ------------------------------------------------------------

KPIS_SHEET = OUTPUT_SHEETS["kpis"]
#: The KPIs sheet's charts, above the kpis table (which the refresh re-ranges as it grows).
KPI_CHARTS: tuple[Chart, ...] = (
    Chart("chart_tier_revenue", "column", "stacked", "Revenue by value tier", "G4", sheet=KPIS_SHEET,
          number_format="#,##0", size=(720, 300)),
    Chart("kpis", "column", None, "Lifecycle events per month", "G20", sheet=KPIS_SHEET,
          columns=("new", "reactivated", "lost"), size=(720, 300)),
    Chart("kpis", "line", None, "Active base", "A18", sheet=KPIS_SHEET, columns=("customers", "active"),
          size=(560, 340)),
)
#: Every chart in workbook order (sheet by sheet, as XlsxWriter numbers their parts chart1.xml ...).
ALL_CHARTS: tuple[Chart, ...] = tuple(sorted((*CHARTS_LAYOUT, *KPI_CHARTS, *TABLE_CHARTS),
                                             key=lambda c: SHEETS.index(c.sheet)))


@dataclass(frozen=True)
class Headline:
    """One line of the KPIs sheet's headline block: the latest month's value of a kpis column, last
    month's, its change (the column's ``_mom``) and an arrow coloured by whether up is good."""

    caption: str
    column: str
    up_is_good: bool = True

    @property
    def change(self) -> str:
        return f"{self.column}_mom"


HEADLINES: tuple[Headline, ...] = (
    Headline("Customers in the base", "customers"),
    Headline("Active customers", "active"),
    Headline("New", "new"),
    Headline("Reactivated", "reactivated"),
    Headline("Lost", "lost", up_is_good=False),
    Headline("Churn rate", "churn_rate", up_is_good=False),
    Headline("Retention rate", "retention_rate"),
    Headline("Reactivation rate", "reactivation_rate"),
    Headline("Volume", "volume"),
    Headline("Revenue", "revenue"),
    Headline("Revenue per active customer", "revenue_per_active"),
)
HEADLINE_TOP = 3            # the block's header row (0-based); the latest month is shown beside the title
HEADLINE_HEADERS = ("KPI", "latest month", "last month", "change", "")
UP, DOWN, FLAT = "\u25b2", "\u25bc", "\u25ba"


def _at_latest(table: str, column: str, months_back: int = 0) -> str:
    month = f"MAX({table}[report_month])"
    if months_back:
        month = f"EDATE({month},-{months_back})"
    return f"INDEX({table}[{column}],MATCH({month},{table}[report_month],0))"


def headline_formulas(headline: Headline, row: int) -> tuple[str, str, str, str]:
    """Excel formulas of a headline row (``row`` 1-based): this month, last month, change, arrow.

    They find the latest month by MAX(report_month), not the last row, so they stay right when the
    refresh grows the table or a user sorts it; a blank cell stays blank (INDEX would give 0)."""
    def blank_safe(ref: str) -> str:
        return f'=IFERROR(IF({ref}="","",{ref}),"")'
    change_cell = f"D{row}"
    return (blank_safe(_at_latest("kpis", headline.column)), blank_safe(_at_latest("kpis", headline.column, 1)),
            blank_safe(_at_latest("kpis", headline.change)),
            f'=IF(ISNUMBER({change_cell}),IF({change_cell}>0,"{UP}",IF({change_cell}<0,"{DOWN}","{FLAT}")),"")')


#: The Tier Migration sheet's heat maps: one per scope, side by side above the table, each a formula
#: grid reading the long table (from_tier rows x to_tier columns, in rank order).
MIGRATION_SHEET = OUTPUT_SHEETS["tier_migration"]
MIGRATION_TOP = 4           # header row of the grids (0-based); the grid's title is the row above
MIGRATION_FROM = contract.TRANSITION_TIERS
MIGRATION_TO = MIGRATION_FROM[:-1]


def migration_origin(scope_index: int) -> tuple[int, int]:
    """(row, col) of a heat map's top-left cell (the from_tier / to_tier corner), 0-based."""
    return MIGRATION_TOP, scope_index * (len(MIGRATION_TO) + 2)


def migration_formula(scope: str, from_cell: str, to_cell: str) -> str:
    return (f'=SUMIFS(tier_migration[share],tier_migration[scope],"{scope}",tier_migration[from_tier],{from_cell},'
            f"tier_migration[to_tier],{to_cell})")


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
    # field -> its items in the order they show (a pivot over cached-less tables would sort them
    # alphabetically: Bronze, Diamond, Gold, ...); Excel keeps this order when it refreshes, adding
    # values it has not seen at the end
    orders: tuple[tuple[str, tuple[str, ...]], ...] = ()
    # page field -> the item it opens on, one of its ``orders`` (else it opens on "(All)", summing
    # whatever the field separates)
    selected: tuple[tuple[str, str], ...] = ()

    @property
    def source_columns(self) -> list[str]:
        return OUTPUT_TABLES[self.table].headers

    def items(self, field: str) -> tuple[str, ...]:
        return dict(self.orders).get(field, ())


def _distinct_ignoring_case(values: tuple[str, ...]) -> tuple[str, ...]:
    """First of each value ignoring case: a pivot's items are case-insensitive, so "Active" and
    "active" are one item to Excel."""
    seen: dict[str, str] = {}
    for value in values:
        seen.setdefault(value.lower(), value)
    return tuple(seen.values())


# value_tier first: what the pivot opens on
_SUMMARY_DIMENSIONS = ("value_tier", *(d for d in SUMMARY_DIMENSIONS if d != "value_tier"))
_SUMMARY_CATEGORIES = _distinct_ignoring_case(
    (*TIERS, *STATES, *STATUSES, *EVENTS, *(name for name, _ in DEFAULT_SEGMENT_MAP)))


PIVOTS_LAYOUT: tuple[Pivot, ...] = (
    # Bounded size (about 10 x 10 tiers): first, so the month pivot below can grow down freely.
    Pivot("pvt_tier_transitions", "tier_transitions", rows=("from_tier",), cols=("to_tier",),
          pages=("report_month",), data=(("customers", "sum", "Number of customers"),), location="A6:C8",
          title="Tier transitions: rows = tier last month, columns = tier this month (filter a month above)",
          orders=(("from_tier", contract.TRANSITION_TIERS), ("to_tier", contract.TRANSITION_TIERS))),
    Pivot("pvt_monthly_summary", "monthly_summary", rows=("report_month",), cols=("category",),
          pages=("dimension",), data=(("customers", "sum", "Number of customers"),), location="A25:C27",
          title="Customers per month and category of one dimension (value_tier; choose another in the filter)",
          orders=(("dimension", _SUMMARY_DIMENSIONS), ("category", _SUMMARY_CATEGORIES)),
          selected=(("dimension", "value_tier"),)),
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
