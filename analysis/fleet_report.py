"""The fleet report: every key account side by side, and the fleet's indices.

Each key account counts as one customer (DESIGN §5). Reads only roll-ups and the derived
outage series; the pure index functions live in :mod:`analysis.fleet`.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from datetime import date
from typing import Any

import pandas as pd

from analysis import fleet
from analysis.calendar import day_range_ms, days_between
from analysis.comprehensive import class_vqr_mean_pct
from analysis.outages import IEEE1366_SHORT_S
from analysis.qualification import vqr_pct
from analysis.reliability import rs1_pct
from core.registry import Registry
from core.store import InfluxStore

DEFAULT_TARGET_VQR_PCT = 99.0
CAUSE_TO_DLT836 = {"planned": "planned", "unplanned": "fault", "customer": "external", "unknown": "fault"}


def _sum(df: pd.DataFrame, col: str) -> float:
    return float(df[col].fillna(0).sum()) if col in df and len(df) else 0.0


def _by_site(df: pd.DataFrame) -> dict[str, pd.DataFrame]:
    return {str(k): g for k, g in df.groupby("site")} if len(df) else {}


def fleet_report(
    store: InfluxStore,
    registry: Registry,
    day_from: date,
    day_to: date,
    tz: str,
    now_ms: int | None = None,
    *,
    short_s: float = 180.0,
    target_vqr_pct: float = DEFAULT_TARGET_VQR_PCT,
    med_ddof: int = 1,
) -> dict[str, Any]:
    start_ms, end_ms = day_range_ms(day_from, day_to, tz)
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    period_s = max(0, min(end_ms, now_ms) - start_ms) / 1000.0
    rng = f"time >= {start_ms}ms AND time < {end_ms}ms"
    vq = _by_site(store.query_frame(f"SELECT * FROM vq_daily WHERE phase = 'all' AND {rng}"))
    rel = _by_site(store.query_frame(f"SELECT * FROM rel_daily WHERE {rng}"))
    outages = store.query_frame(f"SELECT * FROM outage WHERE {rng}")

    accounts = registry.sites("account")
    n = len(accounts)
    rows: list[dict[str, Any]] = []
    for site in accounts:
        v, r = vq.get(site.id, pd.DataFrame()), rel.get(site.id, pd.DataFrame())
        customer_vqr = vqr_pct(_sum(v, "over_min"), _sum(v, "under_min"), _sum(v, "monitored_min"))
        feeder = vq.get(site.feeder_id or "", pd.DataFrame())
        supply_vqr = vqr_pct(
            _sum(feeder, "over_min"), _sum(feeder, "under_min"), _sum(feeder, "monitored_min")
        )
        rows.append(
            {
                "site": site.id,
                "name": site.name,
                "manager": site.manager,
                "feeder": site.feeder_id,
                "vqr_pct": customer_vqr,
                "monitored_min": int(_sum(v, "monitored_min")),
                "over_min": int(_sum(v, "over_min")),
                "under_min": int(_sum(v, "under_min")),
                "rs1_pct": rs1_pct(_sum(r, "outage_s"), period_s) if len(r) else None,
                "rs1_excl_short_pct": rs1_pct(_sum(r, "outage_s") - _sum(r, "short_s"), period_s)
                if len(r)
                else None,
                "outages": int(_sum(r, "outages_sustained") + _sum(r, "outages_short")),
                "outage_s": _sum(r, "outage_s"),
                "supply_vqr_pct": supply_vqr,
                "vqr_gap_pct": None
                if customer_vqr is None or supply_vqr is None
                else customer_vqr - supply_vqr,
            }
        )
    table = pd.DataFrame(rows)
    report: dict[str, Any] = {
        "from": day_from.isoformat(),
        "to": day_to.isoformat(),
        "tz": tz,
        "accounts": n,
        "voltage": _fleet_voltage(table),
        "reliability": _reliability(
            outages, accounts, n, period_s, tz, day_from, day_to, now_ms, short_s, med_ddof
        ),
        "last_mile": [
            {k: row[k] for k in ("site", "name", "feeder", "vqr_pct", "supply_vqr_pct", "vqr_gap_pct")}
            for row in rows
            if row["supply_vqr_pct"] is not None
            and row["vqr_pct"] is not None
            and row["supply_vqr_pct"] >= target_vqr_pct > row["vqr_pct"]
        ],
        "last_mile_target_vqr_pct": target_vqr_pct,
        "sites": rows,
    }
    return report


def _fleet_voltage(table: pd.DataFrame) -> dict[str, Any]:
    if table.empty:
        return {"vqr_pooled_pct": None, "vqr_mean_pct": None}
    rates = [v for v in table["vqr_pct"] if v is not None and not pd.isna(v)]
    return {
        # Both aggregations of standards.md §1.4, since they differ: time-pooled and point mean.
        "vqr_pooled_pct": vqr_pct(
            table["over_min"].sum(), table["under_min"].sum(), table["monitored_min"].sum()
        ),
        "vqr_mean_pct": class_vqr_mean_pct(rates) if rates else None,
    }


def _reliability(
    outages: pd.DataFrame,
    accounts: list[Any],
    n: int,
    period_s: float,
    tz: str,
    day_from: date,
    day_to: date,
    now_ms: int,
    short_s: float,
    med_ddof: int,
) -> dict[str, Any]:
    if n == 0 or period_s <= 0:
        return {}
    ids = {s.id for s in accounts}
    mine = outages[outages["site"].isin(ids)] if len(outages) else outages
    interruptions = pd.DataFrame(
        {
            "customer": mine["site"] if len(mine) else [],
            "start_ms": mine["start_ms"].astype("int64") if len(mine) else [],
            "duration_s": mine["duration_s"].astype(float) if len(mine) else [],
        }
    ).astype({"start_ms": "int64", "duration_s": "float64"})
    period_h = period_s / 3600.0
    daily = fleet.daily_saidi_min(interruptions, n, tz, days_between(day_from, day_to))
    threshold = fleet.med_threshold(daily, ddof=med_ddof)
    med_days = fleet.major_event_days(daily, threshold.t_med_min) if threshold else []
    split = fleet.fleet_indices_med_split(interruptions, n, period_h, med_days, tz)
    events = pd.DataFrame(
        {
            "cause": [CAUSE_TO_DLT836.get(c, "fault") for c in (mine["cause"] if len(mine) else [])],
            "users": 1,
            "duration_s": mine["duration_s"].astype(float).to_numpy() if len(mine) else [],
        }
    )
    return {
        "ieee1366": {
            "momentary_max_s": IEEE1366_SHORT_S,
            "all_days": asdict(split.all_days),
            "excluding_major_event_days": asdict(split.excluding_meds),
            "major_event_days": [d.isoformat() for d in med_days],
            "t_med_min": threshold.t_med_min if threshold else None,
            "med_note": "T_MED is estimated from this period's daily SAIDI; IEEE 1366 asks for five years",
            "cemi": {str(k): fleet.cemi_n(interruptions, n, k) for k in (1, 2, 3)},
            "celid_single_3h": fleet.celid_single(interruptions, n, 3 * 3600),
            "celid_total_8h": fleet.celid_total(interruptions, n, 8 * 3600),
        },
        "dlt836": {
            "short_s": short_s,
            "excluding_short": asdict(fleet.dlt836_indices(events, n, period_h, short_s=short_s)),
            "including_short": asdict(
                fleet.dlt836_indices(events, n, period_h, include_short=True, short_s=short_s)
            ),
        },
        "open_outages": int(mine["open"].astype(bool).sum()) if len(mine) else 0,
        "now_ms": now_ms,
    }
