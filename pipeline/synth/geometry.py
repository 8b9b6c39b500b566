"""One explicit 2×3 affine map per output image, applied to pixels and to boxes alike.

Coordinates are continuous *pixel-edge* coordinates: pixel column i covers [i, i+1), so an image
of width W spans [0, W] and a COCO box `[x, y, w, h]` covers [x, x+w] × [y, y+h]. Every geometric
step (resize, letterbox/pad, crop, tile) is an affine map in these coordinates; steps compose by
matrix product, so each synthetic image carries exactly one map from its source A image.

OpenCV's `warpAffine` works in pixel-*centre* (index) coordinates, where pixel i sits at i, i.e.
edge coordinate i + 0.5. `warp_image` converts, so a box transformed with the same map lands on
exactly the pixels the image transform moved there (tests draw filled rectangles and compare).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

Affine = np.ndarray  # (2, 3) float64, maps [x, y, 1] -> [x', y'] in edge coordinates


def identity() -> Affine:
    return np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])


def scale(sx: float, sy: float) -> Affine:
    """Resize by factors sx, sy (an image of W×H becomes sx·W × sy·H)."""
    return np.array([[float(sx), 0.0, 0.0], [0.0, float(sy), 0.0]])


def translate(tx: float, ty: float) -> Affine:
    """Shift by (tx, ty) pixels: padding is a positive shift, cropping at (x0, y0) is (-x0, -y0)."""
    return np.array([[1.0, 0.0, float(tx)], [0.0, 1.0, float(ty)]])


def compose(*maps: Affine) -> Affine:
    """The map that applies `maps[0]` first, then `maps[1]`, ... (left to right)."""
    out = np.eye(3)
    for m in maps:
        out = np.vstack([m, [0.0, 0.0, 1.0]]) @ out
    return out[:2]


def invert(m: Affine) -> Affine:
    return np.linalg.inv(np.vstack([m, [0.0, 0.0, 1.0]]))[:2]


@dataclass(frozen=True)
class ImageTransform:
    """A map from a source image to an output image of `size` = (width, height) pixels."""

    matrix: Affine
    size: tuple[int, int]

    def then(self, m: Affine, size: tuple[int, int]) -> "ImageTransform":
        return ImageTransform(compose(self.matrix, m), (int(size[0]), int(size[1])))

    def to_list(self) -> list[list[float]]:
        return [[round(float(v), 6) for v in row] for row in self.matrix]


# -------------------------------------------------------------------------------------- pixels
def _index_matrix(m: Affine) -> Affine:
    """Edge-coordinate map -> OpenCV index-coordinate map: shift +0.5, apply m, shift -0.5."""
    return compose(translate(0.5, 0.5), m, translate(-0.5, -0.5))


def warp_image(
    image: np.ndarray,
    t: ImageTransform,
    *,
    interpolation: int = cv2.INTER_LINEAR,
    border_value: tuple[int, int, int] = (0, 0, 0),
) -> np.ndarray:
    """Apply `t` to an (H, W, C) image; areas outside the source are filled with `border_value`.

    Downscaling by more than 2× uses area averaging first (warpAffine alone would alias).
    """
    m = t.matrix
    sx, sy = math.hypot(m[0, 0], m[1, 0]), math.hypot(m[0, 1], m[1, 1])
    is_axis_aligned = abs(m[0, 1]) < 1e-12 and abs(m[1, 0]) < 1e-12
    if is_axis_aligned and (sx < 0.5 or sy < 0.5):
        h, w = image.shape[:2]
        nw, nh = max(1, round(w * sx)), max(1, round(h * sy))
        image = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA)
        m = compose(scale(w / nw, h / nh), m)  # the pre-resize is undone inside m
    out = cv2.warpAffine(
        image,
        _index_matrix(m),
        t.size,
        flags=interpolation,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=border_value,
    )
    return out


# --------------------------------------------------------------------------------------- boxes
def transform_boxes(boxes: np.ndarray, t: ImageTransform) -> tuple[np.ndarray, np.ndarray]:
    """Map (N, 4) xywh boxes (pixels) through `t`; returns (clipped boxes (N, 4), visibility (N,)).

    Each box's 4 corners are transformed, the axis-aligned extent taken, then clipped to the
    output image. Visibility = clipped area / unclipped area (0 when the box left the image).
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if len(boxes) == 0:
        return boxes.copy(), np.zeros(0)
    x0, y0 = boxes[:, 0], boxes[:, 1]
    x1, y1 = x0 + boxes[:, 2], y0 + boxes[:, 3]
    corners = np.stack(
        [np.stack([x0, y0], 1), np.stack([x1, y0], 1), np.stack([x0, y1], 1), np.stack([x1, y1], 1)], 1
    )  # (N, 4, 2)
    mapped = corners @ t.matrix[:, :2].T + t.matrix[:, 2]
    lo, hi = mapped.min(axis=1), mapped.max(axis=1)
    area = np.prod(hi - lo, axis=1)
    w, h = t.size
    lo_c = np.clip(lo, 0, [w, h])
    hi_c = np.clip(hi, 0, [w, h])
    wh = np.maximum(hi_c - lo_c, 0)
    vis = np.where(area > 0, np.prod(wh, axis=1) / np.maximum(area, 1e-12), 0.0)
    return np.concatenate([lo_c, wh], axis=1), vis


