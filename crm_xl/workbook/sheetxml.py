"""Worksheet XML for a DataFrame: the ``<sheetData>`` rows and ``<dimension>`` of one table block.

Why this exists: a headless refresh must write tables of up to Excel's 1,048,576 rows into an
existing workbook without Excel and without rebuilding the whole file. Building the cell XML with
pyarrow compute, a column at a time over chunks of rows, is ~2.5x faster than plain Python string
building and never holds the whole sheet XML in memory (the caller streams the chunks into a zip
entry or a file).

Cell encoding rules (checked against Excel, openpyxl, python-calamine and LibreOffice):

* numbers are ``<v>`` values; NaN, None, NA and +-inf give a blank cell: no ``<c>`` at all, or
  ``<c r=".." s="N"/>`` when the column has a style, so the format stays for later typing;
* booleans are ``t="b"`` with 1/0;
* datetimes are Excel serial numbers (1900 date system) and need a date number format, which the
  caller passes as a cellXfs index (``s="N"``) per column; a column whose values are all at
  midnight is written as whole numbers;
* text (and categoricals of text) is an inline string ``t="inlineStr"``: always text, so values
  starting with ``= + - @`` can never become formulas; a literal ``_xHHHH_`` is escaped as
  ``_x005F_xHHHH_`` (else Excel decodes it), characters XML 1.0 cannot carry (and ``\\r``, which
  XML parsers turn into ``\\n``) become ``_xHHHH_``, and leading/trailing whitespace gets
  ``xml:space="preserve"``; the empty string is a blank cell; text longer than an Excel cell holds
  (32,767 characters, counted as Excel counts them: UTF-16 units) is cut to that length, as Excel
  itself would refuse the file otherwise (the refresh notes it on Data Quality, see :func:`long_text`).

The second half of the module reads and extends ``xl/styles.xml`` so a caller can turn a number
format code (``"yyyy-mm-dd"``) into the cellXfs index the cells need.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import BinaryIO
from xml.etree.ElementTree import Element
from xml.sax.saxutils import escape, quoteattr

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from crm_xl.workbook.untrusted import parse_xml
from crm_xl.workbook.zipio import WorkbookPackageError

MAX_ROWS = 1_048_576
MAX_COLS = 16_384
#: The most characters an Excel cell holds (UTF-16 code units: an emoji counts two).
CELL_TEXT_LIMIT = 32_767
DEFAULT_CHUNK_ROWS = 50_000

# --- cell references --------------------------------------------------------------------------------

_CELL_RE = re.compile(r"^\$?([A-Za-z]{1,3})\$?(\d+)$")


def column_letter(index: int) -> str:
    """Column letters for a 0-based column index (0 -> "A", 26 -> "AA")."""
    if not 0 <= index < MAX_COLS:
        raise ValueError(f"column index {index} is outside Excel's 0..{MAX_COLS - 1}")
    letters = ""
    index += 1
    while index:
        index, rem = divmod(index - 1, 26)
        letters = chr(65 + rem) + letters
    return letters


def column_index(letters: str) -> int:
    """0-based column index of column letters ("A" -> 0); the inverse of :func:`column_letter`."""
    index = 0
    for ch in letters.upper():
        index = index * 26 + ord(ch) - 64
    return index - 1


def parse_cell(ref: str) -> tuple[int, int]:
    """(1-based row, 0-based column) of an A1 reference such as ``"B3"`` or ``"$B$3"``."""
    m = _CELL_RE.match(ref.strip())
    if not m:
        raise ValueError(f"not a cell reference: {ref!r}")
    return int(m.group(2)), column_index(m.group(1))


@dataclass(frozen=True)
class Block:
    """A rectangle of cells: 1-based rows, 0-based columns, both ends included."""

    first_row: int
    first_col: int
    last_row: int
    last_col: int

    @property
    def ref(self) -> str:
        """The A1 range, e.g. ``"A1:D10"`` (a single cell gives ``"A1"``)."""
        start = f"{column_letter(self.first_col)}{self.first_row}"
        end = f"{column_letter(self.last_col)}{self.last_row}"
        return start if start == end else f"{start}:{end}"

    @classmethod
    def parse(cls, ref: str) -> Block:
        """The block of ``"A1:D10"`` or ``"A1"``."""
        first, _, last = ref.partition(":")
        r1, c1 = parse_cell(first)
        r2, c2 = parse_cell(last) if last else (r1, c1)
        return cls(min(r1, r2), min(c1, c2), max(r1, r2), max(c1, c2))

    def union(self, other: Block) -> Block:
        """The smallest block covering both (what ``<dimension>`` must show)."""
        return Block(min(self.first_row, other.first_row), min(self.first_col, other.first_col),
                     max(self.last_row, other.last_row), max(self.last_col, other.last_col))


def table_block(df: pd.DataFrame, top: int, left: int) -> Block:
    """Cells a table of ``df`` with its header row at (top, left) covers.

    An Excel table needs at least one data row, so an empty DataFrame still covers one (blank)
    row below the header: that is how Excel itself shows a table whose rows were all deleted.
    """
    if df.shape[1] == 0:
        raise ValueError("a table needs at least one column")
    last_row = top + max(len(df), 1)
    last_col = left + df.shape[1] - 1
    if last_row > MAX_ROWS or last_col >= MAX_COLS:
        raise ValueError(f"{len(df):,} rows x {df.shape[1]:,} columns at row {top} do not fit in a worksheet "
                         f"({MAX_ROWS:,} rows x {MAX_COLS:,} columns)")
    return Block(top, left, last_row, last_col)


def dimension_xml(block: Block) -> bytes:
    """The ``<dimension>`` element; Power Query trusts it, so it must cover every written cell."""
    return f'<dimension ref="{block.ref}"/>'.encode()


# --- text escaping ----------------------------------------------------------------------------------

_X_ESCAPE_RE = re.compile(r"_(x[0-9A-Fa-f]{4}_)")
_BAD_CHARS_RE = re.compile("[\x00-\x08\x0b\x0c\x0d\x0e-\x1f\ufffe\uffff]")
_ARROW_BAD_CHARS = r"[\x00-\x08\x0b\x0c\x0d\x0e-\x1f\x{fffe}\x{ffff}]"


def _x_code(m: re.Match[str]) -> str:
    return f"_x{ord(m.group()):04X}_"


def ooxml_escape(text: str) -> str:
    """Excel's own ``_xHHHH_`` escaping (before XML escaping): literal ``_xHHHH_`` and characters
    XML cannot carry. Used for cell text and for table column names alike."""
    if "_x" in text:
        text = _X_ESCAPE_RE.sub(r"_x005F_\1", text)
    return _BAD_CHARS_RE.sub(_x_code, text)


def ooxml_unescape(text: str) -> str:
    """Decode ``_xHHHH_`` the way Excel reads cell text and table column names."""
    if "_x" not in text:
        return text
    return re.sub(r"_x([0-9A-Fa-f]{4})_", lambda m: chr(int(m.group(1), 16)), text)


def escape_text(text: str) -> str:
    """Escape text for a ``<t>`` element, the way Excel does (see the module docstring)."""
    return escape(ooxml_escape(text))


def text_element(text: str) -> str:
    """``<t>`` with ``xml:space="preserve"`` when leading/trailing whitespace must survive."""
    if text[:1].isspace() or text[-1:].isspace():
        return f'<t xml:space="preserve">{escape_text(text)}</t>'
    return f"<t>{escape_text(text)}</t>"


def _too_long(values: pa.Array) -> np.ndarray:
    """True where a text is longer than :data:`CELL_TEXT_LIMIT`. Code points are counted fast; only
    texts that could pass the limit in UTF-16 units (over half of it) are measured exactly."""
    if len(values) == 0:
        return np.zeros(0, dtype=bool)
    lengths = pc.fill_null(pc.utf8_length(values), 0).to_numpy(zero_copy_only=False)
    candidates = np.flatnonzero(lengths > CELL_TEXT_LIMIT // 2)
    long = np.zeros(len(values), dtype=bool)
    for i in candidates:    # rare: long texts only
        long[i] = _utf16_length(values[int(i)].as_py()) > CELL_TEXT_LIMIT
    return long


def _utf16_length(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def cut_text(text: str) -> str:
    """``text`` cut to the :data:`CELL_TEXT_LIMIT` UTF-16 units an Excel cell holds (never inside a
    surrogate pair)."""
    if _utf16_length(text) <= CELL_TEXT_LIMIT:
        return text
    units = text.encode("utf-16-le")[: 2 * CELL_TEXT_LIMIT]
    return units.decode("utf-16-le", errors="ignore")


def _fit(values: pa.Array) -> pa.Array:
    """Texts longer than a cell holds cut to the limit; the array itself when none is."""
    long = _too_long(values)
    if not long.any():
        return values
    texts = values.to_pylist()
    for i in np.flatnonzero(long):
        texts[i] = cut_text(texts[i])
    return pa.array(texts, pa.large_string())


def long_text(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """Per text column of ``frame``, the row positions whose text an Excel cell cannot hold (the
    writers cut them to :data:`CELL_TEXT_LIMIT`); columns without any are left out."""
    found = {}
    for column in frame.columns:
        series = frame[column]
        kind = _column_kind(series)
        if kind == "category":
            long = _too_long(pa.array([str(c) for c in series.cat.categories], pa.large_string()))
            codes = np.asarray(series.cat.codes, dtype=np.int64)
            rows = np.flatnonzero((codes >= 0) & long[np.maximum(codes, 0)]) if long.any() else np.zeros(0, int)
        elif kind == "text":
            rows = np.flatnonzero(_too_long(_text_array(series)))
        else:
            continue
        if len(rows):
            found[str(column)] = rows
    return found


def fit_cells(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with every text an Excel cell cannot hold cut to the limit (for writers other than
    this module's, such as live Excel); ``frame`` itself when nothing is too long."""
    long = long_text(frame)
    if not long:
        return frame
    fitted = frame.copy()
    for column, rows in long.items():
        values = fitted[column].astype(object)
        values.iloc[rows] = [cut_text(str(v)) for v in values.iloc[rows]]
        fitted[column] = values
    return fitted


