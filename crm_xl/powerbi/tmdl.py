"""TMDL text (Tabular Model Definition Language) of a :class:`~crm_xl.powerbi.model.Model`: one file
per table, plus database, model, relationships and expressions. Tabs indent, descriptions are ``///``
lines above their object, multi-line expressions sit one level deeper than the object's properties."""

from __future__ import annotations

import re

from crm_xl.powerbi.m import parameter
from crm_xl.powerbi.model import Column, Measure, Model, Parameter, Relationship, Table

COMPATIBILITY_LEVEL = 1567
TAB = "\t"
_PLAIN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def name(text: str) -> str:
    """An object name as TMDL writes it: quoted when it is not a plain identifier."""
    return text if _PLAIN.match(text) else "'" + text.replace("'", "''") + "'"


def _description(text: str, level: int) -> list[str]:
    return [f"{TAB * level}/// {line}" for line in text.splitlines()] if text else []


def _expression(head: str, expression: str, level: int) -> list[str]:
    """``head = expression``: on one line when it has one, else below, one level deeper than properties."""
    lines = expression.splitlines()
    if len(lines) == 1:
        return [f"{TAB * level}{head} = {lines[0]}"]
    return [f"{TAB * level}{head} =", *(f"{TAB * (level + 2)}{line}" if line else "" for line in lines)]


def database() -> str:
    return f"database\n{TAB}compatibilityLevel: {COMPATIBILITY_LEVEL}\n"


def model(m: Model) -> str:
    lines = ["model Model", f"{TAB}culture: en-US", f"{TAB}defaultPowerBIDataSourceVersion: powerBI_V3",
             f"{TAB}sourceQueryCulture: en-US", f"{TAB}dataAccessOptions", f"{TAB * 2}legacyRedirects",
             f"{TAB * 2}returnErrorValuesAsNull", ""]
    lines += [f"ref table {name(t.name)}" for t in m.tables]
    return "\n".join(lines) + "\n"


def relationships(m: Model) -> str:
    return "\n".join(_relationship(r) for r in m.relationships)


def _relationship(r: Relationship) -> str:
    return (f"relationship {r.name}\n{TAB}fromColumn: {name(r.from_table)}.{name(r.from_column)}\n"
            f"{TAB}toColumn: {name(r.to_table)}.{name(r.to_column)}\n")


def expressions(m: Model) -> str:
    return "\n".join(_parameter(p) for p in m.parameters)


def _parameter(p: Parameter) -> str:
    return "\n".join([*_description(p.description, 0), f"expression {name(p.name)} = {parameter(p.value, p.type)}",
                      ""])


def table(t: Table) -> str:
    lines = [*_description(t.description, 0), f"table {name(t.name)}"]
    if t.data_category:
        lines.append(f"{TAB}dataCategory: {t.data_category}")
    lines.append("")
    for measure in t.measures:
        lines += [*_measure(measure), ""]
    for column in t.columns:
        lines += [*_column(column), ""]
    kind = "m" if t.partition_kind == "m" else "calculated"
    lines += [f"{TAB}partition {name(t.name)} = {kind}", f"{TAB * 2}mode: import",
              *_expression("source", t.source, 2), ""]
    return "\n".join(lines)


def _measure(measure: Measure) -> list[str]:
    return [*_description(measure.description, 1), *_expression(f"measure {name(measure.name)}", measure.expression, 1),
            f"{TAB * 2}formatString: {measure.format_string}", f"{TAB * 2}displayFolder: {measure.folder}"]


def _column(column: Column) -> list[str]:
    lines = [*_description(column.description, 1), f"{TAB}column {name(column.name)}",
             f"{TAB * 2}dataType: {column.data_type}"]
    if column.is_key:
        lines.append(f"{TAB * 2}isKey")
    if column.format_string:
        lines.append(f"{TAB * 2}formatString: {column.format_string}")
    if column.hidden:
        lines.append(f"{TAB * 2}isHidden")
    # a snapshot's numbers must not be summed across months: no column aggregates by itself
    lines.append(f"{TAB * 2}summarizeBy: none")
    if column.source_column and column.source_column.startswith("["):
        lines.append(f"{TAB * 2}isNameInferred")
    lines.append(f"{TAB * 2}sourceColumn: {column.source_column or column.name}")
    if column.sort_by:
        lines.append(f"{TAB * 2}sortByColumn: {name(column.sort_by)}")
    return lines


def files(m: Model) -> dict[str, str]:
    """Path (under the semantic model's ``definition/``) -> TMDL text."""
    out = {"database.tmdl": database(), "model.tmdl": model(m), "relationships.tmdl": relationships(m),
           "expressions.tmdl": expressions(m)}
    out.update({f"tables/{t.name}.tmdl": table(t) for t in m.tables})
    return out
