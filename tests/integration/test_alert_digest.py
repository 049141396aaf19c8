"""A burst larger than a robot takes (20 a minute) goes as one digest, not a lagging queue;
a few notifications still go one by one (real registry, a local DingTalk-format receiver)."""

from __future__ import annotations

import time
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from analysis.alerts.channels import DingTalkChannel
from analysis.alerts.dispatch import Dispatcher
from analysis.alerts.engine import AlertEngine, AlertPolicy, PowerEvent, Routes
from analysis.alerts.state import DeliveryRow, OutboxRow
from core.registry import Registry
from tests.integration.receivers import (  # noqa: F401 - the fixtures are used by name
    HttpReceiver,
    Reply,
    http_receiver_fixture,
)

HEADER = "site_id,site_kind,name,voltage_class_kv,phases,meter_id,nominal_v,upper_pct,lower_pct,profile,feeder_id,manager\n"


def setup(tmp_path: Path, accounts: int) -> tuple[Registry, AlertEngine]:
    rows = [f"K{i:02d},account,Account {i},0.38,3,K{i:02d}-M,220,,,gb,," for i in range(accounts)]
    (tmp_path / "reg.csv").write_text(HEADER + "\n".join(rows) + "\n")
    registry = Registry(f"sqlite:///{tmp_path / 'reg.db'}")
    registry.import_csv(tmp_path / "reg.csv")
    return registry, AlertEngine(registry, Routes({"ops": ["robot"]}), AlertPolicy(fleet_fraction=1.0))


def burst(engine: AlertEngine, accounts: int) -> None:
    t0 = int(time.time() * 1000) - 60_000
    engine.on_events(
        [
            PowerEvent(f"K{i:02d}", f"K{i:02d}-M", "power_off", t0 + i * 1000, f"off-{i}")
            for i in range(accounts)
        ]
    )


def test_a_burst_past_the_robots_limit_is_one_digest(tmp_path: Path, http_receiver: HttpReceiver) -> None:
    http_receiver.respond_with(lambda _req: Reply(200, {"errcode": 0, "errmsg": "ok"}))
    registry, engine = setup(tmp_path, 25)
    burst(engine, 25)
    robot = DingTalkChannel("robot", f"{http_receiver.url}/robot/send?access_token=t0k")
    dispatcher = Dispatcher(registry, {"robot": robot})
    try:
        dispatcher.run_once()
        [request] = http_receiver.wait_for(1)
        text = request.json()["markdown"]["text"]
        assert all(f"(K{i:02d})" in text for i in range(25)), text[:500]
        assert "25 notifications (digest" in request.json()["markdown"]["title"]
        with Session(registry.engine) as s:
            assert set(s.scalars(select(OutboxRow.state))) == {"sent"}
            assert len(s.scalars(select(DeliveryRow)).all()) == 25  # each row has its log entry
        dispatcher.run_once()
        assert len(http_receiver.requests) == 1  # nothing sent twice
    finally:
        dispatcher.close()
        registry.close()


def test_a_few_go_one_by_one(tmp_path: Path, http_receiver: HttpReceiver) -> None:
    http_receiver.respond_with(lambda _req: Reply(200, {"errcode": 0, "errmsg": "ok"}))
    registry, engine = setup(tmp_path, 3)
    burst(engine, 3)
    dispatcher = Dispatcher(
        registry, {"robot": DingTalkChannel("robot", f"{http_receiver.url}/r?access_token=x")}
    )
    try:
        dispatcher.run_once()
        requests = http_receiver.wait_for(3)
        assert all("digest" not in r.json()["markdown"]["title"] for r in requests)
    finally:
        dispatcher.close()
        registry.close()
