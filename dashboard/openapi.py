"""The OpenAPI 3.1 description of the read-only API (served at /api/v1/openapi.json).

Written by hand next to the routes in dashboard.api; tests/integration/test_api.py compares
its paths with the app's URL map, so a route cannot be added without being described here.
"""

from __future__ import annotations

from typing import Any

from dashboard.api import ERROR_CODES, PREFIX

VERSION = "1.0.0"

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "additionalProperties": False,
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "additionalProperties": False,
            "properties": {
                "code": {"type": "string", "enum": sorted(ERROR_CODES)},
                "message": {"type": "string", "description": "for people; may change between versions"},
                "parameter": {
                    "type": "string",
                    "description": "only with bad_parameter: the query parameter at fault",
                },
            },
        }
    },
    "examples": [
        {
            "error": {
                "code": "bad_parameter",
                "message": "from must be a date as YYYY-MM-DD, got '2026-13-01'",
                "parameter": "from",
            }
        }
    ],
}

DAY = {"type": "string", "format": "date", "pattern": r"^\d{4}-\d{2}-\d{2}$"}

PARAMETERS: dict[str, Any] = {
    "from": {
        "name": "from",
        "in": "query",
        "required": False,
        "description": "First local day (PQMON_TZ), inclusive. Give both from and to, or neither "
        "for the last 7 whole days. At most 366 days.",
        "schema": DAY,
    },
    "to": {
        "name": "to",
        "in": "query",
        "required": False,
        "description": "Last local day, inclusive; not before from.",
        "schema": DAY,
    },
    "site_id": {
        "name": "site_id",
        "in": "path",
        "required": True,
        "description": "A key account's id; unknown and not permitted give the same 404.",
        "schema": {"type": "string", "pattern": r"^[A-Za-z0-9_.-]{1,64}$"},
    },
}


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


RESPONSES: dict[str, Any] = {
    "BadParameter": _error("A query parameter is missing, unknown or malformed (code bad_parameter)."),
    "Unauthorized": _error("No valid token or session (code unauthorized)."),
    "NotFound": _error("No such resource, or the caller may not read it (code not_found)."),
    "StoreUnavailable": _error("The measurement store is not answering (code store_unavailable)."),
    "Internal": _error("An unexpected failure, logged on the server (code internal)."),
}


def _ok(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _refs(*names: str) -> list[dict[str, str]]:
    return [{"$ref": f"#/components/parameters/{n}"} for n in names]


def _errors(*codes: str) -> dict[str, Any]:
    names = {
        "400": "BadParameter",
        "401": "Unauthorized",
        "404": "NotFound",
        "503": "StoreUnavailable",
        "500": "Internal",
    }
    return {code: {"$ref": f"#/components/responses/{names[code]}"} for code in codes}


REPORT = {
    "type": "object",
    "description": "The report JSON of 'pqmon report SITE' (docs/cli.md); numbers unrounded, "
    "null where unknown.",
    "required": ["site", "name", "from", "to", "tz"],
    "properties": {
        "site": {"type": "string"},
        "name": {"type": "string"},
        "from": DAY,
        "to": DAY,
        "tz": {"type": "string"},
        "vqr_pct": {"type": ["number", "null"]},
        "rs1_pct": {"type": ["number", "null"]},
        "outage_list": {"type": "array", "items": {"$ref": "#/components/schemas/Outage"}},
    },
}

OUTAGE = {
    "type": "object",
    "properties": {
        "start": {"type": "string", "format": "date-time"},
        "end": {"type": ["string", "null"], "format": "date-time"},
        "duration_s": {"type": "number"},
        "cause": {"type": "string"},
        "length": {"type": "string"},
        "open": {"type": "boolean"},
        "start_source": {"type": "string"},
        "end_source": {"type": ["string", "null"]},
        "continued": {"type": "boolean"},
    },
}

SITE = {
    "type": "object",
    "required": ["id", "name", "kind", "voltage_class_kv", "phases", "meters"],
    "properties": {
        "id": {"type": "string"},
        "name": {"type": "string"},
        "kind": {"type": "string", "enum": ["account"]},
        "voltage_class_kv": {"type": "number"},
        "phases": {"type": "integer", "enum": [1, 3]},
        "upper_pct": {"type": ["number", "null"]},
        "lower_pct": {"type": ["number", "null"]},
        "profile": {"type": "string", "enum": ["gb", "en50160"]},
        "feeder_id": {"type": ["string", "null"]},
        "commissioned": {"type": ["string", "null"], "format": "date"},
        "manager": {"type": ["string", "null"], "description": "not shown to customers"},
        "meters": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"meter_id": {"type": "string"}, "nominal_v": {"type": "number"}},
            },
        },
    },
}

