"""Benchmark of the CLV fits (crm_xl.analyses.clv_models) on a synthetic summary of 1,000,000 customers.

    PYTHONPATH=. .venv/bin/python bench/bench_clv.py                 # 1,000,000 customers
    PYTHONPATH=. .venv/bin/python bench/bench_clv.py --customers 200000 --lifetimes

The summary (frequency, recency, T in days, monetary_value) is drawn from the BG/NBD process itself
(r=0.25, alpha=4, a=0.8, b=2.5 per day scale, ages of 30 to 730 days; order values from the
Gamma-Gamma model p=6, q=4, v=15) with a fixed seed, so every run fits the same data. Prints the
seconds of the BG/NBD fit, of the Gamma-Gamma fit, of the per-customer predictions (P(alive), 13
horizons of expected orders, CLV), the fitted parameters and the process's peak resident memory.
Target (2-core machine): both fits together under 5 s for 1,000,000 customers (lifetimes: ~16 s;
``--lifetimes`` times it too). Not a test: timings depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import resource
import time
import warnings

import numpy as np

from crm_xl.analyses import clv_models as M

TRUE_BGNBD = {"r": 0.25, "alpha": 4.0, "a": 0.8, "b": 2.5}
TRUE_GG = {"p": 6.0, "q": 4.0, "v": 15.0}


def synthetic_summary(n: int, seed: int = 20240601) -> dict[str, np.ndarray]:
    """frequency, recency, T (days) and monetary_value of ``n`` customers drawn from BG/NBD and Gamma-Gamma."""
    rng = np.random.default_rng(seed)
    T = rng.integers(30, 731, n).astype(np.float64)
    rate = rng.gamma(TRUE_BGNBD["r"], 1 / TRUE_BGNBD["alpha"], n)
    death = rng.beta(TRUE_BGNBD["a"], TRUE_BGNBD["b"], n)
    frequency = np.zeros(n)
    recency = np.zeros(n)
    clock = np.zeros(n)
    alive = np.ones(n, dtype=bool)
    while alive.any():     # one round per repeat purchase, over the customers still buying
        idx = np.flatnonzero(alive)
        clock[idx] += rng.exponential(1 / np.maximum(rate[idx], 1e-12))
        buys = clock[idx] <= T[idx]
        bought = idx[buys]
        # whole days, as a daily summary has them
        recency[bought] = np.minimum(np.floor(clock[bought]), T[bought])
        frequency[bought] += 1
        dies = rng.random(bought.size) < death[bought]
        alive[idx[~buys]] = False
        alive[bought[dies]] = False
    nu = rng.gamma(TRUE_GG["q"], 1 / TRUE_GG["v"], n)
    repeat = frequency > 0
    monetary = np.zeros(n)
    shape = TRUE_GG["p"] * frequency[repeat]
    monetary[repeat] = rng.gamma(shape, 1 / (nu[repeat] * frequency[repeat]))
    return {"frequency": frequency, "recency": recency, "T": T, "monetary_value": monetary}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--lifetimes", action="store_true", help="also time lifetimes' fitters (slow)")
    args = parser.parse_args()

    data = synthetic_summary(args.customers)
    x, rec, T, m = data["frequency"], data["recency"], data["T"], data["monetary_value"]
    repeat = (x > 0) & (m > 0)
    print(f"customers {args.customers:,}, repeat buyers {int(repeat.sum()):,}")

    started = time.perf_counter()
    bg = M.fit_bgnbd(x, rec, T)
    bg_s = time.perf_counter() - started
    started = time.perf_counter()
    gg = M.fit_gamma_gamma(x[repeat], m[repeat])
    gg_s = time.perf_counter() - started
    started = time.perf_counter()
    months = M.expected_purchases_by_time(bg.params, [30.0 * k for k in range(1, 13)], x, rec, T)
    value = M.expected_order_value(gg.params, x, m)
    M.lifetime_value(months, value, 0.01)
    M.p_alive(bg.params, x, rec, T)
    predict_s = time.perf_counter() - started

    print(f"BG/NBD fit       {bg_s:6.2f} s  ({bg.iterations} iterations, converged {bg.converged}, usable {bg.usable}) "
          + ", ".join(f"{k}={v:.4g}" for k, v in bg.params.items()))
    print(f"Gamma-Gamma fit  {gg_s:6.2f} s  ({gg.iterations} iterations, converged {gg.converged}, usable {gg.usable}) "
          + ", ".join(f"{k}={v:.4g}" for k, v in gg.params.items()))
    print(f"fits together    {bg_s + gg_s:6.2f} s  (target < 5 s)")
    print(f"predictions      {predict_s:6.2f} s  (P(alive), 12 monthly horizons, order value, CLV)")
    if args.lifetimes:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from lifetimes import BetaGeoFitter, GammaGammaFitter

            started = time.perf_counter()
            BetaGeoFitter().fit(x, rec, T)
            GammaGammaFitter().fit(x[repeat], m[repeat])
            print(f"lifetimes fits   {time.perf_counter() - started:6.2f} s")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / 1024
    print(f"peak memory      {peak:6.2f} GB")


if __name__ == "__main__":
    main()
