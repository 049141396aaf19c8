"""Administration: users (``/admin``). Create, change role and accounts, reset a password,
disable or enable, issue and revoke API tokens; every change is audited.

The user being changed is named by the browser, which is fine for an administrator (they may
change anyone) but never trusted further: every name is looked up in the registry. An
administrator cannot disable or demote themselves, so the last way in is not locked by a slip.
"""

from __future__ import annotations

import logging
from typing import Any

import dash
import dash_mantine_components as dmc
from dash import Input, Output, State, dcc, html

from core.errors import PqmonError
from core.lineproto import valid_ident
from core.registry import ROLES, User
from dashboard import authz
from dashboard.i18n import N_, _
from dashboard.layout import role_name
from dashboard.pages.admin import (
    account_options,
    accounts,
    failure,
    grid,
    header,
    refused,
    registry,
    stamp,
    success,
)

log = logging.getLogger(__name__)

dash.register_page(__name__, path="/admin", title="pqmon", name="admin", nav=N_("Administration"), order=90)

MIN_PASSWORD = 8
DONE_STORES = ("adm-create-done", "adm-save-done", "adm-reset-done", "adm-toggle-done", "adm-token-done")


def role_options() -> list[dict[str, str]]:
    return [{"value": r, "label": role_name(r)} for r in ROLES]


def columns() -> list[dict[str, Any]]:
    return [
        {"field": "name", "headerName": _("User")},
        {"field": "role", "headerName": _("Role")},
        {"field": "sites", "headerName": _("Assigned accounts"), "flex": 2},
        {"field": "status", "headerName": _("Status")},
        {"field": "tokens", "headerName": _("API tokens"), "type": "numericColumn"},
        {"field": "sessions", "headerName": _("Sessions"), "type": "numericColumn"},
    ]


def user_rows() -> list[dict[str, Any]]:
    tokens = accounts().token_counts()
    return [
        {
            "name": u.name,
            "role": role_name(u.role),
            "sites": ", ".join(sorted(u.sites)),
            "status": _("disabled") if u.disabled else _("active"),
            "tokens": tokens.get(u.name, 0),
            "sessions": accounts().session_count(u.name),
        }
        for u in registry().users()
    ]


def user_options() -> list[dict[str, str]]:
    return [
        {"value": u.name, "label": u.name + (" (" + _("disabled") + ")" if u.disabled else "")}
        for u in registry().users()
    ]


def find_user(name: object) -> User | None:
    """Any user (disabled ones too) by the name the browser sent, or None."""
    if not isinstance(name, str):
        return None
    return next((u for u in registry().users() if u.name == name), None)


def site_list(value: object) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else []


@authz.page_layout(authz.ADMIN)
def layout(access: authz.Access, **_query: str) -> html.Div:
    sites = account_options()
    return html.Div(
        [
            *header("users", _("Users")),
            grid("adm-users-grid", columns(), user_rows(), rowSelection={"mode": "singleRow"}),
            *[dcc.Store(id=store_id, data=0) for store_id in DONE_STORES],
            dmc.SimpleGrid(
                [
                    dmc.Paper(
                        [
                            html.H2(_("New user")),
                            dmc.TextInput(
                                id="adm-new-name", label=_("User name"), inputProps={"maxLength": 64}
                            ),
                            dmc.Select(
                                id="adm-new-role", label=_("Role"), data=role_options(), value="customer"
                            ),
                            dmc.PasswordInput(id="adm-new-password", label=_("Password")),
                            dmc.MultiSelect(
                                id="adm-new-sites",
                                label=_("Assigned accounts"),
                                description=_(
                                    "Managers and customers see only these; administrators and operators "
                                    "see every account."
                                ),
                                data=sites,
                                value=[],
                                searchable=True,
                                clearable=True,
                            ),
                            dmc.Button(_("Create user"), id="adm-create", mt="sm"),
                            html.Div(id="adm-create-msg"),
                        ],
                        p="md",
                        withBorder=True,
                    ),
                    dmc.Paper(
                        [
                            html.H2(_("Change a user")),
                            dmc.Select(
                                id="adm-edit-user",
                                label=_("User"),
                                data=user_options(),
                                searchable=True,
                            ),
                            html.Div(id="adm-edit-status"),
                            dmc.Select(id="adm-edit-role", label=_("Role"), data=role_options()),
                            dmc.MultiSelect(
                                id="adm-edit-sites",
                                label=_("Assigned accounts"),
                                data=sites,
                                value=[],
                                searchable=True,
                                clearable=True,
                            ),
                            dmc.Button(_("Save role and accounts"), id="adm-save", mt="sm"),
                            html.Div(id="adm-save-msg"),
                            dmc.PasswordInput(id="adm-reset-password", label=_("New password"), mt="md"),
                            dmc.Button(
                                _("Set password (ends the user's sessions)"),
                                id="adm-reset",
                                mt="sm",
                                variant="outline",
                            ),
                            html.Div(id="adm-reset-msg"),
                            dmc.Group(
                                [
                                    dmc.Button(
                                        _("Disable"), id="adm-disable", color="red", variant="outline"
                                    ),
                                    dmc.Button(_("Enable"), id="adm-enable", variant="outline"),
                                ],
                                mt="md",
                            ),
                            html.Div(id="adm-toggle-msg"),
                            dmc.TextInput(
                                id="adm-token-label",
                                label=_("API token label"),
                                placeholder=_("what the token is for"),
                                inputProps={"maxLength": 100},
                                mt="md",
                            ),
                            dmc.Group(
                                [
                                    dmc.Button(_("Issue API token"), id="adm-token", variant="outline"),
                                    dmc.Button(
                                        _("Revoke all API tokens"),
                                        id="adm-revoke",
                                        color="red",
                                        variant="outline",
                                    ),
                                ],
                                mt="sm",
                            ),
                            html.Div(id="adm-token-msg"),
                        ],
                        p="md",
                        withBorder=True,
                    ),
                ],
                cols={"base": 1, "md": 2},
                mt="md",
            ),
        ],
        className="page admin",
    )


