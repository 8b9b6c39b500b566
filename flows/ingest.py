"""Prefect flow for the ingest stage: plan, per-shard validation tasks, finalize, card artifact.

The work is `pipeline.data.ingest`; this module only wires it: one `validate-shard` task per
`data.shard_size` images (mapped over a thread pool of `runtime.workers`, or a local Dask cluster
when `data.dask` is true), retried only on transient I/O errors (OSError), and a Markdown
artifact with the dataset card's summary. Progress (images validated, rate, time left) goes to
stderr through `pipeline.progress`, as in `pipeline.data.ingest.run_shards`.
"""

from __future__ import annotations

import re
from pathlib import Path

from prefect import flow, get_run_logger, task, unmapped
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NONE
from prefect.futures import as_completed
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
from pipeline.progress import stage_progress


@task(name="validate-shard", retries=2, retry_delay_seconds=2, retry_condition_fn=retry_on_oserror,
      cache_policy=NONE)
def validate_shard_task(shard: Shard, build_dir: Path) -> ShardResult:
    return validate_shard(shard, build_dir)


@task(name="finalize-ingest", retries=1, retry_condition_fn=retry_on_oserror, cache_policy=NONE)
def finalize_task(plan: IngestPlan, results: list[ShardResult], build_dir: Path) -> dict:
    return finalize_ingest(plan, results, build_dir)


def validate_shards(cfg: RunConfig, shards: list[Shard], build_dir: Path, *,
                    progress: bool = True) -> list[ShardResult]:
    """Map the shard task over a runner chosen from the config (threads, or Dask processes);
    results in shard order.

    The runner is used directly instead of through a subflow: a subflow's parameters are stored
    by the Prefect API, which refuses more than 512 kB - a few thousand planned images.
    """
    total = sum(len(s.tasks) for s in shards)
    with _runner(cfg) as runner, stage_progress(f"ingest {cfg.data.name}", total, unit="img",
                                                enabled=progress) as bar:
        futures = list(runner.map(validate_shard_task, {"shard": shards, "build_dir": unmapped(build_dir)}))
        size = {id(f): len(s.tasks) for f, s in zip(futures, shards)}
        for f in as_completed(futures):
            f.result()  # a failed shard (after its retries) stops the flow here
            bar.advance(size[id(f)])
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
def ingest_flow(cfg: RunConfig, strict: bool | None = None, progress: bool = True) -> IngestResult:
    """Ingest cfg.data's sources into a dataset version (cached when unchanged); `progress`
    shows images validated, rate and time left on stderr (on in the end-to-end flow)."""
    log = get_run_logger()
    plan = plan_ingest(cfg, strict=strict, progress=progress)
    cached = True
    if not plan.cached:
        with building(plan) as build_dir:
            if build_dir is not None:
                shards = plan.shards()
                log.info("validating %d images in %d shards", len(plan.tasks), len(shards))
                results = validate_shards(cfg, shards, build_dir, progress=progress)
                finalize_task(plan, results, build_dir)
                cached = False
    result = plan.result(cached=cached)
    summary = result.version.manifest["summary"]
    create_markdown_artifact(
        key="dataset-card-" + re.sub(r"[^a-z0-9-]+", "-", cfg.data.name.lower()),
        markdown=summary_markdown(result.version.id, summary, result.quarantine, result.notes),
        description=f"dataset card of {result.version.id}",
    )
    log.info("dataset %s (%s), %d quarantine rows", result.version.root, "cached" if cached else "new",
             len(result.quarantine))
    return result
