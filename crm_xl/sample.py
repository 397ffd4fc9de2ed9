"""Seeded, persona-driven synthetic CRM data: transactions, customer master, product master.

The generator models a coffee-machine brand: customers buy a device once and then pods, beans and
ground coffee for years, plus the odd accessory or spare part. Every customer of the master is a
*persona* (a share of the base) with its own monthly purchase probability, order size, pack choice,
start month, churn month and silent gap, chosen so that the reference business rules of the product
brief (value tiers, lifecycle events and states, the 11 RFM segments) all occur, both in the last
report month and across the history.

Everything is vectorised with numpy (loops run per month, per persona or per behaviour level, never
per customer or per line), so ten million lines take seconds and a few hundred MB per million lines.
The same arguments always give identical frames (``numpy.random.default_rng(seed)``).

Personas (share of the master, before normalisation):

* ``loyal_diamond`` .. ``loyal_bronze``, ``occasional`` - regular buyers of decreasing consumption
  (diamond: about one order a month of 30-40 x pods x50; occasional: an order every 3-4 months).
* ``new`` - enter in any month: device first, first pods 0-2 months later; ``new_last_month`` has
  its first core purchase in the end month.
* ``churn_recent`` (last purchase 6-11 months before the end: Passive / lapsing),
  ``churn_lost`` (12-20 months before the end: Lost, some exactly 12 -> Lost event in the end month),
  ``churn_any`` (stop at any month).
* ``reactivator`` - buy, stay silent 12-18 whole months, come back and keep buying;
  ``reactivate_last_month`` comes back in the end month.
* ``device_only``, ``accessory_only`` (never a core purchase: prospects), ``never_bought``.
* ``walk_in`` - anonymous till sales, booked on a few customer ids of group ``General``.

Messiness (``messy=True``, the default): about 0.2 % of the lines on customer ids missing from the
master, three lines with an unknown product id (``P9999``), a product of category ``gift_card``
that is sold now and then, one duplicated customer row, a few blank customer groups, one anonymous
id whose group is spelt ``"general "``, and about 1 % legacy customer ids made of digits only with
leading zeros (``"00001234"``). Returns (a few % of the lines, negative quantity and revenue,
dated after the purchase they return) and a few zero-quantity lines (voided orders) are always
there.

``target_transactions`` scales every persona's monthly order rate by one factor, solved on the
expected line count, and divides the order size by the same factor (within 1/3 .. 3) so that the
value tiers stay roughly where the personas put them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["PERSONAS", "generate", "write_csv"]

CORE_CATEGORY = "consumable"
ANONYMOUS_GROUP = "General"
UNKNOWN_PRODUCT_ID = "P9999"

# --------------------------------------------------------------------------------------------------
# Product catalogue: product_id, product_name, brand, category, unit_size, list price
# --------------------------------------------------------------------------------------------------
_CATALOGUE: tuple[tuple[str, str, str, str, int, float], ...] = (
    ("P1001", "Brewly Mini", "Brewly", "device", 1, 79.00),
    ("P1002", "Brewly One", "Brewly", "device", 1, 129.00),
    ("P1003", "Brewly Pro", "Brewly", "device", 1, 249.00),
    ("P1004", "Brewly Barista", "Brewly", "device", 1, 549.00),
    ("P2010", "Pods Classic x10", "Brewly", "consumable", 10, 4.20),
    ("P2011", "Pods Intenso x10", "Brewly", "consumable", 10, 4.50),
    ("P2012", "Pods Decaf x10", "Brewly", "consumable", 10, 4.70),
    ("P2013", "Pods Lungo x10", "Brewly", "consumable", 10, 4.40),
    ("P2050", "Pods Classic x50", "Brewly", "consumable", 50, 19.50),
    ("P2051", "Pods Intenso x50", "Brewly", "consumable", 50, 21.00),
    ("P2100", "Pods Office x100", "Brewly", "consumable", 100, 36.00),
    ("P3025", "Beans Espresso 250 g", "Aroma Co", "consumable", 250, 6.90),
    ("P3026", "Ground Filter 250 g", "Aroma Co", "consumable", 250, 5.80),
    ("P3050", "Beans Crema 500 g", "Aroma Co", "consumable", 500, 12.90),
    ("P3100", "Beans Barista 1 kg", "Aroma Co", "consumable", 1000, 23.50),
    ("P4001", "Cup set", "Brewly", "accessories", 1, 14.90),
    ("P4002", "Milk frother", "Brewly", "accessories", 1, 39.00),
    ("P4003", "Travel mug", "Brewly", "accessories", 1, 12.50),
    ("P4004", "Pod drawer", "Brewly", "accessories", 1, 24.90),
    ("P4005", "Cleaning brush", "Brewly", "accessories", 1, 3.90),
    ("P5001", "Water filter cartridge", "AquaPure", "spare_parts", 1, 8.90),
    ("P5002", "Descaler kit", "AquaPure", "spare_parts", 1, 9.50),
    ("P5003", "Drip tray", "Brewly", "spare_parts", 1, 7.20),
    ("P5004", "Brew unit gasket", "Brewly", "spare_parts", 1, 4.30),
)
_GIFT_CARD = ("P9001", "Gift card 25", "Brewly", "gift_card", 1, 25.00)

_ACC_MIX = (("P4001", 0.2), ("P4002", 0.08), ("P4003", 0.12), ("P4004", 0.07), ("P4005", 0.13),
            ("P5001", 0.2), ("P5002", 0.12), ("P5003", 0.04), ("P5004", 0.04))


@dataclass(frozen=True)
class Level:
    """Buying behaviour while a customer is in an active stretch."""

    p: float  # probability of at least one order in an eligible month
    extra: float  # mean number of further orders in a month with an order (Poisson)
    units: tuple[float, float]  # units (quantity x unit_size) per order, uniform lo..hi
    packs: tuple[tuple[str, float], ...]  # products of the main line and their weights
    p_second: float  # chance of a second line from the same packs (splits the order's units)
    p_acc: float  # chance of an extra accessory / spare-part line
    devices: tuple[float, float, float, float]  # weights of P1001..P1004 for its device purchase
    groups: tuple[float, float, float]  # weights of Retail, Office, HoReCa
    vol_floor: float = 0.75  # lower clip of the per-customer volume multiplier


LEVELS: dict[str, Level] = {
    "diamond": Level(0.97, 0.15, (1560, 2100), (("P2050", 0.45), ("P2051", 0.25), ("P2100", 0.30)),
                     0.35, 0.05, (0, 0, 0.4, 0.6), (0.15, 0.35, 0.5), vol_floor=1.0),
    "platinum": Level(0.95, 1.3, (480, 760), (("P2050", 0.4), ("P2051", 0.27), ("P2100", 0.2),
                                              ("P3025", 0.1), ("P3100", 0.03)),
                      0.3, 0.05, (0, 0.2, 0.5, 0.3), (0.2, 0.4, 0.4), vol_floor=0.9),
    "gold": Level(0.85, 0.2, (240, 480), (("P2050", 0.35), ("P2051", 0.2), ("P2010", 0.15),
                                          ("P2011", 0.1), ("P3025", 0.12), ("P3050", 0.08)),
                  0.25, 0.06, (0.1, 0.4, 0.4, 0.1), (0.5, 0.3, 0.2)),
    "silver": Level(0.65, 0.1, (70, 190), (("P2010", 0.35), ("P2011", 0.25), ("P2012", 0.1),
                                           ("P2013", 0.1), ("P2050", 0.15), ("P3026", 0.05)),
                    0.25, 0.06, (0.3, 0.5, 0.2, 0), (0.8, 0.15, 0.05)),
    "bronze": Level(0.45, 0.0, (20, 70), (("P2010", 0.4), ("P2011", 0.25), ("P2012", 0.15),
                                          ("P2013", 0.15), ("P3026", 0.05)),
                    0.2, 0.05, (0.6, 0.4, 0, 0), (0.9, 0.07, 0.03)),
    "occasional": Level(0.3, 0.0, (40, 180), (("P2010", 0.3), ("P2011", 0.2), ("P2050", 0.2),
                                              ("P3025", 0.15), ("P3026", 0.15)),
                        0.2, 0.08, (0.5, 0.4, 0.1, 0), (0.85, 0.1, 0.05)),
    "walkin": Level(0.7, 1.0, (10, 40), (("P2010", 0.4), ("P2011", 0.2), ("P2012", 0.1),
                                         ("P2013", 0.1), ("P3025", 0.1), ("P3026", 0.1)),
                    0.2, 0.1, (0.5, 0.5, 0, 0), (1, 0, 0)),
    # never a core line: accessories and spare parts only, one or two of each
    "accessory": Level(0.08, 0.0, (1, 2.99), _ACC_MIX, 0.2, 0.0, (0.5, 0.5, 0, 0), (0.9, 0.08, 0.02)),
}
_LEVEL_NAMES = tuple(LEVELS)
_NO_LEVEL_DEVICES = (0.35, 0.4, 0.2, 0.05)
_NO_LEVEL_GROUPS = (0.9, 0.07, 0.03)


@dataclass(frozen=True)
class Persona:
    name: str
    share: float
    timing: str  # see _timing()
    levels: tuple[tuple[str, float], ...] = ()  # behaviour levels and their weights
    device_p: float = 0.85  # chance of a device line when the persona's timing allows one


_CHURN_MIX = (("diamond", 0.08), ("platinum", 0.12), ("gold", 0.3), ("silver", 0.3), ("bronze", 0.2))
_NEW_MIX = (("gold", 0.15), ("silver", 0.35), ("bronze", 0.35), ("occasional", 0.15))
_REACT_MIX = (("platinum", 0.05), ("gold", 0.25), ("silver", 0.4), ("bronze", 0.3))

PERSONAS: tuple[Persona, ...] = (
    Persona("loyal_diamond", 0.02, "loyal", (("diamond", 1),)),
    Persona("loyal_platinum", 0.03, "loyal", (("platinum", 1),)),
    Persona("loyal_gold", 0.08, "loyal", (("gold", 1),)),
    Persona("loyal_silver", 0.12, "loyal", (("silver", 1),)),
    Persona("loyal_bronze", 0.11, "loyal", (("bronze", 1),)),
    Persona("occasional", 0.09, "loyal", (("occasional", 1),)),
    Persona("new", 0.09, "new", _NEW_MIX, device_p=0.9),
    Persona("new_last_month", 0.005, "new_last", _NEW_MIX, device_p=0.9),
    Persona("churn_recent", 0.045, "churn_recent", _CHURN_MIX),
    Persona("churn_lost", 0.05, "churn_lost", _CHURN_MIX),
    Persona("churn_any", 0.06, "churn_any", _CHURN_MIX),
    Persona("reactivator", 0.04, "reactivate", _REACT_MIX),
    Persona("reactivate_last_month", 0.01, "reactivate_last", _REACT_MIX),
    Persona("device_only", 0.05, "device_only", device_p=1.0),
    Persona("accessory_only", 0.03, "accessory_only", (("accessory", 1),), device_p=0.0),
    Persona("never_bought", 0.05, "never", device_p=0.0),
)
# anonymous till sales: pseudo customers (not in the master) whose orders are booked on the
# General ids; share relative to the master size
_WALKIN_SHARE = 0.03
_N_GENERAL = 4

_STORES = tuple(f"S{i:02d}" for i in range(1, 9))
_STORE_W = np.array([0.22, 0.18, 0.15, 0.12, 0.1, 0.09, 0.08, 0.06])
_P_HOME_STORE = 0.85
_DISCOUNTS = np.array([0.0, 0.05, 0.10, 0.15, 0.20])
_DISCOUNT_W = np.array([0.62, 0.18, 0.10, 0.06, 0.04])
_P_DEVICE_ACC = 0.3  # accessory on the device invoice

_RETURN_RATE = 0.025  # share of positive lines returned later
_RETURN_MAX_DAYS = 45
_ZERO_RATE = 0.001  # voided orders: one line, quantity 0
_GIFT_RATE = 0.001  # gift-card invoices (messy only), relative to the sales lines
_UNKNOWN_CUSTOMER_RATE = 0.002  # invoices booked on ids missing from the master (messy only)
_N_UNKNOWN_PRODUCT_LINES = 3
_BLANK_GROUP_RATE = 0.004
_LEGACY_ID_RATE = 0.01

_FIRST = ("Ana", "Joao", "Maria", "Pedro", "Ines", "Rui", "Sofia", "Tiago", "Beatriz", "Miguel",
          "Carla", "Nuno", "Rita", "Paulo", "Marta", "Hugo", "Catarina", "Andre", "Helena", "Diogo",
          "Laura", "Bruno", "Sara", "Ricardo", "Joana", "Filipe", "Teresa", "Luis", "Patricia", "Jose")
_LAST = ("Silva", "Santos", "Ferreira", "Pereira", "Oliveira", "Costa", "Rodrigues", "Martins",
         "Jesus", "Sousa", "Fernandes", "Goncalves", "Gomes", "Lopes", "Marques", "Alves", "Almeida",
         "Ribeiro", "Pinto", "Carvalho", "Teixeira", "Moreira", "Correia", "Mendes", "Nunes")
_OFFICE_SUFFIX = (" & Filhos, Lda", " Consulting", " Solutions", " Advogados", " Engenharia, SA")
_HORECA_PREFIX = ("Cafe ", "Hotel ", "Restaurante ", "Pastelaria ", "Bar ")
_CITIES = ("Lisbon", "Porto", "Braga", "Coimbra", "Faro", "Aveiro", "Setúbal", "Funchal", "Évora",
           "Viseu", "Leiria", "Guimarães")
_CITY_W = np.array([0.28, 0.2, 0.08, 0.07, 0.06, 0.06, 0.05, 0.05, 0.04, 0.04, 0.04, 0.03])
_DOMAINS = ("example.com", "example.pt", "mail.example.org")
_GROUPS = ("Retail", "Office", "HoReCa")

_DATE_UNIT = "datetime64[us]"

TRANSACTION_COLUMNS = ("invoice_id", "invoice_date", "customer_id", "product_id", "quantity", "revenue",
                       "store_id")
CUSTOMER_COLUMNS = ("customer_id", "customer_name", "customer_group", "city", "created_date", "email",
                    "mobile_number", "opt_email", "opt_sms", "opt_phone")
PRODUCT_COLUMNS = ("product_id", "product_name", "brand", "category", "unit_size")


# --------------------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------------------
def _digits(prefix: str, numbers: np.ndarray, width: int) -> pa.Array:
    """Arrow strings ``prefix + zero-padded number`` built from raw bytes (no Python objects)."""
    numbers = np.asarray(numbers, dtype=np.int64)
    n = len(numbers)
    head = prefix.encode()
    size = len(head) + width
    buf = np.empty((n, size), dtype=np.uint8)
    if head:
        buf[:, : len(head)] = np.frombuffer(head, dtype=np.uint8)
    x = numbers.copy()
    for i in range(width - 1, -1, -1):
        buf[:, len(head) + i] = 48 + x % 10
        x //= 10
    large = n * size >= 2**31 - 1
    offsets = np.arange(0, (n + 1) * size, size, dtype=np.int64 if large else np.int32)
    cls = pa.LargeStringArray if large else pa.StringArray
    return cls.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(buf))


def _str_series(arr: pa.Array | pa.ChunkedArray, mask: np.ndarray | None = None) -> pd.Series:
    """pandas ``str`` Series from arrow strings; ``mask`` True -> missing."""
    if mask is not None and mask.any():
        arr = pc.if_else(pa.array(mask), pa.scalar(None, arr.type), arr)
    return pd.Series(arr, dtype="str")


def _allocate(total: int, shares: np.ndarray) -> np.ndarray:
    """Split ``total`` by ``shares`` with the largest-remainder method (deterministic)."""
    if total <= 0:
        return np.zeros(len(shares), dtype=np.int64)
    raw = shares / shares.sum() * total
    counts = np.floor(raw).astype(np.int64)
    rest = total - counts.sum()
    if rest:
        order = np.lexsort((np.arange(len(raw)), -(raw - counts)))
        counts[order[:rest]] += 1
    return counts


def _pick(rng: np.random.Generator, weights, size: int) -> np.ndarray:
    w = np.asarray(weights, dtype=float)
    return rng.choice(len(w), size=size, p=w / w.sum())


def _month_start_days(start: np.datetime64, months: int) -> tuple[np.ndarray, np.ndarray]:
    """Days since epoch of the first day of each month, and days in each month."""
    mm = start + np.arange(months + 1)
    first = mm.astype("datetime64[D]").astype(np.int64)
    return first[:-1], np.diff(first)


# --------------------------------------------------------------------------------------------------
# timing of each persona (vectorised per persona)
# --------------------------------------------------------------------------------------------------
@dataclass
class _Timing:
    fc: np.ndarray  # first month of the active stretch (first core month); months = never
    la: np.ndarray  # last eligible month; -1 = never
    g0: np.ndarray  # silent gap [g0, g1): no purchases
    g1: np.ndarray
    dm: np.ndarray  # device month, -1 = no device line
    f_last: np.ndarray  # forced purchase month (churners: la; reactivators: g0 - 1), -1 = none
    f_back: np.ndarray  # forced purchase month (reactivators: g1), -1 = none


def _timing(kind: str, size: int, months: int, device_p: float, rng: np.random.Generator) -> _Timing:
    m_last = months - 1
    fc = np.zeros(size, dtype=np.int64)
    la = np.full(size, m_last, dtype=np.int64)
    g0 = np.zeros(size, dtype=np.int64)
    g1 = np.zeros(size, dtype=np.int64)
    f_last = np.full(size, -1, dtype=np.int64)
    f_back = np.full(size, -1, dtype=np.int64)
    lag = _pick(rng, (0.5, 0.3, 0.2), size)  # months from device to first pods
    no_device = np.zeros(size, dtype=bool)

    def uniform(lo, hi):  # inclusive integer range, element-wise, hi >= lo
        lo = np.broadcast_to(np.asarray(lo, dtype=np.int64), (size,))
        hi = np.maximum(np.broadcast_to(np.asarray(hi, dtype=np.int64), (size,)), lo)
        return lo + np.floor(rng.random(size) * (hi - lo + 1)).astype(np.int64)

    if kind in ("loyal", "walkin"):
        base = rng.random(size) < (0.4 if kind == "loyal" else 0.7)  # already customers at start
        fc = np.where(base, 0, uniform(1, max(1, months // 2)))
        fc = np.minimum(fc, m_last)
        no_device = base
    elif kind == "new":
        fc = uniform(0, m_last)
    elif kind == "new_last":
        fc = np.full(size, m_last, dtype=np.int64)
    elif kind in ("churn_recent", "churn_lost", "churn_any"):
        if kind == "churn_any":
            fc = uniform(0, max(0, months - 3))
            la = np.minimum(uniform(fc + 1, months - 2), m_last)
        else:
            silent = uniform(6, 11) if kind == "churn_recent" else uniform(12, 20)
            la = np.clip(m_last - silent, 0, m_last)
            fc = np.minimum(uniform(0, np.maximum(la - 2, 0)), la)
        f_last = la.copy()
    elif kind in ("reactivate", "reactivate_last"):
        gap = uniform(12, min(18, max(12, months - 2)))
        if kind == "reactivate_last":
            back = np.full(size, m_last, dtype=np.int64)
        else:
            back = uniform(gap + 1, m_last)
        g0_ = back - gap
        ok = (g0_ >= 1) & (back <= m_last)
        fc = np.where(ok, np.floor(rng.random(size) ** 2 * np.maximum(g0_, 1)).astype(np.int64), 0)
        g0 = np.where(ok, g0_, 0)
        g1 = np.where(ok, back, 0)
        f_last = np.where(ok, g0_ - 1, -1)
        f_back = np.where(ok, back, -1)
        # infeasible when the history is too short: they simply stay loyal
    elif kind == "device_only":
        fc = np.full(size, months, dtype=np.int64)
        la = np.full(size, -1, dtype=np.int64)
        dm = uniform(0, m_last)
        return _Timing(fc, la, g0, g1, dm, f_last, f_back)
    elif kind == "accessory_only":
        fc = uniform(0, m_last)
        no_device = np.ones(size, dtype=bool)
    elif kind == "never":
        fc = np.full(size, months, dtype=np.int64)
        la = np.full(size, -1, dtype=np.int64)
        no_device = np.ones(size, dtype=bool)
    else:  # pragma: no cover - programming error
        raise ValueError(f"unknown timing {kind!r}")

    has_device = ~no_device & (rng.random(size) < device_p)
    dm = np.where(has_device, fc - lag, -1)
    dm = np.where(dm < 0, -1, dm)  # device bought before the history starts: not in the data
    return _Timing(fc, la, g0, g1, dm, f_last, f_back)


# --------------------------------------------------------------------------------------------------
# main entry point
# --------------------------------------------------------------------------------------------------
def generate(
    n_customers: int = 3000,
    months: int = 36,
    end_month: str = "2025-12",
    seed: int = 42,
    target_transactions: int | None = None,
    messy: bool = True,
) -> dict[str, pd.DataFrame]:
    """Generate ``{"transactions", "customers", "products"}`` for ``months`` months ending ``end_month``.

    ``n_customers`` is the size of the customer master (plus one duplicated row when ``messy``),
    including the few anonymous ``General`` ids. ``target_transactions`` scales the purchase rates
    so the number of transaction lines lands close to it (within a few %).
    """
    if n_customers < 1:
        raise ValueError("n_customers must be at least 1")
    if months < 1:
        raise ValueError("months must be at least 1")
    if target_transactions is not None and target_transactions < 0:
        raise ValueError("target_transactions must be >= 0")
    rng = np.random.default_rng(seed)
    end = np.datetime64(end_month, "M")
    start = end - (months - 1)
    month_first, month_days = _month_start_days(start, months)
    end_day = int(month_first[-1] + month_days[-1] - 1)
    moy = (start + np.arange(months)).astype(np.int64) % 12  # 0 = January
    season = np.where(np.isin(moy, (10, 11)), 1.12, np.where(np.isin(moy, (6, 7)), 0.9, 1.0))

    # ---- products -------------------------------------------------------------------------------
    catalogue = _CATALOGUE + ((_GIFT_CARD,) if messy else ())
    codes = [row[0] for row in catalogue] + ([UNKNOWN_PRODUCT_ID] if messy else [])
    code_index = {c: i for i, c in enumerate(codes)}
    price = np.array([row[5] for row in catalogue] + ([0.0] if messy else []))
    unit_size = np.array([row[4] for row in catalogue] + ([1] if messy else []), dtype=np.int64)
    prod_rank = np.argsort(np.argsort(np.array(codes), kind="stable"), kind="stable")
    device_idx = np.array([code_index[c] for c in ("P1001", "P1002", "P1003", "P1004")])
    acc_idx = np.array([code_index[c] for c, _ in _ACC_MIX])
    acc_w = np.array([w for _, w in _ACC_MIX])

    # ---- actors: master customers by persona, General ids, walk-in pseudo customers -------------
    n_general = min(_N_GENERAL, max(1, n_customers // 50)) if n_customers > 1 else 0
    n_real = n_customers - n_general
    n_walkin = round(_WALKIN_SHARE * n_customers) if n_general else 0
    counts = _allocate(n_real, np.array([p.share for p in PERSONAS]))

    level_names = list(_LEVEL_NAMES)
    parts: dict[str, list[np.ndarray]] = {k: [] for k in
                                          ("persona", "level", "fc", "la", "g0", "g1", "dm", "fl", "fb")}

    def add(persona_id: int, persona: Persona | None, kind: str, size: int, levels, device_p: float):
        t = _timing(kind, size, months, device_p, rng)
        if levels:
            lv = np.array([level_names.index(name) for name, _ in levels])
            level = lv[_pick(rng, [w for _, w in levels], size)]
        else:
            level = np.full(size, -1)
        parts["persona"].append(np.full(size, persona_id))
        parts["level"].append(level)
        for key, arr in (("fc", t.fc), ("la", t.la), ("g0", t.g0), ("g1", t.g1), ("dm", t.dm),
                         ("fl", t.f_last), ("fb", t.f_back)):
            parts[key].append(arr)

    for pid, (persona, cnt) in enumerate(zip(PERSONAS, counts, strict=True)):
        add(pid, persona, persona.timing, int(cnt), persona.levels, persona.device_p)
    walkin_pid = len(PERSONAS)
    general_pid = walkin_pid + 1
    add(walkin_pid, None, "walkin", n_walkin, (("walkin", 1),), 0.0)
    add(general_pid, None, "never", n_general, (), 0.0)  # the General ids themselves never buy

    persona = np.concatenate(parts["persona"]).astype(np.int16)
    level = np.concatenate(parts["level"]).astype(np.int16)
    fc, la, g0, g1, dm, f_last, f_back = (np.concatenate(parts[k]) for k in
                                          ("fc", "la", "g0", "g1", "dm", "fl", "fb"))
    n_actors = len(persona)
    is_walkin = persona == walkin_pid
    is_general = persona == general_pid
    in_master = ~is_walkin
    has_level = level >= 0
    lvl = np.where(has_level, level, 0)

    # per-actor traits
    home = _pick(rng, _STORE_W, n_actors)
    general_actor = np.flatnonzero(is_general)
    if n_general:
        home[is_walkin] = rng.integers(0, n_general, size=int(is_walkin.sum()))
        home[general_actor] = np.arange(n_general)
    vol_floor = np.array([LEVELS[k].vol_floor for k in level_names])[lvl]
    vol_mult = np.clip(rng.lognormal(0.0, 0.2, n_actors), vol_floor, 1.5)

    # ---- level parameter tables -----------------------------------------------------------------
    n_levels = len(level_names)
    lp = np.array([LEVELS[k].p for k in level_names])
    le = np.array([LEVELS[k].extra for k in level_names])
    lines_per_order = np.array([1 + (LEVELS[k].p_second if len(LEVELS[k].packs) > 1 else 0)
                                + LEVELS[k].p_acc for k in level_names])

    def eligible(m: int) -> tuple[np.ndarray, np.ndarray]:
        el = has_level & (fc <= m) & (m <= la) & ~((g0 <= m) & (m < g1))
        forced = el & ((fc == m) | (f_last == m) | (f_back == m))
        return el, forced

    n_free = np.zeros((n_levels, months))
    n_forced = np.zeros((n_levels, months))
    for m in range(months):
        el, forced = eligible(m)
        n_free[:, m] = np.bincount(lvl[el & ~forced], minlength=n_levels)
        n_forced[:, m] = np.bincount(lvl[forced], minlength=n_levels)

    def rates(s: float) -> tuple[np.ndarray, np.ndarray]:
        mean = (lp * (1 + le))[:, None] * s * season[None, :]  # expected orders, free month
        p_eff = np.minimum(1.0, lp[:, None] * s * season[None, :])
        extra = np.where(p_eff > 0, mean / np.maximum(p_eff, 1e-12) - 1.0, le[:, None])
        return p_eff, np.maximum(extra, 0.0)

    dev_actor = np.flatnonzero((dm >= 0) & (dm < months))
    extra_rate = _RETURN_RATE + _ZERO_RATE + (_GIFT_RATE if messy else 0.0)

    def expected_lines(s: float) -> float:
        p_eff, extra = rates(s)
        orders = n_free * p_eff * (1 + extra) + n_forced * (1 + extra)
        sales = float((orders * lines_per_order[:, None]).sum()) + len(dev_actor) * (1 + _P_DEVICE_ACC)
        return sales * (1 + extra_rate)

    scale = 1.0
    if target_transactions is not None:
        lo, hi = 0.0, 1.0
        while expected_lines(hi) < target_transactions and hi < 1e6:
            hi *= 2
        if expected_lines(lo) >= target_transactions:
            scale = 0.0
        else:
            for _ in range(60):
                mid = (lo + hi) / 2
                lo, hi = (mid, hi) if expected_lines(mid) < target_transactions else (lo, mid)
            scale = (lo + hi) / 2
    vol_scale = float(np.clip(1.0 / scale, 1 / 3, 3.0)) if scale > 0 else 3.0
    p_eff, extra = rates(scale)

    # ---- device invoices --------------------------------------------------------------------------
    dev_w = np.array([LEVELS[k].devices for k in level_names] + [_NO_LEVEL_DEVICES])
    dev_row = np.where(has_level, lvl, n_levels)[dev_actor]
    dev_choice = np.empty(len(dev_actor), dtype=np.int64)
    for r in np.unique(dev_row):
        sel = dev_row == r
        dev_choice[sel] = device_idx[_pick(rng, dev_w[r], int(sel.sum()))]
    dev_month = dm[dev_actor]
    dev_day = np.floor(rng.random(len(dev_actor)) * month_days[dev_month]).astype(np.int64)
    actor_dev_day = np.full(n_actors, -1, dtype=np.int64)
    actor_dev_day[dev_actor] = dev_day

    # ---- core / accessory orders, one month at a time ---------------------------------------------
    o_actor_parts, o_month_parts = [], []
    for m in range(months):
        el, forced = eligible(m)
        idx = np.flatnonzero(el)
        k = lvl[idx]
        buy = forced[idx] | (rng.random(len(idx)) < p_eff[k, m])
        idx, k = idx[buy], k[buy]
        n_ord = 1 + rng.poisson(extra[k, m])
        o_actor_parts.append(np.repeat(idx, n_ord))
        o_month_parts.append(np.full(int(n_ord.sum()), m, dtype=np.int64))
    o_actor = np.concatenate(o_actor_parts) if o_actor_parts else np.zeros(0, dtype=np.int64)
    o_month = np.concatenate(o_month_parts) if o_month_parts else np.zeros(0, dtype=np.int64)
    del o_actor_parts, o_month_parts
    n_orders = len(o_actor)
    # the day: after the device purchase when both fall in the same month
    lb = np.where(dm[o_actor] == o_month, np.maximum(actor_dev_day[o_actor], 0), 0)
    o_day = lb + np.floor(rng.random(n_orders) * (month_days[o_month] - lb)).astype(np.int64)
    o_level = lvl[o_actor]

    # lines of the orders (per level: pack choice, second line, accessory line)
    l_order, l_prod, l_qty = [], [], []
    for ki, name in enumerate(level_names):
        sel = np.flatnonzero(o_level == ki)
        if not len(sel):
            continue
        spec = LEVELS[name]
        lo_u, hi_u = spec.units
        units = (lo_u + rng.random(len(sel)) * (hi_u - lo_u)) * vol_mult[o_actor[sel]]
        if name != "accessory":
            units = units * vol_scale
        pack_idx = np.array([code_index[c] for c, _ in spec.packs])
        main = _pick(rng, [w for _, w in spec.packs], len(sel))
        n_p = len(pack_idx)
        second = (rng.random(len(sel)) < spec.p_second) if n_p > 1 else np.zeros(len(sel), dtype=bool)
        frac = np.where(second, 0.55 + 0.3 * rng.random(len(sel)), 1.0)
        p_main = pack_idx[main]
        q_main = np.maximum(1, np.rint(units * frac / unit_size[p_main])).astype(np.int64)
        l_order.append(sel)
        l_prod.append(p_main)
        l_qty.append(q_main)
        if second.any():
            s_sel = np.flatnonzero(second)
            other = (main[s_sel] + 1 + rng.integers(0, n_p - 1, size=len(s_sel))) % n_p
            p_sec = pack_idx[other]
            q_sec = np.maximum(1, np.rint(units[s_sel] * (1 - frac[s_sel]) / unit_size[p_sec]))
            l_order.append(sel[s_sel])
            l_prod.append(p_sec)
            l_qty.append(q_sec.astype(np.int64))
        if spec.p_acc > 0:
            a_sel = np.flatnonzero(rng.random(len(sel)) < spec.p_acc)
            l_order.append(sel[a_sel])
            l_prod.append(acc_idx[_pick(rng, acc_w, len(a_sel))])
            l_qty.append(np.where(rng.random(len(a_sel)) < 0.9, 1, 2))

    # device orders appended after the core orders; their lines: device (+ accessory)
    n_dev = len(dev_actor)
    dev_order = n_orders + np.arange(n_dev)
    l_order.append(dev_order)
    l_prod.append(dev_choice)
    l_qty.append(np.ones(n_dev, dtype=np.int64))
    acc_on_dev = np.flatnonzero(rng.random(n_dev) < _P_DEVICE_ACC)
    l_order.append(dev_order[acc_on_dev])
    l_prod.append(acc_idx[_pick(rng, acc_w, len(acc_on_dev))])
    l_qty.append(np.ones(len(acc_on_dev), dtype=np.int64))

    inv_actor = np.concatenate([o_actor, dev_actor])
    inv_date = np.concatenate([month_first[o_month] + o_day, month_first[dev_month] + dev_day])
    del o_month, o_day, lb, o_level
    n_inv = len(inv_actor)
    away = rng.random(n_inv) >= _P_HOME_STORE
    inv_store = home[inv_actor].copy()
    movable = away & ~is_walkin[inv_actor]
    inv_store[movable] = _pick(rng, _STORE_W, int(movable.sum()))

    line_inv = np.concatenate(l_order).astype(np.int64)
    line_prod = np.concatenate(l_prod).astype(np.int64)
    line_qty = np.concatenate(l_qty).astype(np.int64)
    del l_order, l_prod, l_qty
    disc = _DISCOUNTS[_pick(rng, _DISCOUNT_W, len(line_inv))]
    disc[is_walkin[inv_actor[line_inv]]] = 0.0
    line_rev = np.round(line_qty * price[line_prod] * (1 - disc), 2)
    del disc

    # ---- customer ids ---------------------------------------------------------------------------
    master_actor = np.flatnonzero(in_master)  # one master row per actor in the master
    n_master = len(master_actor)
    n_unknown = max(3, round(n_customers / 1000)) if messy else 0
    width = max(6, len(str(n_master + n_unknown * 7 + 1000)))
    numbers = rng.permutation(n_master) + 1
    legacy = (rng.random(n_master) < _LEGACY_ID_RATE) if messy else np.zeros(n_master, dtype=bool)
    legacy &= ~is_general[master_actor]
    unknown_numbers = n_master + 1 + np.arange(n_unknown) * 7 + rng.integers(0, 7, size=n_unknown)
    id_c = _digits("C", np.concatenate([numbers, unknown_numbers]), width)
    id_d = _digits("", np.concatenate([numbers, unknown_numbers]), width + 2)
    id_all = pc.if_else(pa.array(np.concatenate([legacy, np.zeros(n_unknown, dtype=bool)])), id_d, id_c)
    # actor -> id row (walk-ins are booked on their store's General id)
    actor_cid = np.full(n_actors, -1, dtype=np.int64)
    actor_cid[master_actor] = np.arange(n_master)
    if n_general:
        general_cid = actor_cid[general_actor]
        actor_cid[is_walkin] = general_cid[home[is_walkin]]
    inv_cid = actor_cid[inv_actor]
    if messy and n_unknown:
        rel = np.flatnonzero(rng.random(n_inv) < _UNKNOWN_CUSTOMER_RATE)
        inv_cid[rel] = n_master + rng.integers(0, n_unknown, size=len(rel))

    # first activity of each actor (for created_date)
    first_day = np.full(n_actors, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(first_day, inv_actor, inv_date)

    # ---- gift cards (messy), voided orders and returns: new invoices ------------------------------
    n_sales_lines = len(line_inv)
    new_inv_cid, new_inv_date, new_inv_store = [], [], []
    new_line_prod, new_line_qty, new_line_rev = [], [], []

    if messy:
        n_gift = max(2, round(_GIFT_RATE * n_sales_lines))
        buyers = np.flatnonzero(in_master & ~is_general & (persona != len(PERSONAS) - 1))  # not "never"
        if len(buyers):
            g_actor = buyers[rng.integers(0, len(buyers), size=n_gift)]
            g_qty = np.where(rng.random(n_gift) < 0.8, 1, 2)
            new_inv_cid.append(actor_cid[g_actor])
            new_inv_date.append(month_first[0] + rng.integers(0, end_day - month_first[0] + 1, n_gift))
            new_inv_store.append(home[g_actor])
            new_line_prod.append(np.full(n_gift, code_index[_GIFT_CARD[0]]))
            new_line_qty.append(g_qty)
            new_line_rev.append(np.round(g_qty * _GIFT_CARD[5], 2))

    zero = np.flatnonzero(rng.random(n_sales_lines) < _ZERO_RATE)
    zi = line_inv[zero]
    new_inv_cid.append(inv_cid[zi])
    new_inv_date.append(inv_date[zi])
    new_inv_store.append(inv_store[zi])
    new_line_prod.append(line_prod[zero])
    new_line_qty.append(np.zeros(len(zero), dtype=np.int64))
    new_line_rev.append(np.zeros(len(zero)))

    ret = np.flatnonzero(rng.random(n_sales_lines) < _RETURN_RATE)
    ri = line_inv[ret]
    r_date = inv_date[ri] + rng.integers(1, _RETURN_MAX_DAYS + 1, size=len(ret))
    keep = r_date <= end_day
    ret, ri, r_date = ret[keep], ri[keep], r_date[keep]
    q = line_qty[ret]
    partial = rng.random(len(ret)) < 0.35
    r_qty = np.where(partial, 1 + np.floor(rng.random(len(ret)) * q).astype(np.int64), q)
    r_qty = np.minimum(r_qty, q)
    r_rev = np.where(r_qty == q, line_rev[ret], np.round(line_rev[ret] / q * r_qty, 2))
    new_inv_cid.append(inv_cid[ri])
    new_inv_date.append(r_date)
    new_inv_store.append(inv_store[ri])
    new_line_prod.append(line_prod[ret])
    new_line_qty.append(-r_qty)
    new_line_rev.append(-r_rev)

    # single-line invoices appended after the sales invoices
    add_cid = np.concatenate(new_inv_cid)
    n_add = len(add_cid)
    line_inv = np.concatenate([line_inv, n_inv + np.arange(n_add)])
    inv_cid = np.concatenate([inv_cid, add_cid])
    inv_date = np.concatenate([inv_date, *new_inv_date])
    inv_store = np.concatenate([inv_store, *new_inv_store])
    line_prod = np.concatenate([line_prod, *new_line_prod])
    line_qty = np.concatenate([line_qty, *new_line_qty])
    line_rev = np.concatenate([line_rev, *new_line_rev]) + 0.0  # no negative zeros
    del new_inv_cid, new_inv_date, new_inv_store, new_line_prod, new_line_qty, new_line_rev
    n_inv += n_add

    # unknown product on a few main lines of sales invoices (one per invoice)
    if messy and n_orders:
        first_line = np.flatnonzero(np.r_[True, line_inv[1:n_sales_lines] != line_inv[:n_sales_lines - 1]])
        pick = rng.choice(first_line, size=min(_N_UNKNOWN_PRODUCT_LINES, len(first_line)), replace=False)
        line_prod[pick] = code_index[UNKNOWN_PRODUCT_ID]

    # ---- invoice numbers in date order, lines sorted by (date, invoice, product) ------------------
    inv_order = np.lexsort((rng.random(n_inv), inv_date))
    inv_no = np.empty(n_inv, dtype=np.int64)
    inv_no[inv_order] = np.arange(1, n_inv + 1)
    del inv_order
    line_no = inv_no[line_inv]
    order = np.lexsort((prod_rank[line_prod], line_no))
    line_no = line_no[order]
    line_inv = line_inv[order]
    line_prod = line_prod[order]
    line_qty = line_qty[order]
    line_rev = line_rev[order]
    del order

    inv_width = max(7, len(str(n_inv)))
    transactions = pd.DataFrame(
        {
            "invoice_id": _str_series(_digits("INV", line_no, inv_width)),
            "invoice_date": pd.Series(inv_date[line_inv].astype("datetime64[D]").astype(_DATE_UNIT)),
            "customer_id": _str_series(id_all.take(pa.array(inv_cid[line_inv]))),
            "product_id": _str_series(pa.array(codes, pa.string()).take(pa.array(line_prod))),
            "quantity": pd.Series(line_qty, dtype=np.int64),
            "revenue": pd.Series(line_rev, dtype=np.float64),
            "store_id": _str_series(pa.array(_STORES, pa.string()).take(pa.array(inv_store[line_inv]))),
        },
        copy=False,
    )
    del line_no, line_inv, line_prod, line_qty, line_rev

    customers = _customers(
        rng=rng,
        messy=messy,
        ids=id_all.slice(0, n_master),
        master_actor=master_actor,
        numbers=numbers,
        legacy=legacy,
        level=level,
        is_general=is_general,
        home=home,
        first_day=first_day,
        fc=fc,
        dm=dm,
        month_first=month_first,
        end_day=end_day,
    )

    products = pd.DataFrame(
        {
            "product_id": pd.Series([r[0] for r in catalogue], dtype="str"),
            "product_name": pd.Series([r[1] for r in catalogue], dtype="str"),
            "brand": pd.Series([r[2] for r in catalogue], dtype="str"),
            "category": pd.Series([r[3] for r in catalogue], dtype="str"),
            "unit_size": pd.Series([r[4] for r in catalogue], dtype=np.int64),
        }
    )
    products = products.sort_values("product_id", kind="stable", ignore_index=True)
    return {"transactions": transactions, "customers": customers, "products": products}


def _customers(*, rng, messy, ids, master_actor, numbers, legacy, level, is_general, home, first_day, fc,
               dm, month_first, end_day) -> pd.DataFrame:
    """The customer master, one row per master actor (+ one duplicated row when messy)."""
    n = len(master_actor)
    lv = level[master_actor]
    gen = is_general[master_actor]
    level_names = list(_LEVEL_NAMES)

    group_w = np.array([LEVELS[k].groups for k in level_names] + [_NO_LEVEL_GROUPS])
    g_row = np.where(lv >= 0, lv, len(level_names))
    group = np.zeros(n, dtype=np.int64)
    for r in np.unique(g_row):
        sel = g_row == r
        group[sel] = _pick(rng, group_w[r], int(sel.sum()))

    first = rng.integers(0, len(_FIRST), n)
    last = rng.integers(0, len(_LAST), n)
    first_a = pa.array(_FIRST, pa.string()).take(pa.array(first))
    last_a = pa.array(_LAST, pa.string()).take(pa.array(last))
    person = pc.binary_join_element_wise(first_a, last_a, " ")

    def draw(values: tuple[str, ...]) -> pa.Array:
        return pa.array(values, pa.string()).take(pa.array(rng.integers(0, len(values), n)))

    office = pc.binary_join_element_wise(last_a, draw(_OFFICE_SUFFIX), "")
    horeca = pc.binary_join_element_wise(draw(_HORECA_PREFIX), draw(_FIRST), "")
    name = pc.if_else(pa.array(group == 1), office, pc.if_else(pa.array(group == 2), horeca, person))
    walk_names = pa.array([f"Walk-in {s}" for s in _STORES], pa.string()).take(pa.array(home[master_actor]))
    name = pc.if_else(pa.array(gen), walk_names, name)

    group_code = np.where(gen, 3, group)
    group_a = pa.array([*_GROUPS, ANONYMOUS_GROUP], pa.string()).take(pa.array(group_code))
    blank = np.zeros(n, dtype=bool)
    if messy:
        blank = (rng.random(n) < _BLANK_GROUP_RATE) & ~gen
        if not blank.any() and (~gen).sum():
            blank[rng.choice(np.flatnonzero(~gen))] = True
        gen_rows = np.flatnonzero(gen)
        if len(gen_rows) > 1:  # one anonymous id keyed in with another spelling
            spelt = np.zeros(n, dtype=bool)
            spelt[gen_rows[-1]] = True
            group_a = pc.if_else(pa.array(spelt), pa.scalar("general "), group_a)

    city = pa.array(_CITIES, pa.string()).take(pa.array(_pick(rng, _CITY_W, n)))

    slug = pc.utf8_lower(pc.binary_join_element_wise(first_a, last_a, "."))
    mail_no = pc.cast(pa.array(rng.integers(1, 1000, n)), pa.string())
    domain = pa.array(_DOMAINS, pa.string()).take(pa.array(rng.integers(0, len(_DOMAINS), n)))
    email = pc.binary_join_element_wise(pc.binary_join_element_wise(slug, mail_no, ""), domain, "@")
    no_email = (rng.random(n) < 0.12) | gen
    mobile = _digits("09", rng.integers(0, 10**8, n), 8)
    no_mobile = (rng.random(n) < 0.1) | gen

    # created: up to 60 days before the first activity; long before the start for the existing base
    start_day = int(month_first[0])
    fd = first_day[master_actor]
    bought = fd < np.iinfo(np.int64).max
    base = (fc[master_actor] == 0) & (dm[master_actor] < 0) & (lv >= 0)
    lead = np.where(rng.random(n) < 0.5, 0, rng.integers(0, 61, n))
    created = np.where(bought, fd - lead, start_day + rng.integers(-365, end_day - start_day + 1, n))
    created = np.where(base & bought, np.minimum(created, start_day - rng.integers(1, 3 * 365, n)), created)
    created = np.where(gen, start_day - 3 * 365, created)

    def opt(p_yes: float) -> pd.Series:
        vals = pd.array((rng.random(n) < p_yes).astype(np.int64), dtype="Int64")
        vals[rng.random(n) < 0.06] = pd.NA
        vals[gen] = pd.NA
        return pd.Series(vals)

    frame = pd.DataFrame(
        {
            "customer_id": _str_series(ids),
            "customer_name": _str_series(name),
            "customer_group": _str_series(group_a, blank),
            "city": _str_series(city),
            "created_date": pd.Series(created.astype("datetime64[D]").astype(_DATE_UNIT)),
            "email": _str_series(email, no_email),
            "mobile_number": _str_series(mobile, no_mobile),
            "opt_email": opt(0.55),
            "opt_sms": opt(0.4),
            "opt_phone": opt(0.25),
        },
        copy=False,
    )
    # sort by id: digit-only legacy ids ("000...") sort before "C..." ids; equal widths sort numerically
    order = np.lexsort((numbers, ~legacy))
    if messy and n > 1:  # one customer keyed twice
        dup = int(rng.integers(0, n))
        pos = int(np.flatnonzero(order == dup)[0])
        order = np.insert(order, pos, dup)
    return frame.take(order).reset_index(drop=True)


# --------------------------------------------------------------------------------------------------
# CSV output
# --------------------------------------------------------------------------------------------------
def write_csv(tables: dict[str, pd.DataFrame], folder) -> dict[str, Path]:
    """Write ``transactions.csv``, ``customers.csv``, ``products.csv`` into ``folder``.

    UTF-8, ``\\n`` line ends, no index, dates as ``yyyy-mm-dd``, missing values as empty fields:
    the same tables always give the same bytes. Read back with ``dtype=str`` to keep leading zeros.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {}
    for name in ("transactions", "customers", "products"):
        if name not in tables:
            continue
        path = folder / f"{name}.csv"
        tables[name].to_csv(path, index=False, date_format="%Y-%m-%d", lineterminator="\n",
                            encoding="utf-8", chunksize=1_000_000)
        out[name] = path
    return out


def _main(argv: list[str] | None = None) -> int:  # pragma: no cover - convenience CLI
    import argparse

    ap = argparse.ArgumentParser(description="Write a synthetic CRM sample as CSV files.")
    ap.add_argument("folder")
    ap.add_argument("--customers", type=int, default=3000)
    ap.add_argument("--months", type=int, default=36)
    ap.add_argument("--end-month", default="2025-12")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--target-transactions", type=int, default=None)
    ap.add_argument("--clean", action="store_true", help="no deliberate data-quality problems")
    a = ap.parse_args(argv)
    tables = generate(a.customers, a.months, a.end_month, a.seed, a.target_transactions, messy=not a.clean)
    for name, path in write_csv(tables, a.folder).items():
        print(f"{name}: {len(tables[name]):,} rows -> {path}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(_main())

