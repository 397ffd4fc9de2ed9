"""CSV adapter: read the three raw tables from a folder, write output tables to one.

pyarrow's multi-threaded CSV reader does the parsing; id columns are always read as text so
leading zeros survive; anything the reader cannot type stays text and staging types it.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pcsv

from crm_xl.core.coerce import local_datetimes
from crm_xl.errors import InputError
from crm_xl.io.files import replace_atomically

RAW_TABLES = ("transactions", "customers", "products")
# Ids keep their leading zeros.
_TEXT_COLUMNS = ("invoice_id", "customer_id", "product_id", "store_id", "mobile_number", "customer_name",
                 "customer_group", "city", "email", "product_name", "brand", "category")
# Read as text and typed by the core's rule, the date-time as written: pyarrow would turn
# 2024-02-01T00:30+01:00 into 31 January (UTC).
_DATE_COLUMNS = ("invoice_date", "created_date")


def read_raw_folder(folder: str | Path) -> dict[str, pd.DataFrame]:
    """``transactions.csv``, ``customers.csv`` and ``products.csv`` from ``folder``."""
    folder = Path(folder)
    return {name: read_csv(folder / f"{name}.csv", name) for name in RAW_TABLES}


def read_csv(path: str | Path, table: str) -> pd.DataFrame:
    """One raw table; a clear :class:`InputError` when the file is missing or not CSV."""
    path = Path(path)
    if not path.is_file():
        raise InputError(table, f"file not found: {path}")
    try:
        names = _header(path)
        text_types = {n: pa.string() for n in names if n.strip().lower() in (*_TEXT_COLUMNS, *_DATE_COLUMNS)}
        arrow = pcsv.read_csv(
            path, convert_options=pcsv.ConvertOptions(column_types=text_types, strings_can_be_null=True))
    except (pa.ArrowInvalid, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(table, f"{path.name} is not a readable CSV file: {exc}") from None
    return _typed_dates(arrow.to_pandas(date_as_object=False))


def _typed_dates(frame: pd.DataFrame) -> pd.DataFrame:
    """Date columns become date-times when every value is one; otherwise they stay text, so staging
    can report the lines whose date cannot be read."""
    for column in frame.columns:
        if str(column).strip().lower() in _DATE_COLUMNS:
            text = frame[column]
            stamps = local_datetimes(text)
            if (stamps.notna() | text.isna() | (text.str.strip() == "")).all():
                frame[column] = stamps
    return frame


def _header(path: Path) -> list[str]:
    with path.open("r", encoding="utf-8-sig", newline="") as handle:
        return next(csv.reader(handle), [])


def write_tables(tables: dict[str, pd.DataFrame], folder: str | Path) -> dict[str, Path]:
    """Each table as ``NAME.csv`` in ``folder`` (dates as yyyy-mm-dd), each file replaced atomically."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for name, frame in tables.items():
        written[name] = replace_atomically(folder / f"{name}.csv",
                                           lambda temp, frame=frame: pcsv.write_csv(_arrow_table(frame), temp))
    return written


def _arrow_table(frame: pd.DataFrame) -> pa.Table:
    """Categoricals as text and datetimes as dates, which is how a CSV reader expects them."""
    arrays, names = [], []
    for column in frame.columns:
        series = frame[column]
        if isinstance(series.dtype, pd.CategoricalDtype):
            array = pa.array(series.astype("str").to_numpy(dtype=object, na_value=None), type=pa.string())
        else:
            array = pa.array(series)
            if pa.types.is_timestamp(array.type):
                array = array.cast(pa.date32())
        arrays.append(array)
        names.append(str(column))
    return pa.Table.from_arrays(arrays, names=names)
