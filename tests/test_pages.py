"""crm_xl.engines.pages: numpy's hugepage advice is off during a run and as it was after."""

from __future__ import annotations

import sys
import threading

import pandas as pd
import pytest

from crm_xl.engines import pages
from crm_xl.io.sample import generate

switch = pytest.importorskip("numpy._core.multiarray")._set_madvise_hugepage
linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="numpy's hugepage advice is Linux-only")


def advice() -> bool:
    """numpy's current setting, read without changing it."""
    current = switch(True)
    switch(current)
    return current


@pytest.fixture(autouse=True)
def advice_on(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv(pages.NUMPY_SWITCH, raising=False)
    before = switch(True)
    yield
    switch(before)


@linux
def test_advice_is_off_inside_a_run_and_restored_after():
    with pages.small_pages():
        assert advice() is False
    assert advice() is True


@linux
def test_a_setting_already_off_stays_off():
    switch(False)
    with pages.small_pages():
        assert advice() is False
    assert advice() is False


@linux
def test_nested_and_concurrent_runs_restore_only_when_the_last_ends():
    inner_entered, outer_may_end = threading.Event(), threading.Event()
    seen: list[bool] = []

    def other_run() -> None:
        with pages.small_pages():
            inner_entered.set()
            outer_may_end.wait(10)
            seen.append(advice())

    with pages.small_pages():
        worker = threading.Thread(target=other_run)
        worker.start()
        assert inner_entered.wait(10)
        with pages.small_pages():
            assert advice() is False
        assert advice() is False
    assert advice() is False, "the other run is still going: the advice must stay off"
    outer_may_end.set()
    worker.join(10)
    assert seen == [False]
    assert advice() is True


@linux
def test_an_error_inside_still_restores_the_advice():
    with pytest.raises(ValueError), pages.small_pages():
        raise ValueError("stop")
    assert advice() is True


@linux
def test_the_users_own_choice_is_left_alone(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(pages.NUMPY_SWITCH, "1")
    with pages.small_pages():
        assert advice() is True


def test_elsewhere_than_linux_nothing_is_changed(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(pages.sys, "platform", "win32")
    with pages.small_pages():
        assert advice() is True


@linux
def test_a_run_sees_the_advice_off_and_gives_the_same_tables(monkeypatch: pytest.MonkeyPatch):
    import crm_xl
    from crm_xl.core import pipeline

    seen: list[bool] = []
    real = pipeline.finish_core

    def watched(*args, **kwargs):
        seen.append(advice())
        return real(*args, **kwargs)

    monkeypatch.setattr(pipeline, "finish_core", watched)
    tables = generate(n_customers=60, months=8, end_month="2024-12", seed=3)
    config = {"report_month": "2024-12", "history_months": 6}
    ran = crm_xl.run(tables["transactions"], tables["customers"], tables["products"], config)
    assert seen == [False] and advice() is True
    monkeypatch.setenv(pages.NUMPY_SWITCH, "1")
    again = crm_xl.run(tables["transactions"], tables["customers"], tables["products"], config)
    for name, frame in ran.items():
        pd.testing.assert_frame_equal(frame, again[name], check_exact=True)
    assert seen == [False, True]
