"""Between the store's Arrow tables and the core's DataFrames: the same types, the same row order.

A stored month comes back exactly as the core would have made it: categories as the fresh
table's (so codes, and the CSV text, are the same), nullable integers as nullable integers, dates
at the same resolution. Facts are stored keyed by customer_id, with the exact micro-units as
DECIMAL(38, 6) (the units and revenue themselves, no float on the way).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from crm_xl.core.facts import Facts
from crm_xl.core.outputs import SUMMARY_DIMENSIONS
from crm_xl.core.reasons import TEXT_COLUMNS
from crm_xl.store.history import StoredRows

_MICRO = pa.decimal128(38, 6)
_EXACT_COLUMNS = ("core_units", "core_revenue")


def like(stored: StoredRows, template: pd.DataFrame, keys: np.ndarray | None = None) -> pd.DataFrame:
    """``stored``'s columns named in ``template``, with ``template``'s types (``keys``: see :func:`spliced`)."""
    return _built(stored, None, template.dtypes.to_dict(), (), keys)


def spliced(table: str, stored: StoredRows, fresh: pd.DataFrame, lead: StoredRows | None = None,
            keys: np.ndarray | None = None) -> pd.DataFrame:
    """The stored months' rows, then the fresh ones, as the core would have made them all at once.

    The reasons' categories are their texts in order of first appearance over the core's rows
    (the month before the history first): ``lead`` holds that month's stored rows, read for this
    order only. Every other categorical keeps the fresh table's fixed categories. ``keys``: the
    customer_key of every stored row of customer_history, known from the entry dates
    (:func:`crm_xl.core.snapshots.panel_keys`): its customer_id column is then not read at all.
    """
    texts = TEXT_COLUMNS if table == "customer_history" else ()
    return ordered(table, _built(stored, fresh, fresh.dtypes.to_dict(), texts, keys, lead))


def _built(stored: StoredRows, fresh: pd.DataFrame | None, dtypes: dict[str, object], texts: tuple[str, ...],
           keys: np.ndarray | None, lead: StoredRows | None = None) -> pd.DataFrame:
    """Each column allocated once at its full length and filled month by month, then the fresh
    rows: a month's file is read whole and let go before the next (its memory is reused, not
    asked of the system again), and no frame of the stored rows alone is ever made."""
    size = stored.num_rows + (0 if fresh is None else len(fresh))
    columns = {name: _TextColumn(size) if name in texts else _column_for(dtype, size) for name, dtype in dtypes.items()}
    if keys is not None:
        if len(keys) != stored.num_rows:    # the digests matched, so the rows must: a bug of ours
            raise RuntimeError(f"the stored months hold {stored.num_rows} rows, the entry dates say {len(keys)}")
        columns["customer_id"] = _KeyColumn(dtypes["customer_id"], size, keys)  # type: ignore[arg-type]
    if lead is not None:
        for month in lead.tables(list(texts)):
            for name in texts:
                columns[name].see(month.column(name))
    start = 0
    read = [name for name, column in columns.items() if not isinstance(column, _KeyColumn)]
    for month in stored.tables(read):
        for name in read:
            columns[name].put(start, month.column(name))
        start += month.num_rows
    if fresh is not None:
        for name, column in columns.items():
            column.put_fresh(start, fresh[name])
    return pd.DataFrame({name: column.result() for name, column in columns.items()}, copy=False)


def _column_for(dtype: object, size: int) -> _Column:
    if isinstance(dtype, pd.CategoricalDtype):
        return _CategoryColumn(dtype, size)
    if isinstance(dtype, pd.api.extensions.ExtensionDtype) and hasattr(dtype, "numpy_dtype"):   # Int64 & co
        return _MaskedColumn(dtype, size)
    if isinstance(dtype, np.dtype):
        return _NumpyColumn(dtype, size)
    return _ArrowColumn(dtype)


class _Column:
    """A column being filled: stored pieces at their row, then the fresh rows."""

    def put(self, start: int, values: pa.ChunkedArray) -> None:
        for chunk in values.chunks:
            self._put(start, chunk)
            start += len(chunk)

    def _put(self, start: int, chunk: pa.Array) -> None:
        raise NotImplementedError

    def put_fresh(self, start: int, values: pd.Series) -> None:
        raise NotImplementedError

    def result(self) -> object:
        raise NotImplementedError


class _NumpyColumn(_Column):
    def __init__(self, dtype: np.dtype, size: int) -> None:
        self.out = np.empty(size, dtype=dtype)

    def _put(self, start: int, chunk: pa.Array) -> None:
        self.out[start:start + len(chunk)] = chunk.to_numpy(zero_copy_only=False)

    def put_fresh(self, start: int, values: pd.Series) -> None:
        self.out[start:] = values.to_numpy()

    def result(self) -> np.ndarray:
        return self.out


class _MaskedColumn(_Column):
    """Nullable integers: values and a blank mask."""

    def __init__(self, dtype: pd.api.extensions.ExtensionDtype, size: int) -> None:
        self.dtype = dtype
        self.values = np.empty(size, dtype=dtype.numpy_dtype)  # type: ignore[attr-defined]
        self.blank = np.empty(size, dtype=bool)

    def _put(self, start: int, chunk: pa.Array) -> None:
        stop = start + len(chunk)
        self.values[start:stop] = pc.fill_null(chunk, 0).to_numpy(zero_copy_only=False)
        self.blank[start:stop] = chunk.is_null().to_numpy(zero_copy_only=False)

    def put_fresh(self, start: int, values: pd.Series) -> None:
        self.values[start:] = values.to_numpy(dtype=self.values.dtype, na_value=0)
        self.blank[start:] = values.isna().to_numpy()

    def result(self) -> object:
        return self.dtype.construct_array_type()(self.values, self.blank)


class _CategoryColumn(_Column):
    """Codes into fixed categories from each month's own dictionary; a month's dictionary is
    usually the month before's (the same customers), so its lookup is reused."""

    def __init__(self, dtype: pd.CategoricalDtype, size: int) -> None:
        self.dtype = dtype
        self.codes = np.empty(size, dtype="int32")
        self.value_set = pa.array(dtype.categories.astype("str").to_numpy(), type=pa.string())
        self.dictionary: pa.Array | None = None
        self.mapping = np.empty(0, dtype="int32")

    def _put(self, start: int, chunk: pa.Array) -> None:
        if not pa.types.is_dictionary(chunk.type):
            chunk = chunk.dictionary_encode()
        if self.dictionary is None or not chunk.dictionary.equals(self.dictionary):
            self.dictionary = chunk.dictionary
            found = pc.index_in(chunk.dictionary.cast(pa.string()), value_set=self.value_set)
            self.mapping = np.append(pc.fill_null(found, -1).to_numpy(zero_copy_only=False), -1).astype("int32")
        indices = pc.fill_null(chunk.indices, -1).to_numpy(zero_copy_only=False)
        codes = self.mapping[indices]          # a blank (index -1) takes the mapping's last entry, -1
        if ((indices >= 0) & (codes < 0)).any():   # a valid month names only what this run has: a bug of ours
            lost = np.unique(indices[(indices >= 0) & (codes < 0)])
            raise RuntimeError(f"stored values {chunk.dictionary.take(pa.array(lost[:3])).to_pylist()} are not "
                               "among the categories of this run")
        self.codes[start:start + len(chunk)] = codes

    def put_fresh(self, start: int, values: pd.Series) -> None:
        self.codes[start:] = values.cat.codes.to_numpy()

    def result(self) -> pd.Categorical:
        return pd.Categorical.from_codes(self.codes, dtype=self.dtype)


