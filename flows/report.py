"""Prefect flow for the comparison report: one task building it, one Markdown artifact.

The work is `pipeline.report.build.build_report`; this module only wires it. The task is retried
only on OSError (disk, network filesystem); the artifact is the verdict and the table of arms.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NONE

from flows.common import retry_on_oserror
from pipeline.config import RunConfig
from pipeline.data.version import DatasetVersion
from pipeline.report.build import ReportResult, build_report, load_compare_metrics
from pipeline.report.facts import arm_facts
from pipeline.report.markdown import arms_markdown


@task(name="build-report", retries=2, retry_delay_seconds=2, retry_condition_fn=retry_on_oserror,
      cache_policy=NONE)
def build_report_task(cfg: RunConfig, compare_dir: Path, out_dir: Path, dataset: DatasetVersion | None,
                      gan_dir: Path | None, augmented: DatasetVersion | None) -> ReportResult:
    return build_report(cfg, compare_dir, out_dir, dataset=dataset, gan_dir=gan_dir, augmented=augmented)


def artifact_markdown(cfg: RunConfig, result: ReportResult) -> str:
    """Verdict, arms table (mean ± std over seeds) and uplift CIs, read back from the report's metrics."""
    from pipeline.report.facts import ReportFacts

    m = load_compare_metrics(result.metrics)
    rep = m["report"]
    f = ReportFacts(title=cfg.report.title, verdict=rep["verdict"], verdict_kind=rep["verdict_kind"],
                    secondary=rep.get("verdict_more", []), ci_percent=rep["ci_percent"], metrics=m,
                    arms=[arm_facts(a, list(m["categories"])) for a in m["arms"]],
                    comparisons=list(m["comparisons"]), dataset=None, augmented=None, gan=None, lineage=[],
                    attributions=[], notes={}, config={}, warnings=list(rep.get("warnings") or []))
    return "\n".join([f"# {cfg.report.title}", "", arms_markdown(f), "",
                      f"Report: [{result.html}](file://{Path(result.html).resolve()})"])


@flow(name="report", validate_parameters=False)
def report_flow(cfg: RunConfig, compare_dir: Path, out_dir: Path, dataset: DatasetVersion | None = None,
                gan_dir: Path | None = None, augmented: DatasetVersion | None = None) -> ReportResult:
    """Build the comparison report in out_dir and publish the arms table as a Markdown artifact."""
    log = get_run_logger()
    result = build_report_task(cfg, Path(compare_dir), Path(out_dir), dataset,
                               Path(gan_dir) if gan_dir else None, augmented)
    create_markdown_artifact(key="metalize-report", markdown=artifact_markdown(cfg, result),
                             description="Does synthetic metal help the detector? (arms on held-out real B)")
    log.info("report %s: %s", "cached" if result.cached else "built", result.html)
    return result
