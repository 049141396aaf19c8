"""Which local days a stored reading changes (the worker recomputes exactly those); the marks in
the registry (SQLite and PostgreSQL), and on PostgreSQL the claims by which several workers share
them (core.claims)."""

import threading
import time
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import text

from collector.service import BUCKET_MS, local_days
from core.claims import LeaseKeeper, WorkQueue
from core.registry import Registry
from core.servers import wait_until
from tests.conftest import BOTH_REGISTRIES

TZ = "Asia/Shanghai"


def bucket(local: str) -> int:
    return int(datetime.fromisoformat(local).replace(tzinfo=ZoneInfo(TZ)).timestamp() * 1000) // BUCKET_MS


def test_a_reading_in_the_middle_of_a_day_changes_that_day_only():
    assert local_days({("A1", bucket("2026-03-10T12:00"))}, TZ) == {("A1", date(2026, 3, 10))}


def test_a_reading_in_the_last_hour_also_changes_the_next_day_its_window_reaches_into():
    # A 60-minute value that begins at 23:30 stands for 23:30-00:30.
    assert local_days({("A1", bucket("2026-03-10T23:30"))}, TZ) == {
        ("A1", date(2026, 3, 10)),
        ("A1", date(2026, 3, 11)),
    }
    assert local_days({("A1", bucket("2026-03-10T22:30"))}, TZ) == {("A1", date(2026, 3, 10))}


# -- the marks in the registry, and the claims several workers share them by ---------------------
D1, D2, D3 = date(2026, 3, 8), date(2026, 3, 9), date(2026, 3, 10)
ONLY_POSTGRESQL = pytest.mark.parametrize("registry_url", ["postgresql"], indirect=True)


@pytest.fixture
def registry(registry_url: str) -> Iterator[Registry]:
    reg = Registry(registry_url)
    yield reg
    reg.close()


@BOTH_REGISTRIES
def test_marks_are_kept_until_cleared_and_a_later_mark_survives_the_clear(registry: Registry) -> None:
    registry.mark_dirty({("A1", D1), ("A1", D2), ("A2", D1)})
    registry.mark_dirty({("A1", D1)})  # again: still one mark
    assert registry.dirty_days() == {"A1": {D1, D2}, "A2": {D1}}
    pass_started_ms = int(time.time() * 1000) + 1
    time.sleep(0.01)
    registry.mark_dirty({("A3", D3)})  # made while the pass ran
    registry.clear_dirty(before_ms=pass_started_ms)
    assert registry.dirty_days() == {"A3": {D3}}


@BOTH_REGISTRIES
def test_one_write_pass_of_fifty_thousand_sites_marks_in_one_call(registry: Registry) -> None:
    """More pairs than SQLite binds in one statement, and one round trip per statement on PostgreSQL."""
    pairs = {(f"S{i:05d}", D3) for i in range(50_000)}
    started = time.monotonic()
    registry.mark_dirty(pairs)
    took = time.monotonic() - started
    assert sum(len(days) for days in registry.dirty_days().values()) == 50_000
    assert took < 10, f"marking 50,000 site-days took {took:.1f}s"


def queue(registry: Registry, worker: str, lease_s: float = 60) -> WorkQueue:
    return WorkQueue(registry, worker, lease_s)


def test_claims_need_postgresql(tmp_path: Path) -> None:
    reg = Registry(f"sqlite:///{tmp_path / 'r.db'}")
    try:
        assert not reg.shares_work
        with pytest.raises(ValueError, match="PostgreSQL"):
            queue(reg, "w1")
    finally:
        reg.close()


@ONLY_POSTGRESQL
def test_workers_claim_disjoint_sites_and_finish_them(registry: Registry) -> None:
    registry.mark_dirty({(s, D1) for s in ("A1", "A2", "A3", "A4", "A5")})
    w1, w2 = queue(registry, "w1"), queue(registry, "w2")
    now = w1.now_ms()
    first, second = w1.claim(3, now), w2.claim(3, now)
    assert [c.site_id for c in first] == ["A1", "A2", "A3"] and [c.site_id for c in second] == ["A4", "A5"]
    assert w1.claim(3, now) == [] and w2.claim(3, now) == []  # everything is held
    for q, claims in ((w1, first), (w2, second)):
        for c in claims:
            assert q.finish(c, q.marks(c.site_id))
    assert registry.dirty_days() == {} and w1.pending() == (0, 0)


@ONLY_POSTGRESQL
def test_a_mark_made_while_the_site_is_computed_is_computed_after(registry: Registry) -> None:
    registry.mark_dirty({("A1", D1), ("A1", D2)})
    w1 = queue(registry, "w1")
    (claim,) = w1.claim(5, w1.now_ms())
    marks = w1.marks("A1")
    registry.mark_dirty({("A1", D2), ("A1", D3)})  # new data of a day being computed, and of another
    assert w1.finish(claim, marks)
    assert registry.dirty_days() == {"A1": {D2, D3}}  # D1 was computed; D2 again, D3 first
    assert w1.claim(5, w1.now_ms() - 60_000) == []  # released to the back: after this pass's start
    (again,) = w1.claim(5, w1.now_ms())
    assert [m.day for m in w1.marks("A1")] == [D2, D3]
    assert w1.finish(again, w1.marks("A1")) and registry.dirty_days() == {}


