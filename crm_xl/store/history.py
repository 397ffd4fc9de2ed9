"""The history store on disk: one Parquet file per table and calendar month, and a manifest.

::

    STORE/
      manifest.json                                  what is stored, by which run (written last)
      customer_history/month=2024-01/part-0.parquet  one file per table and month
      monthly_summary/month=2024-01/part-0.parquet
      tier_transitions/…   rfm_cut_points/…
      facts/…              invoice_links/…           the customer x month facts, keyed by customer_id

The folder names follow Hive partitioning, so DuckDB (``read_parquet('STORE/customer_history/*/*.parquet',
hive_partitioning = true)``), Spark and Power BI's folder connector read a table as one. Each file
carries, in its Parquet metadata under ``crm_xl.store``, the store schema version, the settings
digest, the digest of every input up to its month (:mod:`crm_xl.store.digests`), the run that wrote
it and its row count: a month is reused only when its own file says it was computed from the same
inputs, so a refresh that stopped half-way (some months rewritten, the manifest not yet) can never
mix old and new figures; the manifest is the summary for people and tools.

Every file is replaced atomically (written beside, then renamed), and only our own files are ever
removed: part-0.parquet under a table's month folder, the folder itself once empty.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from crm_xl.errors import InputError
from crm_xl.io.files import replace_atomically
from crm_xl.store.digests import SCHEMA_VERSION

#: The per-month contract tables a refresh can reuse, and the facts kept beside them.
MONTH_TABLES = ("customer_history", "monthly_summary", "tier_transitions", "rfm_cut_points")
FACT_TABLES = ("facts", "invoice_links")
MANIFEST = "manifest.json"
PART = "part-0.parquet"
_META_KEY = b"crm_xl.store"
_MONTH_FOLDER = re.compile(r"^month=(\d{4}-\d{2})$")


@dataclasses.dataclass(frozen=True)
class Part:
    """What one stored file says about itself."""

    table: str
    month: pd.Period
    settings: str
    inputs: str
    run_id: str
    rows: int


class HistoryStore:
    """A store folder (it need not exist yet: the first write makes it)."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self._check_is_store()

    @property
    def manifest_path(self) -> Path:
        return self.folder / MANIFEST

    def path(self, table: str, month: pd.Period) -> Path:
        return self.folder / table / f"month={month.strftime('%Y-%m')}" / PART

    def parts(self, table: str) -> dict[pd.Period, Part]:
        """Every readable file of ``table`` that this schema version wrote, by month. A file that
        cannot be read (cut short by a full disk, written by a newer crm_xl) is as good as absent:
        its month is recomputed and the file replaced."""
        found: dict[pd.Period, Part] = {}
        folder = self.folder / table
        if not folder.is_dir():
            return found
        for month_folder in sorted(folder.iterdir()):
            match = _MONTH_FOLDER.match(month_folder.name)
            part = month_folder / PART
            if match and part.is_file():
                info = _read_part_info(part, table, pd.Period(match.group(1), "M"))
                if info is not None:
                    found[info.month] = info
        return found

    def read(self, table: str, months: Iterable[pd.Period]) -> StoredRows:
        """The stored rows of ``months`` (in ascending order), read a column at a time."""
        return StoredRows([self.path(table, month) for month in sorted(months)])

    def write(self, table: str, month: pd.Period, data: pa.Table, *, settings: str, inputs: str, run_id: str) -> None:
        """Replace ``table``'s file of ``month`` (atomically)."""
        meta = {"schema_version": SCHEMA_VERSION, "table": table, "month": month.strftime("%Y-%m"),
                "settings": settings, "inputs": inputs, "run_id": run_id, "rows": data.num_rows}
        data = data.replace_schema_metadata({**(data.schema.metadata or {}), _META_KEY: json.dumps(meta).encode()})
        target = self.path(table, month)
        target.parent.mkdir(parents=True, exist_ok=True)
        replace_atomically(target, lambda temp: pq.write_table(data, temp, compression="zstd"))

    def remove(self, table: str, month: pd.Period) -> None:
        """Remove ``table``'s file of ``month`` and its folder once empty."""
        target = self.path(table, month)
        target.unlink(missing_ok=True)
        with contextlib.suppress(OSError):      # not empty (something of the user's), or gone already
            target.parent.rmdir()

    def write_manifest(self, manifest: dict[str, object]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        text = json.dumps(manifest, indent=2, sort_keys=False) + "\n"
        replace_atomically(self.manifest_path, lambda temp: temp.write_text(text, encoding="utf-8"))

    def _check_is_store(self) -> None:
        """Refuse a folder that holds something else: a store is a new folder, an empty one or a store."""
        if not self.folder.exists():
            return
        if not self.folder.is_dir():
            raise InputError("store", f"{self.folder} is a file, not a folder: give a folder for the history store")
        ours = {MANIFEST, *MONTH_TABLES, *FACT_TABLES}
        others = [p.name for p in self.folder.iterdir() if p.name not in ours and not p.name.startswith(".~crm_xl.")]
        if others and not self.manifest_path.exists():
            raise InputError("store", f"{self.folder} is not a crm_xl history store (it holds {', '.join(others[:3])} "
                                      f"and no {MANIFEST}): give a new or empty folder")


class StoredRows:
    """Stored months of one table, one file each, read a month at a time: the caller copies each
    month into its own arrays and lets it go before the next is read."""

    def __init__(self, paths: list[Path]) -> None:
        self.paths = paths
        self.num_rows = sum(pq.read_metadata(path).num_rows for path in paths)

    def tables(self, columns: list[str]) -> Iterator[pa.Table]:
        """The months' rows, one month at a time."""
        for path in self.paths:
            # ParquetFile without pre-buffering, not read_table: read-ahead made reads 2-3x slower
            # here; and the file is closed at once (Windows cannot replace a file still open)
            with pq.ParquetFile(path, pre_buffer=False) as file:
                yield file.read(columns=columns)


def _read_part_info(path: Path, table: str, month: pd.Period) -> Part | None:
    try:
        metadata = pq.read_schema(path).metadata or {}
        meta = json.loads(metadata[_META_KEY])
    except (OSError, KeyError, ValueError, pa.ArrowException):
        return None
    if meta.get("schema_version") != SCHEMA_VERSION or meta.get("table") != table \
            or meta.get("month") != month.strftime("%Y-%m"):
        return None
    return Part(table, month, str(meta["settings"]), str(meta["inputs"]), str(meta["run_id"]), int(meta["rows"]))
