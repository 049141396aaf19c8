#!/usr/bin/env python
"""Dashboard benchmark: the server time of the overview callback at fleet scale.

Starts its own InfluxDB (``LocalInflux``) and SQLite registry in a temp dir, registers
``--accounts`` key accounts (1,000 by default) on ``accounts/20`` feeders with ten managers,
writes ``--days`` (30) days of daily roll-ups for every account and feeder (``vq_daily``
phase ``all`` and ``rel_daily``, shaped like the worker's), derived outages for one account
in ten and open alerts for one in fifty, builds the app (``create_app``), serves it from a
thread (werkzeug, as the browser tests do), logs in as an operator (sees every account) and
posts ``--requests`` (50) overview callbacks to ``/_dash-update-component``, as
dash-renderer does when the period changes (custom range = the written days).

Per request it records, in-process:

  server   the WSGI time of the request (a middleware around ``app.server.wsgi_app``)
  queries  the time spent inside ``InfluxStore.query_raw`` during that request (a subclass of
           the store, in this script only, sums it per thread)
  app      server minus queries: registry reads, the view's Python, JSON encoding

The overview keeps the fleet's sums until the worker's next pass (dashboard.rollup_cache), so
the operator's overview is timed twice: "cold" empties that cache before every request (the
first request after each worker pass, or every request with the cache off) and "warm" does
not (every other request). The target is judged on the warm figure; the cold one says what
the first user after a pass waits.

and prints p50/p95 of each, the app's share, and p95 against the targets: <= 300 ms at
1,000 accounts, <= 1 s at 10,000 (sizes in between: the 1,000 target).

    .venv/bin/python bench/dashboard_bench.py                      # 1,000 accounts (~1 min)
    .venv/bin/python bench/dashboard_bench.py --accounts 10000 --cold-requests 5   # 10,000 (~4 min)
    .venv/bin/python bench/dashboard_bench.py --accounts 200 --requests 10   # smoke run

It then writes 30 days of one-minute three-phase readings for one account and times each of
the account page's four callbacks, computed afresh every time (target p95 <= 500 ms).
Exit status 0 only if the overview's p95 meets its target.
"""

from __future__ import annotations

import argparse
import logging
import random
import re
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import requests  # noqa: E402
from werkzeug.serving import make_server  # noqa: E402

from analysis.alerts.state import FIRING, AlertRow  # noqa: E402
from bench._bench import machine_basics  # noqa: E402 - needs ROOT on sys.path
from core.calendar import day_start_ms  # noqa: E402
from core.lineproto import line  # noqa: E402
from core.registry import Registry  # noqa: E402
from core.servers import LocalInflux, free_port  # noqa: E402
from core.settings import load_settings  # noqa: E402
from core.store import InfluxStore  # noqa: E402

TZ = "Asia/Shanghai"
PASSWORD = "bench-horse-9"
MANAGERS = 10
BATCH = 5000
TARGETS_S = ((1000, 0.300), (10_000, 1.0))  # accounts -> p95 target of the overview callback
ACCOUNT_TARGET_S = 0.500  # p95 of each account-page callback


def target_for(accounts: int) -> float:
    return TARGETS_S[1][1] if accounts >= TARGETS_S[1][0] else TARGETS_S[0][1]


# -- instrumentation (this script only) ----------------------------------------------------------
_lock = threading.Lock()
_spans: list[tuple[float, float]] = []  # (start, end) of every query, on any thread


def _timed(call: Callable[[], Any]) -> Any:
    t0 = time.perf_counter()
    try:
        return call()
    finally:
        with _lock:
            _spans.append((t0, time.perf_counter()))


def waited(spans: list[tuple[float, float]]) -> float:
    """Wall time covered by the spans: queries run in parallel count once (their union)."""
    total, end = 0.0, float("-inf")
    for a, b in sorted(spans):
        if b <= end:
            continue
        total += b - max(a, end)
        end = b
    return total


