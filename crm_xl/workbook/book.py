"""Making and filling workbooks: a fresh copy of the template, and Raw tables loaded from files.

Both write through :func:`crm_xl.workbook.package.rewrite_tables`, so the template's VBA, button
and sheets are kept byte for byte and the target is replaced atomically.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pandas as pd

from crm_xl.errors import InputError
from crm_xl.workbook import layout
from crm_xl.workbook.package import rewrite_tables

#: The committed template of a source checkout (``crm-xl template`` builds it).
TEMPLATE = Path(__file__).resolve().parents[2] / "workbook" / "crm_xl.xlsm"


def template_path() -> Path:
    """The template to copy: the committed one, else one built now from the VBA sources."""
    if TEMPLATE.is_file():
        return TEMPLATE
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
    handle, temp = tempfile.mkstemp(prefix=f".~{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    try:
        shutil.copyfile(template_path(), temp)
        if sample:
            from crm_xl.sample import generate

            _write_raw(Path(temp), generate())
        os.replace(temp, path)
    finally:
        if os.path.exists(temp):
            os.unlink(temp)
    return path


def load_raw(path: str | Path, tables: dict[str, pd.DataFrame]) -> Path:
    """Replace the Raw tables named in ``tables`` (transactions, customers, products) in place."""
    path = Path(path)
    unknown = set(tables) - set(layout.RAW_TABLES)
    if unknown:
        raise InputError("workbook", f"unknown raw tables {sorted(unknown)}; expected {list(layout.RAW_TABLES)}")
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
    rewrite_tables(path, path, named, styles=styles, allow_new_columns=True)
