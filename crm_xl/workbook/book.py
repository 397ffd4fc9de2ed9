"""Making and filling workbooks: a fresh copy of the template, and Raw tables loaded from files.

Both write through :func:`crm_xl.workbook.package.write_rewritten` into a temporary file that then
replaces the target (:func:`crm_xl.io.files.replace_atomically`), so the template's VBA, button and
sheets are kept byte for byte; changes to a workbook in place hold its lock (:mod:`crm_xl.workbook.guard`).
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd

from crm_xl.config import Config, header_key, map_key
from crm_xl.errors import ConfigError, InputError
from crm_xl.io.dialect import CsvOptions
from crm_xl.io.files import check_replaceable, discard, real_path, remove_stale_temps, replace_atomically, write_beside
from crm_xl.io.locks import DEFAULT_WAIT, locked
from crm_xl.workbook import layout, sheetxml
from crm_xl.workbook.cells import table_name
from crm_xl.workbook.guard import changing
from crm_xl.workbook.package import WorkbookPackageError, find_tables, write_rewritten
from crm_xl.workbook.reader import open_book
from crm_xl.workbook.untrusted import open_package, reading
from crm_xl.workbook.zipio import copy_with_parts

#: The committed template of a source checkout (``crm-xl template`` builds it).
TEMPLATE = Path(__file__).resolve().parents[2] / "workbook" / "crm_xl.xlsm"


#: Where a (non-editable) install puts the template (pyproject.toml, data-files).
INSTALLED_TEMPLATE = Path(sys.prefix) / "share" / "crm_xl" / "crm_xl.xlsm"


#: Where ``pip install --target DIR`` puts it (DIR/share/crm_xl, beside the package).
BESIDE_PACKAGE_TEMPLATE = Path(__file__).resolve().parents[2] / "share" / "crm_xl" / "crm_xl.xlsm"


@contextlib.contextmanager
def template_file() -> Iterator[Path]:
    """The template to copy: the source checkout's, else the installed one (wherever pip put it),
    else one built now (in a temporary folder removed afterwards)."""
    for candidate in (TEMPLATE, INSTALLED_TEMPLATE, _recorded_template(), BESIDE_PACKAGE_TEMPLATE):
        if candidate is not None and candidate.is_file():
            yield candidate
            return
    from crm_xl.workbook.template import VBA_DIR, build_template

    if not VBA_DIR.is_dir():
        raise InputError("template", f"no template found ({TEMPLATE}) and no VBA sources to build one from; "
                                     "run crm-xl from a source checkout")
    with tempfile.TemporaryDirectory(prefix="crm_xl_template_") as folder:
        yield build_template(Path(folder) / "crm_xl.xlsm")


def _recorded_template() -> Path | None:
    """Where pip put the template, from the installed distribution's file list: a ``--user`` or
    ``--target`` install puts data files under another prefix than ``sys.prefix``."""
    import importlib.metadata

    try:
        files = importlib.metadata.files("crm-xl") or []
    except importlib.metadata.PackageNotFoundError:
        return None
    found = [f for f in files if f.name == INSTALLED_TEMPLATE.name and "share" in f.parts]
    return Path(str(found[0].locate())) if found else None


#: Config values of the sample workbook: its data are coffee pods.
SAMPLE_SETTINGS: dict[str, object] = {"unit_name": "pods"}


def new_workbook(path: str | Path, *, sample: bool = False, overwrite: bool = False,
                 wait: float = DEFAULT_WAIT) -> Path:
    """A fresh workbook from the template at ``path``, optionally with the bundled sample data in Raw.

    ``overwrite`` replaces an existing file (even one open in Excel or LibreOffice), under its lock."""
    path = Path(path)
    if path.suffix.lower() != ".xlsm":
        raise InputError("workbook", f"{path.name}: the workbook must be an .xlsm file (it carries the macros)")
    path.parent.mkdir(parents=True, exist_ok=True)
    book = real_path(path)
    check_replaceable(book)
    with locked(book, wait=wait):
        if book.exists() and not overwrite:
            raise InputError("workbook", f"{path} already exists; choose another name or remove it first")
        remove_stale_temps(book.parent, [book.name])

        def write(temp: Path) -> None:
            with template_file() as template:
                if sample:
                    from crm_xl.io.sample import generate

                    _write_raw(template, temp, generate(), Config(), shown=path.name)
                    _set_settings(temp, SAMPLE_SETTINGS)
                else:
                    shutil.copyfile(template, temp)

        replace_atomically(book, write)
    return path


def load_raw(path: str | Path, tables: dict[str, pd.DataFrame], columns: Config | None = None, *,
             sources: Mapping[str, str] | None = None, check: bool = True,
             warn: Callable[[str], None] | None = None, force: bool = False, wait: float = DEFAULT_WAIT) -> Path:
    """Replace the Raw tables named in ``tables`` (transactions, customers, products) in place.

    Headers are kept as given; ``columns`` (the ``map.*`` settings) says which contract column a
    renamed header holds, so it gets that column's number format (ids as text). Written under the
    workbook's lock (:func:`crm_xl.workbook.guard.changing`: ``wait``, ``force``).

    With ``check`` (the default) nothing is written when the refresh could not read the workbook
    afterwards (:func:`crm_xl.workbook.load_check.check_load`): the :class:`InputError` names the
    file (``sources``: table -> file name, for messages) and what is wrong. ``warn`` gets what the
    user should know about a load that goes ahead (the refresh reads a file named on Config instead,
    text cut to Excel's cell limit, the refresh still stops on something the load does not touch).
    """
    from crm_xl.workbook.load_check import check_load

    unknown = set(tables) - set(layout.RAW_TABLES)
    if unknown:
        raise InputError("workbook", f"unknown raw tables {sorted(unknown)}; expected {list(layout.RAW_TABLES)}")
    say = warn or (lambda _message: None)
    with changing(path, force=force, wait=wait) as book:
        if check:
            for message in check_load(book, tables, sources or {}):
                say(message)
        for name, frame in tables.items():
            for column, rows in sheetxml.long_text(frame).items():
                say(f"{(sources or {}).get(name, name)}: {len(rows):,} values of {column} are longer than the "
                    f"{sheetxml.CELL_TEXT_LIMIT:,} characters an Excel cell holds: cut to that length in Raw (name "
                    f"the file on Config as {name}_file to keep all of it)")
        replace_atomically(book, lambda out: _write_raw(book, out, tables, columns or Config(), shown=Path(path).name))
    return Path(path)


def _write_raw(src: Path, out: Path, tables: dict[str, pd.DataFrame], columns: Config,
               shown: str | None = None) -> None:
    """``src`` with the Raw ``tables`` replaced, written to the (temporary) file ``out``; ``shown``:
    the workbook's name for messages (never the temporary file's)."""
    too_big = {n: len(f) for n, f in tables.items() if len(f) > 1_048_575}
    if too_big:
        raise InputError("workbook", f"{too_big} rows do not fit an Excel sheet (1,048,575 data rows): name the "
                                     "file on the Config sheet instead (transactions_file, ...)")
    named = {layout.RAW_TABLES[n].name: _dates_as_written(f) for n, f in tables.items()}
    styles = {layout.RAW_TABLES[n].name: _raw_styles(n, list(f.columns), columns) for n, f in tables.items()}
    try:
        write_rewritten(src, out, named, styles=styles, allow_new_columns=True)
    except WorkbookPackageError as exc:   # a ValueError, not a CrmXlError: the CLI would show a traceback
        name = shown or src.name
        raise InputError("workbook", f"{name}: {str(exc).replace(str(out), name).replace(str(src), name)}") from None




def _dates_as_written(frame: pd.DataFrame) -> pd.DataFrame:
    """A date column holding a date Excel cannot show (before 1900) as ISO text, so Raw keeps it as
    written and the refresh reports it, rather than a blank cell nobody sees."""
    out = frame
    for column in frame.columns:
        values = frame[column]
        if not pd.api.types.is_datetime64_any_dtype(values.dtype):
            continue
        lost = np.isnan(sheetxml.excel_serials(values)) & values.notna().to_numpy()
        if lost.any():
            stamps = pd.to_datetime(values)
            whole_days = bool((stamps.dropna() == stamps.dropna().dt.normalize()).all())
            text = stamps.dt.strftime("%Y-%m-%d" if whole_days else "%Y-%m-%d %H:%M:%S")
            out = out.assign(**{str(column): text})
    return out


def _raw_styles(name: str, headers: list[str], columns: Config) -> dict[str, str]:
    """Number format per header of a raw table, by the contract column it holds."""
    formats = {c.name: c.number_format for c in layout.RAW_TABLES[name].columns}
    holds = {header_key(header): column for column, header in columns.headers(name).items()}
    contract = {h: holds.get(header_key(h), header_key(h)) for h in headers}
    return {h: formats[column] for h, column in contract.items() if column in formats}


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


def with_settings(path: str | Path, values: Mapping[str, object], action: Callable[[], T], *,
                  force: bool = False, wait: float = DEFAULT_WAIT) -> T:
    """``action()`` (a load or a refresh) after ``values`` are written to the Config sheet, all under one
    hold of the workbook's lock; if anything fails, the workbook is put back byte for byte, so a failed
    scheduled job changes nothing. (A kill -9 between the two writes leaves the new Config values
    beside the old outputs: the next refresh brings them together.)

    Validate ``values`` with :func:`settings_with` first.
    """
    with changing(path, force=force, wait=wait) as book:
        if not values:
            return action()
        try:
            backup = write_beside(book, lambda temp: shutil.copyfile(book, temp))
        except OSError as exc:
            raise OSError(exc.errno, f"{exc.strerror or exc}: no copy of {book.name} could be made beside it to put "
                                     "back if the command fails, so nothing was changed", str(book)) from exc
        try:
            set_settings(book, {key: layout.config_cell_value(key, str(value)) for key, value in values.items()})
            result = action()
        except BaseException:
            _put_back(backup, book)
            raise
        discard(backup)
        return result



def _put_back(backup: Path, path: Path) -> None:
    """Move the copy made before a failed command back over ``path``; if even that fails, the copy
    stays and the message says where (it is then the user's only copy of the book as it was)."""
    try:
        os.replace(backup, path)
    except OSError as exc:
        raise OSError(exc.errno, f"{exc.strerror or exc}: {path.name} could not be put back as it was; its earlier "
                                 f"content is in {backup.name} beside it (rename it to {path.name})", str(path)) \
            from exc

_ROW_RE = r'<row\b[^>]*?\sr="{row}"[^>]*?(?:/>|>.*?</row>)'


_ROW_RE = r'<row\b[^>]*?\sr="{row}"[^>]*?(?:/>|>.*?</row>)'


def set_settings(path: str | Path, values: Mapping[str, object], *, force: bool = False,
                 wait: float = DEFAULT_WAIT) -> Path:
    """Set Config values in place (tbl_config's value column), e.g. ``{"report_month": "2024-12"}``;
    a ``map.<table>.<column>`` setting is the "your header" cell of its row in tbl_columns.

    Only the Config sheet's value cells change (their style and data validation stay); every
    other part of the package is copied byte for byte and the file is replaced atomically.
    Text is written as text, numbers as numbers, True/False as booleans, None or "" as a blank.
    Written under the workbook's lock (:func:`crm_xl.workbook.guard.changing`: ``wait``, ``force``).
    """
    with changing(path, force=force, wait=wait) as book:
        _set_settings(book, values)
    return Path(path)


def _set_settings(path: Path, values: Mapping[str, object]) -> None:
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

    replace_atomically(path, lambda temp: copy_with_parts(path, temp, {part: xml.encode("utf-8")}))


def _setting_cells(path: Path) -> dict[str, tuple[str, int]]:
    """Setting -> (column letter, sheet row) of its value cell: tbl_config's value column, and the
    "your header" column of tbl_columns for the ``map.<table>.<column>`` settings."""
    book = open_book(path, (layout.CONFIG_TABLE.name, layout.COLUMNS_TABLE.name))
    try:
        config, columns = (table_name(book, t.name) for t in (layout.CONFIG_TABLE, layout.COLUMNS_TABLE))
        if config is None:
            raise InputError(layout.CONFIG, f"Excel table {layout.CONFIG_TABLE.name} not found in {path.name}")
        cells = _value_cells(book.get_table_by_name(config), lambda r: str(r[0]).strip(), 1)
        if columns is not None:
            headers = layout.COLUMNS_TABLE.headers
            cells |= _value_cells(book.get_table_by_name(columns),
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
