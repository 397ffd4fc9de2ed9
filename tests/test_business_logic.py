"""The worked examples of ``docs/business_logic.md``, executed.

Every fenced code block with the info string ``example`` in the business-logic document is one test
(test id = the example's ``name``). A block looks like this::

    name: returns never count
    config: report_month=2024-02; history_months=2
    transactions:
    invoice_id,invoice_date,customer_id,product_id,quantity,revenue
    I1,2024-01-10,C1,POD10,5,22.5
    expect customer_history:
    report_month,customer_id,m1,m_total
    2024-02,C1,0,50

Sections start with a line ending in a colon:

* ``transactions:``, ``customers:``, ``products:`` -- the raw tables as CSV. Cells are text, as a
  CSV read as text gives them; an empty cell is missing. A header ``name:number`` makes the cells
  numbers (as Excel stores numeric cells) and ``name:date`` makes them datetimes (Excel date
  cells); in such a column a cell starting with ``'`` stays text (Excel's apostrophe prefix).
  ``name:int64``, ``name:string`` and ``name:category`` give the column that pandas dtype (as
  DataFrames built in Python or read from Parquet have); in a category column an empty cell is
  the empty text ``""``, not a missing value.
  Without ``customers:`` every customer_id of the transactions is a Retail customer created
  2020-01-01; without ``products:`` the default product master below is used.
* ``segment_map:`` -- a CSV table (segment, cells) given as the ``segment_map`` setting.
* ``expect TABLE:`` -- a CSV with some columns of an output table. Rows are matched on the key
  columns present (see ``KEYS``); every expected row must exist. An empty cell expects a blank,
  numbers are compared with a tolerance of 1e-9, dates as ``YYYY-MM-DD`` and months as
  ``YYYY-MM``, everything else as text.
* ``expect error:`` -- the next line is text that the message of the raised
  :class:`crm_xl.CrmXlError` must contain.

Other lines: ``name: ...``, ``config: key=value; key=value`` (given to ``crm_xl.run`` as a dict),
``today: 2024-03-15`` and ``memory limit: 20000`` (``crm_xl.run``'s ``today`` and ``memory_limit``,
what an adapter tells the core of the machine; not given: ``None``),
``exact rows: true`` (each expected table must have exactly the expected number of rows),
``xfail: reason`` (the code disagrees with the documented rule: expected to fail, strictly), and
``# comments``. Blank lines are ignored.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import crm_xl

DOC = Path(__file__).resolve().parents[1] / "docs" / "business_logic.md"
MIN_EXAMPLES = 25

KEYS: dict[str, tuple[str, ...]] = {
    "customer_history": ("report_month", "customer_id"),
    "customer_snapshot": ("customer_id",),
    "monthly_summary": ("report_month", "dimension", "category"),
    "tier_transitions": ("report_month", "from_tier", "to_tier"),
    "rfm_cut_points": ("report_month", "field"),
    "segment_map": ("cell",),
    "data_quality": ("table", "column", "rule"),
    "rejected_lines": ("table", "row", "rule"),
    "run_info": ("item",),
    "movers": ("customer_id",),
    "tier_migration": ("scope", "from_tier", "to_tier"),
    "kpis": ("report_month",),
    "segment_shares": ("report_month", "rfm_segment"),
}

DEFAULT_PRODUCTS = pd.DataFrame({
    "product_id": ["POD10", "POD50", "BEAN250", "DEV1", "ACC1", "SPR1"],
    "category": ["consumable", "consumable", "consumable", "device", "accessories", "spare_parts"],
    "unit_size": [10, 50, 250, 1, 1, 1],
})

_BLOCK = re.compile(r"^```example[ \t]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
_META = re.compile(r"^(name|config|xfail|exact rows|today|memory limit):[ \t]*(.*)$")
_SECTION = re.compile(r"^(transactions|customers|products|segment_map|expect [a-z_]+):[ \t]*$")
_MONTH = re.compile(r"^\d{4}-\d{2}$")
_INPUTS = ("transactions", "customers", "products")


@dataclasses.dataclass
class Example:
    name: str
    line: int
    config: dict[str, str] = dataclasses.field(default_factory=dict)
    sections: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    exact_rows: bool = False
    xfail: str | None = None
    today: str | None = None
    memory_limit: int | None = None


# ----------------------------------------------------------------------------------------------
# Parsing the document
# ----------------------------------------------------------------------------------------------

def parse_examples(text: str) -> list[Example]:
    """Every ``example`` block of a markdown text, in document order."""
    examples = []
    for match in _BLOCK.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        examples.append(parse_block(match.group(1), line))
    return examples


def parse_block(body: str, line: int = 0) -> Example:
    example = Example(name="", line=line)
    current: list[str] | None = None
    for raw in body.splitlines():
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        meta = _META.match(stripped)
        section = _SECTION.match(stripped)
        if meta:
            key, value = meta.group(1), meta.group(2).strip()
            current = None
            if key == "name":
                example.name = value
            elif key == "config":
                example.config.update(parse_config(value, line))
            elif key == "xfail":
                example.xfail = value or "code disagrees with the documented rule"
            elif key == "today":
                example.today = value
            elif key == "memory limit":
                example.memory_limit = int(value)
            else:
                example.exact_rows = value.lower() == "true"
        elif section:
            title = section.group(1)
            if title in example.sections:
                raise ValueError(f"example at line {line}: section {title!r} given twice")
            current = example.sections[title] = []
        elif current is None:
            raise ValueError(f"example at line {line}: line outside any section: {raw!r}")
        else:
            current.append(raw)
    if not example.name:
        raise ValueError(f"example at line {line} has no 'name:' line")
    if not any(s.startswith("expect ") for s in example.sections):
        raise ValueError(f"example {example.name!r} expects nothing")
    if "transactions" not in example.sections:
        raise ValueError(f"example {example.name!r} has no transactions")
    return example


def parse_config(text: str, line: int = 0) -> dict[str, str]:
    config = {}
    for part in text.split(";"):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        if not sep:
            raise ValueError(f"example at line {line}: config part {part.strip()!r} is not key=value")
        config[key.strip()] = value.strip()
    return config


def _csv_rows(lines: list[str]) -> list[list[str]]:
    return list(csv.reader(io.StringIO("\n".join(lines))))


def _cell(value: str, kind: str) -> Any:
    if value.startswith("'"):
        return value[1:]
    if value.strip() == "":
        return pd.NaT if kind == "date" else np.nan
    return pd.Timestamp(value) if kind == "date" else float(value)


_DTYPES = {"int64": "int64", "string": "string", "category": "category"}


def input_table(lines: list[str]) -> pd.DataFrame:
    """A raw table from CSV lines: text cells, or typed cells for ``name:number`` / ``name:date``."""
    rows = _csv_rows(lines)
    header, body = rows[0], rows[1:]
    columns: dict[str, Any] = {}
    for i, spec in enumerate(header):
        name, _, kind = spec.partition(":")
        cells = [row[i] if i < len(row) else "" for row in body]
        if kind in ("number", "date"):
            values = [_cell(c, kind) for c in cells]
            if all(not isinstance(v, str) for v in values):
                columns[name] = pd.Series(values, dtype="datetime64[ns]" if kind == "date" else "float64")
            else:
                columns[name] = pd.Series(values, dtype=object)
        elif kind in _DTYPES:   # the dtypes DataFrames built in Python or read from Parquet carry
            columns[name] = pd.Series([c if c != "" or kind == "category" else None for c in cells]).astype(
                _DTYPES[kind])
        elif kind:
            raise ValueError(f"unknown column type {kind!r} in {spec!r} (use number, date, {', '.join(_DTYPES)})")
        else:
            columns[name] = pd.Series([c if c != "" else None for c in cells], dtype=object)
    return pd.DataFrame(columns)


def default_customers(transactions: pd.DataFrame) -> pd.DataFrame:
    ids = [v for v in transactions["customer_id"].tolist() if not _is_blank(v)]
    ids = list(dict.fromkeys(ids))
    return pd.DataFrame({"customer_id": pd.Series(ids, dtype=object), "customer_group": "Retail",
                         "created_date": "2020-01-01"})


def run_example(example: Example) -> dict[str, pd.DataFrame]:
    tables = {name: input_table(example.sections[name]) for name in _INPUTS if name in example.sections}
    transactions = tables["transactions"]
    customers = tables.get("customers")
    if customers is None:
        customers = default_customers(transactions)
    products = tables.get("products", DEFAULT_PRODUCTS.copy())
    config: dict[str, Any] = dict(example.config)
    if "segment_map" in example.sections:
        rows = _csv_rows(example.sections["segment_map"])
        config["segment_map"] = pd.DataFrame(rows[1:], columns=rows[0])
    today = None if example.today is None else pd.Timestamp(example.today).date()
    return crm_xl.run(transactions, customers, products, config=config, today=today,
                      memory_limit=example.memory_limit)


# ----------------------------------------------------------------------------------------------
# Comparing
# ----------------------------------------------------------------------------------------------

def _is_blank(value: Any) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    if isinstance(value, (float, np.floating)) and math.isnan(value):
        return True
    if isinstance(value, (pd.Timestamp, np.datetime64)) and pd.isna(value):
        return True
    return isinstance(value, str) and value.strip() == ""


def _as_text(value: Any, expected: str) -> str:
    """An actual cell as the text an example writes, given what the example wrote."""
    if isinstance(value, (pd.Timestamp, np.datetime64)):
        stamp = pd.Timestamp(value)
        return stamp.strftime("%Y-%m") if _MONTH.match(expected) else stamp.strftime("%Y-%m-%d")
    return str(value).strip()


def cell_matches(actual: Any, expected: str) -> bool:
    expected = expected.strip()
    if expected == "":
        return _is_blank(actual)
    if _is_blank(actual):
        return False
    is_number = isinstance(actual, (int, float, np.integer, np.floating)) and not isinstance(actual, bool)
    if is_number:
        try:
            wanted = float(expected)
        except ValueError:
            return False
        return math.isclose(float(actual), wanted, rel_tol=1e-9, abs_tol=1e-9)
    return _as_text(actual, expected) == expected


def check_table(name: str, actual: pd.DataFrame, lines: list[str], exact_rows: bool) -> None:
    rows = _csv_rows(lines)
    header, body = [h.strip() for h in rows[0]], rows[1:]
    unknown = [c for c in header if c not in actual.columns]
    if unknown:
        raise AssertionError(f"{name}: no such columns {unknown}; columns are {list(actual.columns)}")
    keys = [c for c in KEYS.get(name, ()) if c in header]
    if not keys:
        raise AssertionError(f"{name}: the expected header needs a key column of {KEYS.get(name)}")
    records = actual.to_dict("records")
    problems = []
    for row in body:
        wanted = dict(zip(header, row + [""] * (len(header) - len(row)), strict=True))
        found = [r for r in records if all(cell_matches(r[k], wanted[k]) for k in keys)]
        label = ", ".join(f"{k}={wanted[k]}" for k in keys)
        if len(found) != 1:
            problems.append(f"{name}: {len(found)} rows with {label} (expected exactly one)")
            continue
        got = found[0]
        for column in header:
            if not cell_matches(got[column], wanted[column]):
                problems.append(f"{name} [{label}] {column}: expected {wanted[column]!r}, "
                                f"got {_show(got[column])!r}")
    if exact_rows and len(actual) != len(body):
        problems.append(f"{name}: {len(actual)} rows, expected exactly {len(body)}")
    if problems:
        raise AssertionError("\n".join(problems))


def _show(value: Any) -> str:
    return "" if _is_blank(value) else _as_text(value, "")


def check_example(example: Example) -> None:
    """Run one example and raise AssertionError on any difference from what it expects."""
    if "expect error" in example.sections:
        message = " ".join(line.strip() for line in example.sections["expect error"]).strip()
        try:
            run_example(example)
        except crm_xl.CrmXlError as error:
            assert message in str(error), f"error message {str(error)!r} does not contain {message!r}"
            return
        except Exception as error:  # a crash instead of a CrmXlError is a failure of the example
            raise AssertionError(f"expected CrmXlError containing {message!r}, got {error!r}") from error
        raise AssertionError(f"expected CrmXlError containing {message!r}, but run() succeeded")
    try:
        tables = run_example(example)
    except Exception as error:
        raise AssertionError(f"run() raised {error!r}") from error
    for section, lines in example.sections.items():
        if section.startswith("expect "):
            table = section.removeprefix("expect ")
            assert table in tables, f"no output table {table!r}; tables are {list(tables)}"
            actual = tables[table]
            if table == "data_quality":     # the examples are about the core: the CLV view's notes (a
                # handful of customers is too few for its models) are not part of them
                actual = actual[~actual["rule"].str.startswith("clv_")]
            check_table(table, actual, lines, example.exact_rows)


# ----------------------------------------------------------------------------------------------
# Tests
# ----------------------------------------------------------------------------------------------

EXAMPLES = parse_examples(DOC.read_text(encoding="utf-8"))


def _param(example: Example) -> Any:
    marks = []
    if example.xfail:
        marks.append(pytest.mark.xfail(reason=example.xfail, strict=True, raises=AssertionError))
    return pytest.param(example, id=example.name, marks=marks)


@pytest.mark.parametrize("example", [_param(e) for e in EXAMPLES])
def test_example(example: Example) -> None:
    check_example(example)


def test_doc_has_enough_uniquely_named_examples() -> None:
    names = [e.name for e in EXAMPLES]
    assert len(names) >= MIN_EXAMPLES, f"only {len(names)} examples in {DOC.name}"
    duplicates = sorted({n for n in names if names.count(n) > 1})
    assert not duplicates, f"example names used more than once: {duplicates}"


_SELF_CHECK = """
name: self check
config: report_month=2024-01; history_months=1
transactions:
invoice_id,invoice_date,customer_id,product_id,quantity,revenue
I1,2024-01-10,C1,POD10,5,22.5
expect customer_history:
report_month,customer_id,m1,value_tier,first_core_date,aos
{row}
"""


@pytest.mark.parametrize("row, ok", [
    ("2024-01,C1,50,Bronze,2024-01-10,50", True),
    ("2024-01,C1,50.0000000001,Bronze,2024-01-10,50", True),
    ("2024-01,C1,51,Bronze,2024-01-10,50", False),
    ("2024-01,C1,50,Silver,2024-01-10,50", False),
    ("2024-01,C1,50,Bronze,2024-01-11,50", False),
    ("2024-01,C1,50,Bronze,2024-01-10,", False),
    ("2024-01,C2,50,Bronze,2024-01-10,50", False),
])
def test_the_checker_catches_differences(row: str, ok: bool) -> None:
    example = parse_block(_SELF_CHECK.format(row=row))
    if ok:
        check_example(example)
    else:
        with pytest.raises(AssertionError):
            check_example(example)


def test_typed_input_cells() -> None:
    table = input_table(["id:number,day:date,text", "'00123,2024-01-10,007", "123,,", "4.5,2024-02-01,x"])
    assert table["id"].tolist() == ["00123", 123.0, 4.5]
    assert table["day"].dtype.kind == "M" and pd.isna(table["day"][1])
    assert table["text"].tolist() == ["007", None, "x"]
