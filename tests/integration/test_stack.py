"""The simulator against a real Mosquitto: what arrives is what the fleet says it produced."""

from __future__ import annotations

import io
import json
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from core.errors import PqmonError
from core.registry import Registry
from core.servers import LocalMosquitto, free_port, wait_until
from core.settings import load_settings
from pqmon.stack import Supervisor, seed_registry, up
from simulator.fleet import DAY_MS, Fleet, make_fleet
from simulator.publish import PublishStats, due_messages, run

pytestmark = pytest.mark.integration

SEED = 5
ACCOUNTS = 3


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[LocalMosquitto]:
    mosquitto = LocalMosquitto(tmp_path / "mosquitto").start()
    yield mosquitto
    mosquitto.stop()


@dataclass
class Inbox:
    messages: list[tuple[str, bytes, bool]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def of(self, leaf: str) -> list[tuple[str, bytes, bool]]:
        with self.lock:
            return [m for m in self.messages if m[0].endswith("/" + leaf)]

    def readings(self) -> list[dict]:
        return [r for _, p, _ in self.of("reading") for r in json.loads(p)]

    def events(self) -> list[dict]:
        return [json.loads(p) for _, p, _ in self.of("event")]

    def statuses(self, value: str) -> set[str]:
        return {t for t, p, _ in self.of("status") if p.decode() == value}


@pytest.fixture
def inbox(broker: LocalMosquitto) -> Iterator[Inbox]:
    box = Inbox()
    subscribed = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="test-inbox")

    def on_message(_c: object, _u: object, msg: mqtt.MQTTMessage) -> None:
        with box.lock:
            box.messages.append((msg.topic, msg.payload, bool(msg.retain)))

    client.on_message = on_message
    client.on_subscribe = lambda *_: subscribed.set()
    client.connect("127.0.0.1", broker.port)
    client.subscribe("pq/v1/#", qos=1)
    client.loop_start()
    wait_until(subscribed.is_set, 10, "SUBACK for pq/v1/#")
    yield box
    client.disconnect()
    client.loop_stop()


def _now_with_events(fleet: Fleet) -> float:
    """A fixed 'now' whose preceding day has at least one event reported."""
    now_ms = 1_790_000_000_000
    while not fleet.events_reported(now_ms - DAY_MS, now_ms):
        now_ms += DAY_MS
    return now_ms / 1000


def _run_in_thread(
    broker: LocalMosquitto, tmp_path: Path, clock: Callable[[], float], **kwargs: object
) -> tuple[threading.Thread, threading.Event, dict[str, PublishStats]]:
    settings = load_settings({"PQMON_MQTT_URL": broker.url, "PQMON_DATA_DIR": str(tmp_path)})
    stop = threading.Event()
    result: dict[str, PublishStats] = {}

    def target() -> None:
        result["stats"] = run(settings, accounts=ACCOUNTS, seed=SEED, stop_event=stop, clock=clock, **kwargs)  # type: ignore[arg-type]

    thread = threading.Thread(target=target, name="simulator")
    thread.start()
    return thread, stop, result


def test_backfill_arrives_whole_and_per_contract(
    broker: LocalMosquitto, inbox: Inbox, tmp_path: Path
) -> None:
    fleet = make_fleet(ACCOUNTS, SEED)
    now = _now_with_events(fleet)
    now_ms = int(now * 1000)
    expected = due_messages(fleet, now_ms - DAY_MS, now_ms, 900)
    want_readings = sum(m.readings for m in expected)
    want_events = sum(m.events for m in expected)
    assert want_readings > 0 and want_events > 0

    thread, stop, result = _run_in_thread(broker, tmp_path, lambda: now, days=1)
    try:
        wait_until(
            lambda: len(inbox.readings()) == want_readings and len(inbox.events()) == want_events,
            30,
            f"{want_readings} readings and {want_events} events",
        )
        wait_until(lambda: len(inbox.statuses("online")) == len(fleet.meters), 10, "online")
    finally:
        stop.set()
        thread.join(30)
    assert not thread.is_alive()
    wait_until(lambda: len(inbox.statuses("offline")) == len(fleet.meters), 10, "offline")

    stats = result["stats"]
    assert (stats.readings, stats.events) == (want_readings, want_events)
    assert len(inbox.readings()) == want_readings  # nothing more came after the stop
    assert sorted(json.dumps(r, sort_keys=True) for r in inbox.readings()) == sorted(
        json.dumps(r, sort_keys=True) for m in expected if m.readings for r in json.loads(m.payload)
    )

    registry = Registry("sqlite:///" + str(tmp_path / "registry.db"))
    try:
        registry.upsert_rows(enumerate(fleet.registry_rows(), start=2))
        known = registry.meter_index()
    finally:
        registry.close()
    for topic, payload, _ in inbox.of("reading"):
        _, version, site, meter, leaf = topic.split("/")
        assert (version, leaf) == ("v1", "reading") and (site, meter) in known
        batch = json.loads(payload)
        assert isinstance(batch, list) and 1 <= len(batch) <= 100
        spec = fleet.meter(meter)
        for r in batch:
            assert isinstance(r["ts"], int) and r["interval_s"] == 900
            assert r["ts"] + 900_000 <= now_ms  # a window is sent once it has ended
            assert set(spec.phase_fields) <= set(r)
    for event in inbox.events():
        assert set(event) >= {"event_id", "ts", "type"}
        assert event["type"] in ("power_off", "power_on")
    assert _retained_statuses(broker) == {m.topic("status"): "offline" for m in fleet.meters}