class TimedStore(InfluxStore):
    """The real store; ``query_raw`` (behind ``query`` and ``query_frame``) and ``query_csv`` are
    timed on every thread (a callback may query in parallel), so every InfluxDB read of a
    request is counted, and overlapping reads once."""

    def query_raw(self, q: str) -> list[dict[str, Any]]:
        return _timed(lambda: super(TimedStore, self).query_raw(q))  # type: ignore[no-any-return]

    def query_csv(self, q: str) -> Any:
        return _timed(lambda: super(TimedStore, self).query_csv(q))


class Timed:
    """WSGI middleware: server time of each callback request and the store time inside it."""

    def __init__(self, app: Callable[..., Any]) -> None:
        self.app = app
        self.samples: list[tuple[str, float, float, int]] = []  # path, server_s, query_s, queries

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        """Requests are sent one at a time, so every query in the window is this request's."""
        with _lock:
            _spans.clear()
        t0 = time.perf_counter()
        body = b"".join(self.app(environ, start_response))  # the whole body: JSON encoding included
        took = time.perf_counter() - t0
        path = environ.get("PATH_INFO", "")
        if path == "/_dash-update-component":
            with _lock:
                spans = list(_spans)
            self.samples.append((path, took, waited(spans), len(spans)))
        return [body]


# -- the fleet ---------------------------------------------------------------------------------
def site_id(i: int) -> str:
    return f"K{i + 1:05d}"


def feeder_id(i: int) -> str:
    return f"F{i // 20 + 1:04d}"


def registry_rows(n: int) -> list[tuple[int, dict[str, str]]]:
    rows = []
    feeders = sorted({feeder_id(i) for i in range(n)})
    for k, f in enumerate(feeders):
        rows.append((k + 2, _row(f, "feeder", f"Feeder {f}", "10", "", "")))
    for i in range(n):
        kv = "10" if i % 3 else "0.38"
        rows.append(
            (
                len(rows) + 2,
                _row(site_id(i), "account", f"Account {i + 1}", kv, feeder_id(i), f"mgr{i % MANAGERS}"),
            )
        )
    return rows


def _row(sid: str, kind: str, name: str, kv: str, feeder: str, manager: str) -> dict[str, str]:
    return {
        "site_id": sid,
        "site_kind": kind,
        "name": name,
        "voltage_class_kv": kv,
        "phases": "3",
        "meter_id": f"{sid}-M1",
        "nominal_v": "57.74" if kv != "0.38" else "220",
        "upper_pct": "",
        "lower_pct": "",
        "profile": "gb",
        "feeder_id": feeder,
        "manager": manager,
    }


