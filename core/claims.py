"""Several analysis workers, one fleet, no coordinator: sites claimed with a lease (PostgreSQL).

The collector marks (site, local day) pairs dirty (``dirty_day``); on PostgreSQL each mark also
queues its site (``dirty_site``). A worker claims a batch of queued sites with ``SELECT ... FOR
UPDATE SKIP LOCKED`` (claimers never wait for each other, and no site goes to two of them),
stamping each with its id and a lease (``claimed_until_ms``, on the database's clock, so the
workers' clocks do not matter). It computes one site at a time, renewing the lease of those it
still holds after each, and finishes a site in one transaction:

- it deletes exactly the day marks it read (each carries a random ``token``, new with every
  mark), so a mark made again while the site was computed survives;
- it deletes the site's queue row only if the row's ``gen`` (raised by every mark and span) is
  what it was at the claim; otherwise it releases the row, to the back of the queue, and the
  site is computed again with what came in.

A worker killed with ``kill -9`` finishes nothing: its marks stay, and when its lease runs out
(``PQMON_WORKER_CLAIM_LEASE_S``) another worker claims the sites. A worker that is merely slow
past its lease loses its sites the same way, and its late finish is refused (it consumed
nothing), so the lease must be well above the longest single site's computation.

The claim is per site, not per (site, day): a recomputation grows its window over the site's
outages, found now or stored before, so two workers computing different days of one site could
write overlapping days and withdraw each other's outages. One worker per site at a time makes
a site's result that of one worker, as if there were only one.

Besides the marks, the fleet-wide part of a pass (the first, full pass; days that ended since
the previous plan; sites with open outages) is planned by one worker at a time under an advisory
lock and queued as a span of days on each site's row; the claims then share it out too.

All of this is PostgreSQL only. On SQLite there is one worker, which takes every mark in each
pass as before (``Registry.dirty_days`` and ``Registry.clear_dirty``).
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import text

from core.registry import Registry

log = logging.getLogger(__name__)

# The database's clock in epoch milliseconds: leases and queue order never depend on a worker's clock.
DB_NOW_MS = "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)"
SAME_SPAN = "span_token IS NOT DISTINCT FROM :st"
PLANNING_LOCK = 0x70716D6F6E504C  # pg_advisory_lock key of the fleet's planning ("pqmonPL")


def worker_id() -> str:
    """host:pid:random, unique among live and dead workers (a pid can be reused after a crash)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


def new_token() -> int:
    return secrets.randbits(63)  # a signed BIGINT holds it


@dataclass(frozen=True)
class Claim:
    """A site this worker holds: its queue generation and span of days at the claim."""

    site_id: str
    gen: int
    span: tuple[date, date] | None
    span_token: int | None


@dataclass(frozen=True)
class Mark:
    day: date
    token: int | None  # None: a mark made before tokens existed


def mark_sites_and_days(conn: Any, rows: Sequence[dict[str, Any]], now_ms: int) -> None:
    """Queue the sites, then upsert the day marks, in the caller's transaction (PostgreSQL).

    Sites first and in order, as a worker finishing a site locks its queue row before its day
    marks: both lock in the same order, so they never deadlock. ``rows`` is sorted by site, day.
    """
    sites = sorted({r["site_id"] for r in rows})
    conn.execute(
        text(
            "INSERT INTO dirty_site (site_id, gen, queued_ms)"
            f" SELECT s, 1, {DB_NOW_MS} FROM unnest(CAST(:sites AS varchar[])) AS u(s) ORDER BY s"
            " ON CONFLICT (site_id) DO UPDATE SET gen = dirty_site.gen + 1"
        ),
        {"sites": sites},
    )
    conn.execute(
        text(
            "INSERT INTO dirty_day (site_id, day, marked_ms, token)"
            " SELECT s, d, :now_ms, :token"
            " FROM unnest(CAST(:sites AS varchar[]), CAST(:days AS date[])) AS u(s, d) ORDER BY s, d"
            " ON CONFLICT (site_id, day) DO UPDATE"
            " SET marked_ms = excluded.marked_ms, token = excluded.token"
        ),
        {
            "sites": [r["site_id"] for r in rows],
            "days": [r["day"] for r in rows],
            "now_ms": now_ms,
            "token": new_token(),
        },
    )


