"""The alert engine on a real (SQLite) registry with an injected clock: no servers, no sleeping."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from analysis.alerts.engine import AlertEngine, AlertPolicy, PowerEvent, Routes
from analysis.alerts.state import CANCELLED, HELD, PENDING, OutboxRow
from core.registry import Registry

T0 = 1_780_000_000_000  # ms
HEADER = "site_id,site_kind,name,voltage_class_kv,phases,meter_id,nominal_v,upper_pct,lower_pct,profile,feeder_id,manager\n"


class Clock:
    def __init__(self, ms: int) -> None:
        self.ms = ms

    def __call__(self) -> float:
        return self.ms / 1000

    def advance(self, seconds: float) -> None:
        self.ms += int(seconds * 1000)


@pytest.fixture
def registry(tmp_path: Path, any_registry_url: str) -> Iterator[Registry]:
    rows = ["F1,feeder,Feeder 1,10,3,F1-M,57.7,,,gb,,"]
    rows += [f"A{i:02d},account,Account {i},10,3,A{i:02d}-M,57.7,,,gb,F1," for i in range(1, 13)]
    rows += ["B01,account,Lone,0.38,3,B01-M,220,,,gb,,"]
    (tmp_path / "reg.csv").write_text(HEADER + "\n".join(rows) + "\n")
    reg = Registry(any_registry_url)  # SQLite, then PostgreSQL
    reg.import_csv(tmp_path / "reg.csv")
    yield reg
    reg.close()


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


def engine(registry: Registry, clock: Clock, **policy: float) -> AlertEngine:
    routes = Routes({"ops": ["hook", "mail"], "escalation": ["boss"]})
    return AlertEngine(registry, routes, AlertPolicy(**policy), clock=clock)


def outbox(registry: Registry) -> list[OutboxRow]:
    with Session(registry.engine) as s:
        return list(s.scalars(select(OutboxRow).order_by(OutboxRow.id)))


def off(site: str, ts: int, eid: str | None = None) -> PowerEvent:
    return PowerEvent(site, f"{site}-M", "power_off", ts, eid or f"{site}-off-{ts}")


def on(site: str, ts: int, eid: str | None = None) -> PowerEvent:
    return PowerEvent(site, f"{site}-M", "power_on", ts, eid or f"{site}-on-{ts}")


def test_an_outage_pages_once_per_channel_and_its_restoration_says_how_long(registry, clock):
    e = engine(registry, clock)
    e.on_events([off("B01", T0)])
    e.on_events([off("B01", T0)])  # the same record again: a replay changes nothing
    rows = outbox(registry)
    assert [(r.kind, r.channel, r.state) for r in rows] == [
        ("incident", "hook", PENDING),
        ("incident", "mail", PENDING),
    ]
    clock.advance(30)
    e.on_events([on("B01", T0 + 754_000)])
    rows = outbox(registry)
    resolved = [r for r in rows if r.kind == "resolved"]
    assert [r.channel for r in resolved] == ["hook", "mail"]
    site = json.loads(resolved[0].payload)["sites"][0]
    assert site["duration_s"] == 754.0 and site["state"] == "resolved"
    assert "12.6 min" in resolved[0].body


def test_ten_accounts_of_one_feeder_within_twenty_seconds_are_one_incident(registry, clock):
    e = engine(registry, clock)
    for i in range(1, 11):
        e.on_events([off(f"A{i:02d}", T0 + i * 2000)])
        clock.advance(2)
    rows = outbox(registry)
    assert [r.kind for r in rows if r.channel == "hook"] == ["incident", "incident_update"]
    update = next(r for r in rows if r.kind == "incident_update" and r.channel == "hook")
    assert update.state == PENDING and update.due_ms == T0 + 30_000  # folded, one group interval later
    assert sorted(s["site"] for s in json.loads(update.payload)["sites"]) == [
        f"A{i:02d}" for i in range(1, 11)
    ]
    first = next(r for r in rows if r.kind == "incident")
    assert len(json.loads(first.payload)["sites"]) == 1  # the first page went out at once
    assert len(e.open_incidents()) == 1


def test_an_outage_outside_the_window_or_on_another_feeder_is_its_own_incident(registry, clock):
    e = engine(registry, clock, incident_window_s=60)
    e.on_events([off("A01", T0), off("B01", T0 + 1000), off("A02", T0 + 61_000)])
    assert sorted(i["group"] for i in e.open_incidents()) == ["feeder:F1", "feeder:F1", "site:B01"]


def test_a_second_power_off_while_open_updates_the_alert_and_never_pages_again(registry, clock):
    e = engine(registry, clock)
    e.on_events([off("B01", T0, "x1")])
    e.on_events([off("B01", T0 + 5000, "x2")])
    assert len(outbox(registry)) == 2


def test_unacknowledged_incidents_are_reminded_and_escalated_and_an_acknowledged_one_is_not(registry, clock):
    e = engine(registry, clock, renotify_s=600, escalate_after_s=900)
    e.on_events([off("B01", T0), off("A01", T0)])
    b01, a01 = sorted(e.open_incidents(), key=lambda i: i["group"], reverse=True)
    e.acknowledge(a01["incident"], "li", "crew on the way")
    clock.advance(599)
    e.tick()
    assert not [r for r in outbox(registry) if r.kind in ("reminder", "escalation")]
    clock.advance(1)
    e.tick()  # 600 s: a reminder to ops
    kinds = [
        (r.kind, r.channel, r.incident_id) for r in outbox(registry) if r.kind in ("reminder", "escalation")
    ]
    assert kinds == [("reminder", "hook", b01["incident"]), ("reminder", "mail", b01["incident"])]
    clock.advance(300)
    e.tick()  # 900 s: escalation, once
    clock.advance(600)
    e.tick()  # 1500 s: another reminder, no second escalation
    kinds = [r.kind for r in outbox(registry) if r.kind in ("reminder", "escalation")]
    assert kinds.count("escalation") == 1 and kinds.count("reminder") == 4
    assert all(
        r.incident_id == b01["incident"] for r in outbox(registry) if r.kind in ("reminder", "escalation")
    )


def test_storm_mode_holds_pages_but_never_a_resolve_notice(registry, clock):
    e = engine(registry, clock)
    e.quiet("storm", "", T0 + 3_600_000, "typhoon", "ops-lead")
    e.on_events([off(f"A{i:02d}", T0 + i * 1000) for i in range(1, 13)])
    assert {r.state for r in outbox(registry)} == {HELD}
    e.on_events([on(f"A{i:02d}", T0 + 600_000) for i in range(1, 13)])
    resolved = [r for r in outbox(registry) if r.kind == "resolved"]
    assert [r.state for r in resolved] == [PENDING, PENDING]
    assert {r.state for r in outbox(registry) if r.kind == "incident_update"} <= {CANCELLED}


def test_an_outage_inside_a_planned_window_is_recorded_and_does_not_page(registry, clock):
    start = datetime.fromtimestamp(T0 / 1000 - 60, UTC).replace(tzinfo=None)
    end = datetime.fromtimestamp(T0 / 1000 + 7200, UTC).replace(tzinfo=None)
    registry.add_planned_outage(
        "F1", start, end, "transformer swap"
    )  # the feeder's window covers its accounts
    e = engine(registry, clock)
    e.on_events([off("A01", T0 + 1000), on("A01", T0 + 3_600_000)])
    assert outbox(registry) == []


def test_maintenance_of_a_site_holds_its_page_only(registry, clock):
    e = engine(registry, clock)
    e.quiet("site", "B01", T0 + 3_600_000, "meter swap", "li")
    e.on_events([off("B01", T0), off("A01", T0)])
    states = {(json.loads(r.payload)["group"], r.state) for r in outbox(registry)}
    assert states == {("site:B01", HELD), ("feeder:F1", PENDING)}
    clock.advance(3600)
    e.tick()  # the mode ended: the held page of the still-open incident goes out now
    assert {r.state for r in outbox(registry)} == {PENDING}


def test_bad_quiet_modes_are_refused_with_what_to_fix(registry, clock):
    e = engine(registry, clock)
    with pytest.raises(Exception, match="not in the registry"):
        e.quiet("site", "NOPE", T0 + 1, "x", "li")
    with pytest.raises(Exception, match="needs a reason"):
        e.quiet("storm", "", T0 + 1, " ", "li")


def test_most_of_the_fleet_losing_supply_at_once_is_one_fleet_incident(tmp_path: Path, clock: Clock) -> None:
    """Eight accounts on four feeders; six lose supply within 25 s (a storm). The first feeder
    pages at once, the second too (still a feeder-sized event); from the fifth account, more
    than half the fleet, the incidents become one fleet incident and nothing pages again."""
    rows = [f"F{f},feeder,Feeder {f},10,3,F{f}-M,57.7,,,gb,," for f in range(1, 5)]
    rows += [f"S{i},account,Site {i},10,3,S{i}-M,57.7,,,gb,F{(i + 1) // 2}," for i in range(1, 9)]
    (tmp_path / "reg.csv").write_text(HEADER + "\n".join(rows) + "\n")
    reg = Registry(f"sqlite:///{tmp_path / 'fleet.db'}")
    reg.import_csv(tmp_path / "reg.csv")
    eng = engine(reg, clock)
    for n in range(1, 7):
        eng.on_events([off(f"S{n}", T0 + n * 5000)])
    pages = [r for r in outbox(reg) if r.kind == "incident"]
    assert len(pages) == 2 * 2  # two incidents (F1, F2), two channels each
    assert [p.title for p in pages[::2]] == [
        "Outage: 1 account(s) without supply (F1)",
        "Outage: 1 account(s) without supply (F2)",
    ]
    # F2's incident, paged before the threshold, hands its accounts to the fleet incident and
    # ends as merged: no restoration notice, since nothing was restored.
    [fleet] = eng.open_incidents()
    assert fleet["group"] == "fleet:all"
    assert {x["site"] for x in fleet["sites"]} == {"S1", "S2", "S3", "S4", "S5", "S6"}
    assert not [r for r in outbox(reg) if r.kind == "resolved"]
    clock.advance(60)
    eng.tick()
    updates = [r.title for r in outbox(reg) if r.kind == "incident_update"]
    assert "Outage update (whole fleet): 6 account(s), 0 restored" in updates
    eng.on_events(
        [PowerEvent(f"S{n}", f"S{n}-M", "power_on", T0 + 120_000 + n, f"on-{n}") for n in range(1, 7)]
    )
    restored = [r.title for r in outbox(reg) if r.kind == "resolved"]
    assert restored == ["Restored (whole fleet): 6 account(s)"] * 2  # one per channel, once
    reg.close()


def test_an_incident_resolved_by_hand_sends_its_resolve_notice_and_a_true_condition_fires_anew(
    registry, clock
):
    eng = engine(registry, clock)
    assert eng.fire("silent", "B01", "", T0, "minor", "no reading for 20 min")
    [incident] = eng.open_incidents()
    clock.advance(300)
    eng.resolve(incident["incident"], "ops1", "meter removed for calibration")
    resolved = [r for r in outbox(registry) if r.kind == "resolved"]
    assert len(resolved) == 2  # one per ops channel
    assert eng.open_incidents() == []
    assert eng.incident(incident["incident"])["ack_comment"].endswith("meter removed for calibration")
    with pytest.raises(Exception, match="already resolved"):
        eng.resolve(incident["incident"], "ops1", "again")
    assert eng.fire("silent", "B01", "", T0 + 600_000, "minor", "still silent")  # a new alert
