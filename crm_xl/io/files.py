"""Replacing a file atomically: write a temporary file beside it, then rename it over the target.

A reader (Excel, Power BI, another process) sees the old file or the new one, never half of one,
and a failure leaves the old file untouched. The new file gets the old file's permissions, or
the usual ones for a new file (0666 less the umask) instead of mkstemp's private 0600.
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path


def replace_atomically(target: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(temp_path)``, then move the temporary file over ``target``."""
    target = Path(target)
    temp = write_beside(target, write)
    try:
        os.replace(temp, target)
    finally:
        if temp.exists():
            temp.unlink()
    return target


def write_beside(target: str | Path, write: Callable[[Path], None]) -> Path:
    """The first half of :func:`replace_atomically`: a finished temporary file beside ``target``,
    with ``target``'s permissions, for the caller to move into place (``os.replace``) once
    everything else it depends on has succeeded. Nothing is left behind if ``write`` fails."""
    target = Path(target)
    handle, name = tempfile.mkstemp(prefix=f".~{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(handle)
    temp = Path(name)
    try:
        write(temp)
        os.chmod(temp, _mode_for(target))
    except BaseException:
        temp.unlink()
        raise
    return temp


def _mode_for(target: Path) -> int:
    if target.exists():
        return stat.S_IMODE(target.stat().st_mode)
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask
