"""Notification channels: a generic webhook, DingTalk and WeCom group robots, e-mail and MQTT.

We write these small senders ourselves instead of using a notification library because the
robots report failure in the body, not the status: DingTalk answers HTTP 200 with
``{"errcode": 310000, "errmsg": "sign not match"}`` and a library that looks at the status
calls that a success, so an operator would never hear that the alerts stopped. Every sender
here judges the receiver's own answer, takes a URL that a test can point at a local
receiver, and sorts each failure into "worth retrying" or "permanent" for the outbox.

Every ``send`` returns a :class:`DeliveryResult` and never raises: a sender that raises
would take the delivery loop down with it. Secrets (tokens in URLs, the DingTalk signing
secret, passwords, header values) never appear in ``repr()``, in ``recipient`` or in a
result's ``detail``, because those end up in logs and in the delivery log table.
"""

from __future__ import annotations

import base64
import difflib
import email.policy
import email.utils
import hashlib
import hmac
import json
import logging
import re
import smtplib
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from functools import cache
from typing import Any, Protocol
from urllib.parse import parse_qsl, quote, quote_plus, urlsplit, urlunsplit

import paho.mqtt.client as mqtt
import requests

from core.errors import ConfigError
from core.settings import parse_mqtt_url

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 5.0
DETAIL_MAX = 300
USER_AGENT = "pqmon-alerts/1"

# Robot error codes that mean "not now" rather than "never": retrying them later can succeed.
DINGTALK_RETRY_CODES = frozenset({-1, 130101, 410100})  # system busy, sending too fast (old and new code)
WECOM_RETRY_CODES = frozenset({-1, 45009})  # system busy, API frequency limit
WECOM_MAX_BYTES = 4096  # the robot's documented limit for markdown content, in UTF-8 bytes

ROBOT_HINTS = {
    130101: "rate limited by the robot (20 messages a minute): will retry",
    410100: "rate limited by the robot (20 messages a minute): will retry",
    45009: "rate limited by the robot (20 messages a minute): will retry",
    310000: "check the robot's security settings: the signing secret (SEC...), keywords or IP allow-list",
    300001: "the access_token is not valid: copy the robot's webhook URL again",
    300005: "the access_token is not valid: copy the robot's webhook URL again",
    400101: "the access_token is not valid: copy the robot's webhook URL again",
    400102: "the robot is disabled: enable it in the group settings",
    400106: "the robot does not exist any more: add it again and copy its webhook URL",
    93000: "the webhook key is not valid: copy the robot's webhook URL again",
}


# --------------------------------------------------------------------------- values


@dataclass(frozen=True)
class Message:
    """One notification as the engine rendered it; every channel sends the same one."""

    key: str  # idempotency key, unique per notification (the outbox row id); receivers dedupe on it
    kind: str  # firing | resolved | incident | incident_update | reminder | escalation | digest | notice
    severity: str  # critical | major | minor | info
    site: str | None  # the account/feeder id, or None for fleet-wide
    title: str  # one line, may be Chinese
    text: str  # plain text body, may be multi-line and Chinese
    payload: dict[str, Any]  # the machine-readable alert (JSON-serialisable), sent as-is by webhook and MQTT


@dataclass(frozen=True)
class DeliveryResult:
    """What became of one send, for the outbox (retry or give up) and the delivery log (detail)."""

    ok: bool
    retry: bool  # worth retrying (timeouts, 5xx, 429, refused connections, rate limits); False if permanent
    detail: str  # short, for the delivery log: status code, errcode and errmsg, exception text
    status: int | None = None


class Channel(Protocol):
    name: str  # configured name, e.g. "ops-dingtalk"
    recipient: str  # what the rate limit is keyed on: URL without secrets, e-mail address, topic

    def send(self, message: Message) -> DeliveryResult: ...


# --------------------------------------------------------------------------- pure helpers


def alert_document(message: Message) -> dict[str, Any]:
    """The JSON the webhook and MQTT channels send: the message's fields and the alert itself."""
    return {
        "key": message.key,
        "kind": message.kind,
        "severity": message.severity,
        "site": message.site,
        "title": message.title,
        "text": message.text,
        "alert": message.payload,
    }


