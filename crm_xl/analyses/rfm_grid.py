"""The RFM grid: the report month's scored customers counted in the 25 (R, FM) cells of the segment map.

R is the recency score and FM = ceil((F + M) / 2), the two axes the segment map assigns segments on
(docs/business_logic.md section 12). Read from ``customer_snapshot``: a customer is in the cell of
their r_score and fm_score; customers not scored (blank scores: not in rfm_population) are in no
cell, so the cells' customers add up to the month's scored customers. Revenue is the 12-month core
revenue (revenue_m12): the RFM window's default length, so a cell's revenue is what its customers
were scored on rather than one month's noise.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from crm_xl import contract
from crm_xl.config import Config
from crm_xl.core.pipeline import CoreRun

_SCORES = np.arange(1, 6)
_DECIMALS = 6       # the core counts in millionths: float noise of the sum is dropped


def rfm_grid_views(core: CoreRun) -> dict[str, pd.DataFrame]:
    """The ``rfm_grid`` table from the core's ``customer_snapshot`` and the segment map."""
    return {"rfm_grid": rfm_grid(core.tables["customer_snapshot"], core.config)}


def rfm_grid(snapshot: pd.DataFrame, config: Config) -> pd.DataFrame:
    """25 rows, R 5 down to 1 and FM 1 up to 5 within each R (the grid read top-left to bottom-right)."""
    r = snapshot["r_score"].to_numpy(dtype="float64", na_value=np.nan)
    fm = snapshot["fm_score"].to_numpy(dtype="float64", na_value=np.nan)
    scored = ~(np.isnan(r) | np.isnan(fm))
    cell = (5 - r[scored]).astype("int64") * 5 + (fm[scored] - 1).astype("int64")
    customers = np.bincount(cell, minlength=25).astype("int64")
    revenue = np.bincount(cell, weights=snapshot["revenue_m12"].to_numpy(dtype="float64")[scored],
                          minlength=25).astype("float64").round(_DECIMALS)
    total = int(customers.sum())
    r_of, fm_of = np.repeat(_SCORES[::-1], 5), np.tile(_SCORES, 5)
    lookup = config.segment_lookup
    month = snapshot["report_month"].iloc[0] if len(snapshot) else pd.NaT
    frame = pd.DataFrame({
        "report_month": pd.Series([month] * 25, dtype="datetime64[s]"),
        "r_score": r_of.astype("int64"),
        "fm_score": fm_of.astype("int64"),
        "cell": [f"{a}{b}" for a, b in zip(r_of, fm_of, strict=True)],
        "rfm_segment": [lookup[(int(a), int(b))] for a, b in zip(r_of, fm_of, strict=True)],
        "customers": customers,
        "share": customers / total if total else np.full(25, np.nan),
        "revenue_m12": revenue,
    })
    return frame[contract.columns("rfm_grid")].astype({"cell": "str", "rfm_segment": "str"})
