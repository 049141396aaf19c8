"""Condition rules on readings and roll-ups: voltage out of limits (with hysteresis), meter
silent, outages seen only in readings, the last mile, and the month-to-date budgets.

Voltage: a phase fires after ``fire_min`` minutes outside its limits and clears only after
``clear_min`` minutes back inside (a separate clear condition, so a voltage hovering at a
limit pages once, not every time it crosses). Only minutes with data count: a gap freezes
the state, it neither resolves nor re-fires. Minutes in which every phase is below 10 % of
nominal are an outage (its own alert), not an under-voltage.

Silent: a meter whose last reading is older than ``silent_intervals`` of its reporting
interval raises a communication-loss alert (never an outage); it clears when data returns.
While the site has an open outage alert a silent meter is expected and does not page.

Outage from readings: a meter that keeps reporting through an outage (battery or UPS) shows
every phase below 10 % of nominal; ``outage_off_min`` such minutes in a row open the site's
outage alert as a ``power_off`` would (same incident grouping, same planned-window rule). It
is resolved by the ``power_on``, or by a reading that begins after the outage began and
shows supply on every phase (a reading that straddles the start proves nothing).

Last mile: a customer-side voltage alert while the account's feeder reports and has none
of its own is the last-mile alert (the problem is between the feeder meter and the
customer); it clears when either changes.

Month to date (from the roll-ups, so they follow the same definitions as the reports): VQR
below ``vqr_target_pct`` once at least a day of minutes is monitored (cleared at
``vqr_target_pct`` + 0.05 or when the month turns), and outage time over the budget that an
RS-1 of ``rs1_target_pct`` leaves in the month.

Each pass reads the last hour of readings from InfluxDB and decides from the tail of each
phase's minutes and the alert state in the registry, so a restart loses nothing and a pass
run twice changes nothing.
"""

from __future__ import annotations

import calendar
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from analysis.alerts.engine import (
    LAST_MILE,
    MONTH_VQR,
    OUTAGE,
    OUTAGE_BUDGET,
    SILENT,
    VOLTAGE,
    AlertEngine,
    PowerEvent,
)
from analysis.outages import INTERRUPTION_FRACTION
from analysis.qualification import COMPARE_DECIMALS, minute_means
from analysis.rollup import LINE_FIELDS, PHASE_FIELDS, PHASE_NAMES
from core.calendar import MINUTE_MS, day_start_ms
from core.errors import ConfigError
from core.limits import validate_limits
from core.registry import Registry, Site
from core.store import InfluxStore

log = logging.getLogger(__name__)

WINDOW_MIN = 60


VQR_CLEAR_MARGIN_PCT = 0.05  # month VQR clears a little above its target, so it cannot flap
VQR_MIN_MONITORED_MIN = 1440  # a day of monitored minutes before a month's VQR is judged
SUPPLY_CONFIRM_MIN = 2  # minutes of supply on every phase that end an outage seen in readings
MONTH_EVERY_S = 300.0  # the month-to-date rules change slowly: judged every five minutes


@dataclass(frozen=True)
class ConditionRule:
    fire_min: int = 5
    clear_min: int = 10
    silent_intervals: float = 3.0
    outage_off_min: int = 2
    vqr_target_pct: float = 99.0
    rs1_target_pct: float = 99.9


RULE_KEYS = (
    "fire_min",
    "clear_min",
    "silent_intervals",
    "outage_off_min",
    "vqr_target_pct",
    "rs1_target_pct",
)
FLOAT_KEYS = ("silent_intervals", "vqr_target_pct", "rs1_target_pct")
PERCENT_KEYS = ("vqr_target_pct", "rs1_target_pct")


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
        if key in PERCENT_KEYS and value >= 100:
            raise ConfigError(f"{where} {key} is a percentage below 100, got {value!r}")
        fields[key] = float(value) if key in FLOAT_KEYS else int(value)
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


def outage_start(minute_ms: np.ndarray, off: np.ndarray, rule: ConditionRule) -> int | None:
    """Pure: the start of a trailing run of at least ``outage_off_min`` minutes without supply."""
    k = rule.outage_off_min
    if off.size < k or not off[-k:].all():
        return None
    on = np.flatnonzero(~off)
    return int(minute_ms[on[-1] + 1 if on.size else 0])


def supply_back(minute_ms: np.ndarray, off: np.ndarray) -> int | None:
    """Pure: where a trailing run of supply on every phase began, when it is long enough."""
    if off.size < SUPPLY_CONFIRM_MIN or off[-SUPPLY_CONFIRM_MIN:].any():
        return None
    down = np.flatnonzero(off)
    return int(minute_ms[down[-1] + 1 if down.size else 0])


