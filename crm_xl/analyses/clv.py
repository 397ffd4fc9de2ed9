"""Who will buy again: P(alive), expected orders and customer lifetime value (BG/NBD + Gamma-Gamma).

The analyst view behind the ``clv`` and ``clv_holdout`` tables (see ``docs/clv.md``). From the core
purchases (the staged lines the core counts: core category, quantity > 0 and measure > 0) up to the
report month's end it builds lifetimes' RFM summary in days (:func:`lifetimes_summary`, ``freq="D"``:
an "order" here is a day with a core purchase, as lifetimes counts them, and monetary_value is the
mean revenue of the repeat order days), fits BG/NBD (the repeat-buying process) and Gamma-Gamma (the
order value) by maximum likelihood (:mod:`crm_xl.analyses.clv_models`, equal to lifetimes), and
predicts per customer. Horizons are months of 30 days, as in lifetimes' ``customer_lifetime_value``.

A fit that cannot be made (under 50 repeat buyers, or the optimiser fails) never stops the run: the
table is empty (or, when only the Gamma-Gamma fit fails, its value columns are blank) and run_info
and data_quality say what is missing and what to do.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from crm_xl import contract
from crm_xl.analyses import clv_models as M
from crm_xl.analyses.lifetimes_compat import lifetimes_summary
from crm_xl.config import NEWCOMER, REGULAR, RETURNING, Config
from crm_xl.core.exact import SCALE
from crm_xl.core.pipeline import CoreRun
from crm_xl.core.staging import KIND_CORE

__all__ = ["DAYS_PER_MONTH", "MIN_REPEAT_BUYERS", "clv"]

#: lifetimes' month for a daily summary (``customer_lifetime_value(freq="D")``).
DAYS_PER_MONTH = 30
#: Fewer repeat buyers than this: no fit (the parameters would be noise).
MIN_REPEAT_BUYERS = 50
#: Calibration repeat orders from this many on share the last row of clv_holdout.
HOLDOUT_CAP = 7
_ORDER_MONTHS = (3, 6, 12)
# the states of an Active customer with a tier
_ACTIVE_STATES = (NEWCOMER, REGULAR, RETURNING)


@dataclass(frozen=True)
class _Summary:
    """lifetimes' summary of the core purchases: one row per customer with a core purchase."""

    keys: np.ndarray          # customer_key
    frequency: np.ndarray     # repeat order days
    recency: np.ndarray       # days from the first to the last order day
    T: np.ndarray             # days from the first order day to the observation end
    monetary: np.ndarray      # mean revenue of the repeat order days (0 without repeat)

    @property
    def repeat_buyers(self) -> int:
        return int(np.count_nonzero(self.frequency > 0))


class _NoFit(Exception):
    """The model cannot be fitted; the text says why and what to do."""


def clv(core: CoreRun) -> dict[str, pd.DataFrame]:
    """The ``clv`` and ``clv_holdout`` tables, and run_info and data_quality with the fit's rows added."""
    cfg = core.config
    purchases = _core_purchases(core.staged.lines, cfg.measure)
    end = core.staged.report_month.end_time.normalize()
    notes: list[tuple[str, str, str]] = []        # run_info rows
    warnings: list[tuple[str, str, int, str]] = []  # (column, rule, rows, message) of data_quality
    summary = _summary(purchases, end)
    notes += [("clv.time_unit", f"days (a month = {DAYS_PER_MONTH} days)", "Time unit of the CLV models: "
               "recency, T and the horizons are in days; an order is a day with a core purchase"),
              ("clv.customers", str(summary.keys.size), "Customers with a core purchase up to the report "
                                                        "month's end (the rows of clv)"),
              ("clv.repeat_buyers", str(summary.repeat_buyers), "Of them, customers with a core purchase on "
                                                                "more than one day (what BG/NBD learns from)")]
    try:
        table, fit_notes, fit_warnings = _clv_table(core, summary)
    except _NoFit as problem:
        table, fit_notes, fit_warnings = _empty("clv"), [], [("customer_id", "clv_not_fitted",
                                                               summary.repeat_buyers, str(problem))]
        notes.append(("clv.status", "not fitted: " + str(problem), "Whether the CLV models were fitted"))
    notes += fit_notes
    warnings += fit_warnings
    holdout, holdout_notes, holdout_warnings = _holdout(purchases, end, cfg)
    notes += holdout_notes
    if len(table):      # when even the whole history is too little, the one warning above says it all
        warnings += holdout_warnings
    return {"clv": table, "clv_holdout": holdout,
            "run_info": _with_rows(core.tables["run_info"], notes),
            "data_quality": _with_warnings(core.tables["data_quality"], warnings)}


