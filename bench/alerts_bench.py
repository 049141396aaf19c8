#!/usr/bin/env python
"""Alert latency benchmark: a power_off published over MQTT to the page at a webhook, and its
power_on to the restoration notice, with a fleet's one-minute readings flowing meanwhile.

One Mosquitto and one InfluxDB (started here, in a temp dir), a SQLite registry with
``--accounts`` key accounts (no feeder: each outage is its own incident) and
``--background-accounts`` accounts whose meters send readings, ``python -m pqmon
collector`` and ``python -m pqmon alerts run`` as subprocesses, the alert service posting
to a webhook channel on a local HTTP receiver (a thread here that notes ``time.time()`` when
a request's body has arrived). Per phase (one per ``--background-speed``):

  * a background publisher (a subprocess) sends every background meter's one-minute
    three-phase reading ``speed`` times a minute, evenly spread (1,000 accounts at speed 1:
    16.7 messages/s; at speed 60: 1,000 messages/s), QoS 1;
  * ``--outages-per-account`` outages per account, spread over ``--duration`` seconds: each
    a power_off, then 1/6 to 1/3 of a round later its power_on; an account's next outage
    starts a round later, after its previous incident was resolved, so every outage is one
    incident, one page and one restoration notice. Event timestamps are whole seconds, one
    second before the send;
  * the send time is ``time.time()`` right before ``publish`` (QoS 1); the time to the PUBACK
    (``wait_for_publish``) is shown too;
  * reference, same run and broker: a bare paho subscriber (a subprocess) on
    ``pq/v1/+/+/event`` that notes when each of the same messages arrives (publish ->
    receive); and the alert service's poll interval (0.2 s), a floor of its part;
  * breakdown from the outbox rows in the registry: publish -> row created (the collector:
    broker, spool, InfluxDB write, dirty marks, the alert engine), created -> claimed by the
    dispatcher (its poll, rate-limit waits), claimed -> arrival (rendering, HTTP POST).

Target (from the issue): p95 <= 5 s for pages and for restorations, and exactly one page and
one restoration per outage. Exit status 0 only if every phase meets it.

    .venv/bin/python bench/alerts_bench.py                        # as shipped: phases at speed 1 and 60
    .venv/bin/python bench/alerts_bench.py --no-rate-limit        # without the 20/min per-receiver limit
    .venv/bin/python bench/alerts_bench.py --background-speed 1 --duration 60 --keep

See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import date, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench._bench import first_line, machine_basics  # noqa: E402 - needs ROOT on sys.path

TZ = "Asia/Shanghai"
EVENT_FILTER = "pq/v1/+/+/event"
TARGET_P95_S = 5.0
CHANNEL = "bench-hook"
# `pqmon alerts run` with the dispatcher's per-receiver rate limit lifted and nothing else changed.
NO_LIMIT_SHIM = (
    "import sys\n"
    "import analysis.alerts.channels as channels\n"
    "channels.RateLimiter.try_take = lambda self, recipient: True\n"
    "from pqmon.cli import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


# -- small helpers ------------------------------------------------------------------------------
def host_port(url: str) -> tuple[str, int]:
    host, port = url.split("://", 1)[1].rsplit(":", 1)
    return host, int(port)


def mqtt_client(url: str, client_id: str, inflight: int = 1000):  # type: ignore[no-untyped-def]
    import paho.mqtt.client as mqtt

    from core.servers import wait_until

    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True, protocol=mqtt.MQTTv311
    )
    client.max_inflight_messages_set(inflight)
    host, port = host_port(url)
    client.connect(host, port, keepalive=60)
    client.loop_start()
    wait_until(client.is_connected, 15, f"MQTT connection of {client_id}")
    return client


def percentile(values: list[float], p: float) -> float:
    """Nearest rank, as in collector_bench."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))]


