#!/usr/bin/env python
"""Analysis benchmark: the worker's roll-ups against a bare read of the same raw data.

One month of one-minute three-phase readings (ua, ub, uc) for ``--accounts`` key accounts
(200 by default: 200 x 43,200 x 3 ~ 26 million voltage values) in one InfluxDB that this
script starts (``LocalInflux``), then, in one run:

  (a) read raw: for every account, exactly the worker's queries (``analysis.worker.read_site``
      over the window a full pass uses), parsed into DataFrames; nothing else
  (b) full roll-up: ``python -m pqmon worker --once --full`` as a subprocess; wall time and
      the child's peak RSS (``os.wait4``); repeated on a second database holding the first
      accounts/4 accounts, with (a) for those too, to show that memory does not grow with
      the number of accounts
  (c) incremental: one day of late data for 20 accounts (that day's readings, with a
      45-minute gap, and a power_off/power_on pair) is written, the (site, day) pairs are
      marked dirty as the collector does (``Registry.mark_dirty``), then
      ``python -m pqmon worker --once`` (an incremental pass) is timed
  (d) month report of every account from the roll-ups: ``fleet_report`` in-process
      (and ``site_report`` for every account, reported separately, no target)

Targets: (b) <= 1.5 x (a); (c) <= 5 % of (b); (d) < 1 % of (b); peak
RSS of (b) must not grow with the number of accounts (here: RSS(N) / RSS(N/4) <= 1.25).

    .venv/bin/python bench/analysis_bench.py --keep /tmp/pqbench-analysis   # load once (minutes), rerun fast
    .venv/bin/python bench/analysis_bench.py --accounts 40 --days 7          # a quick smoke run
    .venv/bin/python bench/analysis_bench.py --keep DIR --profile /tmp/prof  # + py-spy of two passes

See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench._bench import machine_basics, summarise_profile  # noqa: E402 - needs ROOT on sys.path

TZ = "Asia/Shanghai"
BATCH = 5000  # lines per /write, the collector's default PQMON_BATCH_SIZE
LATE_ACCOUNTS = 20
LATE_DAYS_BACK = 7  # the late day is this many days before the last loaded day
LATE_OUTAGE = (10 * 60, 45)  # local minute of day it starts, minutes long
RSS_RATIO_MAX = 1.25
DATA_VERSION = 1  # bump when the generated data changes, so --keep reloads


# -- the fleet ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Account:
    index: int
    site: str
    meter: str
    kv: float
    nominal: float


def account(i: int) -> Account:
    site = f"K{i + 1:04d}"
    kv, nominal = (10.0, 57.735) if i % 2 == 0 else (0.38, 220.0)  # 10 kV via PTs; 380 V direct
    return Account(i, site, f"{site}-M1", kv, nominal)


def late_indices(n: int) -> list[int]:
    k = min(LATE_ACCOUNTS, n)
    return sorted({i * n // k for i in range(k)})


def registry_rows(n: int) -> list[tuple[int, dict[str, str]]]:
    rows = []
    for i in range(n):
        a = account(i)
        rows.append(
            (
                i + 2,
                {
                    "site_id": a.site,
                    "site_kind": "account",
                    "name": f"Bench account {i + 1}",
                    "voltage_class_kv": f"{a.kv:g}",
                    "phases": "3",
                    "meter_id": a.meter,
                    "nominal_v": f"{a.nominal:g}",
                    "upper_pct": "",
                    "lower_pct": "",
                    "profile": "gb",
                    "feeder_id": "",
                    "manager": "",
                },
            )
        )
    return rows


# -- the data -----------------------------------------------------------------------------------
def day_start_ms(d: date) -> int:
    return int(datetime(d.year, d.month, d.day, tzinfo=ZoneInfo(TZ)).timestamp() * 1000)


@dataclass
class Series:
    lines: list[str]
    events: list[str]
    values: int


def _voltages(rng: np.random.Generator, a: Account, n: int) -> np.ndarray:
    """n one-minute values x 3 phases: a daily swing, noise, a per-account level, excursions."""
    minute = np.arange(n) % 1440
    level = 1.0 + rng.uniform(-0.03, 0.03)
    daily = 0.015 * np.sin(2 * np.pi * (minute / 1440.0 - 0.3)) + 0.006 * np.sin(2 * np.pi * minute / 480.0)
    walk = np.repeat(rng.normal(0, 0.004, n // 60 + 1).cumsum() * 0.2, 60)[:n]  # slow drift
    vals = (level + daily + walk)[:, None] + rng.normal(0, 0.003, (n, 3)) + rng.normal(0, 0.004, 3)
    for _ in range(int(rng.integers(0, 6))):  # excursions beyond +-7 %: a few minutes to hours
        s, length = int(rng.integers(0, n - 1)), int(rng.integers(5, 240))
        vals[s : s + length] += rng.choice([-1, 1]) * rng.uniform(0.075, 0.12)
    return vals * a.nominal


def _lines(a: Account, ts: np.ndarray, v: np.ndarray) -> list[str]:
    prefix = f"reading,meter={a.meter},side=customer,site={a.site} ua="
    return [
        f"{prefix}{x:.2f},ub={y:.2f},uc={z:.2f},interval_s=60.0 {t}"
        for x, y, z, t in zip(v[:, 0].tolist(), v[:, 1].tolist(), v[:, 2].tolist(), ts.tolist(), strict=True)
    ]


def _event(a: Account, kind: str, event_id: str, ts_ms: int) -> str:
    return f'event,meter={a.meter},site={a.site},type={kind} event_id="{event_id}" {ts_ms}'


def month_series(a: Account, first: date, days: int, late_day: date | None, seed: int) -> Series:
    """The readings and events loaded for ``a``; the late day (if any) is left out: it arrives in (c)."""
    rng = np.random.default_rng([seed, a.index])
    start = day_start_ms(first)
    n = days * 1440
    ts = start + np.arange(n, dtype=np.int64) * 60_000
    v = _voltages(rng, a, n)
    keep = np.ones(n, bool)
    events: list[str] = []
    if rng.random() < 0.15:  # some accounts have outages: events, and no readings meanwhile
        for k in range(int(rng.integers(1, 4))):
            s = int(rng.integers(0, n - 300))
            length = int(rng.choice([2, 3, 8, 30, 95, 240]))
            keep[s : s + length] = False
            off = int(ts[s]) + int(rng.integers(0, 60_000))
            events.append(_event(a, "power_off", f"{a.site}-o{k}", off))
            events.append(_event(a, "power_on", f"{a.site}-n{k}", off + length * 60_000))
    if rng.random() < 0.10:  # communication loss: silence, no events
        s = int(rng.integers(0, n - 600))
        keep[s : s + int(rng.integers(30, 600))] = False
    if late_day is not None:
        d0 = (late_day - first).days * 1440
        keep[d0 : d0 + 1440] = False
    v, ts = v[keep], ts[keep]
    return Series(_lines(a, ts, v), events, 3 * len(ts))


def late_series(a: Account, late_day: date, seed: int) -> Series:
    """The late day of ``a``: a full day of readings except a 45-minute outage, and its events."""
    rng = np.random.default_rng([seed, a.index, 99])
    start = day_start_ms(late_day)
    ts = start + np.arange(1440, dtype=np.int64) * 60_000
    v = _voltages(rng, a, 1440)
    s, length = LATE_OUTAGE
    keep = np.ones(1440, bool)
    keep[s : s + length] = False
    events = [
        _event(a, "power_off", f"{a.site}-late-off", int(ts[s])),
        _event(a, "power_on", f"{a.site}-late-on", int(ts[s]) + length * 60_000),
    ]
    return Series(_lines(a, ts[keep], v[keep]), events, 3 * int(keep.sum()))


class Loader:
    """Writes batches through ``InfluxStore.write`` on two threads while the main thread builds lines."""

    def __init__(self, url: str, threads: int = 2) -> None:
        from core.store import InfluxStore

        self.url = url
        self.local = threading.local()
        self.pool = ThreadPoolExecutor(threads)
        self.pending = threading.Semaphore(threads * 3)
        self.errors: list[BaseException] = []
        self.written = 0
        self._store_cls = InfluxStore
        self._lock = threading.Lock()

    def _store(self, db: str):  # type: ignore[no-untyped-def]
        stores = getattr(self.local, "stores", None)
        if stores is None:
            stores = self.local.stores = {}
        if db not in stores:
            stores[db] = self._store_cls(self.url, db, timeout_s=300)
        return stores[db]

    def _write(self, db: str, batch: list[str]) -> None:
        try:
            self._store(db).write(batch)
            with self._lock:
                self.written += len(batch)
        except BaseException as exc:  # noqa: BLE001 - reported by check()
            self.errors.append(exc)
        finally:
            self.pending.release()

    def submit(self, dbs: list[str], lines: list[str]) -> None:
        for i in range(0, len(lines), BATCH):
            batch = lines[i : i + BATCH]
            for db in dbs:
                self.pending.acquire()
                self.check()
                self.pool.submit(self._write, db, batch)

    def check(self) -> None:
        if self.errors:
            raise RuntimeError(f"write failed: {self.errors[0]}")

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        self.check()


# -- processes ----------------------------------------------------------------------------------
def proc_cpu_s(pid: int) -> float:
    """utime + stime of a running process, in seconds."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


