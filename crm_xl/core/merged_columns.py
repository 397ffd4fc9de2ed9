"""customer_history of customer partitions, written into one run's columns as each partition is done.

The row layout of the whole run is known before any partition is computed
(:func:`crm_xl.core.snapshots.rows_per_month`): month by month, the partitions in key order. So
each partition's rows go straight to their places in full-length columns allocated once, and the
partition's own frame is freed before the next one is built. Nothing is sorted or concatenated
at the end, and the run never holds two copies of the history (an earlier merge did: its freed
partition columns were not all given back to the system and a 1M-line run's peak rose 0.47 GB).

Labels share their categories and are written as codes. Texts such as the reasons are categories
of their own in each partition (each text made once): the merged categories are every
partition's, numbered in the order the merged rows first use them, which is what one run gives.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import pandas as pd

from crm_xl.core.outputs import first_use_order

_MASKED = (pd.arrays.IntegerArray, pd.arrays.FloatingArray, pd.arrays.BooleanArray)


class MergedFrame:
    """Full-length columns filled partition by partition: ``put(frame, places)`` writes a partition's
    rows to the row numbers ``places`` (one per row), ``frame()`` gives the table once every row is in."""

    def __init__(self, n_rows: int) -> None:
        self.n_rows = n_rows
        self.columns: dict[str, _Column] = {}

    def put(self, frame: pd.DataFrame, places: np.ndarray) -> None:
        for name in list(frame.columns):
            piece = frame.pop(name)      # the partition's column is freed as soon as it is written
            if name not in self.columns:
                self.columns[name] = _column_for(piece, self.n_rows)
            self.columns[name].put(piece, places)

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame({name: column.series() for name, column in self.columns.items()}, copy=False)


def block_starts(sizes: np.ndarray) -> np.ndarray:
    """(partitions x months) the row in the whole run where each partition's block of each month
    begins, from ``sizes`` (partitions x months: rows per month). Rows are month-major in the run
    and in each partition, partitions in key order."""
    month_starts = np.concatenate([[0], np.cumsum(sizes.sum(axis=0))[:-1]])
    return month_starts + np.cumsum(sizes, axis=0) - sizes


def places_of(starts: np.ndarray, own: np.ndarray) -> np.ndarray:
    """Row numbers in the whole run of one partition's rows: ``starts`` and ``own`` (rows per month)
    are its row of :func:`block_starts` and of the sizes."""
    first_of_month = np.concatenate([[0], np.cumsum(own)[:-1]])
    return np.arange(int(own.sum()), dtype="int64") + np.repeat(starts - first_of_month, own)


class _Column(Protocol):
    def put(self, piece: pd.Series, places: np.ndarray) -> None: ...

    def series(self) -> pd.Series: ...


def _column_for(piece: pd.Series, n_rows: int) -> _Column:
    if isinstance(piece.dtype, pd.CategoricalDtype):
        return _CategoricalColumn(piece.dtype, n_rows)
    if isinstance(piece.dtype, np.dtype):
        return _NumpyColumn(piece.dtype, n_rows)
    if isinstance(piece.array, _MASKED):
        return _MaskedColumn(piece.array, n_rows)
    return _OtherColumn()


class _NumpyColumn:
    def __init__(self, dtype: np.dtype, n_rows: int) -> None:
        self.values = np.empty(n_rows, dtype=dtype)

    def put(self, piece: pd.Series, places: np.ndarray) -> None:
        values = piece.to_numpy()
        if values.dtype != self.values.dtype:      # as concatenating them would: the wider type
            self.values = self.values.astype(np.result_type(self.values.dtype, values.dtype))
        self.values[places] = values

    def series(self) -> pd.Series:
        return pd.Series(self.values, copy=False)


class _MaskedColumn:
    """Nullable integers, floats and booleans: their values and their blanks, written apart."""

    def __init__(self, first: pd.api.extensions.ExtensionArray, n_rows: int) -> None:
        self.kind = type(first)
        self.numpy_dtype = first.dtype.numpy_dtype
        self.values = np.zeros(n_rows, dtype=self.numpy_dtype)
        self.blank = np.zeros(n_rows, dtype=bool)

    def put(self, piece: pd.Series, places: np.ndarray) -> None:
        blank = piece.isna().to_numpy()
        self.values[places] = piece.to_numpy(dtype=self.numpy_dtype, na_value=0)
        self.blank[places] = blank

    def series(self) -> pd.Series:
        return pd.Series(self.kind(self.values, self.blank), copy=False)


class _CategoricalColumn:
    """Codes of one dtype, shared by every partition (the labels, customer_id); a partition whose
    categories differ (its own reason texts) is renumbered into the union of every partition's."""

    def __init__(self, dtype: pd.CategoricalDtype, n_rows: int) -> None:
        self.dtype = dtype
        self.union = dtype.categories
        self.shared = True
        self.codes = np.full(n_rows, -1, dtype=_code_dtype(len(self.union)))

    def put(self, piece: pd.Series, places: np.ndarray) -> None:
        codes = piece.cat.codes.to_numpy()
        if piece.dtype != self.dtype:
            self.shared = False
            where = self.union.get_indexer(piece.cat.categories)
            new = piece.cat.categories[where < 0]
            where[where < 0] = np.arange(len(self.union), len(self.union) + len(new))
            self.union = self.union.append(new)
            codes = np.where(codes >= 0, where[codes], -1)
            if len(self.union) > np.iinfo(self.codes.dtype).max:
                self.codes = self.codes.astype(_code_dtype(len(self.union)))
        self.codes[places] = codes

    def series(self) -> pd.Series:
        if self.shared:
            return pd.Series(pd.Categorical.from_codes(self.codes, dtype=self.dtype), copy=False)
        return pd.Series(first_use_order(self.codes, self.union), copy=False)


def _code_dtype(n_categories: int) -> np.dtype:
    return next(np.dtype(kind) for kind in ("int8", "int16", "int32", "int64")
                if n_categories < np.iinfo(kind).max)


class _OtherColumn:
    """Any other extension type (text, say): its pieces kept and put in order once all are in."""

    def __init__(self) -> None:
        self.pieces: list[pd.api.extensions.ExtensionArray] = []
        self.places: list[np.ndarray] = []

    def put(self, piece: pd.Series, places: np.ndarray) -> None:
        self.pieces.append(piece.array)
        self.places.append(places)

    def series(self) -> pd.Series:
        merged = type(self.pieces[0])._concat_same_type(self.pieces)
        return pd.Series(merged.take(np.argsort(np.concatenate(self.places), kind="stable")), copy=False)
