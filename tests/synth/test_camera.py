"""Camera matching on crafted photos: the measurements recover a known vignette, mean and noise,
and a clean image takes on the statistics of the real photo it draws."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.synth import camera as C


def _photo(k: float, level: float, sigma: float, seed: int, size: int = 128) -> np.ndarray:
    """A flat bed of grey `level` under a vignette 1 − k·r², two bright parts, white noise σ."""
    rng = np.random.default_rng(seed)
    x = np.full((size, size), level, np.float32)
    x[20:44, 30:70] = min(255.0, 2.5 * level)
    x[80:100, 60:90] = min(255.0, 2.0 * level)
    x *= 1.0 - k * C._r2(size, size)
    x += rng.normal(0, sigma, x.shape)
    return np.repeat(np.clip(x + 0.5, 0, 255).astype(np.uint8)[..., None], 3, axis=2)


@pytest.mark.parametrize("k,level,sigma", [(0.0, 120.0, 3.0), (0.5, 90.0, 8.0), (0.3, 60.0, 12.0)])
def test_measurements_recover_a_known_camera(k, level, sigma):
    vk, bed, _, noise = C.measure(_photo(k, level, sigma, seed=1))
    assert bed == pytest.approx(level, rel=0.05)  # the scene's bed, the vignette divided out
    assert vk == pytest.approx(k, abs=0.06)
    assert noise == pytest.approx(sigma, rel=0.12)


def test_a_clean_image_takes_the_drawn_photos_statistics():
    real = [_photo(0.5, 80.0, 9.0, seed=s) for s in range(4)]
    profile = C.fit_camera(real)
    assert profile.summary()["photos"] == 4
    clean = _photo(0.0, 140.0, 0.0, seed=9)
    before = clean.copy()
    out = C.apply_camera(clean, profile, seed=3)
    assert np.array_equal(clean, before) and out.shape == clean.shape and out.dtype == np.uint8
    k, bed, high, noise = C.measure(out)
    assert k == pytest.approx(0.5, abs=0.06)
    # the drawn photo's bed and highlights (the four photos differ only by their noise)
    assert bed == pytest.approx(float(np.median(profile.bed)), abs=3)
    assert high == pytest.approx(float(np.median(profile.highlight)), abs=6)
    assert noise == pytest.approx(9.0, rel=0.12)
    assert np.array_equal(out, C.apply_camera(clean, profile, seed=3))  # a pure function of the seed
    assert not np.array_equal(out, C.apply_camera(clean, profile, seed=4))


def test_an_image_already_noisier_than_the_photo_gets_no_noise():
    profile = C.fit_camera([_photo(0.0, 100.0, 2.0, seed=0)])
    noisy = _photo(0.0, 100.0, 10.0, seed=5)
    out = C.apply_camera(noisy, profile, seed=0)
    assert C.measure(out)[2] == pytest.approx(C.measure(noisy)[2], rel=0.05)


def test_draws_come_from_the_real_photos_jointly():
    profile = C.CameraProfile(k=np.array([0.0, 0.6]), bed=np.array([40.0, 150.0]),
                              highlight=np.array([200.0, 220.0]), noise=np.array([1.0, 1.0]))
    clean = _photo(0.0, 100.0, 0.0, seed=2)
    drawn = set()
    for seed in range(8):
        k, bed, _, _ = C.measure(C.apply_camera(clean, profile, seed))
        dark = bed < 95
        drawn.add(dark)
        assert (k == pytest.approx(0.0, abs=0.08)) if dark else (k == pytest.approx(0.6, abs=0.08))
    assert drawn == {True, False}


def test_a_dark_bench_keeps_bright_parts():
    """Bed and highlights are set apart: a darker bed does not dim the parts (as one gain would)."""
    profile = C.CameraProfile(k=np.array([0.0]), bed=np.array([30.0]), highlight=np.array([220.0]),
                              noise=np.array([0.5]))
    out = C.apply_camera(_photo(0.0, 100.0, 0.0, seed=3), profile, seed=0)
    g = C.grey(out)
    assert np.median(g) == pytest.approx(30.0, abs=2) and g[20:44, 30:70].mean() == pytest.approx(220.0, abs=8)


def test_an_empty_set_of_photos_is_an_error():
    with pytest.raises(ValueError, match="at least one real photo"):
        C.fit_camera([])
