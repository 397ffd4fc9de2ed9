"""Engines: the facts on DuckDB and Spark equal the numpy facts, dtype for dtype and row for row,
so every table of ``crm_xl.run`` is the same whichever engine ran (docs/engines.md).

DuckDB is in the test extra; the Spark tests skip without pyspark or Java and are slow (one local
session for the module).
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import crm_xl
from crm_xl import engines
from crm_xl.cli import main
from crm_xl.config import Config
from crm_xl.core.facts import Facts, customer_month_facts
from crm_xl.core.staging import KIND_CORE, KIND_ENTRY, KIND_OTHER, stage
from crm_xl.engines.sql import join_limbs, split_limbs
from crm_xl.errors import ConfigError, CrmXlError
from crm_xl.io.sample import generate
from tests.conftest import GOLDEN_DIR

needs_duckdb = pytest.mark.skipif(importlib.util.find_spec("duckdb") is None,
                                  reason="duckdb not installed (pip install 'crm-xl[duckdb]')")
needs_spark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("pyspark") is None,
                       reason="pyspark not installed (pip install 'crm-xl[spark]')"),
    pytest.mark.skipif(shutil.which("java") is None, reason="Spark needs Java 17+ on PATH"),
    # pyspark warns that it does not support pandas 3 yet; the engine hands it Arrow, not pandas
    pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas:FutureWarning"),
]
SQL_ENGINES = [pytest.param("duckdb", marks=needs_duckdb), pytest.param("spark", marks=needs_spark)]


def spark_test(test):
    for mark in needs_spark:
        test = mark(test)
    return test


@pytest.fixture(scope="module", autouse=True)
def _one_spark_session_for_the_module():
    """The Spark engine makes its small local session on first use (so a run without Spark tests never
    starts Java) and every later call reuses it; it is stopped once the module is done."""
    yield
    if "pyspark.sql" in sys.modules:
        from pyspark.sql import SparkSession

        active = SparkSession.getActiveSession()
        if active is not None:
            active.stop()


def assert_same_facts(got: Facts, want: Facts) -> None:
    pd.testing.assert_frame_equal(got.months, want.months, check_exact=True, obj="facts.months")
    pd.testing.assert_frame_equal(got.invoice_links, want.invoice_links, check_exact=True, obj="invoice_links")
    for column in ("core_units", "core_revenue"):   # exact integers, never floats, in an object column too
        values = got.months[column]
        assert values.dtype != object or all(type(v) is int for v in values), column


def assert_same_tables(got: dict[str, pd.DataFrame], want: dict[str, pd.DataFrame]) -> None:
    assert list(got) == list(want)
    for name in want:
        pd.testing.assert_frame_equal(got[name], want[name], check_exact=True, obj=name)


# --- the registry and the boundary -----------------------------------------------------------------


def test_every_engine_is_listed_with_numpy_as_default() -> None:
    assert list(engines.ENGINES) == ["numpy", "duckdb", "spark"]
    assert engines.facts_function(engines.DEFAULT_ENGINE) is customer_month_facts


@pytest.mark.parametrize("name", ["pandas", "DuckDB", "", None, 3])
def test_an_unknown_engine_is_refused_naming_the_allowed_ones(golden_inputs, name) -> None:
    with pytest.raises(ConfigError, match=r"'engine': must be one of 'numpy', 'duckdb', 'spark', got"):
        crm_xl.run(**golden_inputs, engine=name)


def test_an_engine_whose_library_is_missing_says_what_to_install(golden_inputs, monkeypatch) -> None:
    monkeypatch.setitem(engines.ENGINES, "duckdb",
                        engines.Engine("duckdb", "crm_xl.engines.duckdb_facts", "crm_xl_no_such_package", "duckdb"))
    with pytest.raises(CrmXlError, match=r"needs the crm_xl_no_such_package package.*pip install 'crm-xl\[duckdb\]'"):
        crm_xl.run(**golden_inputs, engine="duckdb")


def test_the_cli_refuses_an_unknown_engine(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["run", "--data", str(GOLDEN_DIR), "--out", str(tmp_path), "--engine", "pandas"])
    assert exit_.value.code == 2
    assert "invalid choice: 'pandas'" in capsys.readouterr().err


# --- exact sums beyond int64 -----------------------------------------------------------------------


@given(st.lists(st.integers(-(2**100), 2**100), max_size=30))
def test_limbs_put_back_together_are_the_integers(values: list[int]) -> None:
    array = np.array(values, dtype=object)
    parts = split_limbs(array)
    assert all(part.dtype == "int64" and (np.abs(part) < 2**32).all() for part in parts)
    assert join_limbs(parts).tolist() == values


def lines_frame(rows: list[tuple[int, int, str, float, int, int, int]], wide: bool = False) -> pd.DataFrame:
    """Staged lines from (customer_key, invoice_key, date, quantity, kind, units, revenue) rows; ``wide``
    makes units and revenue Python integers (object), as staging does when int64 could overflow."""
    frame = pd.DataFrame(rows, columns=["customer_key", "invoice_key", "date", "quantity", "kind", "units",
                                        "revenue"])
    frame = frame.astype({"customer_key": "int64", "invoice_key": "int64", "quantity": "float64", "kind": "int8"})
    frame["date"] = pd.to_datetime(frame["date"], format="ISO8601").astype("datetime64[s]")
    for column in ("units", "revenue"):
        frame[column] = pd.Series([int(v) for v in frame[column]], dtype=object) if wide \
            else frame[column].astype("int64")
    return frame


BIG = 2**70
EDGE_DATES = ["2023-12-31T23:59:59", "2024-01-01T00:00:00", "2024-01-31T23:00:00", "2024-02-01T00:30:00",
              "2024-02-29T12:00:00", "2024-03-01T00:00:00", "1969-12-31T23:59:59", "1970-01-01T00:00:00"]


@needs_duckdb
@pytest.mark.parametrize("measure", ["units", "revenue"])
def test_sums_beyond_int64_are_exact_on_duckdb(measure: str) -> None:
    frame = lines_frame([
        (0, 1, "2024-01-31T10:00:00", 1, KIND_CORE, BIG, 3),
        (0, 1, "2024-02-01T10:00:00", 1, KIND_CORE, BIG + 1, -5),
        (0, 2, "2024-01-15T00:00:00", 2, KIND_CORE, BIG // 3, 2**80),
        (1, 1, "2024-02-10T00:00:00", 1, KIND_ENTRY, 0, 0),      # a month with an entry line only
        (1, 3, "2024-02-11T00:00:00", 1, KIND_CORE, 0, 7),
    ], wide=True)
    want = customer_month_facts(frame, measure)
    assert want.months["core_units"].tolist()[0] == BIG + BIG // 3      # an int64 sum would have overflowed
    assert_same_facts(engines.facts_function("duckdb")(frame, measure), want)


# --- a property on small random lines --------------------------------------------------------------


@st.composite
def random_lines(draw: st.DrawFn) -> tuple[pd.DataFrame, str]:
    """Few customers, invoices and dates (so invoices repeat, span month ends and share days), every
    kind, returns and zero or NaN quantities, measures of either sign, sometimes beyond int64."""
    wide = draw(st.booleans())
    measure = st.integers(-(BIG * 2), BIG * 2) if wide else st.integers(-50, 10**12)
    row = st.tuples(st.integers(0, 4), st.integers(0, 5), st.sampled_from(EDGE_DATES),
                    st.sampled_from([1.0, 2.5, 0.0, -1.0, float("nan")]),
                    st.sampled_from([KIND_CORE, KIND_CORE, KIND_ENTRY, KIND_OTHER]), measure, measure)
    rows = draw(st.lists(row, min_size=1, max_size=40))
    return lines_frame(rows, wide=wide), draw(st.sampled_from(["units", "revenue"]))


@needs_duckdb
@settings(max_examples=80, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(random_lines())
def test_duckdb_facts_equal_numpy_facts_on_random_lines(case: tuple[pd.DataFrame, str]) -> None:
    lines, measure = case
    assert_same_facts(engines.facts_function("duckdb")(lines, measure), customer_month_facts(lines, measure))


@spark_test
@settings(max_examples=8, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(random_lines())
def test_spark_facts_equal_numpy_facts_on_random_lines(case: tuple[pd.DataFrame, str]) -> None:
    lines, measure = case
    assert_same_facts(engines.facts_function("spark")(lines, measure), customer_month_facts(lines, measure))


# --- every table, on the golden key and on messy generated data -------------------------------------


@pytest.mark.parametrize("engine", SQL_ENGINES)
def test_every_golden_table_is_the_same_on_each_engine(golden_inputs, golden_config, golden_result, engine) -> None:
    assert_same_tables(crm_xl.run(**golden_inputs, config=golden_config, engine=engine), golden_result)


@pytest.fixture(scope="module")
def messy() -> dict[str, pd.DataFrame]:
    """Generated data with every deliberate problem (ties, blanks, bad values, anonymous ids), and orders
    split over month ends: every 5th invoice gets a line on the first of the next month, every 15th
    its number again three months later."""
    tables = generate(n_customers=400, months=18, end_month="2025-06", seed=11, messy=True)
    invoices = tables["transactions"].drop_duplicates("invoice_id")
    split, again = invoices.iloc[::5].copy(), invoices.iloc[::15].copy()
    split["invoice_date"] = split["invoice_date"] + pd.offsets.MonthBegin(1)
    again["invoice_date"] = again["invoice_date"] + pd.offsets.MonthBegin(3)
    return {**tables, "transactions": pd.concat([tables["transactions"], split, again], ignore_index=True)}


@pytest.fixture(scope="module")
def messy_numpy(messy) -> dict[str, dict[str, pd.DataFrame]]:
    return {measure: crm_xl.run(**messy, config={"measure": measure}) for measure in ("units", "revenue")}


@pytest.mark.parametrize("engine", SQL_ENGINES)
@pytest.mark.parametrize("measure", ["units", "revenue"])
def test_every_table_of_messy_data_is_the_same_on_each_engine(messy, messy_numpy, engine, measure) -> None:
    assert_same_tables(crm_xl.run(**messy, config={"measure": measure}, engine=engine), messy_numpy[measure])


@needs_duckdb
def test_messy_data_has_what_the_facts_must_get_right(messy) -> None:
    """The parity above means something: invoices over month ends, entry-only months, returns, ties."""
    staged = stage(messy["transactions"], messy["customers"], messy["products"], Config.from_mapping({}), None)
    facts = customer_month_facts(staged.lines)
    assert (facts.months["core_invoices"] == 0).any() and facts.months["first_entry_date"].notna().any()
    assert (staged.lines["quantity"] <= 0).any()
    assert set(facts.invoice_links["gap_months"]) >= {1, 2}, "the links are not exercised"
    assert facts.months.duplicated(["month", "core_units", "core_invoices"]).any()   # tied customers


@needs_duckdb
def test_crm_xl_run_engine_writes_the_same_files(tmp_path: Path) -> None:
    for engine in ("numpy", "duckdb"):
        assert main(["run", "--data", str(GOLDEN_DIR), "--out", str(tmp_path / engine), "--engine", engine]) == 0
    written = sorted(p.name for p in (tmp_path / "numpy").glob("*.csv"))
    assert written and written == sorted(p.name for p in (tmp_path / "duckdb").glob("*.csv"))
    for name in written:
        assert (tmp_path / "numpy" / name).read_bytes() == (tmp_path / "duckdb" / name).read_bytes(), name
