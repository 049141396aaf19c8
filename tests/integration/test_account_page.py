"""The account and feeder pages through the real app: a real InfluxDB, a SQLite registry and
the dashboard served from a thread, called the way dash-renderer calls it (HTTP POST to
/_dash-update-component with the CSRF token of a logged-in session).

Each test compares what the page sends with :func:`analysis.report.site_report` of the data
written here, or proves a refusal leaks nothing of the other account.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import requests
from werkzeug.serving import BaseWSGIServer, make_server

from analysis.alerts.notices import NoticeBook
from analysis.report import site_report
from core.calendar import day_start_ms
from core.lineproto import line
from core.registry import Registry
from core.servers import LocalInflux, free_port
from core.settings import load_settings
from core.store import InfluxStore
from dashboard.app import create_app
from dashboard.charts import MAX_POINTS
from dashboard.i18n import pct
from dashboard.periods import today
from tests.browser.support import requests_login

pytestmark = pytest.mark.integration

TZ = "Asia/Shanghai"
PASSWORD = "correct-horse-9"
FORBIDDEN = "Not found or not permitted."
WAIT_S = 30
# site -> (kind, name, feeder, minutes over the upper limit on phase a in the day)
SITES = {
    "F01": ("feeder", "North Feeder Nine", "", 30),
    "F02": ("feeder", "South Feeder Two", "", 0),
    "A001": ("account", "Alpha Foods Ltd", "F01", 9),
    "A002": ("account", "Beta Steel Works", "F01", 90),
    "A003": ("account", "Gamma Glassworks", "F02", 45),
}
MONITORED = 1200  # per phase per day
PERF_DAYS = 30


@dataclass(frozen=True)
class Env:
    url: str
    registry: Registry
    store: InfluxStore
    data_day: date
    perf_from: date
    perf_to: date

    @property
    def period(self) -> tuple[date, date]:
        return self.data_day - timedelta(days=3), self.data_day + timedelta(days=1)


def registry_rows() -> list[tuple[int, dict[str, str]]]:
    rows = []
    for n, (site_id, (kind, name, feeder, _over)) in enumerate(SITES.items(), start=2):
        rows.append(
            (
                n,
                {
                    "site_id": site_id,
                    "site_kind": kind,
                    "name": name,
                    "voltage_class_kv": "10",
                    "phases": "3",
                    "meter_id": f"M{site_id}",
                    "nominal_v": "57.74",
                    "upper_pct": "",
                    "lower_pct": "",
                    "profile": "gb",
                    "feeder_id": feeder,
                    "manager": "",
                },
            )
        )
    return rows


def rollups(day: date, site_id: str, over_a: int, outage_s: float = 0.0, short_s: float = 0.0) -> list[str]:
    ts = day_start_ms(day, TZ)
    lines = []
    for phase in ("a", "b", "c"):
        over = over_a if phase == "a" else 0
        lines.append(
            line(
                "vq_daily",
                {"site": site_id, "phase": phase},
                {
                    "monitored_min": MONITORED,
                    "over_min": over,
                    "under_min": 0,
                    "outage_min": int(outage_s // 60),
                    "missing_min": 1440 - MONITORED,
                    "dev_sum_pct": 0.5 * MONITORED,
                },
                ts,
            )
        )
    lines.append(
        line(
            "vq_daily",
            {"site": site_id, "phase": "all"},
            {
                "monitored_min": 3 * MONITORED,
                "over_min": over_a,
                "under_min": 0,
                "outage_min": int(outage_s // 60),
                "missing_min": 1440 - MONITORED,
                "calendar_min": 1440,
                "channels": 3,
                "dev_sum_pct": 1.5 * MONITORED,
            },
            ts,
        )
    )
    lines.append(
        line(
            "rel_daily",
            {"site": site_id},
            {
                "outage_s": outage_s,
                "short_s": short_s,
                "outages_sustained": 1 if outage_s > short_s else 0,
                "outages_short": 1 if short_s else 0,
                "outages_open": 0,
                "planned_s": 0.0,
                "unplanned_s": outage_s,
            },
            ts,
        )
    )
    return lines


def outage(site_id: str, start_ms: int, seconds: float, length: str, end_source: str) -> str:
    return line(
        "outage",
        {"site": site_id},
        {
            "start_ms": start_ms,
            "end_ms": start_ms + int(seconds * 1000),
            "duration_s": float(seconds),
            "open": False,
            "cause": "unplanned",
            "length": length,
            "source": "readings",
            "start_source": "readings",
            "end_source": end_source,
            "valid": True,
        },
        start_ms,
    )


def minute_readings(site_id: str, start_ms: int, minutes: int, skip: range = range(0)) -> list[str]:
    lines = []
    for i in range(minutes):
        if i in skip:
            continue
        wobble = (i % 60 - 30) * 0.02
        lines.append(
            line(
                "reading",
                {
                    "site": site_id,
                    "meter": f"M{site_id}",
                    "side": "supply" if site_id[0] == "F" else "customer",
                },
                {"ua": 57.9 + wobble, "ub": 57.6 - wobble, "uc": 58.1 + wobble / 2, "interval_s": 60.0},
                start_ms + i * 60_000,
            )
        )
    return lines


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    influx = LocalInflux(tmp_path_factory.mktemp("influx")).start()
    data_dir: Path = tmp_path_factory.mktemp("pqmon")
    settings = load_settings(
        {
            "PQMON_INFLUX_URL": influx.url,
            "PQMON_INFLUX_DB": "pqmon_account_page",
            "PQMON_REGISTRY_URL": f"sqlite:///{data_dir / 'registry.db'}",
            "PQMON_DATA_DIR": str(data_dir),
            "PQMON_TZ": TZ,
            "PQMON_LANG": "en",
        }
    )
    registry = Registry(settings.registry_url)
    registry.upsert_rows(registry_rows())
    registry.add_user("cust1", "customer", PASSWORD, ["A001"])
    registry.add_user("cust2", "customer", PASSWORD, ["A002"])
    registry.add_user("ops", "operator", PASSWORD)
    contacts = data_dir / "contacts.csv"
    contacts.write_text(
        "site_id,name,phone,email,robot_url,robot_secret,lang\n"
        "A001,Li Wei,13800000001,li.wei@alpha.example,,,zh-CN\n"
        "A002,Zhang Min,13800000002,zhang.min@beta.example,,,zh-CN\n"
    )
    registry.import_contacts(contacts)
    ahead = datetime.now(UTC).replace(tzinfo=None, microsecond=0) + timedelta(days=2)
    NoticeBook(registry).register("F01", ahead, ahead + timedelta(hours=3), "transformer swap")  # covers A001
    registry.add_planned_outage("A001", ahead - timedelta(days=9), ahead - timedelta(days=8), "long past")
    store = InfluxStore.from_settings(settings)
    store.ensure_database()

    data_day = today(TZ) - timedelta(days=3)
    day0 = day_start_ms(data_day, TZ)
    lines: list[str] = []
    for site_id, (_kind, _name, _feeder, over) in SITES.items():
        if site_id == "A001":
            lines += rollups(data_day, site_id, over, outage_s=2730.0, short_s=30.0)
        else:
            lines += rollups(data_day, site_id, over)
    # A001: an outage 12:30-13:15 ended by inference, a 30-second one at 18:00 ended by its record.
    lines.append(outage("A001", day0 + 750 * 60_000, 2700, "sustained", "inferred"))
    lines.append(outage("A001", day0 + 1080 * 60_000, 30, "short", "event"))
    # A001: one-minute readings all day but 12:00-14:00; F01 all day.
    lines += minute_readings("A001", day0, 1440, skip=range(720, 840))
    lines += minute_readings("F01", day0, 1440)
    # A001: a dip to 60 % for 0.1 s and a swell to 130 % for 10 ms (the dip sent twice).
    for meter_ts, ev_type, fields in (
        (day0 + 3_600_000, "dip", {"event_id": "d1", "residual_pct": 60.0, "duration_ms": 100.0}),
        (day0 + 3_600_000, "dip", {"event_id": "d1", "residual_pct": 60.0, "duration_ms": 100.0}),
        (day0 + 7_200_000, "swell", {"event_id": "s1", "magnitude_pct": 130.0, "duration_ms": 10.0}),
    ):
        lines.append(line("event", {"site": "A001", "meter": "MA001", "type": ev_type}, fields, meter_ts))
    lines.append(
        line(
            "event",
            {"site": "A002", "meter": "MA002", "type": "dip"},
            {"event_id": "b1", "residual_pct": 41.0, "duration_ms": 333.0},
            day0,
        )
    )
    store.write(lines)

    # A003: 30 days of one-minute three-phase readings and roll-ups, for the timing test.
    perf_to = data_day - timedelta(days=5)
    perf_from = perf_to - timedelta(days=PERF_DAYS - 1)
    perf: list[str] = []
    for n in range(PERF_DAYS):
        day = perf_from + timedelta(days=n)
        perf += rollups(day, "A003", 45)
        perf += minute_readings("A003", day_start_ms(day, TZ), 1440)
        if len(perf) > 20_000:
            store.write(perf)
            perf = []
    store.write(perf)

    app = create_app(settings, registry=registry, store=store)
    server: BaseWSGIServer = make_server("127.0.0.1", free_port(), app.server, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="dashboard", daemon=True)
    thread.start()
    yield Env(f"http://127.0.0.1:{server.server_port}", registry, store, data_day, perf_from, perf_to)
    server.shutdown()
    thread.join(10)
    server.server_close()
    store.close()
    registry.close()
    influx.stop()


class Client:
    """A logged-in session that calls callbacks as dash-renderer does."""

    def __init__(self, base: str, name: str) -> None:
        self.base = base
        self.http, resp = requests_login(base, name, PASSWORD)
        assert resp.status_code == 302
        assert self.http.get(base + "/", timeout=WAIT_S).status_code == 200  # sets the CSRF cookie

    def call(
        self,
        outputs: list[tuple[str, str]],
        inputs: list[tuple[str, str, Any]],
        state: list[tuple[str, str, Any]],
    ) -> requests.Response:
        single = len(outputs) == 1  # Dash keys a one-output callback without the dots
        payload: dict[str, Any] = {
            "output": "{}.{}".format(*outputs[0])
            if single
            else ".." + "...".join(f"{i}.{p}" for i, p in outputs) + "..",
            "outputs": {"id": outputs[0][0], "property": outputs[0][1]}
            if single
            else [{"id": i, "property": p} for i, p in outputs],
            "inputs": [{"id": i, "property": p, "value": v} for i, p, v in inputs],
            "state": [{"id": i, "property": p, "value": v} for i, p, v in state],
            "changedPropIds": [f"{inputs[0][0]}.{inputs[0][1]}"],
        }
        return self.http.post(
            self.base + "/_dash-update-component",
            json=payload,
            headers={"X-CSRFToken": str(self.http.cookies["_csrf_token"])},
            timeout=WAIT_S,
        )

    def page(self, path: str) -> requests.Response:
        return self.call(
            [("_pages_content", "children"), ("_pages_store", "data")],
            [("_pages_location", "pathname", path), ("_pages_location", "search", "")],
            [],
        )


ACCOUNT_CALLBACKS = {
    "headline": [("account-headline", "children"), ("account-trend", "figure")],
    "outages": [
        ("account-duration", "figure"),
        ("account-outage-timeline", "figure"),
        ("account-outage-grid", "rowData"),
    ],
    "events": [("account-itic", "figure"), ("account-itic-note", "children")],
    "silent": [("account-silent-grid", "rowData"), ("account-silent-note", "children")],
    "supply": [("account-supply", "figure")],
}
FEEDER_CALLBACKS = {
    "headline": [("feeder-headline", "children"), ("feeder-trend", "figure")],
    "accounts": [("feeder-accounts", "rowData"), ("feeder-accounts-note", "children")],
}


def call_page(
    client: Client, prefix: str, outputs: list[tuple[str, str]], site_id: str, period: tuple[date, date]
) -> dict[str, Any]:
    resp = client.call(
        outputs,
        [
            (f"{prefix}-dates", "start_date", period[0].isoformat()),
            (f"{prefix}-dates", "end_date", period[1].isoformat()),
        ],
        [(f"{prefix}-site", "data", site_id)],
    )
    assert resp.status_code == 200, resp.text[:500]
    body: dict[str, Any] = resp.json()["response"]
    return body


def assert_nothing_drawn(response: dict[str, Any]) -> None:
    """A refusal carries no trace and no grid row."""
    for outputs in response.values():
        for prop, value in outputs.items():
            if prop == "figure":
                assert value["data"] == [], value["data"][:1]
            if prop == "rowData":
                assert value == []


def texts(node: Any) -> str:
    return json.dumps(node, ensure_ascii=False)


def report_of(env: Env, site_id: str) -> dict[str, Any]:
    return site_report(env.store, env.registry, site_id, *env.period, TZ)


def test_account_figures_are_those_of_site_report(env: Env) -> None:
    client = Client(env.url, "cust1")
    report = report_of(env, "A001")
    body = call_page(client, "account", ACCOUNT_CALLBACKS["headline"], "A001", env.period)
    headline = texts(body["account-headline"]["children"])
    for value, decimals in (
        (report["vqr_pct"], 2),
        (report["rs1_pct"], 3),
        (report["rs1_excl_short_pct"], 3),
        (report["coverage_pct"], 1),
        (report["event_coverage_pct"], 1),
        (report["phases"]["a"]["vqr_pct"], 2),
    ):
        assert pct(value, decimals).removesuffix(" %") in headline, (value, decimals)
    assert report["rs1_pct"] != report["rs1_excl_short_pct"]  # the data tells the two apart
    assert "99.75" in headline  # pooled: 9 of 3 x 1200 minutes
    assert "99.25" in headline  # phase a alone: 9 of 1200
    supply = report["supply_side"]
    assert supply is not None and supply["feeder"] == "F01"
    assert "F01" in headline and "Last-mile gap" in headline
    assert f"+{supply['gap']['vqr_pct']:.2f}" in headline  # 99.75 - 99.17

    figure = body["account-trend"]["figure"]
    assert "upper limit 61.78 V" in texts(figure["layout"])
    assert figure_points_json(figure) <= MAX_POINTS
    means = [t for t in figure["data"] if t.get("name") == "Ua mean"]
    assert len(means) == 1
    ys, xs = means[0]["y"], means[0]["x"]
    assert ys.count(None) == 1, "the two silent hours make exactly one break"
    assert xs[ys.index(None)] == f"{env.data_day.isoformat()}T12:00:00", (
        "the break is at the first missing bucket"
    )
    shapes = [s for s in figure["layout"].get("shapes", []) if s.get("type") == "rect"]
    assert len(shapes) == len(report["outage_list"]) == 2
    assert sorted(s["x0"][11:16] for s in shapes) == ["12:30", "18:00"]


def figure_points_json(figure: dict[str, Any]) -> int:
    return sum(len(t.get("y") or t.get("x") or []) for t in figure["data"])


def test_account_outages_events_and_silence(env: Env) -> None:
    client = Client(env.url, "cust1")
    report = report_of(env, "A001")
    body = call_page(client, "account", ACCOUNT_CALLBACKS["outages"], "A001", env.period)
    rows = body["account-outage-grid"]["rowData"]
    assert [r["start"][-8:] for r in rows] == ["12:30:00", "18:00:00"]
    assert [r["duration_s"] for r in rows] == [o["duration_s"] for o in report["outage_list"]]
    assert [r["end_source"] for r in rows] == ["inferred (next power-off)", "power-on record"]
    assert [r["length"] for r in rows] == ["sustained", "short"]
    assert rows[0]["end"].endswith("13:15:00")
    timeline = body["account-outage-timeline"]["figure"]
    assert {t["name"] for t in timeline["data"]} == {"Outage (unplanned)", "Short interruption"}
    duration = body["account-duration"]["figure"]
    assert [t["name"] for t in duration["data"]] == ["Ua", "Ub", "Uc"]

    body = call_page(client, "account", ACCOUNT_CALLBACKS["events"], "A001", env.period)
    itic = body["account-itic"]["figure"]
    dips = [t for t in itic["data"] if t.get("name") == "Dips"]
    swells = [t for t in itic["data"] if t.get("name") == "Swells"]
    assert dips and dips[0]["x"] == [0.1] and dips[0]["y"] == [60.0], "one dip, sent twice"
    assert swells and swells[0]["x"] == [0.01] and swells[0]["y"] == [130.0]
    assert "1 dips and 1 swells" in texts(body["account-itic-note"])

    body = call_page(client, "account", ACCOUNT_CALLBACKS["silent"], "A001", env.period)
    silent = body["account-silent-grid"]["rowData"]
    day = env.data_day.isoformat()
    assert {"start": f"{day} 12:00", "end": f"{day} 14:00", "duration": "2:00:00"} in silent
    assert not any(r["start"] < day for r in silent), "nothing silent before the monitored life"


def registry_past_start(env: Env) -> str:
    """The past planned outage's start as the page would write it."""
    (start, _end), *_ = [
        p for p in env.registry.planned_outages("A001") if p[0] < datetime.now(UTC).replace(tzinfo=None)
    ]
    return start.replace(tzinfo=UTC).astimezone(ZoneInfo(TZ)).strftime("%Y-%m-%d %H:%M")


