"""The whole experiment: ingest -> CycleGAN -> synthesize -> compare -> report, stage by stage.

`experiment(cfg)` chains the stages of `pipeline.stages` and resolves their lineage in one place:
each stage's output folder is keyed by its inputs' manifests, its config section and the code
version, so a rerun of an unchanged experiment only checks hashes, a changed value reruns just
the stages downstream of it, and a killed run continues from the last finished stage (and, inside
CycleGAN training and the comparison, from their checkpoints). The caller chooses how a stage
runs: here (`run_stage`, the CLI) or as a Prefect flow (`flows/end_to_end.py`).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from pipeline.config import RunConfig
from pipeline.detect.ahead import BaselinesAhead, gan_threads
from pipeline.run import record_run, run_dir_for
from pipeline.stages import COMPARE, GAN, INGEST, REPORT, SYNTH, Stage, run_stage
from pipeline.store import dir_lock
from pipeline.tables import Table, to_markdown

# How one stage runs: (stage, plan) -> its result.
StageRunner = Callable[[Stage, Any], Any]


class StageRun(BaseModel):
    """Where a stage wrote, whether it was already there, and how long it took (wall seconds)."""

    model_config = ConfigDict(frozen=True)

    dir: str
    cached: bool
    seconds: float


class ExperimentResult(BaseModel):
    report: Path
    run_dir: Path
    stages: dict[str, StageRun] = {}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (paths as strings): what the Prefect flow returns and the CLI prints."""
        return self.model_dump(mode="json")


def local_runner(progress: bool = True) -> StageRunner:
    """Run each stage in this process (threads for its units; see pipeline.stages)."""
    return lambda stage, plan: run_stage(stage, plan, progress=progress)


def experiment(cfg: RunConfig, *, run: StageRunner | None = None, progress: bool = True,
               flow_run_id: str | None = None) -> ExperimentResult:
    """Run (or find cached) every stage of cfg's experiment; appends the run to reports/runs.jsonl."""
    from pipeline.preflight import preflight

    run = run or local_runner(progress)
    stages: dict[str, StageRun] = {}

    def step(stage: Stage, plan: Callable[[], Any], folder: Callable[[Any], Path]) -> Any:
        """Announce the stage on stderr (a long run shows where it is), plan and run it, and
        record its folder, cached flag and wall seconds."""
        print(f"== {stage.name}", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        result = run(stage, plan())
        stages[stage.name] = StageRun(dir=str(folder(result)), cached=bool(result.cached),
                                      seconds=round(time.perf_counter() - t0, 2))
        return result

    dataset = step(INGEST, lambda: INGEST.plan(cfg, progress=progress), lambda r: r.version.root).version
    preflight(cfg, dataset)  # too little data stops here, before any training
    ahead = _baselines_ahead(cfg, dataset)
    try:
        with gan_threads(cfg, ahead) as gan_cfg:
            gan = step(GAN, lambda: GAN.plan(gan_cfg, dataset, progress=progress), lambda r: r.model_dir)
        augmented = step(SYNTH, lambda: SYNTH.plan(cfg, dataset, gan.model_dir), lambda r: r.version.root).version
    except BaseException:
        if ahead is not None:
            ahead.cancel()  # no comparison follows: do not keep the process alive for a run
        raise
    if ahead is not None:
        ahead.stop()  # the comparison trains the rest, and waits for the run in flight

    run_dir = run_dir_for(cfg, dataset.root, augmented.root)
    with dir_lock(run_dir):  # a second run of the same experiment waits, then finds it cached
        step(COMPARE, lambda: COMPARE.plan(cfg, dataset, augmented, run_dir / "compare"), lambda r: r.out_dir)
        report = step(REPORT, lambda: REPORT.plan(cfg, run_dir / "compare", run_dir, dataset=dataset,
                                                  gan_dir=gan.model_dir, augmented=augmented),
                      lambda r: run_dir)
    if ahead is not None:
        ahead.join()
    record_run(cfg, run_dir, report.html, dataset.root, augmented.root, gan.model_dir, flow_run_id)
    return ExperimentResult(report=Path(report.html), run_dir=run_dir, stages=stages)


def _baselines_ahead(cfg: RunConfig, dataset: Any) -> BaselinesAhead | None:
    """Start the baseline runs beside the GAN when it has to train (pipeline.detect.ahead)."""
    from pipeline.detect.ahead import plan_ahead

    if GAN.done(GAN.plan(cfg, dataset, progress=False)) is not None:
        return None
    ahead, _ = plan_ahead(cfg, dataset)
    if ahead is not None:
        print(f"== baselines ahead of the GAN: {', '.join(ahead.arms)} "
              f"({ahead.threads} thread{'s' * (ahead.threads > 1)} each, one at a time)", file=sys.stderr, flush=True)
        ahead.start()
    return ahead


def stage_table(result: dict[str, Any]) -> Table:
    """One row per stage (status, wall seconds, output folder) of `ExperimentResult.to_dict()`."""
    rows = [[name, "cached" if st["cached"] else "ran", f"{st['seconds']:.1f}", st["dir"]]
            for name, st in result["stages"].items()]
    return Table(["stage", "status", "seconds", "output"], rows, [False, False, True, False])


def summary_markdown(profile: str, result: ExperimentResult) -> str:
    """The flow's artifact: the report's path and the per-stage table."""
    html = result.report
    return (f"# Metalize run ({profile})\n\n**Report:** [{html}](file://{html.resolve()})\n\n"
            f"{to_markdown(stage_table(result.to_dict()))}\n")
