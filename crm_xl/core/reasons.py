"""Explanations: one short text per customer-month saying which rule decided its tier and segment,
with the numbers that decided it, e.g. ``Gold: AMC 240 ≥ 200 (T_mid_high), < 1000 (T_high)``.

Each outcome has a template; a row's text is its template filled with the row's numbers. The same
text recurs across many customer-months, so texts are built once per distinct (template, numbers)
combination and stored as a categorical: millions of rows cost a few hash passes, not millions of
string formats.
"""

from __future__ import annotations

import string

import numpy as np
import pandas as pd

from crm_xl.config import Config
from crm_xl.core.rfm import Scores
from crm_xl.core.rules import BRONZE, DIAMOND, GOLD, PASSIVE, PLATINUM, SILVER, Labels
from crm_xl.core.snapshots import Panel

Variant = tuple[np.ndarray, str]   # (rows it applies to, template with {field} placeholders)


def tier_reasons(panel: Panel, labels: Labels, config: Config) -> pd.Categorical:
    """Why each row has its value tier (or none)."""
    c = config
    tw, aw = c.tier_window_months, c.active_window_months
    amc, aos, orders = labels.amc, labels.aos, labels.orders_tier
    m_active = panel.measure[aw]
    tier = labels.tier
    low_aos = ~(labels.aos >= c.a_high)
    amc_high = labels.amc >= c.t_high
    o, t = f"O{tw}", _g
    variants: list[Variant] = [
        (~labels.has_core, "Not Active: no core purchase yet"),
        (labels.has_core & ~labels.active, f"Not Active: no core purchase in the last {aw} months (M{aw} = 0)"),
        (tier == PASSIVE, f"Passive: active (M{aw} {{m_active}} > 0) but M{tw} = 0"),
        (tier == DIAMOND, f"Diamond: AMC {{amc}} ≥ {t(c.t_high)} (T_high), AOS {{aos}} ≥ {t(c.a_high)} (A_high), "
                          f"{o} {{orders}} ≥ {t(c.f_high)} (F_high)"),
        ((tier == PLATINUM) & low_aos, f"Platinum: AMC {{amc}} ≥ {t(c.t_high)} (T_high), {o} {{orders}} ≥ "
                                       f"{t(c.f_mid)} (F_mid); not Diamond: AOS {{aos}} < {t(c.a_high)} (A_high)"),
        ((tier == PLATINUM) & ~low_aos, f"Platinum: AMC {{amc}} ≥ {t(c.t_high)} (T_high), {o} {{orders}} ≥ "
                                        f"{t(c.f_mid)} (F_mid); not Diamond: {o} {{orders}} < {t(c.f_high)} (F_high)"),
        ((tier == GOLD) & ~amc_high, f"Gold: AMC {{amc}} ≥ {t(c.t_mid_high)} (T_mid_high), < {t(c.t_high)} (T_high)"),
        ((tier == GOLD) & amc_high, f"Gold: AMC {{amc}} ≥ {t(c.t_mid_high)} (T_mid_high); not Platinum: "
                                    f"{o} {{orders}} < {t(c.f_mid)} (F_mid)"),
        (tier == SILVER, f"Silver: AMC {{amc}} ≥ {t(c.t_mid)} (T_mid), < {t(c.t_mid_high)} (T_mid_high)"),
        (tier == BRONZE, f"Bronze: AMC {{amc}} < {t(c.t_mid)} (T_mid)"),
    ]
    numbers = {"amc": amc, "aos": aos, "orders": orders, "m_active": m_active}
    return explain(panel.rows, variants, numbers)


