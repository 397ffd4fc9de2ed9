"""The raw tables' columns found by name: an extract's own headers renamed to the contract's columns.

A ``map.<table>.<column>`` setting (``map.transactions.invoice_id = Invoice No``) names the header
that holds a contract column, so an extract is used as it comes. Headers are compared ignoring case
and surrounding spaces, as every header is. Renaming touches the column labels only (no data is
copied), and every header problem is found here, before staging reads a single value.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from crm_xl.config import INPUT_COLUMNS, REQUIRED_COLUMNS, Config, header_key, map_key
from crm_xl.errors import InputError


def to_contract(table: pd.DataFrame, name: str, config: Config) -> pd.DataFrame:
    """``table`` with its mapped headers renamed to the contract's columns; :class:`InputError` when a
    header is missing, mapped twice over, or a required column is missing."""
    if not isinstance(table, pd.DataFrame):
        raise InputError(name, f"expected a table (pandas DataFrame), got {type(table).__name__}")
    headers = contract_headers(list(table.columns), name, config)
    if headers == list(table.columns):
        return table
    return table.set_axis(headers, axis=1)


def contract_headers(headers: Sequence[object], name: str, config: Config) -> list[object]:
    """The headers of raw table ``name`` after mapping (the others as given), checked against the contract."""
    mapping = config.headers(name)
    keys = [header_key(h) for h in headers]
    renamed: list[object] = list(headers)
    for column, header in mapping.items():
        positions = [i for i, key in enumerate(keys) if key == header_key(header)]
        if len(positions) != 1:
            raise _header_not_one(name, column, header, headers, len(positions))
        renamed[positions[0]] = column
    sources = {header_key(h) for h in mapping.values()}
    for column, header in mapping.items():
        clash = [h for h, key in zip(headers, keys, strict=True) if key == column and key not in sources]
        if clash:
            raise InputError(name, f"the table has both the header {header!r} ({map_key(name, column)}) and a "
                                   f"column {clash[0]!r}, so {column} would be read from two columns: remove or "
                                   f"rename the column {clash[0]!r}, or blank {map_key(name, column)}",
                             column, setting=map_key(name, column))
    _one_each(renamed, name, headers)
    _require(renamed, name, headers)
    return renamed


def _one_each(renamed: Sequence[object], name: str, headers: Sequence[object]) -> None:
    """Two headers that read as one contract column ("quantity" and "Quantity ") would leave which one
    is used to an accident of their order: an error naming both."""
    contract = {c.name for c in INPUT_COLUMNS[name]}
    seen: dict[str, object] = {}
    for header, original in zip(renamed, headers, strict=True):
        key = header_key(header)
        if key not in contract:
            continue
        if key in seen:
            raise InputError(name, f"the headers {seen[key]!r} and {original!r} both read as the column {key} "
                                   "(headers are compared ignoring case and surrounding spaces): rename or remove "
                                   "one of them", key)
        seen[key] = original


def _header_not_one(name: str, column: str, header: str, headers: Sequence[object], found: int) -> InputError:
    key = map_key(name, column)
    shown = ", ".join(map(str, headers)) or "none"
    what = "is not in the table" if not found else f"is the header of {found} columns"
    return InputError(name, f"the header {header!r} that {key} names for {column} {what} (headers found: {shown}); "
                            f"set {key} to the header that holds {column}, or blank for '{column}'",
                      column, setting=key)


def _require(renamed: Sequence[object], name: str, headers: Sequence[object]) -> None:
    present = {header_key(h) for h in renamed}
    for column in REQUIRED_COLUMNS[name]:
        if column not in present:
            found = ", ".join(map(str, headers)) or "none"
            raise InputError(name, f"required column '{column}' is missing (columns found: {found}); if the "
                                   f"data names it otherwise, set {map_key(name, column)} to that header",
                             column, setting=map_key(name, column))
