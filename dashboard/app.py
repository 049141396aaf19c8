"""Build and serve the dashboard: a Flask server with login, Dash pages on top.

``create_app`` wires the objects; ``main`` is what ``pqmon dashboard`` calls.
"""

from __future__ import annotations

import logging
import os
import secrets
from datetime import timedelta
from pathlib import Path
from typing import Any

import dash
from flask import Flask, Response, jsonify, request
from flask_wtf.csrf import CSRFError, CSRFProtect, generate_csrf

from core.accounts import Accounts
from core.errors import ConfigError
from core.registry import Registry
from core.settings import Settings
from core.store import InfluxStore
from dashboard import authz, i18n, login
from dashboard.auth import current_user
from dashboard.context import DashboardContext, install
from dashboard.layout import register_shell_callbacks, shell
from dashboard.throttle import LoginThrottle

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
SECRET_KEY_FILE = "secret_key"
CSRF_COOKIE = "_csrf_token"  # what Dash's renderer reads and sends back as X-CSRFToken


def secret_key(settings: Settings) -> str:
    """PQMON_SECRET_KEY, else a key generated once and kept (mode 0600) in the data dir.

    Persisting it keeps sessions valid across restarts and across processes sharing the dir.
    """
    if settings.secret_key:
        return str(settings.secret_key)
    path = settings.data_dir / SECRET_KEY_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        key = path.read_text().strip()
        if len(key) < 32:
            raise ConfigError(f"{path} holds no usable key; delete it to have one generated") from None
        return key
    key = secrets.token_hex(32)
    with os.fdopen(fd, "w") as fh:
        fh.write(key + "\n")
    log.info("generated a dashboard session key in %s", path)
    return key


def _security_headers(resp: Response) -> Response:
    resp.headers.setdefault("X-Frame-Options", "DENY")
    resp.headers.setdefault("X-Content-Type-Options", "nosniff")
    resp.headers.setdefault("Referrer-Policy", "same-origin")
    return resp


def _csrf_cookie(resp: Response) -> Response:
    """Hand signed-in browsers the CSRF token Dash's renderer sends with every callback."""
    if current_user() is not None and request.endpoint != "pqmon_login.logout":
        resp.set_cookie(CSRF_COOKIE, generate_csrf(), samesite="Strict", httponly=False)
    return resp


def _csrf_refused(exc: CSRFError) -> Response | tuple[Response, int]:
    if request.endpoint == "pqmon_login.login":
        return login.login_form(i18n._("The sign-in form expired. Please try again."), status=400)
    return jsonify({"error": "csrf", "message": exc.description}), 400


def create_app(
    settings: Settings,
    registry: Registry | None = None,
    store: InfluxStore | None = None,
    throttle: LoginThrottle | None = None,
) -> dash.Dash:
    """The Dash app; its Flask server (``app.server``) is the WSGI application."""
    server = Flask("dashboard")
    server.config.update(
        SECRET_KEY=secret_key(settings),
        SESSION_COOKIE_NAME="pqmon_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        PERMANENT_SESSION_LIFETIME=timedelta(hours=settings.session_hours),
        MAX_CONTENT_LENGTH=1 << 20,
        WTF_CSRF_FIELD_NAME="csrf",
        WTF_CSRF_TIME_LIMIT=None,  # valid as long as the session; the session row has the expiry
    )
    registry = registry or Registry(settings.registry_url)
    install(
        server,
        DashboardContext(
            settings=settings,
            registry=registry,
            store=store or InfluxStore.from_settings(settings),
            throttle=throttle or LoginThrottle(),
            accounts=Accounts(registry),
        ),
    )
    i18n.setup(server, settings.tz)
    # Registered before Dash adds its own hooks, so it runs first and can refuse.
    server.before_request(login.guard)
    CSRFProtect(server)  # every POST, Dash's callback dispatch included
    server.register_error_handler(CSRFError, _csrf_refused)
    server.after_request(_security_headers)
    server.after_request(_csrf_cookie)
    server.register_blueprint(login.bp)
    for blueprint in extra_blueprints():
        server.register_blueprint(blueprint)

    app = dash.Dash(
        "dashboard",
        server=server,  # type: ignore[arg-type]  # a Flask app is accepted; the stub says bool
        use_pages=True,
        pages_folder=str(HERE / "pages"),
        assets_folder=str(HERE / "assets"),
        title="pqmon",
        update_title="",
        serve_locally=True,
        suppress_callback_exceptions=True,
        csrf_token_name=CSRF_COOKIE,
    )
    app.layout = shell
    _page_language(app)
    register_shell_callbacks(app)
    _take_page_callbacks(app)
    authz.check_declared(app)
    return app


def _page_language(app: dash.Dash) -> None:
    """``<html lang>`` of every page is the request's language, so screen readers, fonts and
    browser translation treat Chinese pages as Chinese."""
    render = app.interpolate_index

    def interpolate_index(**kwargs: Any) -> str:
        page: str = render(**kwargs)
        return page.replace("<html>", f'<html lang="{i18n.lang()}">', 1)

    app.interpolate_index = interpolate_index  # type: ignore[method-assign,assignment]


def _take_page_callbacks(app: dash.Dash) -> None:
    """Move the callbacks the pages just registered globally into this app now.

    Dash moves them at the app's first request; an app that is built and never served (a
    check, a test) would otherwise leave them behind, and the next app would get each twice.
    """
    from dash import _callback

    for key in list(_callback.GLOBAL_CALLBACK_MAP):
        app.callback_map[key] = _callback.GLOBAL_CALLBACK_MAP.pop(key)
    app._callback_list.extend(_callback.GLOBAL_CALLBACK_LIST)
    _callback.GLOBAL_CALLBACK_LIST.clear()


def extra_blueprints() -> list[Any]:
    """Blueprints of the routes beside the pages (downloads, the API); each declares its rules."""
    from dashboard import api, report_files

    return [api.bp, report_files.bp]


def main(settings: Settings) -> None:
    """Serve the dashboard on PQMON_DASHBOARD_HOST:PQMON_DASHBOARD_PORT until interrupted."""
    import threading

    from werkzeug.serving import run_simple

    from dashboard.fleet_data import prewarm_forever

    app = create_app(settings)
    stop = threading.Event()
    threading.Thread(
        target=prewarm_forever, args=(app.server.extensions["pqmon"], stop), name="prewarm", daemon=True
    ).start()
    host, port = settings.dashboard_host, settings.dashboard_port
    log.info("dashboard on http://%s:%d/", host, port)
    run_simple(host, port, app.server, threaded=True, use_reloader=False, use_debugger=False)
