"""Making and filling workbooks: a fresh copy of the template, and Raw tables loaded from files.

Both write through :func:`crm_xl.workbook.package.rewrite_tables`, so the template's VBA, button
and sheets are kept byte for byte and the target is replaced atomically.
"""

from __future__ import annotations

import math
import re
import shutil
import sys
import tempfile
import zipfile
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from crm_xl.errors import InputError
from crm_xl.io.files import replace_atomically
from crm_xl.workbook import layout, sheetxml
from crm_xl.workbook.package import WorkbookPackageError, ZipWriter, find_tables, rewrite_tables

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

            _write_raw(temp, generate())

    replace_atomically(path, write)
    return path


def load_raw(path: str | Path, tables: dict[str, pd.DataFrame]) -> Path:
    """Replace the Raw tables named in ``tables`` (transactions, customers, products) in place."""
    path = Path(path)
    unknown = set(tables) - set(layout.RAW_TABLES)
    if unknown:
        raise InputError("workbook", f"unknown raw tables {sorted(unknown)}; expected {list(layout.RAW_TABLES)}")
    _check_writable(path)
    _write_raw(path, tables)
    return path


def _write_raw(path: Path, tables: dict[str, pd.DataFrame]) -> None:
    too_big = {n: len(f) for n, f in tables.items() if len(f) > 1_048_575}
    if too_big:
        raise InputError("workbook", f"{too_big} rows do not fit an Excel sheet (1,048,575 data rows): name the "
                                     "file on the Config sheet instead (transactions_file, ...)")
    named = {layout.RAW_TABLES[n].name: f for n, f in tables.items()}
    styles = {layout.RAW_TABLES[n].name: {c.name: c.number_format for c in layout.RAW_TABLES[n].columns
                                          if c.name in f.columns} for n, f in tables.items()}
    try:
        rewrite_tables(path, path, named, styles=styles, allow_new_columns=True)
    except WorkbookPackageError as exc:   # a ValueError, not a CrmXlError: the CLI would show a traceback
        raise InputError("workbook", f"{path.name}: {exc}") from None


def _check_writable(path: Path) -> None:
    """The refresh's checks (exists, not open in Excel, not read-only) before a file is changed in place."""
    from crm_xl.workbook.refresh import _check_not_open

    _check_not_open(path)
    if not zipfile.is_zipfile(path):
        raise InputError("workbook", f"{path.name} is not an Excel workbook (.xlsm or .xlsx)")


# --- settings -------------------------------------------------------------------------------------------

_ROW_RE = r'<row\b[^>]*?\sr="{row}"[^>]*?(?:/>|>.*?</row>)'


def set_settings(path: str | Path, values: Mapping[str, object]) -> Path:
    """Set Config values in place (tbl_config's value column), e.g. ``{"report_month": "2024-12"}``.

    Only the Config sheet's value cells change (their style and data validation stay); every
    other part of the package is copied byte for byte and the file is replaced atomically.
    Text is written as text, numbers as numbers, True/False as booleans, None or "" as a blank.
    """
    from python_calamine import CalamineWorkbook

    path = Path(path)
    _check_writable(path)
    book = CalamineWorkbook.from_path(str(path), load_tables=True)
    try:
        if layout.CONFIG_TABLE.name not in book.table_names:
            raise InputError(layout.CONFIG, f"Excel table {layout.CONFIG_TABLE.name} not found in {path.name}")
        table = book.get_table_by_name(layout.CONFIG_TABLE.name)
        start_row, start_col = table.start      # first data cell, 0-based
        rows = {str(r[0]).strip(): start_row + 1 + i for i, r in enumerate(table.to_python()) if r and r[0] != ""}
    finally:
        book.close()
    unknown = sorted(set(values) - set(rows))
    if unknown:
        raise InputError(layout.CONFIG, f"no setting {unknown} in {layout.CONFIG_TABLE.name} (it has {sorted(rows)})")
    letter = sheetxml.column_letter(start_col + 1)
    part = find_tables(path)[layout.CONFIG_TABLE.name].sheet_part
    with zipfile.ZipFile(path) as zf:
        xml = zf.read(part).decode("utf-8")
    for key, value in values.items():
        xml = _set_cell(xml, rows[key], letter, value)

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