def settle(pid: int, quiet_s: float = 4.0, limit_s: float = 180.0) -> float:
    """Wait until InfluxDB is idle (compactions after a load skew timings); returns the wait."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit_s:
        c0 = proc_cpu_s(pid)
        time.sleep(quiet_s)
        if proc_cpu_s(pid) - c0 < 0.05 * quiet_s:
            break
    return time.monotonic() - t0


@dataclass
class Child:
    wall_s: float
    maxrss_mb: float
    rc: int
    output: str
    influx_cpu_s: float

    @property
    def summary(self) -> str:
        """The worker's own line: "full pass: analysed N sites, D site-days, wrote P points in Ss"."""
        lines = self.output.strip().splitlines()
        return next(
            (x for x in lines if x.startswith(("full pass", "incremental pass"))), lines[-1] if lines else ""
        )

    def stat(self, pattern: str) -> str | None:
        m = re.search(pattern, self.summary)
        return m.group(1) if m else None


def run_child(argv: list[str], env: dict[str, str], log: Path, influx_pid: int) -> Child:
    """Run ``argv`` and measure its wall time and peak RSS (``os.wait4``: this child only)."""
    c0 = proc_cpu_s(influx_pid)
    with open(log, "w") as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    return Child(
        wall,
        usage.ru_maxrss / 1024,
        proc.returncode,
        log.read_text(errors="replace"),
        proc_cpu_s(influx_pid) - c0,
    )


