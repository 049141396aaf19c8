"""Account page (``/account/<site_id>``): headline figures and the voltage trend of one site.

Authorization is checked when the layout is built AND in the callback: the callback
can be called directly with any site id, so it trusts nothing it is sent.
"""

from __future__ import annotations

import logging
from typing import Any

import dash
from dash import Input, Output, State, callback, dcc, html

from analysis.calendar import day_range_ms
from analysis.report import site_report
from core.errors import PqmonError
from core.registry import ROLES, Site
from dashboard.auth import AuthError, require_site
from dashboard.context import get_context
from dashboard.i18n import t
from dashboard.periods import PeriodError, default_period, parse_day, parse_period, today
from dashboard.trend import bucket_for, empty_figure, query_trend, trend_figure
from dashboard.widgets import fmt, message, period_picker

log = logging.getLogger(__name__)

dash.register_page(
    __name__,
    path_template="/account/<site_id>",
    title="pqmon",
    name="account",
    nav=False,
    roles=ROLES,
)


def forbidden() -> html.Div:
    """One answer for 'no such site' and 'not yours', so ids cannot be probed."""
    return html.Div(
        [message(t("account.forbidden"), "account-forbidden"), dcc.Link(t("account.back"), href="/")],
        className="page",
    )


def layout(site_id: str | None = None, **query: str) -> html.Div:
    try:
        require_site(site_id)
        site = get_context().registry.site(str(site_id))
    except (AuthError, PqmonError):
        return forbidden()
    tz = get_context().settings.tz
    day_from, day_to = default_period(tz)
    asked_from, asked_to = parse_day(query.get("from")), parse_day(query.get("to"))
    if asked_from and asked_to and asked_from <= asked_to:
        day_from, day_to = asked_from, asked_to
    return html.Div(
        [
            dcc.Link(t("account.back"), href="/", className="back"),
            html.H1(t("account.title", site_id=site.id, name=site.name)),
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
            t("account.vqr"),
            fmt(report.get("vqr_pct"), 2) + " %",
            t(
                "account.minutes",
                monitored=fmt(report.get("monitored_min"), 0),
                over=fmt(report.get("over_min"), 0),
                under=fmt(report.get("under_min"), 0),
            ),
            "account-vqr",
        ),
        card(
            t("account.rs1"),
            fmt(report.get("rs1_pct"), 3) + " %",
            t("account.rs1_excl_short") + ": " + fmt(report.get("rs1_excl_short_pct"), 3) + " %",
            "account-rs1",
        ),
        card(
            t("account.outages"),
            fmt(outages.get("count"), 0),
            t(
                "account.outage_detail",
                sustained=fmt(outages.get("sustained"), 0),
                short=fmt(outages.get("short"), 0),
                planned=fmt(outages.get("planned"), 0),
            ),
            "account-outages",
        ),
        card(t("account.coverage"), fmt(report.get("coverage_pct"), 1) + " %", card_id="account-coverage"),
    ]
    supply = report.get("supply_side")
    if isinstance(supply, dict):
        cards.append(
            card(
                t("account.supply_side", feeder=supply.get("feeder", "")),
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
                                t("account.phases"),
                                "VQR %",
                                t("account.monitored_col"),
                                t("account.over_col"),
                                t("account.under_col"),
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


@callback(
    Output("account-headline", "children"),
    Output("account-trend", "figure"),
    Input("account-dates", "start_date"),
    Input("account-dates", "end_date"),
    State("account-site", "data"),
)
def update_account(start: object, end: object, site_id: object) -> tuple[Any, Any]:
    """``site_id`` arrives from the browser: require_site decides, the registry supplies the rest."""
    try:
        require_site(site_id)
    except AuthError:
        return message(t("account.forbidden"), "account-forbidden"), empty_figure()
    try:
        day_from, day_to = parse_period(start, end)
    except PeriodError as exc:
        return message(str(exc)), empty_figure()
    ctx = get_context()
    tz = ctx.settings.tz
    try:
        site: Site = ctx.registry.site(str(site_id))
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
        return message(t("store.unavailable")), empty_figure()
    figure = trend_figure(site, frames, tz, bucket) if frames else empty_figure(t("account.no_readings"))
    return headline(report), figure
