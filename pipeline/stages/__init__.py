"""One way to run a stage: the Stage protocol, the local runner and the five stages.

`run_stage(STAGE, STAGE.plan(cfg, ...))` runs one stage here (threads, retries on transient I/O
errors, one progress bar); `pipeline.experiment` chains them; `flows/` runs the same stages as
Prefect flows whose tasks are the stages' units. Nothing here imports Prefect.
"""

from pipeline.stages.base import Progress, Stage, UnitMap, map_local, run_stage

__all__ = ["Progress", "Stage", "UnitMap", "map_local", "run_stage", "INGEST", "GAN", "SYNTH", "COMPARE",
           "REPORT"]


def __getattr__(name: str):
    # stages load their packages (torch, ultralytics) only when asked for
    if name == "INGEST":
        from pipeline.stages.ingest import INGEST as stage
    elif name == "GAN":
        from pipeline.stages.gan import GAN as stage
    elif name == "SYNTH":
        from pipeline.stages.synth import SYNTH as stage
    elif name == "COMPARE":
        from pipeline.stages.compare import COMPARE as stage
    elif name == "REPORT":
        from pipeline.stages.report import REPORT as stage
    else:
        raise AttributeError(name)
    return stage
