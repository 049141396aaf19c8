"""The durable local spool between the broker and InfluxDB.

A message is acknowledged to the broker only after it is committed here, and leaves only
after its points are in InfluxDB (or it is dead-lettered). SQLite in WAL mode: a commit
survives ``kill -9`` of the collector; ``synchronous=FULL`` (PQMON_SPOOL_FSYNC) also
survives a power cut, at some cost in speed.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable
from pathlib import Path


class Spool:
    def __init__(self, path: Path, *, fsync: bool = False) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={'FULL' if fsync else 'NORMAL'}")
        self._db.execute(
            # AUTOINCREMENT: ids never come back after the table empties, so a reader's
            # cursor (the last id it decoded) can never skip a newer message.
            "CREATE TABLE IF NOT EXISTS spool (id INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL,"
            " payload BLOB NOT NULL, received_ms INTEGER NOT NULL)"
        )
        (self._depth,) = self._db.execute("SELECT count(*) FROM spool").fetchone()

    @property
    def depth(self) -> int:
        """Messages waiting for InfluxDB."""
        return self._depth

    def append(self, messages: Iterable[tuple[str, bytes, int]]) -> int:
        """Commit (topic, payload, received_ms) rows in one transaction; returns how many."""
        rows = list(messages)
        if not rows:
            return 0
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany("INSERT INTO spool (topic, payload, received_ms) VALUES (?, ?, ?)", rows)
            self._db.execute("COMMIT")
            self._depth += len(rows)
        return len(rows)

    def head(self, limit: int, after_id: int = 0) -> list[tuple[int, str, bytes, int]]:
        """The oldest ``limit`` messages after ``after_id``, in arrival order."""
        with self._lock:
            return self._db.execute(
                "SELECT id, topic, payload, received_ms FROM spool WHERE id > ? ORDER BY id LIMIT ?",
                (after_id, limit),
            ).fetchall()

    def oldest_ms(self) -> int | None:
        with self._lock:
            row = self._db.execute("SELECT received_ms FROM spool ORDER BY id LIMIT 1").fetchone()
        return None if row is None else int(row[0])

    def remove_through(self, last_id: int) -> None:
        """Forget every message up to ``last_id``: their points are stored."""
        with self._lock:
            cur = self._db.execute("DELETE FROM spool WHERE id <= ?", (last_id,))
            self._depth -= cur.rowcount

    def close(self) -> None:
        with self._lock:
            self._db.close()