class _KeyColumn(_CategoryColumn):
    """customer_id, its stored rows' codes given: the customer_key of each (nothing to read)."""

    def __init__(self, dtype: pd.CategoricalDtype, size: int, keys: np.ndarray) -> None:
        self.dtype = dtype
        self.codes = np.empty(size, dtype="int32")
        self.codes[:len(keys)] = keys


class _TextColumn(_Column):
    """Texts whose categories are their order of first appearance (the reasons)."""

    def __init__(self, size: int) -> None:
        self.codes = np.empty(size, dtype="int32")
        self.ids: dict[str, int] = {}

    def see(self, values: pa.ChunkedArray) -> None:
        for chunk in values.chunks:
            self._codes(chunk)

    def _codes(self, chunk: pa.Array) -> np.ndarray:
        if not pa.types.is_dictionary(chunk.type):
            chunk = chunk.dictionary_encode()
        indices = pc.fill_null(chunk.indices, -1).to_numpy(zero_copy_only=False)
        texts = chunk.dictionary.to_pylist()
        mapping = np.full(len(texts) + 1, -1, dtype="int32")
        for index in pd.unique(indices[indices >= 0]):      # in order of first appearance
            mapping[index] = self.ids.setdefault(texts[index], len(self.ids))
        return mapping[indices]

    def _put(self, start: int, chunk: pa.Array) -> None:
        self.codes[start:start + len(chunk)] = self._codes(chunk)

    def put_fresh(self, start: int, values: pd.Series) -> None:
        # the fresh categories are in the order the fresh rows show them: their new texts come next
        mapping = np.array([self.ids.setdefault(text, len(self.ids)) for text in values.cat.categories] + [-1],
                           dtype="int32")
        self.codes[start:] = mapping[values.cat.codes.to_numpy()]

    def result(self) -> pd.Categorical:
        return pd.Categorical.from_codes(self.codes, categories=pd.Index(list(self.ids), dtype="str"))


