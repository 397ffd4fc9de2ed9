"""``crm-xl doctor [BOOK]``: is this machine (and this workbook) ready for Refresh and the CRM_ functions?

Each check says what it found and, when something is wrong, what to do; the first five minutes of
a new user fail on exactly these: the wrong Python on xlwings.conf, an xlwings whose version does
not match the VBA in the book, a missing DLL or AppleScript, macros that cannot find crm-xl.
Nothing is changed; ``crm-xl excel-setup`` is the fix for the interpreter lines.
"""

from __future__ import annotations

import dataclasses
import importlib
import re
import sys
from pathlib import Path

from crm_xl._version import __version__
from crm_xl.errors import CrmXlError
from crm_xl.workbook import layout
from crm_xl.workbook.xlwings_conf import INTERPRETER_KEYS, MAC, WINDOWS, platform_of, read_conf

PINNED_XLWINGS = "0.37.8"
MIN_PYTHON = (3, 11)
_VBA_VERSION = re.compile(r'XLWINGS_VERSION\s+As\s+String\s*=\s*"([^"]+)"')
_VBA_DLL = re.compile(r'"(xlwings(?:32|64)-[^"]+\.dll)"')


@dataclasses.dataclass(frozen=True)
class Check:
    """One finding: ``ok`` or not, what was found, and what to do when it is not."""

    name: str
    ok: bool
    found: str
    fix: str = ""

    def line(self) -> str:
        return f"  {'ok ' if self.ok else 'FIX'}  {self.name}: {self.found}" + ("" if self.ok else f" -> {self.fix}")


@dataclasses.dataclass(frozen=True)
class Machine:
    """What the checks look at, so a test can describe a Windows PC or a Mac from Linux."""

    platform: str | None = dataclasses.field(default_factory=platform_of)
    python: str = sys.executable
    prefix: Path = Path(sys.prefix)
    version: tuple[int, int, int] = tuple(sys.version_info[:3])  # type: ignore[assignment]
    bits: int = 64 if sys.maxsize > 2**32 else 32
    home: Path = dataclasses.field(default_factory=Path.home)


def diagnose(book: Path | None = None, machine: Machine | None = None) -> list[Check]:
    """Every check for this machine, and for ``book`` when one is given."""
    m = machine or Machine()
    checks = [_python(m), Check("crm-xl", True, f"{__version__} in {m.prefix}"), _xlwings(m), *_platform(m)]
    if book is not None:
        checks += _book(Path(book), m)
    return checks


def _python(m: Machine) -> Check:
    shown = ".".join(map(str, m.version)) + f" ({m.bits}-bit) at {m.python}"
    if m.version[:2] < MIN_PYTHON:
        return Check("Python", False, shown, f"install Python {'.'.join(map(str, MIN_PYTHON))} or later and "
                                               "crm-xl into it")
    return Check("Python", True, shown)


def _xlwings(m: Machine) -> Check:
    try:
        version = importlib.import_module("xlwings").__version__
    except ImportError as exc:
        return Check("xlwings", False, f"not importable ({exc})", f"pip install xlwings=={PINNED_XLWINGS}")
    if version != PINNED_XLWINGS:
        return Check("xlwings", False, f"{version}, crm-xl needs {PINNED_XLWINGS} (the VBA in its workbooks)",
                     f"{m.python} -m pip install xlwings=={PINNED_XLWINGS}")
    return Check("xlwings", True, version)


def _platform(m: Machine) -> list[Check]:
    if m.platform == WINDOWS:
        dll = m.prefix / f"xlwings{m.bits}-{PINNED_XLWINGS}.dll"
        return [Check("xlwings DLL", dll.is_file(), str(dll) if dll.is_file() else f"no {dll.name} in {m.prefix}",
                      f"reinstall xlwings=={PINNED_XLWINGS} in this environment; its Windows wheel installs the DLL")]
    if m.platform == MAC:
        script = m.home / "Library" / "Application Scripts" / "com.microsoft.Excel" / \
            f"xlwings-{PINNED_XLWINGS}.applescript"
        return [Check("AppleScript", script.is_file(), str(script) if script.is_file() else "not installed",
                      f"run  {Path(m.python).parent / 'xlwings'} runpython install  once (Excel for Mac starts "
                      "Python through it)")]
    return [Check("Excel", True, f"none on {sys.platform}: headless crm-xl refresh works; the Refresh button and "
                                 "CRM_ functions need Excel on Windows or macOS")]