# --- inputs --------------------------------------------------------------------------------------


def _core_purchases(lines: pd.DataFrame, measure: str) -> pd.DataFrame:
    """customer_key, date and revenue (a float in currency units) of the lines the core counts as purchases."""
    core = ((lines["kind"].to_numpy() == KIND_CORE) & (lines["quantity"].to_numpy() > 0)
            & (lines[measure].to_numpy() > 0))
    revenue = np.asarray(lines["revenue"].to_numpy()[core], dtype=np.float64) / SCALE
    return pd.DataFrame({"customer_key": lines["customer_key"].to_numpy()[core],
                         "date": lines["date"].to_numpy()[core], "revenue": revenue})


def _summary(purchases: pd.DataFrame, end: pd.Timestamp) -> _Summary:
    if purchases.empty or purchases["date"].min() > end:
        empty = np.empty(0)
        return _Summary(np.empty(0, dtype=np.int64), empty, empty, empty, empty)
    frame = lifetimes_summary(purchases, "customer_key", "date", "revenue", observation_period_end=end, freq="D")
    return _Summary(frame.index.to_numpy(dtype=np.int64), frame["frequency"].to_numpy(),
                    frame["recency"].to_numpy(), frame["T"].to_numpy(), frame["monetary_value"].to_numpy())


# --- the fits ------------------------------------------------------------------------------------


def _fit_bgnbd(summary: _Summary, penalizer: float, what: str) -> M.Fit:
    if summary.repeat_buyers < MIN_REPEAT_BUYERS:
        raise _NoFit(f"{what} has {summary.repeat_buyers} repeat buyers (customers with core purchases on two "
                     f"or more days); the model needs at least {MIN_REPEAT_BUYERS}: add more history (older "
                     "transactions) or check core_categories")
    try:
        fit = M.fit_bgnbd(summary.frequency, summary.recency, summary.T, penalizer)
    except (ValueError, ArithmeticError, np.linalg.LinAlgError) as exc:
        raise _NoFit(f"the BG/NBD fit of {what} failed ({exc}); try clv_penalizer = 0.01") from None
    if not fit.usable or fit.params["a"] == 1:
        raise _NoFit(f"the BG/NBD fit of {what} did not converge ({fit.message}); try clv_penalizer = 0.01 "
                     "(or 0.1)")
    return fit


def _fit_gamma_gamma(summary: _Summary, penalizer: float) -> M.Fit:
    """Gamma-Gamma on the repeat buyers whose mean repeat order value is > 0 (its likelihood takes logs)."""
    use = (summary.frequency > 0) & (summary.monetary > 0)
    if np.count_nonzero(use) < MIN_REPEAT_BUYERS:
        raise _NoFit(f"only {np.count_nonzero(use)} repeat buyers with a revenue > 0; the order-value model needs "
                     f"at least {MIN_REPEAT_BUYERS}: check the revenue column of the transactions")
    try:
        fit = M.fit_gamma_gamma(summary.frequency[use], summary.monetary[use], penalizer)
    except (ValueError, ArithmeticError, np.linalg.LinAlgError) as exc:
        raise _NoFit(f"the Gamma-Gamma fit failed ({exc}); try clv_penalizer = 0.01") from None
    if not fit.usable:
        raise _NoFit(f"the Gamma-Gamma fit did not converge ({fit.message}); try clv_penalizer = 0.01")
    if fit.params["q"] <= 1:
        # the population mean order value v p / (q - 1) is then not finite: every prediction would be nonsense
        raise _NoFit(f"the Gamma-Gamma fit gives q = {fit.params['q']:.4g} <= 1 (order values too spread out for a "
                     "finite mean); lower clv_penalizer (0 is plain maximum likelihood) or check the revenue column")
    return fit


def _fit_rows(prefix: str, label: str, fit: M.Fit, names: tuple[str, ...]) -> list[tuple[str, str, str]]:
    rows = [(f"{prefix}.log_likelihood", _number(fit.log_likelihood), f"{label}: log-likelihood at the fitted "
                                                                       "parameters (days as the time unit)"),
            (f"{prefix}.converged", "TRUE" if fit.converged else "FALSE", f"{label}: whether the optimiser "
                                                                          f"converged ({fit.message})"),
            (f"{prefix}.iterations", str(fit.iterations), f"{label}: optimiser iterations (BFGS)"),
            (f"{prefix}.gradient", f"{fit.gradient:.3g}", f"{label}: largest gradient component at the end (a fit "
                                                          "that did not converge is used when it is below 1e-4: a "
                                                          "flat optimum)"),
            (f"{prefix}.customers", str(fit.customers), f"{label}: customers in the fit")]
    rows += [(f"{prefix}.{name}", _number(fit.params[name]), f"{label} parameter {name}") for name in names]
    return rows


