"""Sessions live on the server: a cookie copied before logout or a password change is refused after."""

from __future__ import annotations

import pytest
import requests

from core.accounts import Accounts
from tests.browser.support import ACCOUNTS, PASSWORD, WAIT_S, Dashboard, requests_login

pytestmark = pytest.mark.integration

A001_VQR = ACCOUNTS["A001"][2]


def overview_reads(base: str, cookies: dict[str, str]) -> requests.Response:
    """The account page of A001 through a plain GET of the page shell plus its layout."""
    return requests.get(base + "/_dash-layout", cookies=cookies, timeout=WAIT_S)


def copy_of(http: requests.Session) -> dict[str, str]:
    return {c.name: c.value for c in http.cookies}


def test_cookie_copied_before_logout_is_refused(site: Dashboard) -> None:
    http, resp = requests_login(site.url, "custA", PASSWORD)
    assert resp.status_code == 302
    saved = copy_of(http)
    assert overview_reads(site.url, saved).status_code == 200, "the control: the copy works while logged in"
    http.get(site.url + "/logout", timeout=WAIT_S)
    after = overview_reads(site.url, saved)
    assert after.status_code == 401
    assert "custA" not in after.text


def test_cookie_copied_before_password_change_is_refused(site: Dashboard) -> None:
    accounts = Accounts(site.registry)
    first, _ = requests_login(site.url, "mgrA", PASSWORD)
    second, _ = requests_login(site.url, "mgrA", PASSWORD)  # another device
    saved = [copy_of(first), copy_of(second)]
    assert all(overview_reads(site.url, c).status_code == 200 for c in saved)
    accounts.set_password("admin1", "mgrA", "a-new-password-1")
    try:
        for cookies in saved:
            assert overview_reads(site.url, cookies).status_code == 401
        _, old = requests_login(site.url, "mgrA", PASSWORD)
        assert old.status_code == 401
        http, new = requests_login(site.url, "mgrA", "a-new-password-1")
        assert new.status_code == 302 and overview_reads(site.url, copy_of(http)).status_code == 200
        assert any(e.action == "user.password" and e.target == "mgrA" for e in accounts.audit_log())
    finally:
        site.registry.set_password("mgrA", PASSWORD)


def test_disabled_user_is_out_at_once(site: Dashboard) -> None:
    accounts = Accounts(site.registry)
    site.registry.add_user("temp1", "operator", PASSWORD)
    http, _ = requests_login(site.url, "temp1", PASSWORD)
    token = accounts.issue_token("temp1")
    assert overview_reads(site.url, copy_of(http)).status_code == 200
    accounts.set_disabled("admin1", "temp1", True)
    assert overview_reads(site.url, copy_of(http)).status_code == 401
    api = requests.get(
        site.url + "/_dash-layout", headers={"Authorization": f"Bearer {token}"}, timeout=WAIT_S
    )
    assert api.status_code == 401
    _, again = requests_login(site.url, "temp1", PASSWORD)
    assert again.status_code == 401


def test_login_throttle_sees_the_client_behind_a_trusted_proxy(site: Dashboard) -> None:
    """Behind the proxy (127.0.0.1 is trusted here) each client is throttled on its own address."""

    def attempt(client: str, name: str, password: str) -> int:
        http = requests.Session()
        http.headers["X-Forwarded-For"] = client
        form = http.get(site.url + "/login", timeout=WAIT_S)
        token = form.text.split('name="csrf" value="')[1].split('"')[0]
        resp = http.post(
            site.url + "/login",
            data={"name": name, "password": password, "csrf": token, "next": "/"},
            allow_redirects=False,
            timeout=WAIT_S,
        )
        return resp.status_code

    # 25 failures from one client, each for a different name: its address is locked out...
    codes = [attempt("203.0.113.7", f"nobody{i}", "wrong-password") for i in range(25)]
    assert codes[0] == 401 and codes[-1] == 429
    # ...but another client behind the same proxy still signs in.
    assert attempt("198.51.100.20", "oper1", PASSWORD) == 302