def _retained_statuses(broker: LocalMosquitto) -> dict[str, str]:
    """What a late subscriber is told about each meter: the retained status."""
    seen: dict[str, str] = {}
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="test-late")
    client.on_message = lambda _c, _u, msg: seen.__setitem__(msg.topic, msg.payload.decode())
    client.connect("127.0.0.1", broker.port)
    client.subscribe("pq/v1/+/+/status", qos=1)
    client.loop_start()
    try:
        wait_until(lambda: len(seen) >= ACCOUNTS + 1, 10, "retained statuses")
    finally:
        client.disconnect()
        client.loop_stop()
    return seen


def test_live_phase_catches_up_without_gaps_or_repeats(
    broker: LocalMosquitto, inbox: Inbox, tmp_path: Path
) -> None:
    fleet = make_fleet(ACCOUNTS, SEED)
    start = _now_with_events(fleet)
    t0 = time.monotonic()

    def clock() -> float:  # real time running an hour per second, so live data flows quickly
        return start + (time.monotonic() - t0) * 3600

    start_ms = int(start * 1000)
    backfilled = sum(m.readings for m in due_messages(fleet, start_ms - DAY_MS // 4, start_ms, 900))
    # speed 1: the history's incidents only, so the whole is what due_messages says
    thread, stop, result = _run_in_thread(broker, tmp_path, clock, days=0.25, speed=1.0)
    try:
        # A few simulated hours of live data beyond the backfill.
        wait_until(lambda: len(inbox.readings()) >= backfilled + 8 * len(fleet.meters), 30, "live readings")
    finally:
        stop.set()
        thread.join(30)
    assert not thread.is_alive()
    stats = result["stats"]
    assert stats.published_to_ms > stats.backfill_to_ms
    expected = due_messages(fleet, stats.backfill_from_ms, stats.published_to_ms, 900)
    wait_until(
        lambda: len(inbox.readings()) == sum(m.readings for m in expected),
        10,
        "every reading due up to the simulated clock",
    )
    got = sorted(json.dumps(r, sort_keys=True) for r in inbox.readings())
    assert len(got) == len(set(got))  # no window sent twice
    assert len(inbox.events()) == sum(m.events for m in expected)


# -- the launcher's parts (``pqmon up`` end to end needs the real services) -----------------

STANDIN_COLLECTOR = """
import os, signal, threading
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from core.settings import load_settings
target = load_settings().mqtt
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())
count = [0]
client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="standin-collector")
client.on_connect = lambda c, *_: c.subscribe("$share/pqmon/pq/v1/#", 1)
client.on_message = lambda *_: count.__setitem__(0, count[0] + 1)
client.connect(target.host, target.port)
client.loop_start()
print("env", sorted(k for k in os.environ if k.startswith("PQMON_")), flush=True)
while not stop.wait(0.2):
    print("messages", count[0], flush=True)
"""
STANDIN_SIMULATOR = (
    "from core.settings import load_settings; from simulator.publish import run; "
    "run(load_settings(), accounts=3, seed=5, days=1)"
)


def test_seed_registry_is_idempotent(tmp_path: Path) -> None:
    fleet = make_fleet(12, seed=2)
    now_ms = 1_790_000_000_000
    registry = Registry("sqlite:///" + str(tmp_path / "registry.db"))
    try:
        first = seed_registry(registry, fleet, now_ms, days=7, password="demo-password")
        planned = {s.id: registry.planned_outages(s.id) for s in registry.sites()}
        second = seed_registry(registry, fleet, now_ms, days=7)
        assert {s.id: registry.planned_outages(s.id) for s in registry.sites()} == planned
        assert sum(len(v) for v in planned.values()) == len(
            fleet.planned_windows(now_ms - 8 * DAY_MS, now_ms + 14 * DAY_MS)
        )
        assert len(registry.sites()) == len(fleet.meters)
        assert first.password_from_env and not second.password_from_env
        assert first.password == "demo-password" and len(second.password) >= 12
        manager = registry.authenticate("demo", second.password)
        assert manager is not None and manager.role == "manager"
        assert registry.visible_site_ids(manager) == fleet.sites_of("mgr1")
        customer = registry.authenticate("demo_customer", second.password)
        assert customer is not None and registry.visible_site_ids(customer) == [second.customer_site]
        for name, role in ((second.operator, "operator"), (second.admin, "admin")):
            user = registry.authenticate(name, second.password)
            assert user is not None and user.role == role
    finally:
        registry.close()


def test_supervisor_reports_a_death_and_stops_the_rest(tmp_path: Path) -> None:
    sup = Supervisor(tmp_path / "logs", {"PATH": "/usr/bin:/bin"})
    stubborn = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('ready', flush=True); time.sleep(60)"
    )
    first = sup.start("stubborn", [sys.executable, "-c", stubborn])
    sup.start("crasher", [sys.executable, "-c", "import sys; print('boom'); sys.exit(3)"])
    wait_until(lambda: sup.first_exited() is not None, 10, "the crasher to exit")
    dead = sup.first_exited()
    assert dead is not None and dead.name == "crasher" and dead.exited() == 3
    assert "boom" in dead.log_tail()
    wait_until(lambda: "ready" in first.log_tail(), 10, "the stubborn child to start")
    sup.stop_all(timeout_s=0.5)  # SIGTERM is ignored, so this must kill it
    assert first.exited() is not None


def test_up_wires_servers_registry_and_children(tmp_path: Path) -> None:
    out = io.StringIO()
    stop = threading.Event()
    commands = [
        ("collector", [sys.executable, "-c", STANDIN_COLLECTOR]),
        ("simulate", [sys.executable, "-c", STANDIN_SIMULATOR]),
    ]
    environ = {"PQMON_DATA_DIR": str(tmp_path / "var"), "PQMON_PASSWORD": "not-printed-1"}
    result: dict[str, int] = {}
    thread = threading.Thread(
        target=lambda: result.setdefault(
            "rc",
            up(
                environ, accounts=3, seed=5, dashboard_port=18050, stop_event=stop, out=out, commands=commands
            ),
        )
    )
    thread.start()
    collector_log = tmp_path / "var" / "logs" / "collector.log"
    try:
        wait_until(lambda: "pqmon is up" in out.getvalue(), 60, "the banner")

        def collector_count() -> int:
            lines = [ln for ln in collector_log.read_text().splitlines() if ln.startswith("messages")]
            return int(lines[-1].split()[1]) if lines else 0

        # Every meter's online status plus at least its first batch.
        wait_until(lambda: collector_count() >= 8, 30, "the simulator's messages at the collector")
    finally:
        stop.set()
        thread.join(60)
    assert not thread.is_alive() and result["rc"] == 0
    banner = out.getvalue()
    assert "http://127.0.0.1:18050/" in banner and "demo_customer" in banner
    assert "demo_operator (operator" in banner and "demo_admin (administrator" in banner
    assert "not-printed-1" not in banner
    env_line = next(ln for ln in collector_log.read_text().splitlines() if ln.startswith("env"))
    for name in (
        "PQMON_MQTT_URL",
        "PQMON_INFLUX_URL",
        "PQMON_REGISTRY_URL",
        "PQMON_DATA_DIR",
        "PQMON_DASHBOARD_PORT",
        "PQMON_INFLUX_DB",
    ):
        assert name in env_line
    assert "PQMON_PASSWORD" not in env_line


def test_stops_promptly_when_the_broker_has_gone(
    broker: LocalMosquitto, inbox: Inbox, tmp_path: Path
) -> None:
    fleet = make_fleet(ACCOUNTS, SEED)
    now = _now_with_events(fleet)
    thread, stop, result = _run_in_thread(broker, tmp_path, lambda: now, days=1)
    try:
        wait_until(lambda: len(inbox.statuses("online")) == len(fleet.meters), 10, "online")
        broker.stop()
        stop.set()
        t0 = time.monotonic()
        thread.join(15)
        assert not thread.is_alive()
        assert time.monotonic() - t0 < 5
    finally:
        stop.set()
        thread.join(30)
    assert result["stats"].readings > 0


def test_an_unreachable_broker_is_a_clear_error(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr("simulator.publish.CONNECT_TIMEOUT_S", 1.0)
    port = free_port()
    settings = load_settings({"PQMON_MQTT_URL": f"mqtt://127.0.0.1:{port}"})
    with pytest.raises(PqmonError, match=f"no MQTT connection to 127.0.0.1:{port}"):
        run(settings, accounts=3, seed=SEED, days=0)
