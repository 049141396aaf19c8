#!/usr/bin/env python
"""Collector benchmark: pqmon's collector against a bare MQTT subscriber and plain HTTP writes.

One run, one Mosquitto and one InfluxDB (both started here, in a temp dir), all at QoS 1:

  (a) bare paho-mqtt subscriber that only parses the JSON of single-reading messages
  (b) plain HTTP POSTs of pre-built line protocol for the same points as (d), 5000 per POST
  (c) pqmon's collector (``python -m pqmon collector``, a subprocess) on single-reading messages
  (d) pqmon's collector on batch messages (``--batch`` readings per message)

Throughput: each MQTT consumer drains a persistent session that was filled beforehand with
the consumer offline, so the publisher's speed does not bound the figures. The clock runs
from the consumer's MQTT CONNACK (its on_connect; the collector's "connected to MQTT" log
line) to the moment the last reading is parsed (a) or queryable in InfluxDB (c, d: a
``count(ua)`` query returns N). Zero loss: count and checksum (sum of ua) per run.

Lag (publish to queryable, p50/p99): a separate live run per consumer with the consumer
already connected and a publisher at a fixed rate; the count is polled back to back and
reading k is queryable at the first poll that sees at least k+1 readings (one publisher,
QoS 1 and a FIFO spool keep the order).

    .venv/bin/python bench/collector_bench.py                  # defaults, < 5 minutes
    .venv/bin/python bench/collector_bench.py --repeat 3       # run-to-run noise
    .venv/bin/python bench/collector_bench.py --profile /tmp/prof   # + py-spy of (c) and (d)

See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench._bench import first_line, machine_basics, summarise_profile  # noqa: E402 - needs ROOT on sys.path

SITE = "B001"
TOPIC_FILTER = "pq/v1/+/+/+"  # what the collector subscribes to (collector.service.TOPICS)
HTTP_BATCH = 5000  # the collector's default PQMON_BATCH_SIZE
BROKER_EXTRA = (
    # LocalMosquitto already sets max_queued_messages 1000000; make the byte limits explicit
    # (0 = unlimited, Mosquitto's default) so a filled session never drops a message.
    "max_queued_bytes 0\nmax_inflight_bytes 0\nmemory_limit 0\n"
)


# -- workload ---------------------------------------------------------------------------------
def reading_value(k: int) -> float:
    return 200.0 + (k % 400) / 10


@dataclass
class Workload:
    """Messages of readings with distinct (meter, ts); ``ua`` known for the checksum."""

    messages: list[tuple[str, bytes]]
    batch: int
    readings: int
    ua_sum: float

    @property
    def n_messages(self) -> int:
        return len(self.messages)


def make_workload(readings: int, batch: int, meters: int) -> Workload:
    if readings % batch:
        raise SystemExit(f"--readings/--messages ({readings}) must be a multiple of the batch ({batch})")
    n_msgs = readings // batch
    minutes = math.ceil(n_msgs / meters) * batch + 10
    base_ms = (int(time.time() * 1000) // 60_000 - minutes) * 60_000
    messages: list[tuple[str, bytes]] = []
    total = 0.0
    for j in range(n_msgs):
        meter, q = j % meters, j // meters
        items = []
        for r in range(batch):
            k = j * batch + r
            ua = reading_value(k)
            total += ua
            items.append(
                {
                    "ts": base_ms + (q * batch + r) * 60_000,
                    "ua": ua,
                    "ub": ua + 1.0,
                    "uc": ua - 1.0,
                    "f": 50.01,
                    "interval_s": 60,
                }
            )
        body = items[0] if batch == 1 else items
        messages.append((f"pq/v1/{SITE}/M{meter}/reading", json.dumps(body).encode()))
    return Workload(messages, batch, readings, total)


def lines_of(work: Workload, meters: int) -> list[str]:
    """The line protocol the collector would write for ``work`` (built with its own decoder)."""
    from collector.contract import MeterInfo, decode

    infos = {(SITE, f"M{m}"): MeterInfo(220.0, "customer") for m in range(meters)}
    now = int(time.time() * 1000)
    out: list[str] = []
    for topic, payload in work.messages:
        decoded = decode(topic, payload, infos, now, 0)
        assert not decoded.rejected
        out.extend(decoded.lines)
    return out


# -- MQTT helpers -------------------------------------------------------------------------------
def host_port(url: str) -> tuple[str, int]:
    host, port = url.split("://", 1)[1].rsplit(":", 1)
    return host, int(port)


def _client(url: str, client_id: str, clean: bool, inflight: int = 20):  # type: ignore[no-untyped-def]
    import paho.mqtt.client as mqtt

    from core.servers import wait_until

    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean, protocol=mqtt.MQTTv311
    )
    client.max_inflight_messages_set(inflight)
    host, port = host_port(url)
    client.connect(host, port, keepalive=60)
    client.loop_start()
    wait_until(client.is_connected, 15, f"MQTT connection of {client_id}")
    return client


def create_session(url: str, client_id: str) -> None:
    """Connect once with clean_session=False and subscribe, so the broker queues for ``client_id``."""
    client = _client(url, client_id, clean=False)
    done = threading.Event()
    client.on_subscribe = lambda *a: done.set()
    client.subscribe(TOPIC_FILTER, qos=1)
    if not done.wait(10):
        raise TimeoutError("SUBACK")
    client.disconnect()
    client.loop_stop()


def drop_session(url: str, client_id: str) -> None:
    """A clean-session connect discards the persistent session (and anything queued for it)."""
    client = _client(url, client_id, clean=True)
    client.disconnect()
    client.loop_stop()


class Publisher:
    """QoS 1 publisher with a bounded window; ``rate`` (messages/s) paces it, None = flat out."""

    def __init__(self, url: str, client_id: str) -> None:
        self.client = _client(url, client_id, clean=True, inflight=1000)
        self.acked = 0
        self._lock = threading.Lock()

        def on_publish(client, userdata, mid, reason_code, properties) -> None:  # type: ignore[no-untyped-def]
            with self._lock:
                self.acked += 1

        self.client.on_publish = on_publish

    def run(self, messages: list[tuple[str, bytes]], rate: float | None = None) -> list[float]:
        times: list[float] = []
        t0 = time.perf_counter()
        wall0 = time.time()
        for i, (topic, payload) in enumerate(messages):
            if rate:
                due = t0 + i / rate
                delay = due - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            else:
                while i - self.acked > 5000:
                    time.sleep(0.002)
            times.append(wall0 + (time.perf_counter() - t0))
            self.client.publish(topic, payload, qos=1)
        deadline = time.monotonic() + 120
        while self.acked < len(messages):
            if time.monotonic() > deadline:
                raise TimeoutError(f"broker acknowledged {self.acked} of {len(messages)} publishes")
            time.sleep(0.005)
        return times

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


# -- (a): the bare subscriber, run as a subprocess of this script -------------------------------
def subscriber_main(args: argparse.Namespace) -> int:
    """Only paho + json: parse every message, count readings, sum ua; print a JSON result."""
    import paho.mqtt.client as mqtt

    expect = args.expect
    state = {"readings": 0, "messages": 0, "ua_sum": 0.0, "t_connect": None, "t_done": None}
    arrivals: list[float] = []
    done = threading.Event()

    def on_connect(client, userdata, flags, reason_code, properties) -> None:  # type: ignore[no-untyped-def]
        state["t_connect"] = time.time()
        client.subscribe(TOPIC_FILTER, qos=1)
        print("connected", flush=True)

    def on_message(client, userdata, msg) -> None:  # type: ignore[no-untyped-def]
        body = json.loads(msg.payload)
        items = body if isinstance(body, list) else (body,)
        total = 0.0
        for item in items:
            total += item["ua"]
        state["ua_sum"] += total
        state["readings"] += len(items)
        state["messages"] += 1
        if args.live:
            arrivals.append(time.time())
        if state["readings"] >= expect and not done.is_set():
            state["t_done"] = time.time()
            done.set()

    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=args.client_id,
        clean_session=False,
        protocol=mqtt.MQTTv311,
    )
    client.on_connect = on_connect
    client.on_message = on_message
    host, port = host_port(args.url)
    client.connect(host, port, keepalive=60)
    client.loop_start()
    done.wait(args.timeout)
    time.sleep(0.2)  # anything beyond N would be a duplicate: let it show
    client.disconnect()
    client.loop_stop()
    state["arrivals"] = arrivals
    print(json.dumps(state), flush=True)
    return 0


# -- InfluxDB helpers ---------------------------------------------------------------------------
class Influx:
    def __init__(self, url: str) -> None:
        import requests

        self.url = url
        self.http = requests.Session()

    def create(self, db: str) -> None:
        self.http.post(
            self.url + "/query", params={"q": f'CREATE DATABASE "{db}"'}, timeout=30
        ).raise_for_status()

    def count_sum(self, db: str) -> tuple[int, float]:
        resp = self.http.post(
            self.url + "/query",
            params={"db": db},
            data={"q": "SELECT count(ua), sum(ua) FROM reading"},
            timeout=30,
        )
        resp.raise_for_status()
        series = resp.json()["results"][0].get("series")
        if not series:
            return 0, 0.0
        _, count, total = series[0]["values"][0]
        return int(count), float(total)

    def write_requests(self) -> int:
        """InfluxDB's own count of /write requests served (SHOW STATS, module httpd)."""
        resp = self.http.post(self.url + "/query", data={"q": "SHOW STATS FOR 'httpd'"}, timeout=30)
        resp.raise_for_status()
        series = resp.json()["results"][0]["series"][0]
        return int(dict(zip(series["columns"], series["values"][0], strict=True))["writeReq"])

    def count(self, db: str) -> int:
        resp = self.http.post(
            self.url + "/query", params={"db": db}, data={"q": "SELECT count(ua) FROM reading"}, timeout=30
        )
        resp.raise_for_status()
        series = resp.json()["results"][0].get("series")
        return int(series[0]["values"][0][1]) if series else 0


