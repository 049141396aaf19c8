# ruff: noqa: F811  (setup is a fixture imported from the excursion tests)
"""The rules beyond excursions and silence: outages seen only in readings, the last mile, the
month-to-date VQR and outage budget, and dips below SEMI F47 (real InfluxDB, injected clock)."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from analysis.alerts.engine import LAST_MILE, MONTH_VQR, OUTAGE, OUTAGE_BUDGET, SEMI_F47, PowerEvent
from analysis.alerts.state import AlertRow
from analysis.alerts.voltage import ConditionRule, ConditionWatch, outage_budget_min
from core.calendar import day_start_ms
from core.lineproto import line
from core.registry import Registry
from core.store import InfluxStore
from tests.integration.test_alert_conditions import (  # noqa: F401  (setup is a fixture)
    MIN,
    Clock,
    T,
    pages,
    setup,
    watcher,
    write_minutes,
)

pytestmark = pytest.mark.integration

TZ = "Asia/Shanghai"


def alerts(registry: Registry, rule: str) -> list[AlertRow]:
    with Session(registry.engine) as s:
        return list(s.scalars(select(AlertRow).where(AlertRow.rule == rule).order_by(AlertRow.id)))


def test_an_outage_seen_only_in_readings_pages_and_its_return_resolves_it(setup):
    store, registry, clock = setup
    # The meter runs on its battery: zeros from minute 20 to 34, supply again from minute 35.
    write_minutes(store, 0, lambda m: (0.0, 0.0, 0.0) if 20 <= m < 35 else (221.0, 220.0, 219.0), 50)
    watch, _ = watcher(store, registry, clock)
    opened = None
    for minute in range(1, 50):
        clock.ms = T + minute * MIN
        watch.run_once()
        if opened is None and alerts(registry, OUTAGE):
            opened = minute
    assert opened == 22  # two whole minutes without supply on any phase
    [outage] = alerts(registry, OUTAGE)
    assert outage.started_ms == T + 20 * MIN and outage.ended_ms == T + 35 * MIN
    assert [p.title for p in pages(registry)] == ["Outage: 1 account(s) without supply (B01)"]
    [restored] = pages(registry, "resolved")
    assert "15.0 min" in restored.body
    # Zeros are an outage, never an under-voltage or a silent meter.
    assert alerts(registry, "voltage") == [] and alerts(registry, "silent") == []


def test_a_reading_straddling_the_power_off_does_not_end_the_outage(setup):
    store, registry, clock = setup
    write_minutes(store, 0, lambda m: (221.0, 220.0, 219.0), 11)  # the last one covers minute 10
    watch, engine = watcher(store, registry, clock)
    engine.on_events([PowerEvent("B01", "B01-M", "power_off", T + 10 * MIN + 30_000, "off-1")])
    for minute in range(11, 20):
        clock.ms = T + minute * MIN
        watch.run_once()
    [outage] = alerts(registry, OUTAGE)
    assert outage.state == "firing", "supply before the power_off proves nothing about after it"


def test_last_mile_fires_when_only_the_customer_side_is_out(tmp_path, influx):
    header = "site_id,site_kind,name,voltage_class_kv,phases,meter_id,nominal_v,upper_pct,lower_pct,profile,feeder_id,manager\n"
    (tmp_path / "reg.csv").write_text(
        header + "F1,feeder,Feeder 1,0.38,3,F1-M,220,,,gb,,\nB01,account,Mill,0.38,3,B01-M,220,,,gb,F1,\n"
    )
    registry = Registry(f"sqlite:///{tmp_path / 'reg.db'}")
    registry.import_csv(tmp_path / "reg.csv")
    store = InfluxStore(influx.url, "lastmile")
    store.ensure_database()
    try:
        feeder = [
            line(
                "reading",
                {"site": "F1", "meter": "F1-M", "side": "supply"},
                {"ua": 222.0, "ub": 221.0, "uc": 222.0, "interval_s": 60.0},
                T + m * MIN,
            )
            for m in range(60)
        ]
        store.write(feeder)
        write_minutes(store, 0, lambda m: (200.0 if m >= 10 else 220.0, 220.0, 220.0), 60)
        clock = Clock(T)
        watch, _ = watcher(store, registry, clock)
        for minute in range(1, 30):
            clock.ms = T + minute * MIN
            watch.run_once()
        [last_mile] = alerts(registry, LAST_MILE)
        assert last_mile.site_id == "B01" and last_mile.state == "firing"
        assert any("Last mile" in p.title for p in pages(registry))
        # The feeder goes out of limits too: a supply-side problem, no longer the last mile.
        store.write(
            [
                line(
                    "reading",
                    {"site": "F1", "meter": "F1-M", "side": "supply"},
                    {"ua": 200.0, "ub": 221.0, "uc": 222.0, "interval_s": 60.0},
                    T + m * MIN,
                )
                for m in range(30, 60)
            ]
        )
        for minute in range(30, 45):
            clock.ms = T + minute * MIN
            watch.run_once()
        assert alerts(registry, LAST_MILE)[0].state == "resolved"
    finally:
        store.close()
        registry.close()


def rollup(store: InfluxStore, day: date, monitored: int, out_min: int, outage_s: float) -> None:
    ts = day_start_ms(day, TZ)
    store.write(
        [
            line(
                "vq_daily",
                {"site": "B01", "phase": "all"},
                {
                    "monitored_min": monitored,
                    "over_min": out_min,
                    "under_min": 0,
                    "calendar_min": 1440,
                    "channels": 3,
                },
                ts,
            ),
            line("rel_daily", {"site": "B01"}, {"outage_s": outage_s}, ts),
        ]
    )


def test_month_to_date_vqr_below_target_and_outage_over_budget(setup):
    store, registry, clock = setup
    clock.ms = day_start_ms(date(2026, 5, 20), TZ) + 10 * 3_600_000
    rule = ConditionRule(vqr_target_pct=99.0, rs1_target_pct=99.9)
    budget = outage_budget_min(rule, 31)
    assert budget == pytest.approx(44.64)
    watch = ConditionWatch(store, registry, watcher(store, registry, clock)[1], rule, {})
    rollup(store, date(2026, 5, 1), 4320, 20, 600.0)  # 99.54 %, 10 min out
    watch.run_month(clock.ms)
    assert alerts(registry, MONTH_VQR) == [] and alerts(registry, OUTAGE_BUDGET) == []
    rollup(store, date(2026, 5, 2), 4320, 80, 2400.0)  # pooled 98.84 %, 50 min of outages
    watch.run_month(clock.ms)
    [vqr] = alerts(registry, MONTH_VQR)
    [budget_alert] = alerts(registry, OUTAGE_BUDGET)
    assert vqr.state == budget_alert.state == "firing"
    assert vqr.started_ms == day_start_ms(date(2026, 5, 1), TZ)
    assert any("98.84 %" in p.body for p in pages(registry))
    watch.run_month(clock.ms)  # judged again: nothing new
    assert len(pages(registry)) == 2
    # Late data fixes the month: VQR back above target + margin, the alert clears.
    rollup(store, date(2026, 5, 2), 4320, 20, 2400.0)
    watch.run_month(clock.ms)
    assert alerts(registry, MONTH_VQR)[0].state == "resolved"
    # The month turns: last month's budget alert is closed.
    clock.ms = day_start_ms(date(2026, 6, 1), TZ) + 3_600_000
    watch.run_month(clock.ms)
    assert alerts(registry, OUTAGE_BUDGET)[0].state == "resolved"


def test_a_dip_below_semi_f47_pages_once_and_is_born_resolved(setup):
    store, registry, clock = setup
    _, engine = watcher(store, registry, clock)
    inside = PowerEvent("B01", "B01-M", "dip", T, "dip-1", phase="a", residual_pct=75.0, duration_ms=300.0)
    below = PowerEvent(
        "B01", "B01-M", "dip", T + MIN, "dip-2", phase="b", residual_pct=40.0, duration_ms=300.0
    )
    engine.on_events([inside, below])
    engine.on_events([below])  # a replay
    [dip] = alerts(registry, SEMI_F47)
    assert dip.source_key == "dip-2" and dip.state == "resolved" and dip.phase == "b"
    [page] = pages(registry)
    assert page.title.startswith("Voltage dip below the SEMI F47 curve") and "40 %" in page.body
    assert pages(registry, "resolved") == [] and pages(registry, "reminder") == []
