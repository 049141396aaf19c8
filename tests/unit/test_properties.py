"""Properties of the daily roll-up (analysis.rollup.rollup_site) under random readings and events.

- every VQR lies in [0, 100];
- rolling up day by day and summing gives the same minute counts and outage seconds as
  rolling up the whole period at once (events are handed to every call in full, since an
  outage may have begun before the day);
- shuffling rows, or replaying (duplicating) them, changes no figure.
"""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analysis.rollup import RollupPolicy, SiteSpec, rollup_site
from core.calendar import MINUTE_MS, day_start_ms
from core.limits import Limits

TZ = "Asia/Shanghai"
FIRST_DAY = date(2026, 3, 1)
SPEC = SiteSpec("S1", 1, 220.0, Limits(7.0, 10.0))
T0 = day_start_ms(FIRST_DAY, TZ)
VQ_COUNTS = ["monitored_min", "over_min", "under_min", "outage_min", "missing_min"]
REL_SECONDS = ["period_s", "outage_s"]
PROFILE = settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)

voltages = st.one_of(
    st.sampled_from([220.0, 235.4, 235.5, 198.0, 197.9, 260.0, 150.0, 15.0, 0.0]),
    st.floats(0.0, 300.0, allow_nan=False),
)
reading_rows = st.lists(
    st.tuples(st.integers(-30, 3 * 1440 + 30), voltages, st.sampled_from([60.0, 60.0, 60.0, 900.0])),
    max_size=120,
)
outage_rows = st.lists(
    st.tuples(
        st.integers(-600, 3 * 1440),  # start minute, from before the first day
        st.integers(0, 59),  # start second
        st.one_of(st.integers(0, 400), st.integers(0, 2 * 86_400)),  # duration in seconds
        st.booleans(),  # still open (no power_on)
    ),
    max_size=6,
)


@st.composite
def scenarios(draw):
    n_days = draw(st.integers(1, 3))
    rows = draw(reading_rows)
    readings = pd.DataFrame(
        {
            "time": np.array([T0 + m * MINUTE_MS for m, _, _ in rows], dtype=np.int64),
            "ua": np.array([v for _, v, _ in rows], dtype=np.float64),
            "interval_s": np.array([i for _, _, i in rows], dtype=np.float64),
        }
    )
    events: list[dict[str, object]] = []
    for k, (minute, second, duration, is_open) in enumerate(draw(outage_rows)):
        start = T0 + minute * MINUTE_MS + second * 1000
        events.append({"time": start, "type": "power_off", "event_id": f"off{k}"})
        if not is_open:
            events.append({"time": start + duration * 1000, "type": "power_on", "event_id": f"on{k}"})
    ev = pd.DataFrame(events, columns=["time", "type", "event_id"]).astype({"time": np.int64})
    days = [FIRST_DAY + timedelta(days=i) for i in range(n_days)]
    now = day_start_ms(days[-1] + timedelta(days=1), TZ) + 3_600_000
    return readings, ev, days, now


def _policy(as_under: bool = False) -> RollupPolicy:
    return RollupPolicy(TZ, outage_as_under=as_under)


@PROFILE
@given(scenarios(), st.booleans())
def test_vqr_stays_within_0_and_100(scenario, as_under):
    readings, events, days, now = scenario
    result = rollup_site(SPEC, readings, events, days, _policy(as_under), now)
    rates = result.vq["vqr_pct"].dropna().to_numpy(np.float64)
    assert ((rates >= 0.0) & (rates <= 100.0)).all()
    assert (result.vq["monitored_min"] >= result.vq["over_min"] + result.vq["under_min"]).all()


