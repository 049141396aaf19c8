"""A power_on uploaded days late, with another outage in between (the case that once gave
RS-1 77.86 % instead of 99.29 %), and the period of a site: commissioning and no data.

Data goes in over MQTT through the collector, the worker and the report run as commands,
and every figure is computed by hand from the timeline below.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import paho.mqtt.client as mqtt
import pandas as pd
import pytest

from core.calendar import MINUTE_MS, day_start_ms
from core.servers import wait_until
from core.store import InfluxStore
from tests.conftest import BOTH_REGISTRIES, run_pqmon
from tests.integration.mqtt_support import CollectorProcess, mqtt_client

pytestmark = [pytest.mark.integration, BOTH_REGISTRIES]  # the registry on SQLite and on PostgreSQL

TZ = "Asia/Shanghai"
ZONE = ZoneInfo(TZ)
DAY_S = 86_400
REGISTRY = """site_id,site_kind,name,voltage_class_kv,phases,meter_id,nominal_v,upper_pct,lower_pct,profile,feeder_id,manager,commissioned
A001,account,Mill,0.38,3,A001-M1,220,,,gb,,,
A002,account,Cold store,0.38,3,A002-M1,220,,,gb,,,{commissioned}
A003,account,Warehouse,0.38,3,A003-M1,220,,,gb,,,
A004,account,Depot,0.38,3,A004-M1,220,,,gb,,,{commissioned}
"""


def minute_readings(site: str, start_ms: int, end_ms: int, silent: list[tuple[int, int]]) -> list[list[dict]]:
    """One-minute readings at nominal, in gateway batches of an hour; none while ``silent``."""
    rows = [
        {"ts": t, "ua": 220.0, "ub": 221.0, "uc": 219.0, "interval_s": 60}
        for t in range(start_ms, end_ms, MINUTE_MS)
        if not any(a <= t < b for a, b in silent)
    ]
    return [rows[i : i + 60] for i in range(0, len(rows), 60)]


def publish(client: mqtt.Client, site: str, kind: str, payload: object) -> None:
    client.publish(f"pq/v1/{site}/{site}-M1/{kind}", json.dumps(payload), qos=1).wait_for_publish(10)


def count(store: InfluxStore, q: str) -> int:
    frames = store.query(q)
    return int(frames[0].iloc[0, 1]) if frames else 0


def report(env: dict[str, str], site: str, first: str, last: str) -> dict:
    done = run_pqmon(env, "report", site, "--from", first, "--to", last)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def derived(store: InfluxStore, before_ms: int) -> dict[str, pd.DataFrame]:
    out = {}
    for name in ("vq_daily", "rel_daily", "pq_daily", "outage"):
        df = store.query_csv(f"SELECT * FROM {name} WHERE time < {before_ms}ms")
        df = df.drop(columns=[c for c in ("name", "tags") if c in df])
        out[name] = df.sort_values(list(df.columns)).reset_index(drop=True)
    return out


def local(day, hh: int, mm: int, ss: int = 0) -> int:  # type: ignore[no-untyped-def]
    return day_start_ms(day, TZ) + ((hh * 60 + mm) * 60 + ss) * 1000


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, ZONE).isoformat()


def test_a_late_power_on_with_another_outage_in_between(pqmon_env: dict[str, str], tmp_path: Path) -> None:
    today = datetime.now(ZONE).date()
    d0 = today - timedelta(days=12)
    days = [d0 + timedelta(days=k) for k in range(10)]  # d0 .. d9, all finished
    d1, d2, d5 = days[1], days[2], days[5]
    first, last = days[0].isoformat(), days[-1].isoformat()
    commissioned = days[5]
    (tmp_path / "reg.csv").write_text(REGISTRY.format(commissioned=commissioned.isoformat()))
    assert run_pqmon(pqmon_env, "registry", "import", str(tmp_path / "reg.csv")).returncode == 0

    # Outage 1: power_off d1 23:30, supply back d2 02:16:30 (its power_on arrives days
    # late); the meter's first whole minute with supply is 02:17.
    off1, on1, back1 = local(d1, 23, 30), local(d2, 2, 16, 30), local(d2, 2, 17)
    # Outage 2, the storm: d5 14:00 to 14:45, its records on time.
    off2, on2 = local(d5, 14, 0), local(d5, 14, 45)
    store = InfluxStore(pqmon_env["PQMON_INFLUX_URL"], pqmon_env["PQMON_INFLUX_DB"])
    collector = CollectorProcess(pqmon_env, tmp_path / "collector.log").start()
    client = mqtt_client(pqmon_env["PQMON_MQTT_URL"], "late-power-on")
    start_ms, end_ms = day_start_ms(days[0], TZ), day_start_ms(days[-1] + timedelta(days=1), TZ)
    try:
        for batch in minute_readings("A001", start_ms, end_ms, [(off1, back1), (off2, on2)]):
            publish(client, "A001", "reading", batch)
        # A002 sent test readings from d3, two days before it was commissioned on d5.
        for batch in minute_readings("A002", day_start_ms(days[3], TZ), end_ms, []):
            publish(client, "A002", "reading", batch)
        publish(client, "A001", "event", {"event_id": "e1", "ts": off1, "type": "power_off"})
        publish(client, "A001", "event", {"event_id": "e3", "ts": off2, "type": "power_off"})
        publish(client, "A001", "event", {"event_id": "e4", "ts": on2, "type": "power_on"})
        expected = 10 * 1440 - (back1 - off1) // MINUTE_MS - (on2 - off2) // MINUTE_MS + 7 * 1440
        wait_until(lambda: count(store, "SELECT count(ua) FROM reading") == expected, 90, "the readings")
        wait_until(lambda: count(store, "SELECT count(event_id) FROM event") == 3, 30, "the events")

        assert run_pqmon(pqmon_env, "worker", "--once").returncode == 0
        before = report(pqmon_env, "A001", first, last)

        # Days later the meter uploads the power_on of outage 1.
        publish(client, "A001", "event", {"event_id": "e2", "ts": on1, "type": "power_on"})
        wait_until(lambda: count(store, "SELECT count(event_id) FROM event") == 4, 30, "the late power_on")
    finally:
        client.loop_stop()
        client.disconnect()
        assert collector.stop() == 0

    incremental = run_pqmon(pqmon_env, "worker", "--once")
    assert "incremental pass" in incremental.stdout, incremental.stdout + incremental.stderr
    after = report(pqmon_env, "A001", first, last)

    period_s = 10 * DAY_S
    storm_s = 45 * 60
    # Before: outage 1 ends at the readings' evidence, 02:17: 167 minutes.
    assert before["outages"]["count"] == 2 and before["outages"]["sustained"] == 2
    assert before["outages"]["duration_s"] == 167 * 60 + storm_s
    assert before["rs1_pct"] == pytest.approx((1 - (167 * 60 + storm_s) / period_s) * 100, rel=1e-12)
    assert before["outage_list"][0]["start"] == iso(off1)
    assert before["outage_list"][0]["end"] == iso(back1)
    assert before["outage_list"][0]["end_source"] == "readings"
    assert before["outage_list"][1] | {"duration_s": 0} == {
        "start": iso(off2),
        "end": iso(on2),
        "duration_s": 0,
        "cause": "unplanned",
        "length": "sustained",
        "open": False,
        "start_source": "event",
        "end_source": "event",
        "continued": False,
    }
    # After: it ends at the power_on, 02:16:30: 166.5 minutes.
    assert after["outages"]["duration_s"] == 166.5 * 60 + storm_s
    assert after["rs1_pct"] == pytest.approx((1 - (166.5 * 60 + storm_s) / period_s) * 100, rel=1e-12)
    assert [(o["end"], o["end_source"]) for o in after["outage_list"]] == [
        (iso(on1), "event"),
        (iso(on2), "event"),
    ]
    # Minutes overlapping an outage: 23:30 .. 02:16 (167, the 02:16 minute in part), and
    # 45 for the storm; neither monitored nor missing, on either side of the late record.
    for figures in (before, after):
        assert figures["outage_min"] == 167 + 45
        assert figures["missing_min"] == 0
        assert figures["monitored_min"] == 3 * (10 * 1440 - 167 - 45)
        assert figures["period"] == {
            "from": first,
            "to": last,
            "days": 10,
            "commissioned": first,
            "commissioned_from": "first_data",
        }

    # Every derived row now equals a full recomputation.
    settled = derived(store, day_start_ms(today, TZ))
    full = run_pqmon(pqmon_env, "worker", "--once", "--full")
    assert full.returncode == 0 and "full pass" in full.stdout
    recomputed = derived(store, day_start_ms(today, TZ))
    for name in settled:
        pd.testing.assert_frame_equal(settled[name], recomputed[name], check_exact=False, rtol=1e-12)
    rel = recomputed["rel_daily"]
    by_day = dict(
        zip(rel[rel["site"] == "A001"]["time"], rel[rel["site"] == "A001"]["outage_s"], strict=True)
    )
    assert by_day[day_start_ms(d1, TZ)] == 30 * 60
    assert by_day[day_start_ms(d2, TZ)] == 136.5 * 60
    assert all(by_day[day_start_ms(d, TZ)] == 0 for d in days[3:5])  # no week-long false outage
    assert by_day[day_start_ms(d5, TZ)] == storm_s

    # A002: commissioned on d5, so d0..d4 are outside its period whatever it sent then.
    a002 = report(pqmon_env, "A002", first, last)
    assert a002["period"] == {
        "from": commissioned.isoformat(),
        "to": last,
        "days": 5,
        "commissioned": commissioned.isoformat(),
        "commissioned_from": "registry",
    }
    assert a002["monitored_min"] == 3 * 5 * 1440 and a002["coverage_pct"] == 100.0
    assert a002["rs1_pct"] == 100.0  # five days of readings, no outage
    # A003: no data at all and no commissioning date: nothing is known, nothing is 100 %.
    a003 = report(pqmon_env, "A003", first, last)
    assert a003["period"]["days"] == 0 and a003["period"]["from"] is None
    for key in ("rs1_pct", "rs1_excl_short_pct", "vqr_pct", "coverage_pct"):
        assert a003[key] is None, key
    # A004: commissioned on d5 but silent since: all five days are missing, RS-1 unknown.
    a004 = report(pqmon_env, "A004", first, last)
    assert a004["period"]["days"] == 5
    assert a004["missing_min"] == 5 * 1440 and a004["coverage_pct"] == 0.0
    assert a004["rs1_pct"] is None and a004["vqr_pct"] is None
    store.close()
