"""The Refresh button: ``crm_xl.excel.refresh()``, run by the template's VBA through xlwings' ``RunPython``.

It does what the headless ``crm-xl refresh`` does, but through the xlwings API on the open workbook:

1. read the Raw tables (or the files named on Config), tbl_config, tbl_segment_map and tbl_log, one
   bulk read per table;
2. compute with the same pure code as the headless refresh (:func:`crm_xl.workbook.refresh.compute`
   and :func:`~crm_xl.workbook.refresh.tables_to_write`), so the written tables are the same: names,
   columns, values, the customer_history cap and its Parquet file beside the workbook;
3. only then write: first the files beside the workbook (the full history Parquet, the rejected
   lines), then each table: resize the Excel table to the new rows, set each column's number
   format, write the values in one block. Screen updating is off and calculation manual during the
   write; both are restored in a ``finally``. If writing into Excel fails, the files beside the
   workbook are put back as they were. All of it holds the saved workbook's lock
   (:func:`crm_xl.io.locks.locked`), so a headless ``crm-xl`` command on the same file waits.

Text never turns into a formula or a number: xlwings writes a string as a cell's value, which Excel
parses like typed input (``=x`` becomes a formula, ``-5`` and ``00123`` numbers). Every text column
is formatted as Text (``@``) *before* its values are written, and Excel stores whatever is written
into a Text cell as the string itself (no ``'`` prefix, so Power BI reads the exact text).

Errors never reach Excel as a traceback: a :class:`~crm_xl.errors.CrmXlError` (bad input or
settings) shows one dialog saying what, where and how to fix it, and adds it to the Log table; any
other exception shows a short dialog and puts the traceback in the Log table for support. Either
way the output tables are left as they were, since nothing is written before everything is computed.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import xlwings as xw

from crm_xl.config import Config
from crm_xl.errors import CrmXlError, InputError
from crm_xl.io import machine
from crm_xl.io.files import real_path, remove_stale_temps
from crm_xl.io.locks import locked
from crm_xl.workbook import layout
from crm_xl.workbook.cells import table_name
from crm_xl.workbook.guard import sidecar_paths
from crm_xl.workbook.reader import (
    SheetTable,
    WorkbookInputs,
    assemble_inputs,
    raw_frame,
    read_log,
)
from crm_xl.workbook.refresh import LOG_ROWS_KEPT, PlannedWrite, compute, memory_notes, tables_to_write
from crm_xl.workbook.sheetxml import excel_serials, fit_cells

TITLE = "CRM refresh"
_PREFIX = "crm_xl: "
_CELL_LIMIT = 32_000        # an Excel cell holds at most 32,767 characters

#: Number format per column of every table the refresh writes (text columns "@", see the module doc).
_FORMATS: dict[str, dict[str, str]] = {
    t.name: {c.name: c.number_format for c in t.columns}
    for t in (*layout.OUTPUT_TABLES.values(), *layout.CHART_TABLES.values(), layout.STATUS_TABLE, layout.LOG_TABLE,
              layout.GLOSSARY_TABLE)
}


def refresh(book: xw.Book | None = None, *, now: dt.datetime | None = None, folder: bool = True) -> None:
    """Recompute every output table of ``book`` (default: the workbook whose Refresh button was pressed).

    Never raises for a problem in the workbook: it is shown in a dialog and written to the Log table.
    ``now`` fixes the time stamp written to Start and Log (for tests). ``folder=False`` is for a
    workbook without a folder on disk (xlwings Lite): no lock, no files beside it, none read from Config.
    """
    book = book or xw.Book.caller()
    started = time.perf_counter()
    stamp = (now or dt.datetime.now()).replace(microsecond=0)
    writing = False

    def mark_writing() -> None:
        nonlocal writing
        writing = True

    try:
        _refresh(book, stamp, started, mark_writing, folder)
    except CrmXlError as exc:
        _report_input_error(book, exc, stamp, writing)
    except Exception as exc:    # a bug: short dialog, traceback on the Log sheet (never a raw traceback in Excel)
        _report_unexpected(book, exc, stamp, writing)


# --- the refresh ------------------------------------------------------------------------------------


def _refresh(book: xw.Book, stamp: dt.datetime, started: float, mark_writing: Callable[[], None],
             folder: bool = True) -> None:
    app = book.app
    with _book_lock(book) if folder else contextlib.nullcontext():
        _status_bar(app, "reading Raw and Config...")
        excel = _ExcelTables(book)
        inputs = read_book_inputs(book, excel, folder=folder)
        excel.check_targets()
        _status_bar(app, f"computing ({len(inputs.raw['transactions']):,} transaction lines, "
                         f"{len(inputs.raw['customers']):,} customers)...")
        limit = machine.memory_limit()     # measured once: the plan it gave is then told in the Log
        tables, _seconds = compute(inputs, today=stamp.date(), memory_limit=limit)
        plan = tables_to_write(tables, inputs, _book_path(book) if folder else None, stamp,
                               time.perf_counter() - started, notes=memory_notes(tables, inputs, limit))
        try:
            mark_writing()
            with plan.committing(), _quiet(app):     # the files beside the book first, put back if Excel fails
                total = len(plan.tables)
                ranges = {}
                for number, (name, frame) in enumerate(plan.tables.items(), start=1):
                    _status_bar(app, f"writing {total} tables ({number}/{total}: {name})...")
                    ranges[name] = write_table(excel.table(name), frame, _FORMATS.get(name, {}))
                _repoint_charts(book, ranges)
            _refresh_pivots(book)
        finally:
            plan.discard()
    _prime_udfs(book, tables, inputs, plan.refresh_id)
    _recalculate(book)
    months = tables["customer_history"]["report_month"].nunique()
    _status_bar(app, f"refreshed {len(tables['customer_snapshot']):,} customers, {months} months in "
                     f"{time.perf_counter() - started:.1f} s" + _history_note(plan))


@contextlib.contextmanager
def _book_lock(book: xw.Book) -> Iterator[None]:
    """The saved workbook's lock (:func:`crm_xl.io.locks.locked`) while the refresh reads, computes and writes
    the files beside it, so a headless ``crm-xl`` command on the same file waits, and the temporary
    files a killed refresh left are removed. A workbook saved online (a URL) has no folder to lock or
    to write files in: nothing to keep apart."""
    path = _book_path(book)
    if not path.parent.is_dir():
        yield
        return
    def waiting(who: str) -> None:
        _status_bar(book.app, f"waiting for {who} to finish with {path.name}...")

    with locked(path, command=f"Refresh button in Excel ({path.name})", on_wait=waiting):
        real = real_path(path)
        remove_stale_temps(real.parent, [real.name, *(p.name for p in sidecar_paths(real))])
        yield


def _repoint_charts(book: xw.Book, ranges: dict[str, Any]) -> None:
    """Each chart whose categories and series are the leading columns of one table (a whole chart table,
    or an output table's first columns, as the CLV holdout chart) reads that table again, found by its
    name: Excel does not extend a chart's series when a table grows, and the headless refresh re-ranges
    them in the file. A chart the user deleted or renamed is left alone. (Charts of other columns, such
    as the KPIs sheet's, have no single source range; the headless refresh re-ranges them, and a table of
    fixed rows is drawn over all of them from the start.)"""
    for sheet in dict.fromkeys(spec.sheet for spec in layout.ALL_CHARTS):
        try:
            charts = book.sheets[sheet].charts
            names = {chart.name for chart in charts}
        except Exception:      # a sheet without charts, or an engine without a charts API
            continue
        for spec in layout.ALL_CHARTS:
            if spec.sheet == sheet and spec.leading and spec.name in names and spec.table in ranges:
                width = 1 + len(spec.series)
                charts[spec.name].set_source_data(ranges[spec.table].resize(column_size=width))


#: Sheets whose cells a refresh writes or that hold no formulas of the user: never searched for CRM_.
_NO_USER_FORMULAS = frozenset({*layout.OUTPUT_SHEETS.values(), *layout.CHART_SHEETS.values(), layout.LOG,
                               layout.XLWINGS_CONF, *(t.sheet for t in layout.RAW_TABLES.values())})
_XL_FORMULAS, _XL_PART = -4123, 2          # XlFindLookIn.xlFormulas, XlLookAt.xlPart


def _recalculate(book: xw.Book) -> None:
    """Recalculate this workbook's cells that call CRM_, now that the functions' cache knows the new
    tables (primed in this process, or reloaded by the refresh id in the UDF server's).

    Their arguments did not change, so Excel would not recalculate them by itself. Only the sheets
    holding a CRM_ formula are recalculated (one search each), never every open workbook
    (``CalculateFull``); the remote engine has no such calls and needs none.
    """
    for sheet in book.sheets:
        if sheet.name in _NO_USER_FORMULAS:
            continue
        with contextlib.suppress(Exception):   # remote engine, a Mac without these calls, a protected sheet
            used = sheet.api.UsedRange
            if used.Find("CRM_", LookIn=_XL_FORMULAS, LookAt=_XL_PART) is not None:
                used.Calculate()


def _history_note(plan: PlannedWrite) -> str:
    return f" (full history in {plan.history_file.name})" if plan.history_file is not None else ""


def _book_path(book: xw.Book) -> Path:
    """The workbook's path: the customer_history Parquet file and relative *_file names are beside it.

    A workbook on OneDrive or SharePoint has a URL, which xlwings maps to the synced local folder, or
    fails to ("Couldn't find the local OneDrive folder. Please configure the ONEDRIVE_... setting"):
    that is a setting to make, not a bug, so it becomes a message saying where to make it.
    """
    try:
        return Path(book.fullname)
    except xw.XlwingsError as exc:
        raise InputError(layout.XLWINGS_CONF, f"{exc} Add that key on the {layout.XLWINGS_CONF} sheet (column A, "
                                              "below the others) with your local OneDrive or SharePoint folder in "
                                              "column B, e.g. C:\\Users\\me\\OneDrive - Company; see docs/excel.md "
                                              "(OneDrive and SharePoint)") from None


def _prime_udfs(book: xw.Book, tables: dict[str, pd.DataFrame], inputs: WorkbookInputs, refresh_id: str) -> None:
    """Hand the new tables to the worksheet functions' cache (same process with "Use UDF Server"); in
    another process they see the new refresh id on the Start sheet and read the tables themselves."""
    try:
        from crm_xl.excel import udfs

        segment = Config.from_mapping(inputs.settings).udf_segment
        udfs.prime(udfs.book_key(book), tables, segment, refresh_id)
    except (ImportError, AttributeError):
        pass    # the functions then read the output tables themselves on their first call


# --- reading ----------------------------------------------------------------------------------------


class _ExcelTables:
    """The workbook's Excel tables by name (found on any sheet, as Excel's table names are book-wide)."""

    def __init__(self, book: xw.Book) -> None:
        self.sheet_names = [sheet.name for sheet in book.sheets]
        self._tables: dict[str, Any] = {}
        for sheet in book.sheets:
            for table in sheet.tables:
                self._tables.setdefault(table.name.lower(), table)

    def __contains__(self, name: str) -> bool:
        return name.lower() in self._tables

    def table(self, name: str) -> Any:
        try:
            return self._tables[name.lower()]
        except KeyError:
            raise _missing_table(name) from None

    def check_targets(self) -> None:
        """Fail before the (possibly long) computation when a table the refresh writes is missing."""
        wanted = [*layout.OUTPUT_TABLES, *layout.CHART_TABLES, layout.STATUS_TABLE.name, layout.LOG_TABLE.name,
                  layout.GLOSSARY_TABLE.name]
        missing = [name for name in wanted if name not in self]
        if missing:
            raise InputError("workbook", f"no Excel table {', '.join(missing)}: the refresh needs the template's "
                                         "sheets and tables (crm-xl new makes a fresh workbook)")


def _missing_table(name: str) -> InputError:
    where = next((t.sheet for t in (*layout.RAW_TABLES.values(), layout.CONFIG_TABLE, layout.SEGMENT_MAP_TABLE,
                                    *layout.OUTPUT_TABLES.values(), *layout.CHART_TABLES.values(),
                                    layout.STATUS_TABLE, layout.LOG_TABLE, layout.GLOSSARY_TABLE) if t.name == name),
                 "workbook")
    return InputError(where, f"Excel table {name} not found; the refresh needs the template's tables "
                             "(crm-xl new makes a fresh workbook)")


class _TableView:
    """One Excel table read in a single call, shaped like python-calamine's table (what the reader's
    Config and Log parsers take): ``columns``, ``start`` (0-based first data cell), ``to_python()``."""

    def __init__(self, table: Any, sheet: str) -> None:
        rng = table.range
        values = rng.options(ndim=2, err_to_str=True).value
        self.name, self.sheet = table.name, sheet
        self.columns = ["" if h is None else str(h) for h in values[0]]
        self.start = (rng.row, rng.column - 1)      # header row is rng.row (1-based) = first data row 0-based
        self.rows = [["" if v is None else v for v in row] for row in values[1:]]
        self.range = rng

    def to_python(self) -> list[list[Any]]:
        return self.rows


class _BookView:
    """The workbook seen the way :mod:`crm_xl.workbook.reader` sees a calamine workbook, so its Config
    and Log parsing (cell addresses, validation, messages) is reused as is. Each table is read once."""

    def __init__(self, excel: _ExcelTables) -> None:
        self._excel = excel
        self.sheet_names = excel.sheet_names
        self._read: dict[str, _TableView] = {}

    @property
    def table_names(self) -> list[str]:
        return [t.name for t in self._excel._tables.values()]

    def get_table_by_name(self, name: str) -> _TableView:
        if name not in self._read:
            table = self._excel.table(name)
            self._read[name] = _TableView(table, table.parent.name)
        return self._read[name]


def read_book_inputs(book: xw.Book, excel: _ExcelTables | None = None, *, folder: bool = True) -> WorkbookInputs:
    """What a refresh needs from an open workbook, read through xlwings (one read per table).

    The same :class:`~crm_xl.workbook.reader.WorkbookInputs` as the headless reader gives for the
    saved file: raw frames indexed by sheet row (blank rows dropped), settings with their cells.
    Without a ``folder`` no file named on Config can be read (a clear error says so).
    """
    excel = excel or _ExcelTables(book)
    view = _BookView(excel)
    return assemble_inputs(view, _book_path(book).parent if folder else None, lambda table: _raw_frame(view, table))


def _rows_below(rng: Any) -> tuple[int, ...]:
    """Sheet rows under a table's range, within its columns, that hold values (typed below the table
    without extending it); () when the engine cannot say (xlwings Server has no used range)."""
    try:
        sheet = rng.sheet
        last_used = sheet.used_range.last_cell.row
        last = rng.row + rng.shape[0] - 1
        if last_used <= last:
            return ()
        below = sheet.range((last + 1, rng.column), (last_used, rng.column + rng.shape[1] - 1))
        values = below.options(ndim=2, err_to_str=True).value
    except Exception:
        return ()
    return tuple(last + 1 + i for i, row in enumerate(values) if any(v not in (None, "") for v in row))


def _raw_frame(view: _BookView, table: layout.Table) -> SheetTable:
    """A raw table as the headless reader gives it: text headers, blanks as None, index = sheet row."""
    name = table_name(view, table.name)
    if name is None:
        raise _missing_table(table.name)
    found = view.get_table_by_name(name)
    frame, first_data_row = raw_frame([h.strip() for h in found.columns], found.to_python(), found.start[0])
    return SheetTable(frame, first_data_row, len(found.to_python()), rows_below=_rows_below(found.range))


# --- writing ----------------------------------------------------------------------------------------


def write_table(table: Any, frame: pd.DataFrame, formats: dict[str, str]) -> Any:
    """Replace an Excel table's content with ``frame``: resize it, clear what falls outside, set each
    column's number format (text "@" first, see the module doc), then write header and values in one
    assignment (one round trip to Excel per table). Returns the table's new range."""
    rng = table.range
    top = rng[0, 0]
    sheet = rng.sheet
    old_rows, old_cols = rng.shape[0] - 1, rng.shape[1]
    rows, cols = len(frame), frame.shape[1]
    body_rows = max(rows, 1)        # an Excel table keeps at least one (blank) data row
    table.resize(top.resize(body_rows + 1, cols))
    first, left = top.row, top.column
    if old_rows > body_rows:
        sheet.range((first + body_rows + 1, left), (first + old_rows, left + max(old_cols, cols) - 1)).clear_contents()
    if old_cols > cols:
        sheet.range((first, left + cols), (first + old_rows, left + old_cols - 1)).clear_contents()
    for start, stop, number_format in _format_runs([formats.get(str(c)) for c in frame.columns]):
        sheet.range((first + 1, left + start), (first + body_rows, left + stop - 1)).number_format = number_format
    header = [list(map(str, frame.columns))]
    whole = sheet.range((first, left), (first + body_rows, left + cols - 1))
    if rows:
        whole.raw_value = header + cell_values(frame)
    else:
        sheet.range((first, left), (first, left + cols - 1)).value = header
        sheet.range((first + 1, left), (first + 1, left + cols - 1)).clear_contents()
    return whole


