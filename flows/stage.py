"""Run a pipeline Stage under Prefect: its units become tasks of the calling flow.

`run_stage_flow(stage, plan)` is `pipeline.stages.run_stage` with one difference: each unit (a
shard, an arm x seed, a training) is a Prefect task, submitted to a task runner of the stage's
`workers` threads (or the one `runner` gives: a Dask cluster), retried only on transient I/O
errors (`retry_on_oserror`), named after the unit, and, for GPU stages, holding a slot of the
global concurrency limit "gpu". Planning, the cache check, the lock, progress and finishing are
the stage's own, so a flow and `metalize` produce the same files.

The runner is used inside the calling flow rather than through a subflow of its own: a subflow's
parameters are stored by the Prefect API, which refuses more than 512 kB - a plan of a few
thousand images.

Caching stays the stages' (cache_policy NONE): a stage's output is a content-addressed folder
checked under a file lock shared by every process, Prefect or not. Prefect's task cache would be
a second record of the same fact that survives a deleted folder and misses runs made by the CLI.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NONE
from prefect.concurrency.sync import concurrency
from prefect.futures import as_completed
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from flows.common import GPU_LIMIT, ensure_gpu_limit, retry_on_oserror
from pipeline.stages import Stage, UnitMap, run_stage

# task runner for n units at once
RunnerFactory = Callable[[int], TaskRunner]


def threads(workers: int) -> TaskRunner:
    return ThreadPoolTaskRunner(max_workers=max(1, workers))


def dask(processes: bool) -> RunnerFactory:
    """A local Dask cluster (prefect-dask) for n units at once: n single-thread worker processes,
    or one worker of n threads (units that share a loaded model in one process)."""

    def factory(workers: int) -> TaskRunner:
        from prefect_dask import DaskTaskRunner

        n = max(1, workers)
        shape = {"n_workers": n, "threads_per_worker": 1} if processes else {"n_workers": 1, "threads_per_worker": n}
        return DaskTaskRunner(cluster_kwargs={**shape, "processes": processes, "dashboard_address": None})

    return factory


@task(name="stage-unit", retries=2, retry_delay_seconds=2, retry_condition_fn=retry_on_oserror,
      cache_policy=NONE)
def unit_task(stage: Stage, unit: Any) -> Any:
    if stage.gpu:
        # strict=False: when the limit could not be created (server unreachable) the unit still runs
        with concurrency(GPU_LIMIT, occupy=1, strict=False):
            return stage.run_unit(unit)
    return stage.run_unit(unit)


def task_units(runner: RunnerFactory = threads) -> UnitMap:
    """A `map_units` for run_stage that submits each unit as a Prefect task."""

    def map_units(stage: Stage, units: Sequence[Any], workers: int,
                  on_done: Callable[[Any, Any], None]) -> list[Any]:
        outputs: list[Any] = [None] * len(units)
        if not units:
            return outputs
        base = unit_task.with_options(name=f"{stage.name}-unit", retries=stage.retries)
        with runner(workers) as r:
            futures = {r.submit(base.with_options(task_run_name=stage.unit_name(u)),
                                {"stage": stage, "unit": u}): i for i, u in enumerate(units)}
            for f in as_completed(list(futures)):
                i = futures[f]
                try:
                    outputs[i] = f.result()
                except Exception as e:  # retries exhausted: the stage decides (a failed arm is kept)
                    outputs[i] = stage.recover(units[i], e)
                on_done(units[i], outputs[i])
        return outputs

    return map_units


def run_stage_flow(stage: Stage, plan: Any, *, runner: RunnerFactory = threads, progress: bool = True) -> Any:
    """Run `stage` for `plan` with Prefect tasks as its units (inside a flow)."""
    if stage.gpu:
        ensure_gpu_limit()
    return run_stage(stage, plan, progress=progress, map_units=task_units(runner))


@dataclass(frozen=True)
class StageFlow:
    """A stage as Prefect runs it: the task runner its units get (from the config) and the
    Markdown artifact its result publishes."""

    stage: Stage
    publish: Callable[[Any, Any], None]  # (cfg, result) -> None: creates the artifact
    runner: Callable[[Any], RunnerFactory] = lambda cfg: threads

    def run(self, plan: Any, *, progress: bool = True) -> Any:
        """Inside the calling flow: units as its tasks, then the artifact."""
        result = run_stage_flow(self.stage, plan, runner=self.runner(plan.cfg), progress=progress)
        self.publish(plan.cfg, result)
        return result

    def subflow(self, plan: Any, *, progress: bool = True) -> Any:
        """As a subflow named after the stage (the end-to-end flow's view). It takes no
        parameters: the plan may be larger than the API stores (see the module doc)."""

        @flow(name=self.stage.name, validate_parameters=False)
        def stage_subflow() -> Any:
            return self.run(plan, progress=progress)

        return stage_subflow()
