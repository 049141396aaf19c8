"""Account page (``/account/<site_id>``): facts, the report's figures beside the supply side,
the voltage envelope, outages, dips and swells, and coverage of one key account.

Authorization is checked when the layout is built AND in every callback: a callback can be
called directly with any site id, so it trusts nothing it is sent. The figures all come
from :func:`analysis.report.site_report`; the page only draws them.
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime
from typing import Any

import dash
import dash_ag_grid as dag
import dash_mantine_components as dmc
from dash import Input, Output, State, dcc, html

from analysis.dips import query_dips
from core.calendar import day_range_ms
from core.errors import PqmonError
from core.registry import ROLES, WINDOW_ACTIVE, Site
from dashboard import authz
from dashboard.charts import (
    duration_curve_figure,
    duration_text,
    empty_figure,
    itic_figure,
    local_times,
    outage_rows,
    outage_spans,
    outage_timeline_figure,
    primary_nominal,
    side_by_side_figure,
    silent_periods,
    volts,
)
from dashboard.context import get_context
from dashboard.i18n import _, num, when
from dashboard.periods import PeriodError, default_period, parse_day, parse_period, today
from dashboard.trend import (
    both,
    envelope_for,
    headline,
    limits_of,
    memo,
    now_ms,
    presence_step,
    primary_meter,
    query_presence,
    report_for,
    store_failed,
    trend_for,
)
from dashboard.widgets import forbidden_page, forbidden_text, grid_locale, message, period_picker

log = logging.getLogger(__name__)

dash.register_page(
    __name__,
    path_template="/account/<site_id>",
    title="pqmon",
    name="account",
)

PERIOD_INPUTS = (
    Input("account-dates", "start_date"),
    Input("account-dates", "end_date"),
    State("account-site", "data"),
)


def forbidden() -> html.Div:
    return forbidden_page("account-forbidden")


def kv_text(kv: float) -> str:
    return num(kv, 0 if float(kv).is_integer() else 2) + " kV"


def fact(label: str, value: Any, fact_id: str | None = None) -> Any:
    return html.Div(
        [dmc.Text(label, size="xs", c="dimmed"), html.Div(value, id=fact_id) if fact_id else html.Div(value)],
        className="fact",
    )


def nominal_fact(site: Site) -> Any:
    """The primary nominal, and beside it what the meter reports when that is a PT secondary."""
    meter = primary_meter(site)
    if meter is None:
        return num(None)
    nominal = primary_nominal(site.voltage_class_kv, site.phases, meter.nominal_v)
    primary = (
        _("%(line)s line / %(phase)s phase", line=volts(nominal.line_v), phase=volts(nominal.phase_v))
        if nominal.line_v is not None
        else _("%(phase)s phase", phase=volts(nominal.phase_v))
    )
    if not nominal.secondary:
        return primary
    return [
        html.Div(primary),
        dmc.Text(
            _(
                "metered on the PT secondary: %(metered)s phase (ratio %(ratio)s)",
                metered=volts(nominal.metered_v),
                ratio=num(nominal.ratio, 0),
            ),
            size="xs",
            c="dimmed",
        ),
    ]


def limits_fact(site: Site) -> Any:
    limits = limits_of(site)
    text = _("+%(upper)s %% / −%(lower)s %%", upper=num(limits.upper_pct, 1), lower=num(limits.lower_pct, 1))
    meter = primary_meter(site)
    if meter is None:
        return text
    nominal = primary_nominal(site.voltage_class_kv, site.phases, meter.nominal_v)
    lower, upper = limits.band(nominal.phase_v)
    lines: list[Any] = [
        html.Div(text),
        dmc.Text(
            _("phase: %(lower)s to %(upper)s", lower=volts(lower), upper=volts(upper)), size="xs", c="dimmed"
        ),
    ]
    if nominal.secondary:
        m_lower, m_upper = limits.band(meter.nominal_v)
        lines.append(
            dmc.Text(
                _("metered: %(lower)s to %(upper)s", lower=volts(m_lower), upper=volts(m_upper)),
                size="xs",
                c="dimmed",
            )
        )
    return lines


def feeder_fact(access: authz.Access, site: Site) -> Any:
    if not site.feeder_id:
        return _("none registered")
    try:
        feeder, _accounts = access.feeder(site.feeder_id)
    except authz.Forbidden:
        return site.feeder_id
    return dcc.Link(f"{feeder.id}: {feeder.name}", href=f"/feeder/{feeder.id}", id="account-feeder-link")


def contacts_block(site: Site) -> Any:
    contacts = get_context().registry.contacts(site.id)
    if not contacts:
        return dmc.Text(_("No contacts registered."), size="sm", c="dimmed")
    rows = [
        html.Tr([html.Td(c.name), html.Td(c.phone or num(None)), html.Td(c.email or num(None))])
        for c in contacts
    ]
    return dmc.Table(
        [
            html.Thead(html.Tr([html.Th(_("Name")), html.Th(_("Phone")), html.Th(_("E-mail"))])),
            html.Tbody(rows),
        ],
        id="account-contacts",
        withTableBorder=True,
    )


def _utc_ms(moment: datetime) -> int:
    return int(moment.replace(tzinfo=UTC).timestamp() * 1000)


def planned_block(site: Site, tz: str) -> Any:
    """Active planned-outage windows covering the account that have not ended yet."""
    registry = get_context().registry
    now = now_ms()
    upcoming = [
        (_utc_ms(w.start_utc), _utc_ms(w.end_utc), w.note)
        for w in registry.planned_windows(site.id)
        if w.state == WINDOW_ACTIVE and _utc_ms(w.end_utc) > now
    ]
    known = {(s, e) for s, e, _n in upcoming}
    for start, end in registry.planned_outages(site.id):  # windows registered without an id
        pair = (_utc_ms(start), _utc_ms(end))
        if pair[1] > now and pair not in known:
            upcoming.append((*pair, ""))
    if not upcoming:
        return dmc.Text(_("No planned outages ahead."), size="sm", c="dimmed", id="account-planned")
    items = [
        html.Li(
            _("%(start)s to %(end)s", start=when(start, tz), end=when(end, tz))
            + (f": {note}" if note else "")
        )
        for start, end, note in sorted(upcoming)
    ]
    return html.Ul(items, id="account-planned")


def facts(access: authz.Access, site: Site, tz: str) -> Any:
    meter = primary_meter(site)
    grid = dmc.SimpleGrid(
        [
            fact(
                _("Voltage class"),
                kv_text(site.voltage_class_kv)
                + " · "
                + (_("three-phase") if site.phases >= 3 else _("single-phase")),
            ),
            fact(_("Nominal voltage (primary)"), nominal_fact(site), "account-nominal"),
            fact(_("Voltage limits (GB/T 12325)"), limits_fact(site), "account-limits"),
            fact(_("Feeder"), feeder_fact(access, site), "account-feeder"),
            fact(_("Account manager"), site.manager or num(None)),
            fact(
                _("Meter"),
                ", ".join(m.meter_id for m in site.meters) if meter else num(None),
            ),
        ],
        cols={"base": 1, "sm": 3, "lg": 6},
        spacing="sm",
        className="facts",
    )
    return html.Div(
        [
            grid,
            dmc.SimpleGrid(
                [
                    html.Div([html.H3(_("Contacts"), className="section"), contacts_block(site)]),
                    html.Div(
                        [html.H3(_("Planned outages ahead"), className="section"), planned_block(site, tz)]
                    ),
                ],
                cols={"base": 1, "md": 2},
                spacing="md",
            ),
        ]
    )


def outage_columns() -> list[dict[str, Any]]:
    return [
        {"field": "start", "headerName": _("Start"), "sort": "asc"},
        {"field": "end", "headerName": _("End")},
        {"field": "duration", "headerName": _("Duration (h:mm:ss)")},
        {"field": "cause", "headerName": _("Cause")},
        {"field": "length", "headerName": _("Length")},
        {"field": "status", "headerName": _("Status")},
        {"field": "end_source", "headerName": _("End known from")},
        {"field": "continued", "headerName": _("Note")},
    ]


def silent_columns() -> list[dict[str, Any]]:
    return [
        {"field": "start", "headerName": _("From")},
        {"field": "end", "headerName": _("To")},
        {"field": "duration", "headerName": _("Duration (h:mm:ss)")},
    ]


def grid(grid_id: str, columns: list[dict[str, Any]]) -> dag.AgGrid:
    return dag.AgGrid(
        id=grid_id,
        columnDefs=columns,
        rowData=[],
        defaultColDef={"sortable": True, "resizable": True, "filter": True},
        columnSize="sizeToFit",
        dashGridOptions={
            "localeText": grid_locale(),
            "pagination": True,
            "paginationPageSize": 20,
            "domLayout": "autoHeight",
        },
        className="ag-theme-alpine",
    )


def graph(graph_id: str, text: str = "") -> dcc.Graph:
    return dcc.Graph(id=graph_id, figure=empty_figure(text), config={"displaylogo": False})


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
            facts(access, site, tz),
            html.Div(
                period_picker("account-dates", day_from, day_to, today(tz)), style={"marginTop": "1rem"}
            ),
            dcc.Store(id="account-site", data=site.id),
            dcc.Loading(html.Div(id="account-headline", className="headline")),
            html.H3(_("Voltage"), className="section"),
            graph("account-trend"),
            graph("account-supply"),
            dmc.SimpleGrid(
                [
                    graph("account-duration"),
                    html.Div([graph("account-itic"), html.Div(id="account-itic-note")]),
                ],
                cols={"base": 1, "lg": 2},
                spacing="md",
            ),
            html.H3(_("Outages"), className="section"),
            graph("account-outage-timeline"),
            grid("account-outage-grid", outage_columns()),
            html.H3(_("Coverage and silent periods"), className="section"),
            html.Div(id="account-silent-note"),
            grid("account-silent-grid", silent_columns()),
        ],
        className="page account",
    )


def period_of(start: object, end: object) -> tuple[date, date]:
    return parse_period(start, end)


@authz.callback(
    Output("account-headline", "children"),
    Output("account-trend", "figure"),
    *PERIOD_INPUTS,
    roles=ROLES,
    denied=lambda: (message(forbidden_text(), "account-forbidden"), empty_figure()),
)
def update_account(access: authz.Access, start: object, end: object, site_id: object) -> tuple[Any, Any]:
    """``site_id`` arrives from the browser: access.site decides, the registry supplies the rest."""
    site: Site = access.site(site_id)
    try:
        day_from, day_to = period_of(start, end)
    except PeriodError as exc:
        return message(str(exc)), empty_figure()
    ctx = get_context()
    try:
        report, env = both(
            lambda: report_for(ctx, site, day_from, day_to), lambda: envelope_for(ctx, site, day_from, day_to)
        )
    except PqmonError:
        log.exception("account %s: report failed", site.id)
        return store_failed(), empty_figure()
    return headline(report, "account"), trend_for(site, report, env, ctx.settings.tz)


@authz.callback(
    Output("account-supply", "figure"),
    *PERIOD_INPUTS,
    roles=ROLES,
    denied=lambda: empty_figure(),
)
def update_supply(access: authz.Access, start: object, end: object, site_id: object) -> Any:
    """The customer's mean voltage beside its feeder's, each in % of its own nominal. The
    feeder is drawn only when the user may see it (access.feeder); its figures are in the
    headline's supply-side table."""
    site: Site = access.site(site_id)
    if not site.feeder_id:
        return empty_figure(_("No feeder is registered for this account."))
    try:
        day_from, day_to = period_of(start, end)
        feeder, _mine = access.feeder(site.feeder_id)
    except (PeriodError, authz.Forbidden):
        return empty_figure()
    ctx = get_context()
    try:
        mine, theirs = both(
            lambda: envelope_for(ctx, site, day_from, day_to),
            lambda: envelope_for(ctx, feeder, day_from, day_to),
        )
    except PqmonError:
        log.exception("account %s: supply-side trend failed", site.id)
        return empty_figure(_("The measurement store is not answering; try again shortly."))
    if mine.frame.empty and theirs.frame.empty:
        return empty_figure(_("No readings in this period."))
    nominal = mine.meter.nominal_v if mine.meter else 0.0
    band_pct = None
    if nominal:
        lower, upper = limits_of(site).band(nominal)
        band_pct = ((lower / nominal - 1.0) * 100.0, (upper / nominal - 1.0) * 100.0)
    return side_by_side_figure(
        [
            (_("Customer"), mine.frame, nominal, mine.bucket_s, "solid"),
            (
                _("Feeder %(id)s", id=feeder.id),
                theirs.frame,
                theirs.meter.nominal_v if theirs.meter else 0.0,
                theirs.bucket_s,
                "dot",
            ),
        ],
        tz=ctx.settings.tz,
        band_pct=band_pct,
        x_range=local_times([mine.start_ms, mine.end_ms], ctx.settings.tz),
    )


