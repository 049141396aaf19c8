"""Figure builders of the account and feeder pages: pure functions of data frames and report dicts.

Nothing here queries: the pages fetch (see :mod:`dashboard.trend`) and pass the data in, so
every rule of the charts (a missing bucket is a gap, never a line; no chart sends more than
:data:`MAX_POINTS` values; outages are shaded spans) is tested without a server.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
import plotly.io as pio

from analysis.curves import (
    ITIC_FIRST_S,
    itic_lower_pct,
    itic_upper_pct,
    semi_f47_required_pct,
)
from dashboard.i18n import _, num, when

MAX_POINTS = 5000  # values one chart may send to the browser, all traces together
RESERVED_POINTS = 50  # legend entries and other small traces beside the data
STATS = ("min", "mean", "max")
PHASE_FIELDS = ("ua", "ub", "uc")
LINE_FIELDS = ("uab", "ubc", "uca")
SQRT3 = math.sqrt(3.0)
# Bucket lengths a trend may use, shortest first (seconds).
NICE_BUCKETS_S = (60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800, 604800)
COLOURS = {
    "ua": "#d4a017",
    "ub": "#2e8b57",
    "uc": "#c0392b",
    "uab": "#d4a017",
    "ubc": "#2e8b57",
    "uca": "#c0392b",
}
FILLS = {
    "ua": "rgba(212,160,23,0.22)",
    "ub": "rgba(46,139,87,0.22)",
    "uc": "rgba(192,57,43,0.22)",
    "uab": "rgba(212,160,23,0.22)",
    "ubc": "rgba(46,139,87,0.22)",
    "uca": "rgba(192,57,43,0.22)",
}
SPAN_COLOURS = {
    "planned": "rgba(52,120,200,0.20)",
    "unplanned": "rgba(200,40,40,0.22)",
    "short": "rgba(230,140,20,0.28)",
    "open": "rgba(120,0,0,0.30)",
}
SILENT_COLOUR = "rgba(120,120,120,0.18)"
SPAN_KINDS = ("unplanned", "planned", "short", "open")
LAYOUT = {
    "template": "plotly_white",
    "margin": {"l": 60, "r": 20, "t": 50, "b": 50},
    "legend": {"orientation": "h", "y": -0.2},
}


# -- figures as plain dicts ------------------------------------------------------------------
Figure = dict[str, Any]


@functools.cache
def _template() -> dict[str, Any]:
    template: dict[str, Any] = pio.templates["plotly_white"].to_plotly_json()
    return template


def scatter(**props: Any) -> dict[str, Any]:
    return {"type": "scatter", **props}


class Fig:
    """The few plotly.graph_objects.Figure methods the pages use, building a plain dict.

    Validating graph objects costs hundreds of milliseconds for a trend; a dict costs none
    and is what dcc.Graph receives in the end anyway.
    """

    def __init__(self) -> None:
        self.data: list[dict[str, Any]] = []
        self.layout: dict[str, Any] = {"template": _template(), "shapes": [], "annotations": []}

    def add_trace(self, trace: dict[str, Any]) -> None:
        self.data.append(trace)

    def add_vrect(self, x0: Any, x1: Any, fillcolor: str) -> None:
        self.layout["shapes"].append(
            {
                "type": "rect",
                "xref": "x",
                "yref": "paper",
                "x0": x0,
                "x1": x1,
                "y0": 0,
                "y1": 1,
                "fillcolor": fillcolor,
                "line": {"width": 0},
                "layer": "below",
            }
        )

    def add_hline(self, y: float, text: str = "") -> None:
        self.layout["shapes"].append(
            {
                "type": "line",
                "xref": "paper",
                "x0": 0,
                "x1": 1,
                "yref": "y",
                "y0": y,
                "y1": y,
                "line": {"dash": "dash", "color": "#555", "width": 1},
            }
        )
        if text:
            self.add_annotation(
                text=text, xref="paper", x=0, xanchor="left", yref="y", y=y, yanchor="bottom", showarrow=False
            )

    def add_annotation(self, **props: Any) -> None:
        self.layout["annotations"].append(props)

    def update_layout(self, **props: Any) -> None:
        self.layout.update(props)

    def to_dict(self) -> Figure:
        return {"data": self.data, "layout": self.layout}


# -- nominal voltages ------------------------------------------------------------------------
@dataclass(frozen=True)
class Nominal:
    """A site's nominal voltage on the primary side and as its meter reports it."""

    line_v: float | None  # primary line-to-line (None for a single-phase supply)
    phase_v: float  # primary phase-to-neutral
    metered_v: float  # the meter's nominal, phase-to-neutral, in the meter's units
    ratio: float  # primary / metered: 1 when the meter reads primary values

    @property
    def secondary(self) -> bool:
        """True when the meter reports voltage-transformer (PT) secondary values."""
        return abs(self.ratio - 1.0) > 0.2


