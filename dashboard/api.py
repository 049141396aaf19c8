"""The read-only API under /api/v1 (token per user, the same authorization as the pages).

A script sends ``Authorization: Bearer <token>`` (``pqmon user token NAME`` or the admin page
issue one); a signed-in browser may use its session. Every answer is JSON. Every refusal and
failure has one shape, described in ``/api/v1/openapi.json``::

    {"error": {"code": "bad_parameter", "message": "...", "parameter": "from"}}

``code`` is one of :data:`ERROR_CODES`; ``parameter`` is present only for ``bad_parameter``.
An account that does not exist and one the caller may not read get the same 404, so ids
cannot be probed.
"""

from __future__ import annotations

import logging
import math
from datetime import date, datetime
from typing import Any

from flask import Blueprint, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from analysis.fleet_report import fleet_report
from analysis.report import site_report
from core.errors import PqmonError, StoreError
from core.registry import ROLES, Site
from dashboard import authz
from dashboard.context import get_context
from dashboard.periods import MAX_DAYS, default_period

log = logging.getLogger(__name__)

bp = Blueprint("pqmon_api", __name__, url_prefix="/api/v1")

PREFIX = "/api/v1"
# The catch-all that answers unknown /api/v1 paths with the JSON 404 (not an operation).
FALLBACK_ENDPOINT = "pqmon_api.unknown_path"
ERROR_CODES = {
    "bad_parameter": 400,
    "unauthorized": 401,
    "not_found": 404,
    "method_not_allowed": 405,
    "store_unavailable": 503,
    "internal": 500,
}
PERIOD_PARAMS = ("from", "to")


