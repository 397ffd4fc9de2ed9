"""Outputs layer (marts): the contract tables of :mod:`crm_xl.contract`, built from the layers below.

Rows of the extra month before the history range are dropped here; they exist only to give the
first history month its "previous" tier and state.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from crm_xl import contract
from crm_xl._version import __version__
from crm_xl.config import EVENTS, STATES, STATUSES, TIERS, Config
from crm_xl.core.campaign import campaign_fields, label_months
from crm_xl.core.reasons import segment_reasons, tier_reasons
from crm_xl.core.rfm import Scores, rfm_code_categories, rfm_code_index
from crm_xl.core.rules import Labels
from crm_xl.core.snapshots import _BLANK, Panel
from crm_xl.core.staging import Staged

#: The dimensions monthly_summary counts, in its order.
SUMMARY_DIMENSIONS = ("lifecycle_state", "activity_status", "value_tier", "lifecycle_event", "rfm_segment")


def build_outputs(staged: Staged, panel: Panel, labels: Labels, scores: Scores, per_customer: pd.DataFrame,
                  config: Config, counts: dict[str, int], earlier: pd.DataFrame | None = None
                  ) -> tuple[dict[str, pd.DataFrame], pd.DataFrame]:
    """The core's contract tables, in contract order (``per_customer``: :mod:`crm_xl.core.customer_facts`),
    and customer_history's rows of the panel's month before the history.

    ``earlier``: customer_history rows of the months before the panel's history months (see
    :func:`crm_xl.core.pipeline.finish_core`), for the campaign fields."""
    renames = renamed_extras(staged)
    part = partition_outputs(staged, panel, labels, scores, per_customer, config, earlier, renames)
    return assemble(staged, part, scores.cut_points, scores.segment_names, panel.months, config, counts)


@dataclasses.dataclass
class PartOutputs:
    """What one customer partition's panel gives the contract tables: its customer_history rows
    (the month before the history included) with their panel month positions, its snapshot rows
    and its tier-transition counts. The cross-customer tables are made from them by :func:`assemble`."""

    full: pd.DataFrame
    month_pos: np.ndarray
    snapshot: pd.DataFrame
    transitions: np.ndarray


def partition_outputs(staged: Staged, panel: Panel, labels: Labels, scores: Scores, per_customer: pd.DataFrame,
                      config: Config, earlier: pd.DataFrame | None, renames: dict[str, str]) -> PartOutputs:
    """The per-customer outputs of one panel (every customer, or one partition of them)."""
    full = _history_frame(staged, panel, labels, scores, config)
    months = label_months(panel, labels, staged.customers["customer_id"], earlier)
    campaign = campaign_fields(panel, months, per_customer, staged.products)
    snapshot = _snapshot(staged, panel, full, campaign, renames)
    snapshot["segment_reason"] = segment_reasons(panel, scores, labels, config, with_values=True,
                                                 rows=panel.month_rows(len(panel.months) - 1))
    return PartOutputs(full, panel.month_pos, snapshot, transition_counts(panel, labels))


def assemble(staged: Staged, part: PartOutputs, cut_points: pd.DataFrame, segment_names: tuple[str, ...],
             months: pd.PeriodIndex, config: Config, counts: dict[str, int]
             ) -> tuple[dict[str, pd.DataFrame], pd.DataFrame]:
    """The contract tables from every customer's outputs (one :class:`PartOutputs`, merged if partitioned)."""
    history_start = int(np.searchsorted(part.month_pos, 1))
    history = part.full.iloc[history_start:].reset_index(drop=True)
    lead = part.full.iloc[:history_start].reset_index(drop=True)
    rejected = staged.quality.rejected_frame()
    if len(rejected):
        staged.quality.add_note("(all)", "(any)", "rejected_lines", "info", len(rejected),
                                ", ".join(rejected["table"].drop_duplicates()),
                                "rows left out of the analysis, each listed with its raw values in rejected_lines "
                                "(rejected_lines.csv in a CSV run, BOOK_rejected_lines.csv beside a workbook)")
    tables = {
        "customer_snapshot": part.snapshot,
        "customer_history": history,
        "monthly_summary": _monthly_summary(history, segment_names, months, part.month_pos[history_start:] - 1),
        "tier_transitions": _tier_transitions(part.transitions, months),
        "rfm_cut_points": _cut_points(cut_points, months),
        "segment_map": _segment_map(config),
        "data_quality": staged.quality.to_frame(),
        "rejected_lines": rejected,
        "run_info": _run_info(staged, config, counts, len(history)),
    }
    return {name: tables[name] for name in contract.TABLE_NAMES if name in tables}, lead


