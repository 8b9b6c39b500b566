"""Camera matching: the photo-level statistics a crop-trained translator cannot learn, measured on
the real metal photos and given to each synthetic image.

A CycleGAN trained on 64-px crops is translation-equivariant, so it cannot draw a vignette (a
function of the position in the photo); its exposure follows the replica's print bed, so its
outputs vary less from photo to photo than real photos do; and it smooths sensor noise away.
Measured on the demo (200 unlabelled B photos vs 119 synthetic images of one GAN): noise 8.8 vs
5.8 grey levels, corner/centre brightness 0.69 vs 0.93, photo mean 66 ± 24 vs 73 ± 9.

`fit_camera(photos)` measures three numbers per real photo, on its grey levels: the vignette `k`
(brightness ∝ 1 − k·r², r = 1 in the corners; fitted to the medians of rings, so parts weigh
little), the mean, and the noise (robust std of the residual after a σ = 1 px Gaussian blur).
`apply_camera(image, profile, seed)` draws one real photo's triple — the three stay together, as
they were photographed — and gives the image that vignette (relative to its own), mean (a gain)
and noise (white, added until the image's own noise reaches the drawn level). Photometric only:
no pixel moves, so the boxes stay exact. The same (image, profile, seed) gives the same bytes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache

import cv2
import numpy as np

NOISE_BLUR = 1.0  # σ (px) of the blur whose residual measures noise
MAX_VIGNETTE = 0.95  # k in [-MAX_VIGNETTE, MAX_VIGNETTE]: brightness never reaches zero
_RINGS = 8


@dataclass(frozen=True)
class CameraProfile:
    """Per real photo: vignette k, mean grey level, noise (grey levels); one row per photo."""

    k: np.ndarray
    mean: np.ndarray
    noise: np.ndarray

    def __post_init__(self):
        if not len(self.k) or not len(self.k) == len(self.mean) == len(self.noise):
            raise ValueError("a camera profile needs the same number (≥ 1) of k, mean and noise values")

    def summary(self) -> dict[str, float | int]:
        """Median and spread of each statistic, for the dataset card and the manifest."""
        out: dict[str, float | int] = {"photos": len(self.k)}
        for name in ("k", "mean", "noise"):
            v = getattr(self, name)
            out[f"{name}_median"], out[f"{name}_std"] = round(float(np.median(v)), 4), round(float(np.std(v)), 4)
        return out


def grey(rgb: np.ndarray) -> np.ndarray:
    """Grey levels (float32) of an RGB image, uint8 or float32 in [0, 255]."""
    return cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY).astype(np.float32)


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


def measure(rgb: np.ndarray) -> tuple[float, float, float]:
    g = grey(rgb)
    return vignette(g), float(g.mean()), noise(g)


def fit_camera(photos: Iterable[np.ndarray]) -> CameraProfile:
    """The profile of a set of real photos (uint8 RGB, any sizes)."""
    rows = [measure(p) for p in photos]
    if not rows:
        raise ValueError("camera matching needs at least one real photo to measure")
    k, mean, sd = (np.array(c, dtype=np.float64) for c in zip(*rows))
    return CameraProfile(k, mean, sd)


def apply_camera(image: np.ndarray, profile: CameraProfile, seed: int) -> np.ndarray:
    """`image` (uint8 RGB) with the vignette, mean and noise of one real photo of `profile`, drawn
    with `seed`. The input is not modified."""
    rng = np.random.default_rng(seed)
    i = int(rng.integers(len(profile.k)))
    x = image.astype(np.float32)
    r2 = _r2(*x.shape[:2])
    x *= ((1.0 - profile.k[i] * r2) / (1.0 - vignette(grey(image)) * r2))[..., None]
    x = np.clip(x, 0, 255)  # the sensor saturates
    x *= profile.mean[i] / max(float(grey(x).mean()), 1e-3)
    x = np.clip(x, 0, 255)
    add = np.sqrt(max(profile.noise[i] ** 2 - noise(grey(x)) ** 2, 0.0))
    if add > 0:
        x += rng.normal(0.0, add, size=x.shape[:2]).astype(np.float32)[..., None]
    return np.clip(x + 0.5, 0, 255).astype(np.uint8)
