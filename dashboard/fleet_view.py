"""What the overview shows, as pure functions: rows, ranking, colours against targets, filters.

No I/O here: the page (:mod:`dashboard.pages.overview`) reads the store and the registry and
hands the sums to these functions, so the rules below are unit-tested on their own.

**Needs-attention score** (the default order of the accounts, worst first)::

    score = 10  x  VQR shortfall    (percentage points below the VQR target)
          + 100 x  RS-1 shortfall   (points below RS1_TARGET_PCT)
          + 5   x  open alerts
          + 0.5 x  coverage shortfall (points below COVERAGE_TARGET_PCT; no data = 0 % coverage)

An account needs attention when its score is above 0. A figure that cannot be known (no
roll-up) adds nothing itself, but then its coverage is 0 %, so a silent meter still ranks
high. Ties: lower VQR first (unknown last), then account id. Example with a 99 % VQR
target: VQR 98.5 % (5 points), RS-1 99.7 % (20), two open alerts (10) and 90 % coverage
(2.5) make 37.5; a 1-hour outage in a 30-day month (RS-1 99.861 %) costs 3.9, one open
alert 5.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import numpy as np
import pandas as pd

from analysis import fleet
from analysis.qualification import vqr_pct
from analysis.reliability import rs1_pct
from analysis.report import last_mile_gap

VQR_TARGET_PCT = 99.0
"""Default VQR target; the page uses PQMON_LAST_MILE_TARGET_VQR_PCT (settings.last_mile_target_vqr_pct)."""
VQR_AMBER_PP = 1.0
"""A VQR this many points (or fewer) below its target is amber; further below is red."""
RS1_TARGET_PCT = 99.9
"""RS-1 target of a key account (DL/T 836 supply reliability; 99.9 % ~ 43 minutes off in 30 days)."""
RS1_AMBER_PP = 0.1
"""An RS-1 up to this many points below target is amber (99.8 to 99.9 %); below is red."""
COVERAGE_TARGET_PCT = 95.0
"""Share of the period with readings below which an account's figures are doubtful."""
COVERAGE_AMBER_PP = 15.0
"""Coverage 80 to 95 % is amber; below 80 % (EN 50160's minimum for a judgeable week) red."""
GAP_TARGET_PP = 0.0
"""Last-mile gap target: the account's VQR no worse than its feeder's."""
GAP_AMBER_PP = 1.0
"""A last-mile gap down to -1 point is amber; worse is red."""
ALERTS_TARGET = 0
"""Open alerts target: none; any open alert is red."""

WEIGHT_VQR = 10.0
WEIGHT_RS1 = 100.0
WEIGHT_ALERT = 5.0
WEIGHT_COVERAGE = 0.5

RED, AMBER, GREEN = "red", "amber", "green"
STATUS_STYLES = {
    RED: {"backgroundColor": "#fde2e1", "color": "#8a1c1c"},
    AMBER: {"backgroundColor": "#fff1c2", "color": "#6b4e00"},
    GREEN: {"backgroundColor": "#e3f6e8", "color": "#1e5631"},
}
# Figure column -> the row field holding its colour.
STATUS_FIELDS = {
    "vqr_pct": "vqr_status",
    "rs1_pct": "rs1_status",
    "coverage_pct": "coverage_status",
    "gap_pct": "gap_status",
    "open_alerts": "alerts_status",
}