class ApiError(Exception):
    def __init__(self, code: str, message: str, parameter: str | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.parameter = code, message, parameter


def error_body(code: str, message: str, parameter: str | None = None) -> dict[str, Any]:
    """The one error shape of the API."""
    error: dict[str, Any] = {"code": code, "message": message}
    if parameter is not None:
        error["parameter"] = parameter
    return {"error": error}


def error_response(code: str, message: str, parameter: str | None = None) -> tuple[Response, int]:
    return jsonify(error_body(code, message, parameter)), ERROR_CODES[code]


def not_found() -> ApiError:
    return ApiError("not_found", "no such resource, or not permitted")


def plain(value: Any) -> Any:
    """JSON-safe: numpy scalars to Python, NaN and infinities to null, dates to ISO text."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        try:
            value = value.item()
        except (TypeError, ValueError):
            return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def period_args(allowed: tuple[str, ...] = PERIOD_PARAMS) -> tuple[date, date]:
    """``from`` and ``to`` (inclusive local days); both or neither (the last 7 whole days)."""
    for name in request.args:
        if name not in allowed:
            raise ApiError("bad_parameter", f"unknown parameter {name!r}", name)
    raw = {name: request.args.get(name) for name in PERIOD_PARAMS}
    if raw["from"] is None and raw["to"] is None:
        return default_period(get_context().settings.tz)
    days: dict[str, date] = {}
    for name in PERIOD_PARAMS:
        text = raw[name]
        if text is None:
            raise ApiError("bad_parameter", "give both from and to, or neither", name)
        try:
            if len(text) != 10:
                raise ValueError(text)
            days[name] = date.fromisoformat(text)
        except ValueError:
            raise ApiError(
                "bad_parameter", f"{name} must be a date as YYYY-MM-DD, got {text[:40]!r}", name
            ) from None
    if days["to"] < days["from"]:
        raise ApiError("bad_parameter", "to must not be before from", "to")
    if (days["to"] - days["from"]).days + 1 > MAX_DAYS:
        raise ApiError("bad_parameter", f"a period may have at most {MAX_DAYS} days", "to")
    return days["from"], days["to"]


def no_params() -> None:
    for name in request.args:
        raise ApiError("bad_parameter", f"unknown parameter {name!r}", name)


def site_facts(site: Site, role: str) -> dict[str, Any]:
    facts: dict[str, Any] = {
        "id": site.id,
        "name": site.name,
        "kind": site.kind,
        "voltage_class_kv": site.voltage_class_kv,
        "phases": site.phases,
        "upper_pct": site.upper_pct,
        "lower_pct": site.lower_pct,
        "profile": site.profile,
        "feeder_id": site.feeder_id,
        "commissioned": site.commissioned.isoformat() if site.commissioned else None,
        "meters": [{"meter_id": m.meter_id, "nominal_v": m.nominal_v} for m in site.meters],
    }
    if role != "customer":
        facts["manager"] = site.manager  # the registry's free-text column: internal
    return facts


def _access() -> authz.Access:
    """The caller's Access; the login guard has already refused anonymous callers."""
    try:
        return authz.access_for(authz.rule_for(ROLES))
    except authz.AuthError:
        raise ApiError("unauthorized", "not logged in: send Authorization: Bearer <token>") from None


def _site(access: authz.Access, site_id: str) -> Site:
    try:
        return access.site(site_id)
    except authz.Forbidden:
        raise not_found() from None


def _site_report(site_id: str) -> dict[str, Any]:
    access = _access()
    site = _site(access, site_id)
    day_from, day_to = period_args()
    ctx = get_context()
    report = site_report(
        ctx.store,
        ctx.registry,
        site.id,
        day_from,
        day_to,
        ctx.settings.tz,
        en50160_min_coverage_pct=ctx.settings.en50160_min_coverage_pct,
    )
    return report


@authz.route(bp, "/sites", roles=ROLES, methods=["GET"])
def sites() -> Response:
    """The accounts the caller may read, with their registry facts."""
    no_params()
    access = _access()
    return jsonify({"sites": [plain(site_facts(s, access.role)) for s in access.sites()]})


@authz.route(bp, "/sites/<site_id>/report", roles=ROLES, methods=["GET"])
def site_report_view(site_id: str) -> Response:
    """The supply-quality report of one account (the JSON of ``pqmon report SITE``)."""
    return jsonify(plain(_site_report(site_id)))


@authz.route(bp, "/sites/<site_id>/outages", roles=ROLES, methods=["GET"])
def site_outages(site_id: str) -> Response:
    """The outages touching the period: the report's ``outage_list``."""
    report = _site_report(site_id)
    keys = ("site", "name", "from", "to", "tz")
    return jsonify(plain({**{k: report.get(k) for k in keys}, "outages": report.get("outage_list") or []}))


# fleet_report covers every key account of the registry and cannot be limited to some of
# them, so it is for the roles that may read every account.
@authz.route(bp, "/fleet/report", roles=authz.STAFF, methods=["GET"])
def fleet_report_view() -> Response:
    """Every key account's figures and the fleet's indices (``pqmon report --fleet``)."""
    _access()
    day_from, day_to = period_args()
    ctx = get_context()
    s = ctx.settings
    report = fleet_report(
        ctx.store,
        ctx.registry,
        day_from,
        day_to,
        s.tz,
        short_s=s.short_outage_s,
        last_mile_target_vqr_pct=s.last_mile_target_vqr_pct,
        celid_single_h=s.celid_single_h,
        celid_total_h=s.celid_total_h,
        med_min_history_days=s.med_min_history_days,
        med_history_years=s.med_history_years,
        med_ddof=s.med_ddof,
    )
    return jsonify(plain(report))


@authz.route(bp, "/openapi.json", roles=ROLES, methods=["GET"])
def openapi_json() -> Response:
    """This API described in OpenAPI 3.1."""
    from dashboard.openapi import spec

    no_params()
    return jsonify(spec())


@authz.route(bp, "/<path:rest>", roles=ROLES, methods=["GET"])
def unknown_path(rest: str) -> Response:
    """Any other path under /api/v1: the JSON 404 (not the dashboard's page shell)."""
    raise not_found()


@bp.errorhandler(ApiError)
def _api_error(exc: ApiError) -> tuple[Response, int]:
    return error_response(exc.code, exc.message, exc.parameter)


@bp.errorhandler(StoreError)
def _store_error(exc: StoreError) -> tuple[Response, int]:
    log.warning("API %s: the measurement store failed: %s", request.path, exc)
    return error_response("store_unavailable", "the measurement store is not answering; try again shortly")


@bp.errorhandler(Exception)
def _unexpected(exc: Exception) -> Response | tuple[Response, int]:
    if isinstance(exc, HTTPException):
        return _http_error(exc)
    if isinstance(exc, PqmonError):
        log.error("API %s failed: %s", request.path, exc)
    else:
        log.exception("API %s failed", request.path)
    return error_response("internal", "the request failed; the server log has the details")


def _http_error(exc: HTTPException) -> Response | tuple[Response, int]:
    if exc.code == 404:
        return error_response("not_found", "no such resource, or not permitted")
    if exc.code == 405:
        return error_response("method_not_allowed", "the API answers GET only")
    if exc.code == 401:
        return error_response("unauthorized", "not logged in: send Authorization: Bearer <token>")
    if exc.code is not None and exc.code < 500:
        return error_response("bad_parameter", exc.description or "bad request")
    log.error("API %s: %s", request.path, exc)
    return error_response("internal", "the request failed; the server log has the details")


@bp.app_errorhandler(405)
def _method_not_allowed(exc: HTTPException) -> Response | tuple[Response, int] | HTTPException:
    """Routing errors are the app's, not the blueprint's: answer JSON for API paths only."""
    if request.path.startswith(PREFIX + "/") or request.path == PREFIX:
        return _http_error(exc)
    return exc
