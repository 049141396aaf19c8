"""Broker security from the registry (README: security): per-meter credentials, an ACL, TLS.

A real Mosquitto runs with the ``passwd`` and ``acl`` that ``write_credentials`` makes
from a registry of two meters, A001/M1 and A002/M1. MQTT v5 clients, so the broker's
refusals come back as reason codes.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.reasoncodes import ReasonCode

from collector.broker import meter_user, write_credentials
from core.registry import Registry
from core.servers import LocalMosquitto, free_port, port_open, wait_until
from core.store import InfluxStore
from tests.conftest import run_pqmon
from tests.integration.mqtt_support import REGISTRY_HEADER, CollectorProcess

pytestmark = pytest.mark.integration

COLLECTOR_USER = "pqmon-collector"
NOT_AUTHORIZED = 135
BAD_USER_OR_PASSWORD = 134
TIMEOUT_S = 10


@dataclass
class Broker:
    server: LocalMosquitto
    passwords: dict[str, str]
    tls_port: int = 0
    ca_file: Path | None = None


@dataclass
class Client:
    """A v5 client that records what the broker answers."""

    mqtt: mqtt.Client
    connack: ReasonCode | None = None
    connected: threading.Event = field(default_factory=threading.Event)
    pubacks: dict[int, ReasonCode] = field(default_factory=dict)
    subacks: dict[int, list[ReasonCode]] = field(default_factory=dict)
    received: list[tuple[str, bytes]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def publish(self, topic: str, payload: bytes) -> ReasonCode:
        info = self.mqtt.publish(topic, payload, qos=1)
        wait_until(lambda: info.mid in self.pubacks, TIMEOUT_S, f"PUBACK for {topic}")
        return self.pubacks[info.mid]

    def subscribe(self, topic: str) -> list[ReasonCode]:
        _rc, mid = self.mqtt.subscribe(topic, qos=1)
        wait_until(lambda: mid in self.subacks, TIMEOUT_S, f"SUBACK for {topic}")
        return self.subacks[mid]

    def topics(self) -> list[str]:
        with self.lock:
            return [t for t, _ in self.received]

    def close(self) -> None:
        self.mqtt.disconnect()
        self.mqtt.loop_stop()


def connect(
    port: int, user: str | None, password: str | None, client_id: str, ca_file: Path | None = None
) -> Client:
    raw = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    client = Client(raw)
    if user is not None:
        raw.username_pw_set(user, password)
    if ca_file is not None:
        raw.tls_set(ca_certs=str(ca_file))

    def on_connect(c, userdata, flags, reason_code, properties) -> None:  # type: ignore[no-untyped-def]
        client.connack = reason_code
        client.connected.set()

    def on_publish(c, userdata, mid, reason_code, properties) -> None:  # type: ignore[no-untyped-def]
        client.pubacks[mid] = reason_code

    def on_subscribe(c, userdata, mid, reason_codes, properties) -> None:  # type: ignore[no-untyped-def]
        client.subacks[mid] = list(reason_codes)

    def on_message(c, userdata, msg) -> None:  # type: ignore[no-untyped-def]
        with client.lock:
            client.received.append((msg.topic, msg.payload))

    raw.on_connect, raw.on_publish, raw.on_subscribe, raw.on_message = (
        on_connect,
        on_publish,
        on_subscribe,
        on_message,
    )
    raw.reconnect_delay_set(5, 5)  # a refused client must not hammer the broker during the test
    raw.connect("localhost" if ca_file else "127.0.0.1", port, keepalive=30)
    raw.loop_start()
    assert client.connected.wait(TIMEOUT_S), f"no CONNACK for {client_id}"
    return client


def reading(ts_ms: int, ua: float = 230.0) -> bytes:
    return json.dumps({"ts": ts_ms, "ua": ua}).encode()


def make_tls_files(out: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for localhost / 127.0.0.1, made with openssl."""
    out.mkdir(parents=True, exist_ok=True)
    ca_key, ca_crt = out / "ca.key", out / "ca.crt"
    key, csr, crt, ext = out / "server.key", out / "server.csr", out / "server.crt", out / "server.ext"
    ext.write_text(
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
        "keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
    )
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for argv in (
        [
            "openssl",
            "req",
            "-x509",
            *ec,
            "-keyout",
            ca_key,
            "-out",
            ca_crt,
            "-days",
            "2",
            "-subj",
            "/CN=pqmon test CA",
        ],
        ["openssl", "req", *ec, "-keyout", key, "-out", csr, "-subj", "/CN=localhost"],
        [
            "openssl",
            "x509",
            "-req",
            "-in",
            csr,
            "-CA",
            ca_crt,
            "-CAkey",
            ca_key,
            "-CAcreateserial",
            "-out",
            crt,
            "-days",
            "2",
            "-extfile",
            ext,
        ],
    ):
        done = subprocess.run([str(a) for a in argv], capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr
    return ca_crt, crt, key


@pytest.fixture
def registry_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'registry.db'}"


