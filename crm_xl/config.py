"""Settings of the pipeline: defaults in code, validated once at the boundary.

Every setting has a name (the key used on the Config sheet and in ``run(config={...})``), a
default, and a one-line description in :data:`SETTINGS_HELP`. :meth:`Config.from_mapping` accepts
the loose values a spreadsheet gives (text numbers, comma-separated lists, ``2024-12`` or a date
for a month) and raises :class:`~crm_xl.errors.ConfigError` naming the key and what is allowed.

The input contract (:data:`INPUT_COLUMNS`) lives here too, because the ``map.<table>.<column>``
settings name an extract's own header for one of its columns and are validated against it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import math
import numbers
import re
from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd

from crm_xl.errors import ConfigError

TIERS = ("Diamond", "Platinum", "Gold", "Silver", "Bronze", "Passive")
STATUSES = ("Active", "Not Active")
EVENTS = ("New", "Lost", "Reactivated")
# Display names that no other label repeats, even ignoring case (Excel's pivots and filters do): the
# state of a customer is a Newcomer, a Regular, Churned, Returning; the events are what happened that
# month (New, Lost, Reactivated); Active / Not Active is the activity status (docs/business_logic.md 11).
STATES = ("Prospect", "Newcomer", "Regular", "Lapsing", "Churned", "Returning")
# each by name, for the code that means one of them (the texts above are display names that may change)
PROSPECT, NEWCOMER, REGULAR, LAPSING, CHURNED, RETURNING = STATES
SCORE_FIELDS = ("recency", "frequency", "monetary", "tenure")

# The widely used 11 RFM segments on (R score, FM score); every one of the 25 cells exactly once.
DEFAULT_SEGMENT_MAP: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Champions", ("55", "54", "45")),
    ("Loyal Customers", ("53", "44", "35", "34")),
    ("Potential Loyalist", ("52", "42", "43", "33")),
    ("Recent Customers", ("51",)),
    ("Promising", ("41", "31")),
    ("Customers Needing Attention", ("32", "23", "22")),
    ("About To Sleep", ("21",)),
    ("At Risk", ("25", "24", "13")),
    ("Can't Lose Them", ("15", "14")),
    ("Hibernating", ("12",)),
    ("Gone Cold", ("11",)),   # the brief's "Lost": renamed, the Lost event has that name
)
#: Segment name -> (description, recommended action): the defaults of tbl_segment_map's description and
#: action columns, from common RFM practice, in a marketer's words. A segment map given without those
#: columns (an older workbook, the text form) gets these for the names it shares with them.
DEFAULT_SEGMENT_NOTES: dict[str, tuple[str, str]] = {
    "Champions": ("Bought recently, buy often and buy the most.",
                  "Reward them: early access to new products, loyalty perks, ask for reviews and referrals. "
                  "They need no discount."),
    "Loyal Customers": ("Buy regularly and in good amounts; they answer well to campaigns.",
                        "Offer bigger packs or a subscription, invite them to the loyalty programme, ask for reviews."),
    "Potential Loyalist": ("Recent customers who buy fairly often or in fair amounts.",
                           "Keep in regular touch: a membership or subscription offer, recommendations of related "
                           "products."),
    "Recent Customers": ("Bought very recently, but not often or much yet.",
                         "Welcome them: tips on getting started, an incentive for the second purchase, easy "
                         "reordering of refills."),
    "Promising": ("Fairly recent buyers who have not bought much yet.",
                  "Build the habit: a reminder when a refill is due, a trial offer on a bigger pack."),
    "Customers Needing Attention": ("Middle of the road on recency, frequency and amount: could go either way.",
                                    "Re-engage before they slip: a limited-time offer, personal recommendations."),
    "About To Sleep": ("Below average on how recently, how often and how much they buy.",
                       "Wake them up: a refill reminder with a popular product and a modest incentive to come back."),
    "At Risk": ("Used to buy often and a lot, but not for some time.",
                "Win them back personally: a tailored message, a strong offer, ask what went wrong."),
    "Can't Lose Them": ("Were among the best customers but have not bought for a long time.",
                        "Top priority win-back: personal contact, the best offer, new products they have not tried."),
    "Hibernating": ("Last bought long ago, and bought little and rarely.",
                    "Low-cost reminders only: seasonal offers or a relevant new product; do not overspend."),
    "Gone Cold": ("Lowest on recency, frequency and amount.",
                  "One reactivation campaign at most; otherwise leave them out of paid campaigns."),
}
#: The columns of a segment map table beyond (segment, cells): what the segment is, what to do with it.
SEGMENT_NOTE_COLUMNS = ("description", "action")


def default_segment_notes(segment_map: tuple[tuple[str, tuple[str, ...]], ...]) -> tuple[tuple[str, str, str], ...]:
    """(segment, description, action) for a segment map given without notes: the defaults of the names it
    shares with :data:`DEFAULT_SEGMENT_NOTES`, blanks for the others."""
    names = dict.fromkeys(name for name, _ in segment_map)
    return tuple((name, *DEFAULT_SEGMENT_NOTES.get(name, ("", ""))) for name in names)


DEFAULT_SEGMENT_NOTES_ROWS = default_segment_notes(DEFAULT_SEGMENT_MAP)


@dataclasses.dataclass(frozen=True)
class InputColumn:
    """A column of a raw table as the core reads it: its name, whether the table must have it, what it holds."""

    name: str
    required: bool
    description: str


def _inputs(*columns: tuple[str, bool, str]) -> tuple[InputColumn, ...]:
    return tuple(InputColumn(*column) for column in columns)


#: The input contract: every column of the three raw tables the core knows, required ones first
#: (docs/business_logic.md section 3). Other columns are allowed. The workbook's Columns table has one
#: row per column here.
INPUT_COLUMNS: dict[str, tuple[InputColumn, ...]] = {
    "transactions": _inputs(
        ("invoice_id", True, "The order: lines of one customer with the same invoice id are one order"),
        ("invoice_date", True, "The day of the line"),
        ("customer_id", True, "The customer (an id of the customer master)"),
        ("product_id", True, "The product (an id of the product master)"),
        ("quantity", True, "Units of the product; negative = return"),
        ("revenue", True, "Net value of the line"),
        ("store_id", False, "The store; not used by the rules"),
    ),
    "customers": _inputs(
        ("customer_id", True, "The customer's key"),
        ("customer_name", False, "Carried to customer_snapshot"),
        ("customer_group", False, "Decides anonymity (anonymous_groups)"),
        ("city", False, "Carried to customer_snapshot"),
        ("created_date", False, "Entry into the base (use_created_date)"),
        ("email", False, "Carried to customer_snapshot"),
        ("mobile_number", False, "Carried to customer_snapshot, as text"),
        ("opt_email", False, "Marketing opt-in 0/1"),
        ("opt_sms", False, "Marketing opt-in 0/1"),
        ("opt_phone", False, "Marketing opt-in 0/1"),
    ),
    "products": _inputs(
        ("product_id", True, "The product's key"),
        ("category", True, "Compared with core_categories, entry_categories, other_categories"),
        ("unit_size", True, "Volume per unit (pods, grams, litres), a number > 0"),
        ("product_name", False, "Not used by the rules"),
        ("brand", False, "Not used by the rules"),
    ),
}
REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    table: tuple(c.name for c in columns if c.required) for table, columns in INPUT_COLUMNS.items()}
#: ``map.transactions.invoice_id = Invoice No``: the header of an extract that holds a contract column.
MAP_PREFIX = "map."
MAP_HELP = "Header of {table}.{column} in your data (blank = {column})"


def map_key(table: str, column: str) -> str:
    """The setting that names the header of ``table.column`` in the user's data."""
    return f"{MAP_PREFIX}{table}.{column}"


