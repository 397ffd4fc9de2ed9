"""xlwings Lite (issue 11.10): Excel for the web and Mac run Python in the browser (Pyodide), where
no thread can start; the pure core must give the same tables there."""

from __future__ import annotations

import threading

import pandas as pd
import pytest

import crm_xl


def _no_threads(self: threading.Thread) -> None:
    raise RuntimeError("can't start new thread")   # what Pyodide's threading says


def test_the_core_gives_the_same_tables_where_no_thread_can_start(
        golden_inputs: dict[str, pd.DataFrame], golden_config: dict[str, object],
        golden_result: dict[str, pd.DataFrame], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(threading.Thread, "start", _no_threads)
    with pytest.raises(RuntimeError):               # the patch holds: nothing below may start a thread
        threading.Thread(target=print).start()
    tables = crm_xl.run(**golden_inputs, config=golden_config)
    assert list(tables) == list(golden_result)
    for name, frame in tables.items():
        pd.testing.assert_frame_equal(frame, golden_result[name], obj=name)
