"""The one authorization layer of the dashboard: every way in declares who may use it.

Three kinds of entry reach data: Dash callbacks, page layouts and Flask routes (downloads,
the API). Each is registered through this module, which records a :class:`Rule` on it:
:func:`callback` for callbacks, :func:`page_layout` for layouts, :func:`route` for routes.
:func:`check_declared` runs when the app is built and refuses to start if any callback,
page or route lacks a rule, so a new one cannot be added and forgotten.

Inside, code reaches accounts only through :class:`Access`, built from the server-side
session, never from what the browser sent: ``access.site(x)`` answers the same for "no such
site" and "not yours", so ids cannot be probed.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import dash
from flask import Flask

from core.errors import ConfigError, PqmonError
from core.registry import ROLES, Site, User
from dashboard.auth import current_user
from dashboard.context import get_context

log = logging.getLogger(__name__)

RULE_ATTR = "_pqmon_rule"
STAFF = ("admin", "operator")
WORKSPACE = ("admin", "operator", "manager")  # everyone but customers
ADMIN = ("admin",)

# Dash's own endpoints, and why each is safe: the login guard keeps anonymous requests out of
# all of them; none of them returns account data by itself.
DASH_ENDPOINTS = {
    "/_dash-update-component": "runs callbacks; each callback declares its own rule",
    "/_dash-layout": "the page shell; pages declare their own rule",
    "/_dash-dependencies": "the callback graph (no data)",
    "/_dash-component-suites/<string:package_name>/<path:fingerprinted_path>": "bundled JS and CSS",
    "/_reload-hash": "hot-reload hash (no data)",
    "/_favicon.ico": "the icon",
    "_dash_assets.static": "the dashboard's CSS",
    "static": "Flask's static files (none are served)",
    "/": "the page shell; pages declare their own rule",
    "/<path:path>": "the page shell for any path; pages declare their own rule",
}


class AuthError(Exception):
    """Base of the two refusals."""


class NotAuthenticated(AuthError):
    pass


class Forbidden(AuthError):
    pass


@dataclass(frozen=True)
class Rule:
    """Who may use an entry point. ``public``: no login needed (the login form only)."""

    roles: frozenset[str]
    public: bool = False

    def allows(self, user: User | None) -> bool:
        return self.public or (user is not None and user.role in self.roles)


def rule_for(roles: Iterable[str] = ROLES, public: bool = False) -> Rule:
    unknown = set(roles) - set(ROLES)
    if unknown:
        raise ConfigError(f"unknown role(s) in an authorization rule: {', '.join(sorted(unknown))}")
    return Rule(frozenset(roles), public)


class Access:
    """What the session's user may touch, for one request."""

    def __init__(self, user: User) -> None:
        self.user = user
        self._registry = get_context().registry
        self._site_ids: list[str] | None = None
        self._sites: list[Site] | None = None

    @property
    def role(self) -> str:
        return self.user.role

    def site_ids(self) -> list[str]:
        """The key accounts this user may read."""
        if self._site_ids is None:
            self._site_ids = self._registry.visible_site_ids(self.user, kind="account")
        return self._site_ids

    def sites(self) -> list[Site]:
        if self._sites is None:
            allowed = set(self.site_ids())
            self._sites = [s for s in self._registry.sites("account") if s.id in allowed]
        return self._sites

    def site(self, site_id: object) -> Site:
        """The account, if this user may read it; Forbidden otherwise (also when unknown)."""
        if not isinstance(site_id, str) or site_id not in self.site_ids():
            log.warning("user %s refused site %.64r", self.user.name, site_id)
            raise Forbidden("site not found or not permitted")
        try:
            return self._registry.site(site_id)
        except PqmonError:
            raise Forbidden("site not found or not permitted") from None

    def feeder(self, feeder_id: object) -> tuple[Site, list[Site]]:
        """A feeder and the accounts on it this user may read; Forbidden if they may read none.

        Operators and admins see every feeder; a manager or customer only the feeders that
        supply one of their accounts, and only their own accounts on it.
        """
        if not isinstance(feeder_id, str):
            raise Forbidden("feeder not found or not permitted")
        accounts = [s for s in self.sites() if s.feeder_id == feeder_id]
        if not accounts and self.role not in STAFF:
            raise Forbidden("feeder not found or not permitted")
        try:
            feeder = self._registry.site(feeder_id)
        except PqmonError:
            raise Forbidden("feeder not found or not permitted") from None
        if feeder.kind != "feeder":
            raise Forbidden("feeder not found or not permitted")
        return feeder, accounts

    def require(self, roles: Iterable[str]) -> None:
        if self.role not in set(roles):
            raise Forbidden(f"role {self.role} may not do this")


