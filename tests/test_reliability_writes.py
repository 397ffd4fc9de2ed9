"""Nothing the user owns is lost or half-written: locks, Excel's and LibreOffice's lock files, symlinks,
owners and read-only files, sidecars before the book, run --out as a set, temporary files after a crash.

Crashes are real: a ``crm-xl`` subprocess is stopped at a named point by the test hook
``CRM_XL_TEST_PAUSE=POINT:NAME=FILE`` (it writes FILE, then waits) and killed with SIGKILL. Locks are
held by real processes. Failures are real where the file system can produce them (a directory where
a file should be replaced, a read-only folder); the one failure it cannot produce on demand (the
workbook held open by another program on Windows) is injected into ``os.replace``.
"""

from __future__ import annotations

import getpass
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from conftest import one_error_line
from python_calamine import CalamineWorkbook

from crm_xl import contract
from crm_xl.cli import main
from crm_xl.errors import InputError
from crm_xl.io import files
from crm_xl.io.csv import read_csv
from crm_xl.io.files import MANIFEST, recover_folder, replacing, stale_temps, write_beside, write_set
from crm_xl.io.locks import LockedError, holder, lock_path, locked
from crm_xl.workbook import layout
from crm_xl.workbook.book import load_raw, new_workbook, set_settings
from crm_xl.workbook.refresh import REFRESH_ID_KEY, refresh_workbook

GOLDEN = Path(__file__).parent / "fixtures" / "golden"
RAW_NAMES = ("transactions", "customers", "products")
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
posix_only = pytest.mark.skipif(os.name != "posix", reason="POSIX owners, modes and signals")


# --- helpers -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def golden_book(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The golden data in a fresh workbook, report month 2024-12, history capped at 40 rows (so a refresh
    writes both sidecars: the full history Parquet and the rejected lines)."""
    path = tmp_path_factory.mktemp("golden") / "book.xlsm"
    new_workbook(path)
    load_raw(path, {name: read_csv(GOLDEN / f"{name}.csv", name) for name in RAW_NAMES})
    set_settings(path, {"report_month": "2024-12", "history_months": 24, "history_rows_in_sheet": 40})
    return path


@pytest.fixture
def book(golden_book: Path, tmp_path: Path) -> Path:
    """A private copy of the golden workbook, in its own folder."""
    folder = tmp_path / "books"
    folder.mkdir()
    return Path(shutil.copy2(golden_book, folder / "book.xlsm"))


@pytest.fixture
def refreshed(book: Path) -> Path:
    refresh_workbook(book)
    return book


def state(folder: Path) -> dict[str, bytes]:
    """Every file of ``folder`` (hidden ones included) and its bytes."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def ours(folder: Path) -> list[str]:
    """crm_xl's temporary and lock files in ``folder``."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".~crm_xl."))


def status_of(path: Path) -> dict[str, str]:
    book = CalamineWorkbook.from_path(str(path), load_tables=True)
    try:
        return {str(k): str(v) for k, v in book.get_table_by_name(layout.STATUS_TABLE.name).to_python()}
    finally:
        book.close()


def sidecars(book: Path) -> tuple[Path, Path]:
    return book.with_name("book_customer_history.parquet"), book.with_name("book_rejected_lines.csv")


def crm_xl(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "crm_xl.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=600)


def paused(tmp_path: Path, point: str, *args: str) -> subprocess.Popen[str]:
    """``crm-xl ARGS`` started in a subprocess and stopped at ``point`` (waiting to be killed)."""
    ready = tmp_path / f"paused-{point.replace(':', '-')}"
    proc = subprocess.Popen([sys.executable, "-m", "crm_xl.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "CRM_XL_TEST_PAUSE": f"{point}={ready}"})
    _wait_for(ready, proc)
    return proc


def _wait_for(ready: Path, proc: subprocess.Popen[str]) -> None:
    guard = time.monotonic() + 600      # only against a hang: far beyond any real run
    while not ready.exists():
        if proc.poll() is not None:
            pytest.fail(f"exited ({proc.returncode}) before its pause: {proc.stderr.read() if proc.stderr else ''}")
        if time.monotonic() > guard:
            proc.kill()
            pytest.fail("never reached its pause")
        time.sleep(0.02)


def kill(proc: subprocess.Popen[str]) -> None:
    proc.kill()         # SIGKILL: no finally, no atexit, no cleanup
    proc.communicate()


HOLDER = """
import pathlib, sys
from crm_xl.io.locks import locked
book, ready, release = map(pathlib.Path, sys.argv[1:4])
with locked(book, command="the test's holder"):
    ready.write_text("held")
    while not release.exists():
        pass
