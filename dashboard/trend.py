"""Per-phase voltage trend of one site: an InfluxDB aggregate query and its plotly figure.

The store does the averaging (GROUP BY time), so the dashboard never pulls raw months.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from analysis.limits import validate_limits
from core.lineproto import quote_literal
from core.registry import Site
from core.store import InfluxStore
from dashboard.i18n import _

PHASES = ("ua", "ub", "uc")
# (longest period in days, bucket): about a thousand points per phase at most.
BUCKETS = ((10, "15m"), (62, "1h"), (10_000, "6h"))
COLOURS = {"ua": "#d4a017", "ub": "#2e8b57", "uc": "#c0392b"}


def bucket_for(days: int) -> str:
    return next(bucket for limit, bucket in BUCKETS if days <= limit)


def query_trend(
    store: InfluxStore, site_id: str, start_ms: int, end_ms: int, bucket: str
) -> dict[str, pd.DataFrame]:
    """meter id -> frame of bucket means (columns time, ua, ub, uc; time in UTC ms)."""
    select = ", ".join(f"mean({p}) AS {p}" for p in PHASES)
    q = (
        f"SELECT {select} FROM reading WHERE site = {quote_literal(site_id)} "
        f"AND time >= {int(start_ms)}ms AND time < {int(end_ms)}ms "
        f"GROUP BY time({bucket}), meter fill(none)"
    )
    return {str(df.attrs["tags"].get("meter", "")): df for df in store.query(q)}


def trend_figure(site: Site, frames: dict[str, pd.DataFrame], tz: str, bucket: str) -> go.Figure:
    """Phase voltages per meter, with the site's limit band as two dashed lines per nominal."""
    fig = go.Figure()
    limits = validate_limits(site.voltage_class_kv, site.phases, site.upper_pct, site.lower_pct)
    nominals = {m.meter_id: m.nominal_v for m in site.meters}
    several = len(frames) > 1
    for meter_id, df in sorted(frames.items()):
        x = pd.to_datetime(df["time"], unit="ms", utc=True).dt.tz_convert(tz).dt.tz_localize(None)
        for phase in PHASES:
            if phase not in df or df[phase].isna().all():
                continue
            label = "U" + phase[1]
            fig.add_trace(
                go.Scatter(
                    x=x,
                    y=df[phase],
                    mode="lines",
                    name=f"{meter_id} {label}" if several else label,
                    line={"width": 1.4, "color": None if several else COLOURS[phase]},
                )
            )
    for nominal in sorted({nominals[m] for m in frames if m in nominals}):
        lower, upper = limits.band(nominal)
        for value, text in (
            (upper, _("upper limit %(value)s V", value=f"{upper:.2f}")),
            (lower, _("lower limit %(value)s V", value=f"{lower:.2f}")),
        ):
            fig.add_hline(
                y=value,
                line={"dash": "dash", "color": "#555", "width": 1},
                annotation_text=text,
                annotation_position="top left",
            )
    fig.update_layout(
        template="plotly_white",
        title={"text": _("Phase voltages (mean per %(bucket)s)", bucket=bucket), "font": {"size": 15}},
        margin={"l": 60, "r": 20, "t": 50, "b": 50},
        height=420,
        legend={"orientation": "h", "y": -0.18},
        xaxis_title=_("Local time (%(tz)s)", tz=tz),
        yaxis_title=_("Voltage (V)"),
    )
    return fig


def empty_figure(text: str = "") -> go.Figure:
    fig = go.Figure()
    fig.update_layout(
        template="plotly_white",
        height=200,
        xaxis={"visible": False},
        yaxis={"visible": False},
        annotations=[{"text": text, "showarrow": False, "font": {"size": 14}}] if text else [],
    )
    return fig