def rollup_lines(sid: str, day: date, rng: random.Random, outage_s: float) -> list[str]:
    """One day of a site's roll-ups, like tests/browser/support.py's (phase ``all`` and rel)."""
    ts = day_start_ms(day, TZ)
    monitored = 3 * 1440 - rng.randint(0, 60)
    over = rng.choice((0, 0, 0, 5, 20, 90))
    under = rng.choice((0, 0, 0, 0, 10, 40))
    return [
        line(
            "vq_daily",
            {"site": sid, "phase": "all"},
            {
                "monitored_min": monitored,
                "over_min": over,
                "under_min": under,
                "outage_min": int(outage_s // 60) * 3,
                "missing_min": 3 * 1440 - monitored,
                "vqr_pct": (1 - (over + under) / monitored) * 100,
                "calendar_min": 1440,
                "channels": 3,
                "dev_sum_pct": 0.5 * monitored,
            },
            ts,
        ),
        line(
            "rel_daily",
            {"site": sid},
            {
                "outage_s": outage_s,
                "short_s": 0.0,
                "outages_sustained": 1 if outage_s else 0,
                "outages_short": 0,
                "outages_open": 0,
                "planned_s": 0.0,
                "unplanned_s": outage_s,
            },
            ts,
        ),
    ]


def outage_line(sid: str, start_ms: int, duration_s: float) -> str:
    return line(
        "outage",
        {"site": sid},
        {
            "start_ms": start_ms,
            "end_ms": start_ms + int(duration_s * 1000),
            "duration_s": duration_s,
            "open": False,
            "cause": "unplanned",
            "length": "sustained",
            "source": "event",
            "start_source": "event",
            "end_source": "event",
            "valid": True,
        },
        start_ms,
    )


def load(store: InfluxStore, registry: Registry, n: int, days: list[date], seed: int) -> None:
    rng = random.Random(seed)
    registry.upsert_rows(registry_rows(n))
    sites = sorted({feeder_id(i) for i in range(n)}) + [site_id(i) for i in range(n)]
    batch: list[str] = []
    for sid in sites:
        outage_day = days[rng.randrange(len(days))] if sid.startswith("K") and rng.random() < 0.1 else None
        for d in days:
            outage_s = 1800.0 if d == outage_day else 0.0
            batch += rollup_lines(sid, d, rng, outage_s)
            if outage_s:
                batch.append(outage_line(sid, day_start_ms(d, TZ) + 3_600_000, outage_s))
        if len(batch) >= BATCH:
            store.write(batch)
            batch = []
    store.write(batch)
    now = int(time.time() * 1000)
    with registry._session.begin() as s:
        for i in range(0, n, 50):
            s.add(
                AlertRow(
                    rule="voltage",
                    site_id=site_id(i),
                    phase="a",
                    severity="warning",
                    state=FIRING,
                    started_ms=now,
                    opened_ms=now,
                    last_seen_ms=now,
                )
            )


# -- requests ----------------------------------------------------------------------------------
def login(base: str, name: str) -> requests.Session:
    http = requests.Session()
    form = http.get(base + "/login", timeout=30)
    token = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert token, "no login form"
    resp = http.post(
        base + "/login",
        data={"name": name, "password": PASSWORD, "csrf": token.group(1), "next": "/"},
        allow_redirects=False,
        timeout=30,
    )
    assert resp.status_code == 302, f"login of {name} failed: {resp.status_code}"
    http.get(base + "/", timeout=30)  # the page sets the CSRF cookie dash-renderer sends back
    http.headers["X-CSRFToken"] = http.cookies.get("_csrf_token") or ""
    return http


OVERVIEW_OUTPUTS = (
    ("overview-cards", "children"),
    ("overview-grid", "rowData"),
    ("overview-feeders", "rowData"),
    ("overview-message", "children"),
    ("overview-custom-box", "style"),
)


def overview_payload(day_from: date, day_to: date) -> dict[str, Any]:
    """What dash-renderer posts for dashboard/pages/overview.py's update_overview."""
    return {
        "output": ".." + "...".join(f"{i}.{p}" for i, p in OVERVIEW_OUTPUTS) + "..",
        "outputs": [{"id": i, "property": p} for i, p in OVERVIEW_OUTPUTS],
        "inputs": [
            {"id": "overview-period", "property": "value", "value": "custom"},
            {
                "id": "overview-custom",
                "property": "value",
                "value": [day_from.isoformat(), day_to.isoformat()],
            },
            {"id": "overview-manager", "property": "value", "value": []},
            {"id": "overview-feeder", "property": "value", "value": []},
            {"id": "overview-class", "property": "value", "value": []},
            {"id": "overview-attention", "property": "checked", "value": False},
        ],
        "changedPropIds": ["overview-period.value"],
    }


# The account page's callbacks: (name, outputs); inputs are the period, state the site.
ACCOUNT_CALLBACKS = (
    ("headline + trend", (("account-headline", "children"), ("account-trend", "figure"))),
    (
        "duration, timeline, outages",
        (
            ("account-duration", "figure"),
            ("account-outage-timeline", "figure"),
            ("account-outage-grid", "rowData"),
        ),
    ),
    ("dips on ITIC / SEMI F47", (("account-itic", "figure"), ("account-itic-note", "children"))),
    ("silent periods", (("account-silent-grid", "rowData"), ("account-silent-note", "children"))),
    ("customer beside feeder", (("account-supply", "figure"),)),
)


def account_payload(
    sid: str, day_from: date, day_to: date, outputs: tuple[tuple[str, str], ...]
) -> dict[str, Any]:
    """What dash-renderer posts for one of the account page's callbacks."""
    single = len(outputs) == 1  # Dash keys a one-output callback without the dots
    return {
        "output": "{}.{}".format(*outputs[0])
        if single
        else "...".join(f"{c}.{p}" for c, p in outputs).join(("..", "..")),
        "outputs": {"id": outputs[0][0], "property": outputs[0][1]}
        if single
        else [{"id": c, "property": p} for c, p in outputs],
        "inputs": [
            {"id": "account-dates", "property": "start_date", "value": day_from.isoformat()},
            {"id": "account-dates", "property": "end_date", "value": day_to.isoformat()},
        ],
        "state": [{"id": "account-site", "property": "data", "value": sid}],
        "changedPropIds": ["account-dates.start_date"],
    }


def minute_readings(sid: str, days: list[date]) -> Iterable[list[str]]:
    """One-minute three-phase readings of one account over ``days``, a day per batch."""
    for day in days:
        start = day_start_ms(day, TZ)
        batch = []
        for i in range(1440):
            wobble = (i % 60 - 30) * 0.02
            batch.append(
                line(
                    "reading",
                    {"site": sid, "meter": f"{sid}-M1", "side": "customer"},
                    {"ua": 57.9 + wobble, "ub": 57.6 - wobble, "uc": 58.1 + wobble / 2, "interval_s": 60.0},
                    start + i * 60_000,
                )
            )
        yield batch


def account_check(body: dict[str, Any]) -> None:
    text = str(body)
    if "account-forbidden" in text or "not answering" in text:
        raise RuntimeError(f"the account callback refused or failed: {text[:300]}")


def pctl(values: list[float], q: float) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def run(
    http: requests.Session,
    base: str,
    timed: Timed,
    payload: dict[str, Any],
    n: int,
    check: Callable[[dict], None],
    before_each: Callable[[], None] | None = None,
) -> list[tuple[float, float, int]]:
    out = []
    for k in range(n + 2):  # two warm-ups, not counted
        if before_each is not None:
            before_each()
        timed.samples.clear()
        resp = http.post(base + "/_dash-update-component", json=payload, timeout=120)
        if resp.status_code != 200:
            raise RuntimeError(f"callback answered {resp.status_code}: {resp.text[:300]}")
        if k == 0:
            check(resp.json())
        if k >= 2:
            _, server_s, query_s, queries = timed.samples[-1]
            out.append((server_s, query_s, queries))
    return out


def report(label: str, samples: list[tuple[float, float, int]], target_s: float | None) -> bool:
    server = [s for s, _, _ in samples]
    query = [q for _, q, _ in samples]
    app = [s - q for s, q, _ in samples]
    p95 = pctl(server, 95)
    share = statistics.mean(a / s for a, s in zip(app, server, strict=True) if s > 0)
    print(
        f"{label:<34} {pctl(server, 50) * 1000:8.1f} {p95 * 1000:8.1f} "
        f"{pctl(query, 50) * 1000:8.1f} {pctl(query, 95) * 1000:8.1f} "
        f"{pctl(app, 50) * 1000:8.1f} {pctl(app, 95) * 1000:8.1f} {share:6.0%} {samples[0][2]:4d}  "
        + (f"{p95 / target_s:5.2f} x {target_s * 1000:.0f} ms" if target_s else "  (no target)")
    )
    return target_s is None or p95 <= target_s


def main(argv: list[str] | None = None) -> int:
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--accounts", type=int, default=1000)
    p.add_argument("--days", type=int, default=30, help="days of roll-ups, ending yesterday")
    p.add_argument("--requests", type=int, default=50)
    p.add_argument(
        "--cold-requests",
        type=int,
        default=None,
        help="requests timed cold (default: --requests; each is slow)",
    )
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--keep", action="store_true", help="keep the temp dir")
    args = p.parse_args(argv)
    print(f"machine: {machine_basics()}")
    tmp = Path(tempfile.mkdtemp(prefix="pqbench-dashboard-"))
    influx = LocalInflux(tmp / "influx").start()
    try:
        return _bench(args, tmp, influx)
    finally:
        influx.stop()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"kept {tmp}")


