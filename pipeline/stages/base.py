"""The Stage protocol and the local runner.

A stage is planned first (a typed plan that carries its cache key and output folder). It may be
done already; otherwise it claims its output (a lock, a staging folder), runs its units - the
shards, arms x seeds or single trainings that can run apart - and finishes their outputs into
its result. `run_stage` is the one place that sequence is written; `flows/` runs the same units
as Prefect tasks by passing its own `map_units`.

Units carry what they need (a shard and its folder, a run spec and its datasets), so a process
pool or a Dask worker receives one unit, never the whole plan.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Any, ContextManager, Generic, TypeVar

from pipeline import store
from pipeline.progress import stage_progress

PlanT = TypeVar("PlanT")
WorkT = TypeVar("WorkT")
UnitT = TypeVar("UnitT")
OutT = TypeVar("OutT")
ResultT = TypeVar("ResultT")


@dataclass(frozen=True)
class Progress:
    """What the stage's progress bar counts: `total` `unit`s, `done` of them finished before."""

    label: str
    total: int
    unit: str = "unit"
    done: int = 0


class Stage(ABC, Generic[PlanT, WorkT, UnitT, OutT, ResultT]):
    """One pipeline stage. Subclasses implement the five steps; the hooks below have defaults.

    - `done(plan)`: the finished result for this plan (cached=True), or None.
    - `claim(plan)`: context that locks the output and yields the work (plan plus staging folder,
      records found on disk ...), or None when another run finished it meanwhile.
    - `units(work)`: what can run apart; `run_unit(unit)` runs one (retried on transient I/O).
    - `finish(work, outputs)`: writes the result from the units' outputs (in unit order) and
      returns it, or None when it is published as the claim closes (`done` then reads it back).
    """

    name: str = "stage"
    gpu: bool = False  # holds a slot of the "gpu" concurrency limit under Prefect
    retries: int = 2  # extra attempts of a unit after a transient OSError

    @abstractmethod
    def done(self, plan: PlanT) -> ResultT | None: ...

    @abstractmethod
    def claim(self, plan: PlanT) -> ContextManager[WorkT | None]: ...

    @abstractmethod
    def units(self, work: WorkT) -> Sequence[UnitT]: ...

    @abstractmethod
    def run_unit(self, unit: UnitT) -> OutT: ...

    @abstractmethod
    def finish(self, work: WorkT, outputs: list[OutT]) -> ResultT | None: ...

    # ------------------------------------------------------------------------------ hooks
    def workers(self, work: WorkT) -> int:
        """Units run at once (threads here; Prefect's task runner in flows/)."""
        return 1

    def progress(self, work: WorkT, units: Sequence[UnitT]) -> Progress | None:
        return None

    def weight(self, unit: UnitT) -> int:
        """How far one finished unit moves the bar (0 when the unit reports its own items)."""
        return 1

    def status(self, unit: UnitT, output: OutT) -> str | None:
        """One line about a finished unit for the progress log (None: nothing to say)."""
        return None

    def unit_name(self, unit: UnitT) -> str:
        return self.name

    def watch(self, work: WorkT, advance: Callable[[int], None]) -> ContextManager[Any]:
        """Context in which units report finer progress than one step per unit."""
        return contextlib.nullcontext()

    def environment(self, work: WorkT) -> ContextManager[Any]:
        """Context around running the units (environment variables their processes inherit)."""
        return contextlib.nullcontext()

    def recover(self, unit: UnitT, error: Exception) -> OutT:
        """The output of a unit that failed after its retries; the default fails the stage."""
        raise error


# A way to run a stage's units: (stage, units, on_done(unit, output)) -> outputs in unit order.
UnitMap = Callable[[Stage, Sequence[Any], int, Callable[[Any, Any], None]], list[Any]]


def run_stage(stage: Stage[PlanT, WorkT, UnitT, OutT, ResultT], plan: PlanT, *, progress: bool = True,
              map_units: UnitMap | None = None) -> ResultT:
    """done? -> claim -> units -> finish, the same for every stage and every runner."""
    if (hit := stage.done(plan)) is not None:
        return hit
    result, ran = None, False
    with stage.claim(plan) as work:
        if work is not None:
            units = list(stage.units(work))
            shown = stage.progress(work, units)
            bar_spec = shown or Progress(stage.name, len(units))
            with stage_progress(bar_spec.label, bar_spec.total, done=bar_spec.done, unit=bar_spec.unit,
                                enabled=progress and shown is not None) as bar, \
                    stage.watch(work, bar.advance), stage.environment(work):

                def on_done(unit: UnitT, output: OutT) -> None:
                    bar.advance(stage.weight(unit), stage.status(unit, output))

                outputs = (map_units or map_local)(stage, units, stage.workers(work), on_done)
            result, ran = stage.finish(work, outputs), True
    if result is None:  # published as the claim closed, or by another run while we waited
        result = stage.done(plan)
        if result is None:
            raise RuntimeError(f"{stage.name}: finished, but its output cannot be read back")
        if ran and dataclasses.is_dataclass(result) and hasattr(result, "cached"):
            result = dataclasses.replace(result, cached=False)
    return result


def map_local(stage: Stage, units: Sequence[Any], workers: int,
              on_done: Callable[[Any, Any], None]) -> list[Any]:
    """Run units inline (workers <= 1) or on a thread pool; outputs in unit order."""
    outputs: list[Any] = [None] * len(units)
    if workers <= 1 or len(units) <= 1:
        for i, unit in enumerate(units):
            outputs[i] = _attempt(stage, unit)
            on_done(unit, outputs[i])
        return outputs
    with ThreadPoolExecutor(workers) as pool:
        futures = {pool.submit(_attempt, stage, unit): i for i, unit in enumerate(units)}
        try:
            for f in as_completed(futures):
                i = futures[f]
                outputs[i] = f.result()
                on_done(units[i], outputs[i])
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    return outputs


def _attempt(stage: Stage, unit: Any, delay_s: float = 1.0) -> Any:
    """run_unit, retried on transient I/O errors (what the flows' task retries do); a full disk,
    a read-only file system or a refused permission fails at once. Then `recover` decides."""
    for attempt in range(stage.retries + 1):
        try:
            return stage.run_unit(unit)
        except OSError as e:
            if attempt < stage.retries and store.is_transient(e):
                time.sleep(delay_s * (attempt + 1))
                continue
            return stage.recover(unit, e)
        except Exception as e:  # noqa: BLE001 - the stage decides (a failed arm is recorded)
            return stage.recover(unit, e)
    raise AssertionError("unreachable")


@contextlib.contextmanager
def claimed(value: WorkT) -> Iterator[WorkT]:
    """A claim that needs no lock (the unit locks for itself)."""
    yield value
