"""Benchmark of the detector comparison: per-arm training time and images/s, evaluation time and
bootstrap time, written to bench/results/detect.json.

    .venv/bin/python bench/detect.py configs/demo.yaml [overrides...] [--epochs 3] [--parallel 2]
        [--arms real,real+synthetic] [--augmented DIR | --no-build]

Trains every arm of the profile (real, real+replica, real+synthetic, oracle) for a few epochs
(not the profile's full count) with the profile's parallelism — `--parallel` runs side by side,
each with cores/parallel threads, as `compare()` does — and extrapolates the profile's full run
from the measured images/s. real+synthetic needs an augmented version: `--augmented DIR`, else
the one this config's synthesis cached, else it is built here through the CycleGAN and
synthesis stages (their time is recorded apart, not in the arms'). The bootstrap is timed on
the demo's real test predictions and on 500 test images x 100 detections, the size the brief
asks to handle in under 60 s.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def synthetic_eval(n_images: int, per_image: int, work_dir: Path, seed: int = 0):
    """A COCOeval on n_images with ~3 boxes each and `per_image` detections per image."""
    from pipeline.detect.evaluate import coco_eval

    rng = np.random.default_rng(seed)
    images, anns = [], []
    for i in range(1, n_images + 1):
        images.append({"id": i, "file_name": f"{i}.png", "width": 128, "height": 128})
        for _ in range(int(rng.integers(1, 6))):
            x, y = rng.uniform(0, 90, 2)
            w, h = rng.uniform(8, 40, 2)
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": int(rng.integers(1, 5)),
                         "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0})
    cats = [{"id": k, "name": f"c{k}"} for k in range(1, 5)]
    gt = {"images": images, "annotations": anns, "categories": cats}
    path = Path(work_dir) / "gt.json"
    path.write_text(json.dumps(gt))

    def run(noise: float):
        res = []
        for a in anns:
            if rng.random() < 0.85:
                x, y, w, h = a["bbox"]
                res.append({"image_id": a["image_id"], "category_id": a["category_id"],
                            "score": float(rng.uniform(0.3, 1)),
                            "bbox": [x + rng.normal(0, noise), y + rng.normal(0, noise), w, h]})
        for im in images:
            n_fp = per_image - 3  # ~3 true boxes per image, the rest background
            for _ in range(max(0, n_fp)):
                res.append({"image_id": im["id"], "category_id": int(rng.integers(1, 5)),
                            "score": float(rng.uniform(0.001, 0.6)),
                            "bbox": [*rng.uniform(0, 90, 2).tolist(), *rng.uniform(5, 40, 2).tolist()]})
        return coco_eval(path, res)

    return run


def augmented_version(cfg, dataset, given: str | None, build: bool):
    """(augmented version or None, {"id", "source": given|cached|built|missing, "build_s"}) for the
    real+synthetic arm: the given dir, this config's cached synthesis, or one built now."""
    from pipeline.cli.detect import default_augmented
    from pipeline.data.version import DatasetVersion

    if given:
        v = DatasetVersion.open(given)
        return v, {"id": v.id, "source": "given"}
    if (v := default_augmented(cfg, dataset)) is not None:
        return v, {"id": v.id, "source": "cached"}
    if not build:
        return None, {"id": None, "source": "missing"}
    from pipeline.gan.training_run import train_translator
    from pipeline.synth.stage import synthesize

    t = time.perf_counter()
    gan = train_translator(cfg, dataset, progress=True)
    v = synthesize(cfg, dataset, gan.model_dir, progress=True).version
    return v, {"id": v.id, "source": "built", "build_s": round(time.perf_counter() - t, 1)}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config", nargs="?", default=str(REPO / "configs" / "demo.yaml"))
    ap.add_argument("overrides", nargs="*")
    ap.add_argument("--epochs", type=int, default=3, help="epochs per arm to measure")
    ap.add_argument("--parallel", type=int, default=None,
                    help="arms side by side (default: detect.parallel_arms)")
    ap.add_argument("--arms", default=None, help="comma-separated arms to time (default: the profile's)")
    ap.add_argument("--augmented", default=None, help="augmented version dir for real+synthetic")
    ap.add_argument("--no-build", action="store_true",
                    help="do not train a CycleGAN and synthesize when no augmented version is cached")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "detect.json"))
    args = ap.parse_args(argv)

    import concurrent.futures as cf

    from pipeline.config import load_config
    from pipeline.data.ingest import ingest
    from pipeline.detect.compare import hardware, plan_runs, threads_per_run
    from pipeline.detect.runs import run_isolated
    from pipeline.detect.stats import paired_bootstrap

    cfg = load_config(args.config, args.overrides)
    full_epochs, full_runs = cfg.detect.epochs, len(cfg.detect.arms) * len(cfg.detect.seeds)
    parallel = args.parallel or cfg.detect.parallel_arms
    cfg.detect.parallel_arms = parallel
    cfg.detect.epochs = args.epochs
    cfg.detect.seeds = [cfg.detect.seeds[0]]
    if args.arms:
        cfg.detect.arms = [a for a in args.arms.split(",") if a]
    dataset = ingest(cfg, progress=False).version
    augmented, aug_info = None, None
    if "real+synthetic" in cfg.detect.arms:
        augmented, aug_info = augmented_version(cfg, dataset, args.augmented, build=not args.no_build)
    work = tempfile.TemporaryDirectory(prefix="bench-detect-")  # runs and ground truth: removed at exit
    out_dir = Path(work.name)
    plans, n, specs = plan_runs(cfg, dataset, augmented, out_dir)

    load_before = os.getloadavg()
    t0 = time.perf_counter()
    with cf.ThreadPoolExecutor(max_workers=parallel) as ex:
        threads = threads_per_run(cfg)
        records = list(ex.map(lambda s: run_isolated(cfg, dataset, augmented, s, threads=threads), specs))
    wall = time.perf_counter() - t0
    arms = {p.name: {"status": "unavailable", "error": p.unavailable} for p in plans if p.unavailable}
    for s, r in zip(specs, records):
        if r["status"] != "ok":
            arms[s.arm] = {"status": "failed", "error": r["error"]}
            continue
        ips = r["train_images_per_s"]
        cpu = r.get("train_cpu_seconds")
        arms[s.arm] = {"status": "ok", "epochs": args.epochs, "images_per_epoch": n,
                       "train_seconds": r["train_seconds"], "images_per_s": ips,
                       "seconds_per_epoch": round(r["train_seconds"] / args.epochs, 2),
                       "train_cpu_seconds": cpu,
                       # per CPU-second of one process: what an idle core would give, load or not
                       "images_per_cpu_s": round(r["images_seen"] / cpu, 2) if cpu else None}

    # evaluation: COCOeval of the demo test predictions; bootstrap on them and at 500 images
    from pipeline.detect.evaluate import coco_eval

    ok = [r for r in records if r["status"] == "ok"]
    evals, eval_s = [], None
    if ok:
        te = time.perf_counter()
        for r in ok:
            res = json.loads((out_dir / r["predictions"]).read_text())
            evals.append(coco_eval(dataset.annotation_path("B", "test"), res, cfg.detect.max_det))
        eval_s = (time.perf_counter() - te) / len(ok)
    boot_demo = None
    if len(evals) >= 2:
        tb = time.perf_counter()
        paired_bootstrap([evals[1].per_image], [evals[0].per_image], resamples=1000, seed=0)
        boot_demo = {"images": evals[0].per_image.n_images, "resamples": 1000,
                     "seconds": round(time.perf_counter() - tb, 2)}
    run = synthetic_eval(500, 100, out_dir)
    a, b = run(2.0), run(3.0)
    tb = time.perf_counter()
    ci = paired_bootstrap([a.per_image], [b.per_image], resamples=1000, seed=0)
    boot_500 = {"images": 500, "detections_per_image": 100, "resamples": 1000,
                "seconds": round(time.perf_counter() - tb, 2), "delta": round(ci.delta, 4)}

    projection = {}
    for label, key in (("measured_wall", "images_per_s"), ("idle_machine", "images_per_cpu_s")):
        rates = [v[key] for v in arms.values() if v.get("status") == "ok" and v.get(key)]
        if rates:
            per_arm = n * full_epochs / min(rates)
            projection[label] = {"epochs": full_epochs, "images_per_epoch": n, "per_arm_s": round(per_arm),
                                 "runs": full_runs, "all_runs_s": round(per_arm * -(-full_runs // parallel))}
    projection["note"] = ("slowest measured arm; training incl. per-epoch val, excl. test prediction; "
                          "idle_machine assumes each arm gets its thread's core to itself")
    load = os.getloadavg()
    result = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "config": args.config, "overrides": args.overrides, "parallel_arms": parallel,
        "threads_per_arm": threads_per_run(cfg), "imgsz": cfg.detect.imgsz, "batch": cfg.detect.batch,
        "model": cfg.detect.model, "augmented": aug_info, "arms": arms, "wall_s": round(wall, 2),
        "evaluate_s_per_run": round(eval_s, 3) if eval_s is not None else None,
        "bootstrap_demo": boot_demo, "bootstrap_500": boot_500,
        "projection_full_profile": projection,
        "load_average_1_5_15": {"before": [round(x, 2) for x in load_before],
                                "after": [round(x, 2) for x in load]},
        "hardware": {**hardware(cfg), "platform": platform.platform()},
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    work.cleanup()


if __name__ == "__main__":
    main()
