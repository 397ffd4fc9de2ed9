"""The guarantees in docs/ name the tests that prove them: every ``tests/file.py::test_name`` a doc
cites must exist, so a renamed or deleted test cannot leave a promise without its proof."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CITED = re.compile(r"(tests/[\w/]+\.py)::(\w+)")


def citations() -> list[tuple[str, str, str]]:
    found = []
    for doc in sorted((ROOT / "docs").glob("*.md")):
        found += [(doc.name, path, name) for path, name in CITED.findall(doc.read_text(encoding="utf-8"))]
    return found


def test_reliability_cites_its_proofs() -> None:
    assert len([c for c in citations() if c[0] == "reliability.md"]) >= 40


@pytest.mark.parametrize(("doc", "path", "name"), citations())
def test_every_cited_test_exists(doc: str, path: str, name: str) -> None:
    source = ROOT / path
    assert source.is_file(), f"{doc} cites {path}, which does not exist"
    assert re.search(rf"^\s*(async )?def {name}\(", source.read_text(encoding="utf-8"), re.MULTILINE), \
        f"{doc} cites {path}::{name}, which is not a test there"
