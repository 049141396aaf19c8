"""The Alerts page over HTTP, as dash-renderer calls it: real registry, real AlertEngine, real
dispatcher delivering to a local webhook, the dashboard served from a thread.

Who sees what: operators every alert, a manager only their accounts' (and may acknowledge
only an incident wholly theirs), a customer nothing. Acknowledging writes the incident row
and stops its reminders; quiet modes start and end through the page.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.serving import make_server

from analysis.alerts.channels import channel_from_config
from analysis.alerts.dispatch import Dispatcher
from analysis.alerts.engine import AlertEngine, AlertPolicy, PowerEvent, Routes
from analysis.alerts.state import (
    ACKNOWLEDGED,
    FIRING,
    AlertRow,
    IncidentRow,
    OutboxRow,
    QuietRow,
)
from core.registry import Registry
from core.servers import LocalInflux, free_port
from core.settings import load_settings
from core.store import InfluxStore
from dashboard.app import create_app
from tests.browser.support import PASSWORD, WAIT_S, requests_login
from tests.integration.receivers import HttpReceiver

pytestmark = pytest.mark.integration

TZ = "Asia/Shanghai"
FORBIDDEN = "Not found or not permitted."
HEADER = "site_id,site_kind,name,voltage_class_kv,phases,meter_id,nominal_v,upper_pct,lower_pct,profile,feeder_id,manager\n"
SITES = [
    "F1,feeder,Feeder One,10,3,F1-M,57.7,,,gb,,",
    "A001,account,Alpha Foods,10,3,A001-M,57.7,,,gb,F1,",
    "A002,account,Beta Steel,10,3,A002-M,57.7,,,gb,F1,",
    "B001,account,Gamma Mill,0.38,3,B001-M,220,,,gb,,",
    "C001,account,Delta Works,0.38,3,C001-M,220,,,gb,,",
    "C002,account,Epsilon Yard,0.38,3,C002-M,220,,,gb,,",
] + [
    f"D00{i},account,Quiet {i},0.38,3,D00{i}-M,220,,,gb,," for i in range(1, 7)
]  # no outages: no fleet-wide incident
MANAGER_SITES = ["A001", "B001"]
RENOTIFY_S = 1800.0


@dataclass
class Stack:
    url: str
    registry: Registry
    incidents: dict[str, int]  # "feeder", "b001", "c001", "c002", "b001_old"
    receiver: HttpReceiver


def off(site: str, ts: int) -> PowerEvent:
    return PowerEvent(site, f"{site}-M", "power_off", ts, f"{site}-off-{ts}")


def on(site: str, ts: int) -> PowerEvent:
    return PowerEvent(site, f"{site}-M", "power_on", ts, f"{site}-on-{ts}")


def incident_of(registry: Registry, site: str, resolved: bool = False) -> int:
    with Session(registry.engine) as s:
        q = select(AlertRow.incident_id).where(AlertRow.site_id == site)
        q = q.where(AlertRow.state == "resolved") if resolved else q.where(AlertRow.state != "resolved")
        found = s.scalar(q)
    assert found is not None, f"no incident for {site}"
    return int(found)


def incident_row(registry: Registry, incident_id: int) -> IncidentRow:
    with Session(registry.engine) as s:
        row = s.get(IncidentRow, incident_id)
        assert row is not None
        s.expunge(row)
        return row


@pytest.fixture(scope="module")
def stack(influx: LocalInflux, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp: Path = tmp_path_factory.mktemp("alerts_page")
    settings = load_settings(
        {
            "PQMON_INFLUX_URL": influx.url,
            "PQMON_INFLUX_DB": "pqmon_alerts_page",
            "PQMON_REGISTRY_URL": f"sqlite:///{tmp / 'registry.db'}",
            "PQMON_DATA_DIR": str(tmp),
            "PQMON_TZ": TZ,
            "PQMON_LANG": "en",
        }
    )
    registry = Registry(settings.registry_url)
    (tmp / "sites.csv").write_text(HEADER + "\n".join(SITES) + "\n")
    registry.import_csv(tmp / "sites.csv")
    registry.add_user("op", "operator", PASSWORD, [])
    registry.add_user("mgr", "manager", PASSWORD, MANAGER_SITES)
    registry.add_user("cust", "customer", PASSWORD, ["A001"])

    receiver = HttpReceiver().start()
    engine = AlertEngine(registry, Routes({"ops": ["hook"]}), AlertPolicy(renotify_s=RENOTIFY_S, tz=TZ))
    now = int(time.time() * 1000)
    t = now - 600_000
    engine.on_events([off("B001", t - 7_200_000), on("B001", t - 6_600_000)])  # resolved, the manager's
    engine.on_events([off("C001", t - 3_600_000), on("C001", t - 3_000_000)])  # resolved, nobody's
    engine.on_events([off("A001", t), off("A002", t + 5_000)])  # one feeder incident, two accounts
    engine.on_events([off("B001", t - 120_000)])  # minutes apart: separate incidents
    engine.on_events([off("C002", t - 240_000)])
    channels = {"hook": channel_from_config("hook", {"type": "webhook", "url": receiver.url + "/hook"})}
    dispatcher = Dispatcher(registry, channels)
    dispatcher.run_once(wait=True)
    dispatcher.close()
    assert receiver.requests, "the webhook received the pages (the delivery log has rows)"
    incidents = {
        "feeder": incident_of(registry, "A001"),
        "b001": incident_of(registry, "B001"),
        "c002": incident_of(registry, "C002"),
        "c001": incident_of(registry, "C001", resolved=True),
        "b001_old": incident_of(registry, "B001", resolved=True),
    }
    assert incident_of(registry, "A002") == incidents["feeder"]
    store = InfluxStore.from_settings(settings)
    store.ensure_database()
    app = create_app(settings, registry=registry, store=store)
    server = make_server("127.0.0.1", free_port(), app.server, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="dashboard-alerts", daemon=True)
    thread.start()
    yield Stack(f"http://127.0.0.1:{server.server_port}", registry, incidents, receiver)
    server.shutdown()
    thread.join(10)
    server.server_close()
    receiver.stop()
    store.close()
    registry.close()


# -- speaking dash-renderer's protocol ----------------------------------------------------------
def session_of(stack: Stack, name: str) -> requests.Session:
    http, resp = requests_login(stack.url, name, PASSWORD)
    assert resp.status_code == 302, f"{name} could not log in"
    http.get(stack.url + "/_dash-layout", timeout=WAIT_S)  # hands out the CSRF cookie
    assert http.cookies.get("_csrf_token")
    return http


def call(
    stack: Stack,
    http: requests.Session,
    outputs: list[tuple[str, str]],
    inputs: list[tuple[str, str, Any]],
    state: list[tuple[str, str, Any]] = (),  # type: ignore[assignment]
) -> requests.Response:
    if len(outputs) == 1:
        output = "{}.{}".format(*outputs[0])
    else:
        output = ".." + "...".join(f"{i}.{p}" for i, p in outputs) + ".."
    # The callback these inputs trigger; outputs shared by two callbacks carry an @hash in its key.
    [output] = [
        d["output"]
        for d in http.get(stack.url + "/_dash-dependencies", timeout=WAIT_S).json()
        if _bare(d["output"]) == output and d["inputs"][0] == {"id": inputs[0][0], "property": inputs[0][1]}
    ]
    payload = {
        "output": output,
        "outputs": [{"id": i, "property": p} for i, p in outputs]
        if len(outputs) > 1
        else {"id": outputs[0][0], "property": outputs[0][1]},
        "inputs": [{"id": i, "property": p, "value": v} for i, p, v in inputs],
        "state": [{"id": i, "property": p, "value": v} for i, p, v in state],
        "changedPropIds": [f"{inputs[0][0]}.{inputs[0][1]}"],
    }
    return http.post(
        stack.url + "/_dash-update-component",
        json=payload,
        headers={"X-CSRFToken": http.cookies.get("_csrf_token") or ""},
        timeout=WAIT_S,
    )


def _bare(key: str) -> str:
    """A callback key without the @hash Dash adds to outputs shared with another callback."""
    return re.sub(r"@[0-9a-f]+", "", key)


ALERT_OUTPUTS = [("alerts-grid", "rowData"), ("alerts-ack-incident", "data"), ("alerts-message", "children")]


def open_grid(
    stack: Stack, http: requests.Session, site: str | None = None, state: str = "open"
) -> requests.Response:
    return call(
        stack,
        http,
        ALERT_OUTPUTS,
        [
            ("alerts-site", "value", site),
            ("alerts-feeder", "value", None),
            ("alerts-rule", "value", None),
            ("alerts-severity", "value", None),
            ("alerts-state", "value", state),
            ("alerts-acked", "data", 0),
            ("alerts-quieted", "data", 0),
            ("alerts-tick", "n_intervals", None),
        ],
    )


def acknowledge(stack: Stack, http: requests.Session, incident: Any, comment: str) -> requests.Response:
    return call(
        stack,
        http,
        [("alerts-ack-message", "children"), ("alerts-acked", "data")],
        [("alerts-ack-button", "n_clicks", 1)],
        [
            ("alerts-ack-incident", "value", incident),
            ("alerts-ack-comment", "value", comment),
            ("alerts-acked", "data", 0),
        ],
    )


def logs(stack: Stack, http: requests.Session) -> dict[str, Any]:
    day = time.strftime("%Y-%m-%d", time.gmtime(time.time() + 8 * 3600))  # today in Asia/Shanghai
    resp = call(
        stack,
        http,
        [
            ("alerts-history-grid", "rowData"),
            ("alerts-notice-grid", "rowData"),
            ("alerts-delivery-grid", "rowData"),
            ("alerts-log-message", "children"),
        ],
        [
            ("alerts-period", "start_date", day),
            ("alerts-period", "end_date", day),
            ("alerts-acked", "data", 0),
        ],
    )
    assert resp.status_code == 200, resp.text
    return dict(resp.json()["response"])


def rows(resp: requests.Response) -> list[dict[str, Any]]:
    assert resp.status_code == 200, resp.text
    return list(resp.json()["response"]["alerts-grid"]["rowData"])


def find(node: Any, component_id: str) -> dict[str, Any] | None:
    """The component with this id in a Dash layout JSON tree."""
    if isinstance(node, dict):
        if node.get("props", {}).get("id") == component_id:
            return node
        children = node.get("props", {}).get("children")
        return find(children, component_id) if children is not None else None
    if isinstance(node, list):
        for child in node:
            found = find(child, component_id)
            if found is not None:
                return found
    return None


def badge_count(stack: Stack, http: requests.Session) -> str:
    shell = http.get(stack.url + "/_dash-layout", timeout=WAIT_S)
    assert shell.status_code == 200
    link = find(shell.json(), "nav-alerts")
    assert link is not None, "no open-alert badge in the navbar"
    badge = [c for c in link["props"]["children"] if isinstance(c, dict) and c.get("type") == "Badge"]
    return str(badge[0]["props"]["children"])


def page(stack: Stack, http: requests.Session, path: str = "/alerts") -> requests.Response:
    """The page content as Dash's router callback returns it for ``path``."""
    return call(
        stack,
        http,
        [("_pages_content", "children"), ("_pages_store", "data")],
        [("_pages_location", "pathname", path), ("_pages_location", "search", "")],
    )


