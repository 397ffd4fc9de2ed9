"""Benchmark across scales and engines: 1M and 10M lines on each engine, against the in-memory
engine and a hand-tuned DuckDB SQL of the same rules (issue 14.5).

    python bench/bench_scale.py                       # 1m and 10m, every installed engine, once
    python bench/bench_scale.py --case 1m --repeat 3  # medians of three runs

Each figure is a fresh process's (bench_pipeline.py for crm_xl on an engine, bench_sql_rules.py for
the SQL): seconds for the whole run from the CSVs and the process's peak resident memory. Printed:
one JSON line per (case, engine) with ``vs_numpy`` (seconds / the numpy engine's) and ``vs_sql``
(seconds / the SQL's; below 1 is faster than the SQL), then one line per case for the SQL. An
engine whose library is not installed is reported as skipped (pip install 'crm-xl[duckdb]' or
'crm-xl[spark]'). The 100M-line DuckDB run of the issue needs the larger-than-memory input path
(docs/engines.md, "Plan: larger-than-memory inputs"): every engine still stages the lines in
memory, so it is reported as not run, with the reason.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_pipeline  # noqa: E402
import bench_sql_rules  # noqa: E402

LIBRARIES = {"numpy": "numpy", "duckdb": "duckdb", "spark": "pyspark"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", choices=[*bench_pipeline.CASES, "all"], default="all")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--engine", action="append", choices=list(LIBRARIES),
                        help="an engine to run (repeatable; default: every installed one)")
    args = parser.parse_args()
    cases = list(bench_pipeline.CASES) if args.case == "all" else [args.case]
    engines = args.engine or list(LIBRARIES)
    for case in cases:
        sql = bench_sql_rules.measure("sql", case, args.repeat)
        print(json.dumps({"case": case, "engine": "hand-tuned DuckDB SQL", "total_s": sql["seconds"],
                          "peak_gb": sql["peak_gb"]}))
        numpy_s = None
        for engine in engines:
            if importlib.util.find_spec(LIBRARIES[engine]) is None:
                print(json.dumps({"case": case, "engine": engine, "skipped": f"{LIBRARIES[engine]} is not installed"}))
                continue
            result = bench_pipeline.measure(case, args.repeat, engine)
            numpy_s = result["total_s"] if engine == "numpy" else numpy_s
            print(json.dumps({"case": case, "engine": engine, "total_s": result["total_s"],
                              "facts_s": result.get("facts_s"), "peak_gb": result["peak_gb"],
                              "vs_numpy": None if numpy_s is None else round(result["total_s"] / numpy_s, 2),
                              "vs_sql": round(result["total_s"] / sql["seconds"], 2)}))
    print(json.dumps({"case": "100m", "engine": "duckdb", "skipped":
                      "not run: every engine stages the lines in memory today; 100M lines need DuckDB to read the "
                      "files itself (docs/engines.md, Plan: larger-than-memory inputs)"}))


if __name__ == "__main__":
    main()
