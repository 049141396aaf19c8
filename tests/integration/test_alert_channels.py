"""The alert senders against real receivers on loopback: an HTTP server playing the webhook and the
DingTalk/WeCom robots, aiosmtpd as the mail server, and Mosquitto for MQTT."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from analysis.alerts.channels import (
    DingTalkChannel,
    Message,
    MqttChannel,
    SmtpChannel,
    WebhookChannel,
    WeComChannel,
    channel_from_config,
)
from core.servers import LocalMosquitto, free_port, wait_until
from tests.integration.receivers import (  # noqa: F401 - fixtures
    HttpReceiver,
    Received,
    Reply,
    SmtpServer,
    http_receiver_fixture,
    smtp_server_fixture,
)

pytestmark = pytest.mark.integration

SECRET = "SECb3f1e0c2d4a5968778695a4b3c2d1e0f1a2b3c4d5e6f708192a3b4c5d6e7f80"
TOKEN = "5f0c2e4a6b8d1f3a5c7e9b0d2f4a6c8e0b1d3f5a7c9e2b4d6f8a0c1e3b5d7f9a"
WECOM_KEY = "0ec2a1f6-7d3c-4bc4-97a0-5aaa693a91f6"


def message(**overrides: Any) -> Message:
    fields: dict[str, Any] = {
        "key": "pqmon-7",
        "kind": "firing",
        "severity": "critical",
        "site": "A001",
        "title": "【严重】A001 华南钢厂 停电",
        "text": "客户 A001 于 2024-05-01 10:02 失压。\n请联系调度。",
        "payload": {"site": "A001", "rule": "outage", "started_ms": 1714528920000, "note": "失压"},
    }
    fields.update(overrides)
    return Message(**fields)


def robot(receiver: HttpReceiver, path: str, query: str) -> str:
    return f"{receiver.url}{path}?{query}"


# --------------------------------------------------------------------------- webhook


def test_webhook_delivers_the_alert_json_with_an_idempotency_key(http_receiver: HttpReceiver) -> None:
    channel = WebhookChannel(
        "ops-hook", http_receiver.url + "/hooks/pqmon", headers={"Authorization": "Bearer t0ken"}
    )

    result = channel.send(message())

    assert (result.ok, result.retry, result.status) == (True, False, 200)
    [request] = http_receiver.wait_for(1)
    assert (request.method, request.path) == ("POST", "/hooks/pqmon")
    assert request.headers["idempotency-key"] == "pqmon-7"
    assert request.headers["authorization"] == "Bearer t0ken"
    assert request.headers["content-type"].startswith("application/json")
    assert request.json() == {
        "key": "pqmon-7",
        "kind": "firing",
        "severity": "critical",
        "site": "A001",
        "title": "【严重】A001 华南钢厂 停电",
        "text": "客户 A001 于 2024-05-01 10:02 失压。\n请联系调度。",
        "alert": {"site": "A001", "rule": "outage", "started_ms": 1714528920000, "note": "失压"},
    }


def test_webhook_500_is_worth_retrying(http_receiver: HttpReceiver) -> None:
    http_receiver.script(Reply(500, "database down"))
    result = WebhookChannel("ops-hook", http_receiver.url).send(message())
    assert (result.ok, result.retry, result.status) == (False, True, 500)
    assert "HTTP 500" in result.detail and "database down" in result.detail


def test_webhook_404_is_permanent(http_receiver: HttpReceiver) -> None:
    http_receiver.script(Reply(404))
    result = WebhookChannel("ops-hook", http_receiver.url + "/wrong").send(message())
    assert (result.ok, result.retry, result.status) == (False, False, 404)


def test_webhook_that_hangs_is_given_up_after_about_the_timeout(http_receiver: HttpReceiver) -> None:
    http_receiver.script(Reply(200, delay_s=30))
    channel = WebhookChannel("ops-hook", http_receiver.url, timeout_s=0.5)

    started = time.monotonic()
    result = channel.send(message())
    took = time.monotonic() - started

    assert (result.ok, result.retry) == (False, True)
    assert "no answer within 0.5s" in result.detail
    assert 0.4 < took < 2.0
    assert len(http_receiver.requests) == 1


def test_webhook_connection_refused_is_worth_retrying_and_hides_the_url_token() -> None:
    url = f"http://127.0.0.1:{free_port()}/hook?token=s3cr3t-t0ken-value"
    result = WebhookChannel("ops-hook", url, timeout_s=1).send(message())
    assert (result.ok, result.retry) == (False, True)
    assert "cannot connect to 127.0.0.1:" in result.detail and "Connection refused" in result.detail
    assert "s3cr3t-t0ken-value" not in result.detail


def test_unserialisable_payload_is_a_permanent_failure_not_an_exception(http_receiver: HttpReceiver) -> None:
    result = WebhookChannel("ops-hook", http_receiver.url).send(message(payload={"x": float("nan")}))
    assert (result.ok, result.retry) == (False, False)
    assert "JSON" in result.detail
    assert http_receiver.requests == []


# --------------------------------------------------------------------------- DingTalk


def verifying_robot(secret: str) -> Any:
    """A stand-in for DingTalk: checks the signature the way the robot does, answers with an errcode."""

    def respond(request: Received) -> Reply:
        (timestamp,) = request.query.get("timestamp", [""])
        (sign,) = request.query.get("sign", [""])
        digest = hmac.new(secret.encode(), f"{timestamp}\n{secret}".encode(), hashlib.sha256).digest()
        fresh = timestamp.isdigit() and abs(int(timestamp) - time.time() * 1000) < 3_600_000
        if not fresh or not hmac.compare_digest(sign, base64.b64encode(digest).decode()):
            return Reply(200, {"errcode": 310000, "errmsg": "sign not match"})
        return Reply(200, {"errcode": 0, "errmsg": "ok"})

    return respond


def test_dingtalk_signed_request_is_verified_by_the_robot(http_receiver: HttpReceiver) -> None:
    http_receiver.respond_with(verifying_robot(SECRET))
    # Sign a few times: some timestamps give '+' or '/' in the base64 sign, which must survive the trip.
    clock_ms = iter(range(int(time.time() * 1000), int(time.time() * 1000) + 40))
    channel = DingTalkChannel(
        "ops-dingtalk",
        robot(http_receiver, "/robot/send", f"access_token={TOKEN}"),
        secret=SECRET,
        clock=lambda: next(clock_ms) / 1000,
    )

    results = [channel.send(message()) for _ in range(8)]

    assert [(r.ok, r.retry) for r in results] == [(True, False)] * 8, [r.detail for r in results]
    requests = http_receiver.wait_for(8)
    assert any("%2B" in r.raw_query or "%2F" in r.raw_query for r in requests)
    assert not any("%25" in r.raw_query for r in requests)
    request = requests[0]
    assert request.query["access_token"] == [TOKEN]
    assert request.json() == {
        "msgtype": "markdown",
        "markdown": {
            "title": "【严重】A001 华南钢厂 停电",
            "text": "### 【严重】A001 华南钢厂 停电\n\n客户 A001 于 2024-05-01 10:02 失压。  \n请联系调度。",
        },
    }


def test_dingtalk_wrong_secret_is_a_permanent_failure_despite_http_200(http_receiver: HttpReceiver) -> None:
    http_receiver.respond_with(verifying_robot(SECRET))
    wrong = "SEC" + "0" * 64
    channel = DingTalkChannel(
        "ops-dingtalk", robot(http_receiver, "/robot/send", f"access_token={TOKEN}"), secret=wrong
    )

    result = channel.send(message())

    assert (result.ok, result.retry, result.status) == (False, False, 200)
    assert "errcode 310000" in result.detail and "sign not match" in result.detail
    assert wrong not in result.detail and TOKEN not in result.detail


def test_dingtalk_scripted_310000_is_not_retried(http_receiver: HttpReceiver) -> None:
    http_receiver.script(Reply(200, {"errcode": 310000, "errmsg": "keywords not in content"}))
    channel = DingTalkChannel("ops-dingtalk", robot(http_receiver, "/robot/send", f"access_token={TOKEN}"))
    result = channel.send(message())
    assert (result.ok, result.retry) == (False, False)
    assert "310000" in result.detail


def test_dingtalk_rate_limit_and_garbage_are_retried(http_receiver: HttpReceiver) -> None:
    http_receiver.script(
        Reply(200, {"errcode": 130101, "errmsg": "send too fast, exceed 20 times per minute"}),
        Reply(200, "<html>proxy error</html>"),
        Reply(503),
    )
    channel = DingTalkChannel("ops-dingtalk", robot(http_receiver, "/robot/send", f"access_token={TOKEN}"))
    results = [channel.send(message()) for _ in range(3)]
    assert [(r.ok, r.retry) for r in results] == [(False, True)] * 3
    assert "130101" in results[0].detail and "not JSON" in results[1].detail and "503" in results[2].detail


def test_dingtalk_unreachable_detail_hides_token_and_sign() -> None:
    url = f"http://127.0.0.1:{free_port()}/robot/send?access_token={TOKEN}"
    result = DingTalkChannel("ops-dingtalk", url, secret=SECRET, timeout_s=1).send(message())
    assert (result.ok, result.retry) == (False, True)
    assert TOKEN not in result.detail and SECRET not in result.detail
    assert "cannot connect to 127.0.0.1:" in result.detail


# --------------------------------------------------------------------------- WeCom


def test_wecom_delivers_markdown_and_retries_its_rate_limit(http_receiver: HttpReceiver) -> None:
    http_receiver.script(
        Reply(200, {"errcode": 45009, "errmsg": "api freq out of limit"}),
        Reply(200, {"errcode": 0, "errmsg": "ok"}),
    )
    channel = WeComChannel("ops-wecom", robot(http_receiver, "/cgi-bin/webhook/send", f"key={WECOM_KEY}"))

    limited, delivered = channel.send(message()), channel.send(message())

    assert (limited.ok, limited.retry) == (False, True)
    assert "45009" in limited.detail and WECOM_KEY not in limited.detail
    assert (delivered.ok, delivered.retry) == (True, False)
    first, second = http_receiver.wait_for(2)
    assert first.query["key"] == [WECOM_KEY]
    assert second.json() == {
        "msgtype": "markdown",
        "markdown": {
            "content": "### 【严重】A001 华南钢厂 停电\n客户 A001 于 2024-05-01 10:02 失压。\n请联系调度。"
        },
    }


# --------------------------------------------------------------------------- e-mail


def smtp_channel(server: SmtpServer, to: list[str], **kwargs: Any) -> SmtpChannel:
    return SmtpChannel(
        "ops-mail", server.host, server.port, "pqmon 告警 <pqmon@example.cn>", to, security="none", **kwargs
    )


def test_email_arrives_with_its_chinese_subject_and_body(smtp_server: SmtpServer) -> None:
    result = smtp_channel(smtp_server, ["ops@example.cn", "值班 <duty@example.cn>"]).send(message())

    assert (result.ok, result.retry) == (True, False), result.detail
    [mail] = smtp_server.wait_for(1)
    assert mail.mail_from == "pqmon@example.cn"
    assert mail.rcpt_tos == ["ops@example.cn", "duty@example.cn"]
    assert b"=?utf-8?" in mail.data  # the subject went over the wire RFC 2047-encoded
    parsed = mail.message
    assert parsed["Subject"] == "【严重】A001 华南钢厂 停电"
    assert parsed["From"] == "pqmon 告警 <pqmon@example.cn>"
    assert parsed["Message-ID"] == "<pqmon.pqmon-7@example.cn>"
    body = parsed.get_body(("plain",))  # base64 of the canonical form: CRLF line ends
    assert (
        body is not None
        and body.get_content().replace("\r\n", "\n").rstrip("\n")
        == "客户 A001 于 2024-05-01 10:02 失压。\n请联系调度。"
    )


def test_email_refused_recipient_is_a_permanent_failure(smtp_server: SmtpServer) -> None:
    smtp_server.refuse["gone@example.cn"] = "550 5.1.1 <gone@example.cn>: mailbox unavailable"

    result = smtp_channel(smtp_server, ["gone@example.cn"]).send(message())

    assert (result.ok, result.retry) == (False, False)
    assert "gone@example.cn" in result.detail and "550" in result.detail
    assert smtp_server.messages == []


def test_email_temporarily_refused_recipient_is_retried(smtp_server: SmtpServer) -> None:
    smtp_server.refuse["busy@example.cn"] = "450 4.2.1 mailbox busy, try later"
    result = smtp_channel(smtp_server, ["busy@example.cn"]).send(message())
    assert (result.ok, result.retry) == (False, True)
    assert "450" in result.detail


def test_email_partly_refused_is_delivered_and_not_resent(smtp_server: SmtpServer) -> None:
    smtp_server.refuse["gone@example.cn"] = "550 5.1.1 mailbox unavailable"
    result = smtp_channel(smtp_server, ["ops@example.cn", "gone@example.cn"]).send(message())
    assert (result.ok, result.retry) == (True, False)
    assert "gone@example.cn" in result.detail
    [mail] = smtp_server.wait_for(1)
    assert mail.rcpt_tos == ["ops@example.cn"]


def test_email_server_down_is_retried() -> None:
    channel = SmtpChannel(
        "ops-mail",
        "127.0.0.1",
        free_port(),
        "pqmon@example.cn",
        ["ops@example.cn"],
        security="none",
        timeout_s=1,
    )
    result = channel.send(message())
    assert (result.ok, result.retry) == (False, True)
    assert "Connection refused" in result.detail or "ConnectionRefusedError" in result.detail


def test_email_starttls_against_a_server_without_it_is_a_configuration_error(smtp_server: SmtpServer) -> None:
    channel = SmtpChannel(
        "ops-mail", smtp_server.host, smtp_server.port, "pqmon@example.cn", ["ops@example.cn"]
    )
    result = channel.send(message())
    assert (result.ok, result.retry) == (False, False)
    assert "STARTTLS" in result.detail or "starttls" in result.detail.lower()


# --------------------------------------------------------------------------- MQTT


@pytest.fixture
def alert_inbox(mosquitto: LocalMosquitto) -> Iterator[list[mqtt.MQTTMessage]]:
    """Everything published under pq/v1/alerts/# while the test runs, as an independent subscriber sees it."""
    received: list[mqtt.MQTTMessage] = []
    lock = threading.Lock()
    subscribed = threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"alert-inbox-{free_port()}")

    def on_message(_c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        with lock:
            received.append(msg)

    client.on_message = on_message
    client.on_connect = lambda c, *_: c.subscribe("pq/v1/alerts/#", qos=1)
    client.on_subscribe = lambda *_: subscribed.set()
    host, port = mosquitto.url.split("://")[1].split(":")
    client.connect(host, int(port))
    client.loop_start()
    wait_until(subscribed.is_set, 10, "subscription to pq/v1/alerts/#")
    yield received
    client.disconnect()
    client.loop_stop()


def test_mqtt_alert_is_published_once_to_the_site_topic(
    mosquitto: LocalMosquitto, alert_inbox: list[mqtt.MQTTMessage]
) -> None:
    channel = MqttChannel("ops-bus", mosquitto.url)
    try:
        result = channel.send(message())
        marker = channel.send(message(key="pqmon-8", kind="resolved"))
    finally:
        channel.close()

    assert (result.ok, result.retry) == (True, False), result.detail
    assert marker.ok, marker.detail
    # The marker was published after the alert on the same connection: once it is here, any
    # duplicate of the alert would be here too.
    wait_until(lambda: any(json.loads(m.payload)["key"] == "pqmon-8" for m in alert_inbox), 5, "the marker")
    alerts = [m for m in alert_inbox if json.loads(m.payload)["key"] == "pqmon-7"]
    assert len(alerts) == 1
    [alert] = alerts
    assert alert.topic == "pq/v1/alerts/A001"
    assert (alert.qos, alert.retain) == (1, False)
    assert json.loads(alert.payload) == {
        "key": "pqmon-7",
        "kind": "firing",
        "severity": "critical",
        "site": "A001",
        "title": "【严重】A001 华南钢厂 停电",
        "text": "客户 A001 于 2024-05-01 10:02 失压。\n请联系调度。",
        "alert": {"site": "A001", "rule": "outage", "started_ms": 1714528920000, "note": "失压"},
    }


def test_mqtt_burst_uses_one_connection_and_fleet_topic(
    mosquitto: LocalMosquitto, alert_inbox: list[mqtt.MQTTMessage]
) -> None:
    channel = channel_from_config("ops-bus", {"type": "mqtt", "url": mosquitto.url, "timeout_s": 2})
    assert isinstance(channel, MqttChannel)
    try:
        results = [channel.send(message(key=f"burst-{i}", site=None)) for i in range(10)]
    finally:
        channel.close()
    assert all(r.ok for r in results), [r.detail for r in results]
    assert channel.connects == 1
    wait_until(
        lambda: len([m for m in alert_inbox if m.topic == "pq/v1/alerts/fleet"]) >= 10, 5, "10 fleet alerts"
    )
    keys = [json.loads(m.payload)["key"] for m in alert_inbox if m.topic == "pq/v1/alerts/fleet"]
    assert keys == [f"burst-{i}" for i in range(10)]


def test_mqtt_shared_between_threads(mosquitto: LocalMosquitto, alert_inbox: list[mqtt.MQTTMessage]) -> None:
    channel = MqttChannel("ops-bus", mosquitto.url, topic_prefix="pq/v1/alerts/threads")
    results: list[Any] = []
    lock = threading.Lock()

    def send(i: int) -> None:
        result = channel.send(message(key=f"t-{i}"))
        with lock:
            results.append(result)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(8)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
    finally:
        channel.close()
    assert len(results) == 8 and all(r.ok for r in results), [r.detail for r in results]
    assert channel.connects == 1
    wait_until(
        lambda: len([m for m in alert_inbox if m.topic.startswith("pq/v1/alerts/threads/")]) >= 8,
        5,
        "8 alerts",
    )


def test_mqtt_reconnects_after_a_broker_restart(tmp_path: Path) -> None:
    broker = LocalMosquitto(tmp_path / "mosquitto").start()
    channel = MqttChannel("ops-bus", broker.url, timeout_s=1)
    try:
        assert channel.send(message()).ok
        broker.stop()

        started = time.monotonic()
        down = channel.send(message(key="pqmon-8"))
        assert (down.ok, down.retry) == (False, True), down.detail
        assert time.monotonic() - started < 3

        broker.start()
        up = channel.send(message(key="pqmon-9"))
        assert up.ok, up.detail
        assert channel.connects == 2
    finally:
        channel.close()
        broker.stop()


def test_mqtt_without_a_broker_is_retried_within_the_timeout() -> None:
    channel = MqttChannel("ops-bus", f"mqtt://127.0.0.1:{free_port()}", timeout_s=1)
    started = time.monotonic()
    result = channel.send(message())
    assert (result.ok, result.retry) == (False, True)
    assert "cannot connect" in result.detail
    assert time.monotonic() - started < 3
    channel.close()


# --------------------------------------------------------------------------- from configuration


def test_channels_from_config_deliver(http_receiver: HttpReceiver, smtp_server: SmtpServer) -> None:
    http_receiver.respond_with(lambda _r: Reply(200, {"errcode": 0, "errmsg": "ok"}))
    configs = {
        "hook": {"type": "webhook", "url": http_receiver.url + "/hook", "timeout_s": 2},
        "ding": {
            "type": "dingtalk",
            "url": robot(http_receiver, "/robot/send", f"access_token={TOKEN}"),
            "secret": SECRET,
        },
        "wecom": {"type": "wecom", "url": robot(http_receiver, "/cgi-bin/webhook/send", f"key={WECOM_KEY}")},
        "mail": {
            "type": "email",
            "host": smtp_server.host,
            "port": smtp_server.port,
            "security": "none",
            "sender": "pqmon@example.cn",
            "to": "ops@example.cn",
        },
    }
    for name, cfg in configs.items():
        result = channel_from_config(name, cfg).send(message())
        assert result.ok, f"{name}: {result.detail}"
    assert [r.path for r in http_receiver.wait_for(3)] == ["/hook", "/robot/send", "/cgi-bin/webhook/send"]
    smtp_server.wait_for(1)
