"""Prefect flow for the synthesize stage: plan, one task per shard, finalize, card artifact.

The work is `pipeline.synth.stage`; this module only wires it. Shards run on a thread pool of
`runtime.workers` threads, or on Prefect's Dask task runner (prefect-dask) when `synth.dask` is
true — a local cluster of threads sharing one loaded generator (torch releases the GIL in its
kernels; a GPU is shared the same way). Shard tasks are retried only on OSError; a retried or
re-run shard resumes from its journal and never rewrites a verified image.
"""

from __future__ import annotations

import re

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NONE
from prefect.task_runners import ThreadPoolTaskRunner

from flows.common import retry_on_oserror
from pipeline.config import RunConfig
from pipeline.data.version import DatasetVersion
from pipeline.progress import stage_progress
from pipeline.synth.generate import ShardSummary
from pipeline.synth.stage import (
    SynthPlan,
    SynthResult,
    cached_result,
    finalize,
    prepare,
    reporting,
    resume_exported,
    run_plan_shard,
    synth_lock,
)


@task(name="synthesize-shard", retries=2, retry_delay_seconds=2, retry_condition_fn=retry_on_oserror,
      cache_policy=NONE)
def shard_task(plan: SynthPlan, index: int) -> ShardSummary:
    return run_plan_shard(plan, index)  # reports items to the flow's bar (see `reporting`)


@task(name="finalize-synthesize", retries=1, retry_condition_fn=retry_on_oserror, cache_policy=NONE)
def finalize_task(plan: SynthPlan, summaries: list[ShardSummary]) -> SynthResult:
    return finalize(plan, summaries)


def task_runner(cfg: RunConfig):
    if cfg.synth.dask:
        from prefect_dask import DaskTaskRunner

        threads = max(1, cfg.runtime.workers)
        return DaskTaskRunner(cluster_kwargs={"n_workers": 1, "threads_per_worker": threads,
                                              "processes": False, "dashboard_address": None})
    return ThreadPoolTaskRunner(max_workers=max(1, cfg.runtime.workers))


@flow(name="synthesize-shards", validate_parameters=False)
def shards_flow(plan: SynthPlan) -> list[ShardSummary]:
    futures = shard_task.map([plan] * len(plan.shards), list(range(len(plan.shards))))
    return [f.result() for f in futures]


def card_markdown(result: SynthResult) -> str:
    s = result.version.manifest["summary"]
    lines = [
        f"# {result.version.id}", "",
        f"{s['images']['real']} real + {s['images']['synthetic']} synthetic B train images "
        f"({'cached' if result.cached else 'new'}); {s['gate']['rejected_images']} rejected, "
        f"{s['gate']['dropped_boxes']} boxes dropped.", "",
        "| class | real boxes | synthetic boxes |", "|---|---:|---:|",
    ]
    for n in s["categories"]:
        lines.append(f"| {n} | {s['boxes']['real'].get(n, 0)} | {s['boxes']['synthetic'].get(n, 0)} |")
    lines += ["", "| gate check | rejections | threshold |", "|---|---:|---:|"]
    for check, v in sorted(s["gate"]["by_check"].items()):
        lines.append(f"| {check} | {v['count']} | {v['threshold']} |")
    lines += ["", f"Card: `{result.version.root / 'card' / 'README.md'}`"]
    return "\n".join(lines)


@flow(name="synthesize", validate_parameters=False)
def synthesize_flow(cfg: RunConfig, dataset: DatasetVersion, model_dir, progress: bool = True) -> SynthResult:
    """Translate labelled A with the CycleGAN at model_dir into an augmented version (cached)."""
    log = get_run_logger()
    plan = prepare(cfg, dataset, model_dir)
    result = cached_result(plan)
    if result is None:
        with synth_lock(plan):
            plan = prepare(cfg, dataset, model_dir)  # another run may have begun this staging meanwhile
            result = cached_result(plan) or resume_exported(plan)
            if result is None:
                log.info("synthesizing %d work items in %d shards", plan.n_items, len(plan.shards))
                with stage_progress("synthesize", total=plan.n_items, unit="item", enabled=progress) as bar, \
                        reporting(plan, bar.advance):
                    summaries = shards_flow.with_options(task_runner=task_runner(cfg))(plan)
                result = finalize_task(plan, summaries)
    create_markdown_artifact(
        key="augmented-card-" + re.sub(r"[^a-z0-9-]+", "-", cfg.data.name.lower()),
        markdown=card_markdown(result),
        description=f"augmented dataset {result.version.id}",
    )
    log.info("augmented %s (%s): %d accepted, %d rejected", result.version.root,
             "cached" if result.cached else "new", result.accepted, result.rejected)
    return result
