"""One writer at a time: an exclusive lock per file, and the lock files of Excel and LibreOffice.

:func:`locked` takes an operating-system lock (``flock`` on POSIX, ``msvcrt.locking`` on Windows)
on ``.~crm_xl.NAME.lock`` beside the file, and records in it who holds it (pid, host, user, command,
since when), so a second writer that has waited its time can say who is in the way. The operating
system releases the lock when its process ends, however it ends (kill -9, crash), so the lock of a
dead process is simply taken over, and the old details are overwritten. The lock is re-entrant
within a thread (a refresh with ``--set`` writes the Config and refreshes under one lock).

:func:`open_elsewhere` reads Excel's ``~$NAME`` and LibreOffice's ``.~lock.NAME#`` beside a workbook.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import getpass
import json
import os
import shlex
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from crm_xl.errors import CrmXlError
from crm_xl.io.files import TEMP_PREFIX, pause_for_test, real_path

#: Seconds a second writer waits for the lock before it gives up (``--wait`` on the command line).
DEFAULT_WAIT = 30.0
_POLL = 0.1
#: Windows locks byte ranges; the one locked lies far past the holder details, which others must read.
_WINDOWS_LOCK_OFFSET = 1 << 30


class LockedError(CrmXlError):
    """Another process is writing the file (it holds crm_xl's lock, or has the workbook open)."""


@dataclasses.dataclass
class _Held:
    fd: int
    thread: int


_held: dict[str, _Held] = {}
_held_guard = threading.Lock()


def lock_path(target: str | Path) -> Path:
    """The lock file of ``target`` (a symlink's target: two links to one workbook share one lock)."""
    target = real_path(target)
    return target.with_name(f"{TEMP_PREFIX}{target.name}.lock")


@contextlib.contextmanager
def locked(target: str | Path, *, wait: float = DEFAULT_WAIT, command: str | None = None,
           on_wait: Callable[[str], None] | None = None, clock: Callable[[], float] = time.monotonic
           ) -> Iterator[bool]:
    """Hold the exclusive lock of ``target`` for the ``with`` body; yields whether this call took it
    (``False`` when the same thread holds it already).

    Waits up to ``wait`` seconds for another holder, then raises :class:`LockedError` naming it;
    ``on_wait(who)`` is called once if it has to wait. ``command`` is what the holder details call
    this process (default: its command line).
    """
    path = lock_path(target)
    key = str(path)
    with _held_guard:
        held = _held.get(key)
    if held is not None and held.thread == threading.get_ident():
        yield False
        return
    fd = _acquire(path, Path(target).name, wait, command, on_wait, clock)
    with _held_guard:
        _held[key] = _Held(fd, threading.get_ident())
    try:
        pause_for_test("locked", real_path(target).name)
        yield True
    finally:
        with _held_guard:
            del _held[key]
        _release(fd, path)


def holder(target: str | Path) -> dict[str, object] | None:
    """The details the current holder of ``target``'s lock recorded, if any."""
    return _details(lock_path(target))


def _acquire(path: Path, name: str, wait: float, command: str | None, on_wait: Callable[[str], None] | None,
             clock: Callable[[], float]) -> int:
    deadline = clock() + wait
    waiting = False
    while True:
        fd = _open(path)
        try:
            if _try_lock(fd, name):
                if _same_file(fd, path):
                    _record(fd, command)
                    return fd
                _unlock(fd)     # the holder removed the file as we got its lock: take the new file's
                continue
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
        if clock() >= deadline:
            raise LockedError(f"{name} is being changed by {_who(path)}; waited {wait:g} s for it: try again when "
                              f"it has finished (the lock is {path.name} beside the file)")
        if on_wait is not None and not waiting:
            on_wait(_who(path))
        waiting = True
        time.sleep(_POLL)


def _open(path: Path) -> int:
    flags = os.O_CREAT | getattr(os, "O_BINARY", 0)
    try:
        return os.open(path, os.O_RDWR | flags, 0o666)
    except PermissionError:     # a lock file another user created: locking needs no write access
        return os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))