def test_account_layout_facts(env: Env) -> None:
    client = Client(env.url, "cust1")
    resp = client.page("/account/A001")
    assert resp.status_code == 200
    page = texts(resp.json())
    assert "10 kV line / 5.77 kV phase" in page
    assert "metered on the PT secondary: 57.74 V phase (ratio 100)" in page
    assert "/feeder/F01" in page and "North Feeder Nine" in page
    assert "Li Wei" in page and "li.wei@alpha.example" in page
    assert "transformer swap" in page, "the feeder's planned window reaches its accounts"
    past = registry_past_start(env)
    assert past not in page, "only planned outages ahead"
    assert "Beta Steel Works" not in page and "Zhang Min" not in page

    refused = texts(client.page("/account/A002").json())
    assert (
        FORBIDDEN in refused
        and "Beta Steel Works" not in refused
        and "A002" not in refused.replace('"/account/A002"', "")
    )


@pytest.mark.parametrize("name", list(ACCOUNT_CALLBACKS))
def test_account_callbacks_refuse_another_account(env: Env, name: str) -> None:
    client = Client(env.url, "cust1")
    other = client.call(
        ACCOUNT_CALLBACKS[name],
        [
            ("account-dates", "start_date", env.period[0].isoformat()),
            ("account-dates", "end_date", env.period[1].isoformat()),
        ],
        [("account-site", "data", "A002")],
    )
    assert other.status_code == 200
    text = other.text
    for leak in ("A002", "Beta Steel Works", "97.50", "97.5 ", "99.17", "North Feeder", "F01"):
        assert leak not in text, (name, leak)
    assert_nothing_drawn(other.json()["response"])
    if name == "headline":
        assert FORBIDDEN in text
    # the control: the same call for their own account answers with figures
    own = call_page(client, "account", ACCOUNT_CALLBACKS[name], "A001", env.period)
    assert texts(own) != texts(other.json()["response"])


