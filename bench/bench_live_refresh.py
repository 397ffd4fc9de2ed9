"""Benchmark of the live (xlwings) refresh against the headless one, on the same workbook.

    python bench/bench_live_refresh.py                  # 100k lines (and 1M with --lines 1000000)
    python bench/bench_live_refresh.py --lines 1000000

No Excel runs here, so the live refresh runs through xlwings' remote engine (``xw.Book(json=...)``,
the Book API xlwings Server and Lite use): the workbook's cells as JSON in, the writes as recorded
actions out. That measures the Python side of a live refresh (reading Raw and Config through the
Book API, computing, building every table's writes); Excel's own time to apply the writes is not
in it. The headless figure is ``crm-xl refresh`` of the same file (bench_refresh.py's workbook).
Target (issue 11): the live refresh within 1.5x the headless one. Each run is a fresh process.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))


def child(kind: str, book: str) -> None:
    """One measured run in this process; prints a JSON line."""
    folder = Path(tempfile.mkdtemp(prefix="crm_xl_bench_"))
    copy = folder / Path(book).name
    shutil.copyfile(book, copy)
    if kind == "headless":
        from crm_xl.workbook.refresh import refresh_workbook

        started = time.perf_counter()
        refresh_workbook(copy)
        seconds = time.perf_counter() - started
        actions = None
    else:
        import xlwings as xw
        from test_excel_refresh import book_payload  # the JSON xlwings' VBA client sends, from the file

        from crm_xl.excel.refresh import refresh

        payload = book_payload(copy)
        os.chdir(folder)
        book = xw.Book(json=payload)                   # not timed: Excel holds the workbook already
        started = time.perf_counter()
        refresh(book)
        seconds = time.perf_counter() - started
        actions = len(book.json()["actions"])
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    shutil.rmtree(folder, ignore_errors=True)
    print(json.dumps({"kind": kind, "seconds": round(seconds, 2), "peak_gb": round(peak, 2), "actions": actions}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=100_000, choices=(100_000, 1_000_000))
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--child", nargs=2, metavar=("KIND", "BOOK"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    os.environ.setdefault("XLWINGS_LICENSE_KEY", "noncommercial")   # the remote engine's key for open source
    from bench_refresh import ensure_book

    book = ensure_book(args.lines)
    figures: dict[str, list[float]] = {"headless": [], "live": []}
    for _ in range(args.repeat):
        for kind in figures:
            out = subprocess.run([sys.executable, __file__, "--child", kind, str(book)], check=True,
                                 capture_output=True, text=True).stdout.strip().splitlines()[-1]
            result = json.loads(out)
            figures[kind].append(result["seconds"])
            print(json.dumps({"lines": args.lines, **result}), flush=True)
    best = {kind: min(values) for kind, values in figures.items()}
    print(json.dumps({"lines": args.lines, "headless_s": best["headless"], "live_s": best["live"],
                      "live_vs_headless": round(best["live"] / best["headless"], 2), "target": "<= 1.5",
                      "met": best["live"] <= 1.5 * best["headless"]}))


if __name__ == "__main__":
    main()
