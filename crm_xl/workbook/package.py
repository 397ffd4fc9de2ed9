"""Rewrite Excel tables inside an existing .xlsx/.xlsm package, leaving every other part byte-identical.

Why a zip-level rewrite: a refresh must keep the user's VBA project, buttons, raw sheets, drawings
and pivot parts exactly as they are, and must be fast for a million rows. Loading the workbook
into openpyxl (or similar) and saving it re-serialises everything and loses what it does not
model. Here only these parts change:

* the sheet holding each rewritten table: everything before and after ``<sheetData>`` is kept
  (columns, views and frozen panes, conditional formats, validations, table and drawing links),
  rows above the table are kept verbatim, ``<sheetData>`` is regenerated from the DataFrame with
  :mod:`crm_xl.workbook.sheetxml`, ``<dimension>`` and the conditional-format / validation ranges
  that ended on the table's old last row are moved to the new one;
* the table part: ``ref``, ``autoFilter ref`` (and ``tableColumns`` when allowed);
* charts whose series read a rewritten range: the end row moves, cached values are dropped
  (Excel and LibreOffice recompute them on open);
* ``xl/styles.xml`` only when a style was given as a number-format code that has no cell format yet;
* ``xl/calcChain.xml`` is dropped (with its relationship and content type): it lists formula
  cells, and stale entries make Excel "repair" the file.

Every other entry is copied with its original compressed bytes, CRC and timestamp. New entries
get a fixed timestamp, and entries keep the source order, so the same inputs give the same bytes.
The result goes to a temporary file next to ``dst`` that replaces ``dst`` only after the whole
write succeeded (:func:`write_rewritten` writes it without the replacement, for callers that
replace the workbook themselves).
"""

from __future__ import annotations

import posixpath
import re
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from html import unescape
from pathlib import Path
from typing import BinaryIO
from xml.sax.saxutils import escape, quoteattr

import pandas as pd

from crm_xl.io.files import replace_atomically
from crm_xl.workbook import sheetxml
from crm_xl.workbook.sheetxml import Block
from crm_xl.workbook.untrusted import open_package, parse_xml, reading
from crm_xl.workbook.zipio import WorkbookPackageError, ZipWriter

__all__ = [
    "RewriteReport",
    "TableColumnsError",
    "TableInfo",
    "TableRewrite",
    "WorkbookPackageError",
    "ZipWriter",
    "find_tables",
    "find_tables_in",
    "read_styles",
    "rewrite_tables",
    "sheet_part_in",
    "write_rewritten",
]

NS_REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
NS_PKG_REL = "http://schemas.openxmlformats.org/package/2006/relationships"
REL_WORKSHEET = NS_REL + "/worksheet"
REL_TABLE = NS_REL + "/table"
REL_STYLES = NS_REL + "/styles"
REL_CALC_CHAIN = NS_REL + "/calcChain"
_NS = {"m": sheetxml.NS_MAIN, "r": NS_REL, "pr": NS_PKG_REL}

StyleSpec = int | str  # a cellXfs index, or a number format code resolved through styles.xml


class TableColumnsError(WorkbookPackageError):
    """A DataFrame's columns differ from the columns of the Excel table it should fill."""


# --- package structure ------------------------------------------------------------------------------


def _rels_path(part: str) -> str:
    folder, name = posixpath.split(part)
    return posixpath.join(folder, "_rels", name + ".rels")


def _require_part(zf: zipfile.ZipFile, part: str) -> None:
    if part not in zf.NameToInfo:
        raise WorkbookPackageError(f"the workbook has no part {part} (it is named in the package but missing)")


def _read_part(zf: zipfile.ZipFile, part: str) -> bytes:
    """A part's bytes; a :class:`WorkbookPackageError` when the package lacks it (a damaged file)."""
    _require_part(zf, part)
    with reading(Path(str(zf.filename)), f"part {part}"):
        return zf.read(part)


def _read_text(zf: zipfile.ZipFile, part: str) -> str:
    with reading(Path(str(zf.filename)), f"part {part}"):
        return _read_part(zf, part).decode("utf-8")


