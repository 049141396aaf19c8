"""Helpers for collector tests: a robust QoS 1 publisher and a collector process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
import requests

from core.servers import wait_until

REGISTRY_HEADER = "site_id,site_kind,name,voltage_class_kv,phases,meter_id,nominal_v,upper_pct,lower_pct,profile,feeder_id,manager\n"


def count_and_sum(influx_url: str, db: str) -> tuple[int, float]:
    """Readings in InfluxDB and the sum of their ua: equal counts and sums mean exactly once."""
    from core.store import InfluxStore

    store = InfluxStore(influx_url, db, retries=0)
    try:
        frames = store.query("SELECT count(ua), sum(ua) FROM reading")
    finally:
        store.close()
    if not frames:
        return 0, 0.0
    return int(frames[0]["count"].iloc[0]), float(frames[0]["sum"].iloc[0])


def registry_csv(path: Path, meters: int, site: str = "A001") -> Path:
    rows = [f"{site},account,Test works,0.38,3,M{i},220,,,gb,," for i in range(meters)]
    path.write_text(REGISTRY_HEADER + "\n".join(rows) + "\n")
    return path


def host_port(url: str) -> tuple[str, int]:
    host, port = url.split("://", 1)[1].rsplit(":", 1)
    return host, int(port)


def mqtt_client(url: str, client_id: str, **kwargs: object) -> mqtt.Client:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, **kwargs)  # type: ignore[arg-type]
    client.reconnect_delay_set(0.1, 1)
    client.max_inflight_messages_set(200)
    host, port = host_port(url)
    client.connect_async(host, port)
    client.loop_start()
    wait_until(client.is_connected, 15, f"MQTT connection of {client_id}")
    return client


def reading_messages(
    meters: int, per_meter: int, start_ms: int, site: str = "A001"
) -> list[tuple[str, bytes]]:
    """Single-reading messages; every (meter, ts) is distinct, values known for the checksum."""
    out = []
    for i in range(per_meter):
        for m in range(meters):
            body = {"ts": start_ms + i * 60_000, "ua": reading_value(i), "interval_s": 60}
            out.append((f"pq/v1/{site}/M{m}/reading", json.dumps(body).encode()))
    return out


def reading_value(i: int) -> float:
    return 200.0 + (i % 400) / 10


@dataclass
class Stream:
    """Publishes messages at QoS 1 in a thread, surviving broker restarts (paho re-sends)."""

    url: str
    messages: list[tuple[str, bytes]]
    client_id: str = "test-stream"
    published: int = 0
    error: BaseException | None = None
    _thread: threading.Thread | None = field(default=None, repr=False)

    def start(self) -> Stream:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            acked = [0]

            def on_publish(client, userdata, mid, reason_code, properties) -> None:  # type: ignore[no-untyped-def]
                acked[0] += 1

            client = mqtt_client(self.url, self.client_id)
            client.on_publish = on_publish
            infos = []
            for topic, payload in self.messages:
                infos.append(client.publish(topic, payload, qos=1))
                self.published += 1
                # Keep the outgoing queue bounded, as a meter's buffer would be.
                while self.published - acked[0] > 5000:
                    time.sleep(0.005)
            deadline = time.monotonic() + 180
            while not all(i.is_published() for i in infos):
                if time.monotonic() > deadline:
                    raise TimeoutError("publisher: not every message was acknowledged by the broker")
                time.sleep(0.05)
            client.loop_stop()
            client.disconnect()
        except BaseException as exc:  # reported by join()
            self.error = exc

    def join(self, timeout: float = 240) -> None:
        assert self._thread is not None
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError("publisher thread did not finish")
        if self.error:
            raise self.error


class CollectorProcess:
    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env = env
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> CollectorProcess:
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pqmon", "collector"],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        wait_until(self.healthy, 30, "collector /healthz")
        return self

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.env['PQMON_METRICS_PORT']}"

    def healthy(self) -> bool:
        try:
            return requests.get(self.metrics_url + "/healthz", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    def metrics(self) -> dict[str, float]:
        text = requests.get(self.metrics_url + "/metrics", timeout=5).text
        values = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                values[name] = float(value)
        return values

    def kill(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode
