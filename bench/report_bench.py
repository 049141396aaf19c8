#!/usr/bin/env python
"""Report benchmark: monthly PDFs beside the JSON report, and the archive beside the worker.

One InfluxDB started here (``LocalInflux``) holds a closed month of daily roll-ups for
``--accounts`` key accounts (1,000 by default) on 20 feeders, with their outages and a few
dips each. The roll-ups are the worker's own output (``rollup_site`` over a generated month
of minute readings for a few template accounts, replicated to every account), so the
reports read what they would read in production without a month of raw data to load.
Besides them, ``--live`` accounts (100) receive today's minutes, for worker passes.

  (a) json: ``site_report`` of 50 accounts, in-process: what ``pqmon report --format json``
      computes (plus one CLI run, to show the process start-up it adds)
  (b) pdf: the same 50 accounts' PDFs (``site_report`` + layout + charts + ReportLab), p50
      and p95, and the render alone
  (c) archive: ``archive_month`` of every account in ``PQMON_REPORT_WORKERS`` low-priority
      processes: wall time
  (d) worker: incremental passes over the live accounts, alone and while (c) runs, one every
      ``--pass-interval`` seconds as the worker paces them: the slowdown the archive causes

Targets: (b) <= 1 s per PDF; (c) <= 10 minutes for 1,000 accounts; (d)
passes at most 20 % slower during the archive.

    .venv/bin/python bench/report_bench.py                       # the full run (about 15 minutes)
    .venv/bin/python bench/report_bench.py --accounts 60 --live 20   # a quick smoke run
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from analysis.rollup import RollupPolicy, SiteSpec, rollup_site  # noqa: E402
from analysis.worker import outage_lines, run_once, to_lines  # noqa: E402
from bench._bench import machine_basics  # noqa: E402
from bench.analysis_bench import _voltages, account, day_start_ms  # noqa: E402
from core.limits import default_limits  # noqa: E402
from core.registry import Registry  # noqa: E402
from core.servers import LocalInflux  # noqa: E402
from core.settings import load_settings  # noqa: E402
from core.store import InfluxStore  # noqa: E402

TZ = "Asia/Shanghai"
TEMPLATES = 8
FEEDERS = 20
SAMPLE = 50


def registry_rows(accounts: int, live: int) -> list[tuple[int, dict[str, str]]]:
    rows = []
    for i in range(FEEDERS):
        rows.append(_row(f"F{i + 1:02d}", "feeder", f"Bench feeder {i + 1}", "10", "57.735", ""))
    for i in range(accounts):
        a = account(i)
        rows.append(
            _row(
                a.site,
                "account",
                f"Bench account {i + 1}",
                f"{a.kv:g}",
                f"{a.nominal:g}",
                f"F{i % FEEDERS + 1:02d}",
            )
        )
    for i in range(live):
        rows.append(_row(f"L{i + 1:04d}", "account", f"Live account {i + 1}", "0.38", "220", ""))
    return [(n + 2, r) for n, r in enumerate(rows)]


def _row(site: str, kind: str, name: str, kv: str, nominal: str, feeder: str) -> dict[str, str]:
    return {
        "site_id": site, "site_kind": kind, "name": name, "voltage_class_kv": kv, "phases": "3",
        "meter_id": f"{site}-M1", "nominal_v": nominal, "upper_pct": "", "lower_pct": "",
        "profile": "gb", "feeder_id": feeder, "manager": "",
    }  # fmt: skip


def month_rollups(first: date, last: date, now_ms: int) -> list[tuple[pd.DataFrame, pd.DataFrame, object]]:
    """The worker's roll-ups of a generated month for a few template accounts."""
    days = [first + timedelta(days=d) for d in range((last - first).days + 1)]
    out = []
    for t in range(TEMPLATES):
        a = account(t)
        rng = np.random.default_rng([7, t])
        n = len(days) * 1440
        ts = day_start_ms(first) + np.arange(n, dtype=np.int64) * 60_000
        v = _voltages(rng, a, n)
        keep = np.ones(n, bool)
        events = []
        for k in range(t % 4):  # 0 to 3 outages, events and silence
            s, length = int(rng.integers(0, n - 300)), int(rng.choice([2, 8, 95, 240]))
            keep[s : s + length] = False
            events += [
                ("power_off", int(ts[s]), f"o{k}"),
                ("power_on", int(ts[s]) + length * 60_000, f"n{k}"),
            ]
        readings = pd.DataFrame({"time": ts[keep], "ua": v[keep, 0], "ub": v[keep, 1], "uc": v[keep, 2]})
        ev = (
            pd.DataFrame(events, columns=["type", "time", "event_id"])
            if events
            else pd.DataFrame({"time": pd.Series([], dtype="int64"), "type": [], "event_id": []})
        )
        spec = SiteSpec(a.site, 3, a.nominal, default_limits(a.kv, 3))
        result = rollup_site(spec, readings, ev, days, RollupPolicy(TZ), now_ms)
        out.append((result, a))
    return out


