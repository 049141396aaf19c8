"""The alert engine: records in, alert state and owed notifications out, in one transaction.

The collector hands it every power event it has stored (the fast path: no waiting for the
worker's pass). Its rules for outages:

- A ``power_off`` opens an outage alert for its site, unless one is open (a repeat updates
  it) or the same record was seen before (replays change nothing). Inside a registered
  planned-outage window the alert is recorded but never pages.
- The alert joins the open incident of its feeder (or its own site, with no feeder) whose
  first outage began within ``incident_window_s``; otherwise it opens a new incident, which
  pages at once. Later joins fold into one update, sent at most every ``group_interval_s``.
- A ``power_on`` resolves the site's open outage alert; when the incident's last alert is
  resolved, the incident is, and a restoration notice with the durations goes out. Resolve
  notices are never held back by a quiet mode.
- Unacknowledged incidents are re-notified every ``renotify_s`` and escalated once to the
  escalation group after ``escalate_after_s``; acknowledging stops both.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from analysis.alerts.state import (
    ACKNOWLEDGED,
    CANCELLED,
    FIRING,
    HELD,
    OPEN_STATES,
    PENDING,
    RESOLVED,
    AlertRow,
    IncidentRow,
    OutboxRow,
    QuietRow,
)
from core.errors import PqmonError
from core.registry import Registry

OUTAGE = "outage"
VOLTAGE = "voltage"
SILENT = "silent"
SEMI_F47 = "semi_f47"
MONTH_VQR = "vqr_month"
OUTAGE_BUDGET = "outage_budget"
LAST_MILE = "last_mile"
RULE_TITLES = {
    VOLTAGE: "Voltage out of limits",
    SILENT: "Meter silent (communication loss, not an outage)",
    SEMI_F47: "Voltage dip below the SEMI F47 curve",
    MONTH_VQR: "Month-to-date voltage qualification below target",
    OUTAGE_BUDGET: "Month-to-date outage time over budget",
    LAST_MILE: "Last mile: customer side out of limits while the feeder is fine",
    "notice_failed": "Customer notice not delivered (planned outage)",
}
OPS = "ops"
ESCALATION = "escalation"
FLEET = "fleet:all"  # the group key of a fleet-wide incident
FLEET_MIN_ACCOUNTS = 4  # below this a "fleet" is a feeder or two: no fleet incident


@dataclass(frozen=True)
class PowerEvent:
    """A stored event the engine acts on at once: power_off, power_on, or a dip."""

    site: str
    meter: str
    type: str  # "power_off", "power_on" or "dip"
    ts_ms: int
    event_id: str
    phase: str = ""
    residual_pct: float | None = None  # dips: the lowest voltage, % of the declared voltage
    duration_ms: float | None = None


@dataclass(frozen=True)
class AlertPolicy:
    incident_window_s: float = 60.0
    group_interval_s: float = 30.0
    renotify_s: float = 1800.0
    escalate_after_s: float = 900.0
    claim_timeout_s: float = 60.0  # a notification claimed this long ago by a dead sender is sent again
    tz: str = "Asia/Shanghai"
    # Outages starting within the window on more than this share of the key accounts are one
    # fleet-wide incident (a storm or a substation), whatever their feeders.
    fleet_fraction: float = 0.5


@dataclass(frozen=True)
class SiteInfo:
    name: str
    feeder_id: str | None
    planned_ms: tuple[tuple[int, int], ...] = ()
    kind: str = "account"


@dataclass
class Routes:
    """Channel names by group: ``ops`` gets every page, ``escalation`` the escalations."""

    groups: dict[str, list[str]] = field(default_factory=dict)

    def of(self, group: str) -> list[str]:
        return self.groups.get(group, [])


class AlertError(PqmonError):
    pass


def _payload(incident: IncidentRow, kind: str, sites: list[dict[str, Any]]) -> dict[str, Any]:
    """The machine-readable notification: what webhooks and MQTT subscribers get."""
    return {
        "incident": incident.id,
        "rule": incident.rule,
        "kind": kind,
        "group": incident.group_key,
        "state": incident.state,
        "severity": incident.severity,
        "sites": sites,
    }


def site_infos(registry: Registry) -> dict[str, SiteInfo]:
    planned = registry.all_planned_outages()
    out = {}
    for site in registry.sites():
        windows = tuple(
            (_ms(s), _ms(e)) for s, e in planned.get(site.id, []) + planned.get(site.feeder_id or "", [])
        )
        out[site.id] = SiteInfo(site.name, site.feeder_id, windows, site.kind)
    return out


def _ms(naive_utc: datetime) -> int:
    return int(naive_utc.replace(tzinfo=UTC).timestamp() * 1000)


class AlertEngine:
    def __init__(
        self,
        registry: Registry,
        routes: Routes,
        policy: AlertPolicy | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.registry = registry
        self.routes = routes
        self.policy = policy or AlertPolicy()
        self.clock = clock
        self._session = sessionmaker(registry.engine, expire_on_commit=False)
        self._sites: dict[str, SiteInfo] = {}
        self._sites_at = 0.0

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    def sites(self) -> dict[str, SiteInfo]:
        """The registry's sites, re-read at most every 10 s (new accounts, planned windows)."""
        if not self._sites or time.monotonic() - self._sites_at > 10:
            self._sites = site_infos(self.registry)
            self._sites_at = time.monotonic()
        return self._sites

    # -- records in ---------------------------------------------------------------------------
    def on_events(self, events: Iterable[PowerEvent]) -> None:
        """Apply stored power events, oldest first, in one transaction with their notifications."""
        ordered = sorted(
            (e for e in events if e.type in ("power_off", "power_on", "dip")),
            key=lambda e: (e.ts_ms, e.type == "power_off"),
        )
        if not ordered:
            return
        now = self.now_ms()
        sites = self.sites()
        with self._session.begin() as s:
            for event in ordered:
                info = sites.get(event.site)
                if info is None:
                    continue
                if event.type == "power_off":
                    self._power_off(s, event, info, now)
                elif event.type == "power_on":
                    self._power_on(s, event, info, now)
                else:
                    self._dip(s, event, now)

    @staticmethod
    def _seen(s: Session, rule: str, event: PowerEvent) -> bool:
        """This record (same event id) already made an alert of the rule."""
        found = s.scalar(
            select(AlertRow.id).where(
                AlertRow.rule == rule, AlertRow.site_id == event.site, AlertRow.source_key == event.event_id
            )
        )
        return found is not None

    def _dip(self, s: Session, event: PowerEvent, now: int) -> None:
        """A dip deeper than SEMI F47 allows pages once; it is over when it is reported, so
        its alert is born resolved (nothing to acknowledge, no reminders, no resolve notice)."""
        from analysis.curves import SEMI_OUTSIDE, semi_f47_region

        if event.residual_pct is None or event.duration_ms is None:
            return
        if semi_f47_region(event.residual_pct, event.duration_ms / 1000.0) != SEMI_OUTSIDE:
            return
        if self._seen(s, SEMI_F47, event):
            return  # a replay
        detail = (
            f"phase {event.phase or '?'}: {event.residual_pct:g} % of declared voltage for"
            f" {event.duration_ms:g} ms, below the SEMI F47 ride-through curve"
        )
        self._page_condition(
            s,
            SEMI_F47,
            event.site,
            event.phase,
            event.ts_ms,
            "minor",
            detail,
            now,
            group_key=f"{SEMI_F47}:{event.site}",
            ended_ms=event.ts_ms + int(event.duration_ms),
            source_key=event.event_id,
        )

    def _power_off(self, s: Session, event: PowerEvent, info: SiteInfo, now: int) -> None:
        if self._seen(s, OUTAGE, event):
            return  # a replay
        open_alert = self._open_alert(s, event.site)
        if open_alert is not None:
            open_alert.last_seen_ms = now
            return
        planned = any(a <= event.ts_ms <= b for a, b in info.planned_ms)
        alert = AlertRow(
            rule=OUTAGE,
            site_id=event.site,
            phase="",
            severity="critical",
            state=FIRING,
            source_key=event.event_id,
            started_ms=event.ts_ms,
            opened_ms=now,
            last_seen_ms=now,
            suppressed="planned" if planned else None,
        )
        s.add(alert)
        if planned:
            s.flush()
            return  # recorded, never paged: the customers were told
        window_ms = int(self.policy.incident_window_s * 1000)
        group = self._group(s, event, info, window_ms)
        # A fleet-wide outage joins the first open outage incident of the window, whatever its
        # feeder, which becomes the fleet's: one page for the storm, updates after it.
        incident = s.scalars(
            select(IncidentRow)
            .where(
                IncidentRow.group_key == group if group != FLEET else IncidentRow.rule == OUTAGE,
                IncidentRow.rule == OUTAGE,
                IncidentRow.state.in_(OPEN_STATES),
                IncidentRow.first_start_ms >= event.ts_ms - window_ms,
                IncidentRow.first_start_ms <= event.ts_ms + window_ms,
            )
            .order_by(IncidentRow.id)
        ).first()
        if incident is None:
            incident = IncidentRow(
                group_key=group,
                rule=OUTAGE,
                severity="critical",
                state=FIRING,
                first_start_ms=event.ts_ms,
                opened_ms=now,
                next_notify_ms=now + int(self.policy.renotify_s * 1000),
                escalation_level=0,
            )
            s.add(incident)
            s.flush()
            alert.incident_id = incident.id
            s.flush()
            self._notify(s, incident, "incident", OPS, now, now)
        else:
            if group == FLEET and incident.group_key != FLEET:
                incident.group_key = FLEET
                self._merge_into(s, incident, event.ts_ms, window_ms, now)
            alert.incident_id = incident.id
            s.flush()
            self._fold_update(s, incident, now)

    def _merge_into(self, s: Session, fleet: IncidentRow, ts_ms: int, window_ms: int, now: int) -> None:
        """The storm crossed the fleet threshold: the other feeders' open outage incidents of
        the window, which paged already, hand their accounts to the fleet incident. They end
        as merged, with no restoration notice (nothing was restored); their reminders stop,
        and the fleet incident's updates list every account from now on."""
        others = s.scalars(
            select(IncidentRow).where(
                IncidentRow.id != fleet.id,
                IncidentRow.rule == OUTAGE,
                IncidentRow.state.in_(OPEN_STATES),
                IncidentRow.first_start_ms >= ts_ms - window_ms,
                IncidentRow.first_start_ms <= ts_ms + window_ms,
            )
        ).all()
        for other in others:
            s.execute(update(AlertRow).where(AlertRow.incident_id == other.id).values(incident_id=fleet.id))
            s.execute(
                update(OutboxRow)
                .where(OutboxRow.incident_id == other.id, OutboxRow.state.in_((PENDING, HELD)))
                .values(state=CANCELLED)
            )
            other.state, other.resolved_ms, other.next_notify_ms = RESOLVED, now, None
            other.detail = f"merged into fleet incident {fleet.id}"
            fleet.first_start_ms = min(fleet.first_start_ms, other.first_start_ms)

    def _group(self, s: Session, event: PowerEvent, info: SiteInfo, window_ms: int) -> str:
        """The incident an outage belongs to: the fleet's when most accounts lost supply
        within the window (one page for a storm), else its feeder's (or its own site's)."""
        accounts = sum(1 for i in self.sites().values() if i.kind == "account")
        near = (
            AlertRow.rule == OUTAGE,
            AlertRow.suppressed.is_(None),
            AlertRow.started_ms >= event.ts_ms - window_ms,
            AlertRow.started_ms <= event.ts_ms + window_ms,
        )
        fleet_open = s.scalar(
            select(IncidentRow.id).where(
                IncidentRow.group_key == FLEET,
                IncidentRow.state.in_(OPEN_STATES),
                IncidentRow.first_start_ms >= event.ts_ms - window_ms,
                IncidentRow.first_start_ms <= event.ts_ms + window_ms,
            )
        )
        if fleet_open is not None:
            return FLEET
        # The new alert is already in the session (autoflushed), so it is counted here.
        recent = s.scalar(select(func.count(AlertRow.id)).where(*near)) or 0
        if accounts >= FLEET_MIN_ACCOUNTS and recent > self.policy.fleet_fraction * accounts:
            return FLEET
        return f"feeder:{info.feeder_id}" if info.feeder_id else f"site:{event.site}"

    def _power_on(self, s: Session, event: PowerEvent, info: SiteInfo, now: int) -> None:
        alert = self._open_alert(s, event.site)
        if alert is None or alert.started_ms > event.ts_ms:
            return  # nothing open, or a power_on older than the outage: starts nothing
        alert.state = RESOLVED
        alert.ended_ms = event.ts_ms
        alert.last_seen_ms = now
        if alert.incident_id is None:
            return
        incident = s.get(IncidentRow, alert.incident_id)
        if incident is None or incident.state == RESOLVED:
            return
        s.flush()
        still_open = s.scalar(
            select(AlertRow.id).where(AlertRow.incident_id == incident.id, AlertRow.state.in_(OPEN_STATES))
        )
        if still_open is not None:
            self._fold_update(s, incident, now)
            return
        self._resolve_incident(s, incident, now)

    def _resolve_incident(self, s: Session, incident: IncidentRow, now: int) -> None:
        incident.state = RESOLVED
        incident.resolved_ms = now
        incident.next_notify_ms = None
        s.execute(
            update(OutboxRow)
            .where(
                OutboxRow.incident_id == incident.id,
                OutboxRow.kind.in_(("incident_update", "reminder")),
                OutboxRow.state.in_((PENDING, HELD)),
            )
            .values(state=CANCELLED)
        )
        s.flush()
        # Resolve notices go out whatever the quiet modes say.
        self._notify(s, incident, "resolved", OPS, now, now, quiet_ok=True)

    def _open_alert(self, s: Session, site: str, rule: str = OUTAGE, phase: str = "") -> AlertRow | None:
        return s.scalars(
            select(AlertRow).where(
                AlertRow.rule == rule,
                AlertRow.site_id == site,
                AlertRow.phase == phase,
                AlertRow.state.in_(OPEN_STATES),
            )
        ).first()

    # -- condition rules (voltage, silence): one alert, one incident each -------------------
    def open_alerts(self, rule: str) -> dict[tuple[str, str], int]:
        """(site, phase) -> started_ms of the rule's open alerts."""
        with self._session() as s:
            rows = s.execute(
                select(AlertRow.site_id, AlertRow.phase, AlertRow.started_ms).where(
                    AlertRow.rule == rule, AlertRow.state.in_(OPEN_STATES)
                )
            ).all()
            return {(site, phase): started for site, phase, started in rows}

    def fire(self, rule: str, site: str, phase: str, started_ms: int, severity: str, detail: str) -> bool:
        """Open the rule's alert for (site, phase) and page, unless one is open: False then."""
        now = self.now_ms()
        with self._session.begin() as s:
            if self._open_alert(s, site, rule, phase) is not None:
                return False
            group = f"{rule}:{site}:{phase}" if phase else f"{rule}:{site}"
            self._page_condition(s, rule, site, phase, started_ms, severity, detail, now, group_key=group)
            return True

    def _page_condition(
        self,
        s: Session,
        rule: str,
        site: str,
        phase: str,
        started_ms: int,
        severity: str,
        detail: str,
        now: int,
        group_key: str,
        ended_ms: int | None = None,
        source_key: str | None = None,
    ) -> None:
        """One alert in an incident of its own, paged at once. With ``ended_ms`` the condition
        is already over when it is reported (a dip): born resolved, nothing to remind of."""
        over = ended_ms is not None
        incident = IncidentRow(
            group_key=group_key,
            rule=rule,
            severity=severity,
            state=RESOLVED if over else FIRING,
            first_start_ms=started_ms,
            opened_ms=now,
            resolved_ms=now if over else None,
            next_notify_ms=None if over else now + int(self.policy.renotify_s * 1000),
            escalation_level=0,
            detail=detail[:300],
        )
        s.add(incident)
        s.flush()
        s.add(
            AlertRow(
                rule=rule,
                site_id=site,
                phase=phase,
                severity=severity,
                state=RESOLVED if over else FIRING,
                incident_id=incident.id,
                source_key=source_key,
                started_ms=started_ms,
                ended_ms=ended_ms,
                opened_ms=now,
                last_seen_ms=now,
            )
        )
        s.flush()
        self._notify(s, incident, "incident", OPS, now, now)

    def clear(self, rule: str, site: str, phase: str, ended_ms: int) -> bool:
        """Resolve the rule's open alert for (site, phase) and send its resolve notice."""
        now = self.now_ms()
        with self._session.begin() as s:
            alert = self._open_alert(s, site, rule, phase)
            if alert is None:
                return False
            alert.state, alert.ended_ms, alert.last_seen_ms = RESOLVED, ended_ms, now
            incident = s.get(IncidentRow, alert.incident_id) if alert.incident_id is not None else None
            if incident is not None and incident.state != RESOLVED:
                self._resolve_incident(s, incident, now)
            return True

    def _fold_update(self, s: Session, incident: IncidentRow, now: int) -> None:
        """One pending update per incident, re-rendered as alerts join or clear."""
        pending = s.scalars(
            select(OutboxRow).where(
                OutboxRow.incident_id == incident.id,
                OutboxRow.kind == "incident_update",
                OutboxRow.state.in_((PENDING, HELD)),
            )
        ).all()
        if pending:
            title, body, payload = self.render(s, incident, "incident_update")
            for row in pending:
                row.title, row.body, row.payload = title, body, json.dumps(payload, ensure_ascii=False)
            return
        last = s.scalar(
            select(OutboxRow.created_ms)
            .where(OutboxRow.incident_id == incident.id, OutboxRow.kind.in_(("incident", "incident_update")))
            .order_by(OutboxRow.created_ms.desc())
        )
        due = max(now, (last or now) + int(self.policy.group_interval_s * 1000))
        self._notify(s, incident, "incident_update", OPS, now, due)

    # -- notifications ------------------------------------------------------------------------
    def _notify(
        self,
        s: Session,
        incident: IncidentRow,
        kind: str,
        group: str,
        now: int,
        due: int,
        quiet_ok: bool = False,
    ) -> None:
        title, body, payload = self.render(s, incident, kind)
        held = not quiet_ok and self._quiet(s, incident, now)
        targets = [(channel, due) for channel in self.routes.of(group)]
        if group == OPS:
            targets += self._subscribers(incident, kind, [x["site"] for x in payload["sites"]], now, due)
        for channel, when in targets:
            s.add(
                OutboxRow(
                    incident_id=incident.id,
                    kind=kind,
                    channel=channel,
                    severity=incident.severity,
                    site_id=payload["sites"][0]["site"] if len(payload["sites"]) == 1 else None,
                    title=title,
                    body=body,
                    payload=json.dumps(payload, ensure_ascii=False),
                    state=HELD if held else PENDING,
                    created_ms=now,
                    due_ms=when,
                    attempts=0,
                )
            )

    def _subscribers(
        self, incident: IncidentRow, kind: str, sites: list[str], now: int, due: int
    ) -> list[tuple[str, int]]:
        """Personal subscriptions that want this notification, each with when it is due (the
        end of its quiet hours, for anything below critical)."""
        from analysis.alerts.subscriptions import PREFIX, quiet_until, subscriptions

        out = []
        visible: dict[str, set[str]] = {}
        for sub in subscriptions(self.registry):
            if sub.user not in visible:
                user = self.registry.user(sub.user)
                visible[sub.user] = set(self.registry.visible_site_ids(user, kind=None)) if user else set()
            if not sub.wants(incident.severity, sites, visible[sub.user]):
                continue
            when = due
            if incident.severity != "critical" and kind != "resolved":
                when = max(due, quiet_until(sub.quiet, now, self.policy.tz) or due)
            out.append((f"{PREFIX}{sub.id}", when))
        return out

    def _quiet(self, s: Session, incident: IncidentRow, now: int) -> bool:
        """Storm mode, or maintenance of every site (or the feeder) of the incident."""
        modes = s.scalars(select(QuietRow).where(QuietRow.until_ms > now, QuietRow.released.is_(False))).all()
        if not modes:
            return False
        if any(m.scope == "storm" for m in modes):
            return True
        sites = s.scalars(select(AlertRow.site_id).where(AlertRow.incident_id == incident.id)).all()
        infos = self.sites()
        held_sites = {m.target for m in modes if m.scope == "site"}
        held_feeders = {m.target for m in modes if m.scope == "feeder"}
        return bool(sites) and all(
            site in held_sites or (infos.get(site, SiteInfo("", None)).feeder_id in held_feeders)
            for site in sites
        )

    def render(self, s: Session, incident: IncidentRow, kind: str) -> tuple[str, str, dict[str, Any]]:
        """Title, plain text and the machine-readable payload of a notification."""
        alerts = s.scalars(
            select(AlertRow)
            .where(AlertRow.incident_id == incident.id)
            .order_by(AlertRow.started_ms, AlertRow.site_id)
        ).all()
        infos = self.sites()
        zone = ZoneInfo(self.policy.tz)

        def local(ms: int | None) -> str | None:
            return (
                None if ms is None else datetime.fromtimestamp(ms / 1000, zone).isoformat(timespec="seconds")
            )

        sites = [
            {
                "site": a.site_id,
                "name": infos.get(a.site_id, SiteInfo(a.site_id, None)).name,
                "state": a.state,
                "start": local(a.started_ms),
                "end": local(a.ended_ms),
                "duration_s": None if a.ended_ms is None else (a.ended_ms - a.started_ms) / 1000.0,
            }
            for a in alerts
        ]
        restored = sum(1 for x in sites if x["state"] == RESOLVED)
        off = len(sites) - restored
        where = "whole fleet" if incident.group_key == FLEET else incident.group_key.split(":", 1)[1]
        if incident.rule != OUTAGE:
            return self._render_condition(incident, kind, sites)
        headline = {
            "incident": f"Outage: {len(sites)} account(s) without supply ({where})",
            "incident_update": f"Outage update ({where}): {len(sites)} account(s), {restored} restored",
            "resolved": f"Restored ({where}): {len(sites)} account(s)",
            "reminder": f"Still unacknowledged: outage ({where}), {off} without supply",
            "escalation": f"Escalated: outage ({where}) unacknowledged, {off} without supply",
        }[kind]
        lines = [headline]
        for x in sites:
            if x["end"] is None:
                lines.append(f"- {x['site']} {x['name']}: off since {x['start']}")
            else:
                minutes = float(x["duration_s"] or 0.0) / 60.0
                lines.append(f"- {x['site']} {x['name']}: {x['start']} to {x['end']} ({minutes:.1f} min)")
        return headline, "\n".join(lines), _payload(incident, kind, sites)

    def _render_condition(
        self, incident: IncidentRow, kind: str, sites: list[dict[str, Any]]
    ) -> tuple[str, str, dict[str, Any]]:
        what = RULE_TITLES.get(incident.rule, incident.rule)
        target = incident.group_key.split(":", 1)[1].replace(":", " phase ")
        headline = {
            "incident": f"{what}: {target}",
            "incident_update": f"{what}: {target}",
            "resolved": f"Cleared: {what.lower()}: {target}",
            "reminder": f"Still unacknowledged: {what.lower()}: {target}",
            "escalation": f"Escalated: {what.lower()}: {target}",
        }[kind]
        lines = [headline]
        if incident.detail:
            lines.append(incident.detail)
        for x in sites:
            until = f" to {x['end']}" if x["end"] else ""
            lines.append(f"- {x['site']} {x['name']}: since {x['start']}{until}")
        return headline, "\n".join(lines), _payload(incident, kind, sites) | {"detail": incident.detail}

    # -- time passing ---------------------------------------------------------------------------
    def tick(self) -> None:
        """Re-notify and escalate unacknowledged incidents; release held notifications of
        quiet modes that ended."""
        now = self.now_ms()
        with self._session.begin() as s:
            due = s.scalars(
                select(IncidentRow).where(
                    IncidentRow.state == FIRING,
                    IncidentRow.next_notify_ms.is_not(None),
                    IncidentRow.next_notify_ms <= now,
                )
            ).all()
            for incident in due:
                if (
                    incident.escalation_level == 0
                    and now - incident.opened_ms >= self.policy.escalate_after_s * 1000
                ):
                    incident.escalation_level = 1
                    self._notify(s, incident, "escalation", ESCALATION, now, now)
                else:
                    self._notify(s, incident, "reminder", OPS, now, now)
                incident.next_notify_ms = now + int(self.policy.renotify_s * 1000)
                if incident.escalation_level == 0:
                    escalate_at = incident.opened_ms + int(self.policy.escalate_after_s * 1000)
                    incident.next_notify_ms = min(incident.next_notify_ms, max(escalate_at, now + 1))
            self._release(s, now)

    def _release(self, s: Session, now: int) -> None:
        ended = s.scalars(
            select(QuietRow).where(QuietRow.until_ms <= now, QuietRow.released.is_(False))
        ).all()
        if not ended:
            return
        for mode in ended:
            mode.released = True
        s.flush()
        for row in s.scalars(select(OutboxRow).where(OutboxRow.state == HELD)).all():
            incident = s.get(IncidentRow, row.incident_id)
            if incident is not None and not self._quiet(s, incident, now):
                # Still true? A page of an incident already over is folded into its resolve notice.
                row.state = PENDING if incident.state != RESOLVED or row.kind == "resolved" else CANCELLED
                row.due_ms = now

    # -- people -------------------------------------------------------------------------------
    def acknowledge(self, incident_id: int, by: str, comment: str) -> None:
        now = self.now_ms()
        with self._session.begin() as s:
            incident = s.get(IncidentRow, incident_id)
            if incident is None:
                raise AlertError(f"no incident {incident_id}; 'pqmon alerts list' shows the open ones")
            if incident.state == RESOLVED:
                raise AlertError(f"incident {incident_id} is already resolved")
            incident.state = ACKNOWLEDGED
            incident.acked_by, incident.acked_ms, incident.ack_comment = by, now, comment[:500]
            incident.next_notify_ms = None
            s.execute(
                update(OutboxRow)
                .where(
                    OutboxRow.incident_id == incident_id,
                    OutboxRow.kind.in_(("reminder", "escalation")),
                    OutboxRow.state == PENDING,
                )
                .values(state=CANCELLED)
            )

    def resolve(self, incident_id: int, by: str, comment: str) -> None:
        """Resolve an incident by hand (its condition will not clear by itself, e.g. a meter
        taken out of service): its open alerts end now and the resolve notice goes out. A
        condition that is still true fires again on the next pass, as a new alert."""
        now = self.now_ms()
        with self._session.begin() as s:
            incident = s.get(IncidentRow, incident_id)
            if incident is None:
                raise AlertError(f"no incident {incident_id}; 'pqmon alerts list' shows the open ones")
            if incident.state == RESOLVED:
                raise AlertError(f"incident {incident_id} is already resolved")
            s.execute(
                update(AlertRow)
                .where(AlertRow.incident_id == incident_id, AlertRow.state.in_(OPEN_STATES))
                .values(state=RESOLVED, ended_ms=now, last_seen_ms=now)
            )
            if incident.acked_by is None:
                incident.acked_by, incident.acked_ms = by, now
            note = f"resolved by hand by {by}: {comment}"
            incident.ack_comment = ((incident.ack_comment + "; ") if incident.ack_comment else "") + note
            incident.ack_comment = incident.ack_comment[:500]
            self._resolve_incident(s, incident, now)

    def quiet(self, scope: str, target: str, until_ms: int, reason: str, by: str) -> int:
        if scope not in ("storm", "site", "feeder"):
            raise AlertError(f"quiet mode scope must be storm, site or feeder, got {scope!r}")
        if scope != "storm" and target not in self.sites():
            raise AlertError(f"{scope} {target!r} is not in the registry")
        if not reason.strip():
            raise AlertError("a quiet mode needs a reason (--reason), shown in the banner and the log")
        with self._session.begin() as s:
            row = QuietRow(
                scope=scope,
                target=target if scope != "storm" else "",
                reason=reason,
                created_by=by,
                created_ms=self.now_ms(),
                until_ms=until_ms,
                released=False,
            )
            s.add(row)
            s.flush()
            return row.id

    def open_incidents(self) -> list[dict[str, Any]]:
        with self._session() as s:
            rows = s.scalars(
                select(IncidentRow).where(IncidentRow.state.in_(OPEN_STATES)).order_by(IncidentRow.id.desc())
            ).all()
            return [self._incident_dict(s, r) for r in rows]

    def incident(self, incident_id: int) -> dict[str, Any]:
        with self._session() as s:
            row = s.get(IncidentRow, incident_id)
            if row is None:
                raise AlertError(f"no incident {incident_id}")
            return self._incident_dict(s, row)

    def _incident_dict(self, s: Session, row: IncidentRow) -> dict[str, Any]:
        _, _, payload = self.render(s, row, "incident_update")
        return payload | {
            "opened_ms": row.opened_ms,
            "acked_by": row.acked_by,
            "ack_comment": row.ack_comment,
            "escalation_level": row.escalation_level,
        }


__all__ = ["AlertEngine", "AlertPolicy", "PowerEvent", "Routes", "SiteInfo", "site_infos"]
