"""The Alerts page's queries on a real SQLite registry, alerts made by the real AlertEngine."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from analysis.alerts.engine import AlertEngine, AlertPolicy, PowerEvent, Routes
from analysis.alerts.notices import NoticeFailure, raise_notice_failure
from analysis.alerts.state import ACKNOWLEDGED, FIRING, RESOLVED
from core.registry import NOTICE_FAILED, ContactRow, DueNoticeRow, Registry
from dashboard import alerts_view as view

T0 = 1_780_000_000_000
HEADER = "site_id,site_kind,name,voltage_class_kv,phases,meter_id,nominal_v,upper_pct,lower_pct,profile,feeder_id,manager\n"


class Clock:
    ms = T0

    def __call__(self) -> float:
        return self.ms / 1000


@pytest.fixture
def registry(tmp_path: Path, any_registry_url: str) -> Iterator[Registry]:
    rows = [
        "F1,feeder,Feeder 1,10,3,F1-M,57.7,,,gb,,",
        "A1,account,One,10,3,A1-M,57.7,,,gb,F1,",
        "A2,account,Two,10,3,A2-M,57.7,,,gb,F1,",
        "B1,account,Lone,0.38,3,B1-M,220,,,gb,,",
    ]
    (tmp_path / "reg.csv").write_text(HEADER + "\n".join(rows) + "\n")
    reg = Registry(any_registry_url)  # SQLite, then PostgreSQL
    reg.import_csv(tmp_path / "reg.csv")
    yield reg
    reg.close()


def off(site: str, ts: int) -> PowerEvent:
    return PowerEvent(site, f"{site}-M", "power_off", ts, f"{site}-off-{ts}")


def on(site: str, ts: int) -> PowerEvent:
    return PowerEvent(site, f"{site}-M", "power_on", ts, f"{site}-on-{ts}")


def test_rows_follow_their_incident_and_a_manager_gets_only_theirs(registry: Registry) -> None:
    engine = AlertEngine(registry, Routes({"ops": ["hook"]}), AlertPolicy(), clock=Clock())
    engine.on_events([off("A1", T0), off("A2", T0 + 1000), off("B1", T0 + 300_000)])
    engine.on_events([off("B1", T0 - 600_000), on("B1", T0 - 300_000)])  # ignored: B1 opens later
    feeder = view.incident_sites(registry, 1)
    assert feeder == {"A1", "A2"}
    engine.acknowledge(1, "op", "crew out")

    every = view.alert_records(registry, None)
    assert [(r.site_id, r.state) for r in every] == [
        ("B1", FIRING),
        ("A2", ACKNOWLEDGED),
        ("A1", ACKNOWLEDGED),
    ]
    assert [r.site_id for r in view.alert_records(registry, ["A1", "B1"])] == ["B1", "A1"]
    assert [r.site_id for r in view.alert_records(registry, ["A1"], sites=["A2"])] == []
    assert [r.site_id for r in view.alert_records(registry, None, state=FIRING)] == ["B1"]
    assert view.alert_records(registry, None, state=RESOLVED) == []
    assert view.alert_records(registry, []) == []

    assert view.may_acknowledge(feeder, None)
    assert not view.may_acknowledge(feeder, ["A1", "B1"]), "A2 is not the manager's"
    assert view.may_acknowledge({"B1"}, ["A1", "B1"])
    assert not view.may_acknowledge(None, None), "no such incident"
    assert not view.may_acknowledge(set(), ["A1"]), "an incident of unknown sites is staff's"
    assert view.ackable_incidents(every, ["A1", "B1"], registry) == [2]


def test_a_failed_notice_incident_is_shown_on_the_sites_of_its_failed_notices(registry: Registry) -> None:
    with Session(registry.engine) as s, s.begin():
        contact = ContactRow(site_id="A2", name="Ms Two", email="two@example.com", updated_ms=T0)
        s.add(contact)
        s.flush()
        s.add(
            DueNoticeRow(
                window_id=7,
                version=1,
                site_id="A2",
                contact_id=contact.id,
                channel="email",
                kind="ahead",
                offset_s=172800,
                start_ms=T0 + 86_400_000,
                end_ms=T0 + 90_000_000,
                due_ms=T0,
                state=NOTICE_FAILED,
                created_ms=T0,
                attempts=3,
            )
        )
        failure = NoticeFailure(1, 7, "A2", "Two", "Ms Two", None, "email", "48 h", "s", "e", "550 refused")
        incident = raise_notice_failure(s, Routes({"ops": []}), failure, T0)
    assert view.incident_sites(registry, incident) == {"A2"}
    [row] = view.alert_records(registry, ["A2"])
    assert (row.incident_id, row.alert_id, row.rule, row.state) == (incident, None, "notice_failed", FIRING)
    assert view.alert_records(registry, ["A1", "B1"]) == []
    assert view.may_acknowledge(view.incident_sites(registry, incident), ["A2"])
    [notice] = view.notice_records(registry, ["A2"], T0, T0 + 1)
    assert notice.contact_name == "Ms Two"
    assert view.notice_records(registry, ["A1"], T0, T0 + 1) == []


def test_quiet_mode_ends_now_and_only_once(registry: Registry) -> None:
    engine = AlertEngine(registry, Routes({}), AlertPolicy(), clock=Clock())
    mode = engine.quiet("feeder", "F1", T0 + 3_600_000, "switchgear", "op")
    assert [m.id for m in view.active_modes(registry, T0)] == [mode]
    assert view.end_quiet_mode(registry, mode, T0 + 60_000)
    assert view.active_modes(registry, T0 + 60_000) == []
    assert not view.end_quiet_mode(registry, mode, T0 + 120_000), "already over"


def test_local_times_and_lead_times() -> None:
    # 2026-01-01 08:00 in Shanghai is midnight UTC.
    assert view.parse_local("2026-01-01 08:00:00", "Asia/Shanghai") == 1_767_225_600_000
    assert view.parse_local("2026-01-01T08:00", "Asia/Shanghai") == 1_767_225_600_000
    assert view.parse_local("2026-01-01T00:00+00:00", "Asia/Shanghai") == 1_767_225_600_000
    assert view.parse_local("tomorrow", "Asia/Shanghai") is None
    assert view.parse_local(None, "Asia/Shanghai") is None
    assert view.offset_parts(7 * 86400) == (7, "d")
    assert view.offset_parts(48 * 3600) == (2, "d")
    assert view.offset_parts(36 * 3600) == (36, "h")
    assert view.offset_parts(1800) == (30, "min")
    assert view.row_state_of(RESOLVED, ACKNOWLEDGED) == RESOLVED
    assert view.row_state_of(FIRING, ACKNOWLEDGED) == ACKNOWLEDGED
    assert view.row_state_of(FIRING, None) == FIRING
