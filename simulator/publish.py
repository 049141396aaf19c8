"""Put a simulated fleet on the wire: MQTT contract version 1 (docs/mqtt.md).

Each meter is its own MQTT client, as in the field: its own connection and client id, a
retained ``online`` status and ``offline`` as its last will, so the broker's ACL and the
collector's topic check see what real meters would send. Publishing is QoS 1 and every
message is waited for (PUBACK) before the run ends, so a clean stop loses nothing.

The run first backfills the history up to now in batches (gateways upload arrays): ``days``
back, or from ``since_ms``. Events of the history model are published when their meter
reports them, after power has come back and often hours later.

Then it goes live on the wall clock: readings every ``live_interval_s`` as their windows end,
and, at ``speed`` S above 1, the incidents of :class:`simulator.live.LiveScenario` S times as
often as in the history. The clock is never run ahead of real now: the collector refuses
readings from the future, and "today", the alert rules' last hour and a silent meter's
three intervals are all measured on the wall clock downstream, so a faster clock would show
nothing or, replayed behind now, make every meter look silent.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from core.errors import PqmonError
from core.settings import MqttTarget, Settings
from simulator.fleet import DAY_MS, Fleet, MeterSpec, check_interval, make_fleet
from simulator.live import LiveScenario, PlannedCut, expected_per_hour

log = logging.getLogger(__name__)

BATCH_READINGS = 96  # one day of 15-minute readings; the contract allows arrays
MAX_INFLIGHT = 50
CONNECT_TIMEOUT_S = 15.0
ACK_TIMEOUT_S = 60.0
TICK_S = 0.5
PROGRESS_EVERY_S = 30.0

BAD_CREDENTIALS = "the broker refused meter %s (%s); check the user and password in PQMON_MQTT_URL"


@dataclass(frozen=True)
class Outgoing:
    topic: str
    payload: bytes
    readings: int = 0
    events: int = 0


@dataclass
class PublishStats:
    messages: int = 0
    readings: int = 0
    events: int = 0
    backfill_s: float = 0.0
    backfill_from_ms: int = 0
    backfill_to_ms: int = 0
    published_to_ms: int = 0  # the simulated clock when the run stopped


def due_messages(
    fleet: Fleet,
    after_ms: int,
    until_ms: int,
    interval_s: int,
    batch: int = BATCH_READINGS,
    live: LiveScenario | None = None,
) -> list[Outgoing]:
    """Messages the fleet publishes in ``(after_ms, until_ms]``.

    A reading is due when its window ends (``ts + interval_s``); an event when its meter
    reports it. Cutting a period in pieces gives the same messages as the whole. ``live``
    adds the live part's incidents (gaps, excursions, outage events).
    """
    return reading_messages(fleet, after_ms, until_ms, interval_s, batch, live) + event_messages(
        fleet, after_ms, until_ms, live
    )


def reading_messages(
    fleet: Fleet,
    after_ms: int,
    until_ms: int,
    interval_s: int,
    batch: int = BATCH_READINGS,
    live: LiveScenario | None = None,
) -> list[Outgoing]:
    """The readings of :func:`due_messages`: windows that end in ``(after_ms, until_ms]``."""
    step = interval_s * 1000
    first_ts = ((after_ms - step) // step + 1) * step
    end_ts = ((until_ms - step) // step + 1) * step
    out: list[Outgoing] = []
    for m in fleet.meters:
        readings = fleet.readings(m, first_ts, end_ts, interval_s)
        if live is not None:
            readings = live.apply(m, readings, interval_s)
        for i in range(0, len(readings), batch):
            chunk = readings[i : i + batch]
            out.append(Outgoing(m.topic("reading"), _dumps(chunk), readings=len(chunk)))
    return out


def event_messages(
    fleet: Fleet, after_ms: int, until_ms: int, live: LiveScenario | None = None
) -> list[Outgoing]:
    """The events of :func:`due_messages`: those published in ``(after_ms, until_ms]``."""
    events = fleet.events_reported(after_ms, until_ms)
    if live is not None:
        events += live.events_due(after_ms, until_ms)
    return [Outgoing(m.topic("event"), _dumps(event), events=1) for m, event in events]


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


class MeterLink:
    """One meter's MQTT connection, counting unacknowledged publishes."""

    def __init__(self, target: MqttTarget, meter: MeterSpec, client_id: str, ca_file: str = ""):
        self.meter = meter
        self.connected = threading.Event()
        self.refused: str | None = None
        self.closing = False
        self._lock = threading.Lock()
        self._pending: set[int] = set()
        self._early: set[int] = set()
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
        if target.username:
            c.username_pw_set(target.username, target.password)
        if target.tls:
            c.tls_set(ca_certs=ca_file or None)
        c.will_set(meter.topic("status"), "offline", qos=1, retain=True)
        c.max_inflight_messages_set(MAX_INFLIGHT)
        c.max_queued_messages_set(0)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_publish = self._on_publish
        self.client = c
        c.connect_async(target.host, target.port, keepalive=30)
        c.loop_start()

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            self.refused = str(reason)
            if reason.value in (134, 135, 4, 5):  # bad user name or password, not authorized
                log.error(BAD_CREDENTIALS, self.meter.meter_id, reason)
                client.disconnect()
            return
        self.connected.set()

    def _on_disconnect(self, _c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if self.connected.is_set() and not self.closing:
            _log_connection_loss(self.meter.meter_id, reason)
        self.connected.clear()

    def _on_publish(self, _c: Any, _u: Any, mid: int, _r: Any, _p: Any) -> None:
        with self._lock:
            if mid in self._pending:
                self._pending.discard(mid)
            else:
                self._early.add(mid)

    def publish(self, topic: str, payload: bytes | str, retain: bool = False) -> None:
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        if info.rc == mqtt.MQTT_ERR_QUEUE_SIZE:  # unlimited queue: cannot happen, but say so
            raise RuntimeError(f"paho refused to queue a message for {topic}")
        with self._lock:
            if info.mid in self._early:
                self._early.discard(info.mid)
            else:
                self._pending.add(info.mid)

    @property
    def unacked(self) -> int:
        with self._lock:
            return len(self._pending)


_last_loss_log = [0.0]


def _log_connection_loss(meter_id: str, reason: Any) -> None:
    """Once per 10 s: when the broker goes, every meter's link says so at the same moment."""
    now = time.monotonic()
    if now - _last_loss_log[0] >= 10:
        _last_loss_log[0] = now
        log.warning(
            "meter %s (and maybe others) lost the MQTT connection (%s); reconnecting", meter_id, reason
        )


class FleetPublisher:
    """All the meters' links; publishes and waits for acknowledgements."""

    def __init__(self, settings: Settings, fleet: Fleet, client_prefix: str) -> None:
        target = settings.mqtt
        self.links = {
            m.meter_id: MeterLink(target, m, f"{client_prefix}-{m.meter_id}", settings.mqtt_ca_file)
            for m in fleet.meters
        }
        self.stats = PublishStats()
        self._where = f"{target.host}:{target.port}"

    def wait_connected(self, timeout_s: float | None = None) -> None:
        timeout_s = CONNECT_TIMEOUT_S if timeout_s is None else timeout_s
        deadline = time.monotonic() + timeout_s
        for link in self.links.values():
            while not link.connected.wait(0.1):
                if link.refused and not link.client.is_connected():
                    raise PqmonError(
                        f"MQTT broker {self._where} refused {link.meter.meter_id}: {link.refused}"
                    )
                if time.monotonic() > deadline:
                    raise PqmonError(
                        f"no MQTT connection to {self._where} after {timeout_s:g}s; "
                        "is the broker running and PQMON_MQTT_URL right?"
                    )

    def send(self, batch: list[Outgoing]) -> None:
        for msg in batch:
            meter_id = msg.topic.split("/")[3]
            self.links[meter_id].publish(msg.topic, msg.payload)
            self.stats.messages += 1
            self.stats.readings += msg.readings
            self.stats.events += msg.events

    def status(self, value: str) -> None:
        for link in self.links.values():
            link.publish(link.meter.topic("status"), value, retain=True)

    def wait_acked(
        self,
        timeout_s: float = ACK_TIMEOUT_S,
        stop: threading.Event | None = None,
        only_while_connected: bool = False,
    ) -> bool:
        """Wait for every PUBACK; give up at the deadline, on ``stop``, or (on the way out)
        when the meters still waiting have lost the broker and cannot be acknowledged."""
        deadline = time.monotonic() + timeout_s
        while True:
            waiting = [link for link in self.links.values() if link.unacked]
            if not waiting:
                return True
            why = ""
            if stop is not None and stop.is_set():
                why = "stopping"
            elif only_while_connected and not any(link.connected.is_set() for link in waiting):
                why = "the broker is gone"
            elif time.monotonic() > deadline:
                why = f"no PUBACK after {timeout_s:g}s"
            if why:
                left = sum(link.unacked for link in waiting)
                log.warning("%d message(s) unacknowledged (%s)", left, why)
                return False
            time.sleep(0.01)

    def close(self) -> None:
        # Disconnect all first: a network thread waiting to reconnect then ends at once,
        # so joining them one by one does not add up.
        for link in self.links.values():
            link.closing = True
            link.client.disconnect()
        for link in self.links.values():
            link.client.loop_stop()


def run(
    settings: Settings,
    accounts: int = 50,
    seed: int = 1,
    speed: float = 1.0,
    days: float = 7,
    interval_s: int = 900,
    stop_event: threading.Event | None = None,
    clock: Callable[[], float] = time.time,
    *,
    since_ms: int | None = None,
    live_interval_s: int | None = None,
    planned: tuple[PlannedCut, ...] = (),
) -> PublishStats:
    """Publish the fleet for ``seed`` until ``stop_event`` is set (or Ctrl-C / SIGTERM).

    The history starts ``days`` before now, or at ``since_ms`` when given, and is published at
    ``interval_s``; the live part at ``live_interval_s`` (default: the same), with incidents
    ``speed`` times as often as in the history (see :mod:`simulator.live`) and the ``planned``
    windows carried out. ``clock`` returns real now in epoch seconds; tests inject a fixed
    one so that the backfill covers a known period and the live phase publishes nothing new.
    """
    if speed <= 0 or days < 0:
        raise ValueError(f"speed must be positive and days not negative, got {speed}, {days}")
    check_interval(interval_s)
    live_interval_s = live_interval_s or interval_s
    check_interval(live_interval_s)
    stop = stop_event or threading.Event()
    fleet = make_fleet(accounts, seed)
    restore = _stop_on_sigterm(stop)
    publisher = FleetPublisher(settings, fleet, f"pqmon-sim-{seed}")
    stats = publisher.stats
    try:
        publisher.wait_connected()
        publisher.status("online")
        now_ms = int(clock() * 1000)
        stats.backfill_from_ms = now_ms - int(days * DAY_MS) if since_ms is None else min(since_ms, now_ms)
        stats.backfill_to_ms = stats.published_to_ms = now_ms
        log.info(
            "simulating %d accounts and %d feeders (seed %d); backfilling %.1f day(s)",
            len(fleet.accounts),
            len(fleet.feeders),
            seed,
            (now_ms - stats.backfill_from_ms) / DAY_MS,
        )
        t0 = time.monotonic()
        backfill = due_messages(fleet, stats.backfill_from_ms, now_ms, interval_s)
        publisher.send(backfill)
        publisher.wait_acked(stop=stop)
        stats.backfill_s = time.monotonic() - t0
        log.info(
            "backfill done in %.1fs: %d messages, %d readings, %d events",
            stats.backfill_s,
            stats.messages,
            stats.readings,
            stats.events,
        )
        scenario = LiveScenario(fleet, speed, now_ms, planned)
        if speed > 1:
            rates = ", ".join(f"{v:.1f} {k}s" for k, v in expected_per_hour(fleet, speed).items())
            log.info("live at %g x the history's incidents: about %s an hour", speed, rates)
        _live(publisher, fleet, scenario, interval_s, live_interval_s, stop, clock)
    except KeyboardInterrupt:
        log.info("interrupted")
    finally:
        try:
            if all(link.connected.is_set() for link in publisher.links.values()):
                publisher.status("offline")
            publisher.wait_acked(timeout_s=10, only_while_connected=True)
        finally:
            publisher.close()
            restore()
        log.info(
            "stopped: %d messages, %d readings, %d events in all",
            stats.messages,
            stats.readings,
            stats.events,
        )
    return stats


def _live(
    publisher: FleetPublisher,
    fleet: Fleet,
    scenario: LiveScenario,
    interval_s: int,
    live_interval_s: int,
    stop: threading.Event,
    clock: Callable[[], float],
) -> None:
    """Publish on the wall clock: readings from the end of the backfill's last window at the
    live interval, events from the backfill's end."""
    stats = publisher.stats
    step = interval_s * 1000
    readings_to = stats.backfill_to_ms // step * step  # the backfill's last window ended here
    last_log = time.monotonic()
    while not stop.wait(TICK_S):
        now = int(clock() * 1000)
        if now > stats.published_to_ms:
            batch = reading_messages(fleet, readings_to, now, live_interval_s, live=scenario)
            batch += event_messages(fleet, stats.published_to_ms, now, live=scenario)
            publisher.send(batch)
            publisher.wait_acked(stop=stop)
            readings_to = stats.published_to_ms = now
        if time.monotonic() - last_log >= PROGRESS_EVERY_S:
            last_log = time.monotonic()
            log.info(
                "live: %d messages, %d readings, %d events so far",
                stats.messages,
                stats.readings,
                stats.events,
            )


def _stop_on_sigterm(stop: threading.Event) -> Callable[[], None]:
    """SIGTERM (how ``pqmon up`` stops its children) sets ``stop`` for a clean exit."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def handler(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    previous = signal.signal(signal.SIGTERM, handler)

    def restore() -> None:
        signal.signal(signal.SIGTERM, previous)

    return restore


__all__ = [
    "run",
    "due_messages",
    "reading_messages",
    "event_messages",
    "Outgoing",
    "PublishStats",
    "FleetPublisher",
]