def _known(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value == value  # not NaN


def status(value: object, target: float, amber_pp: float) -> str | None:
    """Green at or above the target, amber within ``amber_pp`` below it, red further below;
    None for an unknown figure (no colour: nothing is known, not "good")."""
    if not _known(value):
        return None
    v = float(value)  # type: ignore[arg-type]
    if v >= target:
        return GREEN
    return AMBER if v >= target - amber_pp else RED


def alerts_status(count: int) -> str:
    return GREEN if count <= ALERTS_TARGET else RED


def shortfall(value: object, target: float) -> float:
    return max(0.0, target - float(value)) if _known(value) else 0.0  # type: ignore[arg-type]


def attention_score(
    vqr: object, rs1: object, coverage: object, open_alerts: int, vqr_target: float = VQR_TARGET_PCT
) -> float:
    """The needs-attention score of the module docstring (0 when every figure meets its target)."""
    cover = coverage if _known(coverage) else 0.0
    return (
        WEIGHT_VQR * shortfall(vqr, vqr_target)
        + WEIGHT_RS1 * shortfall(rs1, RS1_TARGET_PCT)
        + WEIGHT_ALERT * max(0, open_alerts)
        + WEIGHT_COVERAGE * shortfall(cover, COVERAGE_TARGET_PCT)
    )


def rank_key(row: Mapping[str, Any]) -> tuple[float, bool, float, str]:
    vqr = row.get("vqr_pct")
    value = float(vqr) if isinstance(vqr, int | float) and _known(vqr) else None
    return (-float(row["score"]), value is None, value or 0.0, str(row["site"]))


def ranked(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Worst first by the needs-attention score, then lower VQR (unknown last), then id."""
    return sorted(rows, key=rank_key)


@dataclass(frozen=True)
class VqSums:
    """Sums of one site's ``vq_daily`` rows (phase ``all``) over its monitored period."""

    monitored_min: float = 0.0
    over_min: float = 0.0
    under_min: float = 0.0
    channels: float = 1.0
    rows: int = 0  # > 0: the site has roll-up rows in its period

    @property
    def vqr_pct(self) -> float | None:
        return vqr_pct(self.over_min, self.under_min, self.monitored_min) if self.rows else None

    def coverage_pct(self, period_s: float) -> float | None:
        """Monitored over possible channel-minutes, as the site report has it."""
        possible = period_s / 60.0 * (self.channels or 1.0)
        return self.monitored_min / possible * 100.0 if self.rows and possible > 0 else None


@dataclass(frozen=True)
class RelSums:
    """Sums of one site's ``rel_daily`` rows over its monitored period."""

    outage_s: float = 0.0
    outages: float = 0.0  # sustained + short
    rows: int = 0  # > 0: the site has roll-up rows in its period

    def rs1_pct(self, period_s: float) -> float | None:
        return rs1_pct(self.outage_s, period_s) if self.rows else None


@dataclass
class FleetData:
    """Sums per site over the requested days, the first day each site has data, and the
    interruptions that began in the period as (site, start_ms, duration_s)."""

    vq: dict[str, VqSums] = field(default_factory=dict)
    rel: dict[str, RelSums] = field(default_factory=dict)
    first: dict[str, date] = field(default_factory=dict)
    outages: list[tuple[str, int, float]] = field(default_factory=list)


@dataclass(frozen=True)
class View:
    rows: list[dict[str, Any]]  # every visible account, ranked
    feeders: list[Any]  # feeders the user may list
    feeder_vqr: dict[str, float | None]
    data: FleetData
    period_s: dict[str, float]
    period_h: float


def account_row(
    site: Any,
    vq: VqSums,
    rel: RelSums,
    period_s: float,
    feeder_vqr: float | None,
    open_alerts: int,
    vqr_target: float,
    query: str = "",
) -> dict[str, Any]:
    """One grid row (``site``: a registry Site); figures unrounded, None when unknown."""
    vqr = vq.vqr_pct
    rs1 = rel.rs1_pct(period_s)
    coverage = vq.coverage_pct(period_s)
    gap = last_mile_gap({"vqr_pct": vqr}, {"vqr_pct": feeder_vqr})["vqr_pct"]
    score = attention_score(vqr, rs1, coverage, open_alerts, vqr_target)
    link = f"/account/{site.id}" + (f"?{query}" if query else "")
    return {
        "site": site.id,
        "site_link": f"[{site.id}]({link})",
        "name": site.name,
        "feeder": site.feeder_id or "",
        "manager": site.manager or "",
        "voltage_kv": float(site.voltage_class_kv),
        "vqr_pct": vqr,
        "rs1_pct": rs1,
        "outages": int(rel.outages) if rel.rows else None,
        "outage_min": rel.outage_s / 60.0 if rel.rows else None,
        "gap_pct": gap,
        "coverage_pct": coverage,
        "open_alerts": open_alerts,
        "score": score,
        "attention": score > 0,
        "vqr_status": status(vqr, vqr_target, VQR_AMBER_PP),
        "rs1_status": status(rs1, RS1_TARGET_PCT, RS1_AMBER_PP),
        "coverage_status": status(coverage, COVERAGE_TARGET_PCT, COVERAGE_AMBER_PP),
        "gap_status": status(gap, GAP_TARGET_PP, GAP_AMBER_PP),
        "alerts_status": alerts_status(open_alerts),
    }


def account_rows(
    sites: Sequence[Any],
    vq: Sequence[VqSums],
    rel: Sequence[RelSums],
    period_s: Sequence[float],
    feeder_vqr: Sequence[float | None],
    open_alerts: Sequence[int],
    vqr_target: float,
    query: str = "",
    rounding: Mapping[str, int] | None = None,
) -> list[dict[str, Any]]:
    """:func:`account_row` for many accounts at once (the i-th of each sequence is one
    account), vectorised: at 10,000 accounts the per-row version took half a second.
    ``rounding`` rounds the named figures as the grid shows them. The rows come back ranked
    (:func:`ranked`'s order, decided on the unrounded figures). Same rules, same rows."""
    n = len(sites)
    if n == 0:
        return []

    def arr(values: Iterable[float | None]) -> np.ndarray:
        return np.array([np.nan if v is None else v for v in values], dtype=np.float64)

    has_vq = np.array([x.rows > 0 for x in vq])
    has_rel = np.array([x.rows > 0 for x in rel])
    monitored = np.array([x.monitored_min for x in vq], dtype=np.float64)
    out_min = np.array([x.over_min + x.under_min for x in vq], dtype=np.float64)
    channels = np.array([x.channels or 1.0 for x in vq], dtype=np.float64)
    outage_s = np.array([x.outage_s for x in rel], dtype=np.float64)
    outages = np.array([x.outages for x in rel], dtype=np.float64)
    seconds = np.asarray(period_s, dtype=np.float64)
    alerts = np.asarray(open_alerts, dtype=np.int64)
    with np.errstate(divide="ignore", invalid="ignore"):
        vqr = np.where(has_vq & (monitored > 0), (1.0 - out_min / monitored) * 100.0, np.nan)
        rs1 = np.where(has_rel & (seconds > 0), (1.0 - outage_s / seconds) * 100.0, np.nan)
        possible = seconds / 60.0 * channels
        coverage = np.where(has_vq & (possible > 0), monitored / possible * 100.0, np.nan)
    gap = vqr - arr(feeder_vqr)

    def short(values: np.ndarray, target: float) -> np.ndarray:
        return np.where(np.isnan(values), 0.0, np.maximum(0.0, target - values))

    score = (
        WEIGHT_VQR * short(vqr, vqr_target)
        + WEIGHT_RS1 * short(rs1, RS1_TARGET_PCT)
        + WEIGHT_ALERT * np.maximum(0, alerts)
        + WEIGHT_COVERAGE * short(np.where(np.isnan(coverage), 0.0, coverage), COVERAGE_TARGET_PCT)
    )

    def colour(values: np.ndarray, target: float, amber_pp: float) -> list[str | None]:
        out = np.select([values >= target, values >= target - amber_pp], [GREEN, AMBER], RED).astype(object)
        out[np.isnan(values)] = None
        return list(out)

    def figures(values: np.ndarray, key: str) -> list[float | None]:
        places = (rounding or {}).get(key)
        shown = np.round(values, places) if places is not None else values
        return [None if v != v else float(v) for v in shown.tolist()]

    rs1_rows = figures(rs1, "rs1_pct")
    cols: dict[str, list[Any]] = {
        "vqr_pct": figures(vqr, "vqr_pct"),
        "rs1_pct": rs1_rows,
        "outages": [int(o) if h else None for o, h in zip(outages.tolist(), has_rel.tolist(), strict=True)],
        "outage_min": [
            (round(o / 60.0, rounding["outage_min"]) if rounding and "outage_min" in rounding else o / 60.0)
            if h
            else None
            for o, h in zip(outage_s.tolist(), has_rel.tolist(), strict=True)
        ],
        "gap_pct": figures(gap, "gap_pct"),
        "coverage_pct": figures(coverage, "coverage_pct"),
        "score": figures(score, "score"),
        "attention": (score > 0).tolist(),
        "vqr_status": colour(vqr, vqr_target, VQR_AMBER_PP),
        "rs1_status": colour(rs1, RS1_TARGET_PCT, RS1_AMBER_PP),
        "coverage_status": colour(coverage, COVERAGE_TARGET_PCT, COVERAGE_AMBER_PP),
        "gap_status": colour(gap, GAP_TARGET_PP, GAP_AMBER_PP),
    }
    suffix = f"?{query}" if query else ""
    vqr_list, score_list = vqr.tolist(), score.tolist()
    order = sorted(
        range(n),
        key=lambda i: (
            -score_list[i],
            vqr_list[i] != vqr_list[i],
            0.0 if vqr_list[i] != vqr_list[i] else vqr_list[i],
            sites[i].id,
        ),
    )
    rows = []
    for i in order:
        site = sites[i]
        count = int(alerts[i])
        rows.append(
            {
                "site": site.id,
                "site_link": f"[{site.id}](/account/{site.id}{suffix})",
                "name": site.name,
                "feeder": site.feeder_id or "",
                "manager": site.manager or "",
                "voltage_kv": float(site.voltage_class_kv),
                "vqr_pct": cols["vqr_pct"][i],
                "rs1_pct": cols["rs1_pct"][i],
                "outages": cols["outages"][i],
                "outage_min": cols["outage_min"][i],
                "gap_pct": cols["gap_pct"][i],
                "coverage_pct": cols["coverage_pct"][i],
                "open_alerts": count,
                "score": cols["score"][i],
                "attention": cols["attention"][i],
                "vqr_status": cols["vqr_status"][i],
                "rs1_status": cols["rs1_status"][i],
                "coverage_status": cols["coverage_status"][i],
                "gap_status": cols["gap_status"][i],
                "alerts_status": alerts_status(count),
            }
        )
    return rows


def _chosen(values: object) -> set[str]:
    if isinstance(values, str):
        return {values} if values else set()
    if isinstance(values, list | tuple):
        return {str(v) for v in values if v is not None and v != ""}
    return set()


def any_filter(*values: object) -> bool:
    """True when any of the filters' values chooses something."""
    return any(_chosen(v) for v in values)


def voltage_label(kv: float) -> str:
    """A voltage class as a filter value: '10' for 10.0 kV, '0.38' for 380 V."""
    return f"{kv:g}"


def select_rows(
    rows: Iterable[dict[str, Any]], managers: object = None, feeders: object = None, classes: object = None
) -> list[dict[str, Any]]:
    """The rows matching every non-empty filter (an empty filter matches everything).

    Values come from the browser, so they only ever narrow the user's own rows.
    """
    want_m, want_f, want_c = _chosen(managers), _chosen(feeders), _chosen(classes)
    return [
        r
        for r in rows
        if (not want_m or r["manager"] in want_m)
        and (not want_f or r["feeder"] in want_f)
        and (not want_c or voltage_label(r["voltage_kv"]) in want_c)
    ]


def attention_only(rows: Iterable[dict[str, Any]], only: object) -> list[dict[str, Any]]:
    return [r for r in rows if r["attention"]] if only is True else list(rows)


def filter_options(sites: Iterable[Any]) -> dict[str, list[str]]:
    """Values offered by the manager, feeder and voltage-class filters (the user's own sites)."""
    sites = list(sites)
    return {
        "managers": sorted({s.manager for s in sites if s.manager}),
        "feeders": sorted({s.feeder_id for s in sites if s.feeder_id}),
        "classes": [voltage_label(kv) for kv in sorted({float(s.voltage_class_kv) for s in sites})],
    }


@dataclass(frozen=True)
class FleetFigures:
    accounts: int
    vqr_pct: float | None
    rs1_pct: float | None
    saifi: float | None
    saidi_min: float | None
    outages: int | None
    open_alerts: int


def interruption_table(outages: Sequence[tuple[str, int, float]]) -> pd.DataFrame:
    """:mod:`analysis.fleet`'s interruption table from (account, start_ms, duration_s)."""
    return pd.DataFrame(
        {
            "customer": [o[0] for o in outages],
            "start_ms": [int(o[1]) for o in outages],
            "duration_s": [float(o[2]) for o in outages],
        }
    ).astype({"customer": object, "start_ms": "int64", "duration_s": "float64"})


def fleet_figures(
    rows: Sequence[Mapping[str, Any]],
    vq: Mapping[str, VqSums],
    rel: Mapping[str, RelSums],
    period_s: Mapping[str, float],
    outages: Sequence[tuple[str, int, float]],
    open_alerts: int,
    period_h: float,
) -> FleetFigures:
    """Pooled figures over the accounts of ``rows`` (each key account is one customer).

    VQR: time-pooled over every account's monitored minutes (as the fleet report); RS-1:
    outage seconds over the accounts' monitored seconds (accounts with reliability roll-ups);
    SAIFI and SAIDI: :func:`analysis.fleet.fleet_indices` over the interruptions that began in
    the period. Unknown (None) when no account has the roll-up behind a figure.
    """
    ids = [str(r["site"]) for r in rows]
    n = len(ids)
    v = [vq[i] for i in ids if i in vq and vq[i].rows]
    r = [(rel[i], period_s.get(i, 0.0)) for i in ids if i in rel and rel[i].rows]
    pooled_vqr = (
        vqr_pct(sum(x.over_min for x in v), sum(x.under_min for x in v), sum(x.monitored_min for x in v))
        if v
        else None
    )
    pooled_rs1 = rs1_pct(sum(x.outage_s for x, _ in r), sum(s for _, s in r)) if r else None
    saifi = saidi = None
    if n and r and period_h > 0:
        mine = set(ids)
        indices = fleet.fleet_indices(interruption_table([o for o in outages if o[0] in mine]), n, period_h)
        saifi, saidi = indices.saifi, indices.saidi_min
    return FleetFigures(
        accounts=n,
        vqr_pct=pooled_vqr,
        rs1_pct=pooled_rs1,
        saifi=saifi,
        saidi_min=saidi,
        outages=int(sum(x.outages for x, _ in r)) if r else None,
        open_alerts=open_alerts,
    )


def feeder_rows(
    feeders: Iterable[Any], accounts: Iterable[Mapping[str, Any]], feeder_vqr: Mapping[str, float | None]
) -> list[dict[str, Any]]:
    """One row per feeder: supply-side VQR and the given accounts it supplies, by id."""
    on: dict[str, list[str]] = {}
    for row in accounts:
        if row["feeder"]:
            on.setdefault(str(row["feeder"]), []).append(str(row["site"]))
    out = []
    for f in feeders:
        ids = sorted(on.get(f.id, []))
        vqr = feeder_vqr.get(f.id)
        out.append(
            {
                "feeder": f.id,
                "name": f.name,
                "vqr_pct": vqr,
                "vqr_status": None,
                "accounts": len(ids),
                "account_ids": ", ".join(ids),
            }
        )
    return sorted(out, key=lambda r: (not _known(r["vqr_pct"]), r["vqr_pct"] or 0.0, r["feeder"]))


def cell_style(status_field: str) -> dict[str, Any]:
    """AG Grid ``cellStyle`` colouring a cell by the row's ``status_field`` (red/amber/green)."""
    return {
        "styleConditions": [
            {"condition": f"params.data && params.data.{status_field} === '{name}'", "style": style}
            for name, style in STATUS_STYLES.items()
        ]
    }