class _ArrowColumn(_Column):
    """Text in the small per-month tables: the extension type's own conversion from Arrow."""

    def __init__(self, dtype: object) -> None:
        self.dtype = dtype
        self.chunks: list[pa.Array] = []
        self.fresh: pd.Series | None = None

    def _put(self, start: int, chunk: pa.Array) -> None:
        self.chunks.append(chunk)

    def put_fresh(self, start: int, values: pd.Series) -> None:
        self.fresh = values

    def result(self) -> object:
        arrow = pa.chunked_array(self.chunks, type=self.chunks[0].type) if self.chunks else \
            pa.chunked_array([], type=pa.large_string())
        stored = self.dtype.__from_arrow__(arrow)  # type: ignore[attr-defined]
        return stored if self.fresh is None else type(stored)._concat_same_type([stored, self.fresh.array])


def same_texts(snapshot: pd.DataFrame, fresh_history: pd.DataFrame, history: pd.DataFrame) -> pd.DataFrame:
    """The snapshot's reason columns taken from the history (tier_reason) share its categories: give
    them the spliced history's, as a full run would. Those it computes itself (segment_reason with
    values) keep their own."""
    out = snapshot.copy(deep=False)
    for name in TEXT_COLUMNS:
        if out[name].cat.categories.equals(fresh_history[name].cat.categories):
            out[name] = out[name].cat.set_categories(history[name].cat.categories)
    return out


def ordered(table: str, frame: pd.DataFrame) -> pd.DataFrame:
    """Rows in the core's order after the stored months and the fresh ones are put one after the
    other: the core builds monthly_summary by dimension, then month; every other per-month table
    month by month, which the concatenation keeps."""
    if table != "monthly_summary":
        return frame
    rank = frame["dimension"].map({name: i for i, name in enumerate(SUMMARY_DIMENSIONS)}).to_numpy()
    order = np.lexsort((frame["report_month"].to_numpy(), rank))
    return frame.iloc[order].reset_index(drop=True)


def month_tables(frame: pd.DataFrame, months: Iterable[pd.Period]) -> dict[pd.Period, pa.Table]:
    """``frame``'s rows of each of ``months`` (by its report_month column, in their order) as written
    to the store: converted to Arrow once, then cut by month."""
    return _by_month(frame, frame["report_month"], list(months))


