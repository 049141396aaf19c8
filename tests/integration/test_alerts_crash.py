"""kill -9 of the alert service at random moments during a burst, over many seeds: every owed
notification still arrives, and the only copies are of the one a killed sender had in hand
for the receiver (same idempotency key, at most one per kill and receiver)."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from analysis.alerts.engine import AlertEngine, AlertPolicy, PowerEvent, Routes
from analysis.alerts.state import OutboxRow
from core.registry import Registry
from core.servers import wait_until
from tests.integration.receivers import (  # noqa: F401 - the fixtures are used by name
    HttpReceiver,
    Reply,
    http_receiver_fixture,
)

pytestmark = pytest.mark.integration

HEADER = "site_id,site_kind,name,voltage_class_kv,phases,meter_id,nominal_v,upper_pct,lower_pct,profile,feeder_id,manager\n"
ACCOUNTS = 12
SEEDS = range(6)
KILLS = 3


def start(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as fh:
        return subprocess.Popen(
            [sys.executable, "-m", "pqmon", "alerts", "run"], env=env, stdout=fh, stderr=fh
        )


def states(registry: Registry) -> Counter[str]:
    with Session(registry.engine) as s:
        return Counter(s.scalars(select(OutboxRow.state)))


@pytest.mark.parametrize("seed", SEEDS)
def test_kill_9_during_a_burst_loses_nothing(seed: int, tmp_path: Path, http_receiver: HttpReceiver) -> None:
    rng = random.Random(seed)
    # Each answer takes a little while, so that kills land in the middle of sends.
    http_receiver.respond_with(lambda _req: Reply(200, {"ok": True}, delay_s=rng.uniform(0.0, 0.05)))
    rows = [f"K{i:02d},account,Account {i},0.38,3,K{i:02d}-M,220,,,gb,," for i in range(ACCOUNTS)]
    (tmp_path / "reg.csv").write_text(HEADER + "\n".join(rows) + "\n")
    registry = Registry(f"sqlite:///{tmp_path / 'reg.db'}")
    registry.import_csv(tmp_path / "reg.csv")
    (tmp_path / "alerts.toml").write_text(
        f'[policy]\nclaim_timeout_s = 1\n\n[channels.hook]\ntype = "webhook"\nurl = "{http_receiver.url}"\n'
    )
    env = {
        "PATH": "/usr/bin:/bin",
        "PQMON_REGISTRY_URL": f"sqlite:///{tmp_path / 'reg.db'}",
        "PQMON_DATA_DIR": str(tmp_path / "var"),
        "PQMON_ALERTS_FILE": str(tmp_path / "alerts.toml"),
    }
    # Independent accounts, each its own incident (fleet_fraction 1: never one fleet incident),
    # so every account owes exactly one page and one restoration.
    engine = AlertEngine(registry, Routes({"ops": ["hook"]}), AlertPolicy(fleet_fraction=1.0))
    t0 = int(time.time() * 1000) - 3_600_000
    events = [
        PowerEvent(f"K{i:02d}", f"K{i:02d}-M", "power_off", t0 + i, f"off-{i}") for i in range(ACCOUNTS)
    ]
    events += [
        PowerEvent(f"K{i:02d}", f"K{i:02d}-M", "power_on", t0 + 600_000 + i, f"on-{i}")
        for i in range(ACCOUNTS)
    ]
    batches = [events[i : i + 4] for i in range(0, len(events), 4)]
    log = tmp_path / "alerts.log"
    proc = start(env, log)
    kills = 0
    try:
        for n, batch in enumerate(batches):
            engine.on_events(batch)
            if kills < KILLS and n % 2 == 1:
                # Wait until it is sending (or has sent something), then kill it at a random moment.
                wait_until(lambda: len(http_receiver.requests) > 0, 30, "the first deliveries")
                time.sleep(rng.uniform(0.0, 0.15))  # the random point of the kill, not a wait for a result
                proc.send_signal(signal.SIGKILL)
                proc.wait(10)
                kills += 1
                proc = start(env, log)
        wait_until(lambda: set(states(registry)) == {"sent"}, 60, "every notification delivered")
    finally:
        proc.terminate()
        proc.wait(20)
    assert kills == KILLS
    with Session(registry.engine) as s:
        owed = {
            f"pqmon-{row.id}": (row.kind, json.loads(row.payload)["sites"][0]["site"])
            for row in s.scalars(select(OutboxRow))
        }
    received = Counter(r.headers["idempotency-key"] for r in http_receiver.requests)
    assert set(received) == set(owed), log.read_text()[-2000:]
    # One page and one restoration per account, whatever the kills.
    assert sorted(owed.values()) == sorted(
        [("incident", f"K{i:02d}") for i in range(ACCOUNTS)]
        + [("resolved", f"K{i:02d}") for i in range(ACCOUNTS)]
    )
    copies = sum(received.values()) - len(received)
    assert copies <= kills, received
    registry.close()
