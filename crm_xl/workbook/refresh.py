"""Headless refresh of a crm_xl workbook: read Raw and Config, run the core, rewrite the outputs.

Everything is computed before anything is written, and the write replaces the file atomically
(:func:`crm_xl.workbook.package.rewrite_tables`), so a failed refresh leaves the workbook
byte-identical. Only the output, chart, status and log tables change; the VBA project, the
button, Raw and Config are copied byte for byte.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from crm_xl import contract
from crm_xl.core.pipeline import run_timed
from crm_xl.core.quality import RowOf, source_rows
from crm_xl.errors import ConfigError, InputError
from crm_xl.io.csv import file_rows, is_parquet, with_read_notes, write_csv
from crm_xl.io.files import write_beside
from crm_xl.workbook import layout
from crm_xl.workbook.package import WorkbookPackageError, find_tables, rewrite_tables
from crm_xl.workbook.reader import WorkbookInputs, at_cell, read_inputs

Progress = Callable[[str], None]
LOG_ROWS_KEPT = 1000


@dataclasses.dataclass(frozen=True)
class RefreshResult:
    """What a refresh did, for the CLI's summary and the Excel status bar."""

    tables: dict[str, pd.DataFrame]
    seconds: dict[str, float]
    history_file: Path | None


def refresh_workbook(path: str | Path, *, now: dt.datetime | None = None, progress: Progress | None = None,
                     allow_files_from: Sequence[str | Path] = ()) -> RefreshResult:
    """Refresh ``path`` in place. Raises :class:`~crm_xl.errors.CrmXlError` for bad input or settings.

    ``allow_files_from``: folders besides the workbook's from which its Config may name raw files."""
    path = Path(path)
    say = progress or (lambda _message: None)
    _check_not_open(path)
    started = time.perf_counter()
    say(f"reading {path.name}")
    inputs = read_inputs(path, allow_files_from)
    _check_output_tables(path)
    read_s = time.perf_counter() - started
    say(f"computing ({len(inputs.raw['transactions']):,} transaction lines, "
        f"{len(inputs.raw['customers']):,} customers)")
    tables, seconds = compute(inputs)
    stamp = (now or dt.datetime.now()).replace(microsecond=0)
    plan = tables_to_write(tables, inputs, path, stamp, time.perf_counter() - started)
    try:
        say(f"writing {len(plan.tables)} tables")
        try:
            rewrite_tables(path, path, plan.tables, styles=_styles(), allow_new_columns=True)
        except WorkbookPackageError as exc:     # a ValueError, not a CrmXlError: the CLI would show a traceback
            raise InputError("workbook", f"{path.name}: {exc}; the refresh needs the template's sheets and "
                                         "tables (crm-xl new makes a fresh workbook)") from None
        plan.commit()  # only once the workbook is written
    finally:
        plan.discard()
    seconds = {"read": read_s, **seconds, "total": time.perf_counter() - started}
    return RefreshResult(tables=tables, seconds=seconds, history_file=plan.history_file)


def compute(inputs: WorkbookInputs) -> tuple[dict[str, pd.DataFrame], dict[str, float]]:
    """The core's tables for a workbook's inputs and the seconds per layer (pure: no I/O).

    ``data_quality`` example rows become the sheet rows a user can go to; a :class:`ConfigError`
    names the Config cell of the setting. Shared by the headless and the live (xlwings) refresh.
    """
    try:
        tables, seconds = run_timed(**inputs.raw, config=inputs.settings)
    except ConfigError as exc:
        raise at_cell(exc, inputs.setting_cells) from None
    quality = with_read_notes(tables["data_quality"], inputs.read_notes)
    return {**tables, **source_rows({**tables, "data_quality": quality}, _source_row_of(inputs))}, seconds