def _error(exc: PqmonError) -> Any:
    return failure(_("Nothing was changed: %(reason)s", reason=str(exc)))


@authz.callback(
    Output("adm-create-msg", "children"),
    Output("adm-create-done", "data"),
    Output("adm-new-password", "value"),
    Input("adm-create", "n_clicks"),
    State("adm-new-name", "value"),
    State("adm-new-role", "value"),
    State("adm-new-password", "value"),
    State("adm-new-sites", "value"),
    roles=authz.ADMIN,
    denied=lambda: (refused(), dash.no_update, ""),
    prevent_initial_call=True,
)
def create_user(
    access: authz.Access, _clicks: object, name: object, role: object, password: object, sites: object
) -> tuple[Any, Any, str]:
    name = name.strip() if isinstance(name, str) else ""
    if not valid_ident(name):
        return failure(_("A user name has 1 to 64 of A-Z a-z 0-9 _ . -")), dash.no_update, ""
    if role not in ROLES:
        return failure(_("Choose a role.")), dash.no_update, ""
    if not isinstance(password, str) or len(password) < MIN_PASSWORD:
        return (
            failure(_("The password must have at least %(n)s characters.", n=MIN_PASSWORD)),
            dash.no_update,
            "",
        )
    chosen = site_list(sites)
    if role == "customer" and not chosen:
        return failure(_("A customer needs at least one account.")), dash.no_update, ""
    if find_user(name) is not None:
        return failure(_("A user named %(name)s exists already.", name=name)), dash.no_update, ""
    try:
        accounts().create_user(access.user.name, name, str(role), password, chosen)
    except PqmonError as exc:
        return _error(exc), dash.no_update, ""
    log.info("admin %s created user %s (%s)", access.user.name, name, role)
    return success(_("User %(name)s created.", name=name), "adm-create-ok"), stamp(), ""


@authz.callback(
    Output("adm-edit-role", "value"),
    Output("adm-edit-sites", "value"),
    Output("adm-edit-status", "children"),
    Input("adm-edit-user", "value"),
    Input("adm-toggle-done", "data"),
    roles=authz.ADMIN,
    denied=lambda: (None, [], refused()),
    prevent_initial_call=True,
)
def load_user(access: authz.Access, name: object, _done: object) -> tuple[Any, list[str], Any]:
    user = find_user(name)
    if user is None:
        return None, [], None
    status = _("disabled") if user.disabled else _("active")
    return user.role, sorted(user.sites), dmc.Text(_("Status: %(status)s", status=status), size="sm")


