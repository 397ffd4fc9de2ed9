"""The report in PBIR (the enhanced report format: a folder of JSON parts, one per page and visual), over
the model's measures: overview KPIs, the tier mix over time, movers and migration, the RFM grid."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from crm_xl.powerbi.model import CALENDAR, HISTORY_TABLE, Model

SCHEMAS = "https://developer.microsoft.com/json-schemas/fabric"
REPORT_SCHEMA = f"{SCHEMAS}/item/report/definition/report/3.0.0/schema.json"
PAGE_SCHEMA = f"{SCHEMAS}/item/report/definition/page/2.0.0/schema.json"
PAGES_SCHEMA = f"{SCHEMAS}/item/report/definition/pagesMetadata/1.0.0/schema.json"
VISUAL_SCHEMA = f"{SCHEMAS}/item/report/definition/visualContainer/2.0.0/schema.json"
VERSION_SCHEMA = f"{SCHEMAS}/item/report/definition/versionMetadata/1.0.0/schema.json"
PBIR_SCHEMA = f"{SCHEMAS}/item/report/definitionProperties/2.0.0/schema.json"
THEME = "crm_xl_theme.json"
WIDTH, HEIGHT = 1280, 720


@dataclass(frozen=True)
class Field:
    """A column or a measure of the model, as a visual's projection names it."""

    table: str
    name: str
    measure: bool = False

    def projection(self) -> dict[str, Any]:
        kind = "Measure" if self.measure else "Column"
        return {"field": {kind: {"Expression": {"SourceRef": {"Entity": self.table}}, "Property": self.name}},
                "queryRef": f"{self.table}.{self.name}", "nativeQueryRef": self.name}


def _m(name: str) -> Field:
    return Field(HISTORY_TABLE, name, measure=True)


@dataclass(frozen=True)
class Visual:
    name: str
    type: str
    roles: tuple[tuple[str, tuple[Field, ...]], ...]
    x: int
    y: int
    width: int
    height: int
    title: str


@dataclass(frozen=True)
class Page:
    name: str
    title: str
    visuals: tuple[Visual, ...]


MONTH = Field(CALENDAR, "Month")


def _cards(names: tuple[str, ...], y: int = 70) -> tuple[Visual, ...]:
    width = (WIDTH - 40) // len(names)
    return tuple(Visual(f"card_{i}", "card", (("Values", (_m(name),)),), 20 + i * width, y, width - 10, 110, name)
                 for i, name in enumerate(names))


def _slicer() -> Visual:
    return Visual("month_slicer", "slicer", (("Values", (MONTH,)),), 20, 10, 300, 55, "Month")


def pages(model: Model) -> tuple[Page, ...]:
    """The report's pages; the movers page only when the model has tier_transitions."""
    names = {t.name for t in model.tables}
    found = [
        Page("overview", "Overview", (
            _slicer(),
            *_cards(("Customers", "Active Customers", "New", "Lost", "Reactivated", "Churn %", "Retention %",
                     "Revenue M1")),
            Visual("active_trend", "lineChart", (("Category", (MONTH,)), ("Y", (_m("Active Customers"),
                                                                              _m("Customers"))),),
                   20, 200, 820, 500, "Customers and active customers by month"),
            Visual("deltas", "multiRowCard", (("Values", (_m("Customers Δ MoM"), _m("Active Customers Δ MoM"),
                                                          _m("Revenue M1 Δ MoM"), _m("Reactivation %"))),),
                   860, 200, 400, 500, "Month over month"),
        )),
        Page("tier_mix", "Tier mix", (
            _slicer(),
            Visual("tier_mix", "columnChart", (("Category", (MONTH,)), ("Series", (Field("Tier", "value_tier"),)),
                                               ("Y", (_m("Active Customers"),))),
                   20, 80, 820, 620, "Active customers by value tier"),
            Visual("tier_share", "barChart", (("Category", (Field("Tier", "value_tier"),)),
                                              ("Y", (_m("Share of base"),))),
                   860, 80, 400, 300, "Share of base by tier (selected month)"),
            Visual("amc", "card", (("Values", (_m("Avg AMC"),)),), 860, 400, 400, 140, "Avg AMC"),
            Visual("units", "card", (("Values", (_m("Units M1"),)),), 860, 560, 400, 140, "Units M1"),
        )),
    ]
    if "tier_transitions" in names:
        found.append(Page("movers", "Movers and migration", (
            _slicer(),
            *_cards(("Tier Up Moves", "Tier Down Moves", "New", "Lost")),
            Visual("migration", "pivotTable", (("Rows", (Field("tier_transitions", "from_tier"),)),
                                               ("Columns", (Field("tier_transitions", "to_tier"),)),
                                               ("Values", (_m("Tier Moves"),))),
                   20, 200, 740, 500, "Tier last month (rows) to tier this month (columns)"),
            Visual("moves_trend", "lineChart", (("Category", (MONTH,)), ("Y", (_m("Tier Up Moves"),
                                                                             _m("Tier Down Moves")))),
                   780, 200, 480, 500, "Tier moves by month"),
        )))
    found.append(Page("rfm_grid", "RFM grid", (
        _slicer(),
        Visual("grid", "pivotTable", (("Rows", (Field(HISTORY_TABLE, "r_score"),)),
                                      ("Columns", (Field(HISTORY_TABLE, "fm_score"),)), ("Values", (_m("Customers"),))),
               20, 80, 620, 500, "Customers by recency (rows) and frequency-monetary (columns) score"),
        Visual("segments", "barChart", (("Category", (Field("RFM Segment", "rfm_segment"),)),
                                        ("Y", (_m("Customers"),))),
               660, 80, 600, 500, "Customers by RFM segment"),
        Visual("champions", "card", (("Values", (_m("% Champions"),)),), 20, 600, 300, 100, "% Champions"),
        Visual("scored", "card", (("Values", (_m("Scored Customers"),)),), 340, 600, 300, 100, "Scored Customers"),
    )))
    return tuple(found)


