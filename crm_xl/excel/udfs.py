"""Worksheet functions: ``=CRM_SEGMENT(id)``, ``CRM_TIER``, ``CRM_STATE``, ``CRM_EVENT``, ``CRM_RFM``,
``CRM_EXPLAIN`` and ``CRM_METRIC(id, name)``, each with an optional month; ``CRM_PALIVE(id)`` and
``CRM_CLV(id)`` from the ``clv`` table (the report month only).

This is the module named under "UDF Modules" on the workbook's xlwings.conf sheet; its VBA wrappers
are shipped pre-generated in ``workbook/vba/xlwings_udfs.bas`` (a test keeps names and arguments
equal). On Windows, xlwings calls the functions from Excel; on Linux and macOS the decorators do
nothing, so the functions are plain Python (that is how the tests call them).

Each function takes one id or a range of ids (a list of lists) and returns a value of the same
shape; ``month`` and ``metric`` may be one value or a range that broadcasts against the ids like an
Excel array formula. They never raise: a problem becomes a text in the cell, e.g.
``#CRM: unknown customer 123`` or ``#CRM: not refreshed yet``. Ids compare as the core compares
them (123, 123.0, "123" and " 123 " are one id; "00123" is another).

Where the values come from: a per-workbook cache (:class:`UdfCache`) of the latest
``customer_snapshot``, ``customer_history`` and ``clv``, indexed once with dictionaries (id -> row, and
(month, id) -> row through a month x id grid), so a lookup is a dictionary hit. The Refresh
calls :func:`prime` with the tables it just computed, so the functions never return stale values
(with "Use UDF Server" on, the Refresh and the functions share one Python process). When the
cache of the calling workbook is empty (a new Python process after the workbook was reopened),
the first call reads the output tables from the workbook itself through xlwings, once:
``customer_snapshot`` at once, ``customer_history`` only when a month other than the latest is
asked for (from the Parquet file beside the workbook when the sheet holds only the latest months).

Every refresh writes a new refresh id on the Start sheet. The cache remembers the id its tables
came from and reads the workbook's id again at most once a second (:attr:`UdfCache.check_seconds`,
so one recalculation costs one small read): a headless ``crm-xl refresh``, or a Refresh run in
another Python process, is seen at the next recalculation and the tables are read again.

The calling workbook: the shipped wrappers call ``XLPy.CallUDF(module, name, Array(args...),
ThisWorkbook, Application.Caller)`` and xlwings (``xlwings.udfs.call_udf``) sets
``xlwings._xlwindows.BOOK_CALLER`` to that ``ThisWorkbook`` before it runs the function, so
``xw.Book.caller()`` is the workbook holding the wrappers and the tables. The functions therefore
do not declare xlwings' reserved ``caller`` argument: doing so would change the generated wrappers
(``Array(customer_id, month, Nothing)``), and the shipped ones would then fail.
"""

from __future__ import annotations

import datetime as dt
import math
import numbers
import re
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xlwings as xw
from pandas.api import types as ptypes

from crm_xl.config import Config
from crm_xl.core.coerce import id_codes
from crm_xl.workbook import layout

__all__ = [
    "CRM_CLV", "CRM_EVENT", "CRM_EXPLAIN", "CRM_METRIC", "CRM_PALIVE", "CRM_RFM", "CRM_SEGMENT", "CRM_STATE",
    "CRM_TIER",
    "BookData", "UdfCache", "book_key", "clear", "load_tables_from_book", "load_tables_from_frames", "prime",
]

SNAPSHOT, HISTORY, RUN_INFO, CLV = "customer_snapshot", "customer_history", "run_info", "clv"
REFRESH_ID_ITEM = "refresh id"      # the row of tbl_status that names the refresh that wrote the tables
PREFIX = "#CRM: "
NOT_REFRESHED = PREFIX + "not refreshed yet"

_EXCEL_EPOCH = pd.Timestamp("1899-12-30")
_SERIAL_MIN, _SERIAL_MAX = 1, 2958465
_WHOLE_NUMBER_TEXT = re.compile(r"^(\d+)\.0*$")
_MONTH_TEXT = re.compile(r"^(\d{4})\s*[-/.]\s*(\d{1,2})$")
#: Month x id cells above which the history index is a dictionary instead of a dense grid (int32).
_GRID_LIMIT = 25_000_000


