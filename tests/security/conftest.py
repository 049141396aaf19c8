"""A dashboard served over real HTTP with a real InfluxDB and a SQLite registry (or, where a
module parametrizes ``site`` with "postgresql", a PostgreSQL one), two accounts (A001, A002)
with figures the tests look for, and users of every role.

Shared by the security tests: they speak HTTP like a browser or a script would.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta

import pytest
from werkzeug.serving import BaseWSGIServer, make_server

from core.registry import Registry
from core.servers import LocalInflux, LocalPostgres, free_port
from core.settings import load_settings
from core.store import InfluxStore
from dashboard.app import create_app
from dashboard.periods import today
from reports.archive import IssueContext, issue
from reports.monthly import month_of
from tests.browser.support import (
    ACCOUNTS,
    PASSWORD,
    TZ,
    Dashboard,
    reading_lines,
    registry_rows,
    rollup_lines,
)
from tests.conftest import fresh_database

USERS = {
    "admin1": ("admin", []),
    "oper1": ("operator", []),
    "mgrA": ("manager", ["A001"]),
    "custA": ("customer", ["A001"]),
}


@pytest.fixture(scope="package")
def influx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalInflux]:
    server = LocalInflux(tmp_path_factory.mktemp("influx")).start()
    yield server
    server.stop()


@pytest.fixture(scope="package")
def site(
    influx: LocalInflux, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Dashboard]:
    data_dir = tmp_path_factory.mktemp("pqmon")
    kind = getattr(request, "param", "sqlite")  # a module may ask for "postgresql" too
    registry_url = f"sqlite:///{data_dir / 'registry.db'}"
    pg_database = None
    if kind == "postgresql":
        postgres: LocalPostgres = request.getfixturevalue("postgres")
        pg_database, registry_url = fresh_database(postgres, "security")
    settings = load_settings(
        {
            "PQMON_INFLUX_URL": influx.url,
            "PQMON_INFLUX_DB": f"pqmon_security_{kind}",
            "PQMON_REGISTRY_URL": registry_url,
            "PQMON_DATA_DIR": str(data_dir),
            "PQMON_TZ": TZ,
            "PQMON_LANG": "en",
            "PQMON_TRUSTED_PROXIES": "127.0.0.1",
        }
    )
    registry = Registry(settings.registry_url)
    registry.upsert_rows(registry_rows())
    for name, (role, sites) in USERS.items():
        registry.add_user(name, role, PASSWORD, sites)
    store = InfluxStore.from_settings(settings)
    store.ensure_database()
    data_day = today(TZ) - timedelta(days=2)
    store.write(rollup_lines(data_day) + reading_lines(data_day))
    # Version 1 of each account's report of that month, as the archiver issues it.
    for site_id in ACCOUNTS:
        assert issue(IssueContext(settings, store, registry), site_id, month_of(data_day), today(TZ))
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
    if pg_database is not None:
        postgres.drop_database(pg_database)