def header_key(header: object) -> str:
    """A header as the core compares headers: ignoring case and surrounding spaces."""
    return str(header).strip().lower()


SETTINGS_HELP: dict[str, str] = {
    "report_month": "Last month to report (YYYY-MM); blank = the last month that has transactions; "
                    "last_complete = the last month the data covers to its last day",
    "history_months": "How many month-end snapshots to compute, ending with the report month",
    "core_categories": "Product categories that count toward engagement (recurring consumables)",
    "entry_categories": "Product categories whose first purchase marks entry into the base (devices)",
    "other_categories": "Other known non-core categories (accessories, spare parts); any other is flagged",
    "anonymous_groups": "Customer groups excluded from all analysis (compared ignoring case and spaces)",
    "measure": "Engagement measure: units (quantity x unit_size) or revenue",
    "use_created_date": "A customer enters the base at created_date (or first purchase if earlier)",
    "date_order": "How text dates like 05/01/2024 read: auto (decided from the data, a day > 12 somewhere), "
                  "DMY (day first), MDY (month first) or YMD (ISO text only)",
    "active_window_months": "Active when the measure over this many months is > 0 (M12)",
    "tier_window_months": "Window for AMC, O and AOS (6: AMC = M6/6, O6, AOS = M6/O6)",
    "reactivation_gap_months": "Silent months before a purchase counts as a reactivation",
    "t_high": "AMC threshold for Platinum and Diamond (T_high)",
    "t_mid_high": "AMC threshold for Gold (T_mid_high)",
    "t_mid": "AMC threshold for Silver (T_mid)",
    "a_high": "AOS threshold for Diamond (A_high)",
    "f_high": "Order-count threshold for Diamond (F_high, invoices in the tier window)",
    "f_mid": "Order-count threshold for Platinum (F_mid, invoices in the tier window)",
    "rfm_population": "Who is RFM-scored each month: active (Active customers, cut points from them) "
                      "or all_buyers (everyone with a core purchase so far)",
    "rfm_window_months": "Window for RFM frequency and monetary",
    "rfm_monetary": "RFM monetary value: units or revenue",
    "rfm_method": "quantile (quintile cut points per month) or fixed (the cut points below)",
    "rfm_cuts_recency": "Fixed cut points for recency days: <= 1st -> R5 ... > 4th -> R1",
    "rfm_cuts_frequency": "Fixed cut points for frequency (orders): <= 1st -> F1 ... > 4th -> F5",
    "rfm_cuts_monetary": "Fixed cut points for monetary: <= 1st -> M1 ... > 4th -> M5",
    "rfm_cuts_tenure": "Fixed cut points for tenure months: <= 1st -> T1 ... > 4th -> T5",
    "segment_map": "RFM segment per (R, FM) cell, first match wins; every cell exactly once",
    "udf_segment": "What CRM_SEGMENT returns: value_tier or rfm_segment",
    "unit_name": "What one unit of the measure is called in the explanations (pods, grams, litres; revenue "
                 "shows the currency as a number)",
    "target_share_diamond": "Calibration: share of tiered Active customers wanted in Diamond (0.03 = 3%)",
    "target_share_platinum": "Calibration: share wanted in Platinum",
    "target_share_gold": "Calibration: share wanted in Gold",
    "target_share_silver": "Calibration: share wanted in Silver (Bronze gets the rest; the four must sum below 1)",
    "calibration_months": "Calibration: how many report months, ending with the report month, are pooled",
    "clv_horizon_months": "CLV: months ahead summed in clv (a month is 30 days, as in lifetimes)",
    "clv_discount_rate_monthly": "CLV: discount rate per month (0.01 = 1%); month k is divided by (1 + rate)^k",
    "clv_penalizer": "CLV: L2 penalty on the BG/NBD and Gamma-Gamma parameters (0 = plain maximum likelihood; "
                     "0.001 to 0.1 tames a fit that fails or gives extreme values)",
    "churn_risk_p_alive": "CLV: churn_risk is 1 for an active, new or reactivated customer whose p_alive is below this",
    "clv_holdout_months": "CLV: months before the report month's end held out to check the model (clv_holdout); "
                          "0 = no check",
}

