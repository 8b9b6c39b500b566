"""Image-level artefact scores of generator output: stride-2/4 checkerboards and tiling seams.

Both take (H, W, 3) or (H, W) images, uint8 or float in 8-bit units.
"""

from __future__ import annotations

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


def _steps(g: np.ndarray) -> np.ndarray:
    """|g[:, x+1] - g[:, x-1]| at every interior column: (H, W - 2), 8-bit units."""
    return np.abs(g[:, 2:] - g[:, :-2])


def line_steps(gray: np.ndarray, source: np.ndarray | None = None) -> np.ndarray:
    """Per vertical line x (1 <= x < W - 1): the lower quartile over rows of
    |g[:, x+1] - g[:, x-1]|, minus the median of that profile over the neighbouring lines
    (8-bit units). Returns (W - 2,) excess step heights.

    The central difference spans two pixels, so a seam softened by a resize still counts. The
    lower quartile needs the step along at least three quarters of the line: a tile border runs
    through the whole image, object edges cover only parts of lines. Where `source` (same shape)
    has an edge at that place (±1 line), the step is not counted: the synthetic image inherited it
    (a letterbox border, parts standing in a row).
    """
    g = np.asarray(gray, dtype=np.float32)
    if g.shape[1] < 3:
        return np.zeros(0, np.float32)
    d = _steps(g)
    if source is not None:
        ds = _steps(np.asarray(source, dtype=np.float32))
        edge = ds > max(_SOURCE_EDGE, 3.0 * float(np.median(ds)))
        edge[:, 1:] |= edge[:, :-1].copy()
        edge[:, :-1] |= edge[:, 1:].copy()
        d = np.where(edge, 0.0, d)
    prof = np.quantile(d, 0.25, axis=0)
    pad = np.pad(prof, _BASELINE, mode="edge")
    windows = np.lib.stride_tricks.sliding_window_view(pad, 2 * _BASELINE + 1)
    return prof - np.median(windows, axis=1)


def seam_score(image: np.ndarray, source: np.ndarray | None = None) -> float:
    """Strongest straight row/column step of `image` not explained by `source` (8-bit units).

    Tiled translation whose tiles disagree leaves a step along a whole tile border. The score is
    the largest excess step (see `line_steps`) over every row and column; 0 means no line stands
    out, a seam of δ grey levels scores about δ.
    """
    g = to_gray(image)
    src = None if source is None else to_gray(source)
    rows = line_steps(g.T, None if src is None else src.T)
    cols = line_steps(g, src)
    return float(max(0.0, rows.max(initial=0.0), cols.max(initial=0.0)))
