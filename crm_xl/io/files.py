"""Replacing files atomically: write a temporary file beside the target, then rename it over the target.

A reader (Excel, Power BI, another process) sees the old file or the new one, never half of one,
and a failure leaves the old file untouched. On top of the rename:

* a symbolic link is followed: its target is replaced and the link stays a link;
* the new file gets the old one's permissions, owner and group (or, for a new file, those of a
  reference file such as the workbook, else the usual 0666 less the umask), and its content
  reaches the disk (``fsync``) before the rename;
* a file nobody may write (no write bit, even for root) or whose owner could not be kept is
  refused before anything is written (:func:`check_replaceable`);
* a set of files is replaced in order with :func:`replacing`, which puts the earlier ones back
  when a later one (or the ``with`` body, e.g. replacing the workbook) fails, so the workbook
  replaced last is the commit point; :func:`write_set` writes a folder of files as one set;
* temporary files are named ``.~crm_xl.NAME.PID.RANDOM.tmp`` so a crash (kill -9, power cut)
  leaves something recognisable, which :func:`remove_stale_temps` deletes on the next run.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import re
import secrets
import shutil
import stat
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path

from crm_xl.errors import InputError

TEMP_PREFIX = ".~crm_xl."
#: Names this process's temporary files carry, so a cleanup never removes one still in use.
_OURS: set[str] = set()
_POSIX = os.name == "posix"


def replace_atomically(target: str | Path, write: Callable[[Path], None], *, like: str | Path | None = None) -> Path:
    """Call ``write(temp_path)``, then move the temporary file over ``target`` (a symlink's target).

    ``like``: the file whose mode, owner and group a *new* ``target`` gets (an existing one keeps its own).
    """
    target = real_path(target)
    commit(write_beside(target, write, like=like), target)
    return target


def commit(temp: Path, target: Path) -> None:
    """Move the finished temporary file ``temp`` (from :func:`write_beside`) over ``target``: the one
    rename that makes the new content visible. ``temp`` is gone afterwards, whatever happens."""
    try:
        pause_for_test("replace", target.name)
        os.replace(temp, target)
    finally:
        discard(temp)
    _fsync_folder(target.parent)


def write_beside(target: str | Path, write: Callable[[Path], None], *, like: str | Path | None = None) -> Path:
    """The first half of :func:`replace_atomically`: a finished temporary file beside ``target``,
    with ``target``'s mode, owner and group and its bytes on disk, for the caller to move into place
    (:func:`replacing`) once everything else it depends on has succeeded. Nothing is left behind if
    ``write`` fails."""
    target = real_path(target)
    check_replaceable(target)
    temp = new_temp(target)
    try:
        temp.touch(mode=0o600, exist_ok=False)
        write(temp)
        _fsync(temp)
        reference = target if target.exists() else Path(like) if like and Path(like).exists() else None
        _copy_metadata(reference, temp, target)
    except BaseException:
        discard(temp)
        raise
    return temp


def real_path(path: str | Path) -> Path:
    """``path`` with every symbolic link followed: the file a replacement must go to."""
    return Path(os.path.realpath(path))


def new_temp(target: Path, *, suffix: str = "") -> Path:
    """A fresh name for a temporary file or folder beside ``target`` (not created), recognisably ours."""
    name = f"{TEMP_PREFIX}{target.name}.{os.getpid()}.{secrets.token_hex(4)}{suffix}.tmp"
    _OURS.add(name)
    return target.with_name(name)


def discard(temp: Path) -> None:
    """Remove a temporary file or folder of this process (gone already is fine)."""
    with contextlib.suppress(FileNotFoundError):
        if temp.is_dir() and not temp.is_symlink():
            shutil.rmtree(temp)
        else:
            temp.unlink()
    _OURS.discard(temp.name)


def pause_for_test(point: str, name: str) -> None:
    """A test hook: with ``CRM_XL_TEST_PAUSE=POINT:NAME=FILE`` in the environment, a process reaching
    that point (e.g. ``replace:book.xlsm``, just before the rename onto book.xlsm; ``locked:book.xlsm``)
    writes its pid to FILE and waits to be killed, so tests can crash it at a known moment."""
    spec = os.environ.get("CRM_XL_TEST_PAUSE")
    if not spec:
        return
    where, _, signal_file = spec.partition("=")
    if where != f"{point}:{name}":
        return
    Path(signal_file).write_text(str(os.getpid()))
    while True:
        time.sleep(3600)


# --- checks ---------------------------------------------------------------------------------------------


def check_replaceable(target: Path, *, folder: bool = False) -> None:
    """Refuse (:class:`InputError`) to replace ``target`` when it or its folder is read-only, when the
    new file could not keep its owner and group, or when it is a folder (``folder``: when it is not).

    Root may write anything, so "read-only" is read from the mode bits as well as from
    :func:`os.access`: a file or folder without any write bit is never replaced.
    """
    if not target.parent.is_dir():
        raise InputError(target.name, f"folder not found: {target.parent}")
    if target.exists():
        if target.is_dir() != folder:
            raise InputError(target.name, f"{target} is {'not ' if folder else ''}a folder: crm_xl writes "
                                          f"{'a folder of files' if folder else 'a file'} there; rename or move it")
        info = target.stat()
        if not _writable(target, info):
            raise InputError(target.name, f"{target} is read-only (mode {stat.filemode(info.st_mode)}): crm_xl "
                                          "replaces the file to update it; make it writable first")
        _check_owner(target, info)
    if not _writable(target.parent, target.parent.stat(), folder=True):
        raise InputError(target.name, f"the folder {target.parent} is read-only: crm_xl cannot write "
                                      f"{target.name} there; make the folder writable or work on a copy elsewhere")


def _writable(path: Path, info: os.stat_result, *, folder: bool = False) -> bool:
    # Windows marks many folders read-only without meaning it (and ignores it for them): only os.access counts
    no_write_bits = not info.st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)
    return os.access(path, os.W_OK) and not (no_write_bits and (_POSIX or not folder))


def _check_owner(target: Path, info: os.stat_result) -> None:
    """A replaced file is a new file, owned by whoever writes it: only root can give it back its owner,
    and an owner only a group they belong to. Refuse rather than silently change either."""
    if not _POSIX or os.geteuid() == 0:
        return
    if info.st_uid != os.geteuid():
        raise InputError(target.name, f"{target} belongs to {_user(info.st_uid)}: replacing it would make it "
                                      f"yours ({_user(os.geteuid())}); run crm_xl as its owner, or work on a copy")
    if info.st_gid != os.getegid() and info.st_gid not in os.getgroups():
        raise InputError(target.name, f"{target} is in group {_group(info.st_gid)}, which you are not in: "
                                      "replacing it would change its group; work on a copy")


def _user(uid: int) -> str:
    try:
        import pwd

        return f"user {pwd.getpwuid(uid).pw_name}"
    except (ImportError, KeyError):
        return f"user id {uid}"


def _group(gid: int) -> str:
    try:
        import grp

        return grp.getgrgid(gid).gr_name
    except (ImportError, KeyError):
        return f"id {gid}"


def _copy_metadata(source: Path | None, temp: Path, target: Path) -> None:
    """Give ``temp`` the mode, owner and group of ``source`` (default mode when there is none)."""
    if source is None:
        os.chmod(temp, _default_mode())
        return
    info = source.stat()
    os.chmod(temp, stat.S_IMODE(info.st_mode))
    if _POSIX and (info.st_uid, info.st_gid) != (os.geteuid(), os.getegid()):
        try:
            os.chown(temp, info.st_uid, info.st_gid)
        except PermissionError:
            raise InputError(target.name, f"cannot give the new {target.name} the owner and group of "
                                          f"{source.name} ({_user(info.st_uid)}, group {_group(info.st_gid)}); "
                                          "run crm_xl as its owner, or work on a copy") from None


def _default_mode(folder: bool = False) -> int:
    umask = os.umask(0)
    os.umask(umask)
    return (0o777 if folder else 0o666) & ~umask


def _fsync(path: Path) -> None:
    """The file's bytes on disk before the rename, so a power cut cannot leave a renamed empty file."""
    fd = os.open(path, os.O_RDWR | getattr(os, "O_BINARY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_folder(folder: Path) -> None:
    """The rename itself on disk (POSIX; Windows has no directory handles to sync)."""
    if not _POSIX:
        return
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# --- replacing a set of files ---------------------------------------------------------------------------


@contextlib.contextmanager
def replacing(moves: Sequence[tuple[Path, Path]]) -> Iterator[None]:
    """Move each finished temporary file over its target, in order, then run the ``with`` body.

    If a move or the body fails, every target already replaced gets its previous content back (a
    target that did not exist is removed) and the error propagates; the remaining temporary files
    are removed either way. So the body can be the commit point, e.g. replacing the workbook after
    its sidecar files, or writing the tables of an open workbook in Excel.

    The previous content is kept as a hard link (no copy); where the file system has none (FAT,
    some network shares) the old file is renamed aside instead, so for the moment between two
    renames the target is missing. A kill -9 between two renames cannot be undone: the next run
    removes the leftovers (see :func:`remove_stale_temps`).
    """
    done: list[tuple[Path, Path | None]] = []
    try:
        for temp, target in moves:
            done.append((target, _keep_previous(target)))
            commit(temp, target)
        yield
    except BaseException:
        for target, backup in reversed(done):
            with contextlib.suppress(OSError):
                if backup is None:
                    target.unlink()
                else:
                    os.replace(backup, target)
        raise
    finally:
        for temp, _ in moves:
            discard(temp)
        for _, backup in done:
            if backup is not None:
                discard(backup)


def _keep_previous(target: Path) -> Path | None:
    if not target.exists():
        return None
    backup = new_temp(target)
    try:
        os.link(target, backup)
    except OSError:     # no hard links here
        os.replace(target, backup)
    return backup


# --- leftovers of a crash -------------------------------------------------------------------------------


def stale_temps(folder: Path, names: Iterable[str]) -> list[Path]:
    """The temporary files (or folders) beside ``folder / name`` that no part of this process is using:
    left by a process that was killed, when the caller holds the lock that every writer of these
    names takes. Also the ``.~NAME.XXXXXXXX.tmp`` files earlier versions of crm_xl left."""
    patterns = [re.compile(rf"{re.escape(TEMP_PREFIX + name)}\.\d+\.[0-9a-f]{{8}}(\.dir|\.old)?\.tmp")
                for name in names]
    patterns += [re.compile(rf"\.~{re.escape(name)}\.[0-9a-z_]{{8}}\.tmp") for name in names]
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return []
    return [Path(e.path) for e in entries
            if e.name not in _OURS and any(p.fullmatch(e.name) for p in patterns)]


def recover_folder(target: Path) -> None:
    """Undo a :func:`swap_folder` killed between its two renames: the old folder, renamed away, comes
    back when no folder took its place (call it holding the folder's lock, before removing leftovers)."""
    if target.exists():
        return
    olds = [p for p in stale_temps(target.parent, [target.name]) if p.name.endswith(".old.tmp") and p.is_dir()]
    if olds:
        os.replace(max(olds, key=lambda p: p.stat().st_mtime_ns), target)


def remove_stale_temps(folder: Path, names: Iterable[str]) -> list[Path]:
    """Remove :func:`stale_temps` (best effort: one still open elsewhere on Windows stays)."""
    removed = []
    for path in stale_temps(folder, names):
        with contextlib.suppress(OSError):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
            removed.append(path)
    return removed


# --- a folder of files as a set -------------------------------------------------------------------------

MANIFEST = "crm_xl_run.json"


def temp_folder(target: Path) -> Path:
    """A new, empty temporary folder beside ``target`` (for :func:`swap_folder`)."""
    temp = new_temp(target, suffix=".dir")
    temp.mkdir()
    return temp


def swap_folder(new: Path, target: Path) -> None:
    """Put the finished folder ``new`` in the place of ``target``: the old folder is renamed away, the
    new one renamed in, the old one deleted. The new folder gets the old one's mode, owner and group."""
    pause_for_test("swap", target.name)
    old = None
    if target.exists():
        _copy_metadata(target, new, target)
        old = new_temp(target, suffix=".old")
        os.replace(target, old)
        pause_for_test("swapping", target.name)
    else:
        os.chmod(new, _default_mode(folder=True))
    try:
        os.replace(new, target)
    except BaseException:
        if old is not None:
            os.replace(old, target)
        raise
    _fsync_folder(target.parent)
    if old is not None:
        discard(old)


def new_id(now: dt.datetime | None = None) -> str:
    """An id for one refresh or run: its time and 8 random hex digits, e.g. ``20250203T040506-9f86d081``."""
    return f"{(now or dt.datetime.now()):%Y%m%dT%H%M%S}-{secrets.token_hex(4)}"


def write_set(folder: str | Path, writers: Mapping[str, Callable[[Path], None]], run_id: str) -> dict[str, Path]:
    """The files ``writers`` names (file name -> ``write(path)``) in ``folder`` as one set, with a manifest
    (:data:`MANIFEST`: the run id, each file's size and sha256) written with them.

    When ``folder`` is new or holds only files of this set, the set is written into a temporary folder
    beside it and swapped in (:func:`swap_folder`): a reader sees the old set or the new one. When it
    holds other files (the user's, or an input file), those are left alone: each file of the set is
    replaced atomically, the manifest last, and a failure puts back the files already replaced; a
    crash in the moment between two renames shows as a manifest whose hashes do not match.
    """
    folder = real_path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    owned = {*writers, MANIFEST}
    others = folder.exists() and any(not e.name.startswith(TEMP_PREFIX) and (e.name not in owned or not e.is_file())
                                     for e in os.scandir(folder))
    if others:
        _write_in_place(folder, writers, run_id)
    else:
        check_replaceable(folder, folder=True)
        new = temp_folder(folder)
        try:
            for name, write in writers.items():
                write(new / name)
                _fsync(new / name)
            _write_manifest(new / MANIFEST, [new / name for name in writers], run_id)
            _fsync(new / MANIFEST)
            swap_folder(new, folder)
        finally:
            discard(new)
    return {name: folder / name for name in writers}


def _write_in_place(folder: Path, writers: Mapping[str, Callable[[Path], None]], run_id: str) -> None:
    temps: list[tuple[Path, Path]] = []
    try:
        for name, write in writers.items():
            temps.append((write_beside(folder / name, write), folder / name))
        manifest = folder / MANIFEST
        temps.append((write_beside(manifest, lambda path: _write_manifest(path, [t for t, _ in temps], run_id,
                                                                          [n.name for _, n in temps])), manifest))
    except BaseException:
        for temp, _ in temps:
            discard(temp)
        raise
    with replacing(temps):
        pass


def _write_manifest(path: Path, files: Sequence[Path], run_id: str, names: Sequence[str] | None = None) -> None:
    from crm_xl._version import __version__

    entries = []
    for file, name in zip(files, names or [f.name for f in files], strict=True):
        with open(file, "rb") as handle:
            digest = hashlib.file_digest(handle, "sha256").hexdigest()
        entries.append({"name": name, "bytes": file.stat().st_size, "sha256": digest})
    manifest = {"run_id": run_id, "crm_xl_version": __version__, "files": entries}
    path.write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
