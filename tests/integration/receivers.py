"""Local receivers for alert deliveries: an HTTP endpoint and an SMTP server on loopback.

Real servers, so the senders are tested over real sockets against scripted answers (a
robot's errcode, a 500, a hang, a refused recipient) instead of against mocks that agree
with whatever the sender does. Use them as pytest fixtures from any test module::

    from tests.integration.receivers import (  # noqa: F401 - the fixtures are used by name
        HttpReceiver, Reply, SmtpServer, http_receiver_fixture, smtp_server_fixture,
    )

    def test_something(http_receiver: HttpReceiver, smtp_server: SmtpServer) -> None:
        http_receiver.script(Reply(500))          # the next request gets a 500, then the default
        http_receiver.respond_with(my_responder)  # or compute every answer from the request
        ...
        [request] = http_receiver.wait_for(1)     # waits with a deadline, then raises
        request.json(), request.query, request.headers["idempotency-key"]

or start them yourself: ``HttpReceiver().start()`` / ``SmtpServer().start()`` and ``stop()``.
"""

from __future__ import annotations

import email
import email.policy
import json
import threading
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from core.servers import free_port, wait_until

# --------------------------------------------------------------------------- HTTP


@dataclass(frozen=True)
class Reply:
    """One scripted answer: a dict body is sent as JSON; ``delay_s`` holds the answer back (a hang)."""

    status: int = 200
    body: bytes | str | Mapping[str, Any] = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    delay_s: float = 0.0

    def encoded(self) -> tuple[bytes, str]:
        if isinstance(self.body, bytes):
            return self.body, "application/octet-stream"
        if isinstance(self.body, str):
            return self.body.encode("utf-8"), "text/plain; charset=utf-8"
        return json.dumps(dict(self.body), ensure_ascii=False).encode(
            "utf-8"
        ), "application/json; charset=utf-8"


@dataclass(frozen=True)
class Received:
    """One request as the receiver saw it, with the query string exactly as sent."""

    method: str
    path: str
    raw_query: str
    headers: dict[str, str]  # names in lower case
    body: bytes

    @property
    def query(self) -> dict[str, list[str]]:
        """The query decoded once, as a real server would: a double-encoded value stays visibly encoded."""
        return parse_qs(self.raw_query, keep_blank_values=True)

    def json(self) -> Any:
        return json.loads(self.body)


Responder = Callable[[Received], Reply]


class HttpReceiver:
    """An HTTP server in a thread, recording every request and answering as scripted.

    Answers come from the script queue first (``script``), then from the responder
    (``respond_with``, default: 200 with an empty body). A delayed answer waits on an event
    that ``stop`` sets, so a simulated hang never outlives the test.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: list[Received] = []
        self._script: deque[Reply] = deque()
        self._responder: Responder = lambda _request: Reply()
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        assert self._server is not None, "start the receiver first"
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def requests(self) -> list[Received]:
        with self._lock:
            return list(self._requests)

    def script(self, *replies: Reply) -> None:
        """Answer the next requests with these, in order."""
        with self._lock:
            self._script.extend(replies)

    def respond_with(self, responder: Responder) -> None:
        """Answer requests (after the script runs out) with ``responder(request)``."""
        with self._lock:
            self._responder = responder

    def clear(self) -> None:
        with self._lock:
            self._requests.clear()
            self._script.clear()

    def wait_for(self, count: int, timeout_s: float = 5) -> list[Received]:
        """The first ``count`` requests, once that many have arrived; TimeoutError after the deadline."""
        wait_until(lambda: len(self.requests) >= count, timeout_s, f"{count} request(s) at {self.url}")
        return self.requests[:count]

    def _answer(self, request: Received) -> Reply:
        with self._lock:
            self._requests.append(request)
            if self._script:
                return self._script.popleft()
            responder = self._responder
        return responder(request)

    def start(self) -> HttpReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"  # one request per connection: no keep-alive to reason about

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                request = Received(
                    method=self.command,
                    path=parts.path,
                    raw_query=parts.query,
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=body,
                )
                reply = receiver._answer(request)
                if reply.delay_s and receiver._stopping.wait(reply.delay_s):
                    return  # stopping: drop the connection unanswered
                payload, content_type = reply.encoded()
                self.send_response(reply.status)
                headers = {"Content-Type": content_type, "Content-Length": str(len(payload)), **reply.headers}
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = _handle

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # the client gave up (a timeout test): nothing to report

        # Port 0: the kernel picks a free port and we hold it, with no window for another process.
        self._server = Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.02},
            name="http-receiver",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)


# --------------------------------------------------------------------------- SMTP


@dataclass(frozen=True)
class ReceivedMail:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes  # the message as it came over the wire

    @property
    def message(self) -> EmailMessage:
        """Parsed with the modern policy: headers come back decoded (``=?utf-8?b?...?=`` to text)."""
        return cast(EmailMessage, email.message_from_bytes(self.data, policy=email.policy.default))


class SmtpServer:
    """aiosmtpd on a free loopback port, recording each accepted mail.

    ``refuse`` maps recipient addresses to the reply their RCPT TO gets, for example
    ``{"nobody@example.cn": "550 5.1.1 no such user"}`` (or a 4xx for a temporary refusal).
    """

    def __init__(self) -> None:
        self.refuse: dict[str, str] = {}
        self._lock = threading.Lock()
        self._messages: list[ReceivedMail] = []
        self._controller: Controller | None = None
        self.host = "127.0.0.1"
        self.port = 0

    @property
    def messages(self) -> list[ReceivedMail]:
        with self._lock:
            return list(self._messages)

    def wait_for(self, count: int, timeout_s: float = 5) -> list[ReceivedMail]:
        wait_until(
            lambda: len(self.messages) >= count, timeout_s, f"{count} mail(s) at {self.host}:{self.port}"
        )
        return self.messages[:count]

    async def handle_RCPT(  # noqa: N802 - aiosmtpd's hook name
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        refusal = self.refuse.get(address)
        if refusal:
            return refusal
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        data = envelope.original_content or b""
        mail = ReceivedMail(str(envelope.mail_from), list(envelope.rcpt_tos), bytes(data))
        with self._lock:
            self._messages.append(mail)
        return "250 Message accepted for delivery"

    def start(self) -> SmtpServer:
        self.port = free_port()
        self._controller = Controller(self, hostname=self.host, port=self.port, ready_timeout=5)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()


# --------------------------------------------------------------------------- fixtures


# Registered under the short names; the function names differ so that a test module can import
# them without its parameters redefining the imports (ruff F811).


@pytest.fixture(name="http_receiver")
def http_receiver_fixture() -> Iterator[HttpReceiver]:
    receiver = HttpReceiver().start()
    yield receiver
    receiver.stop()


@pytest.fixture(name="smtp_server")
def smtp_server_fixture() -> Iterator[SmtpServer]:
    server = SmtpServer().start()
    yield server
    server.stop()
