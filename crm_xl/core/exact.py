"""Exact arithmetic for the measures and the threshold rules.

Quantities, unit sizes and revenues are decimals a user typed (0.1, 19.99); sums of their floats
are not exact (0.1 + 0.2 != 0.3), so a float sum can land either side of a threshold depending on
the order of the lines. Here every line measure becomes a whole number of micro-units
(:data:`SCALE` = 10**6 per unit), sums are integer sums (exact, in any order), and thresholds are
compared without dividing: AMC >= T is M6 >= ceil(6 * T * SCALE), with T read exactly from its
decimal form. Floats are made from the integers only to be shown.

Integers are int64 while every customer's sum of absolute values stays below :data:`INT64_SAFE`
(about 4.6e12 units; no window sums more than one customer's lines); beyond it they are Python
integers in object arrays: just as exact, much slower.
"""

from __future__ import annotations

import decimal
import itertools
import math
from fractions import Fraction

import numpy as np

SCALE = 10**6
DECIMALS = 6
# Sums of absolute values below this fit int64 with room to spare; thresholds at or above it
# are above every sum.
INT64_SAFE = 2**62
# Below this many micro-units a float product of a few decimals is within 2**-11 of the exact
# decimal product (a relative error of at most 4 * 2**-53), so rounding the float is exact unless
# it sits that close to a half.
_FLOAT_EXACT = 2.0**40
_HALF_MARGIN = 2.0**-10
_WHOLE_LIMIT = 2.0**43      # whole units whose micro-units still fit int64
_DIRECT_COUNTS = 1 << 16
_CONTEXT = decimal.Context(prec=80, rounding=decimal.ROUND_HALF_EVEN)


def decimal_of(value: float) -> Fraction:
    """The decimal a float was typed as: its shortest round-trip form, exactly (0.1 is 1/10).

    Any decimal of at most 15 significant digits (what an Excel cell holds) comes back unchanged.
    """
    return Fraction(decimal.Decimal(repr(float(value))))


def to_micro(values: np.ndarray, factor: np.ndarray | None = None) -> np.ndarray:
    """``values`` (times ``factor``) in micro-units, rounded half to even, exactly.

    Each float is read as the decimal it was typed as (:func:`decimal_of`), so 0.1 x 3 is exactly
    300000. Returns int64, or Python integers (object) when a value is beyond int64; see
    :func:`summable` before adding them up. Values must be finite.
    """
    values = np.asarray(values, dtype="float64")
    whole = values if factor is None else values * np.asarray(factor, dtype="float64")
    scaled = whole * SCALE
    rounded = np.rint(scaled)
    unsure = np.abs(scaled - rounded) > 0.5 - _HALF_MARGIN
    big = ~(np.abs(scaled) < _FLOAT_EXACT)
    if big.any():
        unsure |= big
        rounded[big] = 0
    micro = rounded.astype("int64")
    if big.any():
        _whole_numbers_exactly(micro, unsure, values, factor, np.flatnonzero(big))
    if not unsure.any():
        return micro
    exact = micro.astype(object)
    for i in np.flatnonzero(unsure):
        exact[i] = _micro_exactly(values[i], None if factor is None else factor[i])
    return exact if any(abs(v) >= INT64_SAFE for v in exact[unsure]) else exact.astype("int64")


def _whole_numbers_exactly(micro: np.ndarray, unsure: np.ndarray, values: np.ndarray,
                           factor: np.ndarray | None, rows: np.ndarray) -> None:
    """Large values the float product cannot be trusted for, done exactly without decimals where
    they are whole numbers (times whole numbers) or, alone, whole cents (1234567.89).

    A float that is the nearest to c / 10**k for a whole c below 10**15 was typed as c / 10**k:
    two decimals of at most 15 digits never share a float.
    """
    value = values[rows]
    if factor is not None:
        size = factor[rows]
        whole = (value == np.floor(value)) & (size == np.floor(size)) & (np.abs(value * size) < _WHOLE_LIMIT)
        micro[rows[whole]] = (value[whole] * size[whole]).astype("int64") * SCALE
        unsure[rows[whole]] = False
        return
    for places in (0, 2):
        scaled = np.rint(value * 10**places)
        typed = (scaled / 10**places == value) & (np.abs(scaled) < 1e15) & unsure[rows] \
            & (np.abs(scaled) * 10 ** (DECIMALS - places) < INT64_SAFE)
        micro[rows[typed]] = scaled[typed].astype("int64") * 10 ** (DECIMALS - places)
        unsure[rows[typed]] = False


def _micro_exactly(value: float, factor: float | None) -> int:
    product = _CONTEXT.multiply(decimal.Decimal(repr(float(value))), SCALE)
    if factor is not None:
        product = _CONTEXT.multiply(product, decimal.Decimal(repr(float(factor))))
    return int(product.to_integral_value(rounding=decimal.ROUND_HALF_EVEN, context=_CONTEXT))


