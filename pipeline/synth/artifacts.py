"""Image-level artefact scores of generator output: stride-2/4 checkerboards and tiling seams.

Both take (H, W, 3) or (H, W) images, uint8 or float in 8-bit units.
"""

from __future__ import annotations

import cv2
import numpy as np


def to_gray(image: np.ndarray) -> np.ndarray:
    """(H, W) float32 luma (BT.601) in 8-bit units."""
    img = np.asarray(image, dtype=np.float32)
    if img.ndim == 2:
        return img
    return img[..., 0] * 0.299 + img[..., 1] * 0.587 + img[..., 2] * 0.114


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


# Lines are compared with their neighbours within this many lines on each side.
_BASELINE = 4
# A source pixel is an edge when its central difference exceeds this (8-bit units) and 3x the
# image's median difference; synthetic steps there are explained by the source.
_SOURCE_EDGE = 8.0
# A line is judged in this many segments; a segment needs a quarter of its pixels off source edges.
_SEGMENTS = 4
_MIN_FREE = 0.25


def _source_edges(source: np.ndarray) -> np.ndarray:
    """(H, W - 2) mask of source edges at the central-difference positions, widened by ±1 line."""
    s = np.asarray(source, dtype=np.float32)
    ds = np.abs(s[:, 2:] - s[:, :-2])
    edge = ds > max(_SOURCE_EDGE, 3.0 * float(np.median(ds)))
    edge[:, 1:] |= edge[:, :-1].copy()
    edge[:, :-1] |= edge[:, 1:].copy()
    return edge


def _masked_median(values: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Medians along axis -2 of `values` over the `keep` entries (a quarter or more of them).

    Dropped entries become -inf and +inf in turn down each column, which leaves the middle of the
    sorted column, its median, among the kept values (to within one entry); ~10x faster than
    np.nanmedian.
    """
    dropped = ~keep
    up = (np.cumsum(dropped, axis=-2) % 2).astype(bool)
    filled = np.where(keep, values, np.where(up, np.inf, -np.inf))
    with np.errstate(invalid="ignore"):  # a column with too few kept values is discarded anyway
        return np.median(filled, axis=-2)


def line_steps(gray: np.ndarray, source: np.ndarray | None = None) -> np.ndarray:
    """Per vertical line x (1 <= x < W - 1): the step g[:, x+1] - g[:, x-1] that holds along the
    whole line with one sign, minus the median of that profile over the neighbouring lines
    (8-bit units). Returns (W - 2,).

    The line is cut into 4 segments; each gets the median of its signed steps, and the line the
    smallest of them when all agree in sign (else 0). A tile border runs through the whole image
    with one tile brighter than the other; object edges, highlights and brushed streaks change
    sign or stop along a line. Medians shrug off pixel noise; the central difference spans two
    pixels, so a seam softened by a resize still counts. Where `source` (same shape) has an edge,
    the synthetic step is inherited (a letterbox border, parts in a row) and left out.
    """
    g = np.asarray(gray, dtype=np.float32)
    if g.shape[1] < 3 or g.shape[0] < _SEGMENTS:
        return np.zeros(max(0, g.shape[1] - 2), np.float32)
    d = g[:, 2:] - g[:, :-2]
    free = np.ones(d.shape, bool) if source is None else ~_source_edges(source)
    n = d.shape[0] // _SEGMENTS * _SEGMENTS  # equal segments (the last rows, < 4, are left out)
    d_seg = d[:n].reshape(_SEGMENTS, n // _SEGMENTS, -1)
    f_seg = free[:n].reshape(_SEGMENTS, n // _SEGMENTS, -1)
    seg_median = _masked_median(d_seg, f_seg).astype(np.float32)  # (segments, W - 2)
    seg_median[f_seg.mean(axis=1) < _MIN_FREE] = np.nan
    judged = np.isfinite(seg_median).sum(axis=0) >= _SEGMENTS // 2 + 1
    m = np.where(np.isfinite(seg_median), seg_median, 0.0)
    one_sign = np.all(m >= 0, axis=0) | np.all(m <= 0, axis=0)  # unjudged segments count as 0
    mag = np.where(np.isfinite(seg_median), np.abs(seg_median), np.inf).min(axis=0)
    prof = np.where(judged & one_sign, mag, 0.0).astype(np.float32)
    pad = np.pad(prof, _BASELINE, mode="edge")
    windows = np.lib.stride_tricks.sliding_window_view(pad, 2 * _BASELINE + 1)
    return prof - np.median(windows, axis=1)


# Seams are judged at most this large (long side, pixels): a step survives area averaging, and
# the medians cost grows with the pixel count.
_SEAM_SIDE = 256


def _shrink(gray: np.ndarray) -> np.ndarray:
    h, w = gray.shape
    f = _SEAM_SIDE / max(h, w)
    if f >= 1:
        return gray
    return cv2.resize(gray, (max(3, round(w * f)), max(3, round(h * f))), interpolation=cv2.INTER_AREA)


def seam_score(image: np.ndarray, source: np.ndarray | None = None, border: float = 1 / 8) -> float:
    """Strongest straight row/column step of `image` not explained by `source` (8-bit units).

    Tiled translation whose tiles disagree leaves a step along a whole tile border. The score is
    the largest excess step (see `line_steps`) over every interior row and column; lines within
    `border` x the side of the image edge are skipped (generators trained on crops leave their
    own faint frame there, which is not a seam). 0 means no line stands out; a seam of δ grey
    levels scores about δ. Images over 256 px are judged area-downscaled to that size.
    """
    g = _shrink(to_gray(image))
    src = None if source is None else _shrink(to_gray(source))
    best = 0.0
    for img, ref in ((g, src), (g.T, None if src is None else src.T)):
        steps = line_steps(img, ref)
        skip = max(1, int(np.ceil(border * img.shape[1])))  # steps[i] is line i + 1
        inner = steps[max(0, skip - 1) : len(steps) - skip + 1]
        if len(inner):
            best = max(best, float(inner.max()))
    return best
