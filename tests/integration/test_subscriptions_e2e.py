"""A user's own subscriptions delivered for real: e-mail through the configured mail server to
the user's address (aiosmtpd), and a personal webhook (a local HTTP receiver)."""

from __future__ import annotations

from pathlib import Path

from analysis.alerts.config import parse
from analysis.alerts.dispatch import Dispatcher
from analysis.alerts.engine import AlertEngine, PowerEvent
from analysis.alerts.subscriptions import subscribe
from core.registry import Registry
from tests.integration.receivers import (  # noqa: F401 - the fixtures are used by name
    HttpReceiver,
    SmtpServer,
    http_receiver_fixture,
    smtp_server_fixture,
)

HEADER = "site_id,site_kind,name,voltage_class_kv,phases,meter_id,nominal_v,upper_pct,lower_pct,profile,feeder_id,manager\n"


def test_subscribers_get_their_own_copy(
    tmp_path: Path, smtp_server: SmtpServer, http_receiver: HttpReceiver
) -> None:
    (tmp_path / "reg.csv").write_text(HEADER + "A1,account,华南钢厂,10,3,A1-M,57.7,,,gb,,\n")
    registry = Registry(f"sqlite:///{tmp_path / 'reg.db'}")
    registry.import_csv(tmp_path / "reg.csv")
    registry.add_user("mgr", "manager", "long-enough-1", ["A1"])
    registry.add_user("op", "operator", "long-enough-1")
    config = parse(
        {
            "channels": {
                "duty-mail": {
                    "type": "email",
                    "host": smtp_server.host,
                    "port": smtp_server.port,
                    "security": "none",
                    "sender": "pqmon <pqmon@example.cn>",
                    "to": ["duty@example.cn"],
                }
            },
            "subscriptions": {"email_channel": "duty-mail"},
        },
        "Asia/Shanghai",
    )
    subscribe(registry, "mgr", "email", "mgr@example.cn", "critical")
    subscribe(registry, "op", "webhook", http_receiver.url + "/op", "minor")
    engine = AlertEngine(registry, config.routes, config.policy)
    dispatcher = Dispatcher(registry, config.channels, subscription_email=config.subscription_email)
    try:
        engine.on_events([PowerEvent("A1", "A1-M", "power_off", engine.now_ms() - 2000, "off-1")])
        dispatcher.run_once()
        mails = smtp_server.wait_for(2)
        assert sorted(m.rcpt_tos[0] for m in mails) == ["duty@example.cn", "mgr@example.cn"]
        mine = next(m for m in mails if m.rcpt_tos == ["mgr@example.cn"])
        assert "华南钢厂" in mine.message.get_body().get_content()  # type: ignore[union-attr]
        [hook] = http_receiver.wait_for(1)
        assert hook.path == "/op" and hook.json()["alert"]["rule"] == "outage"
    finally:
        dispatcher.close()
        registry.close()
