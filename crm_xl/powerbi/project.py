"""The Power BI Project folder on disk: ``NAME.pbip``, ``NAME.SemanticModel/`` (TMDL) and ``NAME.Report/``
(PBIR), written to a temporary folder beside the target and then moved into place, so a failed run
leaves the old project as it was."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from crm_xl.errors import CrmXlError
from crm_xl.powerbi import report, tmdl
from crm_xl.powerbi.build import build_model
from crm_xl.powerbi.model import Model, labels

PBIP_SCHEMA = f"{report.SCHEMAS}/pbip/pbipProperties/1.0.0/schema.json"
PBISM_SCHEMA = f"{report.SCHEMAS}/item/semanticModel/definitionProperties/1.0.0/schema.json"
#: Desktop's own files in a project, kept out of version control (its data cache and local settings).
GITIGNORE = "**/.pbi/localSettings.json\n**/.pbi/cache.abf\n"
#: The committed sample project: placeholders the user replaces with the workbook's full path.
SAMPLE_NAME = "crm_xl_sample"
SAMPLE_WORKBOOK = "C:\\Reports\\crm_xl_sample.xlsm"
SAMPLE_HISTORY = "C:\\Reports\\crm_xl_sample_customer_history.parquet"


def theme_colours() -> list[str]:
    """The theme's data colours: the tiers' colours in rank order first, so a chart with a series per
    tier (sorted by rank) shows the workbook's tier colours, then the other labels' colours."""
    seen: dict[str, None] = {}
    for label in labels():
        for value in label.values:
            colour = label.colours.get(value)
            if colour:
                seen.setdefault(colour, None)
    return list(seen)


def project_files(name: str, model: Model) -> dict[str, str]:
    """Relative path -> text of every file of the project."""
    semantic, report_folder = f"{name}.SemanticModel", f"{name}.Report"
    files: dict[str, str] = {
        f"{name}.pbip": _json({"$schema": PBIP_SCHEMA, "version": "1.0",
                               "artifacts": [{"report": {"path": report_folder}}],
                               "settings": {"enableAutoRecovery": True}}),
        ".gitignore": GITIGNORE,
        f"{semantic}/definition.pbism": _json({"$schema": PBISM_SCHEMA, "version": "4.2", "settings": {}}),
    }
    files.update({f"{semantic}/definition/{path}": text for path, text in tmdl.files(model).items()})
    files.update({f"{report_folder}/{path}": _json(content)
                  for path, content in report.parts(model, semantic, theme_colours()).items()})
    return dict(sorted(files.items()))


def _json(content: Any) -> str:
    return json.dumps(content, indent=2, ensure_ascii=False) + "\n"


def sample_files() -> dict[str, str]:
    """The committed sample project (``powerbi/`` in the repository): the sample workbook's name, the
    default segment map, the history from the workbook, placeholder paths."""
    return project_files(SAMPLE_NAME, build_model(SAMPLE_WORKBOOK, SAMPLE_HISTORY))


def is_project_folder(folder: Path) -> bool:
    """Whether ``folder`` is empty or holds only a Power BI project (what this command may replace)."""
    entries = list(folder.iterdir())
    if not entries:
        return True
    allowed = (".pbip", ".SemanticModel", ".Report")
    return (any(e.suffix == ".pbip" for e in entries)
            and all(e.name == ".gitignore" or e.name.endswith(allowed) for e in entries))


def write_project(out: Path, files: dict[str, str]) -> Path:
    """Write ``files`` as the folder ``out``, replacing a project there; refuses any other folder."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise CrmXlError(f"powerbi: {out} is a file, not a folder: give --out a folder for the project")
    if out.is_dir() and not is_project_folder(out):
        raise CrmXlError(f"powerbi: {out} holds files that are not a Power BI project; it is left as it is: "
                         "give --out an empty or new folder, or the folder of an earlier project")
    out.parent.mkdir(parents=True, exist_ok=True)
    temp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        for path, text in files.items():
            target = temp / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(text.encode("utf-8"))
        _swap(temp, out)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    return out


def _swap(new: Path, out: Path) -> None:
    """Move ``new`` to ``out``: the old project is renamed aside first and removed once the new one is in place."""
    if not out.exists():
        os.replace(new, out)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
    old.rmdir()
    os.replace(out, old)
    try:
        os.replace(new, out)
    except BaseException:
        os.replace(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)
