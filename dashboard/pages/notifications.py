"""My notifications (``/notifications``): a user's own alert subscriptions.

Whose subscriptions are shown, added and removed is the session's user, never a name from
the browser; the accounts offered are the user's own, and the subscription rules refuse any
other (analysis.alerts.subscriptions.check).
"""

from __future__ import annotations

from typing import Any

import dash
import dash_ag_grid as dag
import dash_mantine_components as dmc
from dash import Input, Output, State, ctx, html

from analysis.alerts.subscriptions import (
    CHANNELS,
    EMAIL,
    QUIET,
    SEVERITIES,
    subscribe,
    subscription,
    subscriptions,
    unsubscribe,
)
from core.errors import PqmonError
from core.registry import ROLES
from dashboard import authz
from dashboard.context import get_context
from dashboard.i18n import N_, _
from dashboard.widgets import grid_locale, message

dash.register_page(
    __name__, path="/notifications", title="pqmon", name="notifications", nav=N_("My notifications"), order=25
)

CHANNEL_LABELS = {
    "email": N_("E-mail"),
    "webhook": N_("Webhook"),
    "dingtalk": N_("DingTalk robot"),
    "wecom": N_("WeCom robot"),
}
SEVERITY_LABELS = {"minor": N_("minor"), "major": N_("major"), "critical": N_("critical")}


def columns() -> list[dict[str, Any]]:
    return [
        {"field": "id", "headerName": _("No."), "maxWidth": 90},
        {"field": "channel", "headerName": _("Channel")},
        {"field": "to", "headerName": _("To"), "flex": 2},
        {"field": "severity", "headerName": _("From severity")},
        {"field": "sites", "headerName": _("For accounts"), "flex": 2},
        {"field": "quiet", "headerName": _("Quiet hours")},
    ]


def rows(user: str) -> list[dict[str, Any]]:
    """The user's subscriptions; a robot's or webhook's URL without its query (it holds the token)."""
    return [
        {
            "id": s.id,
            "channel": _(CHANNEL_LABELS[s.channel]),
            "to": s.target if s.channel == "email" else s.target.split("?")[0],
            "severity": _(SEVERITY_LABELS[s.min_severity]),
            "sites": ", ".join(sorted(s.sites)) or _("all my accounts"),
            "quiet": s.quiet or "",
        }
        for s in subscriptions(get_context().registry, user)
    ]


@authz.page_layout(ROLES)
def layout(access: authz.Access, **_query: str) -> html.Div:
    return html.Div(
        [
            html.H1(_("My notifications")),
            dmc.Text(
                _(
                    "Besides the duty channels, alerts of your accounts can reach you directly. You get an"
                    " incident only when you may see every account in it. During quiet hours (local time)"
                    " anything below critical waits until they end; outages always go at once."
                ),
                size="sm",
                c="dimmed",
                mb="sm",
            ),
            dag.AgGrid(
                id="notif-grid",
                columnDefs=columns(),
                rowData=rows(access.user.name),
                columnSize="sizeToFit",
                dashGridOptions={"localeText": grid_locale(), "domLayout": "autoHeight"},
                className="ag-theme-alpine",
            ),
            html.Div(id="notif-msg"),
            dmc.SimpleGrid(
                [
                    dmc.Paper(
                        [
                            dmc.Title(_("Add a subscription"), order=4),
                            dmc.Select(
                                id="notif-channel",
                                label=_("Channel"),
                                data=[{"value": c, "label": _(CHANNEL_LABELS[c])} for c in CHANNELS],
                                value="email",
                            ),
                            dmc.TextInput(id="notif-to", label=_("E-mail address or robot URL")),
                            dmc.PasswordInput(
                                id="notif-secret", label=_("DingTalk signing secret (optional)")
                            ),
                            dmc.Select(
                                id="notif-severity",
                                label=_("From severity"),
                                data=[{"value": s, "label": _(SEVERITY_LABELS[s])} for s in SEVERITIES],
                                value="major",
                            ),
                            dmc.MultiSelect(
                                id="notif-sites",
                                label=_("Only these accounts (none: all my accounts)"),
                                data=access.site_ids(),
                                searchable=True,
                            ),
                            dmc.Group(
                                [
                                    dmc.TextInput(
                                        id="notif-quiet-from", label=_("Quiet from"), placeholder="22:00"
                                    ),
                                    dmc.TextInput(
                                        id="notif-quiet-to", label=_("Quiet until"), placeholder="07:00"
                                    ),
                                ],
                                grow=True,
                            ),
                            dmc.Button(_("Add"), id="notif-add", mt="sm"),
                        ],
                        p="md",
                        withBorder=True,
                    ),
                    dmc.Paper(
                        [
                            dmc.Title(_("Remove a subscription"), order=4),
                            dmc.NumberInput(id="notif-remove-id", label=_("No."), min=1),
                            dmc.Button(
                                _("Remove"), id="notif-remove", color="red", variant="outline", mt="sm"
                            ),
                        ],
                        p="md",
                        withBorder=True,
                    ),
                ],
                cols={"base": 1, "md": 2},
                mt="md",
            ),
        ],
        className="page notifications",
    )


