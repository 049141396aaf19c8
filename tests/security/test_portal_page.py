"""The customer's landing page: every account of theirs together, nobody else's, in plain words."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.browser.support import (
    ACCOUNTS,
    OTHER_ACCOUNTS,
    PASSWORD,
    WAIT_S,
    Dashboard,
    dash_post,
    requests_login,
)
from tests.security.test_tenant_isolation import outputs_of

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def two_site_customer(site: Dashboard) -> str:
    """A customer company with both of the manager's accounts (its two connection points)."""
    if site.registry.user("custAB") is None:
        site.registry.add_user("custAB", "customer", PASSWORD, list(ACCOUNTS))
    return "custAB"


def landing_page(site: Dashboard, name: str) -> str:
    """What ``/`` renders for ``name``, through Dash's page router as the browser calls it."""
    http, resp = requests_login(site.url, name, PASSWORD)
    assert resp.status_code == 302
    http.get(site.url + "/_dash-layout", timeout=WAIT_S)
    router = next(
        d
        for d in http.get(site.url + "/_dash-dependencies", timeout=WAIT_S).json()
        if "_pages_content" in d["output"]
    )
    body: dict[str, Any] = {
        "output": router["output"],
        "outputs": outputs_of(router),
        "inputs": [{**i, "value": "/" if i["property"] == "pathname" else ""} for i in router["inputs"]],
        "state": [{**s, "value": None} for s in router["state"]],
        "changedPropIds": ["_pages_location.pathname"],
    }
    r = dash_post(site.url, http, body)
    assert r.status_code == 200, r.text[:300]
    return json.dumps(r.json(), ensure_ascii=False)


def test_a_customer_with_two_accounts_sees_both_together(site: Dashboard, two_site_customer: str) -> None:
    page = landing_page(site, two_site_customer)
    for site_id, (name, _, _) in ACCOUNTS.items():
        assert f"portal-{site_id}" in page and name in page, site_id
        assert f"/reports/{site_id}/{site.data_day:%Y-%m}/v1.en.pdf" in page  # its issued report
    for site_id, (name, _, _) in OTHER_ACCOUNTS.items():
        assert f"portal-{site_id}" not in page and name not in page
    assert "overview-grid" not in page  # the portal, not the staff overview
    assert "Voltage within the agreed range" in page and "VQR" not in page  # plain words


def test_a_customer_has_no_alerts_badge(site: Dashboard) -> None:
    http, _ = requests_login(site.url, "custA", PASSWORD)
    shell = json.dumps(http.get(site.url + "/_dash-layout", timeout=WAIT_S).json(), ensure_ascii=False)
    assert "nav-alerts" not in shell and "nav-user" in shell
    http, _ = requests_login(site.url, "mgrA", PASSWORD)  # the control: a manager has it
    assert "nav-alerts" in json.dumps(http.get(site.url + "/_dash-layout", timeout=WAIT_S).json())


def test_a_customer_of_one_account_sees_only_it(site: Dashboard) -> None:
    page = landing_page(site, "custA")
    assert "portal-A001" in page and "portal-A002" not in page
    assert ACCOUNTS["A002"][0] not in page


def call(
    site: Dashboard, http: Any, outputs: list[tuple[str, str]], inputs: list[tuple[str, str, Any]]
) -> str:
    """One callback as Dash's renderer calls it; the answer as text."""
    out = [{"id": i, "property": p} for i, p in outputs]
    body = {
        "output": f"{outputs[0][0]}.{outputs[0][1]}",
        "outputs": out[0],
        "inputs": [{"id": i, "property": p, "value": v} for i, p, v in inputs],
        "state": [],
        "changedPropIds": [f"{inputs[0][0]}.{inputs[0][1]}"],
    }
    r = dash_post(site.url, http, body)
    assert r.status_code == 200, r.text[:300]
    return json.dumps(r.json(), ensure_ascii=False)


def test_the_reports_page_lists_a_managers_versions_and_staffs_all(site: Dashboard) -> None:
    month = f"{site.data_day:%Y-%m}"
    for name, expected in (("mgrA", {"A001"}), ("oper1", set(ACCOUNTS))):
        http, _ = requests_login(site.url, name, PASSWORD)
        http.get(site.url + "/_dash-layout", timeout=WAIT_S)
        shown = call(site, http, [("archive-body", "children")], [("archive-month", "value", month)])
        assert f"/reports/month/{month}.zip" in shown
        for site_id in ACCOUNTS:
            link = f"/reports/{site_id}/{month}/v1."
            assert (link in shown) == (site_id in expected), (name, site_id)
        bad = call(site, http, [("archive-body", "children")], [("archive-month", "value", "../A002")])
        assert "Not found or not permitted." in bad
    http, _ = requests_login(site.url, "custA", PASSWORD)  # customers have their portal instead
    http.get(site.url + "/_dash-layout", timeout=WAIT_S)
    refused = call(site, http, [("archive-body", "children")], [("archive-month", "value", month)])
    assert "/reports/" not in refused
