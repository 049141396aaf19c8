"""What the account and feeder pages read beyond the report: aggregated readings, the buckets
holding readings, and dip and swell events. InfluxDB does the aggregating (GROUP BY time),
so a page never pulls raw months.

A page's callbacks run in parallel and several need the same report or trend; :func:`memo`
computes each once per short while (the callers authorize before asking, so a key is only
ever reached by someone allowed to see it).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date
from typing import Any, TypeVar

import dash_mantine_components as dmc
import pandas as pd
from dash import html

from analysis.report import site_report
from core.calendar import day_range_ms
from core.limits import Limits, validate_limits
from core.lineproto import quote_literal
from core.registry import Meter, Site
from core.store import InfluxStore
from dashboard.charts import (
    LINE_FIELDS,
    PHASE_FIELDS,
    SQRT3,
    STATS,
    Figure,
    bucket_seconds,
    bucket_text,
    duration_text,
    empty_figure,
    envelope_figure,
    local_times,
    outage_spans,
    trend_fields,
)
from dashboard.context import DashboardContext
from dashboard.i18n import _, num, pct
from dashboard.widgets import is_number, message

T = TypeVar("T")
A = TypeVar("A")
B = TypeVar("B")
MEMO_TTL_S = 20.0
MEMO_MAX = 256
PRESENCE_BUCKETS = 10_000  # at most this many buckets when looking for silent stretches
PRESENCE_STEPS_S = (60, 300, 900, 1800, 3600, 10800, 21600, 86400)

_memo: dict[Hashable, tuple[float, Any]] = {}
_locks: dict[Hashable, threading.Lock] = {}
_guard = threading.Lock()
_pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="pqmon-page")


def memo(key: Hashable, compute: Callable[[], T], ttl_s: float = MEMO_TTL_S) -> T:
    """``compute()``, or its result from the last ``ttl_s`` seconds; one computation per key at a time."""
    with _guard:
        lock = _locks.setdefault(key, threading.Lock())
    with lock:
        now = time.monotonic()
        hit = _memo.get(key)
        if hit is not None and hit[0] > now:
            value: T = hit[1]
            return value
        value = compute()
        with _guard:
            if len(_memo) >= MEMO_MAX:
                stale = [k for k, (expires, _v) in _memo.items() if expires <= now]
                for old in stale or list(_memo)[: MEMO_MAX // 2]:
                    _memo.pop(old, None)
                    if old != key:
                        _locks.pop(old, None)
            _memo[key] = (now + ttl_s, value)
        return value


def primary_meter(site: Site) -> Meter | None:
    """The meter a site is judged on: its first by id (README: Definitions)."""
    return sorted(site.meters, key=lambda m: m.meter_id)[0] if site.meters else None


def _where(site_id: str, meter_id: str | None, start_ms: int, end_ms: int) -> str:
    meter = f" AND meter = {quote_literal(meter_id)}" if meter_id else ""
    return f"site = {quote_literal(site_id)}{meter} AND time >= {int(start_ms)}ms AND time < {int(end_ms)}ms"


def query_envelope(
    store: InfluxStore, site_id: str, meter_id: str | None, start_ms: int, end_ms: int, bucket_s: int
) -> pd.DataFrame:
    """Min, mean and max of each phase voltage per bucket (columns time, min_ua, mean_ua, max_ua, ...);
    only buckets holding readings. Line voltages instead when the meter sends no phase voltages."""
    for fields in (PHASE_FIELDS, LINE_FIELDS):
        select = ", ".join(f"{stat}({f}) AS {stat}_{f}" for f in fields for stat in STATS)
        df = store.query_frame(
            f"SELECT {select} FROM reading WHERE {_where(site_id, meter_id, start_ms, end_ms)}"
            f" GROUP BY time({int(bucket_s)}s) fill(none)"
        )
        if len(df):
            return df.sort_values("time").reset_index(drop=True)
    return pd.DataFrame()


def presence_step(span_ms: int) -> int:
    """The bucket for finding silent stretches: the finest keeping the buckets few."""
    for step in PRESENCE_STEPS_S:
        if span_ms / (step * 1000) <= PRESENCE_BUCKETS:
            return step
    return PRESENCE_STEPS_S[-1]


def query_presence(
    store: InfluxStore, site_id: str, meter_id: str | None, start_ms: int, end_ms: int, step_s: int
) -> tuple[list[int], float]:
    """Starts of the buckets holding a reading, and the meter's reporting interval (s, its last)."""
    where = _where(site_id, meter_id, start_ms, end_ms)
    df = store.query_frame(
        f"SELECT count(interval_s) AS n FROM reading WHERE {where} GROUP BY time({int(step_s)}s) fill(none)"
    )
    if df.empty:
        return [], 60.0
    last = store.query_frame(f"SELECT last(interval_s) AS interval_s FROM reading WHERE {where}")
    interval = (
        float(last["interval_s"].iloc[0]) if len(last) and pd.notna(last["interval_s"].iloc[0]) else 60.0
    )
    return sorted(int(t) for t in df["time"]), interval


