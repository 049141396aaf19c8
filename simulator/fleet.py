"""A deterministic fleet of key accounts and supply-side feeders, and what their meters see.

Why deterministic: the same ``(seed, time range)`` must give the same readings and events
however the range is cut, so that the live publisher, a backfill, a test and a re-run all
agree. Every random draw comes from a generator seeded with ``(seed, meter, local day,
purpose)``, and nothing a day holds spills into the next one: outages, silences and
voltage excursions start and end inside their local day.

The shape of a fleet of N accounts (N >= 3 gives all three main classes):

- ``N // 16`` accounts at 35 kV (PT secondary, nominal 57.735 V, configured limits +5/-5 %),
  fed straight from a 35 kV line (no feeder);
- of the rest, ~43 % at 10 kV (PT secondary, 57.735 V, ua/ub/uc), ~20 % at 220 V single
  phase (220 V, ua only) and the others at 380 V three-phase (220 V phase values);
- one 10 kV supply-side feeder (``F01``...) per 10 non-35 kV accounts, each such account
  linked to one; a feeder outage is an outage of every account it supplies.

Ids: accounts ``A001``..., feeders ``F01``..., one meter per site ``<site>-M1``; accounts go
round-robin to managers ``mgr1``..``mgr3``. A reading's ``ts`` is the start of its averaging
window ``[ts, ts + interval_s)``; the meter publishes it once the window has ended.
"""

from __future__ import annotations

import csv
import math
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core.registry import CSV_COLUMNS

DAY_S = 86_400
DAY_MS = DAY_S * 1000
SHANGHAI_OFFSET_S = 8 * 3600  # Asia/Shanghai has no DST, so a fixed offset is exact
MANAGERS = ("mgr1", "mgr2", "mgr3")

# Rates per site and local day.
OWN_OUTAGE_RATE = 0.06  # last-mile faults the feeder head never sees
FEEDER_OUTAGE_RATE = 0.03
FEEDER_PLANNED_RATE = 0.035  # weekdays only
HV_PLANNED_RATE = 0.02
SHORT_SHARE = 0.4
SILENCE_P_ACCOUNT = 0.03
SILENCE_P_FEEDER = 0.01

_INDUSTRIES = (
    "Steel works",
    "Hospital",
    "Data centre",
    "Chemical plant",
    "Semiconductor fab",
    "Water works",
    "Shopping mall",
    "Hotel",
    "Office tower",
    "Cold storage",
    "Textile mill",
    "Paper mill",
    "Brewery",
    "University",
    "Airport terminal",
    "Glass works",
    "Cement plant",
    "Metro depot",
    "Printing house",
    "Pharma plant",
)


@dataclass(frozen=True)
class VoltageClass:
    """A supply voltage class with its GB/T 12325 limits and how its meters report."""

    label: str
    kv: float
    phases: int
    nominal_v: float
    upper_pct: float
    lower_pct: float
    configured: bool  # limits are written into the registry (35 kV and above)
    decimals: int


CLASS_35KV = VoltageClass("35kV", 35.0, 3, 57.735, 5.0, 5.0, True, 3)
CLASS_10KV = VoltageClass("10kV", 10.0, 3, 57.735, 7.0, 7.0, False, 3)
CLASS_380V = VoltageClass("380V", 0.38, 3, 220.0, 7.0, 7.0, False, 2)
CLASS_220V = VoltageClass("220V", 0.22, 1, 220.0, 7.0, 10.0, False, 2)
PHASE_FIELDS = ("ua", "ub", "uc")


