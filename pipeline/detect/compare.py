"""The detector comparison: arms x seeds trained under one budget, evaluated on held-out real B.

`compare()` = `plan_runs` (what to train) -> `run_isolated` per arm and seed (in separate
processes, `detect.parallel_arms` at a time; a crash is recorded, never dropped) -> `finish`
(pycocotools metrics per run, mean ± std over seeds, paired bootstrap CIs, metrics.json).

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

import concurrent.futures as cf
import multiprocessing as mp
import os
import platform
import shutil
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.config import RunConfig
from pipeline.data.version import DatasetVersion
from pipeline.detect.arms import ArmPlan, build_training_set, epoch_budget, plan_arms, slug, write_eval_set
from pipeline.detect.base import make_detector
from pipeline.detect.evaluate import METRIC_KEYS, coco_eval, load_gt, write_results
from pipeline.detect.stats import paired_bootstrap, summarize
from pipeline.progress import stage_progress
from pipeline.store import (atomic_write_json, atomic_write_text, dir_lock, read_manifest, sha256_file,
                            stage_key, write_manifest)

RUN_RECORD = "run.json"
FAILED_RECORD = "failed.json"
TREATMENT = "real+synthetic"
BASELINES = ("real", "real+replica")
# Every run record has these keys, whatever its status (metrics.json arms[].runs[] plus "key").
RUN_FIELDS = ("seed", "status", "error", "metrics", "per_class_ap", "ultralytics_map", "ultralytics_map50",
              "ultralytics_map_diff", "train_seconds", "train_images_per_s", "train_cpu_seconds",
              "images_seen", "weights", "weights_sha256", "predictions", "results_csv", "pr_curve", "key")


@dataclass(frozen=True)
class RunSpec:
    """One arm trained with one seed."""

    arm: str
    seed: int
    run_dir: Path
    key: str  # cache key: detect config, detector identity, arm, seed, budget, input manifests
    images_per_epoch: int


@dataclass
class CompareResult:
    out_dir: Path
    metrics_path: Path
    cached: bool
    metrics: dict[str, Any]

    def arm(self, name: str) -> dict[str, Any]:
        return next(a for a in self.metrics["arms"] if a["name"] == name)


# ------------------------------------------------------------------------------------- planning
def _run_config(cfg: RunConfig) -> dict[str, Any]:
    """The part of the detect config that changes what a single run produces."""
    d = cfg.detect.model_dump(mode="json")
    for k in ("arms", "seeds", "parallel_arms", "bootstrap_resamples", "crosscheck_tolerance"):
        d.pop(k)
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
            key = stage_key("detect-run", {"detect": _run_config(cfg), "detector": identity, "arm": plan.name,
                                           "seed": seed, "images_per_epoch": n,
                                           "device": device.split(":")[0]}, parents)
            run_dir = Path(out_dir) / "runs" / slug(plan.name) / f"seed{seed}"
            specs.append(RunSpec(plan.name, seed, run_dir, key, n))
    return plans, n, specs


# ---------------------------------------------------------------------------------- one run
def cached_record(spec: RunSpec) -> dict[str, Any] | None:
    """The done record of a finished run with the same key whose outputs are still there."""
    import json

    p = spec.run_dir / RUN_RECORD
    try:
        rec = json.loads(p.read_text())
    except (OSError, ValueError):
        return None
    out_dir = spec.run_dir.parents[2]
    if rec.get("key") != spec.key or rec.get("status") != "ok":
        return None
    if not all((out_dir / rec[k]).is_file() for k in ("weights", "predictions", "pr_curve")):
        return None
    return rec


def run_arm_seed(cfg: RunConfig, dataset: DatasetVersion, augmented: DatasetVersion | None, spec: RunSpec,
                 *, threads: int | None = None) -> dict[str, Any]:
    """Train one arm with one seed, predict the B test split, evaluate; returns the run record
    (schema of metrics.json arms[].runs[]) and writes it as run.json. Raises on failure."""
    if (rec := cached_record(spec)) is not None:
        return rec
    out_dir = spec.run_dir.parents[2]
    plan = next(p for p in plan_arms(cfg, dataset, augmented) if p.name == spec.arm)
    (spec.run_dir / FAILED_RECORD).unlink(missing_ok=True)
    # an interrupted run's partial ultralytics dir would append to its results.csv: start clean
    shutil.rmtree(spec.run_dir / "train", ignore_errors=True)
    data = build_training_set(plan, cfg, dataset, spec.images_per_epoch, spec.run_dir / "data", spec.seed)
    detector = make_detector(cfg, threads=threads)
    trained = detector.train(data, spec.run_dir, seed=spec.seed)

    test = dataset.coco("B", "test")
    cat_ids = [c.id for c in sorted(test.categories, key=lambda c: c.id)]
    images = [(im.id, dataset.image_path(im)) for im in test.images]
    results = detector.predict(trained.weights, images, cat_ids)
    predictions = write_results(spec.run_dir / "predictions.json", results)
    ev = coco_eval(dataset.annotation_path("B", "test"), results, cfg.detect.max_det)
    pr_curve = atomic_write_json(spec.run_dir / "pr_curve.json", ev.pr_curve, indent=None)
    test_yaml = write_eval_set(dataset, "B", "test", spec.run_dir / "data" / "eval")
    own = detector.self_check(trained.weights, test_yaml, spec.run_dir)
    ours = ev.metrics["map"]

    rel = lambda p: os.path.relpath(p, out_dir)  # noqa: E731
    rec = run_record(
        spec, "ok",
        metrics=ev.metrics,
        per_class_ap=ev.per_class_ap,
        ultralytics_map=own["map"] if own else None,
        ultralytics_map50=own["map50"] if own else None,
        ultralytics_map_diff=(own["map"] - ours) if own and ours is not None else None,
        train_seconds=round(trained.train_seconds, 2),
        train_images_per_s=round(trained.images_seen / trained.train_seconds, 2)
        if trained.train_seconds else None,
        train_cpu_seconds=round(trained.cpu_seconds, 2) if trained.cpu_seconds is not None else None,
        images_seen=trained.images_seen,
        weights=rel(trained.weights),
        weights_sha256=sha256_file(trained.weights),
        predictions=rel(predictions),
        results_csv=rel(trained.results_csv) if trained.results_csv else None,
        pr_curve=rel(pr_curve),
    )
    atomic_write_json(spec.run_dir / RUN_RECORD, rec)  # last: its presence means "done"
    return rec


def run_record(spec: RunSpec, status: str, error: str | None = None, **values: Any) -> dict[str, Any]:
    """A run record with every RUN_FIELDS key (None where the run has no value)."""
    unknown = set(values) - set(RUN_FIELDS)
    if unknown:
        raise KeyError(f"not run record fields: {sorted(unknown)}")
    rec = dict.fromkeys(RUN_FIELDS)
    rec.update(values, seed=spec.seed, status=status, error=error, key=spec.key)
    return rec


def failed_record(spec: RunSpec, error: BaseException | str) -> dict[str, Any]:
    """A run that crashed, with its error; written as failed.json (which does not count as done)."""
    msg = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
    rec = run_record(spec, "failed", msg)
    try:
        atomic_write_json(spec.run_dir / FAILED_RECORD, rec)
    except OSError:
        pass
    return rec


def _child(cfg_json: str, dataset_root: str, augmented_root: str | None, spec: RunSpec,
           threads: int | None) -> dict:
    """Entry point of a spawned worker process."""
    cfg = RunConfig.model_validate_json(cfg_json)
    aug = DatasetVersion.open(augmented_root) if augmented_root else None
    try:
        return run_arm_seed(cfg, DatasetVersion.open(dataset_root), aug, spec, threads=threads)
    except OSError:
        raise
    except Exception as e:  # re-raised as a plain RuntimeError: library exceptions may not pickle
        raise RuntimeError(f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=4)}") from None


def run_isolated(cfg: RunConfig, dataset: DatasetVersion, augmented: DatasetVersion | None, spec: RunSpec,
                 *, threads: int | None = None, raise_oserror: bool = False) -> dict[str, Any]:
    """`run_arm_seed` in a fresh spawned process (its own torch threads; a segfault or OOM kill
    cannot take the comparison down). Failures come back as failed records; an OSError is
    re-raised when `raise_oserror` (so an orchestrator can retry transient I/O errors)."""
    if (rec := cached_record(spec)) is not None:
        return rec
    ctx = mp.get_context("spawn")
    try:
        with cf.ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
            fut = pool.submit(_child, cfg.model_dump_json(), str(dataset.root),
                              str(augmented.root) if augmented else None, spec, threads)
            return fut.result()
    except OSError as e:
        if raise_oserror:
            raise
        return failed_record(spec, e)
    except cf.process.BrokenProcessPool as e:
        return failed_record(spec, f"worker process died ({e}): killed from outside, e.g. by the "
                                   "out-of-memory killer, or crashed in native code")
    except Exception as e:
        return failed_record(spec, _first_line(e))


def _first_line(e: BaseException) -> str:
    text = str(e)
    if isinstance(e, RuntimeError):  # from _child: drop the traceback it carries
        return text.split("\nTraceback")[0].strip()
    return f"{type(e).__name__}: {text}"


def threads_per_run(cfg: RunConfig) -> int:
    total = cfg.runtime.threads or os.cpu_count() or 1
    return max(1, total // max(1, cfg.detect.parallel_arms))


# ------------------------------------------------------------------------------------- driver
def compare(cfg: RunConfig, dataset: DatasetVersion, augmented: DatasetVersion | None, out_dir: Path, *,
            progress: bool = True) -> CompareResult:
    """Train and evaluate every arm x seed, then write out_dir/metrics.json (see module doc)."""
    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    with dir_lock(out_dir):
        plans, n, specs = plan_runs(cfg, dataset, augmented, out_dir)
        if (hit := cached_result(cfg, dataset, augmented, out_dir, specs)) is not None:
            return hit
        threads = threads_per_run(cfg)
        records = {(s.arm, s.seed): rec for s in specs if (rec := cached_record(s)) is not None}
        todo = [s for s in specs if (s.arm, s.seed) not in records]
        with runs_progress(cfg, n, specs, len(records), enabled=progress) as bar, \
                cf.ThreadPoolExecutor(max_workers=cfg.detect.parallel_arms) as ex:
            futs = {ex.submit(run_isolated, cfg, dataset, augmented, s, threads=threads): s for s in todo}
            for fut in cf.as_completed(futs):
                s = futs[fut]
                records[(s.arm, s.seed)] = rec = fut.result()
                bar.advance(1, run_status(s, rec))
        return finish(cfg, dataset, augmented, out_dir, plans, n, records, t0)


def runs_progress(cfg: RunConfig, n: int, specs: list[RunSpec], done: int, enabled: bool = True):
    """The progress bar over arm x seed runs (finished runs from an earlier call count as done)."""
    return stage_progress(f"detector runs ({n} images/epoch x {cfg.detect.epochs} epochs, "
                          f"{cfg.detect.parallel_arms} at a time)", total=len(specs), done=done, unit="run",
                          enabled=enabled)


def run_status(spec: RunSpec, rec: dict[str, Any]) -> str:
    """One line on a finished run: 'real+synthetic seed 0: ok, mAP 0.412'."""
    return f"{spec.arm} seed {spec.seed}: {rec['status']}" + (f", {o}" if (o := _outcome(rec)) else "")


def _compare_key(cfg: RunConfig, run_keys: list[str]) -> str:
    """Key of the whole comparison: config plus the (order-free) keys of its runs."""
    config = {"detect": cfg.detect.model_dump(mode="json"), "alpha": cfg.report.alpha, "seed": cfg.runtime.seed,
              "schema": 2}  # 2: all six metrics summarised, comparisons_skipped, warnings, detector
    return stage_key("compare", config, [{"id": k} for k in sorted(run_keys)])


def cached_result(cfg: RunConfig, dataset: DatasetVersion, augmented: DatasetVersion | None, out_dir: Path,
                  specs: list[RunSpec]) -> CompareResult | None:
    """The finished comparison in out_dir when nothing changed and no run failed (else None)."""
    import json

    m = read_manifest(out_dir)
    path = out_dir / "metrics.json"
    key = _compare_key(cfg, [s.key for s in specs])
    if m is None or m.get("summary", {}).get("key") != key or not path.is_file():
        return None
    if m["summary"].get("failed_runs", 1) or any(cached_record(s) is None for s in specs):
        return None  # failed runs are retried
    return CompareResult(out_dir, path, True, json.loads(path.read_text()))


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
        runs = [_public(records[(plan.name, s)]) for s in cfg.detect.seeds if (plan.name, s) in records]
        ok = [r for r in runs if r["status"] == "ok"]
        for r in ok:  # one COCOeval per run: the per-image matching the bootstrap re-accumulates
            import json

            res = json.loads((out_dir / r["predictions"]).read_text())
            per_image.setdefault(plan.name, {})[r["seed"]] = coco_eval(gt, res, cfg.detect.max_det).per_image
        if plan.unavailable is not None:
            status, error = "unavailable", plan.unavailable
        else:
            status = "ok" if ok else "failed"
            error = next((r["error"] for r in runs if r["status"] != "ok"), None)
        arms.append({
            "name": plan.name,
            "status": status,
            "error": error,  # also set for an ok arm that lost some seeds
            "train_images": plan.train_images,
            "images_per_epoch": n if plan.unavailable is None else 0,
            "runs": runs,
            "summary": {k: summarize([r["metrics"][k] for r in ok]) for k in METRIC_KEYS},
        })
    evaluate_s = time.perf_counter() - te

    tb = time.perf_counter()
    comparisons, skipped = [], []
    memo: dict = {}  # the treatment's resampled mAPs serve both baselines
    by_name = {a["name"]: a for a in arms}
    for base in BASELINES:
        if TREATMENT not in by_name or base not in by_name:
            continue  # not configured: nothing was asked, nothing skipped
        seeds = sorted(set(per_image.get(TREATMENT, {})) & set(per_image.get(base, {})))  # paired by seed
        if not seeds:
            skipped.append({"treatment": TREATMENT, "baseline": base,
                            "reason": _no_pair_reason(by_name[TREATMENT], by_name[base])})
            continue
        ci = paired_bootstrap([per_image[TREATMENT][s] for s in seeds], [per_image[base][s] for s in seeds],
                              resamples=cfg.detect.bootstrap_resamples, seed=cfg.runtime.seed,
                              alpha=cfg.report.alpha, cache=memo)
        comparisons.append({"treatment": TREATMENT, "baseline": base, "metric": "map", "delta": ci.delta,
                            "ci_low": ci.ci_low, "ci_high": ci.ci_high, "alpha": cfg.report.alpha,
                            "resamples": ci.resamples, "significant": ci.significant, "seeds": seeds})
    bootstrap_s = time.perf_counter() - tb

    metrics = {
        "dataset": {"id": dataset.id},
        "augmented": {"id": augmented.id} if augmented is not None else None,
        "categories": test.category_names,
        "test": {"images": len(test.images), "instances": test.class_counts()},
        "config": cfg.detect.model_dump(mode="json"),
        "detector": detector_identity(cfg),
        "arms": arms,
        "comparisons": comparisons,
        "comparisons_skipped": skipped,
        "warnings": crosscheck_warnings(arms, cfg.detect.crosscheck_tolerance),
        "timings": {"total_s": round(time.perf_counter() - t0, 2), "bootstrap_s": round(bootstrap_s, 2),
                    "evaluate_s": round(evaluate_s, 2)},
        "hardware": hardware(cfg),
    }
    path = atomic_write_json(out_dir / "metrics.json", metrics)
    atomic_write_text(out_dir / "config.yaml", cfg.to_yaml())
    failed = sum(1 for r in records.values() if r["status"] != "ok")
    files = {"metrics.json": sha256_file(path), "config.yaml": sha256_file(out_dir / "config.yaml")}
    for a in arms:
        for r in a["runs"]:
            for k in ("weights", "predictions", "pr_curve", "results_csv"):
                if r.get(k):
                    files[r[k]] = sha256_file(out_dir / r[k])
    parents = [dataset.manifest] + ([augmented.manifest] if augmented is not None else [])
    key = _compare_key(cfg, [r["key"] for r in records.values()]) if records else None
    summary = {"key": key if not failed else None, "failed_runs": failed, "detector": metrics["detector"],
               "map": {a["name"]: a["summary"]["map"]["mean"] for a in arms}}
    write_manifest(out_dir, kind="comparison", id=f"compare-{(key or 'partial')[:12]}",
                   config=cfg.detect.model_dump(mode="json"), parents=parents, summary=summary, files=files)
    return CompareResult(out_dir, path, False, metrics)


def _no_pair_reason(treatment: dict[str, Any], baseline: dict[str, Any]) -> str:
    """Why two configured arms have no seed that finished in both."""
    bad = [a for a in (treatment, baseline) if a["status"] != "ok"]
    if not bad:
        return "no training seed finished in both arms"
    return "; ".join(f"{a['name']} {a['status']}: {_first(a['error'])}" for a in bad)


def _first(text: str | None) -> str:
    return (text or "no error recorded").strip().splitlines()[0][:300]


def crosscheck_warnings(arms: list[dict[str, Any]], tolerance: float) -> list[dict[str, Any]]:
    """Runs whose ultralytics val mAP differs from our pycocotools mAP on the same test split by
    more than `tolerance`: the two evaluators differ in detail (letterboxing, interpolation) but
    not by much, so a large gap points at our prediction conversion or at the ground truth."""
    out = []
    for a in arms:
        for r in a["runs"]:
            d = r.get("ultralytics_map_diff")
            if r["status"] == "ok" and d is not None and abs(d) > tolerance:
                out.append({"kind": "crosscheck", "arm": a["name"], "seed": r["seed"], "diff": d,
                            "message": f"{a['name']} seed {r['seed']}: ultralytics' own mAP "
                                       f"{r['ultralytics_map']:.3f} vs pycocotools {r['metrics']['map']:.3f} "
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
