"""``pqmon import readings FILE.csv``: a meter-data export into InfluxDB, through the MQTT contract.

The CSV has ``site``, ``meter``, ``timestamp`` (RFC 3339 with an offset, or epoch
milliseconds) and any of the reading fields of docs/mqtt.md. Every row is checked by the
same code as a live reading (:func:`collector.contract.reading_line`); rows that break
the contract go to the dead-letter store under ``pq/v1/<site>/<meter>/reading`` with the
row as a reading object, so ``pqmon deadletter replay`` takes them once fixed (after the
meter is registered, say). The file is read in chunks: memory stays bounded.

A row's "received" time in the dead-letter store is the file's modification time, so
importing the same file twice adds no second copy of its dead letters (and the points,
same series and time, overwrite themselves). Exact duplicate bad rows share one record.

Like the collector, the import marks every (site, local day) it stored readings for as
dirty, after each batch InfluxDB accepted, so the worker's next incremental pass
recomputes those days (an import stopped half-way has marked what it stored).
"""

from __future__ import annotations

import logging
import re
import sys
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pandas as pd

from collector.contract import (
    READING_FIELDS,
    TOPIC_PREFIX,
    MeterInfo,
    Rejected,
    parse_topic,
    parse_ts,
    reading_line,
)
from collector.deadletter import DeadLetters
from collector.service import BUCKET_MS, local_days, meter_infos
from core.errors import PqmonError, StoreRejected
from core.registry import Registry
from core.settings import Settings
from core.store import InfluxStore

log = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("site", "meter", "timestamp")
CHUNK_ROWS = 50_000
EPOCH_MS = re.compile(r"^[+-]?\d+$")


@dataclass(frozen=True)
class BackfillResult:
    rows: int
    stored: int
    rejected_by_reason: dict[str, int] = field(default_factory=dict)

    @property
    def rejected(self) -> int:
        return sum(self.rejected_by_reason.values())


def reading_topic(site: str, meter: str) -> str:
    return f"{TOPIC_PREFIX}{site}/{meter}/reading"


def _cell_number(text: str) -> Any:
    """A CSV cell as the JSON value a meter would have sent; text that is no number stays text
    (and is rejected as ``bad_value``). ``nan``, ``inf`` and numbers past float range become
    non-finite floats, which the contract rejects too."""
    try:
        return float(text)
    except ValueError:
        return text


def row_reading(ts_text: str, values: dict[str, str]) -> dict[str, Any]:
    """One CSV row as a reading object of the MQTT contract; empty cells are absent fields."""
    reading: dict[str, Any] = {}
    ts_text = ts_text.strip()
    if ts_text:
        reading["ts"] = int(ts_text) if EPOCH_MS.match(ts_text) else ts_text
    for name, text in values.items():
        text = text.strip()
        if text:
            reading[name] = _cell_number(text)
    return reading


