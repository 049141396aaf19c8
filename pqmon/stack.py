"""``pqmon up``: the whole local stack on loopback, for a demo or a developer.

Its own Mosquitto and InfluxDB processes (data under the data dir, ``./var`` by default),
the registry filled with the simulated fleet and two demo users, then four child processes
(collector, worker, alerts, dashboard, simulator) wired to those servers through the environment.
Children run in their own session so that Ctrl-C reaches ``up`` alone, and ``up`` stops
them in reverse order (the simulator first, the collector last, then the servers), giving
each a chance to flush before what it writes to goes away.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from core.registry import Registry
from core.servers import LocalInflux, LocalMosquitto, stop_process
from core.settings import Settings, load_settings, parse_mqtt_url
from core.store import InfluxStore
from simulator.fleet import DAY_MS, Fleet, make_fleet

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]
DEMO_MANAGER = "demo"
DEMO_MANAGER_OF = "mgr1"
DEMO_CUSTOMER = "demo_customer"
DEMO_OPERATOR = "demo_operator"
DEMO_ADMIN = "demo_admin"
STOP_TIMEOUT_S = 10.0
COLLECTOR_READY_TIMEOUT_S = 60.0
PLANNED_AHEAD_DAYS = 14
# Settings that point at servers: ``up`` runs its own, so the caller's values must not leak.
_SERVER_VARS = (
    "PQMON_MQTT_URL",
    "PQMON_MQTT_CA_FILE",
    "PQMON_INFLUX_URL",
    "PQMON_INFLUX_TOKEN",
    "PQMON_INFLUX_USER",
    "PQMON_INFLUX_PASSWORD",
    "PQMON_PASSWORD",
)


@dataclass
class Child:
    name: str
    argv: list[str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def exited(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        stop_process(self.proc, timeout_s, self.name)


class Supervisor:
    """Starts children with logs in ``log_dir``; notices a death; stops them in reverse."""

    def __init__(self, log_dir: Path, env: Mapping[str, str], cwd: Path | None = None) -> None:
        self.log_dir = Path(log_dir)
        self.env = dict(env)
        self.cwd = cwd
        self.children: list[Child] = []

    def start(self, name: str, argv: list[str]) -> Child:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        child = Child(name, argv, self.log_dir / f"{name}.log")
        with open(child.log_path, "ab") as fh:
            fh.write(f"\n--- {datetime.now(UTC).isoformat()} {' '.join(argv)}\n".encode())
            fh.flush()
            child.proc = subprocess.Popen(
                argv,
                stdout=fh,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,
            )
        self.children.append(child)
        log.info("started %s (pid %d), log %s", name, child.proc.pid, child.log_path)
        return child

    def first_exited(self) -> Child | None:
        return next((c for c in self.children if c.exited() is not None), None)

    def stop_all(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        for child in reversed(self.children):
            child.stop(timeout_s)


def child_commands(accounts: int, seed: int, speed: float, days: float) -> list[tuple[str, list[str]]]:
    """The services, in start order (the lead's ``pqmon.cli`` subcommands)."""
    py = [sys.executable, "-m", "pqmon"]
    return [
        ("collector", [*py, "collector"]),
        ("worker", [*py, "worker"]),
        ("alerts", [*py, "alerts", "run"]),
        ("dashboard", [*py, "dashboard"]),
        (
            "simulate",
            [
                *py,
                "simulate",
                "--accounts",
                str(accounts),
                "--seed",
                str(seed),
                "--speed",
                f"{speed:g}",
                "--days",
                f"{days:g}",
            ],
        ),
    ]


def child_environ(
    base: Mapping[str, str],
    settings: Settings,
    mqtt_url: str,
    influx_url: str,
    dashboard_port: int,
) -> dict[str, str]:
    """The caller's environment, pointed at the local servers; secrets for them removed."""
    env = {k: v for k, v in base.items() if k not in _SERVER_VARS}
    env.update(
        PQMON_MQTT_URL=mqtt_url,
        PQMON_INFLUX_URL=influx_url,
        PQMON_INFLUX_DB=settings.influx_db,
        PQMON_REGISTRY_URL=settings.registry_url,
        PQMON_DATA_DIR=str(settings.data_dir.absolute()),
        PQMON_DASHBOARD_PORT=str(dashboard_port),
        PYTHONUNBUFFERED="1",
    )
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(REPO_ROOT) + (os.pathsep + path if path else "")
    return env


@dataclass(frozen=True)
class DemoLogins:
    manager: str
    manager_sites: tuple[str, ...]
    customer: str
    customer_site: str
    password: str
    password_from_env: bool
    operator: str = "demo_operator"
    admin: str = "demo_admin"


def seed_registry(
    registry: Registry,
    fleet: Fleet,
    now_ms: int,
    days: float,
    password: str | None = None,
) -> DemoLogins:
    """Import the fleet, its planned outages and the demo users; safe to run again."""
    rows = fleet.registry_rows()
    registry.upsert_rows(enumerate(rows, start=2), source="simulated fleet")

    start_ms = now_ms - int(days * DAY_MS) - DAY_MS
    end_ms = now_ms + PLANNED_AHEAD_DAYS * DAY_MS
    known: dict[str, set[tuple[datetime, datetime]]] = {}
    added = 0
    for w in fleet.planned_windows(start_ms, end_ms):
        have = known.setdefault(w.site_id, set(registry.planned_outages(w.site_id)))
        span = (_naive_utc(w.start_ms), _naive_utc(w.end_ms))
        if span not in have:
            registry.add_planned_outage(w.site_id, span[0], span[1], w.note)
            have.add(span)
            added += 1
    log.info("registered %d new planned outage window(s)", added)

    from_env = bool(password)
    password = password or secrets.token_urlsafe(12)
    manager_sites = tuple(fleet.sites_of(DEMO_MANAGER_OF))
    fed = [s for s in manager_sites if fleet.meter(f"{s}-M1").feeder_id] or list(manager_sites)
    customer_site = fed[0]
    registry.add_user(DEMO_MANAGER, "manager", password, manager_sites)
    registry.add_user(DEMO_CUSTOMER, "customer", password, [customer_site])
    registry.add_user(DEMO_OPERATOR, "operator", password)
    registry.add_user(DEMO_ADMIN, "admin", password)
    return DemoLogins(
        DEMO_MANAGER,
        manager_sites,
        DEMO_CUSTOMER,
        customer_site,
        password,
        from_env,
        DEMO_OPERATOR,
        DEMO_ADMIN,
    )


def _naive_utc(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC).replace(tzinfo=None)


def wait_for_mqtt_clients(
    mqtt_url: str, at_least: int, timeout_s: float, alive: Callable[[], bool] = lambda: True
) -> bool:
    """Wait until the broker counts ``at_least`` other connected clients.

    Why: Mosquitto does not keep messages for a subscription that does not exist yet, so
    the simulator's backfill must wait until the collector is connected (and, a moment
    later, subscribed). Needs ``sys_interval`` set low on the broker.
    """
    target = parse_mqtt_url(mqtt_url)
    seen = threading.Event()

    def on_message(_c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            if int(msg.payload) >= at_least + 1:  # + this watcher
                seen.set()
        except ValueError:
            pass

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"pqmon-up-{os.getpid()}")
    client.on_message = on_message
    client.on_connect = lambda c, *_: c.subscribe("$SYS/broker/clients/connected")
    client.connect(target.host, target.port)
    client.loop_start()
    try:
        deadline = time.monotonic() + timeout_s
        while not seen.wait(0.2):
            if time.monotonic() > deadline or not alive():
                return False
        # Connected is not yet subscribed: the collector subscribes from on_connect.
        time.sleep(0.5)
        return True
    finally:
        client.disconnect()
        client.loop_stop()


def _alive(child: Child) -> Callable[[], bool]:
    return lambda: child.exited() is None


def _install_stop_handlers(stop: threading.Event) -> Callable[[], None]:
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def handler(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s; stopping", signal.Signals(signum).name)
        stop.set()

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}

    def restore() -> None:
        for s, h in previous.items():
            signal.signal(s, h)

    return restore


def up(
    settings_environ: dict[str, str] | None = None,
    accounts: int = 50,
    seed: int = 1,
    speed: float = 60.0,
    days: float = 7,
    dashboard_port: int = 8050,
    *,
    stop_event: threading.Event | None = None,
    out: TextIO | None = None,
    commands: list[tuple[str, list[str]]] | None = None,
) -> int:
    """Run the local stack until Ctrl-C or SIGTERM (returns 0) or a child dies (returns 1).

    ``stop_event``, ``out`` and ``commands`` are for tests: stop from another thread, capture
    the banner, replace the four services with stand-ins.
    """
    out = out or sys.stdout
    environ = dict(os.environ if settings_environ is None else settings_environ)
    settings = load_settings(environ)
    data_dir = settings.data_dir.absolute()
    stop = stop_event or threading.Event()
    restore = _install_stop_handlers(stop)
    mosquitto = LocalMosquitto(data_dir / "mosquitto", extra_conf="sys_interval 1\n")
    influx = LocalInflux(data_dir / "influxdb")
    supervisor: Supervisor | None = None
    rc = 0
    try:
        mosquitto.start()
        influx.start()
        InfluxStore(influx.url, settings.influx_db).ensure_database()

        fleet = make_fleet(accounts, seed)
        fleet.write_registry_csv(data_dir / "fleet-registry.csv")
        registry = Registry(settings.registry_url)
        try:
            logins = seed_registry(
                registry, fleet, int(time.time() * 1000), days, environ.get("PQMON_PASSWORD") or None
            )
        finally:
            registry.close()

        base = dict(os.environ)
        if settings_environ is not None:
            base = {k: v for k, v in base.items() if not k.startswith("PQMON_")}
            base.update(settings_environ)
        env = child_environ(base, settings, mosquitto.url, influx.url, dashboard_port)
        supervisor = Supervisor(data_dir / "logs", env)
        plan = commands or child_commands(accounts, seed, speed, days)
        for name, argv in plan:
            child = supervisor.start(name, argv)
            if name == "collector":
                ready = wait_for_mqtt_clients(
                    mosquitto.url, 1, COLLECTOR_READY_TIMEOUT_S, alive=_alive(child)
                )
                if not ready and child.exited() is None:
                    log.warning(
                        "the collector has not connected to MQTT after %gs; going on",
                        COLLECTOR_READY_TIMEOUT_S,
                    )
            if stop.is_set() or supervisor.first_exited():
                break
        _banner(
            out,
            settings,
            logins,
            fleet,
            mosquitto.url,
            influx.url,
            dashboard_port,
            data_dir / "logs",
            [name for name, _ in plan],
        )

        while not stop.wait(0.5):
            dead = supervisor.first_exited()
            if dead is not None:
                print(
                    f"\n{dead.name} exited with code {dead.exited()}; stopping everything. "
                    f"Last lines of {dead.log_path}:\n{dead.log_tail()}",
                    file=out,
                    flush=True,
                )
                rc = 1
                break
    finally:
        print("stopping...", file=out, flush=True)
        if supervisor is not None:
            supervisor.stop_all()
        influx.stop()
        mosquitto.stop()
        restore()
    print("stopped.", file=out, flush=True)
    return rc


def _banner(
    out: TextIO,
    settings: Settings,
    logins: DemoLogins,
    fleet: Fleet,
    mqtt_url: str,
    influx_url: str,
    dashboard_port: int,
    log_dir: Path,
    names: list[str],
) -> None:
    password = "(the value of PQMON_PASSWORD)" if logins.password_from_env else logins.password
    lines = [
        "",
        "pqmon is up.",
        f"  dashboard   http://127.0.0.1:{dashboard_port}/",
        f"  logins      {logins.manager} (manager, {len(logins.manager_sites)} accounts)",
        f"              {logins.customer} (customer of {logins.customer_site})",
        f"              {logins.operator} (operator: every account, alerts)",
        f"              {logins.admin} (administrator: users, registry, planned outages)",
        f"  password    {password}   (shown once; set PQMON_PASSWORD to choose it)",
        f"  fleet       {len(fleet.accounts)} accounts, {len(fleet.feeders)} feeders (seed {fleet.seed})",
        f"  MQTT        {mqtt_url}",
        f"  InfluxDB    {influx_url}  database {settings.influx_db}",
        f"  registry    {settings.registry_url}",
        f"  logs        {log_dir}/{{{','.join(names)}}}.log",
        "Ctrl-C stops everything.",
        "",
    ]
    print("\n".join(lines), file=out, flush=True)