def _format_runs(formats: list[str | None]) -> Iterator[tuple[int, int, str]]:
    """(start, stop, format) for each run of adjacent columns sharing a number format (fewer Excel calls)."""
    start = 0
    for i in range(1, len(formats) + 1):
        if i == len(formats) or formats[i] != formats[start]:
            if formats[start] is not None:
                yield start, i, formats[start]
            start = i


def cell_values(frame: pd.DataFrame) -> list[list[Any]]:
    """The frame's rows as the values every xlwings engine takes as they are (``raw_value``): text,
    numbers and booleans, "" for a blank (what xlwings itself sends for None), dates as Excel serial
    numbers (what a date cell holds; its number format is set first), text cut to what a cell holds
    (32,767 characters: Excel would refuse the whole write).

    Handing xlwings values it need not convert skips its per-cell cleaning, which was most of a
    live refresh's time (7 million cells for a 100k-line history)."""
    frame = fit_cells(frame)
    dates = [c for c in frame.columns if pd.api.types.is_datetime64_any_dtype(frame[c].dtype)]
    if dates:
        frame = frame.assign(**{str(c): excel_serials(frame[c]) for c in dates})
    values = frame.astype(object)
    return values.where(frame.notna(), "").to_numpy().tolist()


@contextlib.contextmanager
def _quiet(app: Any) -> Iterator[None]:
    """Screen updating off and calculation manual while writing; the previous settings come back after.

    An engine that cannot report a setting (xlwings' remote engine with the VBA client) is assumed
    to be at Excel's default: screen updating on, calculation automatic.
    """
    screen = _get(app, "screen_updating", True)
    calculation = _get(app, "calculation", "automatic")
    _set(app, "screen_updating", False)
    _set(app, "calculation", "manual")
    try:
        yield
    finally:
        _set(app, "calculation", calculation)
        _set(app, "screen_updating", screen)


