"""Explanations: one short text per customer-month saying which rule decided its tier and segment,
with the numbers that decided it, e.g. ``Gold: AMC 240 ≥ 200 (T_mid_high), < 1000 (T_high)``.

Each outcome has a template; a row's text is its template filled with the row's numbers. The same
text recurs across many customer-months, so texts are built once per distinct (template, numbers)
combination and stored as a categorical: millions of rows cost a few hash passes, not millions of
string formats.

Numbers are shown with at most 2 decimals, unless that would make the text contradict itself
("AMC 50 < 50" for 49.9999996): then with just enough decimals that the shown number lies on the
same side of each threshold as the exact value (``AMC 49.9999996 < 50``). The tiers are decided
on exact values (:mod:`crm_xl.core.exact`), and so is that choice of decimals.
"""

from __future__ import annotations

import dataclasses
import math
import string
from collections.abc import Callable
from fractions import Fraction

import numpy as np
import pandas as pd

from crm_xl.config import Config
from crm_xl.core import exact
from crm_xl.core.rfm import Scores
from crm_xl.core.rules import BRONZE, DIAMOND, GOLD, PASSIVE, PLATINUM, REACTIVATED, SILVER, Labels
from crm_xl.core.snapshots import Panel

Variant = tuple[np.ndarray, str]   # (rows it applies to, template with {field} placeholders)
# Exact values of some rows, as (numerators, denominators) of whole numbers.
ExactOf = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray | int]]

#: customer_history columns this module writes: categoricals whose categories are the texts in the
#: order they first appear in the panel's rows (:func:`explain`), not a fixed list.
TEXT_COLUMNS = ("tier_reason", "segment_reason")
_SMALL_RANGE = 4096      # whole numbers spanning less than this are coded arithmetically, not hashed
_HALF_CENT = 0.005       # the most that showing 2 decimals moves a number
_FLOAT_SLACK = 1e-9      # float figures are this close to the exact value (plus a relative 1e-12)
_ROUNDABLE = 2.0**53 / 100   # below it a float still has cents to round to; above, rounding would move it
_NO_CENTS = 1e15             # floats this large have no cents to show: written as typed, in full


@dataclasses.dataclass(frozen=True)
class Field:
    """A number column as the texts it shows: a code per row, 1 .. size - 1 where the row shows it
    and 0 where it does not (its outcome's text has no such number), and each code's text (from 1)."""

    codes: np.ndarray
    size: int
    text: Callable[[int], str]


FieldOf = Callable[[np.ndarray], Field]   # the rows whose text shows the field -> the field


def tier_reasons(panel: Panel, labels: Labels, config: Config) -> pd.Categorical:
    """Why each row has its value tier (or none), in words: each figure with the thresholds it
    meets or misses, e.g. ``Silver: averages 136.7 pods a month: ≥ 50 for Silver, < 200 for Gold``."""
    c = config
    tw, aw = c.tier_window_months, c.active_window_months
    tier, meets = labels.tier, labels.meets
    low_aos, amc_high = ~meets["a_high"], meets["t_high"]
    u, t = unit_phrase(c, c.measure), _threshold
    amc = f"averages {{amc}} {u} a month"
    aos = f"{{aos}} {u} an order"
    orders = f"{{orders}} in {_months(tw)}"
    variants: list[Variant] = [
        (~labels.has_core, "Not Active: no core purchase yet"),
        (labels.has_core & ~labels.active, f"Not Active: no core purchase in the last {_months(aw)}"),
        (tier == PASSIVE, f"Passive: {{m_active}} {u} in the last {_months(aw)}, none in the last {_months(tw)}"),
        (tier == DIAMOND, f"Diamond: {amc}: ≥ {t(c.t_high)} for Platinum; {aos}: ≥ {t(c.a_high)} for Diamond; "
                          f"{orders}: ≥ {t(c.f_high)} for Diamond"),
        ((tier == PLATINUM) & low_aos, f"Platinum: {amc}: ≥ {t(c.t_high)} for Platinum; {orders}: ≥ {t(c.f_mid)} "
                                       f"for Platinum; {aos}: < {t(c.a_high)} for Diamond"),
        ((tier == PLATINUM) & ~low_aos, f"Platinum: {amc}: ≥ {t(c.t_high)} for Platinum; {orders}: ≥ "
                                        f"{t(c.f_mid)} for Platinum, < {t(c.f_high)} for Diamond"),
        ((tier == GOLD) & ~amc_high, f"Gold: {amc}: ≥ {t(c.t_mid_high)} for Gold, < {t(c.t_high)} for Platinum"),
        ((tier == GOLD) & amc_high, f"Gold: {amc}: ≥ {t(c.t_mid_high)} for Gold; {orders}: < {t(c.f_mid)} "
                                    "for Platinum"),
        (tier == SILVER, f"Silver: {amc}: ≥ {t(c.t_mid)} for Silver, < {t(c.t_mid_high)} for Gold"),
        (tier == BRONZE, f"Bronze: {amc}: < {t(c.t_mid)} for Silver"),
    ]
    tier_sum, order_counts = panel.tier_measure, labels.orders_tier
    m_active = panel.measure[aw]
    fields = {
        "amc": decimals(labels.amc, (c.t_high, c.t_mid_high, c.t_mid),
                        lambda rows: (tier_sum[rows], tw * exact.SCALE)),
        "aos": decimals(labels.aos, (c.a_high,),
                        lambda rows: (tier_sum[rows], order_counts[rows].astype("int64") * exact.SCALE)),
        "orders": counted(order_counts, "order"),
        "m_active": decimals(m_active, (0.0,), lambda rows: (exact.to_micro(m_active[rows]), exact.SCALE)),
    }
    return explain(panel.rows, variants, fields)


