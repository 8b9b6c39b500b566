"""The detector comparison: arms x seeds trained under one budget, evaluated on held-out real B.

`compare()` = `plan_runs` (what to train) -> `runs.run_isolated` per arm and seed (in separate
processes, `detect.parallel_arms` at a time; a crash is recorded, never dropped) -> `finish`
(pycocotools metrics per run, mean ± std over seeds, paired bootstrap CIs, metrics.json: the
typed `metrics.CompareMetrics`).

An arm is "ok" (at least one seed finished), "failed" (every seed crashed; `error` says how) or
"unavailable" (its data is missing, e.g. no augmented dataset; `error` says what is missing).
A comparison whose arm has no result is listed in `comparisons_skipped` with the reason.

Layout of out_dir:
    metrics.json, manifest.json (kind "comparison"), config.yaml
    runs/<arm>/seed<k>/  data/ (YOLO layout), train/ (ultralytics run, weights, results.csv),
                         predictions.json (COCO results on B test), pr_curve.json, run.json
A run whose run.json (the done record) matches its key is not retrained on rerun.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.config import RunConfig
from pipeline.data.version import DatasetVersion
from pipeline.detect.arm_specs import ARM_SETTINGS, ARM_SPECS
from pipeline.detect.arms import ArmPlan, epoch_budget, plan_arms, slug
from pipeline.detect.backends import make_detector
from pipeline.detect.evaluate import METRIC_KEYS, coco_eval, load_gt
from pipeline.detect.metrics import ArmResult, CompareMetrics, Comparison, GapShare, RunRecord, SkippedComparison
from pipeline.detect.runs import RunSpec, cached_record
from pipeline.detect.stats import ArmEvals, HierarchicalBootstrap, summarize
from pipeline.store import (atomic_write_json, atomic_write_text, read_manifest, sha256_file,
                            stage_key, write_manifest)

TREATMENT = "real+synthetic"
CEILING = "oracle"  # not a baseline: the share of the real -> oracle gap an arm closes is reported instead


@dataclass
class CompareResult:
    out_dir: Path
    metrics_path: Path
    cached: bool
    metrics: CompareMetrics

    def arm(self, name: str) -> ArmResult:
        arm = self.metrics.arm(name)
        if arm is None:
            raise KeyError(f"{self.metrics_path}: no arm {name!r}")
        return arm


# ------------------------------------------------------------------------------------- planning


def _run_config(cfg: RunConfig, arm: str) -> dict[str, Any]:
    """The part of the detect config that changes what one run of `arm` produces."""
    d = cfg.detect.keyed()
    for k in ("arms", "seeds", "bootstrap_resamples", "crosscheck_tolerance"):
        d.pop(k)
    for k in ARM_SETTINGS - set(ARM_SPECS[arm].settings):
        d.pop(k, None)  # settings only other arms read: changing one never retrains (or unshares) this arm
    return d


def detector_identity(cfg: RunConfig) -> dict[str, Any]:
    """The backend's identity (library version, sha256 of start weights): see Detector.identity.
    A start point that cannot be used (weights file missing) is a ValueError naming it."""
    from pipeline.detect.yolo import DetectorError

    try:
        return make_detector(cfg).identity()
    except DetectorError as e:
        raise ValueError(str(e)) from None


def plan_runs(cfg: RunConfig, dataset: DatasetVersion, augmented: DatasetVersion | None,
              out_dir: Path) -> tuple[list[ArmPlan], int, list[RunSpec]]:
    """Arm plans, the shared images-per-epoch budget, and one RunSpec per runnable arm x seed."""
    from pipeline.detect.yolo import resolve_device

    plans = plan_arms(cfg, dataset, augmented)
    n = epoch_budget(cfg, plans)
    device = resolve_device(cfg.runtime.device)
    identity = detector_identity(cfg)
    specs = []
    for plan in plans:
        if plan.unavailable:
            continue
        parents = [dataset.manifest] + ([augmented.manifest] if plan.uses_augmented and augmented else [])
        for seed in cfg.detect.seeds:
            key = stage_key("detect-run", {"detect": _run_config(cfg, plan.name), "detector": identity,
                                           "arm": plan.name,
                                           "seed": seed, "images_per_epoch": n,
                                           "device": device.split(":")[0]}, parents)
            run_dir = Path(out_dir) / "runs" / slug(plan.name) / f"seed{seed}"
            specs.append(RunSpec(plan.name, seed, run_dir, key, n))
    return plans, n, specs


def threads_per_run(cfg: RunConfig, side_by_side: int | None = None) -> int:
    """A run's share of the cores: `parallel_arms` runs side by side, or `side_by_side` if fewer."""
    total = cfg.runtime.threads or os.cpu_count() or 1
    n = max(1, cfg.detect.parallel_arms)
    return max(1, total // (n if side_by_side is None else max(1, min(n, side_by_side))))


# ------------------------------------------------------------------------------------- driver
def compare(cfg: RunConfig, dataset: DatasetVersion, augmented: DatasetVersion | None, out_dir: Path, *,
            progress: bool = True) -> CompareResult:
    """Train and evaluate every arm x seed, then write out_dir/metrics.json (see module doc)."""
    from pipeline.stages import COMPARE, run_stage

    return run_stage(COMPARE, COMPARE.plan(cfg, dataset, augmented, out_dir), progress=progress)


_sharing_lock = threading.Lock()
_sharing = {"users": 0, "owned": False}


@contextlib.contextmanager
def shared_core_env(parallel: int):
    """While runs are spawned side by side, their processes get OMP_WAIT_POLICY=PASSIVE (unless the
    user set a policy): spinning OpenMP threads of one run steal the cores of the other (two yolo11n
    arms at 1 thread each: 196 s per arm spinning, 131 s passive, 2-core reference machine). The
    variable is read once when a child loads torch, so it is set around the spawns and restored
    when the last user leaves (baseline runs ahead of the GAN and the comparison overlap)."""
    if parallel <= 1:
        yield
        return
    with _sharing_lock:
        if _sharing["users"] == 0:
            _sharing["owned"] = "OMP_WAIT_POLICY" not in os.environ
            if _sharing["owned"]:
                os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
        _sharing["users"] += 1
    try:
        yield
    finally:
        with _sharing_lock:
            _sharing["users"] -= 1
            if _sharing["users"] == 0 and _sharing["owned"]:
                os.environ.pop("OMP_WAIT_POLICY", None)


@contextlib.contextmanager
def own_cores_env():
    """A run with the cores to itself spawns with OpenMP's default waiting even inside
    `shared_core_env`: PASSIVE makes a lone 2-thread run slower than one thread (demo real+synthetic
    on 2 threads: 386 s PASSIVE, 238 s with the default, against 312-337 s for 1-thread runs;
    bench/results/demo_lone-2threads.json, demo.json). A policy the user set is kept."""
    with _sharing_lock:
        popped = os.environ.pop("OMP_WAIT_POLICY", None) if _sharing["owned"] else None
    try:
        yield
    finally:
        with _sharing_lock:
            if popped is not None and _sharing["users"] > 0 and _sharing["owned"]:
                os.environ["OMP_WAIT_POLICY"] = popped


def runs_label(cfg: RunConfig, n: int) -> str:
    """The progress bar's title over arm x seed runs."""
    return f"detector runs ({n} images/epoch x {cfg.detect.epochs} epochs, {cfg.detect.parallel_arms} at a time)"


def run_status(spec: RunSpec, rec: dict[str, Any]) -> str:
    """One line on a finished run: 'real+synthetic seed 0: ok, mAP 0.412'."""
    return f"{spec.arm} seed {spec.seed}: {rec['status']}" + (f", {o}" if (o := _outcome(rec)) else "")


def _compare_key(cfg: RunConfig, run_keys: list[str]) -> str:
    """Key of the whole comparison: config plus the (order-free) keys of its runs."""
    config = {"detect": cfg.detect.keyed(), "alpha": cfg.report.alpha,
              "seed": cfg.runtime.seed, "schema": 3,  # 2: all six metrics summarised, comparisons_skipped,
              # warnings, detector; 3: every arm compared, seeds resampled too, verdicts, gap_closed
              "rules": {k: getattr(cfg.report, k) for k in ("min_test_images", "min_test_boxes", "min_map")}}
    return stage_key("compare", config, [{"id": k} for k in sorted(run_keys)])


def cached_result(cfg: RunConfig, dataset: DatasetVersion, augmented: DatasetVersion | None, out_dir: Path,
                  specs: list[RunSpec]) -> CompareResult | None:
    """The finished comparison in out_dir when nothing changed and no run failed (else None)."""
    m = read_manifest(out_dir)
    path = out_dir / "metrics.json"
    key = _compare_key(cfg, [s.key for s in specs])
    if m is None or m.get("summary", {}).get("key") != key or not path.is_file():
        return None
    if m["summary"].get("failed_runs", 1) or any(cached_record(s) is None for s in specs):
        return None  # failed runs are retried
    return CompareResult(out_dir, path, True, CompareMetrics.load(path))


def finish(cfg: RunConfig, dataset: DatasetVersion, augmented: DatasetVersion | None, out_dir: Path,
           plans: list[ArmPlan], n: int, records: dict[tuple[str, int], dict[str, Any]],
           t0: float) -> CompareResult:
    """Evaluate finished runs, summarise over seeds, bootstrap the uplifts, write metrics.json."""
    out_dir = Path(out_dir)
    gt_path = dataset.annotation_path("B", "test")
    gt = load_gt(gt_path)
    test = dataset.coco("B", "test")
    te = time.perf_counter()
    per_image: dict[str, dict[int, Any]] = {}
    arms = []
    for plan in plans:
        runs = [RunRecord.model_validate(_public(records[(plan.name, s)]))
                for s in cfg.detect.seeds if (plan.name, s) in records]
        ok = [r for r in runs if r.ok]
        for r in ok:  # one COCOeval per run: the per-image matching the bootstrap re-accumulates
            res = json.loads((out_dir / r.predictions).read_text())
            per_image.setdefault(plan.name, {})[r.seed] = coco_eval(gt, res, cfg.detect.max_det).per_image
        if plan.unavailable is not None:
            status, error = "unavailable", plan.unavailable
        else:
            status = "ok" if ok else "failed"
            error = next((r.error for r in runs if not r.ok), None)
        arms.append(ArmResult(
            name=plan.name, status=status, error=error, train_images=plan.train_images,
            images_per_epoch=n if plan.unavailable is None else 0, runs=runs,
            summary={k: summarize([r.metrics[k] for r in ok]) for k in METRIC_KEYS}))
    evaluate_s = time.perf_counter() - te

    tb = time.perf_counter()
    comparisons, skipped, gap = uplifts(cfg, arms, per_image, len(test.images), len(test.annotations))
    bootstrap_s = time.perf_counter() - tb

    metrics = CompareMetrics(
        dataset={"id": dataset.id},
        augmented={"id": augmented.id} if augmented is not None else None,
        categories=test.category_names,
        test={"images": len(test.images), "instances": test.class_counts()},
        config=cfg.detect.model_dump(mode="json"),
        detector=_identity_or_error(cfg),
        arms=arms, comparisons=comparisons, comparisons_skipped=skipped, gap_closed=gap,
        warnings=crosscheck_warnings(arms, cfg.detect.crosscheck_tolerance),
        timings={"total_s": round(time.perf_counter() - t0, 2), "bootstrap_s": round(bootstrap_s, 2),
                 "evaluate_s": round(evaluate_s, 2)},
        hardware=hardware(cfg),
    )
    path = atomic_write_json(out_dir / "metrics.json", metrics.dump())
    atomic_write_text(out_dir / "config.yaml", cfg.to_yaml())
    failed = sum(1 for r in records.values() if r["status"] != "ok")
    files = {"metrics.json": sha256_file(path), "config.yaml": sha256_file(out_dir / "config.yaml")}
    for a in arms:
        for r in a.runs:
            for rel in (r.weights, r.predictions, r.pr_curve, r.results_csv):
                if rel:
                    files[rel] = sha256_file(out_dir / rel)
    parents = [dataset.manifest] + ([augmented.manifest] if augmented is not None else [])
    key = _compare_key(cfg, [r["key"] for r in records.values()]) if records else None
    summary = {"key": key if not failed else None, "failed_runs": failed, "detector": metrics.detector,
               "map": {a.name: a.mean("map") for a in arms}}
    write_manifest(out_dir, kind="comparison", id=f"compare-{(key or 'partial')[:12]}",
                   config=cfg.detect.model_dump(mode="json"), parents=parents, summary=summary, files=files)
    return CompareResult(out_dir, path, False, metrics)


def uplifts(cfg: RunConfig, arms: list[ArmResult], per_image: dict[str, dict[int, Any]], test_images: int,
            test_boxes: int) -> tuple[list[Comparison], list[SkippedComparison], dict[str, GapShare]]:
    """real+synthetic against every other configured arm but the oracle, each with its bootstrap
    CI (test images and detector seeds resampled) and verdict; plus, when real and oracle both
    ran, the share of the real -> oracle gap every other arm closes. Returns (comparisons,
    skipped comparisons with their reason, gap shares)."""
    from pipeline.report.verdict import Evidence, Rules, judge

    by_name = {a.name: a for a in arms}
    image_ids = next((pe.image_ids for runs in per_image.values() for pe in runs.values()), [])
    hb = HierarchicalBootstrap(image_ids, resamples=cfg.detect.bootstrap_resamples, seed=cfg.runtime.seed)
    evals = {name: ArmEvals(name, {(None, s): pe for s, pe in runs.items()}) for name, runs in per_image.items()}
    rules = Rules.from_config(cfg.report)
    best = max((m for a in arms if (m := a.mean("map")) is not None), default=None)
    comparisons, skipped = [], []
    for base in (a.name for a in arms):
        if TREATMENT not in by_name or base in (TREATMENT, CEILING):
            continue  # not configured: nothing was asked, nothing skipped
        if TREATMENT not in evals or base not in evals:
            skipped.append(SkippedComparison(treatment=TREATMENT, baseline=base,
                                             reason=_no_pair_reason(by_name[TREATMENT], by_name[base])))
            continue
        ci = hb.uplift(evals[TREATMENT], evals[base], cfg.report.alpha)
        c = {"treatment": TREATMENT, "baseline": base, "metric": "map", "delta": ci.delta,
             "ci_low": ci.ci_low, "ci_high": ci.ci_high, "alpha": cfg.report.alpha, "resamples": ci.resamples,
             "significant": ci.significant,
             "seeds": sorted(set(per_image[TREATMENT]) & set(per_image[base])),
             "runs": [len(per_image[TREATMENT]), len(per_image[base])]}
        verdict = judge(c, Evidence(min(c["runs"]), test_images, test_boxes, best), rules)
        comparisons.append(Comparison(**c, outcome=verdict.outcome, reasons=verdict.reasons))
    gap = {}
    if "real" in evals and CEILING in evals:
        for name in evals:
            if name not in ("real", CEILING):
                share = hb.gap_closed(evals[name], evals["real"], evals[CEILING], cfg.report.alpha)
                gap[name] = GapShare(point=share.point, ci_low=share.ci_low, ci_high=share.ci_high,
                                     resamples=share.resamples)
    return comparisons, skipped, gap


def _identity_or_error(cfg: RunConfig) -> dict[str, Any]:
    """The detector identity for metrics.json; start weights deleted since planning must not
    throw away the finished runs, so that becomes a recorded error."""
    try:
        return detector_identity(cfg)
    except ValueError as e:
        return {"backend": cfg.detect.backend, "model": str(cfg.detect.weights or cfg.detect.model),
                "weights_sha256": None, "ultralytics": None, "error": str(e)}


def _no_pair_reason(treatment: ArmResult, baseline: ArmResult) -> str:
    """Why two configured arms have no seed that finished in both."""
    bad = [a for a in (treatment, baseline) if a.status != "ok"]
    if not bad:
        return "no training seed finished in both arms"
    return "; ".join(f"{a.name} {a.status}: {_first(a.error)}" for a in bad)


def _first(text: str | None) -> str:
    return (text or "no error recorded").strip().splitlines()[0][:300]


def crosscheck_warnings(arms: list[ArmResult], tolerance: float) -> list[dict[str, Any]]:
    """Runs whose ultralytics val mAP differs from our pycocotools mAP on the same test split by
    more than `tolerance`: the two evaluators differ in detail (letterboxing, interpolation) but
    not by much, so a large gap points at our prediction conversion or at the ground truth."""
    out = []
    for a in arms:
        for r in a.runs:
            d = r.ultralytics_map_diff
            if r.ok and d is not None and abs(d) > tolerance:
                out.append({"kind": "crosscheck", "arm": a.name, "seed": r.seed, "diff": d,
                            "message": f"{a.name} seed {r.seed}: ultralytics' own mAP "
                                       f"{r.ultralytics_map:.3f} vs pycocotools {r.metrics['map']:.3f} "
                                       f"({d:+.3f}, tolerance {tolerance:g}): check the prediction "
                                       "conversion and the test labels"})
    return out


def _outcome(rec: dict[str, Any]) -> str:
    if rec["status"] == "ok" and rec["metrics"]["map"] is not None:
        return f"mAP {rec['metrics']['map']:.3f}"
    return _first(rec["error"]) if rec["error"] else ""


def _public(rec: dict[str, Any]) -> dict[str, Any]:
    """A run record as metrics.json shows it (the cache key stays in run.json)."""
    return {k: v for k, v in rec.items() if k != "key"}


def hardware(cfg: RunConfig) -> dict[str, Any]:
    import torch

    from pipeline.detect.yolo import resolve_device

    device = resolve_device(cfg.runtime.device)
    info: dict[str, Any] = {
        "device": device,
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "threads_per_run": threads_per_run(cfg),
        "parallel_arms": cfg.detect.parallel_arms,
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    try:  # metadata, not an import: importing ultralytics here would skip ensure_offline()
        from importlib.metadata import version

        info["ultralytics"] = version("ultralytics")
    except Exception:
        pass
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info
