"""CSV adapter: read the three raw tables from a folder, write output tables to one.

pyarrow's multi-threaded CSV reader does the parsing; id columns are always read as text so
leading zeros survive; anything the reader cannot type stays text and staging types it. The
dialect (delimiter, encoding, decimal comma) is detected from a sample or set (:mod:`.dialect`);
decimal commas become points here, so the core only ever sees one number format.

Output files are UTF-8 with a byte-order mark by default (Excel then shows accents right), months
as ``YYYY-MM`` and dates as ``YYYY-MM-DD``. A text cell (or header) that a spreadsheet would take for
a formula, one starting with ``= + - @``, a tab or a carriage return, is written with a leading
``'`` (CSV formula injection, OWASP): the inputs are untrusted, and ``=HYPERLINK(...)`` in a customer
name must stay text when the CSV is opened. Text that is only numbers (``-5``, ``-7.0, -2.0``) is
kept: without a letter it cannot call a function or another program.
"""

from __future__ import annotations

import codecs
import contextlib
import dataclasses
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

from crm_xl import contract
from crm_xl.config import header_key
from crm_xl.core.coerce import EXCEL_ERRORS, local_datetimes, out_of_range
from crm_xl.core.quality import QUALITY_COLUMNS, RowOf
from crm_xl.errors import InputError
from crm_xl.io.dialect import (
    DETECT,
    FALLBACK_ENCODING,
    NUMERIC_COLUMNS,
    SAMPLE_BYTES,
    CsvOptions,
    Sniffed,
    shown,
    sniff,
    unreadable_text,
)
from crm_xl.io.files import MANIFEST, new_id, real_path, recover_folder, remove_stale_temps, write_set
from crm_xl.io.locks import DEFAULT_WAIT, locked

RAW_TABLES = ("transactions", "customers", "products")
PARQUET_SUFFIXES = (".parquet", ".pq")
# Ids keep their leading zeros.
_TEXT_COLUMNS = ("invoice_id", "customer_id", "product_id", "store_id", "mobile_number", "customer_name",
                 "customer_group", "city", "email", "product_name", "brand", "category")
