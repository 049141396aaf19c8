"""Planned-outage notices to customers: 7 days, 48 h and 12 h ahead, a confirmation 30 minutes
before the start, and one notice when a window is moved or cancelled.

The promise is kept the way the outbox keeps the alerts' (see :mod:`analysis.alerts.dispatch`):

- **Owed in the same transaction.** Registering, moving or cancelling a planned outage writes
  the ``due_notice`` rows it owes (one per window version x contact x channel x notice) in the
  transaction that changes the window, so a notice is never owed for a window that does not
  exist, nor missing for one that does.
- **Planning is pure.** :func:`plan_ahead`, :func:`claim_decision` and :func:`render_notice`
  take values and return values; the classes below only read and write rows around them.
  A notice whose time has passed when the window is registered is ``skipped_late`` (never a
  "48 h" notice 20 hours before), except the confirmation, which goes out while the start is
  still ahead. A notice that is still unsent when the next one is due, or when the outage
  has begun (the service was down, or retries ran long), is not sent either.
- **Sent once.** The scheduler claims due rows with a conditional UPDATE (``FOR UPDATE SKIP
  LOCKED`` on PostgreSQL), sends, and marks them sent with the attempt in ``notice_delivery``.
  A scheduler that dies between claim and mark leaves a ``sending`` row that goes back to
  pending after the claim timeout; the customer may then get a second copy with the same
  idempotency key (``pqmon-notice-<id>``, the e-mail's Message-ID), as with the outbox.
- **A failure reaches operations.** A notice refused for good (a 5xx from the mail server, a
  robot's bad token) or out of retries is ``failed`` and, in the same transaction, opens an
  operations incident (``notice_failed``, one per window) with an outbox row for every ops
  channel: someone has to phone the customer. The incident is resolved, without a notice,
  when the window is over or cancelled.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from analysis.alerts.engine import OPS, Routes
from analysis.alerts.state import FIRING, OPEN_STATES, PENDING, RESOLVED, IncidentRow, OutboxRow
from core.errors import ConfigError, RegistryError
from core.registry import (
    NOTICE_CANCELLED,
    NOTICE_FAILED,
    NOTICE_PENDING,
    NOTICE_SENDING,
    NOTICE_SENT,
    NOTICE_SKIPPED_LATE,
    WINDOW_ACTIVE,
    WINDOW_CANCELLED,
    Contact,
    ContactImport,
    ContactRow,
    DueNoticeRow,
    NoticeDeliveryRow,
    PlannedOutageRow,
    PlannedWindowRow,
    PlannedWindowSiteRow,
    Registry,
    SiteRow,
    contact_from_row,
    parse_contacts_csv,
    write_contacts,
)

log = logging.getLogger(__name__)

MIN_S, HOUR_S, DAY_S = 60, 3600, 86400

# Notice kinds.
AHEAD = "ahead"  # 7 days, 48 h, 12 h before the start
CONFIRM = "confirm"  # 30 minutes before: sent while the start is ahead, however late it was registered
MOVED = "moved"
CANCELLED = "cancelled"
# Channels of a contact.
EMAIL = "email"
ROBOT = "robot"
# What to do with a claimed notice.
SEND, SKIP, GIVE_UP, DROP = "send", "skip", "give_up", "drop"

NOTICE_FAILED_RULE = "notice_failed"
BATCH = 50


# --------------------------------------------------------------------------- policy


@dataclass(frozen=True)
class NoticePolicy:
    """``[notices]`` of the alerts file."""

    offsets_s: tuple[int, ...] = (7 * DAY_S, 48 * HOUR_S, 12 * HOUR_S)
    confirm_s: int | None = 30 * MIN_S
    email_channel: str | None = None  # an email channel whose server and sender are used
    max_attempts: int = 12
    tz: str = "Asia/Shanghai"


_DURATION = re.compile(r"^\s*(\d+)\s*(d|h|m)\s*$")


def parse_duration(text: object, what: str) -> int:
    """Seconds of ``"7d"``, ``"48h"`` or ``"30m"``."""
    match = _DURATION.match(text) if isinstance(text, str) else None
    if match is None or int(match.group(1)) <= 0:
        raise ConfigError(f'{what} must be a duration like "7d", "48h" or "30m", got {text!r}')
    return int(match.group(1)) * {"d": DAY_S, "h": HOUR_S, "m": MIN_S}[match.group(2)]


NOTICE_KEYS = ("offsets", "confirmation", "email_channel", "max_attempts")


def parse_notices(
    raw: Mapping[str, Any], tz: str, email_channels: Iterable[str], source: str = "PQMON_ALERTS_FILE"
) -> NoticePolicy:
    """``[notices]``: offsets ahead, the confirmation, the e-mail channel and the attempts.

    ```toml
    [notices]
    offsets = ["7d", "48h", "12h"]   # notices ahead of the start
    confirmation = "30m"             # "" for none
    email_channel = "notice-mail"    # an email channel: its server, login and sender are used
    max_attempts = 12
    ```
    """
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{source}: [notices] must be a table")
    unknown = sorted(set(raw) - set(NOTICE_KEYS))
    if unknown:
        raise ConfigError(
            f"{source}: [notices] {', '.join(unknown)}: not a setting; expected {', '.join(NOTICE_KEYS)}"
        )
    default = NoticePolicy(tz=tz)
    offsets = default.offsets_s
    if "offsets" in raw:
        if not isinstance(raw["offsets"], list):
            raise ConfigError(f'{source}: [notices] offsets must be a list like ["7d", "48h", "12h"]')
        offsets = tuple(
            sorted({parse_duration(v, f"{source}: [notices] offsets") for v in raw["offsets"]}, reverse=True)
        )
    confirm: int | None = default.confirm_s
    if "confirmation" in raw:
        value = raw["confirmation"]
        confirm = None if value in ("", False) else parse_duration(value, f"{source}: [notices] confirmation")
    if confirm is not None and offsets and min(offsets) <= confirm:
        raise ConfigError(
            f"{source}: [notices] every offset must be longer than the confirmation ({confirm // 60} min)"
        )
    email = raw.get("email_channel")
    if email is not None:
        known = sorted(email_channels)
        if email not in known:
            raise ConfigError(
                f"{source}: [notices] email_channel {email!r} is not an email channel"
                f" ({', '.join(known) or 'none is configured'})"
            )
    attempts = raw.get("max_attempts", default.max_attempts)
    if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
        raise ConfigError(f"{source}: [notices] max_attempts must be a whole number of at least 1")
    return NoticePolicy(offsets, confirm, email, attempts, tz)


# --------------------------------------------------------------------------- planning (pure)


@dataclass(frozen=True)
class Recipient:
    """A contact as the planner sees it: who, of which account, on which channels."""

    contact_id: int
    site_id: str
    channels: tuple[str, ...]


@dataclass(frozen=True)
class PlannedNotice:
    contact_id: int
    site_id: str
    channel: str
    kind: str
    offset_s: int
    due_ms: int
    state: str


def plan_ahead(
    start_ms: int, recipients: Iterable[Recipient], policy: NoticePolicy, now_ms: int
) -> list[PlannedNotice]:
    """The notices ahead of a window starting at ``start_ms``, planned at ``now_ms``.

    Each is due ``offset`` before the start; one whose due time has passed is
    ``skipped_late``. The confirmation is pending while the start is ahead, even when its
    own time has passed (registered 20 minutes before: it goes out at once).
    """
    out: list[PlannedNotice] = []
    for r in recipients:
        for channel in r.channels:
            for offset in policy.offsets_s:
                due = start_ms - offset * 1000
                state = NOTICE_PENDING if due >= now_ms else NOTICE_SKIPPED_LATE
                out.append(PlannedNotice(r.contact_id, r.site_id, channel, AHEAD, offset, due, state))
            if policy.confirm_s:
                due = start_ms - policy.confirm_s * 1000
                state = NOTICE_PENDING if start_ms > now_ms else NOTICE_SKIPPED_LATE
                out.append(
                    PlannedNotice(r.contact_id, r.site_id, channel, CONFIRM, policy.confirm_s, due, state)
                )
    return out


def plan_change(kind: str, recipients: Iterable[Recipient], now_ms: int) -> list[PlannedNotice]:
    """One ``moved`` or ``cancelled`` notice per channel of each recipient, due now."""
    return [
        PlannedNotice(r.contact_id, r.site_id, channel, kind, 0, now_ms, NOTICE_PENDING)
        for r in recipients
        for channel in r.channels
    ]


def late_reason(kind: str, start_ms: int, next_due_ms: int | None, now_ms: int) -> str | None:
    """Why a notice about to be sent should not be any more, or None.

    A notice ahead that is still unsent when the next one is due is superseded by it; no
    notice ahead or confirmation goes out once the outage has begun.
    """
    if kind not in (AHEAD, CONFIRM):
        return None
    if now_ms >= start_ms:
        return "the outage had begun"
    if kind == AHEAD and next_due_ms is not None and now_ms >= next_due_ms:
        return "the next notice was due"
    return None


def claim_decision(
    kind: str, start_ms: int, next_due_ms: int | None, attempts: int, now_ms: int, current: bool
) -> tuple[str, str]:
    """What to do with a claimed notice: (SEND | SKIP | GIVE_UP | DROP, why).

    ``current``: the notice belongs to the window's current version (a moved or cancelled
    window's older notices are dropped). A late notice never tried is skipped; one that was
    tried and failed until it became late has failed, and operations must hear of it.
    """
    if not current:
        return DROP, "the planned outage changed before it was sent"
    why = late_reason(kind, start_ms, next_due_ms, now_ms)
    if why is None:
        return SEND, ""
    return (GIVE_UP, f"not delivered before {why}") if attempts else (SKIP, f"not sent: {why}")


# --------------------------------------------------------------------------- text (pure)


def offset_label(offset_s: int, lang: str = "en") -> str:
    """ "7 days", "48 h", "12 h", "30 min" (or 7天, 48小时, 12小时, 30分钟)."""
    zh = lang == "zh-CN"
    if offset_s % DAY_S == 0 and offset_s >= 3 * DAY_S:
        n = offset_s // DAY_S
        return f"{n}天" if zh else f"{n} days"
    if offset_s % HOUR_S == 0:
        n = offset_s // HOUR_S
        return f"{n}小时" if zh else f"{n} h"
    n = round(offset_s / MIN_S)
    return f"{n}分钟" if zh else f"{n} min"


def which(kind: str, offset_s: int) -> str:
    """Which notice, for logs and lists: "7 days", "48 h", "30 min", "moved", "cancelled"."""
    return offset_label(offset_s) if kind in (AHEAD, CONFIRM) else kind


def _duration(ms: int, zh: bool) -> str:
    minutes = max(0, round(ms / 60000))
    h, m = divmod(minutes, 60)
    if zh:
        return (f"{h}小时" if h else "") + (f"{m}分钟" if m or not h else "")
    return " ".join(([f"{h} h"] if h else []) + ([f"{m} min"] if m or not h else []))


def local_text(ms: int, tz: str) -> str:
    return datetime.fromtimestamp(ms / 1000, ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M")


def _utc_offset(ms: int, tz: str) -> str:
    offset = datetime.fromtimestamp(ms / 1000, ZoneInfo(tz)).strftime("%z")
    return f"UTC{offset[:3]}:{offset[3:]}"


@dataclass(frozen=True)
class NoticeText:
    """What a notice speaks of; rendered by :func:`render_notice`."""

    kind: str
    offset_s: int
    lang: str
    site_id: str
    site_name: str
    contact_name: str
    start_ms: int
    end_ms: int
    prev_start_ms: int | None = None
    prev_end_ms: int | None = None
    key: str = ""


def render_notice(n: NoticeText, tz: str) -> tuple[str, str]:
    """Title and text in the contact's language (zh-CN or en), times local to ``tz``."""
    zh = n.lang == "zh-CN"
    start, end = local_text(n.start_ms, tz), local_text(n.end_ms, tz)
    label = offset_label(n.offset_s, n.lang)
    length = _duration(n.end_ms - n.start_ms, zh)
    prev_start = local_text(n.prev_start_ms if n.prev_start_ms is not None else n.start_ms, tz)
    prev_end = local_text(n.prev_end_ms if n.prev_end_ms is not None else n.end_ms, tz)
    site = f"{n.site_name}（{n.site_id}）" if zh else f"{n.site_name} ({n.site_id})"
    zone = _utc_offset(n.start_ms, tz)
    if zh:
        greeting = f"{n.contact_name}，您好："
        footer = f"以上为当地时间（{zone}）。通知编号：{n.key}"
        title, body = {
            AHEAD: (
                f"计划停电通知（提前{label}）：{n.site_name} {start} 至 {end}",
                f"因供电设备计划检修，{site}将于 {start} 至 {end} 停电，时长约{length}。\n"
                f"本通知为提前{label}通知，请提前安排生产和用电。",
            ),
            CONFIRM: (
                f"停电前{label}确认：{n.site_name} {start} 开始停电",
                f"确认：{site}的计划停电将于 {start} 开始，预计 {end} 恢复供电（时长约{length}）。",
            ),
            MOVED: (
                f"计划停电时间变更：{n.site_name} 改为 {start} 至 {end}",
                f"{site}原定于 {prev_start} 至 {prev_end} 的计划停电，已改为 {start} 至 {end}"
                f"（时长约{length}）。请以新时间为准，我们将按新时间再次通知。",
            ),
            CANCELLED: (
                f"计划停电取消：{n.site_name} {start} 至 {end}",
                f"{site}原定于 {start} 至 {end} 的计划停电已取消，届时正常供电。",
            ),
        }[n.kind]
    else:
        greeting = f"Dear {n.contact_name},"
        footer = f"Times are local ({zone}). Notice {n.key}"
        title, body = {
            AHEAD: (
                f"Planned outage notice ({label} ahead): {n.site_name}, {start} to {end}",
                f"For planned maintenance of the supply network, {site} will be without supply from "
                f"{start} to {end} (about {length}).\n"
                f"This is the {label} notice; please plan your production and power use.",
            ),
            CONFIRM: (
                f"Confirmation ({label} before): planned outage at {n.site_name} starts {start}",
                f"Confirmed: the planned outage at {site} starts at {start}; supply is expected back at "
                f"{end} (about {length}).",
            ),
            MOVED: (
                f"Planned outage moved: {n.site_name}, now {start} to {end}",
                f"The planned outage at {site} announced for {prev_start} to {prev_end} now takes place "
                f"from {start} to {end} (about {length}). The new time stands; you will be reminded of it.",
            ),
            CANCELLED: (
                f"Planned outage cancelled: {n.site_name}, {start} to {end}",
                f"The planned outage at {site} announced for {start} to {end} is cancelled; "
                "supply continues as normal.",
            ),
        }[n.kind]
    return title, f"{greeting}\n{body}\n{footer}"


