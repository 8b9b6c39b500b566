"""Seeds summary and the paired bootstrap over test images."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline.detect.evaluate import coco_eval
from pipeline.detect.stats import (ArmEvals, HierarchicalBootstrap, RunMaps, bootstrap_map, paired_bootstrap,
                                   resample_counts, summarize)


def test_summarize_mean_std_over_seeds():
    s = summarize([0.5, 0.6, 0.7])
    assert s["mean"] == pytest.approx(0.6) and s["std"] == pytest.approx(0.1) and s["n"] == 3
    assert summarize([0.4]) == {"mean": 0.4, "std": None, "n": 1}  # one seed: no spread to report
    assert summarize([]) == {"mean": None, "std": None, "n": 0}


def test_resample_counts_rows_are_bootstrap_samples():
    c = resample_counts(50, 200, seed=1)
    assert c.shape == (200, 50) and (c.sum(axis=1) == 50).all()
    assert np.array_equal(c, resample_counts(50, 200, seed=1))
    assert not np.array_equal(c, resample_counts(50, 200, seed=2))


def _gt_and_runs(tmp_path, n_images=60, seed=0):
    rng = np.random.default_rng(seed)
    images, anns = [], []
    for i in range(1, n_images + 1):
        images.append({"id": i, "file_name": f"{i}.png", "width": 200, "height": 200})
        for _ in range(int(rng.integers(1, 4))):
            x, y = rng.uniform(0, 120, 2)
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": int(rng.integers(1, 3)),
                         "bbox": [x, y, 50.0, 50.0], "area": 2500.0, "iscrowd": 0})
    p = tmp_path / "gt.json"
    p.write_text(json.dumps({"images": images, "annotations": anns,
                             "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]}))

    def run(noise, recall):
        res = []
        for a in anns:
            if rng.random() < recall:
                x, y, w, h = a["bbox"]
                res.append({"image_id": a["image_id"], "category_id": a["category_id"],
                            "score": float(rng.uniform(0.3, 1)),
                            "bbox": [x + rng.normal(0, noise), y + rng.normal(0, noise), w, h]})
        for i in range(1, n_images + 1):
            res.append({"image_id": i, "category_id": 1, "score": float(rng.uniform(0, 0.5)),
                        "bbox": [*rng.uniform(0, 150, 2).tolist(), 40.0, 40.0]})
        return coco_eval(p, res)

    return run


def test_paired_bootstrap_ci_contains_point_and_is_deterministic(tmp_path):
    run = _gt_and_runs(tmp_path)
    good, bad = run(2.0, 0.95), run(8.0, 0.6)
    ci = paired_bootstrap([good.per_image], [bad.per_image], resamples=300, seed=0)
    assert ci.delta == pytest.approx(good.metrics["map"] - bad.metrics["map"], abs=1e-9)
    assert ci.ci_low <= ci.delta <= ci.ci_high
    assert ci.resamples == 300
    assert ci.significant and ci.ci_low > 0  # a large, consistent gap
    again = paired_bootstrap([good.per_image], [bad.per_image], resamples=300, seed=0)
    assert (again.ci_low, again.ci_high) == (ci.ci_low, ci.ci_high)
    other = paired_bootstrap([good.per_image], [bad.per_image], resamples=300, seed=1)
    assert (other.ci_low, other.ci_high) != (ci.ci_low, ci.ci_high)


def test_identical_arms_are_not_significant(tmp_path):
    run = _gt_and_runs(tmp_path)
    a = run(4.0, 0.8)
    ci = paired_bootstrap([a.per_image], [a.per_image], resamples=100, seed=0)
    assert ci.delta == 0 and ci.ci_low == 0 and ci.ci_high == 0 and not ci.significant


def test_seeds_are_averaged_and_must_share_test_images(tmp_path):
    run = _gt_and_runs(tmp_path)
    t1, t2, b1, b2 = run(2.0, 0.9), run(3.0, 0.9), run(6.0, 0.7), run(7.0, 0.7)
    ci = paired_bootstrap([t1.per_image, t2.per_image], [b1.per_image, b2.per_image], resamples=100, seed=0)
    expected = (t1.metrics["map"] + t2.metrics["map"]) / 2 - (b1.metrics["map"] + b2.metrics["map"]) / 2
    assert ci.delta == pytest.approx(expected, abs=1e-9)
    (tmp_path / "other").mkdir()
    other = _gt_and_runs(tmp_path / "other", n_images=30, seed=5)(2.0, 0.9)
    with pytest.raises(ValueError, match="same test images"):
        paired_bootstrap([t1.per_image], [other.per_image], resamples=10)


def test_paired_bootstrap_at_the_briefs_size_runs(tmp_path):
    """1,000 resamples of 500 test images (the size the brief times in bench/detect.py; no
    timing asserted here): every resample is valid and the interval holds the point estimate."""
    run = _gt_and_runs(tmp_path, n_images=500, seed=4)
    a, b = run(2.0, 0.9), run(5.0, 0.75)
    assert a.per_image.n_images == 500
    ci = paired_bootstrap([a.per_image], [b.per_image], resamples=1000, seed=0)
    assert ci.resamples == 1000  # no resample lost to NaN
    assert ci.delta == pytest.approx(a.metrics["map"] - b.metrics["map"], abs=1e-9)
    assert ci.ci_low <= ci.delta <= ci.ci_high and ci.ci_high - ci.ci_low < 0.2


# ------------------------------------------------------------------------ hierarchical bootstrap
def test_hierarchical_bootstrap_without_training_noise_is_the_paired_bootstrap(tmp_path):
    """Every run of an arm identical (no training noise): drawing seeds changes nothing, so the
    interval is exactly the paired bootstrap's over test images."""
    run = _gt_and_runs(tmp_path)
    t, b = run(2.0, 0.9).per_image, run(6.0, 0.7).per_image
    paired = paired_bootstrap([t], [b], resamples=300, seed=3)
    hb = HierarchicalBootstrap(t.image_ids, resamples=300, seed=3)
    treatment = ArmEvals("real+synthetic", {(g, s): t for g in (0, 1) for s in (0, 1, 2)})
    baseline = ArmEvals("real", {(None, s): b for s in (0, 1, 2)})
    ci = hb.uplift(treatment, baseline)
    assert (ci.delta, ci.ci_low, ci.ci_high, ci.resamples) == pytest.approx(
        (paired.delta, paired.ci_low, paired.ci_high, paired.resamples), abs=1e-12)


