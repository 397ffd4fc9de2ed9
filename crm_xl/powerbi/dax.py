"""DAX: the calendar table and the measures.

customer_history is a month-end snapshot: each customer appears once per month, so summing it across
months counts people many times. Every measure therefore takes one month, the latest month of the
selection (``MAX('Calendar'[Month])``: the last month of the history when nothing is selected, the
month itself on a month axis), and pins the history to it.
"""

from __future__ import annotations

from crm_xl.config import CHURNED
from crm_xl.powerbi.model import CALENDAR, HISTORY_TABLE, Measure

H, T = HISTORY_TABLE, "tier_transitions"
LATEST = f"MAX('{CALENDAR}'[Month])"
WHOLE, PERCENT, MONEY, DECIMAL, SIGNED = "#,0", "0.0%", "#,0.00", "#,0.00", "+#,0;-#,0;0"


def calendar_table(history: str = H) -> str:
    """One row per day from the history's first month to the end of its last (a contiguous range, as a
    date table must be), with the month each day belongs to: visuals use Month, the facts join on Date
    (their report_month is the month's first day)."""
    return "\n".join([
        f"VAR FirstMonth = MIN({history}[report_month])",
        f"VAR LastMonth = MAX({history}[report_month])",
        "RETURN",
        "    ADDCOLUMNS(",
        "        CALENDAR(FirstMonth, EOMONTH(LastMonth, 0)),",
        '        "Month", DATE(YEAR([Date]), MONTH([Date]), 1),',
        '        "Year", YEAR([Date]),',
        '        "Month Number", MONTH([Date])',
        "    )",
    ])


def _at_month(aggregate: str, *filters: str, offset: int = 0, month_column: str = f"{H}[report_month]") -> str:
    """``aggregate`` over one month of a monthly table: the latest selected month, or ``offset`` months
    before it (the calendar's own filter is lifted so that the month before a selected month counts)."""
    month = "LatestMonth" if offset == 0 else f"EDATE(LatestMonth, {offset})"
    arguments = ",\n        ".join([aggregate, *filters, f"{month_column} = {month}", f"REMOVEFILTERS('{CALENDAR}')"])
    return f"VAR LatestMonth = {LATEST}\nRETURN\n    CALCULATE(\n        {arguments}\n    )"


def _count(*filters: str, offset: int = 0) -> str:
    return _at_month(f"COUNTROWS({H})", *filters, offset=offset)


_ACTIVE = f'{H}[activity_status] = "Active"'


def _event(name: str) -> str:
    return f'{H}[lifecycle_event] = "{name}"'


def _tier_moves(direction: str) -> str:
    """Moves between two tiers of the Tier table this month; up means to a better rank (1 = Diamond)."""
    compare = "<" if direction == "up" else ">"
    rank = "LOOKUPVALUE('Tier'[rank], 'Tier'[value_tier], {})"
    return "\n".join([
        f"VAR LatestMonth = {LATEST}",
        "VAR Moves =",
        "    FILTER(",
        f"        CALCULATETABLE({T}, REMOVEFILTERS('{CALENDAR}'), {T}[report_month] = LatestMonth),",
        f"        VAR FromRank = {rank.format(T + '[from_tier]')}",
        f"        VAR ToRank = {rank.format(T + '[to_tier]')}",
        f"        RETURN NOT(ISBLANK(FromRank)) && NOT(ISBLANK(ToRank)) && ToRank {compare} FromRank",
        "    )",
        "RETURN",
        f"    SUMX(Moves, {T}[customers]) + 0",
    ])


def _delta(measure: str, previous: str) -> str:
    return f"[{measure}] - ({previous})"


