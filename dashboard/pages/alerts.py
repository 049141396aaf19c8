"""Alerts (``/alerts``): open alerts and incidents, acknowledging, quiet modes and the logs.

Operators and admins see every alert; an account manager only those of their accounts, and
may acknowledge only an incident whose every site is theirs. Every callback re-checks the
session and re-derives the readable sites; nothing the browser sends widens them.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from typing import Any

import dash
import dash_ag_grid as dag
import dash_mantine_components as dmc
from dash import Input, Output, State, dcc, html
from sqlalchemy.exc import SQLAlchemyError

from analysis.alerts.engine import OUTAGE, SILENT, VOLTAGE
from analysis.alerts.notices import NOTICE_FAILED_RULE
from analysis.alerts.state import ACKNOWLEDGED, FIRING, RESOLVED
from core.errors import PqmonError
from dashboard import alerts_view as view
from dashboard import authz
from dashboard.context import get_context
from dashboard.i18n import N_, _, num, when
from dashboard.periods import DEFAULT_DAYS, PeriodError, parse_period, today
from dashboard.widgets import forbidden_page, forbidden_text, grid_locale, message, period_picker

log = logging.getLogger(__name__)

dash.register_page(__name__, path="/alerts", title="pqmon", name="alerts", nav=N_("Alerts"), order=20)

ROLES = authz.WORKSPACE  # admin, operator, manager
STAFF = authz.STAFF
RULES = {
    OUTAGE: N_("Outage"),
    VOLTAGE: N_("Voltage out of limits"),
    SILENT: N_("Meter silent"),
    NOTICE_FAILED_RULE: N_("Customer notice not delivered"),
    "semi_f47": N_("Voltage dip below the SEMI F47 curve"),
    "vqr_month": N_("Month-to-date voltage qualification below target"),
    "outage_budget": N_("Month-to-date outage time over budget"),
    "last_mile": N_("Last mile: customer side out of limits"),
}
SEVERITIES = {"critical": N_("critical"), "major": N_("major"), "minor": N_("minor"), "info": N_("info")}
STATES = {
    "open": N_("Open (not resolved)"),
    FIRING: N_("Unacknowledged"),
    ACKNOWLEDGED: N_("Acknowledged"),
    RESOLVED: N_("Resolved"),
}
NOTICE_KINDS = {
    "ahead": N_("Advance notice"),
    "confirm": N_("Confirmation"),
    "moved": N_("Moved"),
    "cancelled": N_("Cancelled"),
}
NOTICE_STATES = {
    "pending": N_("pending"),
    "sending": N_("sending"),
    "sent": N_("sent"),
    "failed": N_("failed"),
    "skipped_late": N_("skipped (too late)"),
    "cancelled": N_("cancelled"),
}
DELIVERY_KINDS = {
    "incident": N_("first page"),
    "incident_update": N_("update"),
    "resolved": N_("resolved"),
    "reminder": N_("reminder"),
    "escalation": N_("escalation"),
    NOTICE_FAILED_RULE: N_("notice failed"),
}
DB_ERRORS = (PqmonError, SQLAlchemyError)
STORE_ERROR = N_("The alert records cannot be read just now; try again shortly.")


def label(table: dict[str, str], key: str | None) -> str:
    return _(table[key]) if key in table else (key or "")


def grid(grid_id: str, columns: list[dict[str, Any]], **options: Any) -> dag.AgGrid:
    return dag.AgGrid(
        id=grid_id,
        columnDefs=columns,
        rowData=[],
        defaultColDef={"sortable": True, "resizable": True, "filter": True},
        dashGridOptions={
            "localeText": grid_locale(),
            "pagination": True,
            "paginationPageSize": 50,
            **options,
        },
        columnSize="autoSize",
        style={"height": "420px"},
    )


def col(field: str, header: str, **extra: Any) -> dict[str, Any]:
    return {"field": field, "headerName": header, **extra}


def alert_columns() -> list[dict[str, Any]]:
    return [
        col("incident", _("Incident")),
        col("site", _("Account")),
        col("name", _("Name")),
        col("rule", _("Rule")),
        col("severity", _("Severity")),
        col("state", _("State")),
        col("started", _("Began")),
        col("ended", _("Ended")),
        col("minutes", _("Minutes"), type="rightAligned"),
        col("acked_by", _("Acknowledged by")),
        col("comment", _("Comment")),
        col("detail", _("Detail")),
    ]


def notice_columns() -> list[dict[str, Any]]:
    return [
        col("due", _("Due")),
        col("state", _("State")),
        col("notice", _("Notice")),
        col("planned", _("Planned outage")),
        col("site", _("Account")),
        col("contact", _("Contact")),
        col("channel", _("Channel")),
        col("attempts", _("Attempts"), type="rightAligned"),
        col("sent", _("Sent")),
        col("error", _("Last error")),
    ]


def delivery_columns() -> list[dict[str, Any]]:
    return [
        col("at", _("When")),
        col("incident", _("Incident")),
        col("kind", _("Notification")),
        col("channel", _("Channel")),
        col("site", _("Account")),
        col("ok", _("Delivered")),
        col("detail", _("Detail")),
    ]


def _select(select_id: str, text: str, data: list[dict[str, str]], **extra: Any) -> dmc.Select:
    return dmc.Select(id=select_id, label=text, data=data, clearable=True, searchable=True, w=200, **extra)


def _options(table: dict[str, str]) -> list[dict[str, str]]:
    return [{"value": k, "label": _(v)} for k, v in table.items()]


def feeder_options(access: authz.Access) -> list[dict[str, str]]:
    registry = get_context().registry
    if access.role in STAFF:
        return [{"value": f.id, "label": f"{f.id} {f.name}"} for f in registry.sites("feeder")]
    ids = sorted({s.feeder_id for s in access.sites() if s.feeder_id})
    names = {f.id: f.name for f in registry.sites("feeder")}
    return [{"value": i, "label": f"{i} {names.get(i, '')}".strip()} for i in ids]


def quiet_section(access: authz.Access) -> Any:
    registry = get_context().registry
    tz = get_context().settings.tz
    return html.Section(
        [
            html.H2(_("Quiet modes")),
            html.P(
                _(
                    "A quiet mode holds pages (never resolve notices) until it ends; held pages "
                    "go out when it ends if still true."
                ),
                className="hint",
            ),
            html.Div(id="alerts-quiet-list"),
            dmc.Group(
                [
                    dmc.Select(
                        id="alerts-quiet-scope",
                        label=_("Mode"),
                        data=[
                            {"value": "storm", "label": _("Storm mode (everything)")},
                            {"value": "site", "label": _("Maintenance of an account")},
                            {"value": "feeder", "label": _("Maintenance of a feeder")},
                        ],
                        value="storm",
                        w=240,
                    ),
                    dmc.Select(
                        id="alerts-quiet-target",
                        label=_("Account or feeder"),
                        data=[
                            {"value": s.id, "label": f"{s.id} {s.name}"}
                            for s in registry.sites("account") + registry.sites("feeder")
                        ],
                        searchable=True,
                        clearable=True,
                        w=220,
                    ),
                    dmc.DateTimePicker(
                        id="alerts-quiet-until",
                        label=_("Until (%(tz)s)", tz=tz),
                        valueFormat="YYYY-MM-DD HH:mm",
                        clearable=True,
                        w=200,
                    ),
                    dmc.TextInput(id="alerts-quiet-reason", label=_("Reason"), w=280),
                    dmc.Button(_("Start"), id="alerts-quiet-start", n_clicks=0),
                ],
                align="flex-end",
            ),
            dmc.Group(
                [
                    dmc.Select(id="alerts-quiet-mode", label=_("Quiet mode in force"), data=[], w=360),
                    dmc.Button(_("End now"), id="alerts-quiet-release", n_clicks=0, color="orange"),
                ],
                align="flex-end",
                mt="sm",
            ),
            html.Div(id="alerts-quiet-message"),
        ],
        className="section",
    )


@authz.page_layout(ROLES, denied=lambda: forbidden_page("alerts-forbidden"))
def layout(access: authz.Access, **_query: str) -> html.Div:
    tz = get_context().settings.tz
    day_to = today(tz)  # unlike the reports, the alert history includes today
    day_from = day_to - timedelta(days=DEFAULT_DAYS - 1)
    filters = dmc.Group(
        [
            _select(
                "alerts-site",
                _("Account"),
                [{"value": s.id, "label": f"{s.id} {s.name}"} for s in access.sites()],
            ),
            _select("alerts-feeder", _("Feeder"), feeder_options(access)),
            _select("alerts-rule", _("Rule"), _options(RULES)),
            _select("alerts-severity", _("Severity"), _options(SEVERITIES)),
            dmc.Select(id="alerts-state", label=_("State"), data=_options(STATES), value="open", w=200),
        ],
        align="flex-end",
    )
    return html.Div(
        [
            html.H1(_("Alerts")),
            dcc.Store(id="alerts-acked", data=0),
            dcc.Store(id="alerts-quieted", data=0),
            dcc.Interval(id="alerts-tick", interval=60_000),
            html.Section(
                [
                    html.H2(_("Alerts and incidents")),
                    filters,
                    html.Div(id="alerts-message"),
                    grid(
                        "alerts-grid",
                        alert_columns(),
                        rowSelection={"mode": "singleRow"},
                    ),
                ],
                className="section",
            ),
            html.Section(
                [
                    html.H2(_("Acknowledge an incident")),
                    html.P(
                        _("Acknowledging stops reminders and escalation; say what is being done."),
                        className="hint",
                    ),
                    dmc.Group(
                        [
                            dmc.Select(id="alerts-ack-incident", label=_("Incident"), data=[], w=220),
                            dmc.Textarea(id="alerts-ack-comment", label=_("Comment"), w=420, autosize=True),
                            dmc.Button(_("Acknowledge"), id="alerts-ack-button", n_clicks=0),
                        ],
                        align="flex-end",
                    ),
                    html.Div(id="alerts-ack-message"),
                ],
                className="section",
            ),
            quiet_section(access) if access.role in STAFF else None,
            html.Section(
                [
                    html.H2(_("History and logs")),
                    period_picker("alerts-period", day_from, day_to, today(tz)),
                    html.Div(id="alerts-log-message"),
                    html.H3(_("Resolved alerts")),
                    grid("alerts-history-grid", alert_columns()),
                    html.H3(_("Planned-outage notices")),
                    grid("alerts-notice-grid", notice_columns()),
                    html.H3(_("Delivery log")),
                    grid("alerts-delivery-grid", delivery_columns()),
                ],
                className="section",
            ),
        ],
        className="page alerts",
    )


# -- shaping -----------------------------------------------------------------------------------
def alert_rows(records: list[view.AlertRecord], names: dict[str, str], tz: str) -> list[dict[str, Any]]:
    rows = []
    for r in records:
        minutes = (r.ended_ms - r.started_ms) / 60000 if r.ended_ms is not None else None
        state = label(STATES, r.state)
        if r.suppressed == "planned":
            state += " (" + _("planned, not paged") + ")"
        rule = label(RULES, r.rule) + (f" {r.phase}" if r.phase else "")
        rows.append(
            {
                "incident": r.incident_id,
                "site": r.site_id,
                "name": names.get(r.site_id, ""),
                "rule": rule,
                "severity": label(SEVERITIES, r.severity),
                "state": state,
                "started": when(r.started_ms, tz),
                "ended": when(r.ended_ms, tz) if r.ended_ms is not None else "",
                "minutes": num(minutes, 1) if minutes is not None else "",
                "acked_by": r.acked_by or "",
                "comment": r.ack_comment or "",
                "detail": r.detail or "",
            }
        )
    return rows


def notice_rows(notices: list[Any], tz: str) -> list[dict[str, Any]]:
    rows = []
    for n in notices:
        what = label(NOTICE_KINDS, n.kind)
        if n.kind in ("ahead", "confirm"):
            count, unit = view.offset_parts(n.offset_s)
            lead = {
                "d": _("%(n)s days ahead", n=num(count)),
                "h": _("%(n)s h ahead", n=num(count)),
                "min": _("%(n)s min ahead", n=num(count)),
            }[unit]
            what = f"{what} ({lead})"
        rows.append(
            {
                "due": when(n.due_ms, tz),
                "state": label(NOTICE_STATES, n.state),
                "notice": what,
                "planned": _("%(id)s v%(version)s", id=n.window_id, version=n.version),
                "site": n.site_id,
                "contact": n.contact_name,
                "channel": n.channel,
                "attempts": num(n.attempts),
                "sent": when(n.sent_ms, tz) if n.sent_ms else "",
                "error": (n.last_error or "") if n.state != "sent" else "",
            }
        )
    return rows


def delivery_rows(records: list[view.DeliveryRecord], tz: str) -> list[dict[str, Any]]:
    return [
        {
            "at": when(d.at_ms, tz, seconds=True),
            "incident": d.incident_id,
            "kind": label(DELIVERY_KINDS, d.kind),
            "channel": d.channel,
            "site": d.site_id or "",
            "ok": _("yes") if d.ok else _("no"),
            "detail": d.detail,
        }
        for d in records
    ]


def readable(access: authz.Access) -> list[str] | None:
    """None (every site) for operators and admins; the manager's accounts otherwise."""
    return None if access.role in STAFF else access.site_ids()


