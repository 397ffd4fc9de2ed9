"""The wheel a Windows analyst installs (issue 11.1): built from the repo, the template inside, and
``crm-xl new`` finding that template wherever pip put it, away from any source checkout."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(ROOT)],
                   check=True, capture_output=True, timeout=600)
    (found,) = out.glob("crm_xl-*.whl")
    return found


def test_the_wheel_carries_the_committed_template(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        template = next(n for n in names if n.endswith(".data/data/share/crm_xl/crm_xl.xlsm"))
        assert zf.read(template) == (ROOT / "workbook" / "crm_xl.xlsm").read_bytes()
        assert any(n.endswith("entry_points.txt") and b"crm-xl = crm_xl.cli:main" in zf.read(n) for n in names)


@pytest.mark.parametrize("how", ["--target", "--prefix"])
def test_new_finds_the_installed_template(wheel: Path, tmp_path: Path, how: str) -> None:
    """Installed beside this venv (so its dependencies are at hand) into a folder of its own, and run
    from another folder: neither the checkout's template nor ``sys.prefix/share`` exists for it."""
    place = tmp_path / "installed"
    # --ignore-installed: without it pip uninstalls the crm-xl of the running environment first
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--ignore-installed", how, str(place),
                    str(wheel)],
                   check=True, capture_output=True, timeout=600)
    if how == "--target":
        site = place
    else:
        site = Path(sysconfig.get_path("purelib", vars={"base": str(place), "platbase": str(place)}))
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site)}
    done = subprocess.run([sys.executable, "-c", "import crm_xl, sys; from crm_xl.workbook.book import template_file; "
                           "print(crm_xl.__file__); cm = template_file(); print(cm.__enter__()); "
                           "from crm_xl.cli import main; sys.exit(main(['new', 'book.xlsm']))"],
                          cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    package, template = done.stdout.splitlines()[:2]
    assert package.startswith(str(site)) and template.startswith(str(place))
    assert zipfile.ZipFile(work / "book.xlsm").read("xl/vbaProject.bin")
    assert (Path(sys.executable).parent / ("crm-xl.exe" if os.name == "nt" else "crm-xl")).exists(), \
        "installing the wheel elsewhere removed the running environment's crm-xl"
