"""Translation (batched, tiled, any size, bounded memory, OOM fallback) and safe loading."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from pipeline.gan.checkpoint import (CheckpointError, UnsafeCheckpointError, load_checkpoint, load_weights,
                                     save_weights)
from pipeline.gan.networks import ResnetGenerator, init_weights
from pipeline.gan.translate import Translator

sys.path.insert(0, str(Path(__file__).parent))  # gan_helpers lives beside this file (importlib mode)
from gan_helpers import scene  # noqa: E402


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    g = init_weights(ResnetGenerator(ngf=8, n_blocks=2))
    path = tmp_path_factory.mktemp("w") / "G_AB.safetensors"
    save_weights(path, g.state_dict(), {"ngf": 8, "n_blocks": 2, "load_size": 64, "direction": "AtoB"})
    return path


def test_tiled_matches_whole_image(weights):
    img = scene(200, 300)
    whole = Translator.load(weights, tile=512, load_size=None, precision="fp32")([img])[0]
    tiled = Translator.load(weights, tile=128, overlap=48, batch=3, load_size=None,
                            precision="fp32")([img])[0]
    diff = np.abs(whole.astype(int) - tiled.astype(int))
    assert whole.shape == tiled.shape == img.shape
    assert diff.mean() < 1.0 and np.percentile(diff, 99) <= 6, (diff.mean(), np.percentile(diff, 99))
    # the same tiling without the whole-image norm statistics would be far off: the check has teeth
    t = Translator.load(weights, tile=128, overlap=48, load_size=None, precision="fp32")
    t.stats_pixels = 16 * 16
    assert np.abs(whole.astype(int) - t([img])[0].astype(int)).mean() > diff.mean()


def test_any_size_keeps_shape_and_batches_agree(weights):
    imgs = [scene(67, 101, 1), scene(64, 64, 2), scene(64, 64, 3), scene(300, 90, 4)]
    tr = Translator.load(weights, tile=64, overlap=16, batch=2)  # resize short side to 64 (metadata)
    out = tr(imgs)
    assert [o.shape for o in out] == [i.shape for i in imgs] and all(o.dtype == np.uint8 for o in out)
    alone = tr([imgs[2]])[0]
    assert np.abs(alone.astype(int) - out[2].astype(int)).max() <= 1  # batching does not change results
    assert len(tr.sha256) == 64
    with pytest.raises(ValueError, match="uint8"):
        tr([imgs[0].astype(np.float32)])


def test_unsafe_pickle_is_refused_and_never_run(tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    evil = tmp_path / "G_AB.pt"
    torch.save({"model.1.weight": Payload()}, evil)
    with pytest.raises(UnsafeCheckpointError, match=r"G_AB\.pt: refused.*posix\.system"):
        load_weights(evil)
    with pytest.raises(UnsafeCheckpointError, match="G_AB.pt"):
        Translator.load(evil)
    assert not marker.exists()
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pt"):
        load_checkpoint(junk)
    plain = tmp_path / "plain.pt"
    torch.save({"w": torch.ones(2)}, plain)
    assert torch.equal(load_weights(plain)["w"], torch.ones(2))


def test_translate_checked_counts_non_finite_outputs_before_the_cast(weights):
    tr = Translator.load(weights, tile=64, overlap=16, load_size=None, precision="fp32")
    imgs = [scene(48, 48, 1), scene(96, 130, 2)]  # one whole, one tiled
    out, bad = tr.translate_checked(imgs)
    assert bad == [0, 0] and all(np.array_equal(o, p) for o, p in zip(out, tr(imgs)))
    broken = Translator(tr.net, tile=64, overlap=16, precision="fp32")
    last = [m for m in broken.net.modules() if isinstance(m, torch.nn.Conv2d)][-1]
    with torch.no_grad():
        last.bias[0] = float("nan")  # the red channel of every pixel becomes NaN
    out, bad = broken.translate_checked(imgs)
    assert bad == [48 * 48, 96 * 130]
    assert [o.shape for o in out] == [i.shape for i in imgs] and (out[1][..., 0] == 128).all()


def test_cuda_out_of_memory_halves_the_translation_batch(weights, monkeypatch, caplog):
    imgs = [scene(64, 64, i) for i in range(5)] + [scene(100, 160, 9)]
    ref = Translator.load(weights, tile=64, overlap=16, batch=2, load_size=None, precision="fp32")(imgs)
    tr = Translator.load(weights, tile=64, overlap=16, batch=8, load_size=None, precision="fp32")
    real_forward = tr._forward
    seen = []

    def forward(x):
        seen.append(x.shape[0])
        if x.shape[0] > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (injected)")
        return real_forward(x)

    monkeypatch.setattr(tr, "_forward", forward)
    with caplog.at_level("WARNING", logger="pipeline.gan.translate"):
        out = tr(imgs)
    assert tr.batch == 2 and max(seen) > 2  # 8 -> 4 -> 2, then kept for the rest
    assert all(np.array_equal(o, r) for o, r in zip(out, ref))  # outputs do not depend on the batch
    assert "retrying with batch 4" in caplog.text and "retrying with batch 2" in caplog.text
    monkeypatch.setattr(tr, "_forward", lambda x: (_ for _ in ()).throw(torch.cuda.OutOfMemoryError("oom")))
    tr.batch = 1
    with pytest.raises(torch.cuda.OutOfMemoryError):
        tr([imgs[0]])


def test_tiling_at_demo_width_with_the_configured_overlap():
    """ngf 32, 6 blocks (the demo generator), tile 128 and the config's default overlap."""
    from pipeline.config import GanConfig

    torch.manual_seed(0)
    net = init_weights(ResnetGenerator(ngf=32, n_blocks=6))
    img = scene(203, 301)  # sides not multiples of 4
    whole = Translator(net, tile=512, precision="fp32")([img])[0]
    tr = Translator(net, tile=128, overlap=GanConfig().tile_overlap, batch=4, precision="fp32")
    assert tr.overlap == 64  # half the receptive field (121 px)
    diff = np.abs(whole.astype(int) - tr([img])[0].astype(int))
    assert diff.mean() < 0.3 and np.percentile(diff, 99) <= 2 and diff.max() <= 12, (
        diff.mean(), np.percentile(diff, 99), diff.max())