def _try_lock(fd: int, name: str) -> bool:
    try:
        if os.name == "nt":
            import msvcrt

            os.lseek(fd, _WINDOWS_LOCK_OFFSET, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        else:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except (BlockingIOError, PermissionError):
        return False
    except OSError as exc:
        if os.name == "nt" and exc.errno in (13, 36):   # EACCES, EDEADLOCK: locked by another process
            return False
        raise CrmXlError(f"{name}: cannot lock {name} on this file system ({exc.strerror}): crm_xl needs file "
                         "locks to keep two writers apart; work on a local or network drive that has them") from None
    return True


def _unlock(fd: int) -> None:
    with contextlib.suppress(OSError):
        if os.name == "nt":
            import msvcrt

            os.lseek(fd, _WINDOWS_LOCK_OFFSET, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
        else:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_UN)


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except OSError:
        return False


def _record(fd: int, command: str | None) -> None:
    """Who holds the lock, for the message of the next writer (best effort: a read-only lock file stays as is)."""
    details = {"pid": os.getpid(), "host": socket.gethostname(), "user": _user(),
               "command": (command or _command_line())[:300],
               "since": dt.datetime.now().isoformat(sep=" ", timespec="seconds")}
    with contextlib.suppress(OSError):
        os.lseek(fd, 0, os.SEEK_SET)
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(details).encode("utf-8"))


def _release(fd: int, path: Path) -> None:
    # POSIX: remove the file while still holding it (a waiter that got the old file notices, see _acquire);
    # Windows cannot remove an open file, so it goes after, unless a waiter has it open.
    if os.name != "nt":
        with contextlib.suppress(OSError):
            path.unlink()
    _unlock(fd)
    os.close(fd)
    if os.name == "nt":
        with contextlib.suppress(OSError):
            path.unlink()


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:   # no user name in the environment or the password database
        return "?"


def _command_line() -> str:
    return shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv and sys.argv[0] else "python"


def _who(path: Path) -> str:
    details = _details(path)
    if details is None:
        return "another process (it recorded no details)"
    return (f"pid {details.get('pid', '?')} of user {details.get('user', '?')} on {details.get('host', '?')} "
            f"({details.get('command', '?')}), since {details.get('since', '?')}")


def _details(path: Path) -> dict[str, object] | None:
    try:
        details = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return details if isinstance(details, dict) else None


# --- Excel and LibreOffice ------------------------------------------------------------------------------


def open_elsewhere(book: Path) -> str | None:
    """Which program has ``book`` open, by the lock file it keeps beside it (``None`` when none does):
    Excel's ``~$NAME`` (it records the user's name) or LibreOffice's ``.~lock.NAME#`` (user, host, time)."""
    for folder in dict.fromkeys((book.parent, real_path(book).parent)):    # the link's folder and the target's
        for name in dict.fromkeys((book.name, real_path(book).name)):
            excel = folder / f"~${name}"
            if excel.exists():
                user = _excel_user(excel)
                return f"open in Excel{f' by {user}' if user else ''} (lock file {excel.name} beside it)"
            office = folder / f".~lock.{name}#"
            if office.exists():
                return f"open in LibreOffice{_libreoffice_holder(office)} (lock file {office.name} beside it)"
    return None


def _excel_user(path: Path) -> str:
    """The user name Excel's owner file starts with (a length byte, then the name), if readable."""
    try:
        data = path.read_bytes()[:64]
    except OSError:
        return ""
    if not data or not 0 < data[0] < len(data):
        return ""
    name = data[1:1 + data[0]].decode("latin-1").strip()
    return name if name.isprintable() else ""


def _libreoffice_holder(path: Path) -> str:
    """`` by NAME (user on host, since TIME)`` from a ``.~lock.NAME#`` file: ``name,user,host,time,profile;``."""
    try:
        fields = path.read_text(encoding="utf-8", errors="replace").strip().rstrip(";").split(",")
    except OSError:
        return ""
    if len(fields) < 4:
        return ""
    name, user, host, since = (f.strip() for f in fields[:4])
    where = ", ".join(p for p in (f"{user} on {host}" if user or host else "", f"since {since}" if since else "") if p)
    return (f" by {name}" if name else "") + (f" ({where})" if where else "")
