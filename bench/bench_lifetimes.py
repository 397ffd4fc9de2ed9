"""Benchmark ``crm_xl.analyses.lifetimes_compat.lifetimes_summary`` against lifetimes on CDNOW.

Run from the repository root::

    PYTHONPATH=. .venv/bin/python bench/bench_lifetimes.py [repeats]
"""

from __future__ import annotations

import importlib.resources
import statistics
import sys
import time
import warnings
from collections.abc import Callable

import pandas as pd

from crm_xl.analyses.lifetimes_compat import lifetimes_summary


def load_cdnow() -> pd.DataFrame:
    """CDNOW master log shipped with lifetimes (customer_id, date, quantity, amount)."""
    path = importlib.resources.files("lifetimes") / "datasets" / "CDNOW_master.txt"
    df = pd.read_csv(
        path,
        sep=r"\s+",
        header=0,
        names=["customer_id", "date", "quantity", "amount"],
        dtype={"customer_id": str, "date": str},
    )
    df["date"] = pd.to_datetime(df["date"], format="%Y%m%d")
    return df


def bench_cdnow(repeats: int = 20) -> dict[str, float]:
    """Time ``lifetimes_summary`` against lifetimes' function on CDNOW.

    Both run with ``freq="D"`` and the ``amount`` column as monetary value.
    After one warm-up call each, the two are timed alternately (so both see
    the same machine load) ``repeats`` times with ``time.perf_counter``.

    Returns
    -------
    dict
        ``ours_s`` and ``lifetimes_s`` (median seconds per call) and
        ``speedup`` (``lifetimes_s / ours_s``).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # lifetimes warns about pandas options on import
        from lifetimes.utils import summary_data_from_transaction_data

    df = load_cdnow()

    def ours() -> pd.DataFrame:
        return lifetimes_summary(df, "customer_id", "date", "amount", freq="D")

    def theirs() -> pd.DataFrame:
        return summary_data_from_transaction_data(df, "customer_id", "date", "amount", freq="D")

    pd.testing.assert_frame_equal(ours(), theirs(), check_exact=True)  # warm-up and sanity check

    timings: dict[str, list[float]] = {"ours": [], "lifetimes": []}
    runners: dict[str, Callable[[], pd.DataFrame]] = {"ours": ours, "lifetimes": theirs}
    for _ in range(repeats):
        for name, fn in runners.items():
            start = time.perf_counter()
            fn()
            timings[name].append(time.perf_counter() - start)
    ours_s = statistics.median(timings["ours"])
    lifetimes_s = statistics.median(timings["lifetimes"])
    return {"ours_s": ours_s, "lifetimes_s": lifetimes_s, "speedup": lifetimes_s / ours_s}


if __name__ == "__main__":
    result = bench_cdnow(int(sys.argv[1]) if len(sys.argv) > 1 else 20)
    print(f"ours:      {result['ours_s'] * 1e3:8.2f} ms")
    print(f"lifetimes: {result['lifetimes_s'] * 1e3:8.2f} ms")
    print(f"speedup:   {result['speedup']:8.2f}x")