def _xml(zf: zipfile.ZipFile, part: str) -> ET.Element:
    return parse_xml(_read_part(zf, part), part)


def _relationships(zf: zipfile.ZipFile, part: str) -> list[tuple[str, str, str]]:
    """(Id, Type, target part) of a part's relationships; external targets are skipped."""
    rels = _rels_path(part)
    if rels not in zf.NameToInfo:
        return []
    out = []
    for rel in _xml(zf, rels).iterfind("pr:Relationship", _NS):
        if rel.get("TargetMode") == "External":
            continue
        target = rel.get("Target", "")
        path = target.lstrip("/") if target.startswith("/") else posixpath.normpath(
            posixpath.join(posixpath.dirname(part), target))
        out.append((rel.get("Id", ""), rel.get("Type", ""), path))
    return out


@dataclass(frozen=True)
class TableInfo:
    """Where an Excel table lives in the package."""

    name: str
    sheet: str
    sheet_part: str
    table_part: str
    ref: str
    columns: tuple[str, ...]
    tables_on_sheet: int


def find_tables(path: Path | str) -> dict[str, TableInfo]:
    """Every table of the workbook by name (workbook.xml -> sheet rels -> xl/tables/*.xml), keyed in
    lower case (table names are case-insensitive in Excel)."""
    with open_package(Path(path)) as zf:
        return find_tables_in(zf)


def sheet_part_in(zf: zipfile.ZipFile, sheet: str) -> str | None:
    """The part of the worksheet named ``sheet`` (ignoring case, as Excel does) in an open package, or None."""
    return next((part for name, part in _worksheets(zf) if name.lower() == sheet.lower()), None)


def _worksheets(zf: zipfile.ZipFile) -> Iterator[tuple[str, str]]:
    """(sheet name, part) of every worksheet, in workbook order (chart and macro sheets left out)."""
    wb_part = _workbook_part(zf)
    sheet_rels = {rid: target for rid, typ, target in _relationships(zf, wb_part) if typ == REL_WORKSHEET}
    for sheet in _xml(zf, wb_part).iterfind("m:sheets/m:sheet", _NS):
        part = sheet_rels.get(sheet.get(f"{{{NS_REL}}}id", ""))
        if part is not None:
            yield sheet.get("name", ""), part


def _workbook_part(zf: zipfile.ZipFile) -> str:
    for _, typ, target in _relationships(zf, ""):
        if typ.endswith("/officeDocument"):
            return target
    return "xl/workbook.xml"


def find_tables_in(zf: zipfile.ZipFile) -> dict[str, TableInfo]:
    """:func:`find_tables` of an open package."""
    tables: dict[str, TableInfo] = {}
    for sheet_name, part in _worksheets(zf):
        table_parts = [t for _, typ, t in _relationships(zf, part) if typ == REL_TABLE]
        for tpart in table_parts:
            root = _xml(zf, tpart)
            columns = tuple(sheetxml.ooxml_unescape(c.get("name", ""))
                            for c in root.iterfind("m:tableColumns/m:tableColumn", _NS))
            name = root.get("displayName") or root.get("name", "")
            tables[name.lower()] = TableInfo(name, sheet_name, part, tpart, root.get("ref", ""), columns,
                                             len(table_parts))
    return tables


# --- styles -------------------------------------------------------------------------------------------


def _styles_part(zf: zipfile.ZipFile) -> str | None:
    return next((t for _, typ, t in _relationships(zf, _workbook_part(zf)) if typ == REL_STYLES), None)


def read_styles(path: Path | str) -> bytes:
    """The workbook's styles.xml, for :func:`sheetxml.find_number_format_xf` and friends."""
    with open_package(Path(path)) as zf:
        part = _styles_part(zf)
        if part is None:
            raise WorkbookPackageError(f"{path}: the workbook has no styles part")
        return _read_part(zf, part)


