"""Several workers, one fleet, no coordinator (README "Several workers").

On a real PostgreSQL registry and a real InfluxDB, two and then three worker processes
(tests/integration/multi_worker_proc.py: ``run_once`` in a loop, at the scenarios' fixed clock)
work on one fleet of key accounts while its data keeps arriving late and out of order, written
and marked dirty exactly as the collector does (worker_scenarios.Harness.deliver). Midway, a
collector replay marks every site-day dirty at once, and one worker is killed with SIGKILL
while it holds claims. Then:

- every claim the dead worker held is taken by another worker once its lease has run out, and
  soon after (not before: a live lease is never taken);
- no two workers ever computed the same site-day at the same time (each worker logs every
  compute interval: site, days, worker, start and end);
- the work was shared, and no mark is left;
- every roll-up (vq_daily, rel_daily, pq_daily) and derived outage equals what one worker's
  ``--full`` pass computes from scratch, which equals ``rollup_site`` over all the data at once
  (worker_scenarios.check).
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from core.servers import LocalInflux, LocalPostgres, wait_until
from tests.conftest import fresh_database
from tests.integration.worker_scenarios import (
    NOW_MS,
    Account,
    Episode,
    EventOutage,
    Harness,
    Scenario,
    batches,
    check,
    describe,
)

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
LEASE_S = 2.0
PASS_INTERVAL_S = 0.1
# After the lease runs out, a live worker claims the site when it next asks for work: after the
# site it is computing (under a second here) and its current batch (CLAIM_BATCH sites).
TAKEOVER_SLACK_S = 6.0
ARRIVAL_PAUSE_S = 0.15  # between deliveries of late data
INTERVAL = re.compile(
    r"computed site=(?P<site>\S+) days=(?P<first>\S+)\.\.(?P<last>\S+) worker=(?P<worker>\S+)"
    r" start_ms=(?P<start>\d+) end_ms=(?P<end>\d+)"
)


def fleet(n_accounts: int = 16, n_days: int = 4, seed: int = 11) -> Scenario:
    """Key accounts of every kind the property test makes, with closed outages only (an open
    one is recomputed by every pass, so the workers would never fall idle), late data, and a
    batch of arrivals every 4 hours of scenario time."""
    rng = random.Random(seed)
    day_s = 86_400
    accounts = []
    for i in range(n_accounts):
        outages = tuple(
            EventOutage(
                start_s=rng.randrange(0, n_days * day_s - 21 * 3600),
                duration_s=rng.choice([45, 20 * 60, 3 * 3600, 20 * 3600]),
                replay_off=rng.random() < 0.2,
                zero_readings=rng.random() < 0.2,
                off_late=rng.choice([None, None, 2, 3]),
                on_late=rng.choice([None, 2, 3, 4]),
            )
            for _ in range(rng.randint(0, 2))
        )
        episodes = tuple(
            Episode(
                rng.choice(["over", "under", "gap", "dip", "zero"]), rng.randrange(0, n_days * 1440 - 300), m
            )
            for m in (rng.randint(5, 240) for _ in range(rng.randint(0, 3)))
        )
        accounts.append(
            Account(
                f"M{i + 1:02d}",
                phases=rng.choice([3, 1]),
                interval_s=rng.choice([900, 300]),
                first_day=rng.choice([0, 0, 1]),
                episodes=episodes,
                outages=outages,
            )
        )
    return Scenario(
        n_days,
        tuple(accounts),
        late_readings=1,
        late_events=1,
        late=tuple((rng.randrange(1000), rng.randrange(5)) for _ in range(8)),
        pass_min=tuple(range(60, n_days * 1440 + 12 * 60, 240)),
    )


@dataclass(frozen=True)
class Interval:
    site: str
    first: str
    last: str
    worker: str
    start_ms: int
    end_ms: int


def intervals(logs: list[Path]) -> list[Interval]:
    found = []
    for path in logs:
        for m in INTERVAL.finditer(path.read_text(errors="replace")):
            found.append(
                Interval(m["site"], m["first"], m["last"], m["worker"], int(m["start"]), int(m["end"]))
            )
    return found


def overlaps(found: list[Interval]) -> list[str]:
    """Pairs of intervals of one site, by different workers, sharing a day and a moment."""
    out = []
    by_site: dict[str, list[Interval]] = {}
    for i in found:
        by_site.setdefault(i.site, []).append(i)
    for site, items in by_site.items():
        for n, a in enumerate(items):
            for b in items[n + 1 :]:
                same_days = a.first <= b.last and b.first <= a.last
                same_time = a.start_ms < b.end_ms and b.start_ms < a.end_ms
                if a.worker != b.worker and same_days and same_time:
                    out.append(f"{site}: {a} and {b}")
    return out


def start_worker(env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    with open(log_path, "wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "tests.integration.multi_worker_proc", "--now-ms", str(NOW_MS)]
            + ["--interval", str(PASS_INTERVAL_S)],
            env=env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def stop_workers(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(10)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("n_workers", [2, 3])
def test_workers_share_one_fleet_and_a_killed_workers_claims_are_taken_over(
    influx: LocalInflux, postgres: LocalPostgres, tmp_path: Path, n_workers: int
) -> None:
    sc = fleet()
    pg_name, registry_url = fresh_database(postgres, "multi")
    h = Harness(influx.url, tmp_path, sc.accounts, registry_url)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PQMON_")}
    env |= {
        "PQMON_INFLUX_URL": influx.url,
        "PQMON_INFLUX_DB": h.store.db,
        "PQMON_REGISTRY_URL": registry_url,
        "PQMON_DATA_DIR": str(tmp_path / "var"),
        "PQMON_TZ": h.settings.tz,
        "PQMON_LOOKBACK_DAYS": str(h.settings.lookback_days),
        "PQMON_WORKER_CLAIM_LEASE_S": str(LEASE_S),
    }
    logs = [tmp_path / f"worker{n}.log" for n in range(n_workers)]
    procs = [start_worker(env, path) for path in logs]
    db = create_engine(registry_url)
    arrivals = batches(sc)
    half = len(arrivals) // 2
    try:
        wait_until(
            lambda: all("started" in path.read_text(errors="replace") for path in logs),
            60,
            "the workers to start",
        )
        for b in arrivals[:half]:  # late data arrives while the workers run
            h.deliver(b.items, b.at_ms)
            time.sleep(ARRIVAL_PAUSE_S)
        # A collector replay: everything delivered so far again, every site-day dirty at once.
        h.deliver([i for b in arrivals[:half] for i in b.items], arrivals[half - 1].at_ms)

        victim = procs[0]
        pattern = f"%:{victim.pid}:%"

        def victim_holds_claims() -> bool:
            assert victim.poll() is None, logs[0].read_text()[-3000:]
            with db.connect() as conn:
                return bool(
                    conn.execute(
                        text("SELECT count(*) FROM dirty_site WHERE claimed_by LIKE :p"), {"p": pattern}
                    ).scalar()
                )

        wait_until(victim_holds_claims, 60, "the first worker to hold claims", interval_s=0.002)
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
        with db.connect() as conn:
            killed_ms = int(
                conn.execute(
                    text("SELECT CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)")
                ).scalar_one()
            )
            held = {
                r.site_id: int(r.claimed_until_ms)
                for r in conn.execute(
                    text("SELECT site_id, claimed_until_ms FROM dirty_site WHERE claimed_by LIKE :p"),
                    {"p": pattern},
                )
            }
        assert held, "the worker was killed holding claims"
        assert all(until <= killed_ms + LEASE_S * 1000 for until in held.values())

        # More late data keeps arriving while the others take over.
        def deliver_rest() -> None:
            for b in arrivals[half:]:
                h.deliver(b.items, b.at_ms)
                time.sleep(ARRIVAL_PAUSE_S)

        feeder = threading.Thread(target=deliver_rest, name="late data")
        feeder.start()
        taken: dict[str, int] = {}

        def all_taken_over() -> bool:
            with db.connect() as conn:
                now_ms = int(
                    conn.execute(
                        text("SELECT CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)")
                    ).scalar_one()
                )
                rows = {
                    r.site_id: r.claimed_by
                    for r in conn.execute(
                        text("SELECT site_id, claimed_by FROM dirty_site WHERE site_id = ANY(:s)"),
                        {"s": list(held)},
                    )
                }
            for site in held:
                if site not in taken and (site not in rows or (rows[site] or "").find(f":{victim.pid}:") < 0):
                    taken[site] = now_ms  # computed by another worker, or claimed by one
            return len(taken) == len(held)

        wait_until(all_taken_over, LEASE_S + 60, "the dead worker's claims to be taken over", interval_s=0.01)
        feeder.join(120)
        assert not feeder.is_alive()

        def drained() -> bool:
            with db.connect() as conn:
                return not conn.execute(text("SELECT count(*) FROM dirty_site")).scalar()

        wait_until(drained, 120, "the workers to compute every mark")
    finally:
        stop_workers(procs)
        db.dispose()

    try:
        # Taken over after the lease ran out, never before, and soon after.
        for site, at_ms in taken.items():
            late_s = (at_ms - held[site]) / 1000
            assert late_s >= -0.05, f"{site} was taken {-late_s:.2f}s before the dead worker's lease ran out"
            assert late_s <= TAKEOVER_SLACK_S, f"{site} waited {late_s:.1f}s after the lease ran out"

        found = intervals(logs)
        clashes = overlaps(found)
        assert not clashes, "two workers computed one site-day at the same time:\n" + "\n".join(clashes[:20])
        workers = {i.worker for i in found}
        survivors = {i.worker for i in found if i.start_ms > killed_ms}
        assert len(workers) >= 2 and survivors, f"the work was not shared: {workers}"
        assert h.registry.dirty_days() == {}
        per_worker = {w: sum(1 for i in found if i.worker == w) for w in sorted(workers)}
        delays = sorted(round((at - held[s]) / 1000, 2) for s, at in taken.items())
        print(
            f"{n_workers} workers: compute intervals per worker {per_worker}; the killed worker held"
            f" {sorted(held)}; taken over {delays} s after its lease ran out"
        )

        check(h, sc)  # every derived row == one worker's --full pass == rollup_site over all data
    except AssertionError as failure:
        raise AssertionError(f"{failure}\nscenario:\n{describe(sc)}") from None
    finally:
        h.close()
        postgres.drop_database(pg_name)


def test_the_overlap_check_sees_two_workers_on_one_site_day() -> None:
    """The check above is not vacuous: same site, a shared day, a shared moment, two workers."""
    a = Interval("S1", "2026-03-08", "2026-03-09", "w1", 1000, 2000)
    assert overlaps([a, Interval("S1", "2026-03-09", "2026-03-10", "w2", 1500, 2500)])
    assert not overlaps([a, Interval("S1", "2026-03-09", "2026-03-10", "w2", 2000, 2500)])  # after it
    assert not overlaps([a, Interval("S1", "2026-03-10", "2026-03-10", "w2", 1500, 2500)])  # other day
    assert not overlaps([a, Interval("S2", "2026-03-08", "2026-03-09", "w2", 1500, 2500)])  # other site
    assert not overlaps([a, Interval("S1", "2026-03-08", "2026-03-09", "w1", 1500, 2500)])  # same worker


def test_a_pass_that_fails_gives_its_claims_back_at_once(
    influx: LocalInflux, postgres: LocalPostgres, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failing pass (here: the roll-up raises) must not leave its sites to wait for the lease."""
    from analysis import worker
    from core.claims import WorkQueue

    sc = Scenario(2, tuple(Account(f"F{n}", 3, 900) for n in range(3)))
    pg_name, registry_url = fresh_database(postgres, "failing")
    h = Harness(influx.url, tmp_path, sc.accounts, registry_url)
    try:
        for b in batches(sc):
            h.deliver(b.items, b.at_ms)
        h.registry.set_state(worker.LAST_PASS_KEY, str(NOW_MS))  # an incremental pass

        def broken(*_args: object) -> None:
            raise RuntimeError("roll-up failed")

        monkeypatch.setattr(worker.Analyser, "compute", broken)
        with pytest.raises(RuntimeError, match="roll-up failed"):
            h.run(NOW_MS)
        queue = WorkQueue(h.registry, "observer", 60)
        assert queue.pending() == (3, 0)  # every site still queued, none held
        monkeypatch.undo()
        h.run(NOW_MS)
        assert queue.pending() == (0, 0) and h.registry.dirty_days() == {}
    finally:
        h.close()
        postgres.drop_database(pg_name)
