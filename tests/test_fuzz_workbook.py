"""A damaged or hostile workbook never gets past the refresh as a traceback, a crash or a changed file.

A small refreshed book (the golden company) is mutated: the file cut short, bytes flipped, parts
removed, emptied, cut or filled with garbage, XML broken or given a DTD (billion laughs), sheets
given a far cell (XFD1048576) or an absurd dimension, a part turned into a zip bomb, the central
directory damaged. For every mutant ``crm-xl refresh`` (the CLI's ``main``, in process) either
fails with exactly one line on stderr and exit code 2, the book byte-identical and nothing left in
its folder, or succeeds (a harmless mutation) with the same output tables as the unmutated book.
A few mutants run as real subprocesses too: a reader that allocated the whole grid would abort the
process, not raise.

The mutants are drawn from a fixed seed, so every run tests the same ones: a few dozen in the fast
suite, a few hundred marked slow.
"""

from __future__ import annotations

import datetime as dt
import io
import random
import re
import shutil
import struct
import subprocess
import sys
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from python_calamine import CalamineWorkbook

from crm_xl.cli import main
from crm_xl.io.csv import read_csv
from crm_xl.workbook import layout
from crm_xl.workbook.book import load_raw, new_workbook, set_settings
from crm_xl.workbook.package import find_tables
from crm_xl.workbook.refresh import refresh_workbook

GOLDEN = Path(__file__).parent / "fixtures" / "golden"
COMPARED = ("customer_snapshot", "monthly_summary", "data_quality")
Mutant = tuple[str, bytes]


