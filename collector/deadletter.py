"""The dead-letter store: every rejected message, with its reason, durable and replayable.

SQLite under ``<data dir>/deadletter.db``, shared by every collector process of a data
dir (WAL, busy timeout). A record is unique by (topic, payload, reason, received time), so
re-processing the spool after a crash does not duplicate it.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

PAYLOAD_CAP_BYTES = 64 * 1024

SCHEMA = """
CREATE TABLE IF NOT EXISTS deadletter (
    id INTEGER PRIMARY KEY,
    received_ms INTEGER NOT NULL,
    rejected_ms INTEGER NOT NULL,
    topic TEXT NOT NULL,
    site TEXT,
    reason TEXT NOT NULL,
    detail TEXT NOT NULL,
    payload BLOB NOT NULL,
    truncated INTEGER NOT NULL,
    digest TEXT NOT NULL UNIQUE
);
CREATE INDEX IF NOT EXISTS deadletter_reason ON deadletter (reason);
CREATE INDEX IF NOT EXISTS deadletter_site ON deadletter (site);
"""


def _site_of(topic: str) -> str | None:
    parts = topic.split("/")
    return parts[2] if len(parts) >= 4 and parts[0] == "pq" else None


class DeadLetters:
    def __init__(self, path: Path) -> None:
        path = Path(path)
        if path.suffix != ".db":
            path = path / "deadletter.db"
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(SCHEMA)

    def add_many(self, records: Iterable[tuple[Any, ...]]) -> int:
        """(topic, payload, reason, detail, received_ms[, key]) rows in one transaction.

        ``key`` names the rejected thing uniquely (a spool message and item number), so that
        processing it again after a crash stores it once, while two equal bad messages stay two.
        Without a key the record is keyed by its topic, payload, reason and received time.
        """
        now = int(time.time() * 1000)
        rows = []
        for record in records:
            topic, payload, reason, detail, received_ms = record[:5]
            key = record[5] if len(record) > 5 else None
            # ASCII escapes keep a lone surrogate (valid JSON, invalid UTF-8) storable and replayable.
            raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
            identity = [str(key).encode()] if key is not None else [raw, str(received_ms).encode()]
            digest = hashlib.sha256(b"\0".join([topic.encode(), reason.encode(), *identity])).hexdigest()
            rows.append(
                (
                    received_ms,
                    now,
                    topic,
                    _site_of(topic),
                    reason,
                    detail,
                    raw[:PAYLOAD_CAP_BYTES],
                    int(len(raw) > PAYLOAD_CAP_BYTES),
                    digest,
                )
            )
        if not rows:
            return 0
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany(
                "INSERT OR IGNORE INTO deadletter (received_ms, rejected_ms, topic, site, reason, detail,"
                " payload, truncated, digest) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            self._db.execute("COMMIT")
        return len(rows)

    def add(
        self, topic: str, payload: bytes | Any, reason: str, detail: str = "", received_ms: int | None = None
    ) -> None:
        stamp = int(time.time() * 1000) if received_ms is None else received_ms
        self.add_many([(topic, payload, reason, detail, stamp)])

    def records(
        self,
        reason: str | None = None,
        site: str | None = None,
        since_ms: int | None = None,
        until_ms: int | None = None,
    ) -> Iterator[dict[str, Any]]:
        where, args = ["1=1"], []
        for clause, value in (
            ("reason = ?", reason),
            ("site = ?", site),
            ("received_ms >= ?", since_ms),
            ("received_ms < ?", until_ms),
        ):
            if value is not None:
                where.append(clause)
                args.append(value)
        with self._lock:
            rows = self._db.execute(
                "SELECT id, received_ms, topic, site, reason, detail, payload, truncated"
                f" FROM deadletter WHERE {' AND '.join(where)} ORDER BY id",
                args,
            ).fetchall()
        for rid, received_ms, topic, site_id, why, detail, payload, truncated in rows:
            yield {
                "id": rid,
                "received_ms": received_ms,
                "topic": topic,
                "site": site_id,
                "reason": why,
                "detail": detail,
                "payload": bytes(payload).decode("utf-8", "replace"),
                "raw": bytes(payload),
                "truncated": bool(truncated),
            }

    def remove(self, ids: Iterable[int]) -> None:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany("DELETE FROM deadletter WHERE id = ?", [(i,) for i in ids])
            self._db.execute("COMMIT")

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM deadletter").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()
