"""``pqmon report --format csv -o FILE``: every table it writes parses with pandas and csv,
holds no Python repr, and carries the same figures as the JSON report."""

from __future__ import annotations

import csv
import json
import re
import subprocess
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd
import pytest

from core.calendar import MINUTE_MS, day_start_ms
from core.lineproto import line
from core.store import InfluxStore
from tests.conftest import run_pqmon

pytestmark = pytest.mark.integration

TZ = "Asia/Shanghai"
REGISTRY = """site_id,site_kind,name,voltage_class_kv,phases,meter_id,nominal_v,upper_pct,lower_pct,profile,feeder_id,manager
F01,feeder,Feeder 1,10,3,F01-M1,57.735,,,gb,,
A001,account,"Foundry, North",10,3,A001-M1,57.735,,,gb,F01,mgr1
A002,account,Bakery,0.38,3,A002-M1,220,,,gb,F01,mgr1
A003,account,学校,0.38,3,A003-M1,220,,,gb,,mgr2
"""
REPR = re.compile(r"^(True|False|None|nan)$")


def write_day(store: InfluxStore, site: str, nominal: float, start: int, low: range = range(0)) -> None:
    store.write(
        line(
            "reading",
            {"site": site, "meter": f"{site}-M1", "side": "customer"},
            {"ua": v, "ub": v, "uc": v, "interval_s": 60.0},
            start + m * MINUTE_MS,
        )
        for m in range(1440)
        for v in [nominal * (0.9 if m in low else 1.0)]
    )


