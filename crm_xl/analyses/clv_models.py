"""BG/NBD and Gamma-Gamma: maximum-likelihood fits and per-customer predictions (private to :mod:`clv`).

The likelihoods are the closed forms of Fader, Hardie & Lee (2005, "Counting your customers the
easy way", section 7) and Fader & Hardie's note 025 (the Gamma-Gamma model of monetary value). The
objective, its parameterisation and the optimiser are lifetimes 0.11.3's, so the parameters agree
with ``BetaGeoFitter`` and ``GammaGammaFitter``:

* parameters are optimised on the log scale, from ``log(theta) = 0.1`` each, with scipy's BFGS
  (what ``minimize(method=None)`` picks without bounds) and ``tol = 1e-7``;
* the objective is the *mean* negative log-likelihood plus ``penalizer * sum(theta ** 2)`` (an L2
  penalty on the parameters themselves, not on their logs);
* BG/NBD times are scaled so the oldest customer's age T is 1 while fitting (the penalty therefore
  applies to that scaled alpha); alpha is scaled back afterwards.

Unlike lifetimes, the gradient is analytic (no autograd), customers with the same
(frequency, recency, T) are fitted once with a weight (the objective is the same weighted mean),
and the terms that depend on the frequency alone are evaluated once per distinct frequency. That
is what makes a million customers a matter of seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.special import digamma, expit, gammaln, hyp2f1

#: lifetimes' starting point (log scale) and tolerance.
_X0 = 0.1
_TOL = 1e-7
#: A fit that stops short of scipy's own success test is still usable when the largest component of
#: the gradient (of the mean log-likelihood in the log parameters) is below this: BFGS reports
#: "precision loss" on a flat ridge, e.g. BG/NBD's a and b growing together without bound when
#: hardly anyone drops out, where the predictions no longer change.
_GRAD_OK = 1e-4

BGNBD_PARAMS = ("r", "alpha", "a", "b")
GG_PARAMS = ("p", "q", "v")


@dataclass(frozen=True)
class Fit:
    """The outcome of one maximum-likelihood fit."""

    params: dict[str, float]     # in the data's time unit (alpha scaled back)
    log_likelihood: float        # total log-likelihood at the optimum (the penalty left out)
    converged: bool              # scipy's success
    iterations: int
    message: str                 # scipy's message
    customers: int               # customers in the fit
    gradient: float              # largest absolute gradient component at the end (mean log-likelihood)

    @property
    def usable(self) -> bool:
        """Finite parameters at a (numerically) flat point: converged, or stopped where the gradient is tiny."""
        finite = all(np.isfinite(v) for v in self.params.values()) and np.isfinite(self.log_likelihood)
        return bool(finite and (self.converged or self.gradient < _GRAD_OK))


def _dot(a: np.ndarray, b: np.ndarray) -> float:
    """sum(a * b) without BLAS: ``a @ b`` hands long vectors to a multithreaded BLAS, whose threads cost
    several times the sum itself on a busy two-core machine."""
    return float(np.multiply(a, b).sum())


def _unique_rows(*columns: np.ndarray) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """The distinct rows of the columns (sorted), each row's position among them, and their counts."""
    frame = pd.DataFrame({str(i): c for i, c in enumerate(columns)}, copy=False)
    codes = frame.groupby(list(frame.columns), sort=True).ngroup().to_numpy()
    counts = np.bincount(codes)
    first = np.zeros(counts.size, dtype=np.int64)
    first[codes[::-1]] = np.arange(codes.size - 1, -1, -1)   # the first row of each group
    return [c[first] for c in columns], codes, counts.astype(np.float64)


def _minimize(objective, n_params: int) -> tuple[np.ndarray, object]:
    with np.errstate(all="ignore"):
        result = minimize(objective, np.full(n_params, _X0), jac=True, method="BFGS", tol=_TOL)
    return result.x, result


def _fit(params: dict[str, float], log_likelihood: float, result, grad: np.ndarray, customers: float) -> Fit:
    gradient = float(np.max(np.abs(grad))) if np.all(np.isfinite(grad)) else float("inf")
    return Fit(params, float(log_likelihood), bool(result.success), int(result.nit), str(result.message),
               int(customers), gradient)


# --- BG/NBD -----------------------------------------------------------------------------------------