def encode_json(document: Any) -> bytes:
    """UTF-8 JSON with Chinese left readable; NaN is refused because JSON has no such value."""
    return json.dumps(document, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")


def dingtalk_sign(secret: str, timestamp_ms: int) -> str:
    """The robot's ``sign`` parameter, URL-encoded exactly once.

    DingTalk: ``urlEncode(base64(HmacSHA256(key=secret, msg=timestamp + "\\n" + secret)))``.
    The base64 text may hold ``+``, ``/`` and ``=``, which must reach the robot as %2B, %2F
    and %3D; encoding twice (%252B) makes the robot answer 310000 "sign not match".
    """
    digest = hmac.new(secret.encode("utf-8"), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256).digest()
    return quote_plus(base64.b64encode(digest).decode("ascii"), safe="")


def dingtalk_signed_url(url: str, secret: str, timestamp_ms: int) -> str:
    """``url`` with ``timestamp`` and ``sign`` appended as text, so no library re-encodes the sign."""
    separator = "&" if urlsplit(url).query else ("" if url.endswith("?") else "?")
    return f"{url}{separator}timestamp={timestamp_ms}&sign={dingtalk_sign(secret, timestamp_ms)}"


def truncate_utf8(text: str, max_bytes: int, ellipsis: str = "…") -> str:
    """``text`` cut to at most ``max_bytes`` of UTF-8, on a character boundary, ending in ``ellipsis``.

    Receivers limit bytes, not characters, and a Chinese character is three bytes: cutting
    the encoded bytes blindly would leave half a character that the robot rejects.
    """
    encoded = text.encode("utf-8")
    if len(encoded) <= max_bytes:
        return text
    room = max_bytes - len(ellipsis.encode("utf-8"))
    if room < 0:
        raise ValueError(f"max_bytes={max_bytes} leaves no room for the ellipsis {ellipsis!r}")
    return encoded[:room].decode("utf-8", errors="ignore") + ellipsis


def markdown_lines(text: str) -> str:
    """Plain-text line breaks as markdown hard breaks: a robot's markdown joins single newlines."""
    return "  \n".join(text.splitlines())


def dingtalk_body(message: Message) -> dict[str, Any]:
    """The robot's markdown message; its ``title`` is only the preview in the chat list."""
    text = f"### {message.title}\n\n{markdown_lines(message.text)}"
    return {"msgtype": "markdown", "markdown": {"title": message.title, "text": text}}


def wecom_body(message: Message) -> dict[str, Any]:
    """The robot's markdown message, cut to the 4096 bytes the robot accepts."""
    content = truncate_utf8(f"### {message.title}\n{message.text}", WECOM_MAX_BYTES)
    return {"msgtype": "markdown", "markdown": {"content": content}}


def http_status_retry(status: int) -> bool:
    """Whether a non-2xx HTTP status is worth retrying: the receiver's trouble, not our request's."""
    return status >= 500 or status in (408, 425, 429)


def judge_http_reply(status: int, body: bytes, secrets: Iterable[str] = ()) -> DeliveryResult:
    """A plain webhook's answer: any 2xx is delivered; redirects and other 4xx are configuration errors."""
    if 200 <= status < 300:
        return DeliveryResult(True, False, f"HTTP {status}", status)
    hint = ""
    if 300 <= status < 400:
        hint = " (redirects are not followed: configure the final URL)"
    elif status in (401, 403):
        hint = " (check the credentials in the URL or headers)"
    elif status == 404:
        hint = " (check the URL)"
    snippet = _snippet(body)
    detail = f"HTTP {status}{hint}" + (f": {snippet}" if snippet else "")
    return DeliveryResult(False, http_status_retry(status), scrub(detail, secrets), status)


def judge_robot_reply(
    status: int, body: bytes, retry_codes: frozenset[int], secrets: Iterable[str] = ()
) -> DeliveryResult:
    """A DingTalk or WeCom robot's answer: delivered only when the body says ``errcode`` 0."""
    if not 200 <= status < 300:
        return judge_http_reply(status, body, secrets)
    try:
        reply = json.loads(body)
    except ValueError:
        detail = f"HTTP {status} but the body is not JSON: {_snippet(body) or '(empty)'}"
        return DeliveryResult(False, True, scrub(detail, secrets), status)
    code = reply.get("errcode") if isinstance(reply, dict) else None
    if isinstance(code, str) and re.fullmatch(r"-?\d+", code):
        code = int(code)
    if not isinstance(code, int) or isinstance(code, bool):
        detail = f"HTTP {status} but the body has no errcode: {_snippet(body)}"
        return DeliveryResult(False, True, scrub(detail, secrets), status)
    errmsg = str(reply.get("errmsg", ""))[:120]
    if code == 0:
        return DeliveryResult(True, False, f"errcode 0: {errmsg or 'ok'}", status)
    hint = ROBOT_HINTS.get(code, "")
    detail = f"errcode {code}: {errmsg}" + (f" ({hint})" if hint else "")
    return DeliveryResult(False, code in retry_codes, scrub(detail, secrets), status)


def _snippet(body: bytes, limit: int = 160) -> str:
    return " ".join(body[: limit * 4].decode("utf-8", errors="replace").split())[:limit]


def fingerprint(value: str) -> str:
    """A stand-in for a secret that tells two secrets apart without revealing either."""
    return "***" + hashlib.sha256(value.encode("utf-8")).hexdigest()[:8]


_TOKEN_SEGMENT = re.compile(r"^(?=.*\d)(?=.*[A-Za-z])[A-Za-z0-9_-]{16,}$")


def mask_url(url: str) -> str:
    """``url`` with user info dropped and query values and token-like path segments fingerprinted.

    Robot and chat webhooks carry their credential in the URL (``access_token=``, ``key=``,
    or a path segment such as Feishu's hook id). The fingerprint keeps two robots apart, so
    the rate limit, keyed on this string, still counts each robot on its own.
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = f"{host}:{port}" if port else host
    path = "/".join(fingerprint(s) if _TOKEN_SEGMENT.match(s) else s for s in parts.path.split("/"))
    query = "&".join(f"{k}={fingerprint(v)}" for k, v in parse_qsl(parts.query, keep_blank_values=True))
    return urlunsplit((parts.scheme, netloc, path, query, ""))


_QUERY_VALUE = re.compile(r"([?&][A-Za-z0-9_.\-]+=)[^&\s'\")]+")


def scrub(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` without the given secrets (raw or URL-encoded) and without any URL query value.

    Exception texts quote the request URL (requests: "Max retries exceeded with url:
    /robot/send?access_token=..."), so the query values go as well as the known secrets.
    """
    for secret in secrets:
        if secret and len(secret) >= 4:
            for form in {secret, quote(secret, safe=""), quote_plus(secret, safe="")}:
                text = text.replace(form, "***")
    return _QUERY_VALUE.sub(r"\1***", text)


def _url_secrets(url: str) -> list[str]:
    parts = urlsplit(url)
    found = [v for _, v in parse_qsl(parts.query, keep_blank_values=True)]
    found += [s for s in parts.path.split("/") if _TOKEN_SEGMENT.match(s)]
    if parts.password:
        found.append(parts.password)
    return found


def backoff_s(attempt: int, base: float = 5, cap: float = 600) -> float:
    """Seconds to wait before retry number ``attempt`` (1 after the first failure): base, 2x, 4x ... cap.

    Deterministic so the outbox's schedule can be tested; a caller that fears many senders
    retrying in step adds its own jitter.
    """
    if attempt < 1:
        raise ValueError(f"attempt counts failed sends and starts at 1, got {attempt}")
    return float(min(cap, base * 2 ** min(attempt - 1, 60)))


_EPSILON = 1e-9  # 20/min for 3 s is 0.9999999999999998 tokens in floating point


class RateLimiter:
    """A token bucket per recipient: ``burst`` sends at once, then ``per_minute`` a minute.

    DingTalk and WeCom robots allow 20 messages a minute and answer more with a rate-limit
    errcode; holding the excess back here keeps an incident's burst from being refused.
    Apart from the injected clock it has no inputs, so tests drive it with a fake clock.
    """

    def __init__(
        self, per_minute: float = 20, burst: float = 20, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if per_minute <= 0 or burst < 1:
            raise ConfigError(
                f"rate limit: per_minute must be positive and burst at least 1, got {per_minute}, {burst}"
            )
        self.rate_per_s = per_minute / 60.0
        self.burst = float(burst)
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # recipient -> (tokens, at)
        self._lock = threading.Lock()

    def _tokens(self, recipient: str, now: float) -> float:
        tokens, at = self._buckets.get(recipient, (self.burst, now))
        return min(self.burst, tokens + max(0.0, now - at) * self.rate_per_s)

    def try_take(self, recipient: str) -> bool:
        """Take one send for ``recipient`` if its bucket has one; False means wait and try later."""
        with self._lock:
            now = self.clock()
            tokens = self._tokens(recipient, now)
            taken = tokens >= 1.0 - _EPSILON
            self._buckets[recipient] = (max(0.0, tokens - 1.0) if taken else tokens, now)
            return taken

    def available(self, recipient: str) -> float:
        """Sends ``recipient`` could take right now."""
        with self._lock:
            return self._tokens(recipient, self.clock())

    def wait_s(self, recipient: str) -> float:
        """Seconds until ``try_take(recipient)`` can next succeed (0 if it can now)."""
        with self._lock:
            tokens = self._tokens(recipient, self.clock())
            return 0.0 if tokens >= 1.0 - _EPSILON else (1.0 - tokens) / self.rate_per_s


# --------------------------------------------------------------------------- HTTP channels


def root_cause(exc: BaseException) -> BaseException:
    """The innermost error under a wrapped one: requests' ConnectionError wraps urllib3's, which wraps
    the socket's ("Connection refused", "Name or service not known") that the operator needs to see."""
    seen: set[int] = set()
    while id(exc) not in seen:
        seen.add(id(exc))
        reason = getattr(exc, "reason", None)
        if exc.args and isinstance(exc.args[0], BaseException):
            inner: BaseException | None = exc.args[0]
        elif isinstance(reason, BaseException):
            inner = reason
        else:
            inner = exc.__cause__ or exc.__context__
        if inner is None:
            break
        exc = inner
    return exc


def _where(url: str) -> str:
    parts = urlsplit(url)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        port = 0
    return f"{parts.hostname}:{port}"


def _post(url: str, body: bytes, headers: Mapping[str, str], timeout_s: float, secrets: list[str]) -> Any:
    """POST and return the response, or the DeliveryResult describing why there is none."""
    try:
        return requests.post(
            url, data=body, headers=dict(headers), timeout=(timeout_s, timeout_s), allow_redirects=False
        )
    except requests.exceptions.SSLError as exc:
        detail = f"TLS error with {_where(url)} (fix its certificate or trust its CA): {root_cause(exc)}"
        return DeliveryResult(False, False, scrub(detail, secrets)[:DETAIL_MAX])
    except requests.exceptions.Timeout as exc:
        return DeliveryResult(False, True, f"no answer within {timeout_s:g}s ({type(exc).__name__})")
    except requests.exceptions.ConnectionError as exc:
        cause = root_cause(exc)
        detail = f"cannot connect to {_where(url)}: {type(cause).__name__}: {cause}"
        return DeliveryResult(False, True, scrub(detail, secrets)[:DETAIL_MAX])
    except (requests.exceptions.InvalidURL, requests.exceptions.InvalidHeader, ValueError) as exc:
        detail = f"request cannot be sent (check the channel's url and headers): {exc}"
        return DeliveryResult(False, False, scrub(detail, secrets)[:DETAIL_MAX])
    except requests.RequestException as exc:
        return DeliveryResult(False, True, scrub(f"{type(exc).__name__}: {exc}", secrets)[:DETAIL_MAX])


def _internal_error(channel: str, exc: Exception) -> DeliveryResult:
    log.exception("alert channel %s: unexpected error while sending", channel)
    return DeliveryResult(
        False, False, f"internal error in the sender (a bug, please report): {type(exc).__name__}"
    )


def _check_name(name: object) -> str:
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"alert channel name must be a non-empty string, got {name!r}")
    return name


def _check_timeout(name: str, timeout_s: object, field: str = "timeout_s") -> float:
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, int | float) or not timeout_s > 0:
        raise ConfigError(
            f"alert channel {name!r}: {field} must be a positive number of seconds, got {timeout_s!r}"
        )
    return float(timeout_s)