class WorkQueue:
    """The claims of one worker process on the registry's PostgreSQL database."""

    def __init__(self, registry: Registry, worker: str, lease_s: float) -> None:
        if not registry.shares_work:
            raise ValueError("claims need the registry on PostgreSQL; SQLite has a single worker")
        self.engine = registry.engine
        self.worker = worker
        self.lease_ms = int(lease_s * 1000)

    def now_ms(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(text(f"SELECT {DB_NOW_MS}")).scalar_one())

    @contextmanager
    def planning(self, wait: bool) -> Iterator[bool]:
        """The fleet's planning lock, held while the body runs: True if this worker has it.

        ``wait=False`` (a regular pass): another worker planning now plans for everyone, so
        skip. ``wait=True`` (``--full``): wait for it. A session-level advisory lock, released
        at the end, or by the server when a killed worker's connection goes.
        """
        with self.engine.connect() as conn:
            if wait:
                conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": PLANNING_LOCK})
                got = True
            else:
                got = bool(
                    conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": PLANNING_LOCK}).scalar()
                )
            conn.commit()
            try:
                yield got
            finally:
                if got:
                    conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": PLANNING_LOCK})
                    conn.commit()

    def queue_spans(self, spans: dict[str, tuple[date, date]]) -> None:
        """Queue each site with a span of days to recompute whole, widened to hold one already queued."""
        if not spans:
            return
        sites = sorted(spans)
        with self.engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO dirty_site (site_id, gen, queued_ms, span_from, span_to, span_token)"
                    f" SELECT s, 1, {DB_NOW_MS}, f, t, :token FROM unnest("
                    " CAST(:sites AS varchar[]), CAST(:froms AS date[]), CAST(:tos AS date[])) AS u(s, f, t)"
                    " ORDER BY s"
                    " ON CONFLICT (site_id) DO UPDATE SET gen = dirty_site.gen + 1,"
                    # LEAST and GREATEST skip NULLs: no span yet takes the new one as it is.
                    " span_from = LEAST(dirty_site.span_from, excluded.span_from),"
                    " span_to = GREATEST(dirty_site.span_to, excluded.span_to),"
                    " span_token = excluded.span_token"
                ),
                {
                    "sites": sites,
                    "froms": [spans[s][0] for s in sites],
                    "tos": [spans[s][1] for s in sites],
                    "token": new_token(),
                },
            )

    def adopt_unqueued_marks(self) -> int:
        """Queue sites whose day marks have no queue row (made before this version): none is left behind."""
        with self.engine.begin() as conn:
            done = conn.execute(
                text(
                    "INSERT INTO dirty_site (site_id, gen, queued_ms)"
                    f" SELECT DISTINCT d.site_id, 1, {DB_NOW_MS} FROM dirty_day d"
                    " WHERE NOT EXISTS (SELECT 1 FROM dirty_site q WHERE q.site_id = d.site_id)"
                    " ORDER BY d.site_id ON CONFLICT (site_id) DO NOTHING"
                )
            )
            return int(done.rowcount or 0)

    def claim(self, n: int, queued_before_ms: int) -> list[Claim]:
        """Up to ``n`` queued sites nobody holds (or whose holder's lease ran out), oldest first.

        ``queued_before_ms`` bounds a pass: a site queued (or released) after it began waits
        for the next pass, so a site marked again and again cannot keep a pass going.
        """
        with self.engine.begin() as conn:
            rows = conn.execute(
                text(
                    "WITH picked AS (SELECT site_id FROM dirty_site"
                    f" WHERE (claimed_until_ms IS NULL OR claimed_until_ms < {DB_NOW_MS})"
                    " AND queued_ms <= :before ORDER BY queued_ms, site_id LIMIT :n FOR UPDATE SKIP LOCKED)"
                    f" UPDATE dirty_site q SET claimed_by = :me, claimed_until_ms = {DB_NOW_MS} + :lease"
                    " FROM picked WHERE q.site_id = picked.site_id"
                    " RETURNING q.site_id, q.gen, q.span_from, q.span_to, q.span_token"
                ),
                {"before": queued_before_ms, "n": n, "me": self.worker, "lease": self.lease_ms},
            ).all()
        claims = [
            Claim(r.site_id, r.gen, (r.span_from, r.span_to) if r.span_from else None, r.span_token)
            for r in rows
        ]
        return sorted(claims, key=lambda c: c.site_id)

    def marks(self, site_id: str) -> list[Mark]:
        """The site's day marks now: read after the claim, and only these are removed at the finish."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                text("SELECT day, token FROM dirty_day WHERE site_id = :s ORDER BY day"), {"s": site_id}
            ).all()
        return [Mark(r.day, r.token) for r in rows]

    def renew(self, site_ids: Sequence[str]) -> set[str]:
        """Extend the lease of the sites still held; returns those that are still this worker's."""
        if not site_ids:
            return set()
        with self.engine.begin() as conn:
            rows = conn.execute(
                text(
                    "WITH mine AS (SELECT site_id FROM dirty_site WHERE claimed_by = :me"
                    " AND site_id = ANY(CAST(:sites AS varchar[])) ORDER BY site_id FOR UPDATE)"
                    f" UPDATE dirty_site q SET claimed_until_ms = {DB_NOW_MS} + :lease"
                    " FROM mine WHERE q.site_id = mine.site_id RETURNING q.site_id"
                ),
                {"me": self.worker, "sites": list(site_ids), "lease": self.lease_ms},
            ).all()
        return {r.site_id for r in rows}

    def release(self, site_ids: Sequence[str]) -> None:
        """Give back sites not computed (a pass stopped or failed): others may claim them at once."""
        if not site_ids:
            return
        with self.engine.begin() as conn:
            conn.execute(
                text(
                    "WITH mine AS (SELECT site_id FROM dirty_site WHERE claimed_by = :me"
                    " AND site_id = ANY(CAST(:sites AS varchar[])) ORDER BY site_id FOR UPDATE)"
                    " UPDATE dirty_site q SET claimed_by = NULL, claimed_until_ms = NULL"
                    " FROM mine WHERE q.site_id = mine.site_id"
                ),
                {"me": self.worker, "sites": list(site_ids)},
            )

    def finish(self, claim: Claim, marks: Sequence[Mark]) -> bool:
        """The site is computed: remove what was computed, keep what came in meanwhile.

        False (nothing removed) if the site is no longer this worker's: its lease ran out and
        another worker claimed it, which computes it again.
        """
        with self.engine.begin() as conn:
            row = conn.execute(
                text("SELECT gen, claimed_by FROM dirty_site WHERE site_id = :s FOR UPDATE"),
                {"s": claim.site_id},
            ).first()
            if row is None or row.claimed_by != self.worker:
                return False
            if marks:
                conn.execute(
                    text(
                        "DELETE FROM dirty_day d"
                        " USING unnest(CAST(:days AS date[]), CAST(:tokens AS bigint[])) AS u(day, token)"
                        " WHERE d.site_id = :s AND d.day = u.day AND d.token IS NOT DISTINCT FROM u.token"
                    ),
                    {"s": claim.site_id, "days": [m.day for m in marks], "tokens": [m.token for m in marks]},
                )
            if row.gen == claim.gen:
                conn.execute(text("DELETE FROM dirty_site WHERE site_id = :s"), {"s": claim.site_id})
            else:  # marked or re-planned meanwhile: computed again, after the sites queued before it
                conn.execute(
                    text(
                        "UPDATE dirty_site SET claimed_by = NULL, claimed_until_ms = NULL,"
                        f" queued_ms = {DB_NOW_MS},"
                        # The span computed is dropped, unless a new one was queued meanwhile.
                        f" span_from = CASE WHEN {SAME_SPAN} THEN NULL ELSE span_from END,"
                        f" span_to = CASE WHEN {SAME_SPAN} THEN NULL ELSE span_to END,"
                        f" span_token = CASE WHEN {SAME_SPAN} THEN NULL ELSE span_token END"
                        " WHERE site_id = :s"
                    ),
                    {"s": claim.site_id, "st": claim.span_token},
                )
        return True

    def pending(self) -> tuple[int, int]:
        """(queued sites, of which claimed now): for logs and tests."""
        with self.engine.connect() as conn:
            row = conn.execute(
                text(
                    "SELECT count(*) AS n,"
                    f" count(*) FILTER (WHERE claimed_until_ms >= {DB_NOW_MS}) AS held FROM dirty_site"
                )
            ).one()
        return int(row.n), int(row.held)


