"""Translator screening on B val: which GAN variant is worth a full efficacy benchmark?

    .venv/bin/python bench/screen.py [--config configs/demo.yaml] [--det-seeds 0 1]
        [--variants NAME ...] [--out bench/results/screen.json]

For each variant (a named list of config overrides, VARIANTS below, or `--variant name=a.b=1,c.d=2`)
trains the translator (GAN seed 0), synthesises, and trains the real+synthetic detector arm (and
the real arm once, as the reference) with the given detector seeds. It reports what can be judged
without the test split: the translator's quality metrics (realism critic accuracy and KID against
B val, edge F1 inside the boxes), the gate's acceptance, and the detector's mAP@[.5:.95] on B val
(ultralytics' validation at the last epoch and the best epoch, from results.csv). Test-split
numbers are written by the comparison but never read here: tuning on them would make the
efficacy benchmark's test figures optimistic. Every stage is cached under --root.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO))

from pipeline.config import load_config  # noqa: E402

VARIANTS: dict[str, list[str]] = {
    "baseline": [],
    "resize": ["gan.upsample=resize"],
    "resize+structure": ["gan.upsample=resize", "gan.lambda_structure=1"],
    "cut": ["gan.model=cut", "gan.upsample=resize"],
    "fastcut": ["gan.model=fastcut", "gan.upsample=resize"],
    "cut+structure": ["gan.model=cut", "gan.upsample=resize", "gan.lambda_structure=1"],
}


def val_map(results_csv: Path) -> dict[str, float | None]:
    """B val mAP@[.5:.95] at the last epoch and its best over epochs (ultralytics' validator)."""
    rows = list(csv.DictReader(open(results_csv)))
    key = next(k for k in rows[0] if "mAP50-95" in k)
    vals = [float(r[key]) for r in rows]
    return {"last": vals[-1], "best": max(vals), "epochs": len(vals)}


def screen(config: str, name: str, overrides: list[str], det_seeds: list[int], root: Path,
           detect: bool = True) -> dict:
    from pipeline.data.ingest import ingest
    from pipeline.detect.compare import compare
    from pipeline.gan.training_run import train_translator
    from pipeline.run import run_dir_for
    from pipeline.synth.stage import synthesize

    base = [f"runtime.output_root={root}", f"detect.seeds={json.dumps(det_seeds)}"]
    cfg = load_config(config, [*base, *overrides, "detect.arms=[real, real+synthetic]"])
    dataset = ingest(cfg, progress=False).version
    t = time.perf_counter()
    gan = train_translator(cfg, dataset)
    gan_s = time.perf_counter() - t
    syn = synthesize(cfg, dataset, gan.model_dir)
    val = {}
    if detect:
        out = run_dir_for(cfg, dataset.root, syn.version.root) / "compare"
        result = compare(cfg, dataset, syn.version, out)
        for arm in result.metrics.arms:
            val[arm.name] = [val_map(out / r.results_csv) for r in arm.runs if r.ok]
    q = gan.metrics.get("quality") or json.loads((gan.model_dir / "metrics.json").read_text())["quality"]
    counts = syn.version.manifest.get("summary", {})
    mean = lambda xs: sum(xs) / len(xs) if xs else None  # noqa: E731
    return {"variant": name, "overrides": overrides, "model": str(gan.model_dir.relative_to(root)),
            "gan_seconds": round(gan_s, 1), "gan_cached": gan.cached,
            "realism_accuracy": q["realism"]["accuracy"], "kid": q["realism"]["kid"],
            "box_edge_f1": q["structure"]["box_edge_f1"], "box_gradient_ssim": q["structure"]["box_gradient_ssim"],
            "synthesis": counts.get("counts"),
            "val_map_last": {a: mean([v["last"] for v in vs]) for a, vs in val.items()},
            "val_map_best": {a: mean([v["best"] for v in vs]) for a, vs in val.items()},
            "val_runs": val}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="configs/demo.yaml")
    ap.add_argument("--det-seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--variants", nargs="*", default=None, help="names from VARIANTS (default: all)")
    ap.add_argument("--variant", action="append", default=[], help="extra: name=key=value,key=value")
    ap.add_argument("--no-detect", action="store_true", help="translator and gate only (no detector runs)")
    ap.add_argument("--root", type=Path, default=REPO / "runs" / "efficacy")
    ap.add_argument("--out", type=Path, default=BENCH / "results" / "screen.json")
    ap.add_argument("overrides", nargs="*", help="applied to every variant")
    args = ap.parse_args()
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str((args.root / "cache" / "torchinductor").resolve()))
    todo = {k: VARIANTS[k] for k in (args.variants if args.variants is not None else VARIANTS)}
    for spec in args.variant:
        name, _, rest = spec.partition("=")
        todo[name] = [x for x in rest.split(",") if x]
    done = json.loads(args.out.read_text()) if args.out.is_file() else {"variants": {}}
    for name, ov in todo.items():
        print(f"== {name}: {' '.join(ov) or '(profile as is)'}", flush=True)
        row = screen(args.config, name, [*args.overrides, *ov], args.det_seeds, args.root.resolve(),
                     detect=not args.no_detect)
        prev = done["variants"].get(name, {})
        if args.no_detect and prev.get("overrides") == row["overrides"]:  # keep an earlier detector result
            row.update({k: prev[k] for k in ("val_map_last", "val_map_best", "val_runs") if k in prev})
        row["common_overrides"] = args.overrides
        done["variants"][name] = row
        done.update(config=args.config, det_seeds=args.det_seeds, date=time.strftime("%Y-%m-%d %H:%M:%S"))
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(done, indent=2) + "\n")
        print(f"   realism {row['realism_accuracy']:.3f}  KID {row['kid']:.2f}  box F1 "
              f"{row['box_edge_f1']:.3f}  val mAP last {row['val_map_last']}  best {row['val_map_best']}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
