"""The registry: sites (key accounts and feeders), meters, users and planned outages.

SQLAlchemy 2 over a SQLite file by default, PostgreSQL by URL (``PQMON_REGISTRY_URL``).
Callers get frozen dataclasses back, never live ORM rows, so the data can cross threads.
"""

from __future__ import annotations

import csv
import functools
import logging
import re
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
    create_engine,
    delete,
    event,
    select,
)
from sqlalchemy import insert as insert_into
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker
from werkzeug.security import check_password_hash, generate_password_hash

from core import schema
from core.errors import RegistryError
from core.lineproto import valid_ident
from core.settings import LANGS

log = logging.getLogger(__name__)

SITES_VERSION_KEY = "registry.sites_version"  # changes with every change of sites or meters

ROLES = ("admin", "manager", "operator", "customer")
SITE_KINDS = ("account", "feeder")
PROFILES = ("gb", "en50160")
CSV_COLUMNS = (
    "site_id",
    "site_kind",
    "name",
    "voltage_class_kv",
    "phases",
    "meter_id",
    "nominal_v",
    "upper_pct",
    "lower_pct",
    "profile",
    "feeder_id",
    "manager",
)
# A site's fields an import may change (all but its id).
SITE_FIELDS = (
    "kind",
    "name",
    "voltage_class_kv",
    "phases",
    "upper_pct",
    "lower_pct",
    "profile",
    "feeder_id",
    "manager",
    "commissioned",
)
# Optional columns: absent or empty means the default.
OPTIONAL_CSV_COLUMNS = ("commissioned",)
# Contacts CSV (pqmon contacts import): one row per person of a key account.
CONTACT_CSV_COLUMNS = ("site_id", "name", "phone", "email", "robot_url", "robot_secret", "lang")
# Planned-outage windows and the notices owed to customers (analysis.alerts.notices).
WINDOW_ACTIVE = "active"
WINDOW_CANCELLED = "cancelled"
NOTICE_PENDING = "pending"
NOTICE_SENDING = "sending"  # claimed by a scheduler; back to pending if it stays here too long
NOTICE_SENT = "sent"
NOTICE_FAILED = "failed"  # refused for good or out of retries: an operations alert went out
NOTICE_SKIPPED_LATE = "skipped_late"  # its time had passed (never a "48 h" notice 20 h before)
NOTICE_CANCELLED = "cancelled"  # the window moved or was cancelled before it was sent
NOTICE_STATES = (
    NOTICE_PENDING,
    NOTICE_SENDING,
    NOTICE_SENT,
    NOTICE_FAILED,
    NOTICE_SKIPPED_LATE,
    NOTICE_CANCELLED,
)


class Base(DeclarativeBase):
    pass


class SiteRow(Base):
    __tablename__ = "site"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(200))
    voltage_class_kv: Mapped[float] = mapped_column(Float)
    phases: Mapped[int] = mapped_column(Integer)
    upper_pct: Mapped[float | None] = mapped_column(Float, nullable=True)
    lower_pct: Mapped[float | None] = mapped_column(Float, nullable=True)
    profile: Mapped[str] = mapped_column(String(16), default="gb")
    feeder_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    manager: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # First local day of the site's monitored life; None: its first reading or event.
    commissioned: Mapped[date | None] = mapped_column(Date, nullable=True)


class MeterRow(Base):
    __tablename__ = "meter"
    __table_args__ = (UniqueConstraint("site_id", "meter_id"),)
    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    site_id: Mapped[str] = mapped_column(ForeignKey("site.id", ondelete="CASCADE"))
    meter_id: Mapped[str] = mapped_column(String(64))
    nominal_v: Mapped[float] = mapped_column(Float)


class UserRow(Base):
    __tablename__ = "app_user"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str] = mapped_column(String(256))
    # None: the PQMON_LANG default. Nullable so older registries gain them in place.
    lang: Mapped[str | None] = mapped_column(String(8), nullable=True)
    disabled: Mapped[bool | None] = mapped_column(Boolean, nullable=True)


class UserSiteRow(Base):
    __tablename__ = "user_site"
    user_name: Mapped[str] = mapped_column(ForeignKey("app_user.name", ondelete="CASCADE"), primary_key=True)
    site_id: Mapped[str] = mapped_column(String(64), primary_key=True)


class PlannedOutageRow(Base):
    __tablename__ = "planned_outage"
    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    site_id: Mapped[str] = mapped_column(String(64), index=True)
    start_utc: Mapped[datetime] = mapped_column(DateTime)
    end_utc: Mapped[datetime] = mapped_column(DateTime)
    note: Mapped[str] = mapped_column(String(200), default="")