# Allowed values of the choice settings, ranges of the whole-number settings, the thresholds: the Config
# sheet's data validation is built from these, so the sheet and the parser cannot drift apart.
CHOICES: dict[str, tuple[str, ...]] = {
    "measure": ("units", "revenue"),
    "date_order": ("auto", "dmy", "mdy", "ymd"),
    "rfm_monetary": ("units", "revenue"),
    "rfm_method": ("quantile", "fixed"),
    "rfm_population": ("active", "all_buyers"),
    "udf_segment": ("value_tier", "rfm_segment"),
}
INT_RANGES: dict[str, tuple[int, int]] = {
    "history_months": (1, 600),
    "active_window_months": (1, 23),   # Lost looks one month further back (M13), within the 24 kept
    "tier_window_months": (1, 24),
    "reactivation_gap_months": (1, 24),
    "rfm_window_months": (1, 60),
    "calibration_months": (1, 600),
    "clv_horizon_months": (1, 120),
    "clv_holdout_months": (0, 60),
}
#: Decimal settings and their ranges (None: no upper bound), both ends allowed.
DECIMAL_RANGES: dict[str, tuple[float, float | None]] = {
    "clv_discount_rate_monthly": (0.0, 1.0),
    "clv_penalizer": (0.0, None),
    "churn_risk_p_alive": (0.0, 1.0),
}
#: ``report_month = last_complete``: the last month whose every day the data covers (see data_through).
LAST_COMPLETE = "last_complete"
THRESHOLDS = ("t_high", "t_mid_high", "t_mid", "a_high", "f_high", "f_mid")
#: Calibration targets: the share of tiered Active customers wanted in each tier above Bronze.
TARGET_SHARES = ("target_share_diamond", "target_share_platinum", "target_share_gold", "target_share_silver")
_CATEGORY_LISTS = ("core_categories", "entry_categories", "other_categories", "anonymous_groups")
_CUTS = ("rfm_cuts_recency", "rfm_cuts_frequency", "rfm_cuts_monetary", "rfm_cuts_tenure")