def month_vqr_decision(monitored: float, out_min: float, firing: bool, rule: ConditionRule) -> str | None:
    """Pure: "fire", "clear" or None for the month-to-date VQR of one account."""
    if monitored < VQR_MIN_MONITORED_MIN:
        return None
    vqr = (1.0 - out_min / monitored) * 100.0
    if not firing and vqr < rule.vqr_target_pct:
        return "fire"
    if firing and vqr >= rule.vqr_target_pct + VQR_CLEAR_MARGIN_PCT:
        return "clear"
    return None


def outage_budget_min(rule: ConditionRule, days_in_month: int) -> float:
    """The outage minutes an RS-1 of ``rs1_target_pct`` allows in the month."""
    return days_in_month * 1440.0 * (1.0 - rule.rs1_target_pct / 100.0)


def supply_minutes(
    times_ms: np.ndarray,
    values: Mapping[str, np.ndarray],
    interval_s: np.ndarray,
    nominal: Mapping[str, float],
    start_ms: int,
    n: int,
) -> tuple[np.ndarray, np.ndarray]:
    """The minutes with data on some phase, and whether supply was off (every phase below
    10 % of nominal, or without a value) in each."""
    grid = start_ms + np.arange(n, dtype=np.int64) * MINUTE_MS
    per_unit = np.vstack(
        [minute_means(times_ms, v, interval_s, start_ms, n) / nominal[ch] for ch, v in values.items()]
    )
    have = ~np.all(np.isnan(per_unit), axis=0)
    with np.errstate(invalid="ignore"):
        off = np.all(np.isnan(per_unit) | (per_unit < INTERRUPTION_FRACTION), axis=0)
    return grid[have], off[have]


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
        self._month_at = -math.inf

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
        outages = {site: started for (site, _), started in self.engine.open_alerts(OUTAGE).items()}
        changes = 0
        for site_id, site in sites.items():
            rule = rule_for(site, self.base, self.overrides)
            frame = readings.get(site_id)
            if frame is not None and n > 0:
                changes += self._outage(site, frame, rule, start, n, outages.get(site_id))
                changes += self._voltage(site, frame, rule, start, n, open_voltage)
            if site_id in last_seen:
                changes += self._silence(site, last_seen[site_id], rule, now, open_silent, site_id in outages)
        changes += self._last_mile(sites, readings)
        if time.monotonic() - self._month_at >= MONTH_EVERY_S:
            changes += self.run_month(now)
            self._month_at = time.monotonic()
        return changes

    def _channels(self, site: Site, df: Any) -> dict[str, Any]:
        """What the site is judged on: per-channel values, nominal, band, interval, times."""
        nominal_v = sorted(site.meters, key=lambda m: m.meter_id)[0].nominal_v
        limits = validate_limits(site.voltage_class_kv, site.phases, site.upper_pct, site.lower_pct)
        has_phase = any(c in df and df[c].notna().any() for c in PHASE_FIELDS)
        channels = ("ua",) if site.phases == 1 else (PHASE_FIELDS if has_phase else LINE_FIELDS)
        nominal = {c: nominal_v * (math.sqrt(3) if c in LINE_FIELDS else 1.0) for c in channels}
        return {
            "values": {
                c: df[c].to_numpy(np.float64) if c in df else np.full(len(df), np.nan) for c in channels
            },
            "nominal": nominal,
            "band": {c: limits.band(nominal[c]) for c in channels},
            "interval": (
                df["interval_s"].fillna(60.0).to_numpy(np.float64)
                if "interval_s" in df
                else np.full(len(df), 60.0)
            ),
            "times": df["time"].to_numpy(np.int64),
        }

    def _outage(
        self, site: Site, df: Any, rule: ConditionRule, start: int, n: int, open_since: int | None
    ) -> int:
        """Open or end the site's outage alert from what its readings show."""
        ch = self._channels(site, df)
        meter = sorted(m.meter_id for m in site.meters)[0]
        if open_since is None:
            minutes, off = supply_minutes(ch["times"], ch["values"], ch["interval"], ch["nominal"], start, n)
            began = outage_start(minutes, off, rule)
            if began is None:
                return 0
            self.engine.on_events(
                [PowerEvent(site.id, meter, "power_off", began, f"readings:{site.id}:{began}")]
            )
            return 1
        later = ch["times"] > open_since  # only readings that begin after the outage began
        if not later.any():
            return 0
        values = {c: v[later] for c, v in ch["values"].items()}
        minutes, off = supply_minutes(
            ch["times"][later], values, ch["interval"][later], ch["nominal"], start, n
        )
        back = supply_back(minutes, off)
        if back is None:
            return 0
        self.engine.on_events([PowerEvent(site.id, meter, "power_on", back, f"readings-on:{site.id}:{back}")])
        return 1

    def _last_mile(self, sites: Mapping[str, Site], readings: Mapping[str, Any]) -> int:
        voltage_sites = {site for site, _ in self.engine.open_alerts(VOLTAGE)}
        open_now = {site for site, _ in self.engine.open_alerts(LAST_MILE)}
        now = self.engine.now_ms()
        changes = 0
        for site_id, site in sites.items():
            if site.kind != "account":
                continue
            feeder = site.feeder_id
            applies = (
                site_id in voltage_sites
                and feeder is not None
                and feeder in readings  # the feeder reports...
                and feeder not in voltage_sites  # ...and is inside its limits
            )
            if applies and site_id not in open_now:
                detail = f"customer side out of limits while feeder {feeder} is inside its limits"
                changes += self.engine.fire(LAST_MILE, site_id, "", now, "minor", detail)
            elif not applies and site_id in open_now:
                changes += self.engine.clear(LAST_MILE, site_id, "", now)
        return changes

    def run_month(self, now: int) -> int:
        """The month-to-date VQR and outage-budget rules, from the roll-ups (one query each)."""
        tz = self.engine.policy.tz
        local = datetime.fromtimestamp(now / 1000, ZoneInfo(tz)).date()
        first = local.replace(day=1)
        days = calendar.monthrange(first.year, first.month)[1]
        since = day_start_ms(first, tz)
        vq = {
            df.attrs["tags"].get("site", ""): df
            for df in self.store.query(
                'SELECT sum("monitored_min") AS monitored, sum("over_min") AS over, sum("under_min") AS under'
                f" FROM vq_daily WHERE phase = 'all' AND time >= {since}ms GROUP BY site"
            )
        }
        rel = {
            df.attrs["tags"].get("site", ""): df
            for df in self.store.query(
                f'SELECT sum("outage_s") AS outage_s FROM rel_daily WHERE time >= {since}ms GROUP BY site'
            )
        }
        open_vqr = self.engine.open_alerts(MONTH_VQR)
        open_budget = self.engine.open_alerts(OUTAGE_BUDGET)
        changes = 0
        for site in self.registry.sites("account"):
            rule = rule_for(site, self.base, self.overrides)
            key = (site.id, "")
            changes += self._month_vqr(site.id, rule, vq.get(site.id), open_vqr.get(key), since, now)
            outage_s = float(rel[site.id].iloc[0].get("outage_s") or 0.0) if site.id in rel else 0.0
            changes += self._budget(site.id, rule, outage_s / 60.0, days, open_budget.get(key), since, now)
        return changes

    def _month_vqr(
        self, site: str, rule: ConditionRule, df: Any, open_since: int | None, since: int, now: int
    ) -> int:
        changes = 0
        if open_since is not None and open_since < since:  # the month turned: a new month, a new alert
            changes += self.engine.clear(MONTH_VQR, site, "", since)
            open_since = None
        if df is None or not len(df):
            return changes
        row = df.iloc[0]
        monitored = float(row.get("monitored") or 0.0)
        out_min = float(row.get("over") or 0.0) + float(row.get("under") or 0.0)
        decision = month_vqr_decision(monitored, out_min, open_since is not None, rule)
        if decision == "fire":
            vqr = (1.0 - out_min / monitored) * 100.0
            detail = f"month-to-date VQR {vqr:.2f} % below the target {rule.vqr_target_pct:g} %"
            changes += self.engine.fire(MONTH_VQR, site, "", since, "minor", detail)
        elif decision == "clear":
            changes += self.engine.clear(MONTH_VQR, site, "", now)
        return changes

    def _budget(
        self,
        site: str,
        rule: ConditionRule,
        outage_min: float,
        days: int,
        open_since: int | None,
        since: int,
        now: int,
    ) -> int:
        changes = 0
        if open_since is not None and open_since < since:
            changes += self.engine.clear(OUTAGE_BUDGET, site, "", since)
            open_since = None
        budget = outage_budget_min(rule, days)
        if outage_min > budget and open_since is None:
            detail = f"month-to-date outage time {outage_min:.1f} min over the budget of {budget:.1f} min"
            changes += self.engine.fire(OUTAGE_BUDGET, site, "", since, "minor", detail)
        elif outage_min <= budget and open_since is not None:
            changes += self.engine.clear(OUTAGE_BUDGET, site, "", now)
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
        ch = self._channels(site, df)
        channels, band = tuple(ch["values"]), ch["band"]
        changes = 0
        for phase, (minutes, outside) in phase_minutes(
            ch["times"], ch["values"], ch["interval"], ch["nominal"], band, start, n
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
