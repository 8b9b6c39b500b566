"""The classical randomisation toward metal (the real+replica-aug arm's cheap rival): its
exposure step lands every copy in the brightness range of metal photos, and the labelled parts
stay visible."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from pipeline.synth.randomize import METAL_MEAN, expose, metal_randomization, randomize_image


def _replica(seed: int) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    """A bright print bed (grey 215-245, a little grain) with three coloured parts; their boxes."""
    rng = np.random.default_rng(seed)
    img = np.full((96, 96, 3), rng.integers(215, 246), np.uint8)
    img = np.clip(img + rng.normal(0, 4, img.shape), 0, 255).astype(np.uint8)
    boxes = []
    for x, y in ((10, 12), (52, 20), (28, 58)):
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        cv2.rectangle(img, (x, y), (x + 24, y + 18), colour, -1)
        boxes.append((x, y, 25, 19))
    return img, boxes


@pytest.mark.parametrize("target", [40.0, 80.0, 120.0])
def test_expose_sets_the_mean_and_keeps_the_order_of_grey_levels(target: float) -> None:
    img = np.tile(np.arange(256, dtype=np.uint8)[None, :, None], (8, 1, 3))
    out = expose(img, target)
    assert out.mean() == pytest.approx(target, abs=1.5)
    assert np.all(np.diff(out[0, :, 0].astype(int)) >= 0)  # order-preserving: edges stay edges


def test_expose_lifts_an_image_too_black_for_a_gamma() -> None:
    """Clipped black pixels stay black under any gamma: the floor is lifted instead."""
    img = np.zeros((32, 32, 3), np.uint8)
    img[:4] = 200
    out = expose(img, 60.0)
    assert out.mean() == pytest.approx(60.0, abs=1.5)
    assert out[:4].mean() > out[4:].mean() + 100


def test_randomised_replicas_look_like_exposed_metal_and_keep_their_parts_visible() -> None:
    """A bright bed inverted, gamma-bent and darkened came out nearly black one copy in eight, its
    labelled parts invisible: every copy now lies in the metal photos' brightness range and each
    part still differs from its surroundings."""
    aug = metal_randomization(0)
    lo, hi = METAL_MEAN
    for image_id in range(40):
        img, boxes = _replica(image_id)
        out = cv2.cvtColor(randomize_image(aug, img, 0, image_id), cv2.COLOR_RGB2GRAY).astype(np.float32)
        assert lo - 10 <= out.mean() <= hi + 30, (image_id, out.mean())
        grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float32)
        bed, src_bed = np.median(out[:8, :]), np.median(grey[:8, :])  # the top rows hold no part
        for x, y, w, h in boxes:
            inside = np.s_[y + 4:y + h - 4, x + 4:x + w - 4]
            if abs(np.median(grey[inside]) - src_bed) >= 30:  # a part visible in the replica stays visible
                assert abs(np.median(out[inside]) - bed) >= 4, (image_id, x, y)
