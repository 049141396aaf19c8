"""One main path per role in a real browser, against a real InfluxDB and registry.

manager (English): their accounts only, worst first, a filter narrows the grid, an account's
figures and its outage; operator: every account, the open incident the alert engine opened
and the navbar's count; admin: a user created through the form, a registry CSV previewed then
applied, both in the audit log; customer (Chinese, chosen on the login page): their account
only, the pages in Chinese, another account refused in Chinese.

Screenshots of each role's main page go to PQMON_TEST_ARTIFACTS (default tests/browser/artifacts/).
"""

from __future__ import annotations

import calendar
from pathlib import Path

import pytest
from babel import Locale
from babel.support import Translations
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as ec
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from analysis.alerts.state import OPEN_STATES, AlertRow
from core.registry import CSV_COLUMNS
from dashboard.i18n import TRANSLATIONS, babel_locale, when
from tests.browser.support import (
    ALERT_SITE,
    ALL_ACCOUNTS,
    OTHER_ACCOUNTS,
    OUTAGE_S,
    OUTAGE_SITE,
    PASSWORD,
    TZ,
    Dashboard,
    choose_option,
    click_label,
    element_text,
    grid_row_ids,
    login,
    outage_start_text,
    screenshot,
    wait,
    wait_grid,
    wait_text,
    wait_until,
)

pytestmark = [pytest.mark.browser, pytest.mark.integration]

VQR = {site: figures[2] for site, figures in ALL_ACCOUNTS.items()}
NAME = {site: figures[0] for site, figures in ALL_ACCOUNTS.items()}
NEW_USER = "browser_cust"
NEW_SITE = ("N100", "Nova Glassworks")
IMPORT_FILE = "new-site.csv"


def badge(driver: webdriver.Chrome) -> str:
    """The open-alert count of the navbar."""
    return str(driver.find_element(By.CSS_SELECTOR, "#nav-alerts .mantine-Badge-root").text).strip()


def zh(message: str) -> str:
    """A message's Simplified Chinese from the shipped catalog (must differ from the English)."""
    catalog = Translations.load(str(TRANSLATIONS), [Locale.parse(babel_locale("zh-CN"))])  # as Flask-Babel
    text = str(catalog.gettext(message))
    assert text != message, f"no Chinese translation of {message!r} in the catalog"
    return text


def test_manager_main_path(dashboard: Dashboard, browser: webdriver.Chrome) -> None:
    login(browser, dashboard.url, "mgr", PASSWORD)
    text = wait_grid(
        browser, "overview-grid", lambda t: VQR["A001"] in t and VQR["A002"] in t, "the manager's accounts"
    )
    assert NAME["A001"] in text and NAME["A002"] in text
    for site in OTHER_ACCOUNTS:  # not assigned to the manager
        assert site not in browser.page_source and NAME[site] not in browser.page_source
    assert grid_row_ids(browser, "overview-grid") == ["A002", "A001"], "worst first"
    assert "mgr (account manager)" in element_text(browser, "nav-user")
    assert badge(browser) == "0", "the open incident is on an account the manager does not see"
    screenshot(browser, "manager-overview")

    # Needs attention only: A001 meets every target (VQR 99.79 %, full coverage, no outage
    # this month), A002 does not.
    click_label(browser, "overview-attention", "Needs attention only")
    wait_until(
        browser, "the grid narrowed to A002", lambda: grid_row_ids(browser, "overview-grid") == ["A002"]
    )
    click_label(browser, "overview-attention", "Needs attention only")
    wait_until(browser, "both accounts back", lambda: len(grid_row_ids(browser, "overview-grid")) == 2)

    # Last month: the links carry the period to the account page, where the outage is.
    assert dashboard.first_day is not None and dashboard.now_day is not None
    click_label(browser, "overview-period", "Last month")
    link = (
        By.CSS_SELECTOR,
        f"#overview-grid a[href*='/account/A001?from={dashboard.first_day.isoformat()}']",
    )
    wait(browser).until(ec.element_to_be_clickable(link)).click()

    wait_text(browser, "account-vqr", VQR["A001"] + " %")
    days = calendar.monthrange(dashboard.first_day.year, dashboard.first_day.month)[1]
    rs1 = (1 - OUTAGE_S / (days * 86400)) * 100
    wait_text(browser, "account-rs1", f"{rs1:.3f} %")
    assert OUTAGE_SITE == "A001"
    start = outage_start_text(dashboard.now_day)
    rows = wait_grid(browser, "account-outage-grid", lambda t: start in t, f"the outage starting {start}")
    assert "0:10:00" in rows, "its duration"
    assert element_text(browser, "account-outages") == "1"
    screenshot(browser, "manager-account")


