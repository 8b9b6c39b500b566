"""Networks, losses and the image pool on known inputs."""

from __future__ import annotations

import math

import pytest
import torch

from pipeline.gan.losses import GANLoss, cycle_loss, cyclegan_objective, gradient_penalty, identity_loss
from pipeline.gan.networks import PatchDiscriminator, ResnetGenerator, count_parameters, init_weights
from pipeline.gan.pool import ImagePool
from pipeline.gan.cyclegan import LinearDecay


def test_paper_configuration_sizes():
    assert count_parameters(ResnetGenerator(3, 3, ngf=64, n_blocks=9)) == 11_378_179
    assert count_parameters(PatchDiscriminator(3, ndf=64, n_layers=3)) == 2_764_737


def test_shapes_and_ranges():
    g, d = init_weights(ResnetGenerator(ngf=8, n_blocks=2)), init_weights(PatchDiscriminator(ndf=8))
    x = torch.rand(2, 3, 64, 96) * 2 - 1
    y = g(x)
    assert y.shape == x.shape and y.abs().max() <= 1
    assert d(x).shape == (2, 1, 6, 10)  # 70x70 patches at stride 8
    w = torch.cat([m.weight.detach().flatten() for m in g.modules() if isinstance(m, torch.nn.Conv2d)])
    assert abs(float(w.std()) - 0.02) < 0.002 and abs(float(w.mean())) < 0.002


def test_patchgan_receptive_field_is_70():
    d = init_weights(PatchDiscriminator(ndf=8)).eval()
    for i, m in enumerate(d.model):  # instance norm mixes the whole image through its statistics
        if isinstance(m, torch.nn.InstanceNorm2d):
            d.model[i] = torch.nn.Identity()
    x = torch.zeros(1, 3, 128, 128, requires_grad=True)
    d(x)[0, 0, 5, 5].backward()
    rows = (x.grad.abs().sum((0, 1, 3)) > 0).nonzero()
    assert int(rows.max() - rows.min() + 1) == 70


def test_lsgan_and_vanilla_on_known_inputs():
    ones, zeros = torch.ones(1, 1, 4, 4), torch.zeros(1, 1, 4, 4)
    ls = GANLoss("lsgan")
    assert float(ls(ones, True)) == 0 and float(ls(zeros, True)) == 1 and float(ls(ones, False)) == 1
    v = GANLoss("vanilla")
    assert float(v(zeros, True)) == pytest.approx(math.log(2))
    assert float(v(torch.full((2, 1), 20.0), True)) < 1e-6


def test_hinge_and_wgan_on_known_inputs():
    h = GANLoss("hinge")
    p = torch.tensor([0.5, 2.0])
    assert float(h(p, True)) == pytest.approx(0.25)  # relu(1-0.5)=0.5, relu(1-2)=0
    assert float(h(p, False)) == pytest.approx(2.25)  # relu(1+0.5)=1.5, relu(1+2)=3
    assert float(h(p, True, for_discriminator=False)) == pytest.approx(-1.25)
    w = GANLoss("wgangp")
    assert float(w(p, True)) == pytest.approx(-1.25) and float(w(p, False)) == pytest.approx(1.25)
    with pytest.raises(ValueError, match="gan mode"):
        GANLoss("bogus")


def test_gradient_penalty_of_a_linear_critic():
    weight = torch.full((1, 3, 2, 2), 0.25)  # ‖∇D‖ = ‖weight‖ = sqrt(12)·0.25

    class Linear(torch.nn.Module):
        def forward(self, x):
            return (x * weight).sum((1, 2, 3))

    real, fake = torch.rand(4, 3, 2, 2), torch.rand(4, 3, 2, 2)
    expected = 10.0 * (math.sqrt(12) * 0.25 - 1) ** 2
    assert float(gradient_penalty(Linear(), real, fake, 10.0)) == pytest.approx(expected, rel=1e-5)


def test_cycle_identity_and_objective():
    a, b = torch.zeros(1, 3, 4, 4), torch.full((1, 3, 4, 4), 0.5)
    assert float(cycle_loss(b, a)) == pytest.approx(0.5) and float(identity_loss(a, a)) == 0
    pred = torch.ones(1, 1, 2, 2)
    t = cyclegan_objective(GANLoss("lsgan"), pred, pred, a, a, b, a, a, a, lambda_cycle=10,
                           lambda_identity=0.5)
    # adversarial 0 (D says real), cycle_A = 10·0.5, cycle_B = 0, identities 0
    assert float(t["cycle_A"]) == pytest.approx(5.0) and float(t["G"]) == pytest.approx(5.0)
    t = cyclegan_objective(GANLoss("lsgan"), 0 * pred, pred, a, a, a, a, b, b, lambda_cycle=10,
                           lambda_identity=0.5)
    assert float(t["G_AB"]) == 1 and float(t["idt_A"]) == pytest.approx(2.5)
    assert float(t["G"]) == pytest.approx(6.0)
    t = cyclegan_objective(GANLoss("lsgan"), pred, pred, a, a, a, a, None, None, lambda_identity=0)
    assert "idt_A" not in t


