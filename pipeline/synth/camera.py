"""Camera matching: the photo-level statistics a crop-trained translator cannot learn, measured on
the real metal photos and given to each synthetic image.

A CycleGAN trained on 64-px crops is translation-equivariant, so it cannot draw a vignette (a
function of the position in the photo); its exposure follows the replica's print bed, so its
outputs vary less from photo to photo than real photos do; and it smooths sensor noise away.
Measured on the demo (200 unlabelled B photos vs 119 synthetic images of one GAN): noise 8.8 vs
5.8 grey levels, corner/centre brightness 0.69 vs 0.93, bed level (median) 58 ± 25 vs 66 ± 10.
In the real photos the bed level and the parts' highlights (99th percentile, 200 ± 38) are nearly
independent (correlation 0.22): a dark bench does not make a shiny part dull. So exposure is set
by two points, not one gain (a gain to the photo's mean made dark-bed images' parts dim too).

`fit_camera(photos)` measures four numbers per real photo, on its grey levels: the vignette `k`
(brightness ∝ 1 − k·r², r = 1 in the corners; fitted to the medians of rings, so parts weigh
little), the bed level (median), the highlight level (99th percentile), both of the scene (the
vignette divided out: a photo is levels(scene) × vignette + noise), and the noise (robust std of
the residual after a σ = 1 px Gaussian blur).
`apply_camera(image, profile, seed)` draws one real photo's four — they stay together, as they
were photographed — divides the image's own vignette out, maps its grey levels affinely so that
its bed and highlight levels become the drawn ones, applies the drawn vignette and adds white
noise until the image's own noise reaches the drawn level. Photometric only: no pixel moves, so
the boxes stay exact. The same (image, profile, seed) gives the same bytes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache

import cv2
import numpy as np

# Enters the synthesis key when the camera match is on: a change of what it does to the pixels
# must redo the cached augmented sets (1: one gain to the mean; 2: bed and highlight levels).
REVISION = 2
NOISE_BLUR = 1.0  # σ (px) of the blur whose residual measures noise
MAX_VIGNETTE = 0.95  # k in [-MAX_VIGNETTE, MAX_VIGNETTE]: brightness never reaches zero
LEVELS_BLUR = 1.5  # σ (px) of the blur before the levels are read
HIGHLIGHT = 99.0  # percentile of the grey levels taken as the parts' highlights
MIN_SPAN = 8.0  # grey levels between bed and highlights below which an image is treated as flat
MAX_STRETCH = 4.0  # the levels map's slope stays within [1/MAX_STRETCH, MAX_STRETCH]
_RINGS = 8


@dataclass(frozen=True)
class CameraProfile:
    """Per real photo (one row each): vignette k, bed level, highlight level, noise (grey levels)."""

    k: np.ndarray
    bed: np.ndarray
    highlight: np.ndarray
    noise: np.ndarray

    def __post_init__(self):
        if not len(self.k) or len({len(self.k), len(self.bed), len(self.highlight), len(self.noise)}) != 1:
            raise ValueError("a camera profile needs the same number (≥ 1) of k, bed, highlight and noise values")

    def summary(self) -> dict[str, float | int]:
        """Median and spread of each statistic, for the dataset card and the manifest."""
        out: dict[str, float | int] = {"photos": len(self.k)}
        for name in ("k", "bed", "highlight", "noise"):
            v = getattr(self, name)
            out[f"{name}_median"], out[f"{name}_std"] = round(float(np.median(v)), 4), round(float(np.std(v)), 4)
        return out


def grey(rgb: np.ndarray) -> np.ndarray:
    """Grey levels (float32) of an RGB image, uint8 or float in [0, 255]."""
    x = rgb if rgb.dtype == np.uint8 else rgb.astype(np.float32)
    return cv2.cvtColor(np.ascontiguousarray(x), cv2.COLOR_RGB2GRAY).astype(np.float32)


def _r2(h: int, w: int) -> np.ndarray:
    """Squared distance from the centre, 1 in the corners."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    cy, cx = (h - 1) / 2, (w - 1) / 2
    return ((x - cx) ** 2 + (y - cy) ** 2) / max(cx**2 + cy**2, 1e-6)


