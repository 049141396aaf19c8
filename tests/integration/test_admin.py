"""The administration pages' callbacks over HTTP, as dash-renderer posts them (with the CSRF
token), against a real registry, InfluxDB and dashboard server.

Each test proves one promise: an administrator's changes happen and are audited; a registry
import is shown before it is applied and the preview writes nothing; Apply writes exactly the
previewed file and nothing else; and anyone else calling the same callbacks changes nothing.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import requests
from werkzeug.serving import BaseWSGIServer, make_server

from core.accounts import Accounts
from core.registry import CSV_COLUMNS, Registry
from core.servers import LocalInflux, free_port
from core.settings import load_settings
from core.store import InfluxStore
from dashboard.app import create_app
from dashboard.periods import today
from tests.browser.support import PASSWORD, TZ, Dashboard, registry_rows, requests_login

pytestmark = pytest.mark.integration

T = 30
FORBIDDEN = "Not found or not permitted."


@pytest.fixture(scope="module")
def served(influx: LocalInflux, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dashboard]:
    data_dir = tmp_path_factory.mktemp("pqmon-admin")
    settings = load_settings(
        {
            "PQMON_INFLUX_URL": influx.url,
            "PQMON_INFLUX_DB": "pqmon_admin",
            "PQMON_REGISTRY_URL": f"sqlite:///{data_dir / 'registry.db'}",
            "PQMON_DATA_DIR": str(data_dir),
            "PQMON_TZ": TZ,
            "PQMON_LANG": "en",
        }
    )
    registry = Registry(settings.registry_url)
    registry.add_user("mgr", "manager", PASSWORD)
    registry.upsert_rows(registry_rows())
    registry.add_user("root", "admin", PASSWORD)
    store = InfluxStore.from_settings(settings)
    store.ensure_database()
    app = create_app(settings, registry=registry, store=store)
    server: BaseWSGIServer = make_server("127.0.0.1", free_port(), app.server, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="dashboard-admin", daemon=True)
    thread.start()
    yield Dashboard(f"http://127.0.0.1:{server.server_port}", settings, registry, store, today(TZ))
    server.shutdown()
    thread.join(10)
    server.server_close()
    store.close()
    registry.close()


def session_of(d: Dashboard, name: str) -> requests.Session:
    http, resp = requests_login(d.url, name, PASSWORD)
    assert resp.status_code == 302 and "_csrf_token" in http.cookies
    return http


def call(
    http: requests.Session,
    d: Dashboard,
    outputs: list[str],
    inputs: dict[str, Any],
    state: dict[str, Any] | None = None,
    changed: str | None = None,
) -> requests.Response:
    """POST one callback as dash-renderer does; ids and values as 'component.property'."""

    def spec(key: str, value: Any = None, with_value: bool = True) -> dict[str, Any]:
        cid, prop = key.rsplit(".", 1)
        return {"id": cid, "property": prop, **({"value": value} if with_value else {})}

    outs = [spec(o, with_value=False) for o in outputs]
    payload = {
        "output": ".." + "...".join(outputs) + ".." if len(outputs) > 1 else outputs[0],
        "outputs": outs if len(outputs) > 1 else outs[0],
        "inputs": [spec(k, v) for k, v in inputs.items()],
        "state": [spec(k, v) for k, v in (state or {}).items()],
        "changedPropIds": [changed or next(iter(inputs))],
    }
    return http.post(
        d.url + "/_dash-update-component",
        json=payload,
        headers={"X-CSRFToken": http.cookies["_csrf_token"]},
        timeout=T,
    )


CREATE_OUT = ["adm-create-msg.children", "adm-create-done.data", "adm-new-password.value"]
IMPORT_OUT = ["adm-preview.children", "adm-preview-key.data", "adm-apply.disabled", "adm-apply-msg.children"]


def create(http: requests.Session, d: Dashboard, name: str, role: str, sites: list[str]) -> requests.Response:
    return call(
        http,
        d,
        CREATE_OUT,
        {"adm-create.n_clicks": 1},
        {
            "adm-new-name.value": name,
            "adm-new-role.value": role,
            "adm-new-password.value": PASSWORD,
            "adm-new-sites.value": sites,
        },
    )


def upload(csv_text: str) -> str:
    return "data:text/csv;base64," + base64.b64encode(csv_text.encode()).decode()


def import_call(
    http: requests.Session, d: Dashboard, contents: str, key: Any = None, apply: bool = False
) -> requests.Response:
    return call(
        http,
        d,
        IMPORT_OUT,
        {"adm-upload.contents": contents, "adm-apply.n_clicks": 1 if apply else None},
        {"adm-upload.filename": "sites.csv", "adm-preview-key.data": key},
        changed="adm-apply.n_clicks" if apply else "adm-upload.contents",
    )


def csv_file(*lines: str) -> str:
    return ",".join(CSV_COLUMNS) + "\n" + "\n".join(lines) + "\n"


RENAME_A001 = "A001,account,Alpha Renamed,10,3,MA001,57.74,,,gb,,mgr"
ADD_A003 = "A003,account,Gamma Glass,10,3,MA003,57.74,,,gb,,newmgr"


def snapshot(registry: Registry) -> Any:
    return (registry.sites(), registry.users())


def response(resp: requests.Response) -> dict[str, Any]:
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()["response"]
    return body


def test_admin_creates_a_user_previews_and_applies_an_import(served: Dashboard) -> None:
    admin = session_of(served, "root")
    made = response(create(admin, served, "newmgr", "manager", ["A001"]))
    assert "User newmgr created" in json.dumps(made)
    user = served.registry.user("newmgr")
    assert user is not None and user.role == "manager" and user.sites == {"A001"}
    assert made["adm-new-password"]["value"] == "", "the password field is cleared"
    again = response(create(admin, served, "newmgr", "customer", ["A002"]))
    assert "exists already" in json.dumps(again)
    assert served.registry.user("newmgr") == user, "an existing user is not overwritten"

    before = snapshot(served.registry)
    text = csv_file(RENAME_A001, "A002,account,Beta Steel Works,10,3,MA002,57.74,,,gb,,mgr", ADD_A003)
    shown = response(import_call(admin, served, upload(text)))
    page = json.dumps(shown["adm-preview"], ensure_ascii=False)
    for expected in ("Alpha Foods Ltd", "Alpha Renamed", "A003", "Gamma Glass", "MA003", "newmgr"):
        assert expected in page, expected
    assert "Sites: 1 added, 1 changed, 1 unchanged" in page
    key = shown["adm-preview-key"]["data"]
    assert isinstance(key, str) and shown["adm-apply"]["disabled"] is False
    assert snapshot(served.registry) == before, "the preview changed nothing"
    assert not [e for e in Accounts(served.registry).audit_log() if e.action == "registry.import"]

    # Apply with another file than the one previewed: refused, nothing written
    other = csv_file(RENAME_A001, ADD_A003, "A004,account,Delta,10,3,MA004,57.74,,,gb,,")
    refused = response(import_call(admin, served, upload(other), key, apply=True))
    assert "changed since the preview" in json.dumps(refused)
    assert snapshot(served.registry) == before

    applied = response(import_call(admin, served, upload(text), key, apply=True))
    assert "Applied sites.csv: 1 site(s) added, 1 changed" in json.dumps(applied)
    assert applied["adm-apply"]["disabled"] is True
    assert served.registry.site("A001").name == "Alpha Renamed"
    assert served.registry.site("A003").name == "Gamma Glass"
    assert "A004" not in {s.id for s in served.registry.sites()}
    assert served.registry.user("newmgr").sites == {"A001", "A003"}  # type: ignore[union-attr]

    # the same key again: the registry it was shown against has changed
    stale = response(import_call(admin, served, upload(text), key, apply=True))
    assert "changed since the preview" in json.dumps(stale)

    log = Accounts(served.registry).audit_log()
    created = [e for e in log if e.action == "user.create" and e.target == "newmgr"]
    assert len(created) == 1 and created[0].actor == "root"
    assert created[0].detail == {"role": "manager", "sites": ["A001"]}
    imports = [e for e in log if e.action == "registry.import"]
    assert len(imports) == 1 and imports[0].actor == "root" and imports[0].target == "sites.csv"
    assert imports[0].detail["sites_added"] == 1 and imports[0].detail["assignments_added"] == 1
    assert {
        "line": 2,
        "target": "A001",
        "field": "name",
        "old": "Alpha Foods Ltd",
        "new": "Alpha Renamed",
    } in imports[0].detail["changes"]
    assert log.index(imports[0]) < log.index(created[0]), "newest first"


def test_a_file_with_errors_cannot_be_applied(served: Dashboard) -> None:
    admin = session_of(served, "root")
    before = snapshot(served.registry)
    bad = csv_file("A009,account,Bad,10,2,MA009,57.74,,,gb,,")
    shown = response(import_call(admin, served, upload(bad)))
    assert "Line 2: phases must be 1 or 3" in json.dumps(shown)
    assert shown["adm-preview-key"]["data"] is None and shown["adm-apply"]["disabled"] is True
    forced = response(import_call(admin, served, upload(bad), "0" * 64, apply=True))
    assert "changed since the preview" in json.dumps(forced)
    assert snapshot(served.registry) == before


def test_admin_changes_role_password_disable_and_tokens(served: Dashboard) -> None:
    admin = session_of(served, "root")
    response(create(admin, served, "clerk", "customer", ["A002"]))
    clerk = session_of(served, "clerk")
    saved = call(
        admin,
        served,
        ["adm-save-msg.children", "adm-save-done.data"],
        {"adm-save.n_clicks": 1},
        {
            "adm-edit-user.value": "clerk",
            "adm-edit-role.value": "manager",
            "adm-edit-sites.value": ["A001", "A002"],
        },
    )
    assert "User clerk saved" in json.dumps(response(saved))
    assert served.registry.user("clerk").role == "manager"  # type: ignore[union-attr]
    issued = call(
        admin,
        served,
        ["adm-token-msg.children", "adm-token-done.data"],
        {"adm-token.n_clicks": 1, "adm-revoke.n_clicks": None},
        {"adm-edit-user.value": "clerk", "adm-token-label.value": "reports"},
    )
    token = next(w for w in json.dumps(response(issued)).replace('"', " ").split() if w.startswith("pqm_"))
    api = requests.get(served.url + "/api/v1/sites", headers={"Authorization": f"Bearer {token}"}, timeout=T)
    assert {s["id"] for s in api.json()["sites"]} == {"A001", "A002"}
    assert clerk.get(served.url + "/api/v1/sites", timeout=T).status_code == 200

    toggled = call(
        admin,
        served,
        ["adm-toggle-msg.children", "adm-toggle-done.data"],
        {"adm-disable.n_clicks": 1, "adm-enable.n_clicks": None},
        {"adm-edit-user.value": "clerk"},
    )
    assert "User clerk disabled" in json.dumps(response(toggled))
    assert clerk.get(served.url + "/api/v1/sites", timeout=T).status_code == 401, "the session ended"
    again = requests.get(
        served.url + "/api/v1/sites", headers={"Authorization": f"Bearer {token}"}, timeout=T
    )
    assert again.status_code == 401, "the token was revoked"

    myself = call(
        admin,
        served,
        ["adm-toggle-msg.children", "adm-toggle-done.data"],
        {"adm-disable.n_clicks": 1, "adm-enable.n_clicks": None},
        {"adm-edit-user.value": "root"},
    )
    assert "cannot disable your own account" in json.dumps(response(myself))
    assert served.registry.user("root") is not None

    actions = [(e.action, e.target) for e in Accounts(served.registry).audit_log()]
    for expected in (("user.change", "clerk"), ("user.token", "clerk"), ("user.disable", "clerk")):
        assert expected in actions
    change = next(e for e in Accounts(served.registry).audit_log() if e.action == "user.change")
    assert change.detail["before"] == {"role": "customer", "sites": ["A002"]}
    assert change.detail["after"] == {"role": "manager", "sites": ["A001", "A002"]}


def test_planned_outage_add_move_cancel(served: Dashboard) -> None:
    admin = session_of(served, "root")
    day = served.data_day + timedelta(days=10)
    added = call(
        admin,
        served,
        ["adm-pl-add-msg.children", "adm-pl-add-done.data"],
        {"adm-pl-add.n_clicks": 1},
        {
            "adm-pl-site.value": "A001",
            "adm-pl-start.value": f"{day} 09:00:00",
            "adm-pl-end.value": f"{day} 12:00:00",
            "adm-pl-note.value": "transformer swap",
        },
    )
    assert "registered" in json.dumps(response(added))
    (window,) = served.registry.planned_windows("A001")
    assert window.start_utc.hour == 1 and window.note == "transformer swap"  # 09:00 Shanghai is 01:00 UTC

    def change(button: str, start: str = "", end: str = "") -> str:
        resp = call(
            admin,
            served,
            ["adm-pl-change-msg.children", "adm-pl-change-done.data"],
            {"adm-pl-move.n_clicks": 1 if button == "move" else None, "adm-pl-cancel.n_clicks": 1},
            {
                "adm-pl-window.value": str(window.id),
                "adm-pl-new-start.value": start,
                "adm-pl-new-end.value": end,
            },
            changed=f"adm-pl-{button}.n_clicks",
        )
        return json.dumps(response(resp))

    assert "end must be after the start" in change("move", f"{day} 12:00", f"{day} 10:00")
    assert "moved" in change("move", f"{day} 13:00", f"{day} 15:00")
    assert served.registry.planned_window(window.id).start_utc.hour == 5
    assert "cancelled" in change("cancel")
    assert served.registry.planned_window(window.id).state == "cancelled"
    assert "not cancelled" in change("move", f"{day} 13:00", f"{day} 15:00")
    audit = {e.action: e for e in Accounts(served.registry).audit_log() if e.target == str(window.id)}
    assert set(audit) == {"planned.add", "planned.move", "planned.cancel"}
    assert audit["planned.move"].detail["before"]["start"].endswith("09:00")
    assert audit["planned.move"].detail["after"]["start"].endswith("13:00")


def test_non_admins_are_refused_and_change_nothing(served: Dashboard) -> None:
    manager = session_of(served, "mgr")
    before = snapshot(served.registry)
    audit_before = Accounts(served.registry).audit_log()

    made = create(manager, served, "intruder", "admin", [])
    assert FORBIDDEN in made.text and served.registry.user("intruder") is None

    text = csv_file("A001,account,Hijacked,10,3,MA001,57.74,,,gb,,mgr")
    shown = response(import_call(manager, served, upload(text)))
    assert FORBIDDEN in json.dumps(shown) and "Hijacked" not in json.dumps(shown)
    assert shown["adm-preview-key"]["data"] is None
    forced = response(import_call(manager, served, upload(text), "0" * 64, apply=True))
    assert FORBIDDEN in json.dumps(forced)

    toggled = call(
        manager,
        served,
        ["adm-toggle-msg.children", "adm-toggle-done.data"],
        {"adm-disable.n_clicks": 1, "adm-enable.n_clicks": None},
        {"adm-edit-user.value": "root"},
    )
    assert FORBIDDEN in toggled.text
    users = call(
        manager,
        served,
        ["adm-users-grid.rowData", "adm-edit-user.data"],
        {
            "adm-create-done.data": 1,
            "adm-save-done.data": 0,
            "adm-reset-done.data": 0,
            "adm-toggle-done.data": 0,
            "adm-token-done.data": 0,
        },
    )
    assert "root" not in users.text, "the user list is not handed out either"

    assert snapshot(served.registry) == before
    assert Accounts(served.registry).audit_log() == audit_before
    # the Administration link is offered to administrators only
    assert "Administration" not in manager.get(served.url + "/_dash-layout", timeout=T).text
    assert "Administration" in session_of(served, "root").get(served.url + "/_dash-layout", timeout=T).text


def test_every_admin_page_renders_for_an_admin_only(served: Dashboard) -> None:
    """The layouts themselves (the callbacks above never build them): each builds for an
    administrator with its controls, and gives anyone else the refusal."""
    import dash
    from flask import g

    app = create_app(served.settings, registry=served.registry, store=served.store)
    expected = {"/admin": "adm-users-grid", "/admin/registry": "adm-upload", "/admin/planned": "adm-pl-grid"}
    expected["/admin/audit"] = "adm-audit-grid"
    pages = {p["path"]: p for p in dash.page_registry.values() if p["path"] in expected}
    assert set(pages) == set(expected)
    for who, allowed in (("root", True), ("mgr", False)):
        for path, component_id in expected.items():
            with app.server.test_request_context(path):
                g.pqmon_user = served.registry.user(who)
                shown = str(pages[path]["layout"]())
            assert (component_id in shown) is allowed, (who, path)
            assert (FORBIDDEN in shown) is not allowed, (who, path)
