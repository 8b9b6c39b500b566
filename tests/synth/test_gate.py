"""Gate rules on crafted images: a blanked part, a shifted part, NaN, constant, checkerboard."""

from __future__ import annotations

import numpy as np
import pytest
from synth_helpers import metalize

from pipeline.config import GateConfig
from pipeline.synth import gate as G


def _scene() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    img = np.full((64, 64, 3), 230, np.uint8) + rng.integers(0, 6, (64, 64, 3), dtype=np.uint8)
    img[8:28, 6:30] = (200, 50, 40)  # part 0
    img[14:22, 14:22] = 230  # with a hole
    img[36:58, 36:60] = (40, 90, 200)  # part 1
    boxes = np.array([[6, 8, 24, 20], [36, 36, 24, 22]], float)
    return img, boxes


def test_faithful_translation_keeps_every_box():
    src, boxes = _scene()
    res = G.gate(src, metalize([src])[0], boxes, GateConfig())
    assert res.accepted and res.keep == [True, True] and res.rejections == []
    assert all(s["edge_f1"] > 0.6 for s in res.box_scores)


def test_blanked_part_is_dropped_and_listed():
    src, boxes = _scene()
    syn = metalize([src])[0]
    syn[36:58, 36:60] = syn[2, 2]  # part 1 vanished
    res = G.gate(src, syn, boxes, GateConfig())
    assert res.accepted and res.keep == [True, False]
    (row,) = res.rejections
    assert row["check"] == "box_edge_f1" and row["box"] == 1 and row["action"] == "drop_box"
    assert row["score"] < row["threshold"]


def test_moved_part_is_flagged_and_reject_image_rule_rejects():
    src, boxes = _scene()
    syn = metalize([src])[0]
    part = syn[8:28, 6:30].copy()
    syn[8:28, 6:30] = syn[2, 2]
    syn[36:56, 4:28] = part  # the part drifted out of its box (below it)
    res = G.gate(src, syn, boxes, GateConfig(box_rule="reject_image"))
    assert not res.accepted and res.keep == [False, False]
    assert {r["check"] for r in res.rejections} >= {"box_edge_f1", "dropped_boxes"}
    assert all(r["action"] == "reject_image" for r in res.rejections)


def test_too_many_dropped_boxes_rejects_the_image():
    src, boxes = _scene()
    syn = metalize([src])[0]
    noise = np.random.default_rng(3).normal(0, 8, syn.shape[:2])[..., None]
    syn[:, :] = np.clip(syn[2, 2] + noise, 0, 255).astype(np.uint8)  # every part gone, still textured
    res = G.gate(src, syn, boxes, GateConfig(max_dropped_fraction=0.5))
    assert not res.accepted
    assert res.rejections[-1]["check"] == "dropped_boxes"


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_output_is_rejected(bad):
    src, boxes = _scene()
    syn = metalize([src])[0].astype(np.float32)
    syn[5, 5, 1] = bad
    res = G.gate(src, syn, boxes, GateConfig())
    assert not res.accepted
    assert [r["check"] for r in res.rejections] == ["finite"]


def test_constant_output_is_rejected():
    src, boxes = _scene()
    res = G.gate(src, np.full_like(src, 128), boxes, GateConfig())
    assert not res.accepted and "near_constant" in [r["check"] for r in res.rejections]


def test_saturated_output_is_rejected():
    src, boxes = _scene()
    syn = metalize([src])[0]
    syn[:40] = 255
    res = G.gate(src, syn, boxes, GateConfig())
    assert "saturated" in [r["check"] for r in res.rejections]
    assert G.saturated_fraction(syn) == pytest.approx(40 / 64, abs=0.02)


def test_checkerboard_artifact_scores_high_and_is_rejected():
    src, boxes = _scene()
    syn = metalize([src])[0].astype(np.int16)
    clean = G.checkerboard_score(syn.astype(np.uint8))
    yy, xx = np.mgrid[:64, :64]
    pattern = np.where((yy + xx) % 2 == 0, 25, -25)[..., None]  # stride-2 deconvolution pattern
    bad = np.clip(syn + pattern, 0, 255).astype(np.uint8)
    assert clean < 0.05
    assert G.checkerboard_score(bad) > 0.5
    res = G.gate(src, bad, boxes, GateConfig())
    assert "checkerboard" in [r["check"] for r in res.rejections]


def test_sensor_noise_is_not_a_checkerboard():
    rng = np.random.default_rng(1)
    noisy = np.clip(rng.normal(80, 12, (64, 64, 3)), 0, 255).astype(np.uint8)
    assert G.checkerboard_score(noisy) < 0.05


def test_optional_realism_threshold():
    src, boxes = _scene()
    syn = metalize([src])[0]
    res = G.gate(src, syn, boxes, GateConfig(min_realism=0.5), realism=lambda im: 0.2)
    assert [r["check"] for r in res.rejections] == ["realism"]
    assert G.gate(src, syn, boxes, GateConfig(), realism=lambda im: 0.2).accepted  # None = off


def test_gradient_ssim_metric_also_catches_a_blank():
    src, boxes = _scene()
    syn = metalize([src])[0]
    syn[36:58, 36:60] = syn[2, 2]
    res = G.gate(src, syn, boxes, GateConfig(box_metric="both"))
    assert res.keep == [True, False]
    assert res.box_scores[1]["gradient_ssim"] < res.box_scores[0]["gradient_ssim"]


