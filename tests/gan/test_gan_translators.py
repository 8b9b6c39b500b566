"""The translator options: resize-convolution upsampling, the structure term, CUT and FastCUT
behind the same training loop (train, checkpoint, resume exactly)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from pipeline.gan.data import UnpairedDataset, training_images
from pipeline.gan.losses import structure_loss
from pipeline.gan.networks import ResnetGenerator, init_weights
from pipeline.gan.training_loop import FitOptions, fit


def opt(**kw):
    base = dict(model="cyclegan", ngf=8, ndf=8, n_blocks=2, n_layers_d=3, gan_mode="lsgan", lambda_cycle=10.0,
                lambda_identity=0.0, lambda_gp=10.0, pool_size=4, lr=2e-4, beta1=0.5, iterations=6,
                decay_from=0.5, precision="fp32", channels_last=False, compile=False, upsample="resize",
                lambda_structure=1.0, structure_box_weight=4.0, lambda_nce=None, nce_patches=32, nce_tau=0.07)
    return SimpleNamespace(**{**base, **kw})


def _high_frequency_share(img: np.ndarray) -> float:
    """Share of the (mean-removed) power at >= 1/4 cycles per pixel: where a stride-2 checkerboard lives."""
    g = img.mean(axis=2)
    power = np.abs(np.fft.fft2(g - g.mean())) ** 2
    fy, fx = np.abs(np.fft.fftfreq(g.shape[0]))[:, None], np.abs(np.fft.fftfreq(g.shape[1]))[None, :]
    return float(power[np.maximum(fy, fx) >= 0.25].sum() / max(power.sum(), 1e-12))


@pytest.mark.parametrize("seed", range(4))
def test_resize_convolution_leaves_no_checkerboard_on_a_constant_input(seed):
    """G(constant) of a freshly initialised generator: transposed convolutions put most of the
    output's energy at stride-2 frequencies (a checkerboard), resize-convolution almost none."""
    shares = {}
    for up in ("transpose", "resize"):
        torch.manual_seed(seed)
        g = init_weights(ResnetGenerator(ngf=16, n_blocks=2, upsample=up)).eval()
        with torch.no_grad():
            y = g(torch.full((1, 3, 64, 64), 0.3))[0].permute(1, 2, 0).numpy()
        shares[up] = _high_frequency_share(y)
    assert shares["resize"] < 0.3 < 0.5 < shares["transpose"], shares


def test_structure_term_is_zero_for_identical_images_and_grows_with_a_shifted_outline():
    img = torch.full((1, 3, 64, 64), -0.6)
    img[:, :, 20:44, 16:40] = 0.7  # a bright part on a dark bed
    assert structure_loss(img, img).item() == pytest.approx(0.0, abs=1e-6)
    assert structure_loss(img, -img).item() == pytest.approx(0.0, abs=1e-6)  # polarity: outline kept
    losses = [structure_loss(img, torch.roll(img, s, dims=3)).item() for s in (1, 3, 6)]
    assert 0 < losses[0] < losses[1] < losses[2]
    erased = torch.full_like(img, -0.6)
    erased[:, :, 0:4, 0:4] = 0.7  # the part gone (something elsewhere)
    assert structure_loss(img, erased).item() > losses[2]
    # the weight map: a change inside the weighted region counts more than the same change outside
    moved = img.clone()
    moved[:, :, 20:44, 16:18] = -0.6  # the part's left edge eaten away
    inside = torch.ones(1, 1, 64, 64)
    inside[:, :, 16:48, 12:44] = 4.0
    outside = torch.ones(1, 1, 64, 64)
    outside[:, :, 0:12, 0:12] = 4.0
    assert structure_loss(img, moved, inside) > structure_loss(img, moved, outside) > 0


def test_training_crops_carry_a_box_weight_map(tiny_dataset):
    a, b = training_images(tiny_dataset)
    ds = UnpairedDataset(a, b, load_size=64, crop_size=32, seed=0, length=20, object_aware=True, box_weight=4.0)
    w = torch.stack([ds[k]["A_weight"] for k in range(20)])
    assert w.shape == (20, 1, 32, 32) and set(torch.unique(w).tolist()) <= {1.0, 4.0}
    assert (w == 4.0).any(dim=(1, 2, 3)).all()  # object-aware crops always hold part of a box


class _Stop(Exception):
    pass


def _stop_at(step: int):
    def cb(s, model):
        if s == step:
            raise _Stop
    return cb


@pytest.mark.parametrize("model", ["cyclegan", "cut", "fastcut"])
def test_every_translator_trains_and_resumes_exactly(tiny_dataset, tmp_path, model):
    """Each model through the same loop: finite losses with its own terms, a checkpoint, and a
    run stopped after step 4 that resumes from its step-3 checkpoint to the uninterrupted
    run's losses and weights."""
    a, b = training_images(tiny_dataset)
    fopt = FitOptions(64, 32, object_aware_crops=True, checkpoint_every=3, log_every=1, image_every=6)
    o = opt(model=model)
    full = fit(o, fopt, a, b, tmp_path / "full", progress=False)
    terms = set(full.history[-1])
    assert {"G", "structure_A"} <= terms
    assert ("cycle_A" in terms) == (model == "cyclegan") and ("NCE" in terms) == (model != "cyclegan")
    assert ("NCE_Y" in terms) == (model == "cut")
    assert all(np.isfinite(v) for row in full.history for v in row.values())
    with pytest.raises(_Stop):
        fit(o, fopt, a, b, tmp_path / "resumed", progress=False, callbacks=[_stop_at(4)])
    resumed = fit(o, fopt, a, b, tmp_path / "resumed", progress=False)
    assert resumed.resumed_from == 3 and resumed.step == 6
    for ref, got in zip(full.history, resumed.history):
        assert got == pytest.approx(ref, rel=1e-5, abs=1e-6)
    for name, net in full.model.networks().items():
        other = resumed.model.networks()[name].state_dict()
        for k, v in net.state_dict().items():
            assert torch.allclose(v, other[k], rtol=1e-5, atol=1e-6), (name, k)
    grid = (tmp_path / "full" / "samples" / "step_000006.png")
    assert grid.is_file()


def test_logs_name_the_translator_that_trains():
    from pipeline.gan import TRANSLATORS, display_name

    assert [display_name(m) for m in TRANSLATORS] == ["CycleGAN", "CUT", "FastCUT"]
