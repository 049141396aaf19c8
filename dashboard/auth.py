"""Who is asking: the server-side session of a browser, or the API token of a script.

The signed Flask cookie holds only a random session id; the session is a registry row
(core.accounts). Logging out, a password change or disabling the user deletes the rows, so
a copy of the cookie taken before is refused afterwards, on every dashboard process.
"""

from __future__ import annotations

import ipaddress
import logging

from flask import g, request, session

from core.accounts import Accounts
from core.registry import User
from dashboard.context import get_context

log = logging.getLogger(__name__)

SESSION_ID_KEY = "sid"


def accounts() -> Accounts:
    return get_context().accounts


def current_user() -> User | None:
    """The user of this request, looked up afresh so role changes and revocations apply at once."""
    if "pqmon_user" not in g:
        g.pqmon_user = _lookup()
    user: User | None = g.pqmon_user
    return user


def _lookup() -> User | None:
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        return accounts().token_user(header.removeprefix("Bearer ").strip())
    sid = session.get(SESSION_ID_KEY)
    if not isinstance(sid, str):
        return None
    user = accounts().session_user(sid)
    if user is None:
        session.clear()  # ended elsewhere (logout, password change) or expired
    return user


def login_user(user: User) -> None:
    """Start a fresh session (no fixation: the old contents are dropped)."""
    ctx = get_context()
    session.clear()
    session[SESSION_ID_KEY] = ctx.accounts.start_session(
        user.name, ctx.settings.session_hours * 3600, client_address()
    )
    session.permanent = True
    g.pqmon_user = user


def logout_user() -> None:
    sid = session.get(SESSION_ID_KEY)
    if isinstance(sid, str):
        accounts().end_session(sid)
    session.clear()
    g.pqmon_user = None


def client_address() -> str:
    """The client's address, believing X-Forwarded-For only from configured proxies.

    Walking the header from the right and skipping trusted hops gives the first address a
    trusted proxy saw; without trusted proxies it is the connecting address, so a client
    cannot choose its own address to dodge the login throttle.
    """
    trusted = get_context().settings.trusted_proxies
    remote = request.remote_addr or "unknown"
    if not trusted or remote not in trusted:
        return remote
    hops = [h.strip() for h in request.headers.get("X-Forwarded-For", "").split(",") if h.strip()]
    for hop in reversed(hops):
        if hop in trusted:
            continue
        try:
            return str(ipaddress.ip_address(hop))
        except ValueError:
            log.warning("unparseable X-Forwarded-For hop %.64r from proxy %s", hop, remote)
            return remote
    return remote
