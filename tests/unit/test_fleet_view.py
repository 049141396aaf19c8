"""The overview's rules (dashboard.fleet_view, dashboard.period_choice): ranking, colours, filters,
pooled figures and periods, each checked against numbers worked out by hand."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import pytest

from dashboard import fleet_view as fv
from dashboard.period_choice import choose_period
from dashboard.periods import PeriodError

DAY_S = 86_400.0
MONTH_S = 30 * DAY_S


@dataclass(frozen=True)
class FakeSite:
    id: str
    name: str = "n"
    feeder_id: str | None = "F1"
    manager: str | None = "mgr"
    voltage_class_kv: float = 10.0


def row(
    site: str,
    *,
    over: float = 0.0,
    outage_s: float = 0.0,
    alerts: int = 0,
    monitored: float = 3 * 43_200,
    feeder_vqr: float | None = None,
    **kw: object,
) -> dict[str, object]:
    vq = fv.VqSums(monitored_min=monitored, over_min=over, channels=3.0, rows=1) if monitored else fv.VqSums()
    rel = fv.RelSums(outage_s=outage_s, outages=1.0 if outage_s else 0.0, rows=1)
    return fv.account_row(FakeSite(site, **kw), vq, rel, MONTH_S, feeder_vqr, alerts, 99.0, "from=a&to=b")  # type: ignore[arg-type]


def test_score_is_the_documented_sum() -> None:
    # The docstring's example: 5 + 20 + 10 + 2.5.
    assert fv.attention_score(98.5, 99.7, 90.0, 2, 99.0) == pytest.approx(37.5)
    assert fv.attention_score(99.5, 99.95, 99.0, 0, 99.0) == 0.0
    # No data: only the coverage shortfall counts, 0.5 x 95.
    assert fv.attention_score(None, None, None, 0, 99.0) == pytest.approx(47.5)


def test_ranking_is_not_vqr_alone() -> None:
    low_vqr = row("A1", over=3 * 43_200 * 0.005)  # VQR 99.5: meets the 99 target
    outage = row("A2", outage_s=3600.0)  # VQR 100 but RS-1 99.861: 100 x 0.039 = 3.9 points
    alerts = row("A3", alerts=1)  # 5 points
    fine = row("A4")
    silent = row("A5", monitored=0)  # no data: 47.5 points
    order = [r["site"] for r in fv.ranked([fine, low_vqr, alerts, outage, silent])]
    assert order == ["A5", "A3", "A2", "A1", "A4"]  # A1 and A4 tie at 0: lower VQR first
    assert [r["attention"] for r in fv.ranked([fine, outage])] == [True, False]


def test_ties_go_to_the_lower_vqr_then_the_id() -> None:
    a = {"site": "B", "score": 0.0, "vqr_pct": 99.5}
    b = {"site": "A", "score": 0.0, "vqr_pct": 99.9}
    c = {"site": "C", "score": 0.0, "vqr_pct": None}
    d = {"site": "D", "score": 0.0, "vqr_pct": 99.5}
    assert [r["site"] for r in fv.ranked([c, b, d, a])] == ["B", "D", "A", "C"]


def test_colours_against_targets() -> None:
    assert fv.status(99.0, 99.0, 1.0) == "green"
    assert fv.status(98.0, 99.0, 1.0) == "amber"
    assert fv.status(97.99, 99.0, 1.0) == "red"
    assert fv.status(None, 99.0, 1.0) is None
    assert fv.status(float("nan"), 99.0, 1.0) is None
    r = row("A1", outage_s=3 * 3600.0, alerts=2, feeder_vqr=100.0, over=3 * 43_200 * 0.015)
    assert r["vqr_status"] == "amber"  # 98.5
    assert r["rs1_status"] == "red"  # 99.583 < 99.8
    assert row("A2", outage_s=3600.0)["rs1_status"] == "amber"  # 99.861
    assert r["coverage_status"] == "green"
    assert r["gap_status"] == "red"  # 98.5 - 100 = -1.5, beyond the 1-point band
    assert row("A3", feeder_vqr=100.5)["gap_status"] == "amber"  # 100 - 100.5
    assert r["alerts_status"] == "red"


def test_row_figures_and_link() -> None:
    r = row("A7", over=3 * 43_200 * 0.02, outage_s=1800.0, feeder_vqr=99.5, monitored=3 * 43_200 * 0.9)
    assert r["site_link"] == "[A7](/account/A7?from=a&to=b)"
    assert r["vqr_pct"] == pytest.approx(100 * (1 - 0.02 / 0.9))
    assert r["rs1_pct"] == pytest.approx(100 * (1 - 1800 / MONTH_S))
    assert r["coverage_pct"] == pytest.approx(90.0)
    assert r["gap_pct"] == pytest.approx(r["vqr_pct"] - 99.5)
    assert r["outages"] == 1 and r["outage_min"] == pytest.approx(30.0)
    style = fv.cell_style("vqr_status")["styleConditions"]
    assert {c["condition"] for c in style} == {
        f"params.data && params.data.vqr_status === '{s}'" for s in ("red", "amber", "green")
    }


def test_filters_only_narrow() -> None:
    rows = [
        row("A1", manager="ann", feeder_id="F1", voltage_class_kv=10.0),
        row("A2", manager="bob", feeder_id="F2", voltage_class_kv=0.38, alerts=1),
        row("A3", manager="bob", feeder_id=None, voltage_class_kv=10.0),
    ]
    ids = lambda rs: [r["site"] for r in rs]  # noqa: E731
    assert ids(fv.select_rows(rows)) == ["A1", "A2", "A3"]
    assert ids(fv.select_rows(rows, managers=["bob"])) == ["A2", "A3"]
    assert ids(fv.select_rows(rows, managers=["bob"], classes=["10"])) == ["A3"]
    assert ids(fv.select_rows(rows, feeders=["F1", "F2"], classes=["0.38"])) == ["A2"]
    assert ids(fv.select_rows(rows, managers=["nobody"])) == []
    assert ids(fv.attention_only(rows, True)) == ["A2"]
    assert ids(fv.attention_only(rows, None)) == ["A1", "A2", "A3"]
    assert fv.any_filter([], None, "") is False and fv.any_filter([], ["x"]) is True
    opts = fv.filter_options(
        [FakeSite("A1", manager="bob", voltage_class_kv=0.38), FakeSite("A2", feeder_id=None)]
    )
    assert opts == {"managers": ["bob", "mgr"], "feeders": ["F1"], "classes": ["0.38", "10"]}


def test_pooled_figures() -> None:
    vq = {
        "A1": fv.VqSums(monitored_min=1000, over_min=10, rows=1),
        "A2": fv.VqSums(monitored_min=3000, over_min=0, under_min=30, rows=1),
        "A3": fv.VqSums(),
    }
    rel = {"A1": fv.RelSums(outage_s=600, outages=1, rows=1), "A2": fv.RelSums(rows=1)}
    period = {"A1": MONTH_S, "A2": MONTH_S / 2, "A3": MONTH_S}
    outages = [("A1", 1_700_000_000_000, 600.0), ("A1", 1_700_000_100_000, 60.0), ("Z9", 1, 9999.0)]
    rows = [{"site": s} for s in ("A1", "A2", "A3")]
    f = fv.fleet_figures(rows, vq, rel, period, outages, 4, 720.0)
    assert f.vqr_pct == pytest.approx(100 * (1 - 40 / 4000))
    assert f.rs1_pct == pytest.approx(100 * (1 - 600 / (1.5 * MONTH_S)))
    # Sustained (> 5 min) only, over three accounts; Z9 is not one of them.
    assert f.saifi == pytest.approx(1 / 3) and f.saidi_min == pytest.approx(10 / 3)
    assert f.outages == 1 and f.open_alerts == 4 and f.accounts == 3
    empty = fv.fleet_figures([{"site": "A3"}], vq, rel, period, [], 0, 720.0)
    assert (empty.vqr_pct, empty.rs1_pct, empty.saifi, empty.outages) == (None, None, None, None)


def test_feeder_rows() -> None:
    rows = [row("A2", feeder_id="F1"), row("A1", feeder_id="F1"), row("A3", feeder_id="F2")]
    feeders = [FakeSite("F1", name="One"), FakeSite("F2", name="Two"), FakeSite("F3", name="Three")]
    out = fv.feeder_rows(feeders, rows, {"F1": 99.9, "F2": 98.0, "F3": None})
    assert [(r["feeder"], r["accounts"], r["account_ids"]) for r in out] == [
        ("F2", 1, "A3"),
        ("F1", 2, "A1, A2"),
        ("F3", 0, ""),
    ]


def test_periods() -> None:
    now = date(2025, 3, 14)
    assert choose_period("today", None, now) == (now, now)
    assert choose_period("month", None, now) == (date(2025, 3, 1), now)
    assert choose_period(None, None, now) == (date(2025, 3, 1), now)
    assert choose_period("last_month", None, now) == (date(2025, 2, 1), date(2025, 2, 28))
    assert choose_period("last_month", None, date(2025, 1, 5)) == (date(2024, 12, 1), date(2024, 12, 31))
    assert choose_period("custom", ["2025-01-02", "2025-01-09"], now) == (date(2025, 1, 2), date(2025, 1, 9))
    with pytest.raises(PeriodError):
        choose_period("custom", ["2025-01-02", None], now)


def test_the_vectorised_rows_are_the_reference_rows_ranked() -> None:
    """account_rows (fast, for 10,000 accounts) gives exactly account_row's rows, ranked."""
    import random
    from types import SimpleNamespace

    from dashboard.fleet_view import RelSums, VqSums, account_row, account_rows, ranked

    rng = random.Random(7)
    sites, vqs, rels, secs, fvqr, alerts = [], [], [], [], [], []
    for i in range(300):
        sites.append(
            SimpleNamespace(
                id=f"S{i:03d}",
                name=f"Site {i}",
                feeder_id=rng.choice([None, "F1", "F2"]),
                manager=rng.choice([None, "m1"]),
                voltage_class_kv=rng.choice([10.0, 0.38]),
            )
        )
        has = rng.random() > 0.1
        monitored = rng.choice([0.0, 4000.0, 4320.0])
        vqs.append(
            VqSums(monitored, rng.choice([0.0, 5.0, 90.0]), rng.choice([0.0, 30.0]), 3.0, int(has))
            if rng.random() > 0.05
            else VqSums()
        )
        rels.append(
            RelSums(rng.choice([0.0, 600.0, 9000.0]), rng.choice([0.0, 1.0, 3.0]), int(rng.random() > 0.1))
        )
        secs.append(rng.choice([0.0, 86400.0, 2592000.0]))
        fvqr.append(rng.choice([None, 98.0, 99.9]))
        alerts.append(rng.choice([0, 0, 1, 3]))
    reference = ranked(
        account_row(sites[i], vqs[i], rels[i], secs[i], fvqr[i], alerts[i], 99.0, "from=1")
        for i in range(300)
    )
    fast = account_rows(sites, vqs, rels, secs, fvqr, alerts, 99.0, "from=1")
    assert [r["site"] for r in fast] == [r["site"] for r in reference]
    for a, b in zip(fast, reference, strict=True):
        assert a.keys() == b.keys()
        for key in a:
            if isinstance(b[key], float):
                assert a[key] == pytest.approx(b[key], rel=1e-12, abs=1e-9), (a["site"], key)
            else:
                assert a[key] == b[key], (a["site"], key)
    rounded = account_rows(
        sites, vqs, rels, secs, fvqr, alerts, 99.0, "", rounding={"vqr_pct": 3, "score": 2}
    )
    assert [r["site"] for r in rounded] == [r["site"] for r in reference]  # ranked before rounding
    assert all(r["vqr_pct"] is None or round(r["vqr_pct"], 3) == r["vqr_pct"] for r in rounded)
