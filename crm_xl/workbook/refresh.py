"""Headless refresh of a crm_xl workbook: read Raw and Config, run the core, rewrite the outputs.

Everything is computed before anything is written, under the workbook's lock
(:mod:`crm_xl.workbook.guard`). The new workbook is written to a temporary file beside it
(:func:`crm_xl.workbook.package.write_rewritten`); then the sidecar files (full history, rejected
lines) are moved into place and the workbook last, each put back if a later one fails
(:func:`crm_xl.io.files.replacing`), so a failed refresh leaves the workbook and its sidecars
byte-identical. Only the output, chart, status and log tables change; the VBA project, the button,
Raw and Config are copied byte for byte. One refresh id ties the workbook (tbl_status) to its sidecars.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from crm_xl import contract
from crm_xl.analyses.report import run_timed
from crm_xl.core.partitions import plan_note
from crm_xl.core.quality import RowOf, source_rows
from crm_xl.engines import DEFAULT_ENGINE
from crm_xl.errors import ConfigError, InputError
from crm_xl.io import machine
from crm_xl.io.csv import file_rows, is_parquet, with_read_notes, write_csv
from crm_xl.io.files import commit, discard, new_id, real_path, replacing, write_beside
from crm_xl.io.locks import DEFAULT_WAIT
from crm_xl.store import run_with_store
from crm_xl.workbook import layout
from crm_xl.workbook.guard import changing, sidecar_paths
from crm_xl.workbook.package import WorkbookPackageError, find_tables, write_rewritten
from crm_xl.workbook.reader import WorkbookInputs, at_cell, open_book, read_inputs, read_log
from crm_xl.workbook.sheetxml import CELL_TEXT_LIMIT, long_text

Progress = Callable[[str], None]
LOG_ROWS_KEPT = 1000
#: The key of the refresh id in the schema metadata of BOOK_customer_history.parquet.
REFRESH_ID_KEY = b"crm_xl.refresh_id"


@dataclasses.dataclass(frozen=True)
class RefreshResult:
    """What a refresh did, for the CLI's summary and the Excel status bar."""

    tables: dict[str, pd.DataFrame]
    seconds: dict[str, float]
    history_file: Path | None
    refresh_id: str = ""
    #: what the history store gave (months reused and computed), empty without a store
    store_note: str = ""
    #: how the run was fitted in the memory available, when it was ('' in one piece)
    memory_note: str = ""


def refresh_workbook(path: str | Path, *, now: dt.datetime | None = None, progress: Progress | None = None,
                     force: bool = False, wait: float = DEFAULT_WAIT,
                     allow_files_from: Sequence[str | Path] = (), engine: str = DEFAULT_ENGINE,
                     store: str | Path | None = None) -> RefreshResult:
    """Refresh ``path`` in place. Raises :class:`~crm_xl.errors.CrmXlError` for bad input or settings.

    The workbook's lock is held from the read to the write (``wait``: seconds to wait for another
    writer); ``force`` writes even when Excel or LibreOffice has it open. The sidecar files are
    replaced first and the workbook last, each rolled back if a later one fails.
    ``allow_files_from``: folders besides the workbook's from which its Config may name raw files.
    ``engine``: where the facts run (``crm_xl.run``'s engine; the tables are the same).
    ``store``: a history store folder (:func:`store_beside` is the usual one): the months it holds
    are reused, the ones computed are written to it (docs/history_store.md). The store is written
    as the tables are computed, before the workbook: a refresh that then fails to replace the
    workbook leaves the store a refresh ahead, which the next refresh simply reuses.
    """
    say = progress or (lambda _message: None)
    with changing(path, force=force, wait=wait, refresh=True) as book:
        started = time.perf_counter()
        say(f"reading {book.name}")
        before = _fingerprint(book)
        inputs = read_inputs(book, allow_files_from)
        _check_output_tables(book)
        read_s = time.perf_counter() - started
        say(f"computing ({len(inputs.raw['transactions']):,} transaction lines, "
            f"{len(inputs.raw['customers']):,} customers)")
        stamp = (now or dt.datetime.now()).replace(microsecond=0)
        limit = machine.memory_limit()     # measured once: the plan it gave is then told
        tables, seconds, note = compute_with_store(inputs, today=stamp.date(), engine=engine, store=store,
                                                   memory_limit=limit)
        notes = memory_notes(tables, inputs, limit)
        plan = tables_to_write(tables, inputs, book, stamp, time.perf_counter() - started, notes=notes)
        try:
            say(f"writing {len(plan.tables)} tables")
            _write(book, plan, before)
        finally:
            plan.discard()
    seconds = {"read": read_s, **seconds, "total": time.perf_counter() - started}
    return RefreshResult(tables=tables, seconds=seconds, history_file=plan.history_file, refresh_id=plan.refresh_id,
                         store_note=note, memory_note="; ".join(notes))


