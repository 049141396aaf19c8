"""Fleet reliability indices: IEEE 1366 with each key account as one customer, and DL/T 836.

IEEE 1366 (docs/definitions.md): an interruption table has one row per customer interruption,
columns ``customer``, ``start_ms`` (UTC ms), ``duration_s`` and optionally ``event`` (the id
of the reclosing sequence a momentary operation belongs to). An interruption lasting at
most ``momentary_max_s`` (5 min, so exactly 5 min is momentary, §3.1) is momentary, anything
longer is sustained. SAIDI-type figures are in minutes, as utilities report them.

Major event days (§3.3, 1366-2012 Annex B.2): daily SAIDI, zero days dropped, natural log,
α = mean, β = standard deviation (sample by default, decision D5), T_MED = exp(α + 2.5β);
a day whose SAIDI is strictly greater than T_MED is an MED. The daily SAIDI comes from up to
five years before the period; with too little stored history, from the period itself
(:func:`med_sample` decides, and the report says which).

DL/T 836 (docs/definitions.md): system indices AIHC-1/2/3, AITC-1 and RS-1/2/3 from events
with a cause (``fault``, ``planned``, ``external``, ``supply_shortage``), a user count and a
duration; short outages (<= 3 min, §2.2) are left out unless asked for (decision D4).

Replayed rows (same customer and start) count once, so a re-sent event changes nothing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import pandas as pd

from analysis.outages import DLT836_SHORT_S, IEEE1366_SHORT_S, Outage
from analysis.reliability import rs_system_pct

MOMENTARY_EVENT_WINDOW_S = 300.0  # reclosing operations within 5 min of the first are one event (§3.1)
MED_BETA_MULTIPLIER = 2.5
DLT836_CAUSES = ("fault", "planned", "external", "supply_shortage")
INTERRUPTION_COLUMNS = ("customer", "start_ms", "duration_s")


@dataclass(frozen=True)
class FleetIndices:
    """IEEE 1366 indices of one period (docs/definitions.md); None where the denominator is 0."""

    customers_served: int
    period_h: float
    customer_interruptions: int  # Σ N_i, sustained
    customer_minutes: float  # Σ r_i·N_i, sustained
    customers_interrupted: int  # CN
    momentary_operations: int  # Σ IM_i·N_mi
    momentary_events: int  # Σ IM_E·N_mi
    saifi: float
    saidi_min: float
    caidi_min: float | None
    caifi: float | None
    ctaidi_min: float | None
    asai: float
    maifi: float
    maifie: float


@dataclass(frozen=True)
class MedThreshold:
    """The 2.5β threshold and what it was computed from (docs/definitions.md)."""

    alpha: float
    beta: float
    t_med_min: float
    days_used: int  # non-zero SAIDI days
    ddof: int


@dataclass(frozen=True)
class MedSample:
    """The days whose daily SAIDI set T_MED: stored history before the period, or the period."""

    source: str  # "history" or "period"
    first: date
    last: date
    history_days: int  # stored history before the period, capped at the years asked for

    @property
    def days(self) -> int:
        return (self.last - self.first).days + 1


@dataclass(frozen=True)
class MedSplit:
    """IEEE 1366 reports every index with and without major event days (§3.3)."""

    med_days: tuple[date, ...]
    all_days: FleetIndices
    excluding_meds: FleetIndices


@dataclass(frozen=True)
class Dlt836Indices:
    """DL/T 836 system indices (docs/definitions.md); hours per user and %."""

    users: int
    period_h: float
    include_short: bool
    user_hours: float
    aihc1_h: float
    aihc2_h: float  # without external influence
    aihc3_h: float  # without system supply-shortage restriction
    aitc1: float
    rs1_pct: float
    rs2_pct: float
    rs3_pct: float
    aihc_planned_h: float  # scheduled (计划) outages only
    aihc_prearranged_h: float  # 预安排 = planned + supply-shortage restriction [R]
    aihc_fault_h: float  # 故障 = fault + external (an external fault)


def interruptions_from_outages(
    outages_by_customer: Mapping[str, Sequence[Outage]], now_ms: int
) -> pd.DataFrame:
    """The interruption table from each account's reconstructed outages (open ones end at ``now_ms``)."""
    rows = [
        (customer, o.start_ms, o.duration_s(now_ms))
        for customer, outages in outages_by_customer.items()
        for o in outages
    ]
    return pd.DataFrame(rows, columns=list(INTERRUPTION_COLUMNS)).astype(
        {"start_ms": np.int64, "duration_s": np.float64}
    )


