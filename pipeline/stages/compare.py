"""The detector comparison as a Stage: one unit per arm x seed (each in its own process).

A run that gets more threads than `threads_per_run` (pipeline.detect.ahead.run_threads: the one
run on synthetic images after the baselines trained beside the GAN) takes every core: it waits
for the comparison's other runs, then trains with OpenMP's default waiting."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.config import RunConfig
from pipeline.data.version import DatasetVersion
from pipeline.detect.ahead import run_threads
from pipeline.detect.arms import ArmPlan
from pipeline.detect.compare import (CompareResult, cached_result, finish, own_cores_env, plan_runs, run_status,
                                     runs_label, shared_core_env, threads_per_run)
from pipeline.detect.runs import (RunSpec, adopt_finished_run, await_sibling, cached_record, failed_record,
                                  run_isolated)
from pipeline.stages.base import Progress, Stage
from pipeline.store import dir_lock

Record = dict[str, Any]


@dataclass(frozen=True)
class ComparePlan:
    cfg: RunConfig
    dataset: DatasetVersion
    augmented: DatasetVersion | None
    out_dir: Path
    arms: list[ArmPlan]
    images_per_epoch: int
    specs: list[RunSpec]
    started: float = field(default_factory=time.perf_counter)


class Countdown:
    """The runs that train before the ones that take every core: each signals once, when it
    returns or finally fails."""

    def __init__(self, n: int):
        self._n, self._cond = n, threading.Condition()

    def signal(self) -> None:
        with self._cond:
            self._n -= 1
            self._cond.notify_all()

    def wait(self) -> None:
        with self._cond:
            self._cond.wait_for(lambda: self._n <= 0)


@dataclass(frozen=True)
class ArmRun:
    """One arm trained with one seed, in a spawned process with `threads` torch threads. `first`
    counts down the runs that train first: an `alone` run waits for it, the others signal it."""

    cfg: RunConfig
    dataset: DatasetVersion
    augmented: DatasetVersion | None
    spec: RunSpec
    threads: int
    first: Countdown | None = None

    @property
    def alone(self) -> bool:
        """Takes every core: more threads than a run's share when `parallel_arms` train side by side."""
        return self.threads > threads_per_run(self.cfg)


@dataclass
class CompareWork:
    plan: ComparePlan
    records: dict[tuple[str, int], Record]  # runs finished before (here, or adopted from a sibling)


class CompareStage(Stage[ComparePlan, CompareWork, ArmRun, Record, CompareResult]):
    name = "compare"

    def plan(self, cfg: RunConfig, dataset: DatasetVersion, augmented: DatasetVersion | None,
             out_dir: Path) -> ComparePlan:
        arms, n, specs = plan_runs(cfg, dataset, augmented, Path(out_dir))
        return ComparePlan(cfg, dataset, augmented, Path(out_dir), arms, n, specs)

    def done(self, plan: ComparePlan) -> CompareResult | None:
        return cached_result(plan.cfg, plan.dataset, plan.augmented, plan.out_dir, plan.specs)

    @contextlib.contextmanager
    def claim(self, plan: ComparePlan) -> Iterator[CompareWork | None]:
        with dir_lock(plan.out_dir):
            if self.done(plan) is not None:
                yield None
                return
            records = {(s.arm, s.seed): rec for s in plan.specs
                       if (rec := cached_record(s) or adopt_finished_run(s)) is not None}
            yield CompareWork(plan, records)

    def units(self, work: CompareWork) -> list[ArmRun]:
        """The runs still to train, those that take every core last (same order on every call)."""
        p, shared = work.plan, threads_per_run(work.plan.cfg)
        todo = [(s, run_threads(p.cfg, p.arms, s)) for s in p.specs if (s.arm, s.seed) not in work.records]
        todo.sort(key=lambda st: st[1] > shared)  # stable
        n_first = sum(t <= shared for _, t in todo)
        first = Countdown(n_first) if n_first and n_first < len(todo) else None
        return [ArmRun(p.cfg, p.dataset, p.augmented, s, t, first=first) for s, t in todo]

    def run_unit(self, unit: ArmRun) -> Record:
        if unit.alone and unit.first is not None:
            unit.first.wait()
        rec = self._train(unit)
        self._signal(unit)  # not on a transient OSError: the attempt is retried
        return rec

    @staticmethod
    def _train(unit: ArmRun) -> Record:
        if (rec := await_sibling(unit.spec)) is not None:  # trained ahead of the GAN, or by a sibling run
            return rec
        with own_cores_env() if unit.alone else contextlib.nullcontext():
            return run_isolated(unit.cfg, unit.dataset, unit.augmented, unit.spec, threads=unit.threads,
                                raise_oserror=True)

    @staticmethod
    def _signal(unit: ArmRun) -> None:
        if not unit.alone and unit.first is not None:
            unit.first.signal()

    def recover(self, unit: ArmRun, error: Exception) -> Record:
        self._signal(unit)
        return failed_record(unit.spec, error)  # the arm stays in the table, marked failed

    def finish(self, work: CompareWork, outputs: list[Record]) -> CompareResult:
        p = work.plan
        records = dict(work.records)
        for unit, rec in zip(self.units(work), outputs):
            records[(unit.spec.arm, unit.spec.seed)] = rec
        return finish(p.cfg, p.dataset, p.augmented, p.out_dir, p.arms, p.images_per_epoch, records,
                      p.started)

    def workers(self, work: CompareWork) -> int:
        return max(1, work.plan.cfg.detect.parallel_arms)

    def progress(self, work: CompareWork, units: Sequence[ArmRun]) -> Progress:
        p = work.plan
        return Progress(runs_label(p.cfg, p.images_per_epoch), len(p.specs), unit="run",
                        done=len(work.records))

    def status(self, unit: ArmRun, output: Record) -> str:
        return run_status(unit.spec, output)

    def environment(self, work: CompareWork):
        return shared_core_env(work.plan.cfg.detect.parallel_arms)

    def unit_name(self, unit: ArmRun) -> str:
        return f"{unit.spec.arm} seed {unit.spec.seed}"


COMPARE = CompareStage()
