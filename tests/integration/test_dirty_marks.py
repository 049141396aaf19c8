"""Every way data enters marks its (site, local day) dirty, so an incremental pass takes it in;
and a worker pass on a database that does not exist yet has nothing to do, and says so."""

from __future__ import annotations

import csv
from datetime import date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import requests

from core.calendar import day_start_ms
from core.registry import Registry
from core.store import InfluxStore
from tests.conftest import BOTH_REGISTRIES, run_pqmon
from tests.integration.mqtt_support import REGISTRY_HEADER

pytestmark = [pytest.mark.integration, BOTH_REGISTRIES]  # the registry on SQLite and on PostgreSQL

TZ = "Asia/Shanghai"


def databases(influx_url: str) -> set[str]:
    answer = requests.post(f"{influx_url}/query", data={"q": "SHOW DATABASES"}, timeout=10).json()
    return {row[0] for s in answer["results"][0].get("series", []) for row in s.get("values", [])}


def local_ms(day: date, hour: int, minute: int) -> int:
    return int(datetime.combine(day, time(hour, minute), ZoneInfo(TZ)).timestamp() * 1000)


def write_export(path: Path, rows: list[tuple[str, str, str]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["site", "meter", "timestamp", "ua", "ub", "uc"])
        writer.writerows([site, meter, ts, "220.5", "221.0", "219.5"] for site, meter, ts in rows)


def dirty(env: dict[str, str]) -> dict[str, set[date]]:
    registry = Registry(env["PQMON_REGISTRY_URL"])
    try:
        return registry.dirty_days()
    finally:
        registry.close()


def test_worker_once_on_a_database_that_does_not_exist(pqmon_env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "reg.csv").write_text(REGISTRY_HEADER + "A001,account,Works,0.38,3,M1,220,,,gb,,\n")
    assert run_pqmon(pqmon_env, "registry", "import", str(tmp_path / "reg.csv")).returncode == 0
    db = pqmon_env["PQMON_INFLUX_DB"]
    assert db not in databases(pqmon_env["PQMON_INFLUX_URL"])

    done = run_pqmon(pqmon_env, "worker", "--once")
    assert done.returncode == 0, done.stderr
    assert "nothing to do" in done.stdout and f"no database '{db}' yet" in done.stdout
    assert db not in databases(pqmon_env["PQMON_INFLUX_URL"])  # reading never creates it
    again = run_pqmon(pqmon_env, "worker", "--once")  # the second pass is incremental: still fine
    assert again.returncode == 0 and "incremental" in again.stdout, again.stderr


def test_import_and_replay_mark_the_local_days_they_store(pqmon_env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "reg.csv").write_text(REGISTRY_HEADER + "A001,account,Works,0.38,3,M1,220,,,gb,,\n")
    assert run_pqmon(pqmon_env, "registry", "import", str(tmp_path / "reg.csv")).returncode == 0
    first = run_pqmon(pqmon_env, "worker", "--once")
    assert first.returncode == 0 and "full pass" in first.stdout, first.stderr

    # Local 23:00 to 01:00 across midnight is 15:00 to 17:00 UTC of one UTC day: two local days.
    day = datetime.now(ZoneInfo(TZ)).date() - timedelta(days=3)
    minutes = range(local_ms(day, 23, 0), local_ms(day + timedelta(days=1), 1, 0), 60_000)
    early = day - timedelta(days=2)  # an unknown meter's reading, at 07:00 local (23:00 UTC the day before)
    rows = [
        ("A001", "M1", str(ms) if i % 2 else datetime.fromtimestamp(ms / 1000, ZoneInfo(TZ)).isoformat())
        for i, ms in enumerate(minutes)
    ]
    rows.append(("A002", "M9", str(local_ms(early, 7, 0))))
    write_export(tmp_path / "export.csv", rows)
    done = run_pqmon(pqmon_env, "import", "readings", str(tmp_path / "export.csv"), "--quiet")
    assert done.returncode == 0, done.stderr
    assert "120 stored, 1 dead-lettered" in done.stdout
    assert dirty(pqmon_env) == {"A001": {day, day + timedelta(days=1)}}

    incremental = run_pqmon(pqmon_env, "worker", "--once")
    assert incremental.returncode == 0 and "incremental" in incremental.stdout, incremental.stderr
    store = InfluxStore(pqmon_env["PQMON_INFLUX_URL"], pqmon_env["PQMON_INFLUX_DB"])
    try:
        rolled = store.query_frame("SELECT monitored_min FROM vq_daily WHERE site = 'A001' AND phase = 'all'")
    finally:
        store.close()
    by_day = dict(zip(rolled["time"], rolled["monitored_min"], strict=True))
    # 60 monitored minutes on each side of midnight, pooled over the three phases
    assert by_day[day_start_ms(day, TZ)] == 180 and by_day[day_start_ms(day + timedelta(days=1), TZ)] == 180
    assert dirty(pqmon_env) == {}

    # Once its meter is registered, the dead-lettered reading is replayed: its local day is dirty.
    (tmp_path / "reg2.csv").write_text(REGISTRY_HEADER + "A002,account,Depot,0.38,3,M9,220,,,gb,,\n")
    assert run_pqmon(pqmon_env, "registry", "import", str(tmp_path / "reg2.csv")).returncode == 0
    replayed = run_pqmon(pqmon_env, "deadletter", "replay")
    assert replayed.returncode == 0 and "1 point(s) stored" in replayed.stdout, replayed.stderr
    assert dirty(pqmon_env) == {"A002": {early}}
