"""The collector process: MQTT in, durable spool, InfluxDB out, rejects to dead letters.

    paho network thread --on_message--> pending list (not yet acknowledged)
    spooler thread      --commit to the spool, then PUBACK each message-->
    writer thread       --decode, batch, write to InfluxDB, dead-letter rejects, trim spool-->

A message is acknowledged only once it is committed to the spool, and leaves the spool
only once its points are stored: a crash at any point loses nothing, and whatever is
written twice overwrites itself (same series and time). While InfluxDB is away the spool
grows; at its bound the collector stops acknowledging, so messages wait in the broker.
"""

from __future__ import annotations

import logging
import queue
import ssl
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import paho.mqtt.client as mqtt

from analysis.alerts.config import alert_policy, load_routes
from analysis.alerts.engine import AlertEngine, PowerEvent
from collector.contract import MeterInfo, Rejected, decode
from collector.deadletter import DeadLetters
from collector.metrics import MetricsServer
from collector.spool import Spool
from core.errors import StoreRejected, StoreUnavailable
from core.registry import Registry
from core.settings import Settings
from core.store import InfluxStore

log = logging.getLogger(__name__)

TOPICS = "pq/v1/+/+/+"
REGISTRY_REFRESH_S = 30.0
MESSAGES_PER_PASS = 20_000
ROWS_PER_FETCH = 200
LINGER_S = 0.05
SPOOL_GATHER_S = 0.005
POWER_TYPES = ("power_off", "power_on", "dip")  # the events the alert engine acts on at once
BUCKET_MS = 900_000  # every UTC offset in use is a multiple of 15 minutes
LONGEST_SPAN_MS = 3_600_000  # the longest averaging window whose reach into the next day counts
STORE_DOWN = "InfluxDB is unavailable (%s); %d messages wait in the spool. Check PQMON_INFLUX_URL."
STORE_BACK = "InfluxDB is back after %.0fs; caught up"
SPOOL_FULL = (
    "spool holds %d messages (PQMON_SPOOL_MAX_MESSAGES); no longer acknowledging, the broker keeps the rest"
)
BAD_CREDENTIALS = "the broker refused the collector's credentials; fix PQMON_MQTT_URL and restart"


@dataclass
class Pass:
    """Decoded messages on their way to InfluxDB; the spool keeps them until stored."""

    last_id: int
    messages: int = 0
    lines: list[str] = field(default_factory=list)
    dead: list[tuple[Any, ...]] = field(default_factory=list)
    touched: set[tuple[str, int]] = field(default_factory=set)
    power: list[PowerEvent] = field(default_factory=list)  # for the alert engine's fast path


def local_days(site_buckets: set[tuple[str, int]], tz: str) -> set[tuple[str, date]]:
    """(site, UTC quarter-hour number) pairs to the (site, local day) pairs they change.

    A reading stands for its whole averaging window, so one that begins in the last hour
    of a day (a 15- or 60-minute value at 23:30) changes the next day too; the worker reads
    that far back (``READING_LOOKBEHIND_MS``) for the same reason.
    """
    zone = ZoneInfo(tz)
    out = set()
    for site, bucket in site_buckets:
        out.add((site, datetime.fromtimestamp(bucket * BUCKET_MS / 1000, zone).date()))
        reach_ms = (bucket + 1) * BUCKET_MS + LONGEST_SPAN_MS - 1
        out.add((site, datetime.fromtimestamp(reach_ms / 1000, zone).date()))
    return out


def meter_infos(registry: Registry) -> dict[tuple[str, str], MeterInfo]:
    return {
        (site.id, m.meter_id): MeterInfo(m.nominal_v, site.side)
        for site in registry.sites()
        for m in site.meters
    }


