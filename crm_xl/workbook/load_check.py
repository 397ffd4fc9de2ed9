"""Before ``crm-xl load`` replaces a Raw table: would the refresh still read the workbook?

The verdict is the refresh's own (its reader's header checks and the core's staging), so a load
never replaces a working Raw table with one the refresh stops on: a one-column table from a CSV
read with the wrong delimiter, a file without a usable line, a number column of text.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from crm_xl.config import Config, header_key
from crm_xl.errors import ConfigError, InputError
from crm_xl.workbook import layout, sheetxml
from crm_xl.workbook.package import find_tables
from crm_xl.workbook.reader import SheetTable, open_book


def check_load(path: Path, tables: Mapping[str, pd.DataFrame], sources: Mapping[str, str]) -> list[str]:
    """Refuse a load after which the refresh could not read the workbook; the warnings of one that may go.

    The verdict is the refresh's own: the workbook's settings, Columns table and other tables (or
    the files Config names) with ``tables`` in Raw, through the reader's header checks and the
    core's staging (every check that stops a refresh for its data). A load is refused when the
    refresh would stop after it, unless it stops with the same message before it (the load did not
    cause that, e.g. a bad Config value). A table still empty in the workbook (a fresh template,
    filled one table at a time) is stood in for by the ids the transactions use, so loading the
    transactions first is judged on their own lines.
    """
    after = _refresh_verdict(path, tables)
    if after.problem is None or (after.empty_transactions and "transactions" not in tables):
        return after.warnings       # masters loaded before the transactions passed every check of theirs
    before = _refresh_verdict(path, {})
    if before.problem == after.problem:
        return [*after.warnings, f"the refresh will still stop until this is fixed: {after.problem}"]
    blamed = [name for name in tables if name in after.tables] or list(tables)
    files = ", ".join(sources.get(name, f"the {name} table") for name in blamed)
    mismatch = len(tables) < len(layout.RAW_TABLES) and ("unknown_customer" in after.problem
                                                         or "unknown_product" in after.problem)
    fix = ("fix the file, or load the tables that belong together (new transactions with their customers and "
           "products) in one command" if mismatch else "fix the file and load it again")
    raise InputError(blamed[0], f"{files}: not loaded, as the refresh would then stop: {after.problem}. "
                                f"Nothing was written: {fix}")


@dataclasses.dataclass(frozen=True)
class _Verdict:
    problem: str | None                 # the message the refresh would stop with
    tables: tuple[str, ...] = ()        # the raw tables it is about, when it says
    warnings: list[str] = dataclasses.field(default_factory=list)
    empty_transactions: bool = False    # it stops only because there are no transactions yet


def _refresh_verdict(path: Path, replaced: Mapping[str, pd.DataFrame]) -> _Verdict:
    """What the refresh would say of the workbook with ``replaced`` in Raw: its message, or None."""
    from crm_xl.core.staging import EMPTY, stage
    from crm_xl.io import machine
    from crm_xl.workbook.reader import assemble_inputs, at_cell, read_sheet_table

    book = open_book(path)
    tables = find_tables(path)
    warnings: list[str] = []

    def read(table: layout.Table) -> SheetTable:
        name = next(n for n, t in layout.RAW_TABLES.items() if t is table)
        if name not in replaced:
            return read_sheet_table(book, table)
        info = tables.get(table.name.lower())
        start = sheetxml.Block.parse(info.ref).first_row if info is not None else table.row + 1
        frame = replaced[name]
        return SheetTable(_as_sheet_rows(frame, start + 1), start + 1, len(frame))

    cells: dict[str, str] = {}
    try:
        inputs = assemble_inputs(book, path.parent, read)
        cells = inputs.setting_cells
        for name in replaced:
            source = inputs.workbook_settings.get(f"{name}_file")
            if source:
                warnings.append(f"the refresh reads {name} from {source} (named in {cells[f'{name}_file']}), not "
                                f"from Raw: the rows loaded into {layout.RAW_TABLES[name].name} are not used until "
                                f"{name}_file is blank")
        config = Config.from_mapping(inputs.settings)
        stage(**_stand_ins(inputs.raw, inputs.first_data_row, config), config=config,
              today=pd.Timestamp(machine.today()))
    except ConfigError as exc:
        return _Verdict(str(at_cell(exc, cells)), (), warnings)
    except InputError as exc:
        return _Verdict(str(exc), tuple(n for n, t in layout.RAW_TABLES.items() if exc.table in (n, t.sheet)),
                        warnings, exc.table == "transactions" and exc.message == EMPTY)
    finally:
        book.close()
    return _Verdict(None, (), warnings)


def _as_sheet_rows(frame: pd.DataFrame, first_data_row: int) -> pd.DataFrame:
    """``frame`` as the reader gives a Raw table back: rows of blank cells dropped, index = sheet row."""
    blank = np.ones(len(frame), dtype=bool)
    for column in frame.columns:
        values = frame[column]
        blank &= values.isna().to_numpy() | values.isin([""]).to_numpy()
    rows = np.flatnonzero(~blank)
    return frame.iloc[rows].set_axis(rows + first_data_row, axis=0)


def _stand_ins(raw: dict[str, pd.DataFrame], first_rows: Mapping[str, int | None],
               config: Config) -> dict[str, pd.DataFrame]:
    """The raw tables with a master still empty in the workbook (not yet loaded) replaced by one that
    knows every id the transactions use, so the transactions are judged on their own lines."""
    from crm_xl.core.columns import to_contract

    try:
        transactions = to_contract(raw["transactions"], "transactions", config)
    except InputError:
        return raw      # staging reports it
    out = dict(raw)
    masters = {"customers": {"customer_id": "customer_id"},
               "products": {"product_id": "product_id", "category": config.core_categories[0], "unit_size": 1}}
    for name, columns in masters.items():
        if first_rows.get(name) is None or len(raw[name]):
            continue
        ids = _contract_column(transactions, next(iter(columns))).dropna().drop_duplicates().to_numpy()
        headers = config.headers(name)
        out[name] = pd.DataFrame({headers.get(column, column): ids if i == 0 else value
                                  for i, (column, value) in enumerate(columns.items())})
    return out


def _contract_column(table: pd.DataFrame, name: str) -> pd.Series:
    found = next((c for c in table.columns if header_key(c) == name), None)
    return table[found] if found is not None else pd.Series([], dtype=object)