# -- the tests -----------------------------------------------------------------------------------
def test_operator_sees_every_open_alert_newest_first_and_the_badge_counts_them(stack: Stack) -> None:
    http = session_of(stack, "op")
    assert page(stack, http).status_code == 200
    assert "Acknowledge an incident" in page(stack, http).text
    assert "Quiet modes" in page(stack, http).text  # staff may start storm and maintenance modes
    listed = rows(open_grid(stack, http))
    assert sorted(r["site"] for r in listed) == ["A001", "A002", "B001", "C002"]
    feeder = [r for r in listed if r["site"] in ("A001", "A002")]
    assert {r["incident"] for r in feeder} == {stack.incidents["feeder"]}
    assert all(r["state"] == "Unacknowledged" and r["rule"] == "Outage" for r in listed)
    assert [r["site"] for r in listed] == ["A002", "A001", "B001", "C002"], "newest first"
    options = open_grid(stack, http).json()["response"]["alerts-ack-incident"]["data"]
    assert {o["value"] for o in options} >= {str(stack.incidents["feeder"]), str(stack.incidents["b001"])}

    resolved = rows(open_grid(stack, http, state="resolved"))
    assert sorted(r["site"] for r in resolved) == ["B001", "C001"]
    assert all(r["minutes"] == "10.0" for r in resolved), "each outage lasted 10 minutes"
    assert badge_count(stack, http) == "4"

    log = logs(stack, http)
    assert sorted(r["site"] for r in log["alerts-history-grid"]["rowData"]) == ["B001", "C001"]
    delivered = log["alerts-delivery-grid"]["rowData"]
    assert {r["incident"] for r in delivered} >= {stack.incidents["c001"], stack.incidents["feeder"]}
    assert all(r["ok"] == "yes" and r["channel"] == "hook" for r in delivered)