def primary_nominal(voltage_class_kv: float, phases: int, metered_v: float) -> Nominal:
    """The primary nominal of the voltage class, beside what the meter calls nominal.

    A three-phase class names the line voltage (10 kV: 5.77 kV phase-to-neutral); a
    single-phase class names the phase voltage (0.22 kV). A 10 kV account metered at
    57.74 V phase-to-neutral is on a PT secondary with ratio 100.
    """
    if phases >= 3:
        line_v: float | None = voltage_class_kv * 1000.0
        phase_v = voltage_class_kv * 1000.0 / SQRT3
    else:
        line_v, phase_v = None, voltage_class_kv * 1000.0
    ratio = phase_v / metered_v if metered_v > 0 else 1.0
    return Nominal(line_v, phase_v, metered_v, ratio)


def volts(value: float | None, decimals: int = 2) -> str:
    """A voltage in V below 1 kV, in kV above (a whole number of kV without decimals)."""
    if value is None or not math.isfinite(value):
        return num(None)
    if abs(value) >= 1000:
        kv = value / 1000.0
        return num(kv, 0 if round(kv, 6).is_integer() else decimals) + " kV"
    return num(value, decimals) + " V"


# -- buckets and gaps ------------------------------------------------------------------------
def bucket_seconds(span_ms: int, series: int, max_points: int = MAX_POINTS - RESERVED_POINTS) -> int:
    """The shortest nice bucket that keeps ``series`` traces of the span within ``max_points``.

    With gaps marked by one break per missing run (see :func:`with_breaks`), a trace never
    has more values than the span has buckets, so this bounds the chart.
    """
    series = max(1, series)
    for bucket in NICE_BUCKETS_S:
        if math.ceil(max(span_ms, 1) / (bucket * 1000)) * series <= max_points:
            return bucket
    return max(NICE_BUCKETS_S[-1], math.ceil(max(span_ms, 1) * series / max_points / 1000))