# --------------------------------------------------------------------------- operations alert


@dataclass(frozen=True)
class NoticeFailure:
    """A notice that finally failed, as operations are told of it."""

    notice_id: int
    window_id: int
    site_id: str
    site_name: str
    contact_name: str
    contact_phone: str | None
    channel: str
    which: str  # "7 days", "48 h", "moved" ...
    start: str  # local time text
    end: str
    detail: str


def raise_notice_failure(s: Session, routes: Routes, failure: NoticeFailure, now_ms: int) -> int:
    """Open (or join) the window's ``notice_failed`` incident and owe every ops channel a page,
    in the caller's transaction; returns the incident id.

    Written straight into the alert tables, so the dispatcher delivers it like any page and
    ``pqmon alerts list`` / ``ack`` work on it. No reminders: the page says who to phone.
    """
    group = f"notice:{failure.window_id}"
    incident = s.scalars(
        select(IncidentRow).where(
            IncidentRow.group_key == group,
            IncidentRow.rule == NOTICE_FAILED_RULE,
            IncidentRow.state.in_(OPEN_STATES),
        )
    ).first()
    if incident is None:
        incident = IncidentRow(
            group_key=group,
            rule=NOTICE_FAILED_RULE,
            severity="major",
            state=FIRING,
            first_start_ms=now_ms,
            opened_ms=now_ms,
            next_notify_ms=None,
            escalation_level=0,
        )
        s.add(incident)
        s.flush()
    f = failure
    incident.detail = (
        f"customer notices of planned outage {f.window_id} ({f.site_id} {f.site_name}, {f.start} to {f.end})"
        f" not delivered; last: {f.which} to {f.contact_name}"
    )[:300]
    title = f"Customer not told: {f.which} notice of planned outage {f.window_id}"
    title += f" to {f.contact_name} ({f.site_id})"
    phone = f"phone {f.contact_phone}" if f.contact_phone else "no phone on record"
    body = "\n".join(
        [
            title,
            f"- account: {f.site_id} {f.site_name}",
            f"- planned outage {f.window_id}: {f.start} to {f.end}",
            f"- contact: {f.contact_name}, {phone}",
            f"- {f.channel}: {f.detail}",
            f"Tell the customer another way; 'pqmon notices list --site {f.site_id}' shows every notice.",
        ]
    )
    payload = {
        "incident": incident.id,
        "rule": NOTICE_FAILED_RULE,
        "kind": NOTICE_FAILED_RULE,
        "group": group,
        "state": incident.state,
        "severity": incident.severity,
        "notice": f.notice_id,
        "planned": f.window_id,
        "which": f.which,
        "channel": f.channel,
        "contact": f.contact_name,
        "phone": f.contact_phone,
        "detail": f.detail,
        "sites": [{"site": f.site_id, "name": f.site_name, "start": f.start, "end": f.end}],
    }
    for channel in routes.of(OPS):
        s.add(
            OutboxRow(
                incident_id=incident.id,
                kind=NOTICE_FAILED_RULE,
                channel=channel,
                severity=incident.severity,
                site_id=f.site_id,
                title=title[:300],
                body=body,
                payload=json.dumps(payload, ensure_ascii=False),
                state=PENDING,
                created_ms=now_ms,
                due_ms=now_ms,
                attempts=0,
            )
        )
    if not routes.of(OPS):
        log.error("notice %d failed and no ops channel is configured: %s", f.notice_id, title)
    return incident.id


