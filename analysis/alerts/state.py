"""Alert state in the registry database: incidents, alerts, the outbox and its delivery log.

Everything an alert does is a row here, changed in one transaction with the notifications it
causes (the outbox), so a crash or restart at any moment neither loses a notification nor
makes one twice: the state and what is owed to the receivers are always in step. Nothing of
it lives in memory (the flaw behind lost resolve notices in other tools).

An **incident** is the unit of paging: the first alert of a cause opens one and pages at
once; alerts of the same cause join it and fold into one update. Acknowledgement,
re-notification and escalation are per incident.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import BigInteger, Boolean, Index, Integer, String, Text, func, select, text
from sqlalchemy.orm import Mapped, mapped_column

from core.registry import Base

# Alert and incident states.
FIRING = "firing"
ACKNOWLEDGED = "acknowledged"
RESOLVED = "resolved"
OPEN_STATES = (FIRING, ACKNOWLEDGED)

# Outbox row states.
PENDING = "pending"  # due at due_ms
SENDING = "sending"  # claimed by a dispatcher; back to pending if it stays here too long
SENT = "sent"
FAILED = "failed"  # permanent failure (bad token, refused address): needs a person
HELD = "held"  # a quiet mode holds it; released when the mode ends
CANCELLED = "cancelled"  # folded into a later notification, or no longer true


class IncidentRow(Base):
    __tablename__ = "alert_incident"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    group_key: Mapped[str] = mapped_column(String(80), index=True)  # "feeder:F1", "site:A1"
    rule: Mapped[str] = mapped_column(String(32))
    severity: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16), index=True)
    first_start_ms: Mapped[int] = mapped_column(BigInteger)  # when its first alert's condition began
    opened_ms: Mapped[int] = mapped_column(BigInteger)  # wall clock
    resolved_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    next_notify_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    escalation_level: Mapped[int] = mapped_column(Integer, default=0)
    acked_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    acked_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    ack_comment: Mapped[str | None] = mapped_column(String(500), nullable=True)
    detail: Mapped[str | None] = mapped_column(String(300), nullable=True)  # what the rule saw


class AlertRow(Base):
    __tablename__ = "alert"
    __table_args__ = (
        # One open alert per rule, site and phase: a repeat updates it and never pages again.
        Index(
            "uq_alert_open",
            "rule",
            "site_id",
            "phase",
            unique=True,
            sqlite_where=text("state != 'resolved'"),
            postgresql_where=text("state != 'resolved'"),
        ),
        # A replayed record (same event id) is the same alert.
        Index("uq_alert_source", "rule", "site_id", "source_key", unique=True),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    rule: Mapped[str] = mapped_column(String(32))
    site_id: Mapped[str] = mapped_column(String(64))
    phase: Mapped[str] = mapped_column(String(8), default="")
    severity: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16), index=True)
    incident_id: Mapped[int | None] = mapped_column(Integer, index=True, nullable=True)
    source_key: Mapped[str | None] = mapped_column(String(160), nullable=True)
    started_ms: Mapped[int] = mapped_column(BigInteger)  # when the condition began (event time)
    ended_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)  # event time
    opened_ms: Mapped[int] = mapped_column(BigInteger)  # wall clock
    last_seen_ms: Mapped[int] = mapped_column(BigInteger)
    suppressed: Mapped[str | None] = mapped_column(String(16), nullable=True)  # "planned"


class OutboxRow(Base):
    """One notification to one channel; its id is the idempotency key receivers see."""

    __tablename__ = "alert_outbox"
    __table_args__ = (Index("ix_outbox_due", "state", "due_ms"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    incident_id: Mapped[int] = mapped_column(Integer, index=True)
    kind: Mapped[str] = mapped_column(String(24))
    channel: Mapped[str] = mapped_column(String(64))
    severity: Mapped[str] = mapped_column(String(16))
    site_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    title: Mapped[str] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(Text)
    payload: Mapped[str] = mapped_column(Text)  # JSON
    state: Mapped[str] = mapped_column(String(16))
    created_ms: Mapped[int] = mapped_column(BigInteger)
    due_ms: Mapped[int] = mapped_column(BigInteger)
    claimed_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    sent_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    last_error: Mapped[str | None] = mapped_column(String(300), nullable=True)


class DeliveryRow(Base):
    """Every attempt and its result: the delivery log."""

    __tablename__ = "alert_delivery"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    outbox_id: Mapped[int] = mapped_column(Integer, index=True)
    at_ms: Mapped[int] = mapped_column(BigInteger)
    ok: Mapped[bool] = mapped_column(Boolean)
    detail: Mapped[str] = mapped_column(String(300))


class QuietRow(Base):
    """Maintenance mode for a site or feeder, or storm mode for everything, until a time."""

    __tablename__ = "alert_quiet"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    scope: Mapped[str] = mapped_column(String(16))  # "storm", "site", "feeder"
    target: Mapped[str] = mapped_column(String(64), default="")
    reason: Mapped[str] = mapped_column(String(300))
    created_by: Mapped[str] = mapped_column(String(64))
    created_ms: Mapped[int] = mapped_column(BigInteger)
    until_ms: Mapped[int] = mapped_column(BigInteger)
    released: Mapped[bool] = mapped_column(Boolean, default=False)


def count_open_alerts(session_factory: Any, site_ids: Iterable[str] | None) -> int:
    """Open (firing or acknowledged) alerts of these sites; every site when None."""
    q = select(func.count()).select_from(AlertRow).where(AlertRow.state.in_(OPEN_STATES))
    if site_ids is not None:
        ids = list(site_ids)
        if not ids:
            return 0
        q = q.where(AlertRow.site_id.in_(ids))
    with session_factory() as s:
        return int(s.scalar(q) or 0)


def active_quiet_modes(session_factory: Any, now_ms: int) -> list[QuietRow]:
    """Maintenance and storm modes in force now (for the dashboard banner)."""
    q = select(QuietRow).where(QuietRow.released.is_(False), QuietRow.until_ms > now_ms).order_by(QuietRow.id)
    with session_factory() as s:
        return list(s.scalars(q).all())
