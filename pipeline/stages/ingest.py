"""Ingest as a Stage: validate the sources' images in shards into a dataset version."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from pipeline.config import RunConfig
from pipeline.data.ingest import (IngestPlan, IngestResult, Shard, ShardResult, building, finalize_ingest,
                                  plan_ingest, validate_shard)
from pipeline.stages.base import Progress, Stage


@dataclass(frozen=True)
class ShardJob:
    """One shard of images, validated into the version's build folder."""

    shard: Shard
    build_dir: Path


@dataclass(frozen=True)
class IngestWork:
    plan: IngestPlan
    build_dir: Path  # temp folder renamed into the version when the claim closes


class IngestStage(Stage[IngestPlan, IngestWork, ShardJob, ShardResult, IngestResult]):
    name = "ingest"

    def plan(self, cfg: RunConfig, *, strict: bool | None = None, progress: bool = False) -> IngestPlan:
        return plan_ingest(cfg, strict=strict, progress=progress)

    def done(self, plan: IngestPlan) -> IngestResult | None:
        return plan.result(cached=True) if plan.cached else None

    @contextlib.contextmanager
    def claim(self, plan: IngestPlan) -> Iterator[IngestWork | None]:
        with building(plan) as build_dir:
            yield None if build_dir is None else IngestWork(plan, build_dir)

    def units(self, work: IngestWork) -> list[ShardJob]:
        return [ShardJob(s, work.build_dir) for s in work.plan.shards()]

    def run_unit(self, unit: ShardJob) -> ShardResult:
        return validate_shard(unit.shard, unit.build_dir)

    def finish(self, work: IngestWork, outputs: list[ShardResult]) -> None:
        finalize_ingest(work.plan, outputs, work.build_dir)
        return None  # the version appears when `building` renames the folder

    def workers(self, work: IngestWork) -> int:
        return work.plan.cfg.runtime.workers

    def progress(self, work: IngestWork, units: Sequence[ShardJob]) -> Progress:
        return Progress(f"ingest {work.plan.cfg.data.name}", len(work.plan.tasks), unit="img")

    def weight(self, unit: ShardJob) -> int:
        return len(unit.shard.tasks)

    def unit_name(self, unit: ShardJob) -> str:
        return f"validate-shard {unit.shard.index}"


INGEST = IngestStage()
