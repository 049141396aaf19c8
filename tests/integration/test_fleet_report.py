"""Fleet report and planned outages, on real InfluxDB, through the command line."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from core.calendar import MINUTE_MS, day_start_ms
from core.lineproto import line
from core.store import InfluxStore
from tests.conftest import run_pqmon

pytestmark = pytest.mark.integration

TZ = "Asia/Shanghai"
REGISTRY = """site_id,site_kind,name,voltage_class_kv,phases,meter_id,nominal_v,upper_pct,lower_pct,profile,feeder_id,manager
F01,feeder,Feeder 1,10,3,F01-M1,57.735,,,gb,,
A001,account,Foundry,10,3,A001-M1,57.735,,,gb,F01,mgr1
A002,account,Bakery,0.38,3,A002-M1,220,,,gb,F01,mgr1
A003,account,School,0.22,1,A003-M1,220,,,gb,,mgr2
A004,account,Depot,0.38,3,A004-M1,220,,,gb,,mgr2
"""


def write_day(
    store: InfluxStore,
    site: str,
    nominal: float,
    day_start: int,
    low_minutes: range = range(0),
    silent: range = range(0),
) -> None:
    """A day of one-minute readings; ``silent`` minutes have none (the meter was off)."""
    lines = []
    for m in range(1440):
        if m in silent:
            continue
        v = nominal * (0.90 if m in low_minutes else 1.0)
        lines.append(
            line(
                "reading",
                {"site": site, "meter": f"{site}-M1", "side": "customer"},
                {"ua": v, "ub": v, "uc": v, "interval_s": 60.0},
                day_start + m * MINUTE_MS,
            )
        )
    store.write(lines)


def test_fleet_report_with_planned_outage_and_last_mile(pqmon_env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "reg.csv").write_text(REGISTRY)
    assert run_pqmon(pqmon_env, "registry", "import", str(tmp_path / "reg.csv")).returncode == 0
    store = InfluxStore(pqmon_env["PQMON_INFLUX_URL"], pqmon_env["PQMON_INFLUX_DB"])
    store.ensure_database()
    day = datetime.now(ZoneInfo(TZ)).date() - timedelta(days=2)
    start = day_start_ms(day, TZ)
    write_day(store, "F01", 57.735, start)
    write_day(store, "A001", 57.735, start, low_minutes=range(0, 144))  # 10 % of the day at -10 %
    write_day(store, "A002", 220.0, start, silent=range(540, 660))
    write_day(store, "A003", 220.0, start)
    write_day(store, "A004", 220.0, start, silent=range(100, 102))
    events = [  # A002: 2 hours from 09:00 (planned on its feeder); A004: a 2-minute blip
        ("A002", "power_off", start + 540 * MINUTE_MS),
        ("A002", "power_on", start + 660 * MINUTE_MS),
        ("A004", "power_off", start + 100 * MINUTE_MS),
        ("A004", "power_on", start + 102 * MINUTE_MS),
    ]
    store.write(
        line("event", {"site": s, "meter": f"{s}-M1", "type": t}, {"event_id": f"{s}-{t}"}, ts)
        for s, t, ts in events
    )
    assert run_pqmon(pqmon_env, "worker", "--once").returncode == 0

    local = f"{day.isoformat()}T08:30"
    planned = run_pqmon(
        pqmon_env, "planned", "add", "F01", "--from", local, "--to", f"{day.isoformat()}T12:00"
    )
    assert planned.returncode == 0, planned.stderr
    assert "A001" in planned.stdout and "A002" in planned.stdout  # a feeder's window covers its accounts
    second = run_pqmon(pqmon_env, "worker", "--once")
    assert "incremental" in second.stdout

    done = run_pqmon(pqmon_env, "report", "--fleet", "--from", day.isoformat(), "--to", day.isoformat())
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    sites = {row["site"]: row for row in report["sites"]}
    assert set(sites) == {"A001", "A002", "A003", "A004"}  # accounts only, not the feeder
    assert sites["A001"]["vqr_pct"] == pytest.approx(90.0)
    assert sites["A001"]["supply_vqr_pct"] == 100.0
    assert [row["site"] for row in report["last_mile"]] == ["A001"]
    assert sites["A002"]["rs1_pct"] == pytest.approx((1 - 7200 / 86400) * 100)

    ieee = report["reliability"]["ieee1366"]["all_days"]
    # One sustained interruption (A002, 120 min) among 4 customers; A004's 2 minutes are momentary.
    assert ieee["saifi"] == pytest.approx(1 / 4)
    assert ieee["saidi_min"] == pytest.approx(120 / 4)
    assert ieee["maifi"] == pytest.approx(1 / 4)
    dlt = report["reliability"]["dlt836"]["excluding_short"]
    assert dlt["aihc_planned_h"] == pytest.approx(2 / 4)  # the planned window made it planned
    assert dlt["rs1_pct"] == pytest.approx((1 - (2 / 4) / 24) * 100)
    assert report["voltage"]["vqr_pooled_pct"] == pytest.approx(
        (1 - 3 * 144 / (3 * 1440 + 3 * 1320 + 1440 + 3 * 1438)) * 100
    )

    a002 = json.loads(
        run_pqmon(pqmon_env, "report", "A002", "--from", day.isoformat(), "--to", day.isoformat()).stdout
    )
    assert a002["outages"]["planned"] == 1 and a002["outages"]["unplanned"] == 0
    csv_out = run_pqmon(
        pqmon_env, "report", "--fleet", "--from", day.isoformat(), "--to", day.isoformat(), "--format", "csv"
    ).stdout.splitlines()
    assert csv_out[0].startswith("site,name,manager,feeder,vqr_pct") and len(csv_out) == 5
    store.close()
    assert np.isfinite(report["voltage"]["vqr_mean_pct"])