def _lit(text: str) -> pa.Scalar:
    return pa.scalar(text, pa.large_string())


def _arrow_escape(values: pa.Array) -> pa.Array:
    """Vectorised :func:`escape_text`; each replacement runs only when some value needs it."""
    if pc.any(pc.match_substring(values, "_x")).as_py():
        values = pc.replace_substring_regex(values, r"_(x[0-9A-Fa-f]{4}_)", r"_x005F_\1")
    for raw, esc in (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;")):
        if pc.any(pc.match_substring(values, raw)).as_py():
            values = pc.replace_substring(values, raw, esc)
    if pc.any(pc.match_substring_regex(values, _ARROW_BAD_CHARS)).as_py():
        # Rare (control characters in data): plain Python on this chunk is fast enough.
        values = pa.array([None if v is None else _BAD_CHARS_RE.sub(_x_code, v) for v in values.to_pylist()],
                          pa.large_string())
    return values


def _arrow_text_elements(values: pa.Array) -> pa.Array:
    """Escaped text wrapped in ``<t>`` (preserve-space where needed); "" and null stay null."""
    values = pc.if_else(pc.equal(values, _lit("")), _lit(None), values) if len(values) else values
    escaped = _arrow_escape(values)
    edge_space = pc.match_substring_regex(values, r"^\s|\s$")
    plain = pc.binary_join_element_wise(_lit("<t>"), escaped, _lit("</t>"), _lit(""))
    kept = pc.binary_join_element_wise(_lit('<t xml:space="preserve">'), escaped, _lit("</t>"), _lit(""))
    return pc.if_else(edge_space, kept, plain)


# --- column encoders ---------------------------------------------------------------------------------

_EPOCH_US = np.datetime64("1899-12-30", "us").astype(np.int64)
_NS_PER_DAY = 86_400 * 10**9
_US_PER_DAY = 86_400 * 10**6


def excel_serials(values: pd.Series) -> np.ndarray:
    """Excel 1900-system serial days of datetime-like values (float64, NaN for missing).

    Excel counts 1900-02-29, which never existed, so dates before 1900-03-01 are one less than the
    plain day count; dates before 1900-01-01 cannot be shown and become blank. Time zones are
    dropped to the wall-clock time (Excel has no time zones).
    """
    if isinstance(values.dtype, pd.PeriodDtype):
        values = values.dt.to_timestamp()
    dt = pd.to_datetime(values)
    if getattr(dt.dt, "tz", None) is not None:
        dt = dt.dt.tz_localize(None)
    # microseconds, not nanoseconds: a date after 2262-04-11 must not wrap round (Excel shows up to 9999)
    us = dt.to_numpy("datetime64[us]")
    missing = np.isnat(us)
    serial = (us.astype(np.int64) - _EPOCH_US) / _US_PER_DAY
    serial = np.where(serial < 61, serial - 1, serial)
    serial[missing | (serial < 1)] = np.nan
    return serial


def _column_kind(s: pd.Series) -> str:
    """One of number, bool, date, text, category, for the encoder; object columns are inferred."""
    dtype = s.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        return "category"
    if pd.api.types.is_bool_dtype(dtype):
        return "bool"
    if pd.api.types.is_datetime64_any_dtype(dtype) or isinstance(dtype, pd.PeriodDtype):
        return "date"
    if pd.api.types.is_timedelta64_dtype(dtype):
        return "timedelta"
    if pd.api.types.is_numeric_dtype(dtype):
        return "number"
    if pd.api.types.is_string_dtype(dtype) and not pd.api.types.is_object_dtype(dtype):
        return "text"
    inferred = pd.api.types.infer_dtype(s, skipna=True)
    return {"integer": "number", "floating": "number", "mixed-integer-float": "number", "decimal": "number",
            "boolean": "bool", "datetime64": "date", "datetime": "date", "date": "date",
            "timedelta64": "timedelta", "timedelta": "timedelta"}.get(inferred, "text")


@dataclass
class _Column:
    """One column prepared once (whole column), turned into cell XML a chunk at a time."""

    letter: str
    kind: str  # "v" (number), "b" (boolean), "s" (inline string)
    values: pa.Array
    style: int | None
    codes: np.ndarray | None = None  # categorical codes into ``values`` (already <t> elements)

    def cells(self, start: int, stop: int, rows: pa.Array) -> pa.Array:
        """``<c>`` elements for rows [start, stop); "" where the cell is blank."""
        if self.codes is not None:
            codes = self.codes[start:stop]
            taken = self.values.take(pa.array(codes, mask=codes < 0))
            values = taken
        else:
            values = self.values.slice(start, stop - start)
            if self.kind == "s":
                values = _arrow_text_elements(values)
        style = f' s="{self.style}"' if self.style is not None else ""
        if self.kind == "s":
            head, tail = f'"{style} t="inlineStr"><is>', "</is></c>"
        elif self.kind == "b":
            head, tail = f'"{style} t="b"><v>', "</v></c>"
        else:
            head, tail = f'"{style}><v>', "</v></c>"
        cell = pc.binary_join_element_wise(_lit(f'<c r="{self.letter}'), rows, _lit(head), values, _lit(tail),
                                           _lit(""))
        if self.style is None:
            return pc.fill_null(cell, _lit(""))
        # A blank cell keeps the column's format, so a value typed into it later is shown alike.
        blank = pc.binary_join_element_wise(_lit(f'<c r="{self.letter}'), rows, _lit(f'"{style}/>'), _lit(""))
        return pc.coalesce(cell, blank)


def _number_values(s: pd.Series) -> pa.Array:
    """Numbers as text; NaN, NA and infinities are null (blank cells)."""
    if pd.api.types.is_object_dtype(s.dtype):
        s = pd.to_numeric(s)
    arr = pa.array(s, from_pandas=True)
    if pa.types.is_floating(arr.type):
        arr = pc.if_else(pc.is_finite(arr), arr, pa.scalar(None, arr.type))
    elif pa.types.is_decimal(arr.type):
        arr = pc.cast(arr, pa.float64())
    return pc.cast(arr, pa.large_string())


def _serial_values(serial: np.ndarray) -> pa.Array:
    """Serials as text: whole numbers when every value is a whole day (date-only columns)."""
    finite = serial[~np.isnan(serial)]
    arr = pa.array(serial, from_pandas=True)
    if finite.size == 0 or np.all(finite == np.floor(finite)):
        arr = pc.cast(arr, pa.int64())
    return pc.cast(arr, pa.large_string())


def _text_values(s: pd.Series) -> pa.Array:
    """Text as an arrow array, cut to what a cell holds; non-string objects are shown with ``str()``."""
    return _fit(_text_array(s))


def _text_array(s: pd.Series) -> pa.Array:
    if isinstance(s.dtype, pd.StringDtype):  # pandas' str dtype: straight to arrow, no Python objects
        return pc.cast(pa.array(s, from_pandas=True), pa.large_string())
    obj = s.astype(object)
    mask = obj.isna().to_numpy()
    strings = [None if m else (v if isinstance(v, str) else str(v)) for v, m in zip(obj.tolist(), mask, strict=True)]
    return pa.array(strings, pa.large_string())


def _prepare_column(s: pd.Series, letter: str, style: int | None) -> _Column:
    kind = _column_kind(s)
    if kind == "category":
        cats = s.cat.categories
        if _column_kind(pd.Series(cats)) in ("text", "category"):
            elements = _arrow_text_elements(_fit(pa.array([str(c) for c in cats], pa.large_string())))
            return _Column(letter, "s", elements, style, codes=np.asarray(s.cat.codes, dtype=np.int64))
        s = pd.Series(np.asarray(s.astype(object)), index=s.index).infer_objects()
        kind = _column_kind(s)
    if kind == "bool":
        arr = pa.array(s.astype(object).where(s.notna(), None).tolist(), pa.bool_())
        return _Column(letter, "b", pc.if_else(arr, _lit("1"), _lit("0")), style)
    if kind == "date":
        return _Column(letter, "v", _serial_values(excel_serials(s)), style)
    if kind == "timedelta":
        days = pd.to_timedelta(s).to_numpy("timedelta64[ns]").astype(np.int64) / _NS_PER_DAY
        days[pd.isna(s).to_numpy()] = np.nan
        return _Column(letter, "v", pc.cast(pa.array(days, from_pandas=True), pa.large_string()), style)
    if kind == "number":
        return _Column(letter, "v", _number_values(s), style)
    return _Column(letter, "s", _text_values(s), style)


# --- rows ---------------------------------------------------------------------------------------------


def header_row_xml(columns: list[str], row: int, left: int, styles: Mapping[str, int] | None = None) -> bytes:
    """The header row: column names as inline strings (Excel requires them to equal the table's)."""
    styles = styles or {}
    cells = []
    for j, name in enumerate(columns):
        style = styles.get(name)
        s_attr = f' s="{style}"' if style is not None else ""
        cells.append(f'<c r="{column_letter(left + j)}{row}"{s_attr} t="inlineStr"><is>{text_element(name)}</is></c>')
    return f'<row r="{row}">{"".join(cells)}</row>'.encode()


def iter_table_rows(df: pd.DataFrame, *, top: int, left: int, styles: Mapping[str, int] | None = None,
                    header_styles: Mapping[str, int] | None = None,
                    chunk_rows: int = DEFAULT_CHUNK_ROWS) -> Iterator[bytes | memoryview]:
    """``<row>`` elements of a header row at (top, left) and the data below it, in chunks.

    ``styles`` maps column name -> cellXfs index for the data cells (dates need one with a date
    number format); ``header_styles`` the same for the header cells. Each yielded chunk covers at
    most ``chunk_rows`` rows, so memory stays bounded for a million rows.
    """
    columns = [str(c) for c in df.columns]
    table_block(df, top, left)  # validates the size before any byte is written
    styles = styles or {}
    unknown = sorted(set(styles) - set(columns))
    if unknown:
        raise ValueError(f"styles name columns the table does not have: {unknown}")
    yield header_row_xml(columns, top, left, header_styles)
    prepared = [_prepare_column(df.iloc[:, j], column_letter(left + j), styles.get(name))
                for j, name in enumerate(columns)]
    first = top + 1
    for start in range(0, len(df), chunk_rows):
        stop = min(start + chunk_rows, len(df))
        rows = pc.cast(pa.array(np.arange(first + start, first + stop, dtype=np.int64)), pa.large_string())
        pieces: list[pa.Array | pa.Scalar] = [_lit('<row r="'), rows, _lit('">')]
        pieces += [col.cells(start, stop, rows) for col in prepared]
        pieces.append(_lit("</row>"))
        joined = pc.binary_join_element_wise(*pieces, _lit(""))
        if isinstance(joined, pa.ChunkedArray):
            joined = joined.combine_chunks()
        yield _string_buffer(joined)


def _string_buffer(strings: pa.Array) -> memoryview:
    """The concatenated bytes of a large_string array without copying them into Python str."""
    offsets = np.frombuffer(strings.buffers()[1], dtype=np.int64)[strings.offset:strings.offset + len(strings) + 1]
    return memoryview(strings.buffers()[2])[offsets[0]:offsets[-1]]


def iter_sheet_data(df: pd.DataFrame, *, top: int = 1, left: int = 0, styles: Mapping[str, int] | None = None,
                    header_styles: Mapping[str, int] | None = None, leading_rows: bytes = b"",
                    chunk_rows: int = DEFAULT_CHUNK_ROWS) -> Iterator[bytes | memoryview]:
    """The whole ``<sheetData>`` element, in chunks.

    ``leading_rows`` are ``<row>`` elements kept verbatim above the table (a title, notes); they
    must lie above ``top`` so rows stay in ascending order, as the format requires.
    """
    yield b"<sheetData>"
    if leading_rows:
        yield leading_rows
    yield from iter_table_rows(df, top=top, left=left, styles=styles, header_styles=header_styles,
                               chunk_rows=chunk_rows)
    yield b"</sheetData>"


def write_sheet_data(fp: BinaryIO, df: pd.DataFrame, *, top: int = 1, left: int = 0,
                     styles: Mapping[str, int] | None = None, header_styles: Mapping[str, int] | None = None,
                     chunk_rows: int = DEFAULT_CHUNK_ROWS) -> Block:
    """Stream the ``<dimension>`` and ``<sheetData>`` of a sheet holding only this table to ``fp``.

    Returns the block the table covers (also its table ``ref``).
    """
    block = table_block(df, top, left)
    fp.write(dimension_xml(block))
    for chunk in iter_sheet_data(df, top=top, left=left, styles=styles, header_styles=header_styles,
                                 chunk_rows=chunk_rows):
        fp.write(chunk)
    return block


# --- styles.xml: number formats and cellXfs ------------------------------------------------------------

NS_MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
_NS = {"m": NS_MAIN}
FIRST_CUSTOM_NUMFMT_ID = 164

#: Excel's built-in number formats (ECMA-376 Part 1, 18.8.30): they have no ``<numFmt>`` element.
BUILTIN_NUMBER_FORMATS: dict[int, str] = {
    0: "General", 1: "0", 2: "0.00", 3: "#,##0", 4: "#,##0.00", 9: "0%", 10: "0.00%", 11: "0.00E+00",
    12: "# ?/?", 13: "# ??/??", 14: "mm-dd-yy", 15: "d-mmm-yy", 16: "d-mmm", 17: "mmm-yy", 18: "h:mm AM/PM",
    19: "h:mm:ss AM/PM", 20: "h:mm", 21: "h:mm:ss", 22: "m/d/yy h:mm", 37: "#,##0 ;(#,##0)",
    38: "#,##0 ;[Red](#,##0)", 39: "#,##0.00;(#,##0.00)", 40: "#,##0.00;[Red](#,##0.00)", 45: "mm:ss",
    46: "[h]:mm:ss", 47: "mmss.0", 48: "##0.0E+0", 49: "@",
}


@dataclass(frozen=True)
class CellXf:
    """One ``<xf>`` of ``<cellXfs>``: its index is what a cell's ``s`` attribute holds."""

    index: int
    num_fmt_id: int
    format_code: str
    font_id: int
    fill_id: int
    border_id: int
    has_children: bool  # alignment/protection

    @property
    def plain(self) -> bool:
        """Only a number format: default font, no fill, no border, no alignment."""
        return (self.font_id, self.fill_id, self.border_id, self.has_children) == (0, 0, 0, False)


def number_formats(styles_xml: bytes) -> dict[int, str]:
    """numFmtId -> format code: the built-in ones plus the workbook's custom ``<numFmt>``s."""
    root = parse_xml(styles_xml, "xl/styles.xml")
    formats = dict(BUILTIN_NUMBER_FORMATS)
    for nf in root.iterfind("m:numFmts/m:numFmt", _NS):
        formats[_number(nf, "numFmtId")] = nf.get("formatCode", "")
    return formats


def cell_xfs(styles_xml: bytes) -> list[CellXf]:
    """Every cell format of the workbook, in index order (for reports and lookups)."""
    root = parse_xml(styles_xml, "xl/styles.xml")
    formats = number_formats(styles_xml)
    out = []
    for i, xf in enumerate(root.iterfind("m:cellXfs/m:xf", _NS)):
        fmt = _number(xf, "numFmtId")
        out.append(CellXf(i, fmt, formats.get(fmt, ""), _number(xf, "fontId"), _number(xf, "fillId"),
                          _number(xf, "borderId"), len(xf) > 0))
    return out


def _number(element: Element, attribute: str) -> int:
    """A whole-number attribute of styles.xml (0 when absent); a damaged one is a :class:`WorkbookPackageError`."""
    value = element.get(attribute, "0")
    if not value.isdigit():
        raise WorkbookPackageError(f"part xl/styles.xml: {attribute}={value[:20]!r} is not a whole number")
    return int(value)


def find_number_format_xf(styles_xml: bytes, format_code: str) -> int | None:
    """Index of the first plain cellXfs entry whose number format is ``format_code``, or None.

    "Plain" (default font, no fill/border/alignment) so a date column does not pick up, say, the
    bold header style that happens to share the format. Codes compare exactly (Excel does too).
    """
    for xf in cell_xfs(styles_xml):
        if xf.plain and xf.format_code == format_code:
            return xf.index
    return None


def add_number_format_xf(styles_xml: bytes, format_code: str) -> tuple[bytes, int]:
    """styles.xml with a plain cellXfs entry for ``format_code`` added if missing, and its index.

    Deterministic (the same input gives the same bytes): a new custom format takes the next free
    numFmtId from 164 and the new ``<xf>`` goes last in ``<cellXfs>``, so existing indexes keep
    their meaning. The edit is textual, keeping every other byte (namespaces, x14ac attributes).
    """
    found = find_number_format_xf(styles_xml, format_code)
    if found is not None:
        return styles_xml, found
    text = styles_xml.decode("utf-8")
    formats = number_formats(styles_xml)
    fmt_id = next((i for i, code in sorted(formats.items()) if code == format_code), None)
    if fmt_id is None:
        fmt_id = max([FIRST_CUSTOM_NUMFMT_ID - 1, *formats]) + 1
        text = _append_child(text, "numFmts", f"<numFmt numFmtId=\"{fmt_id}\" formatCode={quoteattr(format_code)}/>",
                             create_after=r"<styleSheet\b[^>]*>")
    xf = f'<xf numFmtId="{fmt_id}" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/>'
    text = _append_child(text, "cellXfs", xf, create_after=None)
    new_xml = text.encode("utf-8")
    return new_xml, len(cell_xfs(new_xml)) - 1


def _append_child(text: str, parent: str, child: str, create_after: str | None) -> str:
    """Append ``child`` as the last child of the (unprefixed) ``parent`` and bump its count."""
    m = re.search(rf"<{parent}\b([^>]*?)(/?)>", text)
    if m is None:
        if create_after is None:
            raise WorkbookPackageError(f"part xl/styles.xml has no <{parent}>")
        anchor = re.search(create_after, text)
        if anchor is None:
            raise WorkbookPackageError("part xl/styles.xml has no <styleSheet> root element")
        return text[:anchor.end()] + f'<{parent} count="1">{child}</{parent}>' + text[anchor.end():]
    attrs, empty = m.group(1), m.group(2)
    count = len(re.findall(rf"<{'numFmt' if parent == 'numFmts' else 'xf'}\b", _element_body(text, m, parent)))
    attrs = re.sub(r'\s*count="\d*"', "", attrs) + f' count="{count + 1}"'
    if empty:
        return text[:m.start()] + f"<{parent}{attrs}>{child}</{parent}>" + text[m.end():]
    close = text.index(f"</{parent}>", m.end())
    return text[:m.start()] + f"<{parent}{attrs}>" + text[m.end():close] + child + text[close:]


def _element_body(text: str, m: re.Match[str], parent: str) -> str:
    if m.group(2):
        return ""
    return text[m.end():text.index(f"</{parent}>", m.end())]
