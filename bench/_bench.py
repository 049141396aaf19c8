"""What both benchmark scripts share: a description of the machine and py-spy summaries."""

from __future__ import annotations

import os
import platform
import subprocess
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def first_line(argv: list[str]) -> str:
    """The first line a command prints (stdout, else stderr); empty if it cannot run."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
    except OSError:
        return ""
    lines = (done.stdout or done.stderr).strip().splitlines()
    return lines[0] if lines else ""


def cpu_model() -> str:
    try:
        for raw in Path("/proc/cpuinfo").read_text().splitlines():
            if raw.startswith("model name"):
                return raw.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def machine_basics() -> str:
    """pqmon's commit (marked when the tree has uncommitted changes), cores, CPU, Python, InfluxDB."""
    head = first_line(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"]) or "?"
    dirty = first_line(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"])
    return (
        f"pqmon {head}{' +uncommitted changes' if dirty else ''} | nproc={os.cpu_count()} "
        f"cpu={cpu_model()} python={platform.python_version()} | {first_line(['influxd', 'version'])}"
    )


def _frame(text: str) -> str:
    """'func (path/file.py:123)' -> 'func (path/file.py)': aggregate per function."""
    name, sep, where = text.rpartition(" (")
    return f"{name} ({where.rsplit(':', 1)[0]})" if sep else text


def _thread(text: str) -> str:
    """'thread (4242): Thread-7 (process_request_thread)' -> 'process_request_thread'."""
    name = text.split("): ", 1)[1] if "): " in text else "(unnamed)"
    if name.startswith("Thread-") and "(" in name:
        name = name.split("(", 1)[1].rstrip(")")
    return name


def summarise_profile(raw: Path, top: int = 20, skip_threads: tuple[str, ...] = ()) -> str:
    """Self and inclusive share of samples per function from py-spy's collapsed stacks.

    Start-up imports are left out, and so are ``skip_threads`` when py-spy recorded threads
    (``--threads``): then a per-thread line comes first.
    """
    stacks: Counter[str] = Counter()
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if stack and n.isdigit():
            stacks[stack] += int(n)
    selfc: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    per_thread: dict[str, Counter[str]] = {}
    total = skipped = 0
    for stack, n in stacks.items():
        frames = stack.split(";")
        thread = _thread(frames[0]) if frames[0].startswith("thread (") else None
        if any("_find_and_load" in f for f in frames) or thread in skip_threads:
            skipped += n
            continue
        total += n
        funcs = [_frame(f) for f in (frames[1:] if thread else frames)]
        if thread:
            threads[thread] += n
        if funcs:
            selfc[funcs[-1]] += n
            if thread:
                per_thread.setdefault(thread, Counter())[funcs[-1]] += n
        for f in set(funcs):
            incl[f] += n
    if not total:
        return "  (no samples)"
    left_out = "start-up imports" + (f" and {', '.join(skip_threads)}" if skip_threads else "")
    lines = [f"  {total} samples ({skipped} of {left_out} left out)" + ("; by thread:" if threads else ":")]
    for t, n in threads.most_common(8):
        hot = ", ".join(
            f"{f.split(' (')[0]} {c / total:.1%}" for f, c in per_thread.get(t, Counter()).most_common(4)
        )
        lines.append(f"    {n / total:6.1%}  {t}: {hot}")
    lines.append("  self time (top):")
    lines += [f"    {n / total:6.1%}  {f}" for f, n in selfc.most_common(top)]
    lines.append("  inclusive time (top):")
    lines += [
        f"    {n / total:6.1%}  {f}"
        for f, n in incl.most_common(top + 10)
        if not f.startswith(("Thread.", "Thread._"))
    ]
    return "\n".join(lines)
