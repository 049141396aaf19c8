"""``pqmon import readings``: a CSV export through the MQTT contract into a real InfluxDB.

Good rows are stored exactly; every bad row is dead-lettered with the collector's reason,
and a row of an unknown meter goes through ``deadletter replay`` once the meter is registered.
"""

from __future__ import annotations

import csv
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from collector.backfill import import_readings
from collector.deadletter import DeadLetters
from collector.replay import replay
from core.errors import PqmonError
from core.registry import Registry
from core.settings import Settings, load_settings
from tests.integration.mqtt_support import REGISTRY_HEADER, count_and_sum, registry_csv

pytestmark = pytest.mark.integration

METERS = 5
GOOD_PER_METER = 600
CST = timezone(timedelta(hours=8))
COLUMNS = ["site", "meter", "timestamp", "ua", "ub", "uc", "f", "interval_s", "note"]


def ua_value(i: int) -> float:
    return 210.0 + (i % 300) / 10


def rfc3339(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, CST).isoformat()


def write_export(path: Path, start_ms: int) -> tuple[list[dict[str, str]], Counter[str], int]:
    """Good rows of METERS meters, with bad rows of every kind spread among them."""
    now_ms = int(time.time() * 1000)
    good: list[dict[str, str]] = []
    for i in range(GOOD_PER_METER):
        ms = start_ms + i * 60_000
        for m in range(METERS):
            ts = str(ms) if (i + m) % 2 else rfc3339(ms)  # both timestamp forms
            good.append(
                {
                    "site": "A001",
                    "meter": f"M{m}",
                    "timestamp": ts,
                    "ua": repr(ua_value(i)),
                    "ub": "231.5",
                    "uc": "" if m == 0 else "229.0",
                    "f": "50.01",
                    "interval_s": "900" if m == 4 else "",
                    "note": "ok",
                }
            )

    def bad(n: int, reason: str, **cells: str) -> list[tuple[str, dict[str, str]]]:
        rows = []
        for k in range(n):
            row = {
                "site": "A001",
                "meter": "M1",
                "timestamp": str(start_ms - (k + 1) * 60_000),
                "ua": repr(220.0 + k / 100),
                "ub": "",
                "uc": "",
                "f": "",
                "interval_s": "",
                "note": "",
            }
            row.update({c: v.format(k=k) for c, v in cells.items()})
            rows.append((reason, row))
        return rows

    bad_rows = [
        *bad(40, "unknown_meter", meter="M99"),
        *bad(10, "bad_value", ua="abc{k}"),
        *bad(5, "bad_value", ua="nan", f="{k}"),
        *bad(5, "bad_value", f="fifty{k}"),
        *bad(10, "voltage_range", ua="{k}999"),
        *bad(5, "voltage_range", ua="-1.{k}"),
        *bad(5, "missing_ts", timestamp="", f="{k}"),
        *bad(5, "bad_ts", timestamp="yesterday {k}"),
        *bad(5, "bad_ts", timestamp="2026-01-0{k}T00:00:00"),
        *bad(5, "ts_future", timestamp=str(now_ms + 86_400_000) + "{k}"),
        *bad(5, "ts_too_old", timestamp="15{k}0000000000"),
        *bad(5, "no_voltage", ua="", f="50.{k}"),
        *bad(5, "bad_topic", site="A 1"),
        *bad(5, "bad_topic", site="", meter="M{k}"),
        *bad(5, "bad_value", interval_s="0"),
    ]
    rows = list(good)
    for n, (_reason, row) in enumerate(bad_rows):
        rows.insert((n * 97) % len(rows), row)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return good, Counter(reason for reason, _ in bad_rows), len(rows)


def stored_readings(settings: Settings) -> tuple[int, float]:
    return count_and_sum(settings.influx_url, settings.influx_db)