def _visual_json(visual: Visual, order: int) -> dict[str, Any]:
    title = {"title": [{"properties": {"show": {"expr": {"Literal": {"Value": "true"}}},
                                       "text": {"expr": {"Literal": {"Value": "'" + visual.title.replace("'", "''")
                                                                             + "'"}}}}}]}
    return {
        "$schema": VISUAL_SCHEMA,
        "name": visual.name,
        "position": {"x": visual.x, "y": visual.y, "z": order * 1000, "width": visual.width, "height": visual.height,
                     "tabOrder": order * 1000},
        "visual": {
            "visualType": visual.type,
            "query": {"queryState": {role: {"projections": [f.projection() for f in fields]}
                                     for role, fields in visual.roles}},
            "visualContainerObjects": title,
            "drillFilterOtherVisuals": True,
        },
    }


def fields(model: Model) -> list[Field]:
    """Every field the report's visuals use (the tests resolve each against the model)."""
    return [f for page in pages(model) for visual in page.visuals for _, group in visual.roles for f in group]


def parts(model: Model, semantic_model_folder: str, theme_colours: list[str]) -> dict[str, Any]:
    """Path (under the report folder) -> JSON content (a dict)."""
    report_pages = pages(model)
    out: dict[str, Any] = {
        "definition.pbir": {"$schema": PBIR_SCHEMA, "version": "4.0",
                            "datasetReference": {"byPath": {"path": f"../{semantic_model_folder}"}}},
        "definition/version.json": {"$schema": VERSION_SCHEMA, "version": "2.0.0"},
        "definition/report.json": {
            "$schema": REPORT_SCHEMA,
            "themeCollection": {"customTheme": {"name": THEME, "reportVersionAtImport": {
                "visual": "2.0.0", "report": "3.0.0", "page": "2.0.0"}, "type": "RegisteredResources"}},
            "resourcePackages": [{"name": "RegisteredResources", "type": "RegisteredResources",
                                  "items": [{"name": THEME, "path": THEME, "type": "CustomTheme"}]}],
            "settings": {"useStylableVisualContainerHeader": True, "defaultDrillFilterOtherVisuals": True},
        },
        "definition/pages/pages.json": {"$schema": PAGES_SCHEMA, "pageOrder": [p.name for p in report_pages],
                                        "activePageName": report_pages[0].name},
        f"StaticResources/RegisteredResources/{THEME}": {"name": "crm_xl", "dataColors": theme_colours},
    }
    for page in report_pages:
        out[f"definition/pages/{page.name}/page.json"] = {
            "$schema": PAGE_SCHEMA, "name": page.name, "displayName": page.title, "displayOption": "FitToPage",
            "height": HEIGHT, "width": WIDTH}
        for order, visual in enumerate(page.visuals):
            out[f"definition/pages/{page.name}/visuals/{visual.name}/visual.json"] = _visual_json(visual, order)
    return out
