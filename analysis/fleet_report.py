"""The fleet report: every key account side by side, and the fleet's indices.

Each key account counts as one customer (README: Definitions). Reads only roll-ups and the derived
outage series; the pure index functions live in :mod:`analysis.fleet`. Figures that need
data the store does not have are None, never a perfect 100 % or 0 outages.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from datetime import date, timedelta
from typing import Any

import pandas as pd

from analysis import fleet
from analysis.comprehensive import class_vqr_mean_pct
from analysis.outages import IEEE1366_SHORT_S
from analysis.period import MonitoredPeriod, rows_in, site_periods
from analysis.qualification import vqr_pct
from analysis.reliability import rs1_pct
from core.calendar import day_range_ms, day_start_ms, days_between, local_day
from core.registry import Registry, Site
from core.store import InfluxStore

LAST_MILE_TARGET_VQR_PCT = 99.0
CAUSE_TO_DLT836 = {"planned": "planned", "unplanned": "fault", "customer": "external", "unknown": "fault"}
# The columns of the ``sites`` and ``last_mile`` tables, fixed so an empty fleet still has a header.
SITE_COLUMNS = (
    "site",
    "name",
    "manager",
    "feeder",
    "vqr_pct",
    "monitored_min",
    "over_min",
    "under_min",
    "rs1_pct",
    "rs1_excl_short_pct",
    "outages",
    "outage_s",
    "supply_vqr_pct",
    "vqr_gap_pct",
)
LAST_MILE_COLUMNS = ("site", "name", "feeder", "vqr_pct", "supply_vqr_pct", "vqr_gap_pct")


@dataclass(frozen=True)
class _MedInputs:
    """What sets T_MED: the sample's days and, when they are history, the accounts' outages on them."""

    sample: fleet.MedSample
    history: pd.DataFrame | None
    ddof: int
    min_history_days: int


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
    last_mile_target_vqr_pct: float = LAST_MILE_TARGET_VQR_PCT,
    celid_single_h: float = 3.0,
    celid_total_h: float = 8.0,
    med_min_history_days: int = 365,
    med_history_years: int = 5,
    med_ddof: int = 1,
) -> dict[str, Any]:
    """Every key account's figures and the fleet's indices for whole local days, ``day_to`` inclusive.

    The keyword arguments are the PQMON_* settings of the same names (README, Settings).
    """
    start_ms, end_ms = day_range_ms(day_from, day_to, tz)
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    period_s = max(0, min(end_ms, now_ms) - start_ms) / 1000.0
    rng = f"time >= {start_ms}ms AND time < {end_ms}ms"
    vq = _by_site(store.query_frame(f"SELECT * FROM vq_daily WHERE phase = 'all' AND {rng}"))
    rel = _by_site(store.query_frame(f"SELECT * FROM rel_daily WHERE {rng}"))
    outages = store.query_frame(f'SELECT * FROM outage WHERE "valid" = true AND {rng}')

    accounts = registry.sites("account")
    n = len(accounts)
    periods = site_periods(store, accounts, day_from, day_to, tz, now_ms)
    rows = [_site_row(site, vq, rel, periods[site.id]) for site in accounts]
    table = pd.DataFrame(rows)
    ids = {s.id for s in accounts}
    sample = fleet.med_sample(
        day_from,
        day_to,
        _first_rollup_day(store, ids, fleet.years_before(day_from, med_history_years), day_from, tz),
        min_history_days=med_min_history_days,
        history_years=med_history_years,
    )
    history = _history_outages(store, sample, tz) if sample.source == "history" else None
    report: dict[str, Any] = {
        "from": day_from.isoformat(),
        "to": day_to.isoformat(),
        "tz": tz,
        "accounts": n,
        "voltage": _fleet_voltage(table),
        "reliability": _reliability(
            _mine(outages, ids),
            n,
            sum(1 for site_id in ids if site_id in rel),
            period_s,
            tz,
            day_from,
            day_to,
            now_ms,
            short_s,
            med=_MedInputs(
                sample, None if history is None else _mine(history, ids), med_ddof, med_min_history_days
            ),
            celid_single_h=celid_single_h,
            celid_total_h=celid_total_h,
        ),
        "last_mile": last_mile(rows, last_mile_target_vqr_pct),
        "last_mile_target_vqr_pct": last_mile_target_vqr_pct,
        "sites": rows,
    }
    return report


def last_mile(rows: list[dict[str, Any]], target_vqr_pct: float) -> list[dict[str, Any]]:
    """The accounts whose feeder meets the VQR target while they do not (docs/definitions.md,
    the last-mile rule): the supply arrives within limits and is lost on the way in. An account
    or feeder without a VQR (no data) is never on the list."""
    return [
        {k: row[k] for k in LAST_MILE_COLUMNS}
        for row in rows
        if row["supply_vqr_pct"] is not None
        and row["vqr_pct"] is not None
        and row["supply_vqr_pct"] >= target_vqr_pct > row["vqr_pct"]
    ]


def _site_row(
    site: Site, vq: dict[str, pd.DataFrame], rel: dict[str, pd.DataFrame], period: MonitoredPeriod
) -> dict[str, Any]:
    """One account's row over its monitored life inside the period (as in the site report);
    reliability figures are None when the account has no roll-up there."""
    v = rows_in(vq.get(site.id, pd.DataFrame()), period)
    r = rows_in(rel.get(site.id, pd.DataFrame()), period)
    period_s = period.seconds
    customer_vqr = vqr_pct(_sum(v, "over_min"), _sum(v, "under_min"), _sum(v, "monitored_min"))
    feeder = rows_in(vq.get(site.feeder_id or "", pd.DataFrame()), period)
    supply_vqr = vqr_pct(_sum(feeder, "over_min"), _sum(feeder, "under_min"), _sum(feeder, "monitored_min"))
    has_rel = len(r) > 0
    row = {
        "site": site.id,
        "name": site.name,
        "manager": site.manager,
        "feeder": site.feeder_id,
        "vqr_pct": customer_vqr,
        "monitored_min": int(_sum(v, "monitored_min")),
        "over_min": int(_sum(v, "over_min")),
        "under_min": int(_sum(v, "under_min")),
        "rs1_pct": rs1_pct(_sum(r, "outage_s"), period_s) if has_rel else None,
        "rs1_excl_short_pct": rs1_pct(_sum(r, "outage_s") - _sum(r, "short_s"), period_s)
        if has_rel
        else None,
        "outages": int(_sum(r, "outages_sustained") + _sum(r, "outages_short")) if has_rel else None,
        "outage_s": _sum(r, "outage_s") if has_rel else None,
        "supply_vqr_pct": supply_vqr,
        "vqr_gap_pct": None if customer_vqr is None or supply_vqr is None else customer_vqr - supply_vqr,
    }
    return {k: row[k] for k in SITE_COLUMNS}


def _first_rollup_day(store: InfluxStore, ids: set[str], since: date, before: date, tz: str) -> date | None:
    """The first local day in [since, before) on which any of these accounts has a roll-up.

    Feeders are left out: their data says nothing about whether the accounts were watched.
    """
    first: int | None = None
    for df in store.query(
        "SELECT first(monitored_min) FROM vq_daily WHERE phase = 'all'"
        f" AND time >= {day_start_ms(since, tz)}ms AND time < {day_start_ms(before, tz)}ms GROUP BY site"
    ):
        if df.attrs["tags"].get("site") in ids and len(df):
            ts = int(df["time"].iloc[0])
            first = ts if first is None else min(first, ts)
    return None if first is None else local_day(first, tz)


def _history_outages(store: InfluxStore, sample: fleet.MedSample, tz: str) -> pd.DataFrame:
    """The derived outages that began on the sample's days (the outage point's time is its start)."""
    begin = day_start_ms(sample.first, tz)
    end = day_start_ms(sample.last + timedelta(days=1), tz)
    return store.query_frame(
        'SELECT start_ms, duration_s FROM outage WHERE "valid" = true'
        f" AND time >= {begin}ms AND time < {end}ms GROUP BY site",
        tag_columns=("site",),
    )


def _mine(outages: pd.DataFrame, ids: set[str]) -> pd.DataFrame:
    return outages[outages["site"].isin(ids)] if len(outages) else outages


def _interruptions(mine: pd.DataFrame) -> pd.DataFrame:
    """The interruption table of :mod:`analysis.fleet`: each key account is one customer."""
    return pd.DataFrame(
        {
            "customer": mine["site"] if len(mine) else [],
            "start_ms": mine["start_ms"].astype("int64") if len(mine) else [],
            "duration_s": mine["duration_s"].astype(float) if len(mine) else [],
        }
    ).astype({"start_ms": "int64", "duration_s": "float64"})


def _fleet_voltage(table: pd.DataFrame) -> dict[str, Any]:
    if table.empty:
        return {"vqr_pooled_pct": None, "vqr_mean_pct": None}
    rates = [v for v in table["vqr_pct"] if v is not None and not pd.isna(v)]
    return {
        # Both aggregations of docs/definitions.md, since they differ: time-pooled and point mean.
        "vqr_pooled_pct": vqr_pct(
            table["over_min"].sum(), table["under_min"].sum(), table["monitored_min"].sum()
        ),
        "vqr_mean_pct": class_vqr_mean_pct(rates) if rates else None,
    }


def _med_note(sample: fleet.MedSample, threshold: fleet.MedThreshold | None, min_history_days: int) -> str:
    if sample.source == "history":
        note = (
            f"T_MED from stored history: the fleet's daily SAIDI of the {sample.days} days before"
            f" the period ({sample.first.isoformat()} to {sample.last.isoformat()}), IEEE 1366 Annex B"
        )
    else:
        note = (
            f"only {sample.history_days} day(s) of stored history before the period, fewer than the"
            f" {min_history_days} PQMON_MED_MIN_HISTORY_DAYS asks for: T_MED is estimated from this"
            " period's own daily SAIDI, not from years of history as IEEE 1366 intends;"
            " treat the major event days as indicative"
        )
    if threshold is None:
        note += (
            "; too few days with sustained interruptions to estimate T_MED, so no day is a major event day"
        )
    return note


def _reliability(
    mine: pd.DataFrame,
    n: int,
    with_data: int,
    period_s: float,
    tz: str,
    day_from: date,
    day_to: date,
    now_ms: int,
    short_s: float,
    *,
    med: _MedInputs,
    celid_single_h: float,
    celid_total_h: float,
) -> dict[str, Any]:
    """IEEE 1366 and DL/T 836 fleet indices; None when no account has a roll-up in the period,
    since "no interruptions" would then only mean "no data"."""
    if n == 0 or period_s <= 0:
        return {}
    if with_data == 0:
        return {
            "accounts_with_data": 0,
            "ieee1366": None,
            "dlt836": None,
            "open_outages": None,
            "now_ms": now_ms,
        }
    sample = med.sample
    interruptions = _interruptions(mine)
    period_h = period_s / 3600.0
    daily = fleet.daily_saidi_min(interruptions, n, tz, days_between(day_from, day_to))
    if med.history is None:
        sample_daily = daily
    else:
        sample_days = days_between(sample.first, sample.last)
        sample_daily = fleet.daily_saidi_min(_interruptions(med.history), n, tz, sample_days)
    threshold = fleet.med_threshold(sample_daily, ddof=med.ddof)
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
        "accounts_with_data": with_data,
        "ieee1366": {
            "momentary_max_s": IEEE1366_SHORT_S,
            "all_days": asdict(split.all_days),
            "excluding_major_event_days": asdict(split.excluding_meds),
            "major_event_days": [d.isoformat() for d in med_days],
            "t_med_min": threshold.t_med_min if threshold else None,
            "t_med_source": sample.source,
            "t_med_days": sample.days,
            "t_med_nonzero_days": int((sample_daily > 0).sum()),
            "t_med_from": sample.first.isoformat(),
            "t_med_to": sample.last.isoformat(),
            "t_med_note": _med_note(sample, threshold, med.min_history_days),
            "cemi": {str(k): fleet.cemi_n(interruptions, n, k) for k in (1, 2, 3)},
            "celid_single_h": celid_single_h,
            "celid_single": fleet.celid_single(interruptions, n, celid_single_h * 3600),
            "celid_total_h": celid_total_h,
            "celid_total": fleet.celid_total(interruptions, n, celid_total_h * 3600),
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