def _resolve_styles(requested: Mapping[str, Mapping[str, StyleSpec]], styles_xml: bytes | None
                    ) -> tuple[dict[str, dict[str, int]], bytes | None]:
    """Column styles as cellXfs indexes, and the new styles.xml if a format had to be added."""
    changed = False
    resolved: dict[str, dict[str, int]] = {}
    for table, columns in requested.items():
        out: dict[str, int] = {}
        for column, spec in columns.items():
            if isinstance(spec, str):
                if styles_xml is None:
                    raise WorkbookPackageError("the workbook has no styles.xml to look number formats up in")
                new_xml, out[column] = sheetxml.add_number_format_xf(styles_xml, spec)
                changed = changed or new_xml != styles_xml
                styles_xml = new_xml
            else:
                out[column] = int(spec)
        resolved[table.lower()] = out
    if styles_xml is not None:
        count = len(sheetxml.cell_xfs(styles_xml))
        bad = {f"{t}.{c}": i for t, cols in resolved.items() for c, i in cols.items() if not 0 <= i < count}
        if bad:
            raise WorkbookPackageError(f"style indexes outside the workbook's {count} cell formats: {bad}")
    return resolved, styles_xml if changed else None


# --- sheet part ---------------------------------------------------------------------------------------

_ROW_NUM_RE = re.compile(rb'<row\b[^>]*?\sr="(\d+)"')
_CELL_TAG_RE = re.compile(rb"<c\b([^>]*)>")
_ATTR_R_RE = re.compile(rb'\sr="([A-Z]+)(\d+)"')
_ATTR_S_RE = re.compile(rb'\ss="(\d+)"')


@dataclass
class _OldSheet:
    """The parts of an old sheet XML the rewrite keeps or reads (sheetData itself is skipped)."""

    head: bytes = b""
    leading_rows: bytes = b""
    leading_block: Block | None = None
    header_styles: dict[int, int] = field(default_factory=dict)  # column index -> xf index
    data_styles: dict[int, int] = field(default_factory=dict)
    tail: bytes = b""


def _row_styles(row: bytes) -> dict[int, int]:
    out = {}
    for tag in _CELL_TAG_RE.finditer(row):
        ref, style = _ATTR_R_RE.search(b" " + tag.group(1)), _ATTR_S_RE.search(b" " + tag.group(1))
        if ref and style:
            out[sheetxml.column_index(ref.group(1).decode())] = int(style.group(1))
    return out


def _read_old_sheet(zf: zipfile.ZipFile, part: str, top: int, chunk: int = 1 << 20) -> _OldSheet:
    """Stream the old sheet XML: keep head, rows above ``top`` and tail; read the row styles of
    the header and first data row (the template's formats); skip the rest of sheetData unread.

    Linear in the part's size whatever it holds: each search starts where the last one stopped
    (a sheet padded with whitespace, or one huge row, is read once, not once per chunk).
    """
    reader = _OldSheetReader(top)
    _require_part(zf, part)
    with reading(Path(str(zf.filename)), f"part {part}"), zf.open(part) as f:
        while data := f.read(chunk):
            reader.feed(data)
    if reader.state != "tail":
        raise WorkbookPackageError(f"{part}: no complete <sheetData> element (a prefixed or damaged sheet XML?)")
    reader.old.tail = b"".join(reader.tail)
    # what is kept verbatim must itself be well-formed: a damaged declaration or tag outside sheetData
    # would pass into the refreshed book (sheetData alone is regenerated)
    old = reader.old
    parse_xml(old.head + b"<sheetData>" + old.leading_rows + _END_SHEET_DATA + old.tail, part)
    return old


_SHEET_DATA = b"<sheetData"
_END_SHEET_DATA = b"</sheetData>"
_ROW_START_RE = re.compile(rb"<row\b")
_END_ROW = b"</row>"


