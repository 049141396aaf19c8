"""``pqmon up`` end to end: the demo a new user starts shows every feature within minutes.

One real run (its own Mosquitto and InfluxDB, the five services, the simulator) with a small
fleet at a high ``--speed`` in a temporary directory, then Ctrl-C. It proves: last month's
history is there (every account has figures for last month and this month, through the
read-only API, with a token issued by a ``pqmon`` command that found the stack through
``var/pqmon.env`` alone), last month's reports are archived, live outages fire alerts that
resolve, a planned outage's customer notice reaches the demo inbox, ``pqmon report`` in
another process reaches the stack, and after SIGINT no process of the stack is left and the
settings file is gone. Costs about a minute and a half.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import requests

from core.servers import free_port, wait_until
from pqmon.stack import history_start

pytestmark = pytest.mark.integration

ACCOUNTS = 6
SPEED = 600  # the live part opens with a 70-second outage 20 s in: its alert fires and resolves
PASSWORD = "demo-test-password-1"
TZ = "Asia/Shanghai"


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PQMON_")}
    env.update(extra)
    return env


def _stack_pids(marker: str) -> set[int]:
    """Processes whose command line or environment names the demo's data dir."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            text = (entry / "cmdline").read_bytes() + b"\0" + (entry / "environ").read_bytes()
        except OSError:
            continue
        if marker.encode() in text:
            found.add(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _query(db: Path, sql: str, *args: object) -> list[tuple]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10) as con:
        return con.execute(sql, args).fetchall()


def _pqmon(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """A pqmon command as a user types it in another shell: no PQMON_ setting at all."""
    return subprocess.run(
        [sys.executable, "-m", "pqmon", *args],
        cwd=cwd,
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_pqmon_up_shows_every_feature_and_stops_clean(tmp_path: Path) -> None:
    data = tmp_path / "var"
    port = free_port()
    started_ms = int(time.time() * 1000)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pqmon",
            "up",
            "--accounts",
            str(ACCOUNTS),
            "--speed",
            str(SPEED),
            "--port",
            str(port),
        ],
        cwd=tmp_path,
        env=_clean_env(PQMON_PASSWORD=PASSWORD, PQMON_LANG="en", PQMON_TZ=TZ, PQMON_WORKER_INTERVAL_S="5"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    output: list[str] = []
    reader = threading.Thread(target=lambda: output.extend(iter(proc.stdout.readline, "")), daemon=True)  # type: ignore[union-attr]
    reader.start()
    registry = data / "registry.db"
    env_file = data / "pqmon.env"
    try:
        wait_until(lambda: "pqmon is up." in "".join(output) or proc.poll() is not None, 120, "the banner")
        assert proc.poll() is None, "".join(output)
        banner = "".join(output)
        assert "history from" in banner and str(env_file) in banner
        assert env_file.stat().st_mode & 0o777 == 0o600
        stack = _stack_pids(str(data)) | {proc.pid}
        assert len(stack) >= 8, stack  # up, five services, Mosquitto, InfluxDB

        # Last month's reports, issued by the worker's archiver after its first pass.
        now = datetime.now(ZoneInfo(TZ))
        last_month = history_start(now)
        month = f"{last_month:%Y-%m}"
        wait_until(
            lambda: (
                _query(registry, "SELECT count(*) FROM report_issue WHERE month = ?", month)[0][0] == ACCOUNTS
            ),
            90,
            f"every account's report of {month}",
        )
        for (path,) in _query(registry, "SELECT path FROM report_issue WHERE month = ?", month):
            assert Path(path).is_file()

        # Another shell in the same checkout, nothing but var/pqmon.env: a token, then the API.
        issued = _pqmon(tmp_path, "user", "token", "demo_operator", "--label", "test")
        assert issued.returncode == 0, issued.stderr
        token = issued.stdout.strip().splitlines()[-1]
        this_month_first = now.date().replace(day=1)
        periods = [(last_month, this_month_first - timedelta(days=1)), (this_month_first, now.date())]
        for day_from, day_to in periods:
            reply = requests.get(
                f"http://127.0.0.1:{port}/api/v1/fleet/report",
                params={"from": day_from.isoformat(), "to": day_to.isoformat()},
                headers={"Authorization": f"Bearer {token}"},
                timeout=60,
            )
            assert reply.status_code == 200, reply.text
            body = reply.json()
            rows = body["sites"]
            assert body["accounts"] == len(rows) == ACCOUNTS
            assert all(r["vqr_pct"] is not None and r["monitored_min"] > 0 for r in rows), rows

        site = "A001"
        report = _pqmon(
            tmp_path,
            "report",
            site,
            "--from",
            last_month.isoformat(),
            "--to",
            f"{this_month_first - timedelta(days=1)}",
        )
        assert report.returncode == 0, report.stderr
        figures = json.loads(report.stdout)
        assert figures["site"] == site and figures["monitored_min"] > 20 * 1440

        # The planned window's 30-minute confirmation reaches its customers through the inbox.
        inbox = data / "inbox.jsonl"
        wait_until(lambda: inbox.is_file() and inbox.read_text().strip(), 120, "a notice in the demo inbox")
        assert "demo-A" in inbox.read_text()

        # Live outages (after start-up) fire alerts and resolve them.
        def live_resolved() -> int:
            return _query(
                registry,
                "SELECT count(*) FROM alert WHERE rule = 'outage' AND state = 'resolved' AND started_ms >= ?",
                started_ms,
            )[0][0]

        wait_until(lambda: live_resolved() > 0, 150, "a live outage alert that resolved")
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        try:
            proc.wait(90)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
        finally:
            reader.join(10)
            proc.stdout.close()  # type: ignore[union-attr]
    assert proc.returncode == 0, "".join(output)[-3000:]
    assert "stopped." in "".join(output)
    wait_until(
        lambda: not any(_alive(p) for p in _stack_pids(str(data))), 10, "every process of the stack to end"
    )
    assert not env_file.exists()
