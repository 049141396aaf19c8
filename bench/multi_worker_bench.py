#!/usr/bin/env python
"""Multi-worker benchmark: site-days per second of one and of two analysis workers sharing one
fleet through the registry on PostgreSQL (core.claims), and the cost of the claim statements.

One InfluxDB and one PostgreSQL that this script starts (``LocalInflux``, ``LocalPostgres``),
``--accounts`` key accounts with ``--days`` days of one-minute three-phase readings ending
yesterday (the generator of bench/analysis_bench.py), then, ``--repeat`` times for each worker
count in ``--workers`` (default 1 and 2):

  every (site, day) of the fleet is marked dirty at once, as a wave of late data would, while
  the workers (``python -m tests.integration.multi_worker_proc``: run_once in a loop, the
  clock fixed at the start of the bench) already run idle; the clock starts at the commit of
  the marks and stops when the queue (``dirty_site``) is empty. Site-days per second =
  site-days computed (summed from the workers' compute logs) / that time.

A first, untimed full pass writes every roll-up once, so each timed run overwrites the same
series. And at ``--queue-sites`` (50,000) sites: one ``mark_dirty`` of a site-day per site (a
collector's write pass), a claim of 8 from that queue, and a site's finish, in milliseconds.

    .venv/bin/python bench/multi_worker_bench.py                      # 100 accounts x 7 days, ~3 min
    .venv/bin/python bench/multi_worker_bench.py --accounts 40 --days 3 --repeat 1   # a quick run
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench._bench import machine_basics  # noqa: E402 - needs ROOT on sys.path
from bench.analysis_bench import (  # noqa: E402
    TZ,
    Loader,
    account,
    month_series,
    proc_cpu_s,
    registry_rows,
)

INTERVAL = re.compile(r"computed site=\S+ days=(\S+)\.\.(\S+) worker=(\S+)")
PASS_INTERVAL_S = 0.2


def site_days(log_text: str) -> dict[str, int]:
    """Site-days computed per worker, from its compute-interval lines."""
    out: dict[str, int] = {}
    for m in INTERVAL.finditer(log_text):
        n = (date.fromisoformat(m[2]) - date.fromisoformat(m[1])).days + 1
        out[m[3]] = out.get(m[3], 0) + n
    return out


@dataclass(frozen=True)
class Run:
    wall_s: float
    per_worker: dict[str, int]  # site-days each worker computed
    workers_cpu_s: float
    influx_cpu_s: float
    load_before: float  # 1-minute load average: other work on the machine skews a run

    @property
    def rate(self) -> float:
        return sum(self.per_worker.values()) / self.wall_s


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.root = Path(tempfile.mkdtemp(prefix="pqmon-mwbench-"))
        self.now_ms = int(time.time() * 1000)
        self.today = datetime.now(ZoneInfo(TZ)).date()
        self.influx = self.postgres = None

    def start(self) -> None:
        from core.servers import LocalInflux, LocalPostgres

        self.influx = LocalInflux(self.root / "influx").start()
        self.postgres = LocalPostgres(self.root / "postgres").start()
        print(f"InfluxDB {self.influx.url}, PostgreSQL {self.postgres.url}, data in {self.root}", flush=True)

    def stop(self) -> None:
        if self.postgres is not None:
            self.postgres.stop()
        if self.influx is not None:
            self.influx.stop(timeout_s=60)
        shutil.rmtree(self.root, ignore_errors=True)

    def env(self, registry_url: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PQMON_")}
        return env | {
            "PQMON_INFLUX_URL": self.influx.url,  # type: ignore[attr-defined]
            "PQMON_INFLUX_DB": "mwbench",
            "PQMON_REGISTRY_URL": registry_url,
            "PQMON_DATA_DIR": str(self.root / "var"),
            "PQMON_TZ": TZ,
        }

    def load(self) -> tuple[str, list[tuple[str, date]]]:
        """The fleet's readings in InfluxDB, its registry on PostgreSQL; every (site, day) of it."""
        from core.registry import Registry
        from core.store import InfluxStore

        last = self.today - timedelta(days=1)
        first = last - timedelta(days=self.args.days - 1)
        store = InfluxStore(self.influx.url, "mwbench")  # type: ignore[attr-defined]
        store.ensure_database()
        store.close()
        url = self.postgres.create_database("mwbench")  # type: ignore[attr-defined]
        registry = Registry(url)
        registry.upsert_rows(registry_rows(self.args.accounts), source="bench")
        registry.close()
        t0 = time.perf_counter()
        loader = Loader(self.influx.url)  # type: ignore[attr-defined]
        try:
            for i in range(self.args.accounts):
                s = month_series(account(i), first, self.args.days, None, self.args.seed)
                loader.submit(["mwbench"], s.lines + s.events)
        finally:
            loader.close()
        print(
            f"loaded {self.args.accounts} accounts x {self.args.days} days ({first} .. {last}) of one-minute"
            f" readings in {time.perf_counter() - t0:.0f}s",
            flush=True,
        )
        days = [first + timedelta(days=k) for k in range(self.args.days)]
        return url, [(account(i).site, d) for i in range(self.args.accounts) for d in days]

    def warm_up(self, url: str) -> None:
        """One untimed full pass, so that every timed run overwrites existing series."""
        from analysis.worker import run_once
        from core.registry import Registry
        from core.settings import load_settings
        from core.store import InfluxStore

        settings = load_settings(self.env(url))
        store, registry = InfluxStore.from_settings(settings), Registry(url)
        try:
            t0 = time.perf_counter()
            result = run_once(settings, store, registry, now_ms=self.now_ms, full=True)
            took = time.perf_counter() - t0
            print(f"warm-up full pass: {result.days} site-days in {took:.1f}s", flush=True)
        finally:
            store.close()
            registry.close()

    def run(self, url: str, pairs: list[tuple[str, date]], n_workers: int, k: int) -> Run:
        """Wall seconds from the marks' commit to an empty queue, site-days per worker, CPU seconds."""
        from core.claims import WorkQueue
        from core.registry import Registry

        logs = [self.root / f"w{n_workers}-{k}-{n}.log" for n in range(n_workers)]
        procs = []
        for path in logs:
            with open(path, "wb") as out:
                procs.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "tests.integration.multi_worker_proc"]
                        + ["--now-ms", str(self.now_ms), "--interval", str(PASS_INTERVAL_S)],
                        env=self.env(url),
                        cwd=ROOT,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                    )
                )
        registry = Registry(url)
        queue = WorkQueue(registry, "bench", 60)
        try:
            deadline = time.monotonic() + 120
            while not all("started" in p.read_text(errors="replace") for p in logs):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"workers did not start: {logs[0].read_text()[-2000:]}")
                time.sleep(0.1)
            time.sleep(1.0)  # each has been through an idle pass
            load = os.getloadavg()[0]
            influx_cpu = proc_cpu_s(self.influx.proc.pid)  # type: ignore[attr-defined]
            workers_cpu = sum(proc_cpu_s(p.pid) for p in procs)
            t0 = time.perf_counter()
            registry.mark_dirty(pairs)
            while queue.pending()[0]:
                time.sleep(0.02)
            wall = time.perf_counter() - t0
            influx_cpu = proc_cpu_s(self.influx.proc.pid) - influx_cpu  # type: ignore[attr-defined]
            workers_cpu = sum(proc_cpu_s(p.pid) for p in procs) - workers_cpu
        finally:
            for p in procs:
                p.send_signal(signal.SIGTERM)
            for p in procs:
                p.wait(60)
            registry.close()
        per_worker: dict[str, int] = {}
        for path in logs:
            per_worker |= site_days(path.read_text(errors="replace"))
        return Run(wall, per_worker, workers_cpu, influx_cpu, load)

    def queue_costs(self) -> dict[str, float]:
        """Milliseconds of the claim statements with ``--queue-sites`` sites queued."""
        from core.claims import WorkQueue
        from core.registry import Registry

        url = self.postgres.create_database("mwqueue")  # type: ignore[attr-defined]
        registry = Registry(url)
        try:
            n = self.args.queue_sites
            day = self.today
            out = {}
            t0 = time.perf_counter()
            registry.mark_dirty((f"Q{i:06d}", day) for i in range(n))
            out[f"mark_dirty, {n:,} new site-days"] = (time.perf_counter() - t0) * 1000
            t0 = time.perf_counter()
            registry.mark_dirty((f"Q{i:06d}", day) for i in range(n))
            out[f"mark_dirty, the same {n:,} again"] = (time.perf_counter() - t0) * 1000
            t0 = time.perf_counter()
            registry.mark_dirty([("Q000001", day - timedelta(days=1))])
            out["mark_dirty, 1 site-day"] = (time.perf_counter() - t0) * 1000
            queue = WorkQueue(registry, "bench", 60)
            cutoff = queue.now_ms()
            claims_ms = []
            finish_ms = []
            for _ in range(50):
                t0 = time.perf_counter()
                claims = queue.claim(8, cutoff)
                claims_ms.append((time.perf_counter() - t0) * 1000)
                for c in claims:
                    t0 = time.perf_counter()
                    queue.finish(c, queue.marks(c.site_id))
                    finish_ms.append((time.perf_counter() - t0) * 1000)
            out[f"claim 8 of {n:,} queued (median of 50)"] = statistics.median(claims_ms)
            out["marks + finish of one site (median)"] = statistics.median(finish_ms)
            return out
        finally:
            registry.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--accounts", type=int, default=100)
    p.add_argument("--days", type=int, default=7, help="days of one-minute readings, ending yesterday")
    p.add_argument("--workers", default="1,2", help="worker counts to time, comma-separated")
    p.add_argument("--repeat", type=int, default=2, help="timed runs per worker count (median shown)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--queue-sites", type=int, default=50_000, help="queue size of the statement costs")
    args = p.parse_args(argv)
    counts = [int(x) for x in args.workers.split(",")]
    print(f"machine: {machine_basics()}", flush=True)
    bench = Bench(args)
    try:
        bench.start()
        url, pairs = bench.load()
        bench.warm_up(url)
        results: dict[int, list[Run]] = {}
        for k in range(args.repeat):
            for n in counts:
                run = bench.run(url, pairs, n, k)
                results.setdefault(n, []).append(run)
                print(
                    f"  run {k + 1}, {n} worker(s): {sum(run.per_worker.values())} site-days in"
                    f" {run.wall_s:.1f}s = {run.rate:.1f} site-days/s; per worker"
                    f" {sorted(run.per_worker.values(), reverse=True)}; CPU s: workers"
                    f" {run.workers_cpu_s:.1f}, influxd {run.influx_cpu_s:.1f};"
                    f" load before {run.load_before:.1f}",
                    flush=True,
                )
        costs = bench.queue_costs()
    finally:
        bench.stop()

    base: float | None = None
    print(f"\n{args.accounts} accounts x {args.days} days of one-minute readings, registry on PostgreSQL")
    print(
        f"{'workers':>7}  {'site-days':>9}  {'seconds':>8}  {'site-days/s':>11}  {'x one worker':>12}"
        f"  {'worker CPU s':>12}  {'influxd CPU s':>13}"
    )
    for n in counts:
        runs = sorted(results[n], key=lambda r: r.rate)
        mid = runs[len(runs) // 2]  # the median run (the upper one of an even count)
        base = base or mid.rate
        print(
            f"{n:>7}  {sum(mid.per_worker.values()):>9}  {mid.wall_s:>8.1f}  {mid.rate:>11.1f}"
            f"  {mid.rate / base:>12.2f}  {mid.workers_cpu_s:>12.1f}  {mid.influx_cpu_s:>13.1f}"
        )
    print(f"\nclaim statements, {args.queue_sites:,} sites queued (ms):")
    for what, ms in costs.items():
        print(f"  {what:<45} {ms:8.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
