"""The supply-quality report of a site (docs/cli.md), assembled from the daily roll-ups.

Month and year figures are sums of days; raw readings are never rescanned here.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd

from analysis.curves import itic_regions, semi_f47_regions
from analysis.dips import query_dips
from analysis.period import (
    MonitoredPeriod,
    commissioning,
    first_data_days,
    monitored_period,
    rows_in,
    site_periods,
)
from analysis.pq_daily import FREQ_LIMIT_HZ, UNBALANCE_LIMIT_PCT, plt_limit, thd_limit_pct
from analysis.qualification import vqr_pct
from analysis.reliability import rs1_pct
from analysis.rollup import LINE_FIELDS, PHASE_NAMES
from core.calendar import day_range_ms, days_between
from core.lineproto import quote_literal
from core.registry import Registry, Site
from core.store import InfluxStore

EN50160_MIN_COVERAGE_PCT = 80.0  # default of PQMON_EN50160_MIN_COVERAGE_PCT
MAX_OUTAGE_DAYS = 30  # an outage that began this long before the period can still reach into it
PHASE_ORDER = ("a", "b", "c", "ab", "bc", "ca")
VQ_SUMS = ("monitored_min", "over_min", "under_min", "outage_min", "missing_min")


def _range_clause(start_ms: int, end_ms: int) -> str:
    return f"time >= {start_ms}ms AND time < {end_ms}ms"


def _sum(df: pd.DataFrame, col: str) -> float:
    return float(df[col].fillna(0).sum()) if col in df else 0.0


def _vq_figures(df: pd.DataFrame, period_min: float) -> dict[str, Any]:
    """Pooled figures from the ``all`` rows of vq_daily over a period of ``period_min`` minutes.

    Minutes of the period without any row (no roll-up yet) count as missing, so coverage
    is always monitored time over the whole period's calendar time; without any monitored
    time the rates are null, never 100 %.
    """
    monitored, over, under = (_sum(df, c) for c in ("monitored_min", "over_min", "under_min"))
    channels = float(df["channels"].max()) if "channels" in df and len(df) else 1.0
    unseen_min = _unseen_min(df, period_min)
    possible = period_min * channels
    missing = _sum(df, "missing_min") + unseen_min
    return {
        "vqr_pct": vqr_pct(over, under, monitored),
        "monitored_min": int(monitored),
        "over_min": int(over),
        "under_min": int(under),
        "outage_min": int(_sum(df, "outage_min")),
        "missing_min": int(missing),
        "coverage_pct": (monitored / possible * 100.0) if possible else None,
        # The share of the period whose supply state (on or off) is known: from readings,
        # or from outage records (events or readings) covering minutes without readings.
        "event_coverage_pct": ((period_min - missing) / period_min * 100.0) if period_min else None,
        "mean_deviation_pct": _sum(df, "dev_sum_pct") / monitored if monitored else None,
    }


def _unseen_min(df: pd.DataFrame, period_min: float) -> float:
    """Minutes of the period that no roll-up row accounts for (days not computed yet)."""
    return max(0.0, period_min - _sum(df, "calendar_min"))


def outage_list(outages: pd.DataFrame, period: MonitoredPeriod, tz: str) -> list[dict[str, Any]]:
    """Every outage that touches the period, oldest first, with how its ends were known.

    ``continued`` marks one that began before the period: its time inside the period is in
    the figures, but it is counted in the period it began.
    """
    if outages.empty or period.first_day is None:
        return []
    zone = ZoneInfo(tz)
    out = []
    for row in outages.sort_values("start_ms").to_dict("records"):
        start, end = int(row["start_ms"]), int(row["end_ms"])
        is_open = bool(row.get("open"))
        if end <= period.start_ms and not is_open or start >= period.end_ms:
            continue
        source = str(row.get("source") or "event")
        start_source = row.get("start_source")
        end_source = row.get("end_source")
        out.append(
            {
                "start": datetime.fromtimestamp(start / 1000, zone).isoformat(),
                "end": None if is_open else datetime.fromtimestamp(end / 1000, zone).isoformat(),
                "duration_s": float(row["duration_s"]),
                "cause": str(row.get("cause") or "unknown"),
                "length": str(row.get("length") or ""),
                "open": is_open,
                # Points stored before pqmon recorded the sources were all known the old way.
                "start_source": str(start_source)
                if isinstance(start_source, str)
                else ("event" if source == "event" else "readings"),
                "end_source": None
                if is_open
                else (
                    str(end_source)
                    if isinstance(end_source, str)
                    else "event"
                    if source == "event"
                    else "readings"
                ),
                "continued": start < period.start_ms,
            }
        )
    return out


def site_report(
    store: InfluxStore,
    registry: Registry,
    site_id: str,
    day_from: date,
    day_to: date,
    tz: str,
    now_ms: int | None = None,
    *,
    en50160_min_coverage_pct: float = EN50160_MIN_COVERAGE_PCT,
) -> dict[str, Any]:
    """The report JSON of docs/cli.md for whole local days, ``day_to`` inclusive; numbers unrounded.

    Every ratio is over the site's monitored life inside the period (see
    :mod:`analysis.period`); the report says which days that was.
    """
    site = registry.site(site_id)
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    period = site_periods(store, [site], day_from, day_to, tz, now_ms)[site.id]
    start_ms, end_ms = day_range_ms(day_from, day_to, tz)
    where = f"site = {quote_literal(site.id)} AND {_range_clause(start_ms, end_ms)}"
    vq = rows_in(store.query_frame(f"SELECT * FROM vq_daily WHERE {where}"), period)
    rel = rows_in(store.query_frame(f"SELECT * FROM rel_daily WHERE {where}"), period)
    reach_back_ms = start_ms - MAX_OUTAGE_DAYS * 86_400_000
    touching = store.query_frame(
        f'SELECT * FROM outage WHERE "valid" = true AND site = {quote_literal(site.id)}'
        f" AND {_range_clause(reach_back_ms, end_ms)}"
    )
    outages = rows_in(touching, period)

    pooled = vq[vq["phase"] == "all"] if len(vq) else vq
    period_s = period.seconds
    period_min = period_s / 60
    report: dict[str, Any] = {
        "site": site.id,
        "name": site.name,
        "from": day_from.isoformat(),
        "to": day_to.isoformat(),
        "tz": tz,
        "period": period.as_dict(),
        **_vq_figures(pooled, period_min),
        "phases": {},
    }
    unseen = _unseen_min(pooled, period_min)
    bands = phase_bands(site)
    if len(vq):
        for phase in PHASE_ORDER:
            rows = vq[vq["phase"] == phase]
            if rows.empty:
                continue
            sums = {c: int(_sum(rows, c)) for c in VQ_SUMS}
            sums["missing_min"] += int(unseen)  # the same unaccounted minutes as the top level
            monitored = sums["monitored_min"]
            report["phases"][phase] = {
                "vqr_pct": vqr_pct(sums["over_min"], sums["under_min"], monitored),
                **sums,
                "over_pct": sums["over_min"] / monitored * 100.0 if monitored else None,
                "under_pct": sums["under_min"] / monitored * 100.0 if monitored else None,
                "mean_deviation_pct": (_sum(rows, "dev_sum_pct") / monitored if monitored else None),
                **bands.get(phase, dict.fromkeys(BAND_KEYS)),
                **voltage_stats(rows, ZoneInfo(tz)),
            }
    report["daily"] = daily_series(vq, period, tz)

    outage_s = _sum(rel, "outage_s")
    short_s = _sum(rel, "short_s")
    # Without any roll-up in the period nothing is known of its supply: no RS-1 at all.
    known = len(rel) > 0
    channels = float(pooled["channels"].max()) if "channels" in pooled and len(pooled) else 1.0
    report["out_min_per_phase"] = _out_per_channel(report, channels)
    report["rs1_pct"] = rs1_pct(outage_s, period_s) if known else None
    report["rs1_excl_short_pct"] = rs1_pct(outage_s - short_s, period_s) if known else None
    report["outages"] = _outage_counts(outages) if known else dict.fromkeys(OUTAGE_COUNT_KEYS)
    if known:
        report["outages"]["duration_s"] = outage_s
    report["outage_list"] = outage_list(touching, period, tz)
    report["supply_side"] = _supply_side(store, site.feeder_id, period)
    if report["supply_side"] is not None:
        report["supply_side"]["gap"] = last_mile_gap(report, report["supply_side"])
    report["en50160"] = {
        "profile": site.profile,
        "min_coverage_pct": en50160_min_coverage_pct,
        "weeks": en50160_weeks(
            vq,
            tz,
            day_from=period.first_day or day_from,
            day_to=period.last_day or day_to,
            min_coverage_pct=en50160_min_coverage_pct,
        ),
    }
    pq = rows_in(store.query_frame(f"SELECT * FROM pq_daily WHERE {where}"), period)
    report["pq"] = pq_summary(pq, site.voltage_class_kv)
    report["dips"] = dip_list(store, site.id, period, tz)
    return report


BAND_KEYS = ("nominal_v", "lower_v", "upper_v")
STAT_KEYS = ("max_v", "max_at", "min_v", "min_at", "mean_v")


def phase_bands(site: Site) -> dict[str, dict[str, float]]:
    """Nominal and limits in volts of each channel, as the worker judged it (line voltages x sqrt 3)."""
    from analysis.worker import site_spec  # the worker's own rule: one source for the limits

    spec = site_spec(site)
    if spec is None:
        return {}
    limits = spec[0].limits
    out = {}
    for field, phase in PHASE_NAMES.items():
        nominal = spec[0].nominal_v * (math.sqrt(3) if field in LINE_FIELDS else 1.0)
        lower, upper = limits.band(nominal)
        out[phase] = {"nominal_v": nominal, "lower_v": lower, "upper_v": upper}
    return out


def voltage_stats(rows: pd.DataFrame, zone: ZoneInfo) -> dict[str, Any]:
    """A voltage monitor's statistics of one channel over the rows' days: highest and lowest minute
    mean with when it began, and the mean of in-service minutes (null without data)."""
    if "v_n" not in rows:
        return dict.fromkeys(STAT_KEYS)
    ok = rows[rows["v_n"].fillna(0) > 0]
    if ok.empty:
        return dict.fromkeys(STAT_KEYS)
    hi = ok.loc[ok["v_max"].idxmax()]
    lo = ok.loc[ok["v_min"].idxmin()]
    return {
        "max_v": float(hi["v_max"]),
        "max_at": datetime.fromtimestamp(float(hi["v_max_ms"]) / 1000, zone).isoformat(),
        "min_v": float(lo["v_min"]),
        "min_at": datetime.fromtimestamp(float(lo["v_min_ms"]) / 1000, zone).isoformat(),
        "mean_v": float(ok["v_sum"].sum() / ok["v_n"].sum()),
    }


def daily_series(vq: pd.DataFrame, period: MonitoredPeriod, tz: str) -> list[dict[str, Any]]:
    """Each day of the monitored period: its VQR and coverage, and per channel its extremes and mean.

    A day without a roll-up is listed with nulls, so a chart shows a gap, never a zero. One
    row per (day, phase) is what the worker writes; should a day hold more, they pool.
    """
    if period.first_day is None or period.last_day is None:
        return []
    days = days_between(period.first_day, period.last_day)
    out: dict[date, dict[str, Any]] = {
        d: {"day": d.isoformat(), "vqr_pct": None, "coverage_pct": None, "phases": {}} for d in days
    }
    if len(vq):
        frame = vq.assign(day=pd.to_datetime(vq["time"], unit="ms", utc=True).dt.tz_convert(tz).dt.date)
        for col in ("monitored_min", "over_min", "under_min", "calendar_min", "channels"):
            if col not in frame:
                frame[col] = 0.0
        pooled = (
            frame[frame["phase"] == "all"]
            .groupby("day")
            .agg(
                monitored=("monitored_min", "sum"),
                bad=("over_min", "sum"),
                under=("under_min", "sum"),
                calendar=("calendar_min", "sum"),
                channels=("channels", "max"),
            )
        )
        for day, r in pooled.iterrows():
            if day in out:
                bad = float(r["bad"] + r["under"])
                possible = float(r["calendar"] * (r["channels"] or 1))
                out[day]["vqr_pct"] = vqr_pct(bad, 0.0, float(r["monitored"]))
                out[day]["coverage_pct"] = float(r["monitored"]) / possible * 100.0 if possible else None
        if "v_n" in frame:
            phases = frame[(frame["phase"] != "all") & (frame["v_n"].fillna(0) > 0)]
            stats = phases.groupby(["day", "phase"]).agg(
                max_v=("v_max", "max"), min_v=("v_min", "min"), v_sum=("v_sum", "sum"), v_n=("v_n", "sum")
            )
            for (day, phase), r in stats.iterrows():
                if day in out:
                    out[day]["phases"][str(phase)] = {
                        "max_v": float(r["max_v"]),
                        "min_v": float(r["min_v"]),
                        "mean_v": float(r["v_sum"] / r["v_n"]),
                    }
    return [out[d] for d in days]


def dip_list(store: InfluxStore, site_id: str, period: MonitoredPeriod, tz: str) -> list[dict[str, Any]]:
    """The period's dips and swells with where each falls on the ITIC and SEMI F47 curves."""
    if period.first_day is None:
        return []
    df = query_dips(store, site_id, period.start_ms, period.end_ms)
    if df.empty:
        return []
    duration = df["duration_s"].to_numpy(float)
    level = df["level_pct"].to_numpy(float)
    itic = itic_regions(level, duration)
    semi = semi_f47_regions(level, duration)
    zone = ZoneInfo(tz)
    out = []
    for i, row in enumerate(df.itertuples(index=False)):
        dip = row.type == "dip"
        out.append(
            {
                "time": datetime.fromtimestamp(int(row.time) / 1000, zone).isoformat(),
                "type": str(row.type),
                "duration_s": float(row.duration_s),
                "level_pct": float(row.level_pct),
                "itic": str(itic[i]),
                "semi_f47": str(semi[i]) if dip else None,
            }
        )
    return out