def unit_phrase(config: Config, measure: str) -> str:
    """What a number of the measure is called in a text: the unit_name (pods) for units, else revenue."""
    return config.unit_name if measure == "units" else "in revenue"


def _months(count: int) -> str:
    return "month" if count == 1 else f"{count} months"


def segment_reasons(panel: Panel, scores: Scores, labels: Labels, config: Config, *,
                    rows: slice = slice(None), with_values: bool = False) -> pd.Categorical:
    """Why each row (of ``rows``) has its RFM segment: its (R, FM) cell and the range of each score from
    that month's cut points (``recency 31–60 days (R3); 3–4 orders in 12 months (F3); over 1,200 up to
    2,400 pods in 12 months (M4)``), and a reactivation this month.

    ``with_values`` puts the row's own values before each range (``recency 36 days: R3 is 31–60 days;
    4 orders in 12 months: F3 is 3–4 orders; 1,640 pods in 12 months: M4 is over 1,200 up to 2,400``):
    the snapshot's texts, one month of customers. The history's texts leave the values to the
    recency_days, frequency and monetary columns beside them: with them nearly every customer-month
    would have a text of its own (1.7 million on a 1M-line history), where the texts are built once
    per distinct text.
    """
    s = {field: score[rows] for field, score in scores.scores.items()}
    v = {field: value[rows] for field, value in scores.values.items()}
    segment, fm, scored = scores.segment[rows], scores.fm[rows], scores.scored[rows]
    window = _months(config.rfm_window_months)
    noun, suffix = ("", f" {config.unit_name}") if config.rfm_monetary == "units" else ("revenue ", "")
    back = labels.event[rows] == REACTIVATED
    variants: list[Variant] = [
        (np.isnan(v["recency"]), "Not scored: no core purchase yet"),
        (~scored, f"Not scored: not Active this month (no core purchase in the last "
                  f"{_months(config.active_window_months)}); RFM scores the Active customers"),
    ]
    for index, name in enumerate(scores.segment_names):
        text = f"{name}, cell {{r}}{{fm}}: " + _score_parts(with_values, window, noun, suffix)
        variants.append(((segment == index) & back, text + f"; reactivated this month, after "
                         f"{_months(config.reactivation_gap_months)} or more without a core purchase"))
        variants.append((segment == index, text))
    columns = {"r": s["recency"], "fm": fm, "f": s["frequency"], "m": s["monetary"]}
    fields: dict[str, FieldOf] = {name: numbers(values) for name, values in columns.items()}
    if with_values:
        fields |= {"recency": counted(_whole(v["recency"]), "day"),
                   "orders": counted(_whole(v["frequency"]), "order"), "monetary": numbers(v["monetary"])}
    cuts = _cuts_by_month(scores, panel)
    month_pos = panel.month_pos[rows]
    fields |= {f"{key}_range": _ranges(month_pos, s[field], cuts.get(field, {}), field)
               for key, field in (("r", "recency"), ("f", "frequency"), ("m", "monetary"))}
    return explain(len(month_pos), variants, fields)


