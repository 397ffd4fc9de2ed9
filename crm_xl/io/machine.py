"""What the computer running crm_xl offers a run: today's date and the memory it may use.

The core never reads a clock or asks the operating system (the same inputs always give the same
tables); the adapters ask here and pass the answers in (``crm_xl.run(..., today=, memory_limit=)``).
Memory is read without psutil: ``/proc/meminfo`` and the cgroup limit on Linux (a container's
limit is what counts there), ``GlobalMemoryStatusEx`` on Windows, ``sysconf`` elsewhere.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import sys
from pathlib import Path

from crm_xl.errors import CrmXlError

#: An administrator's cap on the memory one run may use, e.g. ``4GB`` on a shared server: ``1234``
#: (bytes), ``500MB``, ``4GB``. Lower than what is available, it wins; otherwise what is available does.
MEMORY_LIMIT_VARIABLE = "CRM_XL_MEMORY_LIMIT"
_UNITS = {"": 1, "b": 1, "kb": 2**10, "mb": 2**20, "gb": 2**30, "tb": 2**40}


def today() -> dt.date:
    """The computer's date (local time), the ``today`` the core is given."""
    return dt.date.today()


def memory_limit() -> int | None:
    """Bytes a run may use: the memory available now, capped by ``CRM_XL_MEMORY_LIMIT``; ``None``
    when neither is known (the core then does not check)."""
    available = available_memory()
    cap = _configured_limit()
    known = [n for n in (available, cap) if n is not None]
    return min(known) if known else None


def _configured_limit() -> int | None:
    text = os.environ.get(MEMORY_LIMIT_VARIABLE, "").strip()
    if not text:
        return None
    found = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kmgt]?b?)", text.lower())
    if found is None:
        raise CrmXlError(f"{MEMORY_LIMIT_VARIABLE}={text!r}: expected a size such as 4GB, 500MB or 1000000 (bytes)")
    return int(float(found.group(1)) * _UNITS[found.group(2)])


def available_memory() -> int | None:
    """Physical memory free for this process now (what can be allocated without swapping), or None."""
    if sys.platform == "win32":
        return _windows_available()
    if sys.platform.startswith("linux"):
        found = [n for n in (_meminfo_available(), _cgroup_available()) if n is not None]
        return min(found) if found else None
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def _meminfo_available() -> int | None:
    try:
        text = Path("/proc/meminfo").read_text(encoding="ascii")
    except OSError:
        return None
    found = re.search(r"^MemAvailable:\s+(\d+) kB", text, re.M)
    return int(found.group(1)) * 1024 if found else None


def _cgroup_available() -> int | None:
    """A cgroup v2 memory limit less what the group uses (a container or a systemd slice)."""
    base = Path("/sys/fs/cgroup")
    try:
        limit = (base / "memory.max").read_text(encoding="ascii").strip()
        used = int((base / "memory.current").read_text(encoding="ascii").strip())
    except (OSError, ValueError):
        return None
    return max(int(limit) - used, 0) if limit.isdigit() else None


def _windows_available() -> int | None:
    import ctypes

    class MemoryStatus(ctypes.Structure):
        _fields_ = [("dwLength", ctypes.c_ulong), ("dwMemoryLoad", ctypes.c_ulong),
                    ("ullTotalPhys", ctypes.c_ulonglong), ("ullAvailPhys", ctypes.c_ulonglong),
                    ("ullTotalPageFile", ctypes.c_ulonglong), ("ullAvailPageFile", ctypes.c_ulonglong),
                    ("ullTotalVirtual", ctypes.c_ulonglong), ("ullAvailVirtual", ctypes.c_ulonglong),
                    ("ullAvailExtendedVirtual", ctypes.c_ulonglong)]

    status = MemoryStatus()
    status.dwLength = ctypes.sizeof(MemoryStatus)
    if not ctypes.windll.kernel32.GlobalMemoryStatusEx(ctypes.byref(status)):   # type: ignore[attr-defined]
        return None
    # a 32-bit Python cannot use more than its address space, whatever the machine has
    return int(min(status.ullAvailPhys, status.ullAvailVirtual))