def _moved(syn: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """Part 0 (rows 8:28, cols 6:30) moved by (dx, dy) pixels over a blank bed."""
    out = syn.copy()
    part = out[8:28, 6:30].copy()
    out[8:28, 6:30] = out[2, 2]
    out[8 + dy : 28 + dy, 6 + dx : 30 + dx] = part
    return out


def test_part_moved_by_30_percent_of_its_box_is_caught_while_still_overlapping():
    src, boxes = _scene()
    syn = _moved(metalize([src])[0], 7, 6)  # 30 % of 24 x 20: the part still covers half its box
    res = G.gate(src, syn, boxes, GateConfig())
    assert res.keep == [False, True]
    (row,) = [r for r in res.rejections if r["box"] == 0 and r["check"] == "box_offset"]
    assert row["score"] == pytest.approx(0.3, abs=0.02) and row["score"] > row["threshold"]
    assert res.box_scores[0]["offset_px"] == pytest.approx(np.hypot(7, 6), abs=0.01)
    assert res.box_scores[1]["offset"] == 0.0  # the part that stayed put


@pytest.mark.parametrize("d", [4, 6, 10])
def test_small_diagonal_shifts_are_caught(d):
    src, boxes = _scene()
    res = G.gate(src, _moved(metalize([src])[0], d, d), boxes, GateConfig())
    assert not res.keep[0] and "box_offset" in [r["check"] for r in res.rejections if r["box"] == 0]


def test_offset_check_tolerates_a_one_pixel_wobble_and_can_be_switched_off():
    src, boxes = _scene()
    syn = metalize([src])[0]
    assert G.gate(src, _moved(syn, 1, 1), boxes, GateConfig()).keep == [True, True]
    off = GateConfig(max_box_offset=None)
    res = G.gate(src, _moved(syn, 7, 6), boxes, off)
    assert res.box_scores[0]["offset"] is None and "box_offset" not in [r["check"] for r in res.rejections]


def test_tiling_seam_is_rejected_but_a_straight_edge_of_the_source_is_not():
    rng = np.random.default_rng(2)
    src, boxes = _scene()
    syn = metalize([src])[0].astype(np.float32) + rng.normal(0, 2, (64, 64, 1))
    clean = np.clip(syn, 0, 255).astype(np.uint8)
    seamed = syn.copy()
    seamed[:, 32:] += 16  # the right tile came out 16 grey levels brighter
    seamed = np.clip(seamed, 0, 255).astype(np.uint8)
    assert G.seam_score(clean, src) < 3 and G.seam_score(seamed, src) > GateConfig().max_seam
    res = G.gate(src, seamed, boxes, GateConfig())
    assert not res.accepted and [r["check"] for r in res.rejections] == ["seam"]
    assert G.gate(src, clean, boxes, GateConfig()).accepted
    # A letterbox border is a straight full-height step in the source: inherited, not a seam.
    lb_src = src.copy()
    lb_src[:, :8] = 0
    lb_syn = clean.copy()
    lb_syn[:, :8] = 200
    assert G.seam_score(lb_syn, lb_src) < 2 < G.seam_score(lb_syn)


def test_non_finite_values_reported_by_the_generator_reject_a_uint8_image():
    src, boxes = _scene()
    syn = metalize([src])[0]  # the Translator already cast its NaNs to uint8
    res = G.gate(src, syn, boxes, GateConfig(), nonfinite=12)
    assert not res.accepted and [(r["check"], r["score"]) for r in res.rejections] == [("finite", 12.0)]
    assert G.gate(src, syn, boxes, GateConfig(), nonfinite=0).accepted


def test_erase_boxes_paints_over_a_dropped_part_and_leaves_kept_ones():
    src, boxes = _scene()
    before = src.copy()
    out = G.erase_boxes(src, boxes[1:], boxes[:1])
    assert np.array_equal(src, before)  # the input is not modified
    assert np.array_equal(out[8:28, 6:30], src[8:28, 6:30])  # the kept part: pixel for pixel
    # The dropped blue part is gone: its window now looks like the bed around it.
    bed = src[2:6, 34:62].reshape(-1, 3).mean(0)
    assert np.abs(out[38:56, 38:58].reshape(-1, 3).mean(0) - bed).max() < 12
    assert np.abs(src[38:56, 38:58].reshape(-1, 3).mean(0) - bed).max() > 100


def test_erase_boxes_spares_a_kept_box_overlapping_the_dropped_one():
    src, boxes = _scene()
    kept = np.array([[44, 40, 10, 10]], float)  # inside part 1's box
    out = G.erase_boxes(src, boxes[1:], kept)
    assert np.array_equal(out[40:50, 44:54], src[40:50, 44:54])
    assert not np.array_equal(out[36:40, 36:60], src[36:40, 36:60])
    assert np.array_equal(G.erase_boxes(src, np.zeros((0, 4)), boxes), src)


def test_a_box_whose_source_has_no_edges_is_not_scored_by_edge_f1():
    """A pale part on a pale bed has no Canny edges under the brightness-scaled thresholds: its F1
    was 0 whatever the translation made of it, so a faithful translation lost the box."""
    rng = np.random.default_rng(0)
    src = np.full((64, 64, 3), 215, np.uint8) + rng.integers(0, 3, (64, 64, 3), dtype=np.uint8)
    src[20:44, 16:40] += 12  # a faint part
    box = np.array([[16, 20, 24, 24]], float)
    from pipeline.gan.quality import edge_map
    assert not edge_map(src[17:47, 13:43]).any()
    syn = np.full_like(src, 40)
    syn[20:44, 16:40] = 170  # translated clearly
    res = G.gate(src, syn, box, GateConfig())
    assert res.box_scores[0]["edge_f1"] is None and res.accepted and res.keep == [True]
    # the same part with clear edges in the source is still scored (and kept: it is all there)
    src[20:44, 16:40] = (200, 40, 30)
    scored = G.gate(src, syn, box, GateConfig())
    assert scored.box_scores[0]["edge_f1"] > 0.5 and scored.keep == [True]
