"""The output contract: table names, column names, types and meanings.

These names become the Excel table names and what Power BI reads, so they change only with a
major version. ``docs/outputs.md`` is generated from this module (``python -m crm_xl.contract``)
and a test keeps the two equal.

Types: ``month`` (a date, the first day of the month), ``date``, ``text``, ``label`` (text from a
fixed list), ``integer``, ``decimal``; "blank" in a meaning says when a cell may be empty. In
pandas, text whose values repeat a lot (the history's customer_id, codes, reasons) is held as a
category of strings; it reads and writes as text.
"""

from __future__ import annotations

from crm_xl.config import EVENTS, STATES, STATUSES, TIERS

Column = tuple[str, str, str]  # name, type, meaning

_FIGURES: list[Column] = [
    ("m_total", "decimal",
     "Engagement measure (units by default) of core purchases, all history up to the month's end"),
    ("m1", "decimal", "Measure in the report month itself"),
    ("m6", "decimal", "Measure in the last 6 calendar months ending with the report month"),
    ("m12", "decimal", "Measure in the last 12 months (Active when > 0)"),
    ("m13", "decimal", "Measure in the last 13 months (m13 - m12 = the month 13 back)"),
    ("m24", "decimal", "Measure in the last 24 months"),
    ("m25", "decimal", "Measure in the last 25 months (m25 - m24 = the month 25 back)"),
    ("o6", "integer", "Distinct core invoices (orders) in the last 6 months"),
    ("revenue_m1", "decimal", "Revenue of core purchases in the report month"),
    ("revenue_m12", "decimal", "Revenue of core purchases in the last 12 months"),
    ("revenue_total", "decimal", "Revenue of core purchases, all history up to the month's end"),
    ("first_device_date", "date", "First purchase of an entry category (device); blank if none yet"),
    ("first_core_date", "date", "First core purchase; blank if none yet"),
    ("last_core_date", "date", "Latest core purchase up to the month's end; blank if none yet"),
    ("tenure_months", "integer", "Calendar months from the first core month to the report month, both "
                                 "included; blank before the first core purchase"),
    ("amc", "decimal", "Average monthly consumption: M6 / 6 (tier window)"),
    ("aos", "decimal", "Average order size: M6 / O6 (tier window); blank when there was no order"),
    ("activity_status", "label",
     f"{' or '.join(STATUSES)}: Active when the measure of the last 12 months is > 0 (M12 > 0)"),
    ("value_tier", "label", f"{', '.join(TIERS)}; blank when Not Active"),
    ("lifecycle_event", "label", f"{', '.join(EVENTS)}; blank when no event this month"),
    ("lifecycle_state", "label", f"Exactly one of {', '.join(STATES)}"),
    ("recency_days", "integer", "Days from the last core purchase to the month's end; blank if none yet"),
    ("frequency", "integer", "Core orders in the RFM window (12 months by default)"),
    ("monetary", "decimal", "Core units (or revenue, per rfm_monetary) in the RFM window"),
    ("r_score", "integer", "Recency score 1-5 (5 = most recent); blank when not scored (not in rfm_population: "
                           "not Active, by default)"),
    ("f_score", "integer", "Frequency score 1-5 (5 = most orders); blank when not scored"),
    ("m_score", "integer", "Monetary score 1-5 (5 = most volume); blank when not scored"),
    ("t_score", "integer", "Tenure score 1-5 (5 = longest tenure); blank when not scored"),
    ("fm_score", "integer", "ceil((F + M) / 2), the FM axis of the segment map; blank when not scored"),
    ("rfm_code", "text", "The four scores as one code, e.g. R5F4M3T2; blank when not scored"),
    ("rfm_segment", "label", "Named RFM segment from the segment map; blank when not scored"),
    ("tier_reason", "text", "Which tier rule matched, with the numbers that decided it"),
    ("segment_reason", "text", "The RFM scores and the values behind them"),
]

_MASTER: list[Column] = [
    ("customer_id", "text", "Customer key as text (leading zeros kept; 123 and 123.0 are the same id)"),
    ("customer_name", "text", "From the customer master"),
    ("customer_group", "text", "From the customer master"),
    ("city", "text", "From the customer master"),
    ("created_date", "date", "From the customer master"),
    ("email", "text", "From the customer master"),
    ("mobile_number", "text", "From the customer master, as text"),
    ("opt_email", "integer", "Marketing opt-in 0/1; blank when unknown"),
    ("opt_sms", "integer", "Marketing opt-in 0/1; blank when unknown"),
    ("opt_phone", "integer", "Marketing opt-in 0/1; blank when unknown"),
]

