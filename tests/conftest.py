"""Shared fixtures for the crm_xl test suite."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, settings

import crm_xl

# No hypothesis test may fail because a busy CI machine ran one example slowly: timing is never a test result.
settings.register_profile("crm_xl", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("crm_xl")

# --- golden fixture (tests/fixtures/golden) -------------------------------------------------------

GOLDEN_DIR = Path(__file__).parent / "fixtures" / "golden"
GOLDEN_CONFIG = {"report_month": "2024-12", "history_months": 24}


def read_golden_csv(name: str) -> pd.DataFrame:
    """A golden CSV as text, the way a CSV reader gives it (no type guessing, blanks stay "")."""
    return pd.read_csv(GOLDEN_DIR / f"{name}.csv", dtype=str, keep_default_na=False)


@pytest.fixture
def golden_inputs() -> dict[str, pd.DataFrame]:
    """Fresh text copies of the golden raw tables: transactions, customers, products."""
    return {name: read_golden_csv(name) for name in ("transactions", "customers", "products")}


@pytest.fixture
def golden_expected() -> pd.DataFrame:
    """The golden answer key (expected_history.csv), as text."""
    return read_golden_csv("expected_history")


@pytest.fixture(scope="session")
def golden_result() -> dict[str, pd.DataFrame]:
    """crm_xl.run on the golden text inputs with the golden config; treat as read-only."""
    inputs = {name: read_golden_csv(name) for name in ("transactions", "customers", "products")}
    return crm_xl.run(**inputs, config=dict(GOLDEN_CONFIG))


@pytest.fixture
def golden_config() -> dict[str, object]:
    """The golden run's settings (report_month 2024-12, history_months 24), a fresh copy."""
    return dict(GOLDEN_CONFIG)


def one_error_line(capsys: pytest.CaptureFixture[str], *needles: str) -> str:
    """The CLI's stderr is one line, ``crm-xl: error: …``, naming every needle, never a traceback."""
    err = capsys.readouterr().err.strip()
    assert err.startswith("crm-xl: error: ") and "\n" not in err and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err
    return err


# --- a refreshed sample workbook (the analyst views' sheets) ---------------------------------------


@pytest.fixture(scope="session")
def refreshed_sample(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, pd.DataFrame]]:
    """The committed template with the sample data in Raw, refreshed headless, and the tables it wrote."""
    import datetime as dt

    from crm_xl.io.sample import generate
    from crm_xl.workbook.book import load_raw, new_workbook
    from crm_xl.workbook.refresh import refresh_workbook

    book = tmp_path_factory.mktemp("views") / "sample.xlsm"
    new_workbook(book)
    load_raw(book, generate())
    result = refresh_workbook(book, now=dt.datetime(2026, 1, 5, 8, 0, 0))
    return book, result.tables
