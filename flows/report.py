"""Prefect flow for the comparison report: one task building it, one Markdown artifact.

The stage is `pipeline.stages.REPORT`; `flows.stage` runs its one unit as a task retried only on
transient I/O errors. The artifact is the verdict and the table of arms.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from flows.stage import StageFlow
from pipeline.config import RunConfig
from pipeline.data.version import DatasetVersion
from pipeline.report.build import ReportResult, load_compare_metrics, summary_facts
from pipeline.report.markdown import arms_markdown
from pipeline.stages import REPORT


def artifact_markdown(cfg: RunConfig, result: ReportResult) -> str:
    """Verdict, arms table (mean ± std over seeds) and uplift CIs, read back from the report's metrics."""
    f = summary_facts(cfg.report, Path(result.metrics).parent, load_compare_metrics(result.metrics))
    return "\n".join([f"# {cfg.report.title}", "", arms_markdown(f), "",
                      f"Report: [{result.html}](file://{Path(result.html).resolve()})"])


def publish(cfg: RunConfig, result: ReportResult) -> None:
    create_markdown_artifact(key="metalize-report", markdown=artifact_markdown(cfg, result),
                             description="Does synthetic metal help the detector? (arms on held-out real B)")
    get_run_logger().info("report %s: %s", "cached" if result.cached else "built", result.html)


REPORT_FLOW = StageFlow(REPORT, publish)


@flow(name="report", validate_parameters=False)
def report_flow(cfg: RunConfig, compare_dir: Path, out_dir: Path, dataset: DatasetVersion | None = None,
                gan_dir: Path | None = None, augmented: DatasetVersion | None = None) -> ReportResult:
    """Build the comparison report in out_dir and publish the arms table as a Markdown artifact."""
    return REPORT_FLOW.run(REPORT.plan(cfg, compare_dir, out_dir, dataset=dataset, gan_dir=gan_dir,
                                       augmented=augmented))