OUTAGE_COUNT_KEYS = ("count", "sustained", "short", "planned", "unplanned", "duration_s", "open", "longest_s")


def _outage_counts(outages: pd.DataFrame) -> dict[str, Any]:
    """Counts of the outages that began in the period (null when nothing is known of it)."""
    if outages.empty:
        return {k: 0 for k in OUTAGE_COUNT_KEYS} | {"duration_s": 0.0, "longest_s": 0.0}
    return {
        "count": len(outages),
        "sustained": int((outages["length"] == "sustained").sum()),
        "short": int((outages["length"] == "short").sum()),
        "planned": int((outages["cause"] == "planned").sum()),
        "unplanned": int((outages["cause"] == "unplanned").sum()),
        "duration_s": float(outages["duration_s"].sum()),
        "open": int(outages["open"].astype(bool).sum()),
        "longest_s": float(outages["duration_s"].max()),
    }


def _out_per_channel(figures: dict[str, Any], channels: float) -> float | None:
    """Out-of-limit minutes per phase; null when nothing was monitored."""
    if not channels or not figures.get("monitored_min"):
        return None
    return (figures["over_min"] + figures["under_min"]) / channels


def last_mile_gap(customer: dict[str, Any], supply: dict[str, Any]) -> dict[str, float | None]:
    """Customer minus supply side: what the last mile costs the account (README)."""

    def diff(key: str) -> float | None:
        a, b = customer.get(key), supply.get(key)
        return None if a is None or b is None else a - b

    return {
        "vqr_pct": diff("vqr_pct"),
        "out_min_per_phase": diff("out_min_per_phase"),
        "mean_deviation_pct": diff("mean_deviation_pct"),
    }


