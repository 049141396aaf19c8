"""The registry: sites (key accounts and feeders), meters, users and planned outages.

SQLAlchemy 2 over a SQLite file by default, PostgreSQL by URL (``PQMON_REGISTRY_URL``).
Callers get frozen dataclasses back, never live ORM rows, so the data can cross threads.
"""

from __future__ import annotations

import csv
import functools
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    BigInteger,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    UniqueConstraint,
    create_engine,
    delete,
    event,
    inspect,
    select,
    text,
)
from sqlalchemy import insert as insert_into
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker
from werkzeug.security import check_password_hash, generate_password_hash

from core.errors import RegistryError
from core.lineproto import valid_ident

log = logging.getLogger(__name__)

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
# Optional columns: absent or empty means the default.
OPTIONAL_CSV_COLUMNS = ("commissioned",)


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


class WorkerStateRow(Base):
    __tablename__ = "worker_state"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(200))


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


@dataclass(frozen=True)
class ImportResult:
    sites_added: int
    sites_updated: int
    meters_added: int
    meters_updated: int


class Registry:
    def __init__(self, url: str) -> None:
        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        self.engine = create_engine(url)
        if url.startswith("sqlite"):
            event.listen(self.engine, "connect", _sqlite_pragmas)
        import analysis.alerts.state  # noqa: F401  (its tables live in this database too)

        Base.metadata.create_all(self.engine)
        _add_missing_columns(self.engine)
        self._session = sessionmaker(self.engine, expire_on_commit=False)

    def close(self) -> None:
        self.engine.dispose()

    # -- sites and meters -------------------------------------------------------------------
    def sites(self, kind: str | None = None) -> list[Site]:
        with self._session() as s:
            q = select(SiteRow).order_by(SiteRow.id)
            if kind:
                q = q.where(SiteRow.kind == kind)
            rows = s.scalars(q).all()
            meters: dict[str, list[Meter]] = {}
            for m in s.scalars(select(MeterRow).order_by(MeterRow.meter_id)):
                meters.setdefault(m.site_id, []).append(Meter(m.site_id, m.meter_id, m.nominal_v))
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
        """Add or update sites and meters from the registry CSV (DESIGN §8); all or nothing."""
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            missing = [c for c in CSV_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise RegistryError(f"{path}: missing column(s) {', '.join(missing)}")
            rows = [(n, row) for n, row in enumerate(reader, start=2)]
        return self.upsert_rows(rows, source=str(path))

    def upsert_rows(self, rows: Iterable[tuple[int, dict[str, str]]], source: str = "rows") -> ImportResult:
        counts = {"sa": 0, "su": 0, "ma": 0, "mu": 0}
        with self._session.begin() as s:
            for lineno, raw in rows:
                try:
                    site, meter_id, nominal_v = _parse_row(raw)
                except (ValueError, KeyError) as exc:
                    raise RegistryError(f"{source} line {lineno}: {exc}") from None
                existing = s.get(SiteRow, site.id)
                if existing is None:
                    s.add(site)
                    s.flush()
                    counts["sa"] += 1
                else:
                    for col in (
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
                    ):
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
        return ImportResult(counts["sa"], counts["su"], counts["ma"], counts["mu"])

    # -- users ------------------------------------------------------------------------------
    def add_user(self, name: str, role: str, password: str, sites: Iterable[str] = ()) -> User:
        if not valid_ident(name):
            raise RegistryError(f"user name {name!r}: use 1-64 of A-Z a-z 0-9 _ . -")
        if role not in ROLES:
            raise RegistryError(f"role {role!r} is not one of {', '.join(ROLES)}")
        if len(password) < 8:
            raise RegistryError("the password must have at least 8 characters")
        site_ids = sorted(set(sites))
        known = {s.id for s in self.sites()}
        unknown = [sid for sid in site_ids if sid not in known]
        if unknown:
            raise RegistryError(f"unknown site(s) {', '.join(unknown)}; import them first")
        if role == "customer" and not site_ids:
            raise RegistryError("a customer must be given their site(s) with --site")
        with self._session.begin() as s:
            row = s.get(UserRow, name)
            pw_hash = generate_password_hash(password)
            if row is None:
                s.add(UserRow(name=name, role=role, password_hash=pw_hash))
            else:
                row.role, row.password_hash = role, pw_hash
            s.flush()
            for old in s.scalars(select(UserSiteRow).where(UserSiteRow.user_name == name)):
                s.delete(old)
            s.flush()
            for sid in site_ids:
                s.add(UserSiteRow(user_name=name, site_id=sid))
        return User(name, role, frozenset(site_ids))

    def user(self, name: str) -> User | None:
        with self._session() as s:
            row = s.get(UserRow, name)
            if row is None:
                return None
            sites = s.scalars(select(UserSiteRow.site_id).where(UserSiteRow.user_name == name))
            return User(row.name, row.role, frozenset(sites))

    def authenticate(self, name: str, password: str) -> User | None:
        with self._session() as s:
            row = s.get(UserRow, name)
            if row is None:
                # Same work as a real check, so timing does not reveal which names exist.
                check_password_hash(_dummy_hash(), password)
                return None
            if not check_password_hash(row.password_hash, password):
                return None
        return self.user(name)

    def visible_site_ids(self, user: User, kind: str | None = "account") -> list[str]:
        """The one authorization rule (DESIGN §6): which sites a user may read."""
        sites = self.sites(kind)
        if user.role in ("admin", "operator"):
            return [s.id for s in sites]
        if user.role == "manager":
            return [s.id for s in sites if s.id in user.sites or s.manager == user.name]
        if user.role == "customer":
            return [s.id for s in sites if s.id in user.sites]
        return []

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

    # -- dirty days and worker state ------------------------------------------------------
    def mark_dirty(self, pairs: Iterable[tuple[str, date]]) -> None:
        """Note that raw data of these (site, local day) pairs changed; the worker recomputes them.

        One Core statement per call: the collector calls this once per write pass.
        """
        now_ms = int(time.time() * 1000)
        rows = [{"site_id": s, "day": d, "marked_ms": now_ms} for s, d in set(pairs)]
        if not rows:
            return
        dialect = self.engine.dialect.name
        with self.engine.begin() as conn:
            if dialect in ("sqlite", "postgresql"):
                insert: Any = {"sqlite": sqlite_insert, "postgresql": pg_insert}[dialect]
                stmt = insert(DirtyDayRow).values(rows)
                conn.execute(
                    stmt.on_conflict_do_update(
                        index_elements=["site_id", "day"], set_={"marked_ms": stmt.excluded.marked_ms}
                    )
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


def _site(row: SiteRow, meters: list[Meter]) -> Site:
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


def _parse_row(raw: dict[str, str]) -> tuple[SiteRow, str, float]:
    from analysis.limits import validate_limits  # the limit rules live with the analysis

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


def _add_missing_columns(engine: Any) -> None:
    """Add the nullable columns a newer pqmon knows to a registry made by an older one.

    Only additive, nullable columns are handled here; anything else needs a real migration.
    """
    inspector = inspect(engine)
    for table in Base.metadata.sorted_tables:
        if not inspector.has_table(table.name):
            continue
        have = {c["name"] for c in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name in have or not column.nullable:
                continue
            kind = column.type.compile(dialect=engine.dialect)
            with engine.begin() as conn:
                conn.execute(text(f'ALTER TABLE {table.name} ADD COLUMN "{column.name}" {kind}'))
            log.info("registry: added column %s.%s", table.name, column.name)
