"""Condition rules on readings: voltage out of limits (with hysteresis) and meter silent.

Voltage: a phase fires after ``fire_min`` minutes outside its limits and clears only after
``clear_min`` minutes back inside (a separate clear condition, so a voltage hovering at a
limit pages once, not every time it crosses). Only minutes with data count: a gap freezes
the state, it neither resolves nor re-fires. Minutes in which every phase is below 10 % of
nominal are an outage (its own alert), not an under-voltage.

Silent: a meter whose last reading is older than ``silent_intervals`` of its reporting
interval raises a communication-loss alert (never an outage); it clears when data returns.
While the site has an open outage alert a silent meter is expected and does not page.

Each pass reads the last hour of readings from InfluxDB and decides from the tail of each
phase's minutes and the alert state in the registry, so a restart loses nothing and a pass
run twice changes nothing.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from analysis.alerts.engine import OUTAGE, SILENT, VOLTAGE, AlertEngine
from analysis.calendar import MINUTE_MS
from analysis.limits import validate_limits
from analysis.outages import INTERRUPTION_FRACTION
from analysis.qualification import COMPARE_DECIMALS, minute_means
from analysis.rollup import LINE_FIELDS, PHASE_FIELDS, PHASE_NAMES
from core.errors import ConfigError
from core.registry import Registry, Site
from core.store import InfluxStore

log = logging.getLogger(__name__)

WINDOW_MIN = 60


@dataclass(frozen=True)
class ConditionRule:
    fire_min: int = 5
    clear_min: int = 10
    silent_intervals: float = 3.0


RULE_KEYS = ("fire_min", "clear_min", "silent_intervals")


def parse_rules(raw: Mapping[str, Any], source: str) -> tuple[ConditionRule, dict[str, dict[str, Any]]]:
    """``[rules]`` of the alerts file: global values, ``[rules.class."10"]`` per voltage class
    (kV) and ``[rules.site.A001]`` per account, each a partial override."""
    top = {k: v for k, v in raw.items() if k in RULE_KEYS}
    overrides: dict[str, dict[str, Any]] = {}
    for key, value in raw.items():
        if key in RULE_KEYS:
            continue
        if key not in ("class", "site") or not isinstance(value, Mapping):
            raise ConfigError(f"{source}: [rules] {key} is not a setting; expected {', '.join(RULE_KEYS)}")
        for name, table in value.items():
            where = f"[rules.{key}.{name}]"
            bad = set(table) - set(RULE_KEYS)
            if bad:
                raise ConfigError(
                    f"{source}: {where} {', '.join(sorted(bad))}: expected {', '.join(RULE_KEYS)}"
                )
            overrides[f"{key}:{name}"] = dict(table)
    base = _rule(ConditionRule(), top, f"{source}: [rules]")
    for where, table in overrides.items():
        _rule(base, table, f"{source}: [rules.{where.replace(':', '.')}]")
    return base, overrides


def _rule(base: ConditionRule, values: Mapping[str, Any], where: str) -> ConditionRule:
    fields = {k: getattr(base, k) for k in RULE_KEYS}
    for key, value in values.items():
        if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
            raise ConfigError(f"{where} {key} must be a positive number, got {value!r}")
        fields[key] = int(value) if key != "silent_intervals" else float(value)
    return ConditionRule(**fields)


def rule_for(site: Site, base: ConditionRule, overrides: Mapping[str, Mapping[str, Any]]) -> ConditionRule:
    """Global, then the site's voltage class, then the site itself."""
    rule = base
    kv = f"{site.voltage_class_kv:g}"
    for key in (f"class:{kv}", f"site:{site.id}"):
        if key in overrides:
            rule = _rule(rule, overrides[key], key)
    return rule