@dataclass(frozen=True)
class MeterSpec:
    """One site with its single meter, and the parameters of its voltage profile."""

    site_id: str
    kind: str  # "account" or "feeder"
    name: str
    vclass: VoltageClass
    feeder_id: str | None
    manager: str | None
    base_pct: float  # deviation at no load
    swing_pct: float  # drop from no load to the evening peak
    noise_pct: float
    phase_offsets_pct: tuple[float, ...]
    excursion_rate: float  # per day

    @property
    def meter_id(self) -> str:
        return f"{self.site_id}-M1"

    @property
    def nominal_v(self) -> float:
        return self.vclass.nominal_v

    @property
    def phase_fields(self) -> tuple[str, ...]:
        return PHASE_FIELDS[: self.vclass.phases]

    @property
    def limits_v(self) -> tuple[float, float]:
        """(lower, upper) limits in the meter's units."""
        v = self.vclass
        return v.nominal_v * (1 - v.lower_pct / 100), v.nominal_v * (1 + v.upper_pct / 100)

    def topic(self, leaf: str) -> str:
        return f"pq/v1/{self.site_id}/{self.meter_id}/{leaf}"


@dataclass(frozen=True)
class Outage:
    """An interruption seen by one meter, and when the meter gets to report it."""

    site_id: str
    meter_id: str
    start_ms: int
    end_ms: int
    planned: bool
    origin: str  # "feeder" (the supply side tripped or was switched off) or "site"
    off_event_id: str
    on_event_id: str
    report_ms: int  # both events are published then, after power has come back

    @property
    def duration_s(self) -> float:
        return (self.end_ms - self.start_ms) / 1000

    def events(self) -> list[dict[str, Any]]:
        return [
            {"event_id": self.off_event_id, "ts": self.start_ms, "type": "power_off"},
            {
                "event_id": self.on_event_id,
                "ts": self.end_ms,
                "type": "power_on",
                "duration_ms": self.end_ms - self.start_ms,
            },
        ]


@dataclass(frozen=True)
class PlannedWindow:
    """An announced planned outage, to be registered so analysis can call it planned."""

    site_id: str
    start_ms: int
    end_ms: int
    note: str


@dataclass(frozen=True)
class _Cut:
    start_ms: int
    end_ms: int
    planned: bool
    origin: str
    announced: tuple[int, int] | None = None


def _rng(seed: int, *parts: int | str) -> np.random.Generator:
    key = [seed % 2**32] + [p % 2**32 if isinstance(p, int) else zlib.crc32(p.encode()) for p in parts]
    return np.random.default_rng(np.random.SeedSequence(key))


def _ring(h: np.ndarray, mu: float, sigma: float) -> np.ndarray:
    d = (h - mu + 12.0) % 24.0 - 12.0
    return np.exp(-0.5 * (d / sigma) ** 2)


def load_shape(local_hour: np.ndarray, weekend: bool) -> np.ndarray:
    """Normalised daily load: low at night, a morning plateau, the evening peak near 20:00."""
    load = 0.1 + 0.5 * _ring(local_hour, 10.5, 2.2) + 0.35 * _ring(local_hour, 15.0, 2.0)
    load = load + 0.9 * _ring(local_hour, 19.8, 1.6)
    return np.clip(load * (0.8 if weekend else 1.0), 0.0, 1.0)