def _labels(codes: np.ndarray, names: tuple[str, ...] | list[str]) -> pd.Categorical:
    return pd.Categorical.from_codes(codes.astype("int32"), categories=pd.Index(list(names), dtype="str"))


def _dates(days: np.ndarray) -> np.ndarray:
    out = days.astype("datetime64[D]").astype("datetime64[s]")
    out[days == _BLANK] = np.datetime64("NaT")
    return out


def _blank_int(values: np.ndarray, blank: np.ndarray) -> pd.arrays.IntegerArray:
    data = values.astype("int64")   # always a copy, which the column owns: the blanks zeroed in place
    data[blank] = 0
    return pd.arrays.IntegerArray(data, blank)


def _history_frame(staged: Staged, panel: Panel, labels: Labels, scores: Scores,
                   config: Config) -> pd.DataFrame:
    """customer_history's columns for every panel row, including the extra first month."""
    m, r = panel.measure, panel.revenue
    no_purchase, not_scored = ~labels.has_core, ~scores.scored
    s = scores.scores
    ids = staged.customers["customer_id"].to_numpy()
    columns = {
        "report_month": panel.months.to_timestamp().to_numpy().astype("datetime64[s]")[panel.month_pos],
        "customer_id": pd.Categorical.from_codes(panel.customer_key, categories=pd.Index(ids, dtype="str")),
        "m_total": m[0], "m1": m[1], "m6": m[6], "m12": m[12], "m13": m[13], "m24": m[24], "m25": m[25],
        "o6": panel.invoices[6],
        "revenue_m1": r[1], "revenue_m12": r[12], "revenue_total": r[0],
        "first_device_date": _dates(panel.first_device_day),
        "first_core_date": _dates(panel.first_core_day),
        "last_core_date": _dates(panel.last_core_day),
        "tenure_months": _blank_int(labels.tenure_months, no_purchase),
        "amc": labels.amc, "aos": labels.aos,
        "activity_status": _labels(np.where(labels.active, 0, 1), STATUSES),
        "value_tier": _labels(labels.tier, TIERS),
        "lifecycle_event": _labels(labels.event, EVENTS),
        "lifecycle_state": _labels(labels.state, STATES),
        "recency_days": _blank_int(np.nan_to_num(scores.values["recency"]), no_purchase),
        "frequency": panel.invoices[config.rfm_window_months],
        "monetary": panel.rfm_monetary,
        "r_score": _blank_int(s["recency"], not_scored), "f_score": _blank_int(s["frequency"], not_scored),
        "m_score": _blank_int(s["monetary"], not_scored), "t_score": _blank_int(s["tenure"], not_scored),
        "fm_score": _blank_int(scores.fm, not_scored),
        "rfm_code": _labels(rfm_code_index(scores), rfm_code_categories()),
        "rfm_segment": _labels(scores.segment, scores.segment_names),
        "tier_reason": tier_reasons(panel, labels, config),
        "segment_reason": segment_reasons(panel, scores, labels, config),
    }
    assert list(columns) == contract.columns("customer_history")
    return pd.DataFrame(columns, copy=False)


def _snapshot(staged: Staged, panel: Panel, full: pd.DataFrame, campaign: pd.DataFrame,
              renames: dict[str, str]) -> pd.DataFrame:
    last = len(panel.months) - 1
    latest_rows, previous_rows = panel.month_rows(last), panel.month_rows(last - 1)
    latest = full.iloc[latest_rows].set_index(panel.customer_key[latest_rows])
    previous = full.iloc[previous_rows].set_index(panel.customer_key[previous_rows])
    master = staged.customers.loc[latest.index]
    master = master.rename(columns=renames)
    for name, kind, _ in contract._MASTER:
        if name not in master:
            master[name] = pd.Series(pd.NaT if kind == "date" else pd.NA, index=master.index,
                                     dtype={"date": "datetime64[s]", "integer": "Int8"}.get(kind, "str"))
    figures = latest.drop(columns=["customer_id"])
    # the month's texts only, numbered as one month's rows first use them (not as the history's)
    figures["tier_reason"] = first_use_order(figures["tier_reason"].cat.codes.to_numpy(),
                                             figures["tier_reason"].cat.categories)
    snapshot = pd.concat([master, figures, campaign], axis=1)
    snapshot["previous_value_tier"] = previous["value_tier"].reindex(latest.index)
    snapshot["previous_lifecycle_state"] = previous["lifecycle_state"].reindex(latest.index)
    ordered = contract.columns("customer_snapshot")
    extras = [c for c in master.columns if c not in ordered]
    return snapshot[ordered + extras].reset_index(drop=True)


