"""The comparison report as a Stage: one unit that builds it (cached on its inputs' hashes)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ContextManager

from pipeline.config import RunConfig
from pipeline.data.version import DatasetVersion
from pipeline.report.build import ReportResult, build_report
from pipeline.stages.base import Stage, claimed


@dataclass(frozen=True)
class ReportPlan:
    cfg: RunConfig
    compare_dir: Path
    out_dir: Path
    dataset: DatasetVersion | None = None
    gan_dir: Path | None = None
    augmented: DatasetVersion | None = None


class ReportStage(Stage[ReportPlan, ReportPlan, ReportPlan, ReportResult, ReportResult]):
    """The unit checks its own cache under its lock: the key needs the comparison's metrics, which
    it validates (a missing or malformed metrics.json is a ReportError naming the file)."""

    name = "report"

    def plan(self, cfg: RunConfig, compare_dir: Path, out_dir: Path, *, dataset: DatasetVersion | None = None,
             gan_dir: Path | None = None, augmented: DatasetVersion | None = None) -> ReportPlan:
        return ReportPlan(cfg, Path(compare_dir), Path(out_dir), dataset, Path(gan_dir) if gan_dir else None,
                          augmented)

    def done(self, plan: ReportPlan) -> None:
        return None

    def claim(self, plan: ReportPlan) -> ContextManager[ReportPlan]:
        return claimed(plan)

    def units(self, work: ReportPlan) -> list[ReportPlan]:
        return [work]

    def run_unit(self, unit: ReportPlan) -> ReportResult:
        return build_report(unit.cfg, unit.compare_dir, unit.out_dir, dataset=unit.dataset,
                            gan_dir=unit.gan_dir, augmented=unit.augmented)

    def finish(self, work: ReportPlan, outputs: list[ReportResult]) -> ReportResult:
        return outputs[0]

    def unit_name(self, unit: ReportPlan) -> str:
        return "build-report"


REPORT = ReportStage()
