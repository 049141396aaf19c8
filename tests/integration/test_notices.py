"""Planned-outage notices end to end: a real SMTP server (aiosmtpd) as the customers' mail server,
the HTTP receiver as their DingTalk robot and as the operations webhook, a SQLite registry, and
an injected clock stepped through the days (no sleeping). The scheduler and the dispatcher are
the objects `pqmon alerts run` drives each pass."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from analysis.alerts.config import AlertConfig, parse
from analysis.alerts.dispatch import Dispatcher
from analysis.alerts.engine import AlertEngine
from analysis.alerts.notices import NoticeBook, NoticeScheduler
from analysis.alerts.state import IncidentRow
from core.registry import Registry
from tests.integration.receivers import (  # noqa: F401 - the fixtures are used by name
    HttpReceiver,
    Received,
    ReceivedMail,
    Reply,
    SmtpServer,
    http_receiver_fixture,
    smtp_server_fixture,
)

pytestmark = pytest.mark.integration

TZ = "Asia/Shanghai"
S, MIN, H, D = 1000, 60_000, 3_600_000, 86_400_000
T0 = int(datetime(2026, 3, 2, 1, 0, tzinfo=UTC).timestamp() * 1000)  # 2026-03-02 09:00 local
TOKEN = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a6978"

REGISTRY = """site_id,site_kind,name,voltage_class_kv,phases,meter_id,nominal_v,upper_pct,lower_pct,profile,feeder_id,manager
F1,feeder,Feeder 1,10,3,F1-M1,57.735,,,gb,,
A001,account,华南钢厂,10,3,A001-M1,57.735,,,gb,F1,
A002,account,Harbour Mill,10,3,A002-M1,57.735,,,gb,F1,
"""


class Clock:
    def __init__(self, ms: int) -> None:
        self.ms = ms

    def __call__(self) -> float:
        return self.ms / 1000


def utc(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC).replace(tzinfo=None)


def robot_replies(request: Received) -> Reply:
    return Reply(200, {"errcode": 0, "errmsg": "ok"})  # a robot's success; a webhook takes any 2xx


class Service:
    """The objects of one `pqmon alerts run` process (scheduler and dispatcher) and of the CLI
    (the notice book), on one registry file; ``restart`` replaces every one of them."""

    def __init__(self, db: str, config: AlertConfig, clock: Clock) -> None:
        self.db, self.config, self.clock = db, config, clock
        self._open()

    def _open(self) -> None:
        self.registry = Registry(self.db)
        self.book = NoticeBook(self.registry, self.config.notices, clock=self.clock)
        self.scheduler = NoticeScheduler(
            self.registry,
            self.config.notices,
            self.config.channels,
            self.config.routes,
            clock=self.clock,
            claim_timeout_s=60,
        )
        self.dispatcher = Dispatcher(self.registry, self.config.channels, clock=self.clock)

    def close(self) -> None:
        self.scheduler.close()
        self.dispatcher.close()
        self.registry.close()

    def restart(self) -> None:
        self.close()
        self._open()

    def at(self, ms: int) -> None:
        """One pass of the alert service at ``ms``."""
        self.clock.ms = ms
        self.scheduler.run_once()
        self.dispatcher.run_once()

    def states(self, window: int) -> dict[tuple[str, str, int, str], str]:
        """(contact, channel, offset_s, kind) -> state, for the window's current version."""
        version = self.registry.planned_window(window).version
        return {
            (n.contact_name, n.channel, n.offset_s, n.kind): n.state
            for n in self.registry.notices(window_id=window)
            if n.version == version
        }


@pytest.fixture
def service(tmp_path: Path, smtp_server: SmtpServer, http_receiver: HttpReceiver) -> Iterator[Service]:
    http_receiver.respond_with(robot_replies)
    raw = {
        "channels": {
            "ops-hook": {"type": "webhook", "url": f"{http_receiver.url}/ops"},
            "notice-mail": {
                "type": "email",
                "host": "127.0.0.1",
                "port": smtp_server.port,
                "security": "none",
                "sender": "供电服务中心 <notice@utility.example.cn>",
                "to": ["notice-copies@utility.example.cn"],
                "group": "notices",
            },
        },
        "notices": {"email_channel": "notice-mail"},
    }
    (tmp_path / "reg.csv").write_text(REGISTRY, encoding="utf-8")
    (tmp_path / "contacts.csv").write_text(
        "site_id,name,phone,email,robot_url,robot_secret,lang\n"
        f"A001,张三,13800138000,zhang@example.cn,{http_receiver.url}/robot/send?access_token={TOKEN},SECabc123,zh-CN\n"
        "A002,Bob Smith,+44 20 7946 0000,bob@example.com,,,en\n",
        encoding="utf-8",
    )
    registry = Registry(f"sqlite:///{tmp_path / 'r.db'}")
    registry.import_csv(tmp_path / "reg.csv")
    registry.import_contacts(tmp_path / "contacts.csv")
    registry.close()
    svc = Service(f"sqlite:///{tmp_path / 'r.db'}", parse(raw, TZ), Clock(T0))
    yield svc
    svc.close()


