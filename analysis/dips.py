"""Dips and swells of a site as stored by the collector: one row per event id.

Shared by the account page's ITIC chart and the monthly report, so both plot the same points.
"""

from __future__ import annotations

import pandas as pd

from core.lineproto import quote_literal
from core.store import InfluxStore

MAX_EVENTS = 5000  # a chart of more points says nothing more; the counts are in pq_daily
COLUMNS = ["time", "type", "duration_s", "level_pct"]


def query_dips(store: InfluxStore, site_id: str, start_ms: int, end_ms: int) -> pd.DataFrame:
    """Dips and swells (columns time, type, duration_s, level_pct), oldest first.

    ``level_pct`` is the residual voltage of a dip and the magnitude of a swell, in % of nominal.
    A replayed event (same id) counts once; events without a duration or level are left out,
    since they cannot be placed on a curve.
    """
    df = store.query_frame(
        "SELECT duration_ms, residual_pct, magnitude_pct, event_id FROM event"
        f" WHERE site = {quote_literal(site_id)} AND time >= {int(start_ms)}ms AND time < {int(end_ms)}ms"
        f" AND (type = 'dip' OR type = 'swell') GROUP BY type LIMIT {MAX_EVENTS}",
        tag_columns=["type"],
    )
    if df.empty:
        return pd.DataFrame(columns=COLUMNS)
    for col in ("duration_ms", "residual_pct", "magnitude_pct", "event_id"):
        if col not in df:
            df[col] = None
    df = df.sort_values("time").drop_duplicates(subset=["event_id"], keep="first")
    level = df["residual_pct"].where(df["type"] == "dip", df["magnitude_pct"])
    out = pd.DataFrame(
        {
            "time": df["time"].astype("int64"),
            "type": df["type"].astype(str),
            "duration_s": pd.to_numeric(df["duration_ms"], errors="coerce") / 1000.0,
            "level_pct": pd.to_numeric(level, errors="coerce"),
        }
    )
    out = out[(out["duration_s"] > 0) & out["level_pct"].notna()]
    return out.reset_index(drop=True)[COLUMNS]
