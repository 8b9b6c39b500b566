"""Boxes land exactly where the pixels went, through every geometric step."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.synth import geometry as g


def _canvas(w: int, h: int, box: tuple[int, int, int, int]) -> np.ndarray:
    img = np.zeros((h, w, 3), np.uint8)
    x, y, bw, bh = box
    img[y : y + bh, x : x + bw] = 255
    return img


def _pixel_extent(img: np.ndarray) -> np.ndarray:
    """xywh extent (edge coordinates) of pixels at least half covered by the rectangle."""
    ys, xs = np.nonzero(img[..., 0] >= 128)
    return np.array([xs.min(), ys.min(), xs.max() + 1 - xs.min(), ys.max() + 1 - ys.min()], float)


def _check(src_size, box, t: g.ImageTransform, tol: float = 1.0):
    img = _canvas(*src_size, box)
    out = g.warp_image(img, t)
    assert out.shape[:2] == (t.size[1], t.size[0])
    boxes, vis = g.transform_boxes(np.array([box], float), t)
    np.testing.assert_allclose(boxes[0], _pixel_extent(out), atol=tol)
    return boxes[0], vis[0], out


def test_asymmetric_resize_is_exact_on_integer_edges():
    # 100x60 -> 50x90: sx 0.5, sy 1.5. Box edges map to integer pixel edges -> exact.
    t = g.ImageTransform(g.scale(0.5, 1.5), (50, 90))
    box, vis, _ = _check((100, 60), (20, 10, 40, 20), t, tol=1e-9)
    np.testing.assert_allclose(box, [10, 15, 20, 30])
    assert vis == 1.0


@pytest.mark.parametrize("w,h", [(96, 48), (48, 96), (131, 77)])
def test_letterbox_pads_the_short_side(w, h):
    t = g.fit_transform(w, h, 64, "letterbox")
    assert t.size == (64, 64)
    _check((w, h), (w // 4, h // 3, w // 3, h // 4), t, tol=1.0)
    # The border is padding (black): the scaled image sits in the middle.
    out = g.warp_image(np.full((h, w, 3), 200, np.uint8), t)
    assert out[0, 0].max() == 0 or out[-1, -1].max() == 0 or (w == h)


def test_resize_to_square_stretches():
    t = g.fit_transform(120, 40, 80, "resize")
    box, _, _ = _check((120, 40), (30, 10, 60, 20), t, tol=1e-9)
    np.testing.assert_allclose(box, [20, 20, 40, 40])


def test_crop_clips_boxes_and_reports_visibility():
    # Crop the window x in [40, 104), y in [8, 56) out of a 128x64 image.
    t = g.ImageTransform(g.translate(-40, -8), (64, 48))
    box, vis, out = _check((128, 64), (30, 20, 30, 10), t, tol=1e-9)
    np.testing.assert_allclose(box, [0, 12, 20, 10])
    assert vis == pytest.approx(20 / 30)
    gone, vis_gone = g.transform_boxes(np.array([[0, 0, 10, 10]], float), t)
    assert vis_gone[0] == 0 and gone[0, 2] * gone[0, 3] == 0


def test_composed_resize_pad_crop_matches_pixels():
    t = g.ImageTransform(g.identity(), (90, 70))
    t = t.then(g.scale(1.7, 0.6), (153, 42))
    t = t.then(g.translate(11, 5), (175, 52))  # pad
    t = t.then(g.translate(-23, -3), (120, 48))  # crop
    _check((90, 70), (25, 18, 31, 40), t, tol=1.0)


def test_downscale_more_than_two_x_uses_area_and_stays_aligned():
    t = g.ImageTransform(g.scale(0.2, 0.25), (40, 40))
    _check((200, 160), (50, 40, 100, 80), t, tol=1.0)


def test_tiling_covers_the_image_and_each_tile_has_its_boxes():
    base = g.fit_transform(150, 100, None, "keep")
    tiles = g.tile_transforms(base, 64, 16)
    assert len(tiles) == 3 * 2
    img = _canvas(150, 100, (50, 30, 40, 30))
    seen = 0
    for t in tiles:
        out = g.warp_image(img, t)
        boxes, vis = g.transform_boxes(np.array([[50, 30, 40, 30]], float), t)
        if vis[0] > 0:
            np.testing.assert_allclose(boxes[0], _pixel_extent(out), atol=1e-9)
            seen += 1
        else:
            assert out.max() == 0
    assert seen >= 2  # the rectangle straddles tiles
    assert g.tile_origins(150, 64, 16)[-1] + 64 == 150


def test_jitter_is_seeded_and_boxes_follow():
    base = g.fit_transform(64, 64, None, "keep")
    a = g.jitter_transform(base, 0.2, np.random.default_rng(3))
    b = g.jitter_transform(base, 0.2, np.random.default_rng(3))
    np.testing.assert_array_equal(a.matrix, b.matrix)
    assert not np.allclose(a.matrix, base.matrix)
    _check((64, 64), (20, 16, 24, 20), a, tol=1.0)


def test_invert_roundtrip():
    m = g.compose(g.scale(1.3, 0.7), g.translate(5, -2))
    np.testing.assert_allclose(g.compose(m, g.invert(m)), g.identity(), atol=1e-12)
