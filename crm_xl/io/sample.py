"""Seeded, persona-driven synthetic CRM data: transactions, customer master, product master.

The generator models a coffee-machine brand: customers buy a device once and then pods, beans and
ground coffee for years, plus the odd accessory or spare part. Every customer of the master is a
*persona* (a share of the base) with its own monthly purchase probability, order size, pack choice,
start month, churn month and silent gap, chosen so that the reference business rules of the product
brief (value tiers, lifecycle events and states, the 11 RFM segments) all occur, both in the last
report month and across the history.

Everything is vectorised with numpy (loops run per month, per persona or per behaviour level, never
per customer or per line): ten million lines take seconds and about 180 MB per million lines.
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
leading zeros (``"0001234"``). Returns (a few % of the lines, negative quantity and revenue,
dated after the purchase they return) and a few zero-quantity lines (voided orders) are always
there.

``target_transactions`` scales every persona's monthly order rate by one factor, solved on the
expected line count, and divides the order size by the same factor (within 1/3 .. 3) so that the
value tiers stay roughly where the personas put them. Devices and forced first purchases set a floor
(a warning says so when the target is below it). A Lost event needs 13 months of history and a
reactivation 14, so shorter histories (e.g. the 12-month benchmark) have neither.

``python -m crm_xl.io.sample FOLDER [--customers N --months M --target-transactions T --clean]``
writes the three CSV files.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from crm_xl.errors import InputError
from crm_xl.io.files import replace_atomically

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
    "walkin": Level(0.6, 0.5, (10, 40), (("P2010", 0.4), ("P2011", 0.2), ("P2012", 0.1),
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
_WALKIN_SHARE = 0.02
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
def _digits(prefix: str, numbers: np.ndarray, width: int, first: np.ndarray | None = None) -> pa.Array:
    """Arrow strings ``prefix + zero-padded number`` built from raw bytes (no Python objects).

    ``first`` (uint8 per row) replaces the first byte of each string, e.g. ``ord("0")`` for a
    digit-only legacy id of the same width.
    """
    numbers = np.asarray(numbers)
    n = len(numbers)
    head = prefix.encode()
    h = len(head)
    size = h + width
    buf = np.empty((n, size), dtype=np.uint8)
    if h:
        buf[:, :h] = np.frombuffer(head, dtype=np.uint8)
    kind = np.uint64 if n and int(numbers.max()) >= 2**32 else np.uint32
    x = numbers.astype(kind)
    q = np.empty(n, dtype=kind)
    digit = np.empty(n, dtype=kind)
    for j in range(size - 1, h - 1, -1):  # one digit per pass, in place
        np.floor_divide(x, 10, out=q)
        np.multiply(q, 10, out=digit)
        np.subtract(x, digit, out=digit)
        digit += 48
        buf[:, j] = digit
        x, q = q, x
    if first is not None:
        buf[:, 0] = first
    return _fixed_width(buf)


def _fixed_width(buf: np.ndarray) -> pa.Array:
    """Arrow large strings (what pandas' ``str`` dtype holds) from an (n, width) uint8 array."""
    n, size = buf.shape
    offsets = np.arange(0, (n + 1) * size, size, dtype=np.int64)
    return pa.LargeStringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(np.ascontiguousarray(buf)))


def _str_series(arr: pa.Array, mask: np.ndarray | None = None) -> pd.Series:
    """pandas ``str`` Series from arrow strings; ``mask`` True -> missing."""
    if mask is not None and mask.any():
        arr = pc.if_else(pa.array(mask), pa.scalar(None, arr.type), arr)
    return pd.Series(arr, dtype="str")


def _sep(text: str) -> pa.Scalar:
    return pa.scalar(text, pa.large_string())


def _take(values, idx: np.ndarray) -> pa.Array:
    """Arrow strings ``values[idx]`` (byte copies when all values have the same length)."""
    encoded = [v.encode() for v in values]
    if len({len(v) for v in encoded}) == 1:
        table = np.frombuffer(b"".join(encoded), dtype=np.uint8).reshape(len(encoded), -1)
        return _fixed_width(table[np.asarray(idx)])
    return pa.array(list(values), pa.large_string()).take(pa.array(idx))


def _allocate(total: int, shares: np.ndarray) -> np.ndarray:
    """Split ``total`` by ``shares`` with the largest-remainder method (deterministic)."""
    if total <= 0:
        return np.zeros(len(shares), dtype=np.int64)
    raw = shares / shares.sum() * total
    counts = np.floor(raw).astype(np.int64)
    rest = total - int(counts.sum())
    if rest:
        order = np.lexsort((np.arange(len(raw)), -(raw - counts)))
        counts[order[:rest]] += 1
    return counts


def _pick(rng: np.random.Generator, weights, size: int) -> np.ndarray:
    """Indices drawn with the given weights (inverse CDF: faster than ``rng.choice(p=...)``)."""
    w = np.asarray(weights, dtype=float)
    cdf = np.cumsum(w / w.sum())
    return np.minimum(np.searchsorted(cdf, rng.random(size), side="right"), len(w) - 1)


def _month_start_days(start: np.datetime64, months: int) -> tuple[np.ndarray, np.ndarray]:
    """Days since epoch of the first day of each month, and days in each month."""
    first = (start + np.arange(months + 1)).astype("datetime64[D]").astype(np.int64)
    return first[:-1], np.diff(first)


def _as_dates(days: np.ndarray) -> pd.Series:
    return pd.Series(days.astype("datetime64[D]").astype(_DATE_UNIT))


# --------------------------------------------------------------------------------------------------
# timing of each persona (vectorised per persona)
# --------------------------------------------------------------------------------------------------
@dataclass
class _Timing:
    fc: np.ndarray  # first month of the active stretch (= first core month); months = never
    la: np.ndarray  # last eligible month; -1 = never
    g0: np.ndarray  # silent gap [g0, g1): no purchases
    g1: np.ndarray
    dm: np.ndarray  # device month, -1 = no device line
    f_last: np.ndarray  # forced purchase (churners: la; reactivators: g0 - 1), -1 = none
    f_back: np.ndarray  # forced purchase (reactivators: g1, the month they come back), -1 = none