def chosen_sites(access: authz.Access, site: object, feeder: object) -> list[str] | None:
    """The sites the filters pick, checked against the session (Forbidden if not theirs)."""
    picked: set[str] | None = None
    if site:
        picked = {access.site(site).id}
    if feeder:
        feeder_site, accounts = access.feeder(feeder)
        # A manager gets their accounts on it; staff every account on it and the feeder itself.
        on_feeder = {a.id for a in accounts} | ({feeder_site.id} if access.role in STAFF else set())
        picked = on_feeder if picked is None else picked & on_feeder
    return None if picked is None else sorted(picked)


def _names() -> dict[str, str]:
    return {s.id: s.name for s in get_context().registry.sites()}


# -- callbacks ---------------------------------------------------------------------------------
@authz.callback(
    Output("alerts-grid", "rowData"),
    Output("alerts-ack-incident", "data"),
    Output("alerts-message", "children"),
    Input("alerts-site", "value"),
    Input("alerts-feeder", "value"),
    Input("alerts-rule", "value"),
    Input("alerts-severity", "value"),
    Input("alerts-state", "value"),
    Input("alerts-acked", "data"),
    Input("alerts-quieted", "data"),
    Input("alerts-tick", "n_intervals"),
    roles=ROLES,
    denied=lambda: ([], [], message(forbidden_text(), "alerts-forbidden")),
)
def update_alerts(
    access: authz.Access,
    site: object,
    feeder: object,
    rule: object,
    severity: object,
    state: object,
    _acked: object,
    _quieted: object,
    _tick: object,
) -> tuple[list[dict[str, Any]], list[dict[str, str]], Any]:
    ctx = get_context()
    allowed = readable(access)
    picked = chosen_sites(access, site, feeder)
    try:
        records = view.alert_records(
            ctx.registry,
            allowed,
            sites=picked,
            rule=rule if isinstance(rule, str) and rule else None,
            severity=severity if isinstance(severity, str) and severity else None,
            state=state if isinstance(state, str) and state in view.STATE_FILTERS else "open",
        )
        ackable = view.ackable_incidents(view.alert_records(ctx.registry, allowed), allowed, ctx.registry)
    except DB_ERRORS:
        log.exception("alerts: reading the alert tables failed")
        return [], [], message(_(STORE_ERROR))
    options = [{"value": str(i), "label": _("Incident %(id)s", id=i)} for i in ackable]
    note = None if records else message(_("No alerts match."))
    return alert_rows(records, _names(), ctx.settings.tz), options, note