# -- the bench ----------------------------------------------------------------------------------
@dataclass
class Db:
    name: str
    accounts: int
    registry_url: str
    data_dir: Path


@dataclass
class Row:
    step: str
    seconds: float
    ratio: float | None = None
    ratio_of: str = ""
    target: str = ""
    ok: bool | None = None
    note: str = ""


@dataclass
class Bench:
    args: argparse.Namespace
    root: Path = field(init=False)
    influx: object = None
    rows: list[Row] = field(default_factory=list)
    checks: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        keep = self.args.keep
        self.root = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="pqmon-abench-"))
        self.root.mkdir(parents=True, exist_ok=True)
        self.today = datetime.now(ZoneInfo(TZ)).date()

    # setup ----------------------------------------------------------------------------------
    def meta_path(self) -> Path:
        return self.root / "meta.json"

    def start(self) -> None:
        from core.servers import LocalInflux

        self.influx = LocalInflux(self.root / "influx").start()
        print(f"InfluxDB {self.influx.url} (pid {self.influx.proc.pid}), data in {self.root}", flush=True)

    def stop(self) -> None:
        if self.influx is not None:
            self.influx.stop(timeout_s=60)
        if self.args.keep:
            print(f"kept {self.root} (rerun with --keep {self.root} to skip the load)")
        else:
            shutil.rmtree(self.root, ignore_errors=True)

    def db(self, n: int) -> Db:
        name = f"bench_a{n}_d{self.args.days}_s{self.args.seed}"
        return Db(name, n, f"sqlite:///{self.root / (name + '.registry.db')}", self.root / f"var-{name}")

    def load(self, big: Db, small: Db) -> dict:
        """Create (or reuse) both databases and their registries; returns the data's calendar."""
        from core.registry import Registry
        from core.store import InfluxStore

        meta = json.loads(self.meta_path().read_text()) if self.meta_path().exists() else {}
        info = meta.get(big.name)
        if info and info.get("version") == DATA_VERSION and meta.get(small.name) == info:
            info = {**info, "reused": True}
            print(
                f"reusing {big.name} and {small.name} loaded on {info['loaded_at']} "
                f"(days {info['first']} .. {info['last']}; load took {info['load_s']:.0f}s)",
                flush=True,
            )
            return info
        last = self.today - timedelta(days=1)
        first = last - timedelta(days=self.args.days - 1)
        late = last - timedelta(days=min(LATE_DAYS_BACK, self.args.days - 1))
        late_set = set(late_indices(big.accounts))
        for d in (big, small):
            store = InfluxStore(self.influx.url, d.name)
            store.query_raw(f'DROP DATABASE "{d.name}"')
            store.ensure_database()
            store.close()
            Path(d.registry_url.removeprefix("sqlite:///")).unlink(missing_ok=True)
            shutil.rmtree(d.data_dir, ignore_errors=True)
            reg = Registry(d.registry_url)
            reg.upsert_rows(registry_rows(d.accounts), source="bench")
            reg.close()
        print(
            f"loading {big.accounts} accounts x {self.args.days} days ({first} .. {last}, local {TZ}) "
            f"into {big.name}, the first {small.accounts} also into {small.name}; "
            f"{len(late_set)} accounts leave {late} out (it arrives late in (c))",
            flush=True,
        )
        loader = Loader(self.influx.url)
        t0 = time.perf_counter()
        values = lines = 0
        next_report = 0.0
        try:
            for i in range(big.accounts):
                a = account(i)
                s = month_series(a, first, self.args.days, late if i in late_set else None, self.args.seed)
                dbs = [big.name] + ([small.name] if i < small.accounts else [])
                loader.submit(dbs, s.lines + s.events)
                values += s.values
                lines += len(s.lines)
                frac = (i + 1) / big.accounts
                if frac >= next_report or i + 1 == big.accounts:
                    el = time.perf_counter() - t0
                    print(
                        f"  load {i + 1}/{big.accounts} accounts, {values / 1e6:.1f} M values "
                        f"({lines:,} readings) in {el:.0f}s, {values / el / 1e3:,.0f} k values/s, "
                        f"load avg {os.getloadavg()[0]:.1f}",
                        flush=True,
                    )
                    next_report += 0.1
        finally:
            loader.close()
        load_s = time.perf_counter() - t0
        print(
            f"loaded {values:,} voltage values ({lines:,} readings, {loader.written:,} lines incl. "
            f"the N/4 copy) in {load_s:.1f}s",
            flush=True,
        )
        info = {
            "version": DATA_VERSION,
            "first": first.isoformat(),
            "last": last.isoformat(),
            "late": late.isoformat(),
            "values": values,
            "readings": lines,
            "load_s": load_s,
            "accounts": big.accounts,
            "loaded_at": datetime.now().isoformat(timespec="seconds"),
        }
        meta[big.name] = meta[small.name] = info
        self.meta_path().write_text(json.dumps(meta, indent=1))
        return info

    # steps ----------------------------------------------------------------------------------
    def env(self, d: Db) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PQMON_")}
        env.update(
            {
                "PQMON_INFLUX_URL": self.influx.url,
                "PQMON_INFLUX_DB": d.name,
                "PQMON_REGISTRY_URL": d.registry_url,
                "PQMON_DATA_DIR": str(d.data_dir),
                "PQMON_TZ": TZ,
                "PYTHONPATH": str(ROOT),
            }
        )
        return env

    def read_raw(self, d: Db, first: date) -> tuple[float, int, int]:
        """(a): the worker's read_site for every account over a full pass's window."""
        from analysis.worker import read_site, site_spec
        from core.registry import Registry
        from core.store import InfluxStore

        reg = Registry(d.registry_url)
        sites = reg.sites("account")
        reg.close()
        store = InfluxStore(self.influx.url, d.name)
        store.ping()  # connect outside the clock
        # A full pass reads each site from its first day up to the end of today.
        start_ms, end_ms = day_start_ms(first), day_start_ms(self.today + timedelta(days=1))
        meters = [site_spec(s)[1] for s in sites]
        rows = values = 0
        t0 = time.perf_counter()
        for site, meter in zip(sites, meters, strict=True):
            readings, events = read_site(store, site, meter, start_ms, end_ms)
            rows += len(readings) + len(events)
            values += int(readings[["ua", "ub", "uc"]].notna().to_numpy().sum()) if len(readings) else 0
        seconds = time.perf_counter() - t0
        store.close()
        return seconds, rows, values

    def worker(self, d: Db, full: bool, tag: str) -> Child:
        argv = [sys.executable, "-m", "pqmon", "worker", "--once"] + (["--full"] if full else [])
        child = run_child(argv, self.env(d), self.root / f"worker-{tag}.log", self.influx.proc.pid)
        if child.rc != 0:
            raise RuntimeError(f"worker exited with {child.rc}:\n{child.output[-3000:]}")
        return child

    def write_late(self, d: Db, late: date) -> tuple[list[tuple[str, date]], int]:
        """(c) setup: the late day's readings and events for 20 accounts, marked dirty."""
        from core.registry import Registry

        loader = Loader(self.influx.url)
        pairs = []
        values = 0
        for i in late_indices(d.accounts):
            a = account(i)
            s = late_series(a, late, self.args.seed)
            loader.submit([d.name], s.lines + s.events)
            values += s.values
            pairs.append((a.site, late))
        loader.close()
        reg = Registry(d.registry_url)
        reg.mark_dirty(pairs)  # one statement per write pass, like the collector
        reg.close()
        return pairs, values

    def check_late(self, d: Db, pairs: list[tuple[str, date]]) -> None:
        """The incremental pass must have rolled the late day up: its outage (45 min) and its readings."""
        from core.store import InfluxStore

        store = InfluxStore(self.influx.url, d.name)
        late = pairs[0][1]
        lo, hi = day_start_ms(late), day_start_ms(late + timedelta(days=1))
        bad = []
        for site, _ in pairs:
            vq = store.query_frame(
                f"SELECT * FROM vq_daily WHERE site = '{site}' AND phase = 'a'"
                f" AND time >= {lo}ms AND time < {hi}ms"
            )
            rel = store.query_frame(
                f"SELECT * FROM rel_daily WHERE site = '{site}' AND time >= {lo}ms AND time < {hi}ms"
            )
            got = (
                float(vq["outage_min"].iloc[0]) if len(vq) and "outage_min" in vq else None,
                float(vq["monitored_min"].iloc[0]) if len(vq) else None,
                float(rel["outage_s"].iloc[0]) if len(rel) else None,
            )
            want_min = LATE_OUTAGE[1]
            # Other (generated) outages may touch the day too: at least the late one, and readings.
            if (
                got[0] is None
                or got[1] is None
                or got[2] is None
                or got[2] < want_min * 60 - 1
                or got[0] < want_min
                or not 1440 - 300 <= got[1] <= 1440 - want_min
            ):
                bad.append(f"{site}: outage_min, monitored_min, outage_s = {got}")
        store.close()
        if bad:
            self.checks.append(f"late day {late} not rolled up as expected: " + "; ".join(bad[:3]))
        else:
            print(
                f"  check: the {len(pairs)} late site-days show their {LATE_OUTAGE[1]}-minute outage "
                "and their readings in vq_daily and rel_daily",
                flush=True,
            )

    def reports(self, d: Db, first: date, last: date) -> tuple[float, float, dict]:
        from analysis.fleet_report import fleet_report
        from analysis.report import site_report
        from core.registry import Registry
        from core.store import InfluxStore

        store = InfluxStore(self.influx.url, d.name)
        reg = Registry(d.registry_url)
        store.ping()
        reg.sites()  # the registry file opened outside the clock
        t0 = time.perf_counter()
        report = fleet_report(store, reg, first, last, TZ)
        fleet_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        for site in reg.sites("account"):
            site_report(store, reg, site.id, first, last, TZ)
        sites_s = time.perf_counter() - t0
        store.close()
        reg.close()
        return fleet_s, sites_s, report

    def profile(self, d: Db, out_dir: Path) -> None:
        """A full pass, then an incremental one (today for every site), each under py-spy."""
        spy = Path(sys.executable).with_name("py-spy")
        if not spy.exists():
            print("--profile: py-spy is not installed in the venv (pip install py-spy)")
            return
        out_dir.mkdir(parents=True, exist_ok=True)
        for kind, extra in (("full", ["--full"]), ("incremental", [])):
            raw = out_dir / f"worker_{kind}.txt"
            argv = [
                str(spy),
                "record",
                "--format",
                "raw",
                "--rate",
                str(self.args.profile_rate),
                "-o",
                str(raw),
                "--",
                sys.executable,
                "-m",
                "pqmon.cli",
                "worker",
                "--once",
                *extra,
            ]
            child = run_child(
                argv, self.env(d), self.root / f"worker-profile-{kind}.log", self.influx.proc.pid
            )
            print(
                f"\nprofile of the {kind} pass ({d.accounts} accounts), py-spy: {child.wall_s:.1f}s wall; "
                f"{child.summary}; {raw}"
            )
            if raw.exists():
                print(summarise_profile(raw, self.args.profile_top))
            else:
                print(child.output[-2000:])


