#!/usr/bin/env python
"""Live pass benchmark: an incremental pass over N sites that all received new minutes today,
beside a bare bulk read of the same raw data, in one run (issue 11, item 1).

For each N (``--sites``, default 500, 2000 and 10000) one InfluxDB database (``LocalInflux``,
started by this script) and one SQLite registry hold N three-phase accounts with one-minute
readings (ua, ub, uc, interval_s) for today, from ``--hours`` before now (at most from local
midnight) to ten minutes ago. Then:

  warm-up  ``python -m pqmon worker --once --full`` as a subprocess: the sites have
           roll-ups and the worker a previous pass, as in a running system
  new data the last ten minutes of every site are written and (site, today) marked dirty as
           the collector does (``Registry.mark_dirty``)
  bulk     the same raw data read in bulk, in-process: ``analysis.worker.read_chunk`` for the
           chunks the worker forms (CHUNK_SITES sites, one query per measurement, grouped by
           site), parsed into DataFrames; nothing else
  pass     ``python -m pqmon worker --once`` (incremental) as a subprocess: the pass time the
           worker logs, its wall time with start-up, peak RSS (``os.wait4``), InfluxDB's CPU

Targets: pass <= 2 x bulk at every N; ms per site falls as N grows; 10,000 sites <= 60 s;
peak RSS flat in N.

    .venv/bin/python bench/live_pass_bench.py                              # 500, 2000, 10000
    .venv/bin/python bench/live_pass_bench.py --sites 500 2000 --keep /tmp/pqlive  # rerun fast
    .venv/bin/python bench/live_pass_bench.py --code /tmp/pqmon-before     # the worker of another tree

``--code DIR`` runs the worker from another source tree (e.g. ``git archive HEAD~1 | tar -x -C DIR``)
against the same data, for before/after figures. See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench._bench import machine_basics  # noqa: E402 - needs ROOT on sys.path
from bench.analysis_bench import (  # noqa: E402
    TZ,
    Child,
    Loader,
    account,
    day_start_ms,
    pass_s,
    proc_cpu_s,
    registry_rows,
    settle,
)

NEW_MINUTES = 10  # the minutes that arrive just before the pass
RATIO_MAX = 2.0
TEN_K_MAX_S = 60.0
DATA_VERSION = 1


@dataclass
class Result:
    n: int
    readings: int
    bulk_s: float
    bulk_rows: int
    pass_s: float
    wall_s: float
    rss_mb: float
    influx_cpu_s: float
    summary: str
    bulk_influx_cpu_s: float = 0.0


def lines_for(i: int, ts: np.ndarray, seed: int) -> list[str]:
    a = account(i)
    rng = np.random.default_rng([seed, i])
    v = a.nominal * (1.0 + rng.normal(0, 0.01, (len(ts), 3)) + rng.uniform(-0.03, 0.03))
    prefix = f"reading,meter={a.meter},side=customer,site={a.site} ua="
    return [
        f"{prefix}{x:.2f},ub={y:.2f},uc={z:.2f},interval_s=60.0 {t}"
        for x, y, z, t in zip(v[:, 0].tolist(), v[:, 1].tolist(), v[:, 2].tolist(), ts.tolist(), strict=True)
    ]


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="pqmon-live-"))
        self.root.mkdir(parents=True, exist_ok=True)
        self.influx = None
        self.bulk_cpu_s = 0.0  # influxd's CPU during the last bulk read

    def start(self) -> None:
        from core.servers import LocalInflux

        self.influx = LocalInflux(self.root / "influx").start()
        print(f"InfluxDB {self.influx.url} (pid {self.influx.proc.pid}), data in {self.root}", flush=True)

    def stop(self) -> None:
        if self.influx is not None:
            self.influx.stop(timeout_s=60)
        if not self.args.keep:
            shutil.rmtree(self.root, ignore_errors=True)

    def names(self, n: int) -> tuple[str, str, Path]:
        name = f"live_n{n}_h{self.args.hours}_s{self.args.seed}"
        return name, f"sqlite:///{self.root / (name + '.registry.db')}", self.root / f"var-{name}"

    def env(self, n: int) -> dict[str, str]:
        name, registry_url, data_dir = self.names(n)
        env = {k: v for k, v in os.environ.items() if not k.startswith("PQMON_")}
        code = str(self.args.code or ROOT)
        env.update(
            PQMON_INFLUX_URL=self.influx.url,
            PQMON_INFLUX_DB=name,
            PQMON_REGISTRY_URL=registry_url,
            PQMON_DATA_DIR=str(data_dir),
            PQMON_TZ=TZ,
            PYTHONPATH=code,
        )
        return env

    def worker(self, n: int, tag: str, *extra: str):  # type: ignore[no-untyped-def]
        argv = [sys.executable, "-m", "pqmon", "worker", "--once", *extra]
        env = self.env(n)
        log = self.root / f"worker-{n}-{tag}.log"
        c0 = proc_cpu_s(self.influx.proc.pid)
        with open(log, "w") as out:  # in the tree the worker runs from: ``-m`` imports from the cwd
            t0 = time.perf_counter()
            proc = subprocess.Popen(
                argv, env=env, cwd=self.args.code or ROOT, stdout=out, stderr=subprocess.STDOUT
            )
            _, status, usage = os.wait4(proc.pid, 0)
            wall = time.perf_counter() - t0
        rc = os.waitstatus_to_exitcode(status)
        output = log.read_text(errors="replace")
        child = Child(wall, usage.ru_maxrss / 1024, rc, output, proc_cpu_s(self.influx.proc.pid) - c0)
        if child.rc != 0:
            raise RuntimeError(f"worker {tag} failed ({child.rc}):\n{child.output[-3000:]}")
        return child

    def load(self, n: int) -> tuple[int, int]:
        """Today's minutes up to NEW_MINUTES ago, and a warm-up full pass; (first, end) of the data."""
        from core.registry import Registry
        from core.store import InfluxStore

        name, registry_url, data_dir = self.names(n)
        meta_path = self.root / "meta.json"
        meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
        today = datetime.now(ZoneInfo(TZ)).date()
        info = meta.get(name)
        if info and info["version"] == DATA_VERSION and info["today"] == today.isoformat():
            print(f"N={n}: reusing {name} (loaded {info['loaded_at']})", flush=True)
            return int(info["first"]), int(info["end"])
        now = int(time.time() * 1000) // 60_000 * 60_000
        first = max(day_start_ms(today), now - self.args.hours * 3_600_000)
        end = now - NEW_MINUTES * 60_000
        store = InfluxStore(self.influx.url, name)
        store.query_raw(f'DROP DATABASE "{name}"')
        store.ensure_database()
        store.close()
        Path(registry_url.removeprefix("sqlite:///")).unlink(missing_ok=True)
        shutil.rmtree(data_dir, ignore_errors=True)
        reg = Registry(registry_url)
        reg.upsert_rows(registry_rows(n), source="bench")
        reg.close()
        ts = np.arange(first, end, 60_000, dtype=np.int64)
        t0 = time.perf_counter()
        loader = Loader(self.influx.url)
        try:
            for i in range(n):
                loader.submit([name], lines_for(i, ts, self.args.seed))
        finally:
            loader.close()
        load_s = time.perf_counter() - t0
        print(
            f"N={n}: loaded {n * len(ts):,} readings ({len(ts)} minutes per site) in {load_s:.0f}s",
            flush=True,
        )
        settle(self.influx.proc.pid)
        child = self.worker(n, "warmup", "--full")
        print(f"N={n}: warm-up full pass: {child.summary} (wall {child.wall_s:.1f}s)", flush=True)
        meta[name] = {
            "version": DATA_VERSION,
            "today": today.isoformat(),
            "first": first,
            "end": end,
            "loaded_at": datetime.now().isoformat(timespec="seconds"),
        }
        meta_path.write_text(json.dumps(meta, indent=1))
        return first, end

    def new_minutes(self, n: int, end: int) -> None:
        """The last NEW_MINUTES of every site (written again on a rerun: same points), marked dirty."""
        from core.registry import Registry

        name, registry_url, _ = self.names(n)
        ts = np.arange(end, end + NEW_MINUTES * 60_000, 60_000, dtype=np.int64)
        loader = Loader(self.influx.url)
        try:
            batch: list[str] = []
            for i in range(n):
                batch += lines_for(i, ts, self.args.seed + 1)
            loader.submit([name], batch)
        finally:
            loader.close()
        today = datetime.fromtimestamp(end / 1000, ZoneInfo(TZ)).date()
        reg = Registry(registry_url)
        reg.mark_dirty([(account(i).site, today) for i in range(n)])
        reg.close()

    def bulk_read(self, n: int) -> tuple[float, int]:
        """The worker's chunks of today's window, read with ``read_chunk`` and parsed; nothing else."""
        from analysis.worker import CHUNK_POINTS, CHUNK_SITES, EVENT_LOOKBEHIND_MS, read_chunk
        from core.store import InfluxStore

        name, _, _ = self.names(n)
        today = datetime.now(ZoneInfo(TZ)).date()
        start, end = day_start_ms(today), day_start_ms(today + timedelta(days=1))
        per_chunk = min(CHUNK_SITES, max(1, CHUNK_POINTS // ((end - start) // 60_000 + 60)))
        sites = [(account(i).site, account(i).meter) for i in range(n)]
        store = InfluxStore(self.influx.url, name)
        store.ping()
        rows = 0
        c0 = proc_cpu_s(self.influx.proc.pid)
        t0 = time.perf_counter()
        for k in range(0, n, per_chunk):
            raw = read_chunk(store, sites[k : k + per_chunk], start, end, start - EVENT_LOOKBEHIND_MS)
            rows += len(raw.times)
        took = time.perf_counter() - t0
        self.bulk_cpu_s = proc_cpu_s(self.influx.proc.pid) - c0
        store.close()
        return took, rows

    def run(self, n: int) -> list[Result]:
        first, end = self.load(n)
        out = []
        for r in range(self.args.repeat):
            self.new_minutes(n, end)
            settle(self.influx.proc.pid, quiet_s=2.0)
            bulk_s, rows = self.bulk_read(n)
            child = self.worker(n, f"pass{r}")
            res = Result(
                n,
                n * ((end - first) // 60_000 + NEW_MINUTES),
                bulk_s,
                rows,
                pass_s(child),
                child.wall_s,
                child.maxrss_mb,
                child.influx_cpu_s,
                child.summary,
                self.bulk_cpu_s,
            )
            print(
                f"N={n} run {r + 1}: bulk {bulk_s:.2f}s ({rows:,} rows); pass {res.pass_s:.2f}s "
                f"(wall {res.wall_s:.1f}s, {res.rss_mb:.0f} MB, influxd CPU {res.influx_cpu_s:.1f}s): "
                f"{child.summary}",
                flush=True,
            )
            out.append(res)
        return out


def table(results: list[Result]) -> str:
    head = (
        f"{'sites':>6} {'readings':>10} {'bulk s':>7} {'pass s':>7} {'ratio':>6} {'ms/site':>8} "
        f"{'wall s':>7} {'RSS MB':>7} {'influxd CPU s':>13} {'bulk influxd s':>14}"
    )
    out = [head, "-" * len(head)]
    for r in results:
        out.append(
            f"{r.n:>6} {r.readings:>10,} {r.bulk_s:>7.2f} {r.pass_s:>7.2f} {r.pass_s / r.bulk_s:>6.2f} "
            f"{1000 * r.pass_s / r.n:>8.2f} {r.wall_s:>7.1f} {r.rss_mb:>7.0f} {r.influx_cpu_s:>13.1f}"
            f" {r.bulk_influx_cpu_s:>14.1f}"
        )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sites", type=int, nargs="+", default=[500, 2000, 10000])
    p.add_argument(
        "--hours", type=int, default=8, help="hours of today's minutes per site (from midnight at most)"
    )
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--repeat", type=int, default=1, help="passes per N (each after new minutes)")
    p.add_argument(
        "--keep", type=Path, default=None, help="directory kept; a rerun the same day reuses the data"
    )
    p.add_argument(
        "--code", type=Path, default=None, help="source tree the worker runs from (default: this one)"
    )
    args = p.parse_args(argv)
    print(machine_basics(), flush=True)
    bench = Bench(args)
    results: list[Result] = []
    try:
        bench.start()
        for n in args.sites:
            results += bench.run(n)
    finally:
        bench.stop()
    print()
    print(table(results))
    best = {n: min((r for r in results if r.n == n), key=lambda r: r.pass_s) for n in args.sites}
    ok = all(r.pass_s <= RATIO_MAX * r.bulk_s for r in best.values())
    per_site = [best[n].pass_s / n for n in sorted(best)]
    falling = all(b <= a * 1.05 for a, b in zip(per_site, per_site[1:], strict=False))
    rss = [best[n].rss_mb for n in sorted(best)]
    flat = max(rss) <= 1.25 * min(rss)
    ten_k = best[10000].pass_s <= TEN_K_MAX_S if 10000 in best else None
    print(
        f"\npass <= {RATIO_MAX:g} x bulk at every N: {'PASS' if ok else 'FAIL'}; "
        f"ms/site falls with N: {'PASS' if falling else 'FAIL'}; "
        f"peak RSS flat (max/min <= 1.25): {'PASS' if flat else 'FAIL'}"
        + ("" if ten_k is None else f"; 10,000 sites <= {TEN_K_MAX_S:g}s: {'PASS' if ten_k else 'FAIL'}")
    )
    return 0 if ok and falling and flat and ten_k is not False else 1


if __name__ == "__main__":
    raise SystemExit(main())
