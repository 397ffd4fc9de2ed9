"""Benchmark of the incremental refresh: one month appended to a stored history, vs a full rebuild.

    python bench/bench_incremental.py                  # 1M lines / 100k customers / 36 months
    python bench/bench_incremental.py --repeat 3       # median of three runs of each
    python bench/bench_incremental.py --engine duckdb

The scenario an analyst lives every month: the store holds the refresh of November (the extract as
it was on 30 November, report month 2025-11, 36 months); December's lines arrive and the refresh of
2025-12 runs over that store. Measured, each in a fresh process (peak memory is that run's alone)
and after the same CSV read: ``full`` (crm_xl.run, no store) and ``incremental`` (run_with_store
over a fresh copy of November's store, so every repeat starts from the same store). The
incremental run is checked to give the full run's tables. Data: bench/bench_pipeline.py's 1M case.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_pipeline import CASES, DATA, ensure_data  # noqa: E402

BEFORE, AFTER = "2025-11", "2025-12"


def child(mode: str, case: str, store: str, engine: str) -> None:
    """One measured run; prints a JSON line."""
    import pandas as pd

    from crm_xl.analyses.report import run_timed
    from crm_xl.io.csv import read_raw_folder
    from crm_xl.store import run_with_store

    raw = read_raw_folder(DATA / case)
    config = {"history_months": CASES[case][2], "report_month": AFTER}
    started = time.perf_counter()
    if mode == "prime":        # November's refresh fills the store (not measured)
        lines = raw["transactions"]
        november = lines[pd.to_datetime(lines["invoice_date"]) < pd.Timestamp(f"{AFTER}-01")]
        result = run_with_store(**{**raw, "transactions": november}, config={**config, "report_month": BEFORE},
                                store=store, engine=engine)
        print(json.dumps({"mode": mode, "seconds": round(time.perf_counter() - started, 3),
                          "plan": result.plan.describe()}))
        return
    if mode == "full":
        tables, layers = run_timed(**raw, config=config, engine=engine)
        plan = "no store"
    else:
        result = run_with_store(**raw, config=config, store=store, engine=engine)
        tables, layers, plan = result.tables, result.seconds, result.plan.describe()
    seconds = time.perf_counter() - started
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / 1024
    print(json.dumps({"mode": mode, "engine": engine, "lines": len(raw["transactions"]),
                      "history_rows": len(tables["customer_history"]), "compute_s": round(seconds, 3),
                      **{f"{k}_s": round(v, 3) for k, v in layers.items()}, "peak_gb": round(peak_gb, 3),
                      "plan": plan, "digest": _digest(tables)}))


def _digest(tables: dict) -> str:
    """A digest of every table's CSV text: the full and the incremental run must agree."""
    import hashlib

    digest = hashlib.blake2b(digest_size=12)
    for name, frame in tables.items():
        digest.update(name.encode())
        digest.update(frame.to_csv(index=False).encode())
    return digest.hexdigest()


def _run(mode: str, case: str, store: Path, engine: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", mode, "--case", case, "--store", str(store),
                          "--engine", engine], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure(case: str, repeat: int, engine: str) -> dict:
    ensure_data(case)
    with tempfile.TemporaryDirectory(prefix="crm_xl_bench_") as tmp:
        base = Path(tmp) / "november"
        prime = _run("prime", case, base, engine)
        runs: dict[str, list[dict]] = {"full": [], "incremental": []}
        for _ in range(repeat):
            runs["full"].append(_run("full", case, base, engine))
            store = Path(tmp) / "store"
            shutil.rmtree(store, ignore_errors=True)
            shutil.copytree(base, store)
            runs["incremental"].append(_run("incremental", case, store, engine))
    result: dict[str, object] = {"case": case, "engine": engine, "prime_s": prime["seconds"],
                                 "prime": prime["plan"]}
    for mode, measured in runs.items():
        for key in measured[0]:
            if key.endswith("_s") or key == "peak_gb":
                result[f"{mode}.{key}"] = statistics.median(r[key] for r in measured)
        result[f"{mode}.plan"] = measured[0]["plan"]
    digests = {r["digest"] for rs in runs.values() for r in rs}
    result["same_tables"] = len(digests) == 1
    result["speedup"] = round(float(result["full.compute_s"]) / float(result["incremental.compute_s"]), 2)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", choices=list(CASES), default="1m")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--engine", default="numpy")
    parser.add_argument("--child", choices=("prime", "full", "incremental"), help=argparse.SUPPRESS)
    parser.add_argument("--store", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.case, args.store, args.engine)
        return
    print(json.dumps(measure(args.case, args.repeat, args.engine), indent=1))


if __name__ == "__main__":
    main()