class _BgnbdData:
    """Distinct (frequency, recency, T) rows with their weights, times scaled so max(T) = 1, and the
    indexes that let each evaluation take logs once per distinct T, recency and frequency."""

    def __init__(self, frequency: np.ndarray, recency: np.ndarray, T: np.ndarray) -> None:
        self.scale = 1.0 / float(np.max(T))
        (x, rec, t), _, w = _unique_rows(frequency.astype(np.float64), recency * self.scale, T * self.scale)
        self.x, self.w = x, w
        self.n = float(w.sum())
        self.ux, x_at = np.unique(x, return_inverse=True)
        self.wx = np.bincount(x_at, weights=w, minlength=self.ux.size)
        self.uT, t_at = np.unique(t, return_inverse=True)
        # sum of w and of w * x per distinct T: the term -(r + x) log(alpha + T) of every customer
        self.w_T = np.bincount(t_at, weights=w, minlength=self.uT.size)
        self.wx_T = np.bincount(t_at, weights=w * x, minlength=self.uT.size)
        repeat = x > 0            # only repeat buyers have the second term of the mixture
        self.urec, rec_at = np.unique(rec[repeat], return_inverse=True)
        self.r_x, self.r_w = x[repeat], w[repeat]
        self.r_x_at, self.r_t_at, self.r_rec_at = x_at[repeat], t_at[repeat], rec_at
        self.ux_minus_1 = np.maximum(self.ux, 1) - 1

    def log_likelihood(self, mean_negative: float) -> float:
        """The total log-likelihood in the data's own time unit from the unpenalised objective on scaled
        times: scaling time by s multiplies a customer's likelihood by s ** -frequency."""
        return float(-mean_negative * self.n + (_dot(self.w, self.x)) * np.log(self.scale))

    def objective(self, log_params: np.ndarray, penalizer: float) -> tuple[float, np.ndarray]:
        """lifetimes' mean negative log-likelihood plus the penalty, and its gradient in the log parameters.

        Per customer, log L = A1 + A2 + log(exp(A3) + [x > 0] exp(A4)) (FHL 2005, section 7) is written
        A1 + A2 + A3 + log(1 + exp(d)) with d = A4 - A3 = log(a / (b + x - 1)) - (r + x) log((alpha + t_x) /
        (alpha + T)); exp(d) / (1 + exp(d)) is the share of the second term, which the gradient needs.
        """
        params = np.exp(log_params)
        r, alpha, a, b = params
        ux, wx = self.ux, self.wx
        per_x = (gammaln(r + ux) - gammaln(r) + r * np.log(alpha)
                 + gammaln(a + b) + gammaln(b + ux) - gammaln(b) - gammaln(a + b + ux))
        log_t, log_rec = np.log(alpha + self.uT), np.log(alpha + self.urec)
        inv_t, inv_rec = 1 / (alpha + self.uT), 1 / (alpha + self.urec)
        b_x = b + self.ux_minus_1
        rx = r + self.r_x
        gap = log_rec[self.r_rec_at] - log_t[self.r_t_at]            # log((alpha + t_x) / (alpha + T))
        d = (np.log(a) - np.log(b_x))[self.r_x_at] - rx * gap
        a3_weight = r * self.w_T + self.wx_T                          # sum of w (r + x) per distinct T
        # log(1 + e^d) and e^d / (1 + e^d) from one exponential, stable for any d
        small = np.exp(-np.abs(d))
        positive = d > 0
        ll = _dot(wx, per_x) - _dot(a3_weight, log_t) + _dot(self.r_w, np.log1p(small) + np.where(positive, d, 0))
        share = self.r_w * np.where(positive, 1, small) / (1 + small)  # w times the second term's share
        psi_ab, psi_abx = digamma(a + b), digamma(a + b + ux)
        d_r = _dot(wx, digamma(r + ux) - digamma(r) + np.log(alpha)) - _dot(self.w_T, log_t) - _dot(share, gap)
        d_alpha = (self.n * r / alpha - _dot(a3_weight, inv_t)
                   - _dot(share, rx * (inv_rec[self.r_rec_at] - inv_t[self.r_t_at])))
        d_a = _dot(wx, psi_ab - psi_abx) + share.sum() / a
        d_b = _dot(wx, psi_ab + digamma(b + ux) - digamma(b) - psi_abx) - _dot(share, (1 / b_x)[self.r_x_at])
        grad_ll = np.array([d_r, d_alpha, d_a, d_b])
        value = -ll / self.n + penalizer * float(np.sum(params ** 2))
        grad = -params * grad_ll / self.n + 2 * penalizer * params ** 2
        return float(value), grad