def measures(transitions: bool = True) -> tuple[Measure, ...]:
    """Every measure of the model (on customer_history, in display folders); ``transitions``: whether
    the tier_transitions table is in the model (the tier-move measures read it)."""
    previous_active = _count(_ACTIVE, offset=-1)
    found = [
        Measure("Selected Month", LATEST, "yyyy-mm", "The month the measures show: the latest month of the "
                "selection (the history's last month when nothing is selected).", "Base"),
        Measure("Customers", _count(), WHOLE, "Customers in the base at the end of the selected month (never "
                "summed across months: the history is a month-end snapshot).", "Base"),
        Measure("Active Customers", _count(_ACTIVE), WHOLE, "Customers with a core purchase in the 12 months "
                "ending with the selected month (activity_status = Active).", "Base"),
        Measure("New", _count(_event("New")), WHOLE, "Customers whose first-ever core purchase falls in the "
                "selected month (lifecycle_event = New).", "Lifecycle"),
        Measure("Lost", _count(_event("Lost")), WHOLE, "Customers who left the 12-month active window in the "
                "selected month (lifecycle_event = Lost).", "Lifecycle"),
        Measure("Reactivated", _count(_event("Reactivated")), WHOLE, "Customers back after 12 or more silent "
                "months in the selected month (lifecycle_event = Reactivated).", "Lifecycle"),
        Measure("Active Last Month", previous_active, WHOLE, "Active customers at the end of the month before "
                "the selected month.", "Lifecycle"),
        Measure("Churn %", "DIVIDE([Lost] + 0, [Active Last Month])", PERCENT, "Lost this month / active last "
                "month: the share of last month's active customers who left the active window.", "Lifecycle"),
        Measure("Retention %", "DIVIDE([Active Last Month] - [Lost], [Active Last Month])", PERCENT,
                "Active last month and still active this month / active last month (every active customer "
                "either stays active or is Lost).", "Lifecycle"),
        Measure("Lost Last Month", _count(f'{H}[lifecycle_state] = "{CHURNED}"', offset=-1), WHOLE,
                f"Customers in the {CHURNED} state (lost: Not Active after buying) at the end of the month "
                "before the selected month.", "Lifecycle"),
        Measure("Reactivation %", "DIVIDE([Reactivated] + 0, [Lost Last Month])", PERCENT, "Reactivated this month "
                "/ customers in the lost state last month.", "Lifecycle"),
        Measure("Revenue M1", _at_month(f"SUM({H}[revenue_m1])"), MONEY, "Core revenue in the selected month.",
                "Volume"),
        Measure("Units M1", _at_month(f"SUM({H}[m1])"), DECIMAL, "The engagement measure (units by default) of "
                "core purchases in the selected month.", "Volume"),
        Measure("Avg AMC", _at_month(f"AVERAGE({H}[amc])", _ACTIVE), DECIMAL, "Average monthly consumption "
                "(M6 / 6) of the active customers in the selected month.", "Volume"),
        Measure("Share of base", "\n".join([
            f"VAR LatestMonth = {LATEST}",
            "VAR Base =",
            f"    CALCULATE(COUNTROWS({H}), REMOVEFILTERS(), {H}[report_month] = LatestMonth)",
            "RETURN",
            "    DIVIDE([Customers], Base)"]), PERCENT,
                "Customers in the current selection / all customers in the base, in the selected month (as "
                "monthly_summary's share).", "Base"),
        Measure("Scored Customers", _count(f"NOT(ISBLANK({H}[rfm_segment]))"), WHOLE, "Customers with RFM "
                "scores in the selected month (rfm_population: the active ones by default).", "RFM"),
        Measure("Champions", _count(f'{H}[rfm_segment] = "Champions"'), WHOLE, "Customers in the Champions "
                "segment in the selected month.", "RFM"),
        Measure("% Champions", "DIVIDE([Champions], [Scored Customers])", PERCENT,
                "Champions / customers with RFM scores, in the selected month.", "RFM"),
        Measure("Customers Δ MoM", _delta("Customers", "[Customers Last Month]"), SIGNED,
                "Customers this month minus last month.", "Month over month"),
        Measure("Customers Last Month", _count(offset=-1), WHOLE, "Customers in the base at the end of the "
                "month before the selected month.", "Month over month"),
        Measure("Active Customers Δ MoM", "[Active Customers] - [Active Last Month]", SIGNED,
                "Active customers this month minus last month.", "Month over month"),
        Measure("Revenue M1 Δ MoM", _delta("Revenue M1", _at_month(f"SUM({H}[revenue_m1])", offset=-1)), MONEY,
                "Core revenue in the selected month minus the month before.", "Month over month"),
    ]
    if transitions:
        found += [
            Measure("Tier Up Moves", _tier_moves("up"), WHOLE, "Customers who moved to a better tier this month "
                    "(both tiers Diamond..Passive; from tier_transitions).", "Tiers"),
            Measure("Tier Down Moves", _tier_moves("down"), WHOLE, "Customers who moved to a lower tier this "
                    "month (both tiers Diamond..Passive; from tier_transitions).", "Tiers"),
            Measure("Tier Moves", _at_month(f"SUM({T}[customers])", month_column=f"{T}[report_month]"), WHOLE,
                    "Customers per move between tiers (rows: from_tier, columns: to_tier) in the selected month.",
                    "Tiers"),
        ]
    return tuple(found)
