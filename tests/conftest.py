"""Fixtures shared by every kind of test: real servers on free loopback ports."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.servers import LocalInflux, LocalMosquitto, LocalPostgres, free_port

_db_numbers = itertools.count(1)
_pg_numbers = itertools.count(1)

# Run a test (or a module, as ``pytestmark``) against a registry on SQLite and on PostgreSQL.
BOTH_REGISTRIES = pytest.mark.parametrize("registry_url", ["sqlite", "postgresql"], indirect=True)


@pytest.fixture(scope="session")
def influx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalInflux]:
    server = LocalInflux(tmp_path_factory.mktemp("influxdb")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalMosquitto]:
    server = LocalMosquitto(tmp_path_factory.mktemp("mosquitto")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPostgres]:
    """Started only by the tests that ask for a registry on PostgreSQL."""
    server = LocalPostgres(tmp_path_factory.mktemp("postgres")).start()
    yield server
    server.stop()


def fresh_database(server: LocalPostgres, hint: str = "reg") -> tuple[str, str]:
    """A new empty database on ``server``: (its name, its SQLAlchemy URL)."""
    name = f"{hint}_{os.getpid()}_{next(_pg_numbers)}"
    return name, server.create_database(name)


def _registry_url(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'registry.db'}"
        return
    assert kind == "postgresql", kind
    server: LocalPostgres = request.getfixturevalue("postgres")
    name, url = fresh_database(server)
    yield url
    server.drop_database(name)


@pytest.fixture
def registry_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """URL of a fresh, empty registry database: SQLite unless parametrized (``BOTH_REGISTRIES``)."""
    yield from _registry_url(getattr(request, "param", "sqlite"), request, tmp_path)


@pytest.fixture(params=["sqlite", "postgresql"])
def any_registry_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh registry on SQLite and, in a second run of the test, on PostgreSQL: for a module's
    own registry fixture, so that every test using it runs on both."""
    yield from _registry_url(request.param, request, tmp_path)


@pytest.fixture
def pqmon_env(
    tmp_path: Path, influx: LocalInflux, mosquitto: LocalMosquitto, registry_url: str
) -> dict[str, str]:
    """Environment for pqmon processes: its own database, registry, data dir and client id."""
    n = next(_db_numbers)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PQMON_")}
    env.update(
        {
            "PQMON_MQTT_URL": mosquitto.url,
            "PQMON_MQTT_CLIENT_ID": f"pqmon-test-{os.getpid()}-{n}",
            "PQMON_INFLUX_URL": influx.url,
            "PQMON_INFLUX_DB": f"test{n}",
            "PQMON_REGISTRY_URL": registry_url,
            "PQMON_DATA_DIR": str(tmp_path / "var"),
            "PQMON_FLUSH_INTERVAL_S": "0.2",
            "PQMON_METRICS_PORT": str(free_port()),
        }
    )
    return env


def run_pqmon(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the real command line, as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "pqmon", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
