"""xlwings Lite (issue 11.10): Excel for the web and Mac run Python in the browser (Pyodide), where
no thread can start; the pure core must give the same tables there."""

from __future__ import annotations

import threading
from pathlib import Path

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


# --- the Lite refresh and functions, through the remote-engine Book API Lite hands a script --------------

_LITE_CHILD = r"""
import json, sys, threading
sys.modules["python_calamine"] = None            # Pyodide has no calamine wheel
def no_threads(self):
    raise RuntimeError("can't start new thread")
threading.Thread.start = no_threads
import xlwings as xw
from crm_xl.excel import lite
payload = json.load(open(sys.argv[1]))
book = xw.Book(json=payload)
lite.crm_refresh(book)
answers = {"segment": lite.CRM_SEGMENT([["G01"], ["G02"]]), "tier": lite.CRM_TIER("G01")}
json.dump({"actions": book.json()["actions"], "answers": answers}, open(sys.argv[2], "w"), default=str)
"""


@pytest.fixture(scope="module")
def lite_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict, Path]:
    """crm_refresh in a fresh Python without calamine and without threads (as in Pyodide), on the golden
    workbook with a sheet cap that leaves out the oldest months; run from an empty folder."""
    import json
    import os
    import subprocess
    import sys

    from test_excel_refresh import book_payload, make_book

    folder = tmp_path_factory.mktemp("lite")
    book = make_book(folder / "golden.xlsm", history_rows_in_sheet=100)
    payload = book_payload(book)
    (folder / "payload.json").write_text(json.dumps(payload))
    work = folder / "browser"
    work.mkdir()
    done = subprocess.run([sys.executable, "-c", _LITE_CHILD, str(folder / "payload.json"), str(folder / "out.json")],
                          cwd=work, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "XLWINGS_LICENSE_KEY": os.environ.get("XLWINGS_LICENSE_KEY", "")})
    assert done.returncode == 0, done.stderr
    return payload, json.loads((folder / "out.json").read_text()), work


@pytest.mark.skipif(not __import__("os").environ.get("XLWINGS_LICENSE_KEY"),
                    reason="the xlwings remote engine needs XLWINGS_LICENSE_KEY ('noncommercial' for this project)")
def test_lite_refresh_writes_the_tables_and_nothing_beside_the_book(lite_run) -> None:
    from test_excel_refresh import Replay

    payload, out, work = lite_run
    replay = Replay(payload, out["actions"])
    assert not any(a["func"] == "alert" for a in out["actions"]), [a for a in out["actions"] if a["func"] == "alert"]
    headers, rows = replay.table("customer_snapshot")
    assert headers[:2] == ["customer_id", "customer_name"] and len(rows) == 19
    _, status = replay.table("tbl_status")
    text = dict((r[0], r[1]) for r in status)["status"]
    assert "oldest months did not fit the sheet and are left out" in text
    months = {r[0] for r in replay.table("customer_history")[1]}
    assert 1 <= len(months) < 24                       # the latest months that fit 100 rows
    assert list(work.iterdir()) == []                  # no Parquet, no rejected lines, no lock: no folder


@pytest.mark.skipif(not __import__("os").environ.get("XLWINGS_LICENSE_KEY"),
                    reason="the xlwings remote engine needs XLWINGS_LICENSE_KEY ('noncommercial' for this project)")
def test_lite_functions_answer_from_the_session_refresh(lite_run, golden_result) -> None:
    _, out, _ = lite_run
    snapshot = golden_result["customer_snapshot"].set_index("customer_id")
    assert out["answers"]["tier"] == snapshot.loc["G01", "value_tier"]
    assert out["answers"]["segment"] == [[snapshot.loc["G01", "value_tier"]], [snapshot.loc["G02", "value_tier"]]]


@pytest.mark.skipif(not __import__("os").environ.get("XLWINGS_LICENSE_KEY"),
                    reason="the xlwings remote engine needs XLWINGS_LICENSE_KEY ('noncommercial' for this project)")
def test_a_file_named_on_config_is_refused_where_there_is_no_folder(tmp_path) -> None:
    import xlwings as xw
    from test_excel_refresh import book_payload, make_book

    from crm_xl.excel.refresh import read_book_inputs

    book = make_book(tmp_path / "golden.xlsm", transactions_file="transactions.csv")
    remote = xw.Book(json=book_payload(book))
    with pytest.raises(crm_xl.InputError, match=r"transactions_file.*no folder to read it from.*Raw Transactions"):
        read_book_inputs(remote, folder=False)