@ONLY_POSTGRESQL
def test_a_dead_workers_claims_go_to_another_after_the_lease(registry: Registry) -> None:
    registry.mark_dirty({("A1", D1), ("A2", D1)})
    dead, alive = queue(registry, "dead", lease_s=0.5), queue(registry, "alive")
    taken = dead.claim(5, dead.now_ms())
    assert len(taken) == 2 and alive.claim(5, alive.now_ms()) == []
    time.sleep(0.6)  # the dead worker renews nothing
    rescued = alive.claim(5, alive.now_ms())
    assert [c.site_id for c in rescued] == ["A1", "A2"]
    # Had the first worker been only slow, its late finish is refused and removes nothing.
    assert not dead.finish(taken[0], dead.marks("A1"))
    assert dead.renew(["A1", "A2"]) == set()
    assert registry.dirty_days() == {"A1": {D1}, "A2": {D1}}
    for c in rescued:
        assert alive.finish(c, alive.marks(c.site_id))
    assert registry.dirty_days() == {}


@ONLY_POSTGRESQL
def test_renewing_keeps_and_releasing_gives_back(registry: Registry) -> None:
    registry.mark_dirty({("A1", D1), ("A2", D1)})
    w1, w2 = queue(registry, "w1", lease_s=0.5), queue(registry, "w2")
    w1.claim(5, w1.now_ms())
    for _ in range(3):
        time.sleep(0.25)
        assert w1.renew(["A1", "A2"]) == {"A1", "A2"}
    assert w2.claim(5, w2.now_ms()) == []
    w1.release(["A2"])
    assert [c.site_id for c in w2.claim(5, w2.now_ms())] == ["A2"]


@ONLY_POSTGRESQL
def test_spans_widen_and_are_dropped_once_computed(registry: Registry) -> None:
    w1 = queue(registry, "w1")
    w1.queue_spans({"A1": (D2, D2)})
    w1.queue_spans({"A1": (D1, D1), "A2": (D3, D3)})
    claims = {c.site_id: c for c in w1.claim(5, w1.now_ms())}
    assert claims["A1"].span == (D1, D2) and claims["A2"].span == (D3, D3)
    w1.queue_spans({"A2": (D1, D1)})  # planned again while A2 is computed: kept for later
    assert w1.finish(claims["A1"], []) and w1.finish(claims["A2"], [])
    (left,) = w1.claim(5, w1.now_ms())
    assert (left.site_id, left.span) == ("A2", (D1, D3))
    assert w1.finish(left, []) and w1.pending() == (0, 0)


@ONLY_POSTGRESQL
def test_concurrent_claimers_never_share_a_site(registry: Registry) -> None:
    registry.mark_dirty({(f"S{i:04d}", D1) for i in range(2000)})
    workers = [queue(registry, f"w{i}") for i in range(8)]
    now = workers[0].now_ms()
    got: dict[str, list[str]] = {q.worker: [] for q in workers}

    def drain(q: WorkQueue) -> None:
        while claims := q.claim(8, now):
            got[q.worker].extend(c.site_id for c in claims)

    threads = [threading.Thread(target=drain, args=(q,)) for q in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    every = [s for sites in got.values() for s in sites]
    assert len(every) == len(set(every)) == 2000
    assert sum(1 for sites in got.values() if sites) > 1  # shared, not taken by one


@ONLY_POSTGRESQL
def test_marks_made_before_the_queue_existed_are_adopted(registry: Registry) -> None:
    registry.mark_dirty({("A1", D1)})
    with registry.engine.begin() as conn:
        conn.execute(text("DELETE FROM dirty_site"))
        conn.execute(text("UPDATE dirty_day SET token = NULL"))
    w1 = queue(registry, "w1")
    assert w1.claim(5, w1.now_ms()) == []
    assert w1.adopt_unqueued_marks() == 1
    (claim,) = w1.claim(5, w1.now_ms())
    assert w1.finish(claim, w1.marks("A1")) and registry.dirty_days() == {}


@ONLY_POSTGRESQL
def test_a_long_computation_keeps_its_claims_and_a_stopped_keeper_lets_them_run_out(
    registry: Registry,
) -> None:
    """A site computed for longer than the lease stays this worker's while its keeper runs (no
    other worker can take it half-way); once the keeper stops (the worker died), the lease runs
    out and another worker takes it."""
    registry.mark_dirty({("A1", D1), ("A2", D1)})
    slow, other = queue(registry, "slow", lease_s=0.4), queue(registry, "other")
    taken = slow.claim(5, slow.now_ms())
    with LeaseKeeper(slow) as keeper:
        keeper.hold([c.site_id for c in taken])
        deadline = time.monotonic() + 1.6  # four leases long
        while time.monotonic() < deadline:
            assert other.claim(5, other.now_ms()) == []
            time.sleep(0.05)
        assert keeper.renewals >= 4
        keeper.drop("A2")  # A2 done (or given up): no longer renewed
        wait_until(lambda: [c.site_id for c in other.claim(5, other.now_ms())] == ["A2"], 3, "A2 freed")
        assert other.claim(5, other.now_ms()) == []  # A1 still held
    wait_until(lambda: [c.site_id for c in other.claim(5, other.now_ms())] == ["A1"], 3, "A1 freed")
    assert slow.finish(taken[0], slow.marks("A1")) is False  # the late finish is refused
