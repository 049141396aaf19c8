"""Alerts end to end: a power_off published over MQTT reaches a webhook, a mailbox and an MQTT
topic once each through the collector (the fast path) and `pqmon alerts run`; its power_on
sends one restoration notice with the duration. Real Mosquitto, InfluxDB, HTTP and SMTP
servers; the collector and the alert service are the real commands."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from analysis.alerts.state import OutboxRow
from core.registry import Registry
from core.servers import wait_until
from tests.conftest import run_pqmon
from tests.integration.mqtt_support import CollectorProcess, mqtt_client
from tests.integration.receivers import (  # noqa: F401 - the fixtures are used by name
    HttpReceiver,
    SmtpServer,
    http_receiver_fixture,
    smtp_server_fixture,
)

pytestmark = pytest.mark.integration

REGISTRY = """site_id,site_kind,name,voltage_class_kv,phases,meter_id,nominal_v,upper_pct,lower_pct,profile,feeder_id,manager
F1,feeder,Feeder 1,10,3,F1-M1,57.735,,,gb,,
A001,account,Mill,10,3,A001-M1,57.735,,,gb,F1,
"""


def alerts_file(path: Path, hook: str, smtp_port: int, mqtt_url: str) -> Path:
    path.write_text(
        f"""
[policy]
group_interval_s = 2

[channels.ops-hook]
type = "webhook"
url = "{hook}"

[channels.ops-mail]
type = "email"
host = "127.0.0.1"
port = {smtp_port}
security = "none"
sender = "pqmon@example.com"
to = ["duty@example.com"]

[channels.ops-mqtt]
type = "mqtt"
url = "{mqtt_url}"
"""
    )
    return path


def outbox_states(env: dict[str, str]) -> set[str]:
    registry = Registry(env["PQMON_REGISTRY_URL"])
    try:
        with Session(registry.engine) as s:
            return set(s.scalars(select(OutboxRow.state)))
    finally:
        registry.close()


def drained(env: dict[str, str]) -> bool:
    """Nothing left to send: every row sent, or folded into a later one (cancelled)."""
    return outbox_states(env) <= {"sent", "cancelled"}


class AlertService:
    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env, self.log_path = env, log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> AlertService:
        self.log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pqmon", "alerts", "run"],
            env=self.env,
            stdout=self.log,
            stderr=self.log,
        )
        return self

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.terminate()
        code = self.proc.wait(20)
        self.log.close()
        return code


class Subscriber:
    """Collects what arrives on pq/v1/alerts/#."""

    def __init__(self, url: str) -> None:
        self.messages: list[tuple[str, dict]] = []
        self.lock = threading.Lock()
        self.client = mqtt_client(url, f"alert-watch-{os.getpid()}")

        def on_message(_c, _u, msg: mqtt.MQTTMessage) -> None:  # type: ignore[no-untyped-def]
            with self.lock:
                self.messages.append((msg.topic, json.loads(msg.payload)))

        subscribed = threading.Event()
        self.client.on_message = on_message
        self.client.on_subscribe = lambda *_args: subscribed.set()
        wait_until(self.client.is_connected, 10, "the alert subscriber")
        self.client.subscribe("pq/v1/alerts/#", qos=1)
        wait_until(subscribed.is_set, 10, "the alert subscription")

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def test_power_off_pages_once_on_every_channel_and_power_on_restores(
    pqmon_env: dict[str, str], tmp_path: Path, http_receiver: HttpReceiver, smtp_server: SmtpServer
) -> None:
    (tmp_path / "reg.csv").write_text(REGISTRY)
    assert run_pqmon(pqmon_env, "registry", "import", str(tmp_path / "reg.csv")).returncode == 0
    env = pqmon_env | {
        "PQMON_ALERTS_FILE": str(
            alerts_file(
                tmp_path / "alerts.toml", http_receiver.url, smtp_server.port, pqmon_env["PQMON_MQTT_URL"]
            )
        )
    }
    watcher = Subscriber(env["PQMON_MQTT_URL"])
    collector = CollectorProcess(env, tmp_path / "collector.log").start()
    alerts = AlertService(env, tmp_path / "alerts.log").start()
    meter = mqtt_client(env["PQMON_MQTT_URL"], "alert-meter")
    off_ms = int(time.time() * 1000) - 800_000  # the power_on below is then 46 s ago
    try:
        meter.publish(
            "pq/v1/A001/A001-M1/event",
            json.dumps({"event_id": "e1", "ts": off_ms, "type": "power_off"}),
            qos=1,
        ).wait_for_publish(10)
        [page] = http_receiver.wait_for(1, timeout_s=30)
        [mail] = smtp_server.wait_for(1, timeout_s=30)
        wait_until(lambda: len(watcher.messages) >= 1, 30, "the MQTT alert")
        assert page.json()["kind"] == "incident" and page.json()["alert"]["sites"][0]["site"] == "A001"
        assert "A001" in mail.message.get_content()
        topic, doc = watcher.messages[0]
        assert topic == "pq/v1/alerts/A001" and doc["kind"] == "incident"
        listed = run_pqmon(env, "alerts", "list")
        assert "feeder:F1" in listed.stdout and "still off: A001" in listed.stdout

        on_ms = off_ms + 754_000
        meter.publish(
            "pq/v1/A001/A001-M1/event", json.dumps({"event_id": "e2", "ts": on_ms, "type": "power_on"}), qos=1
        ).wait_for_publish(10)
        # The same power_off again (a meter re-sending its log) must not page again.
        meter.publish(
            "pq/v1/A001/A001-M1/event",
            json.dumps({"event_id": "e1", "ts": off_ms, "type": "power_off"}),
            qos=1,
        ).wait_for_publish(10)
        requests = http_receiver.wait_for(2, timeout_s=30)
        mails = smtp_server.wait_for(2, timeout_s=30)
        wait_until(lambda: len(watcher.messages) >= 2, 30, "the MQTT restoration")
        restored = requests[1].json()
        assert restored["kind"] == "resolved"
        assert restored["alert"]["sites"][0]["duration_s"] == 754.0
        assert "12.6 min" in mails[1].message.get_content()
        assert watcher.messages[1][1]["kind"] == "resolved"
        # Nothing more is owed: every outbox row is sent, so any duplicate would have arrived.
        wait_until(lambda: outbox_states(env) == {"sent"}, 30, "the outbox to drain")
        assert len(http_receiver.requests) == 2 and len(smtp_server.messages) == 2
        assert len(watcher.messages) == 2
        assert requests[0].headers["idempotency-key"] != requests[1].headers["idempotency-key"]
        assert "no open incidents" in run_pqmon(env, "alerts", "list").stdout
    finally:
        meter.loop_stop()
        meter.disconnect()
        watcher.close()
        assert alerts.stop() == 0, (tmp_path / "alerts.log").read_text()
        assert collector.stop() == 0


