"""What a sheet's XML says that python-calamine does not show: error cells, formulas saved without
their values, and rows typed below a table.

Calamine reads an error cell (``#N/A``) as an empty string, stops at Excel 365's newer errors
(``#SPILL!``, ``#CALC!``, ``#GETTING_DATA`` …: "Unsupported cell error value"), and reads a formula
whose value was never calculated (``<c><f>SUM(A1:A3)</f></c>``, as tools that write files without
calculating leave them) as a blank, like a cell nobody typed in. :class:`FileBook` wraps a calamine
workbook so every table it gives holds the error text where calamine left a blank, and says which
of its cells are formulas without values and which sheet rows below it hold values.

Nothing here changes the file.
"""

from __future__ import annotations

import dataclasses
import io
import re
import zipfile
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from crm_xl.workbook.sheetxml import column_index
from crm_xl.workbook.untrusted import CalamineError
from crm_xl.workbook.zipio import ZipWriter

if TYPE_CHECKING:
    from python_calamine import CalamineWorkbook

# An error cell: <c r="B3" s="5" t="e"><f>VLOOKUP(…)</f><v>#N/A</v></c>, attributes in any order,
# the formula plain, shared (<f t="shared" si="0"/>) or an array (<f t="array" ref="B3">…</f>).
_FORMULA = rb'(?:<f\b[^>]*/>|<f\b[^>]*>[^<]*</f>)'
_ERROR_CELL = re.compile(rb'<c\b([^>]*\st="e"[^>]*)>(' + _FORMULA + rb'?<v>)([^<]*)(</v>)')
# A formula cell without a <v>: saved by a program that does not calculate.
_UNCACHED = re.compile(rb'<c\b([^>]*[^/>])>' + _FORMULA + rb'</c>')
_REF = re.compile(rb'\sr="([A-Z]{1,3})(\d+)"')
_ROW_NUMBER = re.compile(rb'<row\b[^>]*?\sr="(\d+)"')
_CELL = re.compile(rb'<c\b([^>]*?)(?:/>|>(.*?)</c>)', re.S)
_HAS_VALUE = re.compile(rb'<(?:v|t)\b[^>]*>[^<]')
_UNSUPPORTED = "error value"    # calamine: "Unsupported cell error value '#SPILL!'"


@dataclasses.dataclass(frozen=True)
class SheetScan:
    """One sheet's cells that calamine does not show as they are: (sheet row 1-based, column 0-based)."""

    errors: dict[tuple[int, int], str]
    uncached: tuple[tuple[int, int], ...]
    xml: bytes

    def rows_below(self, last_row: int, first_col: int, last_col: int) -> list[int]:
        """Sheet rows after ``last_row`` with a value in columns ``first_col`` .. ``last_col``.

        Read from the end of the sheet data, so a sheet whose last row is the table's costs nothing.
        """
        xml = self.xml
        pos = xml.rfind(b"</sheetData>")
        found: list[int] = []
        while pos > 0:
            start = xml.rfind(b"<row", 0, pos)
            number = _ROW_NUMBER.match(xml, start) if start >= 0 else None
            if number is None or int(number.group(1)) <= last_row:
                break
            if any(_in_columns(cell.group(1), first_col, last_col) and _HAS_VALUE.search(cell.group(2) or b"")
                   for cell in _CELL.finditer(xml, number.end(), pos)):
                found.append(int(number.group(1)))
            pos = start
        return found[::-1]


def _in_columns(attributes: bytes, first_col: int, last_col: int) -> bool:
    ref = _REF.search(b" " + attributes)
    return ref is not None and first_col <= column_index(ref.group(1).decode()) <= last_col


def scan_sheet(xml: bytes) -> SheetScan:
    """The error cells and the formulas without values of a sheet's XML."""
    errors: dict[tuple[int, int], str] = {}
    if b't="e"' in xml:
        for match in _ERROR_CELL.finditer(xml):
            ref = _REF.search(b" " + match.group(1))
            if ref:
                errors[int(ref.group(2)), column_index(ref.group(1).decode())] = match.group(3).decode() or "#ERROR"
    uncached: list[tuple[int, int]] = []
    if b"<f" in xml:
        for match in _UNCACHED.finditer(xml):
            ref = _REF.search(b" " + match.group(1))
            if ref:
                uncached.append((int(ref.group(2)), column_index(ref.group(1).decode())))
    return SheetScan(errors, tuple(uncached), xml)