def test_tiled_host_memory_grows_with_width_not_area(weights):
    """numpy allocations (accumulators, copies) while translating a 256² and a 1024² image."""
    import tracemalloc

    def extra(side: int) -> int:
        tr = Translator.load(weights, tile=64, overlap=16, batch=2, load_size=None, precision="fp32")
        tr.stats_pixels = 64 * 64  # the norm statistics pass costs the same at both sizes
        img = scene(side, side, 3)
        tracemalloc.start()
        out = tr([img])[0]
        peak = tracemalloc.get_traced_memory()[1] - out.nbytes
        tracemalloc.stop()
        return peak

    small, large = extra(256), extra(1024)
    assert large < 6 * small, (small, large)  # 4x the width; the area would give 16x
    assert large < 16 * 1024 * 1024 / 8, large  # far below full-size float32 accumulators (16 B/pixel)


def test_auto_precision_translates_in_bf16_on_a_bf16_cpu_close_to_fp32(weights):
    from pipeline.gan.accel import cpu_has_fast_bf16

    auto = Translator.load(weights, load_size=None)
    assert auto.precision == ("bf16" if cpu_has_fast_bf16() else "fp32")
    imgs = [scene(64, 64, 4), scene(100, 150, 5)]  # whole, and tiled at tile 64
    fp32 = Translator.load(weights, tile=64, load_size=None, precision="fp32")(imgs)
    bf16 = Translator.load(weights, tile=64, load_size=None, precision="bf16")(imgs)
    for a, b in zip(fp32, bf16):
        d = np.abs(a.astype(int) - b.astype(int))
        assert d.mean() < 2.0 and np.percentile(d, 99) <= 8, (d.mean(), np.percentile(d, 99))