def load(store: InfluxStore, registry: Registry, first: date, last: date, accounts: int, live: int) -> None:
    now_ms = int(time.time() * 1000)
    templates = month_rollups(first, last, now_ms)
    sites = {s.id: s for s in registry.sites()}
    lines: list[str] = []
    rng = np.random.default_rng(3)
    for i in range(accounts):
        result, _a = templates[i % TEMPLATES]
        site = sites[account(i).site]
        lines += to_lines(site, result)  # type: ignore[arg-type]
        lines += outage_lines(site, result, 180.0, now_ms)  # type: ignore[arg-type]
        for k in range(int(rng.integers(0, 5))):  # a few dips each
            ts = day_start_ms(first) + int(rng.integers(0, 28 * 86_400_000))
            dur, res = float(rng.choice([40, 120, 300, 900])), float(rng.uniform(20, 88))
            lines.append(
                f'event,meter={site.id}-M1,site={site.id},type=dip event_id="{site.id}-d{k}",'
                f"duration_ms={dur},residual_pct={res:.1f} {ts}"
            )
        if len(lines) > 20_000:
            store.write(lines)
            lines = []
    for f in range(FEEDERS):  # the supply side: the first template's roll-ups on each feeder
        result, _a = templates[0]
        lines += to_lines(sites[f"F{f + 1:02d}"], result)  # type: ignore[arg-type]
    store.write(lines)
    today = datetime.now(ZoneInfo(TZ)).date()
    elapsed = int((time.time() * 1000 - day_start_ms(today)) // 60_000)
    for i in range(live):
        v = _voltages(np.random.default_rng([9, i]), account(1), max(elapsed, 60))
        ts = day_start_ms(today) + np.arange(len(v), dtype=np.int64) * 60_000
        store.write(
            f"reading,meter=L{i + 1:04d}-M1,side=customer,site=L{i + 1:04d} ua={x:.2f},ub={y:.2f},uc={z:.2f},"
            f"interval_s=60.0 {t}"
            for x, y, z, t in zip(v[:, 0], v[:, 1], v[:, 2], ts.tolist(), strict=True)
        )


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--accounts", type=int, default=1000)
    ap.add_argument("--live", type=int, default=100)
    ap.add_argument("--workers", type=int, default=1, help="report processes (PQMON_REPORT_WORKERS)")
    ap.add_argument(
        "--pass-interval",
        type=float,
        default=10.0,
        help="seconds from one worker pass to the next (worker: 60)",
    )
    args = ap.parse_args(argv)

    from analysis.report import site_report
    from reports.archive import Archiver, archive_month
    from reports.monthly import document, month_days, previous_month
    from reports.pdf import render

    tmp = Path(tempfile.mkdtemp(prefix="pqbench-report-"))
    influx = LocalInflux(tmp / "influx").start()
    try:
        env = {
            "PQMON_INFLUX_URL": influx.url, "PQMON_INFLUX_DB": "bench", "PQMON_TZ": TZ,
            "PQMON_DATA_DIR": str(tmp / "var"), "PQMON_REPORT_WORKERS": str(args.workers),
            "PQMON_UTILITY_NAME": "Bench Power Supply Co.",
        }  # fmt: skip
        settings = load_settings(env)
        store = InfluxStore.from_settings(settings)
        store.ensure_database()
        registry = Registry(settings.registry_url)
        registry.upsert_rows(registry_rows(args.accounts, args.live))
        today = datetime.now(settings.zone).date()
        month = previous_month(today)
        first, last = month_days(month)
        began = time.monotonic()
        load(store, registry, first, last, args.accounts, args.live)
        print(
            f"loaded {args.accounts} accounts' {month} roll-ups in {time.monotonic() - began:.0f} s",
            flush=True,
        )

        sample = [account(i).site for i in range(min(SAMPLE, args.accounts))]
        json_s, pdf_s, render_s = [], [], []
        for site in sample:
            t0 = time.perf_counter()
            report = site_report(store, registry, site, first, last, TZ)
            t1 = time.perf_counter()
            render(document(report, registry, settings, "zh-CN", today))
            t2 = time.perf_counter()
            json_s.append(t1 - t0)
            render_s.append(t2 - t1)
            pdf_s.append(t2 - t0)
        cli_env = {**env, "PATH": "/usr/bin:/bin"}
        t0 = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "pqmon", "report", sample[0], "--from", str(first), "--to", str(last)],
            env=cli_env, check=True, capture_output=True,
        )  # fmt: skip
        cli_s = time.perf_counter() - t0

        # (d) baseline passes, then passes while the archive runs
        live = [f"L{i + 1:04d}" for i in range(args.live)]
        run_once(settings, store, registry)  # the first pass is a full one; the rest incremental

        archiver = Archiver(settings)  # the worker's: its pass_running() holds reports back

        def one_pass() -> float:
            """One incremental pass, then a wait to the next, as the worker runs them."""
            registry.mark_dirty((s, today) for s in live)
            with archiver.pass_running():
                seconds = run_once(settings, store, registry).seconds
            time.sleep(max(0.0, args.pass_interval - seconds))
            return seconds

        alone = [one_pass() for _ in range(5)]
        done = threading.Event()
        archive: dict[str, object] = {}

        def run_archive() -> None:
            t = time.monotonic()
            archive["counts"] = archive_month(
                settings, registry, month, today, workers=args.workers, idle=archiver.idle
            )
            archive["s"] = time.monotonic() - t
            done.set()

        threading.Thread(target=run_archive, daemon=True).start()
        during = []
        while not done.is_set():
            during.append(one_pass())
        archive_s = float(archive["s"])  # type: ignore[arg-type]

        print()
        print(machine_basics())
        print(f"accounts={args.accounts} live={args.live} report workers={args.workers} month={month}")
        print()
        print(f"{'figure':58} {'value':>10}  {'target / reference':>22}")
        rows = [
            ("(a) json: site_report per account, p50", f"{statistics.median(json_s):.3f} s", ""),
            ("(a) json: site_report per account, p95", f"{pct(json_s, 95):.3f} s", ""),
            ("(a) pqmon report --format json, one CLI run", f"{cli_s:.2f} s", "process start included"),
            ("(b) pdf: report + render per account, p50", f"{statistics.median(pdf_s):.3f} s", "<= 1 s"),
            ("(b) pdf: report + render per account, p95", f"{pct(pdf_s, 95):.3f} s", "<= 1 s"),
            ("(b) pdf: render alone, p50", f"{statistics.median(render_s):.3f} s", ""),
            ("(b) pdf / json, p50", f"{statistics.median(pdf_s) / statistics.median(json_s):.1f} x", ""),
            (f"(c) archive of {args.accounts} accounts", f"{archive_s / 60:.1f} min", "<= 10 min per 1,000"),
            ("(c) archive per account (wall)", f"{archive_s / args.accounts:.3f} s", str(archive["counts"])),
            ("(d) worker pass alone, median", f"{statistics.median(alone):.2f} s", f"{len(alone)} passes"),
            (
                "(d) worker pass during the archive, median",
                f"{statistics.median(during):.2f} s",
                f"{len(during)} passes",
            ),
            (
                "(d) slowdown (during / alone)",
                f"{statistics.median(during) / statistics.median(alone):.2f} x",
                "<= 1.20 x",
            ),
        ]
        for name, value, note in rows:
            print(f"{name:58} {value:>10}  {note:>22}")
        store.close()
        registry.close()
    finally:
        influx.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
