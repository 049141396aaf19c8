"""``pqmon health``: one cheap check per service that it is doing its work, for container health checks.

Each check looks at the service's own evidence of work, not merely at a live process (a container
whose main process died has stopped anyway):

- ``collector``: its ``/healthz`` on ``PQMON_METRICS_PORT`` answers 200: connected to the broker,
  InfluxDB taking writes, no fatal error.
- ``dashboard``: ``GET /login`` answers 200. The sign-in page is public and shows nothing of any
  account, so no route had to be added; it proves the web server, the app and its templates serve.
- ``worker``: the last analysis pass began less than ``--max-age`` ago (the ``worker.last_pass_ms``
  row the worker writes in the registry after every pass). A worker whose passes keep failing,
  because InfluxDB is away for instance, writes no such row and turns unhealthy.
- ``alerts``: no notification has been due for longer than ``--max-age`` and still waits in the
  registry's outbox, i.e. the alert service is picking up what it owes. With nothing owed it checks
  that the registry answers.
- ``mqtt``: the broker of ``PQMON_MQTT_URL`` accepts this service's credentials (the simulator's
  check: it publishes nothing while the broker refuses it).
- ``registry``: the registry database accepts a connection. The migrate service of
  docker-compose.yml waits on it (``--wait``) before ``pqmon db upgrade``, as PostgreSQL may still
  be starting.

``auto`` (the default, and the image's HEALTHCHECK) picks the check of the command the container
runs, read from ``/proc/1/cmdline``.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from core.settings import Settings

TARGETS = ("auto", "collector", "dashboard", "worker", "alerts", "mqtt", "registry")
HTTP_TIMEOUT_S = 5.0
# Service command (the words after ``pqmon``) -> the check that fits it.
COMMANDS = {
    ("collector",): "collector",
    ("dashboard",): "dashboard",
    ("worker",): "worker",
    ("alerts", "run"): "alerts",
    ("simulate",): "mqtt",
}
# The worker's marker, a copy of analysis.worker.LAST_PASS_KEY (not imported: that pulls in pandas).
LAST_PASS_KEY = "worker.last_pass_ms"
ALERTS_MAX_AGE_S = 300.0

Result = tuple[bool, str]


def default_max_age_s(target: str, settings: Settings) -> float:
    """How old the evidence may be. The worker's marker is the start of its last pass, so allow
    the pause between passes three times over plus ten minutes for a long (full) pass."""
    if target == "worker":
        return 3 * settings.worker_interval_s + 600
    return ALERTS_MAX_AGE_S


def _local(host: str) -> str:
    """The address to reach a server listening on ``host`` from inside its own container."""
    return {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(host, host)


def _http_200(url: str) -> Result:
    try:
        with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT_S) as resp:
            body = resp.read(500).decode("utf-8", "replace").strip()
            return resp.status == 200, f"{url}: {resp.status} {body}".strip()
    except urllib.error.HTTPError as exc:
        body = exc.read(500).decode("utf-8", "replace").strip()
        return False, f"{url}: {exc.code} {body}".strip()
    except (OSError, ValueError) as exc:
        return False, f"{url}: {exc}"


def _url(host: str, port: int, path: str) -> str:
    host = _local(host)
    return f"http://[{host}]:{port}{path}" if ":" in host else f"http://{host}:{port}{path}"


def check_collector(settings: Settings) -> Result:
    if not settings.metrics_port:
        return False, "PQMON_METRICS_PORT is 0: the collector serves no /healthz; set it (e.g. 9108)"
    return _http_200(_url(settings.dashboard_host, settings.metrics_port, "/healthz"))


def check_dashboard(settings: Settings) -> Result:
    return _http_200(_url(settings.dashboard_host, settings.dashboard_port, "/login"))


def _engine(settings: Settings):  # type: ignore[no-untyped-def]
    """An engine on the registry that changes nothing (no schema upgrade, unlike core.registry.Registry)."""
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    url = make_url(settings.registry_url)
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    return create_engine(url, pool_pre_ping=False)


def _with_registry(settings: Settings, query: Callable[..., Result]) -> Result:
    from sqlalchemy.exc import SQLAlchemyError

    try:
        engine = _engine(settings)
    except Exception as exc:  # a malformed URL: SQLAlchemy raises several kinds
        return False, f"PQMON_REGISTRY_URL is not usable: {exc}"
    try:
        with engine.connect() as conn:
            return query(conn)
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        where = engine.url.render_as_string(hide_password=True)
        return False, f"registry {where}: {reason}"
    finally:
        engine.dispose()


def check_registry(settings: Settings) -> Result:
    from sqlalchemy import text

    def query(conn) -> Result:  # type: ignore[no-untyped-def]
        conn.execute(text("SELECT 1"))
        return True, "the registry database answers"

    return _with_registry(settings, query)


def check_worker(settings: Settings, max_age_s: float, now: Callable[[], float] = time.time) -> Result:
    from sqlalchemy import text

    def query(conn) -> Result:  # type: ignore[no-untyped-def]
        value = conn.execute(
            text("SELECT value FROM worker_state WHERE key = :key"), {"key": LAST_PASS_KEY}
        ).scalar()
        if value is None:
            return False, "no analysis pass has finished yet (the first one may still be running)"
        age = now() - int(value) / 1000
        if age > max_age_s:
            return False, (
                f"the last analysis pass began {age:.0f}s ago, more than {max_age_s:.0f}s: the worker"
                " is stuck or its passes fail (see its log)"
            )
        return True, f"the last analysis pass began {age:.0f}s ago"

    return _with_registry(settings, query)


def check_alerts(settings: Settings, max_age_s: float, now: Callable[[], float] = time.time) -> Result:
    from sqlalchemy import text

    def query(conn) -> Result:  # type: ignore[no-untyped-def]
        row = conn.execute(
            text(
                "SELECT channel, due_ms FROM alert_outbox WHERE state = 'pending' AND due_ms < :before"
                " ORDER BY due_ms LIMIT 1"
            ),
            {"before": int((now() - max_age_s) * 1000)},
        ).first()
        if row is not None:
            waited = now() - row.due_ms / 1000
            return False, (
                f"a notification to {row.channel} has been due for {waited:.0f}s, more than"
                f" {max_age_s:.0f}s: the alert service is not delivering (see its log)"
            )
        return True, f"no notification waits longer than {max_age_s:.0f}s"

    return _with_registry(settings, query)


def check_mqtt(settings: Settings, timeout_s: float = HTTP_TIMEOUT_S) -> Result:
    import os
    import ssl

    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    target = settings.mqtt
    where = f"{'mqtts' if target.tls else 'mqtt'}://{target.host}:{target.port}"
    answer: list[object] = []
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"pqmon-health-{os.getpid()}")
    client.on_connect = lambda _c, _u, _f, reason, _p: answer.append(reason)
    if target.username:
        client.username_pw_set(target.username, target.password)
    try:
        if target.tls:
            client.tls_set(ca_certs=settings.mqtt_ca_file or None, cert_reqs=ssl.CERT_REQUIRED)
        client.connect(target.host, target.port, keepalive=10)
        deadline = time.monotonic() + timeout_s
        while not answer and time.monotonic() < deadline:
            client.loop(timeout=0.2)
    except (OSError, ValueError) as exc:
        return False, f"{where}: {exc}"
    finally:
        client.disconnect()
    if not answer:
        return False, f"{where}: no answer to CONNECT within {timeout_s:g}s"
    reason = answer[0]
    if getattr(reason, "is_failure", False):
        return False, f"{where} refused {target.username or 'anonymous'}: {reason}"
    return True, f"{where} accepts {target.username or 'anonymous'}"


def target_of(cmdline: list[str]) -> str | None:
    """The check for a command line such as ``python /venv/bin/pqmon alerts run`` (None: none fits)."""
    words = list(cmdline)
    if "--" in words:  # docker-init / tini: the service's command follows
        words = words[words.index("--") + 1 :]
    for i, word in enumerate(words):
        if Path(word).name == "pqmon" or (word == "pqmon" and i and words[i - 1] == "-m"):
            rest = [w for w in words[i + 1 :] if not w.startswith("-")]
            for command, target in COMMANDS.items():
                if tuple(rest[: len(command)]) == command:
                    return target
            return None
    return None


def pid1_cmdline() -> list[str]:
    try:
        raw = Path("/proc/1/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode("utf-8", "replace") for part in raw.split(b"\0") if part]


def check(target: str, settings: Settings, max_age_s: float | None = None) -> Result:
    if target == "auto":
        found = target_of(pid1_cmdline())
        if found is None:
            return True, f"nothing to check for {' '.join(pid1_cmdline()) or 'this process'}"
        target = found
    age = default_max_age_s(target, settings) if max_age_s is None else max_age_s
    if target == "collector":
        return check_collector(settings)
    if target == "dashboard":
        return check_dashboard(settings)
    if target == "worker":
        return check_worker(settings, age)
    if target == "alerts":
        return check_alerts(settings, age)
    if target == "mqtt":
        return check_mqtt(settings)
    if target == "registry":
        return check_registry(settings)
    raise ValueError(f"unknown health target {target!r}; one of {', '.join(TARGETS)}")


def run(target: str, settings: Settings, wait_s: float = 0.0, max_age_s: float | None = None) -> int:
    """Print the check's finding; 0 when healthy, 1 when not. With ``wait_s``, check again each
    second until healthy or that many seconds have passed (scripts waiting for a service)."""
    deadline = time.monotonic() + wait_s
    while True:
        ok, detail = check(target, settings, max_age_s)
        if ok or time.monotonic() >= deadline:
            print(f"{'healthy' if ok else 'unhealthy'}: {detail}")
            return 0 if ok else 1
        time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
