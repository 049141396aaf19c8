"""Late data: a month is rolled up, then power-off records for days three weeks back
arrive; the next (incremental) pass must leave exactly what a from-scratch
recomputation gives."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest

from core.calendar import MINUTE_MS, day_start_ms
from core.servers import wait_until
from core.store import InfluxStore
from tests.conftest import BOTH_REGISTRIES, run_pqmon
from tests.integration.mqtt_support import CollectorProcess, mqtt_client

pytestmark = [pytest.mark.integration, BOTH_REGISTRIES]  # the registry on SQLite and on PostgreSQL

TZ = "Asia/Shanghai"
REGISTRY = """site_id,site_kind,name,voltage_class_kv,phases,meter_id,nominal_v,upper_pct,lower_pct,profile,feeder_id,manager
A001,account,Mill,0.38,3,A001-M1,220,,,gb,,
A002,account,Hospital,10,3,A002-M1,57.735,,,gb,,
A003,account,Shop,0.22,1,A003-M1,220,,,gb,,
"""
NOMINAL = {"A001": 220.0, "A002": 57.735, "A003": 220.0}
INTERVAL_S = 300


def day_readings(
    site: str, start_ms: int, rng: np.random.Generator, silent: tuple[int, int] = (0, 0)
) -> list[dict[str, object]]:
    """A day of 5-minute readings; none inside ``silent`` (the meter had no supply)."""
    n = 86_400 // INTERVAL_S
    base = NOMINAL[site] * (1 + rng.normal(0, 0.03, n))
    rows = []
    for i in range(n):
        if silent[0] <= start_ms + i * INTERVAL_S * 1000 < silent[1]:
            continue
        row: dict[str, object] = {
            "ts": start_ms + i * INTERVAL_S * 1000,
            "ua": round(float(base[i]), 3),
            "interval_s": INTERVAL_S,
        }
        if site != "A003":
            row["ub"] = round(float(base[i] * 1.01), 3)
            row["uc"] = round(float(base[i] * 0.99), 3)
        rows.append(row)
    return rows


def snapshot(store: InfluxStore, before_ms: int) -> dict[str, pd.DataFrame]:
    """Every derived row of the finished days (today's change with the clock)."""
    out = {}
    for name in ("vq_daily", "rel_daily", "outage"):
        df = store.query_csv(f"SELECT * FROM {name} WHERE time < {before_ms}ms")
        df = df.drop(columns=[c for c in ("name", "tags") if c in df])
        out[name] = df.sort_values(list(df.columns)).reset_index(drop=True)
    return out


def report(env: dict[str, str], site: str, first: str, last: str) -> dict[str, object]:
    done = run_pqmon(env, "report", site, "--from", first, "--to", last)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def site_days(stdout: str) -> int:
    return int(re.search(r"(\d+) site-days", stdout).group(1))


def test_late_power_off_records_three_weeks_back(pqmon_env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "reg.csv").write_text(REGISTRY)
    assert run_pqmon(pqmon_env, "registry", "import", str(tmp_path / "reg.csv")).returncode == 0
    today = datetime.now(ZoneInfo(TZ)).date()
    days = [today - timedelta(days=k) for k in range(30, 0, -1)]
    store = InfluxStore(pqmon_env["PQMON_INFLUX_URL"], pqmon_env["PQMON_INFLUX_DB"])
    collector = CollectorProcess(pqmon_env, tmp_path / "collector.log").start()
    client = mqtt_client(pqmon_env["PQMON_MQTT_URL"], "late-data-gateway")
    rng = np.random.default_rng(7)
    # Three weeks back: a 50-minute outage on A001, and one across midnight on A002; the
    # meters sent no readings while they had no supply, and their records come later.
    late_day = today - timedelta(days=21)
    t0 = day_start_ms(late_day, TZ) + 10 * 60 * MINUTE_MS
    midnight = day_start_ms(late_day + timedelta(days=1), TZ)
    silent = {
        "A001": (t0, t0 + 50 * MINUTE_MS),
        "A002": (midnight - 30 * MINUTE_MS, midnight + 40 * MINUTE_MS),
    }
    try:
        expected = 0
        for day in days:
            for site in NOMINAL:
                rows = day_readings(site, day_start_ms(day, TZ), rng, silent.get(site, (0, 0)))
                expected += len(rows)
                payload = json.dumps(rows)
                client.publish(f"pq/v1/{site}/{site}-M1/reading", payload, qos=1).wait_for_publish(10)

        def count() -> int:
            frames = store.query("SELECT count(ua) FROM reading")
            return int(frames[0]["count"].iloc[0]) if frames else 0

        wait_until(lambda: count() == expected, 60, "the month's readings", interval_s=0.3)
        first = run_pqmon(pqmon_env, "worker", "--once")
        assert first.returncode == 0, first.stderr
        assert "full pass" in first.stdout
        month = (days[0].isoformat(), days[-1].isoformat())
        before = report(pqmon_env, "A001", *month)
        assert before["outages"]["count"] == 0

        # The outages' records, uploaded now, after the fact, power_on first, one twice.
        events = [
            ("A001", {"event_id": "A001-late-2", "ts": t0 + 50 * MINUTE_MS, "type": "power_on"}),
            ("A001", {"event_id": "A001-late-1", "ts": t0, "type": "power_off"}),
            ("A001", {"event_id": "A001-late-1", "ts": t0, "type": "power_off"}),
            ("A002", {"event_id": "A002-late-1", "ts": midnight - 30 * MINUTE_MS, "type": "power_off"}),
            ("A002", {"event_id": "A002-late-2", "ts": midnight + 40 * MINUTE_MS, "type": "power_on"}),
        ]
        for site, event in events:
            client.publish(f"pq/v1/{site}/{site}-M1/event", json.dumps(event), qos=1).wait_for_publish(10)

        def events_stored() -> int:
            frames = store.query("SELECT count(event_id) FROM event")
            return int(frames[0]["count"].iloc[0]) if frames else 0

        wait_until(lambda: events_stored() == 4, 30, "the late events")
    finally:
        client.loop_stop()
        client.disconnect()
        assert collector.stop() == 0

    incremental = run_pqmon(pqmon_env, "worker", "--once")
    assert incremental.returncode == 0, incremental.stderr
    assert "incremental pass" in incremental.stdout
    # Only the touched days (and today's, still in progress) were recomputed, not the month.
    assert site_days(incremental.stdout) <= 8, incremental.stdout
    after_incremental = snapshot(store, day_start_ms(today, TZ))
    reports_incremental = {s: report(pqmon_env, s, *month) for s in NOMINAL}

    full = run_pqmon(pqmon_env, "worker", "--once", "--full")
    assert full.returncode == 0 and "full pass" in full.stdout
    after_full = snapshot(store, day_start_ms(today, TZ))
    for name in after_full:
        pd.testing.assert_frame_equal(after_incremental[name], after_full[name], check_exact=True)
    assert {s: report(pqmon_env, s, *month) for s in NOMINAL} == reports_incremental

    a001 = reports_incremental["A001"]
    assert a001["outages"]["count"] == 1 and a001["outages"]["duration_s"] == 3000.0
    assert a001["outage_min"] == 50
    assert a001["rs1_pct"] == pytest.approx((1 - 3000 / (30 * 86_400)) * 100, rel=1e-12)
    a002 = reports_incremental["A002"]
    assert a002["outages"] == {
        "count": 1,
        "sustained": 1,
        "short": 0,
        "planned": 0,
        "unplanned": 1,
        "duration_s": 4200.0,
        "open": 0,
        "longest_s": 4200.0,
    }
    # Split across midnight: 30 minutes on the day it began, 40 on the next.
    rel = after_full["rel_daily"]
    a002_rel = rel[(rel["site"] == "A002") & (rel["outage_s"] > 0)]
    assert sorted(a002_rel["outage_s"].tolist()) == [1800.0, 2400.0]
    assert a002_rel["outages_sustained"].sum() == 1
    store.close()
