"""Where the gate's default thresholds come from: scores of good vs deliberately broken outputs.

    .venv/bin/python bench/gate_thresholds.py [--config configs/demo.yaml] [--model DIR] [overrides...]

1. Ingest the profile's demo data and train (or reuse, cached) its CycleGAN.
2. Translate every labelled A_train image (geometry "keep"); for each box with both sides >=
   gate.min_box_side, score the A crop against
     good       the generator's own output,
     blurred    output with the part region Gaussian-blurred (sigma = 15 % of the box side): melted,
     erased     output with the part in-painted away (OpenCV Telea): vanished,
     shifted    the part moved by 30 % of its box size in x and y (the old "shifted" break),
     shift_x30  moved by 30 % of its width along x only (still overlapping its box),
     shift_10 / shift_20   moved by 10 / 20 % in x and y,
     diag_2 .. diag_10     moved diagonally by 2, 4, 6, 10 pixels,
   with edge F1, gradient SSIM and the offset (cross-correlation peak) on the gate's windows.
3. Per-image scores (saturated share, grey std, checkerboard share, seam step) of generator
   outputs, of the same images translated in tiles (tile = half the image side, so every output
   has tile borders), and of real B photos from the B val and unlabelled splits (never B test:
   thresholds must not be tuned on the split the detectors are evaluated on), against constant,
   blown-out, checkerboard-injected (±8 grey levels) and seam-injected (a step of 3/6/10/15 grey
   levels along one column) outputs.
4. The whole gate with the current defaults on every good (and tiled) translation: the false
   reject rate per check.
Writes bench/results/gate_thresholds.json: quantiles per distribution, sweeps per threshold.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

BOX_KINDS = ("good", "blurred", "erased", "shifted", "shift_x30", "shift_10", "shift_20",
             "diag_2", "diag_4", "diag_6", "diag_10")
BROKEN = BOX_KINDS[1:]
MOVED = ("shifted", "shift_x30", "shift_10", "shift_20", "diag_2", "diag_4", "diag_6", "diag_10")


def _xywh(b) -> tuple[int, int, int, int]:
    x, y, w, h = (round(float(v)) for v in b)
    return x, y, w, h


def blurred(img: np.ndarray, b) -> np.ndarray:
    x, y, w, h = _xywh(b)
    out = img.copy()
    sigma = max(1.0, 0.15 * min(w, h))
    x0, y0 = max(0, x - w // 4), max(0, y - h // 4)
    x1, y1 = min(img.shape[1], x + w + w // 4), min(img.shape[0], y + h + h // 4)
    out[y0:y1, x0:x1] = cv2.GaussianBlur(img, (0, 0), sigma)[y0:y1, x0:x1]
    return out


def erased(img: np.ndarray, b) -> np.ndarray:
    x, y, w, h = _xywh(b)
    mask = np.zeros(img.shape[:2], np.uint8)
    mask[max(0, y - 1) : y + h + 1, max(0, x - 1) : x + w + 1] = 255
    return cv2.inpaint(img, mask, 5, cv2.INPAINT_TELEA)


def moved(img: np.ndarray, b, dx: int, dy: int) -> np.ndarray:
    """The part's box content in-painted away and pasted (dx, dy) pixels further (flipped in
    direction where the image border would cut it)."""
    x, y, w, h = _xywh(b)
    H, W = img.shape[:2]
    out = erased(img, b)
    part = img[y : y + h, x : x + w]
    tx = x + dx if x + dx + w <= W else x - dx
    ty = y + dy if y + dy + h <= H else y - dy
    tx, ty = min(max(0, tx), W - w), min(max(0, ty), H - h)
    out[ty : ty + h, tx : tx + w] = part
    return out


def broken(kind: str, img: np.ndarray, b) -> np.ndarray:
    w, h = float(b[2]), float(b[3])
    if kind == "good":
        return img
    if kind == "blurred":
        return blurred(img, b)
    if kind == "erased":
        return erased(img, b)
    if kind == "shifted":
        return moved(img, b, round(0.3 * w), round(0.3 * h))
    if kind == "shift_x30":
        return moved(img, b, round(0.3 * w), 0)
    if kind.startswith("shift_"):
        f = int(kind.split("_")[1]) / 100
        return moved(img, b, round(f * w), round(f * h))
    d = int(kind.split("_")[1])
    return moved(img, b, d, d)


def quantiles(v) -> dict:
    v = np.asarray([x for x in v if x is not None], dtype=float)
    if not len(v):
        return {"n": 0}
    q = np.quantile(v, [0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99])
    return {"n": len(v), "mean": round(float(v.mean()), 4),
            **{f"p{p}": round(float(x), 4) for p, x in zip((1, 5, 25, 50, 75, 95, 99), q)}}


def checkerboard_injected(img: np.ndarray, amp: float = 8.0) -> np.ndarray:
    yy, xx = np.mgrid[: img.shape[0], : img.shape[1]]
    pat = np.where((yy + xx) % 2 == 0, amp, -amp)[..., None]
    return np.clip(img.astype(np.float32) + pat, 0, 255).astype(np.uint8)


def seam_injected(img: np.ndarray, step: float, rng: np.random.Generator) -> np.ndarray:
    """A tile border whose two sides disagree by `step` grey levels, at a random column."""
    x = int(rng.integers(img.shape[1] // 4, 3 * img.shape[1] // 4))
    out = img.astype(np.float32)
    out[:, x:] += step
    return np.clip(out, 0, 255).astype(np.uint8)


def _rate(v, pred) -> float:
    v = [x for x in v if x is not None]
    return round(float(np.mean([pred(x) for x in v])), 4) if v else 0.0


def _offset_flags(box: dict, kind: str, thr: float, px: float, gain: float) -> list[bool]:
    b = box[kind]
    return [o is not None and o > thr and p >= px and g >= gain
            for o, p, g in zip(b["offset"], b["offset_px"], b["offset_gain"])]


def offset_sweep(box: dict, cfg) -> dict:
    """Share of boxes the offset check flags, per kind, over (max_box_offset, min_box_offset_px,
    min_box_offset_gain)."""
    out = {}
    for thr in (0.1, 0.15, 0.2, 0.25):
        for px in (3.0, 4.0):
            for gain in (0.0, 0.1, 0.2, 0.3):
                key = f"{thr:.2f}@{px:g}px@gain{gain:g}"
                out[key] = {k: round(float(np.mean(_offset_flags(box, k, thr, px, gain) or [0])), 4)
                            for k in BOX_KINDS}
    out["at_current_default"] = (f"{cfg.max_box_offset:.2f}@{cfg.min_box_offset_px:g}px"
                                 f"@gain{cfg.min_box_offset_gain:g}")
    return out


def combined_detection(box: dict, cfg) -> dict:
    """Share of boxes dropped by edge F1 OR offset (what the gate does): at the current defaults,
    with edge F1 alone, and over a few offset settings (threshold@px@gain) at the default F1."""

    def rates(f1: float, offset: tuple[float, float, float] | None) -> dict:
        out = {}
        for kind in BOX_KINDS:
            moved = _offset_flags(box, kind, *offset) if offset else [False] * len(box[kind]["edge_f1"])
            flags = [(e is not None and e < f1) or m for e, m in zip(box[kind]["edge_f1"], moved)]
            out[kind] = round(float(np.mean(flags)), 4) if flags else 0.0
        return out

    default = (cfg.max_box_offset, cfg.min_box_offset_px, cfg.min_box_offset_gain)
    grid = {f"{t:.2f}@{p:g}px@gain{g:g}": (t, p, g)
            for t in (0.15, 0.2, 0.25) for p in (3.0,) for g in (0.0, 0.1, 0.2)}
    return {"at_defaults": rates(cfg.min_box_edge_f1, default),
            "edge_f1_only": rates(cfg.min_box_edge_f1, None),
            **{f"edge_f1+offset {k}": rates(cfg.min_box_edge_f1, v) for k, v in grid.items()}}


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
    from pipeline.synth.gate import BOX_SCORES, box_scores, gate, image_scores

    cfg = load_config(args.config, args.overrides)
    t0 = time.perf_counter()
    dataset = ingest(cfg, progress=False).version
    if args.model is None:
        from pipeline.gan import train_translator

        gan = train_translator(cfg, dataset, progress=False)
        model_dir, gan_metrics = gan.model_dir, gan.metrics
    else:
        model_dir, gan_metrics = args.model, {}
    t_train = time.perf_counter() - t0
    g = cfg.gan
    tr = Translator.load(model_dir, direction="AtoB", device="cpu", tile=g.tile, overlap=g.tile_overlap,
                         batch=g.translate_batch)
    side = cfg.data.demo.image_size
    # Tiles of half the working side: every output has tile borders for the seam check to see.
    tiled = Translator.load(model_dir, direction="AtoB", device="cpu", tile=max(32, side // 2),
                            overlap=g.tile_overlap // 2, batch=g.translate_batch)
    gcfg = cfg.synth.gate.model_copy(update={"box_metric": "both"})
    rng = np.random.default_rng(0)

    a = dataset.coco("A", "train")
    anns = a.anns_by_image()
    box = {k: {m: [] for m in BOX_SCORES} for k in BOX_KINDS}
    img_kinds = ("generator", "generator_tiled", "real_B", "constant", "blown_out", "checkerboard_8",
                 "seam_3", "seam_6", "seam_10", "seam_15")
    img_scores = {k: [] for k in img_kinds}
    gate_outcome = {"generator": Counter(), "generator_tiled": Counter()}
    n_images = n_boxes = 0
    for im in a.images:
        src = dataset.read_rgb(im)
        out, out_tiled = tr([src])[0], tiled([src])[0]
        boxes = np.array([x.bbox for x in anns.get(im.id, [])], float).reshape(-1, 4)
        img_scores["generator"].append(image_scores(out, source=src))
        img_scores["generator_tiled"].append(image_scores(out_tiled, source=src))
        img_scores["constant"].append(image_scores(np.full_like(out, int(out.mean())), source=src))
        blown = np.clip(out.astype(np.float32) * 3.0, 0, 255).astype(np.uint8)
        img_scores["blown_out"].append(image_scores(blown, source=src))
        img_scores["checkerboard_8"].append(image_scores(checkerboard_injected(out), source=src))
        for step in (3, 6, 10, 15):
            img_scores[f"seam_{step}"].append(image_scores(seam_injected(out, step, rng), source=src))
        n_images += 1
        n_boxes += len(boxes)
        for key, syn in (("generator", out), ("generator_tiled", out_tiled)):
            res = gate(src, syn, boxes, cfg.synth.gate)
            gate_outcome[key]["rejected_images"] += int(not res.accepted)
            gate_outcome[key]["dropped_boxes"] += sum(not k for k in res.keep) if res.accepted else 0
            for r in res.rejections:
                gate_outcome[key][r["check"]] += 1
        for b in boxes:
            if min(b[2], b[3]) < gcfg.min_box_side:
                continue
            for kind in BOX_KINDS:
                s = box_scores(src, broken(kind, out, b), b[None], gcfg)[0]
                for m in box[kind]:
                    box[kind][m].append(s[m])
    real_splits = [s for s in ("val", "unlabelled") if dataset.has("B", s)]
    for split in real_splits:
        for im in dataset.coco("B", split).images:
            img_scores["real_B"].append(image_scores(dataset.read_rgb(im)))

    image_metrics = ("saturated", "std", "checkerboard", "seam")
    result = {
        "command": " ".join(sys.argv[1:]),
        "profile": cfg.profile, "dataset": dataset.id, "model": str(model_dir), "gan_metrics": gan_metrics,
        "gan_iterations": cfg.gan.iterations, "train_or_load_s": round(t_train, 1),
        "gate": cfg.synth.gate.model_dump(mode="json"),
        "a_images": n_images, "a_boxes": n_boxes, "real_B_splits": real_splits,
        "box_scores": {k: {m: quantiles(v[m]) for m in v} for k, v in box.items()},
        "image_scores": {k: {m: quantiles([s.get(m) for s in v]) for m in image_metrics}
                         for k, v in img_scores.items()},
        "gate_false_rejects": {k: {"images": n_images, "boxes": n_boxes, **dict(c)}
                               for k, c in gate_outcome.items()},
        "thresholds": {},
    }
    for m in ("edge_f1", "gradient_ssim"):
        good = np.array(box["good"][m], float)
        t = float(np.quantile(good, 0.05))  # keeps 95 % of good boxes
        result["thresholds"][m] = {
            "keep_95pct_good": round(t, 4),
            "detection_at_it": {k: _rate(box[k][m], lambda x, t=t: x < t) for k in BROKEN},
            "sweep": {
                f"{th:.2f}": {"good_dropped": _rate(box["good"][m], lambda x, th=th: x < th),
                              **{k: _rate(box[k][m], lambda x, th=th: x < th) for k in BROKEN}}
                for th in ((0.01, 0.02, 0.05, 0.1) if m == "gradient_ssim"
                           else (0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45))
            },
        }
    result["thresholds"]["box_offset"] = offset_sweep(box, cfg.synth.gate)
    result["thresholds"]["edge_f1_or_offset"] = combined_detection(box, cfg.synth.gate)
    seam_kinds = ("generator", "generator_tiled", "real_B", "seam_3", "seam_6", "seam_10", "seam_15")
    result["thresholds"]["seam"] = {
        f"{th:g}": {k: _rate([s.get("seam") for s in img_scores[k]], lambda x, th=th: x > th) for k in seam_kinds}
        for th in (4, 6, 8, 10, 12)
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("thresholds", "gate_false_rejects")}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