def test_feeder_page_figures_and_visible_accounts(env: Env) -> None:
    client = Client(env.url, "cust1")
    feeder = report_of(env, "F01")
    body = call_page(client, "feeder", FEEDER_CALLBACKS["headline"], "F01", env.period)
    headline = texts(body["feeder-headline"]["children"])
    assert pct(feeder["vqr_pct"], 2) == "99.17 %" and "99.17 %" in headline
    assert pct(feeder["rs1_pct"], 3) in headline
    assert body["feeder-trend"]["figure"]["data"], "the feeder's readings are drawn"

    body = call_page(client, "feeder", FEEDER_CALLBACKS["accounts"], "F01", env.period)
    rows = body["feeder-accounts"]["rowData"]
    assert [r["site"] for r in rows] == ["A001"], "a customer sees only their account on the feeder"
    assert rows[0]["link"].startswith("[A001](/account/A001?")
    account = report_of(env, "A001")
    assert rows[0]["vqr_pct"] == pytest.approx(account["vqr_pct"])
    assert rows[0]["gap_pct"] == pytest.approx(account["vqr_pct"] - feeder["vqr_pct"])

    staff = call_page(Client(env.url, "ops"), "feeder", FEEDER_CALLBACKS["accounts"], "F01", env.period)
    assert [r["site"] for r in staff["feeder-accounts"]["rowData"]] == ["A002", "A001"], "worst VQR first"


