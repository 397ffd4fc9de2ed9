"""The semantic model as plain data, derived from :mod:`crm_xl.contract`: every output table the
workbook holds (new contract tables are picked up without a change here), a calendar, the label
dimensions and the relationships of the star schema."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from crm_xl import contract
from crm_xl.config import DEFAULT_SEGMENT_MAP, EVENTS, STATES, TIERS
from crm_xl.workbook import layout

#: contract type -> (TMDL dataType, format string, M type)
TYPES: dict[str, tuple[str, str | None, str]] = {
    "month": ("dateTime", "yyyy-mm", "type date"),
    "date": ("dateTime", "yyyy-mm-dd", "type date"),
    "integer": ("int64", "#,0", "Int64.Type"),
    "decimal": ("double", "#,0.00", "type number"),
    "share": ("double", "0.0%", "type number"),    # a fraction (0.25), shown as 25.0%
    "text": ("string", None, "type text"),
    "label": ("string", None, "type text"),
}

CUSTOMER_TABLE, HISTORY_TABLE, CALENDAR = "customer_snapshot", "customer_history", "Calendar"
CUSTOMER_KEY, MONTH_KEY = "customer_id", "report_month"


@dataclass(frozen=True)
class Column:
    name: str
    data_type: str                  # TMDL dataType
    description: str = ""
    format_string: str | None = None
    source_column: str | None = None    # None: the name; "[Name]" for a calculated table's column
    sort_by: str | None = None
    is_key: bool = False
    hidden: bool = False


@dataclass(frozen=True)
class Measure:
    name: str
    expression: str                 # DAX
    format_string: str
    description: str
    folder: str


@dataclass(frozen=True)
class Table:
    name: str
    description: str
    columns: tuple[Column, ...]
    partition_kind: str             # "m" (Power Query) or "calculated" (DAX)
    source: str                     # the partition's M or DAX expression
    contract_table: str | None = None   # the contract table it loads, if any
    data_category: str | None = None
    measures: tuple[Measure, ...] = ()


@dataclass(frozen=True)
class Relationship:
    from_table: str                 # the many side
    from_column: str
    to_table: str                   # the one side
    to_column: str

    @property
    def name(self) -> str:
        """A stable id (what Desktop writes as a GUID), from the columns it joins."""
        key = f"{self.from_table}.{self.from_column}->{self.to_table}.{self.to_column}"
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"crm_xl/powerbi/{key}"))


@dataclass(frozen=True)
class Parameter:
    name: str
    value: str                      # an M literal
    type: str                       # "Text" or "Logical"
    description: str


@dataclass(frozen=True)
class Model:
    tables: tuple[Table, ...]
    relationships: tuple[Relationship, ...]
    parameters: tuple[Parameter, ...]

    def table(self, name: str) -> Table:
        return next(t for t in self.tables if t.name == name)


@dataclass(frozen=True)
class Label:
    """A label dimension: its table, the history column it sorts and colours, its values in rank order."""

    table: str
    column: str
    values: tuple[str, ...]

    @property
    def colours(self) -> dict[str, str]:
        return layout.label_colours(self.column)


def labels(segments: tuple[str, ...] | None = None) -> tuple[Label, ...]:
    """The label dimensions: tiers, states and events in the config's order, segments in the segment
    map's order (the workbook's own map when given)."""
    segment_names = segments if segments is not None else tuple(name for name, _ in DEFAULT_SEGMENT_MAP)
    return (Label("Tier", "value_tier", TIERS), Label("Lifecycle State", "lifecycle_state", STATES),
            Label("Lifecycle Event", "lifecycle_event", EVENTS), Label("RFM Segment", "rfm_segment", segment_names))


def output_tables() -> list[str]:
    """The contract tables the workbook holds as Excel tables (the file tables are not in it)."""
    return [name for name in contract.TABLES if name not in contract.FILE_TABLES]


def contract_columns(table: str) -> tuple[Column, ...]:
    """A contract table's columns with their model types, format strings and meanings."""
    return tuple(Column(name, TYPES[kind][0], meaning, TYPES[kind][1])
                 for name, kind, meaning in contract.TABLES[table][1])


def relationships(tables: list[str], label_dims: tuple[Label, ...]) -> tuple[Relationship, ...]:
    """customer_snapshot 1:* every other table with a customer_id; the calendar 1:* every table with a
    report_month except the customer table (its month is the snapshot's; a second path from the
    calendar to the history through it would be ambiguous); each label dimension 1:* the history."""
    found: list[Relationship] = []
    for name in tables:
        columns = contract.columns(name)
        if name != CUSTOMER_TABLE and CUSTOMER_KEY in columns:
            found.append(Relationship(name, CUSTOMER_KEY, CUSTOMER_TABLE, CUSTOMER_KEY))
        if name != CUSTOMER_TABLE and MONTH_KEY in columns and _type_of(name, MONTH_KEY) == "month":
            found.append(Relationship(name, MONTH_KEY, CALENDAR, "Date"))
    found += [Relationship(HISTORY_TABLE, label.column, label.table, label.column) for label in label_dims]
    return tuple(found)


def _type_of(table: str, column: str) -> str:
    return next(kind for name, kind, _ in contract.TABLES[table][1] if name == column)
