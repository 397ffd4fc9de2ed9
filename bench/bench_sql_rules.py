"""crm_xl against a hand-tuned DuckDB SQL of the same month-end rules, raw CSVs to a DataFrame.

    python bench/bench_sql_rules.py                # 1M lines / 100k customers / 36 months, both sides, once
    python bench/bench_sql_rules.py --repeat 3     # median of three runs per side
    python bench/bench_sql_rules.py --no-check     # timings only, without the agreement check

The SQL (:data:`RULES_SQL`) computes, with embedded DuckDB, straight from the three CSVs, what
crm_xl's core computes for customer_history (docs/business_logic.md sections 5 to 12): staging,
customer x month facts, the dense customer x month grid, window sums, activity status, value tier,
lifecycle event and state, and the RFMT quintile scores per month. It ends in one pandas DataFrame
(``.df()``) of customer_history-like rows: report_month, customer_id, m1, m6, m12, m_total, o6,
activity_status, value_tier, lifecycle_event, lifecycle_state, r/f/m/t scores. crm_xl's side is
``crm_xl.io.csv.read_raw_folder`` + ``crm_xl.analyses.report.run_timed(..., config={"history_months":
36})``, as in bench_pipeline.py. Each measured run is a fresh Python process (peak memory = that run's
``ru_maxrss``), the CSV read included on both sides. Printed: one JSON line per side (seconds, peak_gb,
rows; crm_xl also ``core_s``, staging through outputs, without the views such as CLV that the SQL
does not compute), then the ratio ``sql_s / crm_xl_s`` (issue 9's "1.5x"), then the agreement.

Hand-tuning: explicit CSV types, integer month ordinals, integer customer keys for the joins and
window partitions, months before the 13-month lookback gathered in one grid cell (as crm_xl's grid
column 0), each customer's grid starting at its entry (the months before it are all 0), every window
as one running total less the same total k rows back (one sort, five running sums and five lags:
DuckDB's sliding frames cost as much as a running sum each), orders as the invoices per month less
the links of the rare invoices across a month end (no per-invoice window over all invoices), labels
and customer ids as ENUMs so ``.df()`` gives pandas Categoricals (as crm_xl's tables) instead of
millions of Python strings. First draft (one sliding frame per window, order steps for every
invoice): 15.4 s; this one: 8.6 s on an idle moment of the same machine.

Agreement check (``--check``, the default; run in its own process, not timed): the SQL's rows
against crm_xl.run's customer_history on the same CSVs (report month 2025-12, 36 months), joined on
(report_month, customer_id); the share of agreeing rows per column is printed. Expected: 100 % on every
column, rows included. Known simplifications of the SQL, none of which occurs in the generated data
(clean: ``messy=False``), so they cannot cause residual differences there:

- the measure is DOUBLE (quantity x unit_size) rather than crm_xl's exact micro-units: exact for the
  generated whole-number quantities and unit sizes, while decimal sizes such as 0.1 could land a
  customer just below a threshold that crm_xl's exact comparison puts on it (section 9);
- ids are compared as read (no normalising of ``123.0`` to ``123`` or of surrounding spaces, 3.1),
  dates are ISO only, and none of section 15's data-quality rules (blank or unparsable cells, the
  future_date rule) is applied beyond dropping lines with a blank date or quantity;
- the report month and history length are given (crm_xl's blank report month, the latest month with
  data, is 2025-12 here); the settings are crm_xl's defaults (measure units, rfm_population active,
  rfm_method quantile).

RFM cut points are DuckDB's ``quantile_cont`` (linear interpolation, as ``np.quantile``), rounded to 6
decimals as crm_xl does; the two could differ in the last bit of a cut that falls between two values,
which moves a score only if a value lies within 1e-6 of that cut (values are whole days, orders,
units and months here, cuts round to them or lie between them).
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

import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_pipeline import CASES, ensure_data  # noqa: E402  (a bench script beside this one)

CASE = "1m"
REPORT_MONTH = "2025-12"
#: the rule settings the SQL spells out: crm_xl's defaults (crm_xl/config.py)
SETTINGS = {"core_categories": ("consumable",), "anonymous_groups": ("General",), "t_high": 1000, "t_mid_high": 200,
            "t_mid": 50, "a_high": 1500, "f_high": 6, "f_mid": 3}
NUMBERS = ("m1", "m6", "m12", "m_total", "o6")
COMPARED = ("m1", "m6", "m12", "m_total", "o6", "activity_status", "value_tier", "lifecycle_event",
            "lifecycle_state", "r_score", "f_score", "m_score", "t_score")

# Statements run before the query: the analysed customers (read twice: the base and the id ENUM) and the
# label types. {placeholders} are filled by rules_sql().
SETUP_SQL = """
SET preserve_insertion_order = false;
CREATE TYPE status_t AS ENUM ('Active', 'Not Active');
CREATE TYPE tier_t AS ENUM ('Diamond', 'Platinum', 'Gold', 'Silver', 'Bronze', 'Passive');
CREATE TYPE event_t AS ENUM ('New', 'Lost', 'Reactivated');
CREATE TYPE state_t AS ENUM ('Prospect', 'Newcomer', 'Regular', 'Lapsing', 'Churned', 'Returning');
-- 5.4 anonymous customer groups (compared ignoring case and surrounding spaces) are left out of everything
CREATE TEMP TABLE raw_customers AS
SELECT customer_id, created_date
FROM read_csv('{folder}/customers.csv', header = true,
              types = {{'customer_id': 'VARCHAR', 'customer_group': 'VARCHAR', 'created_date': 'DATE'}})