class _OldSheetReader:
    """The state of :func:`_read_old_sheet`: head, rows, skip or tail, and how far ``buf`` was searched."""

    def __init__(self, top: int) -> None:
        self.old, self.top = _OldSheet(), top
        self.state = "head"
        self.buf = bytearray()
        self.searched = 0       # buf[:searched] holds no match of what the current state looks for
        self.tag_end = -1       # where the <row ...> tag at the start of buf ends, once found
        self.tail: list[bytes] = []

    def feed(self, data: bytes) -> None:
        if self.state == "tail":
            self.tail.append(data)
            return
        self.buf += data
        if self.state == "head":
            self._head()
        if self.state == "rows":
            self._rows()
        if self.state == "skip":
            self._skip()
        if self.state == "tail" and self.buf:
            self.tail.append(bytes(self.buf))
            self.buf = bytearray()

    def _head(self) -> None:
        start = self.tag_end if self.tag_end >= 0 else self.buf.find(_SHEET_DATA, max(0, self.searched - 9))
        close = self.buf.find(b">", max(start, self.searched)) if start >= 0 else -1
        if close < 0:
            self.tag_end, self.searched = start, len(self.buf)
            return
        self.old.head = bytes(self.buf[:start])
        self.state = "tail" if self.buf[close - 1:close] == b"/" else "rows"
        self._consume(close + 1)

    def _consume(self, upto: int) -> None:
        del self.buf[:upto]
        self.searched, self.tag_end = 0, -1

    def _rows(self) -> None:
        """Consume complete ``<row>`` elements; "skip" past the first data row or at ``</sheetData>``."""
        while self.state == "rows":
            m = _ROW_START_RE.search(self.buf)
            limit = m.start() if m else len(self.buf)
            end_data = self.buf.find(_END_SHEET_DATA, 0, limit + len(_END_SHEET_DATA) - 1)
            if 0 <= end_data < limit:
                self.state = "skip"
                self._consume(end_data)
                return
            if m is None:           # whitespace between rows: only its last bytes can start a tag
                self._consume(max(0, len(self.buf) - len(_END_SHEET_DATA)))
                return
            if m.start():
                self._consume(m.start())
            row_end = self._row_end()
            if row_end < 0:
                return
            row = bytes(self.buf[:row_end])
            self._consume(row_end)
            self._row(row)

    def _row_end(self) -> int:
        """The end of the complete ``<row>`` at the start of ``buf``, or -1 while it is incomplete."""
        if self.tag_end < 0:
            found = self.buf.find(b">", self.searched)
            if found < 0:
                self.searched = len(self.buf)
                return -1
            self.tag_end, self.searched = found, found
        if self.buf[self.tag_end - 1:self.tag_end] == b"/":
            return self.tag_end + 1
        close = self.buf.find(_END_ROW, max(self.tag_end, self.searched - len(_END_ROW)))
        if close < 0:
            self.searched = len(self.buf)
            return -1
        return close + len(_END_ROW)

    def _row(self, row: bytes) -> None:
        num = _ROW_NUM_RE.match(row)
        if num is None:
            raise WorkbookPackageError("a <row> without its r attribute: rewrite needs explicit row numbers")
        r, old = int(num.group(1)), self.old
        if r < self.top:
            old.leading_rows += row
            cols = [sheetxml.column_index(c.group(1).decode()) for c in _ATTR_R_RE.finditer(row[num.end():])]
            if cols:
                block = Block(r, min(cols), r, max(cols))
                old.leading_block = block if old.leading_block is None else old.leading_block.union(block)
        elif r == self.top:
            old.header_styles = _row_styles(row)
        else:
            if r == self.top + 1:
                old.data_styles = _row_styles(row)
            self.state = "skip"

    def _skip(self) -> None:
        end = self.buf.find(_END_SHEET_DATA)
        if end < 0:
            self._consume(max(0, len(self.buf) - len(_END_SHEET_DATA)))
            return
        self.state = "tail"
        self._consume(end + len(_END_SHEET_DATA))


_DIMENSION_RE = re.compile(rb"<dimension\b[^>]*/>")
_SHEETPR_END_RE = re.compile(rb"<sheetPr\b[^>]*/>|</sheetPr>")
_WORKSHEET_RE = re.compile(rb"<worksheet\b[^>]*>")


def _set_dimension(head: bytes, block: Block) -> bytes:
    """``head`` with its ``<dimension>`` set to ``block`` (inserted where the schema wants it)."""
    dim = sheetxml.dimension_xml(block)
    if _DIMENSION_RE.search(head):
        return _DIMENSION_RE.sub(lambda _: dim, head, count=1)
    anchor = _SHEETPR_END_RE.search(head) or _WORKSHEET_RE.search(head)
    if anchor is None:
        raise WorkbookPackageError("sheet XML without a <worksheet> element")
    return head[:anchor.end()] + dim + head[anchor.end():]