def robot_posts(receiver: HttpReceiver) -> list[Received]:
    return [r for r in receiver.requests if r.path == "/robot/send"]


def ops_posts(receiver: HttpReceiver) -> list[Received]:
    return [r for r in receiver.requests if r.path == "/ops"]


def mails_to(server: SmtpServer, address: str) -> list[ReceivedMail]:
    return [m for m in server.messages if m.rcpt_tos == [address]]


def subjects(server: SmtpServer, address: str) -> list[str]:
    # strip(): the stdlib may fold a long subject right after "Subject:", which leaves a leading space
    return [str(m.message["Subject"]).strip() for m in mails_to(server, address)]


def robot_titles(receiver: HttpReceiver) -> list[str]:
    return [r.json()["markdown"]["title"] for r in robot_posts(receiver)]


def test_eight_days_ahead_sends_7d_48h_12h_and_30min_each_once_across_restarts(
    service: Service, smtp_server: SmtpServer, http_receiver: HttpReceiver
) -> None:
    start, end = T0 + 8 * D, T0 + 8 * D + 4 * H  # 2026-03-10 09:00 to 13:00 local
    planned = service.book.register("F1", utc(start), utc(end), "replace breaker")
    assert planned.sites == ("F1", "A001", "A002")  # the feeder's window reaches both accounts' contacts
    assert planned.states == {"pending": 12}  # (张三: e-mail, robot; Bob: e-mail) x 4 notices

    def step(due: int, expected_total: int) -> None:
        service.at(due - S)  # a second early: nothing new
        assert len(smtp_server.messages) + len(robot_posts(http_receiver)) == expected_total - 3
        service.at(due)  # on time: the e-mails of both contacts and 张三's robot
        assert len(smtp_server.messages) + len(robot_posts(http_receiver)) == expected_total
        service.at(due + 10 * S)  # and again: nothing twice
        assert len(smtp_server.messages) + len(robot_posts(http_receiver)) == expected_total

    step(start - 7 * D, 3)
    assert subjects(smtp_server, "zhang@example.cn") == [
        "计划停电通知（提前7天）：华南钢厂 2026-03-10 09:00 至 2026-03-10 13:00"
    ]
    [bob] = mails_to(smtp_server, "bob@example.com")
    assert (
        bob.message["Subject"].strip()
        == "Planned outage notice (7 days ahead): Harbour Mill, 2026-03-10 09:00 to 2026-03-10 13:00"
    )
    body = bob.message.get_content()
    assert "Dear Bob Smith" in body and "(about 4 h)" in body and "UTC+08:00" in body
    [robot] = robot_posts(http_receiver)
    assert "sign" in robot.query and robot.query["access_token"] == [
        TOKEN
    ]  # signed with the contact's secret
    assert "提前7天通知" in robot.json()["markdown"]["text"]

    step(start - 48 * H, 6)
    service.restart()  # the alert service restarts between notices: new objects, same database
    service.at(start - 48 * H + 20 * S)
    assert len(smtp_server.messages) + len(robot_posts(http_receiver)) == 6

    # A scheduler that claims the 12 h notices and dies before sending them.
    service.clock.ms = start - 12 * H
    assert len(service.scheduler.claim(start - 12 * H)) == 3
    service.restart()
    service.at(start - 12 * H + 30 * S)  # the claim is younger than the claim timeout: left alone
    assert len(smtp_server.messages) + len(robot_posts(http_receiver)) == 6
    service.at(start - 12 * H + 61 * S)  # recovered after it
    assert len(smtp_server.messages) + len(robot_posts(http_receiver)) == 9

    step(start - 30 * MIN, 12)
    service.at(start + H)
    service.restart()
    service.at(end + D)
    assert subjects(smtp_server, "zhang@example.cn") == [
        "计划停电通知（提前7天）：华南钢厂 2026-03-10 09:00 至 2026-03-10 13:00",
        "计划停电通知（提前48小时）：华南钢厂 2026-03-10 09:00 至 2026-03-10 13:00",
        "计划停电通知（提前12小时）：华南钢厂 2026-03-10 09:00 至 2026-03-10 13:00",
        "停电前30分钟确认：华南钢厂 2026-03-10 09:00 开始停电",
    ]
    assert [s.split(":")[0] for s in subjects(smtp_server, "bob@example.com")] == [
        "Planned outage notice (7 days ahead)",
        "Planned outage notice (48 h ahead)",
        "Planned outage notice (12 h ahead)",
        "Confirmation (30 min before)",
    ]
    assert len(robot_posts(http_receiver)) == 4
    keys = {str(m.message["X-Pqmon-Key"]) for m in smtp_server.messages}
    assert len(keys) == 8 and all(k.startswith("pqmon-notice-") for k in keys)
    assert set(service.states(planned.window_id).values()) == {"sent"}
    assert ops_posts(http_receiver) == []


