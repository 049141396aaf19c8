"""The worker's chunked pass (analysis.worker: sites read together, a chunk read ahead while the
previous one is computed, points written per chunk) gives every site what it computes alone.

The property test's scenarios (1-3 accounts) again, with chunks of one and of two sites, so
that every chunk boundary, the read-ahead and the per-chunk writes are crossed: incremental
passes must still equal a full recomputation and ``rollup_site`` over all the data.
"""

from __future__ import annotations

import pytest
from hypothesis import given, note

from analysis import worker
from core.servers import LocalInflux
from tests.integration.test_worker_properties import run_scenario, scenarios, worker_settings
from tests.integration.worker_scenarios import Scenario, describe

pytestmark = pytest.mark.integration


@pytest.mark.timeout(600)
@pytest.mark.parametrize("chunk_sites", [1, 2])
@worker_settings(12)
@given(sc=scenarios())
def test_chunked_passes_equal_full_recomputation(
    influx: LocalInflux, chunk_sites: int, sc: Scenario, monkeypatch: pytest.MonkeyPatch
) -> None:
    note(describe(sc))
    with monkeypatch.context() as m:
        m.setattr(worker, "CHUNK_SITES", chunk_sites)
        run_scenario(influx, sc)