def first_use_order(codes: np.ndarray, categories: pd.Index) -> pd.Categorical:
    """The categories the rows use, in the order they first use them (code -1: blank), as the reason
    texts are numbered: rows merged from customer partitions get the categories of one run."""
    used = codes >= 0
    in_order = pd.unique(codes[used])     # in the order of appearance
    renumber = np.full(len(categories), -1, dtype="int64")
    renumber[in_order] = np.arange(len(in_order))
    return pd.Categorical.from_codes(np.where(used, renumber[codes], -1), categories=categories[in_order])


def renamed_extras(staged: Staged) -> dict[str, str]:
    """Extra master columns named like an output column (say, from an earlier export) get a prefix,
    so the computed value is the one under the contract's name (noted once on the data-quality log)."""
    ours = set(contract.columns("customer_snapshot")) - {name for name, _, _ in contract._MASTER}
    clashes = [c for c in staged.customers.columns if c in ours]
    if clashes:
        staged.quality.add_note("customers", ", ".join(clashes), "master_column_renamed", "warning", len(clashes),
                                ", ".join(clashes), "extra master columns named like output columns: "
                                "kept in customer_snapshot with the prefix master_")
    return {c: f"master_{c}" for c in clashes}


def _monthly_summary(history: pd.DataFrame, segment_names: tuple[str, ...], months: pd.PeriodIndex,
                     month_codes: np.ndarray) -> pd.DataFrame:
    """Counts and sums per history month (``month_codes``: each history row's, 0 = the first) and label."""
    month_values = months[1:].to_timestamp().to_numpy().astype("datetime64[s]")
    base = np.bincount(month_codes, minlength=len(month_values))
    categories = {"lifecycle_state": STATES, "activity_status": STATUSES, "value_tier": TIERS,
                  "lifecycle_event": EVENTS, "rfm_segment": segment_names}
    m1, revenue_m1 = history["m1"].to_numpy(), history["revenue_m1"].to_numpy()
    frames = []
    for dimension in SUMMARY_DIMENSIONS:
        names = categories[dimension]
        # a blank label (code -1) counts in a bucket of its own, dropped after: no copy of the rows kept
        cell = month_codes * (len(names) + 1) + history[dimension].cat.codes.to_numpy() + 1
        size = len(month_values) * (len(names) + 1)
        labelled = (np.arange(size) % (len(names) + 1)) != 0
        customers = np.bincount(cell, minlength=size)[labelled]
        volume = np.bincount(cell, weights=m1, minlength=size)[labelled]
        revenue = np.bincount(cell, weights=revenue_m1, minlength=size)[labelled]
        frames.append(pd.DataFrame({
            "report_month": np.repeat(month_values, len(names)),
            "dimension": dimension,
            "category": np.tile(np.asarray(names, dtype=object), len(month_values)),
            "customers": customers.astype("int64"),
            "share": np.round(customers / np.repeat(np.maximum(base, 1), len(names)), 6),
            "volume_m1": np.round(volume, 6),
            "revenue_m1": np.round(revenue, 6),
        }))
    summary = pd.concat(frames, ignore_index=True)
    for column in ("dimension", "category"):
        summary[column] = summary[column].astype("str")
    return summary


