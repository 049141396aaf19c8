"""``pqmon up``: the whole local stack on loopback, for a demo or a developer.

Its own Mosquitto and InfluxDB processes (data under the data dir, ``./var`` by default),
the registry filled with the simulated fleet, its planned outages, a contact per account and
the demo users, then five child processes (collector, simulator, worker, alerts, dashboard)
wired to those servers through the environment. The worker starts once the simulator's
history (from the 1st of last month by default) is stored, so its first pass, and the
monthly reports the archiver issues after it, see the whole of last month.

The demo inbox (:mod:`pqmon.inbox`) receives the customers' planned-outage notices, and
``<data dir>/pqmon.env`` holds the stack's settings while it runs, so that a ``pqmon``
command typed in another shell of the same checkout reaches it (see
:func:`core.settings.load_settings`); it is removed at shutdown.

Children run in their own session so that Ctrl-C reaches ``up`` alone, and ``up`` stops
them in reverse order (the collector last, then the servers), giving each a chance to flush
before what it writes to goes away.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from core.registry import CONTACT_CSV_COLUMNS, Registry
from core.servers import LocalInflux, LocalMosquitto, free_port, stop_process
from core.settings import UP_PID_VAR, Settings, load_settings, parse_mqtt_url, up_env_file
from core.store import InfluxStore
from pqmon.inbox import DemoInbox
from simulator.fleet import DAY_MS, Fleet, make_fleet
from simulator.live import PlannedCut, planned_text
from simulator.publish import reading_messages

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
HISTORY_INTERVAL_S = 900  # the backfill: 15-minute readings (a month of 50 accounts in seconds)
LIVE_INTERVAL_S = 60  # live: minute readings, so the alert rules fire and clear within minutes
BACKFILL_WAIT_S = 300.0  # the worker starts when the history is stored, or after this long
DEMO_PLANNED_LEAD_S = 31 * 60 + 30  # its 30-minute confirmation goes out 90 s after start-up
DEMO_PLANNED_S = 10 * 60
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


def child_commands(
    accounts: int,
    seed: int,
    speed: float,
    days: float | None = None,
    *,
    since: date | None = None,
    planned: tuple[PlannedCut, ...] = (),
) -> list[tuple[str, list[str]]]:
    """The services, in start order (the lead's ``pqmon.cli`` subcommands). The simulator
    comes second: the worker waits for its history (:func:`up`)."""
    py = [sys.executable, "-m", "pqmon"]
    history = ["--since", since.isoformat()] if since is not None else ["--days", f"{days or 0:g}"]
    simulate = [
        *py,
        "simulate",
        "--accounts",
        str(accounts),
        "--seed",
        str(seed),
        "--speed",
        f"{speed:g}",
        *history,
        "--interval",
        str(HISTORY_INTERVAL_S),
        "--live-interval",
        str(LIVE_INTERVAL_S),
    ]
    for cut in planned:
        simulate += ["--planned", planned_text(cut)]
    return [
        ("collector", [*py, "collector"]),
        ("simulate", simulate),
        ("worker", [*py, "worker"]),
        ("alerts", [*py, "alerts", "run"]),
        ("dashboard", [*py, "dashboard"]),
    ]


def history_start(now: datetime) -> date:
    """The 1st of last month (in ``now``'s zone): the dashboard's "last month" and the monthly
    report archive need all of it."""
    first = now.date().replace(day=1)
    return (first - timedelta(days=1)).replace(day=1)


def child_environ(
    base: Mapping[str, str],
    settings: Settings,
    mqtt_url: str,
    influx_url: str,
    dashboard_port: int,
    metrics_port: int | None = None,
) -> dict[str, str]:
    """The caller's environment, pointed at the local servers; secrets for them removed."""
    env = {k: v for k, v in base.items() if k not in _SERVER_VARS}
    env.update(stack_settings(settings, mqtt_url, influx_url, dashboard_port, metrics_port))
    env["PYTHONUNBUFFERED"] = "1"
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(REPO_ROOT) + (os.pathsep + path if path else "")
    return env


def stack_settings(
    settings: Settings, mqtt_url: str, influx_url: str, dashboard_port: int, metrics_port: int | None = None
) -> dict[str, str]:
    """The settings that point a process at this stack: its children's, and ``pqmon.env``'s."""
    values = {
        "PQMON_MQTT_URL": mqtt_url,
        "PQMON_INFLUX_URL": influx_url,
        "PQMON_INFLUX_DB": settings.influx_db,
        "PQMON_REGISTRY_URL": settings.registry_url,
        "PQMON_DATA_DIR": str(settings.data_dir.absolute()),
        "PQMON_DASHBOARD_PORT": str(dashboard_port),
        "PQMON_TZ": settings.tz,
    }
    if metrics_port is not None:
        values["PQMON_METRICS_PORT"] = str(metrics_port)
    return values


def write_env_file(path: Path, values: Mapping[str, str]) -> None:
    """KEY=VALUE lines, mode 0600 from the start (settings may carry secrets), with the
    writer's pid so that a file left by a killed ``up`` is known for what it is."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write("# written by `pqmon up` for the stack it runs; removed when it stops\n")
        for key, value in {**values, UP_PID_VAR: str(os.getpid())}.items():
            fh.write(f"{key}={value}\n")
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def remove_env_file(path: Path) -> None:
    """Remove the file if this process wrote it (another ``up`` may have replaced it)."""
    try:
        if f"{UP_PID_VAR}={os.getpid()}" in path.read_text(encoding="utf-8").splitlines():
            path.unlink()
    except OSError:
        pass


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
    *,
    robot_url: Callable[[str], str] | None = None,
    extra_planned: tuple[PlannedCut, ...] = (),
    tz: str = "Asia/Shanghai",
) -> DemoLogins:
    """Import the fleet, its planned outages and the demo users; safe to run again.

    With ``robot_url`` (a site id to a robot webhook), each account gets a demo contact on it,
    and planned windows still ahead are registered with their customer notices (as ``pqmon
    planned add`` does), so the alert service sends them; past windows are registered bare.
    ``extra_planned`` are windows of the demonstration itself (the simulator carries them out).
    """
    from analysis.alerts.notices import NoticeBook, NoticePolicy

    rows = fleet.registry_rows()
    registry.upsert_rows(enumerate(rows, start=2), source="simulated fleet")
    if robot_url is not None:
        _write_contacts(registry, fleet, robot_url)

    start_ms = now_ms - int(days * DAY_MS) - DAY_MS
    end_ms = now_ms + PLANNED_AHEAD_DAYS * DAY_MS
    book = NoticeBook(registry, NoticePolicy(tz=tz), clock=lambda: now_ms / 1000)
    known: dict[str, set[tuple[datetime, datetime]]] = {}
    added = 0
    windows = [(w.site_id, w.start_ms, w.end_ms, w.note) for w in fleet.planned_windows(start_ms, end_ms)]
    # A feeder's window is one window of the feeder (its accounts' notices and rows come with it).
    feeders = {m.site_id for m in fleet.feeders}
    windows = [w for w in windows if w[0] in feeders or _own_window(fleet, w[0])]
    windows += [(c.site_id, c.start_ms, c.end_ms, "demonstration maintenance") for c in extra_planned]
    for site_id, w_start, w_end, note in windows:
        have = known.setdefault(site_id, set(registry.planned_outages(site_id)))
        span = (_naive_utc(w_start), _naive_utc(w_end))
        if span in have:
            continue
        if robot_url is not None and w_start > now_ms:
            book.register(site_id, span[0], span[1], note)
        else:
            for sid in [site_id, *fleet_accounts_of(fleet, site_id)]:
                registry.add_planned_outage(sid, span[0], span[1], note)
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


def fleet_accounts_of(fleet: Fleet, site_id: str) -> list[str]:
    """The accounts a feeder supplies (none for an account)."""
    return [m.site_id for m in fleet.accounts if m.feeder_id == site_id]


def _own_window(fleet: Fleet, site_id: str) -> bool:
    """An account's window that is its own, not one of its feeder's."""
    return fleet.meter(f"{site_id}-M1").feeder_id is None


def _write_contacts(registry: Registry, fleet: Fleet, robot_url: Callable[[str], str]) -> None:
    """One contact per account, told through the demo inbox (added or updated by name)."""
    import csv

    path = Path(tempfile.mkstemp(prefix="pqmon-contacts-", suffix=".csv")[1])
    try:
        with open(path, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(CONTACT_CSV_COLUMNS))
            writer.writeheader()
            for m in fleet.accounts:
                writer.writerow(
                    {
                        "site_id": m.site_id,
                        "name": f"Duty electrician {m.site_id}",
                        "phone": "+86 10 0000 0000",
                        "email": "",
                        "robot_url": robot_url(m.site_id),
                        "robot_secret": "",
                        "lang": "zh-CN",
                    }
                )
        registry.import_contacts(path)
    finally:
        path.unlink(missing_ok=True)


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
    days: float | None = None,
    dashboard_port: int = 8050,
    *,
    stop_event: threading.Event | None = None,
    out: TextIO | None = None,
    commands: list[tuple[str, list[str]]] | None = None,
) -> int:
    """Run the local stack until Ctrl-C or SIGTERM (returns 0) or a child dies (returns 1).

    ``days`` of history, or (None) from the 1st of last month. ``stop_event``, ``out`` and
    ``commands`` are for tests: stop from another thread, capture the banner, replace the
    services with stand-ins.
    """
    out = out or sys.stdout
    environ = dict(os.environ if settings_environ is None else settings_environ)
    # The stack's own settings come from the caller, never from another stack's pqmon.env.
    settings = load_settings(environ, up_file=False)
    data_dir = settings.data_dir.absolute()
    stop = stop_event or threading.Event()
    restore = _install_stop_handlers(stop)
    mosquitto = LocalMosquitto(data_dir / "mosquitto", extra_conf="sys_interval 1\n")
    influx = LocalInflux(data_dir / "influxdb")
    inbox = DemoInbox(data_dir / "inbox.jsonl")
    env_file = up_env_file(environ)
    env_file = env_file.absolute() if env_file is not None else None
    supervisor: Supervisor | None = None
    rc = 0
    try:
        mosquitto.start()
        influx.start()
        inbox.start()
        InfluxStore(influx.url, settings.influx_db).ensure_database()

        now_ms = int(time.time() * 1000)
        since = history_start(datetime.fromtimestamp(now_ms / 1000, settings.zone)) if days is None else None
        since_ms = (
            int(datetime.combine(since, datetime.min.time(), settings.zone).timestamp() * 1000)
            if since is not None
            else now_ms - int((days or 0) * DAY_MS)
        )
        fleet = make_fleet(accounts, seed)
        fleet.write_registry_csv(data_dir / "fleet-registry.csv")
        demo_window = _demo_window(fleet, now_ms)
        registry = Registry(settings.registry_url)
        try:
            logins = seed_registry(
                registry,
                fleet,
                now_ms,
                (now_ms - since_ms) / DAY_MS,
                environ.get("PQMON_PASSWORD") or None,
                robot_url=lambda site: inbox.robot_url(f"demo-{site}"),
                extra_planned=demo_window,
                tz=settings.tz,
            )
        finally:
            registry.close()

        base = dict(os.environ)
        if settings_environ is not None:
            base = {k: v for k, v in base.items() if not k.startswith("PQMON_")}
            base.update(settings_environ)
        metrics_port = free_port() if settings.metrics_port else 0
        env = child_environ(base, settings, mosquitto.url, influx.url, dashboard_port, metrics_port)
        supervisor = Supervisor(data_dir / "logs", env)
        plan = commands or child_commands(accounts, seed, speed, days, since=since, planned=demo_window)
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
            if name == "simulate" and commands is None:  # stand-ins publish no known history
                wait_for_history(influx.url, settings.influx_db, fleet, since_ms, now_ms, stop, _alive(child))
            if stop.is_set() or supervisor.first_exited():
                break
        if env_file is not None:
            values = stack_settings(settings, mosquitto.url, influx.url, dashboard_port, metrics_port)
            write_env_file(env_file, values)
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
            since_ms=since_ms,
            speed=speed,
            env_file=env_file,
            inbox=inbox.path,
            demo_window=demo_window,
            named_env_file=bool(environ.get("PQMON_ENV_FILE")),
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
        if env_file is not None:
            remove_env_file(env_file)
        if supervisor is not None:
            supervisor.stop_all()
        inbox.stop()
        influx.stop()
        mosquitto.stop()
        restore()
    print("stopped.", file=out, flush=True)
    return rc


def _demo_window(fleet: Fleet, now_ms: int) -> tuple[PlannedCut, ...]:
    """A planned outage of the first feeder half an hour from now, so its customers' 30-minute
    confirmation goes out during the demonstration (the simulator carries the outage out)."""
    if not fleet.feeders:
        return ()
    start = (now_ms + DEMO_PLANNED_LEAD_S * 1000) // 60_000 * 60_000
    return (PlannedCut(fleet.feeders[0].site_id, start, start + DEMO_PLANNED_S * 1000),)


def wait_for_history(
    influx_url: str,
    database: str,
    fleet: Fleet,
    since_ms: int,
    now_ms: int,
    stop: threading.Event,
    alive: Callable[[], bool],
    timeout_s: float = BACKFILL_WAIT_S,
) -> bool:
    """Wait until InfluxDB holds the simulator's history up to ``now_ms``.

    Why: the worker's first pass is full and the report archiver starts right after it; a pass
    that ran before the history was stored would have the archiver issue last month's reports
    from nothing (and mark the month done).
    """
    want = sum(m.readings for m in reading_messages(fleet, since_ms, now_ms, HISTORY_INTERVAL_S))
    store = InfluxStore(influx_url, database)
    deadline = time.monotonic() + timeout_s
    have = 0
    try:
        while not stop.is_set() and alive():
            try:
                frames = store.query(f'SELECT count("f") FROM reading WHERE time >= {since_ms}ms')
                have = int(frames[0]["count"].iloc[0]) if frames and len(frames[0]) else 0
            except Exception as exc:  # InfluxDB busy with the writes: ask again
                log.debug("counting the stored history: %s", exc)
            if have >= want:
                log.info("history stored: %d readings", have)
                return True
            if time.monotonic() > deadline:
                log.warning(
                    "only %d of %d history readings stored after %gs; going on", have, want, timeout_s
                )
                return False
            stop.wait(1.0)
    finally:
        store.close()
    return False


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
    *,
    since_ms: int,
    speed: float,
    env_file: Path | None,
    inbox: Path,
    demo_window: tuple[PlannedCut, ...],
    named_env_file: bool = False,
) -> None:
    password = "(the value of PQMON_PASSWORD)" if logins.password_from_env else logins.password
    zone = settings.zone

    def local(ms: int, fmt: str = "%Y-%m-%d %H:%M") -> str:
        return datetime.fromtimestamp(ms / 1000, zone).strftime(fmt)

    lines = [
        "",
        "pqmon is up.",
        f"  dashboard   http://127.0.0.1:{dashboard_port}/",
        f"  logins      {logins.manager} (manager, {len(logins.manager_sites)} accounts)",
        f"              {logins.customer} (customer of {logins.customer_site})",
        f"              {logins.operator} (operator: every account, alerts)",
        f"              {logins.admin} (administrator: users, registry, planned outages)",
        f"  password    {password}   (shown once; set PQMON_PASSWORD to choose it)",
        f"  fleet       {len(fleet.accounts)} accounts, {len(fleet.feeders)} feeders (seed {fleet.seed}),"
        f" history from {local(since_ms, '%Y-%m-%d')} ({settings.tz})",
        f"  live        incidents {speed:g} x as often as in the history (--speed), on the wall clock",
    ]
    for cut in demo_window:
        lines.append(
            f"  planned     {cut.site_id} off {local(cut.start_ms)}-{local(cut.end_ms, '%H:%M')};"
            " its customers' notices go to the inbox"
        )
    lines += [
        f"  inbox       {inbox}",
        f"  MQTT        {mqtt_url}",
        f"  InfluxDB    {influx_url}  database {settings.influx_db}",
        f"  registry    {settings.registry_url}",
        f"  logs        {log_dir}/{{{','.join(names)}}}.log",
    ]
    if env_file is not None:
        if env_file.absolute() == (Path.cwd() / "var" / "pqmon.env").absolute():
            how = f"pqmon commands run in {Path.cwd()} use it"
        elif not named_env_file:
            how = f"pqmon commands with PQMON_DATA_DIR={settings.data_dir} use it"
        else:
            how = f"pqmon commands with PQMON_ENV_FILE={env_file} use it"
        site = fleet.accounts[0].site_id
        lines += [
            f"  settings    {env_file}: {how} while the stack runs,",
            f"              e.g. pqmon report {site} --from ... --to ...",
            f"              (or in a shell: set -a; . {env_file}; set +a)",
        ]
    lines += ["Ctrl-C stops everything.", ""]
    print("\n".join(lines), file=out, flush=True)
