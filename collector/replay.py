"""``pqmon deadletter replay``: validate dead letters again, against today's registry.

A message rejected because its meter was unknown goes through once the meter is
registered. What passes is written to InfluxDB and removed from the dead-letter store;
what still fails stays, with its new reason counted. Like the collector, the replay marks
the (site, local day) pairs it stored as dirty, so the worker's next pass takes them in.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from collector.contract import Rejected, decode
from collector.deadletter import DeadLetters
from collector.service import BUCKET_MS, local_days, meter_infos
from core.registry import Registry
from core.settings import Settings
from core.store import InfluxStore


@dataclass(frozen=True)
class ReplayResult:
    replayed: int
    stored: int
    still_rejected: int


def replay(settings: Settings, reason: str | None = None, site: str | None = None) -> ReplayResult:
    letters = DeadLetters(settings.data_dir / "deadletter.db")
    registry = Registry(settings.registry_url)
    store = InfluxStore.from_settings(settings)
    meters = meter_infos(registry)
    now_ms = int(time.time() * 1000)
    oldest = now_ms - settings.retention_days * 86_400_000
    passed: list[int] = []
    lines: list[str] = []
    touched: set[tuple[str, int]] = set()
    still = 0
    try:
        for rec in letters.records(reason, site):
            if rec["truncated"] or rec["topic"] == "store":
                still += 1
                continue
            try:
                decoded = decode(rec["topic"], rec["raw"], meters, now_ms, oldest)
            except Rejected:
                still += 1
                continue
            if decoded.rejected:
                still += 1
                continue
            lines.extend(decoded.lines)
            touched.update((decoded.site, ts // BUCKET_MS) for ts in decoded.times)
            passed.append(rec["id"])
        if lines:
            store.ensure_database()
            for i in range(0, len(lines), settings.batch_size):
                store.write(lines[i : i + settings.batch_size])
            registry.mark_dirty(local_days(touched, settings.tz))
        letters.remove(passed)
    finally:
        store.close()
        registry.close()
        letters.close()
    return ReplayResult(len(passed), len(lines), still)