def store_beside(book: str | Path) -> Path:
    """The history store of a workbook: the folder BOOK_history beside it."""
    book = real_path(book)
    return book.with_name(f"{book.stem}_history")


def _write(book: Path, plan: PlannedWrite, before: tuple[int, int, int]) -> None:
    """The new workbook in a temporary file, then the sidecars moved into place and the workbook last."""
    temp = write_beside(book, lambda out: _rewrite(book, out, plan.tables))
    try:
        if _fingerprint(book) != before:
            raise InputError("workbook", f"{book.name} was changed by another program while the refresh ran "
                                         "(saved in Excel?): nothing was written; refresh again")
        with plan.committing():
            commit(temp, book)
    except PermissionError as exc:      # Windows: Excel, Power BI or a virus scanner holds the file open
        name = Path(exc.filename2 or exc.filename or book).name
        raise InputError("workbook", f"{name} could not be replaced ({exc.strerror}): is it open in another "
                                     "program? Nothing was changed") from None
    except OSError as exc:              # a full disk: the user knows the book and its files, not our temporaries
        name = Path(exc.filename2 or book).name
        raise OSError(exc.errno, f"{exc.strerror or exc} while replacing {name}; {book.name} was not changed "
                                 "(nor the files beside it)", str(book)) from exc
    finally:
        discard(temp)


def _fingerprint(book: Path) -> tuple[int, int, int]:
    info = book.stat()
    return info.st_ino, info.st_size, info.st_mtime_ns


def _rewrite(book: Path, out: Path, tables: dict[str, pd.DataFrame]) -> None:
    try:
        styles = {name: style for name, style in _styles().items() if name in tables}
        write_rewritten(book, out, tables, styles=styles, allow_new_columns=True)
    except WorkbookPackageError as exc:     # a ValueError, not a CrmXlError: the CLI would show a traceback
        raise InputError("workbook", f"{book.name}: {exc}; the refresh needs the template's sheets and "
                                     "tables (crm-xl new makes a fresh workbook)") from None


def compute(inputs: WorkbookInputs, today: dt.date | None = None, engine: str = DEFAULT_ENGINE,
            memory_limit: int | None = None) -> tuple[dict[str, pd.DataFrame], dict[str, float]]:
    """The core's tables for a workbook's inputs and the seconds per layer.

    ``data_quality`` example rows become the sheet rows a user can go to; a :class:`ConfigError`
    names the Config cell of the setting. ``today`` (default: the computer's date) and the memory
    available are what the core is given of the machine. Shared by the headless and the live
    (xlwings) refresh. ``memory_limit``: bytes the run may use (default: as the machine says now).
    """
    tables, seconds, _ = compute_with_store(inputs, today, engine, memory_limit=memory_limit)
    return tables, seconds


def memory_notes(tables: dict[str, pd.DataFrame], inputs: WorkbookInputs, memory_limit: int | None
                 ) -> tuple[str, ...]:
    """The Log's line on how a refresh given ``memory_limit`` was fitted in it, when it had to be."""
    note = plan_note(tables, inputs.settings, memory_limit)
    return (note,) if note else ()


def compute_with_store(inputs: WorkbookInputs, today: dt.date | None = None, engine: str = DEFAULT_ENGINE,
                       store: str | Path | None = None, memory_limit: int | None = None
                       ) -> tuple[dict[str, pd.DataFrame], dict[str, float], str]:
    """:func:`compute` over a history store (None: none), and what the store gave. ``memory_limit``:
    bytes the run may use (default: as the machine says now)."""
    note = ""
    memory_limit = machine.memory_limit() if memory_limit is None else memory_limit
    try:
        if store is None:
            tables, seconds = run_timed(**inputs.raw, config=inputs.settings, today=today or machine.today(),
                                        memory_limit=memory_limit, engine=engine)
        else:
            result = run_with_store(**inputs.raw, config=inputs.settings, today=today or machine.today(),
                                    memory_limit=memory_limit, engine=engine, store=store)
            tables, seconds, note = result.tables, result.seconds, result.plan.describe()
    except ConfigError as exc:
        raise at_cell(exc, inputs.setting_cells) from None
    shown = source_rows(tables, _source_row_of(inputs))
    # the notes about how the tables were read number their rows as the sheet does already
    notes = [*inputs.read_notes, *long_text_notes(tables)]
    return {**tables, **shown, "data_quality": with_read_notes(shown["data_quality"], notes)}, seconds, note