def _book(book: Path, m: Machine) -> list[Check]:
    if not book.is_file():
        return [Check("workbook", False, f"{book} not found", "give the path of the .xlsm")]
    try:
        conf = read_conf(book)      # first: its package checks guard pyopenvba too (the file is untrusted)
        source = _vba_module(book, "xlwings")
    except CrmXlError as exc:
        return [Check("workbook", False, str(exc), "make a workbook with crm-xl new")]
    return [_vba(source), *_conf(book, conf, m)]


def _vba_module(book: Path, name: str) -> str | None:
    from pyopenvba import ExcelFile

    try:
        with ExcelFile(book) as excel:
            return excel.get_module(name) if name in excel.module_names() else None
    except Exception as exc:   # pyopenvba's own errors for a damaged or macro-free file
        raise CrmXlError(f"{book.name}: its VBA project cannot be read ({type(exc).__name__})") from None


def _vba(source: str | None) -> Check:
    if source is None:
        return Check("workbook VBA", False, "no xlwings module", "make the workbook with crm-xl new (the template "
                                                                 "embeds xlwings' VBA)")
    version = _VBA_VERSION.search(source)
    dlls = sorted(set(_VBA_DLL.findall(source)))
    found = f"xlwings VBA {version.group(1) if version else '?'} ({', '.join(dlls) or 'no DLL named'})"
    ok = version is not None and version.group(1) == PINNED_XLWINGS
    return Check("workbook VBA", ok, found, f"the book was made for another xlwings: make a new one with crm-xl new "
                                            f"and copy Raw and Config over (this crm-xl needs {PINNED_XLWINGS})")


def _conf(book: Path, conf: dict[str, object], m: Machine) -> list[Check]:
    keys = {key.upper(): value for key, value in conf.items()}
    checks = [Check("UDF Modules", keys.get("UDF MODULES") == "crm_xl.excel.udfs", str(keys.get("UDF MODULES", "-")),
                    f"set UDF Modules = crm_xl.excel.udfs on the {layout.XLWINGS_CONF} sheet")]
    blank = [key for key, value in conf.items() if value in ("", None)]
    if blank:
        checks.append(Check("xlwings.conf", False, f"blank {', '.join(blank)}", "a blank key still overrides your "
                            "xlwings config: delete the row(s) (keys must stay contiguous from A1)"))
    if m.platform is None:
        return checks
    key = INTERPRETER_KEYS[m.platform][0]
    setup = f"crm-xl excel-setup {book.name}"
    if "CONDA PATH" in keys and "CONDA ENV" in keys and m.platform == WINDOWS and key.upper() not in keys:
        conda = Path(str(keys["CONDA PATH"]))
        return [*checks, Check("interpreter", conda.is_dir(), f"Conda {keys['CONDA ENV']} in {conda}",
                               f"run  {setup}  with the Python that has crm-xl")]
    named = keys.get(key.upper())
    if not named:
        return [*checks, Check("interpreter", False, f"no {key}: Excel would start a bare python",
                               f"run  {setup}  with the Python that has crm-xl")]
    path = Path(str(named))
    if not path.is_file():
        return [*checks, Check("interpreter", False, f"{key} = {named} does not exist", f"run  {setup}")]
    same = path.parent.resolve() == Path(m.python).parent.resolve()
    return [*checks, Check("interpreter", True, f"{key} = {named}" + ("" if same else " (another environment than "
                                                                                     "this one: check it has crm-xl)"))]