def test_manager_sees_only_their_accounts(stack: Stack) -> None:
    http = session_of(stack, "mgr")
    listed = open_grid(stack, http)
    assert sorted(r["site"] for r in rows(listed)) == ["A001", "B001"]
    assert "A002" not in listed.text and "Beta Steel" not in listed.text and "C002" not in listed.text
    # The feeder incident also holds A002, so only B001's is theirs to acknowledge.
    options = listed.json()["response"]["alerts-ack-incident"]["data"]
    assert [o["value"] for o in options] == [str(stack.incidents["b001"])]
    assert badge_count(stack, http) == "2"

    probing = open_grid(stack, http, site="A002")
    assert FORBIDDEN in probing.text and rows(probing) == [] and "Beta Steel" not in probing.text

    log = logs(stack, http)
    assert [r["site"] for r in log["alerts-history-grid"]["rowData"]] == ["B001"]
    delivered = {r["incident"] for r in log["alerts-delivery-grid"]["rowData"]}
    assert stack.incidents["b001"] in delivered and stack.incidents["feeder"] in delivered
    assert stack.incidents["c001"] not in delivered and stack.incidents["c002"] not in delivered
    assert "Quiet modes" not in page(stack, http).text


def test_manager_may_not_acknowledge_an_incident_of_another_account(stack: Stack) -> None:
    http = session_of(stack, "mgr")
    feeder = stack.incidents["feeder"]
    for target in (feeder, stack.incidents["c002"], 987654):
        refused = acknowledge(stack, http, str(target), "mine now")
        assert refused.status_code == 200 and FORBIDDEN in refused.text
    for target in (feeder, stack.incidents["c002"]):
        row = incident_row(stack.registry, target)
        assert (row.state, row.acked_by, row.ack_comment) == (FIRING, None, None)
        assert row.next_notify_ms is not None

    done = acknowledge(stack, http, str(stack.incidents["b001"]), "calling the customer")
    assert "acknowledged" in done.text and done.json()["response"]["alerts-acked"]["data"] == 1
    row = incident_row(stack.registry, stack.incidents["b001"])
    assert (row.state, row.acked_by, row.ack_comment) == (ACKNOWLEDGED, "mgr", "calling the customer")


