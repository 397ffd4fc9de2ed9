"""Explanations: one short text per customer-month saying which rule decided its tier and segment,
with the numbers that decided it, e.g. ``Gold: AMC 240 ≥ 200 (T_mid_high), < 1000 (T_high)``.

Texts are assembled with pyarrow string kernels, one template per rule outcome, so millions of
rows cost seconds, not minutes.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from crm_xl.config import Config
from crm_xl.rfm import Scores
from crm_xl.rules import BRONZE, DIAMOND, GOLD, PASSIVE, PLATINUM, SILVER, Labels
from crm_xl.snapshots import Panel

Piece = str | np.ndarray


def tier_reasons(panel: Panel, labels: Labels, config: Config) -> pa.Array:
    """Why each row has its value tier (or none)."""
    c = config
    tw, aw = c.tier_window_months, c.active_window_months
    amc, aos, orders = labels.amc, labels.aos, labels.orders_tier
    m_active = panel.measure[aw]
    tier = labels.tier
    low_aos = ~(labels.aos >= c.a_high)
    amc_high = labels.amc >= c.t_high
    o, t = f"O{tw}", _g
    variants: list[tuple[np.ndarray, list[Piece]]] = [
        (~labels.has_core, ["Not Active: no core purchase yet"]),
        (labels.has_core & ~labels.active, [f"Not Active: no core purchase in the last {aw} months (M{aw} = 0)"]),
        (tier == PASSIVE, [f"Passive: active (M{aw} ", m_active, f" > 0) but M{tw} = 0"]),
        (tier == DIAMOND, [f"Diamond: AMC ", amc, f" ≥ {t(c.t_high)} (T_high), AOS ", aos,
                           f" ≥ {t(c.a_high)} (A_high), {o} ", orders, f" ≥ {t(c.f_high)} (F_high)"]),
        ((tier == PLATINUM) & low_aos, ["Platinum: AMC ", amc, f" ≥ {t(c.t_high)} (T_high), {o} ", orders,
                                        f" ≥ {t(c.f_mid)} (F_mid); not Diamond: AOS ", aos,
                                        f" < {t(c.a_high)} (A_high)"]),
        ((tier == PLATINUM) & ~low_aos, ["Platinum: AMC ", amc, f" ≥ {t(c.t_high)} (T_high), {o} ", orders,
                                         f" ≥ {t(c.f_mid)} (F_mid); not Diamond: {o} ", orders,
                                         f" < {t(c.f_high)} (F_high)"]),
        ((tier == GOLD) & ~amc_high, ["Gold: AMC ", amc, f" ≥ {t(c.t_mid_high)} (T_mid_high), "
                                      f"< {t(c.t_high)} (T_high)"]),
        ((tier == GOLD) & amc_high, ["Gold: AMC ", amc, f" ≥ {t(c.t_mid_high)} (T_mid_high); not Platinum: {o} ",
                                     orders, f" < {t(c.f_mid)} (F_mid)"]),
        (tier == SILVER, ["Silver: AMC ", amc, f" ≥ {t(c.t_mid)} (T_mid), < {t(c.t_mid_high)} (T_mid_high)"]),
        (tier == BRONZE, ["Bronze: AMC ", amc, f" < {t(c.t_mid)} (T_mid)"]),
    ]
    return _assemble(panel.rows, variants)


def segment_reasons(panel: Panel, scores: Scores, config: Config) -> pa.Array:
    """Why each row has its RFM segment: the scores and the values behind them."""
    s, v = scores.scores, scores.values
    window = config.rfm_window_months
    unit = "units" if config.rfm_monetary == "units" else "revenue"
    names = np.asarray(scores.segment_names, dtype=object)
    scored = scores.segment >= 0
    variants: list[tuple[np.ndarray, list[Piece]]] = [
        (~scored, ["Not scored: no core purchase yet"]),
    ]
    for index, name in enumerate(names):
        variants.append((scores.segment == index, [
            f"{name}: R", s["recency"], " FM", scores.fm,
            " (recency ", v["recency"], " days → R", s["recency"],
            "; frequency ", v["frequency"], " → F", s["frequency"],
            "; monetary ", v["monetary"], f" {unit} → M", s["monetary"],
            f"; last {window} months)",
        ]))
    return _assemble(panel.rows, variants)


def _g(value: float) -> str:
    return f"{value:g}"



def _texts(values: np.ndarray) -> pa.Array:
    if values.dtype.kind in "iu":
        return pa.array(values).cast(pa.string())
    return pc.round(pa.array(values, type=pa.float64()), 2).cast(pa.string())


def _assemble(n: int, variants: list[tuple[np.ndarray, list[Piece]]]) -> pa.Array:
    """One text per row: each row takes the template of the first variant whose mask holds."""
    taken = np.zeros(n, dtype=bool)
    chunks, order = [], []
    for mask, pieces in variants:
        rows = np.flatnonzero(mask & ~taken)
        taken[rows] = True
        if len(rows) == 0:
            continue
        parts = [p if isinstance(p, str) else _texts(p[rows]) for p in pieces]
        if all(isinstance(p, str) for p in parts):
            chunk = pa.array(["".join(parts)] * len(rows), type=pa.string())  # type: ignore[arg-type]
        else:
            chunk = pc.binary_join_element_wise(*parts, "")
        chunks.append(chunk)
        order.append(rows)
    rest = np.flatnonzero(~taken)
    if len(rest):
        chunks.append(pa.nulls(len(rest), type=pa.string()))
        order.append(rest)
    if not chunks:
        return pa.array([], type=pa.string())
    joined = pa.concat_arrays(chunks)
    position = np.empty(n, dtype="int64")
    position[np.concatenate(order)] = np.arange(n)
    return joined.take(pa.array(position))
