"""Feeder page (``/feeder/<feeder_id>``): the supply side's figures and voltage, and the key
accounts it supplies that the user may see, each with its figures and the gap to the feeder.

``access.feeder`` decides in the layout and in every callback: staff see every feeder, a
manager or customer only the feeders of their accounts, and only their accounts on them.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlencode

import dash
import dash_ag_grid as dag
import dash_mantine_components as dmc
from dash import Input, Output, State, dcc, html

from analysis.report import fleet_summary, last_mile_gap
from core.errors import PqmonError
from core.registry import ROLES
from dashboard import authz
from dashboard.charts import empty_figure, primary_nominal, volts
from dashboard.context import get_context
from dashboard.i18n import _, num
from dashboard.periods import PeriodError, default_period, parse_day, parse_period, today
from dashboard.trend import (
    both,
    envelope_for,
    headline,
    limits_of,
    primary_meter,
    report_for,
    store_failed,
    trend_for,
)
from dashboard.widgets import forbidden_page, forbidden_text, grid_locale, is_number, message, period_picker

log = logging.getLogger(__name__)

dash.register_page(
    __name__,
    path_template="/feeder/<feeder_id>",
    title="pqmon",
    name="feeder",
)

PERIOD_INPUTS = (
    Input("feeder-dates", "start_date"),
    Input("feeder-dates", "end_date"),
    State("feeder-site", "data"),
)


def forbidden() -> html.Div:
    return forbidden_page("feeder-forbidden")


def account_columns() -> list[dict[str, Any]]:
    def number(field: str, name: str, decimals: int) -> dict[str, Any]:
        return {
            "field": field,
            "headerName": name,
            "type": "numericColumn",
            "valueFormatter": {
                "function": f"params.value == null ? '–' : d3.format(',.{decimals}f')(params.value)"
            },
        }

    return [
        {"field": "link", "headerName": _("Account"), "cellRenderer": "markdown"},
        {"field": "name", "headerName": _("Name")},
        number("vqr_pct", _("VQR %"), 2),
        number("gap_pct", _("VQR gap to the feeder (points)"), 2),
        number("rs1_pct", _("RS-1 %"), 3),
        number("outages", _("Outages"), 0),
        number("coverage_pct", _("Coverage %"), 1),
    ]


@authz.page_layout(ROLES, denied=forbidden)
def layout(access: authz.Access, feeder_id: str | None = None, **query: str) -> html.Div:
    feeder, accounts = access.feeder(feeder_id)
    tz = get_context().settings.tz
    day_from, day_to = default_period(tz)
    asked_from, asked_to = parse_day(query.get("from")), parse_day(query.get("to"))
    if asked_from and asked_to and asked_from <= asked_to:
        day_from, day_to = asked_from, asked_to
    meter = primary_meter(feeder)
    nominal = primary_nominal(feeder.voltage_class_kv, feeder.phases, meter.nominal_v) if meter else None
    limits = limits_of(feeder)
    facts = dmc.SimpleGrid(
        [
            html.Div(
                [dmc.Text(_("Voltage class"), size="xs", c="dimmed"), volts(feeder.voltage_class_kv * 1000.0)]
            ),
            html.Div(
                [
                    dmc.Text(_("Nominal voltage (primary)"), size="xs", c="dimmed"),
                    _(
                        "%(line)s line / %(phase)s phase",
                        line=volts(nominal.line_v),
                        phase=volts(nominal.phase_v),
                    )
                    if nominal and nominal.line_v
                    else volts(nominal.phase_v if nominal else None),
                ]
            ),
            html.Div(
                [
                    dmc.Text(_("Voltage limits (GB/T 12325)"), size="xs", c="dimmed"),
                    _(
                        "+%(upper)s %% / −%(lower)s %%",
                        upper=num(limits.upper_pct, 1),
                        lower=num(limits.lower_pct, 1),
                    ),
                ]
            ),
            html.Div(
                [
                    dmc.Text(_("Key accounts on it you may see"), size="xs", c="dimmed"),
                    num(len(accounts), 0),
                ]
            ),
        ],
        cols={"base": 1, "sm": 4},
        spacing="sm",
        className="facts",
    )
    return html.Div(
        [
            dcc.Link(_("Back to the overview"), href="/", className="back"),
            html.H1(_("Feeder %(feeder_id)s: %(name)s", feeder_id=feeder.id, name=feeder.name)),
            facts,
            period_picker("feeder-dates", day_from, day_to, today(tz)),
            dcc.Store(id="feeder-site", data=feeder.id),
            dcc.Loading(html.Div(id="feeder-headline", className="headline")),
            dcc.Graph(id="feeder-trend", figure=empty_figure(), config={"displaylogo": False}),
            html.H3(_("Key accounts supplied"), className="section"),
            html.Div(id="feeder-accounts-note"),
            dag.AgGrid(
                id="feeder-accounts",
                columnDefs=account_columns(),
                rowData=[],
                defaultColDef={"sortable": True, "resizable": True, "filter": True},
                columnSize="sizeToFit",
                dashGridOptions={"localeText": grid_locale(), "domLayout": "autoHeight"},
                className="ag-theme-alpine",
            ),
        ],
        className="page feeder",
    )


@authz.callback(
    Output("feeder-headline", "children"),
    Output("feeder-trend", "figure"),
    *PERIOD_INPUTS,
    roles=ROLES,
    denied=lambda: (message(forbidden_text(), "feeder-forbidden"), empty_figure()),
)
def update_feeder(access: authz.Access, start: object, end: object, feeder_id: object) -> tuple[Any, Any]:
    """The feeder's own report (analysis.report.site_report of the feeder site) and trend."""
    feeder, _accounts = access.feeder(feeder_id)
    try:
        day_from, day_to = parse_period(start, end)
    except PeriodError as exc:
        return message(str(exc)), empty_figure()
    ctx = get_context()
    try:
        report, env = both(
            lambda: report_for(ctx, feeder, day_from, day_to),
            lambda: envelope_for(ctx, feeder, day_from, day_to),
        )
    except PqmonError:
        log.exception("feeder %s: report failed", feeder.id)
        return store_failed(), empty_figure()
    return headline(report, "feeder"), trend_for(feeder, report, env, ctx.settings.tz)