class _CellError(Exception):
    """A problem that becomes the text of the cells it concerns."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = PREFIX + text


# --- loose values of the arguments ----------------------------------------------------------------


def _id_key(value: Any) -> str | None:
    """One id as the core normalizes it (:func:`crm_xl.core.coerce.normalize_ids`), for one value; None = blank."""
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
    elif isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    elif isinstance(value, numbers.Real):
        number = float(value)
        if number != number:  # NaN
            return None
        if number.is_integer():
            return str(int(value)) if isinstance(value, numbers.Integral) else str(int(number))
        text = repr(number)
    elif value is pd.NaT:
        return None
    else:
        text = str(value).strip()
    if not text:
        return None
    whole = _WHOLE_NUMBER_TEXT.match(text)
    return whole.group(1) if whole else text


def _month_label(code: int) -> str:
    return f"{code // 12:04d}-{code % 12 + 1:02d}"


def _month_code(value: Any) -> int | None:
    """A month (year * 12 + month - 1) from "2024-12", a date, an Excel serial number; None = blank (latest)."""
    if value is None or value is pd.NaT:
        return None
    stamp: Any = None
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        parts = _MONTH_TEXT.match(text)
        if parts:
            year, month = int(parts.group(1)), int(parts.group(2))
            if 1 <= month <= 12:
                return year * 12 + month - 1
            raise _CellError(f"month {text} is not a month (use 2024-12, a date, or leave blank for the latest)")
        try:
            return _month_code(float(text))
        except ValueError:
            pass
        try:
            stamp = pd.Timestamp(text)
        except (ValueError, TypeError, OverflowError):
            raise _CellError(f"month {text} is not a month (use 2024-12, a date, "
                             "or leave blank for the latest)") from None
    elif isinstance(value, (dt.date, np.datetime64)):
        stamp = pd.Timestamp(value)
    elif isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_)):
        serial = float(value)
        if serial != serial:
            return None
        if not _SERIAL_MIN <= serial <= _SERIAL_MAX:
            raise _CellError(f"month {value:g} is not a date serial number (use 2024-12, a date, "
                             "or leave blank for the latest)")
        stamp = _EXCEL_EPOCH + pd.Timedelta(days=math.floor(serial))
    else:
        raise _CellError(f"month {value!r} is not a month (use 2024-12, a date, or leave blank for the latest)")
    if stamp is pd.NaT:
        return None
    return stamp.year * 12 + stamp.month - 1


def _month_codes(values: pd.Series) -> np.ndarray:
    """Month codes of a report_month column (dates, ISO text or Excel serials); -1 where blank."""
    if ptypes.is_numeric_dtype(values.dtype) and not ptypes.is_bool_dtype(values.dtype):
        days = pd.to_numeric(values, errors="coerce").where(lambda s: s.between(_SERIAL_MIN, _SERIAL_MAX))
        stamps = _EXCEL_EPOCH + pd.to_timedelta(days.to_numpy(dtype=float, na_value=np.nan).round(0), unit="D")
        stamps = pd.Series(stamps)
    elif ptypes.is_datetime64_any_dtype(values.dtype):
        stamps = values
    else:
        stamps = pd.to_datetime(values, errors="coerce", format="mixed")
    codes = (stamps.dt.year * 12 + stamps.dt.month - 1).to_numpy(dtype=float, na_value=np.nan)
    return np.where(np.isnan(codes), -1, codes).astype(np.int64)


def _id_index(ids: pd.Series) -> tuple[np.ndarray, list[str]]:
    """Per row, the position of its normalized id among the distinct ids (-1 for blank), and those ids.

    Normalizes the distinct raw values only (:func:`crm_xl.core.coerce.id_codes`), then merges raw
    spellings that normalize to the same id (123 and "123.0").
    """
    codes, uniques = id_codes(ids)
    distinct = uniques.to_numpy(dtype=object, na_value=None)
    if not len(distinct):
        return np.full(len(ids), -1, dtype=np.int64), []
    merged, names = pd.factorize(distinct, use_na_sentinel=True)
    rows = np.where(codes >= 0, merged[np.where(codes >= 0, codes, 0)], -1).astype(np.int64)
    return rows, [str(name) for name in names]


# --- one workbook's tables, indexed ------------------------------------------------------------------


class _HistoryIndex:
    """(month, id) -> row of customer_history: a month x id grid of row positions (-1 = none)."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self.frame = frame.reset_index(drop=True)
        n = len(self.frame)
        if n and {"customer_id", "report_month"} <= set(self.frame.columns):
            id_rows, names = _id_index(self.frame["customer_id"])
            months = _month_codes(self.frame["report_month"])
        else:
            id_rows, names, months = np.full(n, -1, dtype=np.int64), [], np.full(n, -1, dtype=np.int64)
        self.ids: dict[str, int] = dict(zip(names, range(len(names)), strict=True))
        month_values = np.unique(months[months >= 0])
        self.months: dict[int, int] = dict(zip(month_values.tolist(), range(len(month_values)), strict=True))
        valid = (id_rows >= 0) & (months >= 0)
        rows = np.flatnonzero(valid)
        month_rows = np.searchsorted(month_values, months[valid])
        self.n_ids = len(names)
        self.grid: np.ndarray | None = None
        self.pairs: dict[int, int] | None = None
        if len(month_values) * self.n_ids <= _GRID_LIMIT:
            self.grid = np.full((len(month_values), self.n_ids), -1, dtype=np.int32 if n < 2**31 else np.int64)
            self.grid[month_rows, id_rows[valid]] = rows
        else:
            keys = month_rows.astype(np.int64) * self.n_ids + id_rows[valid]
            self.pairs = dict(zip(keys.tolist(), rows.tolist(), strict=True))

    def positions(self, month: int, keys: list[str | None]) -> np.ndarray:
        """Rows of the ids in ``keys`` in that month (-1: not in the history that month)."""
        if month not in self.months:
            raise _CellError(f"no month {_month_label(month)} in the history")
        row = self.months[month]
        get = self.ids.get
        codes = np.fromiter((get(k, -1) for k in keys), dtype=np.int64, count=len(keys))
        found = codes >= 0
        out = np.full(len(keys), -1, dtype=np.int64)
        if self.grid is not None:
            out[found] = self.grid[row, codes[found]]
        else:
            pairs = self.pairs or {}
            base = row * self.n_ids
            out[found] = [pairs.get(base + int(c), -1) for c in codes[found]]
        return out