def proc_cpu_s(pid: int) -> float:
    """utime + stime of a running process, in seconds (its children not included)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


def log_time(log_path: Path, prefix: str) -> float | None:
    """Time of the first JSON log line whose message starts with ``prefix``."""
    try:
        text = log_path.read_text(errors="replace")
    except OSError:
        return None
    for raw in text.splitlines():
        try:
            doc = json.loads(raw)
        except ValueError:
            continue
        if str(doc.get("message", "")).startswith(prefix):
            return datetime.fromisoformat(doc["time"]).timestamp()
    return None


def stop_child(proc: subprocess.Popen | None, timeout_s: float = 30) -> int | None:
    if proc is None:
        return None
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    return proc.returncode


# -- the background publisher and the reference subscriber (subprocesses of this script) --------
def background_main(args: argparse.Namespace) -> int:
    """Three-phase readings (interval_s 60) of ``--meters`` meters, each meter ``--speed`` times a
    minute, all evenly spread, until stdin closes; prints a JSON summary.

    A meter's k-th reading is stamped ``60/speed`` seconds after its previous one, starting at
    the minute before the start: at speed 1 the minute that just ended, as a live meter; at
    higher speeds the stamps still follow real time about a minute behind, so every point is
    distinct and recent (the silence rule sees live meters, none is in the future)."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    clients = [mqtt_client(args.url, f"bench-bg-{os.getpid()}-{c}") for c in range(args.connections)]
    acked = [0]
    lock = threading.Lock()

    def on_publish(client, userdata, mid, reason_code, properties) -> None:  # type: ignore[no-untyped-def]
        with lock:
            acked[0] += 1

    for c in clients:
        c.on_publish = on_publish
    rate = args.meters / 60 * args.speed
    step_ms = max(1, round(60_000 / args.speed))
    base_ms = (int(time.time() * 1000) // 60_000 - 1) * 60_000
    sent, ua_sum = 0, 0.0
    t0 = time.perf_counter()
    wall0 = time.time()
    print("ready", flush=True)
    while not stop.is_set():
        due = int((time.perf_counter() - t0) * rate)
        while sent < due:
            meter, k = sent % args.meters, sent // args.meters
            ua = 220.0 + ((meter * 7 + k * 13) % 100) / 10 - 5
            body = {"ts": base_ms + k * step_ms, "ua": ua, "ub": ua + 0.4, "uc": ua - 0.4, "f": 50.0}
            body["interval_s"] = 60
            site = background_id(meter)
            clients[meter % len(clients)].publish(
                f"pq/v1/{site}/{site}-M1/reading", json.dumps(body, separators=(",", ":")), qos=1
            )
            ua_sum += ua
            sent += 1
        stop.wait(0.01)
    seconds = time.time() - wall0
    deadline = time.monotonic() + 60
    while acked[0] < sent and time.monotonic() < deadline:
        time.sleep(0.01)
    for c in clients:
        c.disconnect()
        c.loop_stop()
    print(json.dumps({"sent": sent, "acked": acked[0], "ua_sum": ua_sum, "seconds": seconds}), flush=True)
    return 0


def subscriber_main(args: argparse.Namespace) -> int:
    """A bare paho subscriber on the event topics: arrival time of every event_id, until stdin closes."""
    import paho.mqtt.client as mqtt

    arrivals: dict[str, list[float]] = {}
    lock = threading.Lock()
    subscribed = threading.Event()

    def on_message(client, userdata, msg) -> None:  # type: ignore[no-untyped-def]
        t = time.time()
        event_id = json.loads(msg.payload)["event_id"]
        with lock:
            arrivals.setdefault(event_id, []).append(t)

    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=f"bench-ref-{os.getpid()}",
        clean_session=True,
        protocol=mqtt.MQTTv311,
    )
    client.on_message = on_message
    client.on_subscribe = lambda *a: subscribed.set()
    host, port = host_port(args.url)
    client.connect(host, port, keepalive=60)
    client.loop_start()
    client.subscribe(EVENT_FILTER, qos=1)
    if not subscribed.wait(15):
        return 1
    print("ready", flush=True)
    sys.stdin.read()
    time.sleep(0.2)
    client.disconnect()
    client.loop_stop()
    with lock:
        print(json.dumps(arrivals), flush=True)
    return 0


# -- the webhook receiver --------------------------------------------------------------------------
class Receiver:
    """ThreadingHTTPServer on loopback: every POST is kept as (path, arrival, body); answers 200."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.got: list[tuple[str, float, bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                arrived = time.time()
                with receiver.lock:
                    receiver.got.append((self.path, arrived, body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name="receiver", daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def of(self, path: str) -> list[tuple[float, dict[str, Any]]]:
        with self.lock:
            return [(t, json.loads(body)) for p, t, body in self.got if p == path]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# -- the outages -------------------------------------------------------------------------------------
@dataclass
class Event:
    outage: Outage
    kind: str  # power_off / power_on
    due: float  # seconds after the first outage
    event_id: str = ""
    ts_ms: int = 0
    pub: float = float("nan")  # time.time() right before publish
    ack: float = float("nan")  # time.time() when wait_for_publish returned


@dataclass
class Outage:
    site: str
    n: int
    off: Event = field(init=False)
    on: Event = field(init=False)
    pages: list[float] = field(default_factory=list)  # arrivals
    restorations: list[float] = field(default_factory=list)
    page_key: str | None = None
    restore_key: str | None = None


def account_id(i: int) -> str:
    return f"AK{i + 1:03d}"


def background_id(i: int) -> str:
    return f"BG{i + 1:04d}"


def make_outages(accounts: int, per_account: int, duration: float, seed: int) -> list[Outage]:
    """Round j holds every account's j-th outage, the accounts in one fixed shuffled order and
    evenly spaced over duration / per_account; each power_on comes 1/6 to 1/3 of a round after
    its power_off, so an account's next outage starts at least 2/3 of a round after it ended."""
    rng = random.Random(seed)
    order = list(range(accounts))
    rng.shuffle(order)
    round_s = duration / per_account
    out = []
    for j in range(per_account):
        for pos, i in enumerate(order):
            o = Outage(account_id(i), j)
            off = j * round_s + pos * round_s / accounts
            o.off = Event(o, "power_off", off)
            o.on = Event(o, "power_on", off + rng.uniform(round_s / 6, round_s / 3))
            out.append(o)
    return out


def registry_rows(accounts: int, background: int) -> list[tuple[int, dict[str, str]]]:
    def row(site: str, name: str) -> dict[str, str]:
        return {
            "site_id": site,
            "site_kind": "account",
            "name": name,
            "voltage_class_kv": "0.38",
            "phases": "3",
            "meter_id": f"{site}-M1",
            "nominal_v": "220",
            "upper_pct": "",
            "lower_pct": "",
            "profile": "gb",
            "feeder_id": "",
            "manager": "",
        }

    rows = [row(account_id(i), f"Bench account {i + 1}") for i in range(accounts)]
    rows += [row(background_id(i), f"Background account {i + 1}") for i in range(background)]
    return [(n + 2, r) for n, r in enumerate(rows)]