@pytest.fixture(scope="module")
def original(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The golden company in a fresh workbook, refreshed once (so every output sheet is full)."""
    book = tmp_path_factory.mktemp("original") / "book.xlsm"
    new_workbook(book)
    load_raw(book, {name: read_csv(GOLDEN / f"{name}.csv", name) for name in ("transactions", "customers",
                                                                                  "products")})
    set_settings(book, {"report_month": "2024-12", "history_months": 24})
    refresh_workbook(book, now=dt.datetime(2025, 1, 2, 3, 4, 5))
    return book


@pytest.fixture(scope="module")
def expected(original: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[list[object]]]:
    """The output tables a second refresh of the unmutated book gives (what a harmless mutant must give)."""
    again = tmp_path_factory.mktemp("again") / "book.xlsm"
    shutil.copy2(original, again)
    refresh_workbook(again)
    return output_tables(again)


def output_tables(book: Path) -> dict[str, list[list[object]]]:
    workbook = CalamineWorkbook.from_path(str(book), load_tables=True)
    try:
        return {name: workbook.get_table_by_name(name).to_python() for name in COMPARED}
    finally:
        workbook.close()


# --- mutations ---------------------------------------------------------------------------------------


def parts_of(data: bytes) -> list[tuple[zipfile.ZipInfo, bytes]]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return [(info, zf.read(info)) for info in zf.infolist()]


def rebuilt(data: bytes, edit: Callable[[str, bytes], bytes | None]) -> bytes:
    """The package with each part replaced by ``edit(name, bytes)`` (None drops it)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for info, body in parts_of(data):
            new = edit(info.filename, body)
            if new is not None:
                zf.writestr(info, new, zipfile.ZIP_DEFLATED)
    return out.getvalue()


def one_part(data: bytes, part: str, change: Callable[[bytes], bytes | None]) -> bytes:
    return rebuilt(data, lambda name, body: change(body) if name == part else body)


BILLION_LAUGHS = (b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
                  + b"".join(b'<!ENTITY lol%d "%s">' % (i + 1, (b"&lol%d;" % i if i else b"&lol;") * 10)
                             for i in range(9))
                  + b"]>")
FAR_CELL = b'<row r="1048576"><c r="XFD1048576"><v>1</v></c></row></sheetData>'


def part_changes(rng: random.Random) -> list[tuple[str, Callable[[bytes], bytes | None]]]:
    """What can happen to one part: each a label and a change of its bytes."""
    def flip(body: bytes) -> bytes:
        if not body:
            return b"\xff"
        mutable = bytearray(body)
        for _ in range(rng.randint(1, 8)):
            mutable[rng.randrange(len(mutable))] = rng.randrange(256)
        return bytes(mutable)

    def with_entities(body: bytes) -> bytes:
        root = body.find(b"<", body.find(b"?>") + 2 if body.startswith(b"<?xml") else 0)
        return BILLION_LAUGHS + body[root:].replace(b">", b">&lol9;", 1)

    return [
        ("removed", lambda body: None),
        ("emptied", lambda body: b""),
        ("cut in half", lambda body: body[:len(body) // 2]),
        ("garbage", lambda body: bytes(rng.randrange(256) for _ in range(64))),
        ("bytes flipped", flip),
        ("a tag broken", lambda body: body.replace(b">", b"<", 1) if b">" in body else b"<"),
        ("billion laughs", with_entities),
        ("external entity", lambda body: b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "/etc/passwd">]>'
                                         + body[body.find(b"<", 5):].replace(b">", b">&e;", 1)),
        ("far cell", lambda body: body.replace(b"</sheetData>", FAR_CELL, 1) if b"</sheetData>" in body
         else body + b" "),
        ("absurd dimension", lambda body: body.replace(b"<dimension ref=\"", b"<dimension ref=\"A1:XFD1048576\" x=\"",
                                                       1)),
        ("zip bomb", lambda body: body.replace(b"</", b" " * (8 << 20) + b"</", 1)),
    ]


def whole_file_changes(rng: random.Random, data: bytes) -> Iterator[Mutant]:
    """Damage to the file as a whole: truncation, flipped bytes, a broken central directory."""
    end = data.rfind(b"PK\x05\x06")
    count, _, start = struct.unpack_from("<HLL", data, end + 10)
    while True:
        kind = rng.randrange(6)
        if kind == 0:
            cut = rng.randrange(len(data))
            yield f"truncated to {cut} bytes", data[:cut]
        elif kind == 1:
            mutable = bytearray(data)
            spots = [rng.randrange(len(data)) for _ in range(rng.randint(1, 16))]
            for spot in spots:
                mutable[spot] ^= 1 << rng.randrange(8)
            yield f"bits flipped at {spots}", bytes(mutable)
        elif kind == 2:
            mutable = bytearray(data)
            spot = rng.randrange(start, end)
            mutable[spot:spot + 4] = bytes(rng.randrange(256) for _ in range(4))
            yield f"central directory damaged at {spot}", bytes(mutable)
        elif kind == 3:
            wrong = rng.choice([0, 1, start + 7, len(data) + 1000, 0xFFFFFFFF])
            yield f"central directory offset {wrong}", data[:end + 16] + struct.pack("<L", wrong) + data[end + 20:]
        elif kind == 4:
            wrong = rng.choice([0, 1, count - 1, count + 5, 0xFFFF])
            yield (f"central directory count {wrong}",
                   data[:end + 8] + struct.pack("<HH", wrong, wrong) + data[end + 12:])
        else:
            yield "central directory cut", data[:start + (end - start) // 2]


def mutants(data: bytes, seed: int, count: int) -> list[Mutant]:
    """``count`` mutants of the package ``data``, the same for the same seed: half whole-file damage,
    half a change to one part (each kind of change in turn, to a random part)."""
    rng = random.Random(seed)
    names = [info.filename for info, _ in parts_of(data)]
    sheets = [n for n in names if n.startswith("xl/worksheets/sheet")]
    changes = part_changes(rng)
    whole = whole_file_changes(rng, data)
    out: list[Mutant] = []
    for i in range(count):
        if i % 2:
            out.append(next(whole))
            continue
        label, change = changes[(i // 2) % len(changes)]
        sheet_only = label in ("far cell", "absurd dimension", "zip bomb")
        part = rng.choice(sheets if sheet_only else names)
        out.append((f"{part} {label}", one_part(data, part, change)))
    return out


# --- the check -----------------------------------------------------------------------------------------


def check_refresh(mutant: Mutant, folder: Path, capsys: pytest.CaptureFixture[str],
                  expected: dict[str, list[list[object]]]) -> int:
    """Refresh the mutant in a fresh folder: one line and exit 2 with nothing changed, or a proper refresh."""
    label, data = mutant
    folder.mkdir()
    book = folder / "book.xlsm"
    book.write_bytes(data)
    capsys.readouterr()
    code = main(["refresh", "--quiet", str(book)])
    out, err = capsys.readouterr()
    left = sorted(p.name for p in folder.iterdir())
    if code == 2:
        lines = err.splitlines()
        assert len(lines) == 1 and lines[0].startswith("crm-xl: error: ") and "Traceback" not in err, (label, err)
        assert book.read_bytes() == data, f"{label}: the book changed although the refresh failed"
        assert left == ["book.xlsm"], f"{label}: files left in the folder: {left}"
        return code
    assert code == 0, (label, code, err)
    assert err == "" and "Refreshed" in out, (label, err)
    assert output_tables(book) == expected, f"{label}: refreshed, but the output tables differ"
    assert not [name for name in left if name.startswith(".~")], f"{label}: temp files left: {left}"
    return code


def run_mutants(original: Path, expected: dict[str, list[list[object]]], tmp_path: Path,
                capsys: pytest.CaptureFixture[str], seed: int, count: int) -> dict[int, int]:
    codes: dict[int, int] = {}
    for i, mutant in enumerate(mutants(original.read_bytes(), seed, count)):
        code = check_refresh(mutant, tmp_path / f"m{i}", capsys, expected)
        codes[code] = codes.get(code, 0) + 1
    return codes


def test_few_dozen_mutants_fail_in_one_line_or_refresh_properly(
        original: Path, expected: dict[str, list[list[object]]], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    codes = run_mutants(original, expected, tmp_path, capsys, seed=10, count=44)
    assert codes.get(2, 0) >= 30, codes     # most mutants are real damage; every kind ran at least once


@pytest.mark.slow
def test_hundreds_of_mutants_fail_in_one_line_or_refresh_properly(
        original: Path, expected: dict[str, list[list[object]]], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    codes = run_mutants(original, expected, tmp_path, capsys, seed=11, count=330)
    assert codes.get(2, 0) >= 200, codes


def raw_sheet(book: Path) -> str:
    return find_tables(book)[layout.RAW_TABLES["transactions"].name].sheet_part


def test_every_hostile_change_to_a_raw_sheet_is_refused(original: Path, expected: dict[str, list[list[object]]],
                                                        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The hostile changes to the Raw Transactions sheet: each one line naming the limit, exit 2; an absurd
    declared dimension alone is harmless (readers allocate by the cells, not by it)."""
    wanted = {"far cell": "XFD1048576", "zip bomb": "expands", "billion laughs": "DTD", "external entity": "DTD",
              "removed": "sheet3.xml", "absurd dimension": None}
    part = raw_sheet(original)
    for label, change in part_changes(random.Random(0)):
        if label not in wanted:
            continue
        data = one_part(original.read_bytes(), part, change)
        folder = tmp_path / label.replace(" ", "_")
        code = check_refresh((label, data), folder, capsys, expected)
        assert code == (0 if wanted[label] is None else 2), label
        if wanted[label]:
            main(["refresh", "--quiet", str(folder / "book.xlsm")])
            assert wanted[label] in capsys.readouterr().err, label


def with_ref(xml: bytes, ref: bytes) -> bytes:
    return re.sub(rb' ref="[^"]*"', b' ref="' + ref + b'"', xml, count=1)


#: Well-formed XML with damaged values, where a byte flip rarely lands: (table whose part, or a part; edit).
VALUE_DAMAGE = {
    "a style attribute that is not a number": ("xl/styles.xml", lambda x: x.replace(b'numFmtId="', b'numFmtId="x', 1)),
    "styles without cell formats": ("xl/styles.xml", lambda x: re.sub(rb"<cellXfs.*?</cellXfs>", b"", x, flags=re.S)),
    "a table range that is not a range": ("customer_snapshot", lambda x: with_ref(x, b"zz")),
    "a table range beyond the grid": ("customer_snapshot", lambda x: with_ref(x, b"A1:XFE5")),
    "a totals row count that is not a number": ("customer_snapshot",
                                                lambda x: x.replace(b"<table ", b'<table totalsRowCount="abc" ', 1)),
    "a row number that is not a number": ("customer_snapshot@sheet",
                                          lambda x: x.replace(b'<row r="1"', b'<row r="x"', 1)),
    "a row number past any integer": ("tbl_config@sheet", lambda x: x.replace(b'<row r="4"', b'<row r="9' + b"9" * 30
                                                                              + b'"', 1)),
    "a sheet that is not there": ("xl/_rels/workbook.xml.rels", lambda x: x.replace(b"worksheets/sheet6.xml",
                                                                                    b"worksheets/none.xml", 1)),
    "no sheets": ("xl/workbook.xml", lambda x: re.sub(rb"<sheets>.*?</sheets>", b"<sheets/>", x, flags=re.S)),
}


@pytest.mark.parametrize("label", list(VALUE_DAMAGE))
def test_damaged_values_in_well_formed_parts(original: Path, expected: dict[str, list[list[object]]],
                                             tmp_path: Path, capsys: pytest.CaptureFixture[str], label: str) -> None:
    where, edit = VALUE_DAMAGE[label]
    if not where.startswith(("xl/", "[")):
        table, _, sheet = where.partition("@")
        info = find_tables(original)[table.lower()]
        where = info.sheet_part if sheet else info.table_part
    check_refresh((label, one_part(original.read_bytes(), where, edit)), tmp_path / "m", capsys, expected)


@pytest.mark.parametrize("label", ["far cell", "zip bomb", "central directory cut", "truncated"])
def test_mutants_as_real_subprocesses(original: Path, tmp_path: Path, label: str) -> None:
    """A real process: one line, exit 2, never an abort (a reader allocating the whole grid aborts)."""
    data = original.read_bytes()
    changes = dict(part_changes(random.Random(0)))
    if label in changes:
        data = one_part(data, raw_sheet(original), changes[label])
    elif label == "truncated":
        data = data[:len(data) * 2 // 3]
    else:
        end = data.rfind(b"PK\x05\x06")
        data = data[:end - 40]
    book = tmp_path / "book.xlsm"
    book.write_bytes(data)
    done = subprocess.run([sys.executable, "-m", "crm_xl.cli", "refresh", "--quiet", str(book)],
                          capture_output=True, text=True, timeout=300)
    lines = done.stderr.splitlines()
    assert done.returncode == 2 and len(lines) == 1 and lines[0].startswith("crm-xl: error: "), done.stderr
    assert book.read_bytes() == data and sorted(p.name for p in tmp_path.iterdir()) == ["book.xlsm"]


def test_debug_keeps_the_traceback(original: Path, tmp_path: Path) -> None:
    book = tmp_path / "book.xlsm"
    book.write_bytes(original.read_bytes()[:-30])
    done = subprocess.run([sys.executable, "-m", "crm_xl.cli", "--debug", "refresh", str(book)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode != 0 and "Traceback" in done.stderr


def test_a_rewritten_sheet_with_a_broken_declaration_fails_in_one_line(
        original: Path, expected: dict[str, list[list[object]]], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """The refresh keeps an output sheet's XML outside sheetData as it is: a damaged declaration there
    (found by the fuzzer on Monthly Summary) is refused, not carried into a book Excel cannot open."""
    part = f"xl/worksheets/sheet{layout.SHEETS.index(layout.OUTPUT_SHEETS['monthly_summary']) + 1}.xml"
    mutant = ("broken declaration", one_part(original.read_bytes(), part, lambda body: body.replace(b">", b"<", 1)))
    assert check_refresh(mutant, tmp_path / "m", capsys, expected) == 2