@authz.callback(
    Output("account-duration", "figure"),
    Output("account-outage-timeline", "figure"),
    Output("account-outage-grid", "rowData"),
    *PERIOD_INPUTS,
    roles=ROLES,
    denied=lambda: (empty_figure(), empty_figure(), []),
)
def update_outages(access: authz.Access, start: object, end: object, site_id: object) -> tuple[Any, Any, Any]:
    """The duration curve (from the trend's buckets) and the report's outage list."""
    site = access.site(site_id)
    try:
        day_from, day_to = period_of(start, end)
    except PeriodError:
        return empty_figure(), empty_figure(), []
    ctx = get_context()
    tz = ctx.settings.tz
    try:
        report, env = both(
            lambda: report_for(ctx, site, day_from, day_to), lambda: envelope_for(ctx, site, day_from, day_to)
        )
    except PqmonError:
        log.exception("account %s: outages failed", site.id)
        failed = empty_figure(_("The measurement store is not answering; try again shortly."))
        return failed, failed, []
    outages = report.get("outage_list") or []
    limits = limits_of(site)
    duration = duration_curve_figure(
        env.frame, env.meter.nominal_v if env.meter else None, (limits.lower_pct, limits.upper_pct)
    )
    spans = outage_spans(outages, env.start_ms, env.end_ms, now_ms())
    timeline = outage_timeline_figure(spans, tz, env.start_ms, env.end_ms)
    return duration, timeline, outage_rows(outages, tz)