EN50160_WEEK_MIN_WITHIN_PCT = 95.0
EN50160_INTERVALS_PER_DAY = 144  # 10-minute values in a day


def _week_start(day: date) -> date:
    return day - timedelta(days=day.weekday())


def required_10min(days: int, min_coverage_pct: float) -> int:
    """The fewest valid 10-minute values that make a judgeable week of ``days`` days.

    Each day counts 144 intervals (a 23- or 25-hour day of a DST change is not special-cased),
    so a full week needs ``min_coverage_pct`` of 1008. Rounded up: "at least 80 %" is met by
    806.4 only with 807.
    """
    return math.ceil(round(days * EN50160_INTERVALS_PER_DAY * min_coverage_pct / 100.0, 9))


def en50160_verdict(valid_10min: int, required: int, shares_pct: list[float | None]) -> str:
    """``insufficient_data`` unless the phase with the fewest valid values has ``required``
    of them; then ``pass`` when every phase has >= 95 % of its unflagged values within +/-10 %."""
    if required <= 0 or valid_10min < required or not shares_pct or None in shares_pct:
        return "insufficient_data"
    return "pass" if min(v for v in shares_pct if v is not None) >= EN50160_WEEK_MIN_WITHIN_PCT else "fail"


def en50160_weeks(
    vq: pd.DataFrame,
    tz: str,
    *,
    day_from: date | None = None,
    day_to: date | None = None,
    min_coverage_pct: float = EN50160_MIN_COVERAGE_PCT,
) -> list[dict[str, Any]]:
    """EN 50160 supply voltage variations per local week (Monday first): the share of valid,
    unflagged 10-minute values within +/-10 % must be at least 95 % on every phase.

    A week is judged only on enough data: on its phase with the fewest, the valid 10-minute
    values (unflagged ``en_n`` plus flagged ``en_flagged``) must be at least
    ``min_coverage_pct`` of 144 per day of the week inside the report period; otherwise
    (or with no data at all) its verdict is ``insufficient_data``, never ``pass``. Given the
    period, weeks of it without any row are listed too; without it, the days with rows are
    the period (the caller should pass it).
    """
    rows = vq[vq["phase"] != "all"].copy() if len(vq) and "phase" in vq else pd.DataFrame()
    local_days: list[date] = []
    if len(rows):
        local = pd.to_datetime(rows["time"], unit="ms", utc=True).dt.tz_convert(tz)
        rows["day"] = local.dt.date
        rows["week"] = [_week_start(d) for d in rows["day"]]
        local_days = sorted(set(rows["day"]))
    in_period = days_between(day_from, day_to) if day_from is not None and day_to is not None else local_days
    weeks = []
    for week in sorted({_week_start(d) for d in in_period}):
        days = sum(1 for d in in_period if _week_start(d) == week)
        group = rows[rows["week"] == week] if len(rows) else rows
        within: dict[str, float | None] = {}
        valid: dict[str, int] = {}
        for phase, g in group.groupby("phase") if len(group) else ():
            n = _sum(g, "en_n")
            within[str(phase)] = _sum(g, "en_within") / n * 100.0 if n else None
            valid[str(phase)] = int(n + _sum(g, "en_flagged"))
        required = required_10min(days, min_coverage_pct)
        fewest = min(valid.values()) if valid else 0
        weeks.append(
            {
                "week_start": week.isoformat(),
                "days": days,
                "within_pct": within,
                "valid_10min": fewest,
                "required_10min": required,
                "verdict": en50160_verdict(fewest, required, list(within.values())),
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


def _supply_side(store: InfluxStore, feeder_id: str | None, period: MonitoredPeriod) -> dict[str, Any] | None:
    """The feeder's figures over the same days as the account's, for a like-for-like gap."""
    if not feeder_id or period.first_day is None:
        return None
    df = store.query_frame(
        f"SELECT * FROM vq_daily WHERE site = {quote_literal(feeder_id)}"
        f" AND phase = 'all' AND {_range_clause(period.start_ms, period.end_ms)}"
    )
    if df.empty:
        return None
    figures = _vq_figures(df, period.seconds / 60)
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
    commissioned: Mapping[str, date | None] | None = None,
) -> pd.DataFrame:
    """One row per given site: vqr_pct, rs1_pct, outages, coverage_pct (NaN without data).

    Three queries for the whole fleet, filtered here, so the page cost does not grow with
    the number of round trips. Each site's figures cover its monitored life inside the
    period, as in :func:`site_report`; ``commissioned`` holds the registry's dates.
    """
    start_ms, end_ms = day_range_ms(day_from, day_to, tz)
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    commissioned = commissioned or {}
    rng = _range_clause(start_ms, end_ms)
    vq = store.query_frame(f"SELECT * FROM vq_daily WHERE phase = 'all' AND {rng}")
    rel = store.query_frame(f"SELECT * FROM rel_daily WHERE {rng}")
    first = first_data_days(store, tz)
    rows = []
    for site_id in site_ids:
        when, how = commissioning(commissioned.get(site_id), first.get(site_id))
        period = monitored_period(when, how, day_from, day_to, tz, now_ms)
        site_vq = rows_in(vq[vq["site"] == site_id], period) if len(vq) else vq
        site_rel = rows_in(rel[rel["site"] == site_id], period) if len(rel) else rel
        figures = _vq_figures(site_vq, period.seconds / 60) if len(site_vq) else {}
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
                "rs1_pct": rs1_pct(_sum(site_rel, "outage_s"), period.seconds) if has_rel else None,
                "outages": outages,
                "coverage_pct": figures.get("coverage_pct"),
            }
        )
    df = pd.DataFrame(rows, columns=["site", "vqr_pct", "rs1_pct", "outages", "coverage_pct"])
    return df.astype({"vqr_pct": float, "rs1_pct": float, "outages": float, "coverage_pct": float})