@dataclasses.dataclass(frozen=True)
class PlannedWrite:
    """What a refresh writes, computed before anything is written.

    ``tables`` maps an Excel table name to its new content (the output tables with customer_history
    cut to the sheet, the chart tables, tbl_status and tbl_log). The files beside the workbook (the
    full history when it is cut, the rejected lines) wait in temporary files, ``sidecars`` as
    (temporary file, target): :meth:`commit` moves them into place once the workbook is written,
    :meth:`discard` removes whatever is left (call it in a ``finally``).
    """

    tables: dict[str, pd.DataFrame]
    history_file: Path | None
    sidecars: tuple[tuple[str, Path], ...] = ()

    def commit(self) -> None:
        for temp, target in self.sidecars:
            os.replace(temp, target)

    def discard(self) -> None:
        for temp, _ in self.sidecars:
            if os.path.exists(temp):
                os.unlink(temp)


def tables_to_write(tables: dict[str, pd.DataFrame], inputs: WorkbookInputs, book: Path, stamp: dt.datetime,
                    seconds: float) -> PlannedWrite:
    """Every table a refresh writes, from :func:`compute`'s tables; shared by the headless and live refresh.

    ``book`` is the workbook's path (the full history and the rejected lines go beside it), ``stamp``
    the refresh time shown on Start and in the Log, ``seconds`` the time taken so far (for the Log line).
    """
    sidecars: list[tuple[str, Path]] = []
    try:
        sheet_tables, history_file = _fit_history(tables, inputs, book, sidecars)
        _rejected_beside(tables["rejected_lines"], book, sidecars)
        written = {**{n: f for n, f in sheet_tables.items() if n not in contract.FILE_TABLES},
                   **layout.chart_tables(tables),
                   layout.STATUS_TABLE.name: _status(tables, inputs, stamp, history_file),
                   layout.LOG_TABLE.name: _log(inputs, tables, stamp, seconds)}
    except BaseException:
        PlannedWrite({}, None, tuple(sidecars)).discard()
        raise
    return PlannedWrite(written, history_file, tuple(sidecars))


def _rejected_beside(rejected: pd.DataFrame, book: Path, sidecars: list[tuple[str, Path]]) -> None:
    """``BOOK_rejected_lines.csv`` beside the workbook when rows were left out; an earlier file is
    rewritten (with its header only) when none are, so it is never stale."""
    target = book.with_name(f"{book.stem}_rejected_lines.csv")
    if len(rejected) or target.exists():
        sidecars.append((str(write_beside(target, lambda path: write_csv(rejected, path, "rejected_lines"))), target))


def _check_output_tables(path: Path) -> None:
    """Fail before the (possibly long) computation when the workbook lacks a table the refresh writes."""
    wanted = [*layout.OUTPUT_TABLES, *layout.CHART_TABLES, layout.STATUS_TABLE.name, layout.LOG_TABLE.name]
    present = {name.lower() for name in find_tables(path)}
    missing = [name for name in wanted if name.lower() not in present]
    if missing:
        raise InputError("workbook", f"{path.name} has no Excel table {', '.join(missing)}: the refresh needs the "
                                     "template's sheets and tables (crm-xl new makes a fresh workbook)")


def _check_not_open(path: Path) -> None:
    if not path.is_file():
        raise InputError("workbook", f"file not found: {path}")
    if (path.parent / f"~${path.name}").exists():
        raise InputError("workbook", f"{path.name} is open in Excel (lock file ~${path.name} beside it): close it, "
                                     "or press Refresh inside Excel instead")
    if not os.access(path, os.W_OK) or not os.access(path.parent, os.W_OK):
        raise InputError("workbook", f"{path} is read-only: the refresh cannot replace it")


def _source_row_of(inputs: WorkbookInputs) -> dict[str, RowOf]:
    """Per raw table, the row a user goes to for each 1-based position: the sheet row for a table read
    from a sheet, the line number for a CSV file named on Config (as in a CSV run); Parquet files
    have no rows to go to and keep positions."""
    csv_files = [name for name in inputs.raw if inputs.first_data_row.get(name) is None
                 and not is_parquet(str(inputs.workbook_settings.get(f"{name}_file") or ""))]
    sheets = {name: (lambda p, frame=frame: frame.index.to_numpy()[p - 1]) for name, frame in inputs.raw.items()
              if inputs.first_data_row.get(name) is not None}
    return {**file_rows(csv_files), **sheets}


