"""Flask login and logout, and the guard that keeps everything else behind them.

The guard runs before Dash's own request hooks, so an anonymous request never reaches a
page, a callback, a download or a Dash asset: page GETs are redirected to /login,
everything else (``/_dash-*`` endpoints, the API, any non-GET) gets 401 JSON. Routes marked
public by dashboard.authz (the login form) are the only exception.
"""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Response,
    current_app,
    jsonify,
    make_response,
    redirect,
    render_template_string,
    request,
    url_for,
)
from flask_wtf.csrf import generate_csrf

from core.settings import LANGS
from dashboard import authz
from dashboard.auth import client_address, current_user, login_user, logout_user
from dashboard.context import get_context
from dashboard.i18n import LANG_COOKIE, _, lang

log = logging.getLogger(__name__)

bp = Blueprint("pqmon_login", __name__)

MAX_FIELD_CHARS = 256

LOGIN_PAGE = """<!doctype html>
<html lang="{{ lang }}"><head><meta charset="utf-8"><title>{{ title }}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"Noto Sans CJK SC","Microsoft YaHei",sans-serif;
background:#f4f6f8;color:#1f2933;display:flex;justify-content:center;align-items:center;min-height:100vh;margin:0}
form{background:#fff;padding:2rem 2.5rem;border-radius:8px;box-shadow:0 1px 4px rgba(0,0,0,.12);
width:20rem}
h1{font-size:1.3rem;margin:0 0 1.2rem}
label{display:block;font-size:.9rem;margin:.8rem 0 .3rem}
input[type=text],input[type=password]{width:100%;box-sizing:border-box;padding:.5rem;
border:1px solid #c5ccd3;border-radius:4px;font-size:1rem}
button{margin-top:1.3rem;width:100%;padding:.6rem;border:0;border-radius:4px;background:#1d4e89;
color:#fff;font-size:1rem;cursor:pointer}
.error{background:#fdecea;color:#8a1c12;padding:.6rem;border-radius:4px;font-size:.9rem}
.langs{margin-top:1rem;font-size:.85rem;text-align:center}.langs a{color:#1d4e89;margin:0 .4rem}
</style></head>
<body><form method="post" action="{{ url_for('pqmon_login.login') }}">
<h1>{{ title }}</h1>
{% if error %}<p class="error" id="login-error" role="alert">{{ error }}</p>{% endif %}
<input type="hidden" name="csrf" value="{{ csrf }}">
<input type="hidden" name="next" value="{{ next_path }}">
<label for="login-name">{{ name_label }}</label>
<input type="text" id="login-name" name="name" value="{{ name }}" autocomplete="username" required autofocus>
<label for="login-password">{{ password_label }}</label>
<input type="password" id="login-password" name="password" autocomplete="current-password" required>
<button type="submit" id="login-submit">{{ submit }}</button>
<p class="langs"><a id="lang-zh" href="?lang=zh-CN&next={{ next_path|urlencode }}">中文</a>|<a id="lang-en"
href="?lang=en&next={{ next_path|urlencode }}">English</a></p>
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


def login_form(error: str = "", name: str = "", next_path: str = "/", status: int = 200) -> Response:
    body = render_template_string(
        LOGIN_PAGE,
        lang=lang(),
        title=_("Sign in to pqmon"),
        name_label=_("User name"),
        password_label=_("Password"),
        submit=_("Sign in"),
        error=error,
        name=name,
        next_path=next_path,
        csrf=generate_csrf(),
    )
    resp = make_response(body, status)
    resp.mimetype = "text/html"
    asked = request.args.get("lang")
    if asked in LANGS:
        resp.set_cookie(LANG_COOKIE, asked, max_age=365 * 86400, samesite="Lax", httponly=True)
    return resp


def _throttled(name: str, address: str, next_path: str) -> Response:
    minutes = get_context().throttle.retry_after_min(name, address)
    text = _("Too many failed sign-in attempts. Try again in %(minutes)s minute(s).", minutes=minutes)
    return login_form(text, name, next_path, status=429)


@authz.route(bp, "/login", public=True, methods=["GET", "POST"])
def login() -> Response:
    """The CSRF token of the form is checked by Flask-WTF before this runs."""
    if request.method == "GET":
        return login_form(next_path=_safe_next(request.args.get("next")))
    name = request.form.get("name", "")[:MAX_FIELD_CHARS].strip()
    password = request.form.get("password", "")[:MAX_FIELD_CHARS]
    next_path = _safe_next(request.form.get("next"))
    ctx = get_context()
    address = client_address()
    if ctx.throttle.retry_after_s(name, address) > 0:
        log.warning("login throttled for %.64r from %s", name, address)
        return _throttled(name, address, next_path)
    user = ctx.registry.authenticate(name, password)
    if user is None:
        ctx.throttle.failed(name, address)
        log.info("failed login for %.64r from %s", name, address)
        if ctx.throttle.retry_after_s(name, address) > 0:
            return _throttled(name, address, next_path)
        return login_form(_("Wrong user name or password."), name, next_path, status=401)
    ctx.throttle.succeeded(name)
    login_user(user)
    log.info("user %s logged in from %s", user.name, address)
    return redirect(next_path)  # type: ignore[return-value]


@authz.route(bp, "/logout", public=True)
def logout() -> Response:
    """Ends the server-side session: a copy of the cookie is worthless afterwards."""
    logout_user()
    return redirect(url_for("pqmon_login.login"))  # type: ignore[return-value]


def guard() -> Response | tuple[Response, int] | None:
    """before_request: let public endpoints and users their rule allows through, refuse the rest."""
    rule = authz.endpoint_rule(current_app, request.endpoint)  # type: ignore[arg-type]
    if rule is not None and rule.public:
        return None
    user = current_user()
    api = request.path.startswith("/api/")
    if user is not None:
        if rule is not None and not rule.allows(user):
            if api:  # the API's one documented error shape (dashboard.api)
                return _api_error("not_found", "no such resource, or not permitted")
            return jsonify({"error": "forbidden", "message": _("Not found or not permitted.")}), 404
        return None
    if request.method == "GET" and not request.path.startswith(("/_", "/api/")):
        target = request.full_path if request.query_string else request.path
        return redirect(url_for("pqmon_login.login", next=target))  # type: ignore[return-value]
    if api:
        return _api_error("unauthorized", "not logged in: send Authorization: Bearer <token>")
    return jsonify({"error": "not logged in", "login": url_for("pqmon_login.login")}), 401


def _api_error(code: str, message: str) -> tuple[Response, int]:
    from dashboard.api import error_response

    return error_response(code, message)