class LeaseKeeper:
    """Renews this worker's claims from a thread while it computes them.

    A site that takes longer than the lease (a long window, a slow InfluxDB) would otherwise be
    claimed by another worker half-way and computed twice at once. The thread renews every
    third of the lease; a worker killed with its claims takes the thread with it, so those
    claims still run out and go to the others. A claim found lost (renewed by nobody in time,
    taken by another) is dropped here; the worker's finish is then refused, as before.
    """

    def __init__(self, queue: WorkQueue, every_s: float | None = None) -> None:
        self.queue = queue
        self.every_s = every_s if every_s is not None else max(0.05, queue.lease_ms / 3000.0)
        self._held: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pqmon-lease-keeper", daemon=True)
        self.renewals = 0

    def hold(self, site_ids: Sequence[str]) -> None:
        with self._lock:
            self._held.update(site_ids)

    def drop(self, site_id: str) -> None:
        with self._lock:
            self._held.discard(site_id)

    def start(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def __enter__(self) -> LeaseKeeper:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            with self._lock:
                held = sorted(self._held)
            if not held:
                continue
            try:
                kept = self.queue.renew(held)
            except Exception:  # a lost connection: the next round tries again, the lease has slack
                log.warning("claims: renewing %d claimed sites failed; retrying", len(held), exc_info=True)
                continue
            self.renewals += 1
            lost = set(held) - kept
            if lost:
                with self._lock:
                    self._held -= lost