# ------------------------------------------------------------------------------------ planning
def fit_transform(width: int, height: int, size: int | None, mode: str) -> ImageTransform:
    """Bring a W×H source to the working size.

    mode "keep": identity; "resize": stretch to size×size (aspect not kept); "letterbox": scale
    the long side to `size`, keep aspect, pad the short side equally on both sides.
    """
    if mode == "keep" or size is None:
        return ImageTransform(identity(), (width, height))
    if mode == "resize":
        return ImageTransform(scale(size / width, size / height), (size, size))
    if mode == "letterbox":
        s = size / max(width, height)
        nw, nh = width * s, height * s
        return ImageTransform(compose(scale(s, s), translate((size - nw) / 2, (size - nh) / 2)), (size, size))
    raise ValueError(f"unknown fit mode {mode!r} (keep | resize | letterbox)")


def jitter_transform(t: ImageTransform, amount: float, rng: np.random.Generator) -> ImageTransform:
    """Random zoom-in (independent in x and y, up to e^amount) and a random crop back to `t.size`.

    Used to make variants of the same source differ geometrically; boxes follow the same map.
    Zooming in only means no padding: the generator never sees an artificial border.
    """
    if amount <= 0:
        return t
    sx, sy = np.exp(rng.uniform(0.0, amount, size=2))
    w, h = t.size
    tx, ty = rng.uniform(w - sx * w, 0.0), rng.uniform(h - sy * h, 0.0)
    return t.then(compose(scale(sx, sy), translate(tx, ty)), t.size)


def tile_origins(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of side `tile` covering [0, length] with at least `overlap` shared."""
    if length <= tile:
        return [0]
    stride = max(1, tile - overlap)
    n = math.ceil((length - tile) / stride) + 1
    # Spread the tiles evenly so the last one ends exactly at the border.
    return [round(i * (length - tile) / (n - 1)) for i in range(n)]


def tile_transforms(t: ImageTransform, tile: int | None, overlap: int) -> list[ImageTransform]:
    """Split the output of `t` into tiles (each a crop map); one transform when it already fits."""
    w, h = t.size
    if tile is None or (w <= tile and h <= tile):
        return [t]
    out = []
    for y0 in tile_origins(h, tile, overlap):
        for x0 in tile_origins(w, tile, overlap):
            out.append(t.then(translate(-x0, -y0), (min(tile, w), min(tile, h))))
    return out