def _number(value: float) -> str:
    return f"{value:.10g}"


# --- the clv table -------------------------------------------------------------------------------


def _clv_table(core: CoreRun, summary: _Summary) -> tuple[pd.DataFrame, list[tuple[str, str, str]],
                                                          list[tuple[str, str, int, str]]]:
    cfg = core.config
    bg = _fit_bgnbd(summary, cfg.clv_penalizer, "the history up to the report month")
    notes = [("clv.status", "fitted", "Whether the CLV models were fitted"),
             *_fit_rows("clv.bgnbd", "BG/NBD", bg, M.BGNBD_PARAMS)]
    x, rec, T = summary.frequency, summary.recency, summary.T
    alive = M.p_alive(bg.params, x, rec, T)
    months = sorted({*range(1, cfg.clv_horizon_months + 1), *_ORDER_MONTHS})
    cumulative = M.expected_purchases_by_time(bg.params, [float(DAYS_PER_MONTH * k) for k in months], x, rec, T)
    by_month = dict(zip(months, cumulative, strict=True))
    if not (np.all(np.isfinite(alive)) and np.all(np.isfinite(cumulative))):
        raise _NoFit("the BG/NBD predictions are not finite numbers (extreme parameters); try clv_penalizer = 0.01")
    warnings: list[tuple[str, str, int, str]] = []
    try:
        gg = _fit_gamma_gamma(summary, cfg.clv_penalizer)
    except _NoFit as problem:
        value = lifetime = np.full(x.size, np.nan)
        notes.append(("clv.gamma_gamma.status", "not fitted: " + str(problem), "Whether the order-value model "
                                                                               "(Gamma-Gamma) was fitted"))
        warnings.append(("revenue", "clv_value_not_fitted", summary.repeat_buyers,
                         f"expected_order_value and clv are blank: {problem}"))
    else:
        notes += [("clv.gamma_gamma.status", "fitted", "Whether the order-value model (Gamma-Gamma) was fitted"),
                  *_fit_rows("clv.gamma_gamma", "Gamma-Gamma", gg, M.GG_PARAMS)]
        value = M.expected_order_value(gg.params, x, summary.monetary)
        horizon = np.array([by_month[k] for k in range(1, cfg.clv_horizon_months + 1)])
        lifetime = M.lifetime_value(horizon, value, cfg.clv_discount_rate_monthly)
    ids = core.staged.customers["customer_id"].to_numpy()[summary.keys]
    frame = pd.DataFrame({
        "customer_id": pd.array(ids, dtype="str"),
        "p_alive": alive,
        **{f"expected_orders_{k}m": by_month[k] for k in _ORDER_MONTHS},
        "expected_order_value": value,
        "clv": lifetime,
        "churn_risk": _churn_risk(core, summary.keys, ids, alive, cfg),
    })
    return frame.astype({"churn_risk": "int64"}), notes, warnings


def _churn_risk(core: CoreRun, keys: np.ndarray, ids: np.ndarray, alive: np.ndarray, cfg: Config) -> np.ndarray:
    """1 for customers active in the report month (active, new, reactivated) whose p_alive is below the setting."""
    snapshot = core.tables["customer_snapshot"]
    snapshot_ids = snapshot["customer_id"].to_numpy(dtype=object)
    if np.array_equal(snapshot_ids, core.staged.customers["customer_id"].to_numpy(dtype=object)):
        at = keys           # the snapshot keeps the master's order, row i being customer_key i
    else:
        at = pd.Index(snapshot_ids.astype(str)).get_indexer(pd.Index(ids, dtype="str"))
    active = np.isin(snapshot["lifecycle_state"].to_numpy(dtype=object), _ACTIVE_STATES)
    in_state = np.zeros(ids.size, dtype=bool)
    found = at >= 0
    in_state[found] = active[at[found]]
    return (in_state & (alive < cfg.churn_risk_p_alive)).astype(np.int64)


# --- holdout validation --------------------------------------------------------------------------


