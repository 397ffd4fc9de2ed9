"""The data-quality log: one row per rule that fired, with counts and example rows.

Row numbers are 1-based positions in the table as given (row 1 = the first data row under the
header); adapters that know where a table starts on a sheet translate them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

QUALITY_COLUMNS = ("table", "column", "rule", "severity", "rows", "example_rows", "example_values", "message")
SEVERITIES = ("error", "warning", "info")
_EXAMPLES = 5


class QualityLog:
    """Collects findings while staging runs; :meth:`to_frame` gives the ``data_quality`` table."""

    def __init__(self) -> None:
        self._rows: list[dict[str, object]] = []

    def add(self, table: str, column: str, rule: str, severity: str, where: np.ndarray, message: str,
            values: pd.Series | None = None) -> int:
        """Record a rule. ``where`` is a boolean mask over the raw rows or an array of raw positions."""
        positions = np.flatnonzero(where) if where.dtype == bool else np.sort(np.asarray(where))
        if len(positions) == 0:
            return 0
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

    def to_frame(self) -> pd.DataFrame:
        frame = pd.DataFrame(self._rows, columns=list(QUALITY_COLUMNS))
        frame["rows"] = frame["rows"].astype("int64")
        for column in QUALITY_COLUMNS:
            if column != "rows":
                frame[column] = frame[column].astype("str")
        return frame


def _show(value: object) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA or value is pd.NaT:
        return "(blank)"
    text = str(value)
    if not text.strip():
        return "(blank)"
    return text if len(text) <= 40 else text[:37] + "..."