# Path templates relative to PREFIX, in Flask's syntax; the keys must match the routes.
OPERATIONS: dict[str, dict[str, Any]] = {
    "/sites": {
        "operationId": "listSites",
        "summary": "The key accounts the caller may read, with their registry facts",
        "responses": {
            "200": _ok(
                "The accounts",
                {
                    "type": "object",
                    "required": ["sites"],
                    "properties": {
                        "sites": {"type": "array", "items": {"$ref": "#/components/schemas/Site"}}
                    },
                },
            ),
            **_errors("400", "401", "500"),
        },
    },
    "/sites/<site_id>/report": {
        "operationId": "siteReport",
        "summary": "Supply-quality report of one account for whole local days",
        "parameters": _refs("site_id", "from", "to"),
        "responses": {
            "200": _ok("The report", {"$ref": "#/components/schemas/Report"}),
            **_errors("400", "401", "404", "503", "500"),
        },
    },
    "/sites/<site_id>/outages": {
        "operationId": "siteOutages",
        "summary": "The outages touching the period (the report's outage_list)",
        "parameters": _refs("site_id", "from", "to"),
        "responses": {
            "200": _ok(
                "The outages, oldest first",
                {
                    "type": "object",
                    "required": ["site", "from", "to", "tz", "outages"],
                    "properties": {
                        "site": {"type": "string"},
                        "name": {"type": "string"},
                        "from": DAY,
                        "to": DAY,
                        "tz": {"type": "string"},
                        "outages": {"type": "array", "items": {"$ref": "#/components/schemas/Outage"}},
                    },
                },
            ),
            **_errors("400", "401", "404", "503", "500"),
        },
    },
    "/fleet/report": {
        "operationId": "fleetReport",
        "summary": "Every key account's figures and the fleet's indices (administrators and operators "
        "only: others get 404)",
        "parameters": _refs("from", "to"),
        "responses": {
            "200": _ok(
                "The fleet report JSON of 'pqmon report --fleet'",
                {"type": "object", "required": ["from", "to", "tz"]},
            ),
            **_errors("400", "401", "404", "503", "500"),
        },
    },
    "/openapi.json": {
        "operationId": "openapi",
        "summary": "This description",
        "responses": {"200": _ok("OpenAPI 3.1", {"type": "object"}), **_errors("401", "500")},
    },
}


def openapi_path(flask_rule: str) -> str:
    """``/api/v1/sites/<site_id>/report`` -> ``/api/v1/sites/{site_id}/report``."""
    out = []
    for part in flask_rule.split("/"):
        if part.startswith("<") and part.endswith(">"):
            part = "{" + part[1:-1].split(":")[-1] + "}"
        out.append(part)
    return "/".join(out)


def spec() -> dict[str, Any]:
    paths = {
        openapi_path(PREFIX + rule): {"get": {"tags": ["read"], **operation}}
        for rule, operation in OPERATIONS.items()
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "pqmon API",
            "version": VERSION,
            "description": "Read-only access to the key accounts a user may read. Every error has "
            'one shape: {"error": {"code", "message", "parameter"?}}.',
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}, {"session": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A user's API token: 'pqmon user token NAME' or the Users admin page.",
                },
                "session": {"type": "apiKey", "in": "cookie", "name": "pqmon_session"},
            },
            "parameters": PARAMETERS,
            "responses": RESPONSES,
            "schemas": {"Error": ERROR_SCHEMA, "Report": REPORT, "Outage": OUTAGE, "Site": SITE},
        },
    }