@dataclass(frozen=True)
class Fleet:
    seed: int
    meters: tuple[MeterSpec, ...]
    tz_offset_s: int = SHANGHAI_OFFSET_S
    _cache: dict[tuple[Any, ...], Any] = field(default_factory=dict, compare=False, repr=False, hash=False)

    # -- shape ------------------------------------------------------------------------------
    @property
    def accounts(self) -> list[MeterSpec]:
        return [m for m in self.meters if m.kind == "account"]

    @property
    def feeders(self) -> list[MeterSpec]:
        return [m for m in self.meters if m.kind == "feeder"]

    def meter(self, meter_id: str) -> MeterSpec:
        for m in self.meters:
            if m.meter_id == meter_id:
                return m
        raise KeyError(f"no meter {meter_id!r} in this fleet")

    def sites_of(self, manager: str) -> list[str]:
        return [m.site_id for m in self.accounts if m.manager == manager]

    def registry_rows(self) -> list[dict[str, str]]:
        """One row per meter in the registry CSV format (docs/cli.md)."""
        rows = []
        for m in self.meters:
            v = m.vclass
            rows.append(
                {
                    "site_id": m.site_id,
                    "site_kind": m.kind,
                    "name": m.name,
                    "voltage_class_kv": f"{v.kv:g}",
                    "phases": str(v.phases),
                    "meter_id": m.meter_id,
                    "nominal_v": f"{v.nominal_v:g}",
                    "upper_pct": f"{v.upper_pct:g}" if v.configured else "",
                    "lower_pct": f"{v.lower_pct:g}" if v.configured else "",
                    "profile": "gb",
                    "feeder_id": m.feeder_id or "",
                    "manager": m.manager or "",
                }
            )
        return rows

    def write_registry_csv(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(CSV_COLUMNS))
            writer.writeheader()
            writer.writerows(self.registry_rows())
        return path

    # -- time -------------------------------------------------------------------------------
    def local_day(self, ms: int) -> int:
        """The local calendar day (days since 1970-01-01 local) holding instant ``ms``."""
        return (ms // 1000 + self.tz_offset_s) // DAY_S

    def day_start_ms(self, day: int) -> int:
        return (day * DAY_S - self.tz_offset_s) * 1000

    def _days(self, start_ms: int, end_ms: int) -> range:
        return range(self.local_day(start_ms), self.local_day(max(start_ms, end_ms - 1)) + 1)

    def _cached(self, key: tuple[Any, ...], make: Any) -> Any:
        if key not in self._cache:
            if len(self._cache) > 20_000:
                self._cache.clear()
            self._cache[key] = make()
        return self._cache[key]

    # -- outages, silences, planned windows ------------------------------------------------
    def _site_cuts(self, m: MeterSpec, day: int) -> list[_Cut]:
        """Interruptions that originate at this site itself, for one local day."""

        def make() -> list[_Cut]:
            rng = _rng(self.seed, m.site_id, day, "cuts")
            d0 = self.day_start_ms(day)
            weekend = (day + 3) % 7 >= 5
            cuts: list[_Cut] = []
            planned_rate = 0.0
            if m.kind == "feeder":
                planned_rate = FEEDER_PLANNED_RATE
            elif m.feeder_id is None:
                planned_rate = HV_PLANNED_RATE
            if not weekend and rng.random() < planned_rate:
                start_s = 8 * 3600 + int(rng.integers(0, 24)) * 300
                dur_s = int(rng.integers(180, 421)) * 60
                ann = (d0 + start_s // 3600 * 3_600_000, d0 + math.ceil((start_s + dur_s) / 3600) * 3_600_000)
                cuts.append(
                    _Cut(
                        d0 + start_s * 1000,
                        d0 + (start_s + dur_s) * 1000,
                        True,
                        "feeder" if m.kind == "feeder" else "site",
                        ann,
                    )
                )
            rate = FEEDER_OUTAGE_RATE if m.kind == "feeder" else OWN_OUTAGE_RATE
            for _ in range(int(rng.poisson(rate))):
                if rng.random() < SHORT_SHARE:
                    dur_s = int(rng.integers(60, 181))
                else:
                    dur_s = int(round(math.exp(rng.uniform(math.log(240), math.log(3 * 3600)))))
                start_s = int(rng.integers(0, DAY_S - dur_s))
                cut = _Cut(
                    d0 + start_s * 1000,
                    d0 + (start_s + dur_s) * 1000,
                    False,
                    "feeder" if m.kind == "feeder" else "site",
                )
                if not any(_overlaps(cut, c) for c in cuts):
                    cuts.append(cut)
            return cuts

        return self._cached(("cuts", m.site_id, day), make)  # type: ignore[no-any-return]

    def silences(self, m: MeterSpec, day: int) -> list[tuple[int, int]]:
        """Communication losses: the meter is powered but nothing it sends arrives."""

        def make() -> list[tuple[int, int]]:
            rng = _rng(self.seed, m.meter_id, day, "silence")
            p = SILENCE_P_FEEDER if m.kind == "feeder" else SILENCE_P_ACCOUNT
            if rng.random() >= p:
                return []
            dur_s = int(rng.integers(60, 481)) * 60
            start_s = int(rng.integers(0, (DAY_S - dur_s) // 60)) * 60
            d0 = self.day_start_ms(day)
            return [(d0 + start_s * 1000, d0 + (start_s + dur_s) * 1000)]

        return self._cached(("silence", m.meter_id, day), make)  # type: ignore[no-any-return]

    def day_outages(self, m: MeterSpec, day: int) -> list[Outage]:
        """The interruptions meter ``m`` sees on a local day, with event ids and report times."""

        def make() -> list[Outage]:
            cuts = list(self._site_cuts(m, day))
            if m.feeder_id is not None:
                feeder_cuts = self._site_cuts(self.meter(f"{m.feeder_id}-M1"), day)
                own = [c for c in cuts if not any(_overlaps(c, f) for f in feeder_cuts)]
                cuts = [
                    _Cut(f.start_ms, f.end_ms, f.planned, "feeder", f.announced) for f in feeder_cuts
                ] + own
            cuts.sort(key=lambda c: c.start_ms)
            rng = _rng(self.seed, m.meter_id, day, "report")
            outages = []
            for k, c in enumerate(cuts):
                delay_s = float(np.clip(math.exp(rng.normal(math.log(1200), 1.0)), 60, 4 * 3600))
                report = c.end_ms + int(delay_s) * 1000
                for s, e in self.silences(m, self.local_day(report)):
                    if s <= report < e:
                        report = e
                seq = day * 100 + 2 * k
                outages.append(
                    Outage(
                        m.site_id,
                        m.meter_id,
                        c.start_ms,
                        c.end_ms,
                        c.planned,
                        c.origin,
                        f"{m.meter_id}-{seq:07d}",
                        f"{m.meter_id}-{seq + 1:07d}",
                        report,
                    )
                )
            return outages

        return self._cached(("outages", m.meter_id, day), make)  # type: ignore[no-any-return]

    def outages(self, start_ms: int, end_ms: int, meter: str | None = None) -> list[Outage]:
        """Every outage overlapping ``[start_ms, end_ms)``, by meter then time."""
        chosen = [self.meter(meter)] if meter else list(self.meters)
        return [
            o
            for m in chosen
            for day in self._days(start_ms, end_ms)
            for o in self.day_outages(m, day)
            if o.start_ms < end_ms and o.end_ms > start_ms
        ]

    def planned_windows(self, start_ms: int, end_ms: int) -> list[PlannedWindow]:
        """Announced planned outages overlapping the range, for every site they affect."""
        windows = []
        for m in self.meters:
            source = self.meter(f"{m.feeder_id}-M1") if m.feeder_id else m
            for day in self._days(start_ms, end_ms):
                for c in self._site_cuts(source, day):
                    if c.announced and c.announced[0] < end_ms and c.announced[1] > start_ms:
                        note = f"planned maintenance on {source.site_id}"
                        windows.append(PlannedWindow(m.site_id, c.announced[0], c.announced[1], note))
        return windows

    def events_reported(self, after_ms: int, until_ms: int) -> list[tuple[MeterSpec, dict[str, Any]]]:
        """Events whose meter publishes them in ``(after_ms, until_ms]``, in publishing order."""
        due: list[tuple[int, MeterSpec, dict[str, Any]]] = []
        # A report comes at most one local day after the outage's day (delay and silence).
        first = self.local_day(after_ms) - 2
        last = self.local_day(until_ms)
        for m in self.meters:
            for day in range(first, last + 1):
                for o in self.day_outages(m, day):
                    if after_ms < o.report_ms <= until_ms:
                        due.extend((o.report_ms, m, ev) for ev in o.events())
        due.sort(key=lambda item: (item[0], item[1].meter_id, item[2]["event_id"]))
        return [(m, ev) for _, m, ev in due]

    # -- readings ---------------------------------------------------------------------------
    def _day_readings(self, m: MeterSpec, day: int, interval_s: int) -> list[dict[str, Any]]:
        def make() -> list[dict[str, Any]]:
            n = DAY_S // interval_s
            d0 = self.day_start_ms(day)
            offsets_s = np.arange(n, dtype=np.int64) * interval_s
            hours = (offsets_s + interval_s / 2) / 3600.0
            load = load_shape(hours, weekend=(day + 3) % 7 >= 5)
            rng = _rng(self.seed, m.meter_id, day, interval_s, "noise")
            level = m.base_pct + rng.normal(0.0, 0.5) - m.swing_pct * load
            noise_sd = m.noise_pct * (900 / interval_s) ** 0.25
            phases = len(m.phase_fields)
            pct = level[:, None] + np.asarray(m.phase_offsets_pct)[None, :phases]
            pct = pct + rng.normal(0.0, noise_sd, (n, phases))
            freq = np.round(50.0 + np.clip(rng.normal(0.0, 0.015, n), -0.2, 0.2), 2)

            win_start = d0 + offsets_s * 1000
            win_end = win_start + interval_s * 1000
            for s, e, target in self._excursions(m, day):
                frac = np.clip(np.minimum(e, win_end) - np.maximum(s, win_start), 0, None)
                frac = (frac / (interval_s * 1000.0))[:, None]
                pct = pct * (1 - frac) + (target + rng.normal(0.0, 0.3, (n, phases))) * frac

            keep = np.ones(n, dtype=bool)
            gaps = [(o.start_ms, o.end_ms) for o in self.day_outages(m, day)]
            for s, e in gaps + self.silences(m, day):
                keep &= ~((win_start < e) & (win_end > s))

            volts = np.round(m.nominal_v * (1 + pct / 100.0), m.vclass.decimals)
            ts_list = win_start.tolist()
            f_list = freq.tolist()
            cols = [volts[:, j].tolist() for j in range(phases)]
            fields = m.phase_fields
            out = []
            for i in np.flatnonzero(keep).tolist():
                reading: dict[str, Any] = {"ts": ts_list[i]}
                for j, name in enumerate(fields):
                    reading[name] = cols[j][i]
                reading["f"] = f_list[i]
                reading["interval_s"] = interval_s
                out.append(reading)
            return out

        return self._cached(("readings", m.meter_id, day, interval_s), make)  # type: ignore[no-any-return]

    def _excursions(self, m: MeterSpec, day: int) -> list[tuple[int, int, float]]:
        """(start_ms, end_ms, level_pct): over-voltage at night, under-voltage at the peak."""
        rng = _rng(self.seed, m.meter_id, day, "excursion")
        d0 = self.day_start_ms(day)
        out = []
        for _ in range(int(rng.poisson(m.excursion_rate))):
            over = rng.random() < 0.5
            dur_s = int(rng.integers(10, 61)) * 60
            if over:
                start_s = int(rng.integers(0, 6 * 60)) * 60
                level = m.vclass.upper_pct + rng.uniform(0.5, 3.5)
            else:
                start_s = int(rng.integers(17 * 60 + 30, 21 * 60 + 30)) * 60
                level = -(m.vclass.lower_pct + rng.uniform(0.5, 4.0))
            out.append((d0 + start_s * 1000, d0 + (start_s + dur_s) * 1000, float(level)))
        return out

    def readings(
        self, meter: str | MeterSpec, start_ms: int, end_ms: int, interval_s: int = 900
    ) -> list[dict[str, Any]]:
        """Reading payloads (docs/mqtt.md) whose window starts in ``[start_ms, end_ms)``."""
        check_interval(interval_s, self.tz_offset_s)
        m = self.meter(meter) if isinstance(meter, str) else meter
        out: list[dict[str, Any]] = []
        for day in self._days(start_ms, end_ms):
            out.extend(r for r in self._day_readings(m, day, interval_s) if start_ms <= r["ts"] < end_ms)
        return out


def check_interval(interval_s: int, tz_offset_s: int = SHANGHAI_OFFSET_S) -> None:
    if interval_s <= 0 or DAY_S % interval_s or tz_offset_s % interval_s:
        raise ValueError(
            f"interval_s must divide a day and the zone offset evenly (60, 300, 900...), got {interval_s}"
        )


def _overlaps(a: _Cut, b: _Cut) -> bool:
    return a.start_ms < b.end_ms and b.start_ms < a.end_ms


def _class_plan(accounts: int) -> list[VoltageClass]:
    n35 = accounts // 16
    rest = accounts - n35
    n10 = round(rest * 0.43)
    n1 = round(rest * 0.2)
    if rest >= 3:
        n10, n1 = max(n10, 1), max(n1, 1)
    n380 = rest - n10 - n1
    return [CLASS_35KV] * n35 + [CLASS_10KV] * n10 + [CLASS_380V] * n380 + [CLASS_220V] * n1


def _profile(rng: np.random.Generator, vclass: VoltageClass, feeder: bool) -> dict[str, Any]:
    if feeder:  # a regulated substation bus: steady and well inside the limits
        base, swing, noise, exc = rng.uniform(1.5, 3.0), rng.uniform(1.0, 2.5), 0.15, 0.02
    elif vclass is CLASS_35KV:
        base, swing, noise, exc = rng.uniform(1.0, 2.5), rng.uniform(1.5, 3.0), 0.2, 0.15
    elif vclass is CLASS_10KV:
        base, swing, noise, exc = rng.uniform(2.0, 4.0), rng.uniform(3.0, 6.0), 0.35, 0.25
    elif vclass is CLASS_380V:
        base, swing, noise, exc = rng.uniform(2.0, 4.5), rng.uniform(3.5, 6.5), 0.45, 0.3
    else:
        base, swing, noise, exc = rng.uniform(2.0, 5.0), rng.uniform(5.0, 9.0), 0.5, 0.3
    offsets = tuple(float(x) for x in np.round(rng.normal(0.0, 0.3, 3), 3))
    return {
        "base_pct": float(base),
        "swing_pct": float(swing),
        "noise_pct": noise,
        "phase_offsets_pct": offsets,
        "excursion_rate": exc,
    }


def make_fleet(accounts: int = 50, seed: int = 1, tz_offset_s: int = SHANGHAI_OFFSET_S) -> Fleet:
    """Build the fleet for ``seed``: same arguments, same fleet, on any machine."""
    if accounts < 1:
        raise ValueError(f"a fleet needs at least one account, got {accounts}")
    rng = _rng(seed, "fleet")
    plan = _class_plan(accounts)
    order = rng.permutation(len(plan)).tolist()
    classes = [plan[i] for i in order]
    fed = sum(1 for c in classes if c is not CLASS_35KV)
    n_feeders = max(1, math.ceil(fed / 10)) if fed else 0
    width = max(3, len(str(accounts)))
    feeders = [f"F{i + 1:02d}" for i in range(n_feeders)]
    meters = [
        MeterSpec(
            fid,
            "feeder",
            f"10 kV feeder {fid}",
            CLASS_10KV,
            None,
            None,
            **_profile(_rng(seed, fid, "profile"), CLASS_10KV, feeder=True),
        )
        for fid in feeders
    ]
    fed_index = 0
    for i, vclass in enumerate(classes):
        site_id = f"A{i + 1:0{width}d}"
        feeder_id = None
        if vclass is not CLASS_35KV:
            feeder_id = feeders[fed_index % n_feeders]
            fed_index += 1
        industry = _INDUSTRIES[int(_rng(seed, site_id, "name").integers(len(_INDUSTRIES)))]
        meters.append(
            MeterSpec(
                site_id,
                "account",
                f"{industry} {site_id}",
                vclass,
                feeder_id,
                MANAGERS[i % len(MANAGERS)],
                **_profile(_rng(seed, site_id, "profile"), vclass, feeder=False),
            )
        )
    return Fleet(seed=seed, meters=tuple(meters), tz_offset_s=tz_offset_s)


def count_readings(fleet: Fleet, start_ms: int, end_ms: int, interval_s: int) -> int:
    """How many readings the whole fleet produces with windows starting in the range."""
    return sum(len(fleet.readings(m, start_ms, end_ms, interval_s)) for m in fleet.meters)