def bucket_text(seconds: int) -> str:
    if seconds % 86400 == 0:
        return _("%(n)s d", n=seconds // 86400)
    if seconds % 3600 == 0:
        return _("%(n)s h", n=seconds // 3600)
    return _("%(n)s min", n=max(1, seconds // 60))


def with_breaks(df: pd.DataFrame, step_ms: int, columns: Sequence[str]) -> pd.DataFrame:
    """``df`` (sorted ``time`` in ms, one row per bucket with data) with a row of nulls put in
    wherever one or more buckets are missing, so a line stops there instead of bridging.

    The null row takes the time of the first missing bucket; each missing run adds one row
    in place of at least one bucket, so the rows never outnumber the buckets of the span.
    """
    if df.empty:
        return df.loc[:, ["time", *columns]].copy() if set(columns) <= set(df.columns) else df
    times = df["time"].to_numpy(np.int64)
    jumps = np.flatnonzero(np.diff(times) > step_ms)
    if not len(jumps):
        return df.reset_index(drop=True)
    breaks = pd.DataFrame({"time": times[jumps] + step_ms})
    for col in columns:
        breaks[col] = np.nan
    out = pd.concat([df, breaks], ignore_index=True)
    return out.sort_values("time", kind="stable").reset_index(drop=True)


def local_times(ms: Iterable[int] | pd.Series, tz: str) -> list[str]:
    """UTC epoch ms -> local wall-clock times as plotly draws them without shifting."""
    series = pd.Series(list(ms) if not isinstance(ms, pd.Series) else ms, dtype="int64")
    local = pd.to_datetime(series, unit="ms", utc=True).dt.tz_convert(tz)
    return list(local.dt.strftime("%Y-%m-%dT%H:%M:%S"))


def _ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso).timestamp() * 1000)


def figure_points(fig: Figure) -> int:
    """Values the figure sends: every y (or x when a trace has no y) of every trace."""
    total = 0
    for trace in fig["data"]:
        values = trace.get("y")
        if values is None:
            values = trace.get("x")
        total += len(values) if values is not None else 0
    return total


# -- outages ---------------------------------------------------------------------------------
def outage_kind(outage: dict[str, Any]) -> str:
    """How an outage is drawn: open, short, planned or unplanned (in that order of precedence)."""
    if outage.get("open"):
        return "open"
    if outage.get("length") == "short":
        return "short"
    return "planned" if outage.get("cause") == "planned" else "unplanned"


def outage_spans(
    outages: Sequence[dict[str, Any]], start_ms: int, end_ms: int, now_ms: int
) -> list[dict[str, Any]]:
    """Each outage of a report's ``outage_list`` as a span in UTC ms, clipped to the chart.

    An open outage runs to now (or the end of the chart, whichever is first).
    """
    spans = []
    for outage in outages:
        start = _ms(outage["start"])
        end = _ms(outage["end"]) if outage.get("end") else min(now_ms, end_ms)
        start, end = max(start, start_ms), min(end, end_ms)
        if end <= start:
            continue
        spans.append({"start_ms": start, "end_ms": end, "kind": outage_kind(outage)})
    return spans


def span_label(kind: str) -> str:
    return {
        "planned": _("Outage (planned)"),
        "unplanned": _("Outage (unplanned)"),
        "short": _("Short interruption"),
        "open": _("Outage (still open)"),
        "silent": _("Silent meter"),
    }.get(kind, kind)


def add_spans(fig: Fig, spans: Sequence[dict[str, Any]], tz: str) -> None:
    """Shaded vertical spans, one legend entry per kind present."""
    kinds = []
    for span in spans:
        x0, x1 = local_times([span["start_ms"], span["end_ms"]], tz)
        colour = SPAN_COLOURS.get(span["kind"], SILENT_COLOUR)
        fig.add_vrect(x0, x1, colour)
        if span["kind"] not in kinds:
            kinds.append(span["kind"])
    for kind in kinds:
        fig.add_trace(
            scatter(
                x=[None],
                y=[None],
                mode="markers",
                marker={"symbol": "square", "size": 12, "color": SPAN_COLOURS.get(kind, SILENT_COLOUR)},
                name=span_label(kind),
                hoverinfo="skip",
            )
        )


# -- voltage trend ---------------------------------------------------------------------------
def trend_fields(df: pd.DataFrame) -> tuple[str, ...]:
    """Phase voltages when the meter sends them, else line voltages (as the roll-up judges)."""
    for fields in (PHASE_FIELDS, LINE_FIELDS):
        present = tuple(f for f in fields if f"mean_{f}" in df and df[f"mean_{f}"].notna().any())
        if present:
            return present
    return ()


def field_label(field: str) -> str:
    return "U" + field[1:]


def _values(series: pd.Series) -> list[float | None]:
    return [None if pd.isna(v) else round(float(v), 4) for v in series]


def envelope_figure(
    df: pd.DataFrame,
    *,
    bucket_s: int,
    tz: str,
    band: tuple[float, float] | None,
    spans: Sequence[dict[str, Any]] = (),
    title: str = "",
    x_range: list[str] | None = None,
) -> Figure:
    """Min/mean/max per phase per bucket, the limit band and shaded outages.

    ``df``: one row per bucket with data (columns ``time`` in UTC ms and ``min_ua``,
    ``mean_ua``, ``max_ua``, ... as :func:`dashboard.trend.query_envelope` returns). A
    bucket without data is a gap in every line and in the shaded envelope.
    """
    fig = Fig()
    fields = trend_fields(df)
    columns = [f"{s}_{f}" for f in fields for s in STATS]
    data = with_breaks(df.sort_values("time"), bucket_s * 1000, columns) if len(df) else df
    x = local_times(data["time"], tz) if len(data) else []
    for field in fields:
        label = field_label(field)
        fig.add_trace(
            scatter(
                x=x,
                y=_values(data[f"max_{field}"]),
                mode="lines",
                line={"width": 0, "color": COLOURS[field]},
                name=_("%(phase)s max", phase=label),
                legendgroup=field,
                showlegend=False,
                connectgaps=False,
                hovertemplate="%{y:.2f}<extra>" + _("%(phase)s max", phase=label) + "</extra>",
            )
        )
        fig.add_trace(
            scatter(
                x=x,
                y=_values(data[f"min_{field}"]),
                mode="lines",
                line={"width": 0, "color": COLOURS[field]},
                fill="tonexty",
                fillcolor=FILLS[field],
                name=_("%(phase)s min–max", phase=label),
                legendgroup=field,
                connectgaps=False,
                hovertemplate="%{y:.2f}<extra>" + _("%(phase)s min", phase=label) + "</extra>",
            )
        )
        fig.add_trace(
            scatter(
                x=x,
                y=_values(data[f"mean_{field}"]),
                mode="lines",
                line={"width": 1.4, "color": COLOURS[field]},
                name=_("%(phase)s mean", phase=label),
                legendgroup=field,
                connectgaps=False,
            )
        )
    if band is not None:
        lower, upper = band
        for value, text in (
            (upper, _("upper limit %(value)s V", value=num(upper, 2))),
            (lower, _("lower limit %(value)s V", value=num(lower, 2))),
        ):
            fig.add_hline(value, text)
    add_spans(fig, spans, tz)
    fig.update_layout(
        **LAYOUT,
        title={"text": title, "font": {"size": 15}},
        height=440,
        xaxis={"title": {"text": _("Local time (%(tz)s)", tz=tz)}, **({"range": x_range} if x_range else {})},
        yaxis={"title": {"text": _("Voltage (V)")}},
    )
    return fig.to_dict()


def side_by_side_figure(
    sides: Sequence[tuple[str, pd.DataFrame, float, int, str]],
    *,
    tz: str,
    band_pct: tuple[float, float] | None,
    x_range: list[str] | None = None,
) -> Figure:
    """The mean voltage per phase of the customer and of its feeder, each in % of its own
    nominal, on one axis: where the lines part is what the last mile costs. ``sides``: (name,
    envelope frame, nominal V, bucket s, line dash) each; a missing bucket is a gap."""
    fig = Fig()
    for name, df, nominal, bucket_s, dash in sides:
        if df.empty or not nominal:
            continue
        fields = trend_fields(df)
        data = with_breaks(df.sort_values("time"), bucket_s * 1000, [f"mean_{f}" for f in fields])
        x = local_times(data["time"], tz)
        for field in fields:
            scale = nominal * (SQRT3 if field in LINE_FIELDS else 1.0)
            fig.add_trace(
                scatter(
                    x=x,
                    y=_values((data[f"mean_{field}"] / scale - 1.0) * 100.0),
                    mode="lines",
                    line={"width": 1.3, "color": COLOURS[field], "dash": dash},
                    name=f"{name} {field_label(field)}",
                    connectgaps=False,
                )
            )
    if band_pct is not None:
        lower, upper = band_pct
        fig.add_hline(upper, _("upper limit %(value)s %%", value=num(upper, 1)))
        fig.add_hline(lower, _("lower limit %(value)s %%", value=num(lower, 1)))
    fig.update_layout(
        **LAYOUT,
        title={"text": _("Customer and feeder: mean voltage, deviation from nominal"), "font": {"size": 15}},
        height=340,
        xaxis={"title": {"text": _("Local time (%(tz)s)", tz=tz)}, **({"range": x_range} if x_range else {})},
        yaxis={"title": {"text": _("Deviation from nominal")}, "ticksuffix": " %"},
    )
    return fig.to_dict()


def duration_curve_figure(df: pd.DataFrame, nominal_v: float | None, band_pct: tuple[float, float]) -> Figure:
    """Voltage duration curve: each phase's bucket means in % of nominal, highest first,
    against the share of buckets; the limits as dashed lines."""
    fig = Fig()
    fields = trend_fields(df)
    if not fields or not nominal_v:
        return empty_figure(_("No readings in this period."))
    for field in fields:
        nominal = nominal_v * (SQRT3 if field in LINE_FIELDS else 1.0)
        values = df[f"mean_{field}"].dropna().to_numpy(np.float64) / nominal * 100.0
        if not len(values):
            continue
        ordered = np.sort(values)[::-1]
        share = np.arange(len(ordered)) / max(1, len(ordered) - 1) * 100.0
        fig.add_trace(
            scatter(
                x=np.round(share, 3).tolist(),
                y=np.round(ordered, 3).tolist(),
                mode="lines",
                name=field_label(field),
                line={"color": COLOURS[field], "width": 1.6},
            )
        )
    lower_pct, upper_pct = band_pct
    for value in (100.0 + upper_pct, 100.0 - lower_pct):
        fig.add_hline(value)
    fig.update_layout(
        **LAYOUT,
        title={"text": _("Voltage duration curve (bucket means)"), "font": {"size": 15}},
        height=360,
        xaxis={"title": {"text": _("Share of time at or above (%)")}},
        yaxis={"title": {"text": _("Voltage relative to nominal (%)")}},
    )
    return fig.to_dict()


# -- outage timeline and list ----------------------------------------------------------------
def outage_timeline_figure(spans: Sequence[dict[str, Any]], tz: str, start_ms: int, end_ms: int) -> Figure:
    """One bar per outage on a lane per kind, over the period."""
    if not spans:
        return empty_figure(_("No outages in this period."))
    fig = Fig()
    for kind in SPAN_KINDS:
        mine = [s for s in spans if s["kind"] == kind]
        if not mine:
            continue
        xs: list[Any] = []
        ys: list[Any] = []
        for span in mine:
            x0, x1 = local_times([span["start_ms"], span["end_ms"]], tz)
            xs += [x0, x1, None]
            ys += [span_label(kind), span_label(kind), None]
        fig.add_trace(
            scatter(
                x=xs,
                y=ys,
                mode="lines+markers",
                line={"width": 14, "color": SPAN_COLOURS[kind].replace("0.2", "0.8").replace("0.3", "0.9")},
                marker={"size": 4},
                name=span_label(kind),
                connectgaps=False,
            )
        )
    window = local_times([start_ms, end_ms], tz)
    fig.update_layout(
        **LAYOUT,
        title={"text": _("Outage timeline"), "font": {"size": 15}},
        height=240,
        xaxis={"range": window, "title": {"text": _("Local time (%(tz)s)", tz=tz)}},
        showlegend=False,
    )
    return fig.to_dict()


def end_source_text(source: object) -> str:
    return {
        "event": _("power-on record"),
        "readings": _("readings"),
        "inferred": _("inferred (next power-off)"),
    }.get(str(source), num(None) if source is None else str(source))


def cause_text(cause: object) -> str:
    return {"planned": _("planned"), "unplanned": _("unplanned")}.get(str(cause), _("unknown"))


def length_text(length: object) -> str:
    return {"short": _("short"), "sustained": _("sustained")}.get(str(length), num(None))


def duration_text(seconds: object) -> str:
    if not isinstance(seconds, int | float) or not math.isfinite(seconds):
        return num(None)
    total = int(round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def outage_rows(outages: Sequence[dict[str, Any]], tz: str) -> list[dict[str, Any]]:
    """Rows of the outage grid, from a report's ``outage_list``."""
    rows = []
    for o in outages:
        rows.append(
            {
                "start": when(_ms(o["start"]), tz, seconds=True),
                "end": when(_ms(o["end"]), tz, seconds=True) if o.get("end") else _("open"),
                "duration": duration_text(o.get("duration_s")),
                "duration_s": o.get("duration_s"),
                "cause": cause_text(o.get("cause")),
                "length": length_text(o.get("length")),
                "status": _("open") if o.get("open") else _("closed"),
                "end_source": _("still open") if o.get("open") else end_source_text(o.get("end_source")),
                "start_source": end_source_text(o.get("start_source")),
                "continued": _("began before the period") if o.get("continued") else "",
            }
        )
    return rows


# -- silent periods --------------------------------------------------------------------------
def silent_periods(
    bucket_times_ms: Sequence[int],
    bucket_s: int,
    interval_s: float,
    start_ms: int,
    end_ms: int,
    min_intervals: int = 3,
) -> list[tuple[int, int]]:
    """Stretches without readings longer than ``min_intervals`` reporting intervals.

    ``bucket_times_ms``: starts of the buckets holding at least one reading (sorted). A
    stretch runs from the end of a bucket with data to the start of the next one, so it is
    known to within one bucket; the period's ends count as edges. A bucket's readings are taken
    to cover one interval past its start (a 15-minute value at 23:45 covers up to midnight).
    """
    step = bucket_s * 1000
    covers = max(step, int(interval_s * 1000))  # a bucket's last reading reaches this far at most
    shortest = max(min_intervals * interval_s * 1000, step)
    edges = [start_ms - covers, *[int(t) for t in bucket_times_ms if start_ms - covers < t < end_ms], end_ms]
    out = []
    for before, after in zip(edges, edges[1:], strict=False):
        gap_start, gap_end = max(before + covers, start_ms), min(after, end_ms)
        if gap_end - gap_start > shortest:
            out.append((gap_start, gap_end))
    return out


# -- dips and swells -------------------------------------------------------------------------
def _log_grid(lo: float, hi: float, n: int) -> np.ndarray:
    return np.logspace(math.log10(lo), math.log10(hi), n)


def itic_figure(events: pd.DataFrame) -> Figure:
    """Dips and swells (magnitude in % of nominal against duration) on the ITIC and SEMI F47 curves.

    ``events``: columns ``type`` (dip or swell), ``duration_s``, ``level_pct`` and ``time``
    (UTC ms); empty draws the curves with a note.
    """
    grid = _log_grid(ITIC_FIRST_S, 100.0, 400)
    steps = np.array([0.001, 0.003, 0.02, 0.5, 10.0])
    t = np.unique(np.concatenate([grid, steps, steps * 1.0000001]))
    fig = Fig()
    fig.add_trace(
        scatter(
            x=t.tolist(),
            y=np.round(itic_upper_pct(t), 3).tolist(),
            mode="lines",
            name=_("ITIC upper curve"),
            line={"color": "#444", "width": 1.5},
        )
    )
    fig.add_trace(
        scatter(
            x=t.tolist(),
            y=np.round(itic_lower_pct(t), 3).tolist(),
            mode="lines",
            name=_("ITIC lower curve"),
            line={"color": "#444", "width": 1.5, "dash": "dot"},
        )
    )
    semi_t = t[(t >= 0.05) & (t <= 1.0)]
    fig.add_trace(
        scatter(
            x=semi_t.tolist(),
            y=np.round(semi_f47_required_pct(semi_t), 3).tolist(),
            mode="lines",
            name=_("SEMI F47 curve"),
            line={"color": "#3478c8", "width": 1.5, "dash": "dash"},
        )
    )
    for kind, label, colour in (("dip", _("Dips"), "#c0392b"), ("swell", _("Swells"), "#d4a017")):
        mine = events[events["type"] == kind] if len(events) else events
        if len(mine):
            fig.add_trace(
                scatter(
                    x=mine["duration_s"].round(4).tolist(),
                    y=mine["level_pct"].round(2).tolist(),
                    mode="markers",
                    name=label,
                    marker={"color": colour, "size": 7, "opacity": 0.8},
                )
            )
    fig.update_layout(
        **LAYOUT,
        title={"text": _("Dips and swells on the ITIC and SEMI F47 curves"), "font": {"size": 15}},
        height=380,
        xaxis={"type": "log", "title": {"text": _("Duration (s)")}},
        yaxis={"title": {"text": _("Voltage relative to nominal (%)")}, "range": [0, 220]},
    )
    if not len(events):
        fig.add_annotation(
            text=_("No dips or swells recorded in this period."),
            showarrow=False,
            xref="paper",
            yref="paper",
            x=0.5,
            y=0.5,
            font={"size": 14},
        )
    return fig.to_dict()


def empty_figure(text: str = "") -> Figure:
    fig = Fig()
    fig.update_layout(
        height=200,
        xaxis={"visible": False},
        yaxis={"visible": False},
        annotations=[{"text": text, "showarrow": False, "font": {"size": 14}}] if text else [],
    )
    return fig.to_dict()