def _get(app: Any, name: str, default: Any) -> Any:
    try:
        return getattr(app, name)
    except Exception:
        return default


def _set(app: Any, name: str, value: Any) -> None:
    with contextlib.suppress(Exception):
        setattr(app, name, value)


def _status_bar(app: Any, message: str | bool) -> None:
    """Excel's status bar; an engine without one (Office.js, xlwings Server) just shows nothing."""
    _set(app, "status_bar", _PREFIX + message if isinstance(message, str) else message)


def _refresh_pivots(book: xw.Book) -> None:
    """Refresh the Pivots sheet's PivotTables from the rewritten tables (best effort: they also refresh
    when the file opens; engines without PivotTable access skip this)."""
    with contextlib.suppress(Exception):
        for pivot in book.sheets[layout.PIVOTS].pivot_tables:
            pivot.refresh()


# --- errors -----------------------------------------------------------------------------------------


def _report_input_error(book: xw.Book, exc: CrmXlError, stamp: dt.datetime, writing: bool) -> None:
    _status_bar(book.app, "refresh stopped: see the message and the Log sheet")
    logged = _append_log(book, stamp, [("error", f"refresh stopped: {exc}")])
    unchanged = ("Some output tables may be half written: press Refresh again once it is fixed." if writing
                 else "Nothing on the output sheets was changed.")
    _alert(book, f"The refresh stopped:\n\n{exc}\n\nFix this (the message names the sheet, table or Config cell) "
                 f"and press Refresh again. {unchanged}" + (" The Log sheet keeps this message." if logged else ""))


