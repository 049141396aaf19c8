"""Planned-outage notices: the planning rules (pure functions), the contacts CSV, the notice book and
the scheduler on a SQLite registry with an injected clock and fake senders, and the commands.
No servers, no sleeping."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from analysis.alerts.channels import DeliveryResult, Message, backoff_s
from analysis.alerts.config import parse
from analysis.alerts.engine import Routes
from analysis.alerts.notices import (
    AHEAD,
    CANCELLED,
    CONFIRM,
    DROP,
    GIVE_UP,
    MOVED,
    SEND,
    SKIP,
    NoticeBook,
    NoticePolicy,
    NoticeScheduler,
    NoticeText,
    Recipient,
    claim_decision,
    offset_label,
    parse_duration,
    plan_ahead,
    plan_change,
    render_notice,
)
from analysis.alerts.state import IncidentRow, OutboxRow
from core.errors import ConfigError, RegistryError
from core.registry import Contact, Registry
from pqmon import cli

S, MIN, H, D = 1000, 60_000, 3_600_000, 86_400_000
T0 = int(datetime(2026, 3, 2, 1, 0, tzinfo=UTC).timestamp() * 1000)  # 2026-03-02 09:00 in Shanghai
TZ = "Asia/Shanghai"
POLICY = NoticePolicy(tz=TZ)
CONTACTS_HEADER = "site_id,name,phone,email,robot_url,robot_secret,lang\n"
REGISTRY = """site_id,site_kind,name,voltage_class_kv,phases,meter_id,nominal_v,upper_pct,lower_pct,profile,feeder_id,manager
F1,feeder,Feeder 1,10,3,F1-M1,57.735,,,gb,,
A001,account,华南钢厂,10,3,A001-M1,57.735,,,gb,F1,
A002,account,Harbour Mill,10,3,A002-M1,57.735,,,gb,F1,
B001,account,Lone Shop,0.38,3,B001-M1,220,,,gb,,
"""
ROBOT = "https://oapi.dingtalk.com/robot/send?access_token=abcdef0123456789"
WECOM = "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=0ec2a1f6-7d3c"


def utc(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC).replace(tzinfo=None)


# --------------------------------------------------------------------------- planning rules (pure)

ONE = [Recipient(1, "A001", ("email", "robot"))]


def test_eight_days_ahead_every_notice_is_pending_at_its_offset():
    start = T0 + 8 * D
    planned = plan_ahead(start, ONE, POLICY, T0)
    by_channel = {(p.channel, p.kind, p.offset_s): (p.due_ms, p.state) for p in planned}
    assert len(planned) == 8
    assert by_channel[("email", AHEAD, 7 * 86400)] == (start - 7 * D, "pending")
    assert by_channel[("email", AHEAD, 48 * 3600)] == (start - 48 * H, "pending")
    assert by_channel[("robot", AHEAD, 12 * 3600)] == (start - 12 * H, "pending")
    assert by_channel[("robot", CONFIRM, 30 * 60)] == (start - 30 * MIN, "pending")


def test_twenty_hours_ahead_7d_and_48h_are_skipped_late():
    planned = plan_ahead(T0 + 20 * H, [Recipient(1, "A001", ("email",))], POLICY, T0)
    assert [(p.kind, p.offset_s // 3600, p.state) for p in planned] == [
        (AHEAD, 168, "skipped_late"),
        (AHEAD, 48, "skipped_late"),
        (AHEAD, 12, "pending"),
        (CONFIRM, 0, "pending"),
    ]


def test_the_confirmation_goes_out_while_the_start_is_ahead_however_late():
    twenty_min = plan_ahead(T0 + 20 * MIN, [Recipient(1, "A001", ("email",))], POLICY, T0)
    assert [p.state for p in twenty_min] == ["skipped_late"] * 3 + ["pending"]
    assert twenty_min[-1].due_ms == T0 - 10 * MIN  # already due: sent on the next pass
    begun = plan_ahead(T0 - MIN, [Recipient(1, "A001", ("email",))], POLICY, T0)
    assert [p.state for p in begun] == ["skipped_late"] * 4  # a window registered after the fact


def test_a_notice_due_exactly_now_is_pending_and_a_contact_without_channels_gets_none():
    planned = plan_ahead(
        T0 + 12 * H, [Recipient(1, "A001", ("email",)), Recipient(2, "A001", ())], POLICY, T0
    )
    assert [p.state for p in planned if p.offset_s == 12 * 3600] == ["pending"]
    assert {p.contact_id for p in planned} == {1}


def test_configured_offsets_and_no_confirmation():
    policy = NoticePolicy(offsets_s=(3 * 86400, 3600), confirm_s=None)
    planned = plan_ahead(T0 + 4 * D, ONE, policy, T0)
    assert sorted({(p.kind, p.offset_s) for p in planned}) == [(AHEAD, 3600), (AHEAD, 3 * 86400)]


def test_moved_and_cancelled_notices_are_due_now_on_every_channel():
    planned = plan_change(MOVED, ONE, T0)
    assert [(p.channel, p.kind, p.offset_s, p.due_ms, p.state) for p in planned] == [
        ("email", MOVED, 0, T0, "pending"),
        ("robot", MOVED, 0, T0, "pending"),
    ]


@pytest.mark.parametrize(
    ("kind", "now", "next_due", "attempts", "current", "action"),
    [
        (AHEAD, T0, T0 + H, 0, True, SEND),
        (AHEAD, T0 + H, T0 + H, 0, True, SKIP),  # the next notice is due: this one is superseded
        (AHEAD, T0 + H, T0 + H, 2, True, GIVE_UP),  # tried and failed until too late: ops must hear
        (AHEAD, T0 + 2 * D, None, 0, True, SKIP),  # the outage has begun
        (CONFIRM, T0 + D - S, None, 0, True, SEND),
        (CONFIRM, T0 + D, None, 3, True, GIVE_UP),
        (MOVED, T0 + 3 * D, None, 0, True, SEND),  # a moved notice is never "late"
        (AHEAD, T0, T0 + H, 0, False, DROP),  # the window moved or was cancelled since
    ],
)
def test_claim_decision(kind, now, next_due, attempts, current, action):
    assert claim_decision(kind, T0 + D, next_due, attempts, now, current)[0] == action


def test_offset_labels():
    assert [offset_label(s) for s in (7 * 86400, 2 * 86400, 12 * 3600, 1800)] == [
        "7 days",
        "48 h",
        "12 h",
        "30 min",
    ]
    assert [offset_label(s, "zh-CN") for s in (7 * 86400, 48 * 3600, 1800)] == ["7天", "48小时", "30分钟"]


def test_durations_parse_and_bad_ones_are_refused():
    assert [parse_duration(t, "x") for t in ("7d", "48h", "30m")] == [7 * 86400, 48 * 3600, 1800]
    for bad in ("7", "0h", "2w", 30):
        with pytest.raises(ConfigError, match="duration"):
            parse_duration(bad, "x")


def test_notice_text_in_both_languages_names_the_site_the_local_times_and_which_notice():
    text = NoticeText(
        AHEAD, 48 * 3600, "zh-CN", "A001", "华南钢厂", "张三", T0 + 8 * D, T0 + 8 * D + 150 * MIN, key="k1"
    )
    title, body = render_notice(text, TZ)
    assert title == "计划停电通知（提前48小时）：华南钢厂 2026-03-10 09:00 至 2026-03-10 11:30"
    assert "张三，您好" in body and "华南钢厂（A001）将于 2026-03-10 09:00 至 2026-03-10 11:30 停电" in body
    assert "时长约2小时30分钟" in body and "UTC+08:00" in body and "k1" in body
    en = NoticeText(CONFIRM, 1800, "en", "A002", "Harbour Mill", "Bob", T0, T0 + H)
    title, body = render_notice(en, "UTC")
    assert title == "Confirmation (30 min before): planned outage at Harbour Mill starts 2026-03-02 01:00"
    assert "Harbour Mill (A002)" in body and "UTC+00:00" in body
    moved = NoticeText(MOVED, 0, "en", "A002", "Harbour Mill", "Bob", T0 + D, T0 + D + H, T0, T0 + H)
    assert (
        "announced for 2026-03-02 09:00 to 2026-03-02 10:00 now takes place from 2026-03-03 09:00"
        in (render_notice(moved, TZ)[1])
    )
    gone = NoticeText(CANCELLED, 0, "zh-CN", "A001", "华南钢厂", "张三", T0, T0 + H)
    assert render_notice(gone, TZ)[0] == "计划停电取消：华南钢厂 2026-03-02 09:00 至 2026-03-02 10:00"


def test_notices_section_of_the_alerts_file():
    mail = {"type": "email", "host": "smtp.example.cn", "sender": "n@example.cn", "to": ["x@example.cn"]}
    config = parse(
        {
            "channels": {"notice-mail": mail | {"group": "notices"}},
            "notices": {"offsets": ["12h", "7d"], "confirmation": "15m", "email_channel": "notice-mail"},
        },
        TZ,
    )
    assert config.notices == NoticePolicy((7 * 86400, 12 * 3600), 900, "notice-mail", 12, TZ)
    assert config.routes.of("ops") == []  # a notices-only mail server pages no one
    assert parse({}, TZ).notices == NoticePolicy(tz=TZ)
    for notices, message in [
        ({"email_channel": "ops-hook"}, "not an email channel"),
        ({"offsets": ["7d", "20m"]}, "longer than the confirmation"),
        ({"ofsets": ["7d"]}, "not a setting"),
        ({"max_attempts": 0}, "max_attempts"),
    ]:
        with pytest.raises(ConfigError, match=message):
            parse(
                {"channels": {"ops-hook": {"type": "webhook", "url": "http://h/x"}}, "notices": notices}, TZ
            )


# --------------------------------------------------------------------------- contacts


@pytest.fixture
def registry(tmp_path: Path, any_registry_url: str):
    (tmp_path / "reg.csv").write_text(REGISTRY, encoding="utf-8")
    reg = Registry(any_registry_url)  # SQLite, then PostgreSQL
    reg.import_csv(tmp_path / "reg.csv")
    yield reg
    reg.close()


def contacts_file(tmp_path: Path, *rows: str) -> Path:
    path = tmp_path / "contacts.csv"
    path.write_text(CONTACTS_HEADER + "".join(r + "\n" for r in rows), encoding="utf-8")
    return path


def test_contacts_import_adds_and_updates_by_site_and_name(registry: Registry, tmp_path: Path):
    result = registry.import_contacts(
        contacts_file(
            tmp_path,
            f"A001,张三,138 0013 8000,zhang@example.cn,{ROBOT},SECabc,",
            f"A002,Bob,,bob@example.com,{WECOM},,EN",
            "B001,Wang,13900000000,,,,zh",
        )
    )
    assert (result.added, result.updated, result.unreachable) == (3, 0, ("B001/Wang",))
    [zhang] = registry.contacts("A001")
    assert zhang.lang == "zh-CN" and zhang.channels == ("email", "robot") and zhang.robot_kind == "dingtalk"
    assert "abcdef" not in repr(zhang) and "SECabc" not in repr(zhang)  # secrets stay out of logs
    assert registry.contacts("A002")[0].lang == "en" and registry.contacts("A002")[0].robot_kind == "wecom"
    again = registry.import_contacts(contacts_file(tmp_path, "A001,张三,,zhang@new.example.cn,,,en"))
    assert (again.added, again.updated) == (0, 1)
    assert (
        registry.contacts("A001")[0].email == "zhang@new.example.cn"
        and registry.contacts("A001")[0].robot_url is None
    )


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("A009,Li,,li@example.cn,,,", "site_id: 'A009' is not in the registry"),
        ("F1,Li,,li@example.cn,,,", "site_id: F1 is a feeder"),
        ("A001,Li,,li@example,,,", "email: 'li@example' is not an e-mail address"),
        ("A001,Li,,li example.cn,,,", "email"),
        ("A001,Li,,li@@example.cn,,,", "email"),
        ("A001,,,li@example.cn,,,", "name"),
        ("A001,Li,call me,,,,", "phone"),
        ("A001,Li,,,https://example.cn/hook,,", "robot_url"),
        (f"A001,Li,,,{WECOM},SECabc,", "robot_secret: only DingTalk"),
        (f"A001,Li,,,{ROBOT},abc,", "robot_secret: must be"),
        ("A001,Li,,,,SECabc,", "robot_secret: given without"),
        ("A001,Li,,li@example.cn,,,fr", "lang: must be zh-CN or en"),
    ],
)
def test_a_bad_contact_row_is_named_by_line_and_field_and_nothing_is_imported(
    registry: Registry, tmp_path: Path, row: str, message: str
):
    path = contacts_file(tmp_path, "A002,Bob,,bob@example.com,,,en", row)
    with pytest.raises(RegistryError, match=rf"line 3: {message}"):
        registry.import_contacts(path)
    assert registry.contacts() == []  # all or nothing


def test_a_duplicate_contact_names_both_lines(registry: Registry, tmp_path: Path):
    path = contacts_file(tmp_path, "A002,Bob,,bob@example.com,,,", "A002,Bob,,bob2@example.com,,,")
    with pytest.raises(RegistryError, match="line 3: name: 'Bob' of A002 is already on line 2"):
        registry.import_contacts(path)


def test_a_contacts_file_without_a_column_is_refused(registry: Registry, tmp_path: Path):
    path = tmp_path / "c.csv"
    path.write_text("site_id,name,email\nA001,Li,li@example.cn\n")
    with pytest.raises(RegistryError, match="missing column"):
        registry.import_contacts(path)


# --------------------------------------------------------------------------- book and scheduler


class Clock:
    def __init__(self, ms: int) -> None:
        self.ms = ms

    def __call__(self) -> float:
        return self.ms / 1000


class FakeChannel:
    """Answers from a script (then success) and records every message."""

    def __init__(self, recipient: str, script: list[DeliveryResult], sent: list[tuple[str, Message]]) -> None:
        self.recipient, self.script, self.sent = recipient, script, sent

    def send(self, message: Message) -> DeliveryResult:
        self.sent.append((self.recipient, message))
        return self.script.pop(0) if self.script else DeliveryResult(True, False, "ok")


class World:
    def __init__(self, registry: Registry, policy: NoticePolicy = POLICY) -> None:
        self.registry, self.policy, self.clock = registry, policy, Clock(T0)
        self.sent: list[tuple[str, Message]] = []
        self.script: dict[str, list[DeliveryResult]] = {}
        self.book = NoticeBook(registry, policy, clock=self.clock)
        self.scheduler = self.new_scheduler()

    def sender(self, contact: Contact, channel: str) -> FakeChannel:
        recipient = contact.email if channel == "email" else f"robot:{contact.name}"
        return FakeChannel(str(recipient), self.script.setdefault(str(recipient), []), self.sent)

    def new_scheduler(self) -> NoticeScheduler:
        return NoticeScheduler(
            self.registry, self.policy, {}, Routes({"ops": ["ops-hook"]}), self.clock, 60, sender=self.sender
        )

    def at(self, ms: int) -> int:
        self.clock.ms = ms
        return self.scheduler.run_once()

    def keys(self) -> list[str]:
        return [m.key for _, m in self.sent]


@pytest.fixture
def world(registry: Registry, tmp_path: Path):
    registry.import_contacts(
        contacts_file(
            tmp_path, "A001,张三,,zhang@example.cn,,,", "A002,Bob,+86 21 5555 0100,bob@example.com,,,en"
        )
    )
    w = World(registry)
    yield w
    w.scheduler.close()


def ops_pages(registry: Registry) -> list[OutboxRow]:
    with Session(registry.engine) as s:
        return list(s.scalars(select(OutboxRow).where(OutboxRow.kind == "notice_failed")))


def test_a_feeders_window_reaches_every_account_contact_and_an_accounts_only_its_own(world: World):
    feeder = world.book.register("F1", utc(T0 + 8 * D), utc(T0 + 8 * D + H))
    assert feeder.sites == ("F1", "A001", "A002") and feeder.contacts == 2 and feeder.states == {"pending": 8}
    account = world.book.register("A002", utc(T0 + 9 * D), utc(T0 + 9 * D + H))
    assert account.contacts == 1 and account.states == {"pending": 4}
    windows = world.registry.planned_windows("A001")
    assert [w.id for w in windows] == [feeder.window_id] and windows[0].sites == ("A001", "A002", "F1")
    assert sorted(world.registry.planned_outages("A002")) == [
        (utc(T0 + 8 * D), utc(T0 + 8 * D + H)),
        (utc(T0 + 9 * D), utc(T0 + 9 * D + H)),
    ]


def test_a_crash_between_claim_and_send_is_recovered_after_the_claim_timeout(world: World):
    world.book.register("A002", utc(T0 + 8 * D), utc(T0 + 8 * D + H))
    due = T0 + D
    assert world.scheduler.claim(due) != []  # claimed, then the process dies before sending
    world.scheduler = world.new_scheduler()
    assert world.at(due + 59 * S) == 0 and world.sent == []
    assert world.at(due + 61 * S) == 1 and len(world.sent) == 1
    assert world.at(due + 62 * S) == 0 and len(world.sent) == 1


def test_retries_back_off_and_a_notice_out_of_retries_pages_operations(registry: Registry, tmp_path: Path):
    registry.import_contacts(contacts_file(tmp_path, "A002,Bob,+86 21 5555 0100,bob@example.com,,,en"))
    world = World(registry, NoticePolicy(max_attempts=3, tz=TZ))
    world.script["bob@example.com"] = [DeliveryResult(False, True, "421 try later")] * 3
    world.book.register("A002", utc(T0 + 8 * D), utc(T0 + 8 * D + H))
    due = T0 + D
    world.at(due)
    [notice] = [n for n in registry.notices() if n.state == "pending" and n.attempts == 1]
    assert notice.due_ms == due + backoff_s(1) * 1000 and notice.last_error == "421 try later"
    world.at(due + 4 * S)  # not yet
    assert len(world.sent) == 1
    world.at(due + 5 * S)
    world.at(due + 5 * S + 10 * S)
    assert len(world.sent) == 3 and ops_pages(registry) != []
    [failed] = [n for n in registry.notices() if n.state == "failed"]
    assert failed.attempts == 3
    [page] = ops_pages(registry)
    assert page.channel == "ops-hook" and page.site_id == "A002" and "phone +86 21 5555 0100" in page.body
    assert json.loads(page.payload)["which"] == "7 days"
    assert len({m.key for _, m in world.sent}) == 1  # the same notice: the same idempotency key
    world.scheduler.close()


def test_a_permanent_refusal_fails_at_once_and_pages_operations(world: World):
    world.script["bob@example.com"] = [DeliveryResult(False, False, "550 no such user")]
    window = world.book.register("A002", utc(T0 + 8 * D), utc(T0 + 8 * D + H))
    world.at(T0 + D)
    assert [(n.state, n.attempts, n.last_error) for n in world.registry.notices() if n.attempts] == [
        ("failed", 1, "550 no such user")
    ]
    with Session(world.registry.engine) as s:
        [incident] = s.scalars(select(IncidentRow)).all()
    assert (incident.rule, incident.group_key, incident.next_notify_ms) == (
        "notice_failed",
        f"notice:{window.window_id}",
        None,  # no reminders: the page says whom to phone
    )


def test_a_notice_still_unsent_when_the_next_is_due_is_skipped_not_sent_late(world: World):
    start = T0 + 8 * D
    world.book.register("A002", utc(start), utc(start + H))
    world.at(start - 7 * D)
    world.at(start - 10 * H)  # the service was down from before the 48 h notice until after the 12 h one
    assert [m.title.split(":")[0] for _, m in world.sent] == [
        "Planned outage notice (7 days ahead)",
        "Planned outage notice (12 h ahead)",
    ]
    states = {(n.offset_s, n.state) for n in world.registry.notices()}
    assert (48 * 3600, "skipped_late") in states
    world.at(start + MIN)  # and down again over the confirmation's time: not sent after the start
    assert len(world.sent) == 2 and (1800, "skipped_late") in {
        (n.offset_s, n.state) for n in world.registry.notices()
    }


def test_a_notice_failing_until_the_outage_begins_fails_and_pages(world: World):
    start = T0 + 20 * MIN
    world.script["bob@example.com"] = [DeliveryResult(False, True, "timeout")] * 20
    world.book.register("A002", utc(start), utc(start + H))
    t = T0
    while t < start + 10 * MIN:
        world.at(t)
        t += 60 * S
    [confirm] = [n for n in world.registry.notices() if n.kind == "confirm"]
    assert confirm.state == "failed" and "before the outage had begun" in (confirm.last_error or "")
    assert len(ops_pages(world.registry)) == 1


def test_contacts_added_later_get_the_notices_still_ahead(world: World, tmp_path: Path):
    world.clock.ms = T0
    window = world.book.register("A001", utc(T0 + 30 * H), utc(T0 + 31 * H))
    (tmp_path / "more.csv").write_text(CONTACTS_HEADER + f"A001,Li,,li@example.cn,{ROBOT},,\n")
    result, added = world.book.import_contacts(str(tmp_path / "more.csv"))
    assert result.added == 1 and added == 8
    li = [n for n in world.registry.notices(window_id=window.window_id) if n.contact_name == "Li"]
    assert sorted({(n.offset_s, n.state) for n in li}) == [
        (1800, "pending"),
        (12 * 3600, "pending"),
        (48 * 3600, "skipped_late"),
        (7 * 86400, "skipped_late"),
    ]
    assert world.book.import_contacts(str(tmp_path / "more.csv"))[1] == 0  # nothing twice


def test_a_move_before_anyone_was_told_sends_no_moved_notice(world: World):
    window = world.book.register("A002", utc(T0 + 9 * D), utc(T0 + 9 * D + H))
    moved = world.book.move(window.window_id, utc(T0 + 10 * D), utc(T0 + 10 * D + H))
    assert moved.told == 0 and moved.version == 2
    log = world.registry.notices(window_id=window.window_id)
    assert sorted((n.version, n.state) for n in log) == [(1, "cancelled")] * 4 + [(2, "pending")] * 4
    with pytest.raises(RegistryError, match="no planned outage 99"):
        world.book.move(99, utc(T0 + D), utc(T0 + D + H))
    world.book.cancel(window.window_id)
    with pytest.raises(RegistryError, match="is cancelled"):
        world.book.cancel(window.window_id)


def test_moved_back_to_the_time_the_customer_knows_says_nothing(world: World):
    start = T0 + 8 * D
    window = world.book.register("A002", utc(start), utc(start + H))
    world.at(start - 7 * D)  # Bob hears of start .. start + 1 h
    world.clock.ms = start - 7 * D + H
    assert world.book.move(window.window_id, utc(start + D), utc(start + D + H)).told == 1
    assert (
        world.book.move(window.window_id, utc(start), utc(start + H)).told == 0
    )  # the unsent "moved" is withdrawn
    world.at(start - 7 * D + 2 * H)
    assert len(world.sent) == 1


# --------------------------------------------------------------------------- commands


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The commands run in this process; the root logger they configure is put back afterwards
    (its handler writes to the test's captured stderr, closed once the test is over)."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    for name in ("PQMON_ALERTS_FILE", "PQMON_CONFIG", "PQMON_TZ"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PQMON_REGISTRY_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    monkeypatch.setenv("PQMON_DATA_DIR", str(tmp_path / "var"))
    (tmp_path / "reg.csv").write_text(REGISTRY, encoding="utf-8")
    assert cli.main(["registry", "import", str(tmp_path / "reg.csv")]) == 0
    yield tmp_path
    root.handlers[:] = handlers
    root.setLevel(level)


def local(days: float, hour: int) -> str:
    """A local (Shanghai) time ``days`` from now at ``hour``:00, as the commands take it."""
    moment = datetime.now(UTC).timestamp() + days * 86400
    return datetime.fromtimestamp(moment, ZoneInfo(TZ)).strftime(f"%Y-%m-%dT{hour:02d}:00") + "+08:00"


def test_the_commands(env: Path, capsys: pytest.CaptureFixture[str]):
    bad = contacts_file(env, "A001,Li,,li@example.cn,,,", "A9,X,,x@example.cn,,,")
    assert cli.main(["contacts", "import", str(bad)]) == 2
    assert "line 3: site_id: 'A9' is not in the registry" in capsys.readouterr().err
    good = contacts_file(
        env, "A001,张三,,zhang@example.cn,,,", f"A002,Bob,,bob@example.com,{ROBOT},SECx,en", "A002,Ann,,,,,"
    )
    assert cli.main(["contacts", "import", str(good)]) == 0
    out = capsys.readouterr()
    assert "contacts: 3 added, 0 updated" in out.out and "A002/Ann has neither" in out.err
    assert cli.main(["contacts", "list", "A002"]) == 0
    listed = capsys.readouterr().out
    assert (
        "Bob" in listed and "dingtalk" in listed and "(signed)" in listed and "abcdef0123456789" not in listed
    )

    assert (
        cli.main(["planned", "add", "F1", "--from", local(8, 9), "--to", local(8, 13), "--note", "QF3"]) == 0
    )
    out = capsys.readouterr().out
    assert out.startswith("planned outage 1: ") and "registered for F1, A001, A002" in out
    assert "12 pending" in out and "2 contact(s)" in out
    assert cli.main(["planned", "move", "1", "--from", local(9, 9), "--to", local(9, 12)]) == 0
    assert "planned outage 1 moved (version 2)" in capsys.readouterr().out
    assert cli.main(["planned", "list", "--site", "A002"]) == 0
    assert "1: F1 " in capsys.readouterr().out
    assert cli.main(["notices", "list", "--site", "A002", "--json"]) == 0
    log = json.loads(capsys.readouterr().out)
    assert {(n["version"], n["state"]) for n in log} == {(1, "cancelled"), (2, "pending")}
    assert cli.main(["planned", "cancel", "1"]) == 0
    assert "planned outage 1 cancelled" in capsys.readouterr().out
    assert cli.main(["notices", "list", "--planned", "1"]) == 0
    assert "7 days notice" in capsys.readouterr().out
    assert cli.main(["planned", "cancel", "1"]) == 2
    assert "is cancelled" in capsys.readouterr().err
    assert Registry(f"sqlite:///{env / 'cli.db'}").planned_outages("A001") == []


def test_the_service_pass_does_not_wait_for_a_slow_mail_server(world: World):
    release = threading.Event()

    class Hanging(FakeChannel):
        def send(self, message: Message) -> DeliveryResult:
            release.wait(10)
            return super().send(message)

    world.scheduler.sender = lambda contact, channel: Hanging(str(contact.email), [], world.sent)
    world.book.register("A002", utc(T0 + 8 * D), utc(T0 + 8 * D + H))
    world.clock.ms = T0 + D
    assert world.scheduler.run_once(wait=False) == 1  # returns with the send still going
    assert [n.state for n in world.registry.notices() if n.offset_s == 7 * 86400] == ["sending"]
    assert world.scheduler.run_once(wait=False) == 0  # the next batch waits for this one
    release.set()
    world.scheduler.close()  # waits for the send in flight
    assert [n.state for n in world.registry.notices() if n.offset_s == 7 * 86400] == ["sent"]
