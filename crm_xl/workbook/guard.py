"""Before a workbook file is changed in place (load, set_settings, refresh): the checks, the lock, and
the leftovers of a crash.

:func:`changing` holds the workbook's lock (:func:`crm_xl.io.locks.locked`) around the whole read ->
compute -> write, so two crm_xl commands never interleave: a load waits for a running refresh
instead of being undone by it, and a refresh never writes outputs of a Raw that a load replaced
while it was computing. Inside the lock the workbook must not be open in Excel or LibreOffice
(unless ``force``), and the temporary files a killed writer left beside it are removed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from crm_xl.errors import InputError
from crm_xl.io.files import check_replaceable, real_path, remove_stale_temps
from crm_xl.io.locks import DEFAULT_WAIT, locked, open_elsewhere
from crm_xl.workbook.untrusted import check_file


def sidecar_paths(book: Path) -> tuple[Path, Path]:
    """The files a refresh writes beside the workbook: the full customer_history and the rejected lines."""
    return book.with_name(f"{book.stem}_customer_history.parquet"), book.with_name(f"{book.stem}_rejected_lines.csv")


@contextlib.contextmanager
def changing(path: str | Path, *, force: bool = False, wait: float = DEFAULT_WAIT, refresh: bool = False,
             command: str | None = None) -> Iterator[Path]:
    """Hold the lock of the workbook ``path`` and yield its real path (a symlink's target, which is
    what gets replaced). ``refresh``: the sidecar files will be replaced too, so they are checked.

    Refused with an :class:`InputError` before anything is read: a missing file, a read-only file or
    folder (even for root), a file whose owner could not be kept, a workbook open in Excel or
    LibreOffice (``force`` writes anyway), a file that is not a zip package. Nested calls in the same
    thread (a load with ``--set``) take the lock once and check once.
    """
    given = Path(path)
    book = real_path(given)
    if not book.is_file():
        raise InputError("workbook", f"file not found: {given}")
    check_replaceable(book)
    with locked(book, wait=wait, command=command) as took:
        if took:
            _check_closed(given, force)
            check_file(book)     # a zip, not encrypted, not an old .xls: said before anything is read
            for sidecar in sidecar_paths(book) if refresh else ():
                if sidecar.exists():
                    check_replaceable(real_path(sidecar))
            remove_stale_temps(book.parent, [book.name, *(s.name for s in sidecar_paths(book))])
        yield book


def _check_closed(book: Path, force: bool) -> None:
    where = open_elsewhere(book)
    if where is not None and not force:
        raise InputError("workbook", f"{book.name} is {where}: close it first (in Excel, press Refresh there "
                                     "instead); if no one has it open, a crash left the lock file: delete it, "
                                     "or use --force")
