"""The overview's shared fleet sums: exact until the worker's next pass, rebuilt after it, and
pre-built for the common periods so the first user after a pass does not wait (real InfluxDB)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from analysis.worker import LAST_PASS_KEY
from core.accounts import Accounts
from core.calendar import day_range_ms
from core.lineproto import line
from core.registry import Registry
from core.servers import LocalInflux
from core.settings import load_settings
from core.store import InfluxStore
from dashboard.context import DashboardContext
from dashboard.fleet_data import SITE_FILTER_MAX, fleet_sums, prewarm_forever
from dashboard.period_choice import LAST_MONTH, THIS_MONTH, TODAY, choose_period
from dashboard.periods import today
from dashboard.throttle import LoginThrottle

pytestmark = pytest.mark.integration
TZ = "Asia/Shanghai"


@pytest.fixture
def ctx(tmp_path: Path, influx: LocalInflux) -> DashboardContext:
    settings = load_settings(
        {
            "PQMON_INFLUX_URL": influx.url,
            "PQMON_INFLUX_DB": "fleetdata",
            "PQMON_REGISTRY_URL": f"sqlite:///{tmp_path / 'r.db'}",
            "PQMON_DATA_DIR": str(tmp_path),
            "PQMON_TZ": TZ,
        }
    )
    registry = Registry(settings.registry_url)
    store = InfluxStore.from_settings(settings)
    store.ensure_database()
    return DashboardContext(settings, registry, store, LoginThrottle(), Accounts(registry))


def write_day(store: InfluxStore, site: str, over: int) -> None:
    ts = day_range_ms(today(TZ), today(TZ), TZ)[0]
    store.write(
        [
            line(
                "vq_daily",
                {"site": site, "phase": "all"},
                {
                    "monitored_min": 1000,
                    "over_min": over,
                    "under_min": 0,
                    "calendar_min": 1440,
                    "channels": 1,
                },
                ts,
            )
        ]
    )


def test_shared_sums_last_until_the_next_worker_pass(ctx: DashboardContext) -> None:
    many = {f"S{i:03d}" for i in range(SITE_FILTER_MAX + 1)}
    start, end = day_range_ms(today(TZ), today(TZ), TZ)
    write_day(ctx.store, "S000", over=10)
    ctx.registry.set_state(LAST_PASS_KEY, "1")
    assert fleet_sums(ctx, start, end, TZ, many).vq["S000"].over_min == 10
    write_day(ctx.store, "S000", over=20)  # the worker rewrites the day...
    assert fleet_sums(ctx, start, end, TZ, many).vq["S000"].over_min == 10  # ...not yet seen
    ctx.registry.set_state(LAST_PASS_KEY, "2")  # ...and records its pass
    assert fleet_sums(ctx, start, end, TZ, many).vq["S000"].over_min == 20
    # A few sites are always asked of the store directly.
    write_day(ctx.store, "S000", over=30)
    assert fleet_sums(ctx, start, end, TZ, {"S000"}).vq["S000"].over_min == 30
    copy = fleet_sums(ctx, start, end, TZ, many)
    copy.vq.clear()  # a caller's copy: the shared sums stay whole
    assert fleet_sums(ctx, start, end, TZ, many).vq["S000"].over_min == 20


def test_the_common_periods_are_built_after_each_pass(ctx: DashboardContext) -> None:
    write_day(ctx.store, "S000", over=5)
    ctx.registry.set_state(LAST_PASS_KEY, "7")
    stop = threading.Event()
    thread = threading.Thread(target=prewarm_forever, args=(ctx, stop, 0.05), daemon=True)
    thread.start()
    try:
        # Today, this month and last month (today is this month on the 1st).
        periods = len({choose_period(c, None, today(TZ)) for c in (TODAY, THIS_MONTH, LAST_MONTH)})
        deadline = time.monotonic() + 30
        while ctx.rollups.misses < periods and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ctx.rollups.misses == periods
        day_from, day_to = choose_period(THIS_MONTH, None, today(TZ))
        start, end = day_range_ms(day_from, day_to, TZ)
        hits = ctx.rollups.hits
        many = {f"S{i:03d}" for i in range(SITE_FILTER_MAX + 1)}
        assert fleet_sums(ctx, start, end, TZ, many).vq["S000"].over_min == 5
        assert ctx.rollups.hits == hits + 1 and ctx.rollups.misses == periods  # served warm
    finally:
        stop.set()
        thread.join(5)
