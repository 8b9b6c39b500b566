"""Baseline runs ahead of the GAN: the arms that train on no synthetic image (real, real+replica,
real+replica-aug, oracle) need only the ingested dataset, so they can train while the translator
trains instead of after it.

On CPU that time is nearly free: the GAN's batch-1 step barely uses a second core (demo GAN,
2-core Xeon: 4.50 steps/s on one thread, 5.09 on two), and a detector run uses one. So while the
GAN trains on the cores a run does not take, a thread here trains the baseline runs one after
another, each in its spawned process on `threads_per_run` threads (the threads the comparison
would give it: the same run either way), in a sibling folder `<reports>/<data>-baselines-<key>/`.
The comparison adopts them like any sibling's run (`adopt_finished_run`) and waits for the one
still training (`await_sibling`); `stop()` starts no more, so the comparison trains the rest.

After the GAN the comparison trains only the runs on synthetic images; when there are fewer of
them than `parallel_arms`, they share every core (`run_threads`, from the config alone).

Needs a fixed `detect.images_per_epoch` (otherwise the budget, part of every run's key, depends on
the size of the synthetic set) and room for the GAN beside a run (`threads_per_run` below the
cores); `detect.baselines_ahead: auto` also needs the detector on CPU.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Iterator
from typing import Any

from pipeline.config import RunConfig
from pipeline.data.version import DatasetVersion
from pipeline.detect.arms import ArmPlan
from pipeline.detect.compare import plan_runs, shared_core_env, threads_per_run
from pipeline.detect.runs import RunSpec, adopt_finished_run, cached_record, run_isolated, training
from pipeline.store import stage_key

log = logging.getLogger(__name__)


class BaselinesAhead:
    """Trains `specs` one at a time on a background thread until done or stopped."""

    def __init__(self, cfg: RunConfig, dataset: DatasetVersion, specs: list[RunSpec], threads: int):
        self.cfg, self.dataset, self.specs, self.threads = cfg, dataset, specs, threads
        self.records: dict[tuple[str, int], dict[str, Any]] = {}
        self._stopped = False
        self._cancel = threading.Event()
        self._mutex = threading.Lock()  # a run is either claimed (locked, marked) or never started
        self._thread = threading.Thread(target=self._work, name="baselines-ahead", daemon=True)

    @property
    def arms(self) -> list[str]:
        return list(dict.fromkeys(s.arm for s in self.specs))

    def start(self) -> BaselinesAhead:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Start no further run. Returns at once: the run in flight finishes in its process, and a
        comparison that needs it waits for it."""
        with self._mutex:
            self._stopped = True

    def cancel(self) -> None:
        """Stop, and kill the run in flight (the experiment failed: nobody will wait for it)."""
        self.stop()
        self._cancel.set()

    def join(self) -> None:
        self._thread.join()

    def _work(self) -> None:
        with shared_core_env(2):  # its processes share the cores with the GAN
            for spec in self.specs:
                with contextlib.ExitStack() as held:
                    with self._mutex:
                        if self._stopped:
                            return
                        if (rec := cached_record(spec) or adopt_finished_run(spec)) is not None:
                            self.records[(spec.arm, spec.seed)] = rec
                            continue
                        held.enter_context(training(spec))
                    rec = run_isolated(self.cfg, self.dataset, None, spec, threads=self.threads, cancel=self._cancel)
                    self.records[(spec.arm, spec.seed)] = rec
                    log.info("baseline ahead of the GAN: %s seed %d %s", spec.arm, spec.seed, rec["status"])


def why_not_ahead(cfg: RunConfig) -> str:
    """Why cfg never trains baseline runs beside the GAN, or '' when it does (whenever the GAN
    has to train)."""
    from pipeline.detect.yolo import resolve_device

    mode = cfg.detect.baselines_ahead
    if mode is False:
        return "detect.baselines_ahead is false"
    if cfg.detect.images_per_epoch is None:
        return "detect.images_per_epoch is not fixed (the runs' budget waits for the synthetic set)"
    if mode == "auto" and resolve_device(cfg.runtime.device).split(":")[0] != "cpu":
        return "the detector trains on a GPU (detect.baselines_ahead: true to share it)"
    total, threads = cfg.runtime.threads or os.cpu_count() or 1, threads_per_run(cfg)
    if threads >= total:
        return f"no core left for the GAN beside a run ({threads} of {total} threads)"
    return ""


def run_threads(cfg: RunConfig, arms: list[ArmPlan], spec: RunSpec) -> int:
    """The torch threads of one run, from the config alone: never from what is cached or still
    training, because a run's numbers depend on its thread count (CPU float reductions).

    `threads_per_run`, except for the runs on synthetic images when the baselines train ahead of
    the GAN: they are all the comparison trains after the GAN, so when there are fewer of them than
    `parallel_arms` they share every core (the demo's one real+synthetic run: 2 threads instead of
    one). The comparison trains such runs after every other run it has to train, with OpenMP's
    default waiting (pipeline.stages.compare)."""
    on_synthetic = [a.name for a in arms if a.uses_augmented and a.unavailable is None]
    if spec.arm not in on_synthetic or why_not_ahead(cfg):
        return threads_per_run(cfg)
    return threads_per_run(cfg, side_by_side=len(on_synthetic) * len(cfg.detect.seeds))


def plan_ahead(cfg: RunConfig, dataset: DatasetVersion) -> tuple[BaselinesAhead | None, str]:
    """The baseline runs that can train beside the GAN, or None and why not."""
    if why := why_not_ahead(cfg):
        return None, why
    threads = threads_per_run(cfg)
    key = stage_key("baselines", {"detect": cfg.detect.keyed()}, [dataset.manifest])
    out = cfg.runtime.reports_dir / f"{cfg.data.name}-baselines-{key[:12]}" / "compare"
    specs = plan_runs(cfg, dataset, None, out)[2]  # without an augmented set: the arms that need none
    if not specs:
        return None, "no arm trains without synthetic images"
    return BaselinesAhead(cfg, dataset, specs, threads), ""


@contextlib.contextmanager
def gan_threads(cfg: RunConfig, ahead: BaselinesAhead | None) -> Iterator[RunConfig]:
    """cfg with the GAN's share of the threads while `ahead` trains beside it (cfg itself when
    nothing does); torch's thread count is restored afterwards for the stages that follow."""
    if ahead is None:
        yield cfg
        return
    import torch

    total = cfg.runtime.threads or os.cpu_count() or 1
    before = torch.get_num_threads()
    runtime = cfg.runtime.model_copy(update={"threads": max(1, total - ahead.threads)})
    try:
        yield cfg.model_copy(update={"runtime": runtime})
    finally:
        torch.set_num_threads(before)
