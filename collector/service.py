"""The collector process: MQTT in, InfluxDB out, rejects to the dead-letter store.

The MQTT callback only hands the raw message to a queue; one writer thread decodes,
batches by count or time, and writes. When InfluxDB goes away the writer keeps the batch
and retries with backoff (logging once when it goes and once when it is back), so no
decoded point is dropped.
"""

from __future__ import annotations

import logging
import queue
import ssl
import threading
import time
from collections import Counter
from dataclasses import dataclass

import paho.mqtt.client as mqtt

from collector.contract import MeterInfo, Rejected, decode
from collector.deadletter import DeadLetters
from core.errors import StoreRejected, StoreUnavailable
from core.registry import Registry
from core.settings import Settings
from core.store import InfluxStore

log = logging.getLogger(__name__)

SUBSCRIPTION = "$share/pqmon/pq/v1/+/+/+"
REGISTRY_REFRESH_S = 30.0
RETENTION_HORIZON_MS = 400 * 86_400_000
STORE_DOWN = "InfluxDB is unavailable (%s); keeping %d points and retrying. Check PQMON_INFLUX_URL."
STORE_BACK = "InfluxDB is back; caught up %d points"
BAD_CREDENTIALS = "the broker refused the collector's credentials; fix PQMON_MQTT_URL and restart"


@dataclass(frozen=True)
class Message:
    topic: str
    payload: bytes


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
        self.deadletters = DeadLetters(settings.data_dir / "deadletter")
        self.counts: Counter[str] = Counter()
        self._inbox: queue.Queue[Message | None] = queue.Queue()
        self._meters = meter_infos(self.registry)
        self._meters_loaded = time.monotonic()
        self._stop = threading.Event()
        self._stop_now = threading.Event()  # give up retrying: only when stop() times out
        self._writer = threading.Thread(target=self._write_loop, name="pqmon-writer", daemon=True)
        self._client = self._make_client()
        self.connected = threading.Event()
        self.fatal: str | None = None

    # -- MQTT side ------------------------------------------------------------------------
    def _make_client(self) -> mqtt.Client:
        target = self.settings.mqtt
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=self.settings.mqtt_client_id,
            clean_session=False,
            protocol=mqtt.MQTTv311,
        )
        if target.username:
            client.username_pw_set(target.username, target.password)
        if target.tls:
            client.tls_set(ca_certs=self.settings.mqtt_ca_file or None, cert_reqs=ssl.CERT_REQUIRED)
        client.max_inflight_messages_set(1000)
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
        client.subscribe(SUBSCRIPTION, qos=1)
        self.connected.set()
        log.info("connected to MQTT %s:%s, subscribed to %s", self.settings.mqtt.host,
                 self.settings.mqtt.port, SUBSCRIPTION)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:  # type: ignore[no-untyped-def]
        self.connected.clear()
        if not self._stop.is_set():
            log.warning("MQTT connection lost (%s); reconnecting", reason_code)

    def _on_message(self, client, userdata, msg: mqtt.MQTTMessage) -> None:  # type: ignore[no-untyped-def]
        self._inbox.put(Message(msg.topic, msg.payload))

    # -- writer side ----------------------------------------------------------------------
    def _meter_table(self, force: bool = False) -> dict[tuple[str, str], MeterInfo]:
        age = time.monotonic() - self._meters_loaded
        if age > REGISTRY_REFRESH_S or (force and age > 1.0):
            self._meters = meter_infos(self.registry)
            self._meters_loaded = time.monotonic()
        return self._meters

    def handle(self, message: Message, now_ms: int | None = None) -> list[str]:
        """Decode one message; rejects go to the dead-letter store. Returns the points."""
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        self.counts["received"] += 1
        oldest = now_ms - RETENTION_HORIZON_MS
        try:
            try:
                decoded = decode(message.topic, message.payload, self._meter_table(), now_ms, oldest)
            except Rejected as why:
                if why.reason != "unknown_meter":
                    raise
                # A meter registered moments ago: look again before rejecting.
                decoded = decode(message.topic, message.payload, self._meter_table(True), now_ms, oldest)
        except Rejected as why:
            self.counts[f"rejected_{why.reason}"] += 1
            self.deadletters.add(message.topic, message.payload, why.reason, why.detail)
            return []
        for why, item in decoded.rejected:
            self.counts[f"rejected_{why.reason}"] += 1
            self.deadletters.add(message.topic, item, why.reason, why.detail)
        self.counts["unknown_fields"] += decoded.unknown_fields
        return decoded.lines

    def _flush(self, batch: list[str]) -> None:
        """Write ``batch``, retrying while the store is away; drops nothing it can keep."""
        delay, down_since = 0.5, None
        while batch:
            try:
                self.store.write(batch)
            except StoreUnavailable as exc:
                if down_since is None:
                    down_since = time.monotonic()
                    log.error(STORE_DOWN, exc, len(batch))
                if self._stop_now.wait(delay):
                    return
                delay = min(delay * 2, 10.0)
                continue
            except StoreRejected as exc:
                self._flush_one_by_one(batch, exc)
                return
            if down_since is not None:
                log.warning(STORE_BACK, len(batch))
            self.counts["stored"] += len(batch)
            return

    def _flush_one_by_one(self, batch: list[str], exc: StoreRejected) -> None:
        """InfluxDB refused a batch: find the bad points so the good ones still land."""
        log.warning("InfluxDB refused a batch of %d (%s); writing point by point", len(batch), exc)
        for point in batch:
            try:
                self.store.write([point])
                self.counts["stored"] += 1
            except StoreRejected as why:
                self.counts["rejected_store"] += 1
                self.deadletters.add("store", point.encode(), "store_rejected", str(why)[:300])

    def _write_loop(self) -> None:
        batch: list[str] = []
        deadline = time.monotonic() + self.settings.flush_interval_s
        while True:
            timeout = max(0.0, deadline - time.monotonic())
            try:
                message = self._inbox.get(timeout=timeout)
            except queue.Empty:
                message = None
            else:
                if message is None:  # stop sentinel
                    self._flush(batch)
                    return
                batch.extend(self.handle(message))
            if len(batch) >= self.settings.batch_size or time.monotonic() >= deadline:
                self._flush(batch)
                batch = []
                deadline = time.monotonic() + self.settings.flush_interval_s

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> Collector:
        self.store.ensure_database()
        self._writer.start()
        target = self.settings.mqtt
        self._client.connect_async(target.host, target.port, keepalive=30)
        self._client.loop_start()
        return self

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop taking messages, write what was taken, and disconnect."""
        self._stop.set()
        self._client.disconnect()
        self._client.loop_stop()
        self._inbox.put(None)
        self._writer.join(timeout_s)
        if self._writer.is_alive():
            self._stop_now.set()
            self._writer.join(5)
        self.registry.close()
        log.info("collector stopped: %s", dict(self.counts))


def run(settings: Settings, stop: threading.Event) -> int:
    collector = Collector(settings).start()
    try:
        while not stop.wait(1.0):
            if collector.fatal:
                return 2
    finally:
        collector.stop()
    return 0
