"""The house keeps its rooms: the pure layers never import an adapter.

Imports are read from the source with ``ast`` (every ``import`` and ``from … import``, at module
level or inside a function, relative ones resolved), so a lazy import inside a function counts too
and a mention in a comment or string does not.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parents[1] / "crm_xl"

ADAPTERS = ("crm_xl.io", "crm_xl.workbook", "crm_xl.excel", "crm_xl.powerbi", "crm_xl.cli", "xlwings")
SHARED = ("crm_xl.config", "crm_xl.contract", "crm_xl.errors", "crm_xl._version")

# room -> what no module in it may import (a name or any module under it)
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "crm_xl.core": (*ADAPTERS, "crm_xl.analyses", "crm_xl.engines", "crm_xl.store"),
    "crm_xl.analyses": ADAPTERS,
    # where the facts run: the core's contract and an engine's library, nothing the report or adapters hold
    "crm_xl.engines": (*ADAPTERS, "crm_xl.analyses", "crm_xl.store"),
    "crm_xl.io": ("crm_xl.workbook", "crm_xl.excel", "crm_xl.powerbi", "crm_xl.cli", "xlwings", "crm_xl.store"),
    # the history store: the core, the analyses, the engines and io's atomic files and locks; the
    # adapters that offer it (CLI, workbook) call it, never the other way round
    "crm_xl.store": ("crm_xl.workbook", "crm_xl.excel", "crm_xl.powerbi", "crm_xl.cli", "xlwings"),
    "crm_xl.workbook": ("crm_xl.excel", "crm_xl.powerbi", "crm_xl.cli"),
    "crm_xl.excel": ("crm_xl.powerbi", "crm_xl.cli"),
    # an adapter over the contract: the workbook's layout (names, colours) is all it reads of the others
    "crm_xl.powerbi": ("crm_xl.core", "crm_xl.analyses", "crm_xl.io", "crm_xl.excel", "crm_xl.cli", "xlwings",
                       *(f"crm_xl.workbook.{m}" for m in ("book", "reader", "refresh", "package", "template"))),
}
# the shared top-level modules depend on nothing of the package but each other
FORBIDDEN.update({name: ("crm_xl.core", "crm_xl.analyses", *ADAPTERS) for name in SHARED})


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports, as absolute dotted names (``from a import b`` gives ``a`` and ``a.b``)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def is_under(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def room_of(module: str) -> str | None:
    rooms = [room for room in FORBIDDEN if is_under(module, room)]
    return max(rooms, key=len) if rooms else None


MODULES = sorted(PACKAGE.rglob("*.py"))


def violations(path: Path) -> list[str]:
    room = room_of(module_name(path))
    if room is None:
        return []
    return sorted(m for m in imported_modules(path) if any(is_under(m, bad) for bad in FORBIDDEN[room]))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: module_name(p))
def test_no_module_imports_across_its_room_boundary(path: Path) -> None:
    assert violations(path) == [], f"{module_name(path)} imports what its room must not"


def test_every_room_exists_and_says_what_it_holds() -> None:
    for room in ("core", "analyses", "engines", "store", "io", "workbook", "excel", "powerbi"):
        init = PACKAGE / room / "__init__.py"
        doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8")))
        assert doc and "may import" in doc, f"crm_xl/{room}/__init__.py must say what it holds and may import"


def test_the_check_sees_every_form_of_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A planted core module with each kind of forbidden import is caught, a harmless one is not."""
    fake = tmp_path / "crm_xl"
    (fake / "core").mkdir(parents=True)
    monkeypatch.setattr(__import__(__name__), "PACKAGE", fake)
    cases = {
        "from crm_xl.workbook import layout": ["crm_xl.workbook", "crm_xl.workbook.layout"],
        "import xlwings as xw": ["xlwings"],
        "def f():\n    from crm_xl.io.csv import read_csv": ["crm_xl.io.csv", "crm_xl.io.csv.read_csv"],
        "from ..excel import udfs": ["crm_xl.excel", "crm_xl.excel.udfs"],
        "from .. import cli": ["crm_xl.cli"],
        "from crm_xl.analyses import lifetimes_compat": ["crm_xl.analyses", "crm_xl.analyses.lifetimes_compat"],
        "from crm_xl.config import Config\nimport pandas\n# import xlwings\nx = 'crm_xl.excel'": [],
        "from . import facts": [],
    }
    for i, (source, expected) in enumerate(cases.items()):
        module = fake / "core" / f"m{i}.py"
        module.write_text(source + "\n", encoding="utf-8")
        assert violations(module) == expected, source
