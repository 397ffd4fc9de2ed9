"""A workbook is untrusted input: what is checked before any reader opens one, and the one-line error
for a damaged one.

A downloaded workbook can be built to hurt the reader: one value in cell XFD1048576 makes
python-calamine allocate the whole 17-billion-cell grid (the process aborts, no exception to catch),
a 3 MB zip can expand to gigabytes, an XML part can declare entities that expand a billion times.
So before calamine or an XML parser reads a part:

* the file itself: an encrypted workbook (an OLE2 container holding ``EncryptionInfo``) or an
  Excel 97-2003 ``.xls`` is named as such; anything else that is not a zip is not a workbook;
* the zip's central directory: at most :data:`MAX_PARTS` parts, none encrypted or compressed by a
  method Excel does not use, each at most :data:`MAX_PART_BYTES` and expanding at most
  :data:`MAX_RATIO` times (past :data:`RATIO_GRACE_BYTES`), all together at most
  :data:`MAX_PACKAGE_BYTES`. Declared sizes can be trusted as bounds: both Python's zipfile and
  calamine's zip reader stop a part that inflates past its declared size;
* every XML part: no ``<!DOCTYPE>`` (OPC forbids DTDs, so no workbook has one; refusing them is
  what makes entity expansion and external entities impossible for every parser);
* each sheet calamine will read: the cells it would allocate (the rectangle from A1 to the last
  cell holding a value) at most :data:`MAX_CELLS`. The check is one regex pass when every cell lies
  inside the sheet's declared ``<dimension>`` (Excel, LibreOffice and crm_xl always write it); a
  sheet without one, or with a cell outside it, is measured cell by cell.

A workbook's Config can name raw files (``transactions_file``, ...): :func:`file_named_on_config`
reads them only from the workbook's folder or below, or from folders the *user* allowed (the
command line, :data:`ALLOW_ENV`), never a network path unless its share was allowed itself.

:func:`reading` turns the exceptions a damaged package raises (zip, zlib, XML, calamine, a part
that is not UTF-8) into one :class:`~crm_xl.errors.InputError` naming the workbook and the part;
any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import codecs
import ntpath
import os
import re
import struct
import xml.etree.ElementTree as ET
import zipfile
import zlib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

try:
    from python_calamine import CalamineError
except ImportError:     # Pyodide (xlwings Lite) has no calamine wheel: there xlwings reads the open workbook
    class CalamineError(Exception):  # type: ignore[no-redef]
        """Stands in for python-calamine's error where calamine is not installed (never raised)."""

from crm_xl.errors import InputError
from crm_xl.workbook.zipio import WorkbookPackageError

MAX_PARTS = 10_000
MAX_PART_BYTES = 4 * 2**30
MAX_PACKAGE_BYTES = 16 * 2**30
MAX_RATIO = 100             # Apache POI's zip-bomb default (MIN_INFLATE_RATIO = 0.01)
RATIO_GRACE_BYTES = 2**20   # small parts (a blank styles.xml) may compress better than that
MAX_ROWS = 1_048_576        # Excel's grid
MAX_COLS = 16_384
MAX_CELLS = 100_000_000     # a full Raw sheet of 1,048,575 rows is ~95 columns
BYTES_PER_CELL = 32         # what calamine holds per cell of the rectangle it reads
CFB_MAGIC = bytes.fromhex("D0CF11E0A1B11AE1")   # OLE2 compound file: encrypted OOXML or an old .xls

#: What a damaged package raises from zipfile, zlib, the XML parser or calamine.
DAMAGED: tuple[type[BaseException], ...] = (
    zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, struct.error, ET.ParseError,
    UnicodeDecodeError, CalamineError)

_CHUNK = 16 * 2**20
_MAX_TAG_BYTES = 64 * 2**20     # Excel's longest cell text is 32,767 characters
_PROLOG_BYTES = 64 * 1024
_ENCRYPTION_INFO = "EncryptionInfo".encode("utf-16-le")   # a stream name in the container's directory
_XML_SUFFIXES = (".xml", ".rels")
_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)


def printable(text: str, limit: int = 200) -> str:
    """``text`` from a file (a part name, a parser's message) fit for a one-line message: control and
    other unprintable characters escaped (``\\x0a``), whitespace runs as one space, at most ``limit``
    characters."""
    text = "".join(ch if ch.isprintable() else (" " if ch.isspace() else f"\\x{ord(ch):02x}") for ch in text)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _mb(n: int) -> str:
    return f"{n / 2**20:,.0f} MB" if n < 2**30 else f"{n / 2**30:,.1f} GB"


