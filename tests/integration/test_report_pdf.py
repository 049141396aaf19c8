"""``pqmon report --format pdf``: the PDF carries exactly the figures of ``pqmon report``, in
Chinese and in English, as real text in an embedded font (read back with poppler's tools)."""

from __future__ import annotations

import json
import re
import subprocess
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from core.calendar import MINUTE_MS, day_start_ms
from core.lineproto import line
from core.store import InfluxStore
from tests.conftest import run_pqmon

pytestmark = pytest.mark.integration

TZ = "Asia/Shanghai"
REGISTRY = """site_id,site_kind,name,voltage_class_kv,phases,meter_id,nominal_v,upper_pct,lower_pct,profile,feeder_id,manager
F01,feeder,城东线,10,3,F01-M1,57.735,,,gb,,
A002,account,面包房,0.38,3,A002-M1,220,,,gb,F01,
"""
# Labels as the PDF prints them, in each language (the test's own copy, not the module's).
LABELS = {
    "en": {
        "vqr": "Voltage qualification rate",
        "rs1": "Supply reliability RS-1",
        "rs1x": "RS-1 without short interruptions",
        "coverage": "Reading coverage",
        "max": "Maximum (V)",
        "min": "Minimum (V)",
        "max_at": "Time of maximum",
        "min_at": "Time of minimum",
        "mean": "Mean (V)",
        "operating": "Operating time (min)",
        "over": "Time above upper limit (min)",
        "under": "Time below lower limit (min)",
        "title": "Monthly supply-quality report",
    },
    "zh-CN": {
        "vqr": "电压合格率",
        "rs1": "供电可靠率 RS-1",
        "rs1x": "不计短时停电的 RS-1",
        "coverage": "读数覆盖率",
        "max": "最大值 (V)",
        "min": "最小值 (V)",
        "max_at": "最大值时间",
        "min_at": "最小值时间",
        "mean": "平均值 (V)",
        "operating": "运行时间 (分钟)",
        "over": "超上限时间 (分钟)",
        "under": "超下限时间 (分钟)",
        "title": "供电质量月度报告",
    },
}


def last_month(today: date) -> tuple[date, date]:
    last = today.replace(day=1) - timedelta(days=1)
    return last.replace(day=1), last


def write_days(store: InfluxStore, first: date, days: int) -> dict[str, Any]:
    """Three days of A002 and its feeder; returns the truth the statistics must find."""
    lines = []
    truth: dict[str, Any] = {}
    for d in range(days):
        start = day_start_ms(first + timedelta(days=d), TZ)
        for m in range(1440):
            ts = start + m * MINUTE_MS
            if d == 0 and 540 <= m < 630:
                continue  # out of supply: the meter sends nothing
            ua = ub = uc = 221.0 + (m % 7) * 0.5
            if d == 1 and m == 600:
                ua = 236.5  # above the 235.4 V limit of 0.38 kV (+7 %)
                truth["max"] = (ua, ts)
            if d == 2 and 100 <= m < 110:
                ub = 190.25  # below the 198 V limit (-10 %) for ten minutes
                truth.setdefault("min", (ub, ts))
            lines.append(
                line(
                    "reading",
                    {"site": "A002", "meter": "A002-M1", "side": "customer"},
                    {"ua": ua, "ub": ub, "uc": uc, "interval_s": 60.0},
                    ts,
                )
            )
            lines.append(
                line(
                    "reading",
                    {"site": "F01", "meter": "F01-M1", "side": "supply"},
                    {"ua": 57.9, "ub": 57.9, "uc": 57.9, "interval_s": 60.0},
                    ts,
                )
            )
    store.write(lines)
    start = day_start_ms(first, TZ)
    store.write(  # out from 09:00 to 10:30 on the first day, and a dip on the second
        [
            line("event", {"site": "A002", "meter": "A002-M1", "type": t}, {"event_id": f"e-{t}"}, ts)
            for t, ts in (("power_off", start + 540 * MINUTE_MS), ("power_on", start + 630 * MINUTE_MS))
        ]
        + [
            line(
                "event",
                {"site": "A002", "meter": "A002-M1", "type": "dip"},
                {"event_id": "dip-1", "duration_ms": 120.0, "residual_pct": 55.0},
                start + 86_400_000 + 3_600_000,
            )
        ]
    )
    return truth