@dataclasses.dataclass(frozen=True)
class Config:
    """All settings of one run. Build it with :meth:`from_mapping` to get validation and parsing."""

    report_month: pd.Period | str | None = None    # a month, LAST_COMPLETE, or None (latest month with data)
    history_months: int = 24
    core_categories: tuple[str, ...] = ("consumable",)
    entry_categories: tuple[str, ...] = ("device",)
    other_categories: tuple[str, ...] = ("accessories", "spare_parts")
    anonymous_groups: tuple[str, ...] = ("General",)
    measure: str = "units"
    use_created_date: bool = True
    date_order: str = "auto"
    active_window_months: int = 12
    tier_window_months: int = 6
    reactivation_gap_months: int = 12
    t_high: float = 1000.0
    t_mid_high: float = 200.0
    t_mid: float = 50.0
    a_high: float = 1500.0
    f_high: float = 6.0
    f_mid: float = 3.0
    rfm_population: str = "active"
    rfm_window_months: int = 12
    rfm_monetary: str = "units"
    rfm_method: str = "quantile"
    rfm_cuts_recency: tuple[float, ...] = (30.0, 60.0, 120.0, 240.0)
    rfm_cuts_frequency: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0)
    rfm_cuts_monetary: tuple[float, ...] = (100.0, 500.0, 2000.0, 10000.0)
    rfm_cuts_tenure: tuple[float, ...] = (3.0, 6.0, 12.0, 24.0)
    segment_map: tuple[tuple[str, tuple[str, ...]], ...] = DEFAULT_SEGMENT_MAP
    udf_segment: str = "value_tier"
    unit_name: str = "units"
    target_share_diamond: float = 0.03
    target_share_platinum: float = 0.07
    target_share_gold: float = 0.15
    target_share_silver: float = 0.30
    calibration_months: int = 6
    # (segment, description, action) per segment: as given with the segment map (tbl_segment_map's
    # description and action columns, blanks kept as the user left them), else the defaults of the
    # segments' names; set with segment_map, not a setting of its own.
    segment_notes: tuple[tuple[str, str, str], ...] = DEFAULT_SEGMENT_NOTES_ROWS
    clv_horizon_months: int = 12
    clv_discount_rate_monthly: float = 0.01
    clv_penalizer: float = 0.0
    churn_risk_p_alive: float = 0.5
    clv_holdout_months: int = 6
    # (table, column, header) for each contract column whose header in the data is another one, in
    # INPUT_COLUMNS order; set by the map.<table>.<column> settings.
    column_map: tuple[tuple[str, str, str], ...] = ()

    def __post_init__(self) -> None:
        _validate(self)

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any] | Config | None = None) -> Config:
        """Parse settings given as ``{name: value}``; blank values (None, "") mean the default."""
        if mapping is None:
            return cls()
        if isinstance(mapping, Config):
            return mapping
        known = set(SETTINGS_HELP)
        values: dict[str, Any] = {}
        headers: dict[tuple[str, str], str] = {}
        for raw_key, value in mapping.items():
            key = str(raw_key).strip()
            if key.startswith(MAP_PREFIX):
                column = parse_map_key(key)
                if not _is_blank(value):
                    headers[column] = str(value).strip()
                continue
            if key not in known:
                raise ConfigError(key, f"unknown setting; known settings: {', '.join(sorted(known))} and "
                                       f"{MAP_PREFIX}<table>.<column>")
            if _is_blank(value):
                continue
            values[key] = _parse(key, value)
            if key == "segment_map":
                notes = parse_segment_notes(value)
                values["segment_notes"] = default_segment_notes(values[key]) if notes is None else notes
        order = [(table, c.name) for table, columns in INPUT_COLUMNS.items() for c in columns]
        values["column_map"] = tuple((*column, headers[column]) for column in order if column in headers)
        return cls(**values)

    def as_rows(self) -> list[tuple[str, str, str]]:
        """(setting, value as text, description) for every setting, in declaration order; one
        ``map.<table>.<column>`` row per mapped column."""
        rows = [(f.name, format_value(getattr(self, f.name)), SETTINGS_HELP[f.name])
                for f in dataclasses.fields(self) if f.name not in ("column_map", "segment_notes")]
        rows += [(map_key(table, column), header, MAP_HELP.format(table=table, column=column))
                 for table, column, header in self.column_map]
        return rows

    def headers(self, table: str) -> dict[str, str]:
        """Contract column -> the header that holds it in ``table``, for the mapped columns only."""
        return {column: header for name, column, header in self.column_map if name == table}

    @property
    def segment_lookup(self) -> dict[tuple[int, int], str]:
        """(R, FM) -> segment name, from the first map row that lists the cell."""
        lookup: dict[tuple[int, int], str] = {}
        for name, codes in self.segment_map:
            for code in codes:
                lookup.setdefault((int(code[0]), int(code[1])), name)
        return lookup

    def segment_note(self, segment: str) -> tuple[str, str]:
        """(description, action) of a segment (blanks for a segment without them)."""
        notes = {name: (description, action) for name, description, action in self.segment_notes}
        return notes.get(segment, ("", ""))

    def cuts_for(self, field: str) -> tuple[float, ...]:
        return getattr(self, f"rfm_cuts_{field}")