# --- the file ------------------------------------------------------------------------------------


def check_file(path: Path) -> None:
    """:class:`InputError` unless ``path`` is a zip: missing, encrypted, an old ``.xls``, or not a workbook."""
    if not path.is_file():
        raise InputError("workbook", f"file not found: {path}")
    with path.open("rb") as handle:
        if handle.read(len(CFB_MAGIC)) == CFB_MAGIC:
            raise _container_error(path, handle)
    if not zipfile.is_zipfile(path):
        raise InputError("workbook", f"{path.name} is not an Excel workbook (.xlsm or .xlsx)")


def _container_error(path: Path, handle: BinaryIO) -> InputError:
    if _holds(handle, _ENCRYPTION_INFO):
        return InputError("workbook", f"{path.name} is encrypted (protected with a password to open), so it "
                                      "cannot be read: in Excel, File > Info > Protect Workbook > Encrypt with "
                                      "Password, delete the password, OK, then save the workbook")
    return InputError("workbook", f"{path.name} is an Excel 97-2003 workbook (.xls), not .xlsm or .xlsx: open it "
                                  "in Excel and save it as an Excel Macro-Enabled Workbook (.xlsm)")


def _holds(handle: BinaryIO, needle: bytes) -> bool:
    """Whether the rest of the open file contains ``needle`` (read a chunk at a time)."""
    tail = b""
    while chunk := handle.read(_CHUNK):
        if needle in tail + chunk:
            return True
        tail = chunk[-len(needle):]
    return False


@contextmanager
def open_package(path: Path) -> Iterator[zipfile.ZipFile]:
    """The workbook's zip, opened once its file, central directory and XML prologs passed the checks
    above; an :class:`InputError` names what was refused or found damaged. What the caller's block
    raises is left as it is (wrap it in :func:`reading`)."""
    check_file(path)
    try:
        with reading(path):
            zf = zipfile.ZipFile(path)
    except NotImplementedError as exc:     # zipfile's word for a version or feature a workbook never uses
        raise damaged(path, exc) from None
    try:
        check_parts(zf, path)
        yield zf
    finally:
        zf.close()


def check_parts(zf: zipfile.ZipFile, path: Path) -> None:
    """The central directory's limits and every XML part's prolog (no DTD)."""
    infos = zf.infolist()
    if len(infos) > MAX_PARTS:
        raise _refused(path, f"it has {len(infos):,} parts (the limit is {MAX_PARTS:,})")
    total, size = 0, path.stat().st_size
    for info in infos:
        _check_member(path, info, size)
        total += info.file_size
    if total > MAX_PACKAGE_BYTES:
        raise _refused(path, f"its parts expand to {_mb(total)} (the limit is {_mb(MAX_PACKAGE_BYTES)})")
    for info in infos:
        if info.filename.lower().endswith(_XML_SUFFIXES):
            try:
                with reading(path, f"part {info.filename}"), zf.open(info) as stream:
                    head = stream.read(_PROLOG_BYTES)
            except NotImplementedError as exc:      # a local header claiming a zip feature Excel never writes
                raise damaged(path, exc, f"part {info.filename}") from None
            try:
                check_prolog(head, printable(info.filename), complete=info.file_size <= _PROLOG_BYTES)
            except WorkbookPackageError as exc:
                raise InputError("workbook", f"{path.name}: {exc}") from None


def _check_member(path: Path, info: zipfile.ZipInfo, size: int) -> None:
    name = printable(info.filename)
    if not 0 <= info.header_offset < size or info.compress_size > size:
        raise damaged(path, WorkbookPackageError("the zip directory points outside the file"), f"part {name}")
    if info.flag_bits & 0x1:
        raise _refused(path, f"its part {name} is zip-encrypted (Excel never does that)")
    if info.compress_type not in _METHODS:
        raise _refused(path, f"its part {name} uses zip compression method {info.compress_type}, which Excel "
                             "never uses")
    if info.file_size > MAX_PART_BYTES:
        raise _refused(path, f"its part {name} expands to {_mb(info.file_size)} (the limit is "
                             f"{_mb(MAX_PART_BYTES)} a part)")
    ratio = info.file_size / max(info.compress_size, 1)
    if info.file_size > RATIO_GRACE_BYTES and ratio > MAX_RATIO:
        raise _refused(path, f"its part {name} expands {ratio:,.0f} times ({_mb(info.compress_size)} to "
                             f"{_mb(info.file_size)}; the limit is {MAX_RATIO} times): a zip bomb, or a damaged file")


