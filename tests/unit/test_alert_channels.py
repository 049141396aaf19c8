"""The alert senders' pure parts: DingTalk signing, WeCom truncation, reply judging, configuration
checks, the rate limiter and back-off, and that no secret shows in a repr."""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import urllib.parse
from typing import Any

import pytest

from analysis.alerts.channels import (
    DINGTALK_RETRY_CODES,
    WECOM_MAX_BYTES,
    WECOM_RETRY_CODES,
    DingTalkChannel,
    Message,
    MqttChannel,
    RateLimiter,
    SmtpChannel,
    WebhookChannel,
    WeComChannel,
    alert_topic,
    backoff_s,
    build_email,
    channel_from_config,
    dingtalk_body,
    dingtalk_sign,
    dingtalk_signed_url,
    judge_http_reply,
    judge_robot_reply,
    mask_url,
    message_id,
    scrub,
    truncate_utf8,
    wecom_body,
)
from core.errors import ConfigError

SECRET = "SEC" + "0123456789abcdef" * 4
TOKEN = "8d2b3f6a9c1e4d7f0a5b8c3e6f9a2d4b7c0e3f6a9b2c5d8e1f4a7b0c3d6e9f2a"
DINGTALK_URL = f"https://oapi.dingtalk.com/robot/send?access_token={TOKEN}"
WECOM_KEY = "693a91f6-7xxx-4bc4-97a0-0ec2sifa5aaa"
WECOM_URL = f"https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key={WECOM_KEY}"


def message(**overrides: Any) -> Message:
    fields: dict[str, Any] = {
        "key": "pqmon-42",
        "kind": "firing",
        "severity": "critical",
        "site": "A001",
        "title": "A001 停电",
        "text": "客户 A001 于 10:02 失压。\n持续 5 分钟。",
        "payload": {"site": "A001", "rule": "outage", "v": 0.0},
    }
    fields.update(overrides)
    return Message(**fields)


def documented_sign(secret: str, timestamp_ms: int) -> str:
    """The formula from DingTalk's robot documentation, written out independently of the sender."""
    string_to_sign = f"{timestamp_ms}\n{secret}"
    digest = hmac.new(
        secret.encode("utf-8"), string_to_sign.encode("utf-8"), digestmod=hashlib.sha256
    ).digest()
    return base64.b64encode(digest).decode()


def timestamp_with(secret: str, *chars: str) -> int:
    """The first timestamp from a fixed start whose base64 sign holds every one of ``chars``."""
    for ts in itertools.count(1_700_000_000_000):
        if all(c in documented_sign(secret, ts) for c in chars):
            return ts
    raise AssertionError("unreachable")


# --------------------------------------------------------------------------- DingTalk signing


def test_sign_is_the_documented_hmac_url_encoded() -> None:
    ts = 1_700_000_000_123
    assert dingtalk_sign(SECRET, ts) == urllib.parse.quote_plus(documented_sign(SECRET, ts))
    assert urllib.parse.unquote_plus(dingtalk_sign(SECRET, ts)) == documented_sign(SECRET, ts)


def test_sign_with_plus_and_slash_is_encoded_exactly_once() -> None:
    ts = timestamp_with(SECRET, "+", "/")
    raw = documented_sign(SECRET, ts)
    url = dingtalk_signed_url(DINGTALK_URL, SECRET, ts)

    query = urllib.parse.urlsplit(url).query
    sign_param = dict(p.split("=", 1) for p in query.split("&"))["sign"]
    assert "%2B" in sign_param and "%2F" in sign_param
    assert "+" not in sign_param and "/" not in sign_param
    assert "%25" not in url, "double-encoded: %2B became %252B"
    # A server decodes once and must get the base64 text back.
    assert urllib.parse.parse_qs(query)["sign"] == [raw]
    assert urllib.parse.parse_qs(query)["timestamp"] == [str(ts)]
    assert urllib.parse.parse_qs(query)["access_token"] == [TOKEN]


def test_signed_url_appends_to_a_url_without_query() -> None:
    url = dingtalk_signed_url("http://127.0.0.1:8080/robot/send", SECRET, 5)
    assert url.startswith("http://127.0.0.1:8080/robot/send?timestamp=5&sign=")


def test_channel_signs_with_its_clock_in_milliseconds() -> None:
    channel = DingTalkChannel("ops", DINGTALK_URL, secret=SECRET, clock=lambda: 1_700_000_000.5)
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(channel.request_url()).query)
    assert query["timestamp"] == ["1700000000500"]
    assert query["sign"] == [documented_sign(SECRET, 1_700_000_000_500)]


