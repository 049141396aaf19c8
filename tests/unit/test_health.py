"""``pqmon health``: each check turns unhealthy when its service stops doing its work (about 1 s)."""

from __future__ import annotations

import socket
import time
from pathlib import Path

from sqlalchemy.orm import Session

from analysis.alerts.state import OutboxRow
from analysis.worker import LAST_PASS_KEY
from collector.metrics import MetricsServer
from core.registry import Registry
from core.settings import Settings, load_settings
from pqmon import health
from pqmon.cli import main


def settings_for(tmp_path: Path, **extra: str) -> Settings:
    return load_settings({"PQMON_DATA_DIR": str(tmp_path), **extra})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_marker_is_the_workers() -> None:
    assert health.LAST_PASS_KEY == LAST_PASS_KEY


def test_worker_is_healthy_only_while_passes_are_recent(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, PQMON_WORKER_INTERVAL_S="60")
    registry = Registry(settings.registry_url)
    try:
        ok, detail = health.check_worker(settings, 780)
        assert not ok and "no analysis pass" in detail
        registry.set_state(LAST_PASS_KEY, str(int((time.time() - 30) * 1000)))
        assert health.check_worker(settings, 780)[0]
        registry.set_state(LAST_PASS_KEY, str(int((time.time() - 3600) * 1000)))
        ok, detail = health.check_worker(settings, 780)
        assert not ok and "3600s ago" in detail
    finally:
        registry.close()
    assert health.default_max_age_s("worker", settings) == 3 * 60 + 600


def test_alerts_unhealthy_when_a_due_notification_waits(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    registry = Registry(settings.registry_url)
    try:
        assert health.check_alerts(settings, 300)[0]
        now_ms = int(time.time() * 1000)
        with Session(registry.engine) as s, s.begin():
            row = dict(incident_id=1, kind="page", channel="ops", severity="major", site_id="A1", title="t",
                       body="b", payload="{}", created_ms=now_ms, attempts=0)  # fmt: skip
            s.add(OutboxRow(state="pending", due_ms=now_ms - 10_000, **row))  # due, within the lag
            s.add(OutboxRow(state="sent", due_ms=now_ms - 3_600_000, **row))  # delivered long ago
        assert health.check_alerts(settings, 300)[0]
        with Session(registry.engine) as s, s.begin():
            s.add(OutboxRow(state="pending", due_ms=now_ms - 900_000, **row))
        ok, detail = health.check_alerts(settings, 300)
        assert not ok and "to ops has been due for 900s" in detail
    finally:
        registry.close()


def test_registry_check_reports_an_unreachable_database(tmp_path: Path) -> None:
    assert health.check_registry(settings_for(tmp_path))[0]
    port = free_port()  # nothing listens there
    ok, detail = health.check_registry(
        settings_for(tmp_path, PQMON_REGISTRY_URL=f"postgresql://u:secretpw@127.0.0.1:{port}/x")
    )
    assert not ok and "registry" in detail and "secretpw" not in detail


def test_collector_check_follows_its_healthz(tmp_path: Path) -> None:
    state = {"ok": True}
    server = MetricsServer(
        "127.0.0.1", 0, lambda: ({}, {}), lambda: (state["ok"], {"ok": state["ok"]})
    ).start()
    try:
        settings = settings_for(tmp_path, PQMON_METRICS_PORT=str(server.port), PQMON_DASHBOARD_HOST="0.0.0.0")
        assert health.check_collector(settings)[0]
        state["ok"] = False
        ok, detail = health.check_collector(settings)
        assert not ok and "503" in detail
    finally:
        server.stop()
    assert not health.check_collector(settings)[0]  # nothing listens any more
    assert not health.check_collector(settings_for(tmp_path, PQMON_METRICS_PORT="0"))[0]


def test_auto_finds_the_service_of_a_command_line() -> None:
    assert health.target_of(["/opt/venv/bin/python", "/opt/venv/bin/pqmon", "collector"]) == "collector"
    assert health.target_of(["python", "-m", "pqmon", "-v", "alerts", "run"]) == "alerts"
    assert health.target_of(["/sbin/docker-init", "--", "pqmon", "worker"]) == "worker"
    assert health.target_of(["pqmon", "simulate", "--accounts", "5"]) == "mqtt"
    assert health.target_of(["pqmon", "db", "upgrade"]) is None
    assert health.target_of(["mosquitto", "-c", "x"]) is None


def test_the_command_exits_1_when_unhealthy(tmp_path: Path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("PQMON_DATA_DIR", str(tmp_path))
    Registry(load_settings().registry_url).close()
    assert main(["health", "worker"]) == 1
    assert "unhealthy: no analysis pass" in capsys.readouterr().out
    assert main(["health", "registry"]) == 0