@pytest.fixture
def broker(tmp_path: Path, registry_url: str) -> Iterator[Broker]:
    registry = Registry(registry_url)
    try:
        (tmp_path / "reg.csv").write_text(
            REGISTRY_HEADER
            + "A001,account,Steel works,10,3,M1,57.735,,,gb,,\n"
            + "A002,account,Paper mill,10,3,M1,57.735,,,gb,,\n"
        )
        registry.import_csv(tmp_path / "reg.csv")
        creds = tmp_path / "broker"
        passwords = write_credentials(registry, creds, COLLECTOR_USER)
    finally:
        registry.close()
    ca_file, cert, key = make_tls_files(tmp_path / "tls")
    tls_port = free_port()
    server = LocalMosquitto(
        tmp_path / "mosquitto",
        anonymous=False,
        extra_conf=(
            f"password_file {creds / 'passwd'}\nacl_file {creds / 'acl'}\n"
            f"listener {tls_port} 127.0.0.1\ncafile {ca_file}\ncertfile {cert}\nkeyfile {key}\n"
        ),
    ).start()
    wait_until(lambda: port_open(tls_port), 10, "the TLS listener")
    yield Broker(server, passwords, tls_port, ca_file)
    server.stop()


def test_credentials_file_holds_hashes_not_passwords(broker: Broker, tmp_path: Path) -> None:
    passwd = (tmp_path / "broker" / "passwd").read_text()
    assert set(broker.passwords) == {COLLECTOR_USER, "A001/M1", "A002/M1"}
    for user, password in broker.passwords.items():
        assert f"{user}:$" in passwd  # a Mosquitto hash ($6$ or $7$)
        assert password not in passwd
    assert (tmp_path / "broker" / "passwd").stat().st_mode & 0o077 == 0


def test_meter_publishes_under_its_own_topic_only(broker: Broker) -> None:
    port, pw = broker.server.port, broker.passwords
    collector = connect(port, COLLECTOR_USER, pw[COLLECTOR_USER], "sec-collector")
    meter = connect(port, meter_user("A001", "M1"), pw["A001/M1"], "sec-meter-a001")
    try:
        assert collector.connack == 0 and meter.connack == 0
        assert collector.subscribe("pq/v1/#") == [1]  # granted QoS 1
        now = int(time.time() * 1000)

        # (a) its own topics: accepted and routed to the collector.
        assert meter.publish("pq/v1/A001/M1/reading", reading(now)) == 0
        assert meter.publish("pq/v1/A001/M1/status", b"online") == 0
        wait_until(lambda: len(collector.topics()) == 2, TIMEOUT_S, "the meter's messages at the collector")
        assert collector.topics() == ["pq/v1/A001/M1/reading", "pq/v1/A001/M1/status"]

        # (b) another meter's topic: refused with PUBACK "Not authorized", and never routed.
        # Messages of one connection are routed in order, so once the allowed one sent after
        # it has arrived, the forbidden one would have arrived before it.
        for forbidden in ("pq/v1/A002/M1/reading", "pq/v1/A001/M2/reading", "pq/v1/A001/reading"):
            code = meter.publish(forbidden, reading(now + 60_000, 999.0))
            assert code == NOT_AUTHORIZED, (forbidden, str(code))
        assert meter.publish("pq/v1/A001/M1/reading", reading(now + 120_000)) == 0
        wait_until(lambda: len(collector.topics()) == 3, TIMEOUT_S, "the allowed message after the forbidden")
        time.sleep(0.2)
        own = ["pq/v1/A001/M1/reading", "pq/v1/A001/M1/status", "pq/v1/A001/M1/reading"]
        assert collector.topics() == own
        assert all(json.loads(p)["ua"] == 230.0 for t, p in collector.received if t.endswith("reading"))

        # A meter reads nothing: Mosquitto 2.0 grants the subscription but its ACL holds back
        # every message, here another meter's, delivered meanwhile to the collector.
        other = connect(port, meter_user("A002", "M1"), pw["A002/M1"], "sec-meter-a002")
        try:
            meter.subscribe("pq/v1/#")
            assert other.publish("pq/v1/A002/M1/reading", reading(now)) == 0
            wait_until(lambda: len(collector.topics()) == 4, TIMEOUT_S, "A002's reading at the collector")
            time.sleep(0.3)
            assert meter.received == []
        finally:
            other.close()
        # The collector's credential writes nothing: a leaked one cannot forge readings.
        assert collector.publish("pq/v1/A001/M1/reading", reading(now + 180_000)) == NOT_AUTHORIZED
    finally:
        meter.close()
        collector.close()