@pytest.fixture
def settings(tmp_path: Path, pqmon_env: dict[str, str]) -> Settings:
    settings = load_settings(pqmon_env | {"PQMON_BATCH_SIZE": "700"})
    registry = Registry(settings.registry_url)
    try:
        registry.import_csv(registry_csv(tmp_path / "registry.csv", METERS))
    finally:
        registry.close()
    return settings


def test_import_stores_good_rows_and_dead_letters_the_rest(
    tmp_path: Path, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    start_ms = (int(time.time() * 1000) // 60_000 - GOOD_PER_METER - 3 * 1440) * 60_000
    export = tmp_path / "export.csv"
    good, bad_reasons, total = write_export(export, start_ms)
    began = time.monotonic()

    result = import_readings(settings, export, progress=True, chunk_rows=512)

    assert time.monotonic() - began < 30
    assert "100%" in capsys.readouterr().err  # the progress line, on stderr
    assert result.rows == total
    assert result.stored == len(good)
    assert result.rejected_by_reason == dict(bad_reasons)
    count, total_ua = stored_readings(settings)
    assert count == len(good)
    assert total_ua == pytest.approx(METERS * sum(ua_value(i) for i in range(GOOD_PER_METER)), rel=1e-12)

    letters = DeadLetters(settings.data_dir / "deadletter.db")
    try:
        records = list(letters.records())
    finally:
        letters.close()
    assert Counter(r["reason"] for r in records) == bad_reasons
    assert all(r["detail"].startswith("export.csv row ") for r in records)
    unknown = [r for r in records if r["reason"] == "unknown_meter"]
    assert {r["topic"] for r in unknown} == {"pq/v1/A001/M99/reading"}

    # Importing the same file again stores the same points (they overwrite) and adds no dead letters.
    again = import_readings(settings, export, progress=False)
    assert again == result
    assert stored_readings(settings)[0] == len(good)
    letters = DeadLetters(settings.data_dir / "deadletter.db")
    try:
        assert letters.count() == sum(bad_reasons.values())
    finally:
        letters.close()

    # Register the unknown meter: its rows go through replay, the others stay.
    (tmp_path / "m99.csv").write_text(REGISTRY_HEADER + "A001,account,Test works,0.38,3,M99,220,,,gb,,\n")
    registry = Registry(settings.registry_url)
    try:
        registry.import_csv(tmp_path / "m99.csv")
    finally:
        registry.close()
    replayed = replay(settings)
    assert (replayed.replayed, replayed.stored) == (40, 40)
    assert replayed.still_rejected == sum(bad_reasons.values()) - 40
    assert stored_readings(settings)[0] == len(good) + 40
    letters = DeadLetters(settings.data_dir / "deadletter.db")
    try:
        left = Counter(r["reason"] for r in letters.records())
    finally:
        letters.close()
    assert left == bad_reasons - Counter({"unknown_meter": 40})


def test_export_without_required_columns_is_refused(tmp_path: Path, settings: Settings) -> None:
    export = tmp_path / "wrong.csv"
    export.write_text("site,meter,time,ua\nA001,M1,1700000000000,230\n")
    with pytest.raises(PqmonError, match="missing column.*timestamp"):
        import_readings(settings, export, progress=False)


def test_an_export_of_many_chunks_and_batches_stores_every_row(tmp_path: Path, settings: Settings) -> None:
    start_ms = (int(time.time() * 1000) // 60_000 - 20_000) * 60_000
    export = tmp_path / "big.csv"
    with open(export, "w", encoding="utf-8") as fh:
        fh.write("site,meter,timestamp,ua\n")
        for i in range(20_000):
            fh.write(f"A001,M{i % METERS},{start_ms + (i // METERS) * 60_000},{ua_value(i)}\n")
    result = import_readings(settings, export, progress=False, chunk_rows=1000)
    assert (result.rows, result.stored, result.rejected_by_reason) == (20_000, 20_000, {})
    assert stored_readings(settings)[0] == 20_000
