"""Real Mosquitto, InfluxDB and PostgreSQL processes on free loopback ports.

``pqmon up`` runs the local stack with Mosquitto and InfluxDB and the test fixtures start
their own (PostgreSQL too, for the registry on PostgreSQL); each gets a process it owns, data
in a directory it chooses, and a clean stop.
"""

from __future__ import annotations

import getpass
import glob
import logging
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

from core.errors import PqmonError

log = logging.getLogger(__name__)

INSTALL_HINT = (
    "{binary} was not found. On Debian/Ubuntu install it with "
    "'sudo apt-get install -y mosquitto influxdb' (or run the README's first command)."
)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop_process(proc: subprocess.Popen[bytes] | None, timeout_s: float, name: str) -> None:
    """Terminate, then kill if it has not gone after ``timeout_s``."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        log.warning("%s did not stop within %gs; killing it", name, timeout_s)
        proc.kill()
        proc.wait(timeout_s)


def wait_until(predicate, timeout_s: float, what: str, interval_s: float = 0.05) -> None:  # type: ignore[no-untyped-def]
    """Poll ``predicate`` until it is true; raise TimeoutError naming ``what`` after the deadline."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval_s)
    raise TimeoutError(f"timed out after {timeout_s:g}s waiting for {what}")


def _binary(name: str, *candidates: str) -> str:
    for candidate in (name, *candidates):
        path = shutil.which(candidate)
        if path:
            return path
    raise PqmonError(INSTALL_HINT.format(binary=name))


@dataclass
class ServerProcess:
    name: str
    data_dir: Path
    port: int = 0
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def log_path(self) -> Path:
        return self.data_dir / f"{self.name}.log"

    def _spawn(self, argv: list[str], user: str | None = None) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child process
        self.proc = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            user=user,
        )
        log.close()

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _check_alive(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            tail = self.log_path.read_text(errors="replace")[-2000:]
            raise PqmonError(f"{self.name} exited with {self.proc.returncode}:\n{tail}")
        return True

    def stop(self, timeout_s: float = 10) -> None:
        stop_process(self.proc, timeout_s, self.name)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


class LocalMosquitto(ServerProcess):
    """Mosquitto with persistence on, listening on 127.0.0.1 only."""

    def __init__(self, data_dir: Path, port: int = 0, extra_conf: str = "", anonymous: bool = True) -> None:
        super().__init__("mosquitto", Path(data_dir), port)
        self.extra_conf = extra_conf
        self.anonymous = anonymous

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 15) -> LocalMosquitto:
        binary = _binary("mosquitto", "/usr/sbin/mosquitto")
        self.port = self.port or free_port()
        conf = self.data_dir / "mosquitto.conf"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            f"allow_anonymous {'true' if self.anonymous else 'false'}\n"
            # As root Mosquitto drops to user "mosquitto", who cannot write our data dir.
            f"user {getpass.getuser()}\n"
            "persistence true\n"
            f"persistence_location {self.data_dir.absolute()}/\n"
            "autosave_interval 1\n"
            "max_queued_messages 1000000\n"
            "max_inflight_messages 1000\n"
            "log_dest stdout\n"
            "log_type error\nlog_type warning\nlog_type notice\n" + self.extra_conf
        )
        self._spawn([binary, "-c", str(conf)])
        wait_until(lambda: self._check_alive() and port_open(self.port), timeout_s, "Mosquitto")
        return self


class LocalInflux(ServerProcess):
    """InfluxDB 1.x (Debian's ``influxdb``) with data, meta and WAL under ``data_dir``."""

    def __init__(self, data_dir: Path, port: int = 0) -> None:
        super().__init__("influxd", Path(data_dir), port)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 30) -> LocalInflux:
        binary = _binary("influxd", "/usr/bin/influxd")
        self.port = self.port or free_port()
        rpc_port = free_port()
        d = self.data_dir.absolute()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        conf = self.data_dir / "influxdb.conf"
        conf.write_text(
            "reporting-disabled = true\n"
            f'bind-address = "127.0.0.1:{rpc_port}"\n'
            f'[meta]\n  dir = "{d}/meta"\n'
            f'[data]\n  dir = "{d}/data"\n  wal-dir = "{d}/wal"\n  query-log-enabled = false\n'
            '  cache-max-memory-size = "1g"\n'
            f'[http]\n  bind-address = "127.0.0.1:{self.port}"\n  log-enabled = false\n'
            "  max-body-size = 0\n  max-row-limit = 0\n"
            "[monitor]\n  store-enabled = false\n"
            "[continuous_queries]\n  enabled = false\n"
        )
        self._spawn([binary, "-config", str(conf)])
        wait_until(lambda: self._check_alive() and _influx_ready(self.url), timeout_s, "InfluxDB")
        return self


POSTGRES_HINT = (
    "PostgreSQL's {binary} was not found. On Debian/Ubuntu install it with "
    "'sudo apt-get install -y postgresql' (its programs live in /usr/lib/postgresql/<version>/bin)."
)
POSTGRES_SUPERUSER = "postgres"
POSTGRES_SYSTEM_USER = "postgres"  # who runs the server when we are root (Debian's package creates it)


def _postgres_binary(name: str) -> str:
    """``name`` from PATH, else from the newest /usr/lib/postgresql/<version>/bin (where Debian puts it)."""
    found = shutil.which(name)
    if found:
        return found
    versions = sorted(
        glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
        key=lambda p: [int(x) if x.isdigit() else 0 for x in Path(p).parts[-3].split(".")],
    )
    if versions:
        return versions[-1]
    raise PqmonError(POSTGRES_HINT.format(binary=name))