def machine_info() -> str:
    return machine_basics()


def pass_s(child: Child) -> float:
    """The pass time the worker reports (run_once, without interpreter start-up and imports)."""
    return float(child.stat(r"in ([0-9.]+)s") or "nan")


def fmt_table(rows: list[Row]) -> str:
    head = f"{'step':<46} {'seconds':>9} {'ratio':>14} {'target':>10}  result"
    out = [head, "-" * len(head)]
    for r in rows:
        ratio = f"{r.ratio:.3f} {r.ratio_of}" if r.ratio is not None else ""
        res = "" if r.ok is None else ("PASS" if r.ok else "FAIL")
        out.append(
            f"{r.step:<46} {r.seconds:>9.2f} {ratio:>14} {r.target:>10}  {res}"
            + (f"  {r.note}" if r.note else "")
        )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--accounts", type=int, default=200, help="key accounts (N); the memory run uses N/4")
    p.add_argument("--days", type=int, default=30, help="days of one-minute readings, ending yesterday")
    p.add_argument("--seed", type=int, default=1, help="random seed of the generated data")
    p.add_argument(
        "--keep",
        type=Path,
        default=None,
        help="directory for InfluxDB data and registries, kept; a rerun reuses the loaded data",
    )
    p.add_argument("--reload", action="store_true", help="with --keep: load the data again")
    p.add_argument("--repeat", type=int, default=1, help="repeat (a) and (b) at N; the table shows each run")
    p.add_argument(
        "--profile",
        type=Path,
        default=None,
        help="directory: after the timed steps, a full and an incremental pass under py-spy",
    )
    p.add_argument("--profile-rate", type=int, default=100, help="py-spy samples per second")
    p.add_argument("--profile-top", type=int, default=15, help="functions listed in the profile summary")
    args = p.parse_args(argv)
    if args.accounts < 4 or args.days < 2:
        p.error("need --accounts >= 4 and --days >= 2")

    print(f"machine: {machine_info()}")
    load0 = os.getloadavg()
    print(
        f"load average at start: {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}"
        + (
            "  (WARNING: something else is using the CPUs; figures will be noisy)"
            if load0[0] > 0.5 * (os.cpu_count() or 1)
            else ""
        ),
        flush=True,
    )
    bench = Bench(args)
    if args.reload and bench.meta_path().exists():
        bench.meta_path().unlink()
    big, small = bench.db(args.accounts), bench.db(args.accounts // 4)
    rows = bench.rows
    ok_all = True
    try:
        bench.start()
        info = bench.load(big, small)
        first, last, late = (date.fromisoformat(info[k]) for k in ("first", "last", "late"))
        waited = settle(bench.influx.proc.pid)
        print(
            f"InfluxDB idle after {waited:.0f}s; {info['values']:,} voltage values in {big.name}", flush=True
        )

        b_runs: list[tuple[float, Child]] = []
        for rep in range(args.repeat):
            sfx = f" run {rep + 1}" if args.repeat > 1 else ""
            a_s, a_rows, a_vals = bench.read_raw(big, first)
            print(
                f"(a){sfx} read raw, {big.accounts} accounts: {a_s:.2f}s, {a_rows:,} rows, {a_vals:,} values "
                f"({a_vals / a_s / 1e6:.2f} M values/s), load avg {os.getloadavg()[0]:.1f}",
                flush=True,
            )
            b = bench.worker(big, full=True, tag=f"full-{big.accounts}-{rep + 1}")
            print(
                f"(b){sfx} full roll-up, {big.accounts} accounts: {b.wall_s:.2f}s wall, peak RSS "
                f"{b.maxrss_mb:.0f} MB, influxd CPU {b.influx_cpu_s:.1f}s; worker: "
                f"{b.summary}; load avg {os.getloadavg()[0]:.1f}",
                flush=True,
            )
            b_runs.append((a_s, b))
            rows.append(
                Row(f"(a){sfx} read raw, {big.accounts} accounts", a_s, note=f"{a_vals / 1e6:.1f} M values")
            )
            ratio = b.wall_s / a_s
            rows.append(
                Row(
                    f"(b){sfx} full roll-up, {big.accounts} accounts",
                    b.wall_s,
                    ratio,
                    "x (a)",
                    "<= 1.5",
                    ratio <= 1.5,
                    f"pass {b.stat(r'in ([0-9.]+)s') or '?'}s, {b.stat(r'([0-9]+) site-days') or '?'} "
                    f"site-days, RSS {b.maxrss_mb:.0f} MB",
                )
            )
            ok_all &= ratio <= 1.5
        a_s, b = b_runs[-1]

        a4_s, _, a4_vals = bench.read_raw(small, first)
        b4 = bench.worker(small, full=True, tag=f"full-{small.accounts}")
        print(
            f"(a) read raw, {small.accounts} accounts: {a4_s:.2f}s; (b) full roll-up: {b4.wall_s:.2f}s wall, "
            f"peak RSS {b4.maxrss_mb:.0f} MB; worker: {b4.summary}",
            flush=True,
        )
        rows.append(
            Row(f"(a) read raw, {small.accounts} accounts", a4_s, note=f"{a4_vals / 1e6:.1f} M values")
        )
        rows.append(
            Row(
                f"(b) full roll-up, {small.accounts} accounts",
                b4.wall_s,
                b4.wall_s / a4_s,
                "x (a)",
                "",
                None,
                f"pass {b4.stat(r'in ([0-9.]+)s') or '?'}s, RSS {b4.maxrss_mb:.0f} MB",
            )
        )

        pairs, late_vals = bench.write_late(big, late)
        print(
            f"(c) wrote {late_vals:,} late values ({late}) and a power_off/power_on pair for "
            f"{len(pairs)} accounts; marked {len(pairs)} (site, day) pairs dirty",
            flush=True,
        )
        c = bench.worker(big, full=False, tag="incremental")
        c_line = c.summary
        print(f"(c) incremental pass: {c.wall_s:.2f}s wall; worker: {c_line}", flush=True)
        if not c_line.startswith("incremental pass"):
            bench.checks.append(f"(c) was not an incremental pass: {c_line}")
        bench.check_late(big, pairs)
        ratio = c.wall_s / b.wall_s
        rows.append(
            Row(
                f"(c) incremental, late day for {len(pairs)} accounts",
                c.wall_s,
                ratio,
                "x (b)",
                "<= 0.05",
                ratio <= 0.05,
                f"{c.stat(r'([0-9]+) site-days') or '?'} site-days, pass {c.stat(r'in ([0-9.]+)s') or '?'}s"
                f" (pass/pass {pass_s(c) / pass_s(b):.3f})",
            )
        )
        ok_all &= ratio <= 0.05

        fleet_s, sites_s, report = bench.reports(big, first, last)
        print(
            f"(d) fleet report {first} .. {last}: {fleet_s:.3f}s for {report['accounts']} accounts "
            f"(pooled VQR {report['voltage']['vqr_pooled_pct']:.3f}); "
            f"site_report x {big.accounts}: {sites_s:.2f}s",
            flush=True,
        )
        if report["accounts"] != big.accounts or len(report["sites"]) != big.accounts:
            bench.checks.append(f"(d) the fleet report has {report['accounts']} accounts, not {big.accounts}")
        ratio = fleet_s / b.wall_s
        rows.append(
            Row(
                f"(d) month fleet report, {big.accounts} accounts",
                fleet_s,
                ratio,
                "x (b)",
                "< 0.01",
                ratio < 0.01,
            )
        )
        ok_all &= ratio < 0.01
        rows.append(
            Row(f"    site_report x {big.accounts} (no target)", sites_s, sites_s / b.wall_s, "x (b)")
        )

        rss_ratio = b.maxrss_mb / b4.maxrss_mb
        rss_ok = rss_ratio <= RSS_RATIO_MAX
        ok_all &= rss_ok and not bench.checks

        print(f"\nresults ({args.days} days; N = {big.accounts}, N/4 = {small.accounts}; {TZ}):")
        print(fmt_table(rows))
        print(
            f"\npeak RSS of (b): {b.maxrss_mb:.0f} MB at {big.accounts} accounts, {b4.maxrss_mb:.0f} MB at "
            f"{small.accounts}; ratio {rss_ratio:.2f} (target <= {RSS_RATIO_MAX}: "
            f"{'PASS' if rss_ok else 'FAIL'}; growing with accounts would be ~4)"
        )
        print(
            f"(b)/(a): {b.wall_s / a_s:.2f} at {big.accounts} accounts, "
            f"{b4.wall_s / a4_s:.2f} at {small.accounts}"
        )
        print(f"influxd CPU during (b): {b.influx_cpu_s:.1f}s of {b.wall_s:.1f}s wall")
        print(
            f"load: {info['values']:,} values in {info['load_s']:.0f}s "
            f"({info['values'] / info['load_s'] / 1e3:,.0f} k values/s, N and N/4 copies written together)"
            + (f" (in an earlier run, {info['loaded_at']})" if info.get("reused") else "")
        )
        la = os.getloadavg()
        print(
            f"nproc {os.cpu_count()}; load average at start {load0[0]:.2f}, "
            f"at end {la[0]:.2f} {la[1]:.2f} {la[2]:.2f}"
        )
        for c_msg in bench.checks:
            print(f"CHECK FAILED: {c_msg}")

        if args.profile is not None:
            bench.profile(big, args.profile)
    finally:
        bench.stop()
    print("\nALL PASS" if ok_all else "\nSOME FAIL")
    return 0 if ok_all else 1


if __name__ == "__main__":
    sys.exit(main())
