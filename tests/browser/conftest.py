"""Fixtures for the browser tests: a real InfluxDB, a SQLite registry, the dashboard
served from a thread, and headless Chromium driven by selenium.

The roll-ups are written straight into InfluxDB with the figures the tests then look
for on the pages, so a test failing means the page shows something else.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from werkzeug.serving import BaseWSGIServer, make_server

from core.registry import Registry
from core.servers import LocalInflux, free_port
from core.settings import load_settings
from core.store import InfluxStore
from dashboard.app import create_app
from dashboard.periods import today
from tests.browser.support import (
    ACCOUNTS,
    PASSWORD,
    TZ,
    WAIT_S,
    Dashboard,
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
    registry.upsert_rows(registry_rows())
    registry.add_user("mgr", "manager", PASSWORD, list(ACCOUNTS))
    registry.add_user("cust1", "customer", PASSWORD, ["A001"])
    registry.add_user("cust2", "customer", PASSWORD, ["A002"])
    registry.add_user("victim", "customer", PASSWORD, ["A001"])
    store = InfluxStore.from_settings(settings)
    store.ensure_database()
    data_day = today(TZ) - timedelta(days=2)  # inside the default period (last 7 whole days)
    store.write(rollup_lines(data_day) + reading_lines(data_day))

    app = create_app(settings, registry=registry, store=store)
    server: BaseWSGIServer = make_server("127.0.0.1", free_port(), app.server, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="dashboard", daemon=True)
    thread.start()
    yield Dashboard(f"http://127.0.0.1:{server.server_port}", settings, registry, store, data_day)
    server.shutdown()
    thread.join(10)
    server.server_close()
    store.close()
    registry.close()
    assert not thread.is_alive(), "the dashboard server thread did not stop"


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
        "--window-size=1280,900",
        f"--user-data-dir={tmp_path / 'chrome'}",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))
    driver.set_page_load_timeout(WAIT_S)
    yield driver
    driver.quit()