def _holdout(purchases: pd.DataFrame, end: pd.Timestamp, cfg: Config
             ) -> tuple[pd.DataFrame, list[tuple[str, str, str]], list[tuple[str, str, int, str]]]:
    """Fit on the history up to clv_holdout_months before the end, predict the held-out months, compare."""
    if cfg.clv_holdout_months == 0:
        return _empty("clv_holdout"), [("clv.holdout.status", "off (clv_holdout_months = 0)",
                                        "Whether the holdout check ran")], []
    cal_end = (pd.Period(end, freq="M") - cfg.clv_holdout_months).end_time.normalize()
    days = int((end - cal_end) / pd.Timedelta(days=1))
    what = f"the calibration period (up to {cal_end.date()})"
    notes = [("clv.holdout.calibration_end", str(cal_end.date()), "Last day of the calibration period: the model "
                                                                  "is fitted on the purchases up to it"),
             ("clv.holdout.days", str(days), "Days held out (after the calibration end, up to the report "
                                             "month's end), whose orders the calibrated model predicts")]
    calibration = _summary(purchases[purchases["date"] <= cal_end], cal_end)
    try:
        fit = _fit_bgnbd(calibration, cfg.clv_penalizer, what)
    except _NoFit as problem:
        notes.append(("clv.holdout.status", "not run: " + str(problem), "Whether the holdout check ran"))
        return _empty("clv_holdout"), notes, [("customer_id", "clv_holdout_not_run", calibration.repeat_buyers,
                                               f"clv_holdout is empty: {problem}")]
    notes += [("clv.holdout.status", "ran", "Whether the holdout check ran"),
              *_fit_rows("clv.holdout.bgnbd", "BG/NBD on the calibration period", fit, M.BGNBD_PARAMS)]
    actual = _holdout_orders(purchases, cal_end, end, calibration.keys)
    predicted = M.expected_purchases_by_time(fit.params, [float(days)], calibration.frequency,
                                             calibration.recency, calibration.T)[0]
    bucket = np.minimum(calibration.frequency, HOLDOUT_CAP).astype(np.int64)
    counts = np.bincount(bucket, minlength=HOLDOUT_CAP + 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_actual = np.bincount(bucket, weights=actual, minlength=HOLDOUT_CAP + 1) / counts
        mean_predicted = np.bincount(bucket, weights=predicted, minlength=HOLDOUT_CAP + 1) / counts
    labels = [str(k) for k in range(HOLDOUT_CAP)] + [f"{HOLDOUT_CAP}+"]
    table = pd.DataFrame({"calibration_orders": pd.array(labels, dtype="str"), "actual_holdout_orders": mean_actual,
                          "predicted_holdout_orders": mean_predicted, "customers": counts.astype(np.int64)})
    return table, notes, []


def _holdout_orders(purchases: pd.DataFrame, cal_end: pd.Timestamp, end: pd.Timestamp,
                    keys: np.ndarray) -> np.ndarray:
    """Per calibration customer (``keys``, sorted), the days with a core purchase in (cal_end, end]."""
    dates = purchases["date"].to_numpy()
    inside = (dates > cal_end.to_datetime64()) & (dates <= end.to_datetime64())
    day = dates[inside].astype("datetime64[D]").astype(np.int64)
    key = purchases["customer_key"].to_numpy()[inside].astype(np.int64)
    if not day.size or not keys.size:
        return np.zeros(keys.size)
    span = int(day.max() - day.min()) + 1
    pairs = np.unique(key * span + (day - day.min()))     # one per customer and day
    per_customer = np.bincount(pairs // span, minlength=int(max(keys.max(), key.max())) + 1)
    return per_customer[keys].astype(np.float64)


# --- the tables the view extends -----------------------------------------------------------------


def _empty(table: str) -> pd.DataFrame:
    dtypes = {"text": "str", "label": "str", "integer": "int64", "decimal": "float64"}
    return pd.DataFrame({name: pd.Series(dtype=dtypes[kind]) for name, kind, _ in contract.TABLES[table][1]})


def _with_rows(run_info: pd.DataFrame, rows: list[tuple[str, str, str]]) -> pd.DataFrame:
    extra = pd.DataFrame(rows, columns=["item", "value", "description"])
    return pd.concat([run_info, extra], ignore_index=True).astype("str")


def _with_warnings(quality: pd.DataFrame, warnings: list[tuple[str, str, int, str]]) -> pd.DataFrame:
    if not warnings:
        return quality
    extra = pd.DataFrame([{"table": "transactions", "column": column, "rule": rule, "severity": "warning",
                           "rows": rows, "example_rows": "", "example_values": "", "message": message}
                          for column, rule, rows, message in warnings], columns=quality.columns)
    frame = pd.concat([quality, extra], ignore_index=True)
    return frame.astype({c: ("int64" if c == "rows" else "str") for c in frame.columns})