def _check_http_url(name: str, url: object, field: str = "url") -> str:
    if not isinstance(url, str) or not url.strip():
        raise ConfigError(f"alert channel {name!r}: {field} is missing; set it to the receiver's http(s) URL")
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"alert channel {name!r}: {field} must be an http:// or https:// URL, got {mask_url(url)!r}"
        )
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        raise ConfigError(f"alert channel {name!r}: {field} has a port that is not a number") from None
    return url.strip()


def _require_query(name: str, url: str, param: str, where: str) -> None:
    if not dict(parse_qsl(urlsplit(url).query)).get(param):
        raise ConfigError(
            f"alert channel {name!r}: url has no {param}=...; copy the complete webhook URL from {where}"
        )


class WebhookChannel:
    """POSTs the alert as JSON to any HTTP endpoint; 2xx means delivered.

    The ``Idempotency-Key`` header and the ``key`` field carry the outbox id, so a receiver
    can drop the second copy the outbox sends after a timeout it could not tell from a loss.
    """

    def __init__(
        self,
        name: str,
        url: str,
        headers: Mapping[str, str] | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self.name = _check_name(name)
        self.url = _check_http_url(name, url)
        self.headers = dict(headers or {})
        for header, value in self.headers.items():
            if not isinstance(header, str) or not isinstance(value, str) or not header or "\n" in value:
                raise ConfigError(f"alert channel {name!r}: headers must map names to one-line strings")
        self.timeout_s = _check_timeout(name, timeout_s)
        self.recipient = mask_url(self.url)
        self._secrets = _url_secrets(self.url) + list(self.headers.values())

    def __repr__(self) -> str:
        return (
            f"WebhookChannel(name={self.name!r}, url={self.recipient!r}, "
            f"headers={sorted(self.headers)!r}, timeout_s={self.timeout_s:g})"
        )

    def send(self, message: Message) -> DeliveryResult:
        try:
            try:
                body = encode_json(alert_document(message))
            except (TypeError, ValueError) as exc:
                return DeliveryResult(
                    False, False, f"the alert payload is not JSON-serialisable: {exc}"[:DETAIL_MAX]
                )
            headers = {
                "Content-Type": "application/json; charset=utf-8",
                "User-Agent": USER_AGENT,
                **self.headers,
                "Idempotency-Key": message.key,
            }
            reply = _post(self.url, body, headers, self.timeout_s, self._secrets)
            if isinstance(reply, DeliveryResult):
                return reply
            return judge_http_reply(reply.status_code, reply.content, self._secrets)
        except Exception as exc:
            return _internal_error(self.name, exc)

    def close(self) -> None:
        """Nothing held open; here so every channel can be closed alike."""


class DingTalkChannel:
    """A DingTalk group's custom robot (自定义机器人), markdown messages, optionally signed (加签).

    The robot answers HTTP 200 whatever happened; only ``errcode`` 0 means the group saw it.
    """

    def __init__(
        self,
        name: str,
        url: str,
        secret: str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.name = _check_name(name)
        self.url = _check_http_url(name, url)
        _require_query(name, self.url, "access_token", "the robot's settings in the DingTalk group")
        if secret is not None and (not isinstance(secret, str) or not secret.startswith("SEC")):
            raise ConfigError(
                f"alert channel {name!r}: secret must be the robot's signing secret, which starts with 'SEC'"
                " (group settings > robot > security settings > 加签); leave it out if signing is off"
            )
        self.secret = secret or None
        self.timeout_s = _check_timeout(name, timeout_s)
        self.clock = clock
        self.recipient = mask_url(self.url)
        self._secrets = _url_secrets(self.url) + ([self.secret] if self.secret else [])

    def __repr__(self) -> str:
        signed = "yes" if self.secret else "no"
        return (
            f"DingTalkChannel(name={self.name!r}, url={self.recipient!r}, signed={signed},"
            f" timeout_s={self.timeout_s:g})"
        )

    def request_url(self) -> str:
        """The URL to POST to now: signed with the current time when a secret is set."""
        if not self.secret:
            return self.url
        return dingtalk_signed_url(self.url, self.secret, int(self.clock() * 1000))

    def send(self, message: Message) -> DeliveryResult:
        try:
            url = self.request_url()
            secrets = self._secrets + _url_secrets(url)
            headers = {"Content-Type": "application/json; charset=utf-8", "User-Agent": USER_AGENT}
            reply = _post(url, encode_json(dingtalk_body(message)), headers, self.timeout_s, secrets)
            if isinstance(reply, DeliveryResult):
                return reply
            return judge_robot_reply(reply.status_code, reply.content, DINGTALK_RETRY_CODES, secrets)
        except Exception as exc:
            return _internal_error(self.name, exc)

    def close(self) -> None:
        """Nothing held open; here so every channel can be closed alike."""


class WeComChannel:
    """A WeCom (企业微信) group robot, markdown messages; ``errcode`` 0 means delivered."""

    def __init__(self, name: str, url: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.name = _check_name(name)
        self.url = _check_http_url(name, url)
        _require_query(name, self.url, "key", "the robot's details in the WeCom group")
        self.timeout_s = _check_timeout(name, timeout_s)
        self.recipient = mask_url(self.url)
        self._secrets = _url_secrets(self.url)

    def __repr__(self) -> str:
        return f"WeComChannel(name={self.name!r}, url={self.recipient!r}, timeout_s={self.timeout_s:g})"

    def send(self, message: Message) -> DeliveryResult:
        try:
            headers = {"Content-Type": "application/json; charset=utf-8", "User-Agent": USER_AGENT}
            reply = _post(self.url, encode_json(wecom_body(message)), headers, self.timeout_s, self._secrets)
            if isinstance(reply, DeliveryResult):
                return reply
            return judge_robot_reply(reply.status_code, reply.content, WECOM_RETRY_CODES, self._secrets)
        except Exception as exc:
            return _internal_error(self.name, exc)

    def close(self) -> None:
        """Nothing held open; here so every channel can be closed alike."""


# --------------------------------------------------------------------------- e-mail

SECURITY_PORTS = {"starttls": 587, "ssl": 465, "none": 25}
_ADDRESS = re.compile(
    r"^[^@\s<>()\[\],;:\"]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*$"
)


def _check_address(name: str, field: str, value: object) -> str:
    """A bare address (``a@b.cn``) or one with a display name (``运维 <a@b.cn>``); returns it as given."""
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"alert channel {name!r}: {field} must be an e-mail address, got {value!r}")
    _, address = email.utils.parseaddr(value)
    if not address.isascii():
        raise ConfigError(
            f"alert channel {name!r}: {field} {value!r}: only ASCII addresses are supported"
            " (a display name may be Chinese: 运维 <ops@example.cn>)"
        )
    if not _ADDRESS.match(address) or (
        address != value.strip() and not value.strip().endswith(f"<{address}>")
    ):
        raise ConfigError(
            f"alert channel {name!r}: {field} {value!r} is not an e-mail address; write it as ops@example.cn"
        )
    return value.strip()


def _bare(address: str) -> str:
    return email.utils.parseaddr(address)[1]


@cache
def _local_hostname() -> str:
    """Our name for EHLO, looked up once: ``socket.getfqdn`` can take seconds on a host without DNS."""
    return socket.getfqdn() or "localhost"


def message_id(key: str, sender: str) -> str:
    """A Message-ID that depends only on the idempotency key: a resent copy is recognisably the same mail."""
    local = (
        key if re.fullmatch(r"[A-Za-z0-9._-]{1,64}", key) else hashlib.sha256(key.encode()).hexdigest()[:32]
    )
    domain = _bare(sender).rpartition("@")[2] or "pqmon.invalid"
    return f"<pqmon.{local}@{domain}>"


def build_email(message: Message, sender: str, to: list[str]) -> EmailMessage:
    """The mail: UTF-8 subject and body, marked as automatic so that vacation replies stay away."""
    mail = EmailMessage(policy=email.policy.SMTP)
    mail["Subject"] = message.title
    mail["From"] = sender
    mail["To"] = ", ".join(to)
    mail["Date"] = email.utils.formatdate(localtime=True)
    mail["Message-ID"] = message_id(message.key, sender)
    mail["Auto-Submitted"] = "auto-generated"
    mail["X-Pqmon-Key"] = message.key
    mail["X-Pqmon-Severity"] = message.severity
    # base64 for non-ASCII text: an 8-bit body would need the server's 8BITMIME.
    mail.set_content(message.text, charset="utf-8", cte=None if message.text.isascii() else "base64")
    return mail


def _smtp_code_retry(code: int) -> bool:
    return not 500 <= code < 600


def _smtp_reply(code: int, text: bytes | str) -> str:
    return f"{code} {text.decode('utf-8', 'replace') if isinstance(text, bytes) else text}".strip()


def smtp_failure(exc: BaseException, secrets: Iterable[str] = ()) -> DeliveryResult:
    """What an smtplib or socket error means for the outbox: 5xx replies and bad settings are permanent."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        replies = {rcpt: _smtp_reply(code, text) for rcpt, (code, text) in exc.recipients.items()}
        retry = any(_smtp_code_retry(code) for code, _ in exc.recipients.values())
        detail = "recipient(s) refused: " + "; ".join(f"{r}: {t}" for r, t in replies.items())
        return DeliveryResult(False, retry, scrub(detail, secrets)[:DETAIL_MAX])
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        detail = (
            f"authentication failed ({_smtp_reply(exc.smtp_code, exc.smtp_error)}): check user and password"
        )
        return DeliveryResult(False, 400 <= exc.smtp_code < 500, scrub(detail, secrets)[:DETAIL_MAX])
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        detail = (
            f"not supported by the server ({exc}): use security 'ssl' (port 465) or 'none' (a trusted relay)"
        )
        return DeliveryResult(False, False, scrub(detail, secrets)[:DETAIL_MAX])
    if isinstance(exc, smtplib.SMTPResponseException):
        code = exc.smtp_code
        detail = f"{type(exc).__name__}: {_smtp_reply(code, exc.smtp_error)}"
        return DeliveryResult(False, _smtp_code_retry(code), scrub(detail, secrets)[:DETAIL_MAX])
    if isinstance(exc, ssl.SSLCertVerificationError):
        detail = (
            f"TLS certificate not trusted ({exc.verify_message}): fix the server's certificate or host name"
        )
        return DeliveryResult(False, False, scrub(detail, secrets)[:DETAIL_MAX])
    if isinstance(exc, TimeoutError):
        return DeliveryResult(False, True, "no answer from the mail server in time")
    detail = f"{type(exc).__name__}: {exc}"
    return DeliveryResult(False, True, scrub(detail, secrets)[:DETAIL_MAX])


class SmtpChannel:
    """E-mail through an SMTP server: one connection per message, STARTTLS by default."""

    def __init__(
        self,
        name: str,
        host: str,
        port: int,
        sender: str,
        to: list[str],
        security: str = "starttls",
        user: str | None = None,
        password: str | None = None,
        timeout_s: float = 10.0,
    ) -> None:
        self.name = _check_name(name)
        if not isinstance(host, str) or not host.strip() or any(c in host for c in "/:@ "):
            raise ConfigError(
                f"alert channel {name!r}: host must be the mail server's name or address, got {host!r}"
            )
        self.host = host.strip()
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise ConfigError(
                f"alert channel {name!r}: port must be a port number (1 to 65535), got {port!r}"
            )
        self.port = port
        self.sender = _check_address(name, "sender", sender)
        if not to:
            raise ConfigError(f"alert channel {name!r}: to is missing; list at least one e-mail address")
        self.to = [_check_address(name, "to", a) for a in to]
        if security not in SECURITY_PORTS:
            raise ConfigError(
                f"alert channel {name!r}: security must be starttls, ssl or none, got {security!r}"
            )
        self.security = security
        if bool(user) != bool(password):
            raise ConfigError(f"alert channel {name!r}: user and password must be set together")
        self.user = user or None
        self.password = password or None
        self.timeout_s = _check_timeout(name, timeout_s)
        self.recipient = ",".join(sorted(_bare(a).lower() for a in self.to))

    def __repr__(self) -> str:
        auth = f", user={self.user!r}, password='***'" if self.user else ""
        return (
            f"SmtpChannel(name={self.name!r}, host={self.host!r}, port={self.port}, sender={self.sender!r}, "
            f"to={self.to!r}, security={self.security!r}{auth}, timeout_s={self.timeout_s:g})"
        )

    def _connect(self) -> smtplib.SMTP:
        context = ssl.create_default_context()
        if self.security == "ssl":
            return smtplib.SMTP_SSL(
                self.host,
                self.port,
                local_hostname=_local_hostname(),
                timeout=self.timeout_s,
                context=context,
            )
        smtp = smtplib.SMTP(self.host, self.port, local_hostname=_local_hostname(), timeout=self.timeout_s)
        if self.security == "starttls":
            try:
                smtp.starttls(context=context)
            except BaseException:
                smtp.close()
                raise
        return smtp

    def send(self, message: Message) -> DeliveryResult:
        secrets = [self.password] if self.password else []
        try:
            mail = build_email(message, self.sender, self.to)
            with self._connect() as smtp:
                if self.user and self.password:
                    smtp.login(self.user, self.password)
                refused = smtp.send_message(
                    mail, from_addr=_bare(self.sender), to_addrs=[_bare(a) for a in self.to]
                )
        except (smtplib.SMTPException, OSError) as exc:
            return smtp_failure(exc, secrets)
        except Exception as exc:
            return _internal_error(self.name, exc)
        if refused:
            # Delivered to the others: a retry would send them a second copy, so this is final.
            detail = "delivered, but refused for: " + "; ".join(
                f"{r}: {_smtp_reply(code, text)}" for r, (code, text) in refused.items()
            )
            return DeliveryResult(True, False, detail[:DETAIL_MAX])
        return DeliveryResult(
            True, False, f"accepted by {self.host}:{self.port} for {len(self.to)} recipient(s)"
        )

    def close(self) -> None:
        """Nothing held open; here so every channel can be closed alike."""


# --------------------------------------------------------------------------- MQTT

_TOPIC_LEVEL_BAD = re.compile(r"[+#/\x00]")


def alert_topic(prefix: str, site: str | None) -> str:
    """``<prefix>/<site>``, or ``<prefix>/fleet`` for a fleet-wide message."""
    level = site if site is not None else "fleet"
    if not level or _TOPIC_LEVEL_BAD.search(level):
        raise ValueError(f"site id {level!r} cannot be one MQTT topic level (no '/', '+', '#')")
    return f"{prefix}/{level}"


class MqttChannel:
    """Publishes the alert JSON at QoS 1 to ``<topic_prefix>/<site or fleet>``, not retained.

    One client per channel, connected on first use and kept, so a burst of alerts does not
    open a connection per message; when a send fails the client is dropped and the next
    send connects afresh. Sends are serialised by a lock, which makes the channel safe to
    share between the dispatcher's threads.
    """

    def __init__(
        self,
        name: str,
        url: str,
        topic_prefix: str = "pq/v1/alerts",
        timeout_s: float = DEFAULT_TIMEOUT_S,
        ca_file: str | None = None,
    ) -> None:
        self.name = _check_name(name)
        if not isinstance(url, str) or not url.strip():
            raise ConfigError(
                f"alert channel {name!r}: url is missing; set it to mqtt://host:1883 or mqtts://host:8883"
            )
        if urlsplit(url).scheme not in ("mqtt", "mqtts"):
            raise ConfigError(
                f"alert channel {name!r}: url must start with mqtt:// or mqtts://, got {mask_url(url)!r}"
            )
        try:
            self._target = parse_mqtt_url(url.strip())
        except ValueError:
            raise ConfigError(f"alert channel {name!r}: url has a port that is not a number") from None
        if (
            not isinstance(topic_prefix, str)
            or not topic_prefix
            or topic_prefix.startswith("/")
            or topic_prefix.endswith("/")
            or re.search(r"[+#\x00]", topic_prefix)
        ):
            raise ConfigError(
                f"alert channel {name!r}: topic_prefix must be a topic without wildcards or outer '/',"
                f" like pq/v1/alerts, got {topic_prefix!r}"
            )
        self.topic_prefix = topic_prefix
        self.timeout_s = _check_timeout(name, timeout_s)
        if ca_file is not None and (not isinstance(ca_file, str) or not self._target.tls):
            raise ConfigError(f"alert channel {name!r}: ca_file needs an mqtts:// url (and must be a path)")
        self.ca_file = ca_file or None
        scheme = "mqtts" if self._target.tls else "mqtt"
        self.recipient = f"{scheme}://{self._target.host}:{self._target.port}/{topic_prefix}"
        self.connects = 0  # successful connections so far: one per broker session, not per message
        self._lock = threading.Lock()
        self._client: mqtt.Client | None = None
        self._connack = threading.Event()
        self._refusal: str | None = None

    def __repr__(self) -> str:
        user = f", user={self._target.username!r}, password='***'" if self._target.username else ""
        return f"MqttChannel(name={self.name!r}, url={self.recipient!r}{user}, timeout_s={self.timeout_s:g})"

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:  # type: ignore[no-untyped-def]
        self._refusal = str(reason_code) if reason_code.is_failure else None
        self._connack.set()

    def _drop(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                client.disconnect()
            except Exception:  # already gone: nothing to tell the broker
                pass
            client.loop_stop()

    def _connect(self, deadline: float) -> DeliveryResult | None:
        """Connect a new client; None when connected, else why not."""
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"pqmon-alerts-{uuid.uuid4().hex[:12]}",
            clean_session=True,
            protocol=mqtt.MQTTv311,
        )
        if self._target.username:
            client.username_pw_set(self._target.username, self._target.password)
        if self._target.tls:
            client.tls_set(ca_certs=self.ca_file, cert_reqs=ssl.CERT_REQUIRED)
        client.on_connect = self._on_connect
        client.connect_timeout = max(0.1, deadline - time.monotonic())
        self._connack.clear()
        self._refusal = None
        where = f"{self._target.host}:{self._target.port}"
        try:
            client.connect(self._target.host, self._target.port, keepalive=60)
        except ssl.SSLCertVerificationError as exc:
            return DeliveryResult(
                False, False, f"TLS certificate of {where} not trusted ({exc.verify_message}): set ca_file"
            )
        except OSError as exc:
            return DeliveryResult(
                False, True, f"cannot connect to the MQTT broker {where}: {exc}"[:DETAIL_MAX]
            )
        self._client = client
        client.loop_start()
        if not self._connack.wait(max(0.0, deadline - time.monotonic())):
            self._drop()
            return DeliveryResult(False, True, f"the MQTT broker {where} did not answer CONNECT in time")
        if self._refusal is not None:
            self._drop()
            permanent = self._refusal in ("Bad user name or password", "Not authorized")
            hint = ": check the user and password in the url" if permanent else ""
            return DeliveryResult(
                False, not permanent, f"the MQTT broker {where} refused us: {self._refusal}{hint}"
            )
        self.connects += 1
        return None

    def send(self, message: Message) -> DeliveryResult:
        try:
            try:
                topic = alert_topic(self.topic_prefix, message.site)
                body = encode_json(alert_document(message))
            except (TypeError, ValueError) as exc:
                return DeliveryResult(False, False, f"cannot publish this alert: {exc}"[:DETAIL_MAX])
            deadline = time.monotonic() + self.timeout_s
            with self._lock:
                try:
                    return self._publish(topic, body, deadline)
                except Exception:
                    self._drop()
                    raise
        except Exception as exc:
            return DeliveryResult(
                False, True, f"MQTT publish failed: {type(exc).__name__}: {exc}"[:DETAIL_MAX]
            )

    def _publish(self, topic: str, body: bytes, deadline: float) -> DeliveryResult:
        if self._client is None or not self._client.is_connected():
            self._drop()
            failed = self._connect(deadline)
            if failed is not None:
                return failed
        assert self._client is not None
        info = self._client.publish(topic, body, qos=1, retain=False)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            self._drop()
            return DeliveryResult(
                False, True, f"MQTT publish to {topic} failed: {mqtt.error_string(info.rc)}"
            )
        info.wait_for_publish(max(0.0, deadline - time.monotonic()))
        if not info.is_published():
            # Dropping the client discards the queued copy, so it cannot arrive after our retry as well.
            self._drop()
            return DeliveryResult(False, True, f"no PUBACK for {topic} within {self.timeout_s:g}s")
        return DeliveryResult(True, False, f"PUBACK for {topic} (mid {info.mid})")

    def close(self) -> None:
        """Disconnect the kept client; the next send would connect again."""
        with self._lock:
            self._drop()


# --------------------------------------------------------------------------- configuration

FIELDS: dict[str, tuple[str, ...]] = {
    "webhook": ("url", "headers", "timeout_s"),
    "dingtalk": ("url", "secret", "timeout_s"),
    "wecom": ("url", "timeout_s"),
    "email": ("host", "port", "sender", "to", "security", "user", "password", "timeout_s"),
    "mqtt": ("url", "topic_prefix", "ca_file", "timeout_s"),
}


def _check_fields(name: str, kind: str, cfg: Mapping[str, Any]) -> None:
    """Refuse a key that looks like a misspelt field ("secert"): silently ignored, it would turn signing off.

    Keys that resemble no field are left alone; they may belong to the caller (routing, groups).
    """
    known = (*FIELDS[kind], "type")
    for key in cfg:
        if key in known:
            continue
        close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.75)
        if close:
            raise ConfigError(
                f"alert channel {name!r}: unknown field {key!r}; did you mean {close[0]!r}?"
                f" ({kind} takes {', '.join(FIELDS[kind])})"
            )


def _optional_str(name: str, cfg: Mapping[str, Any], field: str) -> str | None:
    value = cfg.get(field)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ConfigError(f"alert channel {name!r}: {field} must be a string")
    return value


def _to_list(name: str, value: object) -> list[str]:
    if value is None or value == "" or value == []:
        raise ConfigError(f"alert channel {name!r}: to is missing; list at least one e-mail address")
    if isinstance(value, str):
        return [a.strip() for a in value.split(",") if a.strip()]
    if isinstance(value, list | tuple) and all(isinstance(a, str) for a in value):
        return list(value)
    raise ConfigError(f"alert channel {name!r}: to must be a list of e-mail addresses")


def smtp_to(base: SmtpChannel, address: str, name: str) -> SmtpChannel:
    """The mail server, login and sender of ``base``, writing to ``address`` only (customer
    notices and personal subscriptions use the operator's configured server)."""
    return SmtpChannel(
        name,
        base.host,
        base.port,
        base.sender,
        [address],
        base.security,
        base.user,
        base.password,
        base.timeout_s,
    )


def channel_from_config(name: str, cfg: Mapping[str, Any]) -> Channel:
    """One channel from its configuration table; a configuration that cannot work raises ConfigError.

    ``type`` is webhook, dingtalk, wecom, email or mqtt; the other fields are the
    constructor's. Checked here, at start-up, so a typo fails the service with a message
    naming the channel and the field instead of an alert failing when it is needed.
    """
    name = _check_name(name)
    if not isinstance(cfg, Mapping):
        raise ConfigError(f"alert channel {name!r}: expected a table of settings, got {type(cfg).__name__}")
    kind = cfg.get("type")
    if kind not in FIELDS:
        raise ConfigError(f"alert channel {name!r}: type must be one of {', '.join(FIELDS)}, got {kind!r}")
    _check_fields(name, kind, cfg)
    timeout = cfg.get("timeout_s", 10.0 if kind == "email" else DEFAULT_TIMEOUT_S)
    if kind == "webhook":
        headers = cfg.get("headers") or {}
        if not isinstance(headers, Mapping):
            raise ConfigError(f"alert channel {name!r}: headers must be a table of header names and values")
        return WebhookChannel(name, cfg.get("url"), headers, timeout)  # type: ignore[arg-type]
    if kind == "dingtalk":
        secret = cfg.get("secret")
        if secret == "":
            secret = None
        return DingTalkChannel(name, cfg.get("url"), secret, timeout)  # type: ignore[arg-type]
    if kind == "wecom":
        return WeComChannel(name, cfg.get("url"), timeout)  # type: ignore[arg-type]
    if kind == "mqtt":
        return MqttChannel(
            name,
            cfg.get("url"),  # type: ignore[arg-type]
            cfg.get("topic_prefix", "pq/v1/alerts"),
            timeout,
            _optional_str(name, cfg, "ca_file"),
        )
    security = cfg.get("security", "starttls")
    if security not in SECURITY_PORTS:
        raise ConfigError(f"alert channel {name!r}: security must be starttls, ssl or none, got {security!r}")
    host = cfg.get("host")
    if not host:
        raise ConfigError(f"alert channel {name!r}: host is missing; set it to the mail server's name")
    return SmtpChannel(
        name,
        host,
        cfg.get("port", SECURITY_PORTS[security]),
        cfg.get("sender"),  # type: ignore[arg-type]
        _to_list(name, cfg.get("to")),
        security,
        _optional_str(name, cfg, "user"),
        _optional_str(name, cfg, "password"),
        timeout,
    )


__all__ = [
    "Channel",
    "DeliveryResult",
    "DingTalkChannel",
    "Message",
    "MqttChannel",
    "RateLimiter",
    "SmtpChannel",
    "WeComChannel",
    "WebhookChannel",
    "backoff_s",
    "channel_from_config",
    "dingtalk_sign",
    "dingtalk_signed_url",
    "truncate_utf8",
]