def test_twenty_hours_ahead_skips_7d_and_48h_and_sends_12h_and_30min(
    service: Service, smtp_server: SmtpServer, http_receiver: HttpReceiver
) -> None:
    start = T0 + 20 * H
    planned = service.book.register("A002", utc(start), utc(start + 2 * H))
    assert planned.states == {"pending": 2, "skipped_late": 2}  # only Bob: A002's one contact
    states = service.states(planned.window_id)
    assert states[("Bob Smith", "email", 7 * 86400, "ahead")] == "skipped_late"
    assert states[("Bob Smith", "email", 48 * 3600, "ahead")] == "skipped_late"
    service.at(T0)  # nothing is due now: no "48 h" notice 20 hours before
    assert smtp_server.messages == []
    service.at(start - 12 * H)
    service.at(start - 30 * MIN)
    service.at(start + H)
    assert [s.split(":")[0] for s in subjects(smtp_server, "bob@example.com")] == [
        "Planned outage notice (12 h ahead)",
        "Confirmation (30 min before)",
    ]
    assert service.states(planned.window_id) == {
        ("Bob Smith", "email", 7 * 86400, "ahead"): "skipped_late",
        ("Bob Smith", "email", 48 * 3600, "ahead"): "skipped_late",
        ("Bob Smith", "email", 12 * 3600, "ahead"): "sent",
        ("Bob Smith", "email", 30 * 60, "confirm"): "sent",
    }


def test_a_moved_outage_is_replanned_and_the_customer_is_told_once(
    service: Service, smtp_server: SmtpServer, http_receiver: HttpReceiver
) -> None:
    start = T0 + 8 * D
    planned = service.book.register("A001", utc(start), utc(start + 4 * H))
    service.at(start - 7 * D)  # 张三 is told (e-mail and robot)
    assert len(mails_to(smtp_server, "zhang@example.cn")) == 1 and len(robot_posts(http_receiver)) == 1

    service.clock.ms = start - 7 * D + H
    new_start = start + 2 * D  # 2026-03-12 09:00 local
    moved = service.book.move(planned.window_id, utc(new_start), utc(new_start + 3 * H))
    assert moved.version == 2 and moved.told == 2  # one "moved" notice on each of 张三's channels
    service.at(start - 7 * D + H)
    service.at(start - 7 * D + 2 * H)
    [_, told] = mails_to(smtp_server, "zhang@example.cn")
    assert (
        told.message["Subject"].strip()
        == "计划停电时间变更：华南钢厂 改为 2026-03-12 09:00 至 2026-03-12 12:00"
    )
    assert "原定于 2026-03-10 09:00 至 2026-03-10 13:00" in told.message.get_content()
    assert robot_titles(http_receiver)[1].startswith("计划停电时间变更")

    # The old times pass in silence; the new version's notices follow its own schedule.
    old = (start - 48 * H, start - 12 * H, start - 30 * MIN)
    new = (new_start - 7 * D, new_start - 48 * H, new_start - 12 * H, new_start - 30 * MIN)
    for t in sorted(old + new):
        before = len(mails_to(smtp_server, "zhang@example.cn"))
        service.at(t)
        assert len(mails_to(smtp_server, "zhang@example.cn")) == before + (t in new and t not in old)
    assert [s.split("：")[0] for s in subjects(smtp_server, "zhang@example.cn")] == [
        "计划停电通知（提前7天）",
        "计划停电时间变更",
        "计划停电通知（提前7天）",
        "计划停电通知（提前48小时）",
        "计划停电通知（提前12小时）",
        "停电前30分钟确认",
    ]
    assert "2026-03-12 09:00" in subjects(smtp_server, "zhang@example.cn")[2]
    assert len(robot_posts(http_receiver)) == 6
    # The planned_outage rows moved with it (the engine and the worker read those).
    assert service.registry.planned_outages("A001") == [(utc(new_start), utc(new_start + 3 * H))]
    assert smtp_server.messages == mails_to(smtp_server, "zhang@example.cn")  # Bob's account is not affected