def test_translate_files_streams_in_groups_bounded_by_batch_and_pixels(weights, tmp_path):
    from pipeline.gan.translate import translate_files

    tr = Translator.load(weights, tile=64, overlap=16, batch=2, load_size=None, precision="fp32")
    sizes = [(50, 70), (50, 70), (50, 70), (300, 200), (40, 40)]
    pairs = []
    for i, (h, w) in enumerate(sizes):
        cv2.imwrite(str(tmp_path / f"{i}.png"), scene(h, w, i))
        pairs.append((tmp_path / f"{i}.png", tmp_path / "out" / f"{i}.png"))
    calls = []
    real_call = Translator.__call__

    class Recording(Translator):
        def __call__(self, images):
            calls.append([i.shape[:2] for i in images])
            return real_call(self, images)

    tr.__class__ = Recording
    done, failed = translate_files(tr, pairs)
    assert len(done) == 5 and not failed
    # at most `batch` images and batch × tile² pixels per call; the large photo goes alone
    assert calls == [[(50, 70), (50, 70)], [(50, 70)], [(300, 200)], [(40, 40)]]


def test_translate_batch_auto_is_chosen_per_device(monkeypatch):
    """auto: one tile per pass on CPU (larger batches only cost memory traffic there: 2x the CPU
    time at 8, bench/results/translate_batch_cpu.json), 8 on CUDA; numbers are honoured."""
    import torch

    from pipeline.gan.accel import translation_batch
    from pipeline.gan.networks import ResnetGenerator
    from pipeline.gan.translate import Translator

    assert translation_batch("auto", "cpu") == 1 and translation_batch("auto", "cuda:1") == 8
    assert translation_batch(3, "cpu") == 3
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert translation_batch("auto", "auto") == 1
    with pytest.raises(ValueError, match="translate batch"):
        translation_batch(0, "cpu")
    assert Translator(ResnetGenerator(3, 3, 4, 1), device="cpu").batch == 1
    assert Translator(ResnetGenerator(3, 3, 4, 1), device="cpu", batch=5).batch == 5


def _max_diff(xs: list[np.ndarray], ys: list[np.ndarray]) -> int:
    assert [x.shape for x in xs] == [y.shape for y in ys]
    return max(int(np.abs(x.astype(int) - y.astype(int)).max()) for x, y in zip(xs, ys))


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_uint8_device_path_matches_the_host_path(weights, precision):
    """The CUDA path (uint8 in and out of the device; normalising, tile blending and the cast on it),
    run on the CPU: the host path's output within one grey level, in the CUDA layout too."""
    imgs = [scene(64, 64, i) for i in range(5)] + [scene(203, 301, 7), scene(67, 101, 1)]
    kw = dict(tile=96, overlap=32, batch=2, load_size=None, precision=precision)
    host = Translator.load(weights, **kw)
    assert host.device_io is False  # the CPU default: the host path
    ref, ref_bad = host.translate_checked(imgs)
    dev = Translator.load(weights, **kw)
    dev.device_io = True
    out, bad = dev.translate_checked(imgs)
    assert _max_diff(ref, out) <= 1 and bad == ref_bad == [0] * len(imgs)
    if precision == "fp32":  # (in bf16 the CPU's NHWC convolutions round differently from NCHW ones)
        dev.memory_format = torch.channels_last  # as on CUDA: NHWC activations, norms without a copy
        dev.net.to(memory_format=torch.channels_last)
        assert _max_diff(ref, dev(imgs)) <= 1


def test_uint8_device_path_counts_non_finite_outputs(weights):
    tr = Translator.load(weights, tile=64, overlap=16, load_size=None, precision="fp32")
    broken = Translator(tr.net, tile=64, overlap=16, precision="fp32", device_io=True)
    last = [m for m in broken.net.modules() if isinstance(m, torch.nn.Conv2d)][-1]
    with torch.no_grad():
        last.bias[0] = float("nan")
    out, bad = broken.translate_checked([scene(48, 48, 1), scene(96, 130, 2)])
    assert bad == [48 * 48, 96 * 130] and (out[1][..., 0] == 128).all()


