"""Prefect flow for the CycleGAN stage: one task that holds a slot of the "gpu" concurrency limit.

The stage is `pipeline.stages.GAN`; `flows.stage` runs its one unit as a task retried only on
transient errors (a retry resumes from checkpoints/last.pt: the model folder is keyed by the
config and the dataset). The artifact is the model card.
"""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from flows.stage import StageFlow
from pipeline.config import RunConfig
from pipeline.data.version import DatasetVersion
from pipeline.gan.training_run import GanResult
from pipeline.gan.training_loop import StepCallback
from pipeline.stages import GAN


def publish(cfg: RunConfig, result: GanResult) -> None:
    card = result.model_dir / "model_card.md"
    if card.is_file():
        create_markdown_artifact(key="cyclegan-model-card", markdown=card.read_text(encoding="utf-8"),
                                 description=f"CycleGAN {result.model_dir.name}")
    get_run_logger().info("CycleGAN %s%s", result.model_dir, " (cached)" if result.cached else "")


GAN_FLOW = StageFlow(GAN, publish)


@flow(name="train-gan", validate_parameters=False)
def train_gan_flow(cfg: RunConfig, dataset: DatasetVersion, callbacks: list[StepCallback] | None = None,
                   progress: bool = True) -> GanResult:
    """Train (or reuse) the CycleGAN for `dataset`; returns GanResult(model_dir, cached, metrics)."""
    return GAN_FLOW.run(GAN.plan(cfg, dataset, progress=progress, callbacks=callbacks or ()), progress=progress)
