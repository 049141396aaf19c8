"""The page shell: navigation bar (built from the page registry and the user's role)."""

from __future__ import annotations

import dash
from dash import dcc, html
from dash.development.base_component import Component

from core.registry import User
from dashboard.auth import current_user
from dashboard.i18n import t


def nav_links(user: User) -> list[Component]:
    """Links to the registered pages that declare ``nav=True`` and allow the user's role."""
    links: list[Component] = []
    for page in dash.page_registry.values():
        if page.get("nav") and user.role in page.get("roles", ()):
            links.append(dcc.Link(t(page["nav_key"]), href=page["relative_path"], className="nav-link"))
    return links


def navbar(user: User | None) -> html.Nav:
    if user is None:
        return html.Nav(className="navbar")
    return html.Nav(
        [
            html.Span(t("app.title"), className="brand"),
            html.Div(nav_links(user), className="nav-links"),
            html.Div(
                [
                    html.Span(
                        t("nav.user", name=user.name, role=t(f"role.{user.role}")),
                        id="nav-user",
                        className="nav-user",
                    ),
                    # A plain anchor: logout is a Flask route, not a Dash page.
                    html.A(t("nav.logout"), href="/logout", id="nav-logout", className="nav-link"),
                ],
                className="nav-right",
            ),
        ],
        className="navbar",
    )


def shell() -> html.Div:
    """app.layout: called per request, so the bar shows who is logged in."""
    return html.Div([navbar(current_user()), html.Main(dash.page_container, className="content")])