def test_compiled_translator_pads_short_batches_to_one_shape(weights, monkeypatch):
    """compile=True: one batch shape for the compiled generator (the short last batch is padded with
    blank images and cut back), the statistics pass uncompiled; outputs as the eager translator's."""
    import functools

    import torch._dynamo

    imgs = [scene(64, 64, i) for i in range(5)] + [scene(150, 170, 3)]
    kw = dict(tile=96, overlap=32, batch=3, load_size=None, precision="fp32")
    ref = Translator.load(weights, **kw)(imgs)
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="aot_eager"))
    torch._dynamo.reset()
    tr = Translator.load(weights, **kw)
    tr = Translator(tr.net, tile=96, overlap=32, batch=3, precision="fp32", compile=True, device_io=True)
    shapes = []
    real = tr.fast.forward
    monkeypatch.setattr(tr.fast, "forward", lambda x: shapes.append(tuple(x.shape)) or real(x))
    assert _max_diff(ref, tr(imgs)) <= 1
    assert {s[0] for s in shapes} == {3}  # 5 images at batch 3: the second batch padded


def test_saved_weights_are_the_same_bytes_every_time(tmp_path: Path) -> None:
    """safetensors writes its metadata map in hash order; the same weights and metadata must
    still give the same file, since its sha256 names synthetic images and keys later stages."""
    import hashlib

    from safetensors.torch import load_file

    from pipeline.gan.checkpoint import read_metadata, save_weights

    tensors = {f"layer{i}.weight": torch.full((3, 2), float(i)) for i in range(6)}
    meta = {f"key{i}": i for i in range(16)}
    digests = {hashlib.sha256(save_weights(tmp_path / f"w{i}.safetensors", tensors, meta).read_bytes()).hexdigest()
               for i in range(8)}
    assert len(digests) == 1
    back = load_file(tmp_path / "w0.safetensors")
    assert all(torch.equal(back[k], v) for k, v in tensors.items()) and read_metadata(tmp_path / "w0.safetensors") == meta


def _strided_box_filter() -> torch.nn.Module:
    """The generator's downsampling in miniature: a 3x3 mean with stride 2 and zero padding (on an
    even-sized input only the top and left edges see the padding), then nearest upsampling."""
    conv = torch.nn.Conv2d(3, 3, 3, stride=2, padding=1, bias=False)
    with torch.no_grad():
        conv.weight.zero_()
        for c in range(3):
            conv.weight[c, c] = 1 / 9
    return torch.nn.Sequential(conv, torch.nn.Upsample(scale_factor=2, mode="nearest"))


def test_reflection_border_removes_the_zero_padded_top_left_band():
    img = np.full((64, 48, 3), 200, np.uint8)
    net = _strided_box_filter()
    bare = Translator(net, border=0, overlap=16, precision="fp32")([img])[0].astype(int)
    # without the border the zero padding shows in the top rows and left columns only
    assert np.abs(bare[:2] - 200).min() > 20 and np.abs(bare[:, :2] - 200).min() > 20
    assert np.abs(bare[2:, 2:] - 200).max() <= 1
    out = Translator(net, border=8, overlap=16, precision="fp32")([img])[0]
    assert out.shape == img.shape and np.abs(out.astype(int) - 200).max() <= 1
    tiled = Translator(net, border=8, tile=32, overlap=16, load_size=None, precision="fp32")([img])[0]
    assert np.abs(tiled.astype(int) - 200).max() <= 1  # every tile gets the border too


def test_reflection_border_is_checked_and_small_images_keep_their_shape(weights):
    with pytest.raises(ValueError, match="multiple of 4"):
        Translator.load(weights, border=6)
    tr = Translator.load(weights, load_size=None, border=8, precision="fp32")
    tiny = scene(6, 5, 7)  # smaller than the border: replicated instead of reflected
    assert tr([tiny])[0].shape == tiny.shape