def test_operator_main_path(
    dashboard: Dashboard, browser: webdriver.Chrome, open_incident: tuple[int, int]
) -> None:
    incident, started_ms = open_incident
    login(browser, dashboard.url, "op", PASSWORD)
    wait_grid(
        browser,
        "overview-grid",
        lambda t: all(VQR[s] in t and NAME[s] in t for s in ALL_ACCOUNTS),
        "every account",
    )
    assert set(ALL_ACCOUNTS) <= set(grid_row_ids(browser, "overview-grid"))
    with Session(dashboard.registry.engine) as s:
        open_alerts = s.scalar(
            select(func.count()).select_from(AlertRow).where(AlertRow.state.in_(OPEN_STATES))
        )
    assert open_alerts and open_alerts >= 1
    assert badge(browser) == str(open_alerts)

    browser.find_element(By.ID, "nav-alerts").click()
    rows = wait_grid(
        browser,
        "alerts-grid",
        lambda t: ALERT_SITE in t and NAME[ALERT_SITE] in t,
        f"the open alert of {ALERT_SITE}",
    )
    assert browser.current_url.endswith("/alerts")
    for expected in (str(incident), "Outage", "Unacknowledged", when(started_ms, TZ)):
        assert expected in rows, expected
    assert badge(browser) == str(open_alerts)
    screenshot(browser, "operator-alerts")


def test_admin_main_path(dashboard: Dashboard, browser: webdriver.Chrome, tmp_path: Path) -> None:
    registry = dashboard.registry
    assert registry.user(NEW_USER) is None
    login(browser, dashboard.url, "root", PASSWORD)
    browser.get(dashboard.url + "/admin")
    wait(browser).until(ec.element_to_be_clickable((By.ID, "adm-new-name"))).send_keys(NEW_USER)
    browser.find_element(By.ID, "adm-new-password").send_keys("another-horse-7")
    choose_option(browser, "adm-new-sites", f"A001 {NAME['A001']}")  # the role is customer by default
    browser.find_element(By.ID, "adm-new-sites").send_keys(Keys.ESCAPE)
    browser.find_element(By.ID, "adm-create").click()
    wait_text(browser, "adm-create-msg", f"User {NEW_USER} created.")
    user = registry.user(NEW_USER)
    assert user is not None and user.role == "customer" and set(user.sites) == {"A001"}
    wait_grid(browser, "adm-users-grid", lambda t: NEW_USER in t, "the new user listed")

    site_id, name = NEW_SITE
    row = {c: "" for c in CSV_COLUMNS} | {
        "site_id": site_id,
        "site_kind": "account",
        "name": name,
        "voltage_class_kv": "10",
        "phases": "3",
        "meter_id": f"M{site_id}",
        "nominal_v": "57.74",
        "profile": "gb",
    }
    csv_path = tmp_path / IMPORT_FILE
    csv_path.write_text(",".join(CSV_COLUMNS) + "\n" + ",".join(row[c] for c in CSV_COLUMNS) + "\n")
    browser.get(dashboard.url + "/admin/registry")
    upload = wait(browser).until(
        ec.presence_of_element_located((By.CSS_SELECTOR, "#adm-upload input[type=file]"))
    )
    upload.send_keys(str(csv_path))
    wait_text(browser, "adm-import-summary", "Sites: 1 added, 0 changed")
    wait_grid(browser, "adm-import-changes", lambda t: site_id in t and name in t, "the new site's lines")
    assert site_id not in {s.id for s in registry.sites()}, "a preview writes nothing"
    wait(browser).until(ec.element_to_be_clickable((By.ID, "adm-apply"))).click()
    wait_text(browser, "adm-apply-ok", f"Applied {IMPORT_FILE}: 1 site(s) added")
    added = registry.site(site_id)
    assert added.name == name and added.kind == "account"

    browser.get(dashboard.url + "/admin/audit")
    rows = wait_grid(
        browser,
        "adm-audit-grid",
        lambda t: "user.create" in t and "registry.import" in t,
        "both changes audited",
    )
    assert NEW_USER in rows and IMPORT_FILE in rows and "root" in rows
    screenshot(browser, "admin-audit")


def test_customer_in_chinese(dashboard: Dashboard, browser: webdriver.Chrome) -> None:
    base = dashboard.url
    login(browser, base, "cust1", PASSWORD, lang_link="lang-zh")
    wait_text(browser, "portal-name-A001", NAME["A001"])  # a customer lands on their portal
    wait_text(browser, "nav-user", zh("customer"))
    source = browser.page_source
    for site in ALL_ACCOUNTS.keys() - {"A001"}:
        assert f"portal-{site}" not in source and NAME[site] not in source, site
    assert NEW_SITE[0] not in source and NEW_SITE[1] not in source
    for message in ("Overview", "Your supply quality", "This month", "Log out"):
        assert zh(message) in source, message
    assert "Your supply quality" not in source and "Key accounts" not in source
    screenshot(browser, "customer-overview-zh")

    browser.get(base + "/account/A002")
    wait_text(browser, "account-forbidden", "未找到或无权访问。")
    assert NAME["A002"] not in browser.page_source and VQR["A002"] not in browser.page_source
    browser.get(base + "/account/A001")  # the control: their own account opens, in Chinese
    wait_text(browser, "account-vqr", VQR["A001"] + " %")
    assert zh("Voltage qualification rate") in browser.page_source
