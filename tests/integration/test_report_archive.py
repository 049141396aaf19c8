"""Issued monthly reports: version 1 after the month, version 2 when late data changes a
figure (listed old and new, its users told), version 1 kept; nothing new when nothing changed."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from analysis.alerts.state import OutboxRow
from analysis.alerts.subscriptions import subscribe
from core.calendar import MINUTE_MS, day_start_ms
from core.lineproto import line
from core.registry import Registry
from core.store import InfluxStore
from reports.archive import DONE_KEY, issue_of, issues
from tests.conftest import run_pqmon

pytestmark = pytest.mark.integration

TZ = "Asia/Shanghai"
REGISTRY = """site_id,site_kind,name,voltage_class_kv,phases,meter_id,nominal_v,upper_pct,lower_pct,profile,feeder_id,manager
A002,account,面包房,0.38,3,A002-M1,220,,,gb,,
A003,account,学校,0.38,3,A003-M1,220,,,gb,,
"""


def write_day(store: InfluxStore, site: str, day: date, volts: float = 221.0) -> None:
    start = day_start_ms(day, TZ)
    store.write(
        line(
            "reading",
            {"site": site, "meter": f"{site}-M1", "side": "customer"},
            {"ua": volts, "ub": volts, "uc": volts, "interval_s": 60.0},
            start + m * MINUTE_MS,
        )
        for m in range(1440)
    )


def test_late_data_issues_version_2_and_keeps_version_1(pqmon_env: dict[str, str], tmp_path: Path) -> None:
    env = {**pqmon_env, "PQMON_TZ": TZ, "PQMON_REPORT_WORKERS": "2"}
    (tmp_path / "reg.csv").write_text(REGISTRY, encoding="utf-8")
    assert run_pqmon(env, "registry", "import", str(tmp_path / "reg.csv")).returncode == 0
    today = datetime.now(ZoneInfo(TZ)).date()
    last = today.replace(day=1) - timedelta(days=1)
    month = f"{last:%Y-%m}"
    first_day = last.replace(day=1) + timedelta(days=2)
    store = InfluxStore(env["PQMON_INFLUX_URL"], env["PQMON_INFLUX_DB"])
    store.ensure_database()
    for d in range(3):
        write_day(store, "A002", first_day + timedelta(days=d))
        write_day(store, "A003", first_day + timedelta(days=d))
    assert run_pqmon(env, "worker", "--once").returncode == 0

    done = run_pqmon(env, "reports", "archive", "--month", month)
    assert done.returncode == 0, done.stderr
    assert "2 issued" in done.stdout, done.stdout
    registry = Registry(env["PQMON_REGISTRY_URL"])
    registry.add_user("cust", "customer", "a-long-password-1", sites=["A002"])
    sub_id = subscribe(registry, "cust", "webhook", "http://127.0.0.1:9/hook")
    v1 = issue_of(registry, "A002", month)
    assert v1 is not None and v1.version == 1 and registry.get_state(DONE_KEY + month)
    v1_pdf = v1.pdf_path("zh-CN").read_bytes()
    assert v1_pdf.startswith(b"%PDF-") and v1.path.exists()

    # Nothing new: a second run issues nothing.
    done = run_pqmon(env, "reports", "archive", "--month", month)
    assert done.returncode == 0 and "0 issued" in done.stdout, done.stdout
    assert [i.version for i in issues(registry, ["A002"], month)] == [1]

    # Late data: a day of low voltage in the closed month, delivered and marked as the collector does.
    late_day = first_day + timedelta(days=5)
    write_day(store, "A002", late_day, volts=190.0)
    registry.mark_dirty([("A002", late_day)])
    store.close()
    assert run_pqmon(env, "worker", "--once").returncode == 0
    done = run_pqmon(env, "reports", "archive", "--month", month)
    assert done.returncode == 0, done.stderr
    assert "1 new versions" in done.stdout, done.stdout

    versions = issues(registry, ["A002"], month)
    assert [i.version for i in versions] == [2, 1]
    v2 = versions[0]
    changed = {c["figure"]: c for c in v2.changes}
    old_report = json.loads(v1.path.read_text())["report"]
    new_report = json.loads(v2.path.read_text())["report"]
    assert new_report["vqr_pct"] < old_report["vqr_pct"]
    assert changed["vqr_pct"]["old"] == pytest.approx(old_report["vqr_pct"])
    assert changed["vqr_pct"]["new"] == pytest.approx(new_report["vqr_pct"])
    assert "coverage_pct" in changed and "phases.a.min_v" in changed
    # Version 1 is still there, unchanged; version 2's PDF lists the changes.
    assert v1.pdf_path("zh-CN").read_bytes() == v1_pdf
    text = subprocess.run(
        ["pdftotext", "-layout", str(v2.pdf_path("zh-CN")), "-"], capture_output=True, text=True, check=True
    ).stdout
    assert "相对第 1 版的变更" in text
    assert changed["vqr_pct"]["old_text"] in text and changed["vqr_pct"]["new_text"] in text
    # A003 had no late data: no version 2.
    assert [i.version for i in issues(registry, ["A003"], month)] == [1]
    # The customer of A002 is told through their subscription, once.
    with Session(registry.engine) as s:
        notices = s.scalars(select(OutboxRow).where(OutboxRow.kind == "report")).all()
    assert [(n.channel, n.site_id) for n in notices] == [(f"sub:{sub_id}", "A002")]
    assert changed["vqr_pct"]["new_text"] in notices[0].body

    listed = run_pqmon(env, "reports", "list", "A002")
    assert listed.returncode == 0 and "v2" in listed.stdout and "v1" in listed.stdout
    registry.close()


def test_the_running_worker_issues_the_closed_month_by_itself(
    pqmon_env: dict[str, str], tmp_path: Path
) -> None:
    """``pqmon worker`` (the service, as ``pqmon up`` runs it) archives last month on its own."""
    env = {**pqmon_env, "PQMON_TZ": TZ, "PQMON_REPORT_DELAY_H": "0.001", "PQMON_WORKER_INTERVAL_S": "1"}
    (tmp_path / "reg.csv").write_text(REGISTRY, encoding="utf-8")
    assert run_pqmon(env, "registry", "import", str(tmp_path / "reg.csv")).returncode == 0
    today = datetime.now(ZoneInfo(TZ)).date()
    last = today.replace(day=1) - timedelta(days=1)
    store = InfluxStore(env["PQMON_INFLUX_URL"], env["PQMON_INFLUX_DB"])
    store.ensure_database()
    write_day(store, "A002", last)
    store.close()
    log = (tmp_path / "worker.log").open("wb")
    worker = subprocess.Popen([sys.executable, "-m", "pqmon", "worker"], env=env, stdout=log, stderr=log)
    registry = Registry(env["PQMON_REGISTRY_URL"])
    try:
        deadline = time.monotonic() + 120
        while not issues(registry, ["A002"]) and time.monotonic() < deadline and worker.poll() is None:
            time.sleep(0.5)
        found = issues(registry, ["A002"])
        assert [(i.month, i.version) for i in found] == [(f"{last:%Y-%m}", 1)], (
            tmp_path / "worker.log"
        ).read_text()
        assert found[0].pdf_path("zh-CN").read_bytes().startswith(b"%PDF-")
        assert issues(registry, ["A003"]) == []  # no data in that month: nothing to report
    finally:
        worker.terminate()
        worker.wait(30)
        log.close()
        registry.close()


def test_a_month_not_over_is_refused(pqmon_env: dict[str, str]) -> None:
    month = f"{datetime.now(ZoneInfo('Asia/Shanghai')).date():%Y-%m}"
    done = run_pqmon({**pqmon_env, "PQMON_TZ": TZ}, "reports", "archive", "--month", month)
    assert done.returncode != 0 and "not over" in done.stderr