@PROFILE
@given(scenarios(), st.booleans())
def test_day_by_day_sums_equal_whole_period(scenario, as_under):
    readings, events, days, now = scenario
    whole = rollup_site(SPEC, readings, events, days, _policy(as_under), now)
    parts = [rollup_site(SPEC, readings, events, [d], _policy(as_under), now) for d in days]
    vq_parts = pd.concat([p.vq for p in parts], ignore_index=True)
    cols = [*VQ_COUNTS, "calendar_min"]
    pd.testing.assert_frame_equal(
        whole.vq.set_index(["day_ms", "phase"]).sort_index()[cols],
        vq_parts.set_index(["day_ms", "phase"]).sort_index()[cols],
    )
    rel_parts = pd.concat([p.rel for p in parts], ignore_index=True)
    pd.testing.assert_frame_equal(
        whole.rel.set_index("day_ms")[REL_SECONDS], rel_parts.set_index("day_ms")[REL_SECONDS]
    )
    assert whole.vq[VQ_COUNTS].sum().to_dict() == vq_parts[VQ_COUNTS].sum().to_dict()


def _canonical(result) -> tuple[pd.DataFrame, pd.DataFrame, list]:
    vq = result.vq.sort_values(["day_ms", "phase"]).reset_index(drop=True)
    rel = result.rel.sort_values("day_ms").reset_index(drop=True)
    return vq, rel, sorted(result.outages, key=lambda o: (o.start_ms, o.end_ms or -1))


@PROFILE
@given(scenarios(), st.randoms(use_true_random=False), st.floats(0.0, 1.0))
def test_shuffled_or_replayed_rows_change_nothing(scenario, rnd, replay_share):
    readings, events, days, now = scenario
    seed = rnd.randrange(2**32)
    base = _canonical(rollup_site(SPEC, readings, events, days, _policy(), now))

    def jumble(df: pd.DataFrame) -> pd.DataFrame:
        if df.empty:
            return df
        again = df.sample(frac=replay_share, random_state=seed)
        return pd.concat([df, again]).sample(frac=1.0, random_state=seed + 1).reset_index(drop=True)

    jumbled = _canonical(rollup_site(SPEC, jumble(readings), jumble(events), days, _policy(), now))
    pd.testing.assert_frame_equal(base[0], jumbled[0])
    pd.testing.assert_frame_equal(base[1], jumbled[1])
    assert base[2] == jumbled[2]


def _low_across_midnight() -> tuple[pd.DataFrame, pd.DataFrame, list[date], int]:
    """Readings at 0 V from 23:58 to 00:02: a 4-minute interruption seen only in the readings."""
    minutes = np.arange(2 * 1440)
    volts = np.full(minutes.size, 220.0)
    volts[1438:1442] = 0.0
    readings = pd.DataFrame({"time": T0 + minutes * MINUTE_MS, "ua": volts, "interval_s": 60.0})
    events = pd.DataFrame({"time": np.zeros(0, np.int64), "type": [], "event_id": []})
    return readings, events, [FIRST_DAY, FIRST_DAY + timedelta(days=1)], T0 + 3 * 86_400_000


def test_reading_outage_across_midnight_minutes_agree():
    readings, events, days, now = _low_across_midnight()
    whole = rollup_site(SPEC, readings, events, days, _policy(), now)
    parts = [rollup_site(SPEC, readings, events, [d], _policy(), now) for d in days]
    assert whole.rel["outage_s"].tolist() == [p.rel["outage_s"].iloc[0] for p in parts] == [120.0, 120.0]


def test_reading_outage_across_midnight_counts_agree():
    readings, events, days, now = _low_across_midnight()
    whole = rollup_site(SPEC, readings, events, days, _policy(), now)
    parts = pd.concat([rollup_site(SPEC, readings, events, [d], _policy(), now).rel for d in days])
    cols = ["short_s", "outages_short", "outages_sustained"]
    assert whole.rel[cols].sum().to_dict() == parts[cols].sum().to_dict()


def test_replayed_sub_minute_reading_changes_nothing():
    readings = pd.DataFrame({"time": [T0, T0 + 30_000], "ua": [230.0, 240.0], "interval_s": 30.0})
    events = pd.DataFrame({"time": np.zeros(0, np.int64), "type": [], "event_id": []})
    now = T0 + 2 * 86_400_000
    once = rollup_site(SPEC, readings, events, [FIRST_DAY], _policy(), now).vq
    twice = rollup_site(
        SPEC, pd.concat([readings, readings.iloc[[1]]]), events, [FIRST_DAY], _policy(), now
    ).vq
    pd.testing.assert_frame_equal(once, twice)