def parse_map_key(key: str) -> tuple[str, str]:
    """(table, column) of a ``map.<table>.<column>`` setting; :class:`ConfigError` naming an unknown one."""
    table, _, column = key.removeprefix(MAP_PREFIX).partition(".")
    if table not in INPUT_COLUMNS:
        raise ConfigError(key, f"unknown table {table!r}; expected {MAP_PREFIX}<table>.<column> with table one of "
                               f"{', '.join(INPUT_COLUMNS)}")
    names = [c.name for c in INPUT_COLUMNS[table]]
    if column not in names:
        raise ConfigError(key, f"{table} has no column {column!r}; its columns: {', '.join(names)}")
    return table, column


def format_value(value: Any) -> str:
    """A setting as the text a user would type on the Config sheet."""
    if value is None:
        return ""
    if isinstance(value, pd.Period):
        return str(value)
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, tuple) and value and isinstance(value[0], tuple):
        return "; ".join(f"{name}: {' '.join(codes)}" for name, codes in value)
    if isinstance(value, tuple):
        return ", ".join(format_value(v) for v in value)
    return str(value)


def _is_blank(value: Any) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and not value.strip()


def _parse(key: str, value: Any) -> Any:
    if key == "report_month":
        if str(value).strip().lower().replace(" ", "_") == LAST_COMPLETE:
            return LAST_COMPLETE
        return parse_month(value, key)
    if key in INT_RANGES:
        return _parse_int(key, value)
    if key in THRESHOLDS or key in TARGET_SHARES or key in DECIMAL_RANGES:
        return _parse_number(key, value)
    if key in _CATEGORY_LISTS:
        return _parse_text_list(key, value)
    if key in _CUTS:
        return tuple(_parse_number(key, v) for v in _split_list(value))
    if key == "use_created_date":
        return _parse_bool(key, value)
    if key == "segment_map":
        return parse_segment_map(value)
    if key == "unit_name":
        return str(value).strip()
    return str(value).strip().lower()


