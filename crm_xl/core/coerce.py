"""Typing the loose values spreadsheets and CSV files give: ids, dates, numbers.

Each function returns the typed values plus a mask of the values that were present but could not
be read, so staging can report them. Work is done on the distinct values where that is cheaper
(ids and dates repeat a lot in transaction tables).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from pandas.api import types as ptypes

_EXCEL_EPOCH = pd.Timestamp("1899-12-30")
# Excel serials from 1900-01-01 to 9999-12-31; numbers outside are not dates.
_SERIAL_MIN, _SERIAL_MAX = 1, 2958465
# Excel keeps times to the millisecond: a serial is first rounded to it, so float noise just
# under midnight (45306.99999999999) is midnight, while 23:59:59.957 stays on its day.
_MS_PER_DAY = 86_400_000


def blank_mask(values: pd.Series) -> np.ndarray:
    """True where a cell is empty: missing, or text of only spaces."""
    missing = values.isna().to_numpy(dtype=bool)
    if ptypes.is_string_dtype(values.dtype) or values.dtype == object:
        text = values.astype("str")
        missing = missing | (text.str.strip() == "").fillna(False).to_numpy(dtype=bool)
    return missing


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
    text = np.full(len(numbers), None, dtype=object)
    text[whole] = pd.Series(numbers[whole].astype("int64")).astype("str").to_numpy(dtype=object)
    rest = ~whole & ~np.isnan(numbers)
    text[rest] = [repr(float(v)) for v in numbers[rest]]
    return pd.Series(text, dtype="str")


def _number_as_id_text(value: float) -> str | None:
    if value != value:  # NaN
        return None
    if float(value).is_integer():
        return str(int(value))
    return repr(float(value))


def to_dates(values: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """Dates (datetime64, day precision) from datetimes, ISO text, or Excel serial numbers.

    Returns the dates and a mask of non-blank values that are not dates. Times of day are dropped.
    """
    blank = blank_mask(values)
    if ptypes.is_datetime64_any_dtype(values.dtype):
        dates = values.dt.tz_localize(None) if getattr(values.dt, "tz", None) else values
        return dates.dt.floor("D").astype("datetime64[s]"), np.zeros(len(values), dtype=bool)
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    parsed = _parse_dates(pd.Series(uniques))
    if len(uniques):
        dates = pd.Series(parsed.to_numpy()[np.where(codes >= 0, codes, 0)], index=values.index)
        dates = dates.where(codes >= 0)
    else:
        dates = pd.Series(pd.NaT, index=values.index, dtype="datetime64[s]")
    dates = dates.astype("datetime64[s]")
    bad = dates.isna().to_numpy() & ~blank
    return dates, bad


def _parse_dates(uniques: pd.Series) -> pd.Series:
    out = pd.Series(pd.NaT, index=uniques.index, dtype="datetime64[s]")
    numbers = pd.to_numeric(uniques, errors="coerce") if uniques.dtype != object else pd.Series(
        [v if isinstance(v, (int, float, np.number)) and not isinstance(v, bool) else
         _text_number(v) for v in uniques.to_numpy(dtype=object)], dtype="float64")
    serial = numbers.between(_SERIAL_MIN, _SERIAL_MAX)
    if serial.any():
        out[serial] = _EXCEL_EPOCH + pd.to_timedelta(_serial_days(numbers[serial].to_numpy(dtype=float)), unit="D")
    rest = ~serial & numbers.isna() & uniques.notna()
    if rest.any():
        vals = uniques[rest]
        stamps = [v for v in vals.to_numpy(dtype=object)]
        parsed = pd.Series(
            [_to_timestamp(v) for v in stamps], index=vals.index, dtype="datetime64[s]"
        )
        out[rest] = parsed.dt.floor("D")
    return out


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
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        try:
            stamp = pd.to_datetime(text, format="ISO8601")
        except (ValueError, TypeError, OverflowError):
            return None
    else:
        try:
            stamp = pd.Timestamp(value)
        except (ValueError, TypeError, OverflowError):
            return None
    if stamp is pd.NaT or stamp.year < 1900 or stamp.year > 9999:
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
