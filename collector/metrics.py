"""``/healthz`` and Prometheus-format ``/metrics`` for a collector, on a small HTTP thread."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PREFIX = "pqmon_collector_"


def render(counters: dict[str, float], gauges: dict[str, float]) -> str:
    """Prometheus text exposition; ``rejected_<reason>`` counters become one labelled family."""
    lines = [f"# TYPE {PREFIX}rejected_total counter"]
    for name, value in sorted(counters.items()):
        if name.startswith("rejected_"):
            lines.append(f'{PREFIX}rejected_total{{reason="{name.removeprefix("rejected_")}"}} {value:g}')
    for name, value in sorted(counters.items()):
        if not name.startswith("rejected_"):
            lines += [f"# TYPE {PREFIX}{name}_total counter", f"{PREFIX}{name}_total {value:g}"]
    for name, value in sorted(gauges.items()):
        lines += [f"# TYPE {PREFIX}{name} gauge", f"{PREFIX}{name} {value:g}"]
    return "\n".join(lines) + "\n"


class MetricsServer:
    def __init__(
        self,
        host: str,
        port: int,
        snapshot: Callable[[], tuple[dict[str, float], dict[str, float]]],
        health: Callable[[], tuple[bool, dict[str, object]]],
    ) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                if self.path == "/metrics":
                    body = render(*outer.snapshot()).encode()
                    self._send(200, "text/plain; version=0.0.4", body)
                elif self.path == "/healthz":
                    ok, detail = outer.health()
                    self._send(200 if ok else 503, "application/json", json.dumps(detail).encode())
                else:
                    self._send(404, "text/plain", b"not found\n")

            def _send(self, code: int, ctype: str, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:  # scrapes are not news
                pass

        self.snapshot = snapshot
        self.health = health
        self._server = ThreadingHTTPServer((host, port), Handler)
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, name="pqmon-metrics", daemon=True)

    def start(self) -> MetricsServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
