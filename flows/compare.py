"""Prefect flow for the detector comparison: one task per arm x seed, then the finishing step.

The stage is `pipeline.stages.COMPARE`; `flows.stage` runs its arm x seed units as tasks on a
thread pool of `detect.parallel_arms` threads, each training its run in its own spawned process
(so arms really train side by side on the CPU cores). A task is retried only on transient I/O
errors; a crashed run is recorded "failed" in metrics.json with its error. Finished runs are not
retrained on rerun. The artifact is the verdict, the table of arms and the uplifts, as the report draws them.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from flows.stage import StageFlow
from pipeline.config import RunConfig
from pipeline.data.version import DatasetVersion
from pipeline.detect.compare import CompareResult
from pipeline.report.build import summary_facts
from pipeline.report.markdown import arms_markdown as report_arms_markdown
from pipeline.stages import COMPARE


def arms_markdown(cfg: RunConfig, result: CompareResult) -> str:
    """The verdict, the table of arms (mean ± std mAP over seeds) and the bootstrap comparisons,
    drawn by the report's own table builders."""
    m = result.metrics
    f = summary_facts(cfg.report, result.out_dir, m)
    return "\n".join([f"# Detector comparison: {m.dataset['id']}", "",
                      f"Test: {m.test['images']} real B images; {'cached' if result.cached else 'new'} results.",
                      "", report_arms_markdown(f), "", f"metrics: `{result.metrics_path}`"])


def publish(cfg: RunConfig, result: CompareResult) -> None:
    create_markdown_artifact(key="detector-comparison", markdown=arms_markdown(cfg, result),
                             description="Detector arms on held-out real B")
    get_run_logger().info("comparison %s: %s", "cached" if result.cached else "done", result.metrics_path)


COMPARE_FLOW = StageFlow(COMPARE, publish)


@flow(name="compare", validate_parameters=False)
def compare_flow(cfg: RunConfig, dataset: DatasetVersion, augmented: DatasetVersion | None,
                 out_dir: Path, progress: bool = True) -> CompareResult:
    """Train and evaluate every arm x seed into out_dir; `progress` shows runs done, rate and
    time left on stderr."""
    return COMPARE_FLOW.run(COMPARE.plan(cfg, dataset, augmented, Path(out_dir)), progress=progress)
