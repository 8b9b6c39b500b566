"""Prefect flow for the CycleGAN stage.

The work is `pipeline.gan.train_cyclegan`; this module wires it as one task that holds a slot of
the global concurrency limit "gpu" (created with one slot when missing, so two trainings never
share one GPU), is retried only on transient errors (OSError), and publishes the model card as a
Markdown artifact. A retry resumes from the last checkpoint because the model directory is keyed
by the config and the dataset, and the stage picks up checkpoints/last.pt. Progress goes to the
terminal (a rich bar) or, under a worker, to plain periodic lines.
"""

from __future__ import annotations

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NONE
from prefect.concurrency.sync import concurrency

from flows.common import GPU_LIMIT, ensure_gpu_limit, retry_on_oserror
from pipeline.config import RunConfig
from pipeline.data.version import DatasetVersion
from pipeline.gan.stage import GanResult, train_cyclegan
from pipeline.gan.trainer import StepCallback


@task(name="train-cyclegan", retries=2, retry_delay_seconds=2, retry_condition_fn=retry_on_oserror,
      cache_policy=NONE)
def train_cyclegan_task(cfg: RunConfig, dataset: DatasetVersion,
                        callbacks: list[StepCallback] | None = None) -> GanResult:
    # strict=False: when the limit could not be created (server unreachable) the stage still runs
    with concurrency(GPU_LIMIT, occupy=1, strict=False):
        return train_cyclegan(cfg, dataset, progress=True, callbacks=callbacks)


@flow(name="train-gan", validate_parameters=False)
def train_gan_flow(cfg: RunConfig, dataset: DatasetVersion,
                   callbacks: list[StepCallback] | None = None) -> GanResult:
    """Train (or reuse) the CycleGAN for `dataset`; returns GanResult(model_dir, cached, metrics)."""
    log = get_run_logger()
    ensure_gpu_limit()
    result = train_cyclegan_task(cfg, dataset, callbacks)
    log.info("CycleGAN %s%s", result.model_dir, " (cached)" if result.cached else "")
    card = result.model_dir / "model_card.md"
    if card.is_file():
        create_markdown_artifact(key="cyclegan-model-card", markdown=card.read_text(encoding="utf-8"),
                                 description=f"CycleGAN {result.model_dir.name}")
    return result