# Read as text and typed by the core's rule, the date-time as written: pyarrow would turn
# 2024-02-01T00:30+01:00 into 31 January (UTC).
_DATE_COLUMNS = ("invoice_date", "created_date")
_UTF8 = ("utf-8", "utf-8-sig")          # pyarrow decodes these itself (and skips a BOM)
# A quoted line break cut by pyarrow's block boundary shows as some parse error ("Expected 3 columns,
# got 2", "got out of sync with chunker"); reading with newlines_in_values is the cure to try first.
_PARSE_ERROR = "CSV parse"
_NOT_UTF8 = "invalid UTF8"              # pyarrow's words for a string column that is not UTF-8
_PYARROW_WORDS = re.compile(r"[^:']*:[^:']*?got \d+")   # "CSV parse error: Expected 3 columns, got 1", not the row
_NUMBER = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"
_COMMA_DECIMAL = r"^[+-]?(\d{1,3}(\.\d{3})+|\d*),\d+$"         # 109,65  1.234,56  ,5
_POINT_DECIMAL = r"^[+-]?\d*\.\d+$"
_THOUSANDS_DOTS = r"^[+-]?\d{1,3}(\.\d{3})+(,\d*)?$"           # 1.234  1.234,56 (not 12.5)
_SPACES = r"[\s\x{00a0}]+"      # RE2 syntax (pyarrow)
# What pyarrow reads as a missing value, except Excel's #N/A: that is a failed formula staging reports
# (error_value), never a blank id that hides it.
_NULLS = [text for text in pcsv.ConvertOptions().null_values if text not in EXCEL_ERRORS]
_FORMULA_START = r"^[=+\-@\t\r]"   # what a spreadsheet reads as the start of a formula (OWASP)
# Numbers alone (-5, or example_values' "-7.0, -2.0") cannot call a function or another program.
_ONLY_NUMBERS = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?(, [+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?)*$"
QUOTE = "'"


@dataclasses.dataclass(frozen=True)
class CsvTable:
    """A raw table read from a CSV file, with the dialect it was read in."""

    table: str
    path: Path
    frame: pd.DataFrame
    delimiter: str
    encoding: str
    decimal: str
    encoding_guessed: bool

    def dialect_note(self) -> str:
        """How the file was read, as `` (delimiter ';', decimal comma, cp1252)``; empty for plain UTF-8 CSV."""
        parts = [f"delimiter '{shown(self.delimiter)}'"] if self.delimiter != "," else []
        parts += ["decimal comma"] if self.decimal == "," else []
        parts += [self.encoding] if self.encoding not in _UTF8 else []
        return f" ({', '.join(parts)})" if parts else ""

    def notes(self) -> list[dict[str, object]]:
        """Data-quality rows about how the file was read (only what a user should check)."""
        if not self.encoding_guessed:
            return []
        return [{"table": self.table, "column": "(file)", "rule": "not_utf8", "severity": "warning",
                 "rows": len(self.frame), "example_rows": "", "example_values": self.encoding,
                 "message": f"{self.path.name} is not UTF-8: read as Windows-1252 (cp1252); check that accented "
                            "text looks right, or save the file as 'CSV UTF-8' or set csv_encoding"}]


def read_raw_folder(folder: str | Path, options: CsvOptions = DETECT) -> dict[str, pd.DataFrame]:
    """``transactions.csv``, ``customers.csv`` and ``products.csv`` from ``folder``."""
    return {name: file.frame for name, file in read_raw_files(folder, options).items()}


def read_raw_files(folder: str | Path, options: CsvOptions = DETECT) -> dict[str, CsvTable]:
    """The three raw tables of ``folder`` with how each was read."""
    folder = Path(folder)
    return {name: read_csv_file(folder / f"{name}.csv", name, options) for name in RAW_TABLES}


def read_csv(path: str | Path, table: str, options: CsvOptions = DETECT) -> pd.DataFrame:
    """One raw table; a clear :class:`InputError` when the file is missing or not CSV."""
    return read_csv_file(path, table, options).frame


def read_csv_file(path: str | Path, table: str, options: CsvOptions = DETECT,
                  headers: Mapping[str, str] | None = None) -> CsvTable:
    """One raw table and its dialect: detected from the first 64 KB unless ``options`` set it.

    ``headers`` (contract column -> the file's header, from the ``map.*`` settings) lets a renamed
    id, date or number column be read as the contract column it holds; the headers stay as in the
    file (the core renames them).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(table, f"file not found: {path}")
    with path.open("rb") as handle:
        sample = handle.read(SAMPLE_BYTES + 1)
    sniffed = sniff(sample[:SAMPLE_BYTES], len(sample) <= SAMPLE_BYTES, options, table, path.name)
    names = _Names(headers or {})
    arrow, sniffed = _read(path, table, sniffed, options, names)
    check_unique_headers(table, path.name, arrow.column_names)
    arrow, decimal = _numbers(arrow, _wants_text_numbers(sniffed, options), options.decimal, names)
    return CsvTable(table=table, path=path, frame=_typed_dates(arrow.to_pandas(date_as_object=False), names),
                    delimiter=sniffed.delimiter, encoding=sniffed.encoding, decimal=decimal,
                    encoding_guessed=sniffed.fallback)


def read_raw_file(path: str | Path, table: str, options: CsvOptions = DETECT, headers: Mapping[str, str] | None = None,
                  named_in: str = "") -> tuple[pd.DataFrame, list[dict[str, object]]]:
    """A raw table from a CSV or Parquet file (by its suffix), and the data-quality notes about how it
    was read; ``named_in`` says where the file was named (a Config cell), for the messages."""
    path = Path(path)
    if not is_parquet(path):
        file = read_csv_file(path, table, options, headers)
        return file.frame, file.notes()
    where = f" (named in {named_in})" if named_in else ""
    if not path.is_file():
        raise InputError(table, f"file not found: {path}{where}")
    try:
        frame = pd.read_parquet(path)
    except (OSError, ValueError) as exc:
        detail = " ".join(str(exc).split())[:200]
        raise InputError(table, f"{path.name}{where} is not a readable Parquet file: {detail}") from None
    check_unique_headers(table, path.name, [str(c) for c in frame.columns])
    return frame, []


def check_unique_headers(table: str, name: str, headers: list[str]) -> None:
    """:class:`InputError` when two columns have the same header (as the ``map.*`` settings compare
    headers: ignoring case and surrounding spaces): which one holds the column would be a guess."""
    seen: dict[str, int] = {}
    for position, header in enumerate(headers, start=1):
        first = seen.setdefault(header_key(header), position)
        if first != position:
            raise InputError(table, f"{name} has two columns named {header_key(header)!r} (columns {first} and "
                                    f"{position}: {headers[first - 1]!r} and {header!r}): rename or remove one")


class _Names:
    """Which contract column a header of the file holds: the one mapped to it, else its own name."""

    def __init__(self, headers: Mapping[str, str]) -> None:
        self._columns = {header_key(header): column for column, header in headers.items()}

    def of(self, header: str) -> str:
        return self._columns.get(header_key(header), header_key(header))

    def among(self, headers: Iterable[str], columns: Iterable[str]) -> list[str]:
        wanted = set(columns)
        return [h for h in headers if self.of(h) in wanted]


def _typed_dates(frame: pd.DataFrame, names: _Names) -> pd.DataFrame:
    """Date columns become date-times when every value is one in the range the core takes
    (1900-01-01 .. 2262-04-11); otherwise they stay text as written, so staging can report the
    lines whose date cannot be read or is out of range, and a load keeps them as typed."""
    for column in frame.columns:
        if names.of(str(column)) in _DATE_COLUMNS:
            text = frame[column]
            stamps = local_datetimes(text)
            unread = text[stamps.isna().to_numpy() & text.notna().to_numpy()]
            # only blanks failed: every value is a date-time
            if (unread.str.strip() == "").all() and not out_of_range(stamps).any():
                frame[column] = stamps
    return frame


def _read(path: Path, table: str, sniffed: Sniffed, options: CsvOptions, names: _Names
          ) -> tuple[pa.Table, Sniffed]:
    """The parsed file and the dialect that read it.

    What a sample cannot show (a line break in a quoted value, a non-UTF-8 byte past it) is learnt
    from a failed read; only then is the file read again.
    """
    while True:
        try:
            return _parse(path, sniffed, options, names), sniffed
        except pa.ArrowInvalid as exc:
            retry = _second_try(sniffed, options, str(exc))
            if retry is not None:
                sniffed = retry
            elif options.encoding and _NOT_UTF8 in str(exc):
                raise _not_the_set_encoding(table, path, options.encoding) from None
            else:
                raise _unreadable(table, path, sniffed, exc, _bad_row(path, sniffed, options, names)) from None
        except UnicodeDecodeError as exc:
            if not options.encoding:
                raise unreadable_text(table, path.name, exc) from None
            detail = f" ({exc.reason} at byte {exc.start:,})"
            raise _not_the_set_encoding(table, path, options.encoding, detail) from None


def _not_the_set_encoding(table: str, path: Path, encoding: str, detail: str = "") -> InputError:
    return InputError(table, f"{path.name} is not {encoding} text{detail}: set csv_encoding to the file's "
                             "encoding (e.g. utf-8, cp1252, latin-1), or to auto")


class _NotUtf8(pa.ArrowInvalid):
    """A column pyarrow could only read as bytes: the file is not UTF-8 past the sample."""


def _parse(path: Path, sniffed: Sniffed, options: CsvOptions, names: _Names,
           invalid_row: Callable[[pcsv.InvalidRow], str] | None = None) -> pa.Table:
    text_types = {n: pa.string() for n in names.among(sniffed.header, (*_TEXT_COLUMNS, *_DATE_COLUMNS))}
    if _wants_text_numbers(sniffed, options):
        text_types.update({n: pa.string() for n in names.among(sniffed.header, NUMERIC_COLUMNS)})
    arrow = pcsv.read_csv(
        path,
        read_options=pcsv.ReadOptions(encoding="utf8" if sniffed.encoding in _UTF8 else sniffed.encoding,
                                      use_threads=invalid_row is None),
        parse_options=pcsv.ParseOptions(delimiter=sniffed.delimiter, newlines_in_values=sniffed.newlines_in_values,
                                        invalid_row_handler=invalid_row),
        convert_options=pcsv.ConvertOptions(column_types=text_types, strings_can_be_null=True, null_values=_NULLS))
    if any(pa.types.is_binary(field.type) for field in arrow.schema):
        raise _NotUtf8(_NOT_UTF8)
    return arrow


def _second_try(sniffed: Sniffed, options: CsvOptions, message: str) -> Sniffed | None:
    if _PARSE_ERROR in message and not sniffed.newlines_in_values:
        return dataclasses.replace(sniffed, newlines_in_values=True)
    if _NOT_UTF8 in message and sniffed.encoding in _UTF8 and not options.encoding:
        return dataclasses.replace(sniffed, encoding=FALLBACK_ENCODING, fallback=True)
    return None


def _bad_row(path: Path, sniffed: Sniffed, options: CsvOptions, names: _Names) -> pcsv.InvalidRow | None:
    """The first row pyarrow cannot split as the header, found by reading the file once more (only
    after a failed read), for its line number."""
    found: list[pcsv.InvalidRow] = []

    def first(row: pcsv.InvalidRow) -> str:
        found.append(row)
        return "error"

    with contextlib.suppress(pa.ArrowInvalid, UnicodeDecodeError):
        _parse(path, sniffed, options, names, first)
    return found[0] if found else None


def _unreadable(table: str, path: Path, sniffed: Sniffed, exc: pa.ArrowInvalid,
                row: pcsv.InvalidRow | None) -> InputError:
    """The error for a file pyarrow cannot parse. pyarrow's message quotes the offending row: never shown,
    since the file may not be the user's to show (a line of someone's passwd file, a key); its line
    number and field count are."""
    if row is not None:
        where = f"line {row.number:,}" if row.number is not None else "a line"
        fields = f"{row.actual_columns} field" + ("s" if row.actual_columns != 1 else "")
        detail = f"{where} has {fields} where the header has {row.expected_columns}"
    else:
        words = _PYARROW_WORDS.match(str(exc))
        detail = words.group() if words else str(exc).split(":", 1)[0]
    return InputError(table, f"{path.name} is not a readable CSV file (read with delimiter "
                             f"'{shown(sniffed.delimiter)}', encoding {sniffed.encoding}): {detail}; check the file, "
                             "or set csv_delimiter / csv_encoding")


def _wants_text_numbers(sniffed: Sniffed, options: CsvOptions) -> bool:
    """Numeric columns are read as text when they may hold decimal commas, and converted here."""
    return options.decimal == "," or (options.decimal is None and sniffed.delimiter != ",")


def _numbers(arrow: pa.Table, as_text: bool, decimal: str | None, names: _Names) -> tuple[pa.Table, str]:
    """Numeric columns read as text made numbers; the decimal separator used (detected if ``None``)."""
    numeric = names.among(arrow.column_names, NUMERIC_COLUMNS) if as_text else []
    columns = {n: pc.replace_substring_regex(arrow[n], _SPACES, "") for n in numeric}
    decimal = decimal or _guess_decimal(columns.values())
    for name, text in columns.items():
        arrow = arrow.set_column(arrow.column_names.index(name), name, _to_numbers(arrow[name], text, decimal))
    return arrow, decimal


def _guess_decimal(columns: Iterable[pa.ChunkedArray]) -> str:
    """A comma when more values look like ``109,65`` than like ``109.65`` (``1.234`` counts for neither)."""
    commas = points = 0
    for text in columns:
        commas += pc.sum(pc.match_substring_regex(text, _COMMA_DECIMAL)).as_py() or 0
        points += pc.sum(pc.and_(pc.match_substring_regex(text, _POINT_DECIMAL),
                                 pc.invert(pc.match_substring_regex(text, _THOUSANDS_DOTS)))).as_py() or 0
    return "," if commas > points else "."


def _to_numbers(raw: pa.ChunkedArray, text: pa.ChunkedArray, decimal: str) -> pa.ChunkedArray:
    """Floats when every value reads; else text with the readable values in point notation, the rest as given
    (so staging reports them as they are in the file)."""
    if decimal == ",":
        dotted = pc.if_else(pc.match_substring_regex(text, _THOUSANDS_DOTS), pc.replace_substring(text, ".", ""), text)
        text = pc.replace_substring(dotted, ",", ".")
    readable = pc.match_substring_regex(text, _NUMBER)
    if pc.all(pc.fill_null(readable, True)).as_py():
        return pc.cast(text, pa.float64())
    return pc.if_else(pc.fill_null(readable, False), text, raw)


def with_read_notes(quality: pd.DataFrame, notes: Iterable[dict[str, object]]) -> pd.DataFrame:
    """The data_quality table with the notes about how the files were read (:meth:`CsvTable.notes`), first."""
    notes = list(notes)
    if not notes:
        return quality
    frame = pd.DataFrame(notes, columns=list(QUALITY_COLUMNS)).astype(quality.dtypes.to_dict())
    return pd.concat([frame, quality], ignore_index=True)


def write_tables(tables: dict[str, pd.DataFrame], folder: str | Path, *, bom: bool = True,
                 wait: float = DEFAULT_WAIT, run_id: str | None = None) -> dict[str, Path]:
    """Each table as ``NAME.csv`` in ``folder``, written as one set with a manifest
    (:func:`crm_xl.io.files.write_set`), under the folder's lock (``wait`` seconds for another writer).

    ``bom``: start with the UTF-8 byte-order mark, without which Excel reads UTF-8 as the
    Windows code page (``São`` shows as ``SÃ£o``); our reader skips it.
    """
    folder = real_path(folder)
    names = {f"{name}.csv": name for name in tables}
    folder.parent.mkdir(parents=True, exist_ok=True)
    with locked(folder, wait=wait):
        recover_folder(folder)
        remove_stale_temps(folder.parent, [folder.name])
        remove_stale_temps(folder, [*names, MANIFEST])
        written = write_set(folder, {file: (lambda temp, name=name: write_csv(tables[name], temp, name, bom=bom))
                                     for file, name in names.items()}, run_id or new_id())
    return {names[file]: path for file, path in written.items()}


def write_csv(frame: pd.DataFrame, path: str | Path, table: str = "", *, bom: bool = True) -> None:
    """One output table as CSV at ``path`` (written in place: callers make it atomic); ``table``
    names its contract table, whose month columns are written YYYY-MM."""
    arrow = _arrow_table(frame, _month_columns(table))
    with open(path, "wb") as handle:
        if bom:
            handle.write(codecs.BOM_UTF8)
        pcsv.write_csv(arrow, handle)


def is_parquet(path: str | Path) -> bool:
    """Whether :func:`read_raw_file` reads ``path`` as Parquet (by its suffix) rather than CSV."""
    return Path(path).suffix.lower() in PARQUET_SUFFIXES


def file_rows(tables: Iterable[str] = RAW_TABLES) -> dict[str, RowOf]:
    """Row numbering of ``tables`` read from CSV files: the line number, the header being line 1."""
    return {name: (lambda positions: positions + 1) for name in tables}


def _month_columns(table: str) -> set[str]:
    columns = contract.TABLES[table][1] if table in contract.TABLES else []
    return {name for name, kind, _ in columns if kind == "month"}


def inert(text: str) -> str:
    """``text`` as :func:`write_csv` writes a text cell: with a leading ``'`` when a spreadsheet would
    read it as a formula."""
    return _inert_array(pa.array([text], pa.string()))[0].as_py()


def _inert_array(array: pa.Array) -> pa.Array:
    """Text that starts like a formula (and is not just a number) with a leading ``'``; other columns as given."""
    if not (pa.types.is_string(array.type) or pa.types.is_large_string(array.type)):
        return array
    risky = pc.fill_null(pc.and_(pc.match_substring_regex(array, _FORMULA_START),
                                 pc.invert(pc.match_substring_regex(array, _ONLY_NUMBERS))), False)
    if not pc.any(risky).as_py():
        return array
    quoted = pc.binary_join_element_wise(pa.scalar(QUOTE, array.type), array, pa.scalar("", array.type))
    return pc.if_else(risky, quoted, array)


def _arrow_table(frame: pd.DataFrame, months: set[str]) -> pa.Table:
    """Categoricals as text, months as YYYY-MM and other datetimes as dates, as a CSV reader expects them;
    text that would be a formula made inert (:func:`inert`), headers included."""
    arrays, names = [], []
    for column in frame.columns:
        series = frame[column]
        if isinstance(series.dtype, pd.CategoricalDtype):
            array = pa.array(series.astype("str").to_numpy(dtype=object, na_value=None), type=pa.string())
        else:
            array = pa.array(series)
            if pa.types.is_timestamp(array.type):
                array = pc.strftime(array, "%Y-%m") if str(column) in months else array.cast(pa.date32())
        arrays.append(_inert_array(array))
        names.append(str(column))
    return pa.Table.from_arrays(arrays, names=_inert_array(pa.array(names, pa.string())).to_pylist())