@dataclasses.dataclass(frozen=True)
class FileTable:
    """An Excel table as :class:`FileBook` gives it, shaped like python-calamine's table (``name``,
    ``sheet``, ``columns``, ``start`` = the first data cell 0-based, ``to_python()``), with error
    text in its cells, ``uncached``: (data row, column) positions of formulas without values, and
    ``rows_below``: sheet rows under the table that hold values."""

    name: str
    sheet: str
    columns: list[str]
    start: tuple[int, int]
    rows: list[list[Any]]
    uncached: tuple[tuple[int, int], ...]
    rows_below: tuple[int, ...]

    def to_python(self) -> list[list[Any]]:
        return self.rows


class FileBook:
    """A calamine workbook whose tables are found by name ignoring case (as Excel names them) and
    read with the sheet XML's help (see the module docstring). Close it when done."""

    def __init__(self, book: CalamineWorkbook, path: Path) -> None:
        self._book, self._path = book, path
        self._readable: CalamineWorkbook | None = None
        self.sheet_names: list[str] = list(book.sheet_names)
        self.table_names: list[str] = list(book.table_names)

    def get_table_by_name(self, name: str) -> FileTable:
        actual = table_name(self, name)
        if actual is None:
            raise KeyError(name)
        try:
            found = self._book.get_table_by_name(actual)
            rows = found.to_python()
        except CalamineError as exc:
            if _UNSUPPORTED not in str(exc):
                raise
            found = self._readable_book().get_table_by_name(actual)
            rows = found.to_python()
        # read per table, not kept: a Raw sheet's XML can be hundreds of MB
        scan = scan_sheet(sheet_xml(self._path, found.sheet) or b"")
        start_row, start_col = found.start
        width = len(found.columns)
        first = start_row + 1                      # the first data row, 1-based
        uncached = []
        for (row, col), text in scan.errors.items():
            i, j = row - first, col - start_col
            if 0 <= i < len(rows) and 0 <= j < width:
                rows[i][j] = text
        for row, col in scan.uncached:
            i, j = row - first, col - start_col
            if 0 <= i < len(rows) and 0 <= j < width:
                uncached.append((i, j))
        below = scan.rows_below(start_row + len(rows), start_col, start_col + width - 1)
        return FileTable(actual, found.sheet, [str(c) for c in found.columns], found.start, rows, tuple(uncached),
                         tuple(below))

    def close(self) -> None:
        for book in (self._book, self._readable):
            if book is not None:
                book.close()

    def _readable_book(self) -> CalamineWorkbook:
        """The workbook with every error cell's text made #N/A, in memory: calamine reads that one,
        and the true text is put back from the file's own XML."""
        from python_calamine import CalamineWorkbook

        if self._readable is None:
            buffer = io.BytesIO()
            with zipfile.ZipFile(self._path) as package, open(self._path, "rb") as raw:
                writer = ZipWriter(buffer)
                for info in package.infolist():
                    data = package.read(info) if info.filename.startswith("xl/worksheets/") else b""
                    if b't="e"' in data:
                        writer.write_stream(info.filename, [_ERROR_CELL.sub(rb"<c\1>\2#N/A\4", data)], level=1)
                    else:
                        writer.copy_raw(raw, info)
                writer.close()
            buffer.seek(0)
            self._readable = CalamineWorkbook.from_filelike(buffer, load_tables=True)
        return self._readable


def table_name(book: Any, name: str) -> str | None:
    """The name ``book`` gives the table called ``name``, ignoring case as Excel does; None if absent."""
    wanted = name.lower()
    return next((actual for actual in book.table_names if actual.lower() == wanted), None)


def sheet_xml(path: Path, sheet: str) -> bytes | None:
    """The XML part of a sheet, found through workbook.xml and its relationships."""
    with zipfile.ZipFile(path) as package:
        workbook = package.read("xl/workbook.xml")
        rels = package.read("xl/_rels/workbook.xml.rels")
        escaped = re.escape(_xml_escape(sheet).encode())
        found = re.search(rb'<sheet [^>]*name="' + escaped + rb'"[^>]*r:id="([^"]+)"', workbook)
        if not found:
            return None
        target = re.search(rb'<Relationship [^>]*Id="' + re.escape(found.group(1)) + rb'"[^>]*Target="([^"]+)"', rels) \
            or re.search(rb'<Relationship [^>]*Target="([^"]+)"[^>]*Id="' + re.escape(found.group(1)) + rb'"', rels)
        if not target:
            return None
        part = target.group(1).decode().lstrip("/")
        part = part if part.startswith("xl/") else str(PurePosixPath("xl") / part)
        return package.read(part)


def _xml_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
