"""The dead-letter store: every rejected message, with its reason, on disk, replayable.

JSON lines, one file per UTC day under ``<data dir>/deadletter/``. Appends are flushed per
message so that a crash loses at most what the OS had not yet written.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

PAYLOAD_CAP_BYTES = 64 * 1024


class DeadLetters:
    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def add(self, topic: str, payload: bytes | Any, reason: str, detail: str = "") -> None:
        now = time.time()
        record: dict[str, Any] = {
            "time": datetime.fromtimestamp(now, UTC).isoformat(timespec="milliseconds"),
            "topic": topic,
            "reason": reason,
            "detail": detail,
        }
        if isinstance(payload, bytes):
            capped = payload[:PAYLOAD_CAP_BYTES]
            record["truncated"] = len(payload) > PAYLOAD_CAP_BYTES
            try:
                record["payload"] = capped.decode("utf-8")
            except UnicodeDecodeError:
                record["payload_b64"] = base64.b64encode(capped).decode()
        else:  # one reading of a batch
            record["payload"] = json.dumps(payload, ensure_ascii=False)[:PAYLOAD_CAP_BYTES]
        path = self.directory / f"{datetime.fromtimestamp(now, UTC):%Y-%m-%d}.jsonl"
        text = json.dumps(record, ensure_ascii=False) + "\n"
        with self._lock, open(path, "a", encoding="utf-8") as fh:
            fh.write(text)

    def records(self, reason: str | None = None, site: str | None = None) -> Iterator[dict[str, Any]]:
        for path in sorted(self.directory.glob("*.jsonl")):
            with open(path, encoding="utf-8") as fh:
                for raw in fh:
                    if not raw.strip():
                        continue
                    rec = json.loads(raw)
                    if reason and rec["reason"] != reason:
                        continue
                    if site and f"/{site}/" not in rec["topic"]:
                        continue
                    yield rec

    @staticmethod
    def payload_bytes(record: dict[str, Any]) -> bytes:
        if "payload_b64" in record:
            return base64.b64decode(record["payload_b64"])
        return str(record.get("payload", "")).encode("utf-8")
