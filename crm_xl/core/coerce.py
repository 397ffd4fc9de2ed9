"""Typing the loose values spreadsheets and CSV files give: ids, dates, numbers.

Each function returns the typed values plus a mask of the values that were present but could not
be read, so staging can report them. Work is done on the distinct values where that is cheaper
(ids and dates repeat a lot in transaction tables).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pandas.api import types as ptypes

_EXCEL_EPOCH = pd.Timestamp("1899-12-30")
# Excel serials from 1900-01-01 to 9999-12-31; numbers outside are not dates.
_SERIAL_MIN, _SERIAL_MAX = 1, 2958465
# Excel keeps times to the millisecond: a serial is first rounded to it, so float noise just
# under midnight (45306.99999999999) is midnight, while 23:59:59.957 stays on its day.
_MS_PER_DAY = 86_400_000
#: The dates a line may carry: from 1900 (Excel's first day) to the last day pandas holds in
#: nanoseconds, which Power BI, Parquet readers and most pandas code still assume. A date outside
#: is read (so it is reported as written) but is not a date the analysis can use.
DATE_MIN, DATE_MAX = pd.Timestamp("1900-01-01"), pd.Timestamp("2262-04-11")
# Years read at all: any four-digit year, so 1850-02-10 is a date out of range, not "not a date".
_YEAR_MIN, _YEAR_MAX = 1000, 9999

#: Excel's error values (a formula that failed: a VLOOKUP that found nothing is #N/A), as a cell
#: shows them, and as CSV exports of Excel, LibreOffice and Google Sheets write them. Never data.
EXCEL_ERRORS = frozenset({
    "#N/A", "#VALUE!", "#REF!", "#DIV/0!", "#NUM!", "#NAME?", "#NULL!",                    # every Excel
    "#SPILL!", "#CALC!", "#GETTING_DATA", "#BLOCKED!", "#CONNECT!", "#FIELD!", "#UNKNOWN!",  # Excel 365
    "#BUSY!", "#PYTHON!", "#EXTERNAL!",
    "#ERROR!", "#ERROR",                              # Google Sheets; an error cell without its text
    *(f"Err:{code}" for code in range(501, 540)),     # LibreOffice's own error codes
})
_ERROR_SET = pa.array(sorted(EXCEL_ERRORS), type=pa.large_string())


def blank_mask(values: pd.Series) -> np.ndarray:
    """True where a cell is empty: missing, or text of only spaces (whatever dtype holds the text)."""
    missing = values.isna().to_numpy(dtype=bool)
    dtype = values.dtype
    if not (ptypes.is_numeric_dtype(dtype) or ptypes.is_bool_dtype(dtype) or ptypes.is_datetime64_any_dtype(dtype)):
        text = values.astype("str")
        missing = missing | (text.str.strip() == "").fillna(False).to_numpy(dtype=bool)
    return missing


def error_mask(values: pd.Series) -> np.ndarray:
    """True where a cell holds an Excel error value (:data:`EXCEL_ERRORS`).

    Only text can hold one: a column of numbers or dates answers at once. Text columns (CSV files)
    are compared ignoring surrounding spaces; cells of a workbook hold the error exactly as Excel
    writes it. Vectorised: one hashing pass over a million-row column.
    """
    dtype = values.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        in_categories = error_mask(pd.Series(dtype.categories))
        codes = values.cat.codes.to_numpy()
        return (codes >= 0) & in_categories[np.maximum(codes, 0)] if len(in_categories) else codes < -1
    if ptypes.is_numeric_dtype(dtype) or ptypes.is_bool_dtype(dtype) or ptypes.is_datetime64_any_dtype(dtype):
        return np.zeros(len(values), dtype=bool)
    try:    # text only (a CSV file, a str column): compared in arrow, in the column's own string type
        text = pa.array(values, from_pandas=True, type=pa.large_string())   # pandas' own storage: no copy
    except (pa.ArrowInvalid, pa.ArrowTypeError):   # numbers among the text (a sheet): as Excel wrote it
        return values.isin(EXCEL_ERRORS).to_numpy(dtype=bool)
    # every error value holds "#" (Excel, Google Sheets) or "Err:" (LibreOffice): only those few cells
    # are trimmed and compared (trimming the whole column would copy all its text for nothing)
    marked = pc.or_(pc.match_substring(text, "#"), pc.match_substring(text, "Err:"))
    rows = np.flatnonzero(pc.fill_null(marked, False).to_numpy(zero_copy_only=False))
    found = np.zeros(len(values), dtype=bool)
    if len(rows):
        found[rows] = _in_errors(pc.utf8_trim_whitespace(pc.take(text, pa.array(rows)))).to_numpy(zero_copy_only=False)
    return found


def _in_errors(text: pa.Array) -> pa.Array:
    """True where a cell is exactly an Excel error value (missing: False)."""
    return pc.fill_null(pc.is_in(text, value_set=_ERROR_SET), False)


def out_of_range(dates: pd.Series) -> np.ndarray:
    """True where a date was read but lies outside :data:`DATE_MIN` .. :data:`DATE_MAX`."""
    day = dates.to_numpy().astype("datetime64[D]")
    low, high = np.datetime64(DATE_MIN.date(), "D"), np.datetime64(DATE_MAX.date(), "D")
    return ~np.isnat(day) & ((day < low) | (day > high))


def id_codes(values: pd.Series) -> tuple[np.ndarray, pd.Series]:
    """Distinct ids and, per value, its position among them (-1 for blank).

    The distinct ids are normalized as in :func:`normalize_ids` (two raw spellings of one id may
    both appear); working on them is much cheaper than on every row of a transaction table.
    """
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    return codes, _ids_as_text(pd.Series(uniques))


def normalize_ids(values: pd.Series) -> pd.Series:
    """Ids as text, compared the way a user means them.

    ``00123`` stays ``00123``; ``123``, ``123.0`` and the number 123 (Excel stores numeric-looking
    ids as floats) are all ``123``; surrounding spaces are dropped; blanks become missing.
    """
    codes, uniques = id_codes(values)
    picked = np.full(len(codes), None, dtype=object)
    if len(uniques):
        distinct = uniques.to_numpy(dtype=object, na_value=None)
        picked[codes >= 0] = distinct[codes[codes >= 0]]
    return pd.Series(picked, index=values.index, dtype="str")


def _ids_as_text(uniques: pd.Series) -> pd.Series:
    if ptypes.is_bool_dtype(uniques.dtype):
        return uniques.astype("str")
    if ptypes.is_integer_dtype(uniques.dtype):   # int64 ids (loyalty cards) have 19 digits: never via float
        return uniques.astype("str")
    if ptypes.is_numeric_dtype(uniques.dtype):
        return _numbers_as_id_text(uniques.to_numpy(dtype=float))
    text = pd.Series(
        [_number_as_id_text(v) if isinstance(v, (int, float, np.number)) and not isinstance(v, bool)
         else v for v in uniques.to_numpy(dtype=object)],
        dtype="str",
    ) if uniques.dtype == object else uniques.astype("str")
    text = text.str.strip()
    text = text.str.replace(r"^(\d+)\.0*$", r"\1", regex=True)
    return text.where(text != "", pd.NA)


def _numbers_as_id_text(numbers: np.ndarray) -> pd.Series:
    """Whole numbers without the '.0' Excel adds; other numbers as Python writes them."""
    whole = np.isfinite(numbers) & (numbers == np.floor(numbers))
    fits = whole & (np.abs(numbers) < 2.0**63)
    text = np.full(len(numbers), None, dtype=object)
    text[fits] = pd.Series(numbers[fits].astype("int64")).astype("str").to_numpy(dtype=object)
    text[whole & ~fits] = [str(int(v)) for v in numbers[whole & ~fits]]
    rest = ~whole & ~np.isnan(numbers)
    text[rest] = [repr(float(v)) for v in numbers[rest]]
    return pd.Series(text, dtype="str")


def _number_as_id_text(value: float) -> str | None:
    if value != value:  # NaN
        return None
    if float(value).is_integer():
        return str(int(value))
    return repr(float(value))


def to_dates(values: pd.Series, order: str = "ymd") -> tuple[pd.Series, np.ndarray]:
    """Dates (datetime64, day precision) from datetimes, ISO text, or Excel serial numbers; with
    ``order`` dmy or mdy also text such as ``15/01/2024``, ``15.01.2024`` or ``01-15-24`` read day-first
    or month-first (ymd: only ISO text, year first).

    Returns the dates and a mask of non-blank values that are not dates. Times of day are dropped.
    """
    blank = blank_mask(values)
    if ptypes.is_datetime64_any_dtype(values.dtype):
        dates = values.dt.tz_localize(None) if getattr(values.dt, "tz", None) else values
        return dates.dt.floor("D").astype("datetime64[s]"), np.zeros(len(values), dtype=bool)
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    parsed = _parse_dates(pd.Series(uniques), order)
    if len(uniques):
        dates = pd.Series(parsed.to_numpy()[np.where(codes >= 0, codes, 0)], index=values.index)
        dates = dates.where(codes >= 0)
    else:
        dates = pd.Series(pd.NaT, index=values.index, dtype="datetime64[s]")
    dates = dates.astype("datetime64[s]")
    bad = dates.isna().to_numpy() & ~blank
    return dates, bad


def _parse_dates(uniques: pd.Series, order: str = "ymd") -> pd.Series:
    """Distinct values as dates: Excel serials, ISO text (any dtype holding text), date-time objects."""
    out = pd.Series(pd.NaT, index=uniques.index, dtype="datetime64[s]")
    if ptypes.is_numeric_dtype(uniques.dtype) and not ptypes.is_bool_dtype(uniques.dtype):
        numbers = pd.Series(uniques.to_numpy(dtype="float64", na_value=np.nan), index=uniques.index)
        values = np.full(len(uniques), None, dtype=object)
    else:   # object, str, string[pyarrow], categorical …: plain Python values, one rule for all
        values = uniques.to_numpy(dtype=object, na_value=None)
        numbers = pd.Series([v if isinstance(v, (int, float, np.number)) and not isinstance(v, bool) else
                             _text_number(v) for v in values], index=uniques.index, dtype="float64")
    serial = numbers.between(_SERIAL_MIN, _SERIAL_MAX)
    if serial.any():
        out[serial] = _EXCEL_EPOCH + pd.to_timedelta(_serial_days(numbers[serial].to_numpy(dtype=float)), unit="D")
    is_text = np.array([isinstance(v, str) for v in values], dtype=bool)
    text = ~serial.to_numpy() & numbers.isna().to_numpy() & is_text
    if text.any():
        out[text] = _text_dates(pd.Series(values[text], dtype="str"), order).to_numpy()
    other = ~serial.to_numpy() & numbers.isna().to_numpy() & ~is_text & pd.notna(values)
    if other.any():
        stamps = pd.Series([_to_timestamp(v) for v in values[other]], dtype="datetime64[s]")
        out[other] = stamps.dt.floor("D").to_numpy()
    return out


# A time of day followed by a UTC offset: the offset is dropped, so the date is the one written.
_OFFSET = r"^(.*\d{1,2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?)\s*(?:Z|[+-]\d{2}(?::?\d{2})?)$"


def _text_dates(texts: pd.Series, order: str) -> pd.Series:
    """ISO text, and day-month text in ``order`` (dmy, mdy); the date as written, time dropped."""
    dates = local_datetimes(texts).dt.floor("D").astype("datetime64[s]")
    if order in ("dmy", "mdy"):
        parts = texts.str.extract(_DAY_MONTH)
        found = parts[0].notna().to_numpy()
        if found.any():
            first, second, year = (parts.loc[found, i].astype("int64") for i in range(3))
            day, month = (first, second) if order == "dmy" else (second, first)
            year = year.where(year >= 100, year + 2000)       # 15/01/24 is 2024
            stamps = pd.to_datetime(pd.DataFrame({"year": year, "month": month, "day": day}), errors="coerce")
            dates[found] = stamps.where(_readable_year(stamps)).astype("datetime64[s]").to_numpy()
    return dates


# Day and month in either order, then the year (2 or 4 digits): 15/01/2024, 15.01.2024, 01-15-24 10:30
_DAY_MONTH = r"^\s*(\d{1,2})[./-](\d{1,2})[./-](\d{4}|\d{2})(?:[ T]\d{1,2}:\d{2}(?::\d{2})?)?\s*$"


def day_month_evidence(values: pd.Series) -> dict[str, list[str]]:
    """What day-month dates such as ``05/01/2024`` in ``values`` say about their order.

    ``dmy``: distinct texts whose first number is > 12 (so it is the day); ``mdy``: texts whose
    second is; ``either``: texts that read both ways. Empty lists when the column has no such text.
    """
    if ptypes.is_datetime64_any_dtype(values.dtype) or ptypes.is_numeric_dtype(values.dtype):
        return {"dmy": [], "mdy": [], "either": []}      # date cells and serials: no text to read
    texts = pd.Series([v for v in pd.unique(values.dropna()) if isinstance(v, str)], dtype="str")
    parts = texts.str.extract(_DAY_MONTH)
    found = parts[0].notna()
    first, second, texts = parts.loc[found, 0].astype("int64"), parts.loc[found, 1].astype("int64"), texts[found]
    return {"dmy": texts[(first > 12) & (second <= 12)].tolist(), "mdy": texts[(second > 12) & (first <= 12)].tolist(),
            "either": texts[(first <= 12) & (second <= 12)].tolist()}


def local_datetimes(texts: pd.Series) -> pd.Series:
    """ISO 8601 text as naive date-times, the wall time as written: ``2024-02-01T00:30+01:00`` is
    1 February 00:30 (the offset is dropped, never converted to UTC).

    Parsed once per distinct text in one vectorised call; text that is not ISO 8601, or a year
    of fewer than four digits, is NaT. Years outside 1900-2262 are read: see :func:`out_of_range`.
    """
    codes, uniques = pd.factorize(texts, use_na_sentinel=True)
    local = pd.Series(uniques, dtype="str").str.strip().str.replace(_OFFSET, r"\1", regex=True)
    stamps = pd.to_datetime(local, format="ISO8601", errors="coerce")
    stamps = stamps.where(_readable_year(stamps)).astype("datetime64[s]")
    picked = stamps.to_numpy()[np.maximum(codes, 0)] if len(uniques) else np.zeros(len(codes), "datetime64[s]")
    return pd.Series(np.where(codes >= 0, picked, np.datetime64("NaT")), index=texts.index, dtype="datetime64[s]")


def _readable_year(stamps: pd.Series) -> pd.Series:
    return (stamps.dt.year >= _YEAR_MIN) & (stamps.dt.year <= _YEAR_MAX)


def _serial_days(serials: np.ndarray) -> np.ndarray:
    """The day of each Excel serial: whole days once the serial is rounded to the millisecond."""
    milliseconds = np.rint(serials * _MS_PER_DAY)   # below 2**53 for every serial up to 9999-12-31
    return np.floor_divide(milliseconds, _MS_PER_DAY)


def _text_number(value: object) -> float:
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return np.nan
    return np.nan


def _to_timestamp(value: object) -> pd.Timestamp | None:
    """A date-time object (datetime, date, Timestamp) as a naive timestamp in its own wall time."""
    try:
        stamp = pd.Timestamp(value)
    except (ValueError, TypeError, OverflowError):
        return None
    if stamp is pd.NaT or not _YEAR_MIN <= stamp.year <= _YEAR_MAX:
        return None
    return stamp.tz_localize(None) if stamp.tzinfo else stamp


def to_numbers(values: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """Finite floats from numbers or numeric text ("1 234.5" reads as 1234.5); mask of unreadable values.

    Infinities (the text ``inf``, ``-inf``, ``infinity``, or such a float) and the text ``nan`` are
    not numbers a user typed: they are unreadable, as blank in the result.
    """
    if ptypes.is_bool_dtype(values.dtype):
        return values.astype("float64"), np.zeros(len(values), dtype=bool)
    if ptypes.is_numeric_dtype(values.dtype):
        return _finite(values.astype("float64"), np.zeros(len(values), dtype=bool))
    numbers, bad = _read_numbers(values)
    return _finite(numbers, bad)


def _finite(numbers: pd.Series, bad: np.ndarray) -> tuple[pd.Series, np.ndarray]:
    infinite = np.isinf(numbers.to_numpy())
    if not infinite.any():
        return numbers, bad
    return numbers.mask(infinite), bad | infinite


def _read_numbers(values: pd.Series) -> tuple[pd.Series, np.ndarray]:
    blank = blank_mask(values)
    if values.dtype == object:
        codes, uniques = pd.factorize(values, use_na_sentinel=True)
        parsed = pd.Series([_loose_number(v) for v in uniques.to_numpy(dtype=object)], dtype="float64")
        arr = parsed.to_numpy()[np.where(codes >= 0, codes, 0)] if len(uniques) else np.full(len(codes), np.nan)
        arr = np.where(codes >= 0, arr, np.nan)
        numbers = pd.Series(arr, index=values.index, dtype="float64")
    else:
        text = values.astype("str").str.replace(r"[\s\u00a0]", "", regex=True)
        numbers = pd.to_numeric(text, errors="coerce").astype("float64")
    bad = numbers.isna().to_numpy() & ~blank
    return numbers, bad


def _loose_number(value: object) -> float:
    if value is None or isinstance(value, bool):
        return float(value) if isinstance(value, bool) else np.nan
    if isinstance(value, (int, float, np.number)):
        return float(value)
    text = str(value).replace(" ", "").replace("\u00a0", "")
    try:
        return float(text)
    except ValueError:
        return np.nan