def classify_interruptions(
    interruptions: pd.DataFrame,
    *,
    momentary_max_s: float = IEEE1366_SHORT_S,
    event_window_s: float = MOMENTARY_EVENT_WINDOW_S,
) -> pd.DataFrame:
    """Add ``momentary`` (duration <= threshold) and ``event_key`` (momentary event) columns.

    Without an ``event`` column, a customer's momentary operations that begin within
    ``event_window_s`` of the first operation of a sequence form one event (§3.1). Rows
    repeated for the same customer and start are a replay and collapse to one.
    """
    missing = [c for c in INTERRUPTION_COLUMNS if c not in interruptions]
    if missing:
        raise ValueError(f"interruption table lacks column(s) {missing}")
    df = (
        interruptions.drop_duplicates(subset=["customer", "start_ms"])
        .sort_values(["customer", "start_ms"], kind="stable")
        .reset_index(drop=True)
    )
    momentary = df["duration_s"].to_numpy(np.float64) <= momentary_max_s
    event_key = np.full(len(df), -1, dtype=np.int64)
    if "event" in df:
        codes = pd.factorize(pd.MultiIndex.from_arrays([df["customer"], df["event"]]))[0]
        event_key[momentary] = codes[momentary]
    else:
        event_key[momentary] = _sequence_events(
            df["customer"].to_numpy()[momentary],
            df["start_ms"].to_numpy(np.int64)[momentary],
            event_window_s,
        )
    return df.assign(momentary=momentary, event_key=event_key)


def _sequence_events(customers: np.ndarray, starts_ms: np.ndarray, window_s: float) -> np.ndarray:
    """Event number per momentary operation; input sorted by customer, then start."""
    keys = np.zeros(len(starts_ms), dtype=np.int64)
    key, first_ms, last_customer = -1, 0, None
    window_ms = window_s * 1000.0
    for i, (customer, start) in enumerate(zip(customers, starts_ms, strict=True)):
        if key < 0 or customer != last_customer or start - first_ms > window_ms:
            key, first_ms, last_customer = key + 1, int(start), customer
        keys[i] = key
    return keys


def fleet_indices(
    interruptions: pd.DataFrame,
    customers_served: int,
    period_h: float,
    *,
    momentary_max_s: float = IEEE1366_SHORT_S,
    event_window_s: float = MOMENTARY_EVENT_WINDOW_S,
) -> FleetIndices:
    """SAIFI, SAIDI, CAIDI, CAIFI, CTAIDI, ASAI, MAIFI and MAIFIe (docs/definitions.md, IEEE-1)."""
    df = classify_interruptions(interruptions, momentary_max_s=momentary_max_s, event_window_s=event_window_s)
    return _indices(df, customers_served, period_h)


def _indices(df: pd.DataFrame, customers_served: int, period_h: float) -> FleetIndices:
    if customers_served <= 0:
        raise ValueError("customers_served must be positive")
    sustained = df[~df["momentary"]]
    n_int = len(sustained)
    cust_min = float(sustained["duration_s"].sum()) / 60.0
    cn = int(sustained["customer"].nunique())
    ops = int(df["momentary"].sum())
    events = int(df.loc[df["momentary"], "event_key"].nunique())
    return FleetIndices(
        customers_served=customers_served,
        period_h=period_h,
        customer_interruptions=n_int,
        customer_minutes=cust_min,
        customers_interrupted=cn,
        momentary_operations=ops,
        momentary_events=events,
        saifi=n_int / customers_served,
        saidi_min=cust_min / customers_served,
        caidi_min=cust_min / n_int if n_int else None,
        caifi=n_int / cn if cn else None,
        ctaidi_min=cust_min / cn if cn else None,
        asai=1.0 - (cust_min / 60.0) / (customers_served * period_h),
        maifi=ops / customers_served,
        maifie=events / customers_served,
    )


def cemi_n(
    interruptions: pd.DataFrame,
    customers_served: int,
    n: int,
    *,
    momentary_max_s: float = IEEE1366_SHORT_S,
) -> float:
    """CEMI_n: share of customers with more than ``n`` sustained interruptions (strict ">", §3.2)."""
    df = classify_interruptions(interruptions, momentary_max_s=momentary_max_s)
    k = df.loc[~df["momentary"]].groupby("customer").size()
    return int((k > n).sum()) / customers_served