def test_operator_acknowledges_with_a_comment_and_reminders_stop(stack: Stack) -> None:
    http = session_of(stack, "op")
    feeder = stack.incidents["feeder"]
    blank = acknowledge(stack, http, str(feeder), "   ")
    assert "comment is required" in blank.text
    assert incident_row(stack.registry, feeder).state == FIRING

    done = acknowledge(stack, http, str(feeder), "crew dispatched to F1")
    assert done.status_code == 200 and f"Incident {feeder} acknowledged." in done.text
    row = incident_row(stack.registry, feeder)
    assert (row.state, row.acked_by, row.ack_comment) == (ACKNOWLEDGED, "op", "crew dispatched to F1")
    assert row.next_notify_ms is None and row.acked_ms is not None
    listed = rows(open_grid(stack, http, state="acknowledged"))
    assert {(r["site"], r["acked_by"], r["comment"]) for r in listed if r["incident"] == feeder} == {
        ("A001", "op", "crew dispatched to F1"),
        ("A002", "op", "crew dispatched to F1"),
    }

    # Past the re-notification interval the engine reminds of C002 (the control), never of F1.
    later = time.time() + RENOTIFY_S + 60
    engine = AlertEngine(
        stack.registry, Routes({"ops": ["hook"], "escalation": ["hook"]}), clock=lambda: later
    )
    engine.tick()
    with Session(stack.registry.engine) as s:
        after = s.scalars(select(OutboxRow).where(OutboxRow.kind.in_(("reminder", "escalation")))).all()
        nagged = {r.incident_id for r in after}
    assert stack.incidents["c002"] in nagged
    assert feeder not in nagged and stack.incidents["b001"] not in nagged