def _bench(args: argparse.Namespace, tmp: Path, influx: LocalInflux) -> int:
    from dashboard.app import create_app
    from dashboard.periods import today

    settings = load_settings(
        {
            "PQMON_INFLUX_URL": influx.url,
            "PQMON_INFLUX_DB": "pqmon_bench",
            "PQMON_REGISTRY_URL": f"sqlite:///{tmp / 'registry.db'}",
            "PQMON_DATA_DIR": str(tmp / "data"),
            "PQMON_TZ": TZ,
            "PQMON_LANG": "en",
        }
    )
    registry = Registry(settings.registry_url)
    store = TimedStore.from_settings(settings)
    store.ensure_database()
    day_to = today(TZ) - timedelta(days=1)
    days = [day_to - timedelta(days=k) for k in range(args.days)][::-1]
    t0 = time.perf_counter()
    load(store, registry, args.accounts, days, args.seed)
    registry.add_user("ops", "operator", PASSWORD)
    registry.add_user("mgr0", "manager", PASSWORD, [site_id(i) for i in range(0, args.accounts, MANAGERS)])
    print(
        f"loaded {args.accounts} accounts, {len({feeder_id(i) for i in range(args.accounts)})} feeders,"
        f" {args.days} days of roll-ups in {time.perf_counter() - t0:.1f} s"
    )
    app = create_app(settings, registry=registry, store=store)
    timed = Timed(app.server.wsgi_app)
    app.server.wsgi_app = timed  # type: ignore[method-assign]
    server = make_server("127.0.0.1", free_port(), app.server, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_port}"
    ok = True
    try:
        print(
            f"\n{'ms per request (' + str(args.requests) + ' requests)':<34} {'srv p50':>8} {'srv p95':>8} "
            f"{'qry p50':>8} {'qry p95':>8} {'app p50':>8} {'app p95':>8} {'app %':>6} {'#q':>4}  p95/target"
        )
        first, last = days[0], days[-1]

        def rows_check(expected: int) -> Callable[[dict], None]:
            def check(body: dict) -> None:
                got = len(body["response"]["overview-grid"]["rowData"])
                assert got == expected, f"overview returned {got} rows, expected {expected}"

            return check

        ops = login(base, "ops")
        rollups = app.server.extensions["pqmon"].rollups
        samples = run(
            ops,
            base,
            timed,
            overview_payload(first, last),
            args.cold_requests or args.requests,
            rows_check(args.accounts),
            before_each=rollups.clear,
        )
        report(f"overview, operator ({args.accounts}), cold", samples, target_for(args.accounts))
        samples = run(
            ops, base, timed, overview_payload(first, last), args.requests, rows_check(args.accounts)
        )
        ok &= report(f"overview, operator ({args.accounts}), warm", samples, target_for(args.accounts))
        mgr = login(base, "mgr0")
        mine = len(range(0, args.accounts, MANAGERS))
        samples = run(mgr, base, timed, overview_payload(first, last), args.requests, rows_check(mine))
        report(f"overview, manager ({mine})", samples, target_for(mine))
        # One account with 30 days of one-minute three-phase readings: each callback computed
        # afresh every time (the page's short-lived memo emptied), as on a first visit.
        from dashboard import trend

        sid = site_id(1)
        t0 = time.perf_counter()
        for batch in minute_readings(sid, days):
            store.write(batch)
        print(f"\nwrote {len(days) * 1440 * 3:,} phase-minutes for {sid} in {time.perf_counter() - t0:.1f} s")
        print(f"{'account page (30 days of minutes)':<34}")
        for name, outputs in ACCOUNT_CALLBACKS:
            samples = run(
                ops,
                base,
                timed,
                account_payload(sid, first, last, outputs),
                args.requests,
                account_check,
                before_each=trend._memo.clear,
            )
            ok &= report(f"  {name}", samples, ACCOUNT_TARGET_S)
    finally:
        server.shutdown()
        thread.join(10)
        store.close()
        registry.close()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