def test_hierarchical_bootstrap_of_a_constant_shift_is_centred_on_it(tmp_path):
    """Synthetic numbers: the treatment is the baseline's resampled mAPs + 0.1 + a seed effect
    (training noise of both models, none from the images). The CI sits around the shift and is as
    wide as the seed effects allow, never zero-width."""
    run = _gt_and_runs(tmp_path)
    base = run(4.0, 0.8).per_image
    hb = HierarchicalBootstrap(base.image_ids, resamples=400, seed=0)
    m = hb.run_maps(base)
    shifted = lambda e: RunMaps(m.full + e, m.resampled + e)  # noqa: E731
    treated = {(g, s): shifted(0.1 + 0.01 * (g - 0.5) + 0.005 * (s - 1)) for g in (0, 1) for s in (0, 1, 2)}
    control = {(None, s): shifted(0.003 * (s - 1)) for s in (0, 1, 2)}
    ci = hb.uplift(ArmEvals("real+synthetic", treated), ArmEvals("real", control))
    assert ci.delta == pytest.approx(0.1, abs=1e-9)
    assert 0.08 < ci.ci_low < 0.1 < ci.ci_high < 0.12
    assert ci.ci_high - ci.ci_low > 0.005  # training noise widens it (the images alone would give 0)
    single = hb.uplift(ArmEvals("t", {(0, 0): shifted(0.1)}), ArmEvals("real", {(None, 0): shifted(0.0)}))
    assert single.ci_low == pytest.approx(0.1) and single.ci_high == pytest.approx(0.1)


def test_gap_closed_share_and_interval(tmp_path):
    run = _gt_and_runs(tmp_path)
    real, half, oracle = run(8.0, 0.6).per_image, run(4.0, 0.78).per_image, run(1.0, 0.97).per_image
    hb = HierarchicalBootstrap(real.image_ids, resamples=300, seed=0)
    arm = lambda name, pe: ArmEvals(name, {(None, 0): pe, (None, 1): pe})  # noqa: E731
    share = hb.gap_closed(arm("x", half), arm("real", real), arm("oracle", oracle))
    maps = [bootstrap_map(pe, np.ones((1, pe.n_images)))[0] for pe in (real, half, oracle)]
    assert share.point == pytest.approx((maps[1] - maps[0]) / (maps[2] - maps[0]))
    assert 0 < share.ci_low <= share.point <= share.ci_high < 1
    assert hb.gap_closed(arm("o", oracle), arm("real", real), arm("oracle", oracle)).point == pytest.approx(1.0)