def fit_bgnbd(frequency: np.ndarray, recency: np.ndarray, T: np.ndarray, penalizer: float = 0.0) -> Fit:
    """Fit BG/NBD to repeat frequency, recency and age T (one time unit throughout) as lifetimes does."""
    data = _BgnbdData(np.asarray(frequency), np.asarray(recency, dtype=np.float64), np.asarray(T, dtype=np.float64))
    log_params, result = _minimize(lambda p: data.objective(p, penalizer), 4)
    with np.errstate(all="ignore"):
        value, grad = data.objective(log_params, 0.0)
    params = dict(zip(BGNBD_PARAMS, np.exp(log_params).tolist(), strict=True))
    params["alpha"] /= data.scale
    return _fit(params, data.log_likelihood(value), result, grad, data.n)


def bgnbd_log_likelihood(params: dict[str, float], frequency: np.ndarray, recency: np.ndarray,
                         T: np.ndarray) -> float:
    """Total BG/NBD log-likelihood of the customers at ``params`` (in the data's time unit)."""
    data = _BgnbdData(np.asarray(frequency), np.asarray(recency, dtype=np.float64), np.asarray(T, dtype=np.float64))
    scaled = np.array([params["r"], params["alpha"] * data.scale, params["a"], params["b"]])
    with np.errstate(all="ignore"):
        value, _ = data.objective(np.log(scaled), 0.0)
    return data.log_likelihood(value)


def p_alive(params: dict[str, float], frequency: np.ndarray, recency: np.ndarray, T: np.ndarray) -> np.ndarray:
    """P(alive | frequency, recency, T): lifetimes' ``conditional_probability_alive`` (1 when frequency is 0)."""
    r, alpha, a, b = (params[k] for k in BGNBD_PARAMS)
    with np.errstate(all="ignore"):
        log_div = (r + frequency) * np.log((alpha + T) / (alpha + recency)) + np.log(a / (b + np.maximum(frequency, 1)
                                                                                         - 1))
        return np.where(frequency == 0, 1.0, expit(-log_div))


def expected_purchases(params: dict[str, float], t: float, frequency: np.ndarray, recency: np.ndarray,
                       T: np.ndarray) -> np.ndarray:
    """Expected repeat purchases in the next ``t`` time units: lifetimes'
    ``conditional_expected_number_of_purchases_up_to_time`` (FHL 2005 equation 10)."""
    return p_alive(params, frequency, recency, T) * _unconditional_part(params, t, frequency, T)


def _unconditional_part(params: dict[str, float], t: float, x: np.ndarray, T: np.ndarray) -> np.ndarray:
    """Equation 10's numerator: expected purchases in (T, T + t] given alive. It depends on the frequency and
    T only (not recency), so callers evaluate it once per distinct (frequency, T)."""
    r, alpha, a, b = (params[k] for k in BGNBD_PARAMS)
    _a, _b, _c = r + x, b + x, a + b + x - 1
    z = t / (alpha + T + t)
    with np.errstate(all="ignore"):
        ln_hyp = np.log(hyp2f1(_a, _b, _c, z))
        # where 2F1 overflows, Euler's transformation of it (as lifetimes does)
        alt = np.log(hyp2f1(_c - _a, _c - _b, _c, z)) + (_c - _a - _b) * np.log(1 - z)
        ln_hyp = np.where(np.isinf(ln_hyp), alt, ln_hyp)
        return (a + b + x - 1) / (a - 1) * (1 - np.exp(ln_hyp + (r + x) * np.log((alpha + T) / (alpha + t + T))))


def expected_purchases_by_time(params: dict[str, float], times: list[float], frequency: np.ndarray,
                               recency: np.ndarray, T: np.ndarray) -> np.ndarray:
    """:func:`expected_purchases` for several horizons at once, shape (len(times), customers): the
    hypergeometric part is evaluated once per distinct (frequency, T) and horizon."""
    x = np.asarray(frequency, dtype=np.float64)
    T = np.asarray(T, dtype=np.float64)
    alive = p_alive(params, x, np.asarray(recency, dtype=np.float64), T)
    (ux, uT), at, _ = _unique_rows(x, T)
    out = np.empty((len(times), x.size))
    for i, t in enumerate(times):
        out[i] = alive * _unconditional_part(params, t, ux, uT)[at]
    return out


