"""Voltage excursion (with hysteresis) and meter-silent alerts, on a real InfluxDB, stepping an
injected clock minute by minute through readings written beforehand: no sleeping."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from analysis.alerts.engine import AlertEngine, AlertPolicy, PowerEvent, Routes
from analysis.alerts.state import OutboxRow
from analysis.alerts.voltage import ConditionRule, ConditionWatch
from core.lineproto import line
from core.registry import Registry
from core.servers import LocalInflux
from core.store import InfluxStore

pytestmark = pytest.mark.integration

MIN = 60_000
T = 1_780_000_000_000 // MIN * MIN  # a whole minute
HEADER = "site_id,site_kind,name,voltage_class_kv,phases,meter_id,nominal_v,upper_pct,lower_pct,profile,feeder_id,manager\n"
_dbs = itertools.count(1)


class Clock:
    def __init__(self, ms: int) -> None:
        self.ms = ms

    def __call__(self) -> float:
        return self.ms / 1000


@pytest.fixture
def setup(tmp_path: Path, influx: LocalInflux) -> Iterator[tuple[InfluxStore, Registry, Clock]]:
    (tmp_path / "reg.csv").write_text(HEADER + "B01,account,Mill,0.38,3,B01-M,220,,,gb,,\n")
    registry = Registry(f"sqlite:///{tmp_path / 'reg.db'}")
    registry.import_csv(tmp_path / "reg.csv")
    store = InfluxStore(influx.url, f"conditions{next(_dbs)}")
    store.ensure_database()
    yield store, registry, Clock(T)
    store.close()
    registry.close()


def write_minutes(
    store: InfluxStore, first_min: int, volts: Callable[[int], tuple[float, float, float]], n: int
) -> None:
    lines = []
    for m in range(first_min, first_min + n):
        ua, ub, uc = volts(m)
        lines.append(
            line(
                "reading",
                {"site": "B01", "meter": "B01-M", "side": "customer"},
                {"ua": ua, "ub": ub, "uc": uc, "interval_s": 60.0},
                T + m * MIN,
            )
        )
    store.write(lines)


def pages(registry: Registry, kind: str = "incident") -> list[OutboxRow]:
    with Session(registry.engine) as s:
        return list(s.scalars(select(OutboxRow).where(OutboxRow.kind == kind).order_by(OutboxRow.id)))


def watcher(store: InfluxStore, registry: Registry, clock: Clock) -> tuple[ConditionWatch, AlertEngine]:
    engine = AlertEngine(registry, Routes({"ops": ["hook"]}), AlertPolicy(), clock=clock)
    return ConditionWatch(store, registry, engine, ConditionRule(fire_min=5, clear_min=10), {}), engine


def test_a_sustained_excursion_fires_after_five_minutes_not_before_and_clears_after_ten_inside(setup):
    store, registry, clock = setup
    # 0.38 kV three-phase: +/-7 % of 220 V, 204.6..235.4 V. Phase a at 240 V from minute 30 to 44.
    write_minutes(store, 0, lambda m: (240.0 if 30 <= m < 45 else 221.0, 220.0, 219.0), 80)
    watch, _ = watcher(store, registry, clock)
    fired_at = None
    for minute in range(31, 70):
        clock.ms = T + minute * MIN  # minutes before this one are whole
        watch.run_once()
        if fired_at is None and pages(registry):
            fired_at = minute
    assert fired_at == 35  # minutes 30..34 outside: five whole minutes
    [page] = pages(registry)
    assert "phase a" in page.body and page.title.startswith("Voltage out of limits")
    [cleared] = pages(registry, "resolved")
    assert cleared.created_ms == T + 55 * MIN  # back inside from minute 45: ten whole minutes by 55


def test_a_voltage_flapping_at_the_limit_for_an_hour_pages_at_most_once(setup):
    store, registry, clock = setup
    # Phase b: 6 minutes just over the limit, 3 just under, for an hour and a half.
    write_minutes(store, 0, lambda m: (220.0, 235.5 if m % 9 < 6 else 235.3, 220.0), 90)
    watch, _ = watcher(store, registry, clock)
    for minute in range(1, 91):
        clock.ms = T + minute * MIN
        watch.run_once()
    assert len(pages(registry)) == 1 and pages(registry, "resolved") == []


def test_a_gap_neither_resolves_nor_refires_and_silence_is_its_own_alert_that_clears(setup):
    store, registry, clock = setup
    write_minutes(store, 0, lambda m: (200.0, 220.0, 220.0), 10)  # phase a under from minute 0
    write_minutes(store, 40, lambda m: (200.0, 220.0, 220.0), 5)  # after a 30-minute gap, still under
    watch, _ = watcher(store, registry, clock)
    for minute in range(1, 46):
        clock.ms = T + minute * MIN
        watch.run_once()
    voltage = [p for p in pages(registry) if "Voltage" in p.title]
    silent = [p for p in pages(registry) if "silent" in p.title]
    assert len(voltage) == 1  # fired once, the gap did not resolve it, its return did not re-fire it
    assert not [p for p in pages(registry, "resolved") if "Voltage" in p.title]
    # The meter went quiet at minute 10: silent after three one-minute intervals (minute 13+),
    # and cleared when readings came back at minute 40; never called an outage.
    assert len(silent) == 1 and "communication loss" in silent[0].title
    assert silent[0].created_ms == T + 14 * MIN
    assert [p for p in pages(registry, "resolved") if "silent" in p.title.lower()]


def test_a_meter_silent_during_an_outage_does_not_page_as_silent(setup):
    store, registry, clock = setup
    write_minutes(store, 0, lambda m: (220.0, 220.0, 220.0), 10)
    watch, engine = watcher(store, registry, clock)
    engine.on_events([PowerEvent("B01", "B01-M", "power_off", T + 10 * MIN, "off-1")])
    for minute in range(1, 30):
        clock.ms = T + minute * MIN
        watch.run_once()
    assert [p.title for p in pages(registry)] == [pages(registry)[0].title]
    assert "Outage" in pages(registry)[0].title
