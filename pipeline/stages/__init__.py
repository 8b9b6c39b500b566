"""One way to run a stage: the Stage protocol, the local runner and the five stages.

`run_stage(STAGE, STAGE.plan(cfg, ...))` runs one stage here (threads, retries on transient I/O
errors, one progress bar); `pipeline.experiment` chains them; `flows/` runs the same stages as
Prefect flows whose tasks are the stages' units. Nothing here imports Prefect.
"""

from pipeline.stages.base import Progress, Stage, UnitMap, map_local, run_stage

__all__ = ["Progress", "Stage", "UnitMap", "map_local", "run_stage", "INGEST", "GAN", "SYNTH", "COMPARE",
           "REPORT"]


# Stage name -> its module: stages load their packages (torch, ultralytics) only when asked for.
_MODULES = {"INGEST": "ingest", "GAN": "gan", "SYNTH": "synth", "COMPARE": "compare", "REPORT": "report"}


def __getattr__(name: str):
    if name not in _MODULES:
        raise AttributeError(name)
    import importlib

    return getattr(importlib.import_module(f"pipeline.stages.{_MODULES[name]}"), name)
