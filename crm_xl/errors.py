"""The errors crm_xl raises for bad input, each carrying where the problem is.

Adapters (CLI, workbook, Excel) catch :class:`CrmXlError` and show its message; anything else is a
bug and is shown with a traceback only on request.
"""

from __future__ import annotations


class CrmXlError(Exception):
    """Base class: a problem the user can fix, with a message that says what and where."""


class ConfigError(CrmXlError, ValueError):
    """A setting is invalid. ``key`` names the setting, so an adapter can point at its cell."""

    def __init__(self, key: str, message: str) -> None:
        self.key = key
        super().__init__(f"Config '{key}': {message}")


class InputError(CrmXlError, ValueError):
    """An input table cannot be used at all (a required column missing, no usable rows).

    ``table`` and ``column`` say where; ``setting`` names the setting that fixes it, if one does
    (an adapter can then point at its cell). Row-level problems are never raised, they go to the
    data-quality table instead.
    """

    def __init__(self, table: str, message: str, column: str | None = None, setting: str | None = None) -> None:
        self.table = table
        self.column = column
        self.setting = setting
        self.message = message
        where = f"{table}.{column}" if column else table
        super().__init__(f"{where}: {message}")