def test_a_cancelled_outage_withdraws_its_notices_and_tells_who_was_told(
    service: Service, smtp_server: SmtpServer, http_receiver: HttpReceiver
) -> None:
    start = T0 + 8 * D
    early = service.book.register("A002", utc(start), utc(start + 4 * H))
    untold = service.book.register("A002", utc(start + 20 * D), utc(start + 20 * D + H))
    service.at(start - 7 * D)
    assert len(mails_to(smtp_server, "bob@example.com")) == 1
    service.clock.ms = start - 6 * D
    assert service.book.cancel(early.window_id).told == 1
    assert service.book.cancel(untold.window_id).told == 0  # nobody had heard of it: nothing to say
    for t in (start - 6 * D, start - 48 * H, start - 12 * H, start - 30 * MIN, start + 21 * D):
        service.at(t)
    [_, cancelled] = mails_to(smtp_server, "bob@example.com")
    assert (
        cancelled.message["Subject"].strip()
        == "Planned outage cancelled: Harbour Mill, 2026-03-10 09:00 to 2026-03-10 13:00"
    )
    assert "supply continues as normal" in cancelled.message.get_content()
    log = service.registry.notices(window_id=early.window_id)
    assert sorted(n.state for n in log) == ["cancelled", "cancelled", "cancelled", "sent", "sent"]
    assert service.registry.planned_outages("A002") == []  # no longer a planned window for the worker


def test_an_address_the_mail_server_refuses_raises_an_ops_alert(
    service: Service, smtp_server: SmtpServer, http_receiver: HttpReceiver, tmp_path: Path
) -> None:
    smtp_server.refuse = {"nobody@example.cn": "550 5.1.1 <nobody@example.cn>: no such user"}
    (tmp_path / "more.csv").write_text(
        "site_id,name,phone,email,robot_url,robot_secret,lang\nA002,Ghost,021-5555-0100,nobody@example.cn,,,\n",
        encoding="utf-8",
    )
    service.registry.import_contacts(tmp_path / "more.csv")
    start = T0 + 8 * D
    planned = service.book.register("A002", utc(start), utc(start + 4 * H))
    service.at(start - 7 * D)
    assert len(mails_to(smtp_server, "bob@example.com")) == 1
    [page] = ops_posts(http_receiver)
    alert = page.json()
    assert alert["kind"] == "notice_failed" and alert["site"] == "A002"
    assert "Ghost" in alert["title"] and "7 days" in alert["title"]
    assert "550 5.1.1" in alert["text"] and "phone 021-5555-0100" in alert["text"]
    failed = [n for n in service.registry.notices(window_id=planned.window_id) if n.state == "failed"]
    assert [(n.contact_name, n.offset_s, n.attempts) for n in failed] == [("Ghost", 7 * 86400, 1)]
    with Session(service.registry.engine) as s:
        [incident] = s.scalars(select(IncidentRow).where(IncidentRow.rule == "notice_failed")).all()
        assert incident.state == "firing" and incident.group_key == f"notice:{planned.window_id}"
    [listed] = AlertEngine(service.registry, service.config.routes).open_incidents()  # pqmon alerts list
    assert listed["rule"] == "notice_failed" and "not delivered; last: 7 days to Ghost" in listed["detail"]
    service.at(start - 48 * H)  # the next notice fails too: one more page, the same incident
    assert len(ops_posts(http_receiver)) == 2
    service.at(start + 5 * H)  # the window is over: the incident closes, without a page
    with Session(service.registry.engine) as s:
        assert s.scalars(select(IncidentRow.state)).all() == ["resolved"]
    assert len(ops_posts(http_receiver)) == 2
