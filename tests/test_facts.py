"""The facts layer's two tables, on hand-computed lines (the contract is in ``crm_xl/core/facts.py``)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from crm_xl.core.facts import FACT_COLUMNS, LINK_COLUMNS, customer_month_facts
from crm_xl.core.staging import KIND_CORE, KIND_ENTRY, KIND_OTHER


def lines(*rows: tuple[int, int, str, float, int]) -> pd.DataFrame:
    """(customer_key, invoice_key, date, quantity, kind) rows; units = quantity, revenue = 2 x quantity."""
    frame = pd.DataFrame(rows, columns=["customer_key", "invoice_key", "date", "quantity", "kind"])
    frame["date"] = pd.to_datetime(frame["date"]).astype("datetime64[s]")
    frame["units"] = frame["quantity"]
    frame["revenue"] = 2 * frame["quantity"]
    frame["kind"] = frame["kind"].astype("int8")
    return frame


def test_invoices_are_counted_in_every_month_they_touch_and_linked_across_months() -> None:
    facts = customer_month_facts(lines(
        (0, 7, "2024-01-31", 1, KIND_CORE), (0, 7, "2024-02-01", 2, KIND_CORE),   # one invoice, two months
        (0, 8, "2024-02-03", 1, KIND_CORE), (0, 8, "2024-02-04", 1, KIND_CORE),   # two lines, one month
        (0, 7, "2024-05-10", 1, KIND_CORE),                                      # receipt 7 again in May
        (0, 9, "2024-05-11", -1, KIND_CORE), (0, 9, "2024-05-12", 1, KIND_OTHER),  # no order: return, accessory
        (1, 7, "2024-03-01", 3, KIND_CORE), (1, 5, "2024-01-15", 1, KIND_ENTRY),  # invoice 7 of another customer
    ))
    months = facts.months
    assert tuple(months.columns) == FACT_COLUMNS and tuple(facts.invoice_links.columns) == LINK_COLUMNS
    got = {(r.customer_key, str(r.month)[:7]): (r.core_units, r.core_invoices) for r in months.itertuples()}
    assert got == {(0, "2024-01"): (1, 1), (0, "2024-02"): (4, 2), (0, "2024-05"): (1, 1),
                   (1, "2024-01"): (0, 0), (1, "2024-03"): (3, 1)}
    links = [(r.customer_key, str(r.month)[:7], r.gap_months, r.links) for r in facts.invoice_links.itertuples()]
    assert links == [(0, "2024-02", 1, 1), (0, "2024-05", 3, 1)]
    entry = months.set_index(["customer_key", "month"])["first_entry_date"]
    assert entry.loc[(1, pd.Timestamp("2024-01-01"))] == pd.Timestamp("2024-01-15")


def test_no_core_line_gives_empty_tables_of_the_contract() -> None:
    facts = customer_month_facts(lines((0, 1, "2024-01-10", 1, KIND_ENTRY)))
    assert facts.invoice_links.empty and tuple(facts.invoice_links.columns) == LINK_COLUMNS
    assert facts.months["core_invoices"].tolist() == [0]
    assert np.isnat(facts.months["first_core_date"].to_numpy()).all()