def test_wrong_password_is_refused_at_connect(
    broker: Broker, tmp_path: Path, registry_url: str, pqmon_env: dict[str, str]
) -> None:
    # Mosquitto 2.0 answers a v5 client "Not authorized" (135); later versions may say 134.
    refused = (BAD_USER_OR_PASSWORD, NOT_AUTHORIZED)
    for user, password in (
        ("A001/M1", broker.passwords["A002/M1"]),
        ("A009/M1", "guess"),
        (COLLECTOR_USER, ""),
    ):
        client = connect(broker.server.port, user, password, "sec-wrong")
        try:
            assert client.connack is not None and client.connack.is_failure
            assert client.connack in refused, (user, str(client.connack))
            assert not client.mqtt.is_connected()
        finally:
            client.close()
    # The collector with a wrong password stops and says what to fix, instead of retrying forever.
    env = pqmon_env | {
        "PQMON_MQTT_URL": f"mqtt://{COLLECTOR_USER}:wrong@127.0.0.1:{broker.server.port}",
        "PQMON_REGISTRY_URL": registry_url,
    }
    done = run_pqmon(env, "collector", timeout=60)
    assert done.returncode == 2
    assert "refused the collector's credentials" in done.stderr


def test_anonymous_is_refused(broker: Broker) -> None:
    client = connect(broker.server.port, None, None, "sec-anonymous")
    try:
        assert client.connack == NOT_AUTHORIZED, str(client.connack)
        assert not client.mqtt.is_connected()
    finally:
        client.close()


def test_collector_over_tls_stores_a_reading(
    broker: Broker, tmp_path: Path, registry_url: str, pqmon_env: dict[str, str]
) -> None:
    assert broker.ca_file is not None
    env = pqmon_env | {
        "PQMON_MQTT_URL": f"mqtts://{COLLECTOR_USER}:{broker.passwords[COLLECTOR_USER]}@localhost:{broker.tls_port}",
        "PQMON_MQTT_CA_FILE": str(broker.ca_file),
        "PQMON_REGISTRY_URL": registry_url,
    }
    collector = CollectorProcess(env, tmp_path / "collector.log").start()  # /healthz: connected
    meter = connect(
        broker.tls_port,
        meter_user("A001", "M1"),
        broker.passwords["A001/M1"],
        "sec-tls-meter",
        ca_file=broker.ca_file,
    )
    store = InfluxStore(env["PQMON_INFLUX_URL"], env["PQMON_INFLUX_DB"], retries=0)
    try:
        ts = (int(time.time() * 1000) // 60_000 - 5) * 60_000
        assert meter.publish("pq/v1/A001/M1/reading", reading(ts, 57.9)) == 0

        def stored() -> list[list[object]]:
            frames = store.query("SELECT ua FROM reading WHERE site = 'A001' AND meter = 'M1'")
            return frames[0][["time", "ua"]].values.tolist() if frames else []

        wait_until(lambda: bool(stored()), 20, "the reading in InfluxDB")
        assert stored() == [[ts, 57.9]]
    finally:
        store.close()
        meter.close()
        assert collector.stop() == 0
    # A plain-text client is not let in on the TLS port.
    raw = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="sec-plain", protocol=mqtt.MQTTv5)
    raw.username_pw_set(meter_user("A001", "M1"), broker.passwords["A001/M1"])
    raw.connect("127.0.0.1", broker.tls_port, keepalive=5)  # TCP is accepted, MQTT in clear is not
    for _ in range(6):
        raw.loop(timeout=0.5)
    assert not raw.is_connected()
    raw.disconnect()
