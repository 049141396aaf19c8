"""Major event days from history (IEEE 1366 Annex B): T_MED from the fleet's stored daily SAIDI
of the days before the period, or from the period itself, and the report says which.

The derived series are written straight into a real InfluxDB, as the worker would have
left them after more than a year; T_MED is then recomputed here independently.
"""

from __future__ import annotations

import json
import math
import random
import statistics
from collections import defaultdict
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from core.calendar import day_start_ms
from core.lineproto import line
from core.store import InfluxStore
from tests.conftest import BOTH_REGISTRIES, run_pqmon

pytestmark = [pytest.mark.integration, BOTH_REGISTRIES]  # the registry on SQLite and on PostgreSQL

TZ = "Asia/Shanghai"
REGISTRY = """site_id,site_kind,name,voltage_class_kv,phases,meter_id,nominal_v,upper_pct,lower_pct,profile,feeder_id,manager
F01,feeder,Feeder 1,10,3,F01-M1,57.735,,,gb,,
A001,account,Foundry,10,3,A001-M1,57.735,,,gb,F01,mgr1
A002,account,Bakery,0.38,3,A002-M1,220,,,gb,F01,mgr1
A003,account,School,0.38,3,A003-M1,220,,,gb,,mgr2
"""
ACCOUNTS = ("A001", "A002", "A003")
FIRST_ROLLUP = date(2024, 1, 15)  # the accounts' first roll-up: 411 days before the period
FEEDER_FIRST_ROLLUP = date(2023, 6, 1)  # a feeder's data says nothing about the accounts
PERIOD = (date(2025, 3, 1), date(2025, 3, 31))
MED_DAY = date(2025, 3, 10)
MOMENTARY_S = 300.0


def days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def outage(site: str, start_ms: int, duration_s: float) -> str:
    length = "short" if duration_s <= 180 else "sustained"
    return line(  # the point the worker writes (analysis.worker.outage_lines)
        "outage",
        {"site": site},
        {
            "start_ms": start_ms,
            "end_ms": start_ms + int(duration_s * 1000),
            "duration_s": duration_s,
            "open": False,
            "cause": "unplanned",
            "length": length,
            "source": "event",
            "start_source": "event",
            "end_source": "event",
            "valid": True,
        },
        start_ms,
    )


def rollups(site: str, day: date) -> list[str]:
    ts = day_start_ms(day, TZ)
    return [
        line(
            "vq_daily",
            {"site": site, "phase": "all"},
            {"monitored_min": 1440, "over_min": 0, "under_min": 0, "calendar_min": 1440, "channels": 3},
            ts,
        ),
        line("rel_daily", {"site": site}, {"outage_s": 0.0, "short_s": 0.0, "period_s": 86400.0}, ts),
    ]


def synthetic_fleet(store: InfluxStore) -> list[tuple[str, int, float]]:
    """Roll-ups and derived outages from FIRST_ROLLUP to the end of the period; returns the outages."""
    rng = random.Random(1366)
    outages: list[tuple[str, int, float]] = []
    points: list[str] = []
    for day in days(FEEDER_FIRST_ROLLUP, PERIOD[1]):
        points += rollups("F01", day)
        start = day_start_ms(day, TZ)
        if rng.random() < 0.2:  # the feeder's own outages are no account's
            outages.append(("F01", start + 3_600_000, 20_000.0))
        if day < FIRST_ROLLUP:
            continue
        for k, site in enumerate(ACCOUNTS):
            points += rollups(site, day)
            at = start + (2 + 5 * k) * 3_600_000 + rng.randrange(0, 3_000_000)
            if day == MED_DAY:
                outages.append((site, at, 10 * 3600.0))  # a storm: every account out 10 hours
            elif rng.random() < 0.12:
                outages.append((site, at, rng.uniform(6 * 60, 3 * 3600)))
            if rng.random() < 0.05:  # momentary: never in SAIDI
                outages.append((site, at + 3_600_000, rng.uniform(10, MOMENTARY_S)))
    points += [outage(site, ms, dur) for site, ms, dur in outages]
    for i in range(0, len(points), 5000):
        store.write(points[i : i + 5000])
    return outages


