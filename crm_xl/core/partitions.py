"""Customer partitions: a run's snapshots, rules and outputs computed for one slice of its customers
at a time, when the whole base's customers x months grids would not fit in memory.

Every rule reads one customer's months, so a slice of the customers gives exactly the rows the
whole base gives for them. Only two things read across customers:

* RFM's quintile cut points of each month: a first pass over the partitions collects the scored
  customers' values, the cut points are computed once from all of them (quantiles sort, so the
  order they come in does not matter), and the second pass scores every partition with them;
* the summaries: tier_transitions adds the partitions' integer counts, and monthly_summary is
  summed over the merged customer_history, in the same row order as an unpartitioned run.

Partitions are contiguous ranges of customer_key, which is customer_id order, so one run's row
order is month by month, the partitions in key order; the rows each month holds are known from the
entry dates before any panel is built, so each partition's rows are written straight to their
places (:mod:`crm_xl.core.merged_columns`) and the tables come out as one run's, byte for byte. The first pass is the
price of exact quintiles: with ``rfm_method = fixed`` the cut points are known and it is skipped.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from crm_xl.config import Config
from crm_xl.core.facts import Facts
from crm_xl.core.merged_columns import MergedFrame, block_starts, places_of
from crm_xl.core.outputs import PartOutputs, partition_outputs, renamed_extras
from crm_xl.core.rfm import Cuts, cut_points, rfm_values, score_rfm, scored_values
from crm_xl.core.rules import Labels, apply_rules
from crm_xl.core.snapshots import BYTES_PER_CUSTOMER_MONTH, Panel, build_panel, memory_needed, rows_per_month, size_text
from crm_xl.core.staging import Staged
from crm_xl.errors import ConfigError

#: Memory one customer-month takes for the whole of a partitioned run: its customer_history row
#: (measured at 230-240 bytes on pandas 3), its RFM values between the two passes and the
#: partition's own rows while they are written into place, taken as 64 values of 8 bytes.
HELD_BYTES_PER_CUSTOMER_MONTH = 64 * 8
#: Each partition costs a few Python loops over its months: beyond this many, the run would take
#: hours, and it is better to say what fits.
MAX_PARTITIONS = 10_000

Step = Callable[..., Any]


def plan_partitions(n_customers: int, config: Config, available: int | None) -> int:
    """How many customer partitions a run needs to fit ``available`` bytes (``None``: not known, one).

    One when the whole base's grids fit; else the fewest (up to :data:`MAX_PARTITIONS`) whose
    grids, one partition at a time, fit beside every customer's held rows. :class:`ConfigError`
    naming history_months, with the largest value that fits, when even that is too much."""
    whole = memory_needed(n_customers, config)
    if available is None or whole <= available or n_customers == 0:
        return 1
    months = config.history_months + 1
    most = min(MAX_PARTITIONS, n_customers)
    held = n_customers * months * HELD_BYTES_PER_CUSTOMER_MONTH
    grids = -(-n_customers // most) * months * BYTES_PER_CUSTOMER_MONTH     # the biggest partition's
    if held + grids <= available:
        return min(-(-whole // (available - held)), most)
    fits = available // (n_customers * HELD_BYTES_PER_CUSTOMER_MONTH + -(-n_customers // most)
                         * BYTES_PER_CUSTOMER_MONTH) - 1
    advice = (f"set history_months to {fits} or less" if fits >= 1 else
              "even history_months = 1 does not fit: close other programs or analyse fewer customers")
    least = f" ({size_text(held + grids)} in customer partitions)" if held + grids < whole else ""
    raise ConfigError("history_months", f"{config.history_months} months of {n_customers:,} customers need about "
                                        f"{size_text(whole)} of memory{least} and {size_text(available)} is "
                                        f"available: {advice}")


def plan_note(tables: Mapping[str, pd.DataFrame], config: Mapping[str, Any] | Config | None,
              available: int | None) -> str:
    """What the memory plan of a run made of ``tables`` did, in words for its summary ('' in one piece):
    a run in partitions takes longer than one piece, and the user should know why."""
    info = tables["run_info"].set_index("item")["value"]
    n_customers, cfg = int(info["customers_analysed"]), Config.from_mapping(config)
    parts = plan_partitions(n_customers, cfg, available)
    if parts == 1 or available is None:
        return ""
    return (f"computed in {parts:,} customer partitions, one after the other: all {n_customers:,} customers' "
            f"{cfg.history_months + 1} months need about {size_text(memory_needed(n_customers, cfg))} of memory "
            f"at once and {size_text(available)} was available (the tables are the same; more memory is faster)")


def bounds(n_customers: int, parts: int) -> list[tuple[int, int]]:
    """The customer_key ranges [lo, hi) of ``parts`` partitions of nearly equal size, none empty."""
    edges = np.linspace(0, n_customers, min(max(parts, 1), max(n_customers, 1)) + 1).astype("int64")
    return [(int(lo), int(hi)) for lo, hi in itertools.pairwise(edges) if hi > lo]


@dataclasses.dataclass(frozen=True)
class Partitioned:
    """What :func:`run_partitions` gives :func:`crm_xl.core.outputs.assemble`."""

    part: PartOutputs
    cut_points: pd.DataFrame
    segment_names: tuple[str, ...]
    months: pd.PeriodIndex


def run_partitions(staged: Staged, facts: Facts, per_customer: pd.DataFrame, config: Config,
                   panel_config: Config, parts: int, earlier: pd.DataFrame | None, clock: Step) -> Partitioned:
    """The per-customer outputs of every partition, merged, and the cut points they were scored with.

    ``config`` holds the rules' settings and ``panel_config`` the months the panel computes (see
    :func:`crm_xl.core.pipeline.finish_core`); ``clock(name, step, *args)`` runs and times a step."""
    ranges = bounds(len(staged.customers), parts)
    n_months = panel_config.history_months + 1

    def labelled(lo: int, hi: int) -> tuple[Panel, Labels]:
        panel = clock("snapshots", _panel, staged, facts, panel_config, lo, hi)
        return panel, clock("rules", apply_rules, panel, config)

    if config.rfm_method == "quantile":
        scored: dict[tuple[int, str], list[np.ndarray]] = {}
        for lo, hi in ranges:
            clock("rfm", _collect, *labelled(lo, hi), config, scored)
        cuts = clock("rfm", _central_cuts, scored, config, n_months)
    else:
        cuts = cut_points({}, config, n_months)
    renames = renamed_extras(staged)
    sizes = rows_per_month(staged.entry_dates, staged.report_month, n_months, ranges)
    starts = block_starts(sizes)
    history, snapshot = MergedFrame(int(sizes.sum())), MergedFrame(int(sizes[:, -1].sum()))
    transitions, counts, scores, months = 0, [], None, None
    for index, (lo, hi) in enumerate(ranges):
        panel, labels = labelled(lo, hi)
        months = panel.months
        scores = clock("rfm", score_rfm, panel, labels, config, cuts)
        counts.append(scores.cut_points["customers_scored"].to_numpy())
        out = clock("outputs", partition_outputs, staged, panel, labels, scores, per_customer.iloc[lo:hi], config,
                    earlier, renames)
        del panel, labels      # the partition's grids go before its rows are written
        clock("outputs", _write, out, sizes, starts, index, history, snapshot)
        transitions = transitions + out.transitions
    assert scores is not None   # bounds() gives at least one partition
    # every partition was scored on the same cut points, so their cut rows line up one for one
    cut_frame = scores.cut_points.assign(customers_scored=np.sum(counts, axis=0, dtype="int64"))
    merged = PartOutputs(full=clock("outputs", history.frame), snapshot=clock("outputs", snapshot.frame),
                         month_pos=np.repeat(np.arange(n_months), sizes.sum(axis=0)), transitions=transitions)
    return Partitioned(merged, cut_frame, scores.segment_names, months)


def _write(out: PartOutputs, sizes: np.ndarray, starts: np.ndarray, index: int, history: MergedFrame,
           snapshot: MergedFrame) -> None:
    """One partition's rows to their places in the whole run's tables (its frames are emptied)."""
    if not np.array_equal(np.bincount(out.month_pos, minlength=sizes.shape[1]), sizes[index]):
        raise AssertionError("a customer partition's rows differ from the layout of its entry dates")
    # the snapshot first: its rows are views of the history's last month. They are that month's
    # block, counted from the month's first row
    first = int(starts[index, -1] - starts[0, -1])
    snapshot.put(out.snapshot, np.arange(first, first + len(out.snapshot), dtype="int64"))
    history.put(out.full, places_of(starts[index], sizes[index]))


def _panel(staged: Staged, facts: Facts, config: Config, lo: int, hi: int) -> Panel:
    """The snapshots of customers lo .. hi - 1, their rows keyed by customer_key as in the whole base."""
    part = Facts(_customer_rows(facts.months, lo, hi), _customer_rows(facts.invoice_links, lo, hi))
    panel = build_panel(part, staged.entry_dates[lo:hi], staged.report_month, config)
    return dataclasses.replace(panel, customer_key=panel.customer_key + lo)


def _customer_rows(frame: pd.DataFrame, lo: int, hi: int) -> pd.DataFrame:
    """The rows of customers lo .. hi - 1 of a table sorted by customer_key, keys counted from lo."""
    start, stop = np.searchsorted(frame["customer_key"].to_numpy(), [lo, hi])
    rows = frame.iloc[int(start):int(stop)]
    return rows.assign(customer_key=rows["customer_key"].to_numpy() - lo)


def _collect(panel: Panel, labels: Labels, config: Config, scored: dict[tuple[int, str], list[np.ndarray]]) -> None:
    for key, values in scored_values(panel, *rfm_values(panel, labels, config)).items():
        scored.setdefault(key, []).append(values)


def _central_cuts(scored: dict[tuple[int, str], list[np.ndarray]], config: Config, n_months: int) -> Cuts:
    return cut_points({key: np.concatenate(parts) for key, parts in scored.items()}, config, n_months)