@authz.callback(
    Output("alerts-ack-incident", "value"),
    Input("alerts-grid", "selectedRows"),
    roles=ROLES,
    prevent_initial_call=True,
    denied=lambda: None,
)
def pick_incident(access: authz.Access, selected: object) -> Any:
    """Choosing a row in the grid fills in its incident (still checked when acknowledging)."""
    if isinstance(selected, list) and selected and isinstance(selected[0], dict):
        incident = selected[0].get("incident")
        if isinstance(incident, int) and not isinstance(incident, bool):
            return str(incident)
    return dash.no_update


@authz.callback(
    Output("alerts-ack-message", "children"),
    Output("alerts-acked", "data"),
    Input("alerts-ack-button", "n_clicks"),
    State("alerts-ack-incident", "value"),
    State("alerts-ack-comment", "value"),
    State("alerts-acked", "data"),
    roles=ROLES,
    prevent_initial_call=True,
    denied=lambda: (message(forbidden_text(), "alerts-ack-refused"), dash.no_update),
)
def acknowledge(
    access: authz.Access, clicks: object, incident: object, comment: object, acked: object
) -> tuple[Any, Any]:
    """The incident id comes from the browser: it is looked up and checked against the session."""
    if not clicks:
        return dash.no_update, dash.no_update
    try:
        incident_id = int(str(incident))
    except ValueError:
        return message(_("Choose an incident.")), dash.no_update
    text = comment.strip() if isinstance(comment, str) else ""
    if not text:
        return message(_("Say what is being done (a comment is required).")), dash.no_update
    ctx = get_context()
    try:
        sites = view.incident_sites(ctx.registry, incident_id)
        if not view.may_acknowledge(sites, readable(access)):
            log.warning("user %s refused acknowledging incident %s", access.user.name, incident_id)
            raise authz.Forbidden("incident not found or not permitted")
        view.engine_for(ctx).acknowledge(incident_id, access.user.name, text)
    except authz.Forbidden:
        raise
    except DB_ERRORS as exc:
        log.warning("acknowledging incident %s failed: %s", incident_id, exc)
        return message(_("Incident %(id)s cannot be acknowledged (already resolved?).", id=incident_id)), (
            dash.no_update
        )
    log.info("incident %s acknowledged by %s", incident_id, access.user.name)
    done = message(_("Incident %(id)s acknowledged.", id=incident_id), "alerts-ack-done")
    return done, (acked if isinstance(acked, int) else 0) + 1


