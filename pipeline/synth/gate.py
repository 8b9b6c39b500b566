"""Quality gate for synthetic images: per-image sanity checks and a per-box structure check.

Per image (on the raw generator output, (H, W, 3) RGB, uint8 or float in [0, 255]):
  finite        share of non-finite values (NaN/inf) must be 0
  saturated     share of pixels blown out (all channels >= 250) or crushed (all <= 5)
  std           grey-level standard deviation (8-bit units): near-constant output is rejected
  checkerboard  share of high-frequency spectral energy sitting on the stride-2/stride-4
                frequencies, the signature of transposed-convolution and tiling artefacts
  realism       optional critic score from an injected callable (higher = more realistic)
Per box (source crop vs synthetic crop, both in the output frame, box grown by a margin so a part
that moved out of its box is caught): edge F1 and/or gradient SSIM from `pipeline.gan.quality`.
A part that vanished, moved or melted scores low; the box is dropped or the image rejected
according to `GateConfig.box_rule`. Every failure becomes one rejected.jsonl row.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipeline.config import GateConfig

Realism = Callable[[np.ndarray], float]


@dataclass
class GateResult:
    """accepted: keep the image; keep[i]: keep box i; rejections: rows for rejected.jsonl."""

    accepted: bool
    keep: list[bool]
    image_scores: dict[str, float]
    box_scores: list[dict[str, float | None]]
    rejections: list[dict[str, Any]] = field(default_factory=list)


# ------------------------------------------------------------------------------- image scores
def to_gray(image: np.ndarray) -> np.ndarray:
    """(H, W) float32 luma (BT.601) in 8-bit units."""
    img = np.asarray(image, dtype=np.float32)
    if img.ndim == 2:
        return img
    return img[..., 0] * 0.299 + img[..., 1] * 0.587 + img[..., 2] * 0.114


def saturated_fraction(image: np.ndarray) -> float:
    """Share of pixels with every channel >= 250 (blown out) or every channel <= 5 (crushed)."""
    img = np.asarray(image)
    lo, hi = img.max(axis=-1) <= 5, img.min(axis=-1) >= 250
    return float(np.mean(lo | hi))


def checkerboard_score(image: np.ndarray) -> float:
    """Share of high-frequency energy (|f| >= 1/8 cycles/pixel) at the stride-2/4 grid frequencies.

    Stride-2 up-sampling leaves periodic energy at f ∈ {±1/4, 1/2} in x and/or y; a natural or
    noisy image spreads its high-frequency energy over all bins, so this share stays near the
    bins' count ratio (~0.4 % at 64²). Returns a value in [0, 1].
    """
    g = to_gray(image).astype(np.float64)
    g -= g.mean()
    h, w = g.shape
    if h < 8 or w < 8:
        return 0.0
    power = np.abs(np.fft.fft2(g)) ** 2
    fy, fx = np.abs(np.fft.fftfreq(h))[:, None], np.abs(np.fft.fftfreq(w))[None, :]
    high = np.maximum(fy, fx) >= 0.125
    total = power[high].sum()
    if total <= 1e-9:
        return 0.0
    grid = np.zeros_like(high)
    for f_y in (0.0, 0.25, 0.5, -0.25):
        for f_x in (0.0, 0.25, 0.5, -0.25):
            if f_y == 0.0 and f_x == 0.0:
                continue
            grid[int(round(f_y * h)) % h, int(round(f_x * w)) % w] = True
    return float(power[grid & high].sum() / total)


def image_scores(image: np.ndarray, realism: Realism | None = None) -> dict[str, float]:
    """All per-image scores of a raw output (NaN/inf short-circuit the others)."""
    arr = np.asarray(image)
    nonfinite = 0.0 if arr.dtype.kind in "ui" else float(np.mean(~np.isfinite(arr)))
    scores = {"nonfinite": nonfinite}
    if nonfinite > 0:
        return scores
    arr8 = as_uint8(arr)
    scores["saturated"] = saturated_fraction(arr8)
    scores["std"] = float(to_gray(arr8).std())
    scores["checkerboard"] = checkerboard_score(arr8)
    if realism is not None:
        scores["realism"] = float(realism(arr8))
    return scores


def as_uint8(image: np.ndarray) -> np.ndarray:
    arr = np.asarray(image)
    if arr.dtype == np.uint8:
        return arr
    return np.clip(np.rint(arr), 0, 255).astype(np.uint8)


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


def box_scores(
    source: np.ndarray, synthetic: np.ndarray, boxes: np.ndarray, cfg: GateConfig
) -> list[dict[str, float | None]]:
    """Per box {"edge_f1", "gradient_ssim"} between source and synthetic crops (None = too small)."""
    from pipeline.gan.quality import edge_f1, gradient_ssim

    h, w = source.shape[:2]
    out: list[dict[str, float | None]] = []
    for box in np.asarray(boxes, dtype=np.float64).reshape(-1, 4):
        win = box_window(box, (w, h), cfg.box_margin)
        if win is None or min(box[2], box[3]) < cfg.min_box_side:
            out.append({"edge_f1": None, "gradient_ssim": None})
            continue
        x0, y0, x1, y1 = win
        a, b = source[y0:y1, x0:x1], synthetic[y0:y1, x0:x1]
        scores: dict[str, float | None] = {"edge_f1": None, "gradient_ssim": None}
        if cfg.box_metric in ("edge_f1", "both"):
            scores["edge_f1"] = float(edge_f1(a, b))
        if cfg.box_metric in ("gradient_ssim", "both"):
            scores["gradient_ssim"] = float(gradient_ssim(a, b))
        out.append(scores)
    return out


def box_failures(scores: dict[str, float | None], cfg: GateConfig) -> list[tuple[str, float, float]]:
    out = []
    if scores.get("edge_f1") is not None and scores["edge_f1"] < cfg.min_box_edge_f1:
        out.append(("box_edge_f1", scores["edge_f1"], cfg.min_box_edge_f1))
    if scores.get("gradient_ssim") is not None and scores["gradient_ssim"] < cfg.min_box_gradient_ssim:
        out.append(("box_gradient_ssim", scores["gradient_ssim"], cfg.min_box_gradient_ssim))
    return out


# ----------------------------------------------------------------------------------- the gate
def gate(
    source: np.ndarray,
    synthetic: np.ndarray,
    boxes: np.ndarray,
    cfg: GateConfig,
    *,
    realism: Realism | None = None,
) -> GateResult:
    """Judge one synthetic image against its (geometrically aligned) source.

    source: (H, W, 3) uint8 RGB, the A image after the same affine map; synthetic: the raw
    translation, same shape; boxes: (N, 4) xywh pixels in that frame.
    Rejection rows carry check, score, threshold, box index (None for image checks) and action.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    n = len(boxes)
    if source.shape[:2] != np.asarray(synthetic).shape[:2]:
        raise ValueError(f"source {source.shape} and synthetic {np.asarray(synthetic).shape} differ in size")
    scores = image_scores(synthetic, realism)
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
