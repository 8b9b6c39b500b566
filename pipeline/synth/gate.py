"""Quality gate for synthetic images: per-image sanity checks and per-box structure checks.

Per image (on the raw generator output, (H, W, 3) RGB, uint8 or float in [0, 255]):
  finite        count of non-finite values (NaN/inf) must be 0; a Translator reports the ones it
                clamped before its uint8 cast, float outputs are counted here
  saturated     share of pixels blown out (all channels >= 250) or crushed (all <= 5)
  std           grey-level standard deviation (8-bit units): near-constant output is rejected
  checkerboard  share of high-frequency spectral energy sitting on the stride-2/stride-4
                frequencies, the signature of transposed-convolution artefacts
  seam          strongest straight row/column step not present in the source (8-bit units): tiles
                translated apart that disagree at their border (artifacts.py)
  realism       optional P(real metal) from the model's realism critic (higher = more realistic)
Per box (source crop vs synthetic crop, both in the output frame, box grown by a margin):
  edge F1 and/or gradient SSIM from `pipeline.gan.quality`: a part that vanished or melted;
  offset: the peak of the cross-correlation of the source and synthetic gradient maps around the
  box: a part that moved (still overlapping its box, which edge F1 with its 2-px tolerance misses).
The box is dropped or the image rejected according to `GateConfig.box_rule`. Every failure
becomes one rejected.jsonl row. With `GateConfig.erase_dropped` the pixels of a dropped box are
inpainted (`erase_boxes`), so what failed is gone rather than left as an unlabelled part.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from pipeline.config import GateConfig
from pipeline.synth.artifacts import checkerboard_score, seam_score, to_gray

__all__ = ["GateResult", "Realism", "as_uint8", "box_offset", "box_scores", "checkerboard_score", "erase_boxes",
           "gate", "image_scores", "saturated_fraction", "seam_score", "to_gray"]

Realism = Callable[[np.ndarray], float]
# Enters the synthesis cache key: bump it when the gate decides differently on the same inputs, so
# cached augmented sets (and the detector runs trained on them) are redone, and nothing else is.
# 2: edge F1 does not score a box whose source crop has no edges.
REVISION = 2
BOX_SCORES = ("edge_f1", "gradient_ssim", "offset", "offset_px", "offset_gain")


@dataclass
class GateResult:
    """accepted: keep the image; keep[i]: keep box i; rejections: rows for rejected.jsonl."""

    accepted: bool
    keep: list[bool]
    image_scores: dict[str, float]
    box_scores: list[dict[str, float | None]]
    rejections: list[dict[str, Any]] = field(default_factory=list)


# ------------------------------------------------------------------------------- image scores
def saturated_fraction(image: np.ndarray) -> float:
    """Share of pixels with every channel >= 250 (blown out) or every channel <= 5 (crushed)."""
    img = np.asarray(image)
    lo, hi = img.max(axis=-1) <= 5, img.min(axis=-1) >= 250
    return float(np.mean(lo | hi))


def image_scores(
    image: np.ndarray, realism: Realism | None = None, *, nonfinite: int = 0, source: np.ndarray | None = None
) -> dict[str, float]:
    """All per-image scores of a raw output (non-finite values short-circuit the others).

    nonfinite: NaN/inf values the generator produced before its own uint8 cast (a Translator
    clamps them away, so they are counted there); float outputs are counted here as well.
    source: the aligned A image, so the seam score ignores straight lines the source already has.
    """
    arr = np.asarray(image)
    own = 0 if arr.dtype.kind in "ui" else int(np.count_nonzero(~np.isfinite(arr)))
    scores = {"nonfinite": float(own + int(nonfinite))}
    if scores["nonfinite"] > 0:
        return scores
    arr8 = as_uint8(arr)
    scores["saturated"] = saturated_fraction(arr8)
    scores["std"] = float(to_gray(arr8).std())
    scores["checkerboard"] = checkerboard_score(arr8)
    scores["seam"] = seam_score(arr8, source)
    if realism is not None:
        scores["realism"] = float(realism(arr8))
    return scores


def as_uint8(image: np.ndarray) -> np.ndarray:
    arr = np.asarray(image)
    if arr.dtype == np.uint8:
        return arr
    return np.clip(np.rint(np.nan_to_num(arr, nan=0.0, posinf=255.0, neginf=0.0)), 0, 255).astype(np.uint8)


def image_failures(scores: dict[str, float], cfg: GateConfig) -> list[tuple[str, float, float]]:
    """(check, score, threshold) for every per-image check that failed."""
    out = []
    if scores["nonfinite"] > 0:
        return [("finite", scores["nonfinite"], 0.0)]
    if scores["saturated"] > cfg.max_saturated_fraction:
        out.append(("saturated", scores["saturated"], cfg.max_saturated_fraction))
    if scores["std"] < cfg.min_std:
        out.append(("near_constant", scores["std"], cfg.min_std))
    if scores["checkerboard"] > cfg.max_checkerboard:
        out.append(("checkerboard", scores["checkerboard"], cfg.max_checkerboard))
    if cfg.max_seam is not None and scores.get("seam", 0.0) > cfg.max_seam:
        out.append(("seam", scores["seam"], cfg.max_seam))
    if cfg.min_realism is not None and "realism" in scores and scores["realism"] < cfg.min_realism:
        out.append(("realism", scores["realism"], cfg.min_realism))
    return out


# --------------------------------------------------------------------------------- box scores
def box_window(box: np.ndarray, size: tuple[int, int], margin: float) -> tuple[int, int, int, int] | None:
    """Integer crop window (x0, y0, x1, y1) around an xywh box grown by `margin`·side (>= 2 px)."""
    x, y, w, h = (float(v) for v in box)
    mx, my = max(2.0, margin * w), max(2.0, margin * h)
    x0, y0 = int(np.floor(max(0.0, x - mx))), int(np.floor(max(0.0, y - my)))
    x1, y1 = int(np.ceil(min(size[0], x + w + mx))), int(np.ceil(min(size[1], y + h + my)))
    if x1 - x0 < 2 or y1 - y0 < 2:
        return None
    return x0, y0, x1, y1


def gradient_map(image: np.ndarray) -> np.ndarray:
    """(H, W) float32 Sobel gradient magnitude of the lightly smoothed luma.

    Magnitude, not signed gradients: the translation inverts contrast (a bright bed becomes a
    dark background), which flips signs but keeps where the edges are.
    """
    g = cv2.GaussianBlur(to_gray(image), (0, 0), 1.0)
    return cv2.magnitude(cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=3), cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=3))


def box_offset(
    src_grad: np.ndarray, syn_grad: np.ndarray, box: np.ndarray, win: tuple[int, int, int, int], search: float
) -> tuple[int, int, float] | None:
    """Where the part in `box` went: (dx, dy) pixels of the best match, and the match's gain.

    The source gradient map inside the box window is matched (normalised cross-correlation)
    against the synthetic one at every shift up to `search` x the box side in each axis; the
    peak is the part's displacement. gain = correlation at the peak minus at zero shift (0 when
    it did not move). None when the window has no structure to match.
    """
    x0, y0, x1, y1 = win
    template = src_grad[y0:y1, x0:x1]
    if float(template.std()) < 1e-3:
        return None
    h, w = syn_grad.shape
    rx, ry = int(np.ceil(search * box[2])), int(np.ceil(search * box[3]))
    sx0, sy0, sx1, sy1 = max(0, x0 - rx), max(0, y0 - ry), min(w, x1 + rx), min(h, y1 + ry)
    corr = cv2.matchTemplate(np.ascontiguousarray(syn_grad[sy0:sy1, sx0:sx1]), np.ascontiguousarray(template),
                             cv2.TM_CCOEFF_NORMED)
    corr = np.nan_to_num(corr, nan=-1.0, posinf=-1.0, neginf=-1.0)  # flat synthetic areas
    zy, zx = y0 - sy0, x0 - sx0
    # Ties (e.g. a symmetric part) resolve to the smallest shift: nothing moved unless it must have.
    dy, dx = np.mgrid[-zy : corr.shape[0] - zy, -zx : corr.shape[1] - zx]
    order = np.lexsort(((dx**2 + dy**2).ravel(), -np.round(corr, 6).ravel()))
    by, bx = np.unravel_index(order[0], corr.shape)
    return int(bx - zx), int(by - zy), float(corr[by, bx] - corr[zy, zx])


def box_scores(
    source: np.ndarray, synthetic: np.ndarray, boxes: np.ndarray, cfg: GateConfig
) -> list[dict[str, float | None]]:
    """Per box {"edge_f1", "gradient_ssim", "offset", "offset_px", "offset_gain"} between source
    and synthetic crops (None = not scored: box too small, metric off, or no structure; edge F1 is
    not scored where the source crop has no edges).

    offset: the part's displacement as a share of its box side, max(|dx|/w, |dy|/h);
    offset_px: its length in pixels; offset_gain: how much better the part matches there than in
    place (correlation difference, 0..2).
    """
    from pipeline.gan.quality import edge_f1, edge_map, gradient_ssim

    h, w = source.shape[:2]
    out: list[dict[str, float | None]] = []
    grads = None
    for box in np.asarray(boxes, dtype=np.float64).reshape(-1, 4):
        scores: dict[str, float | None] = dict.fromkeys(BOX_SCORES)
        win = box_window(box, (w, h), cfg.box_margin)
        if win is None or min(box[2], box[3]) < cfg.min_box_side:
            out.append(scores)
            continue
        x0, y0, x1, y1 = win
        a, b = source[y0:y1, x0:x1], synthetic[y0:y1, x0:x1]
        # A source crop without edges (a pale part on a pale bed: the median-scaled Canny thresholds
        # of a bright crop sit above its gradients) gives F1 0 whatever the translation made of
        # it: such a box is not scored by edge F1, as the offset check skips a window with no
        # structure.
        if cfg.box_metric in ("edge_f1", "both") and edge_map(a).any():
            scores["edge_f1"] = float(edge_f1(a, b))
        if cfg.box_metric in ("gradient_ssim", "both"):
            scores["gradient_ssim"] = float(gradient_ssim(a, b))
        if cfg.max_box_offset is not None:
            if grads is None:
                grads = gradient_map(source), gradient_map(synthetic)
            found = box_offset(grads[0], grads[1], box, win, cfg.box_offset_search)
            if found is not None:
                dx, dy, gain = found
                scores["offset"] = max(abs(dx) / box[2], abs(dy) / box[3])
                scores["offset_px"] = float(np.hypot(dx, dy))
                scores["offset_gain"] = gain
        out.append(scores)
    return out


def box_failures(scores: dict[str, float | None], cfg: GateConfig) -> list[tuple[str, float, float]]:
    out = []
    if scores.get("edge_f1") is not None and scores["edge_f1"] < cfg.min_box_edge_f1:
        out.append(("box_edge_f1", scores["edge_f1"], cfg.min_box_edge_f1))
    if scores.get("gradient_ssim") is not None and scores["gradient_ssim"] < cfg.min_box_gradient_ssim:
        out.append(("box_gradient_ssim", scores["gradient_ssim"], cfg.min_box_gradient_ssim))
    off, px, gain = scores.get("offset"), scores.get("offset_px"), scores.get("offset_gain")
    if (cfg.max_box_offset is not None and off is not None and off > cfg.max_box_offset
            and px is not None and px >= cfg.min_box_offset_px and gain is not None
            and gain >= cfg.min_box_offset_gain):
        out.append(("box_offset", off, cfg.max_box_offset))
    return out


# ----------------------------------------------------------------------------------- the gate
def gate(
    source: np.ndarray,
    synthetic: np.ndarray,
    boxes: np.ndarray,
    cfg: GateConfig,
    *,
    realism: Realism | None = None,
    nonfinite: int = 0,
) -> GateResult:
    """Judge one synthetic image against its (geometrically aligned) source.

    source: (H, W, 3) uint8 RGB, the A image after the same affine map; synthetic: the raw
    translation, same shape; boxes: (N, 4) xywh pixels in that frame; nonfinite: NaN/inf values
    the generator reported for this image before its uint8 cast.
    Rejection rows carry check, score, threshold, box index (None for image checks) and action.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    n = len(boxes)
    if source.shape[:2] != np.asarray(synthetic).shape[:2]:
        raise ValueError(f"source {source.shape} and synthetic {np.asarray(synthetic).shape} differ in size")
    scores = image_scores(synthetic, realism, nonfinite=nonfinite, source=source)
    rows: list[dict[str, Any]] = [
        {"check": c, "score": s, "threshold": t, "box": None, "action": "reject_image"}
        for c, s, t in image_failures(scores, cfg)
    ]
    if rows:
        return GateResult(False, [False] * n, scores, [], rows)

    per_box = box_scores(source, as_uint8(synthetic), boxes, cfg)
    keep = [True] * n
    box_rows = []
    for i, s in enumerate(per_box):
        for c, sc, t in box_failures(s, cfg):
            keep[i] = False
            box_rows.append(
                {"check": c, "score": sc, "threshold": t, "box": i, "bbox": boxes[i].round(2).tolist()}
            )
    dropped = n - sum(keep)
    reject = bool(dropped) and (
        cfg.box_rule == "reject_image" or dropped / n > cfg.max_dropped_fraction or dropped == n
    )
    for r in box_rows:
        r["action"] = "reject_image" if reject else "drop_box"
    if reject:
        box_rows.append(
            {"check": "dropped_boxes", "score": dropped / n, "threshold": cfg.max_dropped_fraction,
             "box": None, "action": "reject_image"}
        )
    return GateResult(not reject, keep if not reject else [False] * n, scores, per_box, box_rows)


def erase_boxes(image: np.ndarray, dropped: np.ndarray, kept: np.ndarray, margin: float = 0.1) -> np.ndarray:
    """`image` with the `dropped` boxes (xywh px, grown by `margin`·side, >= 2 px) painted over.

    The region is filled from its surroundings (OpenCV Telea inpainting), leaving every pixel of
    the `kept` boxes as it was: a part that overlaps a dropped one keeps its own pixels. Returns
    a new uint8 array; the input is not modified.
    """
    img = as_uint8(image)
    h, w = img.shape[:2]
    mask = np.zeros((h, w), np.uint8)
    for box in np.asarray(dropped, dtype=np.float64).reshape(-1, 4):
        win = box_window(box, (w, h), margin)
        if win is not None:
            mask[win[1]:win[3], win[0]:win[2]] = 255
    for x, y, bw, bh in np.asarray(kept, dtype=np.float64).reshape(-1, 4):
        mask[int(np.floor(y)):int(np.ceil(y + bh)), int(np.floor(x)):int(np.ceil(x + bw))] = 0
    if not mask.any():
        return img.copy()
    return cv2.inpaint(np.ascontiguousarray(img), mask, 3, cv2.INPAINT_TELEA)
