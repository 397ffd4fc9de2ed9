"""Staging layer: the three raw tables typed, validated and keyed; unusable rows logged, never dropped silently.

Raw tables are never modified. The result holds integer keys (customer_key, product_key,
invoice_key) so the facts layer works on numbers only, and a data-quality log with one row per
rule that fired (see ``docs/business_logic.md``, "Staging").
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import numpy as np
import pandas as pd

from crm_xl.config import LAST_COMPLETE, Config
from crm_xl.core.coerce import (
    DATE_MAX,
    DATE_MIN,
    blank_mask,
    day_month_evidence,
    error_mask,
    id_codes,
    normalize_ids,
    out_of_range,
    to_dates,
    to_numbers,
)
from crm_xl.core.columns import to_contract
from crm_xl.core.exact import summable, to_micro
from crm_xl.core.quality import QualityLog
from crm_xl.errors import ConfigError, InputError

T = TypeVar("T")
R = TypeVar("R")
_NUMBER_LIKE = re.compile(r"[\d\s.,'+\-()€$£%]{1,24}")

OPT_IN_COLUMNS = ("opt_email", "opt_sms", "opt_phone")
TEXT_CUSTOMER_COLUMNS = ("customer_name", "customer_group", "city", "email", "mobile_number")

KIND_OTHER, KIND_CORE, KIND_ENTRY = 0, 1, 2
#: A line dated more than this after today is implausible (a mistyped year): the default report
#: month and data_through leave it out. A month covers pre-dated invoices and clocks a day off.
FUTURE_MARGIN = pd.Timedelta(days=31)
EMPTY = "the table is empty"    # the message for a transactions table without rows
# The columns whose Excel error values the core looks for: the ones it reads (every customer
# column is carried to customer_snapshot); in a key column an error leaves the row out.
_ERROR_COLUMNS = {"transactions": ("invoice_id", "invoice_date", "customer_id", "product_id", "quantity", "revenue"),
                  "products": ("product_id", "category", "unit_size")}
_CONTRACT = {**{table: set(columns) for table, columns in _ERROR_COLUMNS.items()},
             "customers": {"customer_id", *TEXT_CUSTOMER_COLUMNS, *OPT_IN_COLUMNS, "created_date"}}
_KEYS = {"transactions": set(_ERROR_COLUMNS["transactions"]), "customers": {"customer_id"}, "products": {"product_id"}}


@dataclasses.dataclass(frozen=True)
class Staged:
    """Typed inputs for one run.

    ``lines``: usable transaction lines up to the report month's end, columns
    customer_key, invoice_key, product_key, date, quantity, units, revenue, kind (0 other, 1 core, 2 entry);
    units (quantity x unit_size) and revenue are exact whole micro-units (:mod:`crm_xl.core.exact`).
    ``customers``: the analysed customers (anonymous ones removed), sorted by customer_id, row i
    having customer_key i, with the typed master columns (every extra column kept, whatever its name).
    ``entry_dates``: when each customer (by customer_key) enters the base, NaT = from the start.
    ``report_month``: the resolved report month.
    """

    lines: pd.DataFrame
    customers: pd.DataFrame
    entry_dates: np.ndarray
    products: pd.DataFrame
    categories: pd.DataFrame        # category, counts_as, products, lines (usable lines)
    data_through: pd.Timestamp      # the latest usable line's date, after the report month included
    date_order: str                 # how day-month text dates were read: dmy, mdy, or ymd (ISO only)
    report_month: pd.Period
    quality: QualityLog
    empty_months: tuple[pd.Period, ...]


def stage(transactions: pd.DataFrame, customers: pd.DataFrame, products: pd.DataFrame,
          config: Config, today: pd.Timestamp | None = None) -> Staged:
    """Type and validate the raw tables; resolve the report month.

    ``today`` (given by the adapter, which owns the clock) lets lines dated implausibly far in the
    future be left out of the default report month; ``None`` takes every line as plausible.
    """
    log = QualityLog()
    transactions = to_contract(transactions, "transactions", config)
    customers = to_contract(customers, "customers", config)
    products = to_contract(products, "products", config)
    config = dataclasses.replace(config, date_order=_date_order(config, transactions, customers))
    master, anonymous_ids = _stage_customers(customers, config, log)
    product_table = _stage_products(products, config, log)
    categories, lines = _stage_lines(transactions, master, anonymous_ids, product_table, config, log)
    if lines.empty:
        problems = log.summary("transactions")
        raise InputError("transactions", f"no usable transactions: every line has a problem ({problems})"
                         if len(transactions) else EMPTY)
    data_through = _data_through(lines, today, log)
    report_month = _report_month(config, data_through, log)
    _check_report_month(config, report_month, lines)
    entry_dates = _entry_dates(master, lines, config)
    lines = _cut_at_report_month(lines, report_month, log)
    history = pd.period_range(end=report_month, periods=config.history_months, freq="M")
    empty = _empty_months(lines, history, log)
    keep = ["customer_key", "invoice_key", "product_key", "date", "quantity", "units", "revenue", "kind"]
    return Staged(lines=lines[keep].reset_index(drop=True), customers=master, entry_dates=entry_dates,
                  products=product_table, categories=categories, data_through=data_through,
                  date_order=config.date_order,
                  report_month=report_month, quality=log, empty_months=empty)


def _date_order(config: Config, transactions: pd.DataFrame, customers: pd.DataFrame) -> str:
    """The order day-month text dates (05/01/2024) are read in: the setting, or with ``auto`` what
    the dates themselves say; stop and ask when they cannot tell (no day above 12) or disagree."""
    if config.date_order != "auto":
        return config.date_order
    evidence: dict[str, list[str]] = {"dmy": [], "mdy": [], "either": []}
    for table, name in ((transactions, "invoice_date"), (customers, "created_date")):
        column = _optional(table, name)
        if column is not None:
            for key, texts in day_month_evidence(column).items():
                evidence[key] += texts
    dmy, mdy, either = evidence["dmy"], evidence["mdy"], evidence["either"]
    if dmy and mdy:
        raise ConfigError("date_order", f"dates are written day-first ({', '.join(dmy[:3])}) and month-first "
                                        f"({', '.join(mdy[:3])}): fix the extract, or set date_order to DMY or MDY "
                                        "(the other dates are then not dates)")
    if dmy or mdy:
        return "dmy" if dmy else "mdy"
    if either:
        raise ConfigError("date_order", f"{len(either):,} distinct dates such as {', '.join(either[:3])} read both "
                                        "day-first and month-first, and none has a day above 12 to tell: set "
                                        f"date_order to DMY ({either[0]} = day first) or MDY (month first)")
    return "ymd"


def _column(table: pd.DataFrame, name: str) -> pd.Series:
    """A column by name, ignoring case and surrounding spaces in headers; reset to positions."""
    for column in table.columns:
        if str(column).strip().lower() == name:
            return table[column].reset_index(drop=True)
    raise KeyError(name)


def _texts(column: pd.Series | None, rows: int) -> pd.Series:
    """An optional text column as strings (blank kept as missing); all missing when absent."""
    if column is None:
        return pd.Series([pd.NA] * rows, dtype="str")
    return column.astype("str").str.strip().replace("", pd.NA).reset_index(drop=True)


def _optional(table: pd.DataFrame, name: str) -> pd.Series | None:
    try:
        return _column(table, name)
    except KeyError:
        return None


def _stage_customers(raw: pd.DataFrame, config: Config, log: QualityLog) -> tuple[pd.DataFrame, pd.Index]:
    original = raw
    raw, errors = _without_errors(raw, "customers", [str(c) for c in raw.columns], log)
    ids = normalize_ids(_column(raw, "customer_id"))
    rows = pd.DataFrame({"customer_id": ids})
    known = {*TEXT_CUSTOMER_COLUMNS, *OPT_IN_COLUMNS, "created_date"}
    for column in raw.columns:
        name = str(column).strip()
        if name.lower() in known:   # the contract's columns, whatever their case in the header
            name = name.lower()
        if name.lower() != "customer_id" and name not in rows:
            rows[name] = raw[column].reset_index(drop=True)
    rows = rows[_keyed(ids, original, "customers", "customer", log, errors.get("customer_id"))]
    rows = _type_customer_columns(rows, config, log)
    group = rows["customer_group"] if "customer_group" in rows else pd.Series(pd.NA, index=rows.index, dtype="str")
    anonymous_names = {g.strip().lower() for g in config.anonymous_groups}
    is_anon = group.astype("str").str.strip().str.lower().isin(anonymous_names).to_numpy()
    log.add("customers", "customer_group", "anonymous_customer", "info", _positions(rows.index, is_anon),
            f"excluded from all analysis (anonymous groups: {', '.join(config.anonymous_groups)})",
            values=rows["customer_id"])
    anonymous_ids = pd.Index(rows.loc[is_anon, "customer_id"])
    master = rows[~is_anon].sort_values("customer_id", kind="stable").reset_index(drop=True)
    return master, anonymous_ids


def _entry_dates(master: pd.DataFrame, lines: pd.DataFrame, config: Config) -> np.ndarray:
    """When each customer enters the base: created_date, or the first usable line if that is earlier.

    A customer without created_date is in the base from the start (blank = NaT), whatever lines
    come later, and so is everyone when ``use_created_date`` is off. Lines after the report month
    count too. Both choices keep a refresh from rewriting months already reported when newer
    data arrives.
    """
    blank = np.datetime64("NaT")
    if not config.use_created_date or "created_date" not in master:
        return np.full(len(master), blank, dtype="datetime64[s]")
    first_line = np.full(len(master), np.iinfo(np.int64).max, dtype="int64")
    np.minimum.at(first_line, lines["customer_key"].to_numpy(),
                  lines["date"].to_numpy().astype("datetime64[s]").astype("int64"))
    created = master["created_date"].to_numpy().astype("datetime64[s]")
    entry = np.minimum(first_line, created.astype("int64"))
    return np.where(np.isnat(created), blank, entry.astype("datetime64[s]"))


def _positions(index: pd.Index, mask: np.ndarray) -> np.ndarray:
    """A mask over the filtered rows, expressed as positions in the raw table."""
    return np.asarray(index)[mask]


def _type_customer_columns(rows: pd.DataFrame, config: Config, log: QualityLog) -> pd.DataFrame:
    out = rows.copy()
    for name in TEXT_CUSTOMER_COLUMNS:
        if name in out:
            out[name] = _as_text(out[name])
    if "created_date" in out:
        dates, bad = to_dates(out["created_date"], config.date_order)
        log.add("customers", "created_date", "bad_date", "warning", _positions(out.index, bad),
                "not a date: treated as blank", values=out["created_date"])
        far = out_of_range(dates)
        log.add("customers", "created_date", "date_out_of_range", "warning", _positions(out.index, far),
                f"outside {DATE_MIN.date()} .. {DATE_MAX.date()}: treated as blank", values=out["created_date"])
        out["created_date"] = dates.mask(far).to_numpy()
    for name in OPT_IN_COLUMNS:
        if name in out:
            numbers, bad = to_numbers(out[name])
            bad |= ~numbers.isin([0, 1]).to_numpy() & numbers.notna().to_numpy()
            log.add("customers", name, "bad_opt_in", "warning", _positions(out.index, bad),
                    "expected 0, 1 or blank: treated as blank", values=out[name])
            out[name] = pd.array(numbers.where(~bad).to_numpy(), dtype="Int8")
    return out


def _as_text(values: pd.Series) -> pd.Series:
    """Master text columns as text (one dtype, whichever text dtype they came in); numbers that Excel
    made floats lose the '.0'."""
    dtype = values.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        dtype = dtype.categories.dtype
    if isinstance(dtype, pd.StringDtype):
        return values.astype("str")
    return normalize_ids(values)


def _keyed(ids: pd.Series, raw: pd.DataFrame, table: str, entity: str, log: QualityLog,
           error: np.ndarray | None = None) -> np.ndarray:
    """The rows of a master table that keep their key: an id, and the first row of each id.

    ``error``: rows whose id cell held an Excel error (already logged, and blank in ``ids``).
    """
    missing = ids.isna().to_numpy()
    log.add(table, f"{entity}_id", f"missing_{entity}_id", "warning", missing & ~_none(error, len(ids)),
            f"row ignored: a {entity} needs an id", rejects=raw)
    dup = ids.duplicated(keep="first").to_numpy() & ~missing
    log.add(table, f"{entity}_id", f"duplicate_{entity}_id", "warning", dup,
            "later rows with the same id ignored; the first row is used", values=ids, rejects=raw)
    return ~missing & ~dup


def _none(mask: np.ndarray | None, n: int) -> np.ndarray:
    return np.zeros(n, dtype=bool) if mask is None else mask


def _without_errors(raw: pd.DataFrame, table: str, columns: list[str],
                    log: QualityLog) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """``raw`` with the Excel error values (#N/A, #VALUE!, ...) of ``columns`` made blank, and per
    column the rows that held one; each such column is an ``error_value`` row of the log.

    An error is a formula that failed in the source, never a value: three ``#N/A`` ids are not one
    customer. In a key column (a transaction's ids, date and numbers; a master's id) the row is
    left out and listed in rejected_lines; elsewhere the cell is blank. ``raw`` is not modified.
    """
    found: dict[str, np.ndarray] = {}
    clean = raw
    labels = [label for label in (_label(raw, name) for name in columns) if label is not None]
    # a pass over each text column (pyarrow releases the GIL): side by side, like the id hashing
    masks = _side_by_side(error_mask, [raw[label] for label in labels]) if labels else []
    for label, mask in zip(labels, masks, strict=True):
        values = raw[label]
        if not mask.any():
            continue
        column = str(label).strip().lower() if str(label).strip().lower() in _CONTRACT[table] else str(label)
        found[column] = mask
        key = column in _KEYS[table]
        effect = ("line left out" if table == "transactions" else "row ignored") if key else "treated as blank"
        log.add(table, column, "error_value", "warning", mask,
                f"{effect}: the cell holds an Excel error (a formula that failed in the source, e.g. a lookup "
                "that found nothing); fix the formula or the extract", values=values.reset_index(drop=True),
                rejects=raw if key else None)
        if clean is raw:
            clean = raw.copy(deep=False)
        clean[label] = values.mask(mask)
    return clean, found


def _label(table: pd.DataFrame, name: str) -> object | None:
    """The label of column ``name`` (compared as :func:`_column` compares headers), None if absent."""
    for column in table.columns:
        if str(column).strip().lower() == name.strip().lower():
            return column
    return None


def _stage_products(raw: pd.DataFrame, config: Config, log: QualityLog) -> pd.DataFrame:
    original = raw
    raw, errors = _without_errors(raw, "products", list(_ERROR_COLUMNS["products"]), log)
    ids = normalize_ids(_column(raw, "product_id"))
    keep = _keyed(ids, original, "products", "product", log, errors.get("product_id"))
    category = normalize_ids(_column(raw, "category"))   # like ids: the code 1 stored as 1.0 is "1"
    unit_size, bad_size = _numbers(raw, "products", "unit_size")
    bad_size |= ~(unit_size > 0).to_numpy()
    logged = {name: _none(errors.get(name), len(raw)) for name in ("unit_size", "category")}   # as error_value
    log.add("products", "unit_size", "bad_unit_size", "warning", bad_size & keep & ~logged["unit_size"],
            "unit_size must be a number > 0: lines of this product are left out", values=_column(raw, "unit_size"),
            rejects=original)
    lower = category.str.lower()
    core = lower.isin(_category_names(config.core_categories)).to_numpy()
    entry = lower.isin(_category_names(config.entry_categories)).to_numpy()
    known = core | entry | lower.isin(_category_names(config.other_categories)).to_numpy()
    log.add("products", "category", "unknown_category", "warning", ~known & keep & ~logged["category"],
            "category not in core, entry or other categories: treated as non-core", values=category)
    kind = np.where(core, KIND_CORE, np.where(entry, KIND_ENTRY, KIND_OTHER)).astype("int8")
    name = _optional(raw, "product_name")
    table = pd.DataFrame({"product_id": ids, "product_name": _texts(name, len(raw)), "category": category,
                          "unit_size": unit_size, "kind": kind, "known": known, "usable": ~bad_size})
    return table[keep].reset_index(drop=True)


def _category_names(names: tuple[str, ...]) -> list[str]:
    """A category list of the settings, normalized as the product master's codes are (``1.0`` is ``1``)."""
    return normalize_ids(pd.Series(list(names), dtype=object)).str.lower().dropna().tolist()


def _numbers(raw: pd.DataFrame, table: str, column: str) -> tuple[pd.Series, np.ndarray]:
    """A numeric column typed; :class:`InputError` when most of its values are not numbers.

    A few bad values are data-quality warnings, but a column that is mostly unreadable is a file
    read the wrong way (decimal commas, a shifted column): counting it as 0 would give wrong
    figures with no error.
    """
    values = _column(raw, column)
    numbers, bad = to_numbers(values)
    if bad.any():
        present = int((~blank_mask(values)).sum())
        if bad.sum() > present / 2:
            # Only values that look like numbers are quoted (109,65): an error never shows file contents.
            shown = [v for v in map(str, pd.unique(values[bad])[:1000]) if _NUMBER_LIKE.fullmatch(v)][:3]
            examples = ", ".join(map(repr, shown))
            examples = f" (e.g. {examples})" if examples else ""
            raise InputError(table, f"{int(bad.sum()):,} of {present:,} values are not numbers{examples}; "
                                    "expected numbers with a decimal point like 109.65: if the file uses decimal "
                                    "commas, set csv_decimal to , (comma); otherwise fix the column", column)
    return numbers, bad


def _side_by_side(work: Callable[[T], R], items: Sequence[T]) -> list[R]:
    """``[work(item) for item in items]``, in threads where there are any.

    Hashing the id columns dominates staging on big tables and pyarrow releases the GIL, so they are
    hashed side by side. Where no thread can start (Pyodide, under xlwings Lite: "can't start new
    thread"), one after the other: the same results, only slower.
    """
    with ThreadPoolExecutor(max_workers=len(items)) as pool:
        try:
            futures = [pool.submit(work, item) for item in items]
        except RuntimeError:        # raised by the thread start inside submit, never by ``work``
            return [work(item) for item in items]
        return [future.result() for future in futures]


def _stage_lines(raw: pd.DataFrame, master: pd.DataFrame, anonymous_ids: pd.Index, products: pd.DataFrame,
                 config: Config, log: QualityLog) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The category census and the usable lines (see :class:`Staged`)."""
    n = len(raw)
    original = raw
    raw, errors = _without_errors(raw, "transactions", list(_ERROR_COLUMNS["transactions"]), log)
    error = {name: _none(errors.get(name), n) for name in _ERROR_COLUMNS["transactions"]}
    raw_customer, raw_product = _column(raw, "customer_id"), _column(raw, "product_id")
    raw_invoice = _column(raw, "invoice_id")
    (cust_codes, cust_uniques), (prod_codes, prod_uniques), invoice_ids = _side_by_side(
        id_codes, (raw_customer, raw_product, raw_invoice))
    customer_key = _lookup(cust_codes, pd.Index(master["customer_id"]).get_indexer(cust_uniques))
    product_pos = _lookup(prod_codes, pd.Index(products["product_id"]).get_indexer(prod_uniques))
    dates, bad_date = to_dates(_column(raw, "invoice_date"), config.date_order)
    far = out_of_range(dates)
    dates = dates.mask(far)
    quantity, _ = _numbers(raw, "transactions", "quantity")
    revenue, bad_rev = _numbers(raw, "transactions", "revenue")

    no_cust = _lookup(cust_codes, cust_uniques.isna().to_numpy(), missing=True) & ~error["customer_id"]
    anonymous = _lookup(cust_codes, cust_uniques.isin(anonymous_ids).to_numpy(), missing=False)
    unknown_cust = (customer_key < 0) & ~no_cust & ~anonymous & ~error["customer_id"]
    no_prod = _lookup(prod_codes, prod_uniques.isna().to_numpy(), missing=True) & ~error["product_id"]
    unknown_prod = (product_pos < 0) & ~no_prod & ~error["product_id"]
    no_date = dates.isna().to_numpy()
    no_qty = quantity.isna().to_numpy() & ~error["quantity"]
    failed = np.logical_or.reduce(list(error.values()))
    unusable_prod = np.zeros(n, dtype=bool)
    found = product_pos >= 0
    unusable_prod[found] = ~products["usable"].to_numpy()[product_pos[found]]

    log.add("transactions", "customer_id", "missing_customer_id", "warning", no_cust,
            "line left out: no customer id", rejects=original)
    log.add("transactions", "customer_id", "anonymous_customer", "info", anonymous,
            "line left out: customer in an anonymous group", values=raw_customer)
    log.add("transactions", "customer_id", "unknown_customer", "warning", unknown_cust,
            "line left out: customer id not in the customer master", values=raw_customer, rejects=original)
    log.add("transactions", "product_id", "missing_product_id", "warning", no_prod,
            "line left out: no product id", rejects=original)
    log.add("transactions", "product_id", "unknown_product", "warning", unknown_prod,
            "line left out: product id not in the product master", values=raw_product, rejects=original)
    log.add("transactions", "product_id", "bad_unit_size", "warning", unusable_prod,
            "line left out: its product has no valid unit_size", values=raw_product, rejects=original)
    log.add("transactions", "invoice_date", "bad_date", "warning", bad_date,
            "line left out: invoice_date is not a date", values=_column(raw, "invoice_date"), rejects=original)
    log.add("transactions", "invoice_date", "date_out_of_range", "warning", far,
            f"line left out: invoice_date is outside {DATE_MIN.date()} .. {DATE_MAX.date()} (a mistyped year?)",
            values=_column(original, "invoice_date"), rejects=original)
    log.add("transactions", "invoice_date", "missing_date", "warning",
            no_date & ~bad_date & ~far & ~error["invoice_date"], "line left out: no invoice_date", rejects=original)
    log.add("transactions", "quantity", "bad_quantity", "warning", no_qty,
            "line left out: quantity is blank or not a number", values=_column(raw, "quantity"), rejects=original)
    log.add("transactions", "revenue", "bad_revenue", "warning", bad_rev,
            "revenue is not a number: counted as 0", values=_column(raw, "revenue"))

    usable = ~(no_cust | anonymous | unknown_cust | no_prod | unknown_prod | unusable_prod | no_date | no_qty | failed)
    kind = np.zeros(n, dtype="int8")
    unit_size = np.zeros(n)
    kind[found] = products["kind"].to_numpy()[product_pos[found]]
    unit_size[found] = products["unit_size"].to_numpy()[product_pos[found]]
    qty = quantity.to_numpy()
    log.add("transactions", "quantity", "return_line", "info", usable & (qty < 0),
            "return (quantity < 0): left out of every engagement figure; the original purchase stays",
            values=quantity)
    log.add("transactions", "quantity", "zero_quantity", "info", usable & (qty == 0),
            "quantity 0: left out of every engagement figure")
    if config.measure == "revenue":
        free = usable & (kind == KIND_CORE) & (qty > 0)
        # judged on the micro-units the facts add up, so the count is exactly the lines facts skip
        free[free] = ~(to_micro(np.nan_to_num(revenue.to_numpy()[free])) > 0)
        log.add("transactions", "revenue", "free_core_line", "info", free,
                "core line with revenue 0 or less under measure=revenue: adds nothing, so not a purchase",
                values=revenue)

    categories = _category_census(product_pos, usable, products, config, log)

    invoice_key = _invoice_keys(invoice_ids, customer_key, dates, log)
    rows = np.flatnonzero(usable)
    day = dates.to_numpy()[rows]
    return categories, pd.DataFrame({
        "row": rows + 1,
        "customer_key": customer_key[rows].astype("int64"),
        "invoice_key": invoice_key[rows],
        "product_key": product_pos[rows].astype("int64"),
        "date": day,
        "month": day.astype("datetime64[M]").astype("int64") + 1970 * 12,
        "quantity": qty[rows],
        "units": summable(to_micro(qty[rows], unit_size[rows]), by=customer_key[rows]),
        "revenue": summable(to_micro(np.nan_to_num(revenue.to_numpy()[rows])), by=customer_key[rows]),
        "kind": kind[rows],
    }, copy=False)


def _category_census(product_pos: np.ndarray, usable: np.ndarray, products: pd.DataFrame, config: Config,
                     log: QualityLog) -> pd.DataFrame:
    """Every category of the product master with what it counts as, its products and usable lines.

    An analyst maps an extract's categories once ("Coffee Capsules" is core): run_info lists them
    on every refresh, lines in no category list get a warning naming those categories, and a
    product master without a single core product stops the refresh with the list, rather than
    make every customer a prospect.
    """
    lines = np.bincount(product_pos[usable], minlength=len(products))
    counts_as = np.where(~products["known"].to_numpy(), "none (no category list)",
                         np.asarray(["other", "core", "entry"], dtype=object)[products["kind"].to_numpy()])
    census = pd.DataFrame({"category": products["category"].fillna("(blank)"), "counts_as": counts_as,
                           "products": 1, "lines": lines}).groupby("category", sort=False).agg(
        counts_as=("counts_as", "first"), products=("products", "sum"), lines=("lines", "sum"))
    census = census.sort_values(["lines", "products"], ascending=False, kind="stable").reset_index()
    listed = "; ".join(f"{r.category} ({r.lines:,} lines)" for r in census.itertuples())
    if not (census["counts_as"] == "core").any():
        raise ConfigError("core_categories", f"no product is in a core category ({', '.join(config.core_categories)}); "
                          f"categories found: {listed or 'none'}. Set core_categories to the categories of "
                          "recurring consumables (and entry_categories, other_categories for the rest)")
    unknown = census[(census["counts_as"] == "none (no category list)") & (census["lines"] > 0)]
    if len(unknown):
        in_unknown = usable.copy()
        in_unknown[usable] = ~products["known"].to_numpy()[product_pos[usable]]
        log.add("transactions", "product_id", "line_in_unknown_category", "warning", in_unknown,
                "line of a product whose category is in no category list, counted as non-core: "
                + "; ".join(f"{r.category} ({r.lines:,} lines)" for r in unknown.itertuples())
                + ". Add each to core_categories, entry_categories or other_categories")
    return census


def _data_through(lines: pd.DataFrame, today: pd.Timestamp | None, log: QualityLog) -> pd.Timestamp:
    """The latest plausible line's date: lines dated more than :data:`FUTURE_MARGIN` after ``today``
    are a ``future_date`` warning and do not count (a 2062 typed for 2026 would move the default
    report month 36 years on). When every line is that late, the clock is more likely wrong than
    the data: they all count, still with the warning."""
    dates = lines["date"]
    if today is None:
        return pd.Timestamp(dates.max())
    limit = pd.Timestamp(today).normalize() + FUTURE_MARGIN
    future = (dates > limit).to_numpy()
    if not future.any():
        return pd.Timestamp(dates.max())
    every = bool(future.all())
    positions = lines["row"].to_numpy()[future] - 1
    shown = pd.Series(dates.to_numpy()[future], index=positions).dt.strftime("%Y-%m-%d")
    log.add("transactions", "invoice_date", "future_date", "warning", positions,
            f"line dated after {limit.date()}, more than {FUTURE_MARGIN.days} days after today "
            f"({pd.Timestamp(today).date()}): a mistyped date? "
            + ("Every line is that late, so they are used as they are: check the computer's date"
               if every else "It is left out of the default report month and of data_through (set "
               "report_month to report it); correct the date in the extract"), values=shown)
    return pd.Timestamp(dates.max() if every else dates[~future].max())


def _check_report_month(config: Config, month: pd.Period, lines: pd.DataFrame) -> None:
    """A report month before the first usable line has nothing to report: every table would be empty."""
    first = pd.Timestamp(lines["date"].min())
    if month < first.to_period("M"):
        how = "" if config.report_month != LAST_COMPLETE else f" (last_complete is {month})"
        raise ConfigError("report_month", f"{month}{how} is before the first transaction, dated {first.date()}: "
                                          f"nothing to report; set report_month to {first.to_period('M')} or "
                                          "later, or blank for the latest month")


def _report_month(config: Config, data_through: pd.Timestamp, log: QualityLog) -> pd.Period:
    """The month reported: as set, the month of the latest line (blank), or the last month the data
    covers to its last day (``last_complete``). A report month that ends after the data stops is
    flagged (``partial_month``): its New, M1 and revenue cover only part of the month."""
    latest = data_through.to_period("M")
    if config.report_month == LAST_COMPLETE:
        month = (data_through + pd.Timedelta(days=1)).to_period("M") - 1
    else:
        month = config.report_month or latest
    if month == latest and data_through < month.to_timestamp(how="end").normalize():
        days = data_through.day
        log.add_note("transactions", "invoice_date", "partial_month", "warning", days, str(data_through.date()),
                     f"the report month {month} has data only through {data_through.date()} ({days} of "
                     f"{month.days_in_month} days): its New, M1 and revenue figures cover part of the month. "
                     f"Set report_month to {month - 1} (or last_complete) to report the last complete month")
    return month


def _ordinal(month: pd.Period) -> int:
    return month.year * 12 + month.month - 1


def _period(ordinal: int) -> pd.Period:
    return pd.Period(year=ordinal // 12, month=ordinal % 12 + 1, freq="M")


def _lookup(codes: np.ndarray, per_unique: np.ndarray, missing: object = -1) -> np.ndarray:
    """Spread a value computed per distinct id back to the rows (``missing`` where the id is blank)."""
    if len(per_unique) == 0:
        return np.full(len(codes), missing)
    return np.where(codes >= 0, per_unique[np.maximum(codes, 0)], missing)


def _invoice_keys(invoice_ids: tuple[np.ndarray, pd.Series], customer_key: np.ndarray,
                  dates: pd.Series, log: QualityLog) -> np.ndarray:
    """Integer invoice keys; a line without invoice id is its customer's invoice of that day.

    "Without" is decided on the normalized ids, whatever the column's dtype: blank text in a
    categorical or string column is as missing as an empty cell.
    """
    codes, uniques = invoice_ids
    missing = _lookup(codes, uniques.isna().to_numpy(), missing=True).astype(bool)
    log.add("transactions", "invoice_id", "missing_invoice_id", "info", missing,
            "no invoice id: the customer's lines of that day count as one invoice")
    codes = _lookup(codes, pd.factorize(uniques, use_na_sentinel=True)[0]).astype("int64")
    if missing.any():
        day = dates.to_numpy().astype("datetime64[D]").astype("int64")
        extra, _ = pd.factorize(customer_key[missing] * 10_000_000 + day[missing])
        codes[missing] = codes.max(initial=-1) + 1 + extra
    return codes.astype("int64")


def _cut_at_report_month(lines: pd.DataFrame, report_month: pd.Period, log: QualityLog) -> pd.DataFrame:
    after = (lines["month"] > _ordinal(report_month)).to_numpy()
    log.add("transactions", "invoice_date", "after_report_month", "info", lines["row"].to_numpy()[after] - 1,
            f"line dated after the report month {report_month}: not counted in any snapshot")
    return lines[~after]


def _empty_months(lines: pd.DataFrame, history: pd.PeriodIndex, log: QualityLog) -> tuple[pd.Period, ...]:
    """Months of the history range without a single usable line: usually a missing extract."""
    if lines.empty:
        return ()
    present = {_period(int(m)) for m in np.unique(lines["month"].to_numpy())}
    first = _period(int(lines["month"].min()))
    empty = tuple(m for m in history if m not in present and m >= first)
    if empty:
        log.add_note("transactions", "invoice_date", "empty_month", "warning", len(empty),
                     ", ".join(str(m) for m in empty[:12]),
                     "no transactions at all in these history months: check the extract is complete")
    return empty