def _fit_history(tables: dict[str, pd.DataFrame], inputs: WorkbookInputs, book: Path,
                 sidecars: list[tuple[str, Path]]) -> tuple[dict[str, pd.DataFrame], Path | None]:
    """Keep the latest whole months of customer_history that fit the sheet; the full history then
    goes to a Parquet file beside the workbook (what Power BI reads for older months).

    Returns the sheet's tables and the Parquet file; the temporary file holding its new content is
    added to ``sidecars`` (moved into place once the workbook is written). A Parquet file left by
    an earlier refresh is rewritten even when the history now fits, so it is never stale.
    """
    history = tables["customer_history"]
    limit = inputs.workbook_settings["history_rows_in_sheet"]
    target = book.with_name(f"{book.stem}_customer_history.parquet")
    if len(history) <= limit and not target.exists():
        return dict(tables), None
    per_month = history.groupby("report_month", sort=True, observed=True).size()[::-1].cumsum()
    months = per_month[per_month <= limit].index
    kept = history[history["report_month"].isin(months)].reset_index(drop=True)
    sidecars.append((str(write_beside(target, lambda path: history.to_parquet(path, index=False))), target))
    return {**tables, "customer_history": kept}, target


def _status(tables: dict[str, pd.DataFrame], inputs: WorkbookInputs, stamp: dt.datetime,
            history_file: Path | None) -> pd.DataFrame:
    snapshot, quality = tables["customer_snapshot"], tables["data_quality"]
    month = pd.Timestamp(snapshot["report_month"].iloc[0]).strftime("%Y-%m") if len(snapshot) else "-"
    warnings = int((quality["severity"] == "warning").sum())
    status = "OK" if not warnings else f"OK with {warnings} data-quality warnings (see Data Quality)"
    if history_file is not None:
        status += f"; full history in {history_file.name}"
    info = dict(zip(tables["run_info"]["item"], tables["run_info"]["value"], strict=True))
    values = {"last refresh": stamp.strftime("%Y-%m-%d %H:%M:%S"), "report month": month,
              "data through": info.get("data_through", "-"),
              "rows read": ", ".join(f"{name} {len(frame):,}" for name, frame in inputs.raw.items()),
              "customers": f"{len(snapshot):,}", "status": status}
    return pd.DataFrame({"item": list(layout.STATUS_ITEMS), "value": [values[i] for i in layout.STATUS_ITEMS]},
                        dtype="str")


def _log(inputs: WorkbookInputs, tables: dict[str, pd.DataFrame], stamp: dt.datetime, seconds: float) -> pd.DataFrame:
    """The refresh log: earlier entries (newest kept) plus this refresh's lines."""
    quality = tables["data_quality"]
    lines = [("info", "refresh: " + ", ".join(f"{n} {len(f):,} rows" for n, f in inputs.raw.items()) + " read")]
    lines += [("warning", f"{r.table}.{r.column}: {r.rule} x{r.rows:,}"
                          + (f" (rows {r.example_rows})" if r.example_rows else "") + f": {r.message}")
              for r in quality.itertuples() if r.severity == "warning"]
    lines.append(("info", f"refresh done in {seconds:.1f} s: {len(tables['customer_snapshot']):,} customers"))
    new = pd.DataFrame({"time": [pd.Timestamp(stamp)] * len(lines), "level": [lvl for lvl, _ in lines],
                        "message": [msg for _, msg in lines]})
    log = pd.concat([inputs.log, new], ignore_index=True) if len(inputs.log) else new
    log = log.tail(LOG_ROWS_KEPT).reset_index(drop=True)
    # a time a user typed over in the Log sheet becomes blank rather than stopping the refresh
    log["time"] = pd.to_datetime(log["time"], errors="coerce").astype("datetime64[s]")
    return log.astype({"level": "str", "message": "str"})


def _styles() -> dict[str, dict[str, str]]:
    """Number format per column of every table the refresh writes, from the layout."""
    tables = [*layout.OUTPUT_TABLES.values(), *layout.CHART_TABLES.values(), layout.STATUS_TABLE, layout.LOG_TABLE]
    return {t.name: {c.name: c.number_format for c in t.columns} for t in tables}