def segment_reasons(panel: Panel, scores: Scores, config: Config) -> pd.Categorical:
    """Why each row has its RFM segment: the (R, FM) cell, and the recency and orders behind it.

    The monetary and tenure values are the row's own ``monetary`` and ``tenure_months`` columns;
    the cut points that turned values into scores are in ``rfm_cut_points``.
    """
    s, v = scores.scores, scores.values
    window = config.rfm_window_months
    unit = "units" if config.rfm_monetary == "units" else "revenue"
    no_purchase = np.isnan(v["recency"])
    variants: list[Variant] = [
        (no_purchase, "Not scored: no core purchase yet"),
        (~scores.scored, f"Not scored: not Active this month (no core purchase in the last "
                         f"{config.active_window_months} months); RFM scores the Active customers "
                         "(rfm_population = active)"),
    ]
    for index, name in enumerate(scores.segment_names):
        variants.append((scores.segment == index,
                         f"{name}: R{{r}} FM{{fm}} (recency {{recency}} days → R{{r}}; frequency {{orders}} "
                         f"→ F{{f}}; {unit} → M{{m}}; FM = ceil((F + M) / 2); F and M over {window} months)"))
    numbers = {"r": s["recency"], "fm": scores.fm, "f": s["frequency"], "m": s["monetary"],
               "recency": v["recency"], "orders": v["frequency"]}
    return explain(panel.rows, variants, numbers)


def _g(value: float) -> str:
    return f"{value:g}"


def _show(value: float) -> str:
    """A number as it appears in a text: at most 2 decimals, no trailing zeros."""
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def explain(n: int, variants: list[Variant], numbers: dict[str, np.ndarray]) -> pd.Categorical:
    """One text per row from the first variant whose mask holds, filled with that row's numbers.

    Rows are grouped by (variant, the numbers its template uses, rounded to 2 decimals); each
    group's text is formatted once.
    """
    if n == 0:
        return pd.Categorical([], categories=pd.Index([], dtype="str"))
    choice = np.full(n, -1, dtype="int64")
    for index, (mask, _) in enumerate(variants):
        choice[(choice < 0) & mask] = index
    fields_of = [_fields(template) for _, template in variants]
    uses = np.zeros((len(variants) + 1, len(numbers)), dtype=bool)   # row 0: no variant
    for index, fields in enumerate(fields_of):
        uses[index + 1] = [name in fields for name in numbers]
    key, bound = choice + 1, len(variants) + 1
    values_of: dict[str, np.ndarray] = {}
    for column, (name, values) in enumerate(numbers.items()):
        if not uses[:, column].any():
            continue
        if values.dtype.kind in "iu":   # whole numbers as they are, in hundredths like the rest
            cents = values.astype("int64") * 100
        else:
            cents = np.rint(np.where(np.isnan(values), -1e15, values) * 100).astype("int64")
        used = uses[choice + 1, column]
        low, high = int(cents.min()), int(cents.max())
        if high - low < 4096:        # small integer ranges (scores, counts) combine arithmetically
            code, size = np.where(used, cents - low + 1, 0), high - low + 2
        else:
            code, uniques = pd.factorize(np.where(used, cents, np.iinfo(np.int64).min))
            size = len(uniques)
        if bound * size >= 2**62:    # keep the combined key inside int64
            key, _ = pd.factorize(key)
            bound = int(key.max()) + 1
        key, bound = key * size + code, bound * size
        values_of[name] = cents
    group, _ = pd.factorize(key)
    first = np.flatnonzero(group > np.maximum.accumulate(np.concatenate(([-1], group[:-1]))))
    cache: dict[tuple[str, int], str] = {}

    def shown(name: str, cents: int) -> str:
        text = cache.get((name, cents))
        if text is None:
            text = cache[(name, cents)] = _show(cents / 100)
        return text

    texts = []
    for row in first:
        index = choice[row]
        if index < 0:
            texts.append(None)
            continue
        values = {name: shown(name, values_of[name][row]) for name in fields_of[index]}
        texts.append(variants[index][1].format(**values))
    # Two groups may read the same once rounded: factorize the texts so categories are unique.
    text_codes, labels = pd.factorize(pd.Series(texts, dtype="str"))
    return pd.Categorical.from_codes(text_codes[group], categories=pd.Index(labels, dtype="str"))


def _fields(template: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(name for _, name, _, _ in string.Formatter().parse(template) if name))