@dataclass(frozen=True)
class _RowMove:
    """A table's data rows ended on ``old_last`` and now end on ``new_last``."""

    first_data: int
    old_last: int
    new_last: int
    first_col: int
    last_col: int

    def move_range(self, ref: str) -> str:
        """A range from within the data rows down to the old last row now ends on the new one.

        Ranges elsewhere (the header, other columns, whole columns) are left alone; a single cell
        counts only when it was the table's one data row.
        """
        try:
            block = Block.parse(ref.replace("$", ""))
        except ValueError:
            return ref
        if block.last_row != self.old_last or not self.first_data <= block.first_row <= self.new_last:
            return ref
        if block.first_row == block.last_row and block.first_row != self.first_data:
            return ref
        if block.first_col < self.first_col or block.last_col > self.last_col or self.new_last == self.old_last:
            return ref
        first, _, last = ref.partition(":")
        return f"{first}:{re.sub(r'[0-9]+$', str(self.new_last), last or first)}"


_SQREF_ATTR_RE = re.compile(rb'(<(?:\w+:)?(?:conditionalFormatting|dataValidation)\b[^>]*?\ssqref=")([^"]*)(")')
_XM_SQREF_RE = re.compile(rb"(<xm:sqref>)([^<]*)(</xm:sqref>)")


def _move_sqrefs(tail: bytes, move: _RowMove) -> bytes:
    """Conditional formats and validations over the table's data follow its new last row."""
    def fix(m: re.Match[bytes]) -> bytes:
        refs = m.group(2).decode().split()
        return m.group(1) + " ".join(move.move_range(r) for r in refs).encode() + m.group(3)
    return _XM_SQREF_RE.sub(fix, _SQREF_ATTR_RE.sub(fix, tail))


# --- table part ---------------------------------------------------------------------------------------


def _check_columns(info: TableInfo, columns: list[str], allow_new_columns: bool) -> None:
    if len(set(c.lower() for c in columns)) != len(columns) or any(not c.strip() for c in columns):
        raise TableColumnsError(f"table {info.name}: column names must be unique (ignoring case) and not blank")
    if list(info.columns) == columns or allow_new_columns:
        return
    missing = [c for c in info.columns if c not in columns]
    extra = [c for c in columns if c not in info.columns]
    detail = f"missing {missing}, unexpected {extra}" if missing or extra else "same names in another order"
    raise TableColumnsError(f"table {info.name} on sheet {info.sheet!r} has columns {list(info.columns)}; "
                            f"the data has {columns} ({detail}). Pass allow_new_columns=True to replace them.")


_TABLE_COLUMN_RE = re.compile(r"<tableColumn\b[^>]*?(?:/>|>.*?</tableColumn>)", re.S)


def _new_table_xml(xml: str, info: TableInfo, block: Block, columns: list[str]) -> str:
    """The table part with its ranges (and columns, when they changed) set for ``block``."""
    root = parse_xml(xml.encode("utf-8"), info.table_part)
    if root.get("headerRowCount") == "0" or int(root.get("totalsRowCount", "0") or 0) > 0:
        raise WorkbookPackageError(f"table {info.name}: tables without a header row or with a totals row "
                                   "are not supported by the rewrite")
    xml = re.sub(r'(<table\b[^>]*?\sref=")[^"]*"', lambda m: f'{m.group(1)}{block.ref}"', xml, count=1)
    xml = re.sub(r'(<autoFilter\b[^>]*?\sref=")[^"]*"', lambda m: f'{m.group(1)}{block.ref}"', xml, count=1)
    xml = re.sub(r"<sortState\b.*?(?:</sortState>|/>)", "", xml, count=1, flags=re.S)  # stale after new rows
    if list(info.columns) != columns:
        xml = _new_table_columns(xml, info, columns)
    return xml