@pytest.mark.parametrize("name", list(FEEDER_CALLBACKS))
def test_feeder_callbacks_refuse_another_feeder(env: Env, name: str) -> None:
    client = Client(env.url, "cust1")
    other = client.call(
        FEEDER_CALLBACKS[name],
        [
            ("feeder-dates", "start_date", env.period[0].isoformat()),
            ("feeder-dates", "end_date", env.period[1].isoformat()),
        ],
        [("feeder-site", "data", "F02")],
    )
    assert other.status_code == 200
    for leak in ("F02", "South Feeder", "Gamma", "A003", "98.75"):
        assert leak not in other.text, (name, leak)
    assert_nothing_drawn(other.json()["response"])
    if name == "headline":
        assert FORBIDDEN in other.text
    layout = texts(client.page("/feeder/F01").json())
    assert "North Feeder Nine" in layout and "10 kV line / 5.77 kV phase" in layout
    page = texts(client.page("/feeder/F02").json())
    assert FORBIDDEN in page and "South Feeder" not in page
    own = call_page(client, "feeder", FEEDER_CALLBACKS[name], "F01", env.period)
    assert texts(own) != texts(other.json()["response"])


def test_thirty_days_of_minutes_stay_under_the_points_limit(env: Env) -> None:
    """Speed is measured by bench/dashboard_bench.py; here only the size of what is sent."""
    client = Client(env.url, "ops")
    body = call_page(client, "account", ACCOUNT_CALLBACKS["headline"], "A003", (env.perf_from, env.perf_to))
    assert 0 < figure_points_json(body["account-trend"]["figure"]) <= MAX_POINTS