def vignette(g: np.ndarray) -> float:
    """k of brightness ≈ a·(1 − k·r²), least squares on the median grey level of 8 rings of equal
    r² width (medians: a part covering part of a ring barely moves it)."""
    r2 = _r2(*g.shape)
    ring = np.minimum((r2 * _RINGS).astype(int), _RINGS - 1)
    xs, ys = [], []
    for i in range(_RINGS):
        v = g[ring == i]
        if v.size:
            xs.append((i + 0.5) / _RINGS)
            ys.append(float(np.median(v)))
    if len(xs) < 2:
        return 0.0
    slope, a = np.polyfit(xs, ys, 1)
    if a <= 1e-3:
        return 0.0
    return float(np.clip(-slope / a, -MAX_VIGNETTE, MAX_VIGNETTE))


@cache
def _white_noise_gain() -> float:
    """std of the residual (x − blur(x)) of unit white noise: the exact response of the filter."""
    g1 = cv2.getGaussianKernel(int(2 * round(4 * NOISE_BLUR) + 1), NOISE_BLUR, cv2.CV_64F)
    kernel = (g1 @ g1.T).ravel()
    centre = len(kernel) // 2
    return float(np.sqrt(1.0 - 2.0 * kernel[centre] + np.sum(kernel**2)))


def noise(g: np.ndarray) -> float:
    """Robust std (1.4826 · median |r|) of the residual r = g − blur(g), in the units of unit white
    noise's own response: white noise of std σ measures σ."""
    res = g - cv2.GaussianBlur(g, (0, 0), NOISE_BLUR)
    return float(1.4826 * np.median(np.abs(res))) / _white_noise_gain()


def levels(g: np.ndarray) -> tuple[float, float]:
    """(bed, highlight): the median and the HIGHLIGHT percentile of the grey levels, blurred first
    (σ = LEVELS_BLUR) so that noise does not lift the highlights (an image would otherwise get the
    real photo's noise twice: once in the levels, once added)."""
    bed, high = np.percentile(cv2.GaussianBlur(g, (0, 0), LEVELS_BLUR), (50.0, HIGHLIGHT))
    return float(bed), float(high)


def measure(rgb: np.ndarray) -> tuple[float, float, float, float]:
    """(k, bed, highlight, noise) of one photo; the levels of the scene, its vignette divided out."""
    g = grey(rgb)
    k = vignette(g)
    return (k, *levels(g / (1.0 - k * _r2(*g.shape))), noise(g))


def fit_camera(photos: Iterable[np.ndarray]) -> CameraProfile:
    """The profile of a set of real photos (uint8 RGB, any sizes)."""
    rows = [measure(p) for p in photos]
    if not rows:
        raise ValueError("camera matching needs at least one real photo to measure")
    return CameraProfile(*(np.array(c, dtype=np.float64) for c in zip(*rows)))


def apply_camera(image: np.ndarray, profile: CameraProfile, seed: int) -> np.ndarray:
    """`image` (uint8 RGB) with the vignette, bed and highlight levels and noise of one real photo of
    `profile`, drawn with `seed`. The input is not modified."""
    rng = np.random.default_rng(seed)
    i = int(rng.integers(len(profile.k)))
    x = image.astype(np.float32)
    r2 = _r2(*x.shape[:2])
    x /= (1.0 - vignette(grey(image)) * r2)[..., None]  # the scene, as measure() sees real photos
    bed, high = levels(grey(np.clip(x, 0, 255)))
    span_t = profile.highlight[i] - profile.bed[i]
    slope = span_t / (high - bed) if high - bed >= MIN_SPAN and span_t >= MIN_SPAN else 1.0
    slope = np.float32(np.clip(slope, 1.0 / MAX_STRETCH, MAX_STRETCH))
    x = np.float32(profile.bed[i]) + (x - np.float32(bed)) * slope
    x = np.clip(x * (1.0 - profile.k[i] * r2)[..., None].astype(np.float32), 0, 255)  # the sensor saturates
    add = np.sqrt(max(profile.noise[i] ** 2 - noise(grey(x)) ** 2, 0.0))
    if add > 0:
        x += rng.normal(0.0, add, size=x.shape[:2]).astype(np.float32)[..., None]
    return np.clip(x + 0.5, 0, 255).astype(np.uint8)
