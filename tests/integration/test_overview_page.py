"""The overview callback through the real app (HTTP, CSRF, session) on a real InfluxDB and
SQLite registry: a manager gets exactly the assigned accounts, ranked by the needs-attention
rule, and pooled figures that match sums worked out here from the data written."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from werkzeug.serving import make_server

from analysis.alerts.state import FIRING, AlertRow
from core.calendar import day_start_ms
from core.lineproto import line
from core.registry import Registry
from core.servers import LocalInflux, free_port
from core.settings import load_settings
from core.store import InfluxStore
from dashboard.app import create_app
from dashboard.periods import today
from tests.browser.support import PASSWORD, requests_login

pytestmark = pytest.mark.integration

TZ = "Asia/Shanghai"
FULL = 3 * 1440  # channel-minutes of a day
# site -> (feeder, over_min per day, outage seconds on the 2nd)
SITES = {"A1": ("F1", 86, 0.0), "A2": ("F1", 0, 10_800.0), "A3": ("F2", 0, 0.0), "A4": ("F2", 400, 0.0)}
OUTPUTS = (
    ("overview-cards", "children"),
    ("overview-grid", "rowData"),
    ("overview-feeders", "rowData"),
    ("overview-message", "children"),
    ("overview-custom-box", "style"),
)


def last_month() -> list[date]:
    first_this = today(TZ).replace(day=1)
    last = first_this - timedelta(days=1)
    return [last.replace(day=d) for d in range(1, last.day + 1)]


def registry_rows() -> list[tuple[int, dict[str, str]]]:
    base = {"voltage_class_kv": "10", "phases": "3", "nominal_v": "57.74", "upper_pct": "", "lower_pct": ""}
    rows = []
    for n, f in enumerate(("F1", "F2")):
        rows.append(
            (
                n + 2,
                {
                    **base,
                    "site_id": f,
                    "site_kind": "feeder",
                    "name": f"Feeder {f}",
                    "meter_id": f"{f}-M",
                    "profile": "gb",
                    "feeder_id": "",
                    "manager": "",
                },
            )
        )
    for n, (s, (f, _, _)) in enumerate(SITES.items()):
        rows.append(
            (
                n + 4,
                {
                    **base,
                    "site_id": s,
                    "site_kind": "account",
                    "name": f"Account {s}",
                    "meter_id": f"{s}-M",
                    "profile": "gb",
                    "feeder_id": f,
                    "manager": "mgr",
                },
            )
        )
    return rows


def lines(days: list[date]) -> list[str]:
    out = []
    for d in days:
        ts = day_start_ms(d, TZ)
        for s, (_, over, outage_s) in {**SITES, "F1": ("", 0, 0.0), "F2": ("", 0, 0.0)}.items():
            out.append(
                line(
                    "vq_daily",
                    {"site": s, "phase": "all"},
                    {
                        "monitored_min": FULL,
                        "over_min": over,
                        "under_min": 0,
                        "calendar_min": 1440,
                        "channels": 3,
                        "outage_min": 0,
                        "missing_min": 0,
                    },
                    ts,
                )
            )
            lost = outage_s if d.day == 2 else 0.0
            out.append(
                line(
                    "rel_daily",
                    {"site": s},
                    {
                        "outage_s": lost,
                        "short_s": 0.0,
                        "outages_sustained": 1 if lost else 0,
                        "outages_short": 0,
                    },
                    ts,
                )
            )
            if lost:
                start = ts + 3_600_000
                out.append(
                    line(
                        "outage",
                        {"site": s},
                        {
                            "start_ms": start,
                            "end_ms": start + int(lost * 1000),
                            "duration_s": lost,
                            "open": False,
                            "cause": "unplanned",
                            "length": "sustained",
                            "valid": True,
                        },
                        start,
                    )
                )
    return out


@pytest.fixture(scope="module")
def base_url(influx: LocalInflux, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data_dir: Path = tmp_path_factory.mktemp("overview")
    settings = load_settings(
        {
            "PQMON_INFLUX_URL": influx.url,
            "PQMON_INFLUX_DB": "pqmon_overview",
            "PQMON_REGISTRY_URL": f"sqlite:///{data_dir / 'registry.db'}",
            "PQMON_DATA_DIR": str(data_dir),
            "PQMON_TZ": TZ,
            "PQMON_LANG": "en",
        }
    )
    registry = Registry(settings.registry_url)
    registry.upsert_rows(registry_rows())
    registry.add_user("mgr1", "manager", PASSWORD, ["A1", "A2", "A3"])
    with registry._session.begin() as s:
        for site in ("A3", "A4"):  # A4's alert is not the manager's
            s.add(
                AlertRow(
                    rule="voltage",
                    site_id=site,
                    phase="a",
                    severity="warning",
                    state=FIRING,
                    started_ms=1,
                    opened_ms=1,
                    last_seen_ms=1,
                )
            )
    store = InfluxStore.from_settings(settings)
    store.ensure_database()
    store.write(lines(last_month()))
    app = create_app(settings, registry=registry, store=store)
    server = make_server("127.0.0.1", free_port(), app.server, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(10)
    store.close()
    registry.close()


def call(base: str, period: str, managers: list[str] | None = None) -> dict[str, Any]:
    http, resp = requests_login(base, "mgr1", PASSWORD)
    assert resp.status_code == 302
    http.get(base + "/", timeout=30)
    payload = {
        "output": ".." + "...".join(f"{i}.{p}" for i, p in OUTPUTS) + "..",
        "outputs": [{"id": i, "property": p} for i, p in OUTPUTS],
        "inputs": [
            {"id": "overview-period", "property": "value", "value": period},
            {"id": "overview-custom", "property": "value", "value": None},
            {"id": "overview-manager", "property": "value", "value": managers or []},
            {"id": "overview-feeder", "property": "value", "value": []},
            {"id": "overview-class", "property": "value", "value": []},
            {"id": "overview-attention", "property": "checked", "value": False},
        ],
        "changedPropIds": ["overview-period.value"],
    }
    got = http.post(
        base + "/_dash-update-component",
        json=payload,
        headers={"X-CSRFToken": http.cookies["_csrf_token"]},
        timeout=60,
    )
    assert got.status_code == 200, got.text[:300]
    response: dict[str, Any] = got.json()["response"]
    return response


def find(node: Any, component_id: str) -> Any:
    if isinstance(node, dict):
        if node.get("props", {}).get("id") == component_id:
            return node["props"]["children"]
        return next((f for v in node.values() if (f := find(v, component_id)) is not None), None)
    if isinstance(node, list):
        return next((f for v in node if (f := find(v, component_id)) is not None), None)
    return None


def test_manager_gets_assigned_accounts_ranked_with_pooled_figures(base_url: str) -> None:
    out = call(base_url, "last_month")
    rows = out["overview-grid"]["rowData"]
    # A4 is not assigned: not listed. A2: RS-1 shortfall (3 h out) ~ 31.7 points; A1: VQR
    # 100 x (1 - 86/4320) = 98.01, 9.9 points; A3: one open alert, 5 points.
    assert [r["site"] for r in rows] == ["A2", "A1", "A3"]
    assert [r["open_alerts"] for r in rows] == [0, 0, 1]
    days = len(last_month())
    period_s = days * 86_400
    assert rows[0]["rs1_pct"] == pytest.approx(100 * (1 - 10_800 / period_s), abs=1e-4)
    assert rows[1]["vqr_pct"] == pytest.approx(100 * (1 - 86 / FULL), abs=1e-3)
    assert rows[1]["gap_pct"] == pytest.approx(100 * (1 - 86 / FULL) - 100, abs=1e-3)
    assert all(r["coverage_pct"] == pytest.approx(100.0) for r in rows)

    cards = out["overview-cards"]["children"]
    pooled_vqr = 100 * (1 - 86 * days / (3 * FULL * days))
    pooled_rs1 = 100 * (1 - 10_800 / (3 * period_s))
    assert find(cards, "overview-vqr") == f"{pooled_vqr:.2f} %"
    assert find(cards, "overview-rs1") == f"{pooled_rs1:.3f} %"
    assert find(cards, "overview-saifi") == f"{1 / 3:.3f}"
    assert find(cards, "overview-saidi") == f"{180 / 3:.1f}"
    assert find(cards, "overview-outages") == "1"
    assert find(cards, "overview-alerts") == "1"
    # Feeders of the manager's accounts only, with their accounts.
    feeders = {f["feeder"]: f["account_ids"] for f in out["overview-feeders"]["rowData"]}
    assert feeders == {"F1": "A1, A2", "F2": "A3"}


def test_filters_narrow_but_never_widen(base_url: str) -> None:
    out = call(base_url, "last_month", managers=["mgr", "someone-else"])
    assert sorted(r["site"] for r in out["overview-grid"]["rowData"]) == ["A1", "A2", "A3"]
    out = call(base_url, "last_month", managers=["nobody"])
    assert out["overview-grid"]["rowData"] == []