@authz.callback(
    Output("alerts-history-grid", "rowData"),
    Output("alerts-notice-grid", "rowData"),
    Output("alerts-delivery-grid", "rowData"),
    Output("alerts-log-message", "children"),
    Input("alerts-period", "start_date"),
    Input("alerts-period", "end_date"),
    Input("alerts-acked", "data"),
    roles=ROLES,
    denied=lambda: ([], [], [], message(forbidden_text(), "alerts-forbidden")),
)
def update_logs(
    access: authz.Access, start: object, end: object, _acked: object
) -> tuple[list[Any], list[Any], list[Any], Any]:
    try:
        day_from, day_to = parse_period(start, end)
    except PeriodError as exc:
        return [], [], [], message(str(exc))
    ctx = get_context()
    tz = ctx.settings.tz
    from_ms, to_ms = view.day_bounds_ms(day_from, day_to, tz)
    allowed = readable(access)
    try:
        history = view.alert_records(
            ctx.registry, allowed, state=RESOLVED, started_from_ms=from_ms, started_to_ms=to_ms
        )
        notices = view.notice_records(ctx.registry, allowed, from_ms, to_ms)
        deliveries = view.delivery_records(ctx.registry, allowed, from_ms, to_ms)
    except DB_ERRORS:
        log.exception("alerts: reading the logs failed")
        return [], [], [], message(_(STORE_ERROR))
    return (
        alert_rows(history, _names(), tz),
        notice_rows(notices, tz),
        delivery_rows(deliveries, tz),
        None,
    )