def tail_decision(
    minute_ms: np.ndarray, out: np.ndarray, firing: bool, rule: ConditionRule
) -> tuple[str, int] | None:
    """Pure: from one phase's data minutes (times and out-of-limit flags, oldest first) and
    whether its alert is open, ``("fire", start)``, ``("clear", end)`` or None."""
    if firing:
        if out.size >= rule.clear_min and not out[-rule.clear_min :].any():
            # Cleared at the first minute of the run back inside that is still going on.
            inside_run = np.flatnonzero(out)
            first_inside = inside_run[-1] + 1 if inside_run.size else 0
            return "clear", int(minute_ms[first_inside])
        return None
    if out.size >= rule.fire_min and out[-rule.fire_min :].all():
        inside = np.flatnonzero(~out)
        first_out = inside[-1] + 1 if inside.size else 0
        return "fire", int(minute_ms[first_out])
    return None


def phase_minutes(
    times_ms: np.ndarray,
    values: Mapping[str, np.ndarray],
    interval_s: np.ndarray,
    nominal: Mapping[str, float],
    band: Mapping[str, tuple[float, float]],
    start_ms: int,
    n: int,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per phase: the minutes with data (outage minutes left out) and whether each is outside."""
    grid = start_ms + np.arange(n, dtype=np.int64) * MINUTE_MS
    means = {ch: minute_means(times_ms, v, interval_s, start_ms, n) for ch, v in values.items()}
    per_unit = np.vstack([means[ch] / nominal[ch] for ch in means])
    with np.errstate(invalid="ignore"):
        outage = np.all(np.isnan(per_unit) | (per_unit < INTERRUPTION_FRACTION), axis=0)
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for ch, m in means.items():
        lower, upper = (round(x, COMPARE_DECIMALS) for x in band[ch])
        rounded = np.round(m, COMPARE_DECIMALS)
        keep = ~np.isnan(rounded) & ~outage
        with np.errstate(invalid="ignore"):
            outside = (rounded > upper) | (rounded < lower)
        out[PHASE_NAMES[ch]] = (grid[keep], outside[keep])
    return out


class ConditionWatch:
    """One pass of the voltage and silence rules over every site with a meter."""

    def __init__(
        self,
        store: InfluxStore,
        registry: Registry,
        engine: AlertEngine,
        base: ConditionRule,
        overrides: Mapping[str, Mapping[str, Any]],
    ) -> None:
        self.store, self.registry, self.engine = store, registry, engine
        self.base, self.overrides = base, overrides

    def run_once(self) -> int:
        """Returns how many alerts fired or cleared."""
        now = self.engine.now_ms()
        start = (now - WINDOW_MIN * MINUTE_MS) // MINUTE_MS * MINUTE_MS
        n = (now - start) // MINUTE_MS  # whole minutes only: the running one is not over
        sites = {s.id: s for s in self.registry.sites() if s.meters}
        readings = self._recent(sites, start, now)
        last_seen = self._last_seen(sites, readings)
        open_voltage = self.engine.open_alerts(VOLTAGE)
        open_silent = self.engine.open_alerts(SILENT)
        open_outage = {site for site, _ in self.engine.open_alerts(OUTAGE)}
        changes = 0
        for site_id, site in sites.items():
            rule = rule_for(site, self.base, self.overrides)
            frame = readings.get(site_id)
            if frame is not None and n > 0:
                changes += self._voltage(site, frame, rule, start, n, open_voltage)
            if site_id in last_seen:
                changes += self._silence(
                    site, last_seen[site_id], rule, now, open_silent, site_id in open_outage
                )
        return changes

    def _recent(self, sites: Mapping[str, Site], start: int, now: int) -> dict[str, Any]:
        """The last hour of each site's primary meter (the one it is judged on), one query."""
        fields = ", ".join(f'"{f}"' for f in (*PHASE_FIELDS, *LINE_FIELDS, "interval_s"))
        primary = {sid: sorted(m.meter_id for m in s.meters)[0] for sid, s in sites.items()}
        frames = {}
        for df in self.store.query(
            f"SELECT {fields} FROM reading WHERE time >= {start - MINUTE_MS * 15}ms AND time <= {now}ms"
            " GROUP BY site, meter"
        ):
            tags = df.attrs["tags"]
            if primary.get(tags.get("site", "")) == tags.get("meter") and len(df):
                frames[tags["site"]] = df
        return frames

    def _last_seen(
        self, sites: Mapping[str, Site], recent: Mapping[str, Any]
    ) -> dict[str, tuple[int, float]]:
        """(time, interval_s) of each site's last reading: from the hour read, else one grouped
        query over the last week for the sites silent that long."""
        seen = {sid: _last_row(df) for sid, df in recent.items()}
        if set(sites) - set(seen):
            for df in self.store.query(
                "SELECT last(interval_s) FROM reading WHERE time > now() - 7d GROUP BY site"
            ):
                sid = df.attrs["tags"].get("site", "")
                if sid in sites and sid not in seen and len(df):
                    seen[sid] = (int(df["time"].iloc[0]), _interval(df["last"].iloc[0]))
        return seen

    def _voltage(
        self,
        site: Site,
        df: Any,
        rule: ConditionRule,
        start: int,
        n: int,
        open_alerts: Mapping[tuple[str, str], int],
    ) -> int:
        nominal_v = sorted(site.meters, key=lambda m: m.meter_id)[0].nominal_v
        limits = validate_limits(site.voltage_class_kv, site.phases, site.upper_pct, site.lower_pct)
        has_phase = any(c in df and df[c].notna().any() for c in PHASE_FIELDS)
        channels = ("ua",) if site.phases == 1 else (PHASE_FIELDS if has_phase else LINE_FIELDS)
        values = {c: df[c].to_numpy(np.float64) if c in df else np.full(len(df), np.nan) for c in channels}
        nominal = {c: nominal_v * (math.sqrt(3) if c in LINE_FIELDS else 1.0) for c in channels}
        band = {c: limits.band(nominal[c]) for c in channels}
        interval = (
            df["interval_s"].fillna(60.0).to_numpy(np.float64)
            if "interval_s" in df
            else np.full(len(df), 60.0)
        )
        times = df["time"].to_numpy(np.int64)
        changes = 0
        for phase, (minutes, outside) in phase_minutes(
            times, values, interval, nominal, band, start, n
        ).items():
            firing = (site.id, phase) in open_alerts
            decision = tail_decision(minutes, outside, firing, rule)
            if decision is None:
                continue
            what, at = decision
            if what == "fire":
                lo, hi = band[next(c for c in channels if PHASE_NAMES[c] == phase)]
                detail = f"phase {phase} outside {lo:.2f}..{hi:.2f} for {rule.fire_min}+ minutes"
                changes += self.engine.fire(VOLTAGE, site.id, phase, at, "major", detail)
            else:
                changes += self.engine.clear(VOLTAGE, site.id, phase, at)
        return changes

    def _silence(
        self,
        site: Site,
        last: tuple[int, float],
        rule: ConditionRule,
        now: int,
        open_alerts: Mapping[tuple[str, str], int],
        in_outage: bool,
    ) -> int:
        last_ms, interval_s = last
        heard_until = last_ms + int(interval_s * 1000)  # the last reading stands for its whole interval
        quiet_ms = int(rule.silent_intervals * max(interval_s, 60.0) * 1000)
        silent = now - heard_until > quiet_ms
        firing = (site.id, "") in open_alerts
        if silent and not firing and not in_outage:
            minutes = (now - last_ms) / MINUTE_MS
            detail = f"no reading for {minutes:.0f} min (reporting every {interval_s:g} s)"
            return int(
                self.engine.fire(SILENT, site.id, "", last_ms + int(interval_s * 1000), "minor", detail)
            )
        if not silent and firing:
            return int(self.engine.clear(SILENT, site.id, "", last_ms))
        return 0


def _interval(value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return 60.0
    return number if number > 0 else 60.0


def _last_row(df: Any) -> tuple[int, float]:
    """The last reading's time and the interval it stands for (its end is when the next is due)."""
    row = df.iloc[-1]
    return int(row["time"]), _interval(row.get("interval_s"))