class LocalPostgres(ServerProcess):
    """A throw-away PostgreSQL cluster on 127.0.0.1 with trust authentication, for tests and benchmarks.

    Never a deployment's database: anyone on the machine may connect as the superuser, and
    durability is off (``fsync=off``) so that creating a database per test is cheap. ``initdb``
    and ``postgres`` refuse to run as root, so as root the cluster belongs to the ``postgres``
    system user and lives in a directory of its own under the system's temporary directory
    (the caller's ``data_dir``, e.g. pytest's, is not reachable by that user); ``stop()``
    removes that directory. The server log is ``data_dir/postgres.log`` either way.
    """

    def __init__(self, data_dir: Path, port: int = 0) -> None:
        super().__init__("postgres", Path(data_dir), port)
        self.cluster_dir: Path | None = None
        self._own_cluster_dir = False
        self._user: str | None = None

    def database_url(self, database: str = "postgres") -> str:
        """SQLAlchemy URL of one database of this server (psycopg 3 driver)."""
        return f"postgresql+psycopg://{POSTGRES_SUPERUSER}@127.0.0.1:{self.port}/{database}"

    @property
    def url(self) -> str:
        return self.database_url()

    @property
    def _pgdata(self) -> Path:
        assert self.cluster_dir is not None, "start() the server first"
        return self.cluster_dir / "data"

    def start(self, timeout_s: float = 60) -> LocalPostgres:
        initdb, postgres = _postgres_binary("initdb"), _postgres_binary("postgres")
        self.port = self.port or free_port()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            try:
                owner = pwd.getpwnam(POSTGRES_SYSTEM_USER)
            except KeyError:
                raise PqmonError(
                    "PostgreSQL will not run as root and there is no 'postgres' system user to run it as; "
                    "'sudo apt-get install -y postgresql' creates it"
                ) from None
            self._user = POSTGRES_SYSTEM_USER
            self.cluster_dir = Path(tempfile.mkdtemp(prefix="pqmon-postgres-"))
            self._own_cluster_dir = True
            os.chown(self.cluster_dir, owner.pw_uid, owner.pw_gid)
        else:
            self.cluster_dir = self.data_dir / "pgdata"
            self.cluster_dir.mkdir(parents=True, exist_ok=True)
        self._run(
            [initdb, "-D", str(self._pgdata), "-U", POSTGRES_SUPERUSER, "--auth=trust"]
            + ["--encoding=UTF8", "--locale=C", "--no-sync"],
            "initdb",
        )
        settings = {
            "listen_addresses": "127.0.0.1",
            "unix_socket_directories": "",  # TCP on loopback only: no socket file to place or clean up
            "max_connections": "200",  # several worker processes, each with a small pool, plus the tests
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
        }
        argv = [postgres, "-D", str(self._pgdata), "-p", str(self.port)]
        for key, value in settings.items():
            argv += ["-c", f"{key}={value}"]
        self._spawn(argv, user=self._user)
        wait_until(lambda: self._check_alive() and _postgres_ready(self.port), timeout_s, "PostgreSQL")
        return self

    def _run(self, argv: list[str], what: str, timeout_s: float = 120) -> None:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout_s, check=False, user=self._user
        )
        if done.returncode != 0:
            raise PqmonError(f"{what} failed ({done.returncode}):\n{(done.stdout + done.stderr)[-2000:]}")

    def create_database(self, name: str) -> str:
        """A new empty database; its SQLAlchemy URL."""
        self._admin(f'CREATE DATABASE "{name}"')
        return self.database_url(name)

    def drop_database(self, name: str) -> None:
        """Drop it even while clients are still connected (they are disconnected)."""
        self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def _admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(_conninfo(self.port), autocommit=True) as conn:
            conn.execute(sql.encode())

    def stop(self, timeout_s: float = 30) -> None:
        """A fast shutdown (clients disconnected) by ``pg_ctl``, then the cluster's own directory goes."""
        try:
            if self.running() and self.cluster_dir is not None:
                try:
                    self._run(
                        [_postgres_binary("pg_ctl"), "stop", "-D", str(self._pgdata), "-m", "fast", "-w"]
                        + ["-t", str(max(1, int(timeout_s)))],
                        "pg_ctl stop",
                        timeout_s + 5,
                    )
                except (PqmonError, subprocess.TimeoutExpired) as exc:
                    log.warning("%s; stopping PostgreSQL by signal", exc)
            super().stop(timeout_s)
        finally:
            self._remove_cluster_dir()

    def kill(self) -> None:
        super().kill()
        self._remove_cluster_dir()

    def _remove_cluster_dir(self) -> None:
        if self._own_cluster_dir and self.cluster_dir is not None and not self.running():
            shutil.rmtree(self.cluster_dir, ignore_errors=True)
            self._own_cluster_dir = False


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def _conninfo(port: int, database: str = "postgres") -> str:
    return f"host=127.0.0.1 port={port} user={POSTGRES_SUPERUSER} dbname={database} connect_timeout=2"


def _postgres_ready(port: int) -> bool:
    """Accepting connections, not only listening: during start-up it refuses them with an error."""
    import psycopg

    try:
        with psycopg.connect(_conninfo(port)) as conn:
            conn.execute("SELECT 1")
        return True
    except psycopg.Error:
        return False


def _influx_ready(url: str) -> bool:
    try:
        return requests.get(url + "/ping", timeout=0.5).status_code == 204
    except requests.RequestException:
        return False