def long_text_notes(tables: dict[str, pd.DataFrame]) -> list[dict[str, object]]:
    """A ``text_truncated`` data-quality row per column of a sheet table holding text longer than an
    Excel cell holds: the writers cut it to the limit (rows: positions in that table)."""
    notes: list[dict[str, object]] = []
    for name, frame in tables.items():
        if name in contract.FILE_TABLES:
            continue
        for column, rows in long_text(frame).items():
            notes.append({"table": name, "column": column, "rule": "text_truncated", "severity": "warning",
                          "rows": len(rows), "example_rows": ", ".join(str(r + 1) for r in rows[:5]),
                          "example_values": "",
                          "message": f"text longer than the {CELL_TEXT_LIMIT:,} characters an Excel cell holds: cut "
                                     "to that length in the workbook (crm-xl run's CSV files keep all of it)"})
    return notes


@dataclasses.dataclass(frozen=True)
class PlannedWrite:
    """What a refresh writes, computed before anything is written.

    ``tables`` maps an Excel table name to its new content (the output tables with customer_history
    cut to the sheet, the chart tables, tbl_status and tbl_log). The files beside the workbook (the
    full history when it is cut, the rejected lines) wait in temporary files, ``sidecars`` as
    (temporary file, target). ``refresh_id`` is written into all of them: tbl_status, the Parquet
    file's schema metadata (:data:`REFRESH_ID_KEY`) and the rejected lines' ``refresh_id`` column.

    :meth:`committing` moves the sidecars into place, then runs its ``with`` body (the headless refresh
    replacing the workbook, the live refresh writing into Excel): if that fails, the sidecars are put back.
    :meth:`discard` removes whatever temporary file is left (call it in a ``finally``).
    """

    tables: dict[str, pd.DataFrame]
    history_file: Path | None
    sidecars: tuple[tuple[Path, Path], ...] = ()
    refresh_id: str = ""

    def committing(self) -> contextlib.AbstractContextManager[None]:
        return replacing(self.sidecars)

    def discard(self) -> None:
        for temp, _ in self.sidecars:
            discard(temp)


def tables_to_write(tables: dict[str, pd.DataFrame], inputs: WorkbookInputs, book: Path | None, stamp: dt.datetime,
                    seconds: float, notes: tuple[str, ...] = ()) -> PlannedWrite:
    """Every table a refresh writes, from :func:`compute`'s tables; shared by the headless and live refresh.

    ``book`` is the workbook's path (the full history and the rejected lines go beside it), or None
    for a workbook without a folder (xlwings Lite): the sheet then keeps the latest months that fit
    and the status says older months were left out; the rejected lines are counted on Data Quality.
    ``stamp`` is the refresh time shown on Start and in the Log, ``seconds`` the time taken so far,
    ``notes`` more info lines for the Log (how the run was fitted in memory, say).
    """
    book, refresh_id = (None if book is None else real_path(book)), new_id(stamp)
    sidecars: list[tuple[Path, Path]] = []
    try:
        sheet_tables, history_file = _fit_history(tables, inputs, book, sidecars, refresh_id)
        if book is not None:
            _rejected_beside(tables["rejected_lines"], book, sidecars, refresh_id)
        months_left_out = (tables["customer_history"]["report_month"].nunique()
                           - sheet_tables["customer_history"]["report_month"].nunique()) if history_file is None else 0
        written = {**{n: f for n, f in sheet_tables.items() if n not in contract.FILE_TABLES},
                   **layout.chart_tables(tables),
                   layout.STATUS_TABLE.name: _status(tables, inputs, stamp, history_file, refresh_id, months_left_out),
                   layout.LOG_TABLE.name: _log(inputs, tables, stamp, seconds, notes),
                   layout.GLOSSARY_TABLE.name: layout.glossary_frame()}
    except BaseException:
        PlannedWrite({}, None, tuple(sidecars)).discard()
        raise
    return PlannedWrite(written, history_file, tuple(sidecars), refresh_id)


def _rejected_beside(rejected: pd.DataFrame, book: Path, sidecars: list[tuple[Path, Path]], refresh_id: str) -> None:
    """``BOOK_rejected_lines.csv`` beside the workbook when rows were left out; an earlier file is
    rewritten (with its header only) when none are, so it is never stale. Its last column,
    ``refresh_id``, says which refresh wrote it (as tbl_status does)."""
    target = sidecar_paths(book)[1]
    if len(rejected) or target.exists():
        stamped = rejected.assign(refresh_id=pd.Series(refresh_id, index=rejected.index, dtype="category"))
        temp = write_beside(target, lambda path: write_csv(stamped, path, "rejected_lines"), like=book)
        sidecars.append((temp, real_path(target)))


