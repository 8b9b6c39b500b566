"""CycleGAN training on the tiny dataset: the cycle loss falls, a SIGKILLed run resumes exactly,
and the stage writes a finished, cached model directory."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from pipeline.gan.data import StepSampler, UnpairedDataset, training_images
from pipeline.gan.training_loop import FitOptions, fit

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


def tiny_opt(**kw):
    base = dict(ngf=8, ndf=8, n_blocks=2, n_layers_d=3, gan_mode="lsgan", lambda_cycle=10.0,
                lambda_identity=0.5, lambda_gp=10.0, pool_size=4, lr=2e-4, beta1=0.5, iterations=30,
                decay_from=0.5, precision="fp32", channels_last=False, compile=False)
    return SimpleNamespace(**{**base, **kw})


def test_training_images_never_read_b_val_or_test(tiny_dataset):
    a, b = training_images(tiny_dataset)
    held_out = {str(tiny_dataset.image_path(im))
                for s in ("val", "test") for im in tiny_dataset.coco("B", s).images}
    used = {str(i.path) for i in a + b}
    assert held_out and not (held_out & used)
    assert len(a) == len(tiny_dataset.coco("A", "train").images)


def test_samples_are_a_pure_function_of_seed_and_index(tiny_dataset):
    a, b = training_images(tiny_dataset)
    ds = UnpairedDataset(a, b, load_size=64, crop_size=32, seed=1, length=100, object_aware=True)
    again = UnpairedDataset(a, b, load_size=64, crop_size=32, seed=1, length=100, object_aware=True)
    x, y = ds[7], again[7]
    assert x["A"].shape == (3, 32, 32) and x["A"].min() >= -1 and x["A"].max() <= 1
    assert torch.equal(x["A"], y["A"]) and torch.equal(x["B"], y["B"])
    assert not torch.equal(ds[8]["A"], x["A"])
    # rank 1 of 2 starts where rank 0's first batch ends; a resume at step 3 continues the same sequence
    assert list(StepSampler(0, 2, 2, rank=1, world=2)) == [2, 3, 6, 7]
    assert list(StepSampler(3, 5, 1)) == list(StepSampler(0, 5, 1))[3:]


def test_cycle_loss_falls_in_30_steps_and_bf16_tracks_fp32(tiny_dataset, tmp_path):
    a, b = training_images(tiny_dataset)
    runs = {}
    for precision in ("fp32", "bf16"):
        fopt = FitOptions(64, 32, log_every=5, checkpoint_every=100, image_every=15)
        runs[precision] = fit(tiny_opt(precision=precision), fopt, a, b, tmp_path / precision, progress=False)
    for precision, r in runs.items():
        cyc = [row["cycle_A"] + row["cycle_B"] for row in r.history]
        assert r.step == 30 and len(cyc) == 6
        assert cyc[-1] < 0.7 * cyc[0], (precision, cyc)
        assert all(torch.isfinite(torch.tensor(list(row.values()))).all() for row in r.history)
    # same seed, same data: bf16 autocast follows the fp32 run's losses closely
    for k in ("G", "cycle_A", "cycle_B"):
        f32, b16 = runs["fp32"].history[-1][k], runs["bf16"].history[-1][k]
        assert abs(b16 - f32) <= 0.15 * f32, (k, f32, b16)
    assert len(list((tmp_path / "fp32" / "samples").glob("step_*.png"))) == 2  # steps 15 and 30
    assert (tmp_path / "fp32" / "checkpoints" / "last.pt").is_file()


def _worker(dataset: Path, work: Path, iterations: int, kill_at: int) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, str(HERE / "resume_worker.py"), str(dataset), str(work),
                           str(iterations), str(kill_at)], env=env, capture_output=True, text=True,
                          timeout=300)


def test_sigkilled_run_resumes_to_the_same_weights(tiny_dataset, tmp_path):
    full = _worker(tiny_dataset.root, tmp_path / "full", 20, 0)
    assert full.returncode == 0, full.stderr[-2000:]
    killed = _worker(tiny_dataset.root, tmp_path / "resumed", 20, 13)
    assert killed.returncode == -signal.SIGKILL
    marker = json.loads((tmp_path / "resumed" / "checkpoints" / "last.json").read_text())
    assert marker["step"] == 10  # the last checkpoint before the kill at step 13
    resumed = _worker(tiny_dataset.root, tmp_path / "resumed", 20, 0)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    ref = json.loads((tmp_path / "full" / "result.json").read_text())
    got = json.loads((tmp_path / "resumed" / "result.json").read_text())
    assert got["resumed_from"] == 10 and ref["resumed_from"] == 0
    assert [r["step"] for r in got["history"]] == [r["step"] for r in ref["history"]]
    for r_ref, r_got in zip(ref["history"], got["history"]):
        for k in r_ref:
            assert r_got[k] == pytest.approx(r_ref[k], rel=1e-5, abs=1e-6), (r_ref["step"], k)
    for k, v in ref["weights"].items():
        assert got["weights"][k] == pytest.approx(v, rel=1e-5, abs=1e-6), k


def test_checkpoint_of_another_config_is_not_resumed(tiny_dataset, tmp_path):
    a, b = training_images(tiny_dataset)
    fopt = FitOptions(64, 48, checkpoint_every=2, log_every=2, image_every=100)
    fit(tiny_opt(iterations=4), fopt, a, b, tmp_path, config_hash="one", progress=False)
    r = fit(tiny_opt(iterations=4), fopt, a, b, tmp_path, config_hash="two", progress=False)
    assert r.resumed_from == 0 and r.step == 4
    r = fit(tiny_opt(iterations=6), fopt, a, b, tmp_path, config_hash="two", progress=False)
    assert r.resumed_from == 4 and r.step == 6


@pytest.mark.parametrize("mode,precision",
                         [("vanilla", "fp32"), ("wgangp", "fp32"), ("hinge", "bf16"), ("lsgan", "fp16")])
def test_every_gan_mode_and_precision_trains(tiny_dataset, tmp_path, mode, precision):
    a, b = training_images(tiny_dataset)
    opt = tiny_opt(gan_mode=mode, precision=precision, iterations=3,
                   lambda_identity=0.0 if mode == "hinge" else 0.5)
    fopt = FitOptions(64, 32, batch_size=2, log_every=1, checkpoint_every=3, image_every=3)
    r = fit(opt, fopt, a, b, tmp_path, progress=False)
    assert r.step == 3 and all(torch.isfinite(torch.tensor(list(row.values()))).all() for row in r.history)
    assert ("idt_A" in r.history[-1]) == (opt.lambda_identity > 0)
    assert r.model.scaler.is_enabled() == (precision == "fp16")


def test_training_out_of_memory_names_gan_batch_size(tiny_dataset, tmp_path, monkeypatch):
    from pipeline.gan.cyclegan import CycleGAN
    from pipeline.gan.training_loop import TrainingOutOfMemoryError

    def oom(self):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (injected)")

    monkeypatch.setattr(CycleGAN, "optimize_parameters", oom)
    a, b = training_images(tiny_dataset)
    with pytest.raises(TrainingOutOfMemoryError, match=r"gan\.batch_size=2.*lower gan\.batch_size"):
        fit(tiny_opt(iterations=2), FitOptions(64, 32, batch_size=2), a, b, tmp_path, progress=False)


def _steps(opt, n: int = 2) -> list[dict[str, float]]:
    from pipeline.gan.cyclegan import CycleGAN

    model = CycleGAN(opt, "cpu", seed=0)
    g = torch.Generator().manual_seed(0)
    out = []
    for _ in range(n):
        model.set_input({"A": torch.rand(1, 3, 32, 32, generator=g) * 2 - 1,
                         "B": torch.rand(1, 3, 32, 32, generator=g) * 2 - 1})
        model.optimize_parameters()
        out.append(model.loss_values())
    return out


def _close(x: list[dict[str, float]], y: list[dict[str, float]], rel: float) -> bool:
    return all(b[k] == pytest.approx(a[k], rel=rel, abs=1e-5) for a, b in zip(x, y) for k in a)


def test_precision_and_channels_last_auto_resolve_sanely(monkeypatch):
    from pipeline.gan import accel
    from pipeline.gan.cyclegan import CycleGAN

    assert accel.resolve_precision("auto", "cpu") == ("bf16" if accel.cpu_has_fast_bf16() else "fp32")
    monkeypatch.setattr(accel, "cpu_has_fast_bf16", lambda: False)
    assert accel.resolve_precision("auto", "cpu") == "fp32"
    monkeypatch.setattr(accel, "cpu_has_fast_bf16", lambda: True)
    assert accel.resolve_precision("auto", "cpu") == "bf16"
    assert [accel.resolve_precision(p, "cpu") for p in ("fp32", "bf16", "fp16")] == ["fp32", "bf16", "fp16"]
    with pytest.raises(ValueError, match="precision"):
        accel.resolve_precision("int8", "cpu")
    assert accel.use_channels_last("auto", "cpu") is False and accel.use_channels_last("auto", "cuda") is True
    assert accel.use_channels_last(True, "cpu") is True and accel.use_channels_last(False, "cuda") is False
    model = CycleGAN(tiny_opt(precision="auto", channels_last="auto"), "cpu")
    assert model.precision == "bf16" and model.amp_dtype == torch.bfloat16
    assert model.memory_format == torch.contiguous_format  # channels_last was slower on CPU


def test_channels_last_path_matches_the_default_layout():
    from pipeline.gan.cyclegan import CycleGAN

    model = CycleGAN(tiny_opt(channels_last=True), "cpu")
    w = model.G_AB.model[1].weight
    assert w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous()
    plain, cl = _steps(tiny_opt(channels_last=False), 3), _steps(tiny_opt(channels_last=True), 3)
    assert _close(plain[:1], cl[:1], rel=1e-4)  # the first step's losses: same forward maths
    # later steps drift slightly: Adam's first updates are ~lr·sign(grad), and near-zero gradients
    # summed in another order can flip sign
    assert _close(plain[1:], cl[1:], rel=0.05)


def test_compiled_step_matches_eager(monkeypatch):
    """torch.compile's graph capture and AOT autograd of our step (backend aot_eager: inductor's C++
    code generation takes ~7 minutes on 2 cores; bench/gan.py measures it)."""
    import functools

    try:
        import torch._dynamo  # noqa: F401
    except ImportError as e:  # pragma: no cover - torch builds without dynamo
        pytest.skip(f"torch.compile unavailable: {e}")
    opt = dict(ngf=4, ndf=4, n_blocks=1, n_layers_d=2, pool_size=0)
    eager = _steps(tiny_opt(**opt))
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="aot_eager"))
    torch._dynamo.reset()
    compiled = _steps(tiny_opt(**opt, compile=True))
    assert _close(eager, compiled, rel=1e-4)


def _runs(opt, mode: str, n: int = 6, batch: int = 2, uint8: bool = True):
    """n steps of a CycleGAN in `mode` on seeded uint8 (or float) batches: (model, losses, lrs used)."""
    from pipeline.gan.cyclegan import CycleGAN

    model = CycleGAN(opt, "cpu", seed=0, step_mode=mode)
    g = torch.Generator().manual_seed(0)
    losses, lrs = [], []
    for _ in range(n):
        if uint8:
            b = {k: torch.randint(0, 256, (batch, 32, 32, 3), dtype=torch.uint8, generator=g) for k in "AB"}
        else:
            b = {k: torch.rand(batch, 3, 32, 32, generator=g) * 2 - 1 for k in "AB"}
        model.set_input(b)
        model.optimize_parameters()
        losses.append(model.loss_values())
        lrs.append(float(model._lr[model.optimizer_G]) if mode != "eager" else None)
    return model, losses, lrs


def _weights(model) -> dict[str, torch.Tensor]:
    return {f"{n}.{k}": v.detach().clone() for n in ("G_AB", "G_BA", "D_A", "D_B")
            for k, v in getattr(model, n).state_dict().items()}


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_graph_step_without_capture_matches_the_eager_step(precision):
    """The CUDA-graph step (static input buffers, pool draws made on the host and applied on the
    device, learning rate read from a device tensor) run uncaptured on the CPU: the same losses,
    weights, learning-rate schedule and pool contents as the eager step, through the lr decay."""
    from pipeline.gan.cyclegan import LinearDecay

    opt = tiny_opt(precision=precision, pool_size=3, iterations=6, decay_from=0.3)
    eager, le, _ = _runs(opt, "eager")
    static, ls, lrs = _runs(opt, "static")
    assert static.graph.captured is False and static.fake_A_pool.buffer is not None
    assert le == ls  # bit for bit on the CPU
    we, ws = _weights(eager), _weights(static)
    assert all(torch.equal(we[k], ws[k]) for k in we)
    # the step at index i ran with the schedule's lr for step i, decaying from step 2 of 6
    decay = LinearDecay(6, 0.3)
    assert lrs == [opt.lr * decay(i) for i in range(6)] and lrs[-1] < lrs[0]
    assert eager.lr == static.lr and isinstance(static.optimizer_G.param_groups[0]["lr"], float)
    for pe, ps in ((eager.fake_A_pool, static.fake_A_pool), (eager.fake_B_pool, static.fake_B_pool)):
        assert len(pe.stored()) == len(ps.stored()) == 3
        assert all(torch.equal(x, y) for x, y in zip(pe.stored(), ps.stored()))
    with pytest.raises(ValueError, match="fixed batches"):
        static.set_input({k: torch.zeros(1, 32, 32, 3, dtype=torch.uint8) for k in "AB"})


def test_compiled_graph_step_tracks_the_eager_step(monkeypatch):
    """torch.compile of each network (backend aot_eager: inductor's C++ code generation takes
    minutes on 2 cores; bench/gpu_check.sh measures inductor on a GPU) inside the graph step."""
    import functools

    import torch._dynamo

    opt = tiny_opt(ngf=4, ndf=4, n_blocks=1, n_layers_d=2, pool_size=2, precision="bf16", iterations=4)
    eager, le, _ = _runs(opt, "eager", n=4)
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="aot_eager"))
    torch._dynamo.reset()
    compiled, lc, _ = _runs(SimpleNamespace(**{**vars(opt), "compile": True}), "static", n=4)
    assert compiled.G_AB._compiled_call_impl is not None  # compiled in place: same state_dict keys
    assert set(_weights(compiled)) == set(_weights(eager))
    assert _close(le, lc, rel=0.05)  # bf16 tolerance
    we, wc = _weights(eager), _weights(compiled)
    assert max(float((we[k] - wc[k]).abs().max()) for k in we) < 10 * opt.lr * 4


def test_uint8_batches_are_normalised_on_the_device_to_the_same_values(tiny_dataset):
    from pipeline.gan.cyclegan import CycleGAN

    a, b = training_images(tiny_dataset)
    kw = dict(load_size=64, crop_size=32, seed=4, length=8)
    floats, raw = UnpairedDataset(a, b, **kw), UnpairedDataset(a, b, **kw, uint8=True)
    x, y = floats[3], raw[3]
    assert y["A"].dtype == torch.uint8 and y["A"].shape == (32, 32, 3)
    model = CycleGAN(tiny_opt(channels_last=True), "cpu")
    model.set_input({k: v[None] for k, v in y.items()})
    assert torch.equal(model.real_A, x["A"][None]) and torch.equal(model.real_B, x["B"][None])
    assert model.real_A.is_contiguous(memory_format=torch.channels_last)  # NHWC bytes: the layout comes free


def test_resume_after_a_compiled_graph_run_is_exact(tiny_dataset, tmp_path, monkeypatch):
    """A compiled (aot_eager), graph-step run interrupted after its checkpoint at step 3 resumes to
    the losses and weights of an uninterrupted run: pools, RNGs and schedule restored exactly."""
    import functools

    import torch._dynamo

    from pipeline.gan import cyclegan
    from pipeline.gan.cyclegan import CycleGAN

    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="aot_eager"))
    monkeypatch.setattr(cyclegan, "CycleGAN", functools.partial(CycleGAN, step_mode="static"))  # make_model reads it
    torch._dynamo.reset()
    a, b = training_images(tiny_dataset)
    opt = tiny_opt(ngf=4, ndf=4, n_blocks=1, n_layers_d=2, pool_size=2, iterations=6, decay_from=0.3,
                   compile=True)
    fopt = FitOptions(64, 32, batch_size=2, checkpoint_every=3, log_every=1, image_every=100)
    full = fit(opt, fopt, a, b, tmp_path / "full", seed=1, config_hash="c", progress=False)

    class Stop(Exception):
        pass

    def stop(step: int, model) -> None:
        if step == 4:
            raise Stop

    with pytest.raises(Stop):
        fit(opt, fopt, a, b, tmp_path / "cut", seed=1, config_hash="c", progress=False, callbacks=[stop])
    resumed = fit(opt, fopt, a, b, tmp_path / "cut", seed=1, config_hash="c", progress=False)
    assert resumed.resumed_from == 3 and resumed.model.step_mode == "static"
    assert [r["step"] for r in resumed.history] == [r["step"] for r in full.history] == list(range(1, 7))
    for r_full, r_res in zip(full.history, resumed.history):
        assert r_res == pytest.approx(r_full, rel=1e-6, abs=1e-7), r_full["step"]
    wf, wr = _weights(full.model), _weights(resumed.model)
    assert all(torch.allclose(wf[k], wr[k], rtol=1e-6, atol=1e-7) for k in wf)


def test_dataloader_workers_give_the_same_batches(tiny_dataset):
    a, b = training_images(tiny_dataset)
    ds = UnpairedDataset(a, b, load_size=64, crop_size=32, seed=2, length=12)

    def batches(workers: int) -> list[dict[str, torch.Tensor]]:
        loader = torch.utils.data.DataLoader(ds, batch_size=2, sampler=StepSampler(0, 6, 2),
                                             num_workers=workers)
        return list(loader)

    plain, parallel = batches(0), batches(2)
    assert len(plain) == len(parallel) == 6
    assert all(torch.equal(x[k], y[k]) for x, y in zip(plain, parallel) for k in ("A", "B"))


def test_object_aware_crops_contain_the_parts(tmp_path):
    import cv2
    import numpy as np

    from pipeline.gan.data import ImageItem

    items = []
    for i in range(4):  # a dark 256² photo with one bright 12² part somewhere
        img = np.zeros((256, 256, 3), np.uint8)
        x, y = 30 + 50 * i, 200 - 40 * i
        img[y:y + 12, x:x + 12] = 255
        cv2.imwrite(str(tmp_path / f"{i}.png"), img)
        items.append(ImageItem(tmp_path / f"{i}.png", [[x, y, 12, 12]]))

    def with_part(object_aware: bool) -> int:
        ds = UnpairedDataset(items, items, load_size=256, crop_size=32, seed=0, length=200,
                             object_aware=object_aware)
        return sum(int(ds[k]["A"].max() > 0.5) for k in range(200))

    aware, plain = with_part(True), with_part(False)
    assert aware == 200 and plain < 40, (aware, plain)  # plain random crops: 5/200 here


def test_progress_reports_steps_and_losses(tiny_dataset, tmp_path, capsys):
    a, b = training_images(tiny_dataset)
    fopt = FitOptions(64, 32, log_every=2, checkpoint_every=4, image_every=4)
    fit(tiny_opt(iterations=4), fopt, a, b, tmp_path, progress=True)
    err = capsys.readouterr().err  # not a terminal: plain lines
    assert "CycleGAN: 4/4 it in" in err and "cycle_A" in err
