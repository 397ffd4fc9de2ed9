"""CSV dialects: the settings that name one, and its detection from the first bytes of a file.

Excel writes "CSV" differently per locale and version: ``,`` or ``;`` between fields, a decimal
comma in PT/DE/FR, Windows-1252 or UTF-8 with a byte-order mark. Detection looks at a small
sample only (:data:`SAMPLE_BYTES`), so a 1M-line file is not read twice; the settings
``csv_delimiter``, ``csv_encoding`` and ``csv_decimal`` override it. Standard library only, so the
workbook layout can import the settings without loading pyarrow.
"""

from __future__ import annotations

import codecs
import csv
import dataclasses
import io
from collections.abc import Mapping
from typing import Any

from crm_xl.errors import ConfigError, InputError

SAMPLE_BYTES = 64 * 1024
AUTO = "auto"
DELIMITERS = (",", ";", "\t", "|")
NUMERIC_COLUMNS = ("quantity", "revenue", "unit_size")
FALLBACK_ENCODING = "cp1252"
_DELIMITER_NAMES = {"tab": "\t", "\\t": "\t", "comma": ",", "semicolon": ";", "pipe": "|"}
_SHOWN = {"\t": "tab"}
_SAMPLE_RECORDS = 200
_AGREEING_SHARE = 0.5

#: Setting -> (default, description); the Config sheet lists them with the ``*_file`` settings.
CSV_SETTINGS: dict[str, tuple[str, str]] = {
    "csv_delimiter": (AUTO, "Field delimiter of the CSV files read: auto (found from the header line), or one "
                            "of , ; | tab"),
    "csv_decimal": (AUTO, "Decimal separator of quantity, revenue and unit_size in CSV files: auto (a comma when "
                          "the delimiter is not a comma and values look like 109,65), or . or ,"),
    "csv_encoding": (AUTO, "Text encoding of the CSV files read: auto (UTF-8 with or without BOM, else "
                           "Windows-1252 with a data-quality warning), or a name such as utf-8, cp1252, latin-1"),
}


@dataclasses.dataclass(frozen=True)
class CsvOptions:
    """What the settings fix about a CSV file's dialect; ``None`` means detect it."""

    delimiter: str | None = None
    decimal: str | None = None
    encoding: str | None = None

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> CsvOptions:
        """Parse ``csv_*`` settings (blank or ``auto`` = detect); :class:`ConfigError` naming a bad one."""
        return cls(delimiter=_parse_delimiter(_text(settings.get("csv_delimiter"))),
                   decimal=_parse_decimal(_text(settings.get("csv_decimal"))),
                   encoding=_parse_encoding(_text(settings.get("csv_encoding"))))


#: Detect everything: the options when no setting is given.
DETECT = CsvOptions()


def split_settings(settings: Mapping[str, Any]) -> tuple[CsvOptions, dict[str, Any]]:
    """The CSV options and the remaining settings (those of the core) of one mapping."""
    csv_part = {k: v for k, v in settings.items() if k in CSV_SETTINGS}
    return CsvOptions.from_settings(csv_part), {k: v for k, v in settings.items() if k not in CSV_SETTINGS}


def _text(value: Any) -> str | None:
    # A blank cell or "auto" in any case means "detect"; a tab typed into a cell is kept, not stripped.
    if value is None:
        return None
    text = str(value)
    if text == "\t":
        return text
    text = text.strip()
    return None if text.lower() in ("", AUTO) else text


def _parse_delimiter(text: str | None) -> str | None:
    if text is None:
        return None
    delimiter = _DELIMITER_NAMES.get(text.lower(), text)
    if len(delimiter) != 1 or delimiter in "\"\r\n" or delimiter.isalnum():
        raise ConfigError("csv_delimiter", f"got {text!r}; allowed: auto, or one character such as , ; | "
                                           "or the word tab")
    return delimiter


def _parse_decimal(text: str | None) -> str | None:
    if text is None:
        return None
    if text not in (".", ","):
        raise ConfigError("csv_decimal", f"got {text!r}; allowed: auto, . (point) or , (comma)")
    return text