TABLES: dict[str, tuple[str, list[Column]]] = {
    "customer_snapshot": (
        "One row per analysed customer as of the report month: master attributes (and any extra master "
        "columns, after these), every figure, state and segment, and last month's tier and state. "
        "Doubles as the campaign list.",
        [*_MASTER, ("report_month", "month", "The snapshot month (figures as of its last day)"),
         *_FIGURES,
         ("previous_value_tier", "label", "value_tier one month earlier; blank when Not Active or not yet in the base"),
         ("previous_lifecycle_state", "label", "lifecycle_state one month earlier; blank when not yet in the base")],
    ),
    "customer_history": (
        "One row per customer and report month of the history range (month-end snapshots), for "
        "every customer in the base at that month's end.",
        [("report_month", "month", "The snapshot month (figures as of its last day)"),
         ("customer_id", "text", "Customer key, as in customer_snapshot"), *_FIGURES],
    ),
    "monthly_summary": (
        "Counts by report month for each dimension (lifecycle_state, activity_status, value_tier, "
        "lifecycle_event, rfm_segment), every category of each dimension every month (zeros included).",
        [("report_month", "month", "The snapshot month"),
         ("dimension", "text", "Which label is counted: lifecycle_state, activity_status, value_tier, "
                               "lifecycle_event or rfm_segment"),
         ("category", "text", "The label's value"),
         ("customers", "integer", "Customers with that label in that month"),
         ("share", "decimal", "customers / all customers in the base that month"),
         ("volume_m1", "decimal", "Their measure (units by default) in that month"),
         ("revenue_m1", "decimal", "Their core revenue in that month")],
    ),
    "tier_transitions": (
        "How customers moved between tiers from one month to the next; the tier of a customer who is "
        "not active is 'Not Active' (bought before) or 'Prospect' (never bought core), and 'New to base' "
        "before a customer enters the base. Only moves that happened are listed.",
        [("report_month", "month", "The month moved into"),
         ("from_tier", "text", "Tier at the previous month's end"),
         ("to_tier", "text", "Tier at this month's end"),
         ("customers", "integer", "Customers who made that move")],
    ),
    "rfm_cut_points": (
        "The four cut points used for each RFM field and month: a value at or below cut_1 scores 1 "
        "(recency: 5), above cut_4 scores 5 (recency: 1).",
        [("report_month", "month", "The snapshot month"),
         ("field", "text", "recency, frequency, monetary or tenure"),
         ("method", "text", "quantile (quintiles of that month's values) or fixed (from the config)"),
         ("cut_1", "decimal", "1st cut point"), ("cut_2", "decimal", "2nd cut point"),
         ("cut_3", "decimal", "3rd cut point"), ("cut_4", "decimal", "4th cut point"),
         ("customers_scored", "integer", "Customers scored that month (rfm_population: the Active ones by "
                                         "default, or everyone with a core purchase)")],
    ),
    "segment_map": (
        "The RFM segment map used: one row per (R, FM) cell.",
        [("rfm_segment", "text", "Segment name"), ("r_score", "integer", "Recency score 1-5"),
         ("fm_score", "integer", "FM score 1-5"), ("cell", "text", "R and FM as a two-digit code, e.g. 54")],
    ),
    "data_quality": (
        "One row per data-quality rule that fired while reading the inputs.",
        [("table", "text", "transactions, customers or products"),
         ("column", "text", "The column the rule checks"),
         ("rule", "text", "Rule name, e.g. unknown_customer, bad_date, return_line"),
         ("severity", "text", "warning (rows left out or changed) or info (expected, by design)"),
         ("rows", "integer", "How many rows"),
         ("example_rows", "text", "Up to five row numbers: from crm_xl.run, 1 = the first data row; in a "
                                  "workbook the sheet rows, from CSV files the line numbers (the header is line 1)"),
         ("example_values", "text", "The offending values of those rows"),
         ("message", "text", "What was done with those rows")],
    ),
    "rejected_lines": (
        "Every row left out of the analysis, one row each with its raw values (data_quality counts them "
        "by rule). Written as a file, not a sheet: rejected_lines.csv in a CSV run, BOOK_rejected_lines.csv "
        "beside a workbook.",
        [("table", "text", "transactions, customers or products"),
         ("row", "integer", "The row as data_quality numbers it (crm_xl.run: 1 = first data row; workbook: "
                            "the sheet row; CSV files: the line number, the header being line 1)"),
         ("rule", "text", "Why it was left out: the data_quality rule, e.g. unknown_customer, bad_date"),
         ("column", "text", "The column the rule checks"),
         ("values", "text", "The row's raw values, as column=value pairs separated by ' | '")],
    ),
    "run_info": (
        "The settings and counts of this run, for the record (no clock time: same inputs, same table).",
        [("item", "text", "Setting or count name"), ("value", "text", "Its value"),
         ("description", "text", "What it means")],
    ),
    "clv": (
        "Who will buy again and what they are worth (docs/clv.md): one row per analysed customer with a core "
        "purchase up to the report month's end, from the BG/NBD model (repeat buying) and the Gamma-Gamma model "
        "(order value) fitted to all of them. An order here is a day with a core purchase; a month is 30 days. "
        "Empty when the models cannot be fitted (run_info's clv.status says why). Joins customer_snapshot on "
        "customer_id.",
        [("customer_id", "text", "Customer key, as in customer_snapshot"),
         ("p_alive", "decimal", "Probability that the customer still buys (has not silently left), 0-1; 1 for a "
                                "customer with a single order day (the model cannot tell yet)"),
         ("expected_orders_3m", "decimal", "Expected order days in the next 3 months (90 days)"),
         ("expected_orders_6m", "decimal", "Expected order days in the next 6 months (180 days)"),
         ("expected_orders_12m", "decimal", "Expected order days in the next 12 months (360 days)"),
         ("expected_order_value", "decimal", "Expected revenue of one future order day: the customer's own mean "
                                             "repeat-order revenue shrunk toward the population mean (the "
                                             "population mean without a repeat order); blank when the order-value "
                                             "model cannot be fitted"),
         ("clv", "decimal", "Expected revenue over the next clv_horizon_months months, each month discounted by "
                            "clv_discount_rate_monthly; blank when the order-value model cannot be fitted"),
         ("churn_risk", "integer", "1 when the customer is active, new or reactivated this month and p_alive is "
                                   "below churn_risk_p_alive, else 0 (filter on 1; sum to count)")],
    ),
    "clv_holdout": (
        "Does the CLV model predict well here? The BG/NBD model fitted on the history up to clv_holdout_months "
        "before the report month's end predicts the order days of the months held out; by the customers' repeat "
        "order days in the calibration period, the mean actual and predicted order days of the holdout months. "
        "Empty when clv_holdout_months is 0 or the calibration period is too short (run_info's "
        "clv.holdout.status says why).",
        [("calibration_orders", "label", "Repeat order days in the calibration period: 0 to 6, or 7+"),
         ("actual_holdout_orders", "decimal", "Mean order days of those customers in the holdout months; blank "
                                              "without customers"),
         ("predicted_holdout_orders", "decimal", "Their mean predicted order days in the holdout months; blank "
                                                 "without customers"),
         ("customers", "integer", "Customers (first order in the calibration period) with that many")],
    ),
}

