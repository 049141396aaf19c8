"""Account page (``/account/<site_id>``): headline figures and the voltage trend of one site.

Authorization is checked when the layout is built AND in the callback: the callback
can be called directly with any site id, so it trusts nothing it is sent.
"""

from __future__ import annotations

import logging
from typing import Any

import dash
from dash import Input, Output, State, dcc, html

from analysis.calendar import day_range_ms
from analysis.report import site_report
from core.errors import PqmonError
from core.registry import ROLES, Site
from dashboard import authz
from dashboard.context import get_context
from dashboard.i18n import _, num
from dashboard.periods import PeriodError, default_period, parse_day, parse_period, today
from dashboard.trend import bucket_for, empty_figure, query_trend, trend_figure
from dashboard.widgets import forbidden_page, forbidden_text, message, period_picker


def fmt(value: object, decimals: int) -> str:
    return num(value, decimals)


log = logging.getLogger(__name__)

dash.register_page(
    __name__,
    path_template="/account/<site_id>",
    title="pqmon",
    name="account",
)


def forbidden() -> html.Div:
    return forbidden_page("account-forbidden")


@authz.page_layout(ROLES, denied=forbidden)
def layout(access: authz.Access, site_id: str | None = None, **query: str) -> html.Div:
    site = access.site(site_id)
    tz = get_context().settings.tz
    day_from, day_to = default_period(tz)
    asked_from, asked_to = parse_day(query.get("from")), parse_day(query.get("to"))
    if asked_from and asked_to and asked_from <= asked_to:
        day_from, day_to = asked_from, asked_to
    return html.Div(
        [
            dcc.Link(_("Back to the overview"), href="/", className="back"),
            html.H1(_("Account %(site_id)s: %(name)s", site_id=site.id, name=site.name)),
            period_picker("account-dates", day_from, day_to, today(tz)),
            dcc.Store(id="account-site", data=site.id),
            dcc.Loading(html.Div(id="account-headline", className="headline")),
            dcc.Graph(id="account-trend", figure=empty_figure(), config={"displaylogo": False}),
        ],
        className="page account",
    )


def card(label: str, value: str, detail: str = "", card_id: str | None = None) -> html.Div:
    value_div = (
        html.Div(value, className="card-value", id=card_id)
        if card_id
        else html.Div(value, className="card-value")
    )
    return html.Div(
        [html.Div(label, className="card-label"), value_div, html.Div(detail, className="card-detail")],
        className="card",
    )


def headline(report: dict[str, Any]) -> list[Any]:
    """Cards and the per-phase table from a report (README: Command line shape)."""
    outages = report.get("outages") or {}
    cards = [
        card(
            _("Voltage qualification rate"),
            fmt(report.get("vqr_pct"), 2) + " %",
            _(
                "Monitored %(monitored)s min, over %(over)s min, under %(under)s min",
                monitored=fmt(report.get("monitored_min"), 0),
                over=fmt(report.get("over_min"), 0),
                under=fmt(report.get("under_min"), 0),
            ),
            "account-vqr",
        ),
        card(
            _("Supply reliability RS-1"),
            fmt(report.get("rs1_pct"), 3) + " %",
            _("RS-1 without short interruptions") + ": " + fmt(report.get("rs1_excl_short_pct"), 3) + " %",
            "account-rs1",
        ),
        card(
            _("Outages"),
            fmt(outages.get("count"), 0),
            _(
                "%(sustained)s sustained, %(short)s short, %(planned)s planned",
                sustained=fmt(outages.get("sustained"), 0),
                short=fmt(outages.get("short"), 0),
                planned=fmt(outages.get("planned"), 0),
            ),
            "account-outages",
        ),
        card(_("Data coverage"), fmt(report.get("coverage_pct"), 1) + " %", card_id="account-coverage"),
    ]
    supply = report.get("supply_side")
    if isinstance(supply, dict):
        cards.append(
            card(
                _("Supply side (%(feeder)s)", feeder=supply.get("feeder", "")),
                fmt(supply.get("vqr_pct"), 2) + " %",
            )
        )
    phases = report.get("phases") or {}
    phase_rows = [
        html.Tr(
            [
                html.Td(name),
                html.Td(fmt(p.get("vqr_pct"), 2) + " %"),
                html.Td(fmt(p.get("monitored_min"), 0)),
                html.Td(fmt(p.get("over_min"), 0)),
                html.Td(fmt(p.get("under_min"), 0)),
            ]
        )
        for name, p in sorted(phases.items())
        if isinstance(p, dict)
    ]
    table = (
        html.Table(
            [
                html.Thead(
                    html.Tr(
                        [
                            html.Th(h)
                            for h in (
                                _("Phase"),
                                "VQR %",
                                _("Monitored min"),
                                _("Over min"),
                                _("Under min"),
                            )
                        ]
                    )
                ),
                html.Tbody(phase_rows),
            ],
            className="phase-table",
        )
        if phase_rows
        else None
    )
    return [html.Div(cards, className="cards"), table]


@authz.callback(
    Output("account-headline", "children"),
    Output("account-trend", "figure"),
    Input("account-dates", "start_date"),
    Input("account-dates", "end_date"),
    State("account-site", "data"),
    roles=ROLES,
    denied=lambda: (message(forbidden_text(), "account-forbidden"), empty_figure()),
)
def update_account(access: authz.Access, start: object, end: object, site_id: object) -> tuple[Any, Any]:
    """``site_id`` arrives from the browser: access.site decides, the registry supplies the rest."""
    site: Site = access.site(site_id)
    try:
        day_from, day_to = parse_period(start, end)
    except PeriodError as exc:
        return message(str(exc)), empty_figure()
    ctx = get_context()
    tz = ctx.settings.tz
    try:
        report = site_report(
            ctx.store,
            ctx.registry,
            site.id,
            day_from,
            day_to,
            tz,
            en50160_min_coverage_pct=ctx.settings.en50160_min_coverage_pct,
        )
        start_ms, end_ms = day_range_ms(day_from, day_to, tz)
        bucket = bucket_for((day_to - day_from).days + 1)
        frames = query_trend(ctx.store, site.id, start_ms, end_ms, bucket)
    except PqmonError:
        log.exception("account %s: report failed", site_id)
        return message(_("The measurement store is not answering; try again shortly.")), empty_figure()
    figure = (
        trend_figure(site, frames, tz, bucket) if frames else empty_figure(_("No readings in this period."))
    )
    return headline(report), figure
