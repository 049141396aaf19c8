"""Shared by the browser tests: the seeded figures, the data builders and page helpers."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import requests
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from core.calendar import day_start_ms
from core.lineproto import line
from core.registry import Registry
from core.settings import Settings
from core.store import InfluxStore

TZ = "Asia/Shanghai"
PASSWORD = "correct-horse-9"
WAIT_S = 30
REPO = Path(__file__).resolve().parents[2]
ARTIFACTS_ENV = "PQMON_TEST_ARTIFACTS"

MONITORED_PER_PHASE = 1440  # every minute of the day monitored: coverage meets its target


def vqr_text(over_a: int) -> str:
    """The headline VQR as displayed: phase a ``over_a`` minutes over the limit, b and c never.

    Equal monitored minutes on the phases make the pooled and the mean VQR the same number, and
    the same minutes every day make it the same over any run of days.
    """
    return f"{(1 - over_a / (3 * MONITORED_PER_PHASE)) * 100:.2f}"


# Per account: (name, minutes over the upper limit on phase a every day, headline VQR as displayed).
# ACCOUNTS are the manager's (A001 also the customers'); OTHER_ACCOUNTS nobody's but staff's.
ACCOUNTS = {
    "A001": ("Alpha Foods Ltd", 9, vqr_text(9)),  # 99.79: meets the 99 % target
    "A002": ("Beta Steel Works", 108, vqr_text(108)),  # 97.50: below it, and 1.5 h off supply a day
}
OTHER_ACCOUNTS = {
    "A003": ("Gamma Mill Co", 45, vqr_text(45)),  # 98.96
}
ALL_ACCOUNTS = {**ACCOUNTS, **OTHER_ACCOUNTS}
ALERT_SITE = "A003"  # its outage opens the incident: the manager's and customers' figures stay put
DAILY_OUTAGE_S = {"A002": 5400.0}  # two unplanned interruptions every day

# The one outage of A001 stored as the worker stores it, on the 10th of last month at 10:00
# local time: always in the past, inside "Last month" whatever today is.
OUTAGE_SITE = "A001"
OUTAGE_S = 600.0


def last_month(now_day: date) -> tuple[date, date]:
    last = now_day.replace(day=1) - timedelta(days=1)
    return last.replace(day=1), last


def outage_start_ms(now_day: date) -> int:
    first, _ = last_month(now_day)
    return day_start_ms(first + timedelta(days=9), TZ) + 10 * 3_600_000


def outage_start_text(now_day: date) -> str:
    """How the outage grid shows the start (local time, seconds)."""
    first, _ = last_month(now_day)
    return (first + timedelta(days=9)).isoformat() + " 10:00:00"


@dataclass(frozen=True)
class Dashboard:
    url: str
    settings: Settings
    registry: Registry
    store: InfluxStore
    data_day: date  # the day with 15-minute readings (two days ago)
    first_day: date | None = None  # the browser fixture: first day with roll-ups (1st of last month)
    now_day: date | None = None  # the browser fixture: today in TZ when it wrote the data (roll-ups end)


Figures = dict[str, tuple[str, int, str]]


def registry_rows(sites: Figures = ACCOUNTS) -> list[tuple[int, dict[str, str]]]:
    """Registry CSV rows of ``sites`` (ACCOUNTS assigned to "mgr" by the manager column)."""
    rows = []
    for n, (site_id, (name, _, _)) in enumerate(sites.items(), start=2):
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
                    "manager": "mgr" if site_id in ACCOUNTS else "",
                },
            )
        )
    return rows


def days_between(first: date, last: date) -> list[date]:
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def rollup_lines(
    days: date | Iterable[date], outage_day: date | None = None, sites: Figures = ACCOUNTS
) -> list[str]:
    """vq_daily and rel_daily rows of ``sites`` for each day (the same figures every day);
    ``outage_day``: the day of A001's one outage (its rel_daily counts it)."""
    lines = []
    for day in [days] if isinstance(days, date) else days:
        ts = day_start_ms(day, TZ)
        for site_id, (_, over_a, _) in sites.items():
            lines += vq_lines(site_id, over_a, ts)
            outage_s = DAILY_OUTAGE_S.get(site_id, 0.0)
            count = 2 if outage_s else 0
            if site_id == OUTAGE_SITE and day == outage_day:
                outage_s, count = OUTAGE_S, 1
            lines.append(
                line(
                    "rel_daily",
                    {"site": site_id},
                    {
                        "outage_s": outage_s,
                        "short_s": 0.0,
                        "outages_sustained": count,
                        "outages_short": 0,
                        "outages_open": 0,
                        "planned_s": 0.0,
                        "unplanned_s": outage_s,
                    },
                    ts,
                )
            )
    return lines


def vq_lines(site_id: str, over_a: int, ts: int) -> list[str]:
    lines = []
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
    return lines


