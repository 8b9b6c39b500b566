"""Prefect flow for the ingest stage: one `validate-shard` task per `data.shard_size` images.

The stage is `pipeline.stages.INGEST`; `flows.stage` turns its shards into tasks (a thread pool of
`runtime.workers`, or a local Dask cluster of processes when `data.dask` is true, retried only on
transient I/O errors). The artifact is the dataset card's summary.
"""

from __future__ import annotations

import re

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from flows.stage import StageFlow, dask, threads
from pipeline.config import RunConfig
from pipeline.data.card import summary_markdown
from pipeline.data.ingest import IngestResult
from pipeline.stages import INGEST


def publish(cfg: RunConfig, result: IngestResult) -> None:
    create_markdown_artifact(
        key="dataset-card-" + re.sub(r"[^a-z0-9-]+", "-", cfg.data.name.lower()),
        markdown=summary_markdown(result.version.id, result.version.manifest["summary"], result.quarantine,
                                  result.notes),
        description=f"dataset card of {result.version.id}",
    )
    get_run_logger().info("dataset %s (%s), %d quarantine rows", result.version.root,
                          "cached" if result.cached else "new", len(result.quarantine))


INGEST_FLOW = StageFlow(INGEST, publish, runner=lambda cfg: dask(processes=True) if cfg.data.dask else threads)


@flow(name="ingest", validate_parameters=False)
def ingest_flow(cfg: RunConfig, strict: bool | None = None, progress: bool = True) -> IngestResult:
    """Ingest cfg.data's sources into a dataset version (cached when unchanged); `progress`
    shows images validated, rate and time left on stderr."""
    return INGEST_FLOW.run(INGEST.plan(cfg, strict=strict, progress=progress), progress=progress)
