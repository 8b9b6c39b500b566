"""Efficacy benchmark: does synthetic metal help the detector, over GAN seeds and detector seeds?

    .venv/bin/python bench/efficacy.py [--config configs/demo.yaml] [--gan-seeds 0 1]
        [--det-seeds 0 1 2] [--label NAME] [--root runs/efficacy] [override ...]

Runs the whole experiment of a config once per GAN seed (`gan.seed`), each with every detector
seed, through the library's own stages (ingest once, then the GAN (gan.model), synthesis and the
comparison per GAN seed). Every stage is cached under --root: a rerun only trains what is
missing, and arms that use no GAN (real, real+replica, real+replica-aug, oracle) are trained once
and shared by every GAN seed and by every variant with the same detector settings (the
comparison adopts finished runs with the same key).

Records per arm and per (GAN seed, detector seed) the pycocotools mAP@[.5:.95], mAP50 and
per-class AP, the wall time of every stage, the machine and the commit; then the uplift of
real+synthetic over every other arm (and of every arm over real) with a hierarchical paired
bootstrap (GAN seeds, detector seeds within them, and test images shared by both arms), the
share of the real -> oracle gap each arm closes, and a verdict per comparison (gain, loss or
inconclusive: pipeline.report.verdict). Writes bench/results/efficacy[_LABEL].json and .md.
One `make demo` is one draw; this is the claim.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO))

from pipeline.config import load_config  # noqa: E402
from pipeline.detect.arm_specs import ARMS, USES_SYNTHETIC  # noqa: E402

TREATMENT = "real+synthetic"


def _env() -> None:
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("MPLBACKEND", "Agg")


# what the benchmark's processes import and read: an edit there while it runs changes what runs
SOURCES = ("pipeline", "bench", "configs", "flows")


def _git(*args: str) -> str | None:
    try:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None


def source_state() -> dict:
    """The commit and the tracked files under SOURCES with uncommitted changes, read when the
    benchmark starts: the detector runs are spawned processes that import the working tree as it is
    when each starts, so a result names the code it ran only if nothing there changes meanwhile."""
    commit = _git("rev-parse", "--short=10", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no", "--", *SOURCES) or ""
    return {"commit": commit.strip() if commit else None,
            "uncommitted": sorted(line[3:] for line in status.splitlines() if line.strip())}


def _machine() -> dict:
    import torch

    cpu = platform.processor()
    try:
        cpu = next(ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                   if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "cpu_count": os.cpu_count(), "torch": torch.__version__,
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "python": platform.python_version(), "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY")}


def run_experiment(config: str, overrides: list[str], gan_seeds: list[int], det_seeds: list[int],
                   root: Path, arms: list[str] | None = None, log=print) -> dict:
    """Train (or reuse) everything; returns {"cfg", "dataset", "per_gan": {g: {...}}, "timings"}."""
    from pipeline.data.ingest import ingest
    from pipeline.detect.compare import compare
    from pipeline.gan import display_name
    from pipeline.gan.training_run import train_translator
    from pipeline.preflight import preflight
    from pipeline.run import run_dir_for
    from pipeline.synth.stage import synthesize

    base = [*overrides, f"runtime.output_root={root}", f"detect.seeds={json.dumps(det_seeds)}"]
    if arms:
        base.append(f"detect.arms={json.dumps(arms)}")
    cfg = load_config(config, base)
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str((root / "cache" / "torchinductor").resolve()))
    timings: dict = {"gan_s": {}, "synthesize_s": {}, "compare_s": {}}
    t = time.perf_counter()
    dataset = ingest(cfg, progress=False).version
    timings["ingest_s"] = round(time.perf_counter() - t, 1)
    preflight(cfg, dataset)
    per_gan = {}
    for g in gan_seeds:
        cfg_g = load_config(config, [*base, f"gan.seed={g}"])
        log(f"== GAN seed {g}: {display_name(cfg_g.gan.model)}")
        t = time.perf_counter()
        gan = train_translator(cfg_g, dataset)
        timings["gan_s"][g] = round(time.perf_counter() - t, 1)
        log(f"== GAN seed {g}: synthesis ({gan.model_dir.name}, {'cached' if gan.cached else 'trained'})")
        t = time.perf_counter()
        syn = synthesize(cfg_g, dataset, gan.model_dir)
        timings["synthesize_s"][g] = round(time.perf_counter() - t, 1)
        out = run_dir_for(cfg_g, dataset.root, syn.version.root) / "compare"
        log(f"== GAN seed {g}: detector arms x seeds {det_seeds} -> {out}")
        t = time.perf_counter()
        result = compare(cfg_g, dataset, syn.version, out)
        timings["compare_s"][g] = round(time.perf_counter() - t, 1)
        per_gan[g] = {"model_dir": gan.model_dir, "augmented": syn.version, "compare": result,
                      "gan_cached": gan.cached}
    return {"cfg": cfg, "dataset": dataset, "per_gan": per_gan, "timings": timings}


def analyse(exp: dict, resamples: int, alpha: float, seed: int) -> dict:
    """Per-run metrics, hierarchical uplifts, gap shares and verdicts (the JSON's body)."""
    from pipeline.detect.evaluate import METRIC_KEYS, coco_eval, load_gt
    from pipeline.detect.stats import ArmEvals, HierarchicalBootstrap, summarize
    from pipeline.report.verdict import Evidence, Rules, judge

    cfg, dataset = exp["cfg"], exp["dataset"]
    gt = load_gt(dataset.annotation_path("B", "test"))
    test = dataset.coco("B", "test")
    gan_dependent = {"real+synthetic", "synthetic->real"}
    runs: dict[str, dict] = {}  # arm -> {(g, s): run record}
    evals: dict[str, dict] = {}
    first = True
    for g, res in exp["per_gan"].items():
        out_dir = res["compare"].out_dir
        for arm in res["compare"].metrics.arms:
            name = arm.name
            if name not in gan_dependent and not first:
                continue  # the same runs (adopted): counted once
            key_g = g if name in gan_dependent else None
            for rec in arm.runs:
                if not rec.ok:
                    continue
                r = rec.model_dump()
                preds = json.loads((out_dir / r["predictions"]).read_text())
                evals.setdefault(name, {})[(key_g, r["seed"])] = coco_eval(gt, preds, cfg.detect.max_det).per_image
                runs.setdefault(name, {})[(key_g, r["seed"])] = {**r, "val_map": _val_map(out_dir, r)}
        first = False

    hb = HierarchicalBootstrap(test.image_ids if hasattr(test, "image_ids") else [im.id for im in test.images],
                               resamples=resamples, seed=seed)
    arms_out = {}
    for name, rr in runs.items():
        ok = list(rr.values())
        arms_out[name] = {
            "runs": [{"gan_seed": k[0], "detector_seed": k[1], **{m: r["metrics"][m] for m in ("map", "map50")},
                      "val_map": r["val_map"], "per_class_ap": r["per_class_ap"], "train_seconds": r["train_seconds"]}
                     for k, r in sorted(rr.items(), key=lambda kv: (kv[0][0] or 0, kv[0][1]))],
            **{m: summarize([r["metrics"][m] for r in ok]) for m in METRIC_KEYS[:3]},
            "val_map": summarize([r["val_map"] for r in ok if r["val_map"] is not None]),
        }
        arms_out[name]["map_hierarchical"] = hb.arm(ArmEvals(name, evals[name]))[0]
    rules = Rules.from_config(cfg.report)
    boxes = len(test.annotations)
    best = max((a["map"]["mean"] for a in arms_out.values() if a["map"]["mean"] is not None), default=None)
    ev = {name: ArmEvals(name, e) for name, e in evals.items()}

    def compare(t: str, b: str) -> dict:
        ci = hb.uplift(ev[t], ev[b], alpha)
        c = {"treatment": t, "baseline": b, "delta": ci.delta, "ci_low": ci.ci_low, "ci_high": ci.ci_high,
             "resamples": ci.resamples, "runs": [len(ev[t].runs), len(ev[b].runs)]}
        j = judge(c, Evidence(min(c["runs"]), len(test.images), boxes, best), rules)
        return {**c, "outcome": j.outcome, "reasons": j.reasons}

    uplifts = []
    if TREATMENT in ev:
        uplifts += [compare(TREATMENT, b) for b in ev if b not in (TREATMENT, "oracle")]
    if "real" in ev:
        uplifts += [compare(a, "real") for a in ev if a not in (TREATMENT, "real", "oracle")]
    gap = {}
    if "real" in ev and "oracle" in ev:
        for a in ev:
            if a not in ("real", "oracle"):
                s = hb.gap_closed(ev[a], ev["real"], ev["oracle"], alpha)
                gap[a] = {"point": s.point, "ci_low": s.ci_low, "ci_high": s.ci_high, "resamples": s.resamples}
    contenders = {a: v["map"]["mean"] for a, v in arms_out.items() if a != "oracle" and v["map"]["mean"] is not None}
    best_arm = max(contenders, key=contenders.get) if contenders else None
    vs = {u["baseline"]: u["outcome"] for u in uplifts if u["treatment"] == TREATMENT}
    return {"arms": arms_out, "uplift": uplifts, "gap_closed": gap,
            "verdict": {"best_arm": best_arm, "real+synthetic_vs": vs,
                        "headline": _headline(best_arm, uplifts, gap, alpha)},
            "test": {"images": len(test.images), "boxes": boxes}}


def _val_map(out_dir: Path, run: dict) -> float | None:
    """The run's last-epoch mAP@[.5:.95] on B val (Ultralytics' validation during training): the
    split variants are chosen on. The test split, which the verdicts use, never chooses."""
    from pipeline.report.plots import read_results_csv

    path = out_dir / run["results_csv"] if run.get("results_csv") else None
    if path is None or not path.is_file():
        return None
    col = read_results_csv(path).get("metrics/mAP50-95(B)") or []
    return col[-1] if col and math.isfinite(col[-1]) else None


def written_realism(augmented, dataset, n_images: int = 64, seed: int = 0) -> dict:
    """The realism critic's two-sample test on the synthetic images as written (after the gate, and
    the camera match where on) against the same held-out real photos the GAN's own quality test
    uses (B_val, up to n_images of each; pipeline.gan.quality.evaluate_quality)."""
    import numpy as np

    from pipeline.gan.quality import reference_photos, sample
    from pipeline.gan.realism import two_sample_test

    rng = np.random.default_rng(seed)
    syn = sample([im for im in augmented.coco("B", "train").images if im.synthetic], n_images, rng)
    real, b_split = reference_photos(dataset, n_images, rng)
    r = two_sample_test([dataset.read_rgb(x) for x in real], [augmented.read_rgb(x) for x in syn], seed=seed)
    return {"accuracy": r["accuracy"], "ci_low": r["ci_low"], "ci_high": r["ci_high"], "kid": r["kid"],
            "n_synthetic": len(syn), "n_real": len(real), "b_reference": f"B_{b_split}"}


def _headline(best: str | None, uplifts: list[dict], gap: dict, alpha: float) -> str:
    ci = round(100 * (1 - alpha))
    parts = [f"best arm (oracle aside): {best}"]
    for u in uplifts:
        if u["treatment"] != TREATMENT:
            continue
        parts.append(f"vs {u['baseline']}: {u['delta']:+.3f} ({ci}% CI {u['ci_low']:+.3f} to {u['ci_high']:+.3f}) "
                     f"{u['outcome']}")
    if TREATMENT in gap and math.isfinite(gap[TREATMENT]["point"]):
        g = gap[TREATMENT]
        parts.append(f"gap to oracle closed: {_pct(g['point'])} ({_pct(g['ci_low'])} to {_pct(g['ci_high'])})")
    return "real+synthetic " + "; ".join(parts[1:]) + f". {parts[0]}."


def _uncommitted(doc: dict) -> str:
    files = doc.get("uncommitted")  # absent from results written before it was recorded
    return f" plus uncommitted changes to {', '.join(files)}" if files else ""


def markdown(doc: dict) -> str:
    """The benchmark's tables: arms (mean ± std over runs), uplifts with verdicts, gap shares."""
    ci = round(100 * (1 - doc["alpha"]))
    lines = [f"# Efficacy benchmark: {doc['label']}", "",
             f"`{doc['config']}` {' '.join(doc['overrides'])} — GAN seeds {doc['gan_seeds']} x detector seeds "
             f"{doc['detector_seeds']}; test: {doc['test']['images']} real B photos, {doc['test']['boxes']} "
             f"boxes; commit {doc['commit']}{_uncommitted(doc)}; "
             f"this invocation {doc['timings']['total_s'] / 60:.0f} min on "
             f"{doc['machine']['cpu_count']} cores.", "", f"**{doc['verdict']['headline']}**", "",
             "| arm | runs | mAP@[.5:.95] | mAP50 | gap to oracle closed | B val mAP (tuning split) |",
             "|---|---:|---:|---:|---:|---:|"]
    for name, a in doc["arms"].items():
        g = doc["gap_closed"].get(name)
        gap = f"{_pct(g['point'])} [{_pct(g['ci_low'])}, {_pct(g['ci_high'])}]" if g else ""
        val = _ms(a["val_map"]) if a.get("val_map") else "–"
        lines.append(f"| {name} | {a['map']['n']} | {_ms(a['map'])} | {_ms(a['map50'])} | {gap} | {val} |")
    lines += ["", f"| comparison | Δ mAP | {ci}% CI (GAN seed, detector seed, image) | verdict |",
              "|---|---:|---|---|"]
    for u in doc["uplift"]:
        why = f" ({'; '.join(u['reasons'])})" if u["reasons"] else ""
        lines.append(f"| {u['treatment']} vs {u['baseline']} | {u['delta']:+.3f} | "
                     f"[{u['ci_low']:+.3f}, {u['ci_high']:+.3f}] | {u['outcome']}{why} |")
    lines += ["", "| GAN seed | model | realism critic accuracy (raw A) | KID | realism critic, images as "
              "written | box edge F1 | synthetic kept | "
              f"boxes kept | {TREATMENT} mAP, test | B val |", "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    syn_runs = (doc["arms"].get(TREATMENT) or {}).get("runs") or []
    for g, m in doc.get("gans", {}).items():
        c = m.get("synthesis") or {}
        mine = [r for r in syn_runs if str(r["gan_seed"]) == str(g)]
        test = _mean([r["map"] for r in mine])
        val = _mean([r.get("val_map") for r in mine])
        lines.append(f"| {g} | `{m['model']}` | {m['realism_accuracy']:.3f} ({m['realism_accuracy_raw_a']:.3f}) | "
                     f"{m['kid']:.2f} | {_written(m.get('written_realism'))} | {m['box_edge_f1']:.3f} | "
                     f"{c.get('accepted', '–')}/{c.get('items', '–')} | "
                     f"{c.get('boxes_kept', '–')}/{c.get('boxes_in', '–')} | {test} | {val} |")
    t = doc["timings"]
    lines += ["", f"Wall time of this invocation (cached stages take ~0 s): ingest {t['ingest_s']:.0f} s; GAN "
              f"{_per(t['gan_s'])}; synthesis {_per(t['synthesize_s'])}; detector arms {_per(t['compare_s'])}; total "
              f"{t['total_s'] / 60:.1f} min."]
    if c := t.get("compute"):
        lines.append(f"Training compute from scratch: GAN {_per(c['gan_train_s'])}; {c['detector_runs']} "
                     f"detector runs, {c['detector_train_s'] / 60:.0f} min of training in all (two at a time on "
                     f"{doc['machine']['cpu_count']} cores).")
    return "\n".join(lines) + "\n"


def _written(r: dict | None) -> str:
    return "–" if not r else f"{r['accuracy']:.3f} (KID {r['kid']:.2f})"


def _pct(v: float) -> str:
    return f"{100 * v:.0f}%" if v is not None and math.isfinite(v) else "–"


def _ms(s: dict) -> str:
    if s["mean"] is None:
        return "–"
    return f"{s['mean']:.3f}" + (f" ± {s['std']:.3f}" if s["std"] is not None else "")


def _mean(values: list) -> str:
    from pipeline.detect.stats import summarize

    mean = summarize(values)["mean"]
    return "–" if mean is None else f"{mean:.3f}"


def _per(d: dict) -> str:
    return ", ".join(f"seed {k}: {v:.0f} s" for k, v in d.items())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="configs/demo.yaml")
    ap.add_argument("--gan-seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--det-seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--label", default=None, help="variant name: results go to efficacy_<label>.json")
    ap.add_argument("--arms", nargs="+", default=list(ARMS), help="arms to train (default: all six)")
    ap.add_argument("--root", type=Path, default=REPO / "runs" / "efficacy", help="output root (cached stages)")
    ap.add_argument("--resamples", type=int, default=2000)
    ap.add_argument("--out-dir", type=Path, default=BENCH / "results")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()
    _env()
    source = source_state()
    if source["uncommitted"]:
        print(f"warning: uncommitted changes to {', '.join(source['uncommitted'])}: the results will not "
              f"match commit {source['commit']}, and editing code while the benchmark runs changes what its "
              "detector processes import; run it from a clean checkout (e.g. `git worktree add`)",
              file=sys.stderr)

    t0 = time.perf_counter()
    load_before = os.getloadavg()
    exp = run_experiment(args.config, args.overrides, args.gan_seeds, args.det_seeds, args.root.resolve(),
                         args.arms)
    cfg = exp["cfg"]
    tb = time.perf_counter()
    body = analyse(exp, args.resamples, cfg.report.alpha, cfg.runtime.seed)
    exp["timings"]["bootstrap_s"] = round(time.perf_counter() - tb, 1)
    exp["timings"]["total_s"] = round(time.perf_counter() - t0, 1)
    gans = {}
    for g, res in exp["per_gan"].items():
        gm = json.loads((res["model_dir"] / "metrics.json").read_text())
        q = gm["quality"]
        card = res["augmented"].manifest.get("summary", {})
        gans[g] = {"model": res["model_dir"].name, "augmented": res["augmented"].id,
                   "comparison": str(res["compare"].out_dir.relative_to(args.root.resolve())),
                   "realism_accuracy": q["realism"]["accuracy"], "realism_accuracy_raw_a": q["realism_raw_a"]["accuracy"],
                   "kid": q["realism"]["kid"], "box_edge_f1": q["structure"]["box_edge_f1"],
                   "train_seconds": gm["train_seconds"], "iterations": gm["iterations"],
                   "synthesis": card.get("counts"), "camera": card.get("camera"),
                   "written_realism": written_realism(res["augmented"], exp["dataset"], seed=cfg.runtime.seed)}
    # what the experiment costs from scratch, whether or not this invocation reused cached stages:
    # the GANs' own training time and every detector run's, each counted once (runs shared between
    # GAN seeds are the same run)
    det_runs = {(a.name, r.seed, a.name in USES_SYNTHETIC and g): r.train_seconds
                for g, res in exp["per_gan"].items() for a in res["compare"].metrics.arms
                for r in a.runs if r.train_seconds is not None}
    exp["timings"]["compute"] = {
        "gan_train_s": {g: m["train_seconds"] for g, m in gans.items()},
        "detector_runs": len(det_runs), "detector_train_s": round(sum(det_runs.values()), 1),
        "cached": {g: bool(res["gan_cached"]) for g, res in exp["per_gan"].items()}}
    label = args.label or Path(args.config).stem
    doc = {"benchmark": "efficacy", "label": label, "config": args.config, "overrides": args.overrides,
           "gan_seeds": args.gan_seeds, "detector_seeds": args.det_seeds, "arms": args.arms,
           "resamples": args.resamples,
           "alpha": cfg.report.alpha, **source, "date": time.strftime("%Y-%m-%d %H:%M:%S"),
           "machine": {**_machine(), "loadavg_start_end": [load_before, os.getloadavg()]},
           "timings": exp["timings"], "gans": gans, **body}
    name = "efficacy" if args.label is None else f"efficacy_{args.label}"
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / f"{name}.json").write_text(json.dumps(doc, indent=2, default=str) + "\n")
    (args.out_dir / f"{name}.md").write_text(markdown(doc))
    print(markdown(doc))
    print("results in", args.out_dir / f"{name}.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
