"""The workbook's xlwings.conf sheet: which Python Excel starts for Refresh and the CRM_ functions.

xlwings reads the sheet's keys from A1 down to the first blank cell, and a key on the sheet wins
over the user's own xlwings config *even when its value is blank*: a blank ``Interpreter_Win``
makes xlwings start a bare ``pythonw`` ("File not found: xlwings64-0.37.8.dll" in a venv). So the
template leaves the interpreter keys out, and :func:`set_conf` writes them with real values (from
:func:`interpreter_settings`, the Python running crm-xl) when ``crm-xl new`` or ``crm-xl
excel-setup`` runs on the Windows or Mac machine that opens the book.

Only the xlwings.conf sheet's part changes; every other part is copied byte for byte and the file
is replaced atomically.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from pathlib import Path, PurePath, PureWindowsPath

from crm_xl.errors import InputError
from crm_xl.io.files import replace_atomically
from crm_xl.io.locks import DEFAULT_WAIT
from crm_xl.workbook import layout, sheetxml
from crm_xl.workbook.guard import changing
from crm_xl.workbook.package import sheet_part_in
from crm_xl.workbook.untrusted import open_package, reading
from crm_xl.workbook.zipio import copy_with_parts

Value = str | bool
WINDOWS, MAC = "windows", "mac"
#: Keys xlwings reads for starting Python on each platform (the Conda keys serve both).
INTERPRETER_KEYS = {WINDOWS: ("Interpreter_Win", "Conda Path", "Conda Env"),
                    MAC: ("Interpreter_Mac", "Conda Path", "Conda Env")}
_ROW = re.compile(r'<row\b[^>]*?\sr="(\d+)"[^>]*?(?:/>|>.*?</row>)', re.S)


def platform_of(name: str | None = None) -> str | None:
    """``windows``, ``mac`` or None for ``name`` (default: this machine's ``sys.platform``): Excel
    with VBA runs on neither Linux nor the web."""
    return {"win32": WINDOWS, "darwin": MAC}.get(sys.platform if name is None else name)


def interpreter_settings(platform: str, executable: str | PurePath = sys.executable,
                         prefix: str | PurePath | None = None) -> dict[str, str]:
    """The xlwings.conf keys that make Excel on ``platform`` start the Python ``executable`` (of the
    environment ``prefix``: by default this Python's, or the folder holding another's bin/Scripts).

    Windows: ``pythonw.exe`` beside the interpreter (no console window) as ``Interpreter_Win``, or,
    in a Conda environment, ``Conda Path`` and ``Conda Env`` (xlwings then activates the
    environment, which Conda's DLLs need). macOS: the interpreter itself as ``Interpreter_Mac``,
    plus the Conda keys in a Conda environment.
    """
    pure = PureWindowsPath if platform == WINDOWS else PurePath
    if prefix is None:
        prefix = sys.prefix if str(executable) == sys.executable else _prefix_of(pure(str(executable)))
    conda = _conda(Path(str(prefix)))   # looked up where this runs, so in this machine's path syntax
    executable = pure(str(executable))
    if platform == WINDOWS:
        if conda:
            return conda
        return {"Interpreter_Win": str(executable.with_name("pythonw.exe"))}
    if platform == MAC:
        return {"Interpreter_Mac": str(executable), **conda}
    raise ValueError(f"platform must be {WINDOWS!r} or {MAC!r}, got {platform!r}")


def _prefix_of(executable: PurePath) -> PurePath:
    """The environment of an interpreter: venvs keep it in bin/ or Scripts/, Conda on Windows at the top."""
    folder = executable.parent
    return folder.parent if folder.name.lower() in ("bin", "scripts") else folder


def _conda(prefix: Path) -> dict[str, str]:
    """Conda Path (the installation) and Conda Env (a name, or the folder of an env elsewhere)."""
    if not (prefix / "conda-meta").is_dir():
        return {}
    if prefix.parent.name == "envs":
        return {"Conda Path": str(prefix.parent.parent), "Conda Env": prefix.name}
    if (prefix / "condabin").is_dir():
        return {"Conda Path": str(prefix), "Conda Env": "base"}
    return {"Conda Path": str(prefix), "Conda Env": str(prefix)}


def set_interpreter(path: str | Path, platform: str, executable: str | PurePath = sys.executable, *,
                    force: bool = False, wait: float = DEFAULT_WAIT) -> dict[str, str]:
    """Point the workbook's xlwings.conf at ``executable`` for Excel on ``platform``; the other
    platform's line stays (a book shared between a PC and a Mac). Returns the keys written."""
    values = interpreter_settings(platform, executable)
    set_conf(path, {**dict.fromkeys(INTERPRETER_KEYS[platform]), **values}, force=force, wait=wait)
    return values


def read_conf(path: str | Path) -> dict[str, Value]:
    """The keys xlwings reads from the sheet (A1 down to the first blank key), with their values."""
    _sheet_xml(Path(path))      # the package's checks first, and a clear message when the sheet is missing
    return {key: value for key, value, _ in _key_rows(Path(path))}


def set_conf(path: str | Path, values: Mapping[str, Value | None], *, force: bool = False,
             wait: float = DEFAULT_WAIT) -> Path:
    """Set (or, for None, remove) keys on the xlwings.conf sheet, matched ignoring case as xlwings
    does; the other keys and their notes keep their order. Keys stay contiguous from A1. Written
    under the workbook's lock, like every change to a book (:func:`crm_xl.workbook.guard.changing`)."""
    with changing(path, force=force, wait=wait) as book:
        _set_conf(book, values)
    return Path(path)


def _set_conf(path: Path, values: Mapping[str, Value | None]) -> None:
    part, xml = _sheet_xml(path)
    rows = _key_rows(path)
    wanted = {key.upper(): (key, value) for key, value in values.items()}
    merged: list[tuple[str, Value, str]] = []
    for key, value, note in rows:
        if key.upper() in wanted:
            _, new = wanted.pop(key.upper())
            if new is not None:
                merged.append((key, new, note))
        else:
            merged.append((key, value, note))
    merged += [(key, value, _NOTES.get(key, "")) for key, value in wanted.values() if value is not None]
    new_xml = _with_key_rows(xml, merged, len(rows))

    replace_atomically(path, lambda temp: copy_with_parts(path, temp, {part: new_xml.encode("utf-8")}))


_NOTES = {
    "Interpreter_Win": "pythonw.exe of the environment with crm-xl (written by crm-xl new / crm-xl excel-setup)",
    "Interpreter_Mac": "python of the environment with crm-xl (written by crm-xl new / crm-xl excel-setup)",
    "Conda Path": "the Conda installation xlwings activates the environment from",
    "Conda Env": "the Conda environment with crm-xl",
}


def _sheet_xml(path: Path) -> tuple[str, str]:
    with open_package(path) as zf, reading(path, f"sheet '{layout.XLWINGS_CONF}'"):
        part = sheet_part_in(zf, layout.XLWINGS_CONF)
        if part is None:
            raise InputError("workbook", f"{path.name} has no {layout.XLWINGS_CONF} sheet: make the workbook with "
                                         "crm-xl new, or add the sheet (xlwings' keys in A, values in B)")
        return part, zf.read(part).decode("utf-8")


def _key_rows(path: Path) -> list[tuple[str, Value, str]]:
    """(key, value, note) of rows 1, 2, ... up to the first row without a key in column A, read
    as xlwings reads them (values typed: text, TRUE/FALSE). The caller has checked the package
    (:func:`_sheet_xml`)."""
    from python_calamine import CalamineWorkbook

    with reading(path, f"sheet '{layout.XLWINGS_CONF}'"):
        book = CalamineWorkbook.from_path(str(path))
    try:
        cells = book.get_sheet_by_name(layout.XLWINGS_CONF).to_python(skip_empty_area=False)
    finally:
        book.close()
    found = []
    for row in cells[: layout.XLWINGS_CONF_NOTES_ROW - 1]:
        key, value, note = [*row, "", "", ""][:3]
        if not isinstance(key, str) or not key.strip():
            break
        found.append((key.strip(), value if isinstance(value, bool) else _text(value), _text(note)))
    return found


def _text(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return "" if value is None else str(value)


def _with_key_rows(xml: str, rows: list[tuple[str, Value, str]], old_count: int) -> str:
    """``xml`` with rows 1..n holding ``rows`` as inline cells (shared strings are left alone)."""
    if len(rows) >= layout.XLWINGS_CONF_NOTES_ROW:
        raise InputError(layout.XLWINGS_CONF, f"more than {layout.XLWINGS_CONF_NOTES_ROW - 1} keys: the notes below "
                                              "would be read as keys")
    note_style = re.search(r'<c\b[^>]*?\sr="C1"[^>]*?\ss="(\d+)"', xml)
    style = f' s="{note_style.group(1)}"' if note_style else ""
    body = "".join(_row_xml(i, key, value, note, style) for i, (key, value, note) in enumerate(rows, 1))
    start = xml.index("<sheetData")
    data_open = xml.index(">", start) + 1
    if xml[data_open - 2] == "/":          # <sheetData/>
        return xml[: start] + f"<sheetData>{body}</sheetData>" + xml[data_open:]
    data = xml[data_open: xml.index("</sheetData>")]
    kept = _ROW.sub(lambda m: "" if int(m.group(1)) <= max(old_count, len(rows)) else m.group(), data)
    return xml[:data_open] + body + kept + xml[data_open + len(data):]


def _row_xml(number: int, key: str, value: Value, note: str, note_style: str) -> str:
    cells = [_text_cell(f"A{number}", key, "")]
    if isinstance(value, bool):
        cells.append(f'<c r="B{number}" t="b"><v>{int(value)}</v></c>')
    elif value != "":
        cells.append(_text_cell(f"B{number}", str(value), ""))
    if note:
        cells.append(_text_cell(f"C{number}", note, note_style))
    return f'<row r="{number}">{"".join(cells)}</row>'


def _text_cell(ref: str, text: str, style: str) -> str:
    return f'<c r="{ref}"{style} t="inlineStr"><is>{sheetxml.text_element(text)}</is></c>'