def test_unsigned_channel_posts_to_the_url_as_configured() -> None:
    assert DingTalkChannel("ops", DINGTALK_URL).request_url() == DINGTALK_URL


def test_dingtalk_markdown_keeps_line_breaks() -> None:
    body = dingtalk_body(message())
    assert body["msgtype"] == "markdown"
    assert body["markdown"]["title"] == "A001 停电"
    assert body["markdown"]["text"] == "### A001 停电\n\n客户 A001 于 10:02 失压。  \n持续 5 分钟。"


# --------------------------------------------------------------------------- WeCom truncation


def test_short_content_is_untouched() -> None:
    assert truncate_utf8("停电", 6) == "停电"
    content = wecom_body(message())["markdown"]["content"]
    assert content == "### A001 停电\n客户 A001 于 10:02 失压。\n持续 5 分钟。"


def test_long_chinese_is_cut_on_a_character_boundary_with_an_ellipsis() -> None:
    text = "电压越限" * 2000  # 24 000 bytes
    content = wecom_body(message(text=text))["markdown"]["content"]
    encoded = content.encode("utf-8")
    assert len(encoded) <= WECOM_MAX_BYTES
    assert len(encoded) > WECOM_MAX_BYTES - 3, "cut more than one character short"
    assert content.endswith("…") and not content.endswith("……")
    encoded.decode("utf-8")  # valid UTF-8: no half character
    assert content[:-1] in "### A001 停电\n" + text


@pytest.mark.parametrize("size", [4095, 4096, 4097])
def test_truncation_at_the_limit(size: int) -> None:
    text = "a" * size
    cut = truncate_utf8(text, 4096)
    assert len(cut.encode()) <= 4096
    assert (cut == text) == (size <= 4096)


def test_truncation_with_mixed_widths_never_splits_a_character() -> None:
    for n in range(1, 40):
        text = "a😀电b" * n
        for limit in range(3, 20):
            cut = truncate_utf8(text, limit)
            assert len(cut.encode()) <= limit
            assert text.startswith(cut) or text.startswith(cut[:-1])


# --------------------------------------------------------------------------- judging replies


@pytest.mark.parametrize(
    ("status", "body", "ok", "retry", "in_detail"),
    [
        (200, {"errcode": 0, "errmsg": "ok"}, True, False, "errcode 0"),
        (200, {"errcode": 310000, "errmsg": "sign not match"}, False, False, "310000"),
        (200, {"errcode": 300001, "errmsg": "token is not exist"}, False, False, "300001"),
        (200, {"errcode": 300005, "errmsg": "token is not exist"}, False, False, "access_token"),
        (200, {"errcode": 400101, "errmsg": "access_token不存在"}, False, False, "400101"),
        (200, {"errcode": 130101, "errmsg": "send too fast"}, False, True, "rate limited"),
        (200, {"errcode": -1, "errmsg": "系统繁忙"}, False, True, "-1"),
        (200, b"<html>gateway</html>", False, True, "not JSON"),
        (200, b"", False, True, "not JSON"),
        (200, {"ok": True}, False, True, "no errcode"),
        (502, b"bad gateway", False, True, "HTTP 502"),
        (429, b"", False, True, "HTTP 429"),
        (404, b"not found", False, False, "HTTP 404"),
    ],
)
def test_dingtalk_reply(status: int, body: Any, ok: bool, retry: bool, in_detail: str) -> None:
    raw = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode()
    result = judge_robot_reply(status, raw, DINGTALK_RETRY_CODES)
    assert (result.ok, result.retry, result.status) == (ok, retry, status)
    assert in_detail in result.detail


def test_wecom_rate_limit_is_retried_and_bad_key_is_not() -> None:
    limited = judge_robot_reply(200, b'{"errcode":45009,"errmsg":"api freq out of limit"}', WECOM_RETRY_CODES)
    assert (limited.ok, limited.retry) == (False, True)
    bad_key = judge_robot_reply(200, b'{"errcode":93000,"errmsg":"invalid webhook url"}', WECOM_RETRY_CODES)
    assert (bad_key.ok, bad_key.retry) == (False, False)
    assert "copy the robot's webhook URL" in bad_key.detail


@pytest.mark.parametrize(
    ("status", "ok", "retry"),
    [(200, True, False), (204, True, False), (301, False, False), (400, False, False), (401, False, False)]
    + [(408, False, True), (429, False, True), (500, False, True), (503, False, True)],
)
def test_webhook_status(status: int, ok: bool, retry: bool) -> None:
    result = judge_http_reply(status, b"")
    assert (result.ok, result.retry) == (ok, retry)
    assert str(status) in result.detail