def _check_output_tables(path: Path) -> None:
    """Fail before the (possibly long) computation when the workbook lacks a table the refresh writes."""
    wanted = [*layout.OUTPUT_TABLES, *layout.CHART_TABLES, layout.STATUS_TABLE.name, layout.LOG_TABLE.name,
              layout.GLOSSARY_TABLE.name]
    present = {name.lower() for name in find_tables(path)}
    missing = [name for name in wanted if name.lower() not in present]
    if missing:
        raise InputError("workbook", f"{path.name} has no Excel table {', '.join(missing)}: the refresh needs the "
                                     "template's sheets and tables (crm-xl new makes a fresh workbook)")


def _source_row_of(inputs: WorkbookInputs) -> dict[str, RowOf]:
    """Per raw table, the row a user goes to for each 1-based position: the sheet row for a table read
    from a sheet, the line number for a CSV file named on Config (as in a CSV run); Parquet files
    have no rows to go to and keep positions."""
    csv_files = [name for name in inputs.raw if inputs.first_data_row.get(name) is None
                 and not is_parquet(str(inputs.workbook_settings.get(f"{name}_file") or ""))]
    sheets = {name: (lambda p, frame=frame: frame.index.to_numpy()[p - 1]) for name, frame in inputs.raw.items()
              if inputs.first_data_row.get(name) is not None}
    return {**file_rows(csv_files), **sheets}


def _fit_history(tables: dict[str, pd.DataFrame], inputs: WorkbookInputs, book: Path | None,
                 sidecars: list[tuple[Path, Path]], refresh_id: str) -> tuple[dict[str, pd.DataFrame], Path | None]:
    """Keep the latest whole months of customer_history that fit the sheet; the full history then
    goes to a Parquet file beside the workbook (what Power BI reads for older months).

    Returns the sheet's tables and the Parquet file; the temporary file holding its new content is
    added to ``sidecars`` (moved into place once the workbook is written). A Parquet file left by
    an earlier refresh is rewritten even when the history now fits, so it is never stale.
    """
    history = tables["customer_history"]
    limit = inputs.workbook_settings["history_rows_in_sheet"]
    target = None if book is None else sidecar_paths(book)[0]
    if len(history) <= limit and (target is None or not target.exists()):
        return dict(tables), None
    per_month = history.groupby("report_month", sort=True, observed=True).size()[::-1].cumsum()
    months = per_month[per_month <= limit].index
    kept = history[history["report_month"].isin(months)].reset_index(drop=True)
    if book is None or target is None:
        return {**tables, "customer_history": kept}, None
    temp = write_beside(target, lambda path: _write_history(history, path, refresh_id), like=book)
    sidecars.append((temp, real_path(target)))
    return {**tables, "customer_history": kept}, target


def _write_history(history: pd.DataFrame, path: Path, refresh_id: str) -> None:
    """The full history as Parquet, the refresh id in its schema metadata (columns stay the sheet's)."""
    table = pa.Table.from_pandas(history, preserve_index=False)
    metadata = {**(table.schema.metadata or {}), REFRESH_ID_KEY: refresh_id.encode("ascii")}
    pq.write_table(table.replace_schema_metadata(metadata), path)


def _status(tables: dict[str, pd.DataFrame], inputs: WorkbookInputs, stamp: dt.datetime,
            history_file: Path | None, refresh_id: str, months_left_out: int = 0) -> pd.DataFrame:
    snapshot, quality = tables["customer_snapshot"], tables["data_quality"]
    month = pd.Timestamp(snapshot["report_month"].iloc[0]).strftime("%Y-%m") if len(snapshot) else "-"
    warnings = int((quality["severity"] == "warning").sum())
    status = "OK" if not warnings else f"OK with {warnings} data-quality warnings (see Data Quality)"
    if history_file is not None:
        status += f"; full history in {history_file.name}"
    elif months_left_out:
        status += (f"; the {months_left_out} oldest months did not fit the sheet and are left out (no folder for "
                   "the full history here: refresh in desktop Excel or with crm-xl refresh to keep them)")
    info = dict(zip(tables["run_info"]["item"], tables["run_info"]["value"], strict=True))
    values = {"last refresh": stamp.strftime("%Y-%m-%d %H:%M:%S"), "report month": month,
              "data through": info.get("data_through", "-"),
              "rows read": ", ".join(f"{name} {len(frame):,}" for name, frame in inputs.raw.items()),
              "customers": f"{len(snapshot):,}", "status": status, "refresh id": refresh_id,
              **_kpi_status(tables["kpis"])}
    return pd.DataFrame({"item": list(layout.STATUS_ITEMS), "value": [values[i] for i in layout.STATUS_ITEMS]},
                        dtype="str")