class _ClvIndex:
    """id -> row of the clv table, and its columns ready for Excel."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self.frame = frame.reset_index(drop=True)
        if "customer_id" in self.frame.columns and len(self.frame):
            id_rows, names = _id_index(self.frame["customer_id"])
        else:
            id_rows, names = np.full(len(self.frame), -1, dtype=np.int64), []
        valid = np.flatnonzero(id_rows >= 0)
        codes, first_at = np.unique(id_rows[valid], return_index=True)
        self.ids: dict[str, int] = dict(zip([names[c] for c in codes.tolist()], valid[first_at].tolist(), strict=True))


class BookData:
    """The lookups of one workbook: the latest snapshot (id -> row), the history ((month, id) -> row)
    and the clv table (id -> row).

    Built from the output tables with one bulk pass; the history and clv indexes are built on their
    first use (most calls ask for the latest month). ``history`` and ``clv`` may be a frame, None, or
    a function returning one (so a workbook's sheet is read only when needed).
    """

    def __init__(self, snapshot: pd.DataFrame | None,
                 history: pd.DataFrame | Callable[[], pd.DataFrame | None] | None,
                 udf_segment: str = "value_tier", refresh_id: str | None = None,
                 clv: pd.DataFrame | Callable[[], pd.DataFrame | None] | None = None) -> None:
        self.udf_segment = udf_segment if udf_segment in ("value_tier", "rfm_segment") else "value_tier"
        #: the refresh that wrote these tables (tbl_status' "refresh id"; None for books from before ids)
        self.refresh_id = refresh_id
        self.snapshot = (snapshot if snapshot is not None else pd.DataFrame()).reset_index(drop=True)
        if "customer_id" in self.snapshot.columns and len(self.snapshot):
            id_rows, names = _id_index(self.snapshot["customer_id"])
        else:
            id_rows, names = np.full(len(self.snapshot), -1, dtype=np.int64), []
        valid_rows = np.flatnonzero(id_rows >= 0)
        first_codes, first_at = np.unique(id_rows[valid_rows], return_index=True)
        first_rows = valid_rows[first_at]
        #: normalized id -> row of the snapshot (the first row when an id repeats)
        self.ids: dict[str, int] = dict(zip([names[c] for c in first_codes.tolist()], first_rows.tolist(),
                                            strict=True))
        self.latest: int | None = None
        if "report_month" in self.snapshot.columns and len(valid_rows):
            months = _month_codes(self.snapshot["report_month"])
            if (months >= 0).any():
                self.latest = int(months.max())
        self._history_source = history
        self._history: _HistoryIndex | None = None
        self._clv_source = clv
        self._clv: _ClvIndex | None = None
        self._arrays: dict[tuple[str, str], tuple[bool, np.ndarray]] = {}
        self._metrics = {str(c).strip().casefold(): str(c) for c in reversed(self.snapshot.columns)
                         if str(c) != "customer_id"}
        self._lock = threading.RLock()

    @property
    def empty(self) -> bool:
        """True when there is nothing to look up (the workbook was never refreshed)."""
        return not self.ids

    # -- the parts ----------------------------------------------------------------------------------

    def history(self) -> _HistoryIndex:
        """The history index, built (and the history read, when it comes from a workbook) on first use."""
        with self._lock:
            if self._history is None:
                source = self._history_source
                frame = source() if callable(source) else source
                self._history = _HistoryIndex(frame if frame is not None else pd.DataFrame())
                self._history_source = None
            return self._history

    def clv(self) -> _ClvIndex:
        """The clv index, built (and the clv table read, when it comes from a workbook) on first use."""
        with self._lock:
            if self._clv is None:
                source = self._clv_source
                frame = source() if callable(source) else source
                self._clv = _ClvIndex(frame if frame is not None else pd.DataFrame())
                self._clv_source = None
            return self._clv

    def column_for(self, kind: str, metric: Any = None) -> str:
        """The output column a function returns (``kind`` is the function: segment, tier, ... metric)."""
        if kind == "segment":
            return self.udf_segment
        if kind == "explain":
            return "tier_reason" if self.udf_segment == "value_tier" else "segment_reason"
        if kind != "metric":
            return _KIND_COLUMNS[kind]
        name = "" if metric is None else str(metric).strip()
        if isinstance(metric, float) and metric != metric:
            name = ""
        if not name:
            raise _CellError(f"no metric name given (known: {', '.join(self.known_metrics())})")
        column = self._metrics.get(name.casefold())
        if column is None:
            raise _CellError(f"unknown metric {name} (known: {', '.join(self.known_metrics())})")
        return column

    def known_metrics(self) -> list[str]:
        """Names CRM_METRIC accepts: every column of the snapshot except the id, in table order."""
        return [str(c) for c in self.snapshot.columns if str(c) != "customer_id"]

    def _array(self, table: str, column: str) -> tuple[bool, np.ndarray]:
        """A column as an array ready for Excel: (numeric?, values); made once per column."""
        key = (table, column)
        ready = self._arrays.get(key)
        if ready is None:
            frame = {SNAPSHOT: lambda: self.snapshot, HISTORY: lambda: self.history().frame,
                     CLV: lambda: self.clv().frame}[table]()
            ready = _excel_array(frame[column])
            self._arrays[key] = ready
        return ready

    # -- lookups ------------------------------------------------------------------------------------

    def lookup(self, keys: list[str | None], column: str, month: int | None) -> list[Any]:
        """Values of ``column`` for the normalized ids ``keys`` in ``month`` (None = latest), one per key.

        Blank ids give blank cells; unknown ids give their error text.
        """
        if month is None or month == self.latest:
            table, get = SNAPSHOT, self.ids.get
            positions = np.fromiter((get(k, -1) for k in keys), dtype=np.int64, count=len(keys))
        else:
            table, positions = HISTORY, self.history().positions(month, keys)
        frame_columns = self.snapshot.columns if table == SNAPSHOT else self.history().frame.columns
        if column not in frame_columns:
            latest = f" ({_month_label(self.latest)})" if self.latest is not None else ""
            raise _CellError(f"{column} is not in the history, only in the latest month{latest}")
        numeric, values = self._array(table, column)
        found = positions >= 0
        out = np.empty(len(keys), dtype=object)
        if found.any():
            picked = values[positions[found]]
            if numeric:
                cells = picked.astype(object)
                cells[np.isnan(picked)] = ""
                picked = cells
            out[found] = picked
        if not found.all():
            out[~found] = [self._missing_text(keys[i], table, month) for i in np.flatnonzero(~found).tolist()]
        return out.tolist()

    def lookup_clv(self, keys: list[str | None], column: str) -> list[Any]:
        """Values of a clv column for the normalized ids ``keys``; blank ids give blank cells, others
        not in the table a text saying why (no core purchase, no CLV this refresh, unknown)."""
        index = self.clv()
        get = index.ids.get
        positions = np.fromiter((get(k, -1) for k in keys), dtype=np.int64, count=len(keys))
        found = positions >= 0
        out = np.empty(len(keys), dtype=object)
        if found.any():
            _numeric, values = self._array(CLV, column)
            picked = values[positions[found]].astype(object)
            picked[pd.isna(picked)] = ""      # blank: the order-value model could not be fitted
            out[found] = picked
        if not found.all():
            out[~found] = [self._no_clv_text(keys[i], index) for i in np.flatnonzero(~found).tolist()]
        return out.tolist()

    def _no_clv_text(self, key: str | None, index: _ClvIndex) -> str:
        if key is None:
            return ""
        if key not in self.ids:
            return f"{PREFIX}unknown customer {key}"
        if not index.ids:
            return (f"{PREFIX}no CLV in this refresh (too few repeat buyers or the fit failed: see clv.status "
                    "in Run Info)")
        return f"{PREFIX}no CLV for customer {key}: no core purchase yet"

    def _missing_text(self, key: str | None, table: str, month: int | None) -> str:
        if key is None:
            return ""
        if table == HISTORY and month is not None and (key in self.ids or key in self.history().ids):
            return f"{PREFIX}customer {key} is not in the base in {_month_label(month)}"
        return f"{PREFIX}unknown customer {key}"


_KIND_COLUMNS = {"tier": "value_tier", "state": "lifecycle_state", "event": "lifecycle_event", "rfm": "rfm_code"}
#: The functions of the clv table (the report month only, so without a month argument) and their columns.
_CLV_COLUMNS = {"palive": "p_alive", "clv": "clv"}


def _excel_array(values: pd.Series) -> tuple[bool, np.ndarray]:
    """A column as (numeric?, array): numbers as float64 (NaN = blank), dates as datetime objects,
    anything else as Python objects with blanks as ""."""
    dtype = values.dtype
    if ptypes.is_datetime64_any_dtype(dtype):
        if getattr(values.dt, "tz", None) is not None:
            values = values.dt.tz_localize(None)
        stamps = values.to_numpy(dtype="datetime64[us]").astype(object)
        stamps[pd.isna(stamps)] = ""
        return False, stamps
    if ptypes.is_bool_dtype(dtype):
        return False, values.to_numpy(dtype=object, na_value="")
    if ptypes.is_numeric_dtype(dtype):
        return True, values.to_numpy(dtype="float64", na_value=np.nan)
    return False, values.to_numpy(dtype=object, na_value="")


# --- loaders -----------------------------------------------------------------------------------------


def load_tables_from_frames(snapshot: pd.DataFrame | None,
                            history: pd.DataFrame | Callable[[], pd.DataFrame | None] | None,
                            udf_segment: str = "value_tier", refresh_id: str | None = None,
                            clv: pd.DataFrame | Callable[[], pd.DataFrame | None] | None = None) -> BookData:
    """The lookups of a workbook from its ``customer_snapshot``, ``customer_history`` and ``clv`` frames.

    Used after a refresh (:func:`prime`, with the tables just computed) and when a workbook is
    reopened (:func:`load_tables_from_book`, with the tables read from its sheets). Ids may be
    numbers or text in any spelling; ``history`` may be a function that returns the frame, called
    the first time a month other than the latest is asked for (``clv`` likewise, by CRM_PALIVE or CRM_CLV).
    """
    return BookData(snapshot, history, udf_segment, refresh_id, clv)


def read_output_table(book: Any, name: str) -> pd.DataFrame | None:
    """An output table of an xlwings Book as a DataFrame (one bulk read), or None when it is missing."""
    return _read_table(book, layout.OUTPUT_TABLES[name])


def read_refresh_id(book: Any) -> str | None:
    """The refresh id on the workbook's Start sheet (tbl_status), one small read; None when the book
    has none (never refreshed, or made before refresh ids)."""
    status = _read_table(book, layout.STATUS_TABLE)
    if status is None or not {"item", "value"} <= set(status.columns):
        return None
    values = status.loc[status["item"].astype(str).str.strip() == REFRESH_ID_ITEM, "value"]
    text = "" if values.empty or values.iloc[0] is None else str(values.iloc[0]).strip()
    return text or None


def _read_table(book: Any, spec: layout.Table) -> pd.DataFrame | None:
    name = spec.name
    try:
        sheet = book.sheets[spec.sheet]
        table = sheet.tables[name]
    except Exception:
        return None
    rng = table.range
    if rng is None:
        return None
    frame = rng.options(pd.DataFrame, index=False, header=True).value
    if not isinstance(frame, pd.DataFrame):
        return None
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame


def _udf_segment_of(book: Any) -> str:
    """The udf_segment of the run that wrote the workbook's tables (its run_info table), else the default."""
    default = Config().udf_segment
    try:
        info = read_output_table(book, RUN_INFO)
        if info is None or not {"item", "value"} <= set(info.columns):
            return default
        items = info["item"].astype(str).str.strip()
        values = info.loc[items == "setting.udf_segment", "value"]
        if values.empty:
            return default
        return Config.from_mapping({"udf_segment": values.iloc[0]}).udf_segment
    except Exception:
        return default


def load_tables_from_book(book: Any) -> BookData | None:
    """The lookups from a workbook's own output tables, read through xlwings; None when not refreshed.

    Reads ``customer_snapshot`` (and ``run_info`` for the udf_segment setting) now,
    ``customer_history`` only when a month other than the latest is first asked for and ``clv`` only
    when CRM_PALIVE or CRM_CLV is first called.
    """
    snapshot = read_output_table(book, SNAPSHOT)
    if snapshot is None:
        return None
    refresh_id = read_refresh_id(book)
    data = load_tables_from_frames(snapshot, lambda: _full_history(book, refresh_id), _udf_segment_of(book),
                                   refresh_id, lambda: read_output_table(book, CLV))
    return None if data.empty else data


def _full_history(book: Any, refresh_id: str | None) -> pd.DataFrame | None:
    """Every month of the history: the Parquet file beside the workbook when the sheet holds only the
    latest months (the refresh wrote it with the same refresh id), else the history sheet."""
    sidecar = _history_file(book)
    if refresh_id is not None and sidecar is not None and sidecar.is_file():
        import pyarrow.parquet as pq

        from crm_xl.workbook.refresh import REFRESH_ID_KEY

        try:
            metadata = pq.read_schema(sidecar).metadata or {}
            if metadata.get(REFRESH_ID_KEY, b"").decode("ascii", "replace") == refresh_id:
                return pq.read_table(sidecar).to_pandas()
        except (OSError, ValueError):     # unreadable or damaged: the sheet still has the latest months
            pass
    return read_output_table(book, HISTORY)


def _history_file(book: Any) -> Path | None:
    from crm_xl.workbook.guard import sidecar_paths

    try:
        path = Path(str(book.fullname))
    except Exception:
        return None
    return sidecar_paths(path)[0] if path.parent != Path() else None


# --- the cache ---------------------------------------------------------------------------------------


class UdfCache:
    """Per workbook (key: its full name, see :func:`book_key`), the :class:`BookData` to look up in."""

    #: After a workbook turned out not refreshed, how long to answer "not refreshed" before reading it
    #: again (a recalculation of 10,000 cells must not read the workbook 10,000 times).
    retry_seconds = 2.0
    #: How long a workbook's refresh id, once read, is trusted: every cell of one recalculation asks
    #: within it, so a recalculation costs one small read, and a refresh made elsewhere (headless, or
    #: by a Refresh outside this process) is seen by the next recalculation.
    check_seconds = 1.0
    clock: Callable[[], float] = staticmethod(time.monotonic)

    def __init__(self) -> None:
        self._books: dict[str, BookData] = {}
        self._not_refreshed: dict[str, float] = {}
        self._checked: dict[str, float] = {}
        self._lock = threading.RLock()
        #: The workbook primed last: used when no calling workbook is known (plain Python, tests).
        self.default_key: str | None = None

    def prime(self, key: str, tables: Mapping[str, pd.DataFrame], udf_segment: str,
              refresh_id: str | None = None) -> BookData:
        data = load_tables_from_frames(tables.get(SNAPSHOT), tables.get(HISTORY), udf_segment, refresh_id,
                                       tables.get(CLV))
        with self._lock:
            self._books[key] = data
            self._not_refreshed.pop(key, None)
            self._checked[key] = self.clock()
            self.default_key = key
        return data

    def clear(self, key: str | None = None) -> None:
        with self._lock:
            if key is None:
                self._books.clear()
                self._not_refreshed.clear()
                self.default_key = None
            else:
                self._books.pop(key, None)
                self._not_refreshed.pop(key, None)
                if self.default_key == key:
                    self.default_key = None

    def get(self, key: str | None) -> BookData | None:
        """The cached data of a workbook; None when there is none or it is empty (not refreshed)."""
        data = None if key is None else self._books.get(key)
        return None if data is None or data.empty else data

    def keys(self) -> list[str]:
        return list(self._books)

    def load(self, key: str, loader: Callable[[], BookData | None],
             refresh_id: Callable[[], str | None] = lambda: None) -> BookData | None:
        """The workbook's data, read with ``loader`` when not cached yet (not again for a few seconds
        when the workbook turned out not refreshed), or again when the workbook's ``refresh_id()``
        (asked at most every :attr:`check_seconds`) is no longer the one the cache was built from."""
        with self._lock:
            data = self._books.get(key)
            if data is not None and self._stale(key, data, refresh_id):
                self._books.pop(key)
                data = None
            if data is not None:                # primed by a refresh (empty tables: not refreshed)
                return None if data.empty else data
            since = self._not_refreshed.get(key)
            if since is not None and self.clock() - since < self.retry_seconds:
                return None
            data = loader()
            self._checked[key] = self.clock()
            if data is None or data.empty:
                self._not_refreshed[key] = self.clock()
                return None
            self._books[key] = data
            return data

    def _stale(self, key: str, data: BookData, refresh_id: Callable[[], str | None]) -> bool:
        now = self.clock()
        if now - self._checked.get(key, -math.inf) < self.check_seconds:
            return False
        self._checked[key] = now
        current = refresh_id()
        return current is not None and current != data.refresh_id


_CACHE = UdfCache()


def book_key(book: Any) -> str:
    """The cache key of an xlwings Book: its full name (path), or its name when that is not available."""
    try:
        return str(book.fullname)
    except Exception:
        return str(book.name)


def prime(book_key: str, tables: Mapping[str, pd.DataFrame], udf_segment: str, refresh_id: str | None = None) -> None:
    """After a refresh: make the functions answer from ``tables`` (the refresh's output tables) for
    the workbook ``book_key`` (use :func:`book_key` of the Book), written by the refresh ``refresh_id``.
    Replaces whatever was cached."""
    _CACHE.prime(book_key, tables, udf_segment, refresh_id)


def clear(book_key: str | None = None) -> None:
    """Forget the cached tables of one workbook, or of all workbooks when ``book_key`` is None."""
    _CACHE.clear(book_key)


def _caller_book() -> Any:
    """The workbook whose wrappers called us (xlwings sets it before a function runs); None outside Excel."""
    try:
        return xw.Book.caller()
    except Exception:
        return None


def _current_data() -> BookData | None:
    book = _caller_book()
    if book is None:
        return _CACHE.get(_CACHE.default_key)
    key = book_key(book)
    return _CACHE.load(key, lambda: load_tables_from_book(book), lambda: read_refresh_id(book))


# --- evaluation ---------------------------------------------------------------------------------------


def _is_range(value: Any) -> bool:
    return isinstance(value, (list, tuple, np.ndarray))


def _as_array(value: Any) -> np.ndarray:
    if isinstance(value, np.ndarray):
        return value.astype(object)
    if _is_range(value):
        return np.array(value, dtype=object)
    out = np.empty((), dtype=object)
    out[()] = value
    return out


def _shaped(flat: list[Any], shape: tuple[int, ...]) -> Any:
    if not shape:
        return flat[0]
    out = np.empty(len(flat), dtype=object)
    out[:] = flat
    return out.reshape(shape).tolist()


def _evaluate(kind: str, customer_id: Any, month: Any, metric: Any = None) -> Any:
    """One function over scalars or ranges: the values, or error texts, in the broadcast shape."""
    try:
        if not (_is_range(customer_id) or _is_range(month) or _is_range(metric)):
            return _evaluate_one(kind, customer_id, month, metric)
        ids, months, metrics = _as_array(customer_id), _as_array(month), _as_array(metric)
        try:
            shape = np.broadcast_shapes(ids.shape, months.shape, metrics.shape)
        except ValueError:
            return _fill(customer_id, PREFIX + "month and metric must be one cell or a range the shape of the ids")
        if ids.size == 1 and months.size == 1 and metrics.size == 1:    # one cell (Excel passes [[id]])
            return _shaped([_evaluate_one(kind, ids.flat[0], months.flat[0], metrics.flat[0])], shape)
        flat_ids = np.broadcast_to(ids, shape).ravel().tolist()
        keys = [_id_key(v) for v in flat_ids]
        data = _current_data()
        if data is None:
            return _shaped([NOT_REFRESHED] * len(keys), shape)
        if months.size == 1 and metrics.size == 1:
            return _shaped(_lookup_group(data, kind, keys, months.flat[0], metrics.flat[0]), shape)
        return _shaped(_lookup_cells(data, kind, keys, np.broadcast_to(months, shape).ravel().tolist(),
                                     np.broadcast_to(metrics, shape).ravel().tolist()), shape)
    except Exception as exc:  # never a Python error in a cell
        return _fill(customer_id, f"{PREFIX}{type(exc).__name__}: {exc}")


def _evaluate_one(kind: str, customer_id: Any, month: Any, metric: Any) -> Any:
    key = _id_key(customer_id)
    data = _current_data()
    if data is None:
        return NOT_REFRESHED
    if key is None:
        return ""
    return _lookup_group(data, kind, [key], month, metric)[0]


def _lookup_group(data: BookData, kind: str, keys: list[str | None], month: Any, metric: Any) -> list[Any]:
    """Cells sharing one month and one metric: one vectorised lookup."""
    try:
        if kind in _CLV_COLUMNS:
            return data.lookup_clv(keys, _CLV_COLUMNS[kind])
        column = data.column_for(kind, metric)
        code = _month_code(month)
        return data.lookup(keys, column, code)
    except _CellError as problem:
        return [problem.text if k is not None else "" for k in keys]


def _lookup_cells(data: BookData, kind: str, keys: list[str | None], months: list[Any],
                  metrics: list[Any]) -> list[Any]:
    """Cells whose month or metric vary: grouped by (month, metric), one lookup per group."""
    groups: dict[tuple[Any, Any], list[int]] = {}
    for i, (month, metric) in enumerate(zip(months, metrics, strict=True)):
        groups.setdefault((_hashable(month), _hashable(metric)), []).append(i)
    out: list[Any] = [None] * len(keys)
    for positions in groups.values():
        first = positions[0]
        values = _lookup_group(data, kind, [keys[i] for i in positions], months[first], metrics[first])
        for i, value in zip(positions, values, strict=True):
            out[i] = value
    return out


def _hashable(value: Any) -> Any:
    if isinstance(value, float) and value != value:
        return None
    try:
        hash(value)
    except TypeError:
        return repr(value)
    return (type(value).__name__, value)


def _fill(shape_like: Any, text: str) -> Any:
    """``text`` in the shape of the ids argument."""
    if not _is_range(shape_like):
        return text
    try:
        arr = _as_array(shape_like)
        return _shaped([text] * arr.size, arr.shape)
    except Exception:
        return text


# --- the worksheet functions ---------------------------------------------------------------------------
# Names and arguments must equal the wrappers in workbook/vba/xlwings_udfs.bas (a test checks it).

#: Each argument's help, the same for every function that takes it: xlwings' Import Functions and the
#: workbook's RegisterFunctionHelp macro (crm_xl.excel.function_help) show it in Insert Function.
ARGUMENT_HELP = {
    "customer_id": "A customer id, or a range of ids",
    "metric": "A column name of customer_snapshot, e.g. m12, amc, rfm_segment",
    "month": "Report month: 2024-12, a date, or blank for the latest",
}


def _lookup_function(func):
    """What every (customer_id, month) function declares to xlwings: both arguments may be ranges."""
    func = xw.arg("month", ndim=2, doc=ARGUMENT_HELP["month"])(func)
    func = xw.arg("customer_id", ndim=2, doc=ARGUMENT_HELP["customer_id"])(func)
    return xw.func(category="CRM")(func)


@_lookup_function
def CRM_SEGMENT(customer_id, month=None):
    """The customer's segment: value tier or RFM segment, per the udf_segment setting."""
    return _evaluate("segment", customer_id, month)


@_lookup_function
def CRM_TIER(customer_id, month=None):
    """The customer's value tier (Diamond ... Passive); blank when not active."""
    return _evaluate("tier", customer_id, month)


@_lookup_function
def CRM_STATE(customer_id, month=None):
    """The customer's lifecycle state: Prospect, Newcomer, Regular, Lapsing, Churned or Returning."""
    return _evaluate("state", customer_id, month)


@_lookup_function
def CRM_EVENT(customer_id, month=None):
    """The customer's lifecycle event that month: New, Lost or Reactivated; blank when none."""
    return _evaluate("event", customer_id, month)


@_lookup_function
def CRM_RFM(customer_id, month=None):
    """The customer's RFMT code, e.g. R5F4M3T2; blank when not scored (no core purchase yet)."""
    return _evaluate("rfm", customer_id, month)


@_lookup_function
def CRM_EXPLAIN(customer_id, month=None):
    """Why the customer has the segment CRM_SEGMENT returns (the tier or segment reason)."""
    return _evaluate("explain", customer_id, month)


@xw.func(category="CRM")
@xw.arg("customer_id", ndim=2, doc=ARGUMENT_HELP["customer_id"])
@xw.arg("metric", ndim=2, doc=ARGUMENT_HELP["metric"])
@xw.arg("month", ndim=2, doc=ARGUMENT_HELP["month"])
def CRM_METRIC(customer_id, metric, month=None):
    """Any figure or label of the customer by its column name in customer_snapshot."""
    return _evaluate("metric", customer_id, month, metric)


@xw.func(category="CRM")
@xw.arg("customer_id", ndim=2, doc=ARGUMENT_HELP["customer_id"])
def CRM_PALIVE(customer_id):
    """Probability (0-1) that the customer still buys, from the clv table (BG/NBD, the report month)."""
    return _evaluate("palive", customer_id, None)


@xw.func(category="CRM")
@xw.arg("customer_id", ndim=2, doc=ARGUMENT_HELP["customer_id"])
def CRM_CLV(customer_id):
    """The customer's expected, discounted revenue over clv_horizon_months, from the clv table."""
    return _evaluate("clv", customer_id, None)