WHERE lower(trim(coalesce(customer_group, ''))) NOT IN ({anonymous_groups});
CREATE TYPE customer_id_t AS ENUM (SELECT customer_id FROM raw_customers ORDER BY customer_id);
-- integer keys (ck) in customer_id order for the joins and window partitions; the id as its ENUM
CREATE TEMP TABLE customers AS
SELECT row_number() OVER (ORDER BY customer_id) AS ck, customer_id, customer_id::customer_id_t AS customer_label,
       created_date
FROM raw_customers;
"""

# Months are ordinals (year * 12 + month - 1): {first} is the first history month, {last} the report
# month, {bucket} = first - 13 the one cell that gathers every earlier month (the longest window the
# rules read is 13 months, M13 for Lost and Reactivated; only running totals read the bucket).
RULES_SQL = """
WITH
-- 5.1 products: core when the master's category is a core category (ignoring case); 5.5 a unit size > 0
products AS (
    SELECT product_id, lower(trim(category)) IN ({core_categories}) AS is_core, unit_size
    FROM read_csv('{folder}/products.csv', header = true,
                  types = {{'product_id': 'VARCHAR', 'category': 'VARCHAR', 'unit_size': 'DOUBLE'}})
    WHERE unit_size > 0
),
-- 5.5 usable lines: a known (not anonymous) customer, a known product, a date and a quantity; any
-- category, any month (entry into the base reads them all). 7: a line without invoice id belongs to its
-- customer's invoice of that day. 5.1-5.3, 5.6 a core purchase: a core product, quantity > 0 (and
-- units > 0), up to the report month's end. 5.2 the measure: units = quantity x unit_size
lines AS (
    SELECT c.ck, coalesce(t.invoice_id, '#' || t.invoice_date::VARCHAR) AS invoice_id, t.invoice_date AS day,
           year(t.invoice_date) * 12 + month(t.invoice_date) - 1 AS month, t.quantity * p.unit_size AS units,
           p.is_core AND t.quantity > 0 AND units > 0 AND month <= {last} AS is_purchase
    FROM read_csv('{folder}/transactions.csv', header = true,
                  types = {{'invoice_id': 'VARCHAR', 'invoice_date': 'DATE', 'customer_id': 'VARCHAR',
                           'product_id': 'VARCHAR', 'quantity': 'DOUBLE'}}) AS t
    JOIN products AS p USING (product_id)
    JOIN customers AS c USING (customer_id)
    WHERE t.invoice_date IS NOT NULL AND t.quantity IS NOT NULL
),
core AS (SELECT ck, invoice_id, day, month, units FROM lines WHERE is_purchase),
-- 6 the base: entry is the month of created_date or of the first usable line, whichever is earlier; no
-- created_date = in the base from the start. 7 the first core month, for tenure
base AS (
    SELECT c.ck, c.customer_label,
           CASE WHEN c.created_date IS NULL THEN {bucket}
                ELSE year(least(c.created_date, f.first_day)) * 12 + month(least(c.created_date, f.first_day)) - 1
           END AS entry_month, f.first_core_month
    FROM customers AS c
    LEFT JOIN (SELECT ck, min(day) AS first_day, min(month) FILTER (WHERE is_purchase) AS first_core_month
               FROM lines GROUP BY ck) AS f USING (ck)
),
-- 7 customer x month facts, months before the lookback gathered in the bucket: units, the latest day, the
-- distinct invoices
facts AS (
    SELECT ck, greatest(month, {bucket}) AS month, sum(units) AS units, max(day) AS last_day,
           count(DISTINCT invoice_id) AS invoices
    FROM core GROUP BY ALL
),
-- 7 orders: distinct invoices with a core line inside the window. Summed over a window, the invoices per
-- month count an invoice once per month it touches; an invoice whose core lines fall in several months
-- links each month m to its previous one p, and a k-month window holding both (the windows ending in
-- m .. p + k - 1) counts one invoice too many. links: those pairs (rare: invoices across a month end)
links AS (
    SELECT ck, month, previous
    FROM (SELECT ck, month, lag(month) OVER (PARTITION BY ck, invoice_id ORDER BY month) AS previous
          FROM (SELECT DISTINCT ck, invoice_id, month
                FROM core JOIN (SELECT ck, invoice_id FROM core GROUP BY ALL HAVING min(month) < max(month))
                     USING (ck, invoice_id)))
    WHERE previous IS NOT NULL
),
-- the links as steps summed down the months: -1 where a link enters the k-month windows, +1 where it leaves
link_steps AS (
    SELECT ck, greatest(month, {bucket}) AS month, sum(s6) AS s6, sum(s12) AS s12
    FROM (SELECT ck, month, -(month - previous < 6)::INT AS s6, -(month - previous < 12)::INT AS s12 FROM links
          UNION ALL SELECT ck, previous + 6, 1, 0 FROM links WHERE month - previous < 6
          UNION ALL SELECT ck, previous + 12, 0, 1 FROM links WHERE month - previous < 12)
    WHERE month <= {last}
    GROUP BY ALL
),
-- 6, 7 the dense grid: every customer every month up to the report month, from the bucket or the month
-- of entry if later (no line precedes entry, so the months before it would all be 0)
grid AS (
    SELECT g.ck, g.entry_month, g.first_core_month, g.month, coalesce(f.units, 0) AS units, f.last_day,
           coalesce(f.invoices, 0) AS invoices, coalesce(f.invoices, 0) + coalesce(l.s6, 0) AS o6_step,
           coalesce(f.invoices, 0) + coalesce(l.s12, 0) AS o12_step
    FROM (SELECT ck, entry_month, first_core_month, unnest(range(greatest(entry_month, {bucket}), {last} + 1)) AS month
          FROM base) AS g
    LEFT JOIN facts AS f USING (ck, month)
    LEFT JOIN link_steps AS l USING (ck, month)
),
-- 7 running totals down each customer's months (one sort for all); a k-month window is the running
-- total less the one k rows back (the grid is dense: rows are months)
running AS (
    SELECT ck, entry_month, first_core_month, month, units AS m1,
           sum(units) OVER w AS m_total, sum(invoices) OVER w AS invoices_total, sum(o6_step) OVER w AS o6_running,
           sum(o12_step) OVER w AS o12_running, max(last_day) OVER w AS last_core_date
    FROM grid
    WINDOW w AS (PARTITION BY ck ORDER BY month ROWS UNBOUNDED PRECEDING)
),
windows AS (
    SELECT *, m_total - lag(m_total, 6, 0) OVER w AS m6, m_total - lag(m_total, 12, 0) OVER w AS m12,
           m_total - lag(m_total, 13, 0) OVER w AS m13,
           o6_running - lag(invoices_total, 6, 0) OVER w AS o6, o12_running - lag(invoices_total, 12, 0) OVER w AS o12
    FROM running
    WINDOW w AS (PARTITION BY ck ORDER BY month)
),
-- 6 the history: the reported months, from the month each customer enters the base
history AS (SELECT * FROM windows WHERE month >= {first} AND month >= entry_month),
-- 8 activity status: core volume in the last 12 months
status AS (SELECT *, m12 > 0 AS active FROM history),
-- 9 value tier, first match wins, blank when Not Active; AMC >= T as M6 >= 6 T, AOS >= A as M6 >= A O6
tier AS (
    SELECT *, CASE WHEN NOT active THEN NULL
                   WHEN m6 = 0 THEN 'Passive'::tier_t
                   WHEN m6 >= 6 * {t_high} AND o6 > 0 AND m6 >= {a_high} * o6 AND o6 >= {f_high} THEN 'Diamond'
                   WHEN m6 >= 6 * {t_high} AND o6 >= {f_mid} THEN 'Platinum'
                   WHEN m6 >= 6 * {t_mid_high} THEN 'Gold'
                   WHEN m6 >= 6 * {t_mid} THEN 'Silver'
                   ELSE 'Bronze' END AS value_tier
    FROM status
),
-- 10 lifecycle event, first match wins (sums of whole units are exact in DOUBLE)
event AS (
    SELECT *, CASE WHEN m1 > 0 AND m1 = m_total THEN 'New'::event_t
                   WHEN m12 = 0 AND m13 > 0 THEN 'Lost'
                   WHEN m1 > 0 AND m1 = m13 AND m_total > m13 THEN 'Reactivated' END AS lifecycle_event
    FROM tier
),
-- 11 lifecycle state, first match wins
state AS (
    SELECT *, CASE WHEN m_total = 0 THEN 'Prospect'::state_t
                   WHEN lifecycle_event = 'New' THEN 'Newcomer'
                   WHEN lifecycle_event = 'Reactivated' THEN 'Returning'
                   WHEN NOT active THEN 'Churned'
                   WHEN value_tier = 'Passive' THEN 'Lapsing'
                   ELSE 'Regular' END AS lifecycle_state
    FROM event
),
-- 12.1 RFMT values: days from the last core purchase to the month's last day, orders and units in 12
-- months, months since the first core month (both included)
rfm_values AS (
    SELECT *, last_day(make_date(month // 12, month % 12 + 1, 1)) - last_core_date AS recency,
           o12 AS frequency, m12 AS monetary, month - first_core_month + 1 AS tenure
    FROM state
),
-- 12.2 cut points: the 20/40/60/80 % quantiles (linear interpolation) over the Active customers of the
-- month, rounded to 6 decimals
cuts AS (
    SELECT month,
           list_transform(quantile_cont(recency, [0.2, 0.4, 0.6, 0.8]), lambda x: round(x, 6)) AS r,
           list_transform(quantile_cont(frequency, [0.2, 0.4, 0.6, 0.8]), lambda x: round(x, 6)) AS f,
           list_transform(quantile_cont(monetary, [0.2, 0.4, 0.6, 0.8]), lambda x: round(x, 6)) AS m,
           list_transform(quantile_cont(tenure, [0.2, 0.4, 0.6, 0.8]), lambda x: round(x, 6)) AS t
    FROM rfm_values WHERE active GROUP BY month
),
-- 12.2 scores of the Active customers: 1 + the cut points strictly below the value (recency: 5 - them)
scores AS (
    SELECT v.*,
           CASE WHEN active THEN 5 - (r[1] < recency)::INT - (r[2] < recency)::INT - (r[3] < recency)::INT
                                   - (r[4] < recency)::INT END AS r_score,
           CASE WHEN active THEN 1 + (f[1] < frequency)::INT + (f[2] < frequency)::INT + (f[3] < frequency)::INT
                                   + (f[4] < frequency)::INT END AS f_score,
           CASE WHEN active THEN 1 + (m[1] < monetary)::INT + (m[2] < monetary)::INT + (m[3] < monetary)::INT
                                   + (m[4] < monetary)::INT END AS m_score,
           CASE WHEN active THEN 1 + (t[1] < tenure)::INT + (t[2] < tenure)::INT + (t[3] < tenure)::INT
                                   + (t[4] < tenure)::INT END AS t_score
    FROM rfm_values AS v JOIN cuts USING (month)
)
SELECT make_date(s.month // 12, s.month % 12 + 1, 1) AS report_month, b.customer_label AS customer_id,
       s.m1, s.m6, s.m12, s.m_total, s.o6::INTEGER AS o6,
       CASE WHEN s.active THEN 'Active'::status_t ELSE 'Not Active'::status_t END AS activity_status,
       s.value_tier, s.lifecycle_event, s.lifecycle_state,
       s.r_score::TINYINT AS r_score, s.f_score::TINYINT AS f_score, s.m_score::TINYINT AS m_score,
       s.t_score::TINYINT AS t_score
FROM scores AS s JOIN base AS b USING (ck)
ORDER BY s.month, s.ck
"""


def _ordinal(month: str) -> int:
    period = pd.Period(month, freq="M")
    return period.year * 12 + period.month - 1


def _texts(names: tuple[str, ...]) -> str:
    return ", ".join("'" + name.strip().lower().replace("'", "''") + "'" for name in names)


def rules_sql(folder: Path, report_month: str, history_months: int) -> tuple[str, str]:
    """(setup statements, the query) for the CSVs in ``folder``."""
    last = _ordinal(report_month)
    first = last - history_months + 1
    values = {"folder": folder.as_posix(), "last": last, "first": first, "bucket": first - 13,
              "core_categories": _texts(SETTINGS["core_categories"]),
              "anonymous_groups": _texts(SETTINGS["anonymous_groups"]),
              **{key: value for key, value in SETTINGS.items() if not isinstance(value, tuple)}}
    return SETUP_SQL.format(**values), RULES_SQL.format(**values)


def run_sql(folder: Path, report_month: str, history_months: int) -> pd.DataFrame:
    """The SQL's customer_history-like rows, on a fresh in-memory DuckDB."""
    import duckdb

    setup, query = rules_sql(folder, report_month, history_months)
    with duckdb.connect(":memory:") as con:
        con.execute(setup)
        return con.sql(query).df()


def child_sql(case: str) -> None:
    started = time.perf_counter()
    frame = run_sql(ensure_data(case), REPORT_MONTH, CASES[case][2])
    seconds = time.perf_counter() - started
    print(json.dumps({"side": "sql", "case": case, "seconds": round(seconds, 3), "peak_gb": _peak_gb(),
                      "rows": len(frame)}))


def child_crm(case: str) -> None:
    from crm_xl.analyses.report import VIEWS, run_timed
    from crm_xl.engines.pages import small_pages
    from crm_xl.io.csv import read_raw_folder

    started = time.perf_counter()
    with small_pages():   # as `crm-xl run` reads and runs (crm_xl.engines.pages)
        raw = read_raw_folder(ensure_data(case))
        read_s = time.perf_counter() - started
        tables, layers = run_timed(**raw, config={"history_months": CASES[case][2]})
    seconds = time.perf_counter() - started
    views = {name for name, _ in VIEWS}
    core_s = sum(v for k, v in layers.items() if k not in views)
    print(json.dumps({"side": "crm_xl", "case": case, "seconds": round(seconds, 3), "peak_gb": _peak_gb(),
                      "rows": len(tables["customer_history"]), "read_s": round(read_s, 3),
                      "core_s": round(core_s, 3), "read_plus_core_s": round(read_s + core_s, 3)}))


def child_check(case: str) -> None:
    """Agreement of the SQL's rows with crm_xl's customer_history, per column (not timed)."""
    import crm_xl
    from crm_xl.io.csv import read_raw_folder

    folder = ensure_data(case)
    sql = run_sql(folder, REPORT_MONTH, CASES[case][2])
    raw = read_raw_folder(folder)
    history = crm_xl.run(**raw, config={"report_month": REPORT_MONTH, "history_months": CASES[case][2]})[
        "customer_history"]
    print(json.dumps(agreement(sql, history)))


def agreement(sql: pd.DataFrame, history: pd.DataFrame) -> dict:
    """Rows on each side, rows on both, and per compared column the share of those rows that agree
    (blank = blank agrees)."""
    keys = ["report_month", "customer_id"]

    def keyed(frame: pd.DataFrame) -> pd.DataFrame:
        out = frame[[*keys, *COMPARED]].copy()
        out["report_month"] = pd.to_datetime(out["report_month"]).dt.to_period("M").astype(str)
        out["customer_id"] = out["customer_id"].astype(str)
        return out

    both = keyed(sql).merge(keyed(history), on=keys, how="outer", suffixes=("_sql", "_crm"), indicator=True)
    matched = both[both["_merge"] == "both"]
    shares = {}
    for column in COMPARED:
        left, right = matched[f"{column}_sql"], matched[f"{column}_crm"]
        if column in NUMBERS:
            same = (left.astype("float64") - right.astype("float64")).abs().le(1e-6)
        else:
            same = left.astype(object).where(left.notna(), None) == right.astype(object).where(right.notna(), None)
            same = same | (left.isna().to_numpy() & right.isna().to_numpy())
        shares[column] = round(float(same.mean()) * 100, 4) if len(matched) else 0.0
    return {"check": "agreement_pct", "sql_rows": len(sql), "crm_xl_rows": len(history),
            "rows_on_both": len(matched), "only_sql": int((both["_merge"] == "left_only").sum()),
            "only_crm_xl": int((both["_merge"] == "right_only").sum()), **shares}


def _peak_gb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / 1024, 3)


def measure(side: str, case: str, repeat: int) -> dict:
    runs = []
    for _ in range(repeat):
        out = subprocess.run([sys.executable, __file__, "--child", side, "--case", case], capture_output=True,
                             text=True, check=True)
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    result = dict(runs[0])
    for key, value in runs[0].items():
        if isinstance(value, float):
            result[key] = statistics.median(r[key] for r in runs)
    result["repeat"] = repeat
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", choices=list(CASES), default=CASE)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--no-check", dest="check", action="store_false", help="skip the agreement check")
    parser.add_argument("--child", choices=("sql", "crm_xl", "check"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        {"sql": child_sql, "crm_xl": child_crm, "check": child_check}[args.child](args.case)
        return
    ensure_data(args.case)
    crm = measure("crm_xl", args.case, args.repeat)
    sql = measure("sql", args.case, args.repeat)
    print(json.dumps(crm))
    print(json.dumps(sql))
    print(json.dumps({"ratio": "sql_s / crm_xl_s", "whole_run": round(sql["seconds"] / crm["seconds"], 3),
                      "read_plus_core": round(sql["seconds"] / crm["read_plus_core_s"], 3)}))
    if args.check:
        out = subprocess.run([sys.executable, __file__, "--child", "check", "--case", args.case],
                             capture_output=True, text=True, check=True)
        print(out.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
