"""The collector loses nothing: InfluxDB outage, collector SIGKILL, broker restart,
two collectors on the shared subscription. Real Mosquitto and InfluxDB, started here."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.servers import LocalInflux, LocalMosquitto, free_port, wait_until
from tests.conftest import run_pqmon
from tests.integration.mqtt_support import (
    CollectorProcess,
    Stream,
    count_and_sum,
    reading_messages,
    reading_value,
    registry_csv,
)

pytestmark = pytest.mark.integration

METERS = 10


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[tuple[LocalInflux, LocalMosquitto]]:
    """Servers of this test alone: the tests stop and restart them."""
    influx = LocalInflux(tmp_path / "influx").start()
    broker = LocalMosquitto(tmp_path / "mosquitto").start()
    yield influx, broker
    broker.stop()
    influx.stop()


def env_for(
    tmp_path: Path, influx: LocalInflux, broker: LocalMosquitto, client_id: str = "c1"
) -> dict[str, str]:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("PQMON_")}
    env.update(
        {
            "PQMON_MQTT_URL": broker.url,
            "PQMON_MQTT_CLIENT_ID": f"pqmon-{client_id}",
            "PQMON_INFLUX_URL": influx.url,
            "PQMON_INFLUX_DB": "pqmon",
            "PQMON_REGISTRY_URL": f"sqlite:///{tmp_path / 'registry.db'}",
            "PQMON_DATA_DIR": str(tmp_path / "var"),
            "PQMON_METRICS_PORT": str(free_port()),
            "PQMON_FLUSH_INTERVAL_S": "0.2",
        }
    )
    return env


def setup_registry(tmp_path: Path, env: dict[str, str]) -> None:
    done = run_pqmon(env, "registry", "import", str(registry_csv(tmp_path / "reg.csv", METERS)))
    assert done.returncode == 0, done.stderr


def stored(influx: LocalInflux) -> tuple[int, float]:
    if not influx.running():
        return -1, 0.0
    try:
        return count_and_sum(influx.url, "pqmon")
    except Exception:  # restarting: not answering yet
        return -1, 0.0


def expected(per_meter: int) -> tuple[int, float]:
    return METERS * per_meter, METERS * sum(reading_value(i) for i in range(per_meter))


def assert_exactly_once(influx: LocalInflux, per_meter: int, timeout: float = 120) -> None:
    count, total = expected(per_meter)
    wait_until(lambda: stored(influx)[0] == count, timeout, f"{count} readings stored", interval_s=0.5)
    got_count, got_sum = stored(influx)
    assert got_count == count
    assert got_sum == pytest.approx(total, rel=1e-12)


def start_ms(per_meter: int) -> int:
    return (int(time.time() * 1000) // 60_000 - per_meter - 10) * 60_000


def test_influxdb_down_for_30s_mid_stream(tmp_path: Path, servers) -> None:
    influx, broker = servers
    env = env_for(tmp_path, influx, broker)
    setup_registry(tmp_path, env)
    collector = CollectorProcess(env, tmp_path / "collector.log").start()
    per_meter = 5000  # 50,000 messages
    stream = Stream(broker.url, reading_messages(METERS, per_meter, start_ms(per_meter))).start()
    try:
        wait_until(lambda: stream.published >= 10_000, 60, "a fifth of the stream")
        influx.stop()
        down_at = time.monotonic()
        wait_until(lambda: collector.metrics()["pqmon_collector_spool_depth"] > 1000, 30, "the spool to grow")
        wait_until(lambda: not collector.healthy(), 30, "/healthz to report the store away")
        time.sleep(max(0.0, 30 - (time.monotonic() - down_at)))  # the scenario: 30 s of downtime
        influx.start()
        stream.join()
        assert_exactly_once(influx, per_meter)
        wait_until(lambda: collector.metrics()["pqmon_collector_spool_depth"] == 0, 30, "an empty spool")
    finally:
        assert collector.stop() == 0


def test_collector_sigkill_mid_stream(tmp_path: Path, servers) -> None:
    influx, broker = servers
    env = env_for(tmp_path, influx, broker)
    setup_registry(tmp_path, env)
    collector = CollectorProcess(env, tmp_path / "collector.log").start()
    per_meter = 3000
    stream = Stream(broker.url, reading_messages(METERS, per_meter, start_ms(per_meter))).start()
    try:
        wait_until(lambda: stored(influx)[0] > 5000, 60, "part of the stream stored")
        collector.kill()
        assert stored(influx)[0] < METERS * per_meter
        collector = CollectorProcess(env, tmp_path / "collector.log").start()
        stream.join()
        assert_exactly_once(influx, per_meter)
    finally:
        assert collector.stop() == 0


def test_mosquitto_restart_mid_stream(tmp_path: Path, servers) -> None:
    influx, broker = servers
    env = env_for(tmp_path, influx, broker)
    setup_registry(tmp_path, env)
    collector = CollectorProcess(env, tmp_path / "collector.log").start()
    per_meter = 3000
    stream = Stream(broker.url, reading_messages(METERS, per_meter, start_ms(per_meter))).start()
    try:
        wait_until(lambda: stream.published >= 8000, 60, "part of the stream published")
        broker.stop()
        broker.start()
        stream.join()
        assert_exactly_once(influx, per_meter)
    finally:
        assert collector.stop() == 0


def test_two_collectors_share_the_subscription(tmp_path: Path, servers) -> None:
    influx, broker = servers
    env1 = env_for(tmp_path, influx, broker, "c1") | {"PQMON_MQTT_SHARE_GROUP": "pqmon"}
    env2 = env_for(tmp_path, influx, broker, "c2") | {"PQMON_MQTT_SHARE_GROUP": "pqmon"}
    setup_registry(tmp_path, env1)
    first = CollectorProcess(env1, tmp_path / "c1.log").start()
    second = CollectorProcess(env2, tmp_path / "c2.log").start()
    per_meter = 2000
    try:
        Stream(broker.url, reading_messages(METERS, per_meter, start_ms(per_meter))).start().join()
        assert_exactly_once(influx, per_meter)
        got = [c.metrics().get("pqmon_collector_received_total", 0) for c in (first, second)]
        assert all(n > 0 for n in got), f"both collectors take a share: {got}"
        assert sum(got) >= METERS * per_meter
    finally:
        assert first.stop() == 0
        assert second.stop() == 0


def test_full_spool_stops_acknowledging_and_loses_nothing(tmp_path: Path, servers) -> None:
    """With InfluxDB away and the spool at its bound, messages wait in the broker instead."""
    influx, broker = servers
    env = env_for(tmp_path, influx, broker) | {"PQMON_SPOOL_MAX_MESSAGES": "500"}
    setup_registry(tmp_path, env)
    collector = CollectorProcess(env, tmp_path / "collector.log").start()
    per_meter = 300  # 3,000 messages, six times the bound
    try:
        influx.stop()
        Stream(broker.url, reading_messages(METERS, per_meter, start_ms(per_meter))).start().join()
        wait_until(lambda: collector.metrics()["pqmon_collector_spool_depth"] >= 500, 30, "a full spool")
        received = collector.metrics()["pqmon_collector_received_total"]
        assert received < METERS * per_meter  # the rest were never acknowledged
        assert (
            collector.metrics()["pqmon_collector_spool_depth"] <= 500 + 1000
        )  # bound + one in-flight window
        influx.start()
        assert_exactly_once(influx, per_meter)
    finally:
        assert collector.stop() == 0
