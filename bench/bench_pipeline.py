"""Benchmark of the analytics core: read the raw CSVs and run the whole pipeline.

    python bench/bench_pipeline.py                 # 1M lines / 100k customers / 36 months, 10M / 1M / 12, CDNOW
    python bench/bench_pipeline.py --case 1m       # one case
    python bench/bench_pipeline.py --repeat 3      # median of three runs per case
    python bench/bench_pipeline.py --case 1m --engine all      # the facts on numpy, duckdb and spark
    python bench/bench_pipeline.py --case 1m --partitions 4    # snapshots onwards in 4 customer partitions

Each measured run is a fresh Python process (so peak memory is that run's alone): it reads the
three CSVs with crm_xl's CSV adapter, runs ``crm_xl.run`` and reports seconds per layer and the
process's peak resident memory. ``--engine`` picks where the facts run (docs/engines.md); Spark's
local session is started before the clock (``engine_start_s``), as a long-running one would be.
Data sets are generated once with the sample generator into
``bench/data/`` (not timed). Targets (2-core machine): 1M lines < 5 s and < 2 GB; 10M lines < 60 s
and < 12 GB; the lifetimes-compatible summary on CDNOW at least 2x faster than lifetimes.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from crm_xl.engines import DEFAULT_ENGINE, ENGINES

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
CASES = {
    # name: (customers, months of history generated, history_months reported, target lines, target s, target GB)
    "1m": (100_000, 36, 36, 1_000_000, 5.0, 2.0),
    "10m": (1_000_000, 12, 12, 10_000_000, 60.0, 12.0),
}


def ensure_data(case: str) -> Path:
    customers, months, _, lines, _, _ = CASES[case]
    folder = DATA / case
    if not (folder / "transactions.csv").exists():
        from crm_xl.io.sample import generate, write_csv

        started = time.perf_counter()
        tables = generate(n_customers=customers, months=months, end_month="2025-12", seed=7,
                          target_transactions=lines, messy=False)
        write_csv(tables, folder)
        print(f"[{case}] generated {len(tables['transactions']):,} lines in {time.perf_counter() - started:.1f} s",
              file=sys.stderr)
    return folder


def child(case: str, engine: str, partitions: int | None = None) -> None:
    """One measured run; prints a JSON line."""
    from crm_xl.analyses.report import run_timed
    from crm_xl.engines.pages import small_pages
    from crm_xl.io.csv import read_raw_folder

    history_months = CASES[case][2]
    start_s = _start_engine(engine)
    started = time.perf_counter()
    with small_pages():   # as `crm-xl run` reads and runs (crm_xl.engines.pages)
        raw = read_raw_folder(DATA / case)
        read_s = time.perf_counter() - started
        before = resource.getrusage(resource.RUSAGE_SELF)
        tables, layers = run_timed(**raw, config={"history_months": history_months}, engine=engine,
                                   partitions=partitions)
    total = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    peak_gb = usage.ru_maxrss / 1024 / 1024
    print(json.dumps({
        "case": case, "engine": engine, "partitions": partitions or 1, "engine_start_s": round(start_s, 3),
        "lines": len(raw["transactions"]), "customers": len(raw["customers"]),
        "history_rows": len(tables["customer_history"]), "read_s": round(read_s, 3),
        **{f"{k}_s": round(v, 3) for k, v in layers.items()},
        "total_s": round(total, 3), "peak_gb": round(peak_gb, 3),
        # CPU of the pipeline (after reading): user = computation, system = mostly the kernel
        # providing fresh memory, which is where a run on new, larger arrays pays
        "user_cpu_s": round(usage.ru_utime - before.ru_utime, 3),
        "system_cpu_s": round(usage.ru_stime - before.ru_stime, 3),
    }))


def _start_engine(engine: str) -> float:
    """Seconds to start the engine's session (Spark's JVM), so the run measures the work alone."""
    started = time.perf_counter()
    if engine == "spark":
        from crm_xl.engines.spark_facts import local_session

        local_session()
    return time.perf_counter() - started


def measure(case: str, repeat: int, engine: str = "numpy", partitions: int | None = None) -> dict:
    ensure_data(case)
    runs = []
    for _ in range(repeat):
        out = subprocess.run([sys.executable, __file__, "--child", case, "--engine", engine,
                              *(["--partitions", str(partitions)] if partitions else [])], capture_output=True,
                             text=True, check=True)
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    result = {key: runs[0][key] for key in ("case", "engine", "partitions", "lines", "customers", "history_rows")}
    for key in runs[0]:
        if key.endswith("_s") or key == "peak_gb":
            result[key] = statistics.median(r[key] for r in runs)
    _, _, _, _, target_s, target_gb = CASES[case]
    result["target"] = f"< {target_s:g} s, < {target_gb:g} GB"
    result["met"] = result["total_s"] < target_s and result["peak_gb"] < target_gb
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", choices=[*CASES, "cdnow", "all"], default="all")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--engine", choices=[*ENGINES, "all"], default=DEFAULT_ENGINE,
                        help=f"where the facts run (default {DEFAULT_ENGINE}; all: each engine in turn)")
    parser.add_argument("--partitions", type=int, default=None,
                        help="customer partitions for the snapshots and after (docs/engines.md; default: one)")
    parser.add_argument("--child", choices=list(CASES), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.engine, args.partitions)
        return
    cases = list(CASES) if args.case == "all" else [args.case] if args.case != "cdnow" else []
    for case in cases:
        for engine in ENGINES if args.engine == "all" else [args.engine]:
            print(json.dumps(measure(case, args.repeat, engine, args.partitions)))
    if args.case in ("all", "cdnow"):
        sys.path.insert(0, str(HERE))
        from bench_lifetimes import bench_cdnow

        result = bench_cdnow()
        result["met"] = result["speedup"] >= 2.0
        print(json.dumps({"case": "cdnow_summary", **result}))


if __name__ == "__main__":
    main()
