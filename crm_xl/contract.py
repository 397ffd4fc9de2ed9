"""The output contract: table names, column names, types and meanings.

These names become the Excel table names and what Power BI reads, so they change only with a
major version. ``docs/outputs.md`` is generated from this module (``python -m crm_xl.contract``)
and a test keeps the two equal.

Types: ``month`` (a date, the first day of the month), ``date``, ``text``, ``label`` (text from a
fixed list), ``integer``, ``decimal``, ``share`` (a decimal fraction, 0.25 = 25%, shown as a percentage
in the workbook); "blank" in a meaning says when a cell may be empty. In
pandas, text whose values repeat a lot (the history's customer_id, codes, reasons) is held as a
category of strings; it reads and writes as text.
"""

from __future__ import annotations

from crm_xl.config import EVENTS, STATES, STATUSES, TIERS

_TRANSITION_TIERS = "the six tiers, Not Active (bought before), Prospect (never bought core)"
#: movers.move labels, in the order the table lists them (good news first); the tier_migration scopes.
MOVES = ("new", "reactivated", "upgrade", "downgrade", "lapsing", "lost")
MIGRATION_SCOPES = ("month", "12 months")
#: tier_transitions' tier labels in rank order: the six tiers, Not Active (bought before), Prospect (never
#: bought core) and New to base (only ever a from_tier: not in the base the month before).
TRANSITION_TIERS: tuple[str, ...] = (*TIERS, "Not Active", "Prospect", "New to base")

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
    ("tier_reason", "text", "Why the tier, in words: each figure that decided it (unit_name named) with the "
                            "thresholds it meets or misses, e.g. averages 136.7 pods a month: ≥ 50 for Silver, < 200 "
                            "for Gold"),
    ("segment_reason", "text", "Why the segment: its cell of the segment map and the values each score stands for "
                               "that month, from the month's cut points (recency 31–60 days (R3); …; the row's own "
                               "values are recency_days, frequency and monetary); a reactivation this month is said"),
]
#: The snapshot's segment_reason also names the customer's own values (one month of texts is cheap to build).
_SNAPSHOT_SEGMENT_REASON: Column = (
    "segment_reason", "text", "Why the segment: its cell of the segment map, and each of the customer's values with "
                              "the range its score stands for that month (recency 36 days: R3 is 31–60 days; 1,640 "
                              "pods in 12 months: M4 is over 1,200 up to 2,400; …); a reactivation this month is said")

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

#: Campaign fields (crm_xl.core.campaign): the history a campaign filters on, as of the report month.
_CAMPAIGN: list[Column] = [
    ("last_active_tier", "label", "The latest tier other than Passive up to the report month (within the history "
                                  "range): a Lapsing or Churned customer's tier before lapsing; blank if none"),
    ("peak_tier_12m", "label", "The best tier of the last 12 months (Passive counts, below Bronze); blank if none"),
    ("tier_change", "label", "Against last month: up, down or same (by tier rank, Passive last), new (a tier now, "
                             "none last month) or left (none now); blank when no tier either month"),
    ("months_in_state", "integer", "Months in the current lifecycle_state, this month included (counted within "
                                   "the history range)"),
    ("state_since", "month", "First month of the current lifecycle_state (the history's first month when it "
                             "began earlier)"),
    ("days_since_last_purchase", "integer", "Days from the last purchase of any product (core, entry or other; "
                                            "quantity > 0) to the month's end; blank if none"),
    ("expected_next_purchase", "date", "The last core purchase plus the customer's median gap between core "
                                       "purchase days (rounded half up); blank under 2 purchase days. A date "
                                       "before the month's end means overdue"),
    ("favourite_product", "text", "product_id of the core product with the largest measure, all history "
                                  "(ties: the lowest product_id); blank without a core purchase"),
    ("favourite_product_name", "text", "product_name of favourite_product, from the product master"),
    ("favourite_category", "text", "category of favourite_product"),
]

#: What a campaign manager filters on first: the snapshot opens with these (panes frozen on id and name).
CAMPAIGN_FIRST = ("customer_id", "customer_name", "lifecycle_state", "value_tier", "rfm_segment",
                  "opt_email", "opt_sms", "opt_phone", "email", "mobile_number")


def _snapshot_columns() -> list[Column]:
    every = [*_MASTER, *(_SNAPSHOT_SEGMENT_REASON if c[0] == "segment_reason" else c for c in _FIGURES)]
    by_name = {column[0]: column for column in every}
    first = [by_name[name] for name in CAMPAIGN_FIRST]
    rest = [column for column in every if column[0] not in CAMPAIGN_FIRST]
    master_rest = [c for c in rest if c in _MASTER]
    figures_rest = [c for c in rest if c not in _MASTER]
    return [*first, *_CAMPAIGN, *master_rest, ("report_month", "month", "The snapshot month (figures as of its "
                                                                       "last day)"),
            *figures_rest,
            ("previous_value_tier", "label", "value_tier one month earlier; blank when Not Active or not yet in the "
                                             "base"),
            ("previous_lifecycle_state", "label", "lifecycle_state one month earlier; blank when not yet in the "
                                                  "base")]