def _parse_encoding(text: str | None) -> str | None:
    if text is None:
        return None
    try:
        return codecs.lookup(text).name
    except LookupError:
        raise ConfigError("csv_encoding", f"got {text!r}, which is not a known text encoding; allowed: auto, or "
                                          "a name such as utf-8, utf-8-sig, cp1252, latin-1, utf-16") from None


@dataclasses.dataclass(frozen=True)
class Sniffed:
    """What the sample says: Python codec, delimiter, header names, whether quoted values may hold line breaks.

    ``fallback`` is True when the encoding was not UTF-8 and auto-detection chose Windows-1252.
    """

    encoding: str
    delimiter: str
    header: list[str]
    newlines_in_values: bool
    fallback: bool = False


def sniff(sample: bytes, whole_file: bool, options: CsvOptions, table: str, name: str) -> Sniffed:
    """Encoding, delimiter and header from the first bytes of a file (``whole_file``: the sample is all of it)."""
    encoding, fallback = _encoding(sample, whole_file, options, table, name)
    text = _decode(sample, encoding, whole_file)
    delimiter = options.delimiter or _delimiter(text, whole_file)
    records = _records(text, delimiter, whole_file)
    header = records[0] if records else []
    # A file that quotes values may quote line breaks anywhere: the slower reader that allows them
    # (about +30 % of the read) is then used from the start, so a value never splits into two rows.
    return Sniffed(encoding, delimiter, header, '"' in text, fallback)


def _encoding(sample: bytes, whole_file: bool, options: CsvOptions, table: str, name: str) -> tuple[str, bool]:
    if options.encoding:
        return options.encoding, False
    if sample.startswith(codecs.BOM_UTF8):
        return "utf-8-sig", False
    if sample.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):   # Excel's "Unicode Text"
        return "utf-16", False
    try:
        codecs.getincrementaldecoder("utf-8")().decode(sample, final=whole_file)
        return "utf-8", False
    except UnicodeDecodeError:
        pass
    try:
        sample.decode(FALLBACK_ENCODING)
    except UnicodeDecodeError as exc:
        raise unreadable_text(table, name, exc) from None
    return FALLBACK_ENCODING, True


def unreadable_text(table: str, name: str, exc: UnicodeDecodeError) -> InputError:
    """The error for a file whose bytes are text in no encoding tried."""
    return InputError(table, f"{name} is neither UTF-8 nor Windows-1252 text (it has the byte "
                             f"0x{exc.object[exc.start]:02x}): save it from Excel as "
                             "'CSV UTF-8', or set csv_encoding to its encoding (e.g. latin-1, utf-16)")


def _decode(sample: bytes, encoding: str, whole_file: bool) -> str:
    # The sample may end inside a character; only the header and the first records are needed.
    return codecs.getincrementaldecoder(encoding)(errors="replace").decode(sample, final=whole_file)


def _records(text: str, delimiter: str, whole_file: bool) -> list[list[str]]:
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    records: list[list[str]] = []
    try:
        for record in reader:
            records.append(record)
            if len(records) > _SAMPLE_RECORDS:
                break
    except csv.Error:   # a sample cut inside a quoted value; what was read is enough
        pass
    if not whole_file and len(records) > 1:
        records.pop()   # the last record may be cut by the end of the sample
    return records


def _delimiter(text: str, whole_file: bool) -> str:
    """The candidate that splits the header into the most fields, preferring those the sample's rows agree with.

    Agreeing means at least half the records have as many fields as the header: a ``;`` inside a
    quoted header name splits the header but not the rows. A decimal comma in a semicolon file
    splits rows but not the header, so it never wins. A header no candidate splits is one column.
    """
    scored = []
    for rank, candidate in enumerate(DELIMITERS):
        records = _records(text, candidate, whole_file)
        if not records or len(records[0]) < 2:
            continue
        fields, rows = len(records[0]), [r for r in records[1:] if r]
        agree = not rows or sum(len(r) == fields for r in rows) >= _AGREEING_SHARE * len(rows)
        scored.append((agree, fields, -rank, candidate))
    return max(scored)[-1] if scored else ","


def shown(delimiter: str) -> str:
    """A delimiter as a user would type it in a setting."""
    return _SHOWN.get(delimiter, delimiter)