# -- one phase -----------------------------------------------------------------------------------------
@dataclass
class PhaseResult:
    speed: float
    outages: list[Outage]
    mqtt_ref: dict[str, list[float]]  # power_off / power_on -> publish -> subscriber receive
    ref_missing: int
    ref_dups: int
    others: list[dict[str, Any]]  # notifications that are neither a matched page nor a restoration
    outbox: dict[str, dict[str, Any]]  # key -> row
    outbox_states: dict[str, int]
    end_wall: float
    background: dict[str, Any]
    bg_stored: int
    collector_metrics: dict[str, float]
    samples: list[tuple[float, float, float]]  # (time, spool depth, oldest unflushed age)
    cpu: dict[str, float]
    wall_s: float
    load: tuple[float, float, float]
    micro: dict[str, float]
    notes: list[str] = field(default_factory=list)


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.tmp = Path(tempfile.mkdtemp(prefix="pqmon-alerts-bench-"))
        self.broker = None
        self.influx = None
        self.receiver: Receiver | None = None

    def start(self) -> None:
        from core.servers import LocalInflux, LocalMosquitto

        self.broker = LocalMosquitto(self.tmp / "mosquitto").start()
        self.influx = LocalInflux(self.tmp / "influx").start()
        self.receiver = Receiver()
        print(
            f"Mosquitto {self.broker.url} (pid {self.broker.proc.pid}), InfluxDB {self.influx.url} "
            f"(pid {self.influx.proc.pid}), webhook receiver {self.receiver.url}; data in {self.tmp}",
            flush=True,
        )

    def stop(self) -> None:
        if self.receiver is not None:
            self.receiver.stop()
        for server in (self.broker, self.influx):
            if server is not None:
                server.stop()
        if self.args.keep:
            print(f"kept {self.tmp} (logs, registries, alerts files)")
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)

    # processes
    def env(self, phase_dir: Path, client_id: str, db: str) -> dict[str, str]:
        from core.servers import free_port

        env = {k: v for k, v in os.environ.items() if not k.startswith("PQMON_")}
        env.update(
            {
                "PQMON_MQTT_URL": self.broker.url,
                "PQMON_MQTT_CLIENT_ID": client_id,
                "PQMON_INFLUX_URL": self.influx.url,
                "PQMON_INFLUX_DB": db,
                "PQMON_REGISTRY_URL": f"sqlite:///{phase_dir / 'registry.db'}",
                "PQMON_DATA_DIR": str(phase_dir / "var"),
                "PQMON_METRICS_PORT": str(free_port()),
                "PQMON_ALERTS_FILE": str(phase_dir / "alerts.toml"),
                "PQMON_LOG_FORMAT": "json",
                "PQMON_TZ": TZ,
                "PYTHONPATH": str(ROOT),
            }
        )
        return env

    def spawn(self, argv: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen:
        with open(log_path, "ab") as log:
            return subprocess.Popen(argv, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)

    def spawn_role(self, role: str, extra: list[str]) -> subprocess.Popen[str]:
        argv = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--role",
            role,
            "--url",
            self.broker.url,
            *extra,
        ]
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "ready":
            raise RuntimeError(f"{role} did not start")
        return proc

    @staticmethod
    def finish_role(proc: subprocess.Popen[str]) -> Any:
        out, _ = proc.communicate("", timeout=120)
        return json.loads(out.strip().splitlines()[-1])

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

    def count_readings(self, db: str) -> int:
        import requests

        resp = requests.post(
            self.influx.url + "/query",
            params={"db": db},
            data={"q": "SELECT count(ua) FROM reading"},
            timeout=60,
        )
        resp.raise_for_status()
        series = resp.json()["results"][0].get("series")
        return int(series[0]["values"][0][1]) if series else 0

    # the phase
    def run_phase(self, number: int, speed: float) -> PhaseResult:
        from core.registry import Registry
        from core.servers import wait_until

        args = self.args
        phase_dir = self.tmp / f"phase{number}"
        phase_dir.mkdir()
        path = f"/phase{number}"
        (phase_dir / "alerts.toml").write_text(
            f'[channels.{CHANNEL}]\ntype = "webhook"\nurl = "{self.receiver.url}{path}"\n'
        )
        reg = Registry(f"sqlite:///{phase_dir / 'registry.db'}")
        reg.upsert_rows(registry_rows(args.accounts, args.background_accounts))
        reg.close()
        env = self.env(phase_dir, f"bench-collector-{os.getpid()}-{number}", f"bench{number}")
        outages = make_outages(args.accounts, args.outages_per_account, args.duration, args.seed + number)
        events = sorted([e for o in outages for e in (o.off, o.on)], key=lambda e: e.due)
        span = events[-1].due
        rate = args.background_accounts / 60 * speed

        subscriber = self.spawn_role("subscriber", [])
        collector = self.spawn([sys.executable, "-m", "pqmon", "collector"], env, phase_dir / "collector.log")
        alerts: subprocess.Popen | None = None
        background = None
        notes: list[str] = []
        samples: list[tuple[float, float, float]] = []
        stop_sampling = threading.Event()
        try:

            def up(proc: subprocess.Popen, name: str, log: str, line: str) -> bool:
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited {proc.returncode}; see {phase_dir / log}")
                return log_time(phase_dir / log, line) is not None

            def collector_ready() -> bool:
                if not up(collector, "collector", "collector.log", "connected to MQTT"):
                    return False
                try:
                    return bool(self.metrics(env) is not None)
                except Exception:  # noqa: BLE001 - not listening yet
                    return False

            # The collector creates the InfluxDB database before it connects; the alert service
            # starts after it, so that its voltage and silence watch finds the database (an alert
            # service that starts first reads it as missing and skips the watch from then on).
            wait_until(collector_ready, 60, "the collector")
            alerts_argv = [sys.executable, "-m", "pqmon", "alerts", "run"]
            if args.no_rate_limit:
                alerts_argv = [sys.executable, "-c", NO_LIMIT_SHIM, "alerts", "run"]
            alerts = self.spawn(alerts_argv, env, phase_dir / "alerts.log")
            wait_until(lambda: up(alerts, "alert service", "alerts.log", "alerts:"), 60, "the alert service")
            background = self.spawn_role(
                "background",
                [
                    "--meters",
                    str(args.background_accounts),
                    "--speed",
                    str(speed),
                    "--connections",
                    str(args.connections),
                ],
            )
            pids = {
                "collector": collector.pid,
                "alerts": alerts.pid,
                "influxd": self.influx.proc.pid,
                "mosquitto": self.broker.proc.pid,
                "background": background.pid,
                "subscriber": subscriber.pid,
                "bench": os.getpid(),
            }
            cpu0 = {k: proc_cpu_s(p) for k, p in pids.items()}
            t_wall0 = time.time()

            def sampler() -> None:
                while not stop_sampling.wait(1.0):
                    try:
                        m = self.metrics(env)
                    except Exception:  # noqa: BLE001
                        continue
                    samples.append(
                        (
                            time.time(),
                            m.get("pqmon_collector_spool_depth", float("nan")),
                            m.get("pqmon_collector_oldest_unflushed_age_seconds", float("nan")),
                        )
                    )

            threading.Thread(target=sampler, daemon=True).start()
            print(
                f"  phase {number}: background {args.background_accounts} accounts at speed {speed:g} "
                f"({rate:,.1f} readings/s); warm-up {args.warmup:g}s; then {len(outages)} outages "
                f"({len(events)} events) over {span:.0f}s",
                flush=True,
            )
            time.sleep(args.warmup)
            self.publish_events(events, number)
            t_last = time.time()
            print(
                f"  phase {number}: events sent; waiting up to {args.wait:g}s for the notifications "
                f"(load avg {os.getloadavg()[0]:.2f})",
                flush=True,
            )
            want = 2 * len(outages)

            def settled() -> bool:
                got = self.receiver.of(path)
                states = outbox_states(phase_dir / "registry.db")
                busy = states.get("pending", 0) + states.get("sending", 0)
                return len(got) >= want and busy == 0

            deadline = t_last + args.wait
            while time.time() < deadline and not settled():
                time.sleep(0.25)
            time.sleep(2.0)  # a duplicate would show now
            end_wall = time.time()
            cpu = {k: proc_cpu_s(p) - cpu0[k] for k, p in pids.items()}
            wall_s = end_wall - t_wall0
            bg = self.finish_role(background)
            background = None
            stop_sampling.set()
            collector_metrics = self.metrics(env)
            load = os.getloadavg()
        finally:
            stop_sampling.set()
            if background is not None:
                stop_child(background)
            ref_raw = self.finish_role(subscriber) if subscriber.poll() is None else {}
            code_alerts = stop_child(alerts)
            code_collector = stop_child(collector)
        if code_alerts not in (0, -signal.SIGTERM):
            notes.append(f"alert service exited {code_alerts}")
        if code_collector != 0:
            notes.append(f"collector exited {code_collector}")
        if "has no database" in (phase_dir / "alerts.log").read_text(errors="replace"):
            notes.append(
                "the alert service found no InfluxDB database: its voltage and silence watch was off"
            )
        bg_stored = self.count_readings(env["PQMON_INFLUX_DB"])
        for name, value in collector_metrics.items():
            if name.startswith("pqmon_collector_rejected_total") and value:
                notes.append(f"collector rejected: {name}={value:g}")

        # reference: publish -> the bare subscriber's receive
        ref: dict[str, list[float]] = {"power_off": [], "power_on": []}
        ref_missing = ref_dups = 0
        for e in events:
            times = ref_raw.get(e.event_id, [])
            if not times:
                ref_missing += 1
                continue
            ref_dups += len(times) - 1
            ref[e.kind].append(times[0] - e.pub)

        # notifications: match each to its outage by site and the outage's start (whole seconds)
        by_start = {(o.site, o.off.ts_ms // 1000): o for o in outages}
        others: list[dict[str, Any]] = []
        for arrived, doc in self.receiver.of(path):
            sites = (doc.get("alert") or {}).get("sites") or []
            outage = None
            if len(sites) == 1 and sites[0].get("start"):
                start_s = int(datetime.fromisoformat(sites[0]["start"]).timestamp())
                outage = by_start.get((sites[0]["site"], start_s))
            if outage is not None and doc.get("kind") == "incident":
                outage.pages.append(arrived)
                outage.page_key = outage.page_key or doc.get("key")
            elif outage is not None and doc.get("kind") == "resolved":
                outage.restorations.append(arrived)
                outage.restore_key = outage.restore_key or doc.get("key")
            else:
                others.append(doc)
        outbox = outbox_rows(phase_dir / "registry.db")
        states: dict[str, int] = {}
        for row in outbox.values():
            states[row["state"]] = states.get(row["state"], 0) + 1
        micro = micro_timings(
            phase_dir, args.accounts, args.background_accounts, self.influx.url, env["PQMON_INFLUX_DB"]
        )
        return PhaseResult(
            speed,
            outages,
            ref,
            ref_missing,
            ref_dups,
            others,
            outbox,
            states,
            end_wall,
            bg,
            bg_stored,
            collector_metrics,
            samples,
            cpu,
            wall_s,
            load,
            micro,
            notes,
        )

    def publish_events(self, events: list[Event], number: int) -> None:
        """On schedule, one QoS 1 publish at a time, as meters would send them."""
        client = mqtt_client(self.broker.url, f"bench-meters-{os.getpid()}-{number}")
        try:
            t0 = time.time()
            for e in events:
                delay = t0 + e.due - time.time()
                if delay > 0:
                    time.sleep(delay)
                o = e.outage
                e.event_id = f"{o.site}-{e.kind}-{o.n}-p{number}"
                e.pub = time.time()
                e.ts_ms = (int(e.pub) - 1) * 1000  # whole seconds, a second in the past
                body = {"event_id": e.event_id, "ts": e.ts_ms, "type": e.kind}
                info = client.publish(f"pq/v1/{o.site}/{o.site}-M1/event", json.dumps(body), qos=1)
                info.wait_for_publish(10)
                e.ack = time.time()
        finally:
            client.disconnect()
            client.loop_stop()


def outbox_states(db: Path) -> dict[str, int]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        return dict(con.execute("SELECT state, count(*) FROM alert_outbox GROUP BY state").fetchall())
    except sqlite3.OperationalError:
        return {}
    finally:
        con.close()


def outbox_rows(db: Path) -> dict[str, dict[str, Any]]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    con.row_factory = sqlite3.Row
    try:
        rows = con.execute(
            "SELECT id, kind, state, created_ms, claimed_ms, sent_ms, attempts, last_error FROM alert_outbox"
        ).fetchall()
    finally:
        con.close()
    return {f"pqmon-{r['id']}": dict(r) for r in rows}


def micro_timings(
    phase_dir: Path, accounts: int, background: int, influx_url: str, db: str
) -> dict[str, float]:
    """In-process timings, on a copy of the phase's registry after the run (same tables and
    rows, no other writer), of the registry work on the collector's path, and of one pass of
    the alert service's voltage and silence watch over the phase's data: medians in ms."""
    from analysis.alerts.engine import AlertEngine, AlertPolicy, PowerEvent, Routes, site_infos
    from core.registry import Registry

    copy = phase_dir / "registry-copy.db"
    src = sqlite3.connect(phase_dir / "registry.db")
    dst = sqlite3.connect(copy)
    src.backup(dst)
    src.close()
    dst.close()
    reg = Registry(f"sqlite:///{copy}")
    try:
        engine = AlertEngine(reg, Routes({"ops": [CHANNEL]}), AlertPolicy(tz=TZ))
        engine.sites()
        today = date.today()
        all_pairs = {(background_id(i), today) for i in range(background)}
        out: dict[str, list[float]] = {"site_infos": [], "dirty_1": [], "dirty_all": [], "off": [], "on": []}
        for _ in range(5):
            t = time.perf_counter()
            site_infos(reg)
            out["site_infos"].append(time.perf_counter() - t)
            t = time.perf_counter()
            reg.mark_dirty(all_pairs)
            out["dirty_all"].append(time.perf_counter() - t)
        now_ms = int(time.time() * 1000)
        for i in range(min(accounts, 20)):
            site = account_id(i)
            t = time.perf_counter()
            reg.mark_dirty({(site, today)})
            out["dirty_1"].append(time.perf_counter() - t)
            off = PowerEvent(site, f"{site}-M1", "power_off", now_ms - 60_000, f"micro-off-{i}")
            t = time.perf_counter()
            engine.on_events([off])
            out["off"].append(time.perf_counter() - t)
            on = PowerEvent(site, f"{site}-M1", "power_on", now_ms - 30_000, f"micro-on-{i}")
            t = time.perf_counter()
            engine.on_events([on])
            out["on"].append(time.perf_counter() - t)
        out["watch"] = time_watch(reg, engine, influx_url, db)
        return {k: statistics.median(v) * 1000 for k, v in out.items() if v}
    finally:
        reg.close()
        copy.unlink(missing_ok=True)


def time_watch(reg: Any, engine: Any, influx_url: str, db: str) -> list[float]:
    """Seconds of ``ConditionWatch.run_once`` (the alert service runs it in its delivery loop)."""
    try:
        from analysis.alerts.voltage import ConditionRule, ConditionWatch
    except ImportError:
        return []
    from core.store import InfluxStore

    store = InfluxStore(influx_url, db)
    try:
        watch = ConditionWatch(store, reg, engine, ConditionRule(), {})
        times = []
        for _ in range(3):
            t = time.perf_counter()
            watch.run_once()
            times.append(time.perf_counter() - t)
        return times
    finally:
        store.close()


def stalls(rows: list[dict[str, Any]], threshold_s: float = 0.5) -> tuple[int, list[float], float]:
    """Outbox rows that waited longer than ``threshold_s`` to be claimed, grouped into bursts
    (claims less than 2 s apart): (rows, burst times in s from the first claim, longest wait)."""
    late = sorted(
        (r["claimed_ms"] / 1000, (r["claimed_ms"] - r["created_ms"]) / 1000)
        for r in rows
        if r["claimed_ms"] is not None and r["claimed_ms"] - r["created_ms"] > threshold_s * 1000
    )
    firsts = [r["claimed_ms"] / 1000 for r in rows if r["claimed_ms"] is not None]
    if not late or not firsts:
        return 0, [], 0.0
    t0 = min(firsts)
    bursts = [late[0][0]]
    for (t, _), (prev, _) in zip(late[1:], late, strict=False):
        if t - prev > 2.0:
            bursts.append(t)
    return len(late), [b - t0 for b in bursts], max(w for _, w in late)


# -- report ----------------------------------------------------------------------------------------------
def machine_info() -> str:
    import paho.mqtt

    mosquitto = first_line(["mosquitto", "-h"]) or "mosquitto ?"
    return f"{machine_basics()} | paho-mqtt={paho.mqtt.__version__} {mosquitto}"


def fmt_table(head: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(str(x[i])) for x in (head, *rows)) for i in range(len(head))]
    out = [
        " | ".join(str(h).ljust(w) for h, w in zip(head, widths, strict=True)),
        "-+-".join("-" * w for w in widths),
    ]
    out += [" | ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(out)


def censored_stats(values: list[tuple[float, bool]]) -> dict[str, str]:
    """p50/p95/p99/max of (seconds, delivered) pairs; an undelivered one counts as its wait so far,
    a lower bound, and a percentile that falls on one is shown as '>x'."""
    if not values:
        return {k: "-" for k in ("p50", "p95", "p99", "max")}
    ordered = sorted(values, key=lambda v: (0, v[0]) if v[1] else (1, v[0]))
    out = {}
    for name, p in (("p50", 50), ("p95", 95), ("p99", 99), ("max", 100)):
        seconds, delivered = ordered[min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))]
        out[name] = f"{seconds:.3f}" if delivered else f">{seconds:.0f}"
    return out