class DirtyDayRow(Base):
    """A (site, local day) whose raw data changed since its roll-up was computed."""

    __tablename__ = "dirty_day"
    site_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    marked_ms: Mapped[int] = mapped_column(BigInteger)
    # PostgreSQL: a random number new with every mark, so that a worker removes only the marks
    # it computed; one made again meanwhile (new data) has another and stays for the next claim.
    token: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class DirtySiteRow(Base):
    """PostgreSQL only: a site with work for the workers, and which worker has claimed it till when.

    The unit of work several workers share (core.claims): one row per site with dirty days
    (``dirty_day``) or a span of days to recompute (the first pass, days that ended since the
    previous plan, open outages). ``gen`` grows with every mark or span, so a worker that
    finishes the site deletes the row only if nothing came in while it computed.
    """

    __tablename__ = "dirty_site"
    __table_args__ = (Index("ix_dirty_site_queue", "queued_ms", "site_id"),)
    site_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    gen: Mapped[int] = mapped_column(BigInteger)
    queued_ms: Mapped[int] = mapped_column(BigInteger)  # database clock; the oldest are claimed first
    span_from: Mapped[date | None] = mapped_column(Date, nullable=True)
    span_to: Mapped[date | None] = mapped_column(Date, nullable=True)
    span_token: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    claimed_by: Mapped[str | None] = mapped_column(String(120), nullable=True)
    claimed_until_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)  # database clock


class WorkerStateRow(Base):
    __tablename__ = "worker_state"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(200))


