"""Fixtures for the browser tests: a real InfluxDB, a SQLite registry, the dashboard
served from a thread, and headless Chromium driven by selenium.

The roll-ups are written straight into InfluxDB with the figures the tests then look
for on the pages, so a test failing means the page shows something else. They cover every
day from the 1st of last month to today, with the same minutes every day, so each account's
VQR is the same whatever period a page chooses (today may be the 1st of a month).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.serving import BaseWSGIServer, make_server

from analysis.alerts.engine import AlertEngine, AlertPolicy, PowerEvent, Routes
from analysis.alerts.state import AlertRow
from core.registry import Registry
from core.servers import LocalInflux, free_port
from core.settings import load_settings
from core.store import InfluxStore
from dashboard.app import create_app
from dashboard.periods import today
from tests.browser.support import (
    ACCOUNTS,
    ALERT_SITE,
    ALL_ACCOUNTS,
    PASSWORD,
    SAVED,
    TZ,
    WAIT_S,
    Dashboard,
    artifacts_dir,
    days_between,
    last_month,
    outage_lines,
    reading_lines,
    registry_rows,
    rollup_lines,
)


@pytest.fixture(scope="session")
def influx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalInflux]:
    server = LocalInflux(tmp_path_factory.mktemp("influx")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def dashboard(influx: LocalInflux, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dashboard]:
    data_dir = tmp_path_factory.mktemp("pqmon")
    settings = load_settings(
        {
            "PQMON_INFLUX_URL": influx.url,
            "PQMON_INFLUX_DB": "pqmon_browser",
            "PQMON_REGISTRY_URL": f"sqlite:///{data_dir / 'registry.db'}",
            "PQMON_DATA_DIR": str(data_dir),
            "PQMON_TZ": TZ,
            "PQMON_LANG": "en",
        }
    )
    registry = Registry(settings.registry_url)
    registry.upsert_rows(registry_rows(ALL_ACCOUNTS))
    registry.add_user("mgr", "manager", PASSWORD, list(ACCOUNTS))
    registry.add_user("cust1", "customer", PASSWORD, ["A001"])
    registry.add_user("cust2", "customer", PASSWORD, ["A002"])
    registry.add_user("victim", "customer", PASSWORD, ["A001"])
    registry.add_user("op", "operator", PASSWORD, [])
    registry.add_user("root", "admin", PASSWORD, [])
    store = InfluxStore.from_settings(settings)
    store.ensure_database()
    now_day = today(TZ)
    first_day, _ = last_month(now_day)
    data_day = now_day - timedelta(days=2)
    outage_day = first_day + timedelta(days=9)
    store.write(
        rollup_lines(days_between(first_day, now_day), outage_day, ALL_ACCOUNTS)
        + reading_lines(data_day)
        + outage_lines(now_day)
    )

    app = create_app(settings, registry=registry, store=store)
    server: BaseWSGIServer = make_server("127.0.0.1", free_port(), app.server, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="dashboard", daemon=True)
    thread.start()
    yield Dashboard(
        f"http://127.0.0.1:{server.server_port}", settings, registry, store, data_day, first_day, now_day
    )
    server.shutdown()
    thread.join(10)
    server.server_close()
    store.close()
    registry.close()
    assert not thread.is_alive(), "the dashboard server thread did not stop"


@pytest.fixture(scope="session")
def open_incident(dashboard: Dashboard) -> tuple[int, int]:
    """A003 lost supply ten minutes ago, as the alert service hears it: the real AlertEngine
    opens an incident. Returns (incident id, start ms)."""
    engine = AlertEngine(dashboard.registry, Routes({"ops": ["hook"]}), AlertPolicy(tz=TZ))
    start = int(time.time() * 1000) - 600_000
    engine.on_events([PowerEvent(ALERT_SITE, f"M{ALERT_SITE}", "power_off", start, f"{ALERT_SITE}-off-1")])
    with Session(dashboard.registry.engine) as s:
        incident = s.scalar(
            select(AlertRow.incident_id).where(AlertRow.site_id == ALERT_SITE, AlertRow.state == "firing")
        )
    assert incident is not None, "the engine opened no incident"
    return int(incident), start


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[webdriver.Chrome]:
    options = Options()
    options.binary_location = "/usr/bin/chromium"
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1440,1000",
        f"--user-data-dir={tmp_path / 'chrome'}",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))
    driver.set_page_load_timeout(WAIT_S)
    yield driver
    driver.quit()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if SAVED:
        terminalreporter.write_line(f"browser screenshots ({len(SAVED)}) in {artifacts_dir()}")
