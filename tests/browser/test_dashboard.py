"""The dashboard in a real browser, against a real InfluxDB and registry (README: security).

Each test proves one promise: nobody gets another account's figures through a page, a
callback or an unauthenticated call, and guessing passwords is throttled. The main path of
each role is in test_roles.py.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import requests
from selenium import webdriver

from tests.browser.support import (
    ACCOUNTS,
    PASSWORD,
    WAIT_S,
    Dashboard,
    login,
    requests_login,
    wait_text,
)

pytestmark = [pytest.mark.browser, pytest.mark.integration]

FORBIDDEN = "Not found or not permitted."
A001_VQR = ACCOUNTS["A001"][2]
A002_VQR, A002_NAME = ACCOUNTS["A002"][2], ACCOUNTS["A002"][0]


def account_payload(site_id: str, dash: Dashboard) -> dict[str, Any]:
    """What dash-renderer posts when the account page's dates change, naming ``site_id``."""
    day_from = (dash.data_day - timedelta(days=3)).isoformat()
    day_to = (dash.data_day + timedelta(days=1)).isoformat()
    return {
        "output": "..account-headline.children...account-trend.figure..",
        "outputs": [
            {"id": "account-headline", "property": "children"},
            {"id": "account-trend", "property": "figure"},
        ],
        "inputs": [
            {"id": "account-dates", "property": "start_date", "value": day_from},
            {"id": "account-dates", "property": "end_date", "value": day_to},
        ],
        "state": [{"id": "account-site", "property": "data", "value": site_id}],
        "changedPropIds": ["account-dates.start_date"],
    }


def test_anonymous_requests_are_refused(dashboard: Dashboard) -> None:
    base = dashboard.url
    page = requests.get(base + "/", allow_redirects=False, timeout=WAIT_S)
    assert page.status_code == 302
    assert page.headers["Location"].startswith("/login")
    deep = requests.get(base + "/account/A001", allow_redirects=False, timeout=WAIT_S)
    assert deep.status_code == 302 and "/login" in deep.headers["Location"]
    for path in ("/_dash-layout", "/_dash-dependencies"):
        assert requests.get(base + path, timeout=WAIT_S).status_code == 401
    update = requests.post(
        base + "/_dash-update-component", json=account_payload("A001", dashboard), timeout=WAIT_S
    )
    assert update.status_code == 401
    assert update.json()["error"] == "not logged in"
    assert A001_VQR not in update.text

    key_file = dashboard.settings.data_dir / "secret_key"
    assert key_file.stat().st_mode & 0o777 == 0o600

    _, resp = requests_login(base, "cust1", PASSWORD)
    assert resp.status_code == 302
    cookie = resp.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie


def test_customer_cannot_reach_another_account(dashboard: Dashboard, browser: webdriver.Chrome) -> None:
    base = dashboard.url
    login(browser, base, "cust1", PASSWORD)
    wait_text(browser, "portal-name-A001", "Alpha Foods Ltd")  # a customer lands on their portal
    assert "portal-A002" not in browser.page_source and A002_NAME not in browser.page_source

    browser.get(base + "/account/A002")
    wait_text(browser, "account-forbidden", FORBIDDEN)
    assert A002_VQR not in browser.page_source and A002_NAME not in browser.page_source
    browser.get(base + "/account/NOPE")
    wait_text(browser, "account-forbidden", FORBIDDEN)

    browser.get(base + "/account/A001")  # the control: their own account does show
    wait_text(browser, "account-vqr", A001_VQR + " %")

    cookies = {c["name"]: c["value"] for c in browser.get_cookies()}
    assert "pqmon_session" in cookies

    def post(site_id: str, csrf: bool = True) -> requests.Response:
        return requests.post(
            base + "/_dash-update-component",
            json=account_payload(site_id, dashboard),
            cookies=cookies,
            headers={"X-CSRFToken": cookies["_csrf_token"]} if csrf else {},
            timeout=WAIT_S,
        )

    unprotected = post("A001", csrf=False)
    assert unprotected.status_code == 400 and unprotected.json()["error"] == "csrf"
    assert A001_VQR not in unprotected.text

    own = post("A001")
    assert own.status_code == 200 and A001_VQR in own.text, "the forged payload must be valid"
    other = post("A002")
    assert other.status_code == 200
    assert FORBIDDEN in other.text
    assert A002_VQR not in other.text and "97.5" not in other.text
    assert A002_NAME not in other.text
    assert other.json()["response"]["account-trend"]["figure"]["data"] == []


def test_bad_password_then_throttle(dashboard: Dashboard, browser: webdriver.Chrome) -> None:
    base = dashboard.url
    login(browser, base, "victim", "wrong-password")
    wait_text(browser, "login-error", "Wrong user name or password.")
    for _ in range(4):
        login(browser, base, "victim", "wrong-password")
    wait_text(browser, "login-error", "Too many failed sign-in attempts")
    login(browser, base, "victim", PASSWORD)  # even the right password waits now
    wait_text(browser, "login-error", "Too many failed sign-in attempts")
    assert browser.current_url.startswith(base + "/login")
