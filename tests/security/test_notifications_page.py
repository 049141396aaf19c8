"""A user's own subscriptions from the dashboard: added and removed for the session's user only,
for their own accounts only (real HTTP, real registry)."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from analysis.alerts.subscriptions import subscribe, subscriptions
from tests.browser.support import PASSWORD, WAIT_S, Dashboard, dash_post, requests_login

pytestmark = pytest.mark.integration

STATES = [
    ("notif-channel", "value"),
    ("notif-to", "value"),
    ("notif-secret", "value"),
    ("notif-severity", "value"),
    ("notif-sites", "value"),
    ("notif-quiet-from", "value"),
    ("notif-quiet-to", "value"),
    ("notif-remove-id", "value"),
]


def press(site: Dashboard, http: requests.Session, button: str, **values: Any) -> dict[str, Any]:
    body = {
        "output": "..notif-grid.rowData...notif-msg.children..",
        "outputs": [{"id": "notif-grid", "property": "rowData"}, {"id": "notif-msg", "property": "children"}],
        "inputs": [
            {"id": "notif-add", "property": "n_clicks", "value": 1 if button == "notif-add" else None},
            {"id": "notif-remove", "property": "n_clicks", "value": 1 if button == "notif-remove" else None},
        ],
        "state": [{"id": i, "property": p, "value": values.get(i.removeprefix("notif-"))} for i, p in STATES],
        "changedPropIds": [f"{button}.n_clicks"],
    }
    r = dash_post(site.url, http, body)
    assert r.status_code == 200, r.text[:300]
    return r.json()["response"]


def test_a_manager_manages_their_own_subscriptions_only(site: Dashboard) -> None:
    http, _ = requests_login(site.url, "mgrA", PASSWORD)
    http.get(site.url + "/_dash-layout", timeout=WAIT_S)
    added = press(
        site, http, "notif-add", channel="email", to="mgr@example.cn", severity="major", sites=["A001"]
    )
    [mine] = subscriptions(site.registry, "mgrA")
    assert mine.sites == frozenset({"A001"}) and mine.target == "mgr@example.cn"
    assert [r["id"] for r in added["notif-grid"]["rowData"]] == [mine.id]

    # Another account, a bad address, bad quiet hours: nothing saved.
    refused = press(
        site, http, "notif-add", channel="email", to="mgr@example.cn", severity="major", sites=["A002"]
    )
    assert "Not found or not permitted." in str(refused)
    bad = press(site, http, "notif-add", channel="email", to="not-an-address", severity="major")
    assert "Enter an e-mail address." in str(bad)
    quiet = press(
        site, http, "notif-add", channel="email", to="m@x.cn", severity="major", **{"quiet-from": "22"}
    )
    assert "Quiet hours are two times" in str(quiet)
    assert len(subscriptions(site.registry, "mgrA")) == 1

    # Someone else's subscription cannot be removed (nor seen); their own can.
    theirs = subscribe(site.registry, "oper1", "email", "ops@example.cn")
    other = press(site, http, "notif-remove", **{"remove-id": theirs})
    assert "Not found or not permitted." in str(other) and "ops@example.cn" not in str(other)
    assert [s.id for s in subscriptions(site.registry, "oper1")] == [theirs]
    gone = press(site, http, "notif-remove", **{"remove-id": mine.id})
    assert gone["notif-grid"]["rowData"] == [] and subscriptions(site.registry, "mgrA") == []


def test_customers_choose_their_notices_for_their_own_accounts_only(site: Dashboard) -> None:
    """A customer's notification preferences (the portal links here): their own account only."""
    http, _ = requests_login(site.url, "custA", PASSWORD)
    http.get(site.url + "/_dash-layout", timeout=WAIT_S)
    refused = press(
        site, http, "notif-add", channel="email", to="c@example.cn", severity="major", sites=["A002"]
    )
    assert "Not found or not permitted." in str(refused)
    assert subscriptions(site.registry, "custA") == []
    press(
        site, http, "notif-add", channel="email", to="c@example.cn", severity="major", sites=["A001"],
        **{"quiet-from": "22:00", "quiet-to": "07:00"},
    )  # fmt: skip
    [mine] = subscriptions(site.registry, "custA")
    assert mine.sites == frozenset({"A001"}) and mine.quiet == "22:00-07:00"
    removed = press(site, http, "notif-remove", **{"remove-id": mine.id})
    assert removed["notif-grid"]["rowData"] == [] and subscriptions(site.registry, "custA") == []