def access_for(rule: Rule) -> Access:
    """The request's Access under ``rule``; raises NotAuthenticated or Forbidden."""
    user = current_user()
    if user is None:
        raise NotAuthenticated("not logged in")
    if not rule.allows(user):
        raise Forbidden(f"role {user.role} may not open this")
    return Access(user)


def callback(  # type: ignore[no-untyped-def]
    *dependencies: Any,
    roles: Iterable[str] = ROLES,
    denied: Callable[[], Any],
    app: dash.Dash | None = None,
    **kwargs: Any,
):
    """``dash.callback`` with a rule: the function gets an :class:`Access` first.

    ``denied()`` gives the outputs shown when the session may not run it, or when the
    function raises :class:`Forbidden` (a site id it was sent is not the user's). Pages
    register globally (Dash re-imports them per app); the shell passes its ``app``.
    """
    rule = rule_for(roles)

    def decorate(fn: Callable[..., Any]) -> Any:
        @functools.wraps(fn)
        def guarded(*args: Any) -> Any:
            try:
                return fn(access_for(rule), *args)
            except AuthError:
                return denied()

        setattr(guarded, RULE_ATTR, rule)
        register = app.callback if app is not None else dash.callback
        return register(*dependencies, **kwargs)(guarded)

    return decorate


def page_layout(roles: Iterable[str] = ROLES, denied: Callable[[], Any] | None = None):  # type: ignore[no-untyped-def]
    """A page's ``layout`` with a rule: it gets an :class:`Access` first, like a callback."""
    rule = rule_for(roles)

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def guarded(**params: Any) -> Any:
            try:
                return fn(access_for(rule), **params)
            except AuthError:
                if denied is None:
                    from dashboard.widgets import forbidden_page

                    return forbidden_page()
                return denied()

        setattr(guarded, RULE_ATTR, rule)
        return guarded

    return decorate


def route(target: Any, rule_path: str, roles: Iterable[str] = ROLES, public: bool = False, **options: Any):  # type: ignore[no-untyped-def]
    """``target.route`` (a Flask app or blueprint) with a rule recorded on the view."""
    rule = rule_for(roles, public)

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        setattr(fn, RULE_ATTR, rule)
        target.route(rule_path, **options)(fn)
        return fn

    return decorate


def rule_of(fn: Any) -> Rule | None:
    """The rule of a view or callback, looking through functools.wraps layers."""
    seen = 0
    while fn is not None and seen < 10:
        found = getattr(fn, RULE_ATTR, None)
        if isinstance(found, Rule):
            return found
        fn = getattr(fn, "__wrapped__", None)
        seen += 1
    return None


def endpoint_rule(server: Flask, endpoint: str | None) -> Rule | None:
    if endpoint is None:
        return None
    view = server.view_functions.get(endpoint)
    return rule_of(view) if view is not None else None


def undeclared(app: dash.Dash) -> list[str]:
    """Every callback, page and route of the app that has no rule (empty: all declared)."""
    from dash import _callback

    missing = []
    callbacks = {**_callback.GLOBAL_CALLBACK_MAP, **app.callback_map}
    for key, spec in callbacks.items():
        if key.startswith("..._pages_content") or key.startswith("_pages_"):
            continue  # Dash's router: it only calls the page layouts, which declare their own
        if rule_of(spec.get("callback")) is None:
            missing.append(f"callback {key}")
    for page in dash.page_registry.values():
        if rule_of(page.get("layout")) is None:
            missing.append(f"page {page.get('module')}")
    for endpoint, view in app.server.view_functions.items():
        if endpoint in DASH_ENDPOINTS or rule_of(view) is not None:
            continue
        missing.append(f"route {endpoint}")
    return missing


def check_declared(app: dash.Dash) -> None:
    """Refuse to start with an undeclared entry point, naming it and the fix."""
    missing = undeclared(app)
    if missing:
        raise ConfigError(
            "registered without an authorization rule: "
            + "; ".join(missing)
            + ". Register callbacks with dashboard.authz.callback, page layouts with"
            " dashboard.authz.page_layout and routes with dashboard.authz.route."
        )
