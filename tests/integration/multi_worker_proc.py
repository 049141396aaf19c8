"""One analysis worker process for tests/integration/test_multi_worker.py and bench/multi_worker_bench.py.

``python -m tests.integration.multi_worker_proc --now-ms MS``: ``run_once`` in a loop, configured
from the environment as ``pqmon worker`` is, but with the analysis clock fixed at ``--now-ms``
(the scenarios' NOW_MS), so that every pass and the one-worker ``--full`` reference compute with
the same "now". Its compute intervals (``computed site=... start_ms=... end_ms=...``) are logged
at debug level to stderr. SIGTERM ends it after the pass it is in.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading

from analysis.worker import run_once, this_worker
from core.logs import configure
from core.registry import Registry
from core.settings import load_settings
from core.store import InfluxStore

log = logging.getLogger("pqmon.test_worker")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--now-ms", type=int, required=True)
    parser.add_argument("--interval", type=float, default=0.1, help="seconds between passes")
    args = parser.parse_args()
    configure(verbose=False)
    logging.getLogger("analysis.worker").setLevel(logging.DEBUG)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    settings = load_settings()
    store, registry = InfluxStore.from_settings(settings), Registry(settings.registry_url)
    log.info("worker %s started", this_worker())
    try:
        while not stop.is_set():
            try:
                run_once(settings, store, registry, now_ms=args.now_ms)
            except Exception:  # as run_forever: one bad pass must not end the worker
                log.exception("analysis pass failed")
            stop.wait(args.interval)
    finally:
        store.close()
        registry.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
