"""What the Alerts page reads and changes: queries over the alert tables, and pure shaping.

Every query takes the sites the user may read (``None``: every site, for operators and
admins) and never returns a row of another account. Changes go through the same
:class:`~analysis.alerts.engine.AlertEngine` methods ``pqmon alerts ack`` and ``pqmon alerts
silence`` use, built the same way (the alerts configuration's routes and policy).

An incident normally has alerts, each on one site. A ``notice_failed`` incident (customers
of a planned outage not told) has none: its sites are those of the window's failed notices.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import exists, select, update
from sqlalchemy.orm import Session

from analysis.alerts.engine import AlertEngine
from analysis.alerts.state import (
    ACKNOWLEDGED,
    FIRING,
    OPEN_STATES,
    RESOLVED,
    AlertRow,
    DeliveryRow,
    IncidentRow,
    OutboxRow,
    QuietRow,
)
from core.registry import NOTICE_FAILED, NOTICE_PENDING, DueNoticeRow, Notice, Registry

log = logging.getLogger(__name__)

ROW_LIMIT = 1000  # newest rows shown per grid; filters narrow further
NOTICE_GROUP = "notice:"  # group key of a notice_failed incident: "notice:<window id>"
# The state filter of the page: "open" is firing or acknowledged.
STATE_FILTERS: dict[str, tuple[str, ...]] = {
    "open": OPEN_STATES,
    FIRING: (FIRING,),
    ACKNOWLEDGED: (ACKNOWLEDGED,),
    RESOLVED: (RESOLVED,),
}
QUIET_SCOPES = ("storm", "site", "feeder")


@dataclass(frozen=True)
class AlertRecord:
    """One row of the alert grids: an alert, or one site of an alert-less incident."""

    incident_id: int | None
    alert_id: int | None
    site_id: str
    rule: str
    severity: str
    state: str  # of the row: resolved when the alert is, else its incident's (firing, acknowledged)
    phase: str
    started_ms: int
    ended_ms: int | None
    opened_ms: int
    acked_by: str | None
    ack_comment: str | None
    detail: str | None
    suppressed: str | None  # "planned": recorded, never paged


@dataclass(frozen=True)
class DeliveryRecord:
    at_ms: int
    incident_id: int
    kind: str
    channel: str
    site_id: str | None
    ok: bool
    detail: str


# -- the engine, built like ``pqmon alerts ack`` builds it ------------------------------------
_engines: dict[int, tuple[Any, AlertEngine]] = {}
_engines_lock = threading.Lock()


def engine_for(ctx: Any) -> AlertEngine:
    """The app's AlertEngine over its registry, with the alerts configuration's routes and policy.

    Built once per dashboard context; a bad PQMON_ALERTS_FILE raises ConfigError (a PqmonError).
    """
    from analysis.alerts.config import load

    with _engines_lock:
        hit = _engines.get(id(ctx))
        if hit is None or hit[0] is not ctx:
            config = load(ctx.settings)
            hit = (ctx, AlertEngine(ctx.registry, config.routes, config.policy))
            _engines[id(ctx)] = hit
        return hit[1]


# -- queries ------------------------------------------------------------------------------------
def _session(registry: Registry) -> Session:
    return Session(registry.engine, expire_on_commit=False)


def _window_of(group_key: str) -> int | None:
    if not group_key.startswith(NOTICE_GROUP):
        return None
    try:
        return int(group_key.removeprefix(NOTICE_GROUP))
    except ValueError:
        return None


def _failed_notice_sites(s: Session, window_ids: Iterable[int]) -> dict[int, list[str]]:
    ids = sorted(set(window_ids))
    if not ids:
        return {}
    rows = s.execute(
        select(DueNoticeRow.window_id, DueNoticeRow.site_id)
        .where(DueNoticeRow.window_id.in_(ids), DueNoticeRow.state == NOTICE_FAILED)
        .distinct()
    ).all()
    found: dict[int, list[str]] = {}
    for window_id, site_id in rows:
        found.setdefault(window_id, []).append(site_id)
    return {k: sorted(v) for k, v in found.items()}


def incident_sites(registry: Registry, incident_id: int) -> set[str] | None:
    """The sites an incident concerns; None when there is no such incident."""
    with _session(registry) as s:
        incident = s.get(IncidentRow, incident_id)
        if incident is None:
            return None
        sites = set(s.scalars(select(AlertRow.site_id).where(AlertRow.incident_id == incident_id)).all())
        if not sites:
            window = _window_of(incident.group_key)
            if window is not None:
                sites = set(_failed_notice_sites(s, [window]).get(window, []))
        return sites


def may_acknowledge(sites: set[str] | None, allowed: Iterable[str] | None) -> bool:
    """Operators and admins (``allowed`` None) may take any incident; a manager only one whose
    every site is theirs (an incident of unknown sites is staff's)."""
    if sites is None:
        return False
    if allowed is None:
        return True
    return bool(sites) and sites <= set(allowed)


def alert_records(
    registry: Registry,
    site_ids: Iterable[str] | None,
    *,
    sites: Iterable[str] | None = None,
    rule: str | None = None,
    severity: str | None = None,
    state: str = "open",
    started_from_ms: int | None = None,
    started_to_ms: int | None = None,
    limit: int = ROW_LIMIT,
) -> list[AlertRecord]:
    """Alerts (and alert-less incidents) of the readable sites, newest first.

    ``site_ids`` is what the user may read (None: everything); ``sites`` narrows to a chosen
    site or a feeder's sites; ``state`` is a key of STATE_FILTERS.
    """
    readable = None if site_ids is None else set(site_ids)
    chosen = None if sites is None else set(sites)
    wanted = STATE_FILTERS.get(state, OPEN_STATES)
    scope = readable if chosen is None else (chosen if readable is None else chosen & readable)
    if scope is not None and not scope:
        return []
    records: list[AlertRecord] = []
    with _session(registry) as s:
        q = select(AlertRow, IncidentRow).join(
            IncidentRow, IncidentRow.id == AlertRow.incident_id, isouter=True
        )
        if scope is not None:
            q = q.where(AlertRow.site_id.in_(sorted(scope)))
        if rule:
            q = q.where(AlertRow.rule == rule)
        if severity:
            q = q.where(AlertRow.severity == severity)
        if RESOLVED in wanted and len(wanted) == 1:
            q = q.where(AlertRow.state == RESOLVED)
        elif RESOLVED not in wanted:
            q = q.where(AlertRow.state != RESOLVED)
        if started_from_ms is not None:
            q = q.where(AlertRow.started_ms >= started_from_ms)
        if started_to_ms is not None:
            q = q.where(AlertRow.started_ms < started_to_ms)
        q = q.order_by(AlertRow.started_ms.desc(), AlertRow.id.desc()).limit(limit * 2)
        for alert, incident in s.execute(q).all():
            row_state = row_state_of(alert.state, incident.state if incident is not None else None)
            if row_state not in wanted:
                continue
            records.append(
                AlertRecord(
                    incident_id=alert.incident_id,
                    alert_id=alert.id,
                    site_id=alert.site_id,
                    rule=alert.rule,
                    severity=alert.severity,
                    state=row_state,
                    phase=alert.phase,
                    started_ms=alert.started_ms,
                    ended_ms=alert.ended_ms,
                    opened_ms=alert.opened_ms,
                    acked_by=incident.acked_by if incident is not None else None,
                    ack_comment=incident.ack_comment if incident is not None else None,
                    detail=incident.detail if incident is not None else None,
                    suppressed=alert.suppressed,
                )
            )
        records.extend(
            _alertless(s, readable, chosen, rule, severity, wanted, started_from_ms, started_to_ms)
        )
    records.sort(key=lambda r: (r.started_ms, r.incident_id or 0, r.alert_id or 0), reverse=True)
    return records[:limit]


def _alertless(
    s: Session,
    readable: set[str] | None,
    chosen: set[str] | None,
    rule: str | None,
    severity: str | None,
    wanted: tuple[str, ...],
    started_from_ms: int | None,
    started_to_ms: int | None,
) -> list[AlertRecord]:
    """Incidents without alerts (notice_failed), one record per site they concern."""
    q = select(IncidentRow).where(
        ~exists().where(AlertRow.incident_id == IncidentRow.id), IncidentRow.state.in_(wanted)
    )
    if rule:
        q = q.where(IncidentRow.rule == rule)
    if severity:
        q = q.where(IncidentRow.severity == severity)
    if started_from_ms is not None:
        q = q.where(IncidentRow.first_start_ms >= started_from_ms)
    if started_to_ms is not None:
        q = q.where(IncidentRow.first_start_ms < started_to_ms)
    incidents = list(s.scalars(q.order_by(IncidentRow.id.desc()).limit(ROW_LIMIT)).all())
    windows = _failed_notice_sites(s, [w for i in incidents if (w := _window_of(i.group_key)) is not None])
    out = []
    for inc in incidents:
        window = _window_of(inc.group_key)
        sites = windows.get(window, []) if window is not None else []
        if not sites and readable is None and chosen is None:
            sites = [""]  # staff still see an incident whose sites are unknown
        for site in sites:
            if (readable is not None and site not in readable) or (chosen is not None and site not in chosen):
                continue
            out.append(
                AlertRecord(
                    incident_id=inc.id,
                    alert_id=None,
                    site_id=site,
                    rule=inc.rule,
                    severity=inc.severity,
                    state=inc.state,
                    phase="",
                    started_ms=inc.first_start_ms,
                    ended_ms=inc.resolved_ms,
                    opened_ms=inc.opened_ms,
                    acked_by=inc.acked_by,
                    ack_comment=inc.ack_comment,
                    detail=inc.detail,
                    suppressed=None,
                )
            )
    return out


def row_state_of(alert_state: str, incident_state: str | None) -> str:
    """A resolved alert is resolved; an open one takes its incident's state (acknowledgement
    is per incident); one without an incident (planned, never paged) is as recorded."""
    if alert_state == RESOLVED:
        return RESOLVED
    if incident_state in (FIRING, ACKNOWLEDGED):
        return incident_state
    return alert_state


def ackable_incidents(
    records: Iterable[AlertRecord], readable: Iterable[str] | None, registry: Registry
) -> list[int]:
    """Open incidents among the records that this user may acknowledge, newest first."""
    ids = sorted(
        {r.incident_id for r in records if r.incident_id is not None and r.state == FIRING}, reverse=True
    )
    allowed = None if readable is None else list(readable)
    return [i for i in ids if may_acknowledge(incident_sites(registry, i), allowed)]


def delivery_records(
    registry: Registry,
    site_ids: Iterable[str] | None,
    from_ms: int,
    to_ms: int,
    limit: int = ROW_LIMIT,
) -> list[DeliveryRecord]:
    """The delivery log in [from_ms, to_ms), newest first; for a manager, only deliveries of
    incidents that concern one of their sites."""
    readable = None if site_ids is None else sorted(set(site_ids))
    if readable is not None and not readable:
        return []
    with _session(registry) as s:
        q = (
            select(DeliveryRow, OutboxRow)
            .join(OutboxRow, OutboxRow.id == DeliveryRow.outbox_id)
            .where(DeliveryRow.at_ms >= from_ms, DeliveryRow.at_ms < to_ms)
        )
        if readable is not None:
            theirs = select(AlertRow.incident_id).where(AlertRow.site_id.in_(readable))
            q = q.where(OutboxRow.site_id.in_(readable) | OutboxRow.incident_id.in_(theirs))
        q = q.order_by(DeliveryRow.at_ms.desc(), DeliveryRow.id.desc()).limit(limit)
        return [
            DeliveryRecord(d.at_ms, o.incident_id, o.kind, o.channel, o.site_id, bool(d.ok), d.detail)
            for d, o in s.execute(q).all()
        ]


def notice_records(
    registry: Registry, site_ids: Iterable[str] | None, from_ms: int, to_ms: int, limit: int = ROW_LIMIT
) -> list[Notice]:
    """The notice log (``pqmon notices list``): notices due in the period and every one still
    pending, of the readable sites, latest due first."""
    readable = None if site_ids is None else set(site_ids)
    out = [
        n
        for n in registry.notices()
        if (readable is None or n.site_id in readable)
        and (from_ms <= n.due_ms < to_ms or n.state == NOTICE_PENDING)
    ]
    out.sort(key=lambda n: (n.due_ms, n.id), reverse=True)
    return out[:limit]


# -- quiet modes ---------------------------------------------------------------------------------
def active_modes(registry: Registry, now_ms: int) -> list[QuietRow]:
    with _session(registry) as s:
        q = select(QuietRow).where(QuietRow.released.is_(False), QuietRow.until_ms > now_ms)
        return list(s.scalars(q.order_by(QuietRow.id)).all())


def end_quiet_mode(registry: Registry, mode_id: int, now_ms: int) -> bool:
    """End a mode now: it stops holding pages at once, and the alert service's next pass marks
    it released and sends what it held (AlertEngine.tick). False if it was not in force."""
    with _session(registry) as s, s.begin():
        done = s.execute(
            update(QuietRow)
            .where(QuietRow.id == mode_id, QuietRow.released.is_(False), QuietRow.until_ms > now_ms)
            .values(until_ms=now_ms)
        )
        return bool(done.rowcount)  # type: ignore[attr-defined]


def parse_local(text: object, tz: str) -> int | None:
    """'YYYY-MM-DDTHH:MM' (an <input type=datetime-local>) in ``tz`` -> epoch ms; None if not one."""
    if not isinstance(text, str) or not text.strip():
        return None
    try:
        naive = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    if naive.tzinfo is not None:
        return int(naive.timestamp() * 1000)
    return int(naive.replace(tzinfo=ZoneInfo(tz)).timestamp() * 1000)


def day_bounds_ms(day_from: date, day_to: date, tz: str) -> tuple[int, int]:
    from core.calendar import day_range_ms

    start, end = day_range_ms(day_from, day_to, tz)
    return int(start), int(end)


def offset_parts(offset_s: int) -> tuple[int, str]:
    """A notice's lead time as (count, unit): whole days, else whole hours, else minutes."""
    if offset_s and offset_s % 86400 == 0:
        return offset_s // 86400, "d"
    if offset_s and offset_s % 3600 == 0:
        return offset_s // 3600, "h"
    return round(offset_s / 60), "min"
