"""Synthesis as a Stage: translate labelled A in shards, gate, publish the augmented version."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from pipeline.config import RunConfig
from pipeline.data.version import DatasetVersion
from pipeline.stages.base import Progress, Stage
from pipeline.synth.generate import ShardSummary
from pipeline.synth.stage import (SynthPlan, SynthResult, cached_result, finalize, prepare, reporting,
                                  resume_exported, run_plan_shard, synth_lock)


@dataclass(frozen=True)
class SynthShard:
    """Shard `index` of the plan (its generators are loaded once per process and shared)."""

    plan: SynthPlan
    index: int


@dataclass(frozen=True)
class SynthWork:
    plan: SynthPlan
    resumed: SynthResult | None = None  # a killed run's export, published on claiming


class SynthStage(Stage[SynthPlan, SynthWork, SynthShard, ShardSummary, SynthResult]):
    name = "synthesize"

    def plan(self, cfg: RunConfig, dataset: DatasetVersion, model_dir: Path) -> SynthPlan:
        return prepare(cfg, dataset, model_dir)

    def done(self, plan: SynthPlan) -> SynthResult | None:
        return cached_result(plan)

    @contextlib.contextmanager
    def claim(self, plan: SynthPlan) -> Iterator[SynthWork | None]:
        with synth_lock(plan):
            # another run may have begun this staging (and its shard size) while we waited
            plan = prepare(plan.cfg, plan.dataset, plan.model_dir)
            yield None if cached_result(plan) else SynthWork(plan, resume_exported(plan))

    def units(self, work: SynthWork) -> list[SynthShard]:
        return [] if work.resumed else [SynthShard(work.plan, k) for k in range(len(work.plan.shards))]

    def run_unit(self, unit: SynthShard) -> ShardSummary:
        return run_plan_shard(unit.plan, unit.index)

    def finish(self, work: SynthWork, outputs: list[ShardSummary]) -> SynthResult:
        return work.resumed or finalize(work.plan, outputs)

    def workers(self, work: SynthWork) -> int:
        return max(1, work.plan.cfg.runtime.workers)

    def progress(self, work: SynthWork, units: Sequence[SynthShard]) -> Progress | None:
        return Progress("synthesize", work.plan.n_items, unit="item") if units else None

    def weight(self, unit: SynthShard) -> int:
        return 0  # shards report their items as they finish them (see `watch`)

    def watch(self, work: SynthWork, advance: Callable[[int], None]):
        return reporting(work.plan, advance)

    def unit_name(self, unit: SynthShard) -> str:
        return f"synthesize-shard {unit.index}"


SYNTH = SynthStage()