def test_chart_points_limit_holds_for_the_figure_builder(env: Env) -> None:
    """The trend of a whole year stays under the limit too (the bucket grows)."""
    client = Client(env.url, "ops")
    body = call_page(
        client,
        "account",
        ACCOUNT_CALLBACKS["headline"],
        "A003",
        (env.perf_from - timedelta(days=300), env.perf_to),
    )
    figure = body["account-trend"]["figure"]
    assert 0 < figure_points_json(figure) <= MAX_POINTS


def test_the_customer_is_drawn_beside_its_feeder(env: Env) -> None:
    """Both in % of their own nominal; the customer's silent hours are a gap, the feeder's not."""
    body = call_page(Client(env.url, "cust1"), "account", ACCOUNT_CALLBACKS["supply"], "A001", env.period)
    traces = {t["name"]: t for t in body["account-supply"]["figure"]["data"]}
    customer, feeder = traces["Customer Ua"], traces["Feeder F01 Ua"]
    assert {"Customer Ub", "Customer Uc", "Feeder F01 Ub", "Feeder F01 Uc"} <= set(traces)
    pairs = list(zip(customer["x"], customer["y"], strict=True))
    feeder_at = dict(zip(feeder["x"], feeder["y"], strict=True))
    both_known = [(y, feeder_at[x]) for x, y in pairs if y is not None and feeder_at.get(x) is not None]
    assert both_known and all(abs(a - b) < 1e-9 for a, b in both_known)  # the same readings on both
    assert all(-2.0 < a < 2.0 for a, _ in both_known)  # 57.0-58.5 V on 57.74 V: within 2 %
    assert any(abs(a) > 0.1 for a, _ in both_known)  # and not flattened to nothing
    gaps = [x for x, y in pairs if y is None and feeder_at.get(x) is not None]
    assert any("12:" in x or "13:" in x for x in gaps), "the customer's 12:00-14:00 silence is a gap"