def problem(channel: str, to: str, secret: str | None, severity: str, quiet: str | None) -> str | None:
    """What is wrong with the form, in the user's language (the rules refuse it again)."""
    if channel not in CHANNELS:
        return _("Choose a channel.")
    if channel == "email" and not EMAIL.match(to):
        return _("Enter an e-mail address.")
    if channel != "email" and not to.startswith(("https://", "http://")):
        return _("Enter the robot's or webhook's URL (http:// or https://).")
    if secret and channel != "dingtalk":
        return _("A signing secret is only for a DingTalk robot.")
    if severity not in SEVERITIES:
        return _("Choose a severity.")
    if quiet is not None and not QUIET.match(quiet):
        return _("Quiet hours are two times like 22:00 and 07:00.")
    return None


def _refused() -> tuple[Any, Any]:
    return dash.no_update, message(_("Not found or not permitted."))


@authz.callback(
    Output("notif-grid", "rowData"),
    Output("notif-msg", "children"),
    Input("notif-add", "n_clicks"),
    Input("notif-remove", "n_clicks"),
    State("notif-channel", "value"),
    State("notif-to", "value"),
    State("notif-secret", "value"),
    State("notif-severity", "value"),
    State("notif-sites", "value"),
    State("notif-quiet-from", "value"),
    State("notif-quiet-to", "value"),
    State("notif-remove-id", "value"),
    roles=ROLES,
    prevent_initial_call=True,
    denied=_refused,
)
def change(
    access: authz.Access,
    _add: object,
    _remove: object,
    channel: object,
    to: object,
    secret: object,
    severity: object,
    sites: object,
    quiet_from: object,
    quiet_to: object,
    remove_id: object,
) -> tuple[Any, Any]:
    registry = get_context().registry
    me = access.user.name
    if ctx.triggered_id == "notif-remove":
        found = subscription(registry, int(remove_id)) if isinstance(remove_id, int | float) else None
        if found is None or found.user != me:
            return _refused()  # another user's subscription is "not found" too
        unsubscribe(registry, found.id)
        get_context().accounts.audit(me, "subscription.remove", str(found.id))
        return rows(me), message(_("Subscription %(id)s removed.", id=found.id))
    quiet = None
    if quiet_from or quiet_to:
        quiet = f"{str(quiet_from or '').strip()}-{str(quiet_to or '').strip()}"
    chosen = [str(s) for s in sites] if isinstance(sites, list) else []
    fields = (str(channel or ""), str(to or "").strip(), str(secret) if secret else None, str(severity or ""))
    wrong = problem(*fields, quiet)
    if wrong:
        return dash.no_update, message(wrong)
    if not set(chosen) <= set(access.site_ids()):
        return _refused()
    try:
        new_id = subscribe(registry, me, fields[0], fields[1], fields[3], chosen, quiet, fields[2])
    except PqmonError:
        return _refused()
    get_context().accounts.audit(me, "subscription.add", str(new_id), channel=channel, sites=chosen)
    return rows(me), message(_("Subscription %(id)s added.", id=new_id))