def pdf_text(path: Path) -> str:
    done = subprocess.run(
        ["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True, check=True
    )
    return done.stdout


def row(text: str, label: str) -> str:
    """The line of a table row, found by its label at the start of the line."""
    found = [ln for ln in text.splitlines() if ln.strip().startswith(label)]
    assert found, f"no row {label!r} in:\n{text}"
    return found[0]


def pct(v: float | None, d: int = 3) -> str:
    return "—" if v is None else f"{v:.{d}f} %"


def volts(v: float) -> str:
    return f"{v:,.2f}"


def local_minute(iso: str) -> str:
    return datetime.fromisoformat(iso).strftime("%Y-%m-%d %H:%M")


@pytest.fixture
def month_report(
    pqmon_env: dict[str, str], tmp_path: Path
) -> tuple[dict[str, Any], dict[str, Any], tuple[str, ...]]:
    env = {**pqmon_env, "PQMON_TZ": TZ, "PQMON_UTILITY_NAME": "国网示范供电公司"}
    (tmp_path / "reg.csv").write_text(REGISTRY, encoding="utf-8")
    assert run_pqmon(env, "registry", "import", str(tmp_path / "reg.csv")).returncode == 0
    store = InfluxStore(env["PQMON_INFLUX_URL"], env["PQMON_INFLUX_DB"])
    store.ensure_database()
    first, last = last_month(datetime.now(ZoneInfo(TZ)).date())
    truth = write_days(store, first + timedelta(days=3), 3)
    store.close()
    done = run_pqmon(env, "worker", "--once")
    assert done.returncode == 0, done.stderr
    period = ("A002", "--from", first.isoformat(), "--to", last.isoformat())
    done = run_pqmon(env, "report", *period)
    assert done.returncode == 0, done.stderr
    return env, {"report": json.loads(done.stdout), "truth": truth}, period


@pytest.mark.parametrize("lang", ["zh-CN", "en"])
def test_pdf_has_the_figures_of_pqmon_report(month_report, tmp_path: Path, lang: str) -> None:
    env, data, period = month_report
    report, truth = data["report"], data["truth"]
    out = tmp_path / f"a002.{lang}.pdf"
    done = run_pqmon(env, "report", *period, "--format", "pdf", "--lang", lang, "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert out.read_bytes().startswith(b"%PDF-")

    # The statistics themselves: the minute we raised and the minutes we lowered.
    a, b = report["phases"]["a"], report["phases"]["b"]
    assert a["max_v"] == pytest.approx(truth["max"][0])
    assert datetime.fromisoformat(a["max_at"]).timestamp() * 1000 == truth["max"][1]
    assert b["min_v"] == pytest.approx(truth["min"][0])
    assert datetime.fromisoformat(b["min_at"]).timestamp() * 1000 == truth["min"][1]
    assert a["over_min"] == 1 and b["under_min"] == 10
    assert report["outages"]["count"] == 1 and len(report["dips"]) == 1

    text = pdf_text(out)
    words = LABELS[lang]
    assert words["title"] in text and "面包房" in text and "国网示范供电公司" in text
    monitored = report["period"]
    assert f"{monitored['from']} — {monitored['to']}" in text  # the days the figures cover
    assert pct(report["vqr_pct"]) in row(text, words["vqr"])
    supply = report["supply_side"]
    assert pct(supply["vqr_pct"]) in row(text, words["vqr"])
    assert pct(report["rs1_pct"], 4) in row(text, words["rs1"])
    assert pct(report["rs1_excl_short_pct"], 4) in row(text, words["rs1x"])
    assert pct(report["coverage_pct"], 2) in row(text, words["coverage"])
    phases = [report["phases"][p] for p in ("a", "b", "c")]
    for key, label, show in (
        ("max_v", "max", volts),
        ("min_v", "min", volts),
        ("mean_v", "mean", volts),
        ("max_at", "max_at", local_minute),
        ("min_at", "min_at", local_minute),
        ("monitored_min", "operating", lambda v: f"{v:,}"),
        ("over_min", "over", lambda v: f"{v:,}"),
        ("under_min", "under", lambda v: f"{v:,}"),
    ):
        cells = re.split(r"\s{2,}", row(text, words[label]).strip())[1:]
        assert cells == [show(p[key]) for p in phases], (label, cells)
    outage = report["outage_list"][0]
    assert local_minute(outage["start"]) in text and local_minute(outage["end"]) in text


def test_pdf_embeds_a_font_subset(month_report, tmp_path: Path) -> None:
    env, _, period = month_report
    out = tmp_path / "a002.pdf"
    assert run_pqmon(env, "report", *period, "--format", "pdf", "-o", str(out)).returncode == 0
    fonts = subprocess.run(["pdffonts", str(out)], capture_output=True, text=True, check=True).stdout
    cjk = [ln for ln in fonts.splitlines() if "WenQuanYi" in ln]
    assert cjk, fonts
    # name is SUBSET+Name, and the "emb" and "sub" columns say yes
    assert all(re.match(r"[A-Z]{6}\+", ln) and ln.split()[-5:-3] == ["yes", "yes"] for ln in cjk), fonts


def test_pdf_refuses_the_fleet_and_an_unknown_language(month_report) -> None:
    env, _, period = month_report
    done = run_pqmon(env, "report", "--fleet", *period[1:], "--format", "pdf", "-o", "/tmp/x.pdf")
    assert done.returncode != 0 and "one account" in done.stderr
    done = run_pqmon(env, "report", *period, "--format", "pdf", "--lang", "fr", "-o", "/tmp/x.pdf")
    assert done.returncode != 0 and "fr" in done.stderr