"""


# --- 1. locks --------------------------------------------------------------------------------------------


@pytest.mark.slow
@posix_only
def test_a_second_writer_waits_then_names_the_holder(refreshed: Path, tmp_path: Path) -> None:
    """A refresh stopped after reading and computing, before its first write, holds the lock: a load and
    a refresh of the same workbook fail after their --wait with one line naming pid, user, host,
    command and since when; the workbook and its sidecars are untouched."""
    before = state(refreshed.parent)
    holder_proc = paused(tmp_path, "replace:book_customer_history.parquet", "refresh", str(refreshed), "--quiet")
    try:
        details = holder(refreshed)
        assert details is not None and details["pid"] == holder_proc.pid
        for args in (["load", str(refreshed), "--customers", str(GOLDEN / "customers.csv"), "--wait", "0.2"],
                     ["refresh", str(refreshed), "--wait", "0"]):
            result = crm_xl(*args)
            assert result.returncode == 2, result.stderr
            line = result.stderr.strip()
            assert "\n" not in line and line.startswith("crm-xl: error: book.xlsm is being changed by"), line
            for needle in (f"pid {holder_proc.pid}", f"user {details['user']}", f"on {details['host']}",
                           "refresh", f"since {details['since']}", ".~crm_xl.book.xlsm.lock"):
                assert needle in line, (needle, line)
    finally:
        kill(holder_proc)
    unchanged = state(refreshed.parent)
    assert {n: b for n, b in unchanged.items() if not n.startswith(".~crm_xl.")} == before


@pytest.mark.slow
@posix_only
def test_the_lock_of_a_killed_process_is_taken_over(book: Path, tmp_path: Path) -> None:
    holder_proc = paused(tmp_path, "locked:book.xlsm", "refresh", str(book), "--quiet")
    kill(holder_proc)
    assert holder(book)["pid"] == holder_proc.pid         # its details stay behind, its lock does not
    result = crm_xl("refresh", str(book), "--quiet", "--wait", "0")
    assert result.returncode == 0, result.stderr
    assert status_of(book)["refresh id"]
    assert not lock_path(book).exists()


def test_a_waiting_writer_goes_on_when_the_holder_is_done(book: Path, tmp_path: Path) -> None:
    """A process holds the lock; this one waits (it is told so), the holder finishes, this one takes over."""
    ready, release = tmp_path / "held", tmp_path / "release"
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(book), str(ready), str(release)])
    try:
        _wait_for(ready, proc)
        told: list[str] = []

        def waiting(who: str) -> None:
            told.append(who)
            release.touch()

        with locked(book, wait=600, on_wait=waiting) as took:
            assert took and holder(book)["pid"] == os.getpid()
        assert len(told) == 1 and f"pid {proc.pid}" in told[0] and "the test's holder" in told[0]
    finally:
        release.touch()
        proc.wait(timeout=600)
    assert proc.returncode == 0 and not lock_path(book).exists()


def test_a_held_lock_stops_every_writer_of_the_book(book: Path, tmp_path: Path) -> None:
    ready, release = tmp_path / "held", tmp_path / "release"
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(book), str(ready), str(release)])
    try:
        _wait_for(ready, proc)
        before = book.read_bytes()
        attempts = {"refresh": lambda: refresh_workbook(book, wait=0),
                    "load": lambda: load_raw(book, {"products": read_csv(GOLDEN / "products.csv", "products")},
                                             wait=0),
                    "set_settings": lambda: set_settings(book, {"report_month": "2024-11"}, wait=0),
                    "new --force": lambda: new_workbook(book, overwrite=True, wait=0)}
        for name, attempt in attempts.items():
            with pytest.raises(LockedError, match=f"pid {proc.pid} .*the test's holder"):
                attempt()
            assert book.read_bytes() == before, name
    finally:
        release.touch()
        proc.wait(timeout=600)


def test_the_lock_is_reentrant_in_a_thread_and_exclusive_across_threads(book: Path) -> None:
    with locked(book) as outer:
        with locked(book) as inner:
            assert outer and not inner
        result: list[BaseException] = []

        def other() -> None:
            try:
                with locked(book, wait=0):
                    pass
            except LockedError as exc:
                result.append(exc)

        thread = threading.Thread(target=other)
        thread.start()
        thread.join()
        assert len(result) == 1
    assert not lock_path(book).exists()


def test_a_symlink_and_its_target_share_one_lock(book: Path, tmp_path: Path) -> None:
    link = tmp_path / "link.xlsm"
    link.symlink_to(book)
    assert lock_path(link) == lock_path(book)
    caught: list[BaseException] = []

    def refresh_through_the_link() -> None:
        try:
            refresh_workbook(link, wait=0)
        except LockedError as exc:
            caught.append(exc)

    with locked(book):
        thread = threading.Thread(target=refresh_through_the_link)
        thread.start()
        thread.join()
    assert len(caught) == 1 and "book.xlsm is being changed" in str(caught[0])     # the file it points to


# --- 2. Excel and LibreOffice ---------------------------------------------------------------------------

LIBREOFFICE_LOCK = "Jane Doe,jane,laptop-7,03.02.2025 04:05,file:///home/jane/.config/libreoffice/4;"


@pytest.mark.parametrize("lock_file, needles", [
    (".~lock.book.xlsm#", ("open in LibreOffice by Jane Doe (jane on laptop-7, since 03.02.2025 04:05)",
                           ".~lock.book.xlsm#")),
    ("~$book.xlsm", ("open in Excel by jane", "~$book.xlsm")),
])
def test_a_book_open_elsewhere_is_refused_by_every_writer_unless_forced(book: Path, lock_file: str,
                                                                        needles: tuple[str, ...], capsys) -> None:
    lock = book.with_name(lock_file)
    if lock_file.startswith("~$"):       # Excel's owner file: a length byte, the user name, padding
        lock.write_bytes(bytes([4]) + b"jane" + b" " * 49 + b"\x00" * 108)
    else:
        lock.write_text(LIBREOFFICE_LOCK, encoding="utf-8")
    before = book.read_bytes()
    commands = [["refresh", str(book)], ["load", str(book), "--products", str(GOLDEN / "products.csv")],
                ["refresh", str(book), "--set", "report_month=2024-11"]]
    for args in commands:
        assert main(args) == 2
        one_error_line(capsys, *needles, "--force")
    with pytest.raises(InputError, match="open in"):
        set_settings(book, {"report_month": "2024-11"})
    assert book.read_bytes() == before
    assert main(["refresh", str(book), "--force", "--quiet"]) == 0
    assert book.read_bytes() != before and lock.exists()     # the other program's lock file is theirs


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("soffice") is None, reason="LibreOffice (soffice) is not installed")
def test_a_book_open_in_libreoffice_is_refused(book: Path, tmp_path: Path, capsys) -> None:
    """LibreOffice itself opens the workbook (headless, its own profile): the refresh names it."""
    profile = f"-env:UserInstallation={(tmp_path / 'profile').as_uri()}"
    office = subprocess.Popen([shutil.which("soffice"), profile, "--headless", "--norestore", str(book)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    lock = book.with_name(f".~lock.{book.name}#")
    try:
        guard = time.monotonic() + 600
        while not lock.exists() and time.monotonic() < guard and office.poll() is None:
            time.sleep(0.1)
        assert lock.exists(), "LibreOffice did not open the workbook"
        before = book.read_bytes()
        assert main(["refresh", str(book)]) == 2
        one_error_line(capsys, "open in LibreOffice", f"({getpass.getuser()} on {socket.gethostname()}, since",
                       lock.name)
        assert book.read_bytes() == before
    finally:
        os.killpg(office.pid, signal.SIGKILL)    # its session: the launcher and soffice.bin
        office.wait()


# --- 5. symlinks, owners, read-only ---------------------------------------------------------------------


def test_a_symlinked_book_is_refreshed_through_its_link(book: Path, tmp_path: Path) -> None:
    """The link stays a link, the file it points to is refreshed, the sidecars go beside that file."""
    elsewhere = tmp_path / "desk"
    elsewhere.mkdir()
    link = elsewhere / "current.xlsm"
    link.symlink_to(book)
    assert main(["refresh", str(link), "--quiet"]) == 0
    assert link.is_symlink() and link.resolve() == book
    assert status_of(book)["refresh id"]
    assert sorted(p.name for p in elsewhere.iterdir()) == ["current.xlsm"]
    assert all(p.exists() for p in sidecars(book))
    assert main(["load", str(link), "--products", str(GOLDEN / "products.csv")]) == 0
    set_settings(link, {"report_month": "2024-11"})
    assert link.is_symlink() and status_of(book)["refresh id"]


def test_a_symlinked_sidecar_is_replaced_through_its_link(refreshed: Path, tmp_path: Path) -> None:
    """A history Parquet moved to a share (for Power BI) and linked back stays where it was put."""
    parquet = sidecars(refreshed)[0]
    share = tmp_path / "share"
    share.mkdir()
    shutil.move(parquet, share / parquet.name)
    parquet.symlink_to(share / parquet.name)
    refresh_workbook(refreshed)
    assert parquet.is_symlink()
    assert pq.read_schema(share / parquet.name).metadata[REFRESH_ID_KEY].decode() == status_of(refreshed)["refresh id"]


@posix_only
def test_mode_is_kept_and_new_sidecars_get_the_books(book: Path) -> None:
    book.chmod(0o640)
    refresh_workbook(book)
    assert [p.stat().st_mode & 0o777 for p in (book, *sidecars(book))] == [0o640] * 3
    sidecars(book)[1].chmod(0o604)
    refresh_workbook(book)
    assert sidecars(book)[1].stat().st_mode & 0o777 == 0o604


@posix_only
@pytest.mark.skipif(not IS_ROOT, reason="only root can give a file another owner to test with")
def test_root_keeps_owner_and_group(book: Path) -> None:
    """A 640 book of user 4321 refreshed by root stays 4321's (and its new sidecars are 4321's too)."""
    os.chown(book, 4321, 4321)
    book.chmod(0o640)
    refresh_workbook(book)
    for path in (book, *sidecars(book)):
        info = path.stat()
        assert (info.st_uid, info.st_gid, info.st_mode & 0o777) == (4321, 4321, 0o640), path.name


@posix_only
@pytest.mark.skipif(not IS_ROOT, reason="only root can act as another user to test with")
def test_someone_elses_book_is_refused_rather_than_taken_over(golden_book: Path) -> None:
    """User nobody may write the folder and the file (0666), but replacing the file would make it
    nobody's: refused, the file untouched. (Acting as nobody: root's effective ids are switched.)"""
    folder = Path(tempfile.mkdtemp(prefix="crm_xl_test_"))     # /tmp: a folder nobody can reach
    try:
        folder.chmod(0o777)
        book = Path(shutil.copy2(golden_book, folder / "book.xlsm"))
        book.chmod(0o666)
        before = book.read_bytes()
        nobody = 65534
        os.setegid(nobody)
        os.seteuid(nobody)
        try:
            with pytest.raises(InputError, match="belongs to user root: replacing it would make it yours"):
                refresh_workbook(book)
        finally:
            os.seteuid(0)
            os.setegid(0)
        assert book.read_bytes() == before and book.stat().st_uid == 0
        assert sorted(p.name for p in folder.iterdir()) == ["book.xlsm"]
    finally:
        shutil.rmtree(folder)


@posix_only
def test_read_only_is_honoured_by_every_writer_even_as_root(book: Path, capsys) -> None:
    before = book.read_bytes()
    book.chmod(0o444)
    try:
        for args in (["refresh", str(book)], ["load", str(book), "--products", str(GOLDEN / "products.csv")],
                     ["new", str(book), "--force"]):
            assert main(args) == 2
            one_error_line(capsys, "book.xlsm", "read-only", "-r--r--r--")
        with pytest.raises(InputError, match="read-only"):
            set_settings(book, {"report_month": "2024-11"})
    finally:
        book.chmod(0o644)
    assert book.read_bytes() == before and ours(book.parent) == []


@posix_only
def test_a_read_only_sidecar_stops_the_refresh_before_it_computes(refreshed: Path) -> None:
    parquet = sidecars(refreshed)[0]
    parquet.chmod(0o444)
    before = state(refreshed.parent)
    with pytest.raises(InputError, match=r"book_customer_history\.parquet is read-only"):
        refresh_workbook(refreshed, progress=lambda message: pytest.fail(f"got as far as: {message}"))
    assert state(refreshed.parent) == before


# --- 6. sidecars first, book last, one refresh id -------------------------------------------------------


def refresh_ids(book: Path) -> tuple[str, str, set[str]]:
    """The refresh id of the workbook (tbl_status), of the history Parquet (schema metadata) and of the
    rejected lines (their refresh_id column)."""
    parquet, rejected = sidecars(book)
    rows = pd.read_csv(rejected, dtype=str, encoding="utf-8-sig")
    return (status_of(book)["refresh id"], pq.read_schema(parquet).metadata[REFRESH_ID_KEY].decode(),
            set(rows["refresh_id"]))


def test_one_refresh_id_in_the_book_and_its_sidecars(book: Path) -> None:
    first = refresh_workbook(book).refresh_id
    assert refresh_ids(book) == (first, first, {first})
    assert refresh_workbook(book).refresh_id != first
    second = refresh_ids(book)
    assert second[0] != first and second == (second[0], second[0], {second[0]})
    rejected = pd.read_csv(sidecars(book)[1], dtype=str, encoding="utf-8-sig")
    assert list(rejected.columns) == [*contract.columns("rejected_lines"), "refresh_id"]
    history = pd.read_parquet(sidecars(book)[0])
    assert list(history.columns) == contract.columns("customer_history")     # what Power BI loads: unchanged


def test_a_book_that_cannot_be_replaced_puts_the_sidecars_back(refreshed: Path, monkeypatch) -> None:
    """Windows refuses to replace a file another program holds open: the sidecars, replaced first, get
    their previous bytes back, and nothing is left behind."""
    before = state(refreshed.parent)
    real_replace = os.replace

    def replace(src, dst) -> None:
        if Path(dst) == refreshed:
            raise PermissionError(13, "The process cannot access the file because it is being used")
        real_replace(src, dst)

    monkeypatch.setattr(files.os, "replace", replace)
    with pytest.raises(InputError, match=r"book\.xlsm could not be replaced .*Nothing was changed"):
        refresh_workbook(refreshed)
    assert state(refreshed.parent) == before


def test_a_sidecar_that_cannot_be_replaced_leaves_everything_as_it_was(refreshed: Path, tmp_path: Path) -> None:
    """The rejected lines are linked to a share that goes away while the refresh writes (a real failure
    of the second sidecar's rename): the history Parquet, already replaced, is put back; the workbook
    was never touched."""
    rejected = sidecars(refreshed)[1]
    share = tmp_path / "share"
    share.mkdir()
    shutil.move(rejected, share / rejected.name)
    rejected.symlink_to(share / rejected.name)
    before = state(refreshed.parent)

    def share_goes_away(message: str) -> None:
        if message.startswith("writing"):
            share.rename(tmp_path / "gone")

    with pytest.raises(FileNotFoundError):
        refresh_workbook(refreshed, progress=share_goes_away)
    (tmp_path / "gone").rename(share)     # the share is back: the link's file is as it was
    assert state(refreshed.parent) == before


def test_a_book_saved_by_another_program_during_the_refresh_is_not_overwritten(refreshed: Path) -> None:
    """Excel saves the workbook (a new file in its place) while the refresh computes: the refresh
    writes nothing, so the saved work stays."""
    saved = refreshed.read_bytes()      # what Excel writes: here the same bytes, but a new file

    def excel_saves(message: str) -> None:
        if message.startswith("writing"):
            replacement = refreshed.with_name("saved.tmp")
            replacement.write_bytes(saved)
            os.replace(replacement, refreshed)

    parquet_before = sidecars(refreshed)[0].read_bytes()
    with pytest.raises(InputError, match="was changed by another program while the refresh ran"):
        refresh_workbook(refreshed, progress=excel_saves)
    assert refreshed.read_bytes() == saved and sidecars(refreshed)[0].read_bytes() == parquet_before
    assert ours(refreshed.parent) == []


def test_a_folder_where_a_file_goes_is_refused(refreshed: Path, tmp_path: Path) -> None:
    rejected = sidecars(refreshed)[1]
    rejected.unlink()
    rejected.mkdir()
    (rejected / "keep.txt").write_text("mine")
    before = state(refreshed.parent)
    with pytest.raises(InputError, match=r"book_rejected_lines\.csv is a folder"):
        refresh_workbook(refreshed)
    out = tmp_path / "out"
    (out / "b.csv").mkdir(parents=True)
    with pytest.raises(InputError, match=r"b\.csv is a folder"):
        write_set(out, {"a.csv": lambda p: p.write_text("a"), "b.csv": lambda p: p.write_text("b")}, "r")
    assert state(refreshed.parent) == before and (rejected / "keep.txt").read_text() == "mine"
    assert [p.name for p in out.iterdir()] == ["b.csv"]


@pytest.mark.slow
@posix_only
def test_a_kill_between_the_sidecars_and_the_book_shows_in_the_refresh_ids(refreshed: Path, tmp_path: Path) -> None:
    """The limit: a kill -9 in the moment after the sidecars' renames and before the book's leaves new
    sidecars beside the old book. The ids say so; the next refresh brings them together and removes
    the leftovers."""
    old = refresh_ids(refreshed)[0]
    book_bytes = refreshed.read_bytes()
    proc = paused(tmp_path, "replace:book.xlsm", "refresh", str(refreshed), "--quiet")
    kill(proc)
    assert refreshed.read_bytes() == book_bytes
    ids = refresh_ids(refreshed)
    assert ids[0] == old and ids[1] != old
    assert ours(refreshed.parent)       # the killed process's temporary files
    assert crm_xl("refresh", str(refreshed), "--quiet").returncode == 0
    new = refresh_ids(refreshed)
    assert new == (new[0], new[0], {new[0]}) and ours(refreshed.parent) == []


# --- 7. run --out as a set -------------------------------------------------------------------------------


@pytest.fixture
def data(tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    for name in RAW_NAMES:
        shutil.copy(GOLDEN / f"{name}.csv", folder / f"{name}.csv")
    return folder


def manifest_matches(out: Path) -> dict[str, object]:
    """The manifest, after checking that it lists each file with its size and sha256."""
    import hashlib

    manifest = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
    for entry in manifest["files"]:
        content = (out / entry["name"]).read_bytes()
        assert (len(content), hashlib.sha256(content).hexdigest()) == (entry["bytes"], entry["sha256"]), entry
    return manifest


def test_run_out_is_swapped_in_as_a_set_with_a_manifest(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert main(["run", "--data", str(data), "--out", str(out)]) == 0
    first = manifest_matches(out)
    assert sorted(e["name"] for e in first["files"]) == sorted(f"{n}.csv" for n in contract.TABLE_NAMES)
    assert main(["run", "--data", str(data), "--out", str(out), "--set", "report_month=2024-11"]) == 0
    second = manifest_matches(out)
    assert second["run_id"] != first["run_id"]
    assert sorted(p.name for p in out.iterdir()) == sorted([MANIFEST, *(f"{n}.csv" for n in contract.TABLE_NAMES)])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "out"]       # no temporary folder, no lock


def test_run_out_keeps_files_it_does_not_own(data: Path, capsys) -> None:
    """--out is the data folder itself (and holds a note): the inputs and the note stay, the tables are
    replaced one by one and the manifest lists only them."""
    (data / "notes.txt").write_text("mine")
    inputs = state(data)
    assert main(["run", "--data", str(data), "--out", str(data)]) == 0
    assert {n: b for n, b in state(data).items() if n in inputs} == inputs
    assert len(manifest_matches(data)["files"]) == len(contract.TABLE_NAMES)
    assert ours(data) == []


def test_a_failed_write_leaves_the_old_set(tmp_path: Path) -> None:
    out = tmp_path / "out"
    write_set(out, {"a.csv": lambda p: p.write_text("old a"), "b.csv": lambda p: p.write_text("old b")}, "run-1")
    before = state(out)

    def broken(path: Path) -> None:
        path.write_text("half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        write_set(out, {"a.csv": lambda p: p.write_text("new a"), "b.csv": broken}, "run-2")
    assert state(out) == before and sorted(p.name for p in tmp_path.iterdir()) == ["out"]


@posix_only
def test_a_read_only_out_folder_is_refused_even_as_root(data: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    assert main(["run", "--data", str(data), "--out", str(out)]) == 0
    before = state(out)
    out.chmod(0o555)
    try:
        assert main(["run", "--data", str(data), "--out", str(out)]) == 2
        one_error_line(capsys, "read-only")
    finally:
        out.chmod(0o755)
    assert state(out) == before


@pytest.mark.slow
@posix_only
def test_a_run_killed_before_the_swap_leaves_the_old_set_and_the_next_run_cleans_up(data: Path,
                                                                                      tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert main(["run", "--data", str(data), "--out", str(out)]) == 0
    before = state(out)
    kill(paused(tmp_path, "swap:out", "run", "--data", str(data), "--out", str(out), "--set",
                "report_month=2024-11"))
    assert state(out) == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".~crm_xl.out.")]   # the new set, unswapped
    assert crm_xl("run", "--data", str(data), "--out", str(out)).returncode == 0
    manifest_matches(out)
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".~crm_xl.")]


@pytest.mark.slow
@posix_only
def test_a_run_killed_between_the_two_renames_gets_its_old_set_back(data: Path, tmp_path: Path) -> None:
    """Killed after the old folder was renamed away, before the new one was renamed in: --out is
    missing for a moment; holding the folder's lock, the next write first puts the old set back."""
    out = tmp_path / "out"
    assert main(["run", "--data", str(data), "--out", str(out)]) == 0
    before = state(out)
    kill(paused(tmp_path, "swapping:out", "run", "--data", str(data), "--out", str(out)))
    assert not out.exists()
    with locked(out):
        recover_folder(out)
    assert state(out) == before


# --- 8. temporary files after a crash -------------------------------------------------------------------


@pytest.mark.slow
@posix_only
@pytest.mark.parametrize("command", ["refresh", "load"])
def test_a_writer_killed_before_its_rename_leaves_the_book_and_the_next_run_cleans_up(
        refreshed: Path, tmp_path: Path, command: str) -> None:
    """Killed with every temporary file written (book and sidecars), just before the first rename: the
    book and its sidecars are byte-identical, the leftovers carry crm_xl's name and the killed pid,
    and the next run of the command removes them."""
    before = state(refreshed.parent)
    args = {"refresh": ["refresh", str(refreshed), "--quiet"],
            "load": ["load", str(refreshed), "--products", str(GOLDEN / "products.csv")]}[command]
    point = {"refresh": "replace:book_customer_history.parquet", "load": "replace:book.xlsm"}[command]
    proc = paused(tmp_path, point, *args)
    kill(proc)
    after = state(refreshed.parent)
    left = [name for name in after if name not in before]
    assert {n: after[n] for n in before} == before
    assert left and all(n.startswith(".~crm_xl.book") for n in left), left
    assert any(f".{proc.pid}." in n for n in left), left
    result = crm_xl(*args)
    assert result.returncode == 0, result.stderr
    assert ours(refreshed.parent) == []


def test_stale_temps_are_crm_xls_own_and_not_in_use(book: Path) -> None:
    folder = book.parent
    names = [".~crm_xl.book.xlsm.999999.0a1b2c3d.tmp", ".~crm_xl.book_rejected_lines.csv.12.deadbeef.tmp",
             ".~book.xlsm.k2j4h5g6.tmp"]                                 # the names before this release
    kept = [".~crm_xl.book.xlsm.x.12.deadbeef.tmp",                      # another file's temporary file
            ".~crm_xl.book.xlsm.lock", "~$book.xlsm", ".~lock.book.xlsm#", "book.xlsm.12.tmp", "notes.tmp"]
    for name in [*names, *kept]:
        (folder / name).write_text("x")
    live = write_beside(book, lambda p: p.write_bytes(b"in use"))      # this process's own, still in use
    try:
        assert sorted(p.name for p in stale_temps(folder, ["book.xlsm", "book_rejected_lines.csv"])) == sorted(names)
    finally:
        files.discard(live)


def test_replacing_puts_back_what_it_replaced_when_a_later_move_fails(tmp_path: Path) -> None:
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("old a")
    b.write_text("old b")
    lost = write_beside(b, lambda p: p.write_text("new b"))
    lost.unlink()                       # the second move's temporary file has gone: its rename fails
    with pytest.raises(FileNotFoundError), replacing([(write_beside(a, lambda p: p.write_text("new a")), a),
                                                      (lost, b)]):
        pytest.fail("the body runs only once every file is in place")
    assert (a.read_text(), b.read_text()) == ("old a", "old b")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.txt"]


def test_replacing_rolls_back_what_the_body_did_not_commit(tmp_path: Path) -> None:
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("old a")
    moves = [(write_beside(a, lambda p: p.write_text("new a")), a),
             (write_beside(b, lambda p: p.write_text("new b")), b)]
    with pytest.raises(RuntimeError), replacing(moves):
        assert a.read_text() == "new a" and b.read_text() == "new b"
        raise RuntimeError("the commit point failed")
    assert a.read_text() == "old a" and not b.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]