TABLES: dict[str, tuple[str, list[Column]]] = {
    "customer_snapshot": (
        "One row per analysed customer as of the report month, opening with what a campaign is chosen by "
        "(id, name, state, tier, segment, opt-ins, the campaign fields), then the other master attributes, "
        "every figure, and last month's tier and state; extra master columns come last. The campaign list.",
        _snapshot_columns(),
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
         ("fm_score", "integer", "FM score 1-5"), ("cell", "text", "R and FM as a two-digit code, e.g. 54"),
         ("description", "text", "Who the segment's customers are, in a marketer's words (the description column of "
                                 "tbl_segment_map on Config, editable; blank when none is given)"),
         ("action", "text", "What to do with them (the action column of tbl_segment_map, editable; blank when none "
                            "is given)")],
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
    "movers": (
        "One row per customer whose tier or lifecycle state moved in the report month, against the month before: "
        "new, reactivated, upgrade, downgrade, lapsing (became Passive), lost. The Movers sheet is the campaign "
        "list of the month's changes.",
        [("report_month", "month", "The report month (the latest month of customer_history)"),
         ("customer_id", "text", "Customer key, as in customer_snapshot"),
         ("customer_name", "text", "From the customer master"),
         ("move", "label", f"{', '.join(MOVES)} (in this order in the table; how each is decided: "
                           "docs/business_logic.md, Movers)"),
         ("from_tier", "label", f"Tier at the previous month's end: {_TRANSITION_TIERS} or New to base (as in "
                                "tier_transitions)"),
         ("to_tier", "label", f"Tier at the report month's end: {_TRANSITION_TIERS}"),
         ("from_state", "label", "lifecycle_state at the previous month's end; blank when not yet in the base"),
         ("to_state", "label", "lifecycle_state at the report month's end"),
         ("opt_email", "integer", "Marketing opt-in 0/1; blank when unknown"),
         ("opt_sms", "integer", "Marketing opt-in 0/1; blank when unknown"),
         ("opt_phone", "integer", "Marketing opt-in 0/1; blank when unknown"),
         ("last_core_date", "date", "Latest core purchase up to the report month's end"),
         ("reason", "text", "From -> to tier and why, in words: the row's tier_reason, and for new, reactivated, "
                            "lapsing and lost customers what happened")],
    ),
    "tier_migration": (
        "Row-normalised tier migration matrix: of the customers in each tier at a month's end, the share in "
        "each tier one month later. Scope 'month' is the report month's moves, scope '12 months' the moves "
        "into each of the last 12 months pooled (counts summed, then normalised). Every (from_tier, to_tier) "
        "cell in tier rank order, zeros included. Labels as in tier_transitions.",
        [("scope", "label", "month (the report month) or 12 months (the last 12 months, fewer when the "
                            "history is shorter)"),
         ("report_month", "month", "The last month of the scope (the report month)"),
         ("months", "integer", "How many monthly moves the scope pools (1, or up to 12)"),
         ("from_tier", "label", f"Tier the month before: {_TRANSITION_TIERS}, New to base (not in the base yet)"),
         ("to_tier", "label", f"Tier one month later: {_TRANSITION_TIERS} (customers never leave the base)"),
         ("customers", "integer", "Customers who made that move (12 months: summed over the months, a customer "
                                  "once per month)"),
         ("share", "share", "customers / all customers of that from_tier in the scope; each from_tier's shares "
                            "sum to 1; blank when the from_tier had nobody")],
    ),
    "kpis": (
        "One row per report month of the history: the base and its flows, churn, retention and reactivation "
        "rates, volume and revenue, the tier mix of the active customers, and month-over-month changes. Built "
        "from monthly_summary and tier_transitions.",
        [("report_month", "month", "The snapshot month"),
         ("customers", "integer", "Customers in the base at the month's end"),
         ("active", "integer", "Active customers (a core purchase in the last 12 months)"),
         ("new", "integer", "New events: first-ever core purchase this month"),
         ("reactivated", "integer", "Reactivated events: back after the reactivation gap"),
         ("lost", "integer", "Lost events: left the active window this month"),
         ("active_last_month", "integer", "Active customers at the previous month's end"),
         ("inactive_last_month", "integer", "Not Active customers who had bought before (state lost), at the "
                                            "previous month's end"),
         ("churn_rate", "share", "lost / active_last_month; blank when nobody was active"),
         ("retention_rate", "share", "Share of active_last_month still Active this month (= 1 - churn_rate, "
                                     "since leaving the active window is the Lost event); blank when nobody was "
                                     "active"),
         ("reactivation_rate", "share", "Share of inactive_last_month Active again this month (with default "
                                        "settings: reactivated / inactive_last_month); blank when there was nobody"),
         ("volume", "decimal", "Measure (units by default) of core purchases in the month"),
         ("revenue", "decimal", "Revenue of core purchases in the month"),
         ("volume_per_active", "decimal", "volume / active; blank when nobody is active"),
         ("revenue_per_active", "decimal", "revenue / active; blank when nobody is active"),
         *((f"share_{tier.lower()}", "share", f"Share of the active customers in {tier}; blank when nobody is "
                                              "active") for tier in TIERS),
         *((f"{name}_mom", "share", f"Month-over-month change of {name}: this month / last month - 1; blank in "
                                    "the first month and when last month was 0")
           for name in ("customers", "active", "new", "reactivated", "lost", "volume", "revenue",
                        "volume_per_active", "revenue_per_active")),
         *((f"{name}_mom", "share", f"Month-over-month change of {name} in points: this month's minus last "
                                    "month's (0.01 = 1 point); blank in the first month")
           for name in ("churn_rate", "retention_rate", "reactivation_rate"))],
    ),
    "segment_shares": (
        "RFM segment mix by month, long (one row per month and segment, in segment-map order), so segments "
        "renamed or added on the segment map are rows, not new columns.",
        [("report_month", "month", "The snapshot month"),
         ("rfm_segment", "text", "Segment name, from the segment map"),
         ("customers", "integer", "Customers in that segment that month"),
         ("share", "share", "customers / customers scored that month (rfm_population: the Active ones by default); "
                            "blank when nobody was scored"),
         ("share_mom", "share", "share minus last month's share (0.01 = 1 point); blank in the first month")],
    ),
    "calibration": (
        "Proposed tier thresholds: the six threshold settings cut on the data so that the tiered Active "
        "customer-months (Passive left out: no threshold moves them) of the last calibration_months report "
        "months fall into the tiers in the target_share_* proportions; equal values are never split. "
        "crm-xl calibrate BOOK --apply writes the proposed values to Config.",
        [("setting", "text", "The threshold setting (t_high, t_mid_high, t_mid, a_high, f_high, f_mid)"),
         ("rule", "text", "Which tier it decides, and on which measure"),
         ("current", "decimal", "Its value in this run's settings"),
         ("proposed", "decimal", "The roundest number that gives the target shares where ties allow"),
         ("note", "text", "How it was chosen")],
    ),
    "calibration_mix": (
        "The tier mix of the pooled customer-months (see calibration): target, with the current thresholds "
        "and with the proposed ones.",
        [("value_tier", "label", "Diamond, Platinum, Gold, Silver or Bronze"),
         ("target_share", "decimal", "The target_share_* setting (Bronze: the rest)"),
         ("current_count", "integer", "Customer-months in the tier with the current thresholds"),
         ("current_share", "decimal", "current_count / all pooled customer-months"),
         ("proposed_count", "integer", "Customer-months in the tier with the proposed thresholds"),
         ("proposed_share", "decimal", "proposed_count / all pooled customer-months"),
         ("note", "text", "Within 1 point of the target, or why equal values at the cut kept it further")],
    ),
    "cohort_retention": (
        "Retention of first-purchase cohorts (openretailscience CohortAnalysis semantics): one row per cohort "
        "(the month of a customer's first core purchase) and month since it, 0 = the cohort's own month, up to "
        "the report month. Only cohorts whose first core month is inside the history range are listed (an "
        "earlier cohort's size is not seen); every month since is listed, zeros included.",
        [("cohort", "month", "The month of the cohort's first core purchase"),
         ("months_since", "integer", "Calendar months from the cohort month to report_month (0 = the cohort month)"),
         ("report_month", "month", "The calendar month described: cohort + months_since"),
         ("cohort_size", "integer", "Distinct customers whose first core purchase fell in the cohort month"),
         ("active", "integer", "Distinct customers of the cohort who bought core in report_month (their "
                               "last_core_date falls in it, i.e. m1 > 0)"),
         ("share_active", "decimal", "active / cohort_size; 1.0 in month 0"),
         ("volume", "decimal", "The cohort's measure (units by default) in report_month: the sum of its m1"),
         ("revenue", "decimal", "The cohort's core revenue in report_month: the sum of its revenue_m1")],
    ),
    "rfm_grid": (
        "The RFM grid of the report month: one row per (R, FM) cell of the segment map, all 25 cells (zeros "
        "included), R 5 to 1 then FM 1 to 5, with the customers scored into it. The RFM Grid sheet shows it as "
        "a 5 x 5 heat map beside the segment names.",
        [("report_month", "month", "The snapshot month"),
         ("r_score", "integer", "Recency score 1-5"), ("fm_score", "integer", "FM score 1-5"),
         ("cell", "text", "R and FM as a two-digit code, e.g. 54"),
         ("rfm_segment", "text", "The cell's segment in the segment map"),
         ("customers", "integer", "Customers of customer_snapshot scored into the cell"),
         ("share", "decimal", "customers / all customers scored in the report month (blank when nobody was scored)"),
         ("revenue_m12", "decimal", "Their core revenue of the last 12 months (revenue_m12, the default RFM window: "
                                    "the value the cell stands for, steadier than one month's)")],
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
         ("churn_risk", "integer", "1 when the customer is a Newcomer, Regular or Returning this month and p_alive is "
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


def column_type(table: str, column: str) -> str:
    """The contract type of one column of a table."""
    return next(kind for name, kind, _ in TABLES[table][1] if name == column)


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
