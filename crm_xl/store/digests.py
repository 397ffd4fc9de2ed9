"""What each stored month was computed from: a digest of the inputs of every month up to it.

A month's figures (its customer_history rows, summary, transitions and cut points) read the facts
of that month and of the months before it, the invoices linking those months, and who had entered
the base by then; never a later month. So a stored month can be reused exactly when nothing of
that month or any earlier one has changed, and the settings are the same.

Each calendar month gets a digest of its own inputs, keyed by customer_id (not by the run's
customer_key, which moves when a new customer sorts before others):

- its facts rows (every column, as exact integers and dates),
- the invoice links arriving in it,
- the customers whose base-entry date falls in it, with that date.

Customers in the base from the start (no created_date) go into the *seed*, with the settings, the
crm_xl version and the store's schema version: a change there changes every month. The *chain* of
month m is a running digest of the seed and every month's digest up to m, so comparing one value
says whether anything up to m changed. Digests are BLAKE2b of pandas' 64-bit row hashes, in row order.
"""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np
import pandas as pd

from crm_xl._version import __version__
from crm_xl.config import Config
from crm_xl.core.pipeline import Prepared

#: Bump when what the store holds, or how a month's figures are computed from its inputs, changes:
#: every stored month is then recomputed once.
SCHEMA_VERSION = 1
#: Settings that choose which months are shown, not how a month is computed.
_WINDOW_SETTINGS = frozenset({"report_month", "history_months"})


@dataclasses.dataclass(frozen=True)
class InputDigests:
    """The settings digest and the chain digest at each month that has inputs of its own."""

    settings: str
    seed: str
    months: tuple[pd.Period, ...]       # months with inputs, ascending
    chains: tuple[str, ...]             # chain digest after each of ``months``

    def chain(self, month: pd.Period) -> str:
        """The digest of every input up to and including ``month``."""
        at = int(np.searchsorted(np.asarray([m.ordinal for m in self.months], dtype="int64"), month.ordinal,
                                 side="right"))
        return self.chains[at - 1] if at else self.seed

    def first_difference(self, chains: dict[pd.Period, str]) -> pd.Period | None:
        """The earliest of ``chains``' months whose digest is not this run's (None: all agree)."""
        differing = [month for month, digest in chains.items() if digest != self.chain(month)]
        return min(differing) if differing else None


def settings_digest(config: Config) -> str:
    """Every setting but the shown months, with the version of crm_xl and of the store's layout."""
    rows = [f"{name}={value}" for name, value, _ in config.as_rows() if name not in _WINDOW_SETTINGS]
    return _digest("\n".join([f"crm_xl={__version__}", f"store_schema={SCHEMA_VERSION}", *rows]).encode())


def input_digests(prepared: Prepared) -> InputDigests:
    """The digests of a run's inputs (see the module docstring)."""
    staged, facts = prepared.staged, prepared.facts
    ids = staged.customers["customer_id"].to_numpy()
    settings = settings_digest(prepared.config)
    entry = pd.Series(staged.entry_dates)
    from_start = entry.isna().to_numpy()
    sources = [
        _by_month(facts.months, ids),
        _by_month(facts.invoice_links, ids),
        _by_month(pd.DataFrame({"customer_key": np.flatnonzero(~from_start),
                                "month": entry[~from_start].dt.to_period("M").dt.to_timestamp().to_numpy(),
                                "entry_date": entry[~from_start].to_numpy()}), ids),
    ]
    seed = _digest(b"\n".join([settings.encode(),
                                _rows_digest(pd.DataFrame({"customer_id": pd.array(ids[from_start], dtype="str")}))]))
    months = sorted(set().union(*sources))
    chains, running = [], seed
    for month in months:
        parts = [source.get(month, "") for source in sources]
        running = _digest("\n".join([running, str(month), *parts]).encode())
        chains.append(running)
    return InputDigests(settings, seed, tuple(months), tuple(chains))


def _by_month(frame: pd.DataFrame, ids: np.ndarray) -> dict[pd.Period, str]:
    """One digest per calendar month of ``frame``'s rows (keyed by customer_key, with a month column)."""
    if frame.empty:
        return {}
    month = frame["month"].to_numpy().astype("datetime64[M]").astype("int64")
    key = frame["customer_key"].to_numpy()
    order = np.lexsort((key, month))
    rows = frame.drop(columns=["customer_key", "month"]).iloc[order]
    rows.insert(0, "customer_id", pd.array(ids[key[order]], dtype="str"))
    hashes = pd.util.hash_pandas_object(_hashable(rows), index=False).to_numpy()
    sorted_months = month[order]
    starts = np.flatnonzero(np.r_[True, sorted_months[1:] != sorted_months[:-1]])
    stops = np.r_[starts[1:], len(sorted_months)]
    return {pd.Period(np.datetime64(int(sorted_months[a]), "M"), "M"): _digest(hashes[a:b].tobytes())
            for a, b in zip(starts, stops, strict=True)}


def _hashable(rows: pd.DataFrame) -> pd.DataFrame:
    """Exact integers beyond int64 are Python ints in object columns: hashed by their decimal digits."""
    out = rows.copy()
    for name in out.columns:
        if out[name].dtype == object:
            out[name] = out[name].map(str).astype("str")
    return out


def _rows_digest(rows: pd.DataFrame) -> bytes:
    return _digest(pd.util.hash_pandas_object(rows, index=False).to_numpy().tobytes()).encode()


def _digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()