# -- what the account and feeder pages share -------------------------------------------------
def now_ms() -> int:
    return int(time.time() * 1000)


def report_for(ctx: DashboardContext, site: Site, day_from: date, day_to: date) -> dict[str, Any]:
    """analysis.report.site_report of an authorized site, shared by the page's callbacks."""
    tz = ctx.settings.tz

    def compute() -> dict[str, Any]:
        return site_report(
            ctx.store,
            ctx.registry,
            site.id,
            day_from,
            day_to,
            tz,
            en50160_min_coverage_pct=ctx.settings.en50160_min_coverage_pct,
        )

    return memo(("report", id(ctx.store), site.id, day_from, day_to, tz), compute)


@dataclass(frozen=True)
class Envelope:
    frame: pd.DataFrame
    bucket_s: int
    start_ms: int
    end_ms: int
    meter: Meter | None


def envelope_for(ctx: DashboardContext, site: Site, day_from: date, day_to: date) -> Envelope:
    """The site's trend data over the period, bucketed so the chart stays under MAX_POINTS."""
    tz = ctx.settings.tz
    start_ms, end_ms = day_range_ms(day_from, day_to, tz)
    bucket_s = bucket_seconds(end_ms - start_ms, len(PHASE_FIELDS) * len(STATS))
    meter = primary_meter(site)

    def compute() -> Envelope:
        frame = query_envelope(
            ctx.store, site.id, meter.meter_id if meter else None, start_ms, min(end_ms, now_ms()), bucket_s
        )
        return Envelope(frame, bucket_s, start_ms, end_ms, meter)

    return memo(("envelope", id(ctx.store), site.id, day_from, day_to, tz), compute)


def both(first: Callable[[], A], second: Callable[[], B]) -> tuple[A, B]:
    """Two store reads at once (each waits on InfluxDB, not on Python)."""
    later = _pool.submit(second)
    try:
        return first(), later.result()
    finally:
        later.cancel()


def limits_of(site: Site) -> Limits:
    return validate_limits(site.voltage_class_kv, site.phases, site.upper_pct, site.lower_pct)


def trend_for(site: Site, report: dict[str, Any], env: Envelope, tz: str) -> Figure:
    """The envelope chart with the site's limit band and the report's outages shaded."""
    if env.frame.empty:
        return empty_figure(_("No readings in this period."))
    fields = trend_fields(env.frame)
    band = None
    if env.meter is not None:
        nominal = env.meter.nominal_v * (SQRT3 if fields and fields[0] in LINE_FIELDS else 1.0)
        band = limits_of(site).band(nominal)
    spans = outage_spans(report.get("outage_list") or [], env.start_ms, env.end_ms, now_ms())
    title = _(
        "Meter %(meter)s: minimum, mean and maximum per %(bucket)s",
        meter=env.meter.meter_id if env.meter else "",
        bucket=bucket_text(env.bucket_s),
    )
    return envelope_figure(
        env.frame,
        bucket_s=env.bucket_s,
        tz=tz,
        band=band,
        spans=spans,
        title=title,
        x_range=local_times([env.start_ms, env.end_ms], tz),
    )


def store_failed() -> html.P:
    return message(_("The measurement store is not answering; try again shortly."))


def pct_value(value: object, decimals: int) -> str:
    return pct(value, decimals) if is_number(value) else num(None)


def minutes(value: object) -> str:
    return num(value, 0)


def card(label: str, value: str, detail: str, card_id: str) -> Any:
    """A headline figure (widgets.card sends a null colour, which Mantine refuses to draw)."""
    return dmc.Paper(
        [
            dmc.Text(label, size="xs", c="dimmed", tt="uppercase"),
            dmc.Text(value, fz=26, fw=600, id=card_id),
            dmc.Text(detail, size="xs", c="dimmed"),
        ],
        p="sm",
        withBorder=True,
        radius="md",
        className="card",
    )


