"""Daily power-quality roll-up of one site: frequency, unbalance, THD, flicker, dips, swells.

Pure. Counts and maxima per local day, so that a month is a sum (or max) of days:
- frequency: GB/T 15945, |f - 50 Hz| <= 0.2 Hz;
- unbalance: GB/T 15543, 2 % (from the meter's ``unb``, or its line voltages);
- THD: GB/T 14549 limit for the voltage class, each phase value judged;
- Plt: GB/T 12326, 1 (0.8 above 110 kV);
- dips and swells: EN 50160 table cells, ITIC regions, SEMI F47 (required curve).
Values exactly at a limit comply.
"""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd

from analysis.curves import ITIC_NO_DAMAGE, ITIC_PROHIBITED, SEMI_OUTSIDE, itic_regions, semi_f47_regions
from analysis.en50160 import classify_dips, classify_swells
from analysis.pq import gb14549_limits, unbalance_from_line_magnitudes
from analysis.qualification import COMPARE_DECIMALS
from core.calendar import day_start_ms

FREQ_NOMINAL_HZ = 50.0
FREQ_LIMIT_HZ = 0.2
UNBALANCE_LIMIT_PCT = 2.0
THD_FIELDS = ("thd_ua", "thd_ub", "thd_uc")
PQ_READING_FIELDS = ("f", "unb", "plt", *THD_FIELDS)
PQ_EVENT_FIELDS = ("duration_ms", "residual_pct", "magnitude_pct")


def plt_limit(voltage_class_kv: float) -> float:
    return 0.8 if voltage_class_kv > 110 else 1.0


def thd_limit_pct(voltage_class_kv: float) -> float | None:
    try:
        return gb14549_limits(voltage_class_kv).thd_pct
    except ValueError:  # above the table's reach: no GB/T 14549 limit to judge by
        return None


def _day_index(times: np.ndarray, edges_ms: np.ndarray) -> np.ndarray:
    return np.searchsorted(edges_ms, times, side="right") - 1


