"""Where the gate's default thresholds come from: scores of good vs deliberately broken outputs.

    .venv/bin/python bench/gate_thresholds.py [--config configs/demo.yaml] [--model DIR] [overrides...]

1. Ingest the profile's demo data and train (or reuse, cached) its CycleGAN.
2. Translate every labelled A_train image (geometry "keep"); for each box with both sides >=
   gate.min_box_side, score the A crop against
     good      the generator's own output,
     blurred   output with the part region Gaussian-blurred (sigma = 15 % of the box side): melted,
     shifted   output with the part moved by 30 % of its box size: geometry drift,
     erased    output with the part in-painted away (OpenCV Telea): vanished.
   with edge F1 and gradient SSIM (pipeline.gan.quality) on the gate's crop (box + margin).
3. Per-image scores (saturated share, grey std, checkerboard share) of generator outputs and of
   real B photos, against constant, blown-out and checkerboard-injected (±8 grey levels) outputs.
Writes bench/results/gate_thresholds.json: quantiles per distribution, and for each box metric the
threshold that keeps 95 % of good boxes with the detection rate of each break at it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def blurred(img: np.ndarray, b) -> np.ndarray:
    x, y, w, h = (int(round(v)) for v in b)
    out = img.copy()
    sigma = max(1.0, 0.15 * min(w, h))
    x0, y0, x1, y1 = max(0, x - w // 4), max(0, y - h // 4), min(img.shape[1], x + w + w // 4), min(img.shape[0], y + h + h // 4)
    out[y0:y1, x0:x1] = cv2.GaussianBlur(img, (0, 0), sigma)[y0:y1, x0:x1]
    return out


def erased(img: np.ndarray, b) -> np.ndarray:
    x, y, w, h = (int(round(v)) for v in b)
    mask = np.zeros(img.shape[:2], np.uint8)
    mask[max(0, y - 1) : y + h + 1, max(0, x - 1) : x + w + 1] = 255
    return cv2.inpaint(img, mask, 5, cv2.INPAINT_TELEA)


def shifted(img: np.ndarray, b) -> np.ndarray:
    x, y, w, h = (int(round(v)) for v in b)
    out = erased(img, b)
    dx, dy = int(round(0.3 * w)), int(round(0.3 * h))
    H, W = img.shape[:2]
    part = img[y : y + h, x : x + w]
    tx, ty = min(W - w, x + dx) if x + dx + w <= W else max(0, x - dx), min(H - h, y + dy) if y + dy + h <= H else max(0, y - dy)
    out[ty : ty + h, tx : tx + w] = part
    return out


def quantiles(v) -> dict:
    v = np.asarray([x for x in v if x is not None], dtype=float)
    if not len(v):
        return {"n": 0}
    q = np.quantile(v, [0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99])
    return {"n": int(len(v)), "mean": round(float(v.mean()), 4),
            **{f"p{p}": round(float(x), 4) for p, x in zip((1, 5, 25, 50, 75, 95, 99), q)}}


def checkerboard_injected(img: np.ndarray, amp: float = 8.0) -> np.ndarray:
    yy, xx = np.mgrid[: img.shape[0], : img.shape[1]]
    pat = np.where((yy + xx) % 2 == 0, amp, -amp)[..., None]
    return np.clip(img.astype(np.float32) + pat, 0, 255).astype(np.uint8)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(REPO / "configs" / "demo.yaml"))
    ap.add_argument("--model", type=Path, help="CycleGAN model dir (default: train/reuse the profile's)")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "gate_thresholds.json")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()

    from pipeline.config import load_config
    from pipeline.data.ingest import ingest
    from pipeline.gan.translate import Translator
    from pipeline.synth.gate import box_scores, image_scores

    cfg = load_config(args.config, args.overrides)
    t0 = time.perf_counter()
    dataset = ingest(cfg, progress=False).version
    if args.model is None:
        from pipeline.gan import train_cyclegan

        gan = train_cyclegan(cfg, dataset, progress=False)
        model_dir, gan_metrics = gan.model_dir, gan.metrics
    else:
        model_dir, gan_metrics = args.model, {}
    t_train = time.perf_counter() - t0
    tr = Translator.load(model_dir, direction="AtoB", device="cpu", tile=cfg.gan.tile, overlap=cfg.gan.tile_overlap,
                         batch=cfg.gan.translate_batch)
    gcfg = cfg.synth.gate.model_copy(update={"box_metric": "both"})

    a = dataset.coco("A", "train")
    anns = a.anns_by_image()
    box = {k: {"edge_f1": [], "gradient_ssim": []} for k in ("good", "blurred", "shifted", "erased")}
    img_scores = {k: [] for k in ("generator", "real_B", "constant", "blown_out", "checkerboard_8")}
    for im in a.images:
        src = dataset.read_rgb(im)
        out = tr([src])[0]
        boxes = np.array([x.bbox for x in anns.get(im.id, [])], float).reshape(-1, 4)
        img_scores["generator"].append(image_scores(out))
        img_scores["constant"].append(image_scores(np.full_like(out, int(out.mean()))))
        img_scores["blown_out"].append(image_scores(np.clip(out.astype(np.float32) * 3.0, 0, 255).astype(np.uint8)))
        img_scores["checkerboard_8"].append(image_scores(checkerboard_injected(out)))
        for i, b in enumerate(boxes):
            if min(b[2], b[3]) < gcfg.min_box_side:
                continue
            for kind, img in (("good", out), ("blurred", blurred(out, b)), ("shifted", shifted(out, b)),
                              ("erased", erased(out, b))):
                s = box_scores(src, img, b[None], gcfg)[0]
                for m in ("edge_f1", "gradient_ssim"):
                    box[kind][m].append(s[m])
    for split in ("train", "test"):
        if dataset.has("B", split):
            for im in dataset.coco("B", split).images:
                img_scores["real_B"].append(image_scores(dataset.read_rgb(im)))

    result = {
        "command": " ".join(sys.argv[1:]),
        "profile": cfg.profile, "dataset": dataset.id, "model": str(model_dir), "gan_metrics": gan_metrics,
        "gan_iterations": cfg.gan.iterations, "train_or_load_s": round(t_train, 1),
        "box_margin": gcfg.box_margin, "min_box_side": gcfg.min_box_side,
        "box_scores": {k: {m: quantiles(v[m]) for m in v} for k, v in box.items()},
        "image_scores": {k: {m: quantiles([s.get(m) for s in v]) for m in ("saturated", "std", "checkerboard")}
                         for k, v in img_scores.items()},
        "thresholds": {},
    }
    for m in ("edge_f1", "gradient_ssim"):
        good = np.array(box["good"][m], float)
        t = float(np.quantile(good, 0.05))  # keeps 95 % of good boxes
        result["thresholds"][m] = {
            "keep_95pct_good": round(t, 4),
            "detection_at_it": {k: round(float(np.mean(np.array(box[k][m], float) < t)), 4)
                                for k in ("blurred", "shifted", "erased")},
        }
        grid = np.linspace(0, 1, 101)
        best = max(grid, key=lambda th: np.mean([np.mean(np.array(box[k][m]) < th) for k in ("blurred", "shifted", "erased")])
                   - np.mean(good < th))
        result["thresholds"][m]["youden_best"] = round(float(best), 2)
        result["thresholds"][m]["sweep"] = {
            f"{th:.2f}": {"good_dropped": round(float(np.mean(good < th)), 4),
                          **{k: round(float(np.mean(np.array(box[k][m], float) < th)), 4)
                             for k in ("blurred", "shifted", "erased")}}
            for th in ((0.01, 0.02, 0.05, 0.1) if m == "gradient_ssim" else (0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45))
        }
        result["thresholds"][m]["at_current_default"] = {
            "threshold": getattr(cfg.synth.gate, "min_box_" + m),
            "good_dropped": round(float(np.mean(good < getattr(cfg.synth.gate, "min_box_" + m))), 4),
            **{k: round(float(np.mean(np.array(box[k][m], float) < getattr(cfg.synth.gate, "min_box_" + m))), 4)
               for k in ("blurred", "shifted", "erased")},
        }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["thresholds"], indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