class ContactRow(Base):
    """A person of a key account who is told of planned outages."""

    __tablename__ = "contact"
    __table_args__ = (UniqueConstraint("site_id", "name", name="uq_contact_site_name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    site_id: Mapped[str] = mapped_column(ForeignKey("site.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    phone: Mapped[str | None] = mapped_column(String(32), nullable=True)
    email: Mapped[str | None] = mapped_column(String(254), nullable=True)
    robot_url: Mapped[str | None] = mapped_column(String(500), nullable=True)  # DingTalk or WeCom robot
    robot_secret: Mapped[str | None] = mapped_column(String(200), nullable=True)  # DingTalk signing
    lang: Mapped[str] = mapped_column(String(8), default="zh-CN")
    updated_ms: Mapped[int] = mapped_column(BigInteger)


class PlannedWindowRow(Base):
    """A planned outage as people name it (its id): one window of one account or feeder.

    It is realised by one ``planned_outage`` row per site it covers (a feeder's covers its
    accounts), listed in ``planned_window_site``; moving it moves those rows, cancelling it
    removes them. ``version`` counts the changes: each version has its own notices.
    """

    __tablename__ = "planned_window"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    site_id: Mapped[str] = mapped_column(String(64), index=True)  # as registered: account or feeder
    start_utc: Mapped[datetime] = mapped_column(DateTime)
    end_utc: Mapped[datetime] = mapped_column(DateTime)
    note: Mapped[str] = mapped_column(String(200), default="")
    version: Mapped[int] = mapped_column(Integer, default=1)
    state: Mapped[str] = mapped_column(String(16), default=WINDOW_ACTIVE)
    created_ms: Mapped[int] = mapped_column(BigInteger)
    changed_ms: Mapped[int] = mapped_column(BigInteger)


class PlannedWindowSiteRow(Base):
    __tablename__ = "planned_window_site"
    window_id: Mapped[int] = mapped_column(
        ForeignKey("planned_window.id", ondelete="CASCADE"), primary_key=True
    )
    site_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    planned_outage_pk: Mapped[int | None] = mapped_column(Integer, nullable=True)  # None once cancelled


class DueNoticeRow(Base):
    """One notice owed to one contact on one channel for one version of a planned window.

    Its id is the idempotency key the customer's mailbox or robot sees (``pqmon-notice-<id>``).
    """

    __tablename__ = "due_notice"
    __table_args__ = (
        UniqueConstraint(
            "window_id", "version", "contact_id", "channel", "kind", "offset_s", name="uq_due_notice"
        ),
        Index("ix_due_notice_due", "state", "due_ms"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    window_id: Mapped[int] = mapped_column(Integer, index=True)
    version: Mapped[int] = mapped_column(Integer)
    site_id: Mapped[str] = mapped_column(String(64), index=True)  # the contact's account
    contact_id: Mapped[int] = mapped_column(Integer, index=True)
    channel: Mapped[str] = mapped_column(String(16))  # "email" or "robot"
    kind: Mapped[str] = mapped_column(String(16))  # "ahead", "confirm", "moved", "cancelled"
    offset_s: Mapped[int] = mapped_column(Integer)  # before the start; 0 for moved and cancelled
    start_ms: Mapped[int] = mapped_column(BigInteger)  # the window this notice speaks of
    end_ms: Mapped[int] = mapped_column(BigInteger)
    prev_start_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)  # moved: from
    prev_end_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    due_ms: Mapped[int] = mapped_column(BigInteger)
    state: Mapped[str] = mapped_column(String(16))
    created_ms: Mapped[int] = mapped_column(BigInteger)
    claimed_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    claim_token: Mapped[str | None] = mapped_column(String(32), nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    sent_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    last_error: Mapped[str | None] = mapped_column(String(300), nullable=True)


class NoticeDeliveryRow(Base):
    """Every attempt to send a notice and its result."""

    __tablename__ = "notice_delivery"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    notice_id: Mapped[int] = mapped_column(Integer, index=True)
    at_ms: Mapped[int] = mapped_column(BigInteger)
    ok: Mapped[bool] = mapped_column(Boolean)
    detail: Mapped[str] = mapped_column(String(300))


@dataclass(frozen=True)
class Meter:
    site_id: str
    meter_id: str
    nominal_v: float


@dataclass(frozen=True)
class Site:
    id: str
    kind: str
    name: str
    voltage_class_kv: float
    phases: int
    upper_pct: float | None
    lower_pct: float | None
    profile: str
    feeder_id: str | None
    manager: str | None
    meters: tuple[Meter, ...] = ()
    commissioned: date | None = None

    @property
    def side(self) -> str:
        return "supply" if self.kind == "feeder" else "customer"


@dataclass(frozen=True)
class User:
    name: str
    role: str
    sites: frozenset[str]
    lang: str | None = None
    disabled: bool = False


@dataclass(frozen=True)
class ImportResult:
    sites_added: int
    sites_updated: int
    meters_added: int
    meters_updated: int
    # The CSV's manager column assigns the account to that manager user once, at import;
    # a name with no manager user behind it assigns nothing (and no later user inherits it).
    assignments_added: int = 0
    unknown_managers: tuple[str, ...] = ()


@dataclass(frozen=True)
class Contact:
    id: int
    site_id: str
    name: str
    phone: str | None
    email: str | None
    robot_url: str | None = field(default=None, repr=False)  # holds the robot's token
    robot_secret: str | None = field(default=None, repr=False)
    lang: str = "zh-CN"

    @property
    def channels(self) -> tuple[str, ...]:
        """How this contact can be told: "email", "robot", both or neither (phone only)."""
        return (("email",) if self.email else ()) + (("robot",) if self.robot_url else ())

    @property
    def robot_kind(self) -> str | None:
        return robot_kind(self.robot_url) if self.robot_url else None


@dataclass(frozen=True)
class ContactImport:
    added: int
    updated: int
    unreachable: tuple[str, ...]  # "SITE/NAME" of contacts with neither e-mail nor robot


@dataclass(frozen=True)
class PlannedWindow:
    id: int
    site_id: str
    start_utc: datetime  # naive UTC, like planned_outage
    end_utc: datetime
    note: str
    version: int
    state: str
    sites: tuple[str, ...]  # the sites it covers: the target and, for a feeder, its accounts


@dataclass(frozen=True)
class Notice:
    """One row of the notice log (``pqmon notices list``)."""

    id: int
    window_id: int
    version: int
    site_id: str
    contact_id: int
    contact_name: str
    channel: str
    kind: str
    offset_s: int
    start_ms: int
    end_ms: int
    due_ms: int
    state: str
    attempts: int
    sent_ms: int | None
    last_error: str | None


def open_engine(url: str) -> Engine:
    """An engine on the registry database, its connection checked: RegistryError if unreachable.

    A SQLite file's directory is made; ``postgresql://`` means psycopg 3.
    """
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    url = _with_driver(url)
    engine = create_engine(url)
    if url.startswith("sqlite"):
        event.listen(engine, "connect", _sqlite_pragmas)
    try:
        with engine.connect():
            pass  # pooled: the schema check that follows reuses this connection
    except OperationalError as exc:
        engine.dispose()
        where = make_url(url).render_as_string(hide_password=True)
        raise RegistryError(
            f"cannot open the registry database {where}: {str(exc.orig).strip()}; check"
            " PQMON_REGISTRY_URL (PostgreSQL: postgresql+psycopg://USER:PASSWORD@HOST:5432/DBNAME,"
            " the database created beforehand) and that the server is up"
        ) from None
    return engine


class Registry:
    def __init__(self, url: str) -> None:
        """Open the registry, bringing its schema to head first if it is behind (core.schema).

        At head that costs one query of ``alembic_version``; a new or older database is
        upgraded under the migration lock, as ``pqmon db upgrade`` would.
        """
        self.engine = open_engine(url)
        try:
            schema.ensure_head(self.engine)
        except BaseException:
            self.engine.dispose()
            raise
        self._session = sessionmaker(self.engine, expire_on_commit=False)
        self._sites_cache: dict[str | None, tuple[str, tuple[Site, ...]]] = {}

    def close(self) -> None:
        self.engine.dispose()

    # -- sites and meters -------------------------------------------------------------------
    def sites(self, kind: str | None = None) -> list[Site]:
        """Every site (of ``kind``) with its meters.

        The dashboard asks for every site on every request (10,000 at a provincial fleet), so
        the list is kept until the registry's sites change: every change of sites or meters
        stamps ``registry.sites_version`` in the same transaction, on any process, and one
        small query per call compares the stamp.
        """
        version = self.get_state(SITES_VERSION_KEY) or ""
        cached = self._sites_cache.get(kind)
        if cached is not None and cached[0] == version:
            return list(cached[1])
        found = self._read_sites(kind)
        self._sites_cache[kind] = (version, tuple(found))
        return found

    def _read_sites(self, kind: str | None) -> list[Site]:
        """Plain rows, not ORM objects: five times cheaper for thousands of sites."""
        with self._session() as s:
            q = select(SiteRow.__table__).order_by(SiteRow.id)
            if kind:
                q = q.where(SiteRow.kind == kind)
            rows = s.execute(q).all()
            meters: dict[str, list[Meter]] = {}
            for site_id, meter_id, nominal_v in s.execute(
                select(MeterRow.site_id, MeterRow.meter_id, MeterRow.nominal_v).order_by(MeterRow.meter_id)
            ):
                meters.setdefault(site_id, []).append(Meter(site_id, meter_id, nominal_v))
            return [_site(r, meters.get(r.id, [])) for r in rows]

    def site(self, site_id: str) -> Site:
        with self._session() as s:
            row = s.get(SiteRow, site_id)
            if row is None:
                raise RegistryError(
                    f"site {site_id!r} is not in the registry; add it with 'pqmon registry import'"
                )
            meters = s.scalars(select(MeterRow).where(MeterRow.site_id == site_id)).all()
            return _site(row, [Meter(m.site_id, m.meter_id, m.nominal_v) for m in meters])

    def meter_index(self) -> dict[tuple[str, str], Meter]:
        """(site, meter) -> Meter, for the collector's topic check."""
        with self._session() as s:
            return {
                (m.site_id, m.meter_id): Meter(m.site_id, m.meter_id, m.nominal_v)
                for m in s.scalars(select(MeterRow))
            }

    def import_csv(self, path: str | Path) -> ImportResult:
        """Add or update sites and meters from the registry CSV (docs/cli.md); all or nothing."""
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            missing = [c for c in CSV_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise RegistryError(f"{path}: missing column(s) {', '.join(missing)}")
            rows = [(n, row) for n, row in enumerate(reader, start=2)]
        return self.upsert_rows(rows, source=str(path))

    def upsert_rows(self, rows: Iterable[tuple[int, dict[str, str]]], source: str = "rows") -> ImportResult:
        counts = {"sa": 0, "su": 0, "ma": 0, "mu": 0, "as": 0}
        unknown_managers: set[str] = set()
        with self._session.begin() as s:
            s.merge(WorkerStateRow(key=SITES_VERSION_KEY, value=secrets.token_hex(8)))
            for lineno, raw in rows:
                try:
                    site, meter_id, nominal_v = parse_row(raw)
                except (ValueError, KeyError) as exc:
                    raise RegistryError(f"{source} line {lineno}: {exc}") from None
                existing = s.get(SiteRow, site.id)
                if existing is None:
                    s.add(site)
                    s.flush()
                    counts["sa"] += 1
                else:
                    for col in SITE_FIELDS:
                        setattr(existing, col, getattr(site, col))
                    counts["su"] += 1
                meter = s.scalars(
                    select(MeterRow).where(MeterRow.site_id == site.id, MeterRow.meter_id == meter_id)
                ).first()
                if meter is None:
                    s.add(MeterRow(site_id=site.id, meter_id=meter_id, nominal_v=nominal_v))
                    counts["ma"] += 1
                else:
                    meter.nominal_v = nominal_v
                    counts["mu"] += 1
                if site.manager:
                    assigned = _assign_manager(s, site.manager, site.id)
                    counts["as"] += assigned is True
                    if assigned is None:
                        unknown_managers.add(site.manager)
        return ImportResult(
            counts["sa"],
            counts["su"],
            counts["ma"],
            counts["mu"],
            counts["as"],
            tuple(sorted(unknown_managers)),
        )

    # -- users ------------------------------------------------------------------------------
    def add_user(self, name: str, role: str, password: str, sites: Iterable[str] = ()) -> User:
        if not valid_ident(name):
            raise RegistryError(f"user name {name!r}: use 1-64 of A-Z a-z 0-9 _ . -")
        if role not in ROLES:
            raise RegistryError(f"role {role!r} is not one of {', '.join(ROLES)}")
        _check_password(password)
        site_ids = self._check_assignment(role, sites)
        with self._session.begin() as s:
            row = s.get(UserRow, name)
            pw_hash = generate_password_hash(password)
            if row is None:
                s.add(UserRow(name=name, role=role, password_hash=pw_hash))
            else:
                row.role, row.password_hash = role, pw_hash
            s.flush()
            self._assign(s, name, site_ids)
        return User(name, role, frozenset(site_ids))

    def _check_assignment(self, role: str, sites: Iterable[str]) -> list[str]:
        if role not in ROLES:
            raise RegistryError(f"role {role!r} is not one of {', '.join(ROLES)}")
        site_ids = sorted(set(sites))
        known = {s.id for s in self.sites()}
        unknown = [sid for sid in site_ids if sid not in known]
        if unknown:
            raise RegistryError(f"unknown site(s) {', '.join(unknown)}; import them first")
        if role == "customer" and not site_ids:
            raise RegistryError("a customer must be given their site(s) with --site")
        return site_ids

    @staticmethod
    def _assign(s: Session, name: str, site_ids: list[str]) -> None:
        for old in s.scalars(select(UserSiteRow).where(UserSiteRow.user_name == name)):
            s.delete(old)
        s.flush()
        for sid in site_ids:
            s.add(UserSiteRow(user_name=name, site_id=sid))

    def user(self, name: str) -> User | None:
        """The user, or None if unknown or disabled (a disabled user can do nothing)."""
        with self._session() as s:
            row = s.get(UserRow, name)
            if row is None or row.disabled:
                return None
            sites = s.scalars(select(UserSiteRow.site_id).where(UserSiteRow.user_name == name))
            return User(row.name, row.role, frozenset(sites), row.lang)

    def users(self) -> list[User]:
        """Every user, disabled ones included (for the admin page)."""
        with self._session() as s:
            assigned: dict[str, set[str]] = {}
            for link in s.scalars(select(UserSiteRow)):
                assigned.setdefault(link.user_name, set()).add(link.site_id)
            return [
                User(r.name, r.role, frozenset(assigned.get(r.name, ())), r.lang, bool(r.disabled))
                for r in s.scalars(select(UserRow).order_by(UserRow.name))
            ]

    def authenticate(self, name: str, password: str) -> User | None:
        with self._session() as s:
            row = s.get(UserRow, name)
            if row is None:
                # Same work as a real check, so timing does not reveal which names exist.
                check_password_hash(_dummy_hash(), password)
                return None
            if not check_password_hash(row.password_hash, password) or row.disabled:
                return None
        return self.user(name)

    def set_password(self, name: str, password: str) -> None:
        """Only the hash changes; end the user's sessions too (core.accounts does both)."""
        _check_password(password)
        with self._session.begin() as s:
            row = s.get(UserRow, name)
            if row is None:
                raise RegistryError(f"no user {name!r}")
            row.password_hash = generate_password_hash(password)

    def set_user_lang(self, name: str, lang: str | None) -> None:
        if lang is not None and lang not in LANGS:
            raise RegistryError(f"language {lang!r} is not one of {', '.join(LANGS)}")
        with self._session.begin() as s:
            row = s.get(UserRow, name)
            if row is None:
                raise RegistryError(f"no user {name!r}")
            row.lang = lang

    def set_user_sites(self, name: str, role: str, sites: Iterable[str]) -> User:
        """Change a user's role and site assignments, keeping the password."""
        site_ids = self._check_assignment(role, sites)
        with self._session.begin() as s:
            row = s.get(UserRow, name)
            if row is None:
                raise RegistryError(f"no user {name!r}")
            row.role = role
            self._assign(s, name, site_ids)
        return User(name, role, frozenset(site_ids), row.lang, bool(row.disabled))

    def assign_site(self, user_name: str, site_id: str) -> None:
        with self._session.begin() as s:
            if s.get(UserSiteRow, (user_name, site_id)) is None:
                s.add(UserSiteRow(user_name=user_name, site_id=site_id))

    def visible_site_ids(self, user: User, kind: str | None = "account") -> list[str]:
        """The one authorization rule (README: security): which sites a user may read.

        Managers and customers see what they are assigned, never what a free-text column of
        the registry CSV names: a later user of the same name must not inherit accounts.
        """
        if user.disabled or user.role not in ROLES:
            return []
        q = select(SiteRow.id).order_by(SiteRow.id)
        if kind:
            q = q.where(SiteRow.kind == kind)
        with self._session() as s:
            ids = list(s.scalars(q))
        if user.role in ("admin", "operator"):
            return ids
        return [i for i in ids if i in user.sites]

    # -- planned outages --------------------------------------------------------------------
    def add_planned_outage(
        self, site_id: str, start_utc: datetime, end_utc: datetime, note: str = ""
    ) -> None:
        if end_utc <= start_utc:
            raise RegistryError("a planned outage must end after it starts")
        self.site(site_id)
        with self._session.begin() as s:
            s.add(PlannedOutageRow(site_id=site_id, start_utc=start_utc, end_utc=end_utc, note=note))

    def all_planned_outages(self) -> dict[str, list[tuple[datetime, datetime]]]:
        with self._session() as s:
            found: dict[str, list[tuple[datetime, datetime]]] = {}
            for r in s.scalars(select(PlannedOutageRow)):
                found.setdefault(r.site_id, []).append((r.start_utc, r.end_utc))
            return found

    def planned_outages(self, site_id: str) -> list[tuple[datetime, datetime]]:
        with self._session() as s:
            rows = s.scalars(select(PlannedOutageRow).where(PlannedOutageRow.site_id == site_id)).all()
            return [(r.start_utc, r.end_utc) for r in rows]

    # -- contacts ---------------------------------------------------------------------------
    def import_contacts(self, path: str | Path) -> ContactImport:
        """Add or update contacts (by site and name) from the contacts CSV; all or nothing."""
        parsed = parse_contacts_csv(path, {s.id: s for s in self.sites()})
        with self._session.begin() as s:
            return write_contacts(s, parsed, int(time.time() * 1000))

    def contacts(self, site_id: str | None = None) -> list[Contact]:
        with self._session() as s:
            q = select(ContactRow).order_by(ContactRow.site_id, ContactRow.name)
            if site_id is not None:
                q = q.where(ContactRow.site_id == site_id)
            return [contact_from_row(r) for r in s.scalars(q)]

    # -- planned-outage windows and their notices ---------------------------------------------
    def planned_window(self, window_id: int) -> PlannedWindow:
        with self._session() as s:
            row = s.get(PlannedWindowRow, window_id)
            if row is None:
                raise RegistryError(f"no planned outage {window_id}; 'pqmon planned list' shows them")
            return _window(s, row)

    def planned_windows(self, site_id: str | None = None) -> list[PlannedWindow]:
        """Windows registered with an id, oldest start first; ``site_id`` matches any site covered."""
        with self._session() as s:
            q = select(PlannedWindowRow).order_by(PlannedWindowRow.start_utc, PlannedWindowRow.id)
            if site_id is not None:
                covered = select(PlannedWindowSiteRow.window_id).where(
                    PlannedWindowSiteRow.site_id == site_id
                )
                q = q.where((PlannedWindowRow.site_id == site_id) | PlannedWindowRow.id.in_(covered))
            return [_window(s, r) for r in s.scalars(q)]

    def notices(self, site_id: str | None = None, window_id: int | None = None) -> list[Notice]:
        """The notice log, by due time."""
        with self._session() as s:
            q = (
                select(DueNoticeRow, ContactRow.name)
                .join(ContactRow, ContactRow.id == DueNoticeRow.contact_id, isouter=True)
                .order_by(DueNoticeRow.due_ms, DueNoticeRow.id)
            )
            if site_id is not None:
                q = q.where(DueNoticeRow.site_id == site_id)
            if window_id is not None:
                q = q.where(DueNoticeRow.window_id == window_id)
            return [
                Notice(
                    id=r.id,
                    window_id=r.window_id,
                    version=r.version,
                    site_id=r.site_id,
                    contact_id=r.contact_id,
                    contact_name=name or f"contact {r.contact_id}",
                    channel=r.channel,
                    kind=r.kind,
                    offset_s=r.offset_s,
                    start_ms=r.start_ms,
                    end_ms=r.end_ms,
                    due_ms=r.due_ms,
                    state=r.state,
                    attempts=r.attempts,
                    sent_ms=r.sent_ms,
                    last_error=r.last_error,
                )
                for r, name in s.execute(q).all()
            ]

    # -- dirty days and worker state ------------------------------------------------------
    def mark_window_dirty(
        self, sites: Iterable[str], spans_utc: Iterable[tuple[datetime, datetime]], tz: str
    ) -> None:
        """A planned window added, moved or cancelled turns its outages planned or unplanned:
        every local day it touches, of every site it covers, is computed again."""
        from core.calendar import days_between, local_day

        def day(moment: datetime) -> date:
            return local_day(int(moment.replace(tzinfo=UTC).timestamp() * 1000), tz)

        site_ids = list(sites)
        self.mark_dirty(
            {
                (site, d)
                for start, end in spans_utc
                for site in site_ids
                for d in days_between(day(start), day(end))
            }
        )

    @property
    def shares_work(self) -> bool:
        """True on PostgreSQL: any number of workers share the dirty marks by claiming sites
        (core.claims). SQLite has one worker, which takes every mark in each pass."""
        return self.engine.dialect.name == "postgresql"

    def mark_dirty(self, pairs: Iterable[tuple[str, date]]) -> None:
        """Note that raw data of these (site, local day) pairs changed; the worker recomputes them.

        One transaction per call (the collector calls this once per write pass): on PostgreSQL
        two statements whatever the number of pairs (arrays: 50,000 sites cost one round trip
        each), on SQLite one prepared statement executed for every pair (8x faster than one
        statement with a VALUES row per pair, which SQLAlchemy compiles in Python).
        """
        now_ms = int(time.time() * 1000)
        rows = [{"site_id": s, "day": d, "marked_ms": now_ms} for s, d in sorted(set(pairs))]
        if not rows:
            return
        dialect = self.engine.dialect.name
        with self.engine.begin() as conn:
            if dialect == "postgresql":
                from core.claims import mark_sites_and_days

                mark_sites_and_days(conn, rows, now_ms)
            elif dialect == "sqlite":
                stmt = sqlite_insert(DirtyDayRow)
                conn.execute(
                    stmt.on_conflict_do_update(
                        index_elements=["site_id", "day"], set_={"marked_ms": stmt.excluded.marked_ms}
                    ),
                    rows,
                )
            else:  # any other database: delete, then insert
                for row in rows:
                    conn.execute(
                        delete(DirtyDayRow).where(
                            DirtyDayRow.site_id == row["site_id"], DirtyDayRow.day == row["day"]
                        )
                    )
                conn.execute(insert_into(DirtyDayRow), rows)

    def dirty_days(self) -> dict[str, set[date]]:
        with self._session() as s:
            found: dict[str, set[date]] = {}
            for row in s.scalars(select(DirtyDayRow)):
                found.setdefault(row.site_id, set()).add(row.day)
            return found

    def clear_dirty(self, before_ms: int) -> None:
        """Forget marks made before ``before_ms`` (the pass's start); later ones wait for the next pass."""
        with self._session.begin() as s:
            s.execute(delete(DirtyDayRow).where(DirtyDayRow.marked_ms < before_ms))

    def get_state(self, key: str) -> str | None:
        with self._session() as s:
            row = s.get(WorkerStateRow, key)
            return None if row is None else row.value

    def set_state(self, key: str, value: str) -> None:
        with self._session.begin() as s:
            s.merge(WorkerStateRow(key=key, value=value))


def _with_driver(url: str) -> str:
    """``postgresql://`` and ``postgres://`` mean psycopg 3, the driver pqmon ships with
    (SQLAlchemy would otherwise look for psycopg2, which is not installed)."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    return url


@functools.cache
def _dummy_hash() -> str:
    """Made on first use: hashing is slow on purpose, and most processes never log anyone in."""
    return generate_password_hash("pqmon-timing-equaliser")


def _sqlite_pragmas(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=5000")
    cur.close()


def _site(row: Any, meters: list[Meter]) -> Site:
    """A Site from a SiteRow or a plain row of the site table (same attribute names)."""
    return Site(
        id=row.id,
        kind=row.kind,
        name=row.name,
        voltage_class_kv=row.voltage_class_kv,
        phases=row.phases,
        upper_pct=row.upper_pct,
        lower_pct=row.lower_pct,
        profile=row.profile,
        feeder_id=row.feeder_id,
        manager=row.manager,
        meters=tuple(meters),
        commissioned=row.commissioned,
    )


def _opt_float(raw: str | None, name: str) -> float | None:
    raw = (raw or "").strip()
    if not raw:
        return None
    value = float(raw)
    if value < 0:
        raise ValueError(f"{name} must be a positive number (7 means 7 %), got {raw}")
    return value


def parse_row(raw: dict[str, str]) -> tuple[SiteRow, str, float]:
    from core.limits import validate_limits  # the limit rules live with the analysis

    site_id = raw["site_id"].strip()
    meter_id = raw["meter_id"].strip()
    for what, value in (("site_id", site_id), ("meter_id", meter_id)):
        if not valid_ident(value):
            raise ValueError(f"{what} {value!r}: use 1-64 of A-Z a-z 0-9 _ . -")
    kind = raw["site_kind"].strip()
    if kind not in SITE_KINDS:
        raise ValueError(f"site_kind must be account or feeder, got {kind!r}")
    phases = int(raw["phases"])
    if phases not in (1, 3):
        raise ValueError(f"phases must be 1 or 3, got {phases}")
    kv = float(raw["voltage_class_kv"])
    nominal_v = float(raw["nominal_v"])
    if kv <= 0 or nominal_v <= 0:
        raise ValueError("voltage_class_kv and nominal_v must be positive")
    profile = (raw.get("profile") or "gb").strip() or "gb"
    if profile not in PROFILES:
        raise ValueError(f"profile must be gb or en50160, got {profile!r}")
    upper = _opt_float(raw.get("upper_pct"), "upper_pct")
    lower = _opt_float(raw.get("lower_pct"), "lower_pct")
    validate_limits(kv, phases, upper, lower)
    feeder = (raw.get("feeder_id") or "").strip() or None
    if feeder and not valid_ident(feeder):
        raise ValueError(f"feeder_id {feeder!r}: use 1-64 of A-Z a-z 0-9 _ . -")
    site = SiteRow(
        id=site_id,
        kind=kind,
        name=raw["name"].strip() or site_id,
        voltage_class_kv=kv,
        phases=phases,
        upper_pct=upper,
        lower_pct=lower,
        profile=profile,
        feeder_id=feeder,
        manager=(raw.get("manager") or "").strip() or None,
        commissioned=_opt_date(raw.get("commissioned"), "commissioned"),
    )
    return site, meter_id, nominal_v


def _opt_date(raw: str | None, name: str) -> date | None:
    raw = (raw or "").strip()
    if not raw:
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise ValueError(f"{name} must be a date as YYYY-MM-DD, got {raw!r}") from None


def contact_from_row(row: ContactRow) -> Contact:
    return Contact(
        id=row.id,
        site_id=row.site_id,
        name=row.name,
        phone=row.phone,
        email=row.email,
        robot_url=row.robot_url,
        robot_secret=row.robot_secret,
        lang=row.lang,
    )


def _window(s: Session, row: PlannedWindowRow) -> PlannedWindow:
    sites = s.scalars(
        select(PlannedWindowSiteRow.site_id)
        .where(PlannedWindowSiteRow.window_id == row.id)
        .order_by(PlannedWindowSiteRow.site_id)
    ).all()
    return PlannedWindow(
        row.id, row.site_id, row.start_utc, row.end_utc, row.note, row.version, row.state, tuple(sites)
    )


_EMAIL = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+$"
)
_PHONE = re.compile(r"^\+?[0-9][0-9 ()-]{4,30}$")
_LANG_ALIASES = {"zh-cn": "zh-CN", "zh_cn": "zh-CN", "zh": "zh-CN", "en": "en"}


def robot_kind(url: str) -> str | None:
    """The kind of a robot URL: dingtalk (``access_token=``), wecom (``key=``), or None.

    Judged by the query, not the host, so that an intranet relay or a test receiver works.
    """
    query = dict(parse_qsl(urlsplit(url).query))
    if query.get("access_token"):
        return "dingtalk"
    if query.get("key"):
        return "wecom"
    return None


@dataclass(frozen=True)
class ContactIn:
    """A parsed, checked row of the contacts CSV."""

    site_id: str
    name: str
    phone: str | None
    email: str | None
    robot_url: str | None = field(repr=False)
    robot_secret: str | None = field(repr=False)
    lang: str


def parse_contacts_csv(path: str | Path, sites: dict[str, Site]) -> list[ContactIn]:
    """Every row of a contacts CSV, checked; the first bad row raises naming its line and field."""
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in CONTACT_CSV_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise RegistryError(f"{path}: missing column(s) {', '.join(missing)}")
        found: list[ContactIn] = []
        seen: dict[tuple[str, str], int] = {}
        for lineno, raw in enumerate(reader, start=2):
            try:
                contact = _parse_contact(raw, sites)
            except ValueError as exc:
                raise RegistryError(f"{path} line {lineno}: {exc}") from None
            key = (contact.site_id, contact.name)
            if key in seen:
                raise RegistryError(
                    f"{path} line {lineno}: name: {contact.name!r} of {contact.site_id} is already on line "
                    f"{seen[key]}"
                )
            seen[key] = lineno
            found.append(contact)
    return found


def _parse_contact(raw: dict[str, str | None], sites: dict[str, Site]) -> ContactIn:
    def cell(name: str) -> str:
        return (raw.get(name) or "").strip()

    site_id = cell("site_id")
    site = sites.get(site_id)
    if site is None:
        raise ValueError(f"site_id: {site_id!r} is not in the registry; import it first")
    if site.kind != "account":
        raise ValueError(f"site_id: {site_id} is a {site.kind}; contacts belong to key accounts")
    name = cell("name")
    if not name or len(name) > 100:
        raise ValueError(f"name: must be 1 to 100 characters, got {name!r}")
    phone = cell("phone") or None
    if phone is not None and not _PHONE.match(phone):
        raise ValueError(f"phone: {phone!r} is not a phone number (digits, spaces, +, -, parentheses)")
    email = cell("email") or None
    if email is not None and (len(email) > 254 or not _EMAIL.match(email)):
        raise ValueError(f"email: {email!r} is not an e-mail address like li.ming@example.cn")
    robot_url = cell("robot_url") or None
    robot_secret = cell("robot_secret") or None
    if robot_url is not None:
        parts = urlsplit(robot_url)
        kind = robot_kind(robot_url)
        if (
            parts.scheme not in ("http", "https")
            or not parts.hostname
            or kind is None
            or len(robot_url) > 500
        ):
            raise ValueError(
                "robot_url: must be a DingTalk robot webhook URL (https://oapi.dingtalk.com/robot/send?"
                "access_token=...) or a WeCom one (https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=...)"
            )
        if robot_secret is not None and kind != "dingtalk":
            raise ValueError("robot_secret: only DingTalk robots are signed; leave it empty for WeCom")
    elif robot_secret is not None:
        raise ValueError("robot_secret: given without a robot_url")
    if robot_secret is not None and not robot_secret.startswith("SEC"):
        raise ValueError("robot_secret: must be the robot's signing secret, which starts with SEC")
    lang_raw = cell("lang")
    lang = _LANG_ALIASES.get(lang_raw.lower(), "") if lang_raw else "zh-CN"
    if not lang:
        raise ValueError(f"lang: must be zh-CN or en, got {lang_raw!r}")
    return ContactIn(site_id, name, phone, email, robot_url, robot_secret, lang)


def write_contacts(s: Session, contacts: Iterable[ContactIn], now_ms: int) -> ContactImport:
    """Add or update (by site and name) in the caller's transaction."""
    added = updated = 0
    unreachable = []
    for c in contacts:
        row = s.scalars(
            select(ContactRow).where(ContactRow.site_id == c.site_id, ContactRow.name == c.name)
        ).first()
        if row is None:
            row = ContactRow(site_id=c.site_id, name=c.name)
            s.add(row)
            added += 1
        else:
            updated += 1
        row.phone, row.email, row.robot_url, row.robot_secret = c.phone, c.email, c.robot_url, c.robot_secret
        row.lang, row.updated_ms = c.lang, now_ms
        if not c.email and not c.robot_url:
            unreachable.append(f"{c.site_id}/{c.name}")
    s.flush()
    return ContactImport(added, updated, tuple(unreachable))


def _assign_manager(s: Session, manager: str, site_id: str) -> bool | None:
    """True: newly assigned; False: already was; None: no manager user of that name."""
    row = s.get(UserRow, manager)
    if row is None or row.role != "manager":
        return None
    if s.get(UserSiteRow, (manager, site_id)) is not None:
        return False
    s.add(UserSiteRow(user_name=manager, site_id=site_id))
    s.flush()
    return True


def _check_password(password: str) -> None:
    if len(password) < 8:
        raise RegistryError("the password must have at least 8 characters")