# --------------------------------------------------------------------------- planned outages


def _ms(naive_utc: datetime) -> int:
    return int(naive_utc.replace(tzinfo=UTC).timestamp() * 1000)


@dataclass(frozen=True)
class PlanResult:
    window_id: int
    version: int
    sites: tuple[str, ...]
    start_utc: datetime
    end_utc: datetime
    prev_start_utc: datetime | None = None
    prev_end_utc: datetime | None = None
    states: dict[str, int] = field(default_factory=dict)  # notices planned, by state
    told: int = 0  # moved or cancelled notices owed now
    contacts: int = 0


class NoticeBook:
    """Planned outages with an id, and the notices they owe, changed in one transaction."""

    def __init__(
        self, registry: Registry, policy: NoticePolicy | None = None, clock: Callable[[], float] = time.time
    ) -> None:
        self.registry = registry
        self.policy = policy or NoticePolicy()
        self.clock = clock
        self._session = sessionmaker(registry.engine, expire_on_commit=False)

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    def register(self, site_id: str, start_utc: datetime, end_utc: datetime, note: str = "") -> PlanResult:
        """A window for an account, or a feeder and all its accounts; its notices owed at once."""
        if end_utc <= start_utc:
            raise RegistryError("a planned outage must end after it starts")
        target = self.registry.site(site_id)
        sites = [target.id]
        if target.kind == "feeder":
            sites += [s.id for s in self.registry.sites("account") if s.feeder_id == target.id]
        now = self.now_ms()
        with self._session.begin() as s:
            window = PlannedWindowRow(
                site_id=target.id,
                start_utc=start_utc,
                end_utc=end_utc,
                note=note,
                version=1,
                state=WINDOW_ACTIVE,
                created_ms=now,
                changed_ms=now,
            )
            s.add(window)
            s.flush()
            for sid in sites:
                row = PlannedOutageRow(site_id=sid, start_utc=start_utc, end_utc=end_utc, note=note)
                s.add(row)
                s.flush()
                s.add(PlannedWindowSiteRow(window_id=window.id, site_id=sid, planned_outage_pk=row.pk))
            recipients = _recipients(s, sites)
            planned = plan_ahead(_ms(start_utc), recipients, self.policy, now)
            _insert(s, window, planned, now)
            return PlanResult(
                window.id,
                1,
                tuple(sites),
                start_utc,
                end_utc,
                states=_count(planned),
                contacts=len(recipients),
            )

    def move(self, window_id: int, start_utc: datetime, end_utc: datetime) -> PlanResult:
        """Re-plan: the old version's unsent notices are withdrawn, the new version's owed, and each
        contact already told of the old time gets one ``moved`` notice now."""
        if end_utc <= start_utc:
            raise RegistryError("a planned outage must end after it starts")
        now = self.now_ms()
        with self._session.begin() as s:
            window = self._window(s, window_id)
            prev_start, prev_end = window.start_utc, window.end_utc
            _withdraw(s, window.id, now, f"moved to version {window.version + 1}")
            told = _last_told(s, window.id)
            window.version += 1
            window.start_utc, window.end_utc, window.changed_ms = start_utc, end_utc, now
            links = s.scalars(
                select(PlannedWindowSiteRow).where(PlannedWindowSiteRow.window_id == window.id)
            ).all()
            for link in links:
                row = s.get(PlannedOutageRow, link.planned_outage_pk) if link.planned_outage_pk else None
                if row is not None:
                    row.start_utc, row.end_utc = start_utc, end_utc
            sites = [link.site_id for link in links]
            recipients = _recipients(s, sites)
            new = (_ms(start_utc), _ms(end_utc))
            planned = plan_ahead(new[0], recipients, self.policy, now)
            # Told of another time, and the new window is not over: one "moved" notice each.
            movers = [r for r in recipients if r.contact_id in told and told[r.contact_id] != new]
            changes = plan_change(MOVED, movers, now) if new[1] > now else []
            _insert(s, window, planned, now)
            _insert(s, window, changes, now, prev={r.contact_id: told[r.contact_id] for r in movers})
            return PlanResult(
                window.id,
                window.version,
                tuple(sites),
                start_utc,
                end_utc,
                prev_start,
                prev_end,
                _count(planned),
                len(changes),
                len(recipients),
            )

    def cancel(self, window_id: int) -> PlanResult:
        """Withdraw the window (its planned_outage rows go) and its unsent notices; contacts already
        told of it get one ``cancelled`` notice while its start is ahead."""
        now = self.now_ms()
        with self._session.begin() as s:
            window = self._window(s, window_id)
            _withdraw(s, window.id, now, "the planned outage was cancelled")
            told = _last_told(s, window.id)
            window.version += 1
            window.state, window.changed_ms = WINDOW_CANCELLED, now
            links = s.scalars(
                select(PlannedWindowSiteRow).where(PlannedWindowSiteRow.window_id == window.id)
            ).all()
            for link in links:
                if link.planned_outage_pk is not None:
                    s.execute(delete(PlannedOutageRow).where(PlannedOutageRow.pk == link.planned_outage_pk))
                    link.planned_outage_pk = None
            sites = [link.site_id for link in links]
            recipients = [r for r in _recipients(s, sites) if r.contact_id in told]
            changes = plan_change(CANCELLED, recipients, now) if _ms(window.start_utc) > now else []
            _insert(s, window, changes, now, told={r.contact_id: told[r.contact_id] for r in recipients})
            return PlanResult(
                window.id,
                window.version,
                tuple(sites),
                window.start_utc,
                window.end_utc,
                states={},
                told=len(changes),
                contacts=len(recipients),
            )

    def import_contacts(self, path: str) -> tuple[ContactImport, int]:
        """Contacts from the CSV, and the notices they are owed for windows still ahead, in one
        transaction; returns the import's counts and how many notices were added."""
        parsed = parse_contacts_csv(path, {site.id: site for site in self.registry.sites()})
        now = self.now_ms()
        with self._session.begin() as s:
            result = write_contacts(s, parsed, now)
            return result, self.plan_missing(s, now)

    def plan_missing(self, s: Session, now_ms: int) -> int:
        """Notices owed to contacts (or channels) added after a window still ahead was planned."""
        added = 0
        windows = s.scalars(
            select(PlannedWindowRow).where(
                PlannedWindowRow.state == WINDOW_ACTIVE, PlannedWindowRow.start_utc > _naive(now_ms)
            )
        ).all()
        for window in windows:
            sites = s.scalars(
                select(PlannedWindowSiteRow.site_id).where(PlannedWindowSiteRow.window_id == window.id)
            ).all()
            have = {
                (contact, channel, kind, offset)
                for contact, channel, kind, offset in s.execute(
                    select(
                        DueNoticeRow.contact_id,
                        DueNoticeRow.channel,
                        DueNoticeRow.kind,
                        DueNoticeRow.offset_s,
                    ).where(DueNoticeRow.window_id == window.id, DueNoticeRow.version == window.version)
                )
            }
            planned = [
                p
                for p in plan_ahead(_ms(window.start_utc), _recipients(s, list(sites)), self.policy, now_ms)
                if (p.contact_id, p.channel, p.kind, p.offset_s) not in have
            ]
            _insert(s, window, planned, now_ms)
            added += len(planned)
        return added

    def _window(self, s: Session, window_id: int) -> PlannedWindowRow:
        window = s.scalars(
            select(PlannedWindowRow).where(PlannedWindowRow.id == window_id).with_for_update()
        ).first()
        if window is None:
            raise RegistryError(f"no planned outage {window_id}; 'pqmon planned list' shows them")
        if window.state == WINDOW_CANCELLED:
            raise RegistryError(f"planned outage {window_id} is cancelled")
        return window