def fact_partitions(facts: Facts, customer_ids: pd.Series,
                    wanted: Callable[[str, pd.Period], bool]) -> dict[str, dict[pd.Period, pa.Table]]:
    """The facts and the invoice links by calendar month, keyed by customer_id (what the store keeps),
    for the (table, month) pairs ``wanted`` (the ones the store lacks: the others are not converted)."""
    ids = customer_ids.to_numpy()
    out: dict[str, dict[pd.Period, pa.Table]] = {}
    for table, frame in (("facts", facts.months), ("invoice_links", facts.invoice_links)):
        periods = pd.PeriodIndex(pd.to_datetime(frame["month"]), freq="M")
        frame = frame[periods.isin([month for month in periods.unique() if wanted(table, month)])]
        order = np.lexsort((frame["customer_key"].to_numpy(), frame["month"].to_numpy()))
        keyed = frame.iloc[order].drop(columns=["customer_key"]).reset_index(drop=True)
        keyed.insert(0, "customer_id", pd.array(ids[frame["customer_key"].to_numpy()[order]], dtype="str"))
        for name in _EXACT_COLUMNS:
            if name in keyed:
                keyed[name] = pd.arrays.ArrowExtensionArray(micro_decimals(keyed[name].to_numpy()))
        months = pd.PeriodIndex(pd.to_datetime(keyed["month"]), freq="M").unique()
        out[table] = _by_month(keyed, keyed["month"], list(months))
    return out


def _by_month(frame: pd.DataFrame, month_column: pd.Series, months: list[pd.Period]) -> dict[pd.Period, pa.Table]:
    """Each month's rows as an Arrow table whose dictionaries hold only the values that month uses (a
    month's file need not carry every text of the history; the reader maps them back)."""
    month = month_column.to_numpy().astype("datetime64[M]")
    wanted = np.isin(month, np.array([m.strftime("%Y-%m") for m in months], dtype="datetime64[M]"))
    table = pa.Table.from_pandas(frame if wanted.all() else frame[wanted], preserve_index=False)
    month = month[wanted]
    out = {}
    for m in months:
        rows = np.flatnonzero(month == np.datetime64(m.strftime("%Y-%m"), "M"))
        contiguous = len(rows) == 0 or rows[-1] - rows[0] + 1 == len(rows)
        piece = table.slice(int(rows[0]) if len(rows) else 0, len(rows)) if contiguous else table.take(rows)
        out[m] = _compact(piece)
    return out


def _compact(table: pa.Table) -> pa.Table:
    columns = []
    for column in table.columns:
        if pa.types.is_dictionary(column.type):
            column = pc.dictionary_encode(column.cast(column.type.value_type))
        columns.append(column)
    return pa.Table.from_arrays(columns, schema=None, names=table.column_names).replace_schema_metadata(
        table.schema.metadata)


def micro_decimals(micro: np.ndarray) -> pa.Array:
    """Whole millionths (int64, or Python ints beyond it) as DECIMAL(38, 6) of the same value, exactly."""
    if micro.dtype == object:       # beyond int64: two's complement halves by Python arithmetic
        big = [int(v) for v in micro]
        low = np.array([v & (2**64 - 1) for v in big], dtype="uint64").view("int64")
        high = np.array([v >> 64 for v in big], dtype="int64")
    else:
        low = micro.astype("int64")
        high = low >> 63
    halves = np.empty((len(micro), 2), dtype="int64")
    halves[:, 0], halves[:, 1] = low, high
    return pa.Array.from_buffers(_MICRO, len(micro), [None, pa.py_buffer(halves.tobytes())])


def with_history_rows(run_info: pd.DataFrame, rows: int) -> pd.DataFrame:
    """run_info with ``history_rows`` counting every month of the spliced customer_history."""
    out = run_info.copy()
    out.loc[out["item"] == "history_rows", "value"] = str(rows)
    return out.astype(run_info.dtypes.to_dict())
