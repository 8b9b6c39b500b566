"""Prefect flow for the CycleGAN stage.

The work is `pipeline.gan.train_cyclegan`; this module wires it as one task that holds a slot of
the global concurrency limit "gpu" (two trainings never share one GPU; where no such limit exists,
e.g. in ephemeral mode, it runs unthrottled), is retried only on transient errors (OSError), and
publishes the model card as a Markdown artifact. A retry resumes from the last checkpoint because
the model directory is keyed by the config and the dataset, and the stage picks up
checkpoints/last.pt.
"""

from __future__ import annotations

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NONE
from prefect.concurrency.sync import concurrency

from pipeline.config import RunConfig
from pipeline.data.version import DatasetVersion
from pipeline.gan.stage import GanResult, train_cyclegan
from pipeline.gan.trainer import StepCallback

GPU_LIMIT = "gpu"


def retry_on_oserror(task, task_run, state) -> bool:
    """Retry only OSError (disk full, network filesystem hiccup); a bug would only fail again."""
    try:
        state.result(raise_on_failure=True)
    except OSError:
        return True
    except BaseException:
        return False
    return False


@task(name="train-cyclegan", retries=2, retry_delay_seconds=2, retry_condition_fn=retry_on_oserror, cache_policy=NONE)
def train_cyclegan_task(cfg: RunConfig, dataset: DatasetVersion,
                        callbacks: list[StepCallback] | None = None) -> GanResult:
    with concurrency(GPU_LIMIT, occupy=1, strict=False):
        return train_cyclegan(cfg, dataset, progress=False, callbacks=callbacks)


@flow(name="train-gan", validate_parameters=False)
def train_gan_flow(cfg: RunConfig, dataset: DatasetVersion,
                   callbacks: list[StepCallback] | None = None) -> GanResult:
    """Train (or reuse) the CycleGAN for `dataset`; returns GanResult(model_dir, cached, metrics)."""
    log = get_run_logger()
    result = train_cyclegan_task(cfg, dataset, callbacks)
    log.info("CycleGAN %s%s", result.model_dir, " (cached)" if result.cached else "")
    card = result.model_dir / "model_card.md"
    if card.is_file():
        create_markdown_artifact(key="cyclegan-model-card", markdown=card.read_text(encoding="utf-8"),
                                 description=f"CycleGAN {result.model_dir.name}")
    return result
