"""The command line, run as a user would: real files in, real files out, one-line errors."""

from __future__ import annotations

import codecs
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from crm_xl import contract
from crm_xl.cli import main
from crm_xl.io.csv import read_csv

GOLDEN = Path(__file__).parent / "fixtures" / "golden"


@pytest.fixture
def golden_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    for name in ("transactions", "customers", "products"):
        shutil.copy(GOLDEN / f"{name}.csv", folder / f"{name}.csv")
    return folder


def test_run_writes_every_table_and_prints_a_summary(golden_folder: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    code = main(["run", "--data", str(golden_folder), "--out", str(out), "--set", "report_month=2024-12"])
    assert code == 0
    assert sorted(p.stem for p in out.glob("*.csv")) == sorted(contract.TABLE_NAMES)
    printed = capsys.readouterr().out
    assert "report month 2024-12, 19 customers" in printed
    assert "unknown_customer 1 in transactions" in printed
    history = pd.read_csv(out / "customer_history.csv", dtype={"customer_id": str}, encoding="utf-8-sig")
    assert list(history.columns) == contract.columns("customer_history")
    expected = pd.read_csv(GOLDEN / "expected_history.csv", dtype={"customer_id": str})
    assert len(history) == len(expected)
    assert history["report_month"].iloc[0] == "2023-01"  # months as yyyy-mm
    assert history["first_core_date"].iloc[0] == "2022-01-05"  # dates as yyyy-mm-dd, no time part
    assert (out / "customer_history.csv").read_bytes().startswith(codecs.BOM_UTF8)  # Excel then reads UTF-8


def test_no_bom_writes_plain_utf8(golden_folder: Path, tmp_path: Path) -> None:
    assert main(["run", "--data", str(golden_folder), "--out", str(tmp_path / "bom")]) == 0
    assert main(["run", "--data", str(golden_folder), "--out", str(tmp_path / "plain"), "--no-bom"]) == 0
    for name in contract.TABLE_NAMES:
        with_bom = (tmp_path / "bom" / f"{name}.csv").read_bytes()
        assert (tmp_path / "plain" / f"{name}.csv").read_bytes() == with_bom.removeprefix(codecs.BOM_UTF8)


# --- CSV files as Excel writes them in other locales ----------------------------------------------------


def write_golden_as(folder: Path, **to_csv: object) -> Path:
    """The golden inputs (with an accented name) written by pandas in a given dialect."""
    folder.mkdir()
    for name in ("transactions", "customers", "products"):
        frame = read_csv(GOLDEN / f"{name}.csv", name)
        if name == "customers":
            frame.loc[0, "customer_name"] = "João Ávila"
        frame.to_csv(folder / f"{name}.csv", index=False, **to_csv)
    return folder


def test_run_reads_excel_pt_csv_like_plain_csv(tmp_path: Path, capsys) -> None:
    """; between fields, decimal commas, Windows-1252: the same tables as from UTF-8 comma files."""
    plain = write_golden_as(tmp_path / "plain")
    excel_pt = write_golden_as(tmp_path / "pt", sep=";", decimal=",", encoding="cp1252", lineterminator="\r\n")
    assert "238,8" in (excel_pt / "transactions.csv").read_text(encoding="cp1252")
    for data in (plain, excel_pt):
        assert main(["run", "--data", str(data), "--out", str(tmp_path / f"out_{data.name}")]) == 0
    assert "not_utf8 21 in customers" in capsys.readouterr().out
    for name in contract.TABLE_NAMES:
        got, want = (read_csv(tmp_path / f"out_{d}" / f"{name}.csv", name) for d in ("pt", "plain"))
        if name == "data_quality":
            assert got["rule"].tolist() == ["not_utf8", *want["rule"]]
            got = got.iloc[1:].reset_index(drop=True)
        pd.testing.assert_frame_equal(got, want, obj=name)
    snapshot = read_csv(tmp_path / "out_pt" / "customer_snapshot.csv", "customers")
    assert "João Ávila" in snapshot["customer_name"].tolist()


def test_csv_settings_on_the_command_line(tmp_path: Path, capsys) -> None:
    data = write_golden_as(tmp_path / "pt", sep=";", decimal=",")
    out = tmp_path / "out"
    assert main(["run", "--data", str(data), "--out", str(out), "--set", "csv_delimiter=;", "--set",
                 "csv_decimal=,", "--set", "csv_encoding=utf-8"]) == 0
    capsys.readouterr()
    assert main(["run", "--data", str(data), "--out", str(out), "--set", "csv_decimal=."]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert err.startswith("crm-xl: error: transactions.quantity: ") or err.startswith(
        "crm-xl: error: transactions.revenue: ")
    assert "are not numbers (e.g. '238,8'" in err or "are not numbers (e.g. '129,0'" in err
    assert "csv_decimal" in err


def test_bad_csv_setting_is_one_line_naming_it(golden_folder: Path, tmp_path: Path, capsys) -> None:
    code = main(["run", "--data", str(golden_folder), "--out", str(tmp_path / "o"), "--set", "csv_delimiter=;;"])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err == ("crm-xl: error: Config 'csv_delimiter': got ';;'; allowed: auto, or one character such as , ; | "
                   "or the word tab")
    assert not (tmp_path / "o").exists()


def test_run_twice_gives_identical_files(golden_folder: Path, tmp_path: Path) -> None:
    for out in ("a", "b"):
        assert main(["run", "--data", str(golden_folder), "--out", str(tmp_path / out)]) == 0
    for name in contract.TABLE_NAMES:
        assert (tmp_path / "a" / f"{name}.csv").read_bytes() == (tmp_path / "b" / f"{name}.csv").read_bytes()


def test_bad_setting_is_one_line_naming_it(golden_folder: Path, tmp_path: Path, capsys) -> None:
    code = main(["run", "--data", str(golden_folder), "--out", str(tmp_path / "o"), "--set", "measure=volume"])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert "measure" in err and "units, revenue" in err


def test_missing_column_names_table_and_column(golden_folder: Path, tmp_path: Path, capsys) -> None:
    tx = pd.read_csv(golden_folder / "transactions.csv").drop(columns=["invoice_date"])
    tx.to_csv(golden_folder / "transactions.csv", index=False)
    assert main(["run", "--data", str(golden_folder), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "transactions.invoice_date" in err and "missing" in err
    assert not (tmp_path / "o").exists()


def test_missing_file_is_a_clear_error(tmp_path: Path, capsys) -> None:
    assert main(["run", "--data", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "transactions: file not found" in capsys.readouterr().err


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "crm_xl.cli", "--debug", "run", "--data", str(tmp_path)],
                            capture_output=True, text=True)
    assert result.returncode != 0
    assert "Traceback" in result.stderr


def test_console_script_runs_on_the_bundled_sample(tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name("crm-xl")
    if not exe.exists():
        pytest.skip("crm-xl console script not installed in this environment")
    sample = Path(__file__).parents[1] / "sample_data"
    result = subprocess.run([str(exe), "run", "--data", str(sample), "--out", str(tmp_path / "out")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "customers" in result.stdout


def test_rejected_lines_name_the_line_of_the_csv_file(golden_folder: Path, tmp_path: Path) -> None:
    """Every rejected row of a CSV run points at its line in the file (the header is line 1), and the
    data_quality example rows use the same numbers; checked by reading the file's lines directly."""
    tx = golden_folder / "transactions.csv"
    with tx.open(encoding="utf-8") as handle:
        lines = handle.read().splitlines()
    lines.insert(5, "BAD1,not a date,G01,POD10,1,4.5,S1")            # becomes line 6 of the file
    tx.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    assert main(["run", "--data", str(golden_folder), "--out", str(out), "--set", "report_month=2024-12"]) == 0
    rejected = pd.read_csv(out / "rejected_lines.csv", dtype=str, keep_default_na=False, encoding="utf-8-sig")
    assert list(rejected.columns) == contract.columns("rejected_lines")
    assert set(rejected["rule"]) == {"unknown_customer", "unknown_product", "bad_date"}
    for row in rejected[rejected["table"] == "transactions"].itertuples():
        line = lines[int(row.row) - 1]
        assert line.split(",")[0] == row.values.split(" | ")[0].removeprefix("invoice_id="), (row.row, line)
    bad = rejected[rejected["rule"] == "bad_date"]
    assert bad["row"].tolist() == ["6"] and "invoice_date=not a date" in bad["values"].iloc[0]
    quality = pd.read_csv(out / "data_quality.csv", dtype=str, keep_default_na=False, encoding="utf-8-sig")
    assert quality.loc[quality["rule"] == "bad_date", "example_rows"].tolist() == ["6"]
