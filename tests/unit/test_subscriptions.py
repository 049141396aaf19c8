"""Personal alert subscriptions: who gets what, when, and what is refused (no servers)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from analysis.alerts.engine import AlertEngine, AlertPolicy, PowerEvent, Routes
from analysis.alerts.state import OutboxRow
from analysis.alerts.subscriptions import Subscription, quiet_until, subscribe, subscriptions, unsubscribe
from core.errors import ConfigError
from core.registry import Registry

TZ = "Asia/Shanghai"
HEADER = "site_id,site_kind,name,voltage_class_kv,phases,meter_id,nominal_v,upper_pct,lower_pct,profile,feeder_id,manager\n"


def local_ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(TZ)).timestamp() * 1000)


@pytest.mark.parametrize(
    ("quiet", "now", "until"),
    [
        ("22:00-07:00", "2026-05-01 23:30", "2026-05-02 07:00"),  # across midnight, before it
        ("22:00-07:00", "2026-05-02 03:10", "2026-05-02 07:00"),  # across midnight, after it
        ("22:00-07:00", "2026-05-02 07:00", None),  # the end is not quiet
        ("22:00-07:00", "2026-05-02 21:59", None),
        ("12:00-13:00", "2026-05-02 12:30", "2026-05-02 13:00"),
        ("12:00-12:00", "2026-05-02 12:00", None),  # equal ends: never quiet
        (None, "2026-05-02 03:00", None),
    ],
)
def test_quiet_hours(quiet: str | None, now: str, until: str | None) -> None:
    assert quiet_until(quiet, local_ms(now), TZ) == (local_ms(until) if until else None)


def test_what_a_subscription_wants() -> None:
    sub = Subscription(1, "m", "email", "m@x.cn", None, "major", frozenset(), None)
    mine = {"A1", "A2"}
    assert sub.wants("critical", ["A1"], mine) and sub.wants("major", ["A1", "A2"], mine)
    assert not sub.wants("minor", ["A1"], mine)  # below its severity
    assert not sub.wants("critical", ["A1", "B9"], mine)  # would tell of another's account
    assert not sub.wants("critical", [], mine)
    only_a2 = Subscription(2, "m", "email", "m@x.cn", None, "minor", frozenset({"A2"}), None)
    assert only_a2.wants("minor", ["A2"], mine) and not only_a2.wants("critical", ["A1"], mine)


@pytest.fixture
def registry(tmp_path: Path, any_registry_url: str) -> Iterator[Registry]:
    rows = [
        "F1,feeder,Feeder 1,10,3,F1-M,57.7,,,gb,,",
        "A1,account,Mill,10,3,A1-M,57.7,,,gb,F1,",
        "A2,account,Bakery,10,3,A2-M,57.7,,,gb,,",
        "B9,account,Other,10,3,B9-M,57.7,,,gb,,",
    ]
    (tmp_path / "reg.csv").write_text(HEADER + "\n".join(rows) + "\n")
    reg = Registry(any_registry_url)  # SQLite, then PostgreSQL
    reg.import_csv(tmp_path / "reg.csv")
    reg.add_user("mgr", "manager", "long-enough-1", ["A1", "A2"])
    yield reg
    reg.close()


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"user": "nobody"}, "user 'nobody'"),
        ({"channel": "sms"}, "channel must be one of"),
        ({"target": "not-an-address"}, "is not an e-mail address"),
        ({"channel": "webhook", "target": "ftp://x"}, "must be the webhook URL"),
        ({"min_severity": "urgent"}, "min severity"),
        ({"quiet": "22-07"}, "quiet hours"),
        ({"sites": ["B9"]}, "B9 unknown or not visible"),
        ({"secret": "SEC1"}, "secret is only for a DingTalk"),
    ],
)
def test_a_subscription_that_cannot_work_is_refused_naming_the_field(registry, kwargs, field) -> None:
    args = {"user": "mgr", "channel": "email", "target": "mgr@example.cn", "min_severity": "major"} | kwargs
    with pytest.raises(ConfigError, match=field):
        subscribe(registry, **args)
    assert subscriptions(registry) == []


def outbox(registry: Registry) -> list[OutboxRow]:
    with Session(registry.engine) as s:
        return list(s.scalars(select(OutboxRow).order_by(OutboxRow.id)))


class Clock:
    def __init__(self, ms: int) -> None:
        self.ms = ms

    def __call__(self) -> float:
        return self.ms / 1000


def test_the_engine_writes_a_users_notifications_to_the_outbox(registry) -> None:
    clock = Clock(local_ms("2026-05-01 23:30"))  # inside the quiet hours below
    engine = AlertEngine(registry, Routes({"ops": ["duty"]}), AlertPolicy(tz=TZ), clock=clock)
    sub = subscribe(registry, "mgr", "email", "mgr@example.cn", "major", quiet="22:00-07:00")
    everything = subscribe(registry, "mgr", "webhook", "https://hooks.example.cn/m", "minor", sites=["A2"])
    engine.on_events([PowerEvent("A1", "A1-M", "power_off", clock.ms - 5000, "a1-off")])
    engine.on_events([PowerEvent("B9", "B9-M", "power_off", clock.ms - 4000, "b9-off")])
    engine.fire("voltage", "A2", "a", clock.ms - 60_000, "major", "phase a over")
    rows = [(r.channel, r.site_id, r.kind, r.due_ms) for r in outbox(registry)]
    mine = [r for r in rows if r[0].startswith("sub:")]
    # A1's outage is critical: at once despite the quiet hours; B9 is not the manager's: nothing.
    assert (f"sub:{sub}", "A1", "incident", clock.ms) in mine
    assert not [r for r in mine if r[1] == "B9"]
    # A2's voltage alert is major: the e-mail waits for 07:00; the webhook (A2, minor+, no quiet
    # hours) goes now.
    assert (f"sub:{sub}", "A2", "incident", local_ms("2026-05-02 07:00")) in mine
    assert (f"sub:{everything}", "A2", "incident", clock.ms) in mine
    assert [r for r in rows if r[0] == "duty"] and len(mine) == 3
    assert unsubscribe(registry, everything) and not unsubscribe(registry, everything)