FEEDER_REGISTRY = REGISTRY + "".join(
    f"B{i:02d},account,Shop {i},10,3,B{i:02d}-M1,57.735,,,gb,F1,\n" for i in range(1, 11)
)


def hook_only(path: Path, hook: str) -> Path:
    path.write_text(
        f'[policy]\ngroup_interval_s = 2\n\n[channels.ops-hook]\ntype = "webhook"\nurl = "{hook}"\n'
    )
    return path


def publish_events(meter: mqtt.Client, kind: str, sites: list[str], first_ms: int, step_ms: int) -> None:
    for n, site in enumerate(sites):
        body = {"event_id": f"{site}-{kind}-{first_ms}", "ts": first_ms + n * step_ms, "type": kind}
        meter.publish(f"pq/v1/{site}/{site}-M1/event", json.dumps(body), qos=1).wait_for_publish(10)


def kinds(receiver: HttpReceiver) -> list[str]:
    return [r.json()["kind"] for r in receiver.requests]


def test_ten_accounts_of_one_feeder_are_one_incident_and_storm_mode_still_restores(
    pqmon_env: dict[str, str], tmp_path: Path, http_receiver: HttpReceiver
) -> None:
    (tmp_path / "reg.csv").write_text(FEEDER_REGISTRY)
    assert run_pqmon(pqmon_env, "registry", "import", str(tmp_path / "reg.csv")).returncode == 0
    env = pqmon_env | {"PQMON_ALERTS_FILE": str(hook_only(tmp_path / "alerts.toml", http_receiver.url))}
    collector = CollectorProcess(env, tmp_path / "collector.log").start()
    alerts = AlertService(env, tmp_path / "alerts.log").start()
    meter = mqtt_client(env["PQMON_MQTT_URL"], "feeder-meters")
    shops = [f"B{i:02d}" for i in range(1, 11)]
    now_ms = int(time.time() * 1000)
    try:
        # Ten accounts of feeder F1 lose supply within 20 s.
        publish_events(meter, "power_off", shops, now_ms - 600_000, 2_000)
        wait_until(lambda: "incident_update" in kinds(http_receiver), 30, "the folded update")
        wait_until(lambda: drained(env), 30, "the outbox to drain")
        assert kinds(http_receiver).count("incident") == 1  # one page, not ten
        assert len(http_receiver.requests) <= 3  # the page, then at most a couple of updates
        last = http_receiver.requests[-1].json()["alert"]
        assert sorted(s["site"] for s in last["sites"]) == shops
        publish_events(meter, "power_on", shops, now_ms - 300_000, 1_000)
        wait_until(lambda: "resolved" in kinds(http_receiver), 30, "the restoration")
        wait_until(lambda: drained(env), 30, "the outbox to drain")
        assert kinds(http_receiver).count("resolved") == 1
        restored = http_receiver.requests[-1].json()["alert"]
        assert all(s["duration_s"] is not None for s in restored["sites"]) and len(restored["sites"]) == 10

        # Storm mode: a fleet-wide outage pages nobody, but every restoration is delivered.
        http_receiver.clear()
        until = time.strftime("%Y-%m-%dT%H:%M", time.gmtime(time.time() + 3600)) + "+00:00"
        silenced = run_pqmon(
            env, "alerts", "silence", "--storm", "--until", until, "--reason", "typhoon", "--by", "li"
        )
        assert silenced.returncode == 0, silenced.stderr
        publish_events(meter, "power_off", ["A001", *shops], now_ms - 200_000, 1_000)
        wait_until(
            lambda: "still off: A001" in run_pqmon(env, "alerts", "list").stdout, 30, "the held incident"
        )
        assert http_receiver.requests == []
        publish_events(meter, "power_on", ["A001", *shops], now_ms - 100_000, 1_000)
        wait_until(lambda: "resolved" in kinds(http_receiver), 30, "the restoration in storm mode")
        assert kinds(http_receiver) == ["resolved"]
    finally:
        meter.loop_stop()
        meter.disconnect()
        assert alerts.stop() == 0, (tmp_path / "alerts.log").read_text()
        assert collector.stop() == 0