def _report_unexpected(book: xw.Book, exc: Exception, stamp: dt.datetime, writing: bool) -> None:
    _status_bar(book.app, "refresh failed: see the Log sheet")
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    if len(text) > _CELL_LIMIT:
        text = "...\n" + text[-_CELL_LIMIT:]
    logged = _append_log(book, stamp, [("error", f"unexpected error: {type(exc).__name__}: {exc}"),
                                       ("error", f"traceback for support:\n{text}")])
    unchanged = ("Some output tables may be half written: press Refresh again." if writing
                 else "Nothing on the output sheets was changed.")
    _alert(book, f"The refresh failed unexpectedly ({type(exc).__name__}: {str(exc)[:300]}).\n\n{unchanged} "
                 + ("The details for support are on the Log sheet." if logged
                    else "The Log sheet could not be written; run crm-xl refresh on the saved file for details."))


def _alert(book: xw.Book, message: str) -> None:
    with contextlib.suppress(Exception):
        book.app.alert(message, title=TITLE, buttons="ok", mode="critical")


def _append_log(book: xw.Book, stamp: dt.datetime, lines: list[tuple[str, str]]) -> bool:
    """Add lines to tbl_log (keeping the newest rows); False when the Log table cannot be written."""
    try:
        excel = _ExcelTables(book)
        target = excel.table(layout.LOG_TABLE.name)
        try:
            earlier = read_log(_BookView(excel))
        except Exception:
            earlier = pd.DataFrame(columns=layout.LOG_TABLE.headers)
        new = pd.DataFrame({"time": [pd.Timestamp(stamp)] * len(lines), "level": [lvl for lvl, _ in lines],
                            "message": [msg for _, msg in lines]})
        log = pd.concat([earlier, new], ignore_index=True) if len(earlier) else new
        log = log.tail(LOG_ROWS_KEPT).reset_index(drop=True)
        log["time"] = pd.to_datetime(log["time"], errors="coerce").astype("datetime64[s]")
        with _quiet(book.app):
            write_table(target, log, _FORMATS[layout.LOG_TABLE.name])
    except Exception:
        return False
    return True