def test_reply_detail_never_echoes_secrets() -> None:
    body = json.dumps({"errcode": 310000, "errmsg": f"sign not match for {SECRET}"}).encode()
    result = judge_robot_reply(200, body, DINGTALK_RETRY_CODES, [SECRET])
    assert SECRET not in result.detail


def test_scrub_masks_query_values_and_known_secrets() -> None:
    text = f"Max retries exceeded with url: /robot/send?access_token={TOKEN}&sign=ab%2Bcd (Caused by x)"
    cleaned = scrub(text, [SECRET])
    assert TOKEN not in cleaned and "ab%2Bcd" not in cleaned
    assert "access_token=***" in cleaned and "Caused by x" in cleaned


# --------------------------------------------------------------------------- secrets in repr and recipient


def test_repr_and_recipient_hide_secrets() -> None:
    channels = [
        DingTalkChannel("ops-dingtalk", DINGTALK_URL, secret=SECRET),
        WeComChannel("ops-wecom", WECOM_URL),
        WebhookChannel(
            "hook",
            "https://user:hunter2hunter2@ops.example/hook?token=s3cr3tvalue",
            {"Authorization": "Bearer abcdefgh"},
        ),
        SmtpChannel(
            "mail",
            "smtp.example.cn",
            587,
            "pqmon@example.cn",
            ["ops@example.cn"],
            user="pqmon",
            password="p4ssw0rd!",
        ),
        MqttChannel("bus", "mqtts://alerts:broker-pass@broker.example:8883"),
    ]
    secrets = [
        SECRET,
        TOKEN,
        WECOM_KEY,
        "hunter2hunter2",
        "s3cr3tvalue",
        "abcdefgh",
        "p4ssw0rd!",
        "broker-pass",
    ]
    for channel in channels:
        shown = repr(channel) + " " + channel.recipient
        for secret in secrets:
            assert secret not in shown, f"{secret!r} shows in {shown}"
    assert channels[0].recipient.startswith("https://oapi.dingtalk.com/robot/send?access_token=***")
    assert channels[1].recipient.startswith("https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=***")


def test_masked_recipients_still_tell_two_robots_apart() -> None:
    """The rate limit is keyed on the recipient: two robots must not share one bucket."""
    a = DingTalkChannel("a", DINGTALK_URL)
    b = DingTalkChannel("b", DINGTALK_URL.replace("8d2b", "1111"))
    assert a.recipient != b.recipient
    assert a.recipient == DingTalkChannel("a2", DINGTALK_URL, secret=SECRET).recipient


def test_mask_url_hides_token_like_path_segments() -> None:
    masked = mask_url("https://open.feishu.cn/open-apis/bot/v2/hook/2d3b0f6e-1c9a-4f5b-8e7d-6a5b4c3d2e1f")
    assert masked.startswith("https://open.feishu.cn/open-apis/bot/v2/hook/***")
    assert "2d3b0f6e" not in masked


# --------------------------------------------------------------------------- e-mail and MQTT building blocks


def test_email_headers_and_message_id_from_the_key() -> None:
    mail = build_email(message(), "运维 <pqmon@example.cn>", ["ops@example.cn"])
    assert mail["Message-ID"] == "<pqmon.pqmon-42@example.cn>"
    assert message_id("pqmon-42", "pqmon@example.cn") == message_id("pqmon-42", "other@example.cn")
    assert message_id("a key/with spaces", "x@y.cn") != message_id("another key", "x@y.cn")
    assert mail["Auto-Submitted"] == "auto-generated"
    raw = mail.as_bytes()
    raw.decode("ascii")  # 7-bit on the wire: no 8BITMIME needed
    assert "停电".encode() not in raw


def test_alert_topic() -> None:
    assert alert_topic("pq/v1/alerts", "A001") == "pq/v1/alerts/A001"
    assert alert_topic("pq/v1/alerts", None) == "pq/v1/alerts/fleet"
    for bad in ("a/b", "a+", "#", ""):
        with pytest.raises(ValueError):
            alert_topic("pq/v1/alerts", bad)


# --------------------------------------------------------------------------- configuration