def _new_table_columns(xml: str, info: TableInfo, columns: list[str]) -> str:
    """``tableColumns`` for new names: kept elements for kept names, fresh ids for new ones."""
    elements = _TABLE_COLUMN_RE.findall(xml)
    by_name = dict(zip(info.columns, elements, strict=True))
    ids = [int(m) for m in re.findall(r'<tableColumn\b[^>]*?\sid="(\d+)"', xml)]
    next_id = max(ids, default=0) + 1
    out = []
    for name in columns:
        if name in by_name:
            out.append(by_name[name])
        else:
            out.append(f"<tableColumn id=\"{next_id}\" name={quoteattr(sheetxml.ooxml_escape(name))}/>")
            next_id += 1
    body = f'<tableColumns count="{len(columns)}">{"".join(out)}</tableColumns>'
    xml = re.sub(r"<tableColumns\b.*?</tableColumns>", lambda _: body, xml, count=1, flags=re.S)
    # filter settings point at column positions that no longer mean the same column
    return re.sub(r"<filterColumn\b.*?(?:</filterColumn>|/>)", "", xml, flags=re.S)


# --- charts -------------------------------------------------------------------------------------------

_REF_BLOCK_RE = re.compile(r"<(?P<p>\w+:)?(?P<k>numRef|strRef|multiLvlStrRef)>(?P<body>.*?)</(?P=p)?(?P=k)>", re.S)
_F_RE = re.compile(r"<(?P<p>\w+:)?f>(?P<f>[^<]*)</(?P=p)?f>")
_CACHE_RE = re.compile(r"<(?P<p>\w+:)?(?:numCache|strCache|multiLvlStrCache)>.*?</(?P=p)?(?:numCache|strCache|"
                       r"multiLvlStrCache)>", re.S)
_SHEET_REF_RE = re.compile(r"(?P<sheet>'(?:[^']|'')+'|[^'!(),\s]+)!"
                           r"(?P<range>\$?[A-Z]{1,3}\$?\d+(?::\$?[A-Z]{1,3}\$?\d+)?)")


def _move_formula(formula: str, moves: Mapping[str, _RowMove]) -> str:
    def fix(m: re.Match[str]) -> str:
        sheet = m.group("sheet")
        key = sheet[1:-1].replace("''", "'") if sheet.startswith("'") else sheet
        move = moves.get(key)
        if move is None:    # a single cell moves too when it was the table's one data row (a fresh template)
            return m.group()
        return f"{sheet}!{move.move_range(m.group('range'))}"
    return _SHEET_REF_RE.sub(fix, formula)


def _retarget_chart(xml: str, moves: Mapping[str, _RowMove]) -> str:
    """Series ranges on moved tables end on the new last row; their cached values are dropped."""
    def fix_block(m: re.Match[str]) -> str:
        f = _F_RE.search(m.group("body"))
        if f is None:
            return m.group()
        new = _move_formula(unescape(f.group("f")), moves)
        if new == unescape(f.group("f")):
            return m.group()
        body = m.group("body")
        body = body[:f.start("f")] + escape(new) + body[f.end("f"):]
        body = _CACHE_RE.sub("", body)
        p = m.group("p") or ""
        return f"<{p}{m.group('k')}>{body}</{p}{m.group('k')}>"
    return _REF_BLOCK_RE.sub(fix_block, xml)


# --- calcChain ----------------------------------------------------------------------------------------


def _without_calc_chain(zf: zipfile.ZipFile, calc_part: str) -> dict[str, bytes]:
    """Workbook rels and content types with the calcChain part removed."""
    out = {}
    wb_rels = _rels_path(_workbook_part(zf))
    rels = _read_text(zf, wb_rels)
    out[wb_rels] = re.sub(r'<Relationship\b[^>]*?Type="' + re.escape(REL_CALC_CHAIN) + r'"[^>]*/>', "", rels).encode()
    ct = _read_text(zf, "[Content_Types].xml")
    out["[Content_Types].xml"] = re.sub(r'<Override\b[^>]*?PartName="/' + re.escape(calc_part) + r'"[^>]*/>', "",
                                        ct).encode()
    return out


# --- the rewrite --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TableRewrite:
    """What happened to one table."""

    name: str
    sheet: str
    old_ref: str
    ref: str
    rows: int
    columns_changed: bool