@authz.callback(
    Output("account-itic", "figure"),
    Output("account-itic-note", "children"),
    *PERIOD_INPUTS,
    roles=ROLES,
    denied=lambda: (empty_figure(), None),
)
def update_events(access: authz.Access, start: object, end: object, site_id: object) -> tuple[Any, Any]:
    """Dips and swells recorded by the site's meters, on the ITIC and SEMI F47 curves."""
    site = access.site(site_id)
    try:
        day_from, day_to = period_of(start, end)
    except PeriodError:
        return empty_figure(), None
    ctx = get_context()
    start_ms, end_ms = day_range_ms(day_from, day_to, ctx.settings.tz)
    try:
        events = memo(
            ("events", id(ctx.store), site.id, start_ms, end_ms),
            lambda: query_dips(ctx.store, site.id, start_ms, end_ms),
        )
    except PqmonError:
        log.exception("account %s: events failed", site.id)
        return empty_figure(), store_failed()
    note = _(
        "%(dips)s dips and %(swells)s swells recorded in the period.",
        dips=num(int((events["type"] == "dip").sum()), 0),
        swells=num(int((events["type"] == "swell").sum()), 0),
    )
    return itic_figure(events), dmc.Text(note, size="sm", c="dimmed")


@authz.callback(
    Output("account-silent-grid", "rowData"),
    Output("account-silent-note", "children"),
    *PERIOD_INPUTS,
    roles=ROLES,
    denied=lambda: ([], None),
)
def update_silent(access: authz.Access, start: object, end: object, site_id: object) -> tuple[Any, Any]:
    """Stretches in which the site's meter sent nothing for more than three reporting intervals."""
    site = access.site(site_id)
    try:
        day_from, day_to = period_of(start, end)
    except PeriodError:
        return [], None
    ctx = get_context()
    tz = ctx.settings.tz
    start_ms, end_ms = day_range_ms(day_from, day_to, tz)
    end_ms = min(end_ms, now_ms())
    step = presence_step(end_ms - start_ms)
    meter = primary_meter(site)
    try:
        report = report_for(ctx, site, day_from, day_to)
        times, interval = memo(
            ("presence", id(ctx.store), site.id, start_ms, end_ms // 60_000, step),
            lambda: query_presence(
                ctx.store, site.id, meter.meter_id if meter else None, start_ms, end_ms, step
            ),
        )
    except PqmonError:
        log.exception("account %s: coverage failed", site.id)
        return [], store_failed()
    period = report.get("period") or {}
    first = parse_day(period.get("from"))
    if first is not None:  # before the monitored life nothing was expected
        start_ms = max(start_ms, day_range_ms(first, first, tz)[0])
    gaps = silent_periods(times, step, interval, start_ms, end_ms)
    rows = [
        {"start": when(a, tz), "end": when(b, tz), "duration": duration_text((b - a) / 1000)} for a, b in gaps
    ]
    note = dmc.Text(
        _(
            "Voltage measured %(coverage)s of the time; supply state known %(event)s of the time. "
            "%(count)s silent periods longer than three reporting intervals (%(interval)s s), "
            "to within %(step)s min.",
            coverage=num(report.get("coverage_pct"), 1) + " %",
            event=num(report.get("event_coverage_pct"), 1) + " %",
            count=num(len(rows), 0),
            interval=num(interval, 0),
            step=num(step / 60, 0),
        ),
        size="sm",
    )
    return rows, note
