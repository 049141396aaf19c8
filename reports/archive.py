"""Issued monthly reports: every account's report of a closed month, archived with versions.

A version is what a manager signed and a customer filed, so it never changes: its figures
(the full report JSON) and its PDF are kept as files, and the registry keeps one row per
version with the figures that are compared when late data arrives. When a recomputation
changes a printed figure of a closed month, version n+1 is issued listing what changed, old
and new, and the account's users are told; version n stays downloadable.

The worker's passes mark (site, month) pairs whose roll-ups of a closed month were rewritten
(:func:`mark_stale`); the archiver thread (:class:`Archiver`) issues the previous month's
reports once it is :data:`PQMON_REPORT_DELAY_H` hours over, and re-checks the marked ones.
Rendering runs in a few low-priority processes, so the analysis passes keep their CPU.
"""

from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import BigInteger, Integer, String, Text, UniqueConstraint, delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column, sessionmaker

from core.registry import Base, Registry
from core.settings import Settings
from reports.monthly import month_days, month_of, previous_month, report_number
from reports.texts import N_, fixed, hours_minutes, pct

log = logging.getLogger(__name__)

LEASE_S = 600.0  # an archiver that died leaves the work to another after this long
DONE_KEY = "reports_archived:"  # + month: every account's version 1 exists (or had no data)