def _kpi_status(kpis: pd.DataFrame) -> dict[str, str]:
    """Start's KPI rows: the report month's value and its change against last month, as text
    ("2,325 (▲ 1.8% vs 2025-11)"; rates change in points)."""
    if kpis.empty:
        return dict.fromkeys(layout.STATUS_KPIS, "-")
    latest = kpis.iloc[-1]
    before = (pd.Timestamp(latest["report_month"]) - pd.DateOffset(months=1)).strftime("%Y-%m")
    out = {}
    for item, column in layout.STATUS_KPIS.items():
        value, change = latest[column], latest[f"{column}_mom"]
        rate = contract.column_type("kpis", column) == "share"
        text = "-" if pd.isna(value) else (f"{value:.1%}" if rate else f"{value:,.0f}")
        if not pd.isna(change):
            arrow = layout.UP if change > 0 else layout.DOWN if change < 0 else layout.FLAT
            shown = f"{abs(change) * 100:.2f} points" if rate else f"{abs(change):.1%}"
            text += f" ({arrow} {shown} vs {before})"
        out[item] = text
    return out


def _log(inputs: WorkbookInputs, tables: dict[str, pd.DataFrame], stamp: dt.datetime, seconds: float,
         notes: tuple[str, ...] = ()) -> pd.DataFrame:
    """The refresh log: earlier entries (newest kept) plus this refresh's lines."""
    quality = tables["data_quality"]
    lines = [("info", "refresh: " + ", ".join(f"{n} {len(f):,} rows" for n, f in inputs.raw.items()) + " read")]
    lines += [("warning", f"{r.table}.{r.column}: {r.rule} x{r.rows:,}"
                          + (f" (rows {r.example_rows})" if r.example_rows else "") + f": {r.message}")
              for r in quality.itertuples() if r.severity == "warning"]
    lines += [("info", note) for note in notes]
    lines.append(("info", f"refresh done in {seconds:.1f} s: {len(tables['customer_snapshot']):,} customers"))
    new = pd.DataFrame({"time": [pd.Timestamp(stamp)] * len(lines), "level": [lvl for lvl, _ in lines],
                        "message": [msg for _, msg in lines]})
    log = pd.concat([inputs.log, new], ignore_index=True) if len(inputs.log) else new
    log = log.tail(LOG_ROWS_KEPT).reset_index(drop=True)
    # a time a user typed over in the Log sheet becomes blank rather than stopping the refresh
    log["time"] = pd.to_datetime(log["time"], errors="coerce").astype("datetime64[s]")
    return log.astype({"level": "str", "message": "str"})


def log_change(path: str | Path, message: str, *, now: dt.datetime | None = None, force: bool = False,
               wait: float = DEFAULT_WAIT) -> None:
    """Append one info line to the workbook's Log (tbl_log), e.g. the settings a command changed;
    only that table is rewritten, under the workbook's lock."""
    with changing(path, force=force, wait=wait) as book:
        opened = open_book(book, (layout.LOG_TABLE.name,))
        try:
            earlier = read_log(opened)
        finally:
            opened.close()
        stamp = pd.Timestamp((now or dt.datetime.now()).replace(microsecond=0))
        new = pd.DataFrame({"time": [stamp], "level": ["info"], "message": [message]})
        log = (pd.concat([earlier, new], ignore_index=True) if len(earlier) else new).tail(LOG_ROWS_KEPT)
        log = log.reset_index(drop=True)
        log["time"] = pd.to_datetime(log["time"], errors="coerce").astype("datetime64[s]")
        table = {layout.LOG_TABLE.name: log.astype({"level": "str", "message": "str"})}
        temp = write_beside(book, lambda out: _rewrite(book, out, table))
        try:
            commit(temp, book)
        finally:
            discard(temp)


def _styles() -> dict[str, dict[str, str]]:
    """Number format per column of every table the refresh writes, from the layout."""
    tables = [*layout.OUTPUT_TABLES.values(), *layout.CHART_TABLES.values(), layout.STATUS_TABLE, layout.LOG_TABLE,
              layout.GLOSSARY_TABLE]
    return {t.name: {c.name: c.number_format for c in t.columns} for t in tables}

