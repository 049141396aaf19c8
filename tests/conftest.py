"""Fixtures shared by every kind of test: real servers on free loopback ports."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.servers import LocalInflux, LocalMosquitto, free_port

_db_numbers = itertools.count(1)


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


@pytest.fixture
def pqmon_env(tmp_path: Path, influx: LocalInflux, mosquitto: LocalMosquitto) -> dict[str, str]:
    """Environment for pqmon processes: its own database, registry, data dir and client id."""
    n = next(_db_numbers)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PQMON_")}
    env.update(
        {
            "PQMON_MQTT_URL": mosquitto.url,
            "PQMON_MQTT_CLIENT_ID": f"pqmon-test-{os.getpid()}-{n}",
            "PQMON_INFLUX_URL": influx.url,
            "PQMON_INFLUX_DB": f"test{n}",
            "PQMON_REGISTRY_URL": f"sqlite:///{tmp_path / 'registry.db'}",
            "PQMON_DATA_DIR": str(tmp_path / "var"),
            "PQMON_FLUSH_INTERVAL_S": "0.2",
            "PQMON_METRICS_PORT": str(free_port()),
        }
    )
    return env


def run_pqmon(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the real command line, as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "core.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
