"""Prefect flow for the ingest stage: plan, per-shard validation tasks, finalize, card artifact.

The work is `pipeline.data.ingest`; this module only wires it: one `validate-shard` task per
`data.shard_size` images (mapped over a thread pool of `runtime.workers`, or a local Dask cluster
when `data.dask` is true), retried only on transient I/O errors (OSError), and a Markdown
artifact with the dataset card's summary.
"""

from __future__ import annotations

import re
from pathlib import Path

from prefect import flow, get_run_logger, task, unmapped
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NONE
from prefect.task_runners import ThreadPoolTaskRunner

from flows.common import retry_on_oserror
from pipeline.config import RunConfig
from pipeline.data.card import summary_markdown
from pipeline.data.ingest import (
    IngestPlan,
    IngestResult,
    Shard,
    ShardResult,
    building,
    finalize_ingest,
    plan_ingest,
    validate_shard,
)


@task(name="validate-shard", retries=2, retry_delay_seconds=2, retry_condition_fn=retry_on_oserror,
      cache_policy=NONE)
def validate_shard_task(shard: Shard, build_dir: Path) -> ShardResult:
    return validate_shard(shard, build_dir)


@task(name="finalize-ingest", retries=1, retry_condition_fn=retry_on_oserror, cache_policy=NONE)
def finalize_task(plan: IngestPlan, results: list[ShardResult], build_dir: Path) -> dict:
    return finalize_ingest(plan, results, build_dir)


def validate_shards(cfg: RunConfig, shards: list[Shard], build_dir: Path) -> list[ShardResult]:
    """Map the shard task over a runner chosen from the config (threads, or Dask processes).

    The runner is used directly instead of through a subflow: a subflow's parameters are stored
    by the Prefect API, which refuses more than 512 kB - a few thousand planned images.
    """
    with _runner(cfg) as runner:
        futures = runner.map(validate_shard_task, {"shard": shards, "build_dir": unmapped(build_dir)})
        return [f.result() for f in futures]


def _runner(cfg: RunConfig):
    if cfg.data.dask:
        from prefect_dask import DaskTaskRunner

        workers = max(1, cfg.runtime.workers)
        cluster = {"n_workers": workers, "threads_per_worker": 1, "processes": True,
                   "dashboard_address": None}
        return DaskTaskRunner(cluster_kwargs=cluster)
    return ThreadPoolTaskRunner(max_workers=max(1, cfg.runtime.workers))


@flow(name="ingest", validate_parameters=False)
def ingest_flow(cfg: RunConfig, strict: bool | None = None) -> IngestResult:
    """Ingest cfg.data's sources into a dataset version (cached when unchanged)."""
    log = get_run_logger()
    plan = plan_ingest(cfg, strict=strict)
    cached = True
    if not plan.cached:
        with building(plan) as build_dir:
            if build_dir is not None:
                shards = plan.shards()
                log.info("validating %d images in %d shards", len(plan.tasks), len(shards))
                results = validate_shards(cfg, shards, build_dir)
                finalize_task(plan, results, build_dir)
                cached = False
    result = plan.result(cached=cached)
    summary = result.version.manifest["summary"]
    create_markdown_artifact(
        key="dataset-card-" + re.sub(r"[^a-z0-9-]+", "-", cfg.data.name.lower()),
        markdown=summary_markdown(result.version.id, summary, result.quarantine),
        description=f"dataset card of {result.version.id}",
    )
    log.info("dataset %s (%s), %d quarantine rows", result.version.root, "cached" if cached else "new",
             len(result.quarantine))
    return result