def read_both(path: Path) -> pd.DataFrame:
    """The file through pandas and through csv.reader: one header row, rectangular, no reprs."""
    frame = pd.read_csv(path)
    with open(path, encoding="utf-8-sig", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == list(frame.columns), path
    assert len(rows) == len(frame) + 1 and all(len(r) == len(rows[0]) for r in rows), path
    for value in (v for r in rows for v in r):
        assert not REPR.match(value) and "{'" not in value and "['" not in value, (path, value)
    return frame


def figures(frame: pd.DataFrame) -> dict[str, str]:
    assert list(frame.columns) == ["figure", "value"]
    return dict(zip(frame["figure"], frame["value"], strict=True))


def report(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    done = run_pqmon(env, "report", *args)
    assert done.returncode == 0, done.stderr
    return done


def test_csv_tables_of_site_and_fleet(pqmon_env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "reg.csv").write_text(REGISTRY, encoding="utf-8")
    assert run_pqmon(pqmon_env, "registry", "import", str(tmp_path / "reg.csv")).returncode == 0
    store = InfluxStore(pqmon_env["PQMON_INFLUX_URL"], pqmon_env["PQMON_INFLUX_DB"])
    store.ensure_database()
    day = datetime.now(ZoneInfo(TZ)).date() - timedelta(days=2)
    start = day_start_ms(day, TZ)
    write_day(store, "F01", 57.735, start)
    write_day(store, "A001", 57.735, start, low=range(0, 144))
    write_day(store, "A002", 220.0, start)
    write_day(store, "A003", 220.0, start)
    store.write(  # A002: out 2 hours from 09:00, and a blip at 20:00 that is still open
        line("event", {"site": "A002", "meter": "A002-M1", "type": t}, {"event_id": f"A002-{t}-{ts}"}, ts)
        for t, ts in (
            ("power_off", start + 540 * MINUTE_MS),
            ("power_on", start + 660 * MINUTE_MS),
            ("power_off", start + 1200 * MINUTE_MS),
        )
    )
    store.close()
    assert run_pqmon(pqmon_env, "worker", "--once").returncode == 0
    period = ("--from", day.isoformat(), "--to", day.isoformat())
    out = tmp_path / "out"
    out.mkdir()

    fleet = json.loads(report(pqmon_env, "--fleet", *period).stdout)
    done = report(pqmon_env, "--fleet", *period, "--format", "csv", "-o", str(out / "fleet.csv"))
    assert sorted(p.name for p in out.iterdir()) == ["fleet.csv", "fleet.indices.csv", "fleet.last_mile.csv"]
    assert "fleet.indices.csv" in done.stderr and done.stdout == ""
    sites = read_both(out / "fleet.csv")
    assert sites["site"].tolist() == [row["site"] for row in fleet["sites"]]
    assert sites["name"].tolist() == ["Foundry, North", "Bakery", "学校"]
    assert sites["vqr_pct"].tolist() == pytest.approx([row["vqr_pct"] for row in fleet["sites"]])
    indices = figures(read_both(out / "fleet.indices.csv"))
    ieee = fleet["reliability"]["ieee1366"]
    assert float(indices["reliability.ieee1366.all_days.saifi"]) == ieee["all_days"]["saifi"]
    assert float(indices["reliability.ieee1366.all_days.saidi_min"]) == ieee["all_days"]["saidi_min"]
    assert float(indices["reliability.dlt836.excluding_short.rs1_pct"]) == pytest.approx(
        fleet["reliability"]["dlt836"]["excluding_short"]["rs1_pct"], rel=1e-15
    )
    assert indices["reliability.dlt836.including_short.include_short"] == "true"
    assert indices["reliability.ieee1366.t_med_source"] == "period"
    assert float(indices["voltage.vqr_pooled_pct"]) == pytest.approx(
        fleet["voltage"]["vqr_pooled_pct"], rel=1e-15
    )
    last_mile = read_both(out / "fleet.last_mile.csv")
    assert last_mile["site"].tolist() == [row["site"] for row in fleet["last_mile"]] == ["A001"]
    stdout = report(pqmon_env, "--fleet", *period, "--format", "csv").stdout
    assert stdout.replace("\r\n", "\n") == (out / "fleet.csv").read_text(encoding="utf-8-sig")

    site = json.loads(report(pqmon_env, "A002", *period).stdout)
    report(pqmon_env, "A002", *period, "--format", "csv", "-o", str(out / "a002.csv"))
    main = figures(read_both(out / "a002.csv"))
    assert float(main["vqr_pct"]) == site["vqr_pct"]
    assert float(main["outages.count"]) == site["outages"]["count"]
    assert main["site"] == "A002" and "en50160.profile" in main
    outages = read_both(out / "a002.outages.csv")
    assert list(outages.columns)[:8] == [
        "start",
        "end",
        "duration_s",
        "cause",
        "length",
        "open",
        "start_source",
        "end_source",
    ]
    assert len(outages) == len(site.get("outage_list", []))  # the list is new in the site report
    weeks = read_both(out / "a002.weeks.csv")
    assert weeks["verdict"].tolist() == [w["verdict"] for w in site["en50160"]["weeks"]]
    assert set(weeks["verdict"]) <= {"pass", "fail", "insufficient_data"}

    # A period without any roll-up: no perfect figures, only empty cells.
    year_ago = (day - timedelta(days=365)).isoformat()
    empty = json.loads(report(pqmon_env, "--fleet", "--from", year_ago, "--to", year_ago).stdout)
    assert {(r["rs1_pct"], r["outages"], r["vqr_pct"]) for r in empty["sites"]} == {(None, None, None)}
    assert empty["reliability"]["ieee1366"] is None and empty["reliability"]["accounts_with_data"] == 0
    report(
        pqmon_env,
        "--fleet",
        "--from",
        year_ago,
        "--to",
        year_ago,
        "--format",
        "csv",
        "-o",
        str(out / "e.csv"),
    )
    assert read_both(out / "e.csv")[["rs1_pct", "outages", "vqr_pct"]].isna().all().all()
    assert pd.isna(figures(read_both(out / "e.indices.csv"))["reliability.ieee1366"])


def test_output_into_a_missing_directory_says_what_to_do(pqmon_env: dict[str, str], tmp_path: Path) -> None:
    done = run_pqmon(
        pqmon_env,
        "report",
        "--fleet",
        "--from",
        "2025-01-01",
        "--to",
        "2025-01-01",
        "-o",
        str(tmp_path / "no" / "x.csv"),
    )
    assert done.returncode == 2 and "create it first" in done.stderr
