"""Benchmark of the headless workbook refresh: a workbook whose Raw holds N transaction lines.

    python bench/bench_refresh.py                  # 100k and 1M lines
    python bench/bench_refresh.py --lines 100000   # one size

For each size a workbook is made once (template + generated data loaded into Raw, not timed) in
``bench/data/``; then a fresh Python process copies it and runs ``crm_xl.workbook.refresh`` on the
copy, reporting read / compute / write seconds and peak memory. Target (2-core machine): 100k lines
in under 15 s end to end.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
SIZES = {100_000: (10_000, 24), 1_000_000: (100_000, 24)}   # lines -> (customers, months)


def ensure_book(lines: int) -> Path:
    book = DATA / f"refresh_{lines}.xlsm"
    if not book.exists():
        from crm_xl.io.sample import generate
        from crm_xl.workbook.book import load_raw, new_workbook

        customers, months = SIZES[lines]
        DATA.mkdir(parents=True, exist_ok=True)
        new_workbook(book, overwrite=True)
        load_raw(book, generate(n_customers=customers, months=months, target_transactions=lines, messy=False,
                                seed=11))
    return book


def child(lines: int) -> None:
    from crm_xl.workbook.refresh import refresh_workbook

    work = DATA / f"refresh_{lines}_work.xlsm"
    shutil.copyfile(ensure_book(lines), work)
    marks: dict[str, float] = {}
    started = time.perf_counter()

    def progress(message: str) -> None:
        marks[message.split(" ")[0]] = time.perf_counter() - started

    result = refresh_workbook(work, progress=progress)
    total = time.perf_counter() - started
    compute = sum(v for k, v in result.seconds.items() if k not in ("read", "total"))
    print(json.dumps({
        "lines": lines, "read_s": round(result.seconds["read"], 3), "compute_s": round(compute, 3),
        "write_s": round(total - marks.get("writing", total), 3), "total_s": round(total, 3),
        "history_rows": len(result.tables["customer_history"]),
        "file_mb": round(work.stat().st_size / 1e6, 1),
        "peak_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / 1024, 3),
    }))
    work.unlink()
    work.with_name(f"{work.stem}_customer_history.parquet").unlink(missing_ok=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, choices=list(SIZES), action="append")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    for lines in args.lines or list(SIZES):
        ensure_book(lines)
        out = subprocess.run([sys.executable, __file__, "--child", str(lines)], capture_output=True, text=True,
                             check=True)
        result = json.loads(out.stdout.strip().splitlines()[-1])
        if lines == 100_000:
            result["target"], result["met"] = "< 15 s", result["total_s"] < 15
        print(json.dumps(result))


if __name__ == "__main__":
    main()
