"""A derived outage that gets longer, becomes planned and splits in two is read back, through
the report's own queries, as exactly its current version each time, and no DELETE (or DROP)
is ever sent to InfluxDB: the way the derived series stay right on InfluxDB 2.x and 3.x,
whose v1 API serves no DELETE."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from analysis.report import site_report
from analysis.worker import run_once
from core.calendar import MINUTE_MS, day_start_ms
from core.lineproto import line
from core.registry import Registry
from core.servers import LocalInflux
from core.settings import load_settings
from core.store import InfluxStore

pytestmark = pytest.mark.integration

TZ = "Asia/Shanghai"
SITE = "S1"
ROW = {
    "site_id": SITE, "site_kind": "account", "name": "Rewrite test", "voltage_class_kv": "0.38", "phases": "3",
    "meter_id": "S1-M1", "nominal_v": "220", "upper_pct": "", "lower_pct": "", "profile": "gb", "feeder_id": "",
    "manager": "",
}  # fmt: skip


class RecordingStore(InfluxStore):
    """The real store, keeping every statement and request it sends (to see that none deletes)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sent: list[str] = []

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        self.sent.append(f"{method} {path} {kwargs.get('params')} {str(kwargs.get('data'))[:300]}")
        return super()._request(method, path, **kwargs)


def readings(day: date, minutes: range, volts: float) -> list[str]:
    start = day_start_ms(day, TZ)
    return [
        line(
            "reading",
            {"site": SITE, "meter": "S1-M1", "side": "customer"},
            {"ua": volts, "ub": volts, "uc": volts, "interval_s": 60.0},
            start + m * MINUTE_MS,
        )
        for m in minutes
    ]


def local(day: date, minute: int) -> str:
    return (datetime.combine(day, datetime.min.time(), ZoneInfo(TZ)) + timedelta(minutes=minute)).isoformat()


def test_a_rewritten_outage_reads_back_as_one_current_version(influx: LocalInflux, tmp_path: Path) -> None:
    settings = load_settings(
        {
            "PQMON_INFLUX_URL": influx.url,
            "PQMON_INFLUX_DB": "rewrite",
            "PQMON_REGISTRY_URL": f"sqlite:///{tmp_path / 'r.db'}",
            "PQMON_DATA_DIR": str(tmp_path),
            "PQMON_TZ": TZ,
        }
    )
    store = RecordingStore(settings.influx_url, settings.influx_db)
    store.ensure_database()
    registry = Registry(settings.registry_url)
    registry.upsert_rows([(2, ROW)])
    day = datetime.now(ZoneInfo(TZ)).date() - timedelta(days=2)

    def deliver(lines: list[str]) -> None:
        store.write(lines)
        registry.mark_dirty([(SITE, day)])  # as the collector marks what it wrote
        run_once(settings, store, registry)

    def outages() -> list[tuple[str, str | None, str]]:
        report = site_report(store, registry, SITE, day, day, TZ)
        return [(o["start"], o["end"], o["cause"]) for o in report["outage_list"]]

    # Supply all day but for 20 minutes of zero voltage from 10:00; 10:20 to 10:40 not sent yet.
    deliver(readings(day, range(0, 600), 221.0) + readings(day, range(600, 620), 0.0))
    deliver(readings(day, range(640, 1440), 221.0))
    assert outages() == [(local(day, 600), local(day, 620), "unplanned")]

    # Longer: the missing 20 minutes arrive, at zero volts too.
    deliver(readings(day, range(620, 640), 0.0))
    assert outages() == [(local(day, 600), local(day, 640), "unplanned")]

    # Planned: a window registered afterwards covers it.
    start = datetime.combine(day, datetime.min.time(), ZoneInfo(TZ)) + timedelta(hours=9)
    end = start + timedelta(hours=3)
    window = (start.astimezone(UTC).replace(tzinfo=None), end.astimezone(UTC).replace(tzinfo=None))
    registry.add_planned_outage(SITE, *window)
    registry.mark_window_dirty([SITE], [window], TZ)
    run_once(settings, store, registry)
    assert outages() == [(local(day, 600), local(day, 640), "planned")]

    # Split: the meter re-sends 10:15 to 10:25 with the supply on (a later write wins).
    deliver(readings(day, range(615, 625), 220.0))
    assert outages() == [
        (local(day, 600), local(day, 615), "planned"),
        (local(day, 625), local(day, 640), "planned"),
    ]

    # The stored series holds just as many current points, whatever it held before.
    valid = store.query_frame(f"SELECT * FROM outage WHERE \"valid\" = true AND site = '{SITE}'")
    assert len(valid) == 2
    sent = "\n".join(store.sent).upper()
    assert "DELETE" not in sent and "DROP" not in sent
    assert any(" /write " in s for s in store.sent)  # the recording sees the writes: it would see a DELETE
    store.close()
    registry.close()
