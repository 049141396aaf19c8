"""End to end on real servers: MQTT -> collector -> InfluxDB -> worker -> report.

The scenario is docs/definitions.md VQR-1 on a 10 kV three-phase account: one local day with
30 minutes over the upper limit, 12 under the lower and a 60-minute outage whose
power-off/power-on records arrive late, after the day's readings, and twice.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import paho.mqtt.client as mqtt
import pytest

from collector.deadletter import DeadLetters
from core.calendar import MINUTE_MS, day_start_ms
from core.servers import wait_until
from core.store import InfluxStore
from tests.conftest import BOTH_REGISTRIES, run_pqmon

pytestmark = [pytest.mark.integration, BOTH_REGISTRIES]  # the registry on SQLite and on PostgreSQL

TZ = "Asia/Shanghai"
NOMINAL = 57.735  # PT secondary, phase to neutral, of a 10 kV meter
REGISTRY = """site_id,site_kind,name,voltage_class_kv,phases,meter_id,nominal_v,upper_pct,lower_pct,profile,feeder_id,manager
A001,account,Steel works,10,3,A001-M1,57.735,,,gb,F12,mgr1
F12,feeder,Feeder 12,10,3,F12-M1,57.735,,,gb,,
"""
OVER = range(100, 130)  # 30 minutes above 61.776 V (+7 %)
UNDER = range(200, 212)  # 12 minutes below 53.694 V (-7 %)
OUTAGE = range(600, 660)  # 60 minutes without supply


def publisher(url: str, client_id: str = "test-gateway") -> mqtt.Client:
    host, port = url.removeprefix("mqtt://").split(":")
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
    client.connect(host, int(port))
    client.loop_start()
    wait_until(client.is_connected, 10, "publisher connection")
    return client


def publish(client: mqtt.Client, topic: str, payload: str | bytes) -> None:
    client.publish(topic, payload, qos=1).wait_for_publish(10)


def voltage(minute: int) -> float:
    if minute in OVER:
        return 61.9
    if minute in UNDER:
        return 53.1
    return 58.2 + 0.3 * ((minute % 7) - 3) / 3


@pytest.fixture
def scenario_day() -> date:
    return datetime.now(ZoneInfo(TZ)).date() - timedelta(days=3)


def test_pipeline_vqr1_end_to_end(pqmon_env: dict[str, str], tmp_path: Path, scenario_day: date) -> None:
    csv = tmp_path / "registry.csv"
    csv.write_text(REGISTRY)
    imported = run_pqmon(pqmon_env, "registry", "import", str(csv))
    assert imported.returncode == 0, imported.stderr
    assert "sites: 2 added" in imported.stdout

    collector = subprocess.Popen(
        [sys.executable, "-m", "pqmon", "collector"],
        env=pqmon_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    store = InfluxStore(pqmon_env["PQMON_INFLUX_URL"], pqmon_env["PQMON_INFLUX_DB"])
    client = publisher(pqmon_env["PQMON_MQTT_URL"])
    try:
        # The collector's subscription must exist before we publish (no retained readings).
        wait_until(lambda: _subscribed(pqmon_env), 20, "collector subscription")
        start = day_start_ms(scenario_day, TZ)
        minutes = [m for m in range(1440) if m not in OUTAGE]
        batch: list[dict[str, object]] = []
        bad_item_batches = 0
        for m in minutes:
            v = voltage(m)
            batch.append(
                {
                    "ts": start + m * MINUTE_MS,
                    "ua": v,
                    "ub": v + 0.05,
                    "uc": v - 0.05,
                    "f": 50.0,
                    "interval_s": 60,
                }
            )
            if len(batch) == 60:
                if bad_item_batches == 0:  # one bad reading inside a good batch
                    batch.append({"ts": start, "ua": "high"})
                    bad_item_batches += 1
                publish(client, "pq/v1/A001/A001-M1/reading", json.dumps(batch))
                batch = []
        assert not batch, "the scenario publishes whole hours"
        # Malformed messages in the same stream.
        publish(client, "pq/v1/A001/A001-M1/reading", b'{"ts": 1, "ua": ')
        publish(client, "pq/v1/A001/A001-M1/reading", json.dumps({"ua": 57.7}))
        publish(client, "pq/v1/A001/A001-M9/reading", json.dumps({"ts": start, "ua": 57.7}))
        # Supply side: the feeder head is in band all day.
        feeder = [{"ts": start + m * MINUTE_MS, "ua": 58.0, "ub": 58.1, "uc": 57.9} for m in range(1440)]
        for i in range(0, 1440, 720):
            publish(client, "pq/v1/F12/F12-M1/reading", json.dumps(feeder[i : i + 720]))
        # The meter uploads its power-off record after power returns, and replays it.
        power_off = {
            "event_id": "A001-M1-000871",
            "ts": start + OUTAGE.start * MINUTE_MS,
            "type": "power_off",
        }
        power_on = {"event_id": "A001-M1-000872", "ts": start + OUTAGE.stop * MINUTE_MS, "type": "power_on"}
        for event in (power_on, power_off, power_off):
            publish(client, "pq/v1/A001/A001-M1/event", json.dumps(event))

        def stored(measurement: str, site: str, field: str) -> int:
            frames = store.query(f"SELECT count({field}) FROM {measurement} WHERE site = '{site}'")
            return int(frames[0]["count"].iloc[0]) if frames else 0

        wait_until(lambda: stored("reading", "A001", "ua") == len(minutes), 60, "A001 readings stored")
        wait_until(lambda: stored("reading", "F12", "ua") == 1440, 30, "F12 readings stored")
        wait_until(lambda: stored("event", "A001", "event_id") == 2, 30, "events stored")
        deadletters = DeadLetters(Path(pqmon_env["PQMON_DATA_DIR"]))
        wait_until(lambda: len(_stream_letters(deadletters)) == 4, 30, "dead letters")
    finally:
        client.loop_stop()
        client.disconnect()
        collector.send_signal(signal.SIGTERM)
        out, _ = collector.communicate(timeout=30)
        print(out)  # shown by pytest when the test fails
    assert collector.returncode == 0, out

    letters = _stream_letters(deadletters)
    assert sorted(r["reason"] for r in letters) == ["bad_json", "bad_value", "missing_ts", "unknown_meter"]
    assert all(r["detail"] for r in letters)
    # Nothing but the good readings reached the store.
    assert stored("reading", "A001", "ua") == 1380

    worker = run_pqmon(pqmon_env, "worker", "--once")
    assert worker.returncode == 0, worker.stderr
    day = scenario_day.isoformat()
    result = run_pqmon(pqmon_env, "report", "A001", "--from", day, "--to", day, "--format", "json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)

    # Computed by hand (docs/definitions.md VQR-1): three phases, each 30 over, 12 under, 1380 monitored.
    assert report["vqr_pct"] == pytest.approx((1 - 42 / 1380) * 100, rel=1e-12)
    assert round(report["vqr_pct"], 4) == 96.9565
    assert (report["monitored_min"], report["over_min"], report["under_min"]) == (3 * 1380, 90, 36)
    assert (report["outage_min"], report["missing_min"]) == (60, 0)
    assert report["coverage_pct"] == pytest.approx(1380 / 1440 * 100)
    for phase in "abc":
        assert report["phases"][phase]["vqr_pct"] == pytest.approx((1 - 42 / 1380) * 100, rel=1e-12)
        assert (report["phases"][phase]["over_min"], report["phases"][phase]["under_min"]) == (30, 12)
    assert report["rs1_pct"] == pytest.approx((1 - 60 / 1440) * 100, rel=1e-12)
    assert report["rs1_excl_short_pct"] == pytest.approx((1 - 60 / 1440) * 100, rel=1e-12)
    assert report["outages"] == {
        "count": 1,
        "sustained": 1,
        "short": 0,
        "planned": 0,
        "unplanned": 1,
        "duration_s": 3600.0,
        "open": 0,
        "longest_s": 3600.0,
    }
    assert report["supply_side"]["feeder"] == "F12"
    assert report["supply_side"]["vqr_pct"] == 100.0
    # The last mile: the account lost 42 minutes a phase that its feeder head did not.
    assert report["supply_side"]["gap"]["vqr_pct"] == pytest.approx(report["vqr_pct"] - 100.0)
    assert report["supply_side"]["gap"]["out_min_per_phase"] == 42
    assert report["pq"]["frequency"] == {
        "n": 1380,
        "within_pct": 100.0,
        "max_deviation_hz": 0.0,
        "limit_hz": 0.2,
    }

    # A second pass changes nothing: the roll-ups are overwritten, not added to.
    assert run_pqmon(pqmon_env, "worker", "--once").returncode == 0
    again = run_pqmon(pqmon_env, "report", "A001", "--from", day, "--to", day, "--format", "json")
    assert json.loads(again.stdout) == report
    store.close()


def _stream_letters(deadletters: DeadLetters) -> list[dict[str, object]]:
    """Dead letters of the scenario, without the subscription probes."""
    return [r for r in deadletters.records() if "/PROBE/" not in r["topic"]]


def _subscribed(env: dict[str, str]) -> bool:
    """True once a message published now reaches the collector (it dead-letters it)."""
    if (Path(env["PQMON_DATA_DIR"]) / "deadletter.db").exists():
        letters = DeadLetters(Path(env["PQMON_DATA_DIR"]))
        try:
            if any(r["topic"] == "pq/v1/PROBE/PROBE/reading" for r in letters.records()):
                return True
        finally:
            letters.close()
    client = publisher(env["PQMON_MQTT_URL"], "test-probe")
    try:
        publish(client, "pq/v1/PROBE/PROBE/reading", b"{}")
    finally:
        client.loop_stop()
        client.disconnect()
    return False
