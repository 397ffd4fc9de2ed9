"""Making and filling workbooks: a fresh copy of the template, and Raw tables loaded from files.

Both write through :func:`crm_xl.workbook.package.rewrite_tables`, so the template's VBA, button
and sheets are kept byte for byte and the target is replaced atomically.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import sys
import tempfile
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd

from crm_xl.config import Config, header_key, map_key
from crm_xl.errors import ConfigError, InputError
from crm_xl.io.dialect import CsvOptions
from crm_xl.io.files import replace_atomically, write_beside
from crm_xl.workbook import layout, sheetxml
from crm_xl.workbook.package import WorkbookPackageError, ZipWriter, find_tables, rewrite_tables
from crm_xl.workbook.untrusted import check_file, open_package, reading

#: The committed template of a source checkout (``crm-xl template`` builds it).
TEMPLATE = Path(__file__).resolve().parents[2] / "workbook" / "crm_xl.xlsm"


#: Where a (non-editable) install puts the template (pyproject.toml, data-files).
INSTALLED_TEMPLATE = Path(sys.prefix) / "share" / "crm_xl" / "crm_xl.xlsm"


def template_path() -> Path:
    """The template to copy: the source checkout's, else the installed one, else one built now."""
    for candidate in (TEMPLATE, INSTALLED_TEMPLATE):
        if candidate.is_file():
            return candidate
    from crm_xl.workbook.template import VBA_DIR, build_template

    if not VBA_DIR.is_dir():
        raise InputError("template", f"no template found ({TEMPLATE}) and no VBA sources to build one from; "
                                     "run crm-xl from a source checkout")
    return build_template(Path(tempfile.mkdtemp()) / "crm_xl.xlsm")


def new_workbook(path: str | Path, *, sample: bool = False, overwrite: bool = False) -> Path:
    """A fresh workbook from the template at ``path``, optionally with the bundled sample data in Raw."""
    path = Path(path)
    if path.suffix.lower() != ".xlsm":
        raise InputError("workbook", f"{path.name}: the workbook must be an .xlsm file (it carries the macros)")
    if path.exists() and not overwrite:
        raise InputError("workbook", f"{path} already exists; choose another name or remove it first")
    path.parent.mkdir(parents=True, exist_ok=True)

    def write(temp: Path) -> None:
        shutil.copyfile(template_path(), temp)
        if sample:
            from crm_xl.io.sample import generate

            _write_raw(temp, generate(), Config())

    replace_atomically(path, write)
    return path


def load_raw(path: str | Path, tables: dict[str, pd.DataFrame], columns: Config | None = None) -> Path:
    """Replace the Raw tables named in ``tables`` (transactions, customers, products) in place.

    Headers are kept as given; ``columns`` (the ``map.*`` settings) says which contract column a
    renamed header holds, so it gets that column's number format (ids as text).
    """
    path = Path(path)
    unknown = set(tables) - set(layout.RAW_TABLES)
    if unknown:
        raise InputError("workbook", f"unknown raw tables {sorted(unknown)}; expected {list(layout.RAW_TABLES)}")
    _check_writable(path)
    _write_raw(path, tables, columns or Config())
    return path


def _write_raw(path: Path, tables: dict[str, pd.DataFrame], columns: Config) -> None:
    too_big = {n: len(f) for n, f in tables.items() if len(f) > 1_048_575}
    if too_big:
        raise InputError("workbook", f"{too_big} rows do not fit an Excel sheet (1,048,575 data rows): name the "
                                     "file on the Config sheet instead (transactions_file, ...)")
    named = {layout.RAW_TABLES[n].name: f for n, f in tables.items()}
    styles = {layout.RAW_TABLES[n].name: _raw_styles(n, list(f.columns), columns) for n, f in tables.items()}
    try:
        rewrite_tables(path, path, named, styles=styles, allow_new_columns=True)
    except WorkbookPackageError as exc:   # a ValueError, not a CrmXlError: the CLI would show a traceback
        raise InputError("workbook", f"{path.name}: {exc}") from None