@authz.callback(
    Output("adm-save-msg", "children"),
    Output("adm-save-done", "data"),
    Input("adm-save", "n_clicks"),
    State("adm-edit-user", "value"),
    State("adm-edit-role", "value"),
    State("adm-edit-sites", "value"),
    roles=authz.ADMIN,
    denied=lambda: (refused(), dash.no_update),
    prevent_initial_call=True,
)
def save_user(
    access: authz.Access, _clicks: object, name: object, role: object, sites: object
) -> tuple[Any, Any]:
    user = find_user(name)
    if user is None:
        return failure(_("Choose a user.")), dash.no_update
    if role not in ROLES:
        return failure(_("Choose a role.")), dash.no_update
    if user.name == access.user.name and role != user.role:
        return failure(_("You cannot change your own role.")), dash.no_update
    chosen = site_list(sites)
    if role == "customer" and not chosen:
        return failure(_("A customer needs at least one account.")), dash.no_update
    try:
        accounts().change_user(access.user.name, user.name, str(role), chosen)
    except PqmonError as exc:
        return _error(exc), dash.no_update
    return success(_("User %(name)s saved.", name=user.name)), stamp()


@authz.callback(
    Output("adm-reset-msg", "children"),
    Output("adm-reset-done", "data"),
    Output("adm-reset-password", "value"),
    Input("adm-reset", "n_clicks"),
    State("adm-edit-user", "value"),
    State("adm-reset-password", "value"),
    roles=authz.ADMIN,
    denied=lambda: (refused(), dash.no_update, ""),
    prevent_initial_call=True,
)
def reset_password(
    access: authz.Access, _clicks: object, name: object, password: object
) -> tuple[Any, Any, str]:
    user = find_user(name)
    if user is None:
        return failure(_("Choose a user.")), dash.no_update, ""
    if not isinstance(password, str) or len(password) < MIN_PASSWORD:
        return (
            failure(_("The password must have at least %(n)s characters.", n=MIN_PASSWORD)),
            dash.no_update,
            "",
        )
    try:
        accounts().set_password(access.user.name, user.name, password)
    except PqmonError as exc:
        return _error(exc), dash.no_update, ""
    return success(_("Password of %(name)s set; their sessions have ended.", name=user.name)), stamp(), ""


@authz.callback(
    Output("adm-toggle-msg", "children"),
    Output("adm-toggle-done", "data"),
    Input("adm-disable", "n_clicks"),
    Input("adm-enable", "n_clicks"),
    State("adm-edit-user", "value"),
    roles=authz.ADMIN,
    denied=lambda: (refused(), dash.no_update),
    prevent_initial_call=True,
)
def toggle_user(access: authz.Access, _disable: object, _enable: object, name: object) -> tuple[Any, Any]:
    user = find_user(name)
    if user is None:
        return failure(_("Choose a user.")), dash.no_update
    disable = dash.ctx.triggered_id == "adm-disable"
    if disable and user.name == access.user.name:
        return failure(_("You cannot disable your own account.")), dash.no_update
    accounts().set_disabled(access.user.name, user.name, disable)
    if disable:
        text = _("User %(name)s disabled: sessions ended, API tokens revoked.", name=user.name)
    else:
        text = _("User %(name)s enabled.", name=user.name)
    return success(text), stamp()


@authz.callback(
    Output("adm-token-msg", "children"),
    Output("adm-token-done", "data"),
    Input("adm-token", "n_clicks"),
    Input("adm-revoke", "n_clicks"),
    State("adm-edit-user", "value"),
    State("adm-token-label", "value"),
    roles=authz.ADMIN,
    denied=lambda: (refused(), dash.no_update),
    prevent_initial_call=True,
)
def tokens(
    access: authz.Access, _issue: object, _revoke: object, name: object, label: object
) -> tuple[Any, Any]:
    user = find_user(name)
    if user is None:
        return failure(_("Choose a user.")), dash.no_update
    if dash.ctx.triggered_id == "adm-revoke":
        count = accounts().revoke_user_tokens(access.user.name, user.name)
        return success(_("%(count)s API token(s) of %(name)s revoked.", count=count, name=user.name)), stamp()
    if user.disabled:
        return failure(_("%(name)s is disabled; enable the user first.", name=user.name)), dash.no_update
    try:
        raw = accounts().grant_token(access.user.name, user.name, label if isinstance(label, str) else "")
    except PqmonError as exc:
        return _error(exc), dash.no_update
    return (
        dmc.Alert(
            [
                dmc.Text(_("API token of %(name)s; it is shown only now:", name=user.name)),
                dmc.Code(raw, id="adm-token-value", block=True),
                dmc.Text(_("Send it as the header: Authorization: Bearer <token>"), size="sm"),
            ],
            color="blue",
        ),
        stamp(),
    )


@authz.callback(
    Output("adm-users-grid", "rowData"),
    Output("adm-edit-user", "data"),
    *[Input(store_id, "data") for store_id in DONE_STORES],
    roles=authz.ADMIN,
    denied=lambda: ([], []),
    prevent_initial_call=True,
)
def refresh(access: authz.Access, *_done: object) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    return user_rows(), user_options()