def test_image_pool_fills_swaps_and_restores():
    assert torch.equal(ImagePool(0).query(torch.ones(2, 3, 2, 2)), torch.ones(2, 3, 2, 2))
    pool = ImagePool(3, seed=1)
    first = pool.query(torch.arange(3.0).view(3, 1, 1, 1))
    assert torch.equal(first.flatten(), torch.tensor([0.0, 1.0, 2.0])) and len(pool.images) == 3
    state = pool.state_dict()
    twin = ImagePool(3, seed=99)
    twin.load_state_dict(state)
    outs = [pool.query(torch.full((4, 1, 1, 1), float(10 + i))) for i in range(5)]
    twins = [twin.query(torch.full((4, 1, 1, 1), float(10 + i))) for i in range(5)]
    assert all(torch.equal(x, y) for x, y in zip(outs, twins))
    history = torch.cat(outs).flatten().tolist()
    assert any(v < 10 for v in history) and any(v >= 10 for v in history)  # old and new fakes both returned


def test_image_pool_static_buffer_makes_the_same_choices_as_the_list():
    """The graph-capturable pool (host-drawn plan, fixed device buffer) returns and keeps exactly
    what the list pool does, including swaps within one batch, and checkpoints the same way."""
    listed, static = ImagePool(3, seed=5), ImagePool(3, seed=5)
    batches = [torch.full((2, 1, 2, 2), float(i)) + torch.arange(2.0).view(2, 1, 1, 1) / 10 for i in range(8)]
    static.make_static(batches[0])
    for i, x in enumerate(batches):
        ref = listed.query(x)
        plan = torch.tensor(static.plan(2), dtype=torch.long).T  # (3, N): take, store, slot
        assert torch.equal(static.query_static(x, plan), ref), i
        assert all(torch.equal(a, b) for a, b in zip(listed.stored(), static.stored()))
        if i == 4:  # round trip: static -> list pool and list -> static pool mid-run
            st, sl = static.state_dict(), listed.state_dict()
            static, listed = ImagePool(3, seed=0), ImagePool(3, seed=0)
            static.make_static(batches[0])
            static.load_state_dict(sl)
            listed.load_state_dict(st)
    assert ImagePool(0).plan(4) == []  # no draws without a pool, as query takes none


def test_cuda_graphs_auto_only_where_a_graph_can_run(caplog):
    from pipeline.gan.accel import use_cuda_graphs

    assert use_cuda_graphs("auto", "cuda") and not use_cuda_graphs("auto", "cpu")
    assert not use_cuda_graphs("auto", "cuda", world_size=2)  # DDP
    assert not use_cuda_graphs("auto", "cuda", precision="fp16")  # the grad scaler syncs every step
    assert not use_cuda_graphs("auto", "cuda", gan_mode="wgangp") and use_cuda_graphs(True, "cuda", gan_mode="wgangp")
    with caplog.at_level("WARNING"):
        assert not use_cuda_graphs(True, "cpu")
    assert "without CUDA graphs" in caplog.text
    with pytest.raises(ValueError, match="cuda_graphs"):
        use_cuda_graphs("yes", "cuda")


def test_linear_decay_schedule():
    f = LinearDecay(100, 0.5)
    assert [f(0), f(49), f(50), f(75), f(100)] == [1.0, 1.0, 1.0, 0.5, 0.0]


def test_gan_package_imports_on_a_bare_gpu_host():
    """Training and translation need only torch, numpy, OpenCV, safetensors, PyYAML and rich."""
    import subprocess
    import sys
    from pathlib import Path

    code = ("import sys\n"
            "for m in ('pydantic', 'albumentations', 'prefect', 'ultralytics', 'typer'):\n"
            "    sys.modules[m] = None\n"
            "import pipeline.gan.cyclegan, pipeline.gan.training_loop, pipeline.gan.translate, pipeline.gan.training_run, "
            "pipeline.gan.quality\n")
    repo = Path(__file__).resolve().parents[2]
    p = subprocess.run([sys.executable, "-c", code], cwd=repo, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-1500:]


def test_reflection_padding_keeps_bf16_under_autocast_with_the_same_values():
    """Autocast would pad a bf16 activation in float32 (two copies per convolution); ours pads
    in place of it, in the input's dtype, to the very same values, and the generator uses it."""
    import torch
    from torch import nn

    from pipeline.gan.networks import ReflectionPad2d, ResnetGenerator

    x = torch.randn(1, 4, 6, 6).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        theirs, ours = nn.ReflectionPad2d(2)(x), ReflectionPad2d(2)(x)
    assert theirs.dtype == torch.float32 and ours.dtype == torch.bfloat16
    assert torch.equal(ours.float(), theirs)
    g = ResnetGenerator(3, 3, 8, 2, upsample="resize")
    pads = [m for m in g.modules() if isinstance(m, nn.ReflectionPad2d)]
    assert pads and all(isinstance(m, ReflectionPad2d) for m in pads)