def _count_max(
    values: np.ndarray, day: np.ndarray, n_days: int, over: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ok = ~np.isnan(values) & (day >= 0) & (day < n_days)
    n = np.bincount(day[ok], minlength=n_days)
    n_over = np.bincount(day[ok & over], minlength=n_days)
    worst = np.full(n_days, np.nan)
    np.fmax.at(worst, day[ok], values[ok])
    return n, n_over, worst


def _unbalance(readings: pd.DataFrame) -> np.ndarray:
    if "unb" in readings and readings["unb"].notna().any():
        unb = readings["unb"].to_numpy(np.float64)
    else:
        unb = np.full(len(readings), np.nan)
    if all(c in readings for c in ("uab", "ubc", "uca")):
        missing = np.isnan(unb)
        line = readings.loc[missing, ["uab", "ubc", "uca"]].to_numpy(np.float64)
        if len(line):
            with np.errstate(invalid="ignore"):
                unb[missing] = unbalance_from_line_magnitudes(line[:, 0], line[:, 1], line[:, 2])
    return unb


def pq_daily(
    readings: pd.DataFrame, events: pd.DataFrame, days: list[date], tz: str, voltage_class_kv: float
) -> pd.DataFrame:
    """One row per day: ``day_ms`` and the counts/maxima named in the module docstring."""
    return pd.DataFrame(pq_daily_columns(readings, events, days, tz, voltage_class_kv))


def pq_daily_columns(
    readings: pd.DataFrame, events: pd.DataFrame, days: list[date], tz: str, voltage_class_kv: float
) -> dict[str, np.ndarray]:
    """:func:`pq_daily` as one array per column (the worker writes them without a DataFrame)."""
    n_days = len(days)
    edges = np.array([day_start_ms(d, tz) for d in [*days, days[-1] + timedelta(days=1)]], np.int64)
    rows: dict[str, np.ndarray] = {"day_ms": edges[:-1]}
    if len(readings):
        day = _day_index(readings["time"].to_numpy(np.int64), edges)

        def column(name: str) -> np.ndarray:
            return readings[name].to_numpy(np.float64) if name in readings else np.full(len(readings), np.nan)

        f = column("f")
        dev = np.abs(f - FREQ_NOMINAL_HZ)
        rows["f_n"], rows["f_out"], rows["f_dev_max"] = _count_max(
            dev, day, n_days, np.round(dev, COMPARE_DECIMALS) > FREQ_LIMIT_HZ
        )
        unb = _unbalance(readings)
        rows["unb_n"], rows["unb_over"], rows["unb_max"] = _count_max(
            unb, day, n_days, np.round(unb, COMPARE_DECIMALS) > UNBALANCE_LIMIT_PCT
        )
        limit = thd_limit_pct(voltage_class_kv)
        thd = np.fmax.reduce([column(c) for c in THD_FIELDS])  # the worst phase of each reading
        over = (
            np.zeros(len(thd), bool) if limit is None else np.asarray(np.round(thd, COMPARE_DECIMALS) > limit)
        )
        rows["thd_n"], rows["thd_over"], rows["thd_max"] = _count_max(thd, day, n_days, over)
        plt = column("plt")
        rows["plt_n"], rows["plt_over"], rows["plt_max"] = _count_max(
            plt, day, n_days, np.round(plt, COMPARE_DECIMALS) > plt_limit(voltage_class_kv)
        )
    rows.update(_event_counts(events, edges, n_days))
    return rows


def _event_counts(events: pd.DataFrame, edges: np.ndarray, n_days: int) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    if events.empty or "type" not in events:
        return out
    ev = events[events["type"].isin(["dip", "swell", "interruption"])].drop_duplicates(subset=["event_id"])
    ev = ev[(ev["time"] >= edges[0]) & (ev["time"] < edges[-1])]
    if ev.empty:
        return out
    day = _day_index(ev["time"].to_numpy(np.int64), edges)
    duration_s = (ev["duration_ms"] if "duration_ms" in ev else pd.Series(np.nan, index=ev.index)).to_numpy(
        np.float64
    ) / 1000.0
    kinds = ev["type"].to_numpy()

    def add(name: str, mask: np.ndarray) -> None:
        if mask.any():
            out[name] = np.bincount(day[mask], minlength=n_days)

    for kind in ("dip", "swell", "interruption"):
        add(f"{kind}s", kinds == kind)
    residual = (ev["residual_pct"] if "residual_pct" in ev else pd.Series(np.nan, index=ev.index)).to_numpy(
        np.float64
    )
    magnitude = (
        ev["magnitude_pct"] if "magnitude_pct" in ev else pd.Series(np.nan, index=ev.index)
    ).to_numpy(np.float64)
    dips = (kinds == "dip") & ~np.isnan(residual) & ~np.isnan(duration_s)
    swells = (kinds == "swell") & ~np.isnan(magnitude) & ~np.isnan(duration_s)
    cells = np.full(len(ev), None, dtype=object)
    if dips.any():
        cells[dips] = classify_dips(residual[dips], duration_s[dips])
    if swells.any():
        cells[swells] = classify_swells(magnitude[swells], duration_s[swells])
    for cell in sorted({c for c in cells if c}):
        add(f"en_{cell}", cells == cell)
    level = np.where(kinds == "swell", magnitude, residual)
    judged = dips | swells
    if judged.any():
        regions = np.full(len(ev), None, dtype=object)
        regions[judged] = itic_regions(level[judged], duration_s[judged])
        add("itic_prohibited", regions == ITIC_PROHIBITED)
        add("itic_no_damage", regions == ITIC_NO_DAMAGE)
    if dips.any():
        semi = np.full(len(ev), None, dtype=object)
        semi[dips] = semi_f47_regions(residual[dips], duration_s[dips])
        add("semi_f47_outside", semi == SEMI_OUTSIDE)
    return out