def daily_saidi(outages: list[tuple[str, int, float]], first: date, last: date) -> dict[date, float]:
    """Sustained account-minutes per local day of start, over the number of accounts."""
    zone = ZoneInfo(TZ)
    by_day: dict[date, float] = defaultdict(float)
    for site, start_ms, duration_s in outages:
        day = datetime.fromtimestamp(start_ms / 1000, zone).date()
        if site in ACCOUNTS and duration_s > MOMENTARY_S and first <= day <= last:
            by_day[day] += duration_s / 60 / len(ACCOUNTS)
    return {d: by_day.get(d, 0.0) for d in days(first, last)}


def t_med(saidi: dict[date, float]) -> float:
    logs = [math.log(v) for v in saidi.values() if v > 0]
    return math.exp(statistics.mean(logs) + 2.5 * statistics.stdev(logs))


def fleet_json(env: dict[str, str], **settings: str) -> dict:
    done = run_pqmon(
        {**env, **settings},
        "report",
        "--fleet",
        "--from",
        PERIOD[0].isoformat(),
        "--to",
        PERIOD[1].isoformat(),
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_t_med_from_history_else_from_the_period(pqmon_env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "reg.csv").write_text(REGISTRY)
    assert run_pqmon(pqmon_env, "registry", "import", str(tmp_path / "reg.csv")).returncode == 0
    store = InfluxStore(pqmon_env["PQMON_INFLUX_URL"], pqmon_env["PQMON_INFLUX_DB"])
    store.ensure_database()
    outages = synthetic_fleet(store)
    store.close()
    period_saidi = daily_saidi(outages, *PERIOD)

    # 411 days of history (>= 365): T_MED from all of them, the feeder's longer past ignored.
    ieee = fleet_json(pqmon_env)["reliability"]["ieee1366"]
    history = daily_saidi(outages, FIRST_ROLLUP, PERIOD[0] - timedelta(days=1))
    assert (ieee["t_med_source"], ieee["t_med_from"], ieee["t_med_to"]) == (
        "history",
        "2024-01-15",
        "2025-02-28",
    )
    assert ieee["t_med_days"] == len(history) == 411
    assert ieee["t_med_nonzero_days"] == sum(1 for v in history.values() if v > 0)
    assert ieee["t_med_min"] == pytest.approx(t_med(history), rel=1e-9)
    assert "history" in ieee["t_med_note"]
    meds = [d.isoformat() for d, v in period_saidi.items() if v > ieee["t_med_min"]]
    assert ieee["major_event_days"] == meds and MED_DAY.isoformat() in meds
    assert ieee["excluding_major_event_days"]["saidi_min"] < ieee["all_days"]["saidi_min"]

    # At most one year back: the sample is the 365 days before the period.
    ieee = fleet_json(pqmon_env, PQMON_MED_HISTORY_YEARS="1")["reliability"]["ieee1366"]
    one_year = daily_saidi(outages, date(2024, 3, 1), date(2025, 2, 28))
    assert (ieee["t_med_source"], ieee["t_med_from"], ieee["t_med_days"]) == ("history", "2024-03-01", 365)
    assert ieee["t_med_min"] == pytest.approx(t_med(one_year), rel=1e-9)

    # Too little history for the setting: T_MED from the period's own days, and the report says so.
    report = fleet_json(pqmon_env, PQMON_MED_MIN_HISTORY_DAYS="500", PQMON_CELID_SINGLE_H="11")
    ieee = report["reliability"]["ieee1366"]
    assert (ieee["t_med_source"], ieee["t_med_from"], ieee["t_med_to"]) == (
        "period",
        "2025-03-01",
        "2025-03-31",
    )
    assert ieee["t_med_days"] == 31
    assert ieee["t_med_min"] == pytest.approx(t_med(period_saidi), rel=1e-9)
    assert "411 day(s)" in ieee["t_med_note"] and "period" in ieee["t_med_note"]
    assert ieee["major_event_days"] == [
        d.isoformat() for d, v in period_saidi.items() if v > ieee["t_med_min"]
    ]
    # The other thresholds come from the settings too: nobody was out 11 hours at once.
    assert (ieee["celid_single_h"], ieee["celid_single"]) == (11.0, 0.0)
    assert (ieee["celid_total_h"], ieee["celid_total"]) == (8.0, 1.0)
    assert report["reliability"]["accounts_with_data"] == 3