class _Progress:
    """Bytes read so far, on stderr: tqdm when installed, else a percentage line."""

    def __init__(self, total: int, label: str, enabled: bool) -> None:
        self.total = max(total, 1)
        self.done = 0
        self.enabled = enabled
        self._bar: Any = None
        self._last_pct = -1
        if not enabled:
            return
        try:
            from tqdm import tqdm  # type: ignore[import-untyped]  # optional
        except ImportError:
            return
        self._bar = tqdm(total=total, unit="B", unit_scale=True, desc=label, file=sys.stderr)

    def update(self, position: int) -> None:
        step, self.done = position - self.done, position
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(step)
            return
        pct = min(100, self.done * 100 // self.total)
        if pct != self._last_pct:
            self._last_pct = pct
            print(f"\rimporting: {pct:3d}%", end="", file=sys.stderr, flush=True)

    def close(self) -> None:
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.close()
        else:
            print(file=sys.stderr, flush=True)


def _chunks(fh: IO[bytes], chunk_rows: int, path: Path) -> Iterator[pd.DataFrame]:
    """Every cell as text ("" when empty): the contract, not pandas, decides what a value is."""
    try:
        reader = pd.read_csv(
            fh,
            chunksize=chunk_rows,
            dtype=str,
            keep_default_na=False,
            encoding="utf-8-sig",
        )
        with reader:
            yield from reader
    except pd.errors.EmptyDataError:
        raise PqmonError(f"{path}: the file is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise PqmonError(f"{path}: not a UTF-8 CSV file ({str(exc)[:200]})") from None


class _Writer:
    """Points to InfluxDB in batches of ``batch_size``; a refused batch is retried point by point.

    What InfluxDB took is marked dirty at once, per (site, local day), as the collector does.
    """

    def __init__(self, store: InfluxStore, registry: Registry, tz: str, batch_size: int) -> None:
        self.store = store
        self.registry = registry
        self.tz = tz
        self.batch_size = batch_size
        self.pending: list[tuple[str, str, int]] = []  # (point, site, UTC ms)
        self.stored = 0
        self.refused: list[tuple[str, bytes, str, str, int]] = []

    def add(self, point: str, site: str, ts_ms: int) -> None:
        self.pending.append((point, site, ts_ms))
        if len(self.pending) >= self.batch_size:
            self.flush()

    def flush(self) -> None:
        batch, self.pending = self.pending, []
        if not batch:
            return
        try:
            self.store.write(point for point, _, _ in batch)
            self._stored(batch)
            return
        except StoreRejected as exc:
            log.warning("InfluxDB refused a batch of %d (%s); writing point by point", len(batch), exc)
        for item in batch:
            try:
                self.store.write([item[0]])
                self._stored([item])
            except StoreRejected as why:  # same record shape as the collector's
                self.refused.append(
                    ("store", item[0].encode(), "store_rejected", str(why)[:300], int(time.time() * 1000))
                )

    def _stored(self, items: list[tuple[str, str, int]]) -> None:
        self.stored += len(items)
        touched = {(site, ts_ms // BUCKET_MS) for _, site, ts_ms in items}
        self.registry.mark_dirty(local_days(touched, self.tz))


def _check_header(fh: IO[bytes], path: Path) -> list[str]:
    """The reading fields the file has; fails on a missing required column. Rewinds ``fh``."""
    try:
        header = pd.read_csv(fh, nrows=0, dtype=str, encoding="utf-8-sig")
    except pd.errors.EmptyDataError:
        raise PqmonError(f"{path}: the file is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise PqmonError(f"{path}: not a UTF-8 CSV file ({str(exc)[:200]})") from None
    fh.seek(0)
    columns = [str(c).strip() for c in header.columns]
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise PqmonError(
            f"{path}: missing column(s) {', '.join(missing)}; "
            f"expected {', '.join(REQUIRED_COLUMNS)} and reading fields"
        )
    fields = [c for c in columns if c in READING_FIELDS]
    if not fields:
        log.warning("%s has none of the reading fields %s", path, ", ".join(READING_FIELDS))
    return fields


def _check_row(
    topic: str,
    site: str,
    meter: str,
    reading: dict[str, Any],
    meters: Mapping[tuple[str, str], MeterInfo],
    now_ms: int,
    oldest_ms: int,
) -> str:
    """The collector's checks, in its order: topic, registry, then the reading itself."""
    parse_topic(topic)
    info = meters.get((site, meter))
    if info is None:
        raise Rejected("unknown_meter", f"meter {meter!r} of site {site!r} is not in the registry")
    return reading_line(reading, site, meter, info, now_ms, oldest_ms)[0]


def import_readings(
    settings: Settings, path: str | Path, *, progress: bool = True, chunk_rows: int = CHUNK_ROWS
) -> BackfillResult:
    """Validate and store every row of a reading export; rejects go to the dead-letter store."""
    path = Path(path)
    if not path.is_file():
        raise PqmonError(f"{path}: no such file")
    received_ms = int(path.stat().st_mtime * 1000)
    now_ms = int(time.time() * 1000)
    oldest_ms = now_ms - settings.retention_days * 86_400_000
    registry = Registry(settings.registry_url)
    store = InfluxStore.from_settings(settings)
    letters = DeadLetters(settings.data_dir / "deadletter.db")
    rows = 0
    reasons: Counter[str] = Counter()
    bar = _Progress(path.stat().st_size, path.name, progress)
    try:
        meters = meter_infos(registry)
        store.ensure_database()
        writer = _Writer(store, registry, settings.tz, settings.batch_size)
        with open(path, "rb") as fh:
            fields = _check_header(fh, path)
            for chunk in _chunks(fh, chunk_rows, path):
                chunk.columns = [str(c).strip() for c in chunk.columns]
                dead: list[tuple[str, object, str, str, int]] = []
                cells = zip(
                    chunk["site"],
                    chunk["meter"],
                    chunk["timestamp"],
                    *(chunk[c] for c in fields),
                    strict=True,
                )
                for row_no, (site, meter, ts_text, *values) in enumerate(cells, start=rows + 1):
                    site, meter = site.strip(), meter.strip()
                    topic = reading_topic(site, meter)
                    reading = row_reading(ts_text, dict(zip(fields, values, strict=True)))
                    try:
                        point = _check_row(topic, site, meter, reading, meters, now_ms, oldest_ms)
                    except Rejected as why:
                        reasons[why.reason] += 1
                        dead.append(
                            (
                                topic,
                                reading,
                                why.reason,
                                f"{path.name} row {row_no}: {why.detail}",
                                received_ms,
                            )
                        )
                    else:
                        writer.add(point, site, parse_ts(reading["ts"]))
                rows += len(chunk)
                letters.add_many(dead)
                bar.update(fh.tell())
        writer.flush()
        for record in writer.refused:
            reasons[record[2]] += 1
        letters.add_many(writer.refused)
    finally:
        bar.close()
        letters.close()
        store.close()
        registry.close()
    return BackfillResult(rows, writer.stored, dict(reasons))