@dataclass(frozen=True)
class RewriteReport:
    """Outcome of :func:`rewrite_tables`: which parts were regenerated, copied or dropped."""

    tables: dict[str, TableRewrite]
    rewritten_parts: tuple[str, ...]
    dropped_parts: tuple[str, ...]
    copied_parts: int
    style_indexes: dict[str, dict[str, int]]


Content = bytes | Callable[[], Iterator[bytes | memoryview]]


@dataclass
class _Plan:
    replace: dict[str, Content] = field(default_factory=dict)
    drop: set[str] = field(default_factory=set)
    tables: dict[str, TableRewrite] = field(default_factory=dict)
    moves: dict[str, _RowMove] = field(default_factory=dict)


def _plan_table(zf: zipfile.ZipFile, plan: _Plan, info: TableInfo, df: pd.DataFrame, styles: Mapping[str, int],
                allow_new_columns: bool, chunk_rows: int) -> None:
    columns = [str(c) for c in df.columns]
    _check_columns(info, columns, allow_new_columns)
    unknown = sorted(set(styles) - set(columns))
    if unknown:
        raise WorkbookPackageError(f"table {info.name}: styles name columns it does not have: {unknown}")
    if info.tables_on_sheet != 1:
        raise WorkbookPackageError(f"sheet {info.sheet!r} holds {info.tables_on_sheet} tables; the rewrite "
                                   "regenerates the whole sheet, so it needs the table alone on its sheet")
    try:
        old_block = Block.parse(info.ref)
    except ValueError:
        raise WorkbookPackageError(f"table {info.name}: its range {info.ref[:40]!r} ({info.table_part}) is not a "
                                   "cell range") from None
    top, left = old_block.first_row, old_block.first_col
    block = sheetxml.table_block(df, top, left)
    old = _read_old_sheet(zf, info.sheet_part, top)
    dim = block if old.leading_block is None else block.union(old.leading_block)
    move = _RowMove(top + 1, old_block.last_row, block.last_row, left, max(old_block.last_col, block.last_col))
    head, tail = _set_dimension(old.head, dim), _move_sqrefs(old.tail, move)
    data_styles = {name: old.data_styles[left + j] for j, name in enumerate(columns) if left + j in old.data_styles}
    data_styles.update(styles)
    header_styles = {name: old.header_styles[left + j] for j, name in enumerate(columns)
                     if left + j in old.header_styles}

    def content() -> Iterator[bytes | memoryview]:
        yield head
        yield from sheetxml.iter_sheet_data(df, top=top, left=left, styles=data_styles, header_styles=header_styles,
                                            leading_rows=old.leading_rows, chunk_rows=chunk_rows)
        yield tail

    plan.replace[info.sheet_part] = content
    table_xml = _new_table_xml(_read_text(zf, info.table_part), info, block, columns)
    plan.replace[info.table_part] = table_xml.encode("utf-8")
    plan.moves[info.sheet] = move
    plan.tables[info.name] = TableRewrite(info.name, info.sheet, info.ref, block.ref, len(df),
                                          list(info.columns) != columns)


def _plan(zf: zipfile.ZipFile, tables: Mapping[str, pd.DataFrame], styles: Mapping[str, Mapping[str, StyleSpec]],
          allow_new_columns: bool, chunk_rows: int) -> tuple[_Plan, dict[str, dict[str, int]]]:
    found = find_tables_in(zf)
    unknown = [name for name in tables if name.lower() not in found]
    if unknown:
        raise WorkbookPackageError(f"no table named {unknown} in the workbook (it has {sorted(found)})")
    extra_styles = [name for name in styles if name.lower() not in {t.lower() for t in tables}]
    if extra_styles:
        raise WorkbookPackageError(f"styles given for tables that are not rewritten: {extra_styles}")
    sheets = [found[name.lower()].sheet for name in tables]
    if len(set(sheets)) != len(sheets):
        raise WorkbookPackageError("two of the tables to rewrite share a sheet")
    plan = _Plan()
    styles_part = _styles_part(zf)
    resolved, new_styles = _resolve_styles(styles, _read_part(zf, styles_part) if styles_part else None)
    if new_styles is not None and styles_part is not None:
        plan.replace[styles_part] = new_styles
    for name, df in tables.items():
        info = found[name.lower()]
        _plan_table(zf, plan, info, df, resolved.get(name.lower(), {}), allow_new_columns, chunk_rows)
    for part in zf.namelist():
        if part.startswith("xl/charts/") and part.endswith(".xml") and "/_rels/" not in part:
            xml = _read_text(zf, part)
            new = _retarget_chart(xml, plan.moves)
            if new != xml:
                plan.replace[part] = new.encode("utf-8")
    calc = next((t for _, typ, t in _relationships(zf, _workbook_part(zf)) if typ == REL_CALC_CHAIN), None)
    if calc is not None and calc in zf.NameToInfo:
        plan.drop.add(calc)
        plan.replace.update(_without_calc_chain(zf, calc))
    return plan, resolved


