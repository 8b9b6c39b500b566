"""The "gpu" global concurrency limit: created once with one slot, and it serialises GPU tasks."""

from __future__ import annotations

import time


def test_gpu_limit_is_created_idempotently_and_serialises_two_tasks(prefect_harness):
    from prefect import flow, task
    from prefect.client.orchestration import get_client
    from prefect.concurrency.sync import concurrency

    from flows.common import GPU_LIMIT, ensure_gpu_limit

    assert ensure_gpu_limit() and ensure_gpu_limit()
    with get_client(sync_client=True) as client:
        assert client.read_global_concurrency_limit_by_name(GPU_LIMIT).limit == 1

    @task
    def hold_gpu(seconds: float) -> tuple[float, float]:
        with concurrency(GPU_LIMIT, occupy=1, strict=True):  # strict: fails if the limit is missing
            start = time.monotonic()
            time.sleep(seconds)
            return start, time.monotonic()

    @flow
    def two_trainings() -> list[tuple[float, float]]:
        runs = [hold_gpu.submit(1.0), hold_gpu.submit(1.0)]
        return [r.result() for r in runs]

    (s1, e1), (s2, e2) = sorted(two_trainings())
    assert e1 <= s2, "the second task held the GPU slot while the first still had it"
