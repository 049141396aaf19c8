"""The one authorization layer of the dashboard (README: security).

Three outcomes, as in dash-auth: not logged in (:class:`NotAuthenticated`),
forbidden (:class:`Forbidden`), allowed (the :class:`User` is returned).
Callbacks call :func:`require_site` with whatever id the browser sent; the
answer comes from ``Registry.visible_site_ids``, never from the browser.
Not found and not permitted are the same answer, so ids cannot be probed.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from flask import g, session

from core.registry import User
from dashboard.context import get_context

log = logging.getLogger(__name__)

SESSION_USER_KEY = "user"


class AuthError(Exception):
    """Base of the two refusals."""


class NotAuthenticated(AuthError):
    pass


class Forbidden(AuthError):
    pass


def current_user() -> User | None:
    """The logged-in user of this request, looked up afresh so role changes apply at once."""
    if "pqmon_user" not in g:
        name = session.get(SESSION_USER_KEY)
        g.pqmon_user = get_context().registry.user(name) if isinstance(name, str) else None
    user: User | None = g.pqmon_user
    return user


def require_user(roles: Iterable[str] | None = None) -> User:
    user = current_user()
    if user is None:
        raise NotAuthenticated("not logged in")
    if roles is not None and user.role not in set(roles):
        raise Forbidden(f"role {user.role} may not open this page")
    return user


def visible_site_ids(user: User) -> list[str]:
    return get_context().registry.visible_site_ids(user, kind="account")


def require_site(site_id: object) -> User:
    """The user, if they may read ``site_id``; raises otherwise."""
    user = require_user()
    if not isinstance(site_id, str) or site_id not in visible_site_ids(user):
        log.warning("user %s refused site %.64r", user.name, site_id)
        raise Forbidden("site not found or not permitted")
    return user


def login_user(user: User) -> None:
    """Start a fresh session (no fixation: the old contents are dropped)."""
    session.clear()
    session[SESSION_USER_KEY] = user.name
    session.permanent = True
    g.pqmon_user = user


def logout_user() -> None:
    session.clear()
    g.pqmon_user = None