def _refused(path: Path, why: str) -> InputError:
    return InputError("workbook", f"{path.name} is refused: {why}; if it is a real workbook, open it in Excel and "
                                  "save it again")


# --- XML -----------------------------------------------------------------------------------------

_PROLOG_RE = re.compile(rb"\A(?:\s+|<\?.*?\?>|<!--.*?-->)*<(?P<bang>!?)", re.S)


def check_prolog(head: bytes, part: str, *, complete: bool = False) -> None:
    """Refuse a DTD (``<!DOCTYPE``, where entities are declared) before the root element of ``part``.

    ``head`` is the part's first bytes (``complete``: all of it). Only the prolog can hold a DTD.
    """
    text = _as_utf8(head)
    found = _PROLOG_RE.match(text)
    if found is not None and not found.group("bang"):
        return
    if found is not None or b"<!DOCTYPE" in text.upper() or b"<!ENTITY" in text.upper():
        raise WorkbookPackageError(f"part {part} declares a DTD (<!DOCTYPE ...>): workbook parts never do, "
                                   "and a DTD can expand entities without bound; refused")
    if not complete:
        raise WorkbookPackageError(f"part {part} has no XML element in its first {len(head):,} bytes; refused")


def _as_utf8(head: bytes) -> bytes:
    """The prolog as UTF-8 bytes: OOXML parts may be UTF-16 (with a byte-order mark)."""
    for bom, encoding in ((codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be")):
        if head.startswith(bom):
            body = head[len(bom):]
            return body[:len(body) // 2 * 2].decode(encoding, errors="replace").encode()
    return head.removeprefix(codecs.BOM_UTF8)


def parse_xml(data: bytes, part: str) -> ET.Element:
    """The root element of an XML part, parsed only when it declares no DTD; a
    :class:`WorkbookPackageError` names the part when it is not well-formed."""
    check_prolog(data[:_PROLOG_BYTES], part, complete=len(data) <= _PROLOG_BYTES)
    try:
        return ET.fromstring(data)
    except ET.ParseError as exc:
        raise WorkbookPackageError(f"part {part} is not well-formed XML ({exc})") from None


# --- damaged parts -------------------------------------------------------------------------------


@contextmanager
def reading(path: Path, part: str | None = None) -> Iterator[None]:
    """Turn what a damaged workbook raises while ``part`` (``"part xl/..."``, ``"sheet 'Config'"``; or the
    package) is read into one :class:`InputError` naming the workbook and the part."""
    try:
        yield
    except DAMAGED as exc:
        raise damaged(path, exc, part) from None


def damaged(path: Path, exc: BaseException, part: str | None = None) -> InputError:
    """The error for a workbook that cannot be read because it is damaged."""
    where = f" ({printable(part)})" if part else ""
    detail = printable(str(exc)) or type(exc).__name__
    return InputError("workbook", f"{path.name} is damaged and cannot be read{where}: {detail}; open it in Excel "
                                  "(which can often repair it) and save it again, or use a backup copy")


# --- the cells a reader would allocate -----------------------------------------------------------

_DIMENSION_RE = re.compile(rb'<(?:\w+:)?dimension\b[^>]*?\sref="([^"]*)"')
_SHEET_DATA_RE = re.compile(rb"<(?:\w+:)?sheetData\b")
_REF_RE = re.compile(r"^\$?([A-Z]{1,3})\$?([1-9][0-9]{0,6})$")
_TAG_RE = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?(row|c)(?=[\s/>])([^>]*)>")
_R_ATTR_RE = re.compile(rb"""\sr\s*=\s*["']([A-Za-z]*)([0-9]*)["']""")
_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_PREFIXED_CELL = re.compile(rb":c[\s/>]")   # <x:c ...>: found by its literal start, fast


def check_sheets(zf: zipfile.ZipFile, path: Path, sheets: Mapping[str, str]) -> None:
    """Refuse a sheet (part -> sheet name) whose cells would make the reader allocate more than
    :data:`MAX_CELLS` cells, or that places a cell outside Excel's grid."""
    for part, sheet in sheets.items():
        if part not in zf.NameToInfo:
            continue    # the reader reports the missing part
        with reading(path, f"sheet '{sheet}', part {part}"):
            try:
                rows, cols = _cells_read(zf, part)
            except WorkbookPackageError as exc:
                raise InputError("workbook", f"{path.name}: {exc}") from None
        if rows > MAX_ROWS or cols > MAX_COLS:
            raise InputError("workbook", f"{path.name}: sheet '{sheet}' ({part}) has a cell outside Excel's grid "
                                         f"({MAX_ROWS:,} rows x {MAX_COLS:,} columns): the file is damaged or made "
                                         "by a tool that is not Excel; refused")
        if rows * cols > MAX_CELLS:
            raise InputError("workbook", f"{path.name}: sheet '{sheet}' ({part}) uses {rows:,} rows x {cols:,} "
                                         f"columns up to its last cell {_letter(cols)}{rows}: reading it would take "
                                         f"{rows * cols:,} cells, over the limit of {MAX_CELLS:,} cells (about "
                                         f"{_mb(MAX_CELLS * BYTES_PER_CELL)} of memory); delete the stray cells "
                                         "right of and below the table (Ctrl+End shows the last one) and save")


def _letter(cols: int) -> str:
    letters = ""
    while cols:
        cols, rem = divmod(cols - 1, 26)
        letters = _LETTERS[rem] + letters
    return letters


def _column_number(letters: bytes | str) -> int:
    number = 0
    for ch in letters.upper() if isinstance(letters, str) else letters.decode().upper():
        number = number * 26 + ord(ch) - 64
    return number


def _chunks(zf: zipfile.ZipFile, part: str) -> Iterator[bytes]:
    """The part's bytes in pieces that never cut a tag: each ends just before a ``<``."""
    carry = b""
    with zf.open(part) as stream:
        while chunk := stream.read(_CHUNK):
            data = carry + chunk
            cut = data.rfind(b"<")
            if cut < 0:         # text or whitespace only: no tag starts in it
                carry = b""
                continue
            if cut == 0:        # one tag or text run longer than a chunk: never in a real sheet
                if len(data) > _MAX_TAG_BYTES:
                    raise WorkbookPackageError(f"part {part} holds a tag or text of more than "
                                               f"{_mb(_MAX_TAG_BYTES)}; refused")
                carry = data
                continue
            carry = data[cut:]
            yield data[:cut]
    if carry:
        yield carry


def _cells_read(zf: zipfile.ZipFile, part: str) -> tuple[int, int]:
    """(rows, columns) from A1 to the farthest cell holding a value, as a bound of what calamine allocates."""
    bound = _declared_bound(zf, part)
    if bound is not None and bound[0] <= MAX_ROWS and bound[1] <= MAX_COLS and bound[0] * bound[1] <= MAX_CELLS \
            and _inside(zf, part, *bound):
        return bound
    return _measured(zf, part)


def _declared_bound(zf: zipfile.ZipFile, part: str) -> tuple[int, int] | None:
    """(last row, last column) of the sheet's ``<dimension>``, read before ``<sheetData>``; None without one."""
    for chunk in _chunks(zf, part):
        found = _DIMENSION_RE.search(chunk)
        if found:
            last = found.group(1).decode("ascii", "replace").split(":")[-1]
            ref = _REF_RE.match(last.upper())
            return (int(ref.group(2)), _column_number(ref.group(1))) if ref else None
        if _SHEET_DATA_RE.search(chunk):
            return None
    return None


def _inside(zf: zipfile.ZipFile, part: str, rows: int, cols: int) -> bool:
    """Whether every cell tag names itself first (``<c r="B7"``) within the first ``rows`` x ``cols``:
    one regex search a chunk, no Python per cell. A namespace prefix (``<x:c``) is rare enough to be
    left to the cell-by-cell measure (the regex is twice as fast with a literal start)."""
    outside = re.compile(rb"<c[\s/>](?!r=\"" + _at_most(_letter(cols), _LETTERS, _LETTERS)
                         + _at_most(str(rows), "0123456789", "123456789") + rb"\")")
    return not any(_PREFIXED_CELL.search(chunk) or outside.search(chunk) for chunk in _chunks(zf, part))


def _at_most(limit: str, alphabet: str, first: str) -> bytes:
    """A regex for the strings over ``alphabet`` (first character from ``first``, in alphabet order) that
    are at most ``limit``: shorter ones, or as long and not after it."""
    def chars(allowed: str, below: str) -> str:
        return "".join(c for c in allowed if c < below)

    options = []
    if len(limit) > 1:
        options.append(f"[{first}][{alphabet}]{{0,{len(limit) - 2}}}")
    for i, ch in enumerate(limit):
        lower = chars(first if i == 0 else alphabet, ch)
        if lower:
            options.append(f"{limit[:i]}[{lower}][{alphabet}]{{{len(limit) - i - 1}}}")
    options.append(limit)
    return f"(?:{'|'.join(options)})".encode()


def _measured(zf: zipfile.ZipFile, part: str) -> tuple[int, int]:
    """(rows, columns) up to the farthest value cell, walking every row and cell tag (cells without an
    ``r`` follow the previous one, as readers place them); stops early once over the limits."""
    row = rows = cols = 0
    col = 0
    for chunk in _chunks(zf, part):
        for tag in _TAG_RE.finditer(chunk):
            ref = _R_ATTR_RE.search(tag.group(2))
            if tag.group(1) == b"row":
                row = int(ref.group(2)) if ref and ref.group(2) else row + 1
                col = 0
                continue
            col = _column_number(ref.group(1)) if ref and ref.group(1) else col + 1
            cell_row = int(ref.group(2)) if ref and ref.group(2) else row
            if not tag.group(2).endswith(b"/"):     # an empty styled cell <c r="X9" s="1"/> holds nothing
                rows, cols = max(rows, cell_row), max(cols, col)
                if rows > MAX_ROWS or cols > MAX_COLS or rows * cols > MAX_CELLS:
                    return rows, cols
    return rows, cols


# --- files named on Config -----------------------------------------------------------------------

#: Folders (separated by os.pathsep) from which Config may name files, besides the workbook's own;
#: for the Refresh button, which has no command line. Set by the user, never by a workbook.
ALLOW_ENV = "CRM_XL_ALLOW_FILES_FROM"


def allowed_folders(extra: Sequence[str | Path] = ()) -> list[str]:
    """The folders given with ``--allow-files-from`` (``extra``) and in :data:`ALLOW_ENV`."""
    from_env = [p.strip() for p in os.environ.get(ALLOW_ENV, "").split(os.pathsep) if p.strip()]
    return [*(str(p) for p in extra), *from_env]


def is_unc(text: str) -> bool:
    """``\\\\server\\share``, ``//server/share`` and Windows device paths (``\\\\?\\``): reading one makes
    Windows sign in to the server with the user's credentials (their NTLM hash goes to whoever runs it)."""
    return len(text) >= 2 and text[0] in "\\/" and text[1] in "\\/"


def _unc_under(path: str, root: str) -> bool:
    def norm(text: str) -> str:
        return ntpath.normpath(text.replace("/", "\\")).rstrip("\\").casefold()

    return norm(path) == norm(root) or norm(path).startswith(norm(root) + "\\")


def file_named_on_config(folder: Path, source: str, table: str, cell: str, key: str,
                         allowed: Sequence[str | Path] = ()) -> Path:
    """The file a ``*_file`` setting names, when it may be read: in the workbook's ``folder`` or below
    (after following symbolic links), or in a folder the user allowed (:func:`allowed_folders`); a
    network (UNC) path only when its share was allowed itself. Otherwise an :class:`InputError`
    naming the cell. Nothing is read, and no network path is touched, before the check."""
    text = source.strip()
    roots = allowed_folders(allowed)
    shown = f"{cell} ({key} = {printable(text, 120)!r})"
    unc_roots = [r for r in roots if is_unc(r)] + ([str(folder)] if is_unc(str(folder)) else [])
    if is_unc(text):
        if any(_unc_under(text, root) for root in unc_roots):
            return Path(text)
        raise InputError(table, f"{shown} is a network path (UNC): refused, because opening one sends your "
                                "Windows credentials to that server; copy the file into the workbook's folder, "
                                f"or allow that share explicitly with --allow-files-from \\\\server\\share (or "
                                f"{ALLOW_ENV})")
    path = Path(text).expanduser()
    resolved = (path if path.is_absolute() else folder / path).resolve()
    if is_unc(str(resolved)):
        if any(_unc_under(str(resolved), root) for root in unc_roots):
            return resolved
        raise InputError(table, f"{shown} leads to a network path (UNC): refused; copy the file into the "
                                "workbook's folder")
    local = [folder.resolve(), *(Path(r).expanduser().resolve() for r in roots if not is_unc(r))]
    if any(resolved.is_relative_to(root) for root in local):
        return resolved
    raise InputError(table, f"{shown} is outside the workbook's folder ({folder.resolve()}): crm-xl reads only "
                            "files in the workbook's folder or below, so that a workbook from someone else cannot "
                            "read your other files; move the file there, or allow its folder with "
                            f"crm-xl refresh --allow-files-from DIR (or the environment variable {ALLOW_ENV})")
