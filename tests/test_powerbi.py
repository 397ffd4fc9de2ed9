"""The Power BI project (crm_xl.powerbi), checked without Power BI Desktop: the JSON parts against
Microsoft's published schemas (vendored in tests/fixtures/powerbi_schemas), every M expression and every
DAX expression through a real parser (pbi-parsers), the TMDL read back by an independent reader
(powerbi-tmdl-tools) and cross-checked against the contract, and the measures' meaning: their DAX,
evaluated by a small interpreter of the subset they use, equals the same definitions computed
separately in pandas on the sample."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import crm_xl
from crm_xl import cli, contract
from crm_xl.config import STATES, TIERS
from crm_xl.io import sample
from crm_xl.powerbi import dax, m, project, report
from crm_xl.powerbi.build import build_model
from crm_xl.powerbi.model import CALENDAR, HISTORY_TABLE, Model
from crm_xl.workbook import layout

jsonschema = pytest.importorskip("jsonschema")
referencing = pytest.importorskip("referencing")
pq = pytest.importorskip("pbi_parsers.pq")
dx = pytest.importorskip("pbi_parsers.dax")
tmdl_parser = pytest.importorskip("tmdl_parser")

ROOT = Path(__file__).parents[1]
COMMITTED = ROOT / "powerbi"
SCHEMAS = Path(__file__).parent / "fixtures" / "powerbi_schemas"
SCHEMA_BASE = "https://developer.microsoft.com/json-schemas/fabric/"
JSON_SUFFIXES = (".json", ".pbir", ".pbism", ".pbip")


@pytest.fixture(scope="module")
def model() -> Model:
    return build_model(project.SAMPLE_WORKBOOK, project.SAMPLE_HISTORY)


@pytest.fixture(scope="module")
def files() -> dict[str, str]:
    return project.sample_files()


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory, files: dict[str, str]) -> Path:
    return project.write_project(tmp_path_factory.mktemp("pbi") / "project", files)


# --- the committed project --------------------------------------------------------------------------


def test_committed_project_equals_the_generator(files: dict[str, str]) -> None:
    """powerbi/ is what `python -m crm_xl.powerbi --sample-project powerbi` writes (run it after a contract change)."""
    committed = {p.relative_to(COMMITTED).as_posix(): p.read_text(encoding="utf-8")
                 for p in sorted(COMMITTED.rglob("*")) if p.is_file()}
    assert sorted(committed) == sorted(files)
    for path, text in files.items():
        assert committed[path] == text, f"powerbi/{path} differs: python -m crm_xl.powerbi --sample-project powerbi"


def test_the_project_is_deterministic_and_names_no_machine_path(files: dict[str, str]) -> None:
    assert project.sample_files() == files
    text = "".join(files.values())
    assert str(ROOT) not in text and "/tmp" not in text and "/home" not in text


def test_the_project_has_the_parts_power_bi_opens(files: dict[str, str]) -> None:
    name = project.SAMPLE_NAME
    for part in (f"{name}.pbip", f"{name}.SemanticModel/definition.pbism", f"{name}.Report/definition.pbir",
                 f"{name}.Report/definition/report.json", f"{name}.Report/definition/version.json",
                 f"{name}.Report/definition/pages/pages.json"):
        assert part in files
    for part in ("database", "model", "relationships", "expressions"):
        assert f"{name}.SemanticModel/definition/{part}.tmdl" in files
    tables = {p.split("/")[-1][:-5] for p in files if "/definition/tables/" in p}
    assert tables == {*(t for t in contract.TABLES if t not in contract.FILE_TABLES), CALENDAR, "Tier",
                      "Lifecycle State", "Lifecycle Event", "RFM Segment"}
    pages = json.loads(files[f"{name}.Report/definition/pages/pages.json"])["pageOrder"]
    assert pages == ["overview", "tier_mix", "movers", "rfm_grid"]


# --- JSON parts against Microsoft's schemas -----------------------------------------------------------


def _registry() -> Any:
    resources = []
    for path in SCHEMAS.rglob("*.json"):
        schema = json.loads(path.read_text(encoding="utf-8"))
        resource = referencing.Resource.from_contents(schema)
        # the embedded schemas' $id says schema.embedded.json where the files and the $refs say schema-embedded.json
        resources += [(schema["$id"], resource), (SCHEMA_BASE + path.relative_to(SCHEMAS).as_posix(), resource)]
    return referencing.Registry().with_resources(resources)


REGISTRY = _registry()


def schema_errors(part: dict[str, Any]) -> list[str]:
    schema = REGISTRY.get_or_retrieve(part["$schema"]).value.contents
    validator = jsonschema.Draft7Validator(schema, registry=REGISTRY)
    return [f"{list(e.absolute_path)}: {e.message[:200]}" for e in validator.iter_errors(part)]


def test_every_json_part_is_valid_against_its_published_schema(files: dict[str, str]) -> None:
    checked = 0
    for path, text in files.items():
        if not path.endswith(JSON_SUFFIXES) or "/StaticResources/" in path:
            continue
        part = json.loads(text)
        assert part["$schema"].startswith(SCHEMA_BASE), path
        assert schema_errors(part) == [], path
        checked += 1
    assert checked >= 30


def test_the_schema_check_catches_a_wrong_part(files: dict[str, str]) -> None:
    visual = json.loads(files[f"{project.SAMPLE_NAME}.Report/definition/pages/overview/visuals/card_0/visual.json"])
    visual["visual"]["query"]["queryState"]["Values"]["projections"][0]["field"] = {"Columnn": {}}
    assert schema_errors(visual)
    page = json.loads(files[f"{project.SAMPLE_NAME}.Report/definition/pages/overview/page.json"])
    del page["displayOption"]
    assert schema_errors(page)
    version = json.loads(files[f"{project.SAMPLE_NAME}.Report/definition/version.json"])
    version["version"] = "2.0"
    assert schema_errors(version)


# --- TMDL read back by an independent reader, cross-checked against the contract -------------------------


def _unquote(name: str) -> str:
    return name[1:-1].replace("''", "'") if name.startswith("'") and name.endswith("'") else name


@pytest.fixture(scope="module")
def read_back(written: Path) -> dict[str, Any]:
    definition = written / f"{project.SAMPLE_NAME}.SemanticModel" / "definition"
    parsed = tmdl_parser.parse_semantic_model_definition(str(definition))
    tables = {}
    for table in parsed["tables"]:
        tables[_unquote(table["name"])] = {
            "columns": {_unquote(c["name"]): c for c in table.get("columns", [])},
            "measures": {_unquote(x["name"]): x for x in table.get("measures", [])},
            "partitions": table.get("partitions", []),
            "dataCategory": table.get("dataCategory")}
    return {"tables": tables, "relationships": parsed["relationships"], "database": parsed["database"]}


def test_tmdl_holds_every_contract_table_with_its_columns_and_types(read_back: dict[str, Any]) -> None:
    tables = read_back["tables"]
    for name, (_, columns) in contract.TABLES.items():
        if name in contract.FILE_TABLES:
            assert name not in tables
            continue
        read = tables[name]["columns"]
        assert list(read) == [c for c, _, _ in columns]
        for column, kind, _ in columns:
            assert read[column]["dataType"] == {"month": "dateTime", "date": "dateTime", "integer": "int64",
                                                "decimal": "double", "share": "double", "text": "string",
                                                "label": "string"}[kind]
            assert read[column]["summarizeBy"] == "none", "a snapshot's columns must not sum by themselves"
    assert read_back["database"]["compatibilityLevel"] == str(project.tmdl.COMPATIBILITY_LEVEL)
    assert tables[CALENDAR]["dataCategory"] == "Time"


def test_every_partition_reads_its_workbook_table_with_the_contract_types(read_back: dict[str, Any]) -> None:
    for name in contract.TABLES:
        if name in contract.FILE_TABLES:
            continue
        [partition] = read_back["tables"][name]["partitions"]
        source = partition["source"]
        assert partition["partitionType"] == "m" and partition["mode"] == "import"
        assert "Excel.Workbook(File.Contents(WorkbookPath), true)" in source
        assert f'Workbook{{[Item = "{name}", Kind = "Table"]}}[Data]' in source
        assert name == layout.OUTPUT_TABLES[name].name, "the Excel table the workbook holds"
        typed = re.findall(r'\{"([^"]+)", (type text|type date|type number|Int64\.Type)\}', source)
        expected = {"text": "type text", "label": "type text", "month": "type date", "date": "type date",
                    "integer": "Int64.Type", "decimal": "type number", "share": "type number"}
        assert typed == [(c, expected[k]) for c, k, _ in contract.TABLES[name][1]]
    history = read_back["tables"][HISTORY_TABLE]["partitions"][0]["source"]
    assert ('if UseHistoryParquet then (if Text.EndsWith(Text.Lower(HistoryParquetPath), ".parquet") then '
            'Parquet.Document(File.Contents(HistoryParquetPath)) else Table.Combine(') in history


def test_every_relationship_joins_existing_columns_one_way(read_back: dict[str, Any], files: dict[str, str]) -> None:
    tables = read_back["tables"]
    pairs = set()
    for rel in read_back["relationships"]:
        for side in ("from", "to"):
            table, column = _unquote(rel[f"{side}Table"]), _unquote(rel[f"{side}ColumnName"])
            assert column in tables[table]["columns"], rel
        pairs.add((_unquote(rel["fromTable"]), rel["fromColumnName"], _unquote(rel["toTable"])))
    assert (HISTORY_TABLE, "customer_id", "customer_snapshot") in pairs
    for name in ("customer_history", "monthly_summary", "tier_transitions", "rfm_cut_points"):
        assert (name, "report_month", CALENDAR) in pairs
    assert {(HISTORY_TABLE, c, t) for c, t in (("value_tier", "Tier"), ("lifecycle_state", "Lifecycle State"),
                                                ("lifecycle_event", "Lifecycle Event"),
                                                ("rfm_segment", "RFM Segment"))} <= pairs
    # the calendar must not reach the history twice (directly and through the customer table)
    assert ("customer_snapshot", "report_month", CALENDAR) not in pairs
    text = files[f"{project.SAMPLE_NAME}.SemanticModel/definition/relationships.tmdl"]
    assert "crossFilteringBehavior" not in text and "bothDirections" not in text   # single direction (the default)


def test_the_measures_have_format_strings_and_descriptions(files: dict[str, str], read_back: dict[str, Any]) -> None:
    measures = read_back["tables"][HISTORY_TABLE]["measures"]
    expected = {"Customers", "Active Customers", "New", "Lost", "Reactivated", "Churn %", "Retention %",
                "Reactivation %", "Revenue M1", "Units M1", "Avg AMC", "Share of base", "Tier Up Moves",
                "Tier Down Moves", "% Champions", "Customers Δ MoM", "Active Customers Δ MoM", "Revenue M1 Δ MoM"}
    assert expected <= set(measures)
    text = files[f"{project.SAMPLE_NAME}.SemanticModel/definition/tables/{HISTORY_TABLE}.tmdl"]
    for measure in dax.measures():
        assert measures[measure.name]["formatString"] == measure.format_string
        assert measures[measure.name]["expression"] == measure.expression, "the expression reads back whole"
        assert f"/// {measure.description}\n\tmeasure {project.tmdl.name(measure.name)} =" in text


def test_label_tables_sort_by_rank_with_the_workbook_colours(files: dict[str, str]) -> None:
    text = files[f"{project.SAMPLE_NAME}.SemanticModel/definition/tables/Tier.tmdl"]
    assert "\tcolumn value_tier\n" in text and "sortByColumn: rank" in text
    rows = re.findall(r'\{"([^"]+)", (\d+), "([^"]*)"\}', text)
    assert rows == [(t, str(i), layout.LABEL_COLOURS["value_tier"][t]) for i, t in enumerate(TIERS, 1)]
    segments = re.findall(r'\{"([^"]+)", (\d+), "', files[f"{project.SAMPLE_NAME}.SemanticModel/definition/tables/"
                                                           "RFM Segment.tmdl"])
    assert [s for s, _ in segments] == [row[0] for row in layout.segment_map_rows()]


# --- M and DAX through a real parser ---------------------------------------------------------------------


def test_every_m_expression_parses(model: Model, read_back: dict[str, Any], files: dict[str, str]) -> None:
    sources = [p["source"] for t in read_back["tables"].values() for p in t["partitions"] if p["partitionType"] == "m"]
    assert len(sources) == len([t for t in model.tables if t.partition_kind == "m"])
    expressions = re.findall(r"^expression (\w+) = (.+)$",
                             files[f"{project.SAMPLE_NAME}.SemanticModel/definition/expressions.tmdl"], re.MULTILINE)
    assert [name for name, _ in expressions] == [m.WORKBOOK_PATH, m.HISTORY_PARQUET_PATH, m.USE_HISTORY_PARQUET]
    for source in [*sources, *(e for _, e in expressions)]:
        assert pq.to_ast(source) is not None, source


def test_the_m_parser_rejects_broken_m() -> None:
    broken = m.output_table("segment_map").replace("in\n", "", 1)
    with pytest.raises(Exception):  # noqa: B017 - the parser raises ValueError or its own errors
        assert pq.to_ast(broken) is not None


def _dax_sources(model: Model) -> list[tuple[str, set[str]]]:
    """Every DAX expression, with the columns ``[Name]`` may name in it besides measures (a calculated
    table's own columns, e.g. CALENDAR's [Date])."""
    return [*((t.source, {c.name for c in t.columns}) for t in model.tables if t.partition_kind == "calculated"),
            *((x.expression, set()) for t in model.tables for x in t.measures)]


def _walk(node: Any) -> Any:
    yield node
    for key, value in vars(node).items():
        if key == "parent":
            continue
        for child in value if isinstance(value, list) else [value]:
            if isinstance(child, dx.Expression):
                yield from _walk(child)


def test_every_dax_expression_parses_and_names_what_the_model_has(model: Model) -> None:
    columns = {(t.name, c.name) for t in model.tables for c in t.columns}
    measures = {x.name for t in model.tables for x in t.measures}
    tables = {t.name for t in model.tables}
    for source, own in _dax_sources(model):
        tree = dx.to_ast(source)
        assert tree is not None, source
        for node in _walk(tree):
            if isinstance(node, dx.exprs.ColumnExpression):
                table, column = _unquote(node.table.text), node.column.text[1:-1]
                assert (table, column) in columns or table == "", (source, table, column)
            elif isinstance(node, dx.exprs.MeasureExpression):
                assert node.name.text[1:-1] in measures | own, source
            elif isinstance(node, dx.exprs.TableExpression):
                assert _unquote(node.name.text) in tables, source
    with pytest.raises(Exception):  # noqa: B017
        assert dx.to_ast("CALCULATE(COUNTROWS(customer_history), ") is not None


def test_every_report_field_resolves_to_the_model(model: Model) -> None:
    columns = {(t.name, c.name) for t in model.tables for c in t.columns}
    measures = {(t.name, x.name) for t in model.tables for x in t.measures}
    used = report.fields(model)
    assert used
    for field in used:
        assert (field.table, field.name) in (measures if field.measure else columns), field
    for page in report.pages(model):
        assert len({v.name for v in page.visuals}) == len(page.visuals)


# --- new contract tables are picked up -------------------------------------------------------------------


def test_a_new_contract_table_gets_a_typed_partition_and_its_relationships(monkeypatch: pytest.MonkeyPatch) -> None:
    extra = ("Test table", [("report_month", "month", "m"), ("customer_id", "text", "c"), ("n", "integer", "n"),
                            ("x", "decimal", "x"), ("since", "date", "d")])
    monkeypatch.setitem(contract.TABLES, "kpis_test", extra)
    built = build_model("C:\\b.xlsm", "C:\\b.parquet")
    table = built.table("kpis_test")
    assert [c.name for c in table.columns] == ["report_month", "customer_id", "n", "x", "since"]
    assert ('{{"report_month", type date}, {"customer_id", type text}, {"n", Int64.Type}, {"x", type number}, '
            '{"since", type date}}') in table.source
    assert pq.to_ast(table.source) is not None
    joined = {(r.from_table, r.from_column, r.to_table) for r in built.relationships}
    assert {("kpis_test", "report_month", CALENDAR), ("kpis_test", "customer_id", "customer_snapshot")} <= joined
    assert "rejected_lines" not in {t.name for t in built.tables}


# --- the measures' meaning, on the sample ------------------------------------------------------------------


class _Dax:
    """An interpreter of the DAX subset the measures use, over pandas frames: a filter context is a
    dict (table, column) -> value (the calendar's month as ("Calendar", "Month")); CALCULATE applies its
    REMOVEFILTERS first, then its boolean filters, as DAX does."""

    def __init__(self, frames: dict[str, pd.DataFrame], measures: dict[str, str], related: dict[str, set[str]]):
        self.frames, self.measures, self.related = frames, measures, related

    def measure(self, name: str, context: dict[tuple[str, str], Any]) -> Any:
        return self.eval(dx.to_ast(self.measures[name]), context, {}, None)

    def rows(self, table: str, context: dict) -> pd.DataFrame:
        frame = self.frames[table]
        keep = pd.Series(True, index=frame.index)
        for (t, column), value in context.items():
            if t == CALENDAR and table in self.related[CALENDAR]:
                keep &= frame["report_month"] == value
            elif t == table:
                keep &= value(frame[column]) if callable(value) else frame[column] == value
        return frame[keep]

    def eval(self, node: Any, ctx: dict, env: dict, row: Any) -> Any:
        e = dx.exprs
        if isinstance(node, e.ReturnExpression):
            env = dict(env)
            for statement in node.variable_statements:
                env[statement.var_name.text] = self.eval(statement.statement, ctx, env, row)
            return self.eval(node.ret, ctx, env, row)
        if isinstance(node, e.IdentifierExpression):
            return env[node.name.text]
        if isinstance(node, e.LiteralNumberExpression):
            return float(node.value.text)
        if isinstance(node, e.LiteralStringExpression):
            return node.value.text[1:-1]
        if isinstance(node, e.AddSubUnaryExpression):
            return -self.eval(node.number, ctx, env, row)
        if isinstance(node, e.MeasureExpression):
            return self.measure(node.name.text[1:-1], ctx)
        if isinstance(node, e.ColumnExpression):
            return row[node.column.text[1:-1]]
        if isinstance(node, e.ParenthesesExpression):
            return self.eval(node.inner_statement, ctx, env, row)
        if isinstance(node, (e.AddSubExpression, e.DivMulExpression, e.ComparisonExpression, e.LogicalExpression)):
            left, right = self.eval(node.left, ctx, env, row), self.eval(node.right, ctx, env, row)
            op = node.operator.text
            if op in ("+", "-"):
                if left is None and right is None:
                    return None
                return (left or 0) + (right or 0) if op == "+" else (left or 0) - (right or 0)
            if op in ("<", ">"):     # BLANK compares as 0
                left, right = left or 0, right or 0
                return left < right if op == "<" else left > right
            if op == "&&":
                return bool(left) and bool(right)
            raise AssertionError(f"operator {op} is not in the subset")
        assert isinstance(node, e.FunctionExpression), type(node)
        return self.function("".join(t.text for t in node.name_parts).upper(), node.args, ctx, env, row)

    def function(self, name: str, args: list, ctx: dict, env: dict, row: Any) -> Any:
        e = dx.exprs
        if name == "MAX":
            assert (_unquote(args[0].table.text), args[0].column.text) == (CALENDAR, "[Month]")
            return ctx[(CALENDAR, "Month")]
        if name in ("CALCULATE", "CALCULATETABLE"):
            inner = dict(ctx)
            for arg in args[1:]:
                if isinstance(arg, e.FunctionExpression) and arg.name_parts[0].text.upper() == "REMOVEFILTERS":
                    if not arg.args:
                        inner = {k: v for k, v in inner.items() if k[0] == CALENDAR}
                    else:
                        inner = {k: v for k, v in inner.items() if k[0] != _unquote(arg.args[0].name.text)}
            for arg in args[1:]:
                if isinstance(arg, e.ComparisonExpression):
                    table, column = _unquote(arg.left.table.text), arg.left.column.text[1:-1]
                    inner[(table, column)] = self.eval(arg.right, ctx, env, row)
                elif isinstance(arg, e.FunctionExpression) and arg.name_parts[0].text.upper() == "NOT":
                    column = arg.args[0].args[0]
                    inner[(_unquote(column.table.text), column.column.text[1:-1])] = lambda s: s.notna()
            if name == "CALCULATETABLE":
                return self.rows(_unquote(args[0].name.text), inner)
            return self.eval(args[0], inner, env, row)
        if name == "COUNTROWS":
            n = len(self.rows(_unquote(args[0].name.text), ctx))
            return n or None
        if name in ("SUM", "AVERAGE"):
            column = args[0]
            values = self.rows(_unquote(column.table.text), ctx)[column.column.text[1:-1]].dropna()
            return None if values.empty else float(values.sum() if name == "SUM" else values.mean())
        if name == "DIVIDE":
            top, bottom = self.eval(args[0], ctx, env, row), self.eval(args[1], ctx, env, row)
            return None if not bottom or top is None else top / bottom
        if name == "EDATE":
            return self.eval(args[0], ctx, env, row) + pd.DateOffset(months=int(self.eval(args[1], ctx, env, row)))
        if name == "FILTER":
            frame = self.eval(args[0], ctx, env, row)
            keep = [bool(self.eval(args[1], ctx, env, r)) for _, r in frame.iterrows()]
            return frame[keep]
        if name == "SUMX":
            frame = self.eval(args[0], ctx, env, row)
            return float(sum(self.eval(args[1], ctx, env, r) for _, r in frame.iterrows()))
        if name == "LOOKUPVALUE":
            table = self.frames[_unquote(args[0].table.text)]
            match = table[table[args[1].column.text[1:-1]] == self.eval(args[2], ctx, env, row)]
            return None if match.empty else float(match[args[0].column.text[1:-1]].iloc[0])
        if name == "ISBLANK":
            return self.eval(args[0], ctx, env, row) is None
        if name == "NOT":
            return not self.eval(args[0], ctx, env, row)
        raise AssertionError(f"{name} is not in the subset")


@pytest.fixture(scope="module")
def tables() -> dict[str, pd.DataFrame]:
    return crm_xl.run(**sample.generate(n_customers=800, months=24, end_month="2024-06", seed=11))


@pytest.fixture(scope="module")
def interpreter(tables: dict[str, pd.DataFrame], model: Model) -> _Dax:
    history = tables["customer_history"].copy()
    for column in history.columns:
        if isinstance(history[column].dtype, pd.CategoricalDtype):
            history[column] = history[column].astype(object).where(history[column].notna(), None)
    history["report_month"] = pd.to_datetime(history["report_month"])
    transitions = tables["tier_transitions"].assign(report_month=lambda f: pd.to_datetime(f["report_month"]))
    transitions = transitions.astype({"from_tier": object, "to_tier": object})
    tier = pd.DataFrame({"value_tier": list(TIERS), "rank": range(1, len(TIERS) + 1)})
    measures = {x.name: x.expression for x in model.table(HISTORY_TABLE).measures}
    related = {CALENDAR: {r.from_table for r in model.relationships if r.to_table == CALENDAR}}
    return _Dax({HISTORY_TABLE: history, "tier_transitions": transitions, "Tier": tier}, measures, related)


def _months(tables: dict[str, pd.DataFrame]) -> list[pd.Timestamp]:
    months = sorted(pd.to_datetime(tables["customer_history"]["report_month"].unique()))
    return [months[-1], months[len(months) // 2], months[1]]


def _by_month(tables: dict[str, pd.DataFrame]) -> dict[pd.Timestamp, pd.DataFrame]:
    history = tables["customer_history"].copy()
    history["report_month"] = pd.to_datetime(history["report_month"])
    return {month: frame.set_index("customer_id") for month, frame in history.groupby("report_month", observed=True)}


def test_the_lifecycle_measures_mean_what_their_descriptions_say(tables: dict[str, pd.DataFrame],
                                                                  interpreter: _Dax) -> None:
    by_month = _by_month(tables)
    for month in _months(tables):
        now, before = by_month[month], by_month[month - pd.DateOffset(months=1)]
        ctx = {(CALENDAR, "Month"): month}
        active_now = set(now.index[now["activity_status"] == "Active"])
        active_before = set(before.index[before["activity_status"] == "Active"])
        lost_before = set(before.index[before["lifecycle_state"] == STATES[4]])
        back = set(now.index[now["lifecycle_state"] == STATES[5]])
        assert interpreter.measure("Customers", ctx) == len(now)
        assert interpreter.measure("Active Customers", ctx) == len(active_now)
        for event in ("New", "Lost", "Reactivated"):
            assert (interpreter.measure(event, ctx) or 0) == int((now["lifecycle_event"] == event).sum())
        # churn: last month's active customers who are no longer active, over last month's active ones
        churn = len(active_before - active_now) / len(active_before)
        assert interpreter.measure("Churn %", ctx) == pytest.approx(churn)
        assert interpreter.measure("Retention %", ctx) == pytest.approx(len(active_before & active_now)
                                                                        / len(active_before))
        expected = len(back & lost_before) / len(lost_before) if lost_before else None
        assert interpreter.measure("Reactivation %", ctx) == (None if expected is None else pytest.approx(expected))
        assert interpreter.measure("Customers Δ MoM", ctx) == len(now) - len(before)
        assert interpreter.measure("Active Customers Δ MoM", ctx) == len(active_now) - len(active_before)


def test_the_volume_and_share_measures_equal_monthly_summary(tables: dict[str, pd.DataFrame],
                                                              interpreter: _Dax) -> None:
    summary = tables["monthly_summary"].copy()
    summary["report_month"] = pd.to_datetime(summary["report_month"])
    by_month = _by_month(tables)
    for month in _months(tables):
        ctx = {(CALENDAR, "Month"): month}
        rows = summary[(summary["report_month"] == month) & (summary["dimension"] == "lifecycle_state")]
        assert interpreter.measure("Revenue M1", ctx) == pytest.approx(rows["revenue_m1"].sum())
        assert interpreter.measure("Units M1", ctx) == pytest.approx(rows["volume_m1"].sum())
        now = by_month[month]
        assert interpreter.measure("Avg AMC", ctx) == pytest.approx(now.loc[now["activity_status"] == "Active",
                                                                            "amc"].mean())
        tiers = summary[(summary["report_month"] == month) & (summary["dimension"] == "value_tier")]
        for tier, share in zip(tiers["category"], tiers["share"], strict=True):
            tier_ctx = {**ctx, (HISTORY_TABLE, "value_tier"): tier}
            # monthly_summary rounds its share to 6 decimals
            assert (interpreter.measure("Share of base", tier_ctx) or 0) == pytest.approx(share, abs=1e-6)
        segments = summary[(summary["report_month"] == month) & (summary["dimension"] == "rfm_segment")]
        champions = segments.loc[segments["category"] == "Champions", "customers"].sum()
        assert interpreter.measure("% Champions", ctx) == pytest.approx(champions / segments["customers"].sum())
        before = by_month[month - pd.DateOffset(months=1)]
        assert interpreter.measure("Revenue M1 Δ MoM", ctx) == pytest.approx(now["revenue_m1"].sum()
                                                                             - before["revenue_m1"].sum())


def test_the_tier_move_measures_count_moves_between_tiers(tables: dict[str, pd.DataFrame], interpreter: _Dax) -> None:
    rank = {tier: i for i, tier in enumerate(TIERS)}
    by_month = _by_month(tables)
    for month in _months(tables):
        before_month = by_month[month - pd.DateOffset(months=1)][["value_tier"]].add_suffix("_before")
        both = by_month[month][["value_tier"]].join(before_month, how="inner").dropna()
        now, before = both["value_tier"].astype(str).map(rank), both["value_tier_before"].astype(str).map(rank)
        ctx = {(CALENDAR, "Month"): month}
        assert interpreter.measure("Tier Up Moves", ctx) == int((now < before).sum())
        assert interpreter.measure("Tier Down Moves", ctx) == int((now > before).sum())


def test_a_measure_is_never_a_sum_across_months(model: Model) -> None:
    """Every measure over the history pins one month; none sums or counts the history without it."""
    for measure in model.table(HISTORY_TABLE).measures:
        text = measure.expression
        if "COUNTROWS(customer_history)" in text or "SUM(customer_history" in text or "AVERAGE(" in text:
            assert "[report_month] = " in text, measure.name


# --- writing the folder, and the command ---------------------------------------------------------------------


def test_write_replaces_a_project_and_refuses_any_other_folder(tmp_path: Path, files: dict[str, str]) -> None:
    out = project.write_project(tmp_path / "p", files)
    (out / f"{project.SAMPLE_NAME}.Report" / "stale.json").write_text("{}", encoding="utf-8")
    project.write_project(out, files)
    assert not (out / f"{project.SAMPLE_NAME}.Report" / "stale.json").exists()
    other = tmp_path / "documents"
    other.mkdir()
    (other / "thesis.docx").write_text("mine", encoding="utf-8")
    with pytest.raises(crm_xl.CrmXlError, match="not a Power BI project"):
        project.write_project(other, files)
    assert [p.name for p in other.iterdir()] == ["thesis.docx"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["documents", "p"], "no temporary folder left behind"


def test_a_failed_write_leaves_the_old_project(tmp_path: Path, files: dict[str, str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    out = project.write_project(tmp_path / "p", files)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    calls = []
    original = Path.write_bytes

    def failing(self: Path, data: bytes) -> int:
        calls.append(self)
        if len(calls) > 5:
            raise OSError("disk full")
        return original(self, data)

    monkeypatch.setattr(Path, "write_bytes", failing)
    with pytest.raises(OSError, match="disk full"):
        project.write_project(out, files)
    monkeypatch.undo()
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["p"]


def test_cli_needs_a_workbook(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["powerbi", str(tmp_path / "missing.xlsm"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "no workbook at" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def sample_book(tmp_path_factory: pytest.TempPathFactory) -> Path:
    book = tmp_path_factory.mktemp("book") / f"{project.SAMPLE_NAME}.xlsm"
    assert cli.main(["new", str(book), "--sample"]) == 0
    assert cli.main(["refresh", str(book), "--quiet"]) == 0
    return book


@pytest.mark.slow
def test_the_sample_workbook_gives_the_committed_project(sample_book: Path, tmp_path: Path) -> None:
    """`crm-xl new --sample`, `crm-xl refresh`, `crm-xl powerbi` with the placeholder paths: the committed project."""
    out = tmp_path / "pbi"
    assert cli.main(["powerbi", str(sample_book), "--out", str(out), "--workbook-path", project.SAMPLE_WORKBOOK,
                     "--history-path", project.SAMPLE_HISTORY]) == 0
    written = {p.relative_to(out).as_posix(): p.read_text(encoding="utf-8") for p in out.rglob("*") if p.is_file()}
    assert written == project.sample_files()


@pytest.mark.slow
def test_a_capped_history_switches_to_the_parquet_file(sample_book: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    book = tmp_path / "capped.xlsm"
    shutil.copy(sample_book, book)
    assert cli.main(["refresh", str(book), "--quiet", "--set", "history_rows_in_sheet=5000"]) == 0
    parquet = tmp_path / "capped_customer_history.parquet"
    assert parquet.exists()
    capsys.readouterr()
    assert cli.main(["powerbi", str(book), "--out", str(tmp_path / "out")]) == 0
    assert "from the Parquet file" in capsys.readouterr().out
    expressions = (tmp_path / "out" / "capped.SemanticModel" / "definition" / "expressions.tmdl").read_text("utf-8")
    assert f'expression HistoryParquetPath = {m.text(str(parquet.resolve()))} meta' in expressions
    assert f'expression WorkbookPath = {m.text(str(book.resolve()))} meta' in expressions
    assert "expression UseHistoryParquet = true meta" in expressions
    # the Parquet file has the columns the partition types
    columns = pd.read_parquet(parquet).columns.tolist()
    assert columns == contract.columns(HISTORY_TABLE)


@pytest.mark.slow
def test_a_history_store_beside_the_book_is_what_power_bi_reads(sample_book: Path, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    book = tmp_path / "stored.xlsm"
    shutil.copy(sample_book, book)
    assert cli.main(["refresh", str(book), "--quiet", "--store"]) == 0
    folder = tmp_path / "stored_history" / "customer_history"
    capsys.readouterr()
    assert cli.main(["powerbi", str(book), "--out", str(tmp_path / "out")]) == 0
    assert "from the history store" in capsys.readouterr().out
    expressions = (tmp_path / "out" / "stored.SemanticModel" / "definition" / "expressions.tmdl").read_text("utf-8")
    assert f'expression HistoryParquetPath = {m.text(str(folder.resolve()))} meta' in expressions
    assert "expression UseHistoryParquet = true meta" in expressions
    # what the folder branch combines: every month's part-0.parquet, each with the columns the partition types
    parts = sorted(folder.rglob("part-0.parquet"))
    assert len(parts) >= 25 and all(pd.read_parquet(p).columns.tolist() == contract.columns(HISTORY_TABLE)
                                    for p in parts)


def test_the_history_reads_a_file_or_a_store_folder() -> None:
    source = build_model("C:\\r\\crm.xlsm", "C:\\r\\crm_history\\customer_history").table(HISTORY_TABLE).source
    assert pq.to_ast(source) is not None
    assert 'Text.EndsWith(Text.Lower(HistoryParquetPath), ".parquet")' in source
    assert 'Folder.Files(HistoryParquetPath), each [Name] = "part-0.parquet")[Content], Parquet.Document)' in source


def test_web_paths_read_through_web_contents(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    built = build_model("https://contoso.sharepoint.com/sites/crm/Shared Documents/crm.xlsm",
                        "https://contoso.sharepoint.com/sites/crm/Shared Documents/crm_customer_history.parquet",
                        web=True)
    for table in built.tables:
        if table.contract_table:
            assert "Excel.Workbook(Web.Contents(WorkbookPath), true)" in table.source
            assert "File.Contents" not in table.source
            assert pq.to_ast(table.source) is not None
    assert "Parquet.Document(Web.Contents(HistoryParquetPath))" in built.table(HISTORY_TABLE).source
    book = tmp_path / "b.xlsm"
    book.write_bytes(b"")
    assert cli.main(["powerbi", str(book), "--out", str(tmp_path / "o"), "--web"]) == 2
    assert "--web needs --workbook-path https://" in capsys.readouterr().err
    assert cli.main(["powerbi", str(book), "--out", str(tmp_path / "o"), "--web", "--history", "store",
                     "--workbook-path", "https://contoso.sharepoint.com/crm.xlsm"]) == 2
    assert "--history store reads a folder" in capsys.readouterr().err


@pytest.mark.slow
def test_every_partition_names_an_excel_table_of_the_refreshed_workbook(sample_book: Path, model: Model) -> None:
    """The real workbook holds, for each partition, an Excel table of that name whose header row is the
    partition's typed columns in order (what Power Query's Kind = "Table" item will return)."""
    openpyxl = pytest.importorskip("openpyxl")
    book = openpyxl.load_workbook(sample_book, read_only=False, keep_vba=True)
    found = {}
    for sheet in book.worksheets:
        for table in sheet.tables.values():
            first_col, first_row, last_col, _ = openpyxl.utils.range_boundaries(table.ref)
            header = next(sheet.iter_rows(min_row=first_row, max_row=first_row, min_col=first_col, max_col=last_col,
                                          values_only=True))
            found[table.displayName] = list(header)
    for table in model.tables:
        if table.contract_table:
            item = re.search(r'\{\[Item = "([^"]+)", Kind = "Table"\]\}', table.source).group(1)
            typed = re.findall(r'\{"([^"]+)", (?:type \w+|Int64\.Type)\}', table.source)
            assert found[item] == typed, item


def test_the_rate_measures_equal_the_kpis_table(tables: dict[str, pd.DataFrame], interpreter: _Dax) -> None:
    """The model and the workbook's KPIs sheet say the same: each month's Churn %, Retention % and
    Reactivation % (the measures' DAX, evaluated) equal the kpis table's rates, computed by crm_xl.analyses.kpis."""
    kpis = tables["kpis"].assign(report_month=lambda k: pd.to_datetime(k["report_month"])).set_index("report_month")
    compared = 0
    for month in _months(tables):
        ctx = {(CALENDAR, "Month"): month}
        row = kpis.loc[month]
        for measure, column in (("Churn %", "churn_rate"), ("Retention %", "retention_rate"),
                                ("Reactivation %", "reactivation_rate")):
            got = interpreter.measure(measure, ctx)
            if pd.isna(row[column]):
                assert got is None, (month, measure)
            else:
                assert got == pytest.approx(row[column]), (month, measure)
                compared += 1
        assert interpreter.measure("Active Customers", ctx) == row["active"]
    assert compared > 0
