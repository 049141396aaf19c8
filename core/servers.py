"""Real Mosquitto and InfluxDB processes on free loopback ports.

``pqmon up`` runs the local stack with them and the test fixtures start their own;
both get a process they own, data in a directory they choose, and a clean stop.
"""

from __future__ import annotations

import getpass
import logging
import shutil
import socket
import subprocess
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

    def _spawn(self, argv: list[str]) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child process
        self.proc = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
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


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def _influx_ready(url: str) -> bool:
    try:
        return requests.get(url + "/ping", timeout=0.5).status_code == 204
    except requests.RequestException:
        return False