class ReportIssueRow(Base):
    """One issued version of one account's report of one month."""

    __tablename__ = "report_issue"
    __table_args__ = (UniqueConstraint("site_id", "month", "version", name="uq_report_issue"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    site_id: Mapped[str] = mapped_column(String(64), index=True)
    month: Mapped[str] = mapped_column(String(7), index=True)  # YYYY-MM
    version: Mapped[int] = mapped_column(Integer)
    report_no: Mapped[str] = mapped_column(String(100))
    issued_ms: Mapped[int] = mapped_column(BigInteger)
    figures: Mapped[str] = mapped_column(Text)  # JSON: the compared figures of this version
    changes: Mapped[str] = mapped_column(Text, default="[]")  # JSON: what changed from the previous
    path: Mapped[str] = mapped_column(String(500))  # the report JSON, beside it its PDFs


class ReportStaleRow(Base):
    """A closed month of a site whose roll-ups were rewritten since its report was last checked."""

    __tablename__ = "report_stale"
    site_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    month: Mapped[str] = mapped_column(String(7), primary_key=True)
    marked_ms: Mapped[int] = mapped_column(BigInteger)


class ReportLeaseRow(Base):
    """Who runs the archive now: one archiver per fleet, whatever the number of workers."""

    __tablename__ = "report_lease"
    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    holder: Mapped[str] = mapped_column(String(64))
    until_ms: Mapped[int] = mapped_column(BigInteger)


@dataclass(frozen=True)
class Issue:
    site_id: str
    month: str
    version: int
    report_no: str
    issued_ms: int
    figures: dict[str, Any]
    changes: list[dict[str, Any]]
    path: Path

    def pdf_path(self, lang: str) -> Path:
        return self.path.with_name(f"v{self.version}.{lang}.pdf")


# -- which figures a new version is about -------------------------------------------------------
TRACKED: tuple[tuple[str, str, Callable[[Any], str]], ...] = (
    ("vqr_pct", N_("Voltage qualification rate"), pct),
    ("out_min_per_phase", N_("Out-of-limit minutes per phase"), lambda v: fixed(v, 1)),
    ("rs1_pct", N_("Supply reliability RS-1"), lambda v: pct(v, 4)),
    ("rs1_excl_short_pct", N_("RS-1 without short interruptions"), lambda v: pct(v, 4)),
    ("outages.count", N_("Outages"), lambda v: fixed(v, 0)),
    ("outages.duration_s", N_("Outage duration (h:mm:ss)"), hours_minutes),
    ("coverage_pct", N_("Reading coverage"), lambda v: pct(v, 2)),
    ("event_coverage_pct", N_("Supply-state coverage"), lambda v: pct(v, 2)),
    ("supply_side.vqr_pct", N_("Supply side (feeder)"), pct),
)


def _dig(report: dict[str, Any], path: str) -> Any:
    value: Any = report
    for key in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def tracked_figures(report: dict[str, Any]) -> dict[str, Any]:
    """The figures a version is compared on: the headline, and each phase's rate and extremes."""
    out = {key: _dig(report, key) for key, _, _ in TRACKED}
    for phase, figures in (report.get("phases") or {}).items():
        for key in ("vqr_pct", "max_v", "min_v", "mean_v"):
            out[f"phases.{phase}.{key}"] = figures.get(key)
    out["outage_list"] = len(report.get("outage_list") or [])
    return out


PHASE_LABELS = {
    "vqr_pct": (N_("Qualification rate"), pct),
    "max_v": (N_("Maximum (V)"), lambda v: fixed(v, 2)),
    "min_v": (N_("Minimum (V)"), lambda v: fixed(v, 2)),
    "mean_v": (N_("Mean (V)"), lambda v: fixed(v, 2)),
}


def changed_figures(old: dict[str, Any], new: dict[str, Any]) -> list[dict[str, Any]]:
    """The figures whose printed value differs: what a reader of the two versions would see.

    Compared as printed (3 decimals of a rate, 4 of RS-1), so float noise issues no version.
    """
    shows: dict[str, tuple[str, Callable[[Any], str]]] = {k: (label, show) for k, label, show in TRACKED}
    shows["outage_list"] = (N_("Outages listed"), lambda v: fixed(v, 0))
    for key in new.keys() | old.keys():
        if key.startswith("phases."):
            _, phase, stat = key.split(".")
            label, show = PHASE_LABELS[stat]
            shows[key] = (f"{label} · {phase.upper()}", show)
    out = []
    for key in sorted(shows, key=lambda k: (k.startswith("phases."), k)):
        label, show = shows[key]
        a, b = show(old.get(key)), show(new.get(key))
        if a != b:
            out.append({"figure": key, "label": label, "old": old.get(key), "new": new.get(key),
                        "old_text": a, "new_text": b})  # fmt: skip
    return out


# -- the archive's storage ----------------------------------------------------------------------
def _issue(row: ReportIssueRow) -> Issue:
    return Issue(
        row.site_id,
        row.month,
        row.version,
        row.report_no,
        row.issued_ms,
        json.loads(row.figures),
        json.loads(row.changes or "[]"),
        Path(row.path),
    )


def issues(
    registry: Registry, site_ids: Iterable[str] | None = None, month: str | None = None
) -> list[Issue]:
    """Issued versions, newest month first, then newest version first."""
    q = select(ReportIssueRow)
    if site_ids is not None:
        q = q.where(ReportIssueRow.site_id.in_(list(site_ids)))
    if month is not None:
        q = q.where(ReportIssueRow.month == month)
    q = q.order_by(ReportIssueRow.month.desc(), ReportIssueRow.site_id, ReportIssueRow.version.desc())
    with sessionmaker(registry.engine)() as s:
        return [_issue(r) for r in s.scalars(q)]


def issue_of(registry: Registry, site_id: str, month: str, version: int | None = None) -> Issue | None:
    """One version, or the latest one."""
    found = [i for i in issues(registry, [site_id], month) if version is None or i.version == version]
    return found[0] if found else None


def mark_stale(registry: Registry, site_id: str, days: Iterable[date], today: date) -> None:
    """Note that roll-ups of closed months were rewritten (the worker calls this after writing).

    Only months before ``today``'s count: the current month has no issued report yet.
    """
    mark_stale_many(registry, [(site_id, days)], today)


def mark_stale_many(registry: Registry, written: Iterable[tuple[str, Iterable[date]]], today: date) -> None:
    """:func:`mark_stale` for many sites in one transaction (a pass writes thousands)."""
    this_month = today.replace(day=1)
    wanted = {(site_id, month_of(d)) for site_id, days in written for d in days if d < this_month}
    if not wanted:
        return
    now = int(time.time() * 1000)
    with sessionmaker(registry.engine).begin() as s:
        for site_id, month in sorted(wanted):
            row = s.get(ReportStaleRow, (site_id, month))
            if row is None:
                s.add(ReportStaleRow(site_id=site_id, month=month, marked_ms=now))
            else:
                row.marked_ms = now


def take_lease(registry: Registry, holder: str, now_ms: int, name: str = "archive") -> bool:
    """True if ``holder`` runs the archive until ``now_ms + LEASE_S`` (renewing its own lease)."""
    until = now_ms + int(LEASE_S * 1000)
    with registry.engine.begin() as conn:
        taken = conn.execute(
            update(ReportLeaseRow)
            .where(ReportLeaseRow.name == name)
            .where((ReportLeaseRow.until_ms < now_ms) | (ReportLeaseRow.holder == holder))
            .values(holder=holder, until_ms=until)
        ).rowcount
    if taken:
        return True
    try:
        with registry.engine.begin() as conn:
            conn.execute(insert(ReportLeaseRow).values(name=name, holder=holder, until_ms=until))
        return True
    except IntegrityError:
        return False  # held by another archiver


# -- issuing one report ---------------------------------------------------------------------------
@dataclass
class IssueContext:
    """The connections one issuing process uses."""

    settings: Settings
    store: Any
    registry: Registry


_context: IssueContext | None = None
_idle: Any = None  # a multiprocessing Event: set while no analysis pass runs (see Archiver.pass_running)
IDLE_WAIT_S = 30.0  # a pass that never ends (a crashed worker) holds the reports up no longer than this


def _open(settings: Settings) -> IssueContext:
    from core.store import InfluxStore

    return IssueContext(settings, InfluxStore.from_settings(settings), Registry(settings.registry_url))


def _init_process(settings: Settings, nice: int, idle: Any) -> None:
    """A rendering process: lower priority than the worker's passes, its own connections."""
    global _context, _idle
    _idle = idle
    if nice:
        try:
            os.nice(nice)
        except OSError:
            pass  # not permitted here: run at the same priority
    _context = _open(settings)


def issue(ctx: IssueContext, site_id: str, month: str, today: date) -> Issue | None:
    """Issue the next version of a site's month if its figures differ from the latest (or none
    exists yet); None when nothing changed, or when the site has no monitored day in the month."""
    from analysis.report import site_report
    from reports.monthly import document
    from reports.pdf import render_to

    settings = ctx.settings
    first, last = month_days(month)
    report = site_report(
        ctx.store,
        ctx.registry,
        site_id,
        first,
        last,
        settings.tz,
        en50160_min_coverage_pct=settings.en50160_min_coverage_pct,
    )
    latest = issue_of(ctx.registry, site_id, month)
    if latest is None and report["period"]["days"] == 0:
        return None  # not monitored in that month: there is nothing to report
    figures = tracked_figures(report)
    changes = changed_figures(latest.figures, figures) if latest else []
    if latest is not None and not changes:
        return None
    version = 1 if latest is None else latest.version + 1
    folder = settings.report_dir / month / site_id
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"v{version}.json"
    issued = datetime.now(settings.zone)
    record = {"report": report, "version": version, "issued": issued.isoformat(), "changes": changes}
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(json.dumps(record, ensure_ascii=False), encoding="utf-8")
    tmp.replace(path)
    doc = document(
        report,
        ctx.registry,
        settings,
        settings.lang,
        today,
        version=version,
        changes=changes,
        issued=issued.date(),
    )
    render_to(doc, path.with_name(f"v{version}.{settings.lang}.pdf"))
    row = ReportIssueRow(
        site_id=site_id,
        month=month,
        version=version,
        report_no=report_number(site_id, first, last),
        issued_ms=int(issued.timestamp() * 1000),
        figures=json.dumps(figures, ensure_ascii=False),
        changes=json.dumps(changes, ensure_ascii=False),
        path=str(path),
    )
    with sessionmaker(ctx.registry.engine, expire_on_commit=False).begin() as s:
        s.add(row)
    made = _issue(row)
    if version > 1:
        tell_users(ctx.registry, made, settings.tz)
    return made


def _issue_in_process(site_id: str, month: str, today_iso: str) -> tuple[str, int | None]:
    assert _context is not None, "the process initializer did not run"
    if _idle is not None:
        # Wait out an analysis pass: InfluxDB, which both use, is not at a lower priority.
        _idle.wait(IDLE_WAIT_S)
    made = issue(_context, site_id, month, date.fromisoformat(today_iso))
    return site_id, None if made is None else made.version


def run_issues(
    settings: Settings,
    work: list[tuple[str, str]],
    today: date,
    *,
    workers: int | None = None,
    nice: int = 10,
    progress: Callable[[int, int], None] | None = None,
    idle: Any = None,
) -> dict[str, int]:
    """Issue (site, month) pairs in ``workers`` low-priority processes; counts of what happened.

    One failing account is logged and counted, never stops the rest. With ``idle`` (an event
    of the spawn context), each account waits until it is set: no report starts during a pass.
    """
    counts = {"issued": 0, "reissued": 0, "unchanged": 0, "failed": 0}
    if not work:
        return counts
    workers = max(1, min(workers or settings.report_workers, len(work)))
    # spawn, not fork: the worker process has threads (and connections) a fork would copy mid-use.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        workers, context, initializer=_init_process, initargs=(settings, nice, idle)
    ) as pool:
        futures = {
            pool.submit(_issue_in_process, site, month, today.isoformat()): site for site, month in work
        }
        for n, future in enumerate(as_completed(futures), 1):
            try:
                _, version = future.result()
            except Exception:
                log.exception("report of %s failed; the next run retries it", futures[future])
                counts["failed"] += 1
            else:
                key = "unchanged" if version is None else "issued" if version == 1 else "reissued"
                counts[key] += 1
            if progress is not None:
                progress(n, len(work))
    return counts


def archive_month(
    settings: Settings,
    registry: Registry,
    month: str,
    today: date,
    *,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    idle: Any = None,
) -> dict[str, int]:
    """Version 1 of every account's report of ``month`` that has none yet; then the month is done."""
    have = {i.site_id for i in issues(registry, month=month)}
    work = [(s.id, month) for s in registry.sites("account") if s.id not in have]
    counts = run_issues(settings, work, today, workers=workers, progress=progress, idle=idle)
    if not counts["failed"]:
        registry.set_state(DONE_KEY + month, str(int(time.time() * 1000)))
    log.info("reports of %s: %s", month, counts)
    return counts


def reissue_stale(
    settings: Settings,
    registry: Registry,
    today: date,
    *,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    idle: Any = None,
) -> dict[str, int]:
    """Check every marked (site, month) of an archived month; a changed one gets a new version."""
    started = int(time.time() * 1000)
    with sessionmaker(registry.engine)() as s:
        marks = [(r.site_id, r.month) for r in s.scalars(select(ReportStaleRow))]
    archived = {i.site_id + "/" + i.month for i in issues(registry, {site for site, _ in marks})}
    work = [(site, month) for site, month in marks if f"{site}/{month}" in archived]
    counts = run_issues(settings, work, today, workers=workers, progress=progress, idle=idle)
    if not counts["failed"]:
        with sessionmaker(registry.engine).begin() as s:  # marks made meanwhile wait for the next run
            s.execute(delete(ReportStaleRow).where(ReportStaleRow.marked_ms < started))
    if work:
        log.info("late data in closed months: %s", counts)
    return counts


def due_month(now: datetime, delay_h: float) -> str | None:
    """The month whose reports are due: the previous one, once ``delay_h`` hours are over."""
    first = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return previous_month(now.date()) if now >= first + timedelta(hours=delay_h) else None


# -- telling people ------------------------------------------------------------------------------
def tell_users(registry: Registry, made: Issue, tz: str) -> int:
    """A notice of the new version to every subscription of a user who may see the account.

    It goes through the alerts' outbox, so it is sent by the same dispatcher, on the channels
    and outside the quiet hours each user chose; its severity does not filter it out.
    """
    from analysis.alerts.state import PENDING, OutboxRow
    from analysis.alerts.subscriptions import PREFIX, quiet_until, subscriptions

    now = int(time.time() * 1000)
    changed = "; ".join(f"{c['figure']}: {c['old_text']} → {c['new_text']}" for c in made.changes)
    title = f"pqmon: report {made.report_no} version {made.version} / 报告第 {made.version} 版"
    body = (
        f"Late data changed the {made.month} report of {made.site_id}; version {made.version} replaces"
        f" version {made.version - 1}, which stays available. Changed: {changed}\n"
        f"迟到数据改变了 {made.site_id} {made.month} 的报告：第 {made.version} 版取代第"
        f" {made.version - 1} 版（旧版仍可下载）。变化：{changed}"
    )
    payload = {"kind": "report_reissued", "site": made.site_id, "month": made.month, "version": made.version,
               "changes": made.changes}  # fmt: skip
    told = 0
    visible: dict[str, set[str]] = {}
    with sessionmaker(registry.engine).begin() as s:
        for sub in subscriptions(registry):
            if sub.user not in visible:
                user = registry.user(sub.user)
                visible[sub.user] = set(registry.visible_site_ids(user)) if user else set()
            if made.site_id not in visible[sub.user] or (sub.sites and made.site_id not in sub.sites):
                continue
            s.add(
                OutboxRow(
                    incident_id=0,
                    kind="report",
                    channel=f"{PREFIX}{sub.id}",
                    severity="minor",
                    site_id=made.site_id,
                    title=title,
                    body=body,
                    payload=json.dumps(payload, ensure_ascii=False),
                    state=PENDING,
                    created_ms=now,
                    due_ms=max(now, quiet_until(sub.quiet, now, tz) or now),
                    attempts=0,
                )
            )
            told += 1
    return told


# -- the worker's archiver thread ---------------------------------------------------------------
class Archiver:
    """Runs beside the analysis loop: issues the due month, then re-checks stale ones.

    It only decides and waits; the rendering is in its process pool at a lower priority, and
    no account is started while a pass runs (:meth:`pass_running`): the reports share
    InfluxDB with the passes, and InfluxDB knows nothing of priorities.
    """

    def __init__(self, settings: Settings, interval_s: float = 60.0) -> None:
        self.settings = settings
        self.interval_s = interval_s
        self.idle = multiprocessing.get_context("spawn").Event()
        self.idle.set()
        self.holder = f"{os.uname().nodename}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._thread: threading.Thread | None = None

    @contextlib.contextmanager
    def pass_running(self) -> Iterator[None]:
        """Around an analysis pass: reports not yet started wait until it is over."""
        self.idle.clear()
        try:
            yield
        finally:
            self.idle.set()

    @property
    def started(self) -> bool:
        return self._thread is not None

    def start(self, stop: threading.Event) -> threading.Thread:
        self._thread = threading.Thread(target=self._loop, args=(stop,), name="report-archiver", daemon=True)
        self._thread.start()
        return self._thread

    def run_once(self, registry: Registry, now: datetime | None = None) -> dict[str, int]:
        now = now or datetime.now(self.settings.zone)
        counts: dict[str, int] = {}
        if not take_lease(registry, self.holder, int(time.time() * 1000)):
            return counts
        month = due_month(now, self.settings.report_delay_h)

        def renew(done: int, total: int) -> None:
            """A long archive keeps its lease, so no other worker starts the same month."""
            take_lease(registry, self.holder, int(time.time() * 1000))

        if month is not None and registry.get_state(DONE_KEY + month) is None:
            counts = archive_month(self.settings, registry, month, now.date(), progress=renew, idle=self.idle)
        late = reissue_stale(self.settings, registry, now.date(), progress=renew, idle=self.idle)
        for key, n in late.items():
            counts[key] = counts.get(key, 0) + n
        return counts

    def _loop(self, stop: threading.Event) -> None:
        registry = Registry(self.settings.registry_url)
        try:
            while not stop.is_set():
                try:
                    self.run_once(registry)
                except Exception:  # the next round retries; roll-ups go on regardless
                    log.exception("report archive failed; retrying in %ss", self.interval_s)
                stop.wait(self.interval_s)
        finally:
            registry.close()
