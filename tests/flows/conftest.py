"""One tiny end-to-end pipeline run per session, shared by the flow tests."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

TINY = str(Path(__file__).resolve().parents[2] / "configs" / "tiny.yaml")


@pytest.fixture(scope="session")
def pipeline_run(tiny_root: Path, prefect_harness):
    """(result dict of metalize_pipeline, seconds) for the tiny profile under the tiny root."""
    from flows.end_to_end import metalize_pipeline

    t0 = time.perf_counter()
    result = metalize_pipeline(config=TINY, overrides=[f"runtime.output_root={tiny_root}"])
    return result, time.perf_counter() - t0