class Collector:
    def __init__(self, settings: Settings, store: InfluxStore | None = None) -> None:
        self.settings = settings
        self.store = store or InfluxStore.from_settings(settings)
        self.registry = Registry(settings.registry_url)
        self.alerts = AlertEngine(self.registry, load_routes(settings), alert_policy(settings))
        self.deadletters = DeadLetters(settings.data_dir / "deadletter.db")
        self.spool = Spool(
            settings.data_dir / "spool" / f"{settings.mqtt_client_id}.db", fsync=settings.spool_fsync
        )
        self.counts: Counter[str] = Counter()
        self.write_seconds = 0.0
        self.writes = 0
        self.fatal: str | None = None
        self.connected = threading.Event()
        self.store_ok = True
        self._meters = meter_infos(self.registry)
        self._meters_loaded = time.monotonic()
        self._pending: list[mqtt.MQTTMessage] = []
        self._pending_cv = threading.Condition()
        self._spooled = threading.Event()
        self._stop = threading.Event()
        self._stop_now = threading.Event()  # give up retrying InfluxDB: only when stop() times out
        self._spooler = threading.Thread(target=self._spool_loop, name="pqmon-spooler", daemon=True)
        self._passes: queue.Queue[Pass | None] = queue.Queue(maxsize=2)
        self._decoder = threading.Thread(target=self._decode_loop, name="pqmon-decoder", daemon=True)
        self._writer = threading.Thread(target=self._send_loop, name="pqmon-writer", daemon=True)
        self._client = self._make_client()
        self._metrics: MetricsServer | None = None

    # -- MQTT side ------------------------------------------------------------------------
    @property
    def subscription(self) -> str:
        """A plain subscription unless a share group is set for several collectors.

        Mosquitto 2.0 does not restore shared subscriptions from its persistence file, so
        after a broker restart a shared group misses what is published before the collector
        resubscribes; a plain subscription of a persistent session does not.
        """
        group = self.settings.mqtt_share_group
        return f"$share/{group}/{TOPICS}" if group else TOPICS

    def _make_client(self) -> mqtt.Client:
        target = self.settings.mqtt
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=self.settings.mqtt_client_id,
            clean_session=False,
            protocol=mqtt.MQTTv311,
            manual_ack=True,
        )
        if target.username:
            client.username_pw_set(target.username, target.password)
        if target.tls:
            client.tls_set(ca_certs=self.settings.mqtt_ca_file or None, cert_reqs=ssl.CERT_REQUIRED)
        client.max_inflight_messages_set(1000)
        client.reconnect_delay_set(0.2, 5)  # type: ignore[arg-type]  # paho sleeps floats fine
        client.on_connect = self._on_connect
        client.on_message = self._on_message
        client.on_disconnect = self._on_disconnect
        return client

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:  # type: ignore[no-untyped-def]
        if reason_code.is_failure:
            if reason_code in ("Bad user name or password", "Not authorized"):
                self.fatal = BAD_CREDENTIALS
                log.error(BAD_CREDENTIALS)
                client.disconnect()
            else:
                log.warning("MQTT connection refused: %s", reason_code)
            return
        # Resubscribe on every connect: a fresh broker may not know the session.
        client.subscribe(self.subscription, qos=1)
        self.connected.set()
        log.info(
            "connected to MQTT %s:%s (session present: %s), subscribed to %s",
            self.settings.mqtt.host,
            self.settings.mqtt.port,
            flags.session_present,
            self.subscription,
        )

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:  # type: ignore[no-untyped-def]
        self.connected.clear()
        if not self._stop.is_set():
            log.warning("MQTT connection lost (%s); reconnecting", reason_code)

    def _on_message(self, client, userdata, msg: mqtt.MQTTMessage) -> None:  # type: ignore[no-untyped-def]
        msg.timestamp = time.time()
        with self._pending_cv:
            self._pending.append(msg)
            if len(self._pending) == 1:
                self._pending_cv.notify()

    # -- spooler: commit, then acknowledge ------------------------------------------------
    def _spool_loop(self) -> None:
        full_logged = False
        while True:
            with self._pending_cv:
                while not self._pending and not self._stop.is_set():
                    self._pending_cv.wait(0.5)
                if not self._pending and self._stop.is_set():
                    return
            # Group commit: a few milliseconds more make one transaction of many messages.
            time.sleep(SPOOL_GATHER_S)
            with self._pending_cv:
                batch, self._pending = self._pending, []
            while self.spool.depth >= self.settings.spool_max_messages and not self._stop.is_set():
                if not full_logged:
                    log.error(SPOOL_FULL, self.spool.depth)
                    full_logged = True
                self._spooled.set()
                time.sleep(0.05)
            if self._stop.is_set() and self.spool.depth >= self.settings.spool_max_messages:
                return  # unacknowledged: the broker redelivers them to the next session
            full_logged = False
            self.spool.append((m.topic, bytes(m.payload), int(m.timestamp * 1000)) for m in batch)
            for m in batch:
                if m.qos > 0:
                    self._client.ack(m.mid, m.qos)
            self.counts["received"] += len(batch)
            self._spooled.set()

    # -- writer: decode, store, trim ------------------------------------------------------
    def _meter_table(self, force: bool = False) -> dict[tuple[str, str], MeterInfo]:
        age = time.monotonic() - self._meters_loaded
        if age > REGISTRY_REFRESH_S or (force and age > 1.0):
            self._meters = meter_infos(self.registry)
            self._meters_loaded = time.monotonic()
        return self._meters

    def decode_one(
        self,
        topic: str,
        payload: bytes,
        received_ms: int,
        now_ms: int,
        dead: list[tuple[Any, ...]],
        touched: set[tuple[str, int]] | None = None,
        key: str | None = None,
        power: list[PowerEvent] | None = None,
    ) -> list[str]:
        """Points of one message; its rejects are appended to ``dead``."""
        oldest = now_ms - self.settings.retention_days * 86_400_000
        try:
            try:
                decoded = decode(topic, payload, self._meter_table(), now_ms, oldest)
            except Rejected as why:
                if why.reason != "unknown_meter":
                    raise
                # A meter registered moments ago: look again before rejecting.
                decoded = decode(topic, payload, self._meter_table(force=True), now_ms, oldest)
        except Rejected as why:
            self.counts[f"rejected_{why.reason}"] += 1
            dead.append((topic, payload, why.reason, why.detail, received_ms, key))
            return []
        except Exception as exc:  # a bug of ours must not wedge the spool on one message
            log.exception("could not decode a message on %s; dead-lettered as internal_error", topic)
            self.counts["rejected_internal_error"] += 1
            dead.append((topic, payload, "internal_error", repr(exc)[:300], received_ms, key))
            return []
        for n, (refusal, item) in enumerate(decoded.rejected):
            self.counts[f"rejected_{refusal.reason}"] += 1
            dead.append(
                (
                    topic,
                    item,
                    refusal.reason,
                    refusal.detail,
                    received_ms,
                    None if key is None else f"{key}:{n}",
                )
            )
        self.counts["unknown_fields"] += decoded.unknown_fields
        if decoded.status:
            self.counts[f"status_{decoded.status}"] += 1
        if touched is not None:  # quarter hours are few; their local days are found later
            touched.update((decoded.site, ts // BUCKET_MS) for ts in decoded.times)
        if power is not None and decoded.event is not None and decoded.event[0] in POWER_TYPES:
            kind, event_id = decoded.event
            values = decoded.event_values
            power.append(
                PowerEvent(
                    decoded.site,
                    decoded.meter,
                    kind,
                    decoded.times[0],
                    event_id,
                    phase=str(values.get("phase", "")),
                    residual_pct=values.get("residual_pct"),
                    duration_ms=values.get("duration_ms"),
                )
            )
        return decoded.lines

    def _store(self, lines: list[str]) -> bool:
        """Write ``lines`` in batches, retrying while InfluxDB is away. False: gave up (stopping)."""
        size = self.settings.batch_size
        for i in range(0, len(lines), size):
            chunk = lines[i : i + size]
            delay, down_since = 0.2, None
            while True:
                began = time.monotonic()
                try:
                    self.store.write(chunk)
                except StoreUnavailable as exc:
                    if down_since is None:
                        down_since = began
                        self.store_ok = False
                        log.error(STORE_DOWN, exc, self.spool.depth)
                    if self._stop_now.wait(delay):
                        return False
                    delay = min(delay * 2, 5.0)
                    continue
                except StoreRejected as exc:
                    self._store_one_by_one(chunk, exc)
                    break
                self.write_seconds += time.monotonic() - began
                self.writes += 1
                self.counts["stored"] += len(chunk)
                if down_since is not None:
                    self.store_ok = True
                    log.warning(STORE_BACK, time.monotonic() - down_since)
                break
        return True

    def _store_one_by_one(self, batch: list[str], exc: StoreRejected) -> None:
        """InfluxDB refused a batch (a field type clash, say): find the bad points, keep the rest."""
        log.warning("InfluxDB refused a batch of %d (%s); writing point by point", len(batch), exc)
        dead: list[tuple[Any, ...]] = []
        for point in batch:
            try:
                self.store.write([point])
                self.counts["stored"] += 1
            except StoreRejected as why:
                self.counts["rejected_store_rejected"] += 1
                dead.append(
                    ("store", point.encode(), "store_rejected", str(why)[:300], int(time.time() * 1000))
                )
        self.deadletters.add_many(dead)

    def decode_pass(self, after_id: int = 0) -> Pass | None:
        """Decode spooled messages after ``after_id`` until a write batch is full."""
        now_ms = int(time.time() * 1000)
        done = Pass(last_id=after_id)
        while len(done.lines) < self.settings.batch_size and done.messages < MESSAGES_PER_PASS:
            rows = self.spool.head(ROWS_PER_FETCH, after_id=done.last_id)
            if not rows:
                break
            for spool_id, topic, payload, received_ms in rows:
                key = f"{self.settings.mqtt_client_id}:{spool_id}"
                done.lines.extend(
                    self.decode_one(
                        topic, bytes(payload), received_ms, now_ms, done.dead, done.touched, key, done.power
                    )
                )
            done.last_id = rows[-1][0]
            done.messages += len(rows)
        return done if done.messages else None

    def store_pass(self, done: Pass) -> bool:
        """Store a decoded pass, then forget its messages. False: gave up, the spool keeps them."""
        if not self._store(done.lines):
            return False
        self.deadletters.add_many(done.dead)  # type: ignore[arg-type]
        # Late data changes figures: the worker recomputes the days it touched.
        self.registry.mark_dirty(local_days(done.touched, self.settings.tz))
        if done.power and not self._alert(done.power):
            return False
        self.spool.remove_through(done.last_id)
        return True

    def _alert(self, power: list[PowerEvent]) -> bool:
        """Hand stored power events to the alert engine before the spool lets them go, so a
        crash in between replays them (the engine takes a replayed record as the same one).
        Retries while the registry is unavailable; False only when stopping."""
        delay = 0.2
        while True:
            try:
                self.alerts.on_events(power)
                return True
            except Exception:
                log.exception(
                    "alert engine failed on %d power event(s); retrying in %.1fs", len(power), delay
                )
            if self._stop_now.wait(delay):
                return False
            delay = min(delay * 2, 10.0)

    def drain_once(self) -> int:
        """Decode and store one pass in this thread; returns how many messages it moved."""
        done = self.decode_pass()
        if done is None or not self.store_pass(done):
            return 0
        return done.messages

    def _decode_loop(self) -> None:
        """Decode the next pass while the sender writes the previous one (HTTP waits free the GIL)."""
        cursor = 0
        while True:
            done = self.decode_pass(cursor)
            if done is not None:
                while not self._stop_now.is_set():
                    try:
                        self._passes.put(done, timeout=0.5)
                        break
                    except queue.Full:
                        continue
                else:
                    return
                cursor = done.last_id
                if len(done.lines) < self.settings.batch_size // 2 and not self._stop.is_set():
                    # Light traffic: linger so the next write carries more than a handful of points.
                    time.sleep(min(LINGER_S, self.settings.flush_interval_s))
                continue
            if self._stop.is_set() and not self._spooler.is_alive():
                self._passes.put(None)
                return
            self._spooled.wait(self.settings.flush_interval_s)
            self._spooled.clear()

    def _send_loop(self) -> None:
        while True:
            done = self._passes.get()
            if done is None or not self.store_pass(done):
                return

    # -- health and metrics ---------------------------------------------------------------
    def snapshot(self) -> tuple[dict[str, float], dict[str, float]]:
        oldest = self.spool.oldest_ms()
        gauges = {
            "spool_depth": float(self.spool.depth),
            "oldest_unflushed_age_seconds": 0.0 if oldest is None else max(0.0, time.time() - oldest / 1000),
            "write_seconds_avg": self.write_seconds / self.writes if self.writes else 0.0,
            "mqtt_connected": float(self.connected.is_set()),
            "store_up": float(self.store_ok),
        }
        return {k: float(v) for k, v in self.counts.items()}, gauges

    def health(self) -> tuple[bool, dict[str, object]]:
        ok = self.connected.is_set() and self.store_ok and self.fatal is None
        return ok, {
            "ok": ok,
            "mqtt_connected": self.connected.is_set(),
            "store_up": self.store_ok,
            "spool_depth": self.spool.depth,
            "error": self.fatal,
        }

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> Collector:
        try:
            self.store.ensure_database()
        except StoreUnavailable as exc:  # the spool takes messages meanwhile
            log.error("%s; starting anyway, messages wait in the spool", exc)
        if self.spool.depth:
            log.info("draining %d messages left in the spool by the previous run", self.spool.depth)
        if self.settings.metrics_port:
            try:
                self._metrics = MetricsServer(
                    self.settings.dashboard_host, self.settings.metrics_port, self.snapshot, self.health
                ).start()
            except OSError as exc:
                log.error("metrics port %s: %s; /metrics is off", self.settings.metrics_port, exc)
        self._spooler.start()
        self._decoder.start()
        self._writer.start()
        target = self.settings.mqtt
        self._client.connect_async(target.host, target.port, keepalive=30)
        self._client.loop_start()
        return self

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop taking messages, store what was taken, and disconnect."""
        self._client.disconnect()
        self._client.loop_stop()
        self._stop.set()
        with self._pending_cv:
            self._pending_cv.notify_all()
        started = self._spooler.is_alive() or self._decoder.is_alive()
        if started:
            self._spooler.join(timeout_s)
            self._spooled.set()
            self._decoder.join(timeout_s)
            self._writer.join(timeout_s)
        if started and (self._writer.is_alive() or self._decoder.is_alive()):
            log.error(
                "InfluxDB still unavailable; %d messages stay in the spool for the next start",
                self.spool.depth,
            )
            self._stop_now.set()
            self._decoder.join(10)
            self._writer.join(10)
        if self._metrics:
            self._metrics.stop()
        self.spool.close()
        self.deadletters.close()
        self.registry.close()
        log.info("collector stopped: %s", dict(self.counts))


def run(settings: Settings, stop: threading.Event) -> int:
    collector = Collector(settings).start()
    try:
        while not stop.wait(0.5):
            if collector.fatal:
                return 2
    finally:
        collector.stop()
    return 0