def _timing(kind: str, size: int, months: int, device_p: float, rng: np.random.Generator) -> _Timing:
    m_last = months - 1
    fc = np.zeros(size, dtype=np.int64)
    la = np.full(size, m_last, dtype=np.int64)
    g0 = np.zeros(size, dtype=np.int64)
    g1 = np.zeros(size, dtype=np.int64)
    f_last = np.full(size, -1, dtype=np.int64)
    f_back = np.full(size, -1, dtype=np.int64)
    lag = _pick(rng, (0.5, 0.3, 0.2), size)  # months from the device to the first pods
    no_device = np.zeros(size, dtype=bool)

    def uniform(lo, hi) -> np.ndarray:  # element-wise integer in lo..hi (inclusive; hi < lo -> lo)
        lo = np.broadcast_to(np.asarray(lo, dtype=np.int64), (size,))
        hi = np.maximum(np.broadcast_to(np.asarray(hi, dtype=np.int64), (size,)), lo)
        return lo + np.floor(rng.random(size) * (hi - lo + 1)).astype(np.int64)

    if kind in ("loyal", "walkin"):
        base = rng.random(size) < (0.4 if kind == "loyal" else 0.7)  # customers before the data starts
        fc = np.minimum(np.where(base, 0, uniform(1, max(1, months // 2))), m_last)
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
        gap = uniform(12, min(18, max(12, months - 2)))  # whole silent months
        back = np.full(size, m_last) if kind == "reactivate_last" else uniform(gap + 1, m_last)
        start_gap = back - gap
        ok = start_gap >= 1  # too short a history: they simply stay loyal
        fc = np.where(ok, np.floor(rng.random(size) ** 2 * np.maximum(start_gap, 1)).astype(np.int64), 0)
        g0 = np.where(ok, start_gap, 0)
        g1 = np.where(ok, back, 0)
        f_last = np.where(ok, start_gap - 1, -1)
        f_back = np.where(ok, back, -1)
    elif kind == "device_only":
        dm = uniform(0, m_last)
        return _Timing(np.full(size, months), np.full(size, -1), g0, g1, dm, f_last, f_back)
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
    dm = np.where(dm < 0, -1, dm)  # device bought before the data starts: not in the data
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

    ``n_customers`` is the size of the customer master including the few anonymous ``General``
    ids (plus one duplicated row when ``messy``). ``target_transactions`` scales the purchase rates
    so that the number of transaction lines lands close to it (within a few %; the expected count
    is solved exactly, only the random draws differ). ``messy`` adds the deliberate data-quality
    problems listed in the module docstring. Same arguments -> identical frames.
    """
    # The steps share one random generator: their order (and the order of the draws inside each
    # step) is what makes a seed reproduce the same frames, so do not reorder them.
    _check_arguments(n_customers, months, target_transactions, end_month, seed)
    rng = np.random.default_rng(seed)
    cal = _calendar(end_month, months)
    cat = _catalogue(messy)
    actors = _actors(rng, n_customers, months)
    sales = _sales(rng, actors, cal, cat, n_customers, target_transactions, messy)

    ids = _customer_ids(rng, messy, n_customers, actors)
    inv = {"cid": _invoice_customers(rng, messy, ids, sales.inv_actor), "date": sales.inv_date,
           "store": sales.inv_store}
    first_day = _first_activity_day(len(actors.persona), sales.inv_actor, sales.inv_date)
    lines, n_orders = sales.lines, sales.n_orders
    del sales  # inv and lines now own the big arrays; they are replaced (not copied) from here on

    n_sales = len(lines["inv"])
    returned = _add_single_line_invoices(rng, messy, actors, ids, cal, cat, inv, lines)
    if messy and n_orders:
        _plant_unknown_products(rng, lines, n_sales, n_orders, returned, cat)
    transactions = _assemble_transactions(rng, cat.codes, cat.rank, (ids.number, ids.first, ids.width), inv,
                                          lines, cal.first_day)

    n_master = len(ids.master_actor)
    customers = _customers(
        rng=rng, messy=messy, ids=_digits("C", ids.numbers, ids.width, ids.first[:n_master]),
        master_actor=ids.master_actor, numbers=ids.numbers, legacy=ids.legacy, level=actors.level,
        is_general=actors.is_general, home=actors.home, first_day=first_day, fc=actors.fc, dm=actors.dm,
        start_day=cal.first_day, end_day=cal.end_day)
    return {"transactions": transactions, "customers": customers, "products": _products_frame(cat.rows)}


def _check_arguments(n_customers: int, months: int, target_transactions: int | None, end_month: str = "2025-12",
                     seed: int = 0) -> None:
    """An :class:`InputError` (a ValueError) naming the argument and its ``crm-xl sample`` flag."""
    def bad(argument: str, flag: str, expected: str, got: object) -> InputError:
        return InputError("sample", f"{argument} (--{flag}) must be {expected}, got {got!r}")

    if n_customers < 1:
        raise bad("n_customers", "customers", "at least 1", n_customers)
    if months < 1:
        raise bad("months", "months", "at least 1", months)
    if target_transactions is not None and target_transactions < 0:
        raise bad("target_transactions", "transactions", ">= 0", target_transactions)
    if seed < 0:
        raise bad("seed", "seed", ">= 0", seed)
    found = re.fullmatch(r"(\d{4})-(\d{2})", str(end_month))
    if not found or not 1 <= int(found.group(2)) <= 12 or int(found.group(1)) < 1900:
        raise bad("end_month", "end-month", "a month YYYY-MM from 1900-01", end_month)


# --------------------------------------------------------------------------------------------------
# calendar and product catalogue
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Calendar:
    """The months of the history; days are counted since 1970-01-01."""

    month_first: np.ndarray  # first day of each month
    month_days: np.ndarray  # number of days in each month
    first_day: int  # first day of the history
    end_day: int  # last day of the history (last day of the end month)
    season: np.ndarray  # order-rate multiplier of each month


def _calendar(end_month: str, months: int) -> _Calendar:
    """``months`` months ending ``end_month``; busier in November-December, quieter in July-August."""
    end = np.datetime64(end_month, "M")
    start = end - (months - 1)
    month_first, month_days = _month_start_days(start, months)
    moy = (start + np.arange(months)).astype(np.int64) % 12  # 0 = January
    season = np.where(np.isin(moy, (10, 11)), 1.12, np.where(np.isin(moy, (6, 7)), 0.9, 1.0))
    return _Calendar(month_first=month_first, month_days=month_days, first_day=int(month_first[0]),
                     end_day=int(month_first[-1] + month_days[-1] - 1), season=season)


@dataclass(frozen=True)
class _Catalogue:
    """The products as arrays indexed by product number (the position of the id in ``codes``)."""

    rows: tuple[tuple[str, str, str, str, int, float], ...]  # the product master
    codes: list[str]  # product ids: the master's, then the unknown id (messy only; sold, not in the master)
    code_index: dict[str, int]  # product id -> product number
    price: np.ndarray
    unit_size: np.ndarray
    rank: np.ndarray  # int16 position of each id in sorted order (orders the lines of an invoice)
    device_idx: np.ndarray  # product numbers of P1001..P1004
    acc_idx: np.ndarray  # product numbers of the accessory / spare-part mix (_ACC_MIX)
    acc_w: np.ndarray  # weights of the accessory / spare-part mix


def _catalogue(messy: bool) -> _Catalogue:
    rows = _CATALOGUE + ((_GIFT_CARD,) if messy else ())
    codes = [row[0] for row in rows] + ([UNKNOWN_PRODUCT_ID] if messy else [])
    code_index = {c: i for i, c in enumerate(codes)}
    return _Catalogue(
        rows=rows,
        codes=codes,
        code_index=code_index,
        price=np.array([row[5] for row in rows] + ([0.0] if messy else [])),
        unit_size=np.array([row[4] for row in rows] + ([1] if messy else []), dtype=np.int64),
        rank=np.argsort(np.argsort(np.array(codes), kind="stable"), kind="stable").astype(np.int16),
        device_idx=np.array([code_index[c] for c in ("P1001", "P1002", "P1003", "P1004")]),
        acc_idx=np.array([code_index[c] for c, _ in _ACC_MIX]),
        acc_w=np.array([w for _, w in _ACC_MIX]),
    )


def _products_frame(rows: tuple[tuple[str, str, str, str, int, float], ...]) -> pd.DataFrame:
    """The product master, sorted by id."""
    products = pd.DataFrame(
        {
            "product_id": pd.Series([r[0] for r in rows], dtype="str"),
            "product_name": pd.Series([r[1] for r in rows], dtype="str"),
            "brand": pd.Series([r[2] for r in rows], dtype="str"),
            "category": pd.Series([r[3] for r in rows], dtype="str"),
            "unit_size": pd.Series([r[4] for r in rows], dtype=np.int64),
        }
    )
    return products.sort_values("product_id", kind="stable", ignore_index=True)


# --------------------------------------------------------------------------------------------------
# actors: master customers by persona, General ids, walk-in pseudo customers
# --------------------------------------------------------------------------------------------------
_WALKIN_PID = len(PERSONAS)  # persona number of the walk-in pseudo customers
_GENERAL_PID = len(PERSONAS) + 1  # persona number of the anonymous General ids


@dataclass(frozen=True)
class _Actors:
    """Everyone who can appear on an invoice, one array entry per actor.

    ``fc`` .. ``f_back`` are the actors' :class:`_Timing` fields, concatenated.
    """

    persona: np.ndarray  # int16 index into PERSONAS, or _WALKIN_PID / _GENERAL_PID
    level: np.ndarray  # int16 index into LEVELS, -1 = no buying behaviour
    fc: np.ndarray
    la: np.ndarray
    g0: np.ndarray
    g1: np.ndarray
    dm: np.ndarray
    f_last: np.ndarray
    f_back: np.ndarray
    home: np.ndarray  # home store; for walk-ins and General ids the number of their General id
    vol_mult: np.ndarray  # per-actor multiplier of the order size
    n_general: int

    @cached_property
    def is_walkin(self) -> np.ndarray:
        return self.persona == _WALKIN_PID

    @cached_property
    def is_general(self) -> np.ndarray:
        return self.persona == _GENERAL_PID

    @cached_property
    def has_level(self) -> np.ndarray:
        return self.level >= 0

    @cached_property
    def lvl(self) -> np.ndarray:
        """``level`` with "no level" mapped to 0, for indexing per-level tables (mask with has_level)."""
        return np.where(self.has_level, self.level, 0)

    def eligible(self, m: int) -> tuple[np.ndarray, np.ndarray]:
        """Actors who may order in month ``m``, and those of them who must (an order is forced)."""
        el = self.has_level & (self.fc <= m) & (m <= self.la) & ~((self.g0 <= m) & (m < self.g1))
        forced = el & ((self.fc == m) | (self.f_last == m) | (self.f_back == m))
        return el, forced


def _actors(rng: np.random.Generator, n_customers: int, months: int) -> _Actors:
    groups, n_general = _persona_groups(n_customers)
    drawn = _draw_timings(rng, groups, months)
    persona, level = drawn["persona"], drawn["level"]
    is_walkin = persona == _WALKIN_PID
    home = _home_stores(rng, is_walkin, np.flatnonzero(persona == _GENERAL_PID), n_general)
    lvl = np.where(level >= 0, level, 0)
    vol_floor = np.array([LEVELS[k].vol_floor for k in _LEVEL_NAMES])[lvl]
    vol_mult = np.clip(rng.lognormal(0.0, 0.2, len(persona)), vol_floor, 1.5)
    return _Actors(**drawn, home=home, vol_mult=vol_mult, n_general=n_general)


def _persona_groups(n_customers: int) -> tuple[list[tuple[int, str, int, tuple, float]], int]:
    """(persona number, timing, size, levels, device_p) of each group of actors, and the General count.

    The master's personas share ``n_customers`` minus the General ids; the walk-ins come on top
    (they are booked on the General ids and are not in the master). The General ids never buy.
    """
    n_general = min(_N_GENERAL, max(1, n_customers // 50)) if n_customers > 1 else 0
    n_walkin = round(_WALKIN_SHARE * n_customers) if n_general else 0
    counts = _allocate(n_customers - n_general, np.array([p.share for p in PERSONAS]))
    groups = [(pid, p.timing, int(c), p.levels, p.device_p)
              for pid, (p, c) in enumerate(zip(PERSONAS, counts, strict=True))]
    groups += [(_WALKIN_PID, "walkin", n_walkin, (("walkin", 1),), 0.0),
               (_GENERAL_PID, "never", n_general, (), 0.0)]
    return groups, n_general


def _draw_timings(rng: np.random.Generator, groups, months: int) -> dict[str, np.ndarray]:
    """Persona, behaviour level and :class:`_Timing` fields of every actor, group after group."""
    level_names = list(_LEVEL_NAMES)
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("persona", "level", *_Timing.__annotations__)}
    for pid, kind, size, levels, device_p in groups:
        t = _timing(kind, size, months, device_p, rng)
        if levels:
            lv = np.array([level_names.index(name) for name, _ in levels])
            parts["level"].append(lv[_pick(rng, [w for _, w in levels], size)])
        else:
            parts["level"].append(np.full(size, -1))
        parts["persona"].append(np.full(size, pid))
        for key in _Timing.__annotations__:
            parts[key].append(getattr(t, key))
    drawn = {k: np.concatenate(v) for k, v in parts.items()}
    drawn["persona"] = drawn["persona"].astype(np.int16)
    drawn["level"] = drawn["level"].astype(np.int16)
    return drawn


def _home_stores(rng: np.random.Generator, is_walkin: np.ndarray, general_actor: np.ndarray,
                 n_general: int) -> np.ndarray:
    """Home store of each actor; walk-ins instead get the number of the General id they are booked on.

    The General ids are numbered 0..n_general-1 and that number doubles as their store.
    """
    home = _pick(rng, _STORE_W, len(is_walkin))
    if n_general:
        home[is_walkin] = rng.integers(0, n_general, size=int(is_walkin.sum()))
        home[general_actor] = np.arange(n_general)
    return home


# --------------------------------------------------------------------------------------------------
# order rates: expected counts per (level, month), scale solved for target_transactions
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Demand:
    """Expected number of lines as a function of the scale ``s`` of every level's order rate."""

    p: np.ndarray  # per level: probability of an order in an eligible month
    extra: np.ndarray  # per level: mean further orders in a month with an order
    lines_per_order: np.ndarray  # per level: expected lines of one order
    season: np.ndarray  # per month
    n_free: np.ndarray  # (level, month): eligible actors whose order is left to chance
    n_forced: np.ndarray  # (level, month): eligible actors with a forced order
    n_devices: int
    extra_rate: float  # single-line invoices (returns, voids, gift cards) per sales line

    def rates(self, s: float) -> tuple[np.ndarray, np.ndarray]:
        """P(order in a free month) and mean extra orders, per (level, month), at rate scale s.

        The expected number of orders per eligible month scales with ``s``; once the probability
        hits 1 the rest goes into the extra orders.
        """
        mean = (self.p * (1 + self.extra))[:, None] * s * self.season[None, :]
        p_eff = np.minimum(1.0, self.p[:, None] * s * self.season[None, :])
        extra = np.where(p_eff > 0, mean / np.maximum(p_eff, 1e-12) - 1.0, self.extra[:, None])
        return p_eff, np.maximum(extra, 0.0)

    def expected_lines(self, s: float) -> float:
        p_eff, extra = self.rates(s)
        orders = self.n_free * p_eff * (1 + extra) + self.n_forced * (1 + extra)
        sales = float((orders * self.lines_per_order[:, None]).sum()) + self.n_devices * (1 + _P_DEVICE_ACC)
        return sales * (1 + self.extra_rate)


def _demand(actors: _Actors, months: int, season: np.ndarray, n_devices: int, messy: bool) -> _Demand:
    specs = [LEVELS[k] for k in _LEVEL_NAMES]
    n_levels = len(specs)
    lvl = actors.lvl
    n_free = np.zeros((n_levels, months))
    n_forced = np.zeros((n_levels, months))
    for m in range(months):
        el, forced = actors.eligible(m)
        n_free[:, m] = np.bincount(lvl[el & ~forced], minlength=n_levels)
        n_forced[:, m] = np.bincount(lvl[forced], minlength=n_levels)
    return _Demand(
        p=np.array([spec.p for spec in specs]),
        extra=np.array([spec.extra for spec in specs]),
        lines_per_order=np.array([1 + (spec.p_second if len(spec.packs) > 1 else 0) + spec.p_acc
                                  for spec in specs]),
        season=season,
        n_free=n_free,
        n_forced=n_forced,
        n_devices=n_devices,
        extra_rate=_RETURN_RATE + _ZERO_RATE + (_GIFT_RATE if messy else 0.0),
    )


def _solve_rate_scale(demand: _Demand, target_transactions: int | None, n_customers: int, months: int) -> float:
    """Rate scale whose expected line count is ``target_transactions`` (bisection; 1.0 without a target).

    Forced orders and devices do not scale: below their line count, warn and return 0.
    """
    if target_transactions is None:
        return 1.0
    minimum = demand.expected_lines(0.0)
    if minimum >= target_transactions:
        warnings.warn(
            f"target_transactions={target_transactions:,} is below what {n_customers:,} customers over "
            f"{months} months need at the least (about {minimum:,.0f} lines: devices and "
            "first purchases); generating that minimum",
            stacklevel=4,  # _solve_rate_scale <- _sales <- generate <- its caller
        )
        return 0.0
    lo, hi = 0.0, 1.0
    while demand.expected_lines(hi) < target_transactions and hi < 1e6:
        lo, hi = hi, hi * 2
    for _ in range(50):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if demand.expected_lines(mid) < target_transactions else (lo, mid)
    return (lo + hi) / 2


def _order_size_scale(scale: float) -> float:
    """Bigger orders when orders are rarer, so that the volume (and the value tiers) stays about the same."""
    return float(np.clip(1.0 / scale, 1 / 3, 3.0)) if scale > 0 else 3.0


# --------------------------------------------------------------------------------------------------
# sales: orders and device purchases, their invoices and lines
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Sales:
    """Sales invoices (orders first, then device purchases) and their lines.

    ``lines`` holds inv (invoice number), prod (product number), qty, slot (see _LineParts) and rev.
    """

    inv_actor: np.ndarray
    inv_date: np.ndarray  # int32 day
    inv_store: np.ndarray  # int8 index into _STORES
    lines: dict[str, np.ndarray]
    n_orders: int  # invoices 0..n_orders-1 are orders, the rest device purchases


def _sales(rng: np.random.Generator, actors: _Actors, cal: _Calendar, cat: _Catalogue, n_customers: int,
           target_transactions: int | None, messy: bool) -> _Sales:
    months = len(cal.month_days)
    dev_actor = np.flatnonzero((actors.dm >= 0) & (actors.dm < months))
    demand = _demand(actors, months, cal.season, len(dev_actor), messy)
    scale = _solve_rate_scale(demand, target_transactions, n_customers, months)
    p_eff, extra = demand.rates(scale)
    dev_choice, dev_month, dev_day = _device_purchases(rng, actors, dev_actor, cat, cal)

    o_actor, o_month = _draw_orders(rng, actors, p_eff, extra, months)
    o_date = _order_dates(rng, actors, o_actor, o_month, dev_actor, dev_day, cal)
    n_orders = len(o_actor)
    parts = _LineParts()
    _add_order_lines(rng, parts, actors, o_actor, _order_size_scale(scale), cat)
    del o_month
    _add_device_lines(rng, parts, n_orders, dev_choice, cat)

    inv_actor = np.concatenate([o_actor, dev_actor.astype(np.int32)])
    inv_date = np.concatenate([o_date, cal.month_first[dev_month] + dev_day]).astype(np.int32)
    del o_actor, o_date
    inv_store = _invoice_stores(rng, actors, inv_actor)
    lines = parts.join()
    lines["rev"] = _line_revenue(rng, lines, actors.is_walkin[inv_actor[lines["inv"]]], cat.price)
    return _Sales(inv_actor=inv_actor, inv_date=inv_date, inv_store=inv_store, lines=lines, n_orders=n_orders)


def _device_purchases(rng: np.random.Generator, actors: _Actors, dev_actor: np.ndarray, cat: _Catalogue,
                      cal: _Calendar) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Product number, month and day in that month of each actor's device purchase."""
    dev_w = np.array([LEVELS[k].devices for k in _LEVEL_NAMES] + [_NO_LEVEL_DEVICES])
    dev_row = np.where(actors.has_level, actors.lvl, len(_LEVEL_NAMES))[dev_actor]
    dev_choice = np.empty(len(dev_actor), dtype=np.int64)
    for r in np.unique(dev_row):
        sel = dev_row == r
        dev_choice[sel] = cat.device_idx[_pick(rng, dev_w[r], int(sel.sum()))]
    dev_month = actors.dm[dev_actor]
    dev_day = np.floor(rng.random(len(dev_actor)) * cal.month_days[dev_month]).astype(np.int64)
    return dev_choice, dev_month, dev_day


def _draw_orders(rng: np.random.Generator, actors: _Actors, p_eff: np.ndarray, extra: np.ndarray,
                 months: int) -> tuple[np.ndarray, np.ndarray]:
    """Actor (int32) and month (int16) of every core / accessory order, one month at a time.

    An eligible actor orders with probability ``p_eff`` (always when forced), then places
    1 + Poisson(``extra``) orders that month.
    """
    lvl = actors.lvl
    o_actor_parts, o_month_parts = [], []
    for m in range(months):
        el, forced = actors.eligible(m)
        idx = np.flatnonzero(el)
        k = lvl[idx]
        buy = forced[idx] | (rng.random(len(idx)) < p_eff[k, m])
        idx, k = idx[buy], k[buy]
        n_ord = 1 + rng.poisson(extra[k, m])
        o_actor_parts.append(np.repeat(idx.astype(np.int32), n_ord))
        o_month_parts.append(np.full(int(n_ord.sum()), m, dtype=np.int16))
    return np.concatenate(o_actor_parts), np.concatenate(o_month_parts)


def _order_dates(rng: np.random.Generator, actors: _Actors, o_actor: np.ndarray, o_month: np.ndarray,
                 dev_actor: np.ndarray, dev_day: np.ndarray, cal: _Calendar) -> np.ndarray:
    """Day of each order, uniform in its month; an order in the device's month comes after the device."""
    actor_dev_day = np.zeros(len(actors.persona), dtype=np.int64)
    actor_dev_day[dev_actor] = dev_day
    lb = np.where(actors.dm[o_actor] == o_month, actor_dev_day[o_actor], 0)
    o_day = lb + np.floor(rng.random(len(o_actor)) * (cal.month_days[o_month] - lb)).astype(np.int64)
    return cal.month_first[o_month] + o_day


class _LineParts:
    """Sales lines collected in parts and concatenated once.

    Each line has an invoice number, a product number, a quantity and a slot: 0 the main pack (or
    the device), 1 a second pack, 2 an accessory. An invoice has at most one line per slot, which
    lets :func:`_assemble_transactions` order the lines without sorting them.
    """

    def __init__(self) -> None:
        self.parts: dict[str, list[np.ndarray]] = {"inv": [], "prod": [], "qty": [], "slot": []}

    def add(self, inv, prod, qty, slot: int) -> None:
        self.parts["inv"].append(np.asarray(inv, dtype=np.int32))
        self.parts["prod"].append(np.asarray(prod, dtype=np.int16))
        self.parts["qty"].append(np.asarray(qty, dtype=np.int32))
        self.parts["slot"].append(np.full(len(inv), slot, dtype=np.int8))

    def join(self) -> dict[str, np.ndarray]:
        """The lines as one array per field; the parts are released."""
        lines = {key: np.concatenate(chunks) for key, chunks in self.parts.items()}
        self.parts = {key: [] for key in self.parts}
        return lines


def _add_order_lines(rng: np.random.Generator, parts: _LineParts, actors: _Actors, o_actor: np.ndarray,
                     vol_scale: float, cat: _Catalogue) -> None:
    """The lines of the orders, one behaviour level at a time (order ``i`` is invoice ``i``).

    The order size in units (quantity x unit size) is drawn from the level's range and scaled by
    the actor's volume multiplier and, except for accessory-only buyers, by ``vol_scale``.
    """
    o_level = actors.lvl[o_actor]
    for ki, name in enumerate(_LEVEL_NAMES):
        sel = np.flatnonzero(o_level == ki)
        if not len(sel):
            continue
        spec = LEVELS[name]
        lo_u, hi_u = spec.units
        units = (lo_u + rng.random(len(sel)) * (hi_u - lo_u)) * actors.vol_mult[o_actor[sel]]
        if name != "accessory":
            units *= vol_scale
        _add_level_lines(rng, parts, spec, sel, units, cat)


def _add_level_lines(rng: np.random.Generator, parts: _LineParts, spec: Level, sel: np.ndarray,
                     units: np.ndarray, cat: _Catalogue) -> None:
    """Lines of the orders ``sel`` of one level: a main pack, maybe a second pack, maybe an accessory.

    With a second pack the main line gets 55-85 % of the order's units and the second the rest.
    """
    pack_idx = np.array([cat.code_index[c] for c, _ in spec.packs])
    n_p = len(pack_idx)
    main = _pick(rng, [w for _, w in spec.packs], len(sel))
    second = (rng.random(len(sel)) < spec.p_second) if n_p > 1 else np.zeros(len(sel), dtype=bool)
    frac = np.where(second, 0.55 + 0.3 * rng.random(len(sel)), 1.0)  # share of the main line
    p_main = pack_idx[main]
    parts.add(sel, p_main, np.maximum(1, np.rint(units * frac / cat.unit_size[p_main])), 0)
    if second.any():
        s_sel = np.flatnonzero(second)
        p_sec = pack_idx[(main[s_sel] + 1 + rng.integers(0, n_p - 1, size=len(s_sel))) % n_p]  # another pack
        q_sec = np.maximum(1, np.rint(units[s_sel] * (1 - frac[s_sel]) / cat.unit_size[p_sec]))
        parts.add(sel[s_sel], p_sec, q_sec, 1)
    if spec.p_acc > 0:
        a_sel = np.flatnonzero(rng.random(len(sel)) < spec.p_acc)
        parts.add(sel[a_sel], cat.acc_idx[_pick(rng, cat.acc_w, len(a_sel))],
                  np.where(rng.random(len(a_sel)) < 0.9, 1, 2), 2)


def _add_device_lines(rng: np.random.Generator, parts: _LineParts, n_orders: int, dev_choice: np.ndarray,
                      cat: _Catalogue) -> None:
    """Device invoices, numbered after the orders: the device (+ an accessory on some)."""
    n_dev = len(dev_choice)
    dev_inv = n_orders + np.arange(n_dev)
    parts.add(dev_inv, dev_choice, np.ones(n_dev), 0)
    acc_on_dev = np.flatnonzero(rng.random(n_dev) < _P_DEVICE_ACC)
    parts.add(dev_inv[acc_on_dev], cat.acc_idx[_pick(rng, cat.acc_w, len(acc_on_dev))], np.ones(len(acc_on_dev)), 2)


def _invoice_stores(rng: np.random.Generator, actors: _Actors, inv_actor: np.ndarray) -> np.ndarray:
    """Store of each invoice: mostly the actor's home store; walk-ins always buy at theirs."""
    inv_store = actors.home[inv_actor].astype(np.int8)
    away = (rng.random(len(inv_actor)) >= _P_HOME_STORE) & ~actors.is_walkin[inv_actor]
    inv_store[away] = _pick(rng, _STORE_W, int(away.sum()))
    return inv_store


def _line_revenue(rng: np.random.Generator, lines: dict[str, np.ndarray], walkin_line: np.ndarray,
                  price: np.ndarray) -> np.ndarray:
    """Revenue of each line: quantity x list price less a random discount (none at the till)."""
    disc = _DISCOUNTS[_pick(rng, _DISCOUNT_W, len(lines["inv"]))]
    disc[walkin_line] = 0.0
    return np.round(lines["qty"] * price[lines["prod"]] * (1 - disc), 2)


# --------------------------------------------------------------------------------------------------
# customer ids
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _CustomerIds:
    """Customer ids as numbers: one id row per master customer, then the unknown ids (messy only).

    An id is ``"C"`` + the zero-padded number, or the same with a ``"0"`` instead of the ``"C"`` for
    a legacy id; it is only turned into text when the frames are built.
    """

    master_actor: np.ndarray  # actor of each master row: every actor except the walk-ins
    numbers: np.ndarray  # id number of each master row (a permutation of 1..n_master)
    legacy: np.ndarray  # master row has a digit-only legacy id
    number: np.ndarray  # id row -> number
    first: np.ndarray  # id row -> first byte of the id (uint8)
    width: int  # digits after the first byte
    actor_cid: np.ndarray  # actor -> id row (walk-ins: the General id they are booked on)
    n_unknown: int


def _customer_ids(rng: np.random.Generator, messy: bool, n_customers: int, actors: _Actors) -> _CustomerIds:
    """Random id numbers; the unknown ids are numbered after the master's, one in each block of 7."""
    is_walkin = actors.is_walkin
    master_actor = np.flatnonzero(~is_walkin)  # one master row per actor, walk-ins excepted
    n_master = len(master_actor)
    n_unknown = max(3, round(n_customers / 1000)) if messy else 0
    width = max(6, len(str(n_master + 7 * n_unknown + 7)))
    numbers = rng.permutation(n_master) + 1
    legacy = (rng.random(n_master) < _LEGACY_ID_RATE) & ~actors.is_general[master_actor] if messy \
        else np.zeros(n_master, dtype=bool)
    unknown_numbers = n_master + 1 + 7 * np.arange(n_unknown) + rng.integers(0, 7, size=n_unknown)
    first = np.where(np.r_[legacy, np.zeros(n_unknown, dtype=bool)], ord("0"), ord("C")).astype(np.uint8)
    actor_cid = np.full(len(is_walkin), -1, dtype=np.int64)
    actor_cid[master_actor] = np.arange(n_master)
    if actors.n_general:  # walk-in sales are booked on their store's General id
        general_actor = np.flatnonzero(actors.is_general)
        actor_cid[is_walkin] = actor_cid[general_actor][actors.home[is_walkin]]
    return _CustomerIds(master_actor=master_actor, numbers=numbers, legacy=legacy,
                        number=np.concatenate([numbers, unknown_numbers]), first=first, width=width,
                        actor_cid=actor_cid, n_unknown=n_unknown)


def _invoice_customers(rng: np.random.Generator, messy: bool, ids: _CustomerIds,
                       inv_actor: np.ndarray) -> np.ndarray:
    """Id row (int32) of each invoice; when messy a few invoices go to ids missing from the master."""
    inv_cid = ids.actor_cid[inv_actor].astype(np.int32)
    if messy and ids.n_unknown:
        rel = np.flatnonzero(rng.random(len(inv_actor)) < _UNKNOWN_CUSTOMER_RATE)
        inv_cid[rel] = len(ids.master_actor) + rng.integers(0, ids.n_unknown, size=len(rel))
    return inv_cid


def _first_activity_day(n_actors: int, inv_actor: np.ndarray, inv_date: np.ndarray) -> np.ndarray:
    """Day of each actor's first sales invoice (int64 max if none); the master's created_date follows it."""
    first_day = np.full(n_actors, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(first_day, inv_actor, inv_date.astype(np.int64))
    return first_day


# --------------------------------------------------------------------------------------------------
# single-line invoices and planted errors
# --------------------------------------------------------------------------------------------------
class _SingleLines:
    """One-line invoices collected in parts: customer id row, date, store, product, quantity, revenue."""

    _DTYPES: ClassVar[dict[str, type]] = {"cid": np.int32, "date": np.int32, "store": np.int8, "prod": np.int16,
                                          "qty": np.int32, "rev": np.float64}

    def __init__(self) -> None:
        self.parts: dict[str, list[np.ndarray]] = {key: [] for key in self._DTYPES}

    def add(self, cid, date, store, prod, qty, rev) -> None:
        for key, values in zip(self._DTYPES, (cid, date, store, prod, qty, rev), strict=True):
            self.parts[key].append(np.asarray(values, dtype=self._DTYPES[key]))

    def append_to(self, inv: dict[str, np.ndarray], lines: dict[str, np.ndarray]) -> None:
        """Append the collected invoices after those of ``inv`` (replacing its and ``lines``' arrays)."""
        p = self.parts
        n_inv = len(inv["cid"])
        n_single = sum(len(a) for a in p["cid"])
        lines["inv"] = np.concatenate([lines["inv"], n_inv + np.arange(n_single, dtype=np.int32)])
        lines["slot"] = np.concatenate([lines["slot"], np.zeros(n_single, dtype=np.int8)])
        for key in ("cid", "date", "store"):
            inv[key] = np.concatenate([inv[key], *p[key]])
        for key in ("prod", "qty"):
            lines[key] = np.concatenate([lines[key], *p[key]])
        lines["rev"] = np.concatenate([lines["rev"], *p["rev"]]) + 0.0  # + 0.0: no negative zeros
        self.parts = {key: [] for key in self._DTYPES}


def _add_single_line_invoices(rng: np.random.Generator, messy: bool, actors: _Actors, ids: _CustomerIds,
                              cal: _Calendar, cat: _Catalogue, inv: dict[str, np.ndarray],
                              lines: dict[str, np.ndarray]) -> np.ndarray:
    """Append gift-card sales (messy only), voided orders and returns; return the returned sales lines."""
    n_sales = len(lines["inv"])
    single = _SingleLines()
    if messy:
        _gift_card_sales(rng, single, actors, ids, cal, cat, n_sales)
    _voided_orders(rng, single, inv, lines)
    returned = _returns(rng, single, inv, lines, cal.end_day)
    single.append_to(inv, lines)
    return returned


def _gift_card_sales(rng: np.random.Generator, single: _SingleLines, actors: _Actors, ids: _CustomerIds,
                     cal: _Calendar, cat: _Catalogue, n_sales: int) -> None:
    """Gift cards (one or two) bought by master customers who buy at all, on any day of the history."""
    never_pid = [p.timing for p in PERSONAS].index("never")
    buyers = np.flatnonzero(~actors.is_walkin & ~actors.is_general & (actors.persona != never_pid))
    if not len(buyers):
        return
    n_gift = max(2, round(_GIFT_RATE * n_sales))
    g_actor = buyers[rng.integers(0, len(buyers), size=n_gift)]
    g_qty = np.where(rng.random(n_gift) < 0.8, 1, 2)
    single.add(ids.actor_cid[g_actor], rng.integers(cal.first_day, cal.end_day + 1, size=n_gift),
               actors.home[g_actor], np.full(n_gift, cat.code_index[_GIFT_CARD[0]]), g_qty, g_qty * _GIFT_CARD[5])


def _voided_orders(rng: np.random.Generator, single: _SingleLines, inv: dict[str, np.ndarray],
                   lines: dict[str, np.ndarray]) -> None:
    """Copies of a few sales lines with quantity and revenue 0, on the same customer, day and store."""
    zero = np.flatnonzero(rng.random(len(lines["inv"])) < _ZERO_RATE)
    zi = lines["inv"][zero]
    single.add(inv["cid"][zi], inv["date"][zi], inv["store"][zi], lines["prod"][zero], np.zeros(len(zero)),
               np.zeros(len(zero)))


def _returns(rng: np.random.Generator, single: _SingleLines, inv: dict[str, np.ndarray],
             lines: dict[str, np.ndarray], end_day: int) -> np.ndarray:
    """Returns of some sales lines, 1-45 days later (dropped past the end), some partial; their indices.

    A returned line gets negative quantity and revenue; a partial return refunds its share of the
    line's revenue.
    """
    ret = np.flatnonzero(rng.random(len(lines["inv"])) < _RETURN_RATE)
    r_date = inv["date"][lines["inv"][ret]] + rng.integers(1, _RETURN_MAX_DAYS + 1, size=len(ret))
    keep = r_date <= end_day
    ret, r_date = ret[keep], r_date[keep]
    ri = lines["inv"][ret]
    q = lines["qty"][ret].astype(np.int64)
    rev = lines["rev"][ret]
    partial = rng.random(len(ret)) < 0.35
    r_qty = np.minimum(np.where(partial, 1 + np.floor(rng.random(len(ret)) * q).astype(np.int64), q), q)
    r_rev = np.where(r_qty == q, rev, np.round(rev / q * r_qty, 2))
    single.add(inv["cid"][ri], r_date, inv["store"][ri], lines["prod"][ret], -r_qty, -r_rev)
    return ret


def _plant_unknown_products(rng: np.random.Generator, lines: dict[str, np.ndarray], n_sales: int, n_orders: int,
                            returned: np.ndarray, cat: _Catalogue) -> None:
    """Put the unknown product id on the main line of a few orders (messy only).

    Lines that were returned are left alone, so that a return keeps pointing at a product that was
    bought; device invoices and single-line invoices are left alone too.
    """
    is_returned = np.zeros(n_sales, dtype=bool)
    is_returned[returned] = True
    mains = np.flatnonzero((lines["slot"][:n_sales] == 0) & (lines["inv"][:n_sales] < n_orders) & ~is_returned)
    pick = rng.choice(mains, size=min(_N_UNKNOWN_PRODUCT_LINES, len(mains)), replace=False)
    lines["prod"][pick] = cat.code_index[UNKNOWN_PRODUCT_ID]


def _assemble_transactions(rng, codes, prod_rank, ids, inv: dict[str, np.ndarray],
                           lines: dict[str, np.ndarray], first_day: int) -> pd.DataFrame:
    """Number the invoices in date order and lay the lines out sorted by (date, invoice, product).

    Two radix passes (random tie-break, then date) order the invoices; each line's place is its
    invoice's start plus the number of lines of the same invoice with a smaller product id (at
    most three slots per invoice), so no sort over the lines is needed. ``inv`` (cid, date,
    store) and ``lines`` (inv, slot, prod, qty, rev) are emptied on the way to keep memory low.
    """
    n_inv = len(inv["cid"])
    n_lines = len(lines["inv"])
    tie = rng.integers(0, 2**15, size=n_inv, dtype=np.int16)
    day = inv["date"].astype(np.int64) - first_day
    if day.max(initial=0) < 2**15:
        by_tie = np.argsort(tie, kind="stable")
        inv_order = by_tie[np.argsort(day[by_tie].astype(np.int16), kind="stable")]
        del by_tie
    else:  # more than 89 years of history
        inv_order = np.lexsort((tie, day))
    del tie, day
    line_inv = lines.pop("inv")
    per_inv = np.bincount(line_inv, minlength=n_inv)[inv_order]
    inv_start = np.empty(n_inv, dtype=np.int64)
    inv_start[inv_order] = np.cumsum(per_inv) - per_inv
    rank = prod_rank[lines["prod"]]
    slot_rank = np.full((n_inv, 3), np.iinfo(np.int16).max, dtype=np.int16)
    slot_rank[line_inv, lines.pop("slot")] = rank
    within = (slot_rank[line_inv] < rank[:, None]).sum(axis=1)
    del slot_rank, rank
    pos = inv_start[line_inv] + within
    del inv_start, within, line_inv

    def place(values: np.ndarray, where: np.ndarray, dtype) -> np.ndarray:
        out = np.empty(n_lines, dtype=dtype)
        out[where] = values
        return out

    columns: dict[str, pd.Series] = {}
    columns["product_id"] = _str_series(_take(codes, place(lines.pop("prod"), pos, np.int16)))
    columns["quantity"] = pd.Series(place(lines.pop("qty"), pos, np.int64))
    columns["revenue"] = pd.Series(place(lines.pop("rev"), pos, np.float64))
    del pos

    def per_line(values: np.ndarray) -> np.ndarray:
        return np.repeat(values[inv_order], per_inv)

    inv_no = np.repeat(np.arange(1, n_inv + 1, dtype=np.int64), per_inv)
    columns["invoice_id"] = _str_series(_digits("INV", inv_no, max(7, len(str(n_inv)))))
    del inv_no
    columns["invoice_date"] = pd.Series(per_line(inv.pop("date").astype(np.int64) * 86_400_000_000)
                                        .view(_DATE_UNIT))
    cid = per_line(inv.pop("cid"))
    id_number, id_first, id_width = ids
    columns["customer_id"] = _str_series(_digits("C", id_number[cid], id_width, id_first[cid]))
    del cid
    columns["store_id"] = _str_series(_take(_STORES, per_line(inv.pop("store"))))
    return pd.DataFrame({name: columns[name] for name in TRANSACTION_COLUMNS}, copy=False)


def _customers(*, rng, messy, ids, master_actor, numbers, legacy, level, is_general, home, first_day, fc,
               dm, start_day, end_day) -> pd.DataFrame:
    """The customer master, one row per master actor (+ one duplicated row when messy), sorted by id."""
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
    group = np.where(gen, len(_GROUPS), group)

    def draw(values: tuple[str, ...]) -> pa.Array:
        return _take(values, rng.integers(0, len(values), n))

    first_a = draw(_FIRST)
    last_a = draw(_LAST)
    person = pc.binary_join_element_wise(first_a, last_a, _sep(" "))
    office = pc.binary_join_element_wise(last_a, draw(_OFFICE_SUFFIX), _sep(""))
    horeca = pc.binary_join_element_wise(draw(_HORECA_PREFIX), draw(_FIRST), _sep(""))
    name = pc.if_else(pa.array(group == 1), office, pc.if_else(pa.array(group == 2), horeca, person))
    name = pc.if_else(pa.array(gen), _take([f"Walk-in {s}" for s in _STORES], home[master_actor]), name)

    group_a = _take([*_GROUPS, ANONYMOUS_GROUP], group)
    blank = np.zeros(n, dtype=bool)
    if messy:
        blank = (rng.random(n) < _BLANK_GROUP_RATE) & ~gen
        if not blank.any() and (~gen).any():
            blank[rng.choice(np.flatnonzero(~gen))] = True
        gen_rows = np.flatnonzero(gen)
        if len(gen_rows) > 1:  # one anonymous id keyed in with another spelling
            group_a = pc.if_else(pa.array(np.arange(n) == gen_rows[-1]), _sep("general "), group_a)

    city = _take(_CITIES, _pick(rng, _CITY_W, n))
    slug = pc.utf8_lower(pc.binary_join_element_wise(first_a, last_a, _sep(".")))
    mail_no = pc.cast(pa.array(rng.integers(1, 1000, n)), pa.large_string())
    local = pc.binary_join_element_wise(slug, mail_no, _sep(""))
    email = pc.binary_join_element_wise(local, draw(_DOMAINS), _sep("@"))
    no_email = (rng.random(n) < 0.12) | gen
    mobile = _digits("09", rng.integers(0, 10**8, n), 8)
    no_mobile = (rng.random(n) < 0.1) | gen

    # created up to 60 days before the first activity; years before the data for the existing base
    fd = first_day[master_actor]
    bought = fd < np.iinfo(np.int64).max
    base = (fc[master_actor] == 0) & (dm[master_actor] < 0) & (lv >= 0)
    lead = np.where(rng.random(n) < 0.5, 0, rng.integers(0, 61, n))
    created = np.where(bought, fd - lead, rng.integers(start_day - 365, end_day + 1, n))
    created = np.where(base & bought, np.minimum(created, start_day - rng.integers(1, 3 * 365, n)), created)
    created = np.where(gen, start_day - 3 * 365, created)

    def opt(p_yes: float) -> pd.Series:
        vals = pd.array((rng.random(n) < p_yes).astype(np.int64), dtype="Int64")
        vals[(rng.random(n) < 0.06) | gen] = pd.NA
        return pd.Series(vals)

    frame = pd.DataFrame(
        {
            "customer_id": _str_series(ids),
            "customer_name": _str_series(name),
            "customer_group": _str_series(group_a, blank),
            "city": _str_series(city),
            "created_date": _as_dates(created),
            "email": _str_series(email, no_email),
            "mobile_number": _str_series(mobile, no_mobile),
            "opt_email": opt(0.55),
            "opt_sms": opt(0.4),
            "opt_phone": opt(0.25),
        },
        copy=False,
    )
    # by id: digit-only legacy ids ("000...") sort before "C..." ids; equal widths sort numerically
    order = np.lexsort((numbers, ~legacy))
    if messy and n > 1:  # one customer keyed twice
        dup = int(rng.integers(0, n))
        order = np.insert(order, int(np.flatnonzero(order == dup)[0]), dup)
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
        out[name] = replace_atomically(folder / f"{name}.csv", lambda temp, frame=tables[name]: frame.to_csv(
            temp, index=False, date_format="%Y-%m-%d", lineterminator="\n", encoding="utf-8", chunksize=500_000))
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
    ap.add_argument("--clean", action="store_true", help="leave out the deliberate data-quality problems")
    a = ap.parse_args(argv)
    tables = generate(a.customers, a.months, a.end_month, a.seed, a.target_transactions, messy=not a.clean)
    for name, path in write_csv(tables, a.folder).items():
        print(f"{name}: {len(tables[name]):,} rows -> {path}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(_main())