def cemsmi_n(
    interruptions: pd.DataFrame,
    customers_served: int,
    n: int,
    *,
    momentary_max_s: float = IEEE1366_SHORT_S,
    event_window_s: float = MOMENTARY_EVENT_WINDOW_S,
) -> float:
    """CEMSMI_n: share of customers with more than ``n`` sustained interruptions plus momentary events."""
    df = classify_interruptions(interruptions, momentary_max_s=momentary_max_s, event_window_s=event_window_s)
    sustained = df.loc[~df["momentary"]].groupby("customer").size()
    events = df.loc[df["momentary"]].groupby("customer")["event_key"].nunique()
    k = sustained.add(events, fill_value=0)
    return int((k > n).sum()) / customers_served


def celid_single(
    interruptions: pd.DataFrame,
    customers_served: int,
    threshold_s: float,
    *,
    inclusive: bool = True,
    momentary_max_s: float = IEEE1366_SHORT_S,
) -> float:
    """CELID-s: share of customers with one sustained interruption of at least ``threshold_s``.

    "≥" by default, ">" with ``inclusive=False``; the choice is [R] in docs/definitions.md
    """
    df = classify_interruptions(interruptions, momentary_max_s=momentary_max_s)
    longest = df.loc[~df["momentary"]].groupby("customer")["duration_s"].max()
    hit = longest >= threshold_s if inclusive else longest > threshold_s
    return int(hit.sum()) / customers_served


def celid_total(
    interruptions: pd.DataFrame,
    customers_served: int,
    threshold_s: float,
    *,
    inclusive: bool = True,
    momentary_max_s: float = IEEE1366_SHORT_S,
) -> float:
    """CELID-t: share of customers whose sustained interruptions add up to at least ``threshold_s``."""
    df = classify_interruptions(interruptions, momentary_max_s=momentary_max_s)
    total = df.loc[~df["momentary"]].groupby("customer")["duration_s"].sum()
    hit = total >= threshold_s if inclusive else total > threshold_s
    return int(hit.sum()) / customers_served


def local_start_day(start_ms: pd.Series | np.ndarray, tz: str) -> np.ndarray:
    """Local calendar day each interruption began on; a multi-day one accrues to that day (§3.1)."""
    stamps = pd.to_datetime(np.asarray(start_ms, dtype=np.int64), unit="ms", utc=True)
    return np.asarray(stamps.tz_convert(tz).date)


def daily_saidi_min(
    interruptions: pd.DataFrame,
    customers_served: int,
    tz: str,
    days: Sequence[date] | None = None,
    *,
    momentary_max_s: float = IEEE1366_SHORT_S,
) -> pd.Series:
    """SAIDI per local day in minutes (sustained only), indexed by date; 0 for a quiet day.

    Without ``days``, every day from the first to the last interruption is listed.
    """
    df = classify_interruptions(interruptions, momentary_max_s=momentary_max_s)
    sustained = df.loc[~df["momentary"]]
    by_day = (
        pd.Series(sustained["duration_s"].to_numpy(np.float64) / 60.0 / customers_served)
        .groupby(local_start_day(sustained["start_ms"], tz))
        .sum()
    )
    if days is None:
        if by_day.empty:
            return pd.Series(dtype=np.float64)
        days = pd.date_range(min(by_day.index), max(by_day.index), freq="D").date
    return by_day.reindex(list(days), fill_value=0.0).astype(np.float64)


def med_threshold(
    daily_saidi: Sequence[float] | np.ndarray | pd.Series, *, ddof: int = 1
) -> MedThreshold | None:
    """T_MED = exp(α + 2.5β) from up to five years of daily SAIDI (docs/definitions.md, MED-1).

    Zero days are discarded before the logarithm (Annex B.2 step b). ``ddof`` = 1 is the
    sample standard deviation (the default, D5), 0 the population one. None when fewer than
    ``ddof`` + 1 non-zero days leave β undefined.
    """
    values = np.asarray(daily_saidi, dtype=np.float64)
    positive = values[values > 0]
    if positive.size <= ddof:
        return None
    logs = np.log(positive)
    alpha = float(logs.mean())
    beta = float(logs.std(ddof=ddof))
    return MedThreshold(
        alpha=alpha,
        beta=beta,
        t_med_min=math.exp(alpha + MED_BETA_MULTIPLIER * beta),
        days_used=int(positive.size),
        ddof=ddof,
    )


def years_before(day: date, years: int) -> date:
    """The same calendar day ``years`` earlier; 29 February falls back to the 28th."""
    try:
        return day.replace(year=day.year - years)
    except ValueError:
        return day.replace(year=day.year - years, day=28)


