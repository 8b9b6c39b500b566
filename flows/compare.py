"""Prefect flow for the detector comparison: one task per arm x seed, then the finishing step.

The stage is `pipeline.stages.COMPARE`; `flows.stage` runs its arm x seed units as tasks on a
thread pool of `detect.parallel_arms` threads, each training its run in its own spawned process
(so arms really train side by side on the CPU cores). A task is retried only on transient I/O
errors; a crashed run is recorded "failed" in metrics.json with its error. Finished runs are not
retrained on rerun. The artifact is the table of arms and the uplifts.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from flows.stage import StageFlow
from pipeline.config import RunConfig
from pipeline.data.version import DatasetVersion
from pipeline.detect.compare import CompareResult
from pipeline.report.verdict import outcome_text
from pipeline.stages import COMPARE


def arms_markdown(result: CompareResult) -> str:
    """The table of arms (mean ± std mAP over seeds) and the bootstrap comparisons."""
    m = result.metrics
    lines = [f"# Detector comparison: {m['dataset']['id']}", "",
             f"Test: {m['test']['images']} real B images; "
             f"{'cached' if result.cached else 'new'} results.", "",
             "| arm | status | mAP@[.5:.95] | mAP50 | mAP75 | seeds | train images | images/epoch |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]

    def cell(s: dict) -> str:
        if s["mean"] is None:
            return "–"
        return f"{s['mean']:.3f}" + (f" ± {s['std']:.3f}" if s["std"] is not None else "")

    for a in m["arms"]:
        s = a["summary"]
        status = a["status"] if not a["error"] else f"{a['status']}: {a['error'][:80]}"
        lines.append(f"| {a['name']} | {status} | {cell(s['map'])} | {cell(s['map50'])} | "
                     f"{cell(s['map75'])} | {s['map']['n']} | {a['train_images']} | "
                     f"{a['images_per_epoch']} |")
    if m["comparisons"]:
        lines += ["", "| uplift | Δ mAP | CI | verdict |", "|---|---:|---|---|"]
        for c in m["comparisons"]:
            lines.append(f"| {c['treatment']} vs {c['baseline']} | {c['delta']:+.3f} | "
                         f"{_level(c)}[{c['ci_low']:+.3f}, {c['ci_high']:+.3f}] | {outcome_text(c)} |")
    for c in m.get("comparisons_skipped") or []:
        lines += ["", f"{c['treatment']} vs {c['baseline']} not computed: {c['reason']}"]
    for w in m.get("warnings") or []:
        lines += ["", f"Warning: {w['message']}"]
    lines += ["", f"metrics: `{result.metrics_path}`"]
    return "\n".join(lines)


def _level(c: dict) -> str:
    """'95% ' from the comparison's own alpha (the level its bootstrap used)."""
    return f"{round(100 * (1 - c['alpha']))}% " if c.get("alpha") is not None else ""


def publish(cfg: RunConfig, result: CompareResult) -> None:
    create_markdown_artifact(key="detector-comparison", markdown=arms_markdown(result),
                             description="Detector arms on held-out real B")
    get_run_logger().info("comparison %s: %s", "cached" if result.cached else "done", result.metrics_path)


COMPARE_FLOW = StageFlow(COMPARE, publish)


@flow(name="compare", validate_parameters=False)
def compare_flow(cfg: RunConfig, dataset: DatasetVersion, augmented: DatasetVersion | None,
                 out_dir: Path, progress: bool = True) -> CompareResult:
    """Train and evaluate every arm x seed into out_dir; `progress` shows runs done, rate and
    time left on stderr."""
    return COMPARE_FLOW.run(COMPARE.plan(cfg, dataset, augmented, Path(out_dir)), progress=progress)
