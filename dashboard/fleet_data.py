"""Reading the fleet's roll-up sums for the overview, and keeping the common periods warm.

The store is asked for sums, not daily rows: one round trip of grouped InfluxQL statements
(``SUM ... GROUP BY site``). On InfluxDB 1.x that still walks every series (about 1.5 s for a
month of a thousand accounts), so the fleet-wide answer is shared by every user of the
process until the worker's next pass (:mod:`dashboard.rollup_cache`), and
:func:`prewarm_forever` rebuilds today's, this month's and last month's right after each pass,
so the first user after a pass does not wait either.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator
from typing import Any

from analysis.worker import LAST_PASS_KEY
from core.calendar import day_range_ms, local_day
from core.lineproto import quote_literal
from core.store import InfluxStore
from dashboard.context import DashboardContext
from dashboard.fleet_view import FleetData, RelSums, VqSums
from dashboard.period_choice import LAST_MONTH, THIS_MONTH, TODAY, choose_period
from dashboard.periods import today

log = logging.getLogger(__name__)

SITE_FILTER_MAX = 64  # up to this many sites are named in the query; more are filtered here


def _site_clause(site_ids: Iterable[str] | None) -> str:
    if site_ids is None:
        return ""
    ids = sorted(set(site_ids))
    if not ids:
        return " AND site = ''"
    return " AND (" + " OR ".join(f"site = {quote_literal(s)}" for s in ids) + ")"


def _series(results: list[dict[str, Any]], index: int) -> Iterator[tuple[str, dict[str, Any]]]:
    """(site, first row as a column dict) of every series of statement ``index``."""
    for result in results:
        if result.get("statement_id", 0) != index:
            continue
        for series in result.get("series", []):
            site = series.get("tags", {}).get("site")
            values = series.get("values") or []
            if site and values:
                yield site, dict(zip(series["columns"], values[0], strict=False))


def _f(row: dict[str, Any], key: str) -> float:
    value = row.get(key)
    return float(value) if isinstance(value, int | float) else 0.0


def _sum_statements(rng: str, where: str) -> list[str]:
    return [
        "SELECT sum(monitored_min) AS monitored, sum(over_min) AS over, sum(under_min) AS under,"
        " max(channels) AS channels"
        f" FROM vq_daily WHERE phase = 'all' AND {rng}{where} GROUP BY site",
        "SELECT sum(outage_s) AS outage_s, sum(outages_sustained) AS sustained,"
        f" sum(outages_short) AS short FROM rel_daily WHERE {rng}{where} GROUP BY site",
    ]


Sums = tuple[dict[str, VqSums], dict[str, RelSums]]


def _parse_sums(results: list[dict[str, Any]], offset: int = 0) -> Sums:
    vq = {
        site: VqSums(
            monitored_min=_f(row, "monitored"),
            over_min=_f(row, "over"),
            under_min=_f(row, "under"),
            channels=_f(row, "channels") or 1.0,
            rows=1,  # InfluxDB answers a series only for a site with rows
        )
        for site, row in _series(results, offset)
    }
    rel = {
        site: RelSums(
            outage_s=_f(row, "outage_s"),
            outages=_f(row, "sustained") + _f(row, "short"),
            rows=1,
        )
        for site, row in _series(results, offset + 1)
    }
    return vq, rel


def read_fleet(
    store: InfluxStore, start_ms: int, end_ms: int, tz: str, site_ids: Iterable[str] | None
) -> FleetData:
    """One round trip: vq and rel sums per site, first data day per site, interruptions.

    ``site_ids`` None: every site in the store (filtered by the caller).
    """
    rng = f"time >= {start_ms}ms AND time < {end_ms}ms"
    where = _site_clause(site_ids)
    statements = [
        *_sum_statements(rng, where),
        f"SELECT first(calendar_min) FROM vq_daily WHERE phase = 'all'{where} GROUP BY site",
        f'SELECT start_ms, duration_s FROM outage WHERE "valid" = true AND {rng}{where} GROUP BY site',
    ]
    results = store.query_raw("; ".join(statements))
    data = FleetData()
    data.vq, data.rel = _parse_sums(results)
    for result in results:
        if result.get("statement_id") == 2:
            for series in result.get("series", []):
                site, values = series.get("tags", {}).get("site"), series.get("values") or []
                if site and values:
                    data.first[site] = local_day(int(values[0][0]), tz)
        if result.get("statement_id") == 3:
            for series in result.get("series", []):
                site = series.get("tags", {}).get("site")
                cols = series["columns"]
                i_start, i_dur = cols.index("start_ms"), cols.index("duration_s")
                for v in series.get("values") or []:
                    if site and v[i_start] is not None and v[i_dur] is not None:
                        data.outages.append((site, int(v[i_start]), float(v[i_dur])))
    return data


def fleet_sums(ctx: DashboardContext, start_ms: int, end_ms: int, tz: str, wanted: set[str]) -> FleetData:
    """A few sites: asked of the store by name. Many: the fleet's sums, shared across users
    until the worker's next pass, then narrowed by the caller."""
    if len(wanted) <= SITE_FILTER_MAX:
        return read_fleet(ctx.store, start_ms, end_ms, tz, wanted)
    shared = shared_sums(ctx, start_ms, end_ms, tz, ctx.registry.get_state(LAST_PASS_KEY) or "")
    # build_view replaces entries of its own copy; the shared sums themselves are never changed.
    return FleetData(dict(shared.vq), dict(shared.rel), dict(shared.first), list(shared.outages))


def shared_sums(ctx: DashboardContext, start_ms: int, end_ms: int, tz: str, version: str) -> FleetData:
    found: FleetData = ctx.rollups.get(
        ("fleet", start_ms, end_ms, tz, version), lambda: read_fleet(ctx.store, start_ms, end_ms, tz, None)
    )
    return found


def prewarm_forever(ctx: DashboardContext, stop: threading.Event, every_s: float = 5.0) -> None:
    """After each worker pass, build the shared sums of the periods users open most."""
    tz, seen = ctx.settings.tz, None
    while not stop.wait(every_s):
        try:
            version = ctx.registry.get_state(LAST_PASS_KEY) or ""
            if version == seen:
                continue
            for choice in (THIS_MONTH, TODAY, LAST_MONTH):
                day_from, day_to = choose_period(choice, None, today(tz))
                start_ms, end_ms = day_range_ms(day_from, day_to, tz)
                shared_sums(ctx, start_ms, end_ms, tz, version)
            seen = version
        except Exception:
            log.exception("pre-building the overview's sums failed; the overview builds them on demand")


def read_from(store: InfluxStore, starts: dict[int, set[str]], end_ms: int) -> dict[int, Sums]:
    """Sums from each given start (a commissioning day inside the period) for the named sites."""
    if not starts:
        return {}
    order = sorted(starts)
    statements: list[str] = []
    for start_ms in order:
        rng = f"time >= {start_ms}ms AND time < {end_ms}ms"
        statements += _sum_statements(rng, _site_clause(starts[start_ms]))
    results = store.query_raw("; ".join(statements))
    return {start_ms: _parse_sums(results, 2 * i) for i, start_ms in enumerate(order)}
