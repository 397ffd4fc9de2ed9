"""The pure pipeline: raw tables and settings in, contract tables out. No I/O, no Excel.

raw --stage--> staged --customer_month_facts--> facts --build_panel--> snapshots
    --apply_rules / score_rfm--> labels and scores --build_outputs--> contract tables
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from crm_xl.config import Config
from crm_xl.facts import customer_month_facts
from crm_xl.outputs import build_outputs
from crm_xl.rfm import score_rfm
from crm_xl.rules import apply_rules
from crm_xl.snapshots import build_panel
from crm_xl.staging import stage


def run(transactions: pd.DataFrame, customers: pd.DataFrame, products: pd.DataFrame,
        config: Mapping[str, Any] | Config | None = None) -> dict[str, pd.DataFrame]:
    """Compute every output table from the three raw tables.

    Parameters
    ----------
    transactions, customers, products
        The raw tables as given (see ``docs/business_logic.md`` for their columns). They are not
        modified.
    config
        A :class:`Config`, or a mapping of setting name to value such as
        ``{"report_month": "2024-12", "history_months": 24}``; missing settings take defaults.

    Returns
    -------
    dict
        Table name -> DataFrame, in the order and with the columns of ``docs/outputs.md``.

    Raises
    ------
    ConfigError
        A setting is invalid (the message names it and what is allowed).
    InputError
        A table cannot be used at all (a required column missing, no usable transaction).
    """
    cfg = Config.from_mapping(config)
    staged = stage(transactions, customers, products, cfg)
    facts = customer_month_facts(staged.lines)
    panel = build_panel(facts, staged.customers, staged.report_month, cfg)
    labels = apply_rules(panel, cfg)
    scores = score_rfm(panel, labels, cfg)
    counts = {"transactions": len(transactions), "customers": len(customers), "products": len(products)}
    return build_outputs(staged, panel, labels, scores, cfg, counts)
