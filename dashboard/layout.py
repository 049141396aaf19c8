"""The page shell: header (pages the user's role may open, open alerts, language, user), the
quiet-mode banner, and the page. Built per request, so it shows who is logged in."""

from __future__ import annotations

import time
from typing import Any

import dash
import dash_mantine_components as dmc
from dash import Input, Output, State, dcc, html
from dash.development.base_component import Component

from analysis.alerts.state import active_quiet_modes, count_open_alerts
from core.registry import User
from core.settings import LANGS
from dashboard import authz
from dashboard.auth import current_user
from dashboard.context import get_context
from dashboard.i18n import _, lang, when

ROLE_NAMES = {
    "admin": lambda: _("administrator"),
    "manager": lambda: _("account manager"),
    "operator": lambda: _("operator"),
    "customer": lambda: _("customer"),
}


def role_name(role: str) -> str:
    return ROLE_NAMES[role]() if role in ROLE_NAMES else role


def nav_links(user: User) -> list[Component]:
    """Links to the registered pages that declare ``nav`` and whose rule allows the user."""
    links: list[Component] = []
    for page in sorted(dash.page_registry.values(), key=lambda p: p.get("order") or 0):
        rule = authz.rule_of(page.get("layout"))
        if page.get("nav") and rule is not None and rule.allows(user):
            links.append(dcc.Link(_(page["nav"]), href=page["relative_path"], className="nav-link"))
    return links


def open_alert_count(user: User) -> int:
    registry = get_context().registry
    sites = None if user.role in authz.STAFF else registry.visible_site_ids(user)
    return count_open_alerts(registry._session, sites)


def quiet_banner() -> Any:
    ctx = get_context()
    modes = active_quiet_modes(ctx.registry._session, int(time.time() * 1000))
    if not modes:
        return None
    lines = []
    for m in modes:
        scope = _("Storm mode") if m.scope == "storm" else _("Maintenance mode") + f" {m.target}"
        until = when(m.until_ms, ctx.settings.tz)
        lines.append(
            html.Div(_("%(scope)s until %(until)s: %(reason)s", scope=scope, until=until, reason=m.reason))
        )
    return dmc.Alert(lines, color="orange", id="quiet-banner", className="quiet-banner")


def navbar(user: User | None) -> Component:
    if user is None:
        return html.Nav(className="navbar")
    alerts = None
    if user.role != "customer":  # customers have no alert page; their portal speaks plainly
        count = open_alert_count(user)
        alerts = dcc.Link(
            [_("Open alerts"), dmc.Badge(str(count), color="red" if count else "gray", ml=6)],
            href="/alerts",
            id="nav-alerts",
            className="nav-link",
        )
    return html.Nav(
        [
            html.Span("pqmon", className="brand"),
            html.Div(nav_links(user), className="nav-links"),
            html.Div(
                [
                    alerts,
                    dmc.SegmentedControl(
                        id="nav-lang",
                        data=[{"value": "zh-CN", "label": "中文"}, {"value": "en", "label": "EN"}],
                        value=lang(),  # what the page is shown in, however it was chosen
                        size="xs",
                    ),
                    html.Span(
                        _("%(name)s (%(role)s)", name=user.name, role=role_name(user.role)),
                        id="nav-user",
                        className="nav-user",
                    ),
                    # A plain anchor: logout is a Flask route, not a Dash page.
                    html.A(_("Log out"), href="/logout", id="nav-logout", className="nav-link"),
                ],
                className="nav-right",
            ),
        ],
        className="navbar",
    )


def shell() -> Component:
    """app.layout: called per request."""
    user = current_user()
    return dmc.MantineProvider(
        html.Div(
            [
                dcc.Location(id="nav-location", refresh=True),
                navbar(user),
                html.Main([quiet_banner() if user else None, dash.page_container], className="content"),
            ]
        ),
        theme={"primaryColor": "blue", "fontFamily": 'system-ui, "Segoe UI", "Noto Sans CJK SC", sans-serif'},
    )


def register_shell_callbacks(app: dash.Dash) -> None:
    """Callbacks of the shell (not of a page), registered on the app being built."""

    @authz.callback(
        Output("nav-location", "href"),
        Input("nav-lang", "value"),
        State("nav-location", "href"),
        prevent_initial_call=True,
        denied=lambda: dash.no_update,
        app=app,
    )
    def choose_language(access: authz.Access, chosen: object, href: object) -> Any:
        """The choice is kept on the user's row, so it follows them to every device."""
        if chosen not in LANGS or chosen == access.user.lang:
            return dash.no_update
        get_context().registry.set_user_lang(access.user.name, str(chosen))
        return href if isinstance(href, str) else "/"