def summable(micro: np.ndarray, by: np.ndarray | None = None) -> np.ndarray:
    """int64 if no sum of these values within one group (``by``, e.g. the customer; default all)
    can overflow int64, else Python integers (object)."""
    if len(micro) == 0:
        return micro.astype("int64", copy=False)
    magnitude = np.abs(micro.astype("float64"))
    # float totals are within a relative 1e-9 of the true ones: far inside INT64_SAFE's factor of 2
    largest = magnitude.sum() if by is None else np.bincount(by, weights=magnitude).max()
    return micro.astype("int64" if largest < INT64_SAFE else object, copy=False)


def zeros(shape: int | tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """Zeros to sum values of ``dtype`` into: floats and int64 as numpy zeros, object as Python 0."""
    return np.full(shape, 0, dtype=dtype) if np.dtype(dtype).kind == "O" else np.zeros(shape, dtype=dtype)


def to_float(micro: np.ndarray) -> np.ndarray:
    """Micro-units as float units: the nearest float to each value (below 2**53 micro-units)."""
    if micro.dtype == object:
        return np.fromiter((v / SCALE for v in micro), dtype="float64", count=len(micro))
    shown = micro.astype("float64")
    np.divide(shown, SCALE, out=shown)
    return shown


def mean_at_least(sums: np.ndarray, count: int | np.ndarray, threshold: float) -> np.ndarray:
    """``sums / count >= threshold`` exactly, sums in micro-units, count > 0 whole numbers.

    Written without dividing: sums >= ceil(threshold * count * SCALE), a whole number per count.
    """
    per_unit = decimal_of(threshold) * SCALE
    if np.ndim(count) == 0:
        return sums >= _bound(math.ceil(per_unit * int(count)), sums)
    counts = np.asarray(count, dtype="int64")
    values, slots, positions = _distinct(counts)
    table = zeros(int(positions.max(initial=-1)) + 1, np.dtype(object) if sums.dtype == object else np.dtype("int64"))
    for position, value in zip(positions, values, strict=True):
        table[position] = _bound(math.ceil(per_unit * int(value)), sums)
    return np.asarray(sums >= table[slots], dtype=bool)


def _distinct(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(distinct counts, each row's slot in a table of them, each distinct count's slot)."""
    if counts.max(initial=0) < _DIRECT_COUNTS:   # order counts are small: the count is its own slot
        values = np.flatnonzero(np.bincount(counts))
        return values, counts, values
    values, slots = np.unique(counts, return_inverse=True)
    return values, slots, np.arange(len(values))


def count_at_least(counts: np.ndarray, threshold: float) -> np.ndarray:
    """Whole counts >= a decimal threshold, exactly (3 >= 2.5, 2 < 2.000001)."""
    return counts >= math.ceil(decimal_of(threshold))


def _bound(need: int, sums: np.ndarray) -> int:
    # int64 sums never reach INT64_SAFE, so any larger need can be clipped to it
    return need if sums.dtype == object else min(need, INT64_SAFE)


def shown_exactly(value: Fraction, thresholds: tuple[Fraction, ...], least: int = 2) -> str:
    """``value`` with ``least`` decimals (trailing zeros dropped), more when needed so that the
    shown number is on the same side of every threshold as the value itself, or equal to it when
    the value is.

    It always ends: a threshold the value differs from is cleared once half a unit of the last
    decimal is below the gap; one it equals is a finite decimal, reached once all its decimals are
    shown.
    """
    for places in itertools.count(least):
        rounded = round(value, places)
        if all(_sign(rounded - t) == _sign(value - t) for t in thresholds):
            return plain(rounded, places)
    raise AssertionError("unreachable")   # itertools.count never ends


def plain(value: Fraction | float, places: int | None = None) -> str:
    """A number in plain decimal notation, no exponent, no trailing zeros: 1e+16 -> 10000000000000000.

    A float is written as the decimal it was typed as; a fraction with ``places`` decimals
    (it must be a multiple of 10**-places).
    """
    if isinstance(value, float):
        text = format(decimal.Decimal(repr(float(value))), "f")
    else:
        scaled = value * 10**(places or 0)
        if scaled.denominator != 1:
            raise ValueError(f"{value} has more than {places} decimals")
        digits = str(abs(scaled.numerator)).rjust((places or 0) + 1, "0")
        whole, frac = (digits[:-places], digits[-places:]) if places else (digits, "")
        text = ("-" if scaled.numerator < 0 else "") + whole + ("." + frac if frac else "")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def _sign(value: Fraction) -> int:
    return (value > 0) - (value < 0)
