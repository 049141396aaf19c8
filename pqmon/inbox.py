"""The demo's inbox: an HTTP endpoint on loopback standing in for the customers' group robots.

``pqmon up`` gives each demo contact a robot URL on this server, so the planned-outage
notices the alert service sends really leave it (over HTTP, through the DingTalk sender) and
can be read: one JSON line per message in ``<data dir>/inbox.jsonl``. It answers as a robot
that accepted the message (``{"errcode": 0}``).
"""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

ACCEPTED = b'{"errcode":0,"errmsg":"ok"}'


class DemoInbox:
    def __init__(self, path: Path, host: str = "127.0.0.1", port: int = 0) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        inbox = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length") or 0)
                inbox._record(self.path, self.rfile.read(length))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(ACCEPTED)))
                self.end_headers()
                self.wfile.write(ACCEPTED)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def robot_url(self, token: str) -> str:
        """A DingTalk-style robot URL (``access_token=``) that lands here."""
        return f"http://127.0.0.1:{self.port}/robot/send?access_token={token}"

    def _record(self, raw_path: str, body: bytes) -> None:
        parts = urlsplit(raw_path)
        try:
            payload: object = json.loads(body)
        except ValueError:
            payload = body.decode(errors="replace")
        line = {
            "received": datetime.now(UTC).isoformat(timespec="seconds"),
            "to": (parse_qs(parts.query).get("access_token") or [""])[0],
            "message": payload,
        }
        with self._lock, open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(line, ensure_ascii=False) + "\n")

    def start(self) -> DemoInbox:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._thread = threading.Thread(target=self._server.serve_forever, name="demo-inbox", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(5)
        self._server.server_close()
