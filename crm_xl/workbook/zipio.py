"""A small zip writer for OOXML packages: copy entries byte for byte, stream new ones.

Python's zipfile can only recompress an entry it copies; a refresh must keep untouched parts
(the VBA project, raw sheets, drawings) exactly as they were, so their stored bytes, CRC and
timestamp are copied raw. New entries are deflated while streamed, with a fixed timestamp so the
same content gives the same bytes; Zip64 fields are written only where a size or offset needs them.
"""

from __future__ import annotations

import struct
import zipfile
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO


class WorkbookPackageError(ValueError):
    """The workbook or the request cannot be handled; the message says what and where."""


_DOS_EPOCH = (0, (1 << 5) | 1)  # (time, date) = 1980-01-01 00:00:00, for deterministic new entries
_GROWTH_HINT_ID = 0xA220  # OPC "growth hint" padding extra field (ECMA-376 Part 2)
_ZIP64_ID = 0x0001
_RESERVED_EXTRA = 20  # room for a zip64 extra (2+2+8+8) in streamed local headers


@dataclass
class _CentralEntry:
    name: bytes
    flags: int
    method: int
    time: int
    date: int
    crc: int
    csize: int
    usize: int
    offset: int


class ZipWriter:
    """A small deterministic zip writer that copies entries raw and streams new ones.

    Why not :class:`zipfile.ZipFile`: it cannot copy an entry's compressed bytes without
    recompressing them, and byte-identical VBA/drawing/pivot parts are the point. Zip64 records
    are written only where sizes or offsets need them (small workbooks stay plain zip, which
    every reader accepts). A streamed entry's size is unknown up front, so its local header
    reserves 20 bytes as an OPC growth-hint extra field that becomes the zip64 extra if the
    entry turns out to be larger than 4 GiB. Needs a seekable output (a temporary file).
    """

    zip64_limit = zipfile.ZIP64_LIMIT  # class attribute so tests can exercise the zip64 path

    def __init__(self, fp: BinaryIO) -> None:
        self.fp = fp
        self.entries: list[_CentralEntry] = []

    def copy_raw(self, src: BinaryIO, info: zipfile.ZipInfo, chunk: int = 1 << 20) -> None:
        """Copy one entry of the open source file ``src`` with its compressed bytes unchanged."""
        src.seek(info.header_offset)
        header = src.read(30)
        if header[:4] != b"PK\x03\x04":
            raise WorkbookPackageError(f"corrupt zip: no local header for {info.filename}")
        name_len, extra_len = struct.unpack("<2H", header[26:30])
        src.seek(info.header_offset + 30 + name_len)
        local_extra = src.read(extra_len)
        time = (info.date_time[3] << 11) | (info.date_time[4] << 5) | (info.date_time[5] // 2)
        date = ((info.date_time[0] - 1980) << 9) | (info.date_time[1] << 5) | info.date_time[2]
        entry = _CentralEntry(info.filename.encode("utf-8"), info.flag_bits & 0x0806, info.compress_type, time, date,
                              info.CRC, info.compress_size, info.file_size, self.fp.tell())
        big = self._needs_zip64(entry.csize, entry.usize)
        if big:
            extra = struct.pack("<2H2Q", _ZIP64_ID, 16, entry.usize, entry.csize)
        else:  # keep the source's extra fields (padding, timestamps) unless they hold zip64 sizes
            extra = b"" if _has_extra_id(local_extra, _ZIP64_ID) else local_extra
        self.fp.write(self._local_header(entry, extra, big))
        left = info.compress_size
        while left:
            data = src.read(min(chunk, left))
            if not data:
                raise WorkbookPackageError(f"corrupt zip: {info.filename} is truncated")
            self.fp.write(data)
            left -= len(data)
        self.entries.append(entry)

    def write_stream(self, name: str, chunks: Iterable[bytes | memoryview], level: int = 6) -> None:
        """Deflate ``chunks`` into a new entry, never holding the whole entry in memory."""
        raw_name = name.encode("utf-8")
        flags = 0x0800 if not raw_name.isascii() else 0
        entry = _CentralEntry(raw_name, flags, zipfile.ZIP_DEFLATED, *_DOS_EPOCH, 0, 0, 0, self.fp.tell())
        padding = struct.pack("<2H2H12x", _GROWTH_HINT_ID, 16, 0xA028, 0)
        self.fp.write(self._local_header(entry, padding, False))
        compressor = zlib.compressobj(level, zlib.DEFLATED, -15)
        for chunk in chunks:
            entry.crc = zlib.crc32(chunk, entry.crc)
            entry.usize += len(chunk)
            out = compressor.compress(chunk)
            self.fp.write(out)
            entry.csize += len(out)
        out = compressor.flush()
        self.fp.write(out)
        entry.csize += len(out)
        end = self.fp.tell()
        big = self._needs_zip64(entry.csize, entry.usize)
        extra = struct.pack("<2H2Q", _ZIP64_ID, 16, entry.usize, entry.csize) if big else padding
        self.fp.seek(entry.offset)
        self.fp.write(self._local_header(entry, extra, big))
        self.fp.seek(end)
        self.entries.append(entry)

    def close(self) -> None:
        """Write the central directory (with zip64 end records when needed)."""
        start = self.fp.tell()
        for e in self.entries:
            self.fp.write(self._central_header(e))
        size = self.fp.tell() - start
        count = len(self.entries)
        if count >= 0xFFFF or self._needs_zip64(start, size):
            z64_offset = self.fp.tell()
            self.fp.write(struct.pack("<4sQ2H2L4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, count, count, size, start))
            self.fp.write(struct.pack("<4sLQL", b"PK\x06\x07", 0, z64_offset, 1))
            self.fp.write(struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0))
        else:
            self.fp.write(struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, count, count, size, start, 0))

    def _needs_zip64(self, *values: int) -> bool:
        return any(v > self.zip64_limit for v in values)

    @staticmethod
    def _local_header(e: _CentralEntry, extra: bytes, big: bool) -> bytes:
        csize, usize = (0xFFFFFFFF, 0xFFFFFFFF) if big else (e.csize, e.usize)
        return struct.pack("<4s5H3L2H", b"PK\x03\x04", 45 if big else 20, e.flags, e.method, e.time, e.date, e.crc,
                           csize, usize, len(e.name), len(extra)) + e.name + extra

    def _central_header(self, e: _CentralEntry) -> bytes:
        fields, extra = [e.usize, e.csize, e.offset], b""
        for i, value in enumerate(fields):
            if self._needs_zip64(value):
                extra += struct.pack("<Q", value)
                fields[i] = 0xFFFFFFFF
        if extra:
            extra = struct.pack("<2H", _ZIP64_ID, len(extra)) + extra
        version = 45 if extra else 20
        usize, csize, offset = fields
        return struct.pack("<4s6H3L5H2L", b"PK\x01\x02", version, version, e.flags, e.method, e.time, e.date, e.crc,
                           csize, usize, len(e.name), len(extra), 0, 0, 0, 0, offset) + e.name + extra


def _has_extra_id(extra: bytes, header_id: int) -> bool:
    pos = 0
    while pos + 4 <= len(extra):
        hid, size = struct.unpack_from("<2H", extra, pos)
        if hid == header_id:
            return True
        pos += 4 + size
    return False


def copy_with_parts(src: str | Path, out: str | Path, parts: Mapping[str, bytes]) -> None:
    """Write ``out`` as the package ``src`` with the entries named in ``parts`` replaced by their
    new content; every other entry is copied with its compressed bytes unchanged."""
    with zipfile.ZipFile(src) as zf, open(src, "rb") as raw, open(out, "wb+") as handle:
        writer = ZipWriter(handle)
        for info in zf.infolist():
            if info.filename in parts:
                writer.write_stream(info.filename, [parts[info.filename]])
            else:
                writer.copy_raw(raw, info)
        writer.close()