def _mode_text(mode: Any, tz: str) -> str:
    scope = _("Storm mode") if mode.scope == "storm" else _("Maintenance mode") + f" {mode.target}"
    return _(
        "%(scope)s until %(until)s: %(reason)s (%(by)s)",
        scope=scope,
        until=when(mode.until_ms, tz),
        reason=mode.reason,
        by=mode.created_by,
    )


@authz.callback(
    Output("alerts-quiet-list", "children"),
    Output("alerts-quiet-mode", "data"),
    Input("alerts-quieted", "data"),
    roles=STAFF,
    denied=lambda: (None, []),
)
def update_quiet(access: authz.Access, _quieted: object) -> tuple[Any, list[dict[str, str]]]:
    ctx = get_context()
    try:
        modes = view.active_modes(ctx.registry, int(time.time() * 1000))
    except DB_ERRORS:
        return message(_(STORE_ERROR)), []
    if not modes:
        return message(_("No quiet mode is in force."), "alerts-quiet-none"), []
    tz = ctx.settings.tz
    items = [html.Li(_mode_text(m, tz)) for m in modes]
    options = [{"value": str(m.id), "label": _mode_text(m, tz)} for m in modes]
    return html.Ul(items, id="alerts-quiet-items"), options


@authz.callback(
    Output("alerts-quiet-message", "children"),
    Output("alerts-quieted", "data"),
    Input("alerts-quiet-start", "n_clicks"),
    State("alerts-quiet-scope", "value"),
    State("alerts-quiet-target", "value"),
    State("alerts-quiet-until", "value"),
    State("alerts-quiet-reason", "value"),
    State("alerts-quieted", "data"),
    roles=STAFF,
    prevent_initial_call=True,
    denied=lambda: (message(forbidden_text()), dash.no_update),
)
def start_quiet(
    access: authz.Access,
    clicks: object,
    scope: object,
    target: object,
    until: object,
    reason: object,
    quieted: object,
) -> tuple[Any, Any]:
    if not clicks:
        return dash.no_update, dash.no_update
    ctx = get_context()
    if scope not in view.QUIET_SCOPES:
        return message(_("Choose storm mode or a maintenance mode.")), dash.no_update
    name = ""
    if scope != "storm":
        kinds = {"site": "account", "feeder": "feeder"}
        ids = {s.id for s in ctx.registry.sites(kinds[str(scope)])}
        if not isinstance(target, str) or target not in ids:
            return message(_("Choose the account or feeder under maintenance.")), dash.no_update
        name = target
    until_ms = view.parse_local(until, ctx.settings.tz)
    now_ms = int(time.time() * 1000)
    if until_ms is None or until_ms <= now_ms:
        return message(_("Choose an end time in the future.")), dash.no_update
    text = reason.strip() if isinstance(reason, str) else ""
    if not text:
        return message(_("Give a reason; it is shown in the banner and the log.")), dash.no_update
    try:
        mode_id = view.engine_for(ctx).quiet(str(scope), name, until_ms, text[:300], access.user.name)
    except DB_ERRORS as exc:
        log.warning("quiet mode refused: %s", exc)
        return message(_("The quiet mode could not be started.")), dash.no_update
    log.info("quiet mode %s (%s %s) started by %s", mode_id, scope, name, access.user.name)
    done = message(_("Quiet mode %(id)s started.", id=mode_id), "alerts-quiet-done")
    return done, (quieted if isinstance(quieted, int) else 0) + 1


