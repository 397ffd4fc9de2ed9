"""The xlwings.conf sheet: no blank interpreter rows, and crm-xl writing the Python Excel starts."""

from __future__ import annotations

import dataclasses
import zipfile
from pathlib import Path

import pytest

from crm_xl.cli import main
from crm_xl.errors import InputError
from crm_xl.excel.doctor import Check, Machine, diagnose
from crm_xl.workbook import layout as L
from crm_xl.workbook.book import new_workbook
from crm_xl.workbook.xlwings_conf import interpreter_settings, read_conf, set_conf, set_interpreter


@pytest.fixture()
def book(tmp_path: Path) -> Path:
    return new_workbook(tmp_path / "book.xlsm")


def parts(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as zf:
        return {info.filename: zf.read(info) for info in zf.infolist()}


def conf_as_xlwings_reads_it(path: Path) -> dict[str, object]:
    """xlwings' GetConfigFromSheet, independently: A1 down to the first blank, keys upper-cased;
    a key twice is a VBA error (Dictionary.Add), so it fails here too."""
    import openpyxl

    sheet = openpyxl.load_workbook(path)[L.XLWINGS_CONF]
    found: dict[str, object] = {}
    row = 1
    while sheet.cell(row, 1).value not in (None, ""):
        key = str(sheet.cell(row, 1).value).upper()
        assert key not in found, f"{key} twice: xlwings would fail with 'This key is already associated'"
        found[key] = sheet.cell(row, 2).value
        row += 1
    return found


# --- which Python ----------------------------------------------------------------------------------


def test_windows_venv_gets_pythonw_beside_its_python() -> None:
    settings = interpreter_settings("windows", r"C:\Users\me\crm\.venv\Scripts\python.exe")
    assert settings == {"Interpreter_Win": r"C:\Users\me\crm\.venv\Scripts\pythonw.exe"}


def test_mac_gets_the_interpreter_itself() -> None:
    assert interpreter_settings("mac", "/Users/me/crm/bin/python") == {"Interpreter_Mac": "/Users/me/crm/bin/python"}


def test_a_conda_environment_is_activated_rather_than_named(tmp_path: Path) -> None:
    env = tmp_path / "miniconda3" / "envs" / "crm"
    (env / "conda-meta").mkdir(parents=True)
    assert interpreter_settings("windows", env / "python.exe", env) == {
        "Conda Path": str(tmp_path / "miniconda3"), "Conda Env": "crm"}
    base = tmp_path / "miniconda3"
    (base / "conda-meta").mkdir()
    (base / "condabin").mkdir()
    assert interpreter_settings("windows", base / "python.exe", base) == {"Conda Path": str(base), "Conda Env": "base"}
    mac = interpreter_settings("mac", env / "bin" / "python", env)
    assert mac["Interpreter_Mac"] == str(env / "bin" / "python") and mac["Conda Env"] == "crm"


def test_an_unknown_platform_is_refused() -> None:
    with pytest.raises(ValueError, match="windows"):
        interpreter_settings("linux", "/usr/bin/python3")


# --- the sheet -------------------------------------------------------------------------------------


def test_the_template_leaves_the_interpreter_to_the_users_own_config(book: Path) -> None:
    keys = conf_as_xlwings_reads_it(book)
    assert not {"INTERPRETER_WIN", "INTERPRETER_MAC", "PYTHONPATH", "CONDA PATH"} & set(keys)
    assert keys["UDF MODULES"] == "crm_xl.excel.udfs" and "" not in keys.values()


def test_set_interpreter_adds_keys_xlwings_reads_and_changes_only_that_sheet(book: Path) -> None:
    before = parts(book)
    written = set_interpreter(book, "windows", r"C:\crm\Scripts\python.exe")
    assert written == {"Interpreter_Win": r"C:\crm\Scripts\pythonw.exe"}
    keys = conf_as_xlwings_reads_it(book)
    assert keys["INTERPRETER_WIN"] == r"C:\crm\Scripts\pythonw.exe" and keys["USE UDF SERVER"] is False
    after = parts(book)
    changed = {name for name in before if before[name] != after.get(name)}
    assert changed == {f"xl/worksheets/sheet{L.SHEETS.index(L.XLWINGS_CONF) + 1}.xml"}
    assert set(after) == set(before)


def test_setting_again_replaces_and_keeps_the_other_platforms_line(book: Path) -> None:
    set_interpreter(book, "windows", r"C:\old\Scripts\python.exe")
    set_interpreter(book, "mac", "/Users/me/crm/bin/python")
    set_interpreter(book, "windows", r"C:\new\Scripts\python.exe")
    keys = conf_as_xlwings_reads_it(book)
    assert keys["INTERPRETER_WIN"] == r"C:\new\Scripts\pythonw.exe"
    assert keys["INTERPRETER_MAC"] == "/Users/me/crm/bin/python"
    assert len(keys) == len(L.XLWINGS_CONF_ROWS) + 2


def test_keys_match_ignoring_case_and_none_removes_without_leaving_a_gap(book: Path) -> None:
    set_conf(book, {"interpreter_win": r"C:\a\pythonw.exe", "Show Console": True})
    set_conf(book, {"INTERPRETER_WIN": r"C:\b\pythonw.exe"})
    assert read_conf(book)["interpreter_win"] == r"C:\b\pythonw.exe"
    set_conf(book, {"Debug UDFs": None})
    keys = conf_as_xlwings_reads_it(book)
    assert "DEBUG UDFS" not in keys and keys["SHOW CONSOLE"] is True and keys["INTERPRETER_WIN"] == r"C:\b\pythonw.exe"
    # the notes below the keys are still there, still below a blank row
    import openpyxl

    sheet = openpyxl.load_workbook(book)[L.XLWINGS_CONF]
    assert "excel-setup" in " ".join(str(sheet.cell(r, 1).value) for r in range(L.XLWINGS_CONF_NOTES_ROW,
                                                                                 L.XLWINGS_CONF_NOTES_ROW + 3))


def test_a_book_without_the_sheet_gets_a_clear_message(tmp_path: Path) -> None:
    import openpyxl

    path = tmp_path / "plain.xlsx"
    openpyxl.Workbook().save(path)
    with pytest.raises(InputError, match=r"no xlwings\.conf sheet"):
        set_interpreter(path, "windows", r"C:\x\Scripts\python.exe")


# --- the commands ----------------------------------------------------------------------------------


def test_excel_setup_for_another_machine(book: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["excel-setup", str(book), "--platform", "windows", "--python", r"D:\env\Scripts\python.exe"]) == 0
    assert r"Interpreter_Win = D:\env\Scripts\pythonw.exe" in capsys.readouterr().out
    assert read_conf(book)["Interpreter_Win"] == r"D:\env\Scripts\pythonw.exe"


def test_excel_setup_needs_a_python_for_another_platform(book: Path, capsys: pytest.CaptureFixture[str],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.platform", "linux")
    before = book.read_bytes()
    assert main(["excel-setup", str(book)]) == 2
    assert "run it on the Windows PC or Mac" in capsys.readouterr().err
    assert main(["excel-setup", str(book), "--platform", "mac"]) == 2
    assert "--python" in capsys.readouterr().err
    assert book.read_bytes() == before


def test_new_on_a_mac_writes_the_running_python(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setattr("sys.platform", "darwin")
    assert main(["new", str(tmp_path / "mac.xlsm")]) == 0
    assert read_conf(tmp_path / "mac.xlsm")["Interpreter_Mac"] == sys.executable
    assert "Interpreter_Mac" in capsys.readouterr().out


def test_new_elsewhere_says_what_to_run(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.platform", "linux")
    assert main(["new", str(tmp_path / "l.xlsm")]) == 0
    assert "crm-xl excel-setup l.xlsm" in capsys.readouterr().out
    assert "Interpreter_Win" not in read_conf(tmp_path / "l.xlsm")


# --- crm-xl doctor ---------------------------------------------------------------------------------


def doctor_machine(tmp_path: Path, platform: str) -> Machine:
    prefix = tmp_path / "env"
    (prefix / ("Scripts" if platform == "windows" else "bin")).mkdir(parents=True, exist_ok=True)
    python = prefix / ("Scripts/python.exe" if platform == "windows" else "bin/python")
    python.touch()
    return Machine(platform=platform, python=str(python), prefix=prefix, version=(3, 11, 9), bits=64,
                   home=tmp_path / "home")


def findings(checks: list[Check]) -> dict[str, Check]:
    return {check.name: check for check in checks}


def test_doctor_on_a_windows_pc_finds_the_missing_dll_and_interpreter(book: Path, tmp_path: Path) -> None:
    machine = doctor_machine(tmp_path, "windows")
    found = findings(diagnose(book, machine))
    assert not found["xlwings DLL"].ok and "xlwings64-0.37.8.dll" in found["xlwings DLL"].found
    assert not found["interpreter"].ok and "crm-xl excel-setup book.xlsm" in found["interpreter"].fix
    (machine.prefix / "xlwings64-0.37.8.dll").touch()
    (machine.prefix / "Scripts" / "pythonw.exe").touch()
    set_conf(book, {"Interpreter_Win": str(machine.prefix / "Scripts" / "pythonw.exe")})
    checks = diagnose(book, machine)
    assert all(check.ok for check in checks), [c.line() for c in checks if not c.ok]


def test_doctor_on_a_mac_asks_for_the_applescript(book: Path, tmp_path: Path) -> None:
    machine = doctor_machine(tmp_path, "mac")
    set_conf(book, {"Interpreter_Mac": machine.python})
    found = findings(diagnose(book, machine))
    assert found["interpreter"].ok
    assert not found["AppleScript"].ok and "runpython install" in found["AppleScript"].fix


def test_doctor_finds_blank_keys_a_missing_python_and_an_old_python(book: Path, tmp_path: Path) -> None:
    machine = dataclasses.replace(doctor_machine(tmp_path, "windows"), version=(3, 10, 4))
    set_conf(book, {"Interpreter_Win": r"C:\nowhere\pythonw.exe", "PYTHONPATH": ""})
    found = findings(diagnose(book, machine))
    assert not found["Python"].ok and "3.11" in found["Python"].fix
    assert not found["interpreter"].ok and "does not exist" in found["interpreter"].found
    assert not found["xlwings.conf"].ok and "PYTHONPATH" in found["xlwings.conf"].found


def test_doctor_compares_the_books_vba_with_the_xlwings_it_needs(book: Path, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("crm_xl.excel.doctor.PINNED_XLWINGS", "0.99.0")
    found = findings(diagnose(book, doctor_machine(tmp_path, "windows")))
    assert not found["workbook VBA"].ok and "xlwings VBA 0.37.8" in found["workbook VBA"].found
    assert "xlwings64-0.37.8.dll" in found["workbook VBA"].found
    assert not found["xlwings"].ok and "pip install xlwings==0.99.0" in found["xlwings"].fix


def test_doctor_command_exit_code_says_whether_anything_needs_fixing(book: Path, capsys: pytest.CaptureFixture[str],
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.platform", "linux")
    assert main(["doctor", str(book)]) == 0
    out = capsys.readouterr().out
    assert "Ready for Excel." in out and "workbook VBA: xlwings VBA 0.37.8" in out
    assert main(["doctor", str(book.with_name("missing.xlsm"))]) == 1
    assert "FIX  workbook" in capsys.readouterr().out