# --- Gamma-Gamma ------------------------------------------------------------------------------------


class _GammaGammaData:
    """Repeat buyers' frequency and mean repeat-order value, with the sums the likelihood needs once."""

    def __init__(self, frequency: np.ndarray, monetary: np.ndarray) -> None:
        self.x = frequency.astype(np.float64)
        self.m = monetary.astype(np.float64)
        self.xm = self.x * self.m
        self.n = float(self.x.size)
        self.ux, counts = np.unique(self.x, return_counts=True)
        self.wx = counts.astype(np.float64)
        log_m, log_x = np.log(self.m), np.log(self.x)
        self.sum_x_log_m = _dot(self.x, log_m)
        self.sum_log_m = float(log_m.sum())
        self.sum_x_log_x = _dot(self.x, log_x)

    def objective(self, log_params: np.ndarray, penalizer: float) -> tuple[float, np.ndarray]:
        """Note 025's equation (1a) as lifetimes' mean negative log-likelihood plus the penalty, and its
        gradient in the log parameters."""
        params = np.exp(log_params)
        p, q, v = params
        px = p * self.ux
        total = self.xm + v
        log_total, inv_total = np.log(total), 1 / total
        x_log_total, sum_log_total = _dot(self.x, log_total), log_total.sum()
        ll = (_dot(self.wx, gammaln(px + q) - gammaln(px)) - self.n * gammaln(q) + self.n * q * np.log(v)
              + p * self.sum_x_log_m - self.sum_log_m + p * self.sum_x_log_x - p * x_log_total - q * sum_log_total)
        psi_pxq = digamma(px + q)
        d_p = _dot(self.wx * self.ux, psi_pxq - digamma(px)) + self.sum_x_log_m + self.sum_x_log_x - x_log_total
        d_q = _dot(self.wx, psi_pxq) - self.n * digamma(q) + self.n * np.log(v) - sum_log_total
        d_v = self.n * q / v - p * _dot(self.x, inv_total) - q * inv_total.sum()
        value = -ll / self.n + penalizer * float(np.sum(params ** 2))
        grad = -params * np.array([d_p, d_q, d_v]) / self.n + 2 * penalizer * params ** 2
        return float(value), grad


def fit_gamma_gamma(frequency: np.ndarray, monetary: np.ndarray, penalizer: float = 0.0) -> Fit:
    """Fit Gamma-Gamma to repeat buyers (frequency > 0) and their mean repeat-order value (> 0), as lifetimes."""
    data = _GammaGammaData(np.asarray(frequency), np.asarray(monetary))
    log_params, result = _minimize(lambda p: data.objective(p, penalizer), 3)
    with np.errstate(all="ignore"):
        value, grad = data.objective(log_params, 0.0)
    params = dict(zip(GG_PARAMS, np.exp(log_params).tolist(), strict=True))
    return _fit(params, -value * data.n, result, grad, data.n)


def expected_order_value(params: dict[str, float], frequency: np.ndarray, monetary: np.ndarray) -> np.ndarray:
    """Conditional expected mean order value: lifetimes' ``conditional_expected_average_profit`` (the
    population mean v p / (q - 1) for a customer without repeat orders)."""
    p, q, v = (params[k] for k in GG_PARAMS)
    weight = p * frequency / (p * frequency + q - 1)
    return (1 - weight) * (v * p / (q - 1)) + weight * monetary


def lifetime_value(expected_by_month: np.ndarray, order_value: np.ndarray, discount_rate: float) -> np.ndarray:
    """lifetimes' ``customer_lifetime_value``: the discounted sum over months k = 1..H of the expected
    purchases in month k times the expected order value, discounted by (1 + rate) ** k.

    ``expected_by_month[k - 1]``: the cumulative expected purchases by the end of month k.
    """
    clv = np.zeros(order_value.shape)
    previous = np.zeros(order_value.shape)
    for k, cumulative in enumerate(expected_by_month, 1):
        clv += (order_value * (cumulative - previous)) / (1 + discount_rate) ** k
        previous = cumulative
    return clv