def _raw_styles(name: str, headers: list[str], columns: Config) -> dict[str, str]:
    """Number format per header of a raw table, by the contract column it holds."""
    formats = {c.name: c.number_format for c in layout.RAW_TABLES[name].columns}
    holds = {header_key(header): column for column, header in columns.headers(name).items()}
    contract = {h: holds.get(header_key(h), header_key(h)) for h in headers}
    return {h: formats[column] for h, column in contract.items() if column in formats}


def _check_writable(path: Path) -> None:
    """The refresh's checks (exists, not open in Excel, not read-only) before a file is changed in place."""
    from crm_xl.workbook.refresh import _check_not_open

    _check_not_open(path)
    check_file(path)


# --- settings -------------------------------------------------------------------------------------------

T = TypeVar("T")


def settings_with(path: str | Path, values: Mapping[str, object]) -> tuple[Config, CsvOptions]:
    """The workbook's settings with ``values`` put over them, validated as the refresh validates them
    (a :class:`~crm_xl.errors.ConfigError` names the setting, and its cell when the workbook holds
    the bad value). Returns what reading raw files needs: the ``map.*`` settings (as a Config) and
    the CSV options.

    The other core settings are checked only when ``values`` sets one, so a load is not stopped by
    a Config value it does not use.
    """
    from crm_xl.workbook.reader import at_cell, check_workbook_settings, column_config, read_settings

    if "segment_map" in values:
        raise ConfigError("segment_map", f"edit it in {layout.SEGMENT_MAP_TABLE.name} on the {layout.CONFIG} "
                                         "sheet; it cannot be set with --set")
    settings, workbook_settings, cells = read_settings(path)
    for key, value in values.items():
        (workbook_settings if key in layout.WORKBOOK_SETTINGS else settings)[key] = value
    unset = {k: v for k, v in cells.items() if k not in values}
    check_workbook_settings(workbook_settings, unset)
    if any(key not in layout.WORKBOOK_SETTINGS for key in values):
        try:
            Config.from_mapping(settings)
        except ConfigError as exc:
            raise at_cell(exc, unset) from None
    return column_config(settings, unset), CsvOptions.from_settings(workbook_settings)


def with_settings(path: str | Path, values: Mapping[str, object], action: Callable[[], T]) -> T:
    """``action()`` (a load or a refresh) after ``values`` are written to the Config sheet; if anything
    fails, the workbook is put back byte for byte, so a failed scheduled job changes nothing.

    Validate ``values`` with :func:`settings_with` first.
    """
    path = Path(path)
    if not values:
        return action()
    backup = write_beside(path, lambda temp: shutil.copyfile(path, temp))
    try:
        set_settings(path, {key: layout.config_cell_value(key, str(value)) for key, value in values.items()})
        result = action()
    except BaseException:
        os.replace(backup, path)
        raise
    finally:
        if backup.exists():
            backup.unlink()
    return result

_ROW_RE = r'<row\b[^>]*?\sr="{row}"[^>]*?(?:/>|>.*?</row>)'


def set_settings(path: str | Path, values: Mapping[str, object]) -> Path:
    """Set Config values in place (tbl_config's value column), e.g. ``{"report_month": "2024-12"}``;
    a ``map.<table>.<column>`` setting is the "your header" cell of its row in tbl_columns.

    Only the Config sheet's value cells change (their style and data validation stay); every
    other part of the package is copied byte for byte and the file is replaced atomically.
    Text is written as text, numbers as numbers, True/False as booleans, None or "" as a blank.
    """
    path = Path(path)
    _check_writable(path)
    cells = _setting_cells(path)
    unknown = sorted(set(values) - set(cells))
    if unknown:
        raise InputError(layout.CONFIG, f"no setting {unknown} in {layout.CONFIG_TABLE.name} or "
                                        f"{layout.COLUMNS_TABLE.name} (settings: {sorted(cells)})")
    tables = find_tables(path)
    part = tables[layout.CONFIG_TABLE.name].sheet_part
    columns = tables.get(layout.COLUMNS_TABLE.name)
    if columns is not None and columns.sheet_part != part:   # only the Config sheet's cells are rewritten
        raise InputError(layout.CONFIG, f"{layout.COLUMNS_TABLE.name} is not on the {layout.CONFIG} sheet")
    with open_package(path) as zf, reading(path, f"part {part}"):
        xml = zf.read(part).decode("utf-8")
    for key, value in values.items():
        letter, row = cells[key]
        xml = _set_cell(xml, row, letter, value)

    def write(temp: Path) -> None:
        with zipfile.ZipFile(path) as zf, open(path, "rb") as raw, open(temp, "wb+") as out:
            writer = ZipWriter(out)
            for info in zf.infolist():
                if info.filename == part:
                    writer.write_stream(part, [xml.encode("utf-8")])
                else:
                    writer.copy_raw(raw, info)
            writer.close()

    return replace_atomically(path, write)


