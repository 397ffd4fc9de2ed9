"""Benchmark of the worksheet functions' lookups (Python time only; no Excel, no COM).

    python bench/bench_udfs.py                         # 100k customers, 13 months, ~600k lines
    python bench/bench_udfs.py --customers 20000       # smaller

Generates data, runs ``crm_xl.run`` (history_months 12; not part of the figures), primes the
functions' cache as the Refresh does, then times:

* ``prime``: building the lookups from the output tables (after every refresh);
* one ``CRM_SEGMENT`` call on a 100,000 x 1 range of ids (target: about a second or less);
* 10,000 single-cell ``CRM_SEGMENT`` calls (what 10,000 cells of ``=CRM_SEGMENT(A2)`` cost in Python);
* a range call for a history month (the first one builds the (month, id) index) and ``CRM_METRIC``.

In Excel each single-cell call also pays the VBA -> COM -> Python round trip, which is not measured here.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import crm_xl
from crm_xl.excel import udfs
from crm_xl.io.sample import generate


def timed(label: str, func, *args):
    started = time.perf_counter()
    result = func(*args)
    seconds = time.perf_counter() - started
    print(f"{label:<62} {seconds:8.3f} s")
    return result, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--lines", type=int, default=600_000)
    parser.add_argument("--cells", type=int, default=100_000, help="ids in the one range call")
    parser.add_argument("--singles", type=int, default=10_000, help="single-cell calls")
    args = parser.parse_args()

    started = time.perf_counter()
    raw = generate(n_customers=args.customers, months=13, target_transactions=args.lines, messy=False)
    tables = crm_xl.run(**raw, config={"history_months": 12})
    snapshot, history = tables["customer_snapshot"], tables["customer_history"]
    print(f"data: {len(raw['transactions']):,} lines, {len(snapshot):,} customers, {len(history):,} history rows "
          f"({time.perf_counter() - started:.1f} s to generate and run, not timed below)")

    _, prime_s = timed("prime (index the snapshot; history index is lazy)", udfs.prime, "bench.xlsm", tables,
                       "value_tier")

    rng = np.random.default_rng(1)
    ids = snapshot["customer_id"].astype(str).to_numpy(dtype=object)
    picks = ids[rng.integers(0, len(ids), args.cells)].tolist()
    picks[::1000] = ["NOPE"] * len(picks[::1000])                  # some unknown ids
    column = [[value] for value in picks]                          # an N x 1 range
    out, range_s = timed(f"CRM_SEGMENT on a {args.cells:,} x 1 range", udfs.CRM_SEGMENT, column)
    assert len(out) == args.cells and all(len(row) == 1 for row in out)
    timed("CRM_SEGMENT on the same range again", udfs.CRM_SEGMENT, column)
    numeric_like = [[f" {value} "] for value in picks]
    timed(f"CRM_SEGMENT on {args.cells:,} ids with spaces", udfs.CRM_SEGMENT, numeric_like)

    singles = picks[: args.singles]
    started = time.perf_counter()
    for value in singles:
        udfs.CRM_SEGMENT([[value]])            # what Excel passes for one cell (ndim=2)
    singles_s = time.perf_counter() - started
    print(f"{f'{args.singles:,} single-cell CRM_SEGMENT calls':<62} {singles_s:8.3f} s "
          f"({singles_s / args.singles * 1e6:.1f} us per call)")
    started = time.perf_counter()
    for value in singles:
        udfs.CRM_SEGMENT(value)                # plain Python scalar
    scalar_s = time.perf_counter() - started
    print(f"{f'{args.singles:,} scalar CRM_SEGMENT calls (plain Python)':<62} {scalar_s:8.3f} s")

    months = sorted(history["report_month"].unique())
    month = f"{months[0]:%Y-%m}"
    timed(f"CRM_STATE range, month {month} (first: builds history index)", udfs.CRM_STATE, column, [[month]])
    timed(f"CRM_STATE range, month {month} (again)", udfs.CRM_STATE, column, [[month]])
    timed("CRM_METRIC range, metric [['m12']] as Excel passes it", udfs.CRM_METRIC, column, [["m12"]])
    print(f"summary: prime {prime_s:.3f} s; {args.cells:,}-id range {range_s:.3f} s; "
          f"{args.singles:,} single calls {singles_s:.3f} s")


if __name__ == "__main__":
    main()