@authz.callback(
    Output("feeder-accounts", "rowData"),
    Output("feeder-accounts-note", "children"),
    *PERIOD_INPUTS,
    roles=ROLES,
    denied=lambda: ([], None),
)
def update_accounts(access: authz.Access, start: object, end: object, feeder_id: object) -> tuple[Any, Any]:
    """The accounts on the feeder that access.feeder lets this user see, never others."""
    feeder, accounts = access.feeder(feeder_id)
    try:
        day_from, day_to = parse_period(start, end)
    except PeriodError:
        return [], None
    if not accounts:
        return [], message(_("No key accounts on this feeder are assigned to you."))
    ctx = get_context()
    try:
        report = report_for(ctx, feeder, day_from, day_to)
        summary = fleet_summary(
            ctx.store,
            [a.id for a in accounts],
            day_from,
            day_to,
            ctx.settings.tz,
            commissioned={a.id: a.commissioned for a in accounts},
        )
    except PqmonError:
        log.exception("feeder %s: accounts failed", feeder.id)
        return [], store_failed()
    names = {a.id: a.name for a in accounts}
    query = urlencode({"from": day_from.isoformat(), "to": day_to.isoformat()})
    rows = []
    for rec in summary.to_dict("records"):
        site = str(rec["site"])
        if site not in names:
            continue
        figures = {
            k: float(rec[k]) if is_number(rec.get(k)) else None
            for k in ("vqr_pct", "rs1_pct", "outages", "coverage_pct")
        }
        gap = last_mile_gap(figures, report)["vqr_pct"]
        rows.append(
            {
                "site": site,
                "link": f"[{site}](/account/{site}?{query})",
                "name": names[site],
                **figures,
                "gap_pct": gap,
            }
        )
    rows.sort(key=lambda r: (r["vqr_pct"] is None, r["vqr_pct"] or 0.0, r["site"]))
    return rows, None