def _naive(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC).replace(tzinfo=None)


def _recipients(s: Session, sites: list[str]) -> list[Recipient]:
    rows = s.scalars(
        select(ContactRow).where(ContactRow.site_id.in_(sites)).order_by(ContactRow.site_id, ContactRow.id)
    ).all()
    out = []
    for r in rows:
        channels = ((EMAIL,) if r.email else ()) + ((ROBOT,) if r.robot_url else ())
        if channels:
            out.append(Recipient(r.id, r.site_id, channels))
    return out


def _withdraw(s: Session, window_id: int, now_ms: int, why: str) -> None:
    """Unsent notices of every version are cancelled; one being sent right now is left to finish."""
    s.execute(
        update(DueNoticeRow)
        .where(DueNoticeRow.window_id == window_id, DueNoticeRow.state == NOTICE_PENDING)
        .values(state=NOTICE_CANCELLED, last_error=why[:300])
    )


def _last_told(s: Session, window_id: int) -> dict[int, tuple[int, int]]:
    """Contact -> the window (start, end) they were last told of (sent, or being sent now)."""
    rows = s.execute(
        select(DueNoticeRow.contact_id, DueNoticeRow.kind, DueNoticeRow.start_ms, DueNoticeRow.end_ms)
        .where(
            DueNoticeRow.window_id == window_id,
            DueNoticeRow.state.in_((NOTICE_SENT, NOTICE_SENDING)),
        )
        .order_by(DueNoticeRow.id)
    )
    told: dict[int, tuple[int, int]] = {}
    for contact, kind, start, end in rows:
        if kind == CANCELLED:
            told.pop(contact, None)
        else:
            told[contact] = (start, end)
    return told