def parse_month(value: Any, key: str = "report_month") -> pd.Period:
    """A calendar month from ``2024-12``, ``2024-12-31``, a date, a Period or an Excel date serial."""
    if isinstance(value, pd.Period):
        return value.asfreq("M")
    if isinstance(value, (dt.date, pd.Timestamp)):
        return pd.Period(value, freq="M")
    text = str(value).strip()
    if re.fullmatch(r"\d{4}/\d{1,2}(/\d{1,2})?", text):   # 2024/12 as some locales type it
        text = text.replace("/", "-")
    if re.fullmatch(r"(19|2\d)\d{2}(0[1-9]|1[0-2])(\.0+)?", text):   # 202412 is YYYYMM, not a serial
        return pd.Period(year=int(text[:4]), month=int(text[4:6]), freq="M")
    if (isinstance(value, (int, float)) and not isinstance(value, bool)) or re.fullmatch(r"\d+(\.\d+)?", text):
        serial = float(text)
        if 10000 <= serial <= 2958465:  # 1927 .. 9999 as Excel date serials; 2024 is a year, not a date
            return pd.Period(pd.Timestamp("1899-12-30") + pd.Timedelta(days=serial), freq="M")
    elif re.fullmatch(r"\d{4}-\d{1,2}(-\d{1,2}([ T]\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?)?)?", text):
        try:
            return pd.Period(pd.Timestamp(text if text.count("-") > 1 else text + "-01"), freq="M")
        except (ValueError, OverflowError):
            pass
    raise ConfigError(key, f"expected a month like 2024-12 (or a date in it), got {value!r}")


def _parse_int(key: str, value: Any) -> int:
    number = _parse_number(key, value)
    if number != int(number):
        raise ConfigError(key, f"expected a whole number, got {value!r}")
    return int(number)


def _parse_number(key: str, value: Any) -> float:
    if isinstance(value, bool):
        raise ConfigError(key, f"expected a number, got {value!r}")
    try:
        number = float(str(value).strip().replace(" ", "")) if isinstance(value, str) else float(value)
    except (ValueError, TypeError):
        raise ConfigError(key, f"expected a number, got {value!r}") from None
    if not math.isfinite(number):
        raise ConfigError(key, f"expected a finite number, got {value!r}")
    return number


def _parse_bool(key: str, value: Any) -> bool:
    text = str(value).strip().lower()
    if text in ("1", "1.0", "true", "yes", "y"):
        return True
    if text in ("0", "0.0", "false", "no", "n"):
        return False
    raise ConfigError(key, f"expected TRUE or FALSE, got {value!r}")


def _split_list(value: Any) -> list[Any]:
    if isinstance(value, str):
        return [part.strip() for part in value.replace(";", ",").split(",") if part.strip()]
    if isinstance(value, Iterable):
        return [v for v in value if not _is_blank(v)]
    return [value]


def _parse_text_list(key: str, value: Any) -> tuple[str, ...]:
    return tuple(str(v).strip() for v in _split_list(value))


def parse_segment_map(value: Any) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """A segment map from ``{name: "55 54"}``, ``[(name, codes), ...]``, a DataFrame or its text form.

    Codes are two digits, R score then FM score, separated by spaces or commas.
    """
    if isinstance(value, pd.DataFrame):
        if value.shape[1] < 2:
            raise ConfigError("segment_map", "expected a table with columns segment and cells")
        pairs = list(value.iloc[:, :2].itertuples(index=False, name=None))
    elif isinstance(value, Mapping):
        pairs = list(value.items())
    elif isinstance(value, str):
        pairs = []
        for part in value.split(";"):
            if part.strip():
                name, sep, codes = part.partition(":")
                if not sep:
                    raise ConfigError("segment_map", f"expected 'Segment: 55 54; ...', got {part.strip()!r}")
                pairs.append((name, codes))
    else:
        pairs = list(value)
    rows = []
    for pair in pairs:
        name, codes = pair[0], pair[1]      # rows of a table may carry a description and an action too
        if _is_blank(name) and _is_blank(codes):
            continue
        if isinstance(codes, str):
            code_list = codes.replace(",", " ").split()
        elif isinstance(codes, numbers.Real):   # a single cell typed in Excel arrives as a number
            code_list = [str(codes)]
        else:
            code_list = [str(c) for c in codes]
        rows.append((str(name).strip(), tuple(_normalise_code(c, str(name).strip()) for c in code_list)))
    return tuple(rows)


