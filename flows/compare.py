"""Prefect flow for the detector comparison: one task per arm x seed, then one finishing task.

The work is `pipeline.detect.compare`; this module only wires it. Tasks run on a thread pool of
`detect.parallel_arms` threads, each training its run in its own spawned process (so arms really
train side by side on the CPU cores). A task is retried only on OSError; a crashed run is
recorded "failed" in metrics.json with its error. Finished runs are not retrained on rerun.
Progress (runs done, rate, time left) goes through `pipeline.progress`, as in `compare()`.
"""

from __future__ import annotations

import time
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NONE
from prefect.futures import as_completed
from prefect.task_runners import ThreadPoolTaskRunner

from flows.common import retry_on_oserror
from pipeline.config import RunConfig
from pipeline.data.version import DatasetVersion
from pipeline.detect.compare import (CompareResult, cached_result, finish, plan_runs, run_status,
                                     runs_progress, shared_core_env, threads_per_run)
from pipeline.detect.runs import RunSpec, adopt_finished_run, cached_record, failed_record, run_isolated
from pipeline.report.verdict import outcome_text
from pipeline.store import dir_lock


@task(name="train-arm", task_run_name="{spec.arm} seed {spec.seed}", retries=2, retry_delay_seconds=5,
      retry_condition_fn=retry_on_oserror, cache_policy=NONE)
def train_arm_task(cfg: RunConfig, dataset: DatasetVersion, augmented: DatasetVersion | None, spec: RunSpec,
                   threads: int) -> dict:
    return run_isolated(cfg, dataset, augmented, spec, threads=threads, raise_oserror=True)


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


@flow(name="compare", validate_parameters=False)
def _compare_flow(cfg: RunConfig, dataset: DatasetVersion, augmented: DatasetVersion | None,
                  out_dir: Path, progress: bool = True) -> CompareResult:
    log = get_run_logger()
    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    with dir_lock(out_dir):
        plans, n, specs = plan_runs(cfg, dataset, augmented, out_dir)
        result = cached_result(cfg, dataset, augmented, out_dir, specs)
        if result is None:
            log.info("%d runs, %d images per epoch, %d at a time", len(specs), n, cfg.detect.parallel_arms)
            finished = {(s.arm, s.seed) for s in specs  # return at once
                        if cached_record(s) is not None or adopt_finished_run(s) is not None}
            threads = threads_per_run(cfg)
            records = {}
            with runs_progress(cfg, n, specs, len(finished), enabled=progress) as bar, \
                    shared_core_env(cfg.detect.parallel_arms):
                futures = {train_arm_task.submit(cfg, dataset, augmented, s, threads): s for s in specs}
                for fut in as_completed(list(futures)):
                    spec = futures[fut]
                    try:
                        rec = fut.result()
                    except Exception as e:  # retries exhausted: keep the run in the table as failed
                        rec = failed_record(spec, e)
                    records[(spec.arm, spec.seed)] = rec
                    if (spec.arm, spec.seed) not in finished:  # counted up front
                        bar.advance(1, run_status(spec, rec))
            result = finish(cfg, dataset, augmented, out_dir, plans, n, records, t0)
    create_markdown_artifact(key="detector-comparison", markdown=arms_markdown(result),
                             description="Detector arms on held-out real B")
    log.info("comparison %s: %s", "cached" if result.cached else "done", result.metrics_path)
    return result


def compare_flow(cfg: RunConfig, dataset: DatasetVersion, augmented: DatasetVersion | None,
                 out_dir: Path, progress: bool = True) -> CompareResult:
    """Run the comparison flow with `detect.parallel_arms` task threads (a subflow when called
    from another flow); `progress` shows runs done, rate and time left on stderr."""
    runner = ThreadPoolTaskRunner(max_workers=max(1, cfg.detect.parallel_arms))
    return _compare_flow.with_options(task_runner=runner)(cfg, dataset, augmented, Path(out_dir), progress)