def _setting_cells(path: Path) -> dict[str, tuple[str, int]]:
    """Setting -> (column letter, sheet row) of its value cell: tbl_config's value column, and the
    "your header" column of tbl_columns for the ``map.<table>.<column>`` settings."""
    from crm_xl.workbook.reader import open_book

    book = open_book(path, (layout.CONFIG_TABLE.name, layout.COLUMNS_TABLE.name))
    try:
        if layout.CONFIG_TABLE.name not in book.table_names:
            raise InputError(layout.CONFIG, f"Excel table {layout.CONFIG_TABLE.name} not found in {path.name}")
        cells = _value_cells(book.get_table_by_name(layout.CONFIG_TABLE.name), lambda r: str(r[0]).strip(), 1)
        if layout.COLUMNS_TABLE.name in book.table_names:
            headers = layout.COLUMNS_TABLE.headers
            cells |= _value_cells(book.get_table_by_name(layout.COLUMNS_TABLE.name),
                                  lambda r: map_key(str(r[0]).strip(), str(r[1]).strip()),
                                  headers.index(layout.YOUR_HEADER))
    finally:
        book.close()
    return cells


def _value_cells(table: Any, key: Callable[[list[Any]], str], value_col: int) -> dict[str, tuple[str, int]]:
    start_row, start_col = table.start      # first data cell, 0-based
    letter = sheetxml.column_letter(start_col + value_col)
    return {key(r): (letter, start_row + 1 + i) for i, r in enumerate(table.to_python()) if r and r[0] != ""}


def _set_cell(xml: str, row: int, letter: str, value: object) -> str:
    """``xml`` with cell ``letter``+``row`` holding ``value`` (its style kept)."""
    ref = f"{letter}{row}"
    found = re.search(_ROW_RE.format(row=row), xml, re.S)
    if found is None:
        raise InputError(layout.CONFIG, f"cell {layout.CONFIG}!{ref} not found in the sheet XML")
    row_xml = found.group()
    cell = re.search(rf'<c\b[^>]*?\sr="{ref}"[^>]*?(?:/>|>.*?</c>)', row_xml, re.S)
    style = re.search(r'\ss="(\d+)"', cell.group()) if cell else None
    attrs = f'r="{ref}"' + (f' s="{style.group(1)}"' if style else "")
    if value is None or value == "" or (isinstance(value, float) and math.isnan(value)):
        new = f"<c {attrs}/>"
    elif isinstance(value, bool):
        new = f'<c {attrs} t="b"><v>{int(value)}</v></c>'
    elif isinstance(value, int | float):
        new = f"<c {attrs}><v>{value!r}</v></c>"
    else:
        new = f'<c {attrs} t="inlineStr"><is>{sheetxml.text_element(str(value))}</is></c>'
    if cell is not None:
        row_xml = row_xml[:cell.start()] + new + row_xml[cell.end():]
    else:   # no cell yet: insert it in column order
        after = [m for m in re.finditer(r'<c\b[^>]*?\sr="([A-Z]+)\d+"', row_xml)
                 if sheetxml.column_index(m.group(1)) > sheetxml.column_index(letter)]
        if row_xml.endswith("/>"):
            row_xml = row_xml[:-2] + ">" + new + "</row>"
        else:
            at = after[0].start() if after else row_xml.rindex("</row>")
            row_xml = row_xml[:at] + new + row_xml[at:]
    return xml[:found.start()] + row_xml + xml[found.end():]