def test_config_builds_each_type() -> None:
    built = {
        "webhook": channel_from_config("w", {"type": "webhook", "url": "https://ops.example/hook"}),
        "dingtalk": channel_from_config("d", {"type": "dingtalk", "url": DINGTALK_URL, "secret": SECRET}),
        "wecom": channel_from_config("c", {"type": "wecom", "url": WECOM_URL, "timeout_s": 2}),
        "email": channel_from_config(
            "e",
            {
                "type": "email",
                "host": "smtp.example.cn",
                "sender": "p@example.cn",
                "to": "a@example.cn, b@example.cn",
            },
        ),
        "mqtt": channel_from_config("m", {"type": "mqtt", "url": "mqtt://127.0.0.1:1883"}),
    }
    assert isinstance(built["webhook"], WebhookChannel)
    assert isinstance(built["dingtalk"], DingTalkChannel) and built["dingtalk"].secret == SECRET
    assert isinstance(built["wecom"], WeComChannel) and built["wecom"].timeout_s == 2
    email_channel = built["email"]
    assert isinstance(email_channel, SmtpChannel)
    assert (email_channel.port, email_channel.security, email_channel.timeout_s) == (587, "starttls", 10)
    assert email_channel.to == ["a@example.cn", "b@example.cn"]
    assert (
        isinstance(built["mqtt"], MqttChannel)
        and built["mqtt"].recipient == "mqtt://127.0.0.1:1883/pq/v1/alerts"
    )
    assert {c.name for c in built.values()} == {"w", "d", "c", "e", "m"}


def test_config_leaves_unrelated_keys_to_the_caller() -> None:
    channel = channel_from_config(
        "w", {"type": "webhook", "url": "https://ops.example/hook", "severities": ["critical"]}
    )
    assert isinstance(channel, WebhookChannel)


EMAIL = {"type": "email", "host": "smtp.example.cn", "sender": "pqmon@example.cn", "to": ["ops@example.cn"]}


