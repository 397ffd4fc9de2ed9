"""Settings: defaults from the brief, loose spreadsheet values parsed, bad values named precisely."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math

import numpy as np
import pandas as pd
import pytest

import crm_xl
from crm_xl import Config, ConfigError
from crm_xl.config import DEFAULT_SEGMENT_MAP, DEFAULT_SEGMENT_NOTES

# The brief's 11 named segments on (R, FM), in its order; its "Lost" (11) is named Gone Cold, as the
# Lost event already has that name (docs/business_logic.md 11.1).
BRIEF_SEGMENTS = {
    "Champions": "55 54 45",
    "Loyal Customers": "53 44 35 34",
    "Potential Loyalist": "52 42 43 33",
    "Recent Customers": "51",
    "Promising": "41 31",
    "Customers Needing Attention": "32 23 22",
    "About To Sleep": "21",
    "At Risk": "25 24 13",
    "Can't Lose Them": "15 14",
    "Hibernating": "12",
    "Gone Cold": "11",
}
BRIEF_SEGMENT_MAP = tuple((name, tuple(cells.split())) for name, cells in BRIEF_SEGMENTS.items())
ALL_CELLS = [f"{r}{fm}" for r in range(1, 6) for fm in range(1, 6)]


def config_error(mapping: dict) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        Config.from_mapping(mapping)
    return info.value


# --- defaults -----------------------------------------------------------------------------------


def test_defaults_are_the_briefs():
    cfg = Config()
    assert (cfg.t_high, cfg.t_mid_high, cfg.t_mid, cfg.a_high, cfg.f_high, cfg.f_mid) == (
        1000, 200, 50, 1500, 6, 3)
    assert cfg.core_categories == ("consumable",)
    assert cfg.entry_categories == ("device",)
    assert {c.lower() for c in cfg.other_categories} >= {"accessories", "spare_parts"}
    assert cfg.anonymous_groups == ("General",)
    assert cfg.measure == "units"
    assert cfg.active_window_months == 12          # Active when M12 > 0
    assert cfg.tier_window_months == 6             # AMC = M6/6, O6, AOS = M6/O6
    assert cfg.reactivation_gap_months == 12       # back after 12+ silent months (M1 = M13)
    assert cfg.rfm_method in ("quantile", "fixed")
    assert cfg.rfm_monetary in ("units", "revenue")
    assert cfg.segment_map == BRIEF_SEGMENT_MAP
    assert cfg.report_month is None                # blank = last month with transactions


@pytest.mark.parametrize("mapping", [None, {}, {"measure": None}], ids=["none", "empty", "all_blank"])
def test_from_mapping_without_values_gives_defaults(mapping):
    assert Config.from_mapping(mapping) == Config()


def test_from_mapping_passes_a_config_through():
    cfg = Config.from_mapping({"t_high": 900})
    assert Config.from_mapping(cfg) is cfg


def test_every_setting_has_a_description_and_text_form():
    rows = Config().as_rows()
    # column_map is the map.<table>.<column> settings: a row per mapped column, none by default;
    # segment_notes come with segment_map (its description and action columns), not as a setting
    assert [name for name, _, _ in rows] == [f.name for f in dataclasses.fields(Config)
                                             if f.name not in ("column_map", "segment_notes")]
    assert all(description for _, _, description in rows)


def test_settings_survive_their_text_form():
    """What as_rows writes on the Config sheet reads back as the same settings."""
    cfg = Config.from_mapping({"report_month": "2024-06", "t_high": 900.5, "core_categories": "pods, refill",
                               "use_created_date": False, "rfm_cuts_tenure": "1, 2, 3, 4",
                               "map.transactions.invoice_id": "Invoice No", "map.products.unit_size": " Size "})
    rows = cfg.as_rows()
    assert ("map.transactions.invoice_id", "Invoice No", "Header of transactions.invoice_id in your data "
            "(blank = invoice_id)") in rows
    assert Config.from_mapping({name: text for name, text, _ in rows}) == cfg


# --- parsing loose values -----------------------------------------------------------------------


@pytest.mark.parametrize(("key", "raw", "parsed"), [
    ("history_months", "24", 24),
    ("history_months", " 12 ", 12),
    ("history_months", 12.0, 12),
    ("history_months", "12.0", 12),
    ("history_months", np.int64(6), 6),
    ("t_high", "1500", 1500.0),
    ("t_high", "1 500", 1500.0),
    ("t_mid", " 75.5 ", 75.5),
    ("a_high", 0, 0.0),
    ("f_mid", "2", 2.0),
    ("core_categories", "consumable, refill", ("consumable", "refill")),
    ("core_categories", "consumable;refill", ("consumable", "refill")),
    ("core_categories", ["consumable", " refill "], ("consumable", "refill")),
    ("anonymous_groups", "General, Walk-in", ("General", "Walk-in")),
    ("rfm_cuts_recency", "10, 20, 30, 40", (10.0, 20.0, 30.0, 40.0)),
    ("rfm_cuts_frequency", [1, "2", 3.0, " 5 "], (1.0, 2.0, 3.0, 5.0)),
    ("rfm_cuts_monetary", "1;1;2;3", (1.0, 1.0, 2.0, 3.0)),
    ("use_created_date", "FALSE", False),
    ("use_created_date", "true", True),
    ("use_created_date", 0, False),
    ("use_created_date", 1.0, True),
    ("measure", " Revenue ", "revenue"),
    ("rfm_method", "Fixed", "fixed"),
    ("udf_segment", "rfm_segment", "rfm_segment"),
])
def test_from_mapping_parses_text_and_loose_values(key, raw, parsed):
    assert getattr(Config.from_mapping({key: raw}), key) == parsed


def test_setting_names_may_have_surrounding_spaces():
    assert Config.from_mapping({" t_high ": 900}).t_high == 900


@pytest.mark.parametrize("raw", [
    "2024-12", "2024-12-31", "2024-12-01", " 2024-12 ", "2024/12",
    dt.date(2024, 12, 31), dt.datetime(2024, 12, 5, 10, 30), pd.Timestamp("2024-12-17"),
    pd.Period("2024-12", freq="M"), pd.Period("2024-12-09", freq="D"), np.datetime64("2024-12-31"),
    45627, 45657, 45657.0, 45657.75, np.float64(45657),
])
def test_report_month_forms(raw):
    assert Config.from_mapping({"report_month": raw}).report_month == pd.Period("2024-12", freq="M")


@pytest.mark.parametrize("raw", [np.int64(45657), "45657", " 45657.0 "], ids=repr)
def test_report_month_excel_serial_from_a_table_cell(raw):
    """A DataFrame cell gives numpy numbers; a Config sheet read as text gives the serial as text."""
    assert Config.from_mapping({"report_month": raw}).report_month == pd.Period("2024-12", freq="M")


@pytest.mark.parametrize("raw", ["202412", 202412], ids=repr)
def test_yyyymm_is_not_taken_for_an_excel_serial(raw):
    """Either read as 2024-12 or refused; never a month centuries away."""
    try:
        month = Config.from_mapping({"report_month": raw}).report_month
    except ConfigError as error:
        assert error.key == "report_month"
    else:
        assert month == pd.Period("2024-12", freq="M")


@pytest.mark.parametrize("raw", ["garbage", "2024-13", True, [2024, 12]])
def test_bad_report_month_names_the_key(raw):
    error = config_error({"report_month": raw})
    assert error.key == "report_month"
    assert "report_month" in str(error)
    assert "2024-12" in str(error)                   # says what a month looks like


# --- blank means default ------------------------------------------------------------------------

_BLANK_KEYS = ["report_month", "history_months", "t_high", "core_categories", "measure", "use_created_date",
               "rfm_cuts_recency", "segment_map"]


@pytest.mark.parametrize("blank", [None, "", "   ", float("nan"), np.nan], ids=repr)
@pytest.mark.parametrize("key", _BLANK_KEYS)
def test_blank_value_means_default(key, blank):
    assert getattr(Config.from_mapping({key: blank}), key) == getattr(Config(), key)


@pytest.mark.parametrize("blank", [pd.NA, pd.NaT], ids=["NA", "NaT"])
@pytest.mark.parametrize("key", ["report_month", "history_months", "t_high"])
def test_pandas_missing_value_means_default(key, blank):
    assert getattr(Config.from_mapping({key: blank}), key) == getattr(Config(), key)


# --- errors name the key and what is allowed ------------------------------------------------------


@pytest.mark.parametrize(("mapping", "key", "fragments"), [
    ({"colour": "red"}, "colour", ["unknown", "report_month", "t_high", "segment_map"]),
    ({"Report Month": "2024-12"}, "Report Month", ["unknown", "report_month"]),
    ({"measure": "volume"}, "measure", ["volume", "units", "revenue"]),
    ({"rfm_monetary": "margin"}, "rfm_monetary", ["units", "revenue"]),
    ({"rfm_method": "kmeans"}, "rfm_method", ["quantile", "fixed"]),
    ({"udf_segment": "tier"}, "udf_segment", ["value_tier", "rfm_segment"]),
    ({"history_months": 0}, "history_months", ["1", "600"]),
    ({"history_months": "601"}, "history_months", ["1", "600"]),
    ({"history_months": "12.5"}, "history_months", ["whole number"]),
    ({"history_months": "twelve"}, "history_months", ["number"]),
    ({"tier_window_months": -3}, "tier_window_months", ["1", "24"]),
    ({"rfm_window_months": 61}, "rfm_window_months", ["1", "60"]),
    ({"active_window_months": 24}, "active_window_months", ["1", "23"]),
    ({"t_high": -1}, "t_high", [">= 0"]),
    ({"a_high": "lots"}, "a_high", ["number"]),
    ({"f_high": "inf"}, "f_high", ["finite"]),
    ({"t_high": "-inf"}, "t_high", ["finite"]),
    ({"t_mid": "Infinity"}, "t_mid", ["finite"]),
    ({"a_high": "nan"}, "a_high", ["finite"]),
    ({"t_mid_high": float("inf")}, "t_mid_high", ["finite"]),
    ({"rfm_cuts_monetary": "1, 2, 3, inf"}, "rfm_cuts_monetary", ["finite"]),
    ({"t_mid": True}, "t_mid", ["number"]),
    ({"use_created_date": "maybe"}, "use_created_date", ["TRUE", "FALSE"]),
    ({"rfm_cuts_recency": "30, 20, 40, 50"}, "rfm_cuts_recency", ["4 ascending", "30, 20, 40, 50"]),
    ({"rfm_cuts_tenure": "1, 2, 3"}, "rfm_cuts_tenure", ["4 ascending"]),
    ({"rfm_cuts_monetary": [5, 4, 3, 2]}, "rfm_cuts_monetary", ["4 ascending"]),
    ({"rfm_cuts_frequency": "1, 2, x, 4"}, "rfm_cuts_frequency", ["number"]),
    ({"core_categories": ["device"], "entry_categories": ["device"]}, "entry_categories", ["device"]),
])
def test_invalid_setting_raises_config_error_naming_key(mapping, key, fragments):
    error = config_error(mapping)
    assert error.key == key
    assert f"'{key}'" in str(error)
    for fragment in fragments:
        assert fragment in str(error), f"{fragment!r} not in {error}"
    assert isinstance(error, crm_xl.CrmXlError)


@pytest.mark.parametrize(("mapping", "key"), [
    # the error names the setting the user changed (so the workbook points at the edited cell)
    ({"t_mid": 300}, "t_mid"),                             # t_mid > t_mid_high
    ({"t_mid_high": 1200}, "t_mid_high"),                  # t_mid_high > t_high
    ({"t_high": 100}, "t_high"),                           # t_high below t_mid_high
    ({"t_mid": 300, "t_mid_high": 250}, "t_mid"),          # both changed: the lower one
    ({"f_mid": 7}, "f_mid"),                               # f_mid > f_high
    ({"f_high": "2"}, "f_high"),
])
def test_threshold_order_is_checked(mapping, key):
    error = config_error(mapping)
    assert error.key == key
    text = str(error)
    if key.startswith("t_"):
        assert all(name in text for name in ("t_mid", "t_mid_high", "t_high"))
    else:
        assert "f_mid" in text and "f_high" in text


@pytest.mark.parametrize("key", ["t_high", "a_high", "f_high"])
def test_a_config_built_directly_rejects_an_infinite_threshold(key):
    with pytest.raises(crm_xl.ConfigError, match=f"'{key}'.*finite"):
        Config(**{key: math.inf})


@pytest.mark.parametrize("cuts", [(1.0, 2.0, 3.0, math.inf), (math.nan, 1.0, 2.0, 3.0)])
def test_a_config_built_directly_rejects_infinite_cut_points(cuts):
    with pytest.raises(crm_xl.ConfigError, match="'rfm_cuts_monetary'"):
        Config(rfm_cuts_monetary=cuts)


def test_equal_thresholds_are_allowed():
    cfg = Config.from_mapping({"t_mid": 200, "t_mid_high": 200, "t_high": 200, "f_mid": 6})
    assert cfg.t_mid == cfg.t_mid_high == cfg.t_high == 200


def test_run_rejects_invalid_config_with_config_error(golden_inputs):
    with pytest.raises(ConfigError) as info:
        crm_xl.run(**golden_inputs, config={"measure": "volume"})
    assert info.value.key == "measure"


# --- segment map --------------------------------------------------------------------------------


def _segment_map_text(segments: dict[str, str]) -> str:
    return "; ".join(f"{name}: {cells}" for name, cells in segments.items())


@pytest.mark.parametrize("form", ["dict", "list", "list_of_lists", "text", "text_commas", "dataframe",
                                  "dataframe_one_row_per_cell", "config_text_form"])
def test_segment_map_forms(form):
    given = {
        "dict": dict(BRIEF_SEGMENTS),
        "list": list(BRIEF_SEGMENTS.items()),
        "list_of_lists": [[name, cells.split()] for name, cells in BRIEF_SEGMENTS.items()],
        "text": _segment_map_text(BRIEF_SEGMENTS),
        "text_commas": _segment_map_text({n: c.replace(" ", ", ") for n, c in BRIEF_SEGMENTS.items()}),
        "dataframe": pd.DataFrame({"segment": list(BRIEF_SEGMENTS), "cells": list(BRIEF_SEGMENTS.values())}),
        "dataframe_one_row_per_cell": pd.DataFrame(
            [(name, cell) for name, cells in BRIEF_SEGMENTS.items() for cell in cells.split()],
            columns=["segment", "cell"]),
        "config_text_form": {name: text for name, text, _ in Config().as_rows()}["segment_map"],
    }[form]
    cfg = Config.from_mapping({"segment_map": given})
    lookup = cfg.segment_lookup
    assert len(lookup) == 25
    for name, cells in BRIEF_SEGMENTS.items():
        for cell in cells.split():
            assert lookup[(int(cell[0]), int(cell[1]))] == name


def test_segment_map_dataframe_with_blank_rows():
    frame = pd.DataFrame({"segment": [*BRIEF_SEGMENTS, ""], "cells": [*BRIEF_SEGMENTS.values(), ""]})
    assert Config.from_mapping({"segment_map": frame}).segment_map == BRIEF_SEGMENT_MAP


@pytest.mark.parametrize("form", ["dataframe_float", "dict_int", "dataframe_one_row_per_cell_int"])
def test_segment_map_with_numeric_cells(form):
    """A single-cell segment typed in Excel arrives as a number (51 or 51.0)."""
    if form == "dataframe_float":
        cells = [float(c) if " " not in c else c for c in BRIEF_SEGMENTS.values()]
        given = pd.DataFrame({"segment": list(BRIEF_SEGMENTS), "cells": pd.Series(cells, dtype=object)})
    elif form == "dict_int":
        given = {name: int(c) if " " not in c else c for name, c in BRIEF_SEGMENTS.items()}
    else:
        given = pd.DataFrame([(name, int(cell)) for name, cells in BRIEF_SEGMENTS.items()
                              for cell in cells.split()], columns=["segment", "cell"])
    assert Config.from_mapping({"segment_map": given}).segment_lookup == Config().segment_lookup


def test_segment_map_missing_cell_is_named():
    segments = dict(BRIEF_SEGMENTS)
    segments["At Risk"] = "25 24"                     # 13 not covered
    error = config_error({"segment_map": segments})
    assert error.key == "segment_map"
    assert "not covered" in str(error) and "13" in str(error)


def test_segment_map_missing_segment_row_is_named():
    segments = {name: cells for name, cells in BRIEF_SEGMENTS.items() if name != "Gone Cold"}
    error = config_error({"segment_map": segments})
    assert error.key == "segment_map"
    assert "11" in str(error)


def test_segment_map_cell_listed_twice_is_named_with_both_segments():
    segments = dict(BRIEF_SEGMENTS)
    segments["Gone Cold"] = "11 12"                        # 12 is Hibernating's too
    error = config_error({"segment_map": segments})
    assert error.key == "segment_map"
    assert "more than once" in str(error)
    assert "12" in str(error) and "Hibernating" in str(error) and "Gone Cold" in str(error)


def test_segment_map_cell_listed_twice_in_one_segment_is_an_error():
    segments = dict(BRIEF_SEGMENTS)
    segments["Gone Cold"] = "11 11"
    error = config_error({"segment_map": segments})
    assert error.key == "segment_map" and "11" in str(error)


@pytest.mark.parametrize("cells", ["16", "5", "555", "ab", "06"])
def test_segment_map_invalid_cell_is_named(cells):
    segments = dict(BRIEF_SEGMENTS)
    segments["Gone Cold"] = f"11 {cells}"
    error = config_error({"segment_map": segments})
    assert error.key == "segment_map"
    assert cells in str(error) and "Gone Cold" in str(error) and "1-5" in str(error)


def test_segment_map_unreadable_text_is_a_config_error():
    error = config_error({"segment_map": "Champions 55 54"})
    assert error.key == "segment_map"


def test_segment_map_row_without_name_is_named():
    segments = list(BRIEF_SEGMENTS.items())
    segments[-1] = ("", "11")
    error = config_error({"segment_map": segments})
    assert error.key == "segment_map" and "11" in str(error)


def test_custom_segment_map_changes_rfm_segment_labels(golden_inputs, golden_config):
    by_recency = {f"Recency {r}": " ".join(f"{r}{fm}" for fm in range(1, 6)) for r in range(5, 0, -1)}
    result = crm_xl.run(**golden_inputs, config={**golden_config, "segment_map": by_recency})
    history = result["customer_history"]
    scored = history["r_score"].notna()
    assert scored.any()
    expected = "Recency " + history.loc[scored, "r_score"].astype("int64").astype(str)
    assert (history.loc[scored, "rfm_segment"].astype(str) == expected).all()
    assert history.loc[~scored, "rfm_segment"].isna().all()
    assert set(result["segment_map"]["rfm_segment"]) == set(by_recency)
    assert sorted(result["segment_map"]["cell"]) == sorted(ALL_CELLS)
    summary = result["monthly_summary"]
    assert set(summary.loc[summary["dimension"] == "rfm_segment", "category"]) == set(by_recency)


def test_default_segment_map_follows_r_and_fm(golden_result):
    history = golden_result["customer_history"]
    scored = history[history["r_score"].notna()]
    lookup = Config().segment_lookup
    expected = [lookup[(int(r), int(fm))] for r, fm in zip(scored["r_score"], scored["fm_score"], strict=True)]
    assert scored["rfm_segment"].astype(str).tolist() == expected
    fm = np.ceil((scored["f_score"].astype(float) + scored["m_score"].astype(float)) / 2)
    assert (scored["fm_score"].astype(float) == fm).all()


# --- segment descriptions and actions ------------------------------------------------------------


def test_default_segments_have_a_description_and_an_action():
    assert [name for name, _, _ in Config().segment_notes] == [name for name, _ in DEFAULT_SEGMENT_MAP]
    for name, description, action in Config().segment_notes:
        assert description and action and (description, action) == DEFAULT_SEGMENT_NOTES[name]


@pytest.mark.parametrize("form", ["text", "two_columns", "pairs"])
def test_a_segment_map_without_notes_gets_the_defaults_of_its_names(form):
    segments = {**BRIEF_SEGMENTS, "Gone": BRIEF_SEGMENTS["Gone Cold"]}
    del segments["Gone Cold"]
    given = {"text": _segment_map_text(segments),
             "two_columns": pd.DataFrame({"rfm_segment": list(segments), "cells": list(segments.values())}),
             "pairs": list(segments.items())}[form]
    cfg = Config.from_mapping({"segment_map": given})
    assert cfg.segment_note("Champions") == DEFAULT_SEGMENT_NOTES["Champions"]
    assert cfg.segment_note("Gone") == ("", "")


def test_notes_given_with_the_map_are_kept_as_given_blanks_included():
    rows = [(name, cells, f"about {name}", "") for name, cells in BRIEF_SEGMENTS.items()]
    rows[0] = (rows[0][0], rows[0][1], None, "Call them")           # a cleared description stays cleared
    frame = pd.DataFrame(rows, columns=["rfm_segment", "cells", "description", "action"])
    for given in (frame, rows):
        cfg = Config.from_mapping({"segment_map": given})
        assert cfg.segment_note("Champions") == ("", "Call them")
        assert cfg.segment_note("Gone Cold") == ("about Gone Cold", "")
        assert cfg.segment_map == BRIEF_SEGMENT_MAP


def test_notes_are_found_by_header_in_any_column_order():
    frame = pd.DataFrame({"rfm_segment": list(BRIEF_SEGMENTS), "cells": list(BRIEF_SEGMENTS.values()),
                          "Action ": "act", "Description": "who"})
    assert Config.from_mapping({"segment_map": frame}).segment_note("Promising") == ("who", "act")


def test_the_segment_map_table_carries_the_notes():
    rows = [(name, cells, "d " + name, "a " + name) for name, cells in BRIEF_SEGMENTS.items()]
    table = crm_xl.run(**_one_line_inputs(), config={"segment_map": rows})["segment_map"]
    assert list(table.columns) == ["rfm_segment", "r_score", "fm_score", "cell", "description", "action"]
    assert (table["description"] == "d " + table["rfm_segment"]).all()
    assert (table["action"] == "a " + table["rfm_segment"]).all()
    default = crm_xl.run(**_one_line_inputs())["segment_map"].set_index("cell")
    assert default.loc["11", "action"] == DEFAULT_SEGMENT_NOTES["Gone Cold"][1]


def _one_line_inputs() -> dict[str, pd.DataFrame]:
    return {"transactions": pd.DataFrame({"invoice_id": ["I1"], "invoice_date": ["2024-01-10"], "customer_id": ["C1"],
                                          "product_id": ["P1"], "quantity": [1], "revenue": [4.5]}),
            "customers": pd.DataFrame({"customer_id": ["C1"]}),
            "products": pd.DataFrame({"product_id": ["P1"], "category": ["consumable"], "unit_size": [10]})}