@authz.callback(
    Output("alerts-quiet-message", "children", allow_duplicate=True),
    Output("alerts-quieted", "data", allow_duplicate=True),
    Input("alerts-quiet-release", "n_clicks"),
    State("alerts-quiet-mode", "value"),
    State("alerts-quieted", "data"),
    roles=STAFF,
    prevent_initial_call=True,
    denied=lambda: (message(forbidden_text()), dash.no_update),
)
def release_quiet(access: authz.Access, clicks: object, mode: object, quieted: object) -> tuple[Any, Any]:
    if not clicks:
        return dash.no_update, dash.no_update
    try:
        mode_id = int(str(mode))
    except ValueError:
        return message(_("Choose the quiet mode to end.")), dash.no_update
    ctx = get_context()
    try:
        ended = view.end_quiet_mode(ctx.registry, mode_id, int(time.time() * 1000))
    except DB_ERRORS:
        return message(_(STORE_ERROR)), dash.no_update
    if not ended:
        return message(_("That quiet mode is no longer in force.")), dash.no_update
    log.info("quiet mode %s ended by %s", mode_id, access.user.name)
    done = message(
        _("Quiet mode %(id)s ended; held pages go out at the alert service's next pass.", id=mode_id),
        "alerts-quiet-done",
    )
    return done, (quieted if isinstance(quieted, int) else 0) + 1