def p95_of(values: list[tuple[float, bool]]) -> float:
    ordered = sorted(v[0] if v[1] else math.inf for v in values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(0.95 * len(ordered)) - 1))] if ordered else math.inf


def others_kinds(docs: list[dict[str, Any]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for d in docs:
        name = f"{d.get('kind')}/{(d.get('alert') or {}).get('rule')}"
        out[name] = out.get(name, 0) + 1
    return out


def report(number: int, r: PhaseResult, args: argparse.Namespace) -> bool:
    n = len(r.outages)
    pages = [
        (o.pages[0] - o.off.pub, True) if o.pages else (r.end_wall - o.off.pub, False) for o in r.outages
    ]
    restores = [
        (o.restorations[0] - o.on.pub, True) if o.restorations else (r.end_wall - o.on.pub, False)
        for o in r.outages
    ]
    ref_off, ref_on = r.mqtt_ref["power_off"], r.mqtt_ref["power_on"]
    acks = [e.ack - e.pub for o in r.outages for e in (o.off, o.on)]

    def ref_row(label: str, values: list[float]) -> tuple[str, ...]:
        return (
            label,
            str(len(values)),
            *(f"{percentile(values, p):.4f}" for p in (50, 95, 99, 100)),
            "ref",
            "-",
            "-",
        )

    def row(label: str, values: list[tuple[float, bool]], ref: list[float]) -> tuple[str, bool]:
        s = censored_stats(values)
        delivered = [v for v, ok in values if ok]
        p95 = p95_of(values)
        ok = p95 <= TARGET_P95_S
        ratio = "-"
        if delivered and ref and all(d for _, d in values):
            ratio = (
                f"{percentile(delivered, 50) / percentile(ref, 50):,.0f} / "
                f"{percentile(delivered, 95) / percentile(ref, 95):,.0f}"
            )
        return (
            label,
            f"{len(delivered)}/{len(values)}",
            s["p50"],
            s["p95"],
            s["p99"],
            s["max"],
            ratio,
            f"p95 <= {TARGET_P95_S:g}",
            "PASS" if ok else "FAIL",
        ), ok

    page_row, page_ok = row("power_off -> page at the webhook", pages, ref_off)
    rest_row, rest_ok = row("power_on -> restoration at the webhook", restores, ref_on)
    head = ("latency, seconds", "n", "p50", "p95", "p99", "max", "x MQTT p50 / p95", "target", "result")
    rows = [
        ref_row("(ref) MQTT publish -> subscriber, power_off", ref_off),
        ref_row("(ref) MQTT publish -> subscriber, power_on", ref_on),
        ref_row("(ref) MQTT publish -> PUBACK (events)", acks),
        ("(ref) alert service poll interval (floor)", "", "0.200", "", "", "0.200", "ref", "-", "-"),
        page_row,
        rest_row,
    ]
    rate = args.background_accounts / 60 * r.speed
    print(
        f"\nphase {number}: {n} outages of {args.accounts} accounts over {args.duration:g}s; background "
        f"{args.background_accounts} accounts at speed {r.speed:g} ({rate:,.1f} readings/s); "
        f"{'rate limit LIFTED (--no-rate-limit)' if args.no_rate_limit else 'as shipped (rate limit on)'}"
    )
    print(fmt_table(head, rows))

    # exactly once
    pages_missing = sum(1 for o in r.outages if not o.pages)
    pages_dup = sum(len(o.pages) - 1 for o in r.outages if o.pages)
    rest_missing = sum(1 for o in r.outages if not o.restorations)
    rest_dup = sum(len(o.restorations) - 1 for o in r.outages if o.restorations)
    exact = all(len(o.pages) == len(o.restorations) == 1 for o in r.outages) and not r.others
    pending = r.outbox_states.get("pending", 0) + r.outbox_states.get("sending", 0)
    print(
        f"delivery: pages {n - pages_missing}/{n} outages ({pages_dup} duplicate(s)), restorations "
        f"{n - rest_missing}/{n} ({rest_dup} duplicate(s)), other notifications {len(r.others)}"
        + (f" (kind/rule: {others_kinds(r.others)})" if r.others else "")
        + f"; outbox at the end: {r.outbox_states}"
        + (
            f" -> {pending} not delivered within the wait (still queued, not lost)"
            if pending and pages_missing + rest_missing
            else ""
        )
    )
    if r.ref_missing or r.ref_dups:
        print(f"  reference subscriber: {r.ref_missing} event(s) not received, {r.ref_dups} duplicate(s)")

    # breakdown from the outbox rows
    def parts(kind_key: str, pub_of: Any, arrivals: Any) -> dict[str, list[float]]:
        out: dict[str, list[float]] = {"collector": [], "queue": [], "send": [], "reply": [], "attempts": []}
        for o in r.outages:
            key = getattr(o, kind_key)
            row_ = r.outbox.get(key or "")
            if row_ is None or not arrivals(o):
                continue
            created, claimed, sent = row_["created_ms"] / 1000, row_["claimed_ms"], row_["sent_ms"]
            out["collector"].append(created - pub_of(o))
            if claimed is not None:
                out["queue"].append(claimed / 1000 - created)
                out["send"].append(arrivals(o)[0] - claimed / 1000)
            if sent is not None:
                out["reply"].append(sent / 1000 - arrivals(o)[0])
            out["attempts"].append(float(row_["attempts"]))
        return out

    bp = parts("page_key", lambda o: o.off.pub, lambda o: o.pages)
    br = parts("restore_key", lambda o: o.on.pub, lambda o: o.restorations)

    def trio(xs: list[float]) -> str:
        if not xs:
            return "-"
        return f"{percentile(xs, 50):.3f} / {percentile(xs, 95):.3f} / {max(xs):.3f}"

    brows = [
        (
            "publish -> outbox row created (collector)",
            trio(bp["collector"]),
            trio(br["collector"]),
            "broker, spool commit + PUBACK, decode, InfluxDB write, dirty marks, engine start",
        ),
        (
            "created -> claimed (alert service)",
            trio(bp["queue"]),
            trio(br["queue"]),
            "engine commit, 0.2 s poll, the database shared with the watch thread",
        ),
        (
            "claimed -> arrival (send)",
            trio(bp["send"]),
            trio(br["send"]),
            "load row, render JSON, HTTP POST (new connection)",
        ),
        (
            "arrival -> sent_ms (not in the latency)",
            trio(bp["reply"]),
            trio(br["reply"]),
            "HTTP reply, delivery-log commit",
        ),
    ]
    print("\nbreakdown of delivered notifications, seconds p50 / p95 / max:")
    print(fmt_table(("part", "pages", "restorations", "what"), brows))
    m = r.micro
    print(
        "registry work on the collector's path, in-process on a copy of this phase's registry "
        f"(median ms): mark_dirty 1 site-day {m.get('dirty_1', float('nan')):.1f}, "
        f"{args.background_accounts} site-days {m.get('dirty_all', float('nan')):.1f}; engine power_off "
        f"{m.get('off', float('nan')):.1f}, power_on {m.get('on', float('nan')):.1f}; "
        f"site_infos (re-read every 10 s) {m.get('site_infos', float('nan')):.1f}; the alert service's "
        f"voltage and silence watch, one pass over this phase's data {m.get('watch', float('nan')):.0f}"
    )
    n_late, bursts, longest = stalls(list(r.outbox.values()))
    if n_late:
        gaps = [b - a for a, b in zip(bursts, bursts[1:], strict=False)]
        print(
            f"dispatch stalls: {n_late} notification(s) waited > 0.5 s to be claimed, in {len(bursts)} "
            f"burst(s) at {', '.join(f'{b:.0f}' for b in bursts[:12])} s"
            + (f" (median spacing {statistics.median(gaps):.1f} s)" if gaps else "")
            + f"; longest wait {longest:.2f} s"
        )
    cm = r.collector_metrics
    depth = [s[1] for s in r.samples if not math.isnan(s[1])]
    age = [s[2] for s in r.samples if not math.isnan(s[2])]
    bg = r.background
    kept_up = bg.get("acked") == r.bg_stored
    write_ms = cm.get("pqmon_collector_write_seconds_avg", float("nan")) * 1000
    print(
        f"collector: InfluxDB write avg {write_ms:.1f} ms; "
        f"spool depth max {max(depth, default=float('nan')):.0f}, oldest unflushed age max "
        f"{max(age, default=float('nan')):.2f}s (1 Hz samples); background: {bg.get('sent')} sent, "
        f"{bg.get('acked')} acknowledged in {bg.get('seconds', 0):.0f}s "
        f"({bg.get('sent', 0) / max(bg.get('seconds', 1), 1e-9):,.1f}/s), {r.bg_stored} in InfluxDB"
        + ("" if kept_up else " (MISMATCH)")
    )
    cpu = ", ".join(f"{k} {v:.1f}" for k, v in r.cpu.items() if not math.isnan(v))
    print(
        f"CPU seconds during the phase's {r.wall_s:.0f}s: {cpu}; load avg at the end "
        f"{r.load[0]:.2f} {r.load[1]:.2f} {r.load[2]:.2f} on {os.cpu_count()} cores"
    )
    for note in r.notes:
        print(f"  note: {note}")
    ok = page_ok and rest_ok and exact and kept_up and not r.notes
    print(f"phase {number}: {'PASS' if ok else 'FAIL'}")
    return ok


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--accounts", type=int, default=100, help="accounts with outages (each its own incident)")
    p.add_argument("--outages-per-account", type=int, default=2)
    p.add_argument("--background-accounts", type=int, default=1000, help="meters sending one-minute readings")
    p.add_argument(
        "--background-speed",
        default="1,60",
        help="comma list, one phase each: readings per meter per minute (1 = real time)",
    )
    p.add_argument("--duration", type=float, default=90.0, help="seconds over which the outages begin")
    p.add_argument(
        "--warmup", type=float, default=5.0, help="seconds of background traffic before the outages"
    )
    p.add_argument(
        "--wait", type=float, default=60.0, help="after the last event, wait at most this long for the rest"
    )
    p.add_argument("--connections", type=int, default=4, help="MQTT connections of the background publisher")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument(
        "--no-rate-limit",
        action="store_true",
        help="run the alert service with the dispatcher's per-receiver rate limit lifted (a shim)",
    )
    p.add_argument("--keep", action="store_true", help="keep the temp dir (logs, registries)")
    p.add_argument(
        "--role", default="bench", choices=("bench", "subscriber", "background"), help=argparse.SUPPRESS
    )
    p.add_argument("--url", help=argparse.SUPPRESS)
    p.add_argument("--meters", type=int, help=argparse.SUPPRESS)
    p.add_argument("--speed", type=float, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.role == "subscriber":
        return subscriber_main(args)
    if args.role == "background":
        return background_main(args)

    speeds = [float(x) for x in args.background_speed.split(",") if x.strip()]
    print(f"machine: {machine_info()}")
    load = os.getloadavg()
    print(
        f"load average at start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
        + (
            "  (WARNING: something else is using the CPUs; figures will be noisy)"
            if load[0] > 0.5 * (os.cpu_count() or 1)
            else ""
        )
    )
    print(bounds_text())
    bench = Bench(args)
    ok_all = True
    results: list[PhaseResult] = []
    try:
        bench.start()
        for number, speed in enumerate(speeds, start=1):
            results.append(bench.run_phase(number, speed))
    finally:
        bench.stop()
    for number, r in enumerate(results, start=1):
        ok_all &= report(number, r, args)
    ok_all &= len(results) == len(speeds)
    print("\nALL PASS" if ok_all else "\nSOME FAIL")
    return 0 if ok_all else 1


def bounds_text() -> str:
    """The settings and constants on the path, read from the code rather than restated."""
    import inspect

    from analysis.alerts import dispatch
    from analysis.alerts.channels import RateLimiter
    from collector.service import LINGER_S, SPOOL_GATHER_S
    from core.settings import load_settings

    flush = load_settings({}).flush_interval_s
    poll = inspect.signature(dispatch.run_forever).parameters["interval_s"].default
    limiter = inspect.signature(RateLimiter).parameters
    watch = getattr(dispatch, "WATCH_INTERVAL_S", None)
    return (
        f"on the path: spool group commit {SPOOL_GATHER_S * 1000:g} ms; decoder linger "
        f"{LINGER_S * 1000:g} ms after a small pass, idle wait <= PQMON_FLUSH_INTERVAL_S={flush:g}s "
        "(woken by each spool commit); "
        f"InfluxDB write, dirty marks and the alert engine in one writer thread; alert service poll "
        f"{poll:g}s when idle, {dispatch.BATCH} rows a pass"
        + (f", voltage and silence watch every {watch:g}s in a thread of its own" if watch else "")
        + f"; per-robot rate limit {limiter['per_minute'].default:g}/min, "
        f"burst {limiter['burst'].default:g} (DingTalk and WeCom only; the webhook here has none)"
    )


if __name__ == "__main__":
    sys.exit(main())