def headline(report: dict[str, Any], prefix: str) -> list[Any]:
    """Cards, the per-phase table and (for an account) the supply side beside it; ids ``prefix-*``."""
    outages = report.get("outages") or {}
    cards = [
        card(
            _("Voltage qualification rate"),
            pct_value(report.get("vqr_pct"), 2),
            _(
                "All phases pooled: monitored %(monitored)s min, over %(over)s min, under %(under)s min",
                monitored=minutes(report.get("monitored_min")),
                over=minutes(report.get("over_min")),
                under=minutes(report.get("under_min")),
            ),
            f"{prefix}-vqr",
        ),
        card(
            _("Supply reliability RS-1"),
            pct_value(report.get("rs1_pct"), 3),
            _("all interruptions counted"),
            f"{prefix}-rs1",
        ),
        card(
            _("RS-1 without short interruptions"),
            pct_value(report.get("rs1_excl_short_pct"), 3),
            _("short interruptions left out"),
            f"{prefix}-rs1-excl-short",
        ),
        card(
            _("Outages"),
            num(outages.get("count"), 0),
            _(
                "%(sustained)s sustained, %(short)s short, %(planned)s planned, %(open)s open; "
                "%(duration)s in all",
                sustained=num(outages.get("sustained"), 0),
                short=num(outages.get("short"), 0),
                planned=num(outages.get("planned"), 0),
                open=num(outages.get("open"), 0),
                duration=duration_text(outages.get("duration_s")),
            ),
            f"{prefix}-outages",
        ),
        card(
            _("Data coverage"),
            pct_value(report.get("coverage_pct"), 1),
            _(
                "Supply state known %(event)s of the time; %(missing)s min without readings",
                event=pct_value(report.get("event_coverage_pct"), 1),
                missing=minutes(report.get("missing_min")),
            ),
            f"{prefix}-coverage",
        ),
    ]
    period = report.get("period") or {}
    parts: list[Any] = [
        dmc.SimpleGrid(cards, cols={"base": 1, "sm": 2, "lg": 5}, spacing="sm", className="cards"),
        dmc.Text(
            _(
                "Judged on %(days)s days (%(from)s to %(to)s) of the site's monitored life.",
                days=num(period.get("days"), 0),
                **{"from": period.get("from") or num(None), "to": period.get("to") or num(None)},
            ),
            size="xs",
            c="dimmed",
            mt=4,
        ),
    ]
    phases = report.get("phases") or {}
    if phases:
        parts += [
            html.H3(_("Per phase"), className="section"),
            dmc.Text(
                _(
                    "The headline rate pools the minutes of all phases (out-of-limit minutes of every "
                    "phase over the monitored minutes of every phase); the table gives each phase on its own."
                ),
                size="sm",
                c="dimmed",
            ),
            phase_table(phases, f"{prefix}-phases"),
        ]
    supply = report.get("supply_side")
    if isinstance(supply, dict):
        parts += [html.H3(_("Supply side and last mile"), className="section"), supply_table(report, supply)]
    return parts


def phase_table(phases: dict[str, Any], table_id: str) -> Any:
    head = [
        _("Phase"),
        _("VQR %"),
        _("Monitored min"),
        _("Over min"),
        _("Under min"),
        _("Outage min"),
        _("Missing min"),
    ]
    rows = [
        html.Tr(
            [
                html.Td(name.upper()),
                html.Td(num(p.get("vqr_pct"), 2)),
                html.Td(minutes(p.get("monitored_min"))),
                html.Td(minutes(p.get("over_min"))),
                html.Td(minutes(p.get("under_min"))),
                html.Td(minutes(p.get("outage_min"))),
                html.Td(minutes(p.get("missing_min"))),
            ]
        )
        for name, p in phases.items()
        if isinstance(p, dict)
    ]
    return dmc.Table(
        [html.Thead(html.Tr([html.Th(h) for h in head])), html.Tbody(rows)],
        id=table_id,
        striped=True,
        withTableBorder=True,
        className="phase-table",
    )


def supply_table(report: dict[str, Any], supply: dict[str, Any]) -> Any:
    """The account beside its feeder over the same days, and the gap (analysis.report.last_mile_gap)."""
    gap = supply.get("gap") or {}
    rows = [
        (_("VQR %"), "vqr_pct", 2),
        (_("Out-of-limit minutes per phase"), "out_min_per_phase", 0),
        (_("Mean deviation from nominal %"), "mean_deviation_pct", 2),
    ]
    body = [
        html.Tr(
            [
                html.Td(label),
                html.Td(num(report.get(key), decimals)),
                html.Td(num(supply.get(key), decimals)),
                html.Td(signed(gap.get(key), decimals)),
            ]
        )
        for label, key, decimals in rows
    ]
    head = [
        "",
        _("This account"),
        _("Supply side (feeder %(feeder)s)", feeder=supply.get("feeder", "")),
        _("Last-mile gap"),
    ]
    return html.Div(
        [
            dmc.Table(
                [html.Thead(html.Tr([html.Th(h) for h in head])), html.Tbody(body)],
                id="account-supply",
                striped=True,
                withTableBorder=True,
            ),
            dmc.Text(
                _(
                    "The last-mile gap is the account's figure minus the feeder's over the same days: "
                    "what the line from the feeder to the account costs."
                ),
                size="xs",
                c="dimmed",
            ),
        ]
    )


def signed(value: object, decimals: int) -> str:
    if not is_number(value):
        return num(None)
    text = num(value, decimals)
    return text if float(value) < 0 else "+" + text  # type: ignore[arg-type]