# -- results --------------------------------------------------------------------------------------
@dataclass
class Result:
    consumer: str
    messages: int
    readings: int
    seconds: float
    got_readings: int
    got_sum: float
    want_sum: float
    startup_s: float | None = None  # process start to CONNACK (not in ``seconds``)
    posts: int | None = None  # /write requests the consumer made
    lag: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def msg_rate(self) -> float:
        return self.messages / self.seconds

    @property
    def reading_rate(self) -> float:
        return self.readings / self.seconds

    @property
    def lossless(self) -> bool:
        return (
            self.got_readings == self.readings
            and math.isclose(self.got_sum, self.want_sum, rel_tol=1e-9)
            and not self.notes
        )


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    idx = min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))
    return ordered[idx]


# -- the bench ------------------------------------------------------------------------------------
class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.tmp = Path(tempfile.mkdtemp(prefix="pqmon-bench-"))
        self.seq = 0
        self.broker = None
        self.influx = None

    # setup / teardown
    def start(self) -> None:
        from core.registry import Registry
        from core.servers import LocalInflux, LocalMosquitto

        self.broker = LocalMosquitto(self.tmp / "mosquitto", extra_conf=BROKER_EXTRA).start()
        self.influx = LocalInflux(self.tmp / "influx").start()
        self.registry_url = f"sqlite:///{self.tmp / 'registry.db'}"
        reg = Registry(self.registry_url)
        rows = [
            (
                n + 2,
                {
                    "site_id": SITE,
                    "site_kind": "account",
                    "name": "Bench works",
                    "voltage_class_kv": "0.38",
                    "phases": "3",
                    "meter_id": f"M{m}",
                    "nominal_v": "220",
                    "upper_pct": "",
                    "lower_pct": "",
                    "profile": "gb",
                    "feeder_id": "",
                    "manager": "",
                },
            )
            for n, m in enumerate(range(self.args.meters))
        ]
        reg.upsert_rows(rows)
        reg.close()
        self.db = Influx(self.influx.url)

    def stop(self) -> None:
        for server in (self.broker, self.influx):
            if server is not None:
                server.stop()
        if self.args.keep:
            print(f"kept {self.tmp}")
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def next_id(self, what: str) -> str:
        self.seq += 1
        return f"bench{os.getpid()}{what}{self.seq}"

    def fill(self, client_id: str, work: Workload) -> float:
        create_session(self.broker.url, client_id)
        pub = Publisher(self.broker.url, self.next_id("pub"))
        t0 = time.perf_counter()
        try:
            pub.run(work.messages)
        finally:
            pub.close()
        return time.perf_counter() - t0

    # (a)
    def _spawn_subscriber(self, client_id: str, expect: int, live: bool) -> subprocess.Popen[str]:
        argv = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--role",
            "subscriber",
            "--url",
            self.broker.url,
            "--client-id",
            client_id,
            "--expect",
            str(expect),
            "--timeout",
            str(self.args.timeout),
        ]
        if live:
            argv.append("--live")
        return subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, cwd=ROOT)

    def _subscriber_result(self, proc: subprocess.Popen[str]) -> dict:
        out, _ = proc.communicate(timeout=self.args.timeout + 30)
        return json.loads(out.strip().splitlines()[-1])

    def run_bare(self, work: Workload) -> Result:
        cid = self.next_id("a")
        self.fill(cid, work)
        t_spawn = time.time()
        proc = self._spawn_subscriber(cid, work.readings, live=False)
        res = self._subscriber_result(proc)
        drop_session(self.broker.url, cid)
        r = Result(
            "(a) bare paho subscriber",
            work.n_messages,
            work.readings,
            (res["t_done"] or float("nan")) - res["t_connect"],
            res["readings"],
            res["ua_sum"],
            work.ua_sum,
            startup_s=res["t_connect"] - t_spawn,
        )
        if res["t_done"] is None:
            r.notes.append(f"timed out with {res['readings']} readings")
        return r

    def lag_bare(self, work: Workload, rate: float) -> list[float]:
        cid = self.next_id("alag")
        create_session(self.broker.url, cid)
        proc = self._spawn_subscriber(cid, work.readings, live=True)
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "connected":
            raise RuntimeError("bare subscriber did not connect")
        pub = Publisher(self.broker.url, self.next_id("pub"))
        try:
            pub_times = pub.run(work.messages, rate=rate)
        finally:
            pub.close()
        res = self._subscriber_result(proc)
        drop_session(self.broker.url, cid)
        return [arr - pub for arr, pub in zip(res["arrivals"], pub_times, strict=False)]

    # (b)
    def run_http(self, work: Workload, lines: list[str]) -> Result:
        import requests

        db = self.next_id("b")
        self.db.create(db)
        bodies = [
            ("\n".join(lines[i : i + HTTP_BATCH]) + "\n").encode() for i in range(0, len(lines), HTTP_BATCH)
        ]
        http = requests.Session()
        url, params = self.influx.url + "/write", {"db": db, "precision": "ms"}
        http.post(url, params=params, data=b"").close()  # connect outside the clock
        t0 = time.perf_counter()
        for body in bodies:
            resp = http.post(url, params=params, data=body, timeout=60)
            if resp.status_code != 204:
                raise RuntimeError(f"/write: {resp.status_code} {resp.text[:200]}")
        seconds = time.perf_counter() - t0
        count, total = self.db.count_sum(db)
        return Result(
            "(b) HTTP line protocol",
            len(bodies),
            work.readings,
            seconds,
            count,
            total,
            work.ua_sum,
            posts=len(bodies),
        )

    # (c), (d)
    def collector_env(self, client_id: str, db: str) -> dict[str, str]:
        from core.servers import free_port

        env = {k: v for k, v in os.environ.items() if not k.startswith("PQMON_")}
        env.update(
            {
                "PQMON_MQTT_URL": self.broker.url,
                "PQMON_MQTT_CLIENT_ID": client_id,
                "PQMON_INFLUX_URL": self.influx.url,
                "PQMON_INFLUX_DB": db,
                "PQMON_REGISTRY_URL": self.registry_url,
                "PQMON_DATA_DIR": str(self.tmp / f"var-{client_id}"),
                "PQMON_METRICS_PORT": str(free_port()),
                "PQMON_LOG_FORMAT": "json",
                "PYTHONPATH": str(ROOT),
            }
        )
        return env

    def spawn_collector(
        self, env: dict[str, str], profile: Path | None = None
    ) -> tuple[subprocess.Popen, subprocess.Popen | None, Path]:
        log_path = self.tmp / f"{env['PQMON_MQTT_CLIENT_ID']}.log"
        log = open(log_path, "ab")  # noqa: SIM115 - owned by the child
        proc = subprocess.Popen(
            [sys.executable, "-m", "pqmon", "collector"],
            env=env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        spy = None
        if profile is not None:
            py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
            argv = [
                py_spy,
                "record",
                "--pid",
                str(proc.pid),
                "--rate",
                str(self.args.profile_rate),
                "--format",
                "raw",
                "--threads",
                "--output",
                str(profile),
                "--nonblocking",
            ]
            if self.args.profile_gil:
                argv.append("--gil")
            spy = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        return proc, spy, log_path

    @staticmethod
    def metrics(env: dict[str, str]) -> dict[str, float]:
        import requests

        text = requests.get(f"http://127.0.0.1:{env['PQMON_METRICS_PORT']}/metrics", timeout=2).text
        values = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                values[name] = float(value)
        return values

    @staticmethod
    def connect_time(log_path: Path) -> float | None:
        for raw in log_path.read_text(errors="replace").splitlines():
            try:
                doc = json.loads(raw)
            except ValueError:
                continue
            if doc.get("message", "").startswith("connected to MQTT"):
                return datetime.fromisoformat(doc["time"]).timestamp()
        return None

    def stop_collector(self, proc: subprocess.Popen, spy: subprocess.Popen | None) -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        if spy is not None:
            try:
                spy.wait(60)
            except subprocess.TimeoutExpired:
                spy.kill()
                spy.wait(10)

    def rejected(self, env: dict[str, str]) -> list[str]:
        notes = []
        for name, value in self.metrics(env).items():
            if name.startswith("pqmon_collector_rejected_total") and value:
                notes.append(f"{name}={value:g}")
        return notes

    def run_collector(self, label: str, work: Workload, profile: Path | None = None) -> Result:
        cid, db = self.next_id("c"), self.next_id("db")
        env = self.collector_env(cid, db)
        self.fill(cid, work)
        posts0 = self.db.write_requests()
        t_spawn = time.time()
        proc, spy, log_path = self.spawn_collector(env, profile)
        notes: list[str] = []
        t_end = None
        deadline = time.monotonic() + self.args.timeout
        try:
            # Cheap gate first: the collector's own stored counter (a point counts once /write
            # returned), polled rarely (each scrape costs the collector CPU) and more often as
            # the end nears. Then the count query decides: the clock stops when InfluxDB
            # answers N.
            last: tuple[float, float] | None = None
            while time.monotonic() < deadline:
                try:
                    stored = self.metrics(env).get("pqmon_collector_stored_total", 0)
                except Exception as exc:  # noqa: BLE001 - not listening yet
                    if proc.poll() is not None:
                        raise RuntimeError(
                            f"collector exited {proc.returncode}: {log_path.read_text()[-2000:]}"
                        ) from exc
                    time.sleep(0.1)
                    continue
                if stored >= work.readings:
                    break
                now = time.monotonic()
                wait = 0.25
                if last is not None and stored > last[1]:
                    rate = (stored - last[1]) / (now - last[0])
                    wait = min(0.25, max(0.01, (work.readings - stored) / rate / 2))
                last = (now, stored)
                time.sleep(wait)
            while time.monotonic() < deadline:
                if self.db.count(db) >= work.readings:
                    t_end = time.time()
                    break
                time.sleep(0.01)
            notes += self.rejected(env)
        finally:
            self.stop_collector(proc, spy)
        posts = self.db.write_requests() - posts0
        drop_session(self.broker.url, cid)
        t_conn = self.connect_time(log_path)
        count, total = self.db.count_sum(db)
        if t_end is None:
            notes.append(f"timed out after {self.args.timeout}s")
            t_end = float("nan")
        if t_conn is None:
            notes.append("no 'connected to MQTT' line in the collector log; clock from process start")
            t_conn = t_spawn
        if spy is not None and spy.returncode:
            notes.append(f"py-spy: {spy.stderr.read().decode()[-300:] if spy.stderr else spy.returncode}")
        return Result(
            label,
            work.n_messages,
            work.readings,
            t_end - t_conn,
            count,
            total,
            work.ua_sum,
            startup_s=t_conn - t_spawn,
            posts=posts,
            notes=notes,
        )

    def lag_collector(self, work: Workload, rate_msgs: float) -> tuple[list[float], list[str]]:
        """Publish at ``rate_msgs`` messages/s to a running collector; lag of every reading."""
        import numpy as np

        from core.servers import wait_until

        cid, db = self.next_id("clag"), self.next_id("db")
        env = self.collector_env(cid, db)
        proc, _, log_path = self.spawn_collector(env)
        polls: list[tuple[float, int]] = []
        stop_poll = threading.Event()

        def poller() -> None:
            influx = Influx(self.influx.url)
            while not stop_poll.is_set():
                try:
                    n = influx.count(db)
                except Exception:  # noqa: BLE001 - database not created yet
                    n = 0
                polls.append((time.time(), n))
                if n >= work.readings:
                    return
                time.sleep(0.01)

        notes: list[str] = []
        try:

            def healthy() -> bool:
                try:
                    return self.metrics(env) is not None and self.connect_time(log_path) is not None
                except Exception:  # noqa: BLE001
                    return False

            wait_until(healthy, 60, "the collector to connect")
            time.sleep(0.5)
            thread = threading.Thread(target=poller, daemon=True)
            thread.start()
            pub = Publisher(self.broker.url, self.next_id("pub"))
            try:
                pub_times = pub.run(work.messages, rate=rate_msgs)
            finally:
                pub.close()
            thread.join(self.args.timeout)
            stop_poll.set()
            notes += self.rejected(env)
        finally:
            self.stop_collector(proc, None)
        drop_session(self.broker.url, cid)
        count, total = self.db.count_sum(db)
        if count != work.readings or not math.isclose(total, work.ua_sum, rel_tol=1e-9):
            notes.append(f"lag run lost readings: {count} of {work.readings}")
        times = np.array([t for t, _ in polls])
        counts = np.array([n for _, n in polls])
        # reading k (0-based, publish order) is queryable at the first poll with count >= k+1
        reading_pub = np.repeat(np.array(pub_times), work.batch)
        first = np.searchsorted(counts, np.arange(1, work.readings + 1), side="left")
        ok = first < len(times)
        lags = (times[first[ok]] - reading_pub[ok]).tolist()
        return lags, notes


# -- report ---------------------------------------------------------------------------------------
def machine_info() -> str:
    import paho.mqtt

    mosquitto = first_line(["mosquitto", "-h"]) or "mosquitto ?"
    return f"{machine_basics()} | paho-mqtt={paho.mqtt.__version__} {mosquitto}"


def fmt_lag(lags: list[float]) -> str:
    if not lags:
        return "-"
    return f"{percentile(lags, 50) * 1000:.0f}/{percentile(lags, 99) * 1000:.0f}"


def table(results: dict[str, Result], lags: dict[str, list[float]]) -> tuple[str, bool]:
    a, b = results.get("a"), results.get("b")
    head = (
        "consumer",
        "msgs",
        "readings",
        "seconds",
        "msgs/s",
        "readings/s",
        "lag ms p50/p99",
        "ratio",
        "target",
        "result",
    )
    rows = []
    ok_all = True
    for key, r in results.items():
        ratio, target, verdict = "ref", "-", "PASS" if r.lossless else "FAIL"
        if key == "c" and a:
            value = r.msg_rate / a.msg_rate
            ratio, target = f"{value:.2f} x (a) msgs/s", ">= 0.60"
            verdict = "PASS" if value >= 0.6 and r.lossless else "FAIL"
        if key == "d" and b:
            value = r.reading_rate / b.reading_rate
            ratio, target = f"{value:.2f} x (b) readings/s", ">= 0.50"
            verdict = "PASS" if value >= 0.5 and r.lossless else "FAIL"
        if not r.lossless:
            sum_ok = math.isclose(r.got_sum, r.want_sum, rel_tol=1e-9)
            extra = "; " + "; ".join(r.notes) if r.notes else ""
            verdict += f" (loss: {r.got_readings}/{r.readings} readings, sum ok={sum_ok}{extra})"
        ok_all &= verdict.startswith("PASS")
        rows.append(
            (
                r.consumer,
                f"{r.messages}",
                f"{r.readings}",
                f"{r.seconds:.2f}",
                f"{r.msg_rate:,.0f}",
                f"{r.reading_rate:,.0f}",
                fmt_lag(lags.get(key, [])),
                ratio,
                target,
                verdict,
            )
        )
    widths = [max(len(str(x[i])) for x in (head, *rows)) for i in range(len(head))]
    out = [
        " | ".join(str(h).ljust(w) for h, w in zip(head, widths, strict=True)),
        "-+-".join("-" * w for w in widths),
    ]
    out += [" | ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(out), ok_all


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--messages", type=int, default=50_000, help="single-reading messages for (a) and (c)")
    p.add_argument(
        "--readings",
        type=int,
        default=200_000,
        help="readings for (b) and (d); (d) sends them in readings/batch messages",
    )
    p.add_argument("--batch", type=int, default=100, help="readings per message in (d)")
    p.add_argument("--meters", type=int, default=100, help="meters in the registry (one site)")
    p.add_argument("--repeat", type=int, default=1, help="repeat the four drains; reports the spread")
    p.add_argument("--only", default="abcd", help="subset of consumers, e.g. 'ac'")
    p.add_argument("--lag-seconds", type=float, default=8.0, help="length of each live lag run (0: skip)")
    p.add_argument("--lag-rate", type=float, default=2000.0, help="readings/s published in the lag runs")
    p.add_argument("--timeout", type=float, default=240.0, help="give up a drain after this many seconds")
    p.add_argument(
        "--profile",
        type=Path,
        default=None,
        help="directory: after the timed runs, drain (c) and (d) once more under py-spy",
    )
    p.add_argument("--profile-rate", type=int, default=250, help="py-spy samples per second")
    p.add_argument("--profile-gil", action="store_true", help="py-spy --gil: only the thread holding the GIL")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (logs, data)")
    p.add_argument("--role", default="bench", choices=("bench", "subscriber"), help=argparse.SUPPRESS)
    p.add_argument("--url", help=argparse.SUPPRESS)
    p.add_argument("--client-id", help=argparse.SUPPRESS)
    p.add_argument("--expect", type=int, help=argparse.SUPPRESS)
    p.add_argument("--live", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.role == "subscriber":
        return subscriber_main(args)

    print(f"machine: {machine_info()}")
    load = os.getloadavg()[0]
    print(
        f"load average at start: {load:.2f}"
        + (
            "  (WARNING: something else is using the CPUs; figures will be noisy, use --repeat)"
            if load > 0.5 * (os.cpu_count() or 1)
            else ""
        )
    )
    single = make_workload(args.messages, 1, args.meters)
    batched = make_workload(args.readings, args.batch, args.meters)
    print(
        f"workload: (a)(c) {single.n_messages} messages x 1 reading "
        f"({len(single.messages[0][1])} B); (b)(d) {batched.readings} readings, (d) in "
        f"{batched.n_messages} messages x {args.batch} ({len(batched.messages[0][1])} B); "
        f"{args.meters} meters; QoS 1"
    )
    lines = lines_of(batched, args.meters) if "b" in args.only else []
    bench = Bench(args)
    runs: list[dict[str, Result]] = []
    lags: dict[str, list[float]] = {}
    ok_all = True
    try:
        bench.start()
        for rep in range(args.repeat):
            results: dict[str, Result] = {}
            for key in "abcd":
                if key not in args.only:
                    continue
                t0 = time.perf_counter()
                if key == "a":
                    results[key] = bench.run_bare(single)
                elif key == "b":
                    results[key] = bench.run_http(batched, lines)
                elif key == "c":
                    results[key] = bench.run_collector("(c) collector, 1 reading/msg", single)
                else:
                    results[key] = bench.run_collector(f"(d) collector, {args.batch} readings/msg", batched)
                r = results[key]
                print(
                    f"  run {rep + 1} {r.consumer}: {r.seconds:.2f}s drain"
                    + (f" (+{r.startup_s:.2f}s process start to CONNACK)" if r.startup_s is not None else "")
                    + f", {r.got_readings}/{r.readings} readings"
                    + (
                        f", {r.posts} /write POSTs ({r.readings / max(r.posts, 1):,.0f} points each)"
                        if r.posts
                        else ""
                    )
                    + f"; step took {time.perf_counter() - t0:.0f}s, load avg {os.getloadavg()[0]:.1f}",
                    flush=True,
                )
            runs.append(results)
        if args.lag_seconds > 0:
            n_single = int(args.lag_rate * args.lag_seconds)
            n_batch = max(1, int(args.lag_rate * args.lag_seconds / args.batch))
            if "a" in args.only:
                lags["a"] = bench.lag_bare(make_workload(n_single, 1, args.meters), args.lag_rate)
            if "c" in args.only:
                lags["c"], notes = bench.lag_collector(make_workload(n_single, 1, args.meters), args.lag_rate)
                for n in notes:
                    print(f"  lag (c): {n}")
                ok_all &= not notes
            if "d" in args.only:
                lags["d"], notes = bench.lag_collector(
                    make_workload(n_batch * args.batch, args.batch, args.meters), args.lag_rate / args.batch
                )
                for n in notes:
                    print(f"  lag (d): {n}")
                ok_all &= not notes
            print(
                f"lag runs: {args.lag_seconds:g}s at {args.lag_rate:g} readings/s "
                f"((a)(c): {args.lag_rate:g} msgs/s; (d): {args.lag_rate / args.batch:g} msgs/s); "
                "publish -> parsed (a) / queryable (c, d)"
            )

        for i, results in enumerate(runs):
            text, ok = table(results, lags)
            ok_all &= ok
            print(f"\nrun {i + 1} of {len(runs)}:\n{text}")
        if len(runs) > 1:
            print("\nrun-to-run noise (messages/s and readings/s per consumer):")
            for key in runs[0]:
                rates = [r[key].reading_rate for r in runs]
                med = statistics.median(rates)
                spread = (max(rates) - min(rates)) / med if med else float("nan")
                print(
                    f"  {runs[0][key].consumer}: readings/s median {med:,.0f}, min {min(rates):,.0f}, "
                    f"max {max(rates):,.0f}, spread {spread:.0%}"
                )
            if "a" in runs[0] and "c" in runs[0]:
                ratios = [r["c"].msg_rate / r["a"].msg_rate for r in runs]
                print(f"  (c)/(a) msgs/s ratios: {', '.join(f'{x:.2f}' for x in ratios)}")
            if "b" in runs[0] and "d" in runs[0]:
                ratios = [r["d"].reading_rate / r["b"].reading_rate for r in runs]
                print(f"  (d)/(b) readings/s ratios: {', '.join(f'{x:.2f}' for x in ratios)}")

        if args.profile is not None:
            args.profile.mkdir(parents=True, exist_ok=True)
            for key, work, label in (
                ("c", single, "(c) collector, 1 reading/msg"),
                ("d", batched, f"(d) collector, {args.batch} readings/msg"),
            ):
                raw = args.profile / f"collector_{key}.txt"
                r = bench.run_collector(label + " [py-spy]", work, profile=raw)
                print(
                    f"\nprofile {label}: drain {r.seconds:.2f}s under py-spy "
                    f"({r.reading_rate:,.0f} readings/s, {r.posts} /write POSTs, "
                    f"lossless={r.lossless}); {raw}"
                )
                if raw.exists():
                    print(summarise_profile(raw))
                else:
                    print("  py-spy wrote nothing", r.notes)
    finally:
        bench.stop()
    print("\nALL PASS" if ok_all else "\nSOME FAIL")
    return 0 if ok_all else 1


if __name__ == "__main__":
    sys.exit(main())