def outage_lines(now_day: date) -> list[str]:
    """A001's outage as analysis.worker.outage_lines stores a closed one."""
    start = outage_start_ms(now_day)
    return [
        line(
            "outage",
            {"site": OUTAGE_SITE},
            {
                "start_ms": start,
                "end_ms": start + int(OUTAGE_S * 1000),
                "duration_s": OUTAGE_S,
                "open": False,
                "cause": "unplanned",
                "length": "sustained",
                "source": "event",
                "start_source": "event",
                "end_source": "event",
                "valid": True,
            },
            start,
        )
    ]


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


# -- artifacts -----------------------------------------------------------------------------------
SAVED: list[Path] = []  # screenshots of this session, listed at the end of the run


def artifacts_dir() -> Path:
    """PQMON_TEST_ARTIFACTS, else tests/browser/artifacts/ (git-ignored)."""
    raw = os.environ.get(ARTIFACTS_ENV, "").strip()
    path = Path(raw) if raw else REPO / "tests" / "browser" / "artifacts"
    path.mkdir(parents=True, exist_ok=True)
    return path


def screenshot(driver: webdriver.Chrome, name: str) -> Path:
    path = artifacts_dir() / f"{name}.png"
    assert driver.save_screenshot(str(path)), f"no screenshot written to {path}"
    SAVED.append(path)
    print(f"screenshot: {path}")
    return path


# -- waiting -------------------------------------------------------------------------------------
def wait(driver: webdriver.Chrome) -> WebDriverWait:  # type: ignore[type-arg]
    return WebDriverWait(driver, WAIT_S)


def wait_text(driver: webdriver.Chrome, element_id: str, text: str) -> None:
    wait(driver).until(ec.text_to_be_present_in_element((By.ID, element_id), text))


def wait_until(driver: webdriver.Chrome, what: str, check: Callable[[], bool]) -> None:
    """Wait for ``check`` (stale elements mid re-render count as not yet); ``what`` names it."""

    def probe(_: object) -> bool:
        try:
            return check()
        except StaleElementReferenceException:
            return False

    wait(driver).until(probe, message=f"timed out waiting for {what}")


def element_text(driver: webdriver.Chrome, element_id: str) -> str:
    return str(driver.find_element(By.ID, element_id).text)


def grid_text(driver: webdriver.Chrome, grid_id: str) -> str:
    """The rows an AG Grid has rendered (its centre and pinned columns), not its headers."""
    parts = driver.find_elements(
        By.CSS_SELECTOR, f"#{grid_id} .ag-center-cols-container, #{grid_id} .ag-pinned-left-cols-container"
    )
    return "\n".join(p.text for p in parts)


def wait_grid(driver: webdriver.Chrome, grid_id: str, check: Callable[[str], bool], what: str) -> str:
    """Wait until the grid's rendered rows satisfy ``check``; returns their text."""
    seen = {"text": ""}

    def probe() -> bool:
        seen["text"] = grid_text(driver, grid_id)
        return check(seen["text"])

    try:
        wait_until(driver, f"{grid_id}: {what}", probe)
    except Exception as exc:
        raise AssertionError(f"{grid_id}: {what}; the grid shows:\n{seen['text']}") from exc
    return seen["text"]


def grid_row_ids(driver: webdriver.Chrome, grid_id: str) -> list[str]:
    """Row ids (getRowId) in display order."""
    rows = driver.find_elements(By.CSS_SELECTOR, f"#{grid_id} .ag-center-cols-container [row-id]")
    ordered = sorted(rows, key=lambda r: int(r.get_attribute("row-index") or 0))
    return [str(r.get_attribute("row-id")) for r in ordered]


def click_label(driver: webdriver.Chrome, container_id: str, text: str) -> None:
    """Click the <label> with this text inside an element (Mantine SegmentedControl, Switch)."""
    xpath = f"//*[@id='{container_id}']//label[normalize-space()='{text}'] | //label[@for='{container_id}']"
    labels = [el for el in driver.find_elements(By.XPATH, xpath) if el.text.strip() == text]
    assert labels, f"no label {text!r} in #{container_id}"
    labels[0].click()


def choose_option(driver: webdriver.Chrome, input_id: str, label: str) -> None:
    """Pick an option of a Mantine Select/MultiSelect: open its dropdown, click the option."""
    driver.find_element(By.ID, input_id).click()
    option = (By.XPATH, f"//*[@role='option'][normalize-space()='{label}']")
    wait(driver).until(ec.element_to_be_clickable(option)).click()


# -- logging in ----------------------------------------------------------------------------------
def login(
    driver: webdriver.Chrome, base: str, name: str, password: str, lang_link: str | None = None
) -> None:
    """Fill in the login form (the page load after submit is awaited by the caller).

    ``lang_link``: first follow that language link of the login page (lang-zh, lang-en).
    """
    driver.get(base + "/login")
    if lang_link:
        old = driver.find_element(By.TAG_NAME, "html")
        driver.find_element(By.ID, lang_link).click()
        wait(driver).until(lambda _: is_detached(old))
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


def dash_post(base: str, http: requests.Session, body: dict[str, Any]) -> requests.Response:
    """One callback call as Dash's renderer makes it, CSRF header included."""
    return http.post(
        base + "/_dash-update-component",
        json=body,
        headers={"X-CSRFToken": http.cookies.get("_csrf_token")},
        timeout=WAIT_S,
    )
