"""The data-quality log: one row per rule that fired, with counts and example rows.

Row numbers are 1-based positions in the table as given (row 1 = the first data row under the
header); adapters that know where a table starts on a sheet translate them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping

import numpy as np
import pandas as pd

QUALITY_COLUMNS = ("table", "column", "rule", "severity", "rows", "example_rows", "example_values", "message")
SEVERITIES = ("error", "warning", "info")
_EXAMPLES = 5


REJECTED_COLUMNS = ("table", "row", "rule", "column", "values")


class QualityLog:
    """Collects findings while staging runs; :meth:`to_frame` gives the ``data_quality`` table and
    :meth:`rejected_frame` the ``rejected_lines`` table."""

    def __init__(self) -> None:
        self._rows: list[dict[str, object]] = []
        self._rejected: list[tuple[str, str, str, np.ndarray, pd.DataFrame]] = []

    def add(self, table: str, column: str, rule: str, severity: str, where: np.ndarray, message: str,
            values: pd.Series | None = None, rejects: pd.DataFrame | None = None) -> int:
        """Record a rule. ``where`` is a boolean mask over the raw rows or an array of raw positions.

        ``rejects``: the raw table, when the rule leaves those rows out of the analysis; each row is
        then listed in ``rejected_lines`` with its raw values.
        """
        positions = np.flatnonzero(where) if where.dtype == bool else np.sort(np.asarray(where))
        if len(positions) == 0:
            return 0
        if rejects is not None:
            self._rejected.append((table, column, rule, positions, rejects))
        first = positions[:_EXAMPLES]
        examples = ""
        if values is not None:
            shown = [_show(v) for v in values.loc[first].tolist()]
            examples = ", ".join(dict.fromkeys(shown))
        self._rows.append({
            "table": table, "column": column, "rule": rule, "severity": severity,
            "rows": len(positions), "example_rows": ", ".join(str(p + 1) for p in first),
            "example_values": examples, "message": message,
        })
        return len(positions)

    def add_note(self, table: str, column: str, rule: str, severity: str, count: int, examples: str,
                 message: str) -> None:
        """Record a finding that is not about rows (e.g. months without data)."""
        self._rows.append({"table": table, "column": column, "rule": rule, "severity": severity,
                           "rows": count, "example_rows": "", "example_values": examples, "message": message})

    def summary(self, table: str, top: int = 3) -> str:
        """The findings of ``table`` with most rows (warnings first), as one line: ``bad_date 12 rows
        (e.g. rows 2, 3: 15/13/2024)``. The message it goes into is all the user sees: a refresh that
        stops writes no Data Quality table."""
        found = [r for r in self._rows if r["table"] == table and int(r["rows"] or 0) > 0]
        rows = sorted(found, key=lambda r: (r["severity"] != "warning", -int(r["rows"])))[:top]
        return "; ".join(f"{r['column']} {r['rule']}: {int(r['rows']):,} rows (e.g. rows {r['example_rows']}"
                         + (f": {r['example_values']}" if r["example_values"] else "") + ")" for r in rows) \
            or "no line was rejected by a rule; check which columns the extract's headers map to"

    def rejected_frame(self) -> pd.DataFrame:
        """One row per (rejected row, rule), by table and row; ``values`` as ``column=value | ...``."""
        parts = [pd.DataFrame({"table": table, "row": positions + 1, "rule": rule, "column": column,
                               "values": _row_texts(raw, positions)})
                 for table, column, rule, positions, raw in self._rejected]
        if not parts:
            return pd.DataFrame({c: pd.Series(dtype="int64" if c == "row" else "str") for c in REJECTED_COLUMNS})
        frame = pd.concat(parts, ignore_index=True)
        order = {name: i for i, name in enumerate(("transactions", "customers", "products"))}
        frame = frame.sort_values(["table", "row"], key=lambda c: c.map(order) if c.name == "table" else c,
                                  kind="stable").reset_index(drop=True)
        return frame.astype({"table": "str", "row": "int64", "rule": "str", "column": "str", "values": "str"})

    def to_frame(self) -> pd.DataFrame:
        """The findings, most severe first (in the order found within a severity)."""
        rank = {severity: i for i, severity in enumerate(SEVERITIES)}
        rows = sorted(self._rows, key=lambda row: rank.get(str(row["severity"]), len(rank)))
        frame = pd.DataFrame(rows, columns=list(QUALITY_COLUMNS))
        frame["rows"] = frame["rows"].astype("int64")
        for column in QUALITY_COLUMNS:
            if column != "rows":
                frame[column] = frame[column].astype("str")
        return frame


RowOf = Callable[[np.ndarray], np.ndarray]   # 1-based positions -> the rows a user goes to


def source_rows(tables: Mapping[str, pd.DataFrame], row_of: Mapping[str, RowOf]) -> dict[str, pd.DataFrame]:
    """``data_quality`` and ``rejected_lines`` with their row numbers as the source numbers them.

    The core numbers rows by position (1 = the first data row); an adapter that knows where a
    table came from gives, per raw table, the rows a user goes to for an array of positions (sheet
    rows, a file's line numbers). Tables without an entry keep their positions. Arrays, because a
    bad extract can reject millions of rows.
    """
    quality = tables["data_quality"].copy()
    for i, row in quality.iterrows():
        number = row_of.get(row["table"])
        if number is not None and row["example_rows"]:
            positions = np.array([int(p) for p in row["example_rows"].split(", ")])
            quality.at[i, "example_rows"] = ", ".join(str(r) for r in number(positions))
    rejected = tables["rejected_lines"].copy()
    for table, number in row_of.items():
        mine = (rejected["table"] == table).to_numpy()
        if mine.any():
            rejected.loc[mine, "row"] = np.asarray(number(rejected.loc[mine, "row"].to_numpy()), dtype="int64")
    return {"data_quality": quality, "rejected_lines": rejected}


def _row_texts(raw: pd.DataFrame, positions: np.ndarray) -> pd.Series:
    """``invoice_id=I9 | invoice_date=15/01/2024 | …`` for the given rows, blank cells as nothing."""
    rows = raw.iloc[positions]
    texts = pd.Series("", index=range(len(positions)), dtype="str")
    for i, column in enumerate(rows.columns):
        cells = pd.Series(rows[column].to_numpy(dtype=object), dtype=object).map(_cell_text)
        texts = texts.str.cat(f"{column}=" + cells.astype("str"), sep=" | " if i else "")
    return texts


def _cell_text(value: object) -> str:
    if value is None or value is pd.NA or value is pd.NaT or (isinstance(value, float) and np.isnan(value)):
        return ""
    if isinstance(value, dt.datetime | np.datetime64):   # whichever reader gave it: a date shows as one
        stamp = pd.Timestamp(value)
        return str(stamp.date()) if stamp == stamp.normalize() else str(stamp)
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:   # 3, as typed, not 3.0
        return str(int(value))
    return str(value)


def _show(value: object) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA or value is pd.NaT:
        return "(blank)"
    text = _cell_text(value) if isinstance(value, dt.datetime | np.datetime64) else str(value)
    if not text.strip():
        return "(blank)"
    return text if len(text) <= 40 else text[:37] + "..."
