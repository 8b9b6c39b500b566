"""Test images shared by the CycleGAN tests."""

from __future__ import annotations

import cv2
import numpy as np


def scene(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Smooth colour field with a few drawn rectangles, uint8 RGB."""
    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur((rng.random((h, w, 3)) * 255).astype(np.uint8), (0, 0), 6)
    img = cv2.normalize(img, None, 40, 220, cv2.NORM_MINMAX)
    for _ in range(4):
        c = tuple(int(v) for v in rng.integers(0, 255, 3))
        cv2.rectangle(img, tuple(int(v) for v in rng.integers(0, min(h, w) // 2, 2)),
                      tuple(int(v) for v in rng.integers(min(h, w) // 2, min(h, w), 2)), c, 3)
    return img