def _score_parts(with_values: bool, window: str, noun: str, suffix: str) -> str:
    """The recency, frequency and monetary parts of a segment text's template."""
    if with_values:
        return (f"recency {{recency}}: R{{r}} is {{r_range}} days; {{orders}} in {window}: F{{f}} is {{f_range}}; "
                f"{noun}{{monetary}}{suffix} in {window}: M{{m}} is {{m_range}}")
    return (f"recency {{r_range}} days (R{{r}}); {{f_range}} in {window} (F{{f}}); "
            f"{noun}{{m_range}}{suffix} in {window} (M{{m}})")


def _whole(values: np.ndarray) -> np.ndarray:
    """Day and order counts as whole numbers (blank, before the first purchase, as 0: never shown)."""
    return np.nan_to_num(values, nan=0.0).astype("int64")


def counted(values: np.ndarray, noun: str) -> FieldOf:
    """Whole counts with their noun: ``1 order``, ``12 orders``."""
    def field_of(used: np.ndarray) -> Field:
        field = number_field(values, used)
        return Field(field.codes, field.size, lambda code: _noun(_grouped(field.text(code)), noun))
    return field_of


def _noun(count: str, noun: str) -> str:
    return f"{count} {noun}" if count == "1" else f"{count} {noun}s"


def _cuts_by_month(scores: Scores, panel: Panel) -> dict[str, dict[int, tuple[float, ...]]]:
    """field -> panel month position -> its four cut points."""
    position = {month.to_timestamp(): i for i, month in enumerate(panel.months)}
    out: dict[str, dict[int, tuple[float, ...]]] = {}
    for row in scores.cut_points.itertuples(index=False):
        out.setdefault(row.field, {})[position[row.report_month]] = (row.cut_1, row.cut_2, row.cut_3, row.cut_4)
    return out