TABLE_NAMES = tuple(TABLES)
#: Output tables written as files beside a workbook rather than as sheets (they can outgrow a sheet).
FILE_TABLES = ("rejected_lines",)


def columns(table: str) -> list[str]:
    """The contract's column names of a table, in order."""
    return [name for name, _, _ in TABLES[table][1]]


def contract_markdown() -> str:
    """The text of ``docs/outputs.md``."""
    lines = [
        "# Output tables",
        "",
        "The contract of what `crm_xl.run` returns and the workbook holds: the same names become Excel "
        "table names and what Power BI reads. Generated from `crm_xl/contract.py` "
        "(`python -m crm_xl.contract > docs/outputs.md`); a test keeps them equal.",
        "",
        "Types: `month` is a date, the first day of the month (figures are as of its last day); `label` "
        "is text from a fixed list; `integer` and `decimal` cells may be blank where the meaning says so. "
        "In pandas, `label` columns and text whose values repeat a lot (the history's customer_id, "
        "rfm_code, the reasons) are categoricals of strings; they read and write as text.",
        "",
        "In the CSV files (`crm-xl run`, and `BOOK_rejected_lines.csv` beside a workbook) a `text` cell, or a "
        "header, that starts with `=`, `+`, `-`, `@`, a tab or a carriage return is written with a leading `'` "
        "(`'=HYPERLINK(...)`), so a spreadsheet opens it as text and never runs it as a formula (CSV formula "
        "injection: the inputs may come from anyone); text that is only numbers (`-5`, or `-7.0, -2.0` in "
        "`example_values`) is kept as it is, and so are `integer` and `decimal` columns. The workbook's sheets "
        "need no such mark: their text cells are always text.",
        "",
    ]
    for name, (meaning, cols) in TABLES.items():
        lines += [f"## `{name}`", "", meaning, "", "| column | type | meaning |", "|---|---|---|"]
        lines += [f"| `{c}` | {t} | {m} |" for c, t, m in cols]
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    print(contract_markdown(), end="")
