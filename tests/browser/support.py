"""Shared by the browser tests: the seeded figures, the data builders and page helpers."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

import requests
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from analysis.calendar import day_start_ms
from core.lineproto import line
from core.registry import Registry
from core.settings import Settings
from core.store import InfluxStore

TZ = "Asia/Shanghai"
PASSWORD = "correct-horse-9"
WAIT_S = 30

# Per account: (name, minutes over the upper limit on phase a, headline VQR as displayed).
# Equal monitored minutes on the phases make the pooled and the mean VQR the same number.
ACCOUNTS = {
    "A001": ("Alpha Foods Ltd", 9, "99.75"),
    "A002": ("Beta Steel Works", 90, "97.50"),
}
MONITORED_PER_PHASE = 1200


@dataclass(frozen=True)
class Dashboard:
    url: str
    settings: Settings
    registry: Registry
    store: InfluxStore
    data_day: date


def registry_rows() -> list[tuple[int, dict[str, str]]]:
    rows = []
    for n, (site_id, (name, _, _)) in enumerate(ACCOUNTS.items(), start=2):
        rows.append(
            (
                n,
                {
                    "site_id": site_id,
                    "site_kind": "account",
                    "name": name,
                    "voltage_class_kv": "10",
                    "phases": "3",
                    "meter_id": f"M{site_id}",
                    "nominal_v": "57.74",
                    "upper_pct": "",
                    "lower_pct": "",
                    "profile": "gb",
                    "feeder_id": "",
                    "manager": "mgr",
                },
            )
        )
    return rows


def rollup_lines(day: date) -> list[str]:
    ts = day_start_ms(day, TZ)
    lines = []
    for site_id, (_, over_a, _) in ACCOUNTS.items():
        for phase in ("a", "b", "c"):
            over = over_a if phase == "a" else 0
            lines.append(
                line(
                    "vq_daily",
                    {"site": site_id, "phase": phase},
                    {
                        "monitored_min": MONITORED_PER_PHASE,
                        "over_min": over,
                        "under_min": 0,
                        "outage_min": 0,
                        "missing_min": 1440 - MONITORED_PER_PHASE,
                        "vqr_pct": (1 - over / MONITORED_PER_PHASE) * 100,
                    },
                    ts,
                )
            )
        total = 3 * MONITORED_PER_PHASE
        lines.append(
            line(
                "vq_daily",
                {"site": site_id, "phase": "all"},
                {
                    "monitored_min": total,
                    "over_min": over_a,
                    "under_min": 0,
                    "outage_min": 0,
                    "missing_min": 3 * 1440 - total,
                    "vqr_pct": (1 - over_a / total) * 100,
                    "calendar_min": 1440,
                    "channels": 3,
                },
                ts,
            )
        )
        outage_s = 0.0 if site_id == "A001" else 5400.0
        lines.append(
            line(
                "rel_daily",
                {"site": site_id},
                {
                    "outage_s": outage_s,
                    "short_s": 0.0,
                    "outages_sustained": 0 if outage_s == 0 else 2,
                    "outages_short": 0,
                    "outages_open": 0,
                    "planned_s": 0.0,
                    "unplanned_s": outage_s,
                },
                ts,
            )
        )
    return lines


def reading_lines(day: date) -> list[str]:
    start = day_start_ms(day, TZ)
    lines = []
    for site_id in ACCOUNTS:
        for i in range(96):
            wobble = (i % 24 - 12) * 0.05
            lines.append(
                line(
                    "reading",
                    {"site": site_id, "meter": f"M{site_id}", "side": "customer"},
                    {
                        "ua": 57.9 + wobble,
                        "ub": 57.6 - wobble,
                        "uc": 58.1 + wobble / 2,
                        "f": 50.0,
                        "interval_s": 900,
                    },
                    start + i * 900_000,
                )
            )
    return lines


def wait(driver: webdriver.Chrome) -> WebDriverWait:  # type: ignore[type-arg]
    return WebDriverWait(driver, WAIT_S)


def wait_text(driver: webdriver.Chrome, element_id: str, text: str) -> None:
    wait(driver).until(ec.text_to_be_present_in_element((By.ID, element_id), text))


def login(driver: webdriver.Chrome, base: str, name: str, password: str) -> None:
    """Fill in the login form (the page load after submit is awaited by the caller)."""
    driver.get(base + "/login")
    driver.find_element(By.ID, "login-name").clear()
    driver.find_element(By.ID, "login-name").send_keys(name)
    driver.find_element(By.ID, "login-password").send_keys(password)
    old = driver.find_element(By.TAG_NAME, "html")
    driver.find_element(By.ID, "login-submit").click()
    wait(driver).until(lambda _: is_detached(old))


def is_detached(element: WebElement) -> bool:
    """True once the page holding ``element`` has been replaced.

    Chromium reports a node of the unloaded document either as stale or, mid-navigation, as
    "Node with given id does not belong to the document"; both mean the same here.
    """
    try:
        element.is_enabled()
    except StaleElementReferenceException:
        return True
    except WebDriverException as exc:
        if "does not belong to the document" in str(exc):
            return True
        raise
    return False


def requests_login(base: str, name: str, password: str) -> tuple[requests.Session, requests.Response]:
    """Log in with plain HTTP, as a script would: fetch the form's token, post the form."""
    http = requests.Session()
    form = http.get(base + "/login", timeout=WAIT_S)
    match = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert match, "the login form carries no token"
    resp = http.post(
        base + "/login",
        data={"name": name, "password": password, "csrf": match.group(1), "next": "/"},
        allow_redirects=False,
        timeout=WAIT_S,
    )
    return http, resp
