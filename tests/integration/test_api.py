"""The read-only API over HTTP, against a real InfluxDB, registry and dashboard server.

Each test proves one promise of README: security and the API's description: tokens give the
accounts of their user and nothing else (another account answers exactly like a missing
one), bad parameters get the one documented error shape, revoked or disabled users' tokens
stop working at once, and openapi.json describes every route the app serves.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from werkzeug.serving import BaseWSGIServer, make_server

from core.accounts import Accounts
from core.registry import Registry
from core.servers import LocalInflux, free_port
from core.settings import load_settings
from core.store import InfluxStore
from dashboard.api import FALLBACK_ENDPOINT
from dashboard.app import create_app
from dashboard.openapi import openapi_path
from dashboard.periods import today
from tests.browser.support import (
    ACCOUNTS,
    PASSWORD,
    TZ,
    Dashboard,
    registry_rows,
    requests_login,
    rollup_lines,
)
from tests.conftest import run_pqmon

pytestmark = pytest.mark.integration

API = "/api/v1"
T = 30
APPS: dict[str, Any] = {}  # the served app's Flask server, for its URL map


@pytest.fixture(scope="module")
def served(influx: LocalInflux, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dashboard]:
    data_dir = tmp_path_factory.mktemp("pqmon-api")
    env = {
        "PQMON_INFLUX_URL": influx.url,
        "PQMON_INFLUX_DB": "pqmon_api",
        "PQMON_REGISTRY_URL": f"sqlite:///{data_dir / 'registry.db'}",
        "PQMON_DATA_DIR": str(data_dir),
        "PQMON_TZ": TZ,
        "PQMON_LANG": "en",
    }
    settings = load_settings(env)
    registry = Registry(settings.registry_url)
    registry.add_user("mgr", "manager", PASSWORD)
    registry.upsert_rows(registry_rows())
    registry.add_user("cust1", "customer", PASSWORD, ["A001"])
    registry.add_user("op", "operator", PASSWORD)
    store = InfluxStore.from_settings(settings)
    store.ensure_database()
    data_day = today(TZ) - timedelta(days=2)
    store.write(rollup_lines(data_day))
    app = create_app(settings, registry=registry, store=store)
    APPS["served"] = app.server
    server: BaseWSGIServer = make_server("127.0.0.1", free_port(), app.server, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="dashboard-api", daemon=True)
    thread.start()
    yield Dashboard(f"http://127.0.0.1:{server.server_port}", settings, registry, store, data_day)
    server.shutdown()
    thread.join(10)
    server.server_close()
    store.close()
    registry.close()


def env_of(d: Dashboard) -> dict[str, str]:
    s = d.settings
    return {"PQMON_REGISTRY_URL": s.registry_url, "PQMON_DATA_DIR": str(s.data_dir), "PQMON_TZ": TZ}


def get(d: Dashboard, path: str, token: str | None = None, **params: str) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.get(d.url + API + path, headers=headers, params=params, timeout=T)


def period(d: Dashboard) -> dict[str, str]:
    return {
        "from": (d.data_day - timedelta(days=3)).isoformat(),
        "to": (d.data_day + timedelta(days=1)).isoformat(),
    }


def assert_error(
    resp: requests.Response, status: int, code: str, parameter: str | None = None
) -> dict[str, Any]:
    """The one documented shape, exactly: no other keys, no stack trace."""
    assert resp.status_code == status, resp.text
    assert resp.headers["Content-Type"].startswith("application/json")
    body = resp.json()
    assert set(body) == {"error"}
    expected = {"code", "message"} | ({"parameter"} if parameter else set())
    assert set(body["error"]) == expected, body
    assert body["error"]["code"] == code and isinstance(body["error"]["message"], str)
    if parameter:
        assert body["error"]["parameter"] == parameter
    assert "Traceback" not in resp.text
    return body


def test_cli_token_reads_the_users_own_accounts(served: Dashboard) -> None:
    done = run_pqmon({**env_of(served), "PATH": "/usr/bin:/bin"}, "user", "token", "cust1", "--label", "erp")
    assert done.returncode == 0, done.stderr
    token = done.stdout.strip()
    assert token.startswith("pqm_") and len(token) > 30

    sites = get(served, "/sites", token)
    assert sites.status_code == 200
    assert [s["id"] for s in sites.json()["sites"]] == ["A001"]
    assert sites.json()["sites"][0]["name"] == ACCOUNTS["A001"][0]
    assert "manager" not in sites.json()["sites"][0], "the manager column is internal"

    report = get(served, "/sites/A001/report", token, **period(served))
    assert report.status_code == 200, report.text
    assert f"{report.json()['vqr_pct']:.2f}" == ACCOUNTS["A001"][2]
    outages = get(served, "/sites/A001/outages", token, **period(served))
    assert outages.status_code == 200 and outages.json()["site"] == "A001"
    assert outages.json()["outages"] == [] and outages.json()["from"] == period(served)["from"]

    audit = Accounts(served.registry).audit_log(5)
    assert any(
        e.action == "user.token" and e.target == "cust1" and e.detail == {"label": "erp"} for e in audit
    )
    assert all(token not in str(e.detail) for e in audit), "the token itself is never logged"


def test_another_account_answers_like_a_missing_one(served: Dashboard) -> None:
    token = Accounts(served.registry).issue_token("cust1")
    other = get(served, "/sites/A002/report", token, **period(served))
    missing = get(served, "/sites/NOPE/report", token, **period(served))
    assert_error(other, 404, "not_found")
    assert other.json() == missing.json()
    assert ACCOUNTS["A002"][0] not in other.text
    assert_error(get(served, "/sites/A002/outages", token), 404, "not_found")
    # the fleet report cannot be limited to some accounts: staff only, others get the same 404
    assert get(served, "/fleet/report", token, **period(served)).json() == other.json()
    assert get(served, "/no/such/path", token).json() == other.json()

    staff = Accounts(served.registry).issue_token("op")
    fleet = get(served, "/fleet/report", staff, **period(served))
    assert fleet.status_code == 200, fleet.text
    assert fleet.json()["from"] == period(served)["from"]
    assert {s["id"] for s in get(served, "/sites", staff).json()["sites"]} == set(ACCOUNTS)
    assert get(served, "/sites", staff).json()["sites"][0]["manager"] == "mgr"


def test_bad_parameters_get_the_documented_400(served: Dashboard) -> None:
    token = Accounts(served.registry).issue_token("cust1")
    p = period(served)
    assert_error(
        get(served, "/sites/A001/report", token, **{**p, "from": "2026-13-01"}), 400, "bad_parameter", "from"
    )
    assert_error(
        get(served, "/sites/A001/report", token, **{**p, "to": "yesterday"}), 400, "bad_parameter", "to"
    )
    assert_error(
        get(served, "/sites/A001/report", token, **{"from": p["to"], "to": p["from"]}),
        400,
        "bad_parameter",
        "to",
    )
    assert_error(get(served, "/sites/A001/outages", token, **{"from": p["from"]}), 400, "bad_parameter", "to")
    assert_error(
        get(served, "/sites/A001/report", token, **{**p, "start": "x"}), 400, "bad_parameter", "start"
    )
    assert_error(
        get(
            served,
            "/fleet/report",
            Accounts(served.registry).issue_token("op"),
            **{"from": "2024-01-01", "to": "2025-12-31"},
        ),
        400,
        "bad_parameter",
        "to",
    )
    assert_error(get(served, "/sites", token, **{"from": "2026-01-01"}), 400, "bad_parameter", "from")
    # an unknown account with bad dates: still the 404 (nothing about it is revealed by the 400)
    assert_error(get(served, "/sites/A002/report", token, **{"from": "bad"}), 404, "not_found")


def test_unauthenticated_revoked_and_disabled_are_refused(served: Dashboard) -> None:
    assert_error(get(served, "/sites"), 401, "unauthorized")
    assert_error(get(served, "/sites", "pqm_not-a-token"), 401, "unauthorized")
    assert_error(get(served, "/openapi.json"), 401, "unauthorized")

    accounts = Accounts(served.registry)
    served.registry.add_user("script", "customer", PASSWORD, ["A001"])
    token = accounts.issue_token("script")
    assert get(served, "/sites", token).status_code == 200
    assert accounts.revoke_tokens("script") == 1
    assert_error(get(served, "/sites", token), 401, "unauthorized")

    token = accounts.issue_token("script")
    assert get(served, "/sites", token).status_code == 200
    accounts.set_disabled("test", "script", True)
    assert_error(get(served, "/sites", token), 401, "unauthorized")
    accounts.set_disabled("test", "script", False)
    assert_error(get(served, "/sites", token), 401, "unauthorized")  # enabling brings no token back

    http, resp = requests_login(served.url, "cust1", PASSWORD)
    assert resp.status_code == 302
    assert [s["id"] for s in http.get(served.url + API + "/sites", timeout=T).json()["sites"]] == ["A001"]


def test_openapi_describes_every_route(served: Dashboard) -> None:
    token = Accounts(served.registry).issue_token("op")
    resp = get(served, "/openapi.json", token)
    assert resp.status_code == 200
    spec = resp.json()
    assert spec["openapi"] == "3.1.0" and spec["info"]["title"]

    app_rules = {}
    for rule in APPS["served"].url_map.iter_rules():
        if rule.rule.startswith(API) and rule.endpoint != FALLBACK_ENDPOINT:
            app_rules[openapi_path(rule.rule)] = rule
    assert app_rules, "the API has routes"
    assert set(spec["paths"]) == set(app_rules)
    for path, rule in app_rules.items():
        assert set(spec["paths"][path]) == {"get"}
        assert rule.methods is not None and rule.methods - {"HEAD", "OPTIONS"} == {"GET"}
        operation = spec["paths"][path]["get"]
        assert "200" in operation["responses"] and operation["operationId"]
        declared = {p.split("/")[-1] for p in _refs(operation.get("parameters", []))}
        assert set(rule.arguments) <= declared, f"{path} documents its path parameters"

    for ref in _refs(spec):  # every $ref resolves inside the document
        node: Any = spec
        for part in ref.removeprefix("#/").split("/"):
            node = node[part]
        assert isinstance(node, dict)
    error = spec["components"]["schemas"]["Error"]["properties"]["error"]
    assert set(error["properties"]) == {"code", "message", "parameter"}


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def test_a_store_outage_is_a_503_in_the_same_shape(served: Dashboard, tmp_path: Path) -> None:
    settings = load_settings(
        {
            "PQMON_INFLUX_URL": f"http://127.0.0.1:{free_port()}",  # nothing listens there
            "PQMON_REGISTRY_URL": served.settings.registry_url,
            "PQMON_DATA_DIR": str(tmp_path),
            "PQMON_TZ": TZ,
        }
    )
    app = create_app(settings, registry=served.registry)
    token = Accounts(served.registry).issue_token("cust1")
    resp = app.server.test_client().get(
        API + "/sites/A001/report", headers={"Authorization": f"Bearer {token}"}, query_string=period(served)
    )
    assert resp.status_code == 503
    assert resp.json == {"error": {"code": "store_unavailable", "message": resp.json["error"]["message"]}}