@pytest.mark.parametrize(
    ("cfg", "expected"),
    [
        (
            {"type": "pager", "url": "https://x.example"},
            "type must be one of webhook, dingtalk, wecom, email, mqtt",
        ),
        ({"url": "https://x.example"}, "type must be one of"),
        ({"type": "webhook"}, "url is missing"),
        ({"type": "webhook", "url": "ftp://x.example/hook"}, "url must be an http:// or https:// URL"),
        ({"type": "webhook", "url": "x.example/hook"}, "url must be an http:// or https:// URL"),
        (
            {"type": "webhook", "url": "https://x.example", "timeout_s": 0},
            "timeout_s must be a positive number",
        ),
        (
            {"type": "webhook", "url": "https://x.example", "timeout_s": -1},
            "timeout_s must be a positive number",
        ),
        (
            {"type": "webhook", "url": "https://x.example", "timeout_s": "5"},
            "timeout_s must be a positive number",
        ),
        (
            {"type": "webhook", "url": "https://x.example", "headers": "Authorization: x"},
            "headers must be a table",
        ),
        ({"type": "webhook", "url": "https://x.example", "timeout": 3}, "did you mean 'timeout_s'"),
        (
            {"type": "dingtalk", "url": DINGTALK_URL, "secret": "0123456789abcdef"},
            "secret must be the robot's signing secret, which starts with 'SEC'",
        ),
        ({"type": "dingtalk", "url": DINGTALK_URL, "secert": SECRET}, "did you mean 'secret'"),
        ({"type": "dingtalk", "url": "https://oapi.dingtalk.com/robot/send"}, "url has no access_token"),
        ({"type": "dingtalk", "url": "oapi.dingtalk.com/robot/send?access_token=x"}, "http:// or https://"),
        ({"type": "wecom", "url": "https://qyapi.weixin.qq.com/cgi-bin/webhook/send"}, "url has no key"),
        ({"type": "wecom"}, "url is missing"),
        ({**EMAIL, "host": None}, "host is missing"),
        ({**EMAIL, "to": []}, "to is missing"),
        ({**EMAIL, "to": None}, "to is missing"),
        ({**EMAIL, "to": ["ops.example.cn"]}, "to 'ops.example.cn' is not an e-mail address"),
        (
            {**EMAIL, "to": ["ops@example.cn", "a b@example.cn"]},
            "to 'a b@example.cn' is not an e-mail address",
        ),
        ({**EMAIL, "to": ["ops@@example.cn"]}, "is not an e-mail address"),
        ({**EMAIL, "sender": "pqmon"}, "sender 'pqmon' is not an e-mail address"),
        ({**EMAIL, "to": ["运维@example.cn"]}, "only ASCII addresses are supported"),
        ({**EMAIL, "sender": None}, "sender must be an e-mail address"),
        ({**EMAIL, "security": "tls"}, "security must be starttls, ssl or none"),
        ({**EMAIL, "port": 0}, "port must be a port number"),
        ({**EMAIL, "port": "587"}, "port must be a port number"),
        ({**EMAIL, "user": "pqmon"}, "user and password must be set together"),
        ({**EMAIL, "timeout_s": 0}, "timeout_s must be a positive number"),
        ({"type": "mqtt", "url": "http://broker:1883"}, "url must start with mqtt:// or mqtts://"),
        ({"type": "mqtt"}, "url is missing"),
        (
            {"type": "mqtt", "url": "mqtt://broker:1883", "topic_prefix": "pq/#"},
            "topic_prefix must be a topic without wildcards",
        ),
        ({"type": "mqtt", "url": "mqtt://broker:1883", "topic_prefix": "pq/alerts/"}, "topic_prefix must be"),
        (
            {"type": "mqtt", "url": "mqtt://broker:1883", "ca_file": "/etc/ca.pem"},
            "ca_file needs an mqtts:// url",
        ),
        ({"type": "mqtt", "url": "mqtt://broker:18x3"}, "port that is not a number"),
    ],
)
def test_config_that_cannot_work_is_refused_naming_channel_and_field(
    cfg: dict[str, Any], expected: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        channel_from_config("ops-x", cfg)
    assert "alert channel 'ops-x'" in str(caught.value)
    assert expected in str(caught.value)


def test_config_errors_do_not_echo_secrets() -> None:
    with pytest.raises(ConfigError) as caught:
        channel_from_config("d", {"type": "dingtalk", "url": DINGTALK_URL, "secret": "not-a-sec-value-1234"})
    assert "not-a-sec-value-1234" not in str(caught.value)
    with pytest.raises(ConfigError) as caught:
        channel_from_config("w", {"type": "webhook", "url": f"ftp://x.example/?token={TOKEN}"})
    assert TOKEN not in str(caught.value)


# --------------------------------------------------------------------------- rate limit and back-off


class FakeClock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_rate_limiter_allows_a_burst_then_one_every_three_seconds() -> None:
    clock = FakeClock()
    limiter = RateLimiter(per_minute=20, burst=20, clock=clock)
    assert all(limiter.try_take("robot-a") for _ in range(20))
    assert not limiter.try_take("robot-a")
    assert limiter.wait_s("robot-a") == pytest.approx(3.0)
    clock.t += 2.9
    assert not limiter.try_take("robot-a")
    clock.t += 0.1
    assert limiter.try_take("robot-a")
    assert not limiter.try_take("robot-a")


def test_rate_limiter_counts_each_recipient_on_its_own() -> None:
    clock = FakeClock()
    limiter = RateLimiter(per_minute=20, burst=2, clock=clock)
    assert limiter.try_take("a") and limiter.try_take("a") and not limiter.try_take("a")
    assert limiter.try_take("b") and limiter.try_take("b")
    assert limiter.wait_s("c") == 0.0


def test_rate_limiter_refill_never_exceeds_the_burst() -> None:
    clock = FakeClock()
    limiter = RateLimiter(per_minute=60, burst=3, clock=clock)
    limiter.try_take("a")
    clock.t += 3600
    assert [limiter.try_take("a") for _ in range(4)] == [True, True, True, False]


def test_rate_limiter_never_lets_more_than_the_rate_through_over_time() -> None:
    clock = FakeClock()
    limiter = RateLimiter(per_minute=20, burst=20, clock=clock)
    taken = 0
    for _ in range(600 * 10):  # ten minutes of attempts every 0.1 s
        taken += limiter.try_take("a")
        clock.t += 0.1
    assert taken <= 20 + 20 * 10
    assert taken >= 20 * 10


def test_rate_limiter_rejects_nonsense() -> None:
    with pytest.raises(ConfigError):
        RateLimiter(per_minute=0)
    with pytest.raises(ConfigError):
        RateLimiter(burst=0)


def test_backoff_doubles_up_to_the_cap() -> None:
    assert [backoff_s(n) for n in range(1, 10)] == [5, 10, 20, 40, 80, 160, 320, 600, 600]
    assert backoff_s(3, base=1, cap=3) == 3
    assert backoff_s(10_000) == 600
    assert backoff_s(4) == backoff_s(4)


def test_backoff_counts_from_one() -> None:
    with pytest.raises(ValueError, match="starts at 1"):
        backoff_s(0)