def _ranges(month_pos: np.ndarray, score: np.ndarray, cuts: dict[int, tuple[float, ...]], field: str) -> FieldOf:
    """The range of each row's score in its month, one code per (month, score): no hashing."""
    def field_of(used: np.ndarray) -> Field:
        codes = np.where(used, month_pos.astype("int64") * 6 + score + 1, 0)
        return Field(codes, int(codes.max(initial=0)) + 1,
                     lambda code: score_range(cuts.get((code - 1) // 6), (code - 1) % 6, field))
    return field_of


def score_range(cuts: tuple[float, ...] | None, score: int, field: str) -> str:
    """The values that get ``score`` from the four cut points: a value at or below the 1st cut scores 1
    (recency 5), above the 4th 5 (recency 1). Recency and frequency are whole numbers (``31–60``),
    monetary may not be (``over 1,200 up to 2,400``)."""
    if cuts is None or not 1 <= score <= 5:
        return ""
    k = 6 - score if field == "recency" else score   # how many cut points the value reaches past, plus 1
    low, high = (cuts[k - 2] if k > 1 else None), (cuts[k - 1] if k < 5 else None)
    if field == "monetary":
        if low is None:
            return f"up to {_grouped(_show(high))}"
        return f"over {_grouped(_show(low))}" + ("" if high is None else f" up to {_grouped(_show(high))}")
    first = None if low is None else math.floor(low) + 1
    last = None if high is None else math.floor(high)
    orders = "" if field != "frequency" else " order" if last == 1 else " orders"
    if first is None:
        return f"up to {_grouped(str(last))}{orders}"
    if last is None:
        return f"{_grouped(str(first))} or more{orders}"
    shown = _grouped(str(first)) if first == last else f"{_grouped(str(first))}–{_grouped(str(last))}"
    return shown + orders


def _grouped(text: str) -> str:
    """A plain number with thousands separators: 1640 -> 1,640, 12345.5 -> 12,345.5."""
    sign, digits = ("-", text[1:]) if text.startswith("-") else ("", text)
    whole, dot, frac = digits.partition(".")
    if not whole.isdigit() or len(whole) <= 3:
        return text
    return f"{sign}{int(whole):,}{dot}{frac}"


def _threshold(value: float) -> str:
    """A threshold as typed, in full (1e+14 is 100,000,000,000,000): the comparisons read exactly."""
    return _grouped(exact.plain(float(value)))


def _show(value: float) -> str:
    """A number as it appears in a text: at most 2 decimals, no trailing zeros, never an exponent."""
    if not abs(value) < _NO_CENTS:
        return exact.plain(value) if np.isfinite(value) else str(value)
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def number_field(values: np.ndarray, used: np.ndarray | None = None) -> Field:
    """Numbers shown with at most 2 decimals; whole numbers as they are. With ``used``, only those
    rows get codes (the others 0): a field is usually shown in a few of the outcomes, and hashing
    only those rows is most of the saving on a big history."""
    if used is None or used.all():
        codes, size, text = _shown_codes(values)
        return Field(codes, size, text)
    rows = np.flatnonzero(used)
    part, size, text = _shown_codes(values[rows])
    codes = np.zeros(len(values), dtype=part.dtype)
    codes[rows] = part
    return Field(codes, size, text)


def _shown_codes(values: np.ndarray) -> tuple[np.ndarray, int, Callable[[int], str]]:
    """(codes 1 .. size - 1, size, the text of a code) for every value."""
    if values.dtype.kind in "iub":
        codes, size, whole = _whole_codes(values.astype("int64"))
        return codes, size, lambda code: str(whole(code))
    with np.errstate(invalid="ignore"):
        in_cents = np.abs(values) < _ROUNDABLE
    if in_cents.all():   # the usual case: whole cents hash faster than floats
        codes, size, cents = _whole_codes(np.rint(values * 100).astype("int64"))
        return codes, size, lambda code: _show(cents(code) / 100)
    rounded = values.copy()   # blanks and huge values as they are: rounding would move the huge
    rounded[in_cents] = np.round(values[in_cents], 2)
    codes, uniques = pd.factorize(rounded, use_na_sentinel=False)
    return codes + 1, len(uniques) + 1, lambda code: _show(float(uniques[code - 1]))


def _whole_codes(values: np.ndarray) -> tuple[np.ndarray, int, Callable[[int], int]]:
    """(codes 1 .. size - 1, size, the value of a code) for whole numbers."""
    low, high = int(values.min(initial=0)), int(values.max(initial=0))
    if high - low < _SMALL_RANGE:   # scores, counts: no hashing needed
        return values - (low - 1), high - low + 2, lambda code: code + low - 1
    codes, uniques = pd.factorize(values)
    return codes + 1, len(uniques) + 1, lambda code: int(uniques[code - 1])


def numbers(values: np.ndarray) -> FieldOf:
    """A column shown as :func:`number_field` does."""
    return lambda used: number_field(values, used)


def decimals(shown: np.ndarray, thresholds: tuple[float, ...], exact_of: ExactOf) -> FieldOf:
    """A column shown as :func:`decimal_field` does."""
    return lambda used: decimal_field(shown, thresholds, exact_of, used)


def decimal_field(shown: np.ndarray, thresholds: tuple[float, ...], exact_of: ExactOf,
                  used: np.ndarray) -> Field:
    """Like :func:`number_field`, but the ``used`` rows whose 2 decimals could cross or touch one of
    the thresholds get their own codes, shown from their exact value with the decimals it needs.

    Only rows within half a cent (plus float slack) of a threshold need that; their exact values
    come from ``exact_of`` and their texts are made once per distinct value actually shown.
    """
    base = number_field(shown, used)
    candidates = np.flatnonzero(used)
    values = shown[candidates]
    near = np.zeros(len(values), dtype=bool)
    gap = np.empty(len(values))
    with np.errstate(invalid="ignore"):
        for threshold in thresholds:
            # a value this near has |value| <= 2 |threshold| + 1, which bounds the relative slack
            slack = _HALF_CENT + _FLOAT_SLACK + 1e-12 * (2 * abs(threshold) + 1)
            np.abs(np.subtract(values, threshold, out=gap), out=gap)
            near |= gap <= slack
    rows = candidates[near]
    if not len(rows):
        return base
    numerators, denominators = exact_of(rows)
    denominators = np.broadcast_to(np.asarray(denominators), rows.shape)
    pairs, _ = pd.factorize(_pair_codes(numerators, denominators))
    first = np.flatnonzero(pairs > np.maximum.accumulate(np.concatenate(([-1], pairs[:-1]))))
    limits = tuple(exact.decimal_of(t) for t in thresholds)
    codes = base.codes.copy()
    codes[rows] = base.size + pairs

    def text(code: int) -> str:
        if code < base.size:
            return base.text(code)
        at = first[code - base.size]
        return exact.shown_exactly(Fraction(int(numerators[at]), int(denominators[at])), limits)

    return Field(codes, base.size + len(first), text)


def _pair_codes(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """One int64 code per distinct (left, right) pair; either may hold Python integers."""
    left_codes, _ = pd.factorize(left)
    right_codes, right_values = pd.factorize(right)
    return left_codes.astype("int64") * len(right_values) + right_codes   # both < len(left): no overflow


def explain(n: int, variants: list[Variant], fields_of_rows: dict[str, FieldOf]) -> pd.Categorical:
    """One text per row from the first variant whose mask holds, filled with that row's fields.

    Rows are grouped by (variant, the codes of the fields its template uses); each group's text is
    formatted once.
    """
    if n == 0:
        return pd.Categorical([], categories=pd.Index([], dtype="str"))
    # 1 + the first variant whose mask holds, 0 for none: the later variants written first, so
    # each row keeps the earliest
    variant = np.zeros(n, dtype="int64")
    for index in range(len(variants) - 1, -1, -1):
        variant[variants[index][0]] = index + 1
    fields_of = [_fields(template) for _, template in variants]
    uses = np.zeros((len(variants) + 1, len(fields_of_rows)), dtype=bool)   # row 0: no variant
    for index, names in enumerate(fields_of):
        uses[index + 1] = [name in names for name in fields_of_rows]
    # the key is updated in place: a fresh array per field would cost more in page faults than the sums
    key, bound = variant.copy(), len(variants) + 1
    fields: dict[str, Field] = {}
    for column, (name, field_of) in enumerate(fields_of_rows.items()):
        if not uses[:, column].any():
            continue
        field = fields[name] = field_of(uses[:, column][variant])   # code 0 where the row's text lacks it
        if bound * field.size >= 2**62:    # keep the combined key inside int64
            key, _ = pd.factorize(key)
            key, bound = key.astype("int64", copy=False), int(key.max()) + 1
        key *= field.size
        key += field.codes
        bound *= field.size
    choice = variant - 1
    group, _ = pd.factorize(key)
    first = np.flatnonzero(group > np.maximum.accumulate(np.concatenate(([-1], group[:-1]))))
    cache: dict[tuple[str, int], str] = {}

    def shown(name: str, code: int) -> str:
        text = cache.get((name, code))
        if text is None:   # numbers read with thousands separators: 1,640
            text = cache[(name, code)] = _grouped(fields[name].text(code))
        return text

    texts = np.full(len(first), None, dtype=object)
    variant_of = choice[first]
    for index, (_, template) in enumerate(variants):
        at = np.flatnonzero(variant_of == index)
        if len(at):
            texts[at] = _filled(template, first[at], fields, shown)
    # Two groups may read the same once rounded: factorize the texts so categories are unique.
    text_codes, labels = pd.factorize(pd.Series(texts, dtype="str"))
    return pd.Categorical.from_codes(text_codes[group], categories=pd.Index(labels, dtype="str"))


def _filled(template: str, rows: np.ndarray, fields: dict[str, Field], shown: Callable[[str, int], str]) -> np.ndarray:
    """``template`` filled for each of ``rows`` (one row per group): each field's distinct texts are
    looked up once and the pieces joined column by column (object arrays add their strings in C)."""
    out = np.full(len(rows), "", dtype=object)
    for literal, name, _, _ in string.Formatter().parse(template):
        if literal:
            out = out + literal
        if name:
            distinct, slot = np.unique(fields[name].codes[rows], return_inverse=True)
            out = out + np.array([shown(name, int(code)) for code in distinct], dtype=object)[slot]
    return out


def _fields(template: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(name for _, name, _, _ in string.Formatter().parse(template) if name))