def transition_counts(panel: Panel, labels: Labels) -> np.ndarray:
    """Customers per (panel month, tier the month before, tier this month), flat: exact integers, so a
    partitioned run adds its partitions' counts."""
    names = contract.TRANSITION_TIERS
    size = len(names) * len(names)
    label = np.where(labels.tier >= 0, labels.tier,
                     np.where(labels.has_core, len(TIERS), len(TIERS) + 1)).astype("int64")
    # a partition's keys are a range of the whole base's: the grid spans that range only
    key = panel.customer_key - (int(panel.customer_key.min()) if panel.rows else 0)
    grid = np.full((len(panel.months), int(key.max(initial=-1)) + 1), len(TIERS) + 2, dtype="int64")
    grid[panel.month_pos, key] = label
    came_from = grid[:-1][panel.month_pos[panel.month_pos >= 1] - 1, key[panel.month_pos >= 1]] \
        if panel.rows else np.array([], dtype="int64")
    now = label[panel.month_pos >= 1]
    month = panel.month_pos[panel.month_pos >= 1]
    cell = month * size + came_from * len(names) + now
    return np.bincount(cell, minlength=len(panel.months) * size)


def _tier_transitions(counts: np.ndarray, months: pd.PeriodIndex) -> pd.DataFrame:
    names = list(contract.TRANSITION_TIERS)
    size = len(names) * len(names)
    nonzero = np.flatnonzero(counts)
    month_start = months.to_timestamp().to_numpy().astype("datetime64[s]")
    names_arr = np.asarray(names, dtype=object)
    frame = pd.DataFrame({
        "report_month": month_start[nonzero // size],
        "from_tier": names_arr[(nonzero % size) // len(names)],
        "to_tier": names_arr[nonzero % len(names)],
        "customers": counts[nonzero].astype("int64"),
    })
    for column in ("from_tier", "to_tier"):
        frame[column] = frame[column].astype("str")
    return frame


def _cut_points(cuts: pd.DataFrame, months: pd.PeriodIndex) -> pd.DataFrame:
    first_history = months[1].to_timestamp()
    frame = cuts[cuts["report_month"] >= first_history].reset_index(drop=True)
    frame["report_month"] = frame["report_month"].astype("datetime64[s]")
    for column in ("field", "method"):
        frame[column] = frame[column].astype("str")
    frame["customers_scored"] = frame["customers_scored"].astype("int64")
    for column in ("cut_1", "cut_2", "cut_3", "cut_4"):
        frame[column] = frame[column].astype("float64")
    return frame


def _segment_map(config: Config) -> pd.DataFrame:
    rows = [(name, int(code[0]), int(code[1]), code, *config.segment_note(name))
            for name, codes in config.segment_map for code in codes]
    frame = pd.DataFrame(rows, columns=contract.columns("segment_map"))
    for column in ("rfm_segment", "cell", "description", "action"):
        frame[column] = frame[column].astype("str")
    return frame


def _run_info(staged: Staged, config: Config, counts: dict[str, int], history_rows: int) -> pd.DataFrame:
    rows = [("crm_xl_version", __version__, "Version of crm_xl that produced these tables"),
            ("report_month_used", str(staged.report_month), "The report month of this run (resolved if blank)"),
            ("date_order_used", staged.date_order.upper(), "How day-month text dates (05/01/2024) were read: "
                                                            "DMY, MDY, or YMD (none in the data: ISO only)"),
            ("data_through", str(staged.data_through.date()), "Date of the latest usable transaction line: "
                                                              "figures of later days are not in the data")]
    rows += [(f"setting.{name}", value, help_) for name, value, help_ in config.as_rows()]
    rows += [
        ("transactions_read", str(counts["transactions"]), "Transaction lines given"),
        ("transactions_used", str(len(staged.lines)), "Lines used (known customer and product, valid date "
                                                      "and quantity, up to the report month)"),
        ("customers_read", str(counts["customers"]), "Customer master rows given"),
        ("customers_analysed", str(len(staged.customers)), "Customers analysed (anonymous and invalid rows removed)"),
        ("products_read", str(counts["products"]), "Product master rows given"),
        ("history_rows", str(history_rows), "Rows of customer_history"),
    ]
    rows += [(f"category.{r.category}", f"{r.counts_as}: {r.products:,} products, {r.lines:,} lines",
              "A category of the product master and what it counts as (set core_categories, entry_categories, "
              "other_categories to map it)") for r in staged.categories.itertuples()]
    frame = pd.DataFrame(rows, columns=["item", "value", "description"])
    return frame.astype("str")