def test_customer_cannot_open_the_page_or_call_its_callbacks(stack: Stack) -> None:
    http = session_of(stack, "cust")
    content = page(stack, http)
    assert FORBIDDEN in content.text and "Acknowledge an incident" not in content.text
    shell = http.get(stack.url + "/_dash-layout", timeout=WAIT_S).text
    assert '"/alerts"' not in shell, "no link to the page for customers"

    grid = open_grid(stack, http)
    assert grid.status_code == 200 and FORBIDDEN in grid.text
    assert rows(grid) == [] and "A001" not in grid.text and "Alpha" not in grid.text
    log = logs(stack, http)
    assert log["alerts-history-grid"]["rowData"] == [] and log["alerts-delivery-grid"]["rowData"] == []

    c002 = stack.incidents["c002"]
    refused = acknowledge(stack, http, str(c002), "not mine")
    assert FORBIDDEN in refused.text
    assert incident_row(stack.registry, c002).acked_by is None


def test_operator_starts_and_ends_a_quiet_mode_and_a_manager_cannot(stack: Stack) -> None:
    until = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(time.time() + 8 * 3600 + 7200))  # local +2 h
    start = (
        [("alerts-quiet-message", "children"), ("alerts-quieted", "data")],
        [("alerts-quiet-start", "n_clicks", 1)],
    )

    def state(scope: str, target: str | None, reason: str) -> list[tuple[str, str, Any]]:
        return [
            ("alerts-quiet-scope", "value", scope),
            ("alerts-quiet-target", "value", target),
            ("alerts-quiet-until", "value", until),
            ("alerts-quiet-reason", "value", reason),
            ("alerts-quieted", "data", 0),
        ]

    mgr = session_of(stack, "mgr")
    refused = call(stack, mgr, *start, state("storm", None, "manager storm"))
    assert FORBIDDEN in refused.text

    http = session_of(stack, "op")
    done = call(stack, http, *start, state("feeder", "F1", "switchgear work"))
    assert "started" in done.text, done.text
    with Session(stack.registry.engine) as s:
        modes = s.scalars(select(QuietRow)).all()
        assert [(m.scope, m.target, m.reason, m.created_by) for m in modes] == [
            ("feeder", "F1", "switchgear work", "op")
        ]
        mode_id, until_ms = modes[0].id, modes[0].until_ms
    assert abs(until_ms - (time.time() + 7200) * 1000) < 61_000, "the end time is read in the site's zone"
    assert "switchgear work" in http.get(stack.url + "/_dash-layout", timeout=WAIT_S).text  # the banner

    ended = call(
        stack,
        http,
        [("alerts-quiet-message", "children"), ("alerts-quieted", "data")],
        [("alerts-quiet-release", "n_clicks", 1)],
        [("alerts-quiet-mode", "value", str(mode_id)), ("alerts-quieted", "data", 1)],
    )
    assert "ended" in ended.text, ended.text
    with Session(stack.registry.engine) as s:
        row = s.get(QuietRow, mode_id)
        assert row is not None and row.until_ms <= time.time() * 1000
    assert "switchgear work" not in http.get(stack.url + "/_dash-layout", timeout=WAIT_S).text
