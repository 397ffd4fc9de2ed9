"""Memory pages for the in-memory engine's arrays on Linux: numpy's hugepage advice off during a run.

On Linux, numpy advises the kernel to back every array of 4 MB or more with 2 MB transparent
hugepages (``madvise(MADV_HUGEPAGE)``). Where the kernel's defrag setting is ``madvise`` (the
default of Debian, Ubuntu and most distributions), each such page fault may first compact memory
to find a free 2 MB block, synchronously, in the faulting process. A refresh allocates a few GB of
short-lived arrays, one layer after another, so it pays that compaction on most of them: on the
1M-line benchmark 3.8-4.3 s of kernel time out of a 10 s run, against 1.2-1.6 s with ordinary
4 kB pages, for the same tables (``bench/bench_pipeline.py``; docs/engines.md#figures).

:func:`small_pages` turns the advice off for the duration of a run and back to what it was after,
counting nested and concurrent runs so the last one out restores it. It changes how memory is
obtained, never a value. Set ``NUMPY_MADVISE_HUGEPAGE`` (numpy's own switch, ``1`` or ``0``) to
keep the process's setting instead; off Linux, or where numpy has no such switch, nothing is done.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Callable, Iterator

#: numpy's environment variable: when set, the user has chosen, and runs leave the advice alone.
NUMPY_SWITCH = "NUMPY_MADVISE_HUGEPAGE"

_lock = threading.Lock()
_runs = 0
_before = True


def _switch() -> Callable[[bool], bool] | None:
    """numpy's setter (returns the previous setting), if this numpy and platform have one."""
    if not sys.platform.startswith("linux") or NUMPY_SWITCH in os.environ:
        return None
    try:
        from numpy._core.multiarray import _set_madvise_hugepage
    except ImportError:   # a numpy without the switch: its arrays keep whatever it does
        return None
    return _set_madvise_hugepage


@contextlib.contextmanager
def small_pages() -> Iterator[None]:
    """numpy's hugepage advice off while the block runs (see the module's docstring for why)."""
    global _runs, _before
    switch = _switch()
    if switch is None:
        yield
        return
    with _lock:
        if _runs == 0:
            _before = switch(False)
        _runs += 1
    try:
        yield
    finally:
        with _lock:
            _runs -= 1
            if _runs == 0:
                switch(_before)
