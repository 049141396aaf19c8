"""The supply-quality report of a site (DESIGN §8), assembled from the daily roll-ups.

Month and year figures are sums of days; raw readings are never rescanned here.
"""

from __future__ import annotations

import time
from datetime import date
from typing import Any

import pandas as pd

from analysis.calendar import day_range_ms
from analysis.qualification import vqr_pct
from analysis.reliability import rs1_pct
from core.lineproto import quote_literal
from core.registry import Registry
from core.store import InfluxStore

PHASE_ORDER = ("a", "b", "c", "ab", "bc", "ca")
VQ_SUMS = ("monitored_min", "over_min", "under_min", "outage_min", "missing_min")


def _range_clause(start_ms: int, end_ms: int) -> str:
    return f"time >= {start_ms}ms AND time < {end_ms}ms"


def _sum(df: pd.DataFrame, col: str) -> float:
    return float(df[col].fillna(0).sum()) if col in df else 0.0


def _vq_figures(df: pd.DataFrame, period_min: float) -> dict[str, Any]:
    """Pooled figures from the ``all`` rows of vq_daily over a period of ``period_min`` minutes.

    Days of the period without any row (no data at all yet) count as missing, so coverage
    is always monitored time over the whole period's calendar time.
    """
    monitored, over, under = (_sum(df, c) for c in ("monitored_min", "over_min", "under_min"))
    channels = float(df["channels"].max()) if "channels" in df and len(df) else 1.0
    unseen_min = max(0.0, period_min - _sum(df, "calendar_min"))
    possible = period_min * channels
    return {
        "vqr_pct": vqr_pct(over, under, monitored),
        "monitored_min": int(monitored),
        "over_min": int(over),
        "under_min": int(under),
        "outage_min": int(_sum(df, "outage_min")),
        "missing_min": int(_sum(df, "missing_min") + unseen_min),
        "coverage_pct": (monitored / possible * 100.0) if possible else None,
    }


def site_report(
    store: InfluxStore,
    registry: Registry,
    site_id: str,
    day_from: date,
    day_to: date,
    tz: str,
    now_ms: int | None = None,
) -> dict[str, Any]:
    """The report JSON of DESIGN §8 for whole local days, ``day_to`` inclusive; numbers unrounded."""
    site = registry.site(site_id)
    start_ms, end_ms = day_range_ms(day_from, day_to, tz)
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    where = f"site = {quote_literal(site.id)} AND {_range_clause(start_ms, end_ms)}"
    vq = store.query_frame(f"SELECT * FROM vq_daily WHERE {where}")
    rel = store.query_frame(f"SELECT * FROM rel_daily WHERE {where}")
    outages = store.query_frame(f"SELECT * FROM outage WHERE {where}")

    pooled = vq[vq["phase"] == "all"] if len(vq) else vq
    period_s = max(0, min(end_ms, now_ms) - start_ms) / 1000.0
    report: dict[str, Any] = {
        "site": site.id,
        "name": site.name,
        "from": day_from.isoformat(),
        "to": day_to.isoformat(),
        "tz": tz,
        **_vq_figures(pooled, period_s / 60),
        "phases": {},
    }
    if len(vq):
        for phase in PHASE_ORDER:
            rows = vq[vq["phase"] == phase]
            if rows.empty:
                continue
            sums = {c: int(_sum(rows, c)) for c in VQ_SUMS}
            report["phases"][phase] = {
                "vqr_pct": vqr_pct(sums["over_min"], sums["under_min"], sums["monitored_min"]),
                **sums,
            }

    outage_s = _sum(rel, "outage_s")
    short_s = _sum(rel, "short_s")
    report["rs1_pct"] = rs1_pct(outage_s, period_s)
    report["rs1_excl_short_pct"] = rs1_pct(outage_s - short_s, period_s)
    report["outages"] = {
        "count": len(outages),
        "sustained": int((outages["length"] == "sustained").sum()) if len(outages) else 0,
        "short": int((outages["length"] == "short").sum()) if len(outages) else 0,
        "planned": int((outages["cause"] == "planned").sum()) if len(outages) else 0,
        "unplanned": int((outages["cause"] == "unplanned").sum()) if len(outages) else 0,
        "duration_s": outage_s,
        "open": int(outages["open"].astype(bool).sum()) if len(outages) else 0,
    }
    report["supply_side"] = _supply_side(store, site.feeder_id, start_ms, end_ms, period_s / 60)
    return report


def _supply_side(
    store: InfluxStore, feeder_id: str | None, start_ms: int, end_ms: int, period_min: float
) -> dict[str, Any] | None:
    if not feeder_id:
        return None
    df = store.query_frame(
        f"SELECT * FROM vq_daily WHERE site = {quote_literal(feeder_id)}"
        f" AND phase = 'all' AND {_range_clause(start_ms, end_ms)}"
    )
    if df.empty:
        return None
    figures = _vq_figures(df, period_min)
    return {"feeder": feeder_id, "vqr_pct": figures["vqr_pct"], "coverage_pct": figures["coverage_pct"]}


def fleet_summary(
    store: InfluxStore,
    site_ids: list[str],
    day_from: date,
    day_to: date,
    tz: str,
    now_ms: int | None = None,
) -> pd.DataFrame:
    """One row per given site: vqr_pct, rs1_pct, outages, coverage_pct (NaN without data).

    Two queries for the whole fleet, filtered here, so the page cost does not grow with
    the number of round trips.
    """
    start_ms, end_ms = day_range_ms(day_from, day_to, tz)
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    period_s = max(0, min(end_ms, now_ms) - start_ms) / 1000.0
    rng = _range_clause(start_ms, end_ms)
    vq = store.query_frame(f"SELECT * FROM vq_daily WHERE phase = 'all' AND {rng}")
    rel = store.query_frame(f"SELECT * FROM rel_daily WHERE {rng}")
    rows = []
    for site_id in site_ids:
        site_vq = vq[vq["site"] == site_id] if len(vq) else vq
        site_rel = rel[rel["site"] == site_id] if len(rel) else rel
        figures = _vq_figures(site_vq, period_s / 60) if len(site_vq) else {}
        has_rel = len(site_rel) > 0
        outages = sum(
            _sum(site_rel, c) for c in ("outages_sustained", "outages_short")
        ) if has_rel else float("nan")
        rows.append(
            {
                "site": site_id,
                "vqr_pct": figures.get("vqr_pct"),
                "rs1_pct": rs1_pct(_sum(site_rel, "outage_s"), period_s) if has_rel else None,
                "outages": outages,
                "coverage_pct": figures.get("coverage_pct"),
            }
        )
    df = pd.DataFrame(rows, columns=["site", "vqr_pct", "rs1_pct", "outages", "coverage_pct"])
    return df.astype({"vqr_pct": float, "rs1_pct": float, "outages": float, "coverage_pct": float})
