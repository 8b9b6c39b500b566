"""Quality metrics' sanity: structure scores, the two-sample test, KID, diversity, Inception
weights loading, and the stage's realism critic."""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from pipeline.gan.checkpoint import CheckpointError, save_weights
from pipeline.gan.quality import (REALISM_CRITIC, box_structure, edge_f1, gradient_ssim, kid,
                                  load_realism_scorer, train_realism_critic, two_sample_test)

sys.path.insert(0, str(Path(__file__).parent))  # gan_helpers lives beside this file (importlib mode)
from gan_helpers import scene  # noqa: E402


def metal(seed: int, n: int = 48) -> np.ndarray:
    """Dark grey with sensor-like noise: one distribution, a new sample per seed."""
    r = np.random.default_rng(seed)
    grey = np.full((n, n, 3), int(r.integers(70, 76)), np.uint8)
    return cv2.add(grey, r.normal(0, 12, (n, n, 3)).clip(0, 60).astype(np.uint8))


def plastic(seed: int, n: int = 48) -> np.ndarray:
    r = np.random.default_rng(1000 + seed)
    noise = r.normal(0, 6, (n, n, 3)).clip(0, 30).astype(np.uint8)
    return cv2.add(np.full((n, n, 3), (230, 80, 40), np.uint8), noise)


def test_structure_scores():
    a = scene(96, 96, 5)
    assert edge_f1(a, a) == 1.0 and gradient_ssim(a, a) == pytest.approx(1.0)
    recoloured = 255 - a  # colour changes, structure stays
    shifted = np.roll(a, 9, axis=1)
    blank = np.full_like(a, 128)
    assert edge_f1(a, recoloured) > 0.8 and gradient_ssim(a, recoloured) > 0.9
    assert edge_f1(a, shifted) < 0.5 and gradient_ssim(a, shifted) < gradient_ssim(a, recoloured)
    assert edge_f1(a, blank) == 0.0
    scores = box_structure(a, shifted, [[10, 10, 40, 40], [0, 0, 3, 3]])
    assert len(scores) == 1 and scores[0]["edge_f1"] < 0.6  # the 3-px box is too small to score


def test_two_sample_test_on_independent_samples_collapse_and_a_clear_difference():
    real = [metal(i) for i in range(24)]
    same = two_sample_test(real, [metal(100 + i) for i in range(24)], steps=30, size=32)
    collapsed = two_sample_test(real, [metal(100)] * 24, steps=30, size=32)
    diff = two_sample_test(real, [plastic(i) for i in range(24)], steps=30, size=32)
    # two disjoint samples of one distribution: chance accuracy, KID ≈ 0, as varied as the reals
    assert same["accuracy"] == pytest.approx(0.5, abs=0.1) and same["ci_low"] <= 0.5 <= same["ci_high"]
    assert abs(same["kid"]) < 1.0 and abs(same["kid"]) < 0.1 * diff["kid"] and same["kid_std"] > 0
    assert 0.7 < same["diversity_ratio"] < 1.3
    # every fake the same image: mode collapse shows as a diversity ratio near 0
    assert collapsed["diversity_ratio"] < 0.3
    assert diff["accuracy"] > 0.8 and diff["ci_low"] > 0.5 and diff["kid"] > 5.0


def test_kid_is_unbiased_with_a_real_spread():
    rng = np.random.default_rng(0)
    f1, f2 = rng.normal(size=(100, 8)), rng.normal(size=(100, 8))  # two independent samples, one distribution
    k, k_std = kid(f1, f2)
    assert abs(k) < 0.1 and k_std > 0.01  # subsets of half the set differ from each other
    assert kid(f1, f2 + 1.0)[0] > 1.0 and kid(f1, f2 + 0.5)[0] > 5 * abs(k)


def test_inception_weights_load_strictly(tmp_path):
    from pipeline.gan.quality import inception_features

    wrong = tmp_path / "not_inception.safetensors"
    save_weights(wrong, {"conv.weight": torch.zeros(4, 3, 3, 3), "fc.bias": torch.zeros(10)})
    with pytest.raises(CheckpointError, match=r"not_inception\.safetensors: not torchvision Inception-v3.*"
                                              r"missing keys \(Conv2d_1a_3x3\.conv\.weight"):
        inception_features([scene(80, 80)], wrong)


def test_realism_critic_scores_real_metal_above_plastic(tmp_path):
    assert load_realism_scorer(tmp_path) is None  # no critic in this directory
    real = [metal(i) for i in range(32)]
    fake = [plastic(i) for i in range(32)]
    card = train_realism_critic(tmp_path / REALISM_CRITIC, real, fake, size=32, steps=40, seed=1)
    assert card["heldout_accuracy"] > 0.9 and card["n_heldout"] == 16
    assert card["n_train"] == {"real": 24, "translated": 24}
    again = tmp_path / "again"
    again.mkdir()
    assert train_realism_critic(again / REALISM_CRITIC, real, fake, size=32, steps=40, seed=1) == card
    score = load_realism_scorer(tmp_path)
    p_real, p_fake = score(metal(500, n=80)), score(plastic(500, n=60))
    assert 0.0 <= p_fake < 0.2 < 0.8 < p_real <= 1.0
    with pytest.raises(ValueError, match="uint8"):
        score(metal(1).astype(np.float32))


@pytest.mark.slow
def test_fid_and_kid_with_user_supplied_inception_weights(tmp_path):
    """FID/KID run from a local weights file (here randomly initialised: no download possible)."""
    from torchvision.models import inception_v3

    from pipeline.gan.quality import fid, inception_features

    torch.manual_seed(0)
    path = tmp_path / "inception.safetensors"
    save_weights(path, inception_v3(weights=None, aux_logits=True, init_weights=False).state_dict())
    imgs = [scene(80, 80, i) for i in range(4)]
    f = inception_features(imgs, path, batch=4)
    assert f.shape == (4, 2048) and np.isfinite(f).all()
    assert abs(fid(f, f)) < 1e-6 * float((f ** 2).sum())
    g = inception_features([255 - i for i in imgs], path, batch=4)
    assert fid(f, g) > 0.01 * float((f ** 2).sum() / len(f))
