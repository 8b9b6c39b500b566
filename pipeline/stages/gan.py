"""CycleGAN / CUT training as a Stage: one unit, the training (resumes from its checkpoints)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ContextManager

from pipeline.config import RunConfig
from pipeline.data.version import DatasetVersion
from pipeline.stages.base import Stage, claimed


@dataclass(frozen=True)
class GanPlan:
    cfg: RunConfig
    dataset: DatasetVersion
    model_dir: Path
    progress: bool = True
    callbacks: Sequence[Any] = field(default=(), compare=False)  # trainer StepCallbacks


class GanStage(Stage[GanPlan, GanPlan, GanPlan, Any, Any]):
    """The unit locks the model folder itself: under torchrun every rank runs it and rank 0
    decides for all (pipeline.gan.training_run.train_translator)."""

    name = "gan"
    gpu = True

    def plan(self, cfg: RunConfig, dataset: DatasetVersion, *, progress: bool = True,
             callbacks: Sequence[Any] = ()) -> GanPlan:
        from pipeline.gan.training_run import model_dir_for

        return GanPlan(cfg, dataset, model_dir_for(cfg, dataset), progress, tuple(callbacks))

    def done(self, plan: GanPlan) -> Any:
        from pipeline.gan.training_run import finished_model

        return finished_model(plan.model_dir)

    def claim(self, plan: GanPlan) -> ContextManager[GanPlan]:
        return claimed(plan)

    def units(self, work: GanPlan) -> list[GanPlan]:
        return [work]

    def run_unit(self, unit: GanPlan) -> Any:
        from pipeline.gan.training_run import train_translator

        return train_translator(unit.cfg, unit.dataset, progress=unit.progress,
                              callbacks=list(unit.callbacks) or None)

    def finish(self, work: GanPlan, outputs: list[Any]) -> Any:
        return outputs[0]

    def unit_name(self, unit: GanPlan) -> str:
        return f"train-{unit.cfg.gan.model}"


GAN = GanStage()
