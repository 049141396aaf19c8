"""Flask login and logout, and the guard that keeps everything else behind them.

The guard runs before Dash's own request hooks, so an anonymous request never
reaches a page, a callback, a download or a Dash asset: page GETs are redirected
to /login, everything else (``/_dash-*`` endpoints, any non-GET) gets 401 JSON.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from urllib.parse import urlsplit

from flask import Blueprint, Response, jsonify, redirect, render_template_string, request, session, url_for

from dashboard.auth import SESSION_USER_KEY, current_user, login_user, logout_user
from dashboard.context import get_context
from dashboard.i18n import t

log = logging.getLogger(__name__)

bp = Blueprint("pqmon_login", __name__)

PUBLIC_ENDPOINTS = frozenset({"pqmon_login.login", "pqmon_login.logout"})
CSRF_KEY = "login_csrf"
MAX_FIELD_CHARS = 256

LOGIN_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{ t('login.title') }}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;background:#f4f6f8;
color:#1f2933;display:flex;justify-content:center;align-items:center;min-height:100vh;margin:0}
form{background:#fff;padding:2rem 2.5rem;border-radius:8px;box-shadow:0 1px 4px rgba(0,0,0,.12);
width:20rem}
h1{font-size:1.3rem;margin:0 0 1.2rem}
label{display:block;font-size:.9rem;margin:.8rem 0 .3rem}
input[type=text],input[type=password]{width:100%;box-sizing:border-box;padding:.5rem;
border:1px solid #c5ccd3;border-radius:4px;font-size:1rem}
button{margin-top:1.3rem;width:100%;padding:.6rem;border:0;border-radius:4px;background:#1d4e89;
color:#fff;font-size:1rem;cursor:pointer}
.error{background:#fdecea;color:#8a1c12;padding:.6rem;border-radius:4px;font-size:.9rem}
</style></head>
<body><form method="post" action="{{ url_for('pqmon_login.login') }}">
<h1>{{ t('login.title') }}</h1>
{% if error %}<p class="error" id="login-error" role="alert">{{ error }}</p>{% endif %}
<input type="hidden" name="csrf" value="{{ csrf }}">
<input type="hidden" name="next" value="{{ next_path }}">
<label for="login-name">{{ t('login.name') }}</label>
<input type="text" id="login-name" name="name" value="{{ name }}" autocomplete="username" required autofocus>
<label for="login-password">{{ t('login.password') }}</label>
<input type="password" id="login-password" name="password" autocomplete="current-password" required>
<button type="submit" id="login-submit">{{ t('login.submit') }}</button>
</form></body></html>
"""


def _safe_next(raw: str | None) -> str:
    """Only local paths, so /login cannot be used as an open redirect."""
    if not raw or not raw.startswith("/") or raw.startswith("//") or "\\" in raw:
        return "/"
    parts = urlsplit(raw)
    if parts.scheme or parts.netloc:
        return "/"
    return raw


def _csrf_token() -> str:
    token = session.get(CSRF_KEY)
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        session[CSRF_KEY] = token
    return token


def _form(error: str = "", name: str = "", next_path: str = "/", status: int = 200) -> Response:
    body = render_template_string(
        LOGIN_PAGE, t=t, error=error, name=name, next_path=next_path, csrf=_csrf_token()
    )
    return Response(body, status=status, mimetype="text/html")


@bp.route("/login", methods=["GET", "POST"])
def login() -> Response:
    if request.method == "GET":
        return _form(next_path=_safe_next(request.args.get("next")))
    name = request.form.get("name", "")[:MAX_FIELD_CHARS].strip()
    password = request.form.get("password", "")[:MAX_FIELD_CHARS]
    next_path = _safe_next(request.form.get("next"))
    sent_csrf = request.form.get("csrf", "")
    if not hmac.compare_digest(sent_csrf, str(session.get(CSRF_KEY, ""))) or not sent_csrf:
        return _form(t("login.expired"), name, next_path, status=400)
    ctx = get_context()
    address = request.remote_addr or "unknown"
    if ctx.throttle.retry_after_s(name, address) > 0:
        log.warning("login throttled for %.64r from %s", name, address)
        minutes = ctx.throttle.retry_after_min(name, address)
        return _form(t("login.throttled", minutes=minutes), name, next_path, status=429)
    user = ctx.registry.authenticate(name, password)
    if user is None:
        ctx.throttle.failed(name, address)
        log.info("failed login for %.64r from %s", name, address)
        if ctx.throttle.retry_after_s(name, address) > 0:
            minutes = ctx.throttle.retry_after_min(name, address)
            return _form(t("login.throttled", minutes=minutes), name, next_path, status=429)
        return _form(t("login.failed"), name, next_path, status=401)
    ctx.throttle.succeeded(name)
    login_user(user)
    log.info("user %s logged in from %s", user.name, address)
    return redirect(next_path)  # type: ignore[return-value]


@bp.route("/logout")
def logout() -> Response:
    logout_user()
    return redirect(url_for("pqmon_login.login"))  # type: ignore[return-value]


def guard() -> Response | tuple[Response, int] | None:
    """before_request: let logged-in users and the login endpoints through, refuse the rest."""
    if request.endpoint in PUBLIC_ENDPOINTS or current_user() is not None:
        return None
    if session.get(SESSION_USER_KEY):
        session.clear()  # the user was deleted: forget the stale session
    if request.method == "GET" and not request.path.startswith("/_"):
        target = request.full_path if request.query_string else request.path
        return redirect(url_for("pqmon_login.login", next=target))  # type: ignore[return-value]
    return jsonify({"error": "not logged in", "login": url_for("pqmon_login.login")}), 401