def _insert(
    s: Session,
    window: PlannedWindowRow,
    planned: Iterable[PlannedNotice],
    now_ms: int,
    prev: Mapping[int, tuple[int, int]] | None = None,
    told: Mapping[int, tuple[int, int]] | None = None,
) -> None:
    """Rows for ``planned``; ``prev``: a moved notice's old times; ``told``: a cancelled one's times."""
    start, end = _ms(window.start_utc), _ms(window.end_utc)
    for p in planned:
        old = (prev or {}).get(p.contact_id)
        speaks = (told or {}).get(p.contact_id, (start, end))
        s.add(
            DueNoticeRow(
                window_id=window.id,
                version=window.version,
                site_id=p.site_id,
                contact_id=p.contact_id,
                channel=p.channel,
                kind=p.kind,
                offset_s=p.offset_s,
                start_ms=speaks[0],
                end_ms=speaks[1],
                prev_start_ms=old[0] if old else None,
                prev_end_ms=old[1] if old else None,
                due_ms=p.due_ms,
                state=p.state,
                created_ms=now_ms,
                attempts=0,
                last_error="its time had passed when the outage was planned"
                if p.state == NOTICE_SKIPPED_LATE
                else None,
            )
        )
    s.flush()


def _count(planned: Iterable[PlannedNotice]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for p in planned:
        counts[p.state] = counts.get(p.state, 0) + 1
    return counts


# --------------------------------------------------------------------------- delivery


@dataclass(frozen=True)
class _Work:
    """A claimed notice with everything needed to decide, render and send it."""

    id: int
    token: str
    kind: str
    channel: str
    offset_s: int
    attempts: int
    window_id: int
    site_id: str
    site_name: str
    start_ms: int
    end_ms: int
    prev_start_ms: int | None
    prev_end_ms: int | None
    next_due_ms: int | None
    current: bool
    contact: Contact | None


Sender = Callable[[Contact, str], Any]  # (contact, channel) -> a Channel, or a DeliveryResult why not


class NoticeScheduler:
    """One step per pass of ``pqmon alerts run``: claim due notices, send them, record the results."""

    def __init__(
        self,
        registry: Registry,
        policy: NoticePolicy,
        channels: Mapping[str, Any],
        routes: Routes,
        clock: Callable[[], float] = time.time,
        claim_timeout_s: float = 60.0,
        limiter: Any = None,
        sender: Sender | None = None,
        workers: int = 4,
    ) -> None:
        from analysis.alerts.channels import RateLimiter

        self.policy = policy
        self.channels = dict(channels)
        self.routes = routes
        self.clock = clock
        self.claim_timeout_ms = int(claim_timeout_s * 1000)
        self.limiter = limiter if limiter is not None else RateLimiter(clock=clock)
        self.sender = sender or self.channel_for
        self._session = sessionmaker(registry.engine, expire_on_commit=False)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="notice-send")
        self._inflight: list[Future[None]] = []

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    def run_once(self, wait: bool = True) -> int:
        """Send what is due now; returns how many notices were claimed.

        With ``wait=False`` (the service) the sends go on in the pool and the pass returns at
        once, so a customer's slow mail server never holds up the alerts; the next batch is
        claimed only when the previous one is done.
        """
        if any(not f.done() for f in self._inflight):
            return 0
        now = self.now_ms()
        claimed = self.claim(now)
        if claimed:
            work = self._load(claimed)
            to_send = self._settle(work, now)
            self._inflight = [self._pool.submit(self._deliver, w) for w in to_send]
            for future in self._inflight:
                future.add_done_callback(_log_failure)
            if wait:
                for future in self._inflight:
                    future.result()
        self._resolve_finished(now)
        return len(claimed)

    def claim(self, now_ms: int) -> list[int]:
        """Take due notices: stale claims go back first, then one conditional UPDATE claims a batch
        (its SELECT is ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so schedulers take disjoint rows)."""
        token = uuid.uuid4().hex
        with self._session.begin() as s:
            s.execute(
                update(DueNoticeRow)
                .where(
                    DueNoticeRow.state == NOTICE_SENDING,
                    DueNoticeRow.claimed_ms < now_ms - self.claim_timeout_ms,
                )
                .values(state=NOTICE_PENDING)
            )
        with self._session.begin() as s:
            due = s.scalars(
                select(DueNoticeRow.id)
                .where(DueNoticeRow.state == NOTICE_PENDING, DueNoticeRow.due_ms <= now_ms)
                .order_by(DueNoticeRow.due_ms, DueNoticeRow.id)
                .limit(BATCH)
                .with_for_update(skip_locked=True)
            ).all()
            if not due:
                return []
            s.execute(
                update(DueNoticeRow)
                .where(DueNoticeRow.id.in_(due), DueNoticeRow.state == NOTICE_PENDING)
                .values(state=NOTICE_SENDING, claimed_ms=now_ms, claim_token=token)
            )
        with self._session() as s:
            return list(
                s.scalars(
                    select(DueNoticeRow.id)
                    .where(DueNoticeRow.claim_token == token, DueNoticeRow.state == NOTICE_SENDING)
                    .order_by(DueNoticeRow.due_ms, DueNoticeRow.id)
                )
            )

    def _load(self, ids: list[int]) -> list[_Work]:
        out = []
        with self._session() as s:
            for row in s.scalars(
                select(DueNoticeRow).where(DueNoticeRow.id.in_(ids)).order_by(DueNoticeRow.id)
            ):
                window = s.get(PlannedWindowRow, row.window_id)
                current = (
                    window is not None
                    and row.version == window.version
                    and (window.state == WINDOW_ACTIVE or row.kind == CANCELLED)
                )
                next_due = None
                if row.kind == AHEAD:
                    next_due = s.scalar(
                        select(func.min(DueNoticeRow.due_ms)).where(
                            DueNoticeRow.window_id == row.window_id,
                            DueNoticeRow.version == row.version,
                            DueNoticeRow.contact_id == row.contact_id,
                            DueNoticeRow.channel == row.channel,
                            DueNoticeRow.kind.in_((AHEAD, CONFIRM)),
                            DueNoticeRow.offset_s < row.offset_s,
                        )
                    )
                contact_row = s.get(ContactRow, row.contact_id)
                site = s.get(SiteRow, row.site_id)
                out.append(
                    _Work(
                        id=row.id,
                        token=row.claim_token or "",
                        kind=row.kind,
                        channel=row.channel,
                        offset_s=row.offset_s,
                        attempts=row.attempts,
                        window_id=row.window_id,
                        site_id=row.site_id,
                        site_name=site.name if site is not None else row.site_id,
                        start_ms=row.start_ms,
                        end_ms=row.end_ms,
                        prev_start_ms=row.prev_start_ms,
                        prev_end_ms=row.prev_end_ms,
                        next_due_ms=next_due,
                        current=current,
                        contact=None if contact_row is None else contact_from_row(contact_row),
                    )
                )
        return out

    def _settle(self, work: list[_Work], now: int) -> list[_Work]:
        """Record the notices not to send (late, withdrawn, unreachable); return the others."""
        to_send = []
        with self._session.begin() as s:
            for w in work:
                action, why = claim_decision(w.kind, w.start_ms, w.next_due_ms, w.attempts, now, w.current)
                if action == SEND and w.contact is None:
                    action, why = DROP, "the contact was removed"
                elif action == SEND and w.contact is not None and w.channel not in w.contact.channels:
                    action, why = DROP, f"the contact has no {w.channel} any more"
                if action == SEND:
                    to_send.append(w)
                    continue
                row = s.get(DueNoticeRow, w.id)
                if row is None or row.state != NOTICE_SENDING or row.claim_token != w.token:
                    continue
                row.last_error = why[:300]
                if action == SKIP:
                    row.state = NOTICE_SKIPPED_LATE
                elif action == DROP:
                    row.state = NOTICE_CANCELLED
                else:
                    row.state = NOTICE_FAILED
                    self._alert_ops(s, w, why, now)
        return to_send

    def channel_for(self, contact: Contact, channel: str) -> Any:
        """The sender for one contact's channel: the configured mail server with the contact as the
        only recipient, or a DingTalk/WeCom robot built for the contact's URL."""
        from analysis.alerts.channels import (
            DeliveryResult,
            DingTalkChannel,
            SmtpChannel,
            WeComChannel,
            smtp_to,
        )

        try:
            if channel == EMAIL:
                name = self.policy.email_channel
                base = self.channels.get(name) if name else None
                if not isinstance(base, SmtpChannel) or not contact.email:
                    return DeliveryResult(
                        False,
                        False,
                        "no e-mail server for notices: set [notices] email_channel in the alerts file",
                    )
                return smtp_to(base, contact.email, f"notice-{name}")
            if contact.robot_kind == "dingtalk" and contact.robot_url:
                return DingTalkChannel("notice-robot", contact.robot_url, contact.robot_secret)
            if contact.robot_kind == "wecom" and contact.robot_url:
                return WeComChannel("notice-robot", contact.robot_url)
            return DeliveryResult(False, False, "the contact's robot_url is not a DingTalk or WeCom robot")
        except ConfigError as exc:
            return DeliveryResult(False, False, str(exc)[:300])

    def _deliver(self, w: _Work) -> None:
        from analysis.alerts.channels import DeliveryResult, Message

        assert w.contact is not None
        key = f"pqmon-notice-{w.id}"
        title, text = render_notice(
            NoticeText(
                w.kind,
                w.offset_s,
                w.contact.lang,
                w.site_id,
                w.site_name,
                w.contact.name,
                w.start_ms,
                w.end_ms,
                w.prev_start_ms,
                w.prev_end_ms,
                key,
            ),
            self.policy.tz,
        )
        zone = ZoneInfo(self.policy.tz)
        message = Message(
            key=key,
            kind="notice",
            severity="info",
            site=w.site_id,
            title=title,
            text=text,
            payload={
                "notice": w.id,
                "planned": w.window_id,
                "which": which(w.kind, w.offset_s),
                "kind": w.kind,
                "site": w.site_id,
                "start": datetime.fromtimestamp(w.start_ms / 1000, zone).isoformat(timespec="minutes"),
                "end": datetime.fromtimestamp(w.end_ms / 1000, zone).isoformat(timespec="minutes"),
                "lang": w.contact.lang,
            },
        )
        channel = self.sender(w.contact, w.channel)
        if isinstance(channel, DeliveryResult):
            result = channel
        elif not self.limiter.try_take(channel.recipient):
            wait_ms = int(max(0.5, self.limiter.wait_s(channel.recipient)) * 1000)
            self._requeue(w, wait_ms)
            return
        else:
            try:
                result = channel.send(message)
            except Exception as exc:  # a sender bug must not lose the notice
                log.exception("notice %d: sender raised", w.id)
                result = DeliveryResult(False, True, f"sender error: {exc!r}"[:300])
        self._record(w, result)

    def _record(self, w: _Work, result: Any) -> None:
        from analysis.alerts.channels import backoff_s

        now = self.now_ms()
        with self._session.begin() as s:
            s.add(NoticeDeliveryRow(notice_id=w.id, at_ms=now, ok=result.ok, detail=result.detail[:300]))
            row = s.get(DueNoticeRow, w.id)
            if row is None:
                return
            row.attempts = w.attempts + 1
            row.last_error = None if result.ok else result.detail[:300]
            if result.ok:
                row.state, row.sent_ms = NOTICE_SENT, now
            elif result.retry and row.attempts < self.policy.max_attempts:
                row.state, row.due_ms = NOTICE_PENDING, now + int(backoff_s(row.attempts) * 1000)
            else:
                row.state = NOTICE_FAILED
                why = (
                    result.detail if not result.retry else f"{result.detail} (after {row.attempts} attempts)"
                )
                log.error("notice %d to %s failed for good: %s", w.id, w.channel, why)
                self._alert_ops(s, w, why, now)

    def _requeue(self, w: _Work, after_ms: int) -> None:
        with self._session.begin() as s:
            s.execute(
                update(DueNoticeRow)
                .where(DueNoticeRow.id == w.id, DueNoticeRow.state == NOTICE_SENDING)
                .values(
                    state=NOTICE_PENDING,
                    due_ms=self.now_ms() + after_ms,
                    last_error="rate limit: waiting for the receiver's next slot",
                )
            )

    def _alert_ops(self, s: Session, w: _Work, detail: str, now: int) -> None:
        contact = w.contact
        raise_notice_failure(
            s,
            self.routes,
            NoticeFailure(
                notice_id=w.id,
                window_id=w.window_id,
                site_id=w.site_id,
                site_name=w.site_name,
                contact_name=contact.name if contact else "(contact removed)",
                contact_phone=contact.phone if contact else None,
                channel=_address(contact, w.channel),
                which=which(w.kind, w.offset_s),
                start=local_text(w.start_ms, self.policy.tz),
                end=local_text(w.end_ms, self.policy.tz),
                detail=detail[:300],
            ),
            now,
        )

    def _resolve_finished(self, now_ms: int) -> None:
        """Close the notice-failure incidents of windows that are over or cancelled (no notice)."""
        with self._session() as s:
            open_ones = s.execute(
                select(IncidentRow.id, IncidentRow.group_key).where(
                    IncidentRow.rule == NOTICE_FAILED_RULE, IncidentRow.state.in_(OPEN_STATES)
                )
            ).all()
            if not open_ones:
                return
            done = []
            for incident_id, group in open_ones:
                window = s.get(PlannedWindowRow, int(group.split(":", 1)[1]))
                if window is None or window.state == WINDOW_CANCELLED or _ms(window.end_utc) <= now_ms:
                    done.append(incident_id)
        if done:
            with self._session.begin() as s:
                s.execute(
                    update(IncidentRow)
                    .where(IncidentRow.id.in_(done), IncidentRow.state.in_(OPEN_STATES))
                    .values(state=RESOLVED, resolved_ms=now_ms, next_notify_ms=None)
                )

    def close(self) -> None:
        self._pool.shutdown(wait=True)


def _log_failure(future: Future[None]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.error("notice delivery failed; the claim timeout will retry it", exc_info=future.exception())


def _address(contact: Contact | None, channel: str) -> str:
    if contact is None:
        return channel
    if channel == EMAIL:
        return f"e-mail {contact.email}"
    return f"{contact.robot_kind or ''} robot".strip()


__all__ = [
    "NoticeBook",
    "NoticeFailure",
    "NoticePolicy",
    "NoticeScheduler",
    "NoticeText",
    "PlannedNotice",
    "Recipient",
    "claim_decision",
    "late_reason",
    "offset_label",
    "parse_duration",
    "parse_notices",
    "plan_ahead",
    "plan_change",
    "raise_notice_failure",
    "render_notice",
]