def parse_segment_notes(value: Any) -> tuple[tuple[str, str, str], ...] | None:
    """(segment, description, action) per row of a segment map given as a table with those columns: a
    DataFrame with columns named description and action (or a third and fourth column), or rows of
    three or four values. ``None`` when the map has no such columns (the text form, a mapping, an
    older two-column table), so the defaults apply."""
    if isinstance(value, pd.DataFrame):
        headers = [str(c).strip().lower() for c in value.columns]
        at = [headers.index(c) if c in headers else 2 + i for i, c in enumerate(SEGMENT_NOTE_COLUMNS)]
        if all(j >= value.shape[1] for j in at):
            return None
        rows = [[row[0], row[1], *(row[j] if j < len(row) else None for j in at)]
                for row in value.itertuples(index=False, name=None)]
    elif isinstance(value, (str, Mapping)) or not isinstance(value, Iterable):
        return None
    else:
        rows = [list(row) for row in value if not isinstance(row, str)]
        if not any(len(row) > 2 for row in rows):
            return None
    notes = []
    for row in rows:
        if _is_blank(row[0]):
            continue
        texts = [("" if j >= len(row) or _is_blank(row[j]) else str(row[j]).strip()) for j in (2, 3)]
        notes.append((str(row[0]).strip(), texts[0], texts[1]))
    return tuple(notes)


def _normalise_code(code: str, segment: str) -> str:
    text = str(code).strip()
    if text.endswith(".0"):
        text = text[:-2]
    if len(text) != 2 or not all(ch in "12345" for ch in text):
        raise ConfigError("segment_map", f"segment {segment!r}: cell {code!r} is not two scores 1-5 (R then FM)")
    return text