def _write_package(source: zipfile.ZipFile, raw: BinaryIO, out: BinaryIO, plan: _Plan, level: int) -> int:
    """Write every entry in source order (replaced, dropped or raw-copied); returns the copy count."""
    writer = ZipWriter(out)
    copied = 0
    for info in source.infolist():
        name = info.filename
        if name in plan.drop:
            continue
        content = plan.replace.get(name)
        if content is None:
            writer.copy_raw(raw, info)
            copied += 1
        elif isinstance(content, bytes):
            writer.write_stream(name, [content])
        else:
            with reading(Path(str(source.filename)), f"part {name}"):
                writer.write_stream(name, content(), level)
    writer.close()
    return copied


def rewrite_tables(src: Path | str, dst: Path | str, tables: Mapping[str, pd.DataFrame], *,
                   styles: Mapping[str, Mapping[str, StyleSpec]] | None = None, allow_new_columns: bool = False,
                   level: int = 1, chunk_rows: int = sheetxml.DEFAULT_CHUNK_ROWS) -> RewriteReport:
    """Write ``src`` to ``dst`` with the named Excel tables' rows replaced by the DataFrames.

    ``tables`` maps an existing table's name (case-insensitive, as in Excel) to its new content;
    the columns must equal the table's unless ``allow_new_columns``. ``styles`` maps table name ->
    column -> a cellXfs index or a number format code (looked up in styles.xml, added if
    missing); columns without one keep the style of the template's first data row. An empty
    DataFrame leaves one blank data row (Excel tables need one). ``level`` is the zlib level of
    the regenerated sheets (1 is ~3x faster than 6 for a few % more bytes). ``src`` may equal
    ``dst``; ``dst`` changes only if everything succeeded (:func:`crm_xl.io.files.replace_atomically`:
    a symlink's target is replaced, its mode, owner and group kept).
    """
    reports: list[RewriteReport] = []

    def write(out: Path) -> None:
        reports.append(write_rewritten(src, out, tables, styles=styles, allow_new_columns=allow_new_columns,
                                       level=level, chunk_rows=chunk_rows))

    try:
        replace_atomically(dst, write, like=src)
    except OSError as exc:      # a full disk, a lock: the user knows the book, not the temporary file beside it
        raise OSError(exc.errno, f"{exc.strerror or exc}; {Path(dst).name} was not changed", str(dst)) from exc
    return reports[0]


def write_rewritten(src: Path | str, out: Path | str, tables: Mapping[str, pd.DataFrame], *,
                    styles: Mapping[str, Mapping[str, StyleSpec]] | None = None, allow_new_columns: bool = False,
                    level: int = 1, chunk_rows: int = sheetxml.DEFAULT_CHUNK_ROWS) -> RewriteReport:
    """:func:`rewrite_tables` into the file ``out`` (a temporary file: written in place, not atomically),
    for a caller that replaces the workbook itself once everything else is in place."""
    if not zipfile.is_zipfile(src):
        raise WorkbookPackageError(f"{src}: not a workbook (not a zip package)")
    with open_package(src) as source, reading(src), open(out, "w+b") as handle, open(src, "rb") as raw:
        plan, resolved = _plan(source, tables, styles or {}, allow_new_columns, chunk_rows)
        copied = _write_package(source, raw, handle, plan, level)
    return RewriteReport(plan.tables, tuple(sorted(plan.replace)), tuple(sorted(plan.drop)), copied, resolved)
