"""The supply-quality report of a site (DESIGN §8), assembled from the daily roll-ups.

Month and year figures are sums of days; raw readings are never rescanned here.
"""

from __future__ import annotations

import time
from datetime import date
from typing import Any

import pandas as pd

from analysis.calendar import day_range_ms
from analysis.pq_daily import FREQ_LIMIT_HZ, UNBALANCE_LIMIT_PCT, plt_limit, thd_limit_pct
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
        "mean_deviation_pct": _sum(df, "dev_sum_pct") / monitored if monitored else None,
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
                "mean_deviation_pct": (
                    _sum(rows, "dev_sum_pct") / sums["monitored_min"] if sums["monitored_min"] else None
                ),
            }

    outage_s = _sum(rel, "outage_s")
    short_s = _sum(rel, "short_s")
    channels = float(pooled["channels"].max()) if "channels" in pooled and len(pooled) else 1.0
    report["out_min_per_phase"] = _out_per_channel(report, channels)
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
        "longest_s": float(outages["duration_s"].max()) if len(outages) else 0.0,
    }
    report["supply_side"] = _supply_side(store, site.feeder_id, start_ms, end_ms, period_s / 60)
    if report["supply_side"] is not None:
        report["supply_side"]["gap"] = last_mile_gap(report, report["supply_side"])
    report["en50160"] = {"profile": site.profile, "weeks": en50160_weeks(vq, tz)}
    pq = store.query_frame(f"SELECT * FROM pq_daily WHERE {where}")
    report["pq"] = pq_summary(pq, site.voltage_class_kv)
    return report


def _out_per_channel(figures: dict[str, Any], channels: float) -> float:
    return (figures["over_min"] + figures["under_min"]) / channels if channels else 0.0


def last_mile_gap(customer: dict[str, Any], supply: dict[str, Any]) -> dict[str, float | None]:
    """Customer minus supply side: what the last mile costs the account (DESIGN §1)."""

    def diff(key: str) -> float | None:
        a, b = customer.get(key), supply.get(key)
        return None if a is None or b is None else a - b

    return {
        "vqr_pct": diff("vqr_pct"),
        "out_min_per_phase": diff("out_min_per_phase"),
        "mean_deviation_pct": diff("mean_deviation_pct"),
    }


def en50160_weeks(vq: pd.DataFrame, tz: str) -> list[dict[str, Any]]:
    """EN 50160 supply voltage variations per local week (Monday first): the share of valid,
    unflagged 10-minute values within +/-10 % must be at least 95 % on every phase."""
    if vq.empty or "en_n" not in vq:
        return []
    rows = vq[vq["phase"] != "all"].copy()
    local = pd.to_datetime(rows["time"], unit="ms", utc=True).dt.tz_convert(tz)
    rows["week"] = (local.dt.normalize() - pd.to_timedelta(local.dt.weekday, unit="D")).dt.date
    weeks = []
    for week, group in rows.groupby("week"):
        per_phase = {}
        for phase, g in group.groupby("phase"):
            n = float(g["en_n"].fillna(0).sum())
            per_phase[str(phase)] = (float(g["en_within"].fillna(0).sum()) / n * 100.0) if n else None
        shares = [v for v in per_phase.values() if v is not None]
        weeks.append(
            {
                "week_start": week.isoformat(),
                "days": int(group["time"].nunique()),
                "within_pct": per_phase,
                "pass": (min(shares) >= 95.0) if shares else None,
            }
        )
    return weeks


def pq_summary(pq: pd.DataFrame, voltage_class_kv: float) -> dict[str, Any]:
    """Sums and maxima of the daily power-quality roll-up over the period."""

    def share_within(n_key: str, out_key: str) -> float | None:
        n = _sum(pq, n_key)
        return (1 - _sum(pq, out_key) / n) * 100.0 if n else None

    def worst(key: str) -> float | None:
        return float(pq[key].max()) if key in pq and pq[key].notna().any() else None

    events = {
        col: int(_sum(pq, col))
        for col in sorted(pq.columns)
        if col in ("dips", "swells", "interruptions", "itic_prohibited", "itic_no_damage", "semi_f47_outside")
    }
    return {
        "frequency": {
            "n": int(_sum(pq, "f_n")),
            "within_pct": share_within("f_n", "f_out"),
            "max_deviation_hz": worst("f_dev_max"),
            "limit_hz": FREQ_LIMIT_HZ,
        },
        "unbalance": {
            "n": int(_sum(pq, "unb_n")),
            "within_pct": share_within("unb_n", "unb_over"),
            "max_pct": worst("unb_max"),
            "limit_pct": UNBALANCE_LIMIT_PCT,
        },
        "thd": {
            "n": int(_sum(pq, "thd_n")),
            "within_pct": share_within("thd_n", "thd_over"),
            "max_pct": worst("thd_max"),
            "limit_pct": thd_limit_pct(voltage_class_kv),
        },
        "plt": {
            "n": int(_sum(pq, "plt_n")),
            "within_pct": share_within("plt_n", "plt_over"),
            "max": worst("plt_max"),
            "limit": plt_limit(voltage_class_kv),
        },
        "events": events,
        "en50160_dip_swell_cells": {
            col.removeprefix("en_"): int(_sum(pq, col)) for col in sorted(pq.columns) if col.startswith("en_")
        },
    }


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
    channels = float(df["channels"].max()) if "channels" in df else 1.0
    return {
        "feeder": feeder_id,
        "vqr_pct": figures["vqr_pct"],
        "coverage_pct": figures["coverage_pct"],
        "mean_deviation_pct": figures["mean_deviation_pct"],
        "out_min_per_phase": _out_per_channel(figures, channels),
    }


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
        outages = (
            sum(_sum(site_rel, c) for c in ("outages_sustained", "outages_short"))
            if has_rel
            else float("nan")
        )
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