def _validate(cfg: Config) -> None:
    for key, allowed in CHOICES.items():
        if getattr(cfg, key) not in allowed:
            raise ConfigError(key, f"got {getattr(cfg, key)!r}; allowed: {', '.join(allowed)}")
    for key, (low, high) in INT_RANGES.items():
        value = getattr(cfg, key)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ConfigError(key, f"got {value!r}; allowed: a whole number from {low} to {high}")
    for key in THRESHOLDS:
        value = getattr(cfg, key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
            raise ConfigError(key, f"got {value!r}; allowed: a finite number >= 0")
    for key, (low, high) in DECIMAL_RANGES.items():
        value = getattr(cfg, key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
                low <= value <= (math.inf if high is None else high) and math.isfinite(value)):
            allowed = f"a number >= {low:g}" if high is None else f"a number from {low:g} to {high:g}"
            raise ConfigError(key, f"got {value!r}; allowed: {allowed}")
    for low, high in (("t_mid", "t_mid_high"), ("t_mid_high", "t_high")):
        if not getattr(cfg, low) <= getattr(cfg, high):
            raise ConfigError(_changed(cfg, low, high), f"thresholds must satisfy t_mid ({cfg.t_mid:g}) <= t_mid_high "
                                                        f"({cfg.t_mid_high:g}) <= t_high ({cfg.t_high:g})")
    if not cfg.f_mid <= cfg.f_high:
        raise ConfigError(_changed(cfg, "f_mid", "f_high"), f"f_mid ({cfg.f_mid:g}) must not exceed f_high "
                                                           f"({cfg.f_high:g})")
    _check_target_shares(cfg)
    if not isinstance(cfg.unit_name, str) or not cfg.unit_name.strip():
        raise ConfigError("unit_name", f"expected a name such as pods or units, got {cfg.unit_name!r}")
    for key in _CATEGORY_LISTS:
        value = getattr(cfg, key)
        if not isinstance(value, tuple) or not all(isinstance(v, str) and v for v in value):
            raise ConfigError(key, f"expected a list of names, got {value!r}")
    if not cfg.core_categories:
        raise ConfigError("core_categories", "at least one core category is needed")
    overlap = set(map(str.lower, cfg.core_categories)) & set(map(str.lower, cfg.entry_categories))
    if overlap:
        raise ConfigError("entry_categories", f"{sorted(overlap)} cannot be both core and entry categories")
    for key in _CUTS:
        cuts = getattr(cfg, key)
        if len(cuts) != 4 or not all(map(math.isfinite, cuts)) or any(b < a for a, b in itertools.pairwise(cuts)):
            raise ConfigError(key, f"expected 4 ascending numbers, got {format_value(tuple(cuts))!r}")
    if cfg.report_month not in (None, LAST_COMPLETE) and not isinstance(cfg.report_month, pd.Period):
        object.__setattr__(cfg, "report_month", parse_month(cfg.report_month))
    _check_segment_coverage(cfg.segment_map)
    if not all(isinstance(part, str) for note in cfg.segment_notes for part in note):
        raise ConfigError("segment_map", "a segment's description and action must be text")
    _check_column_map(cfg.column_map)


def _check_target_shares(cfg: Config) -> None:
    for key in TARGET_SHARES:
        value = getattr(cfg, key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
            raise ConfigError(key, f"got {value!r}; allowed: a share between 0 and 1 (0.03 = 3%), both excluded")
    total = sum(getattr(cfg, key) for key in TARGET_SHARES)
    if not total < 1:
        raise ConfigError(_changed(cfg, *TARGET_SHARES), f"the target shares of Diamond, Platinum, Gold and Silver "
                                                         f"sum to {total:g}: they must sum below 1 (Bronze gets the "
                                                         "rest)")


def _changed(cfg: Config, *keys: str) -> str:
    """Of settings that contradict each other, the one the user changed from its default (the
    first when both or neither were): the message then names the cell just edited."""
    default = {field.name: field.default for field in dataclasses.fields(Config)}
    return next((key for key in keys if getattr(cfg, key) != default[key]), keys[0])


def _check_column_map(column_map: tuple[tuple[str, str, str], ...]) -> None:
    """Each contract column of a table reads its own header: the header mapped to it, else its own name.

    Two columns reading one header (both mapped to it, or one mapped to another's own name) would
    silently read the same data twice.
    """
    for table, column, header in column_map:
        parse_map_key(map_key(table, column))
        if not isinstance(header, str) or not header.strip():
            raise ConfigError(map_key(table, column), f"expected a column header, got {header!r}")
    for table, columns in INPUT_COLUMNS.items():
        mapped = {column: header for name, column, header in column_map if name == table}
        readers: dict[str, list[str]] = {}
        for column in columns:
            readers.setdefault(header_key(mapped.get(column.name, column.name)), []).append(column.name)
        for names in readers.values():
            if len(names) > 1:
                key = [map_key(table, n) for n in names if n in mapped][-1]
                header = mapped.get(names[-1], names[-1])
                raise ConfigError(key, f"{' and '.join(f'{table}.{n}' for n in names)} would both read the "
                                       f"header {header!r}; give each column its own header (blank = the "
                                       "column's own name)")


def _check_segment_coverage(segment_map: tuple[tuple[str, tuple[str, ...]], ...]) -> None:
    seen: dict[str, list[str]] = {}
    for name, codes in segment_map:
        if not name:
            raise ConfigError("segment_map", f"a row with cells {' '.join(codes)} has no segment name")
        for code in codes:
            seen.setdefault(code, []).append(name)
    all_cells = [f"{r}{fm}" for r in range(5, 0, -1) for fm in range(5, 0, -1)]
    missing = [c for c in all_cells if c not in seen]
    twice = {c: names for c, names in seen.items() if len(names) > 1}
    problems = []
    if missing:
        problems.append(f"cells not covered: {' '.join(missing)}")
    if twice:
        problems.append("cells listed more than once: "
                        + ", ".join(f"{c} ({' and '.join(n)})" for c, n in sorted(twice.items())))
    if problems:
        raise ConfigError("segment_map", "every (R, FM) cell 11..55 must be listed exactly once; "
                          + "; ".join(problems))