def med_sample(
    day_from: date,
    day_to: date,
    first_data_day: date | None,
    *,
    min_history_days: int,
    history_years: int,
) -> MedSample:
    """Which days set T_MED for the period [day_from, day_to] (§3.3).

    IEEE 1366 takes the daily SAIDI of the five years before the period. History starts at
    ``first_data_day`` (the fleet's first roll-up; None: none before the period) and is
    capped at ``history_years``. With at least ``min_history_days`` of it, those days are the
    sample; with fewer, a threshold from them would be noise, so the period itself is used,
    as the best available and clearly weaker estimate.
    """
    earliest = years_before(day_from, history_years)
    if first_data_day is not None:
        earliest = max(earliest, first_data_day)
    history_days = max(0, (day_from - earliest).days) if first_data_day is not None else 0
    if history_days > 0 and history_days >= min_history_days:
        return MedSample("history", earliest, day_from - timedelta(days=1), history_days)
    return MedSample("period", day_from, day_to, history_days)


def major_event_days(daily_saidi: pd.Series, t_med_min: float) -> list[date]:
    """Days whose SAIDI is strictly greater than T_MED; a day exactly at T_MED is not an MED."""
    return [d for d, v in daily_saidi.items() if v > t_med_min]


def fleet_indices_med_split(
    interruptions: pd.DataFrame,
    customers_served: int,
    period_h: float,
    med_days: Sequence[date],
    tz: str,
    *,
    momentary_max_s: float = IEEE1366_SHORT_S,
    event_window_s: float = MOMENTARY_EVENT_WINDOW_S,
) -> MedSplit:
    """Every index with all days and with the MED days' interruptions removed (§3.3).

    All interruptions (momentary included) that began on an MED day leave the second set;
    the period length stays the same for ASAI.
    """
    df = classify_interruptions(interruptions, momentary_max_s=momentary_max_s, event_window_s=event_window_s)
    on_med = np.isin(local_start_day(df["start_ms"], tz), np.array(list(med_days), dtype=object))
    return MedSplit(
        med_days=tuple(sorted(med_days)),
        all_days=_indices(df, customers_served, period_h),
        excluding_meds=_indices(df[~on_med], customers_served, period_h),
    )


def dlt836_indices(
    events: pd.DataFrame,
    users: int,
    period_h: float,
    *,
    include_short: bool = False,
    short_s: float = DLT836_SHORT_S,
) -> Dlt836Indices:
    """DL/T 836 AIHC-1/2/3, AITC-1 and RS-1/2/3 from outage events (docs/definitions.md, REL-1).

    ``events`` has columns ``cause`` (one of ``DLT836_CAUSES``), ``users`` (n_i) and
    ``duration_s`` (t_i). Outages of at most ``short_s`` (3 min exactly is short) count only
    with ``include_short``: DL/T 836-2016 reports both variants (D4).
    """
    unknown = sorted(set(events["cause"]) - set(DLT836_CAUSES))
    if unknown:
        raise ValueError(f"unknown DL/T 836 cause(s) {unknown}; expected one of {DLT836_CAUSES}")
    if users <= 0 or period_h <= 0:
        raise ValueError("users and period_h must be positive")
    if "event_id" in events:
        events = events.drop_duplicates(subset=["event_id"])
    duration_s = events["duration_s"].to_numpy(np.float64)
    keep = np.ones(len(events), bool) if include_short else duration_s > short_s
    cause = events["cause"].to_numpy()[keep]
    n_i = events["users"].to_numpy(np.float64)[keep]
    user_hours = n_i * duration_s[keep] / 3600.0

    def per_user(*causes: str) -> float:
        return float(user_hours[np.isin(cause, causes)].sum()) / users

    total = float(user_hours.sum())
    external = float(user_hours[cause == "external"].sum())
    shortage = float(user_hours[cause == "supply_shortage"].sum())
    return Dlt836Indices(
        users=users,
        period_h=period_h,
        include_short=include_short,
        user_hours=total,
        aihc1_h=total / users,
        aihc2_h=(total - external) / users,
        aihc3_h=(total - shortage) / users,
        aitc1=float(n_i.sum()) / users,
        rs1_pct=rs_system_pct(total, users, period_h),
        rs2_pct=rs_system_pct(total - external, users, period_h),
        rs3_pct=rs_system_pct(total - shortage, users, period_h),
        aihc_planned_h=per_user("planned"),
        aihc_prearranged_h=per_user("planned", "supply_shortage"),
        aihc_fault_h=per_user("fault", "external"),
    )
