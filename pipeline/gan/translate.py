"""Translate images A→B (or B→A) with a trained generator: batched, any size, tiled when large.

Scale: `load_size` "train" resizes each image so its short side is the generator's training
load_size (the scale it learned), translates, and resizes back; "native" (None) translates at the
photo's own resolution. Either way the output has the input's shape, so boxes stay valid.

Tiling: a working image larger than `tile` is cut into overlapping tiles. A tile's pixels near an
inner edge see reflection padding instead of their neighbours, so each tile's weight is zero for
the outer 3/8 of the overlap and rises with a raised cosine over the middle 1/4 (the weights of
neighbours sum to one). The default overlap is half the generator's receptive field (64 px for 6
blocks, 88 px for 9). Instance norm statistics for the tiles come from one pass over the whole
image (downscaled to at most `stats_pixels` pixels), so every tile is normalised like the whole.

Border: the generator's stride-2 convolutions zero-pad only the top and left edges of an even-sized
input, and a trained generator draws coloured noise in a band there (the top-left 6x6 px of a
demo photo: mean deviation 40-44 grey levels from the photo's median against 10-12 at the other
corners). Every image or tile is therefore reflect-padded by `border` pixels (8, a multiple of 4,
so the stride-2 layers stay in phase) before the generator and the band is cut off with the
border: the top-left corner then deviates 12-13 levels, like the others.

Memory: device memory is bounded by batch × tile² (and stats_pixels); host working memory by one
row strip of tiles (tile × width float32) besides the uint8 input and output, not by the area.
On CUDA out-of-memory the batch is halved (down to 1) and the chunk retried: outputs do not depend
on the batch.

On CUDA (device_io) the uint8 pixels go to the GPU as they are, through pinned host buffers, and
come back as uint8: conversion, normalisation, tile blending and the cast all run on the device,
in the same float32 operations as the host path (outputs agree within one grey level; the network
itself is the same). Copies are asynchronous: the next batch is stacked and sent while the
previous one computes, and the host waits once per batch for its results. A tiled photo then
holds its uint8 input and output on the device (6 bytes/pixel) besides one strip of tiles.
compile=True compiles the generator for the fixed batch × tile shape (the last batch is padded
with blank images, which instance norm keeps independent); the statistics pass, whose shape
follows each photo, stays eager.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.gan.accel import amp_dtype, resolve_precision, translation_batch
from pipeline.gan.checkpoint import CheckpointError, load_weights, read_metadata
from pipeline.gan.data import resize_short_side
from pipeline.gan.networks import ResnetGenerator, receptive_field
from pipeline.store import sha256_file

log = logging.getLogger(__name__)
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
MARGIN, RAMP = 3 / 8, 1 / 4  # of the overlap, per side: ignored border, cross-fade (2·MARGIN + RAMP = 1)
BORDER = 8  # px of reflection around each image or tile, cut off after the generator (module docstring)


class _TileNorm(nn.Module):
    """Instance norm (no affine) that can record one image's statistics and reuse them for its tiles.

    The statistics live in fixed (1,C,1,1) float32 buffers, overwritten in place, so a compiled
    network reads them as inputs and does not recompile per photo."""

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__()
        self.eps, self.mode = eps, "instance"
        self.register_buffer("mean", torch.zeros(1, channels, 1, 1), persistent=False)
        self.register_buffer("var", torch.ones(1, channels, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "instance":
            if x.is_contiguous() or x.dim() != 4:
                return F.instance_norm(x, eps=self.eps)
            # channels_last: ATen's instance_norm would copy to NCHW and hand the next conv that layout
            xf = x.float()
            var, mean = torch.var_mean(xf, dim=(2, 3), keepdim=True, correction=0)
            return ((xf - mean) * torch.rsqrt(var + self.eps)).to(x.dtype)
        if self.mode == "record":
            xf = x.float()
            var, mean = torch.var_mean(xf, dim=(2, 3), keepdim=True, correction=0)
            self.var.copy_(var)
            self.mean.copy_(mean)
            return ((xf - mean) * torch.rsqrt(var + self.eps)).to(x.dtype)
        return ((x.float() - self.mean) * torch.rsqrt(self.var + self.eps)).to(x.dtype)


def _swap_norms(net: nn.Module) -> list[_TileNorm]:
    """Instance norms -> _TileNorms (a net taken from another Translator already has them)."""
    norms = []
    for name, child in net.named_children():
        if isinstance(child, _TileNorm):
            child.mode = "instance"
            norms.append(child)
        elif isinstance(child, nn.InstanceNorm2d):
            norm = _TileNorm(child.num_features, child.eps)
            setattr(net, name, norm)
            norms.append(norm)
        else:
            norms += _swap_norms(child)
    return norms


def _ramp(n: int, overlap: int, taper_start: bool, taper_end: bool) -> np.ndarray:
    """1-D tile weights: 0 over the first MARGIN·overlap pixels of a tapered end, a raised cosine
    over the next RAMP·overlap, 1 inside. Two neighbours overlapping by `overlap` sum to 1."""
    w = np.ones(n, np.float32)
    overlap = min(overlap, n // 2)
    m = int(round(overlap * MARGIN))
    k = overlap - 2 * m
    rise = (0.5 - 0.5 * np.cos(np.pi * (np.arange(max(k, 0)) + 0.5) / max(k, 1))).astype(np.float32)
    if taper_start:
        w[:m], w[m:m + k] = 0.0, rise
    if taper_end:
        w[n - m:], w[n - m - k:n - m] = 0.0, rise[::-1]
    return w


def _starts(size: int, tile: int, overlap: int) -> list[int]:
    """Tile origins along one axis, multiples of 4 when size and tile are (stride-2 layers stay in phase)."""
    if size <= tile:
        return [0]
    stride = max(4, (tile - overlap) // 4 * 4)
    n = math.ceil((size - tile) / stride) + 1
    return sorted({min(i * stride, size - tile) for i in range(n)})


def default_overlap(net: nn.Module, tile: int) -> int:
    """Half the generator's receptive field, a multiple of 4, at most half the tile."""
    return min(tile // 2, -(-receptive_field(net) // 8) * 4)


class Translator:
    """`Translator.load(model_dir)(images)` -> translated images (uint8 RGB (H,W,3), same shapes)."""

    def __init__(self, net: ResnetGenerator, *, sha256: str = "", load_size: int | None = None,
                 device: str | torch.device = "cpu", tile: int = 512, overlap: int | None = None,
                 batch: int | str = "auto", precision: str = "auto", stats_pixels: int = 1024 * 1024,
                 compile: bool = False, device_io: bool | None = None, border: int = BORDER):
        """border: reflection padding (px, a multiple of 4) around every image or tile, cut off
        after the generator (module docstring); device_io: uint8 in and out of the device,
        everything between on it (None = on CUDA); compile: torch.compile the generator for the
        batch and tile shapes (worth it for many images: the first call compiles; kernels are cached
        on disk, see accel.compile_cache)."""
        self.device = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                                   ("cpu" if device == "auto" else device))
        self.net = copy.deepcopy(net).eval()  # its norms are swapped below
        self.norms = _swap_norms(self.net)
        self.memory_format = torch.channels_last if self.device.type == "cuda" else torch.contiguous_format
        self.net = self.net.to(self.device, memory_format=self.memory_format)
        self.sha256, self.load_size = sha256, load_size
        self.tile = max(16, tile // 4 * 4)  # the generator needs sides divisible by 4
        if border < 0 or border % 4:
            raise ValueError(f"border must be a non-negative multiple of 4, got {border}")
        self.border = border
        self.overlap = default_overlap(net, self.tile) if overlap is None else min(overlap, self.tile // 2)
        self.batch, self.stats_pixels = translation_batch(batch, self.device), stats_pixels
        self.precision = resolve_precision(precision, self.device)
        self.amp_dtype = amp_dtype(self.precision)
        self.device_io = self.device.type == "cuda" if device_io is None else bool(device_io)
        self.compiled = bool(compile)
        # the statistics pass (its shape follows each photo) always runs self.net, uncompiled
        self.fast = torch.compile(self.net, dynamic=False) if compile else self.net
        self._pin = self.device.type == "cuda"
        self._lock = threading.Lock()  # calls switch the norm layers' mode: one call at a time

    @classmethod
    def load(cls, model: str | Path, direction: str = "AtoB", device: str | torch.device = "cpu", *,
             tile: int = 512, overlap: int | None = None, batch: int | str = "auto",
             load_size: int | str | None = "train", precision: str = "auto", compile: bool = False,
             device_io: bool | None = None, border: int = BORDER) -> "Translator":
        """Build from a model directory (G_AB/G_BA.safetensors) or one weights file.

        load_size: "train" resizes to the generator's training scale (from the weights' metadata),
        "native" or None translates at each input's own resolution (tiled when larger than `tile`),
        an int resizes the short side to that many pixels. overlap None = default_overlap.
        compile, device_io, border: see __init__.
        """
        if direction not in ("AtoB", "BtoA"):
            raise ValueError(f"direction must be AtoB or BtoA, got {direction!r}")
        if not (load_size in ("train", "native", None) or (isinstance(load_size, int) and load_size >= 16)):
            raise ValueError(f"load_size must be 'train', 'native' or an int >= 16, got {load_size!r}")
        path = Path(model)
        if path.is_dir():
            path = path / ("G_AB.safetensors" if direction == "AtoB" else "G_BA.safetensors")
        meta = read_metadata(path) if path.is_file() else {}
        state = load_weights(path)
        if "model.1.weight" not in state:
            raise CheckpointError(f"{path}: not a ResnetGenerator state dict (no model.1.weight)")
        ngf = int(meta.get("ngf") or state["model.1.weight"].shape[0])
        n_blocks = int(meta.get("n_blocks") or len({k.split(".")[1] for k in state if ".conv_block." in k}))
        # the paper's transposed convolution sits right after the blocks; resize-conv puts its conv 2 later
        upsample = meta.get("upsample") or ("transpose" if f"model.{10 + n_blocks}.weight" in state else "resize")
        net = ResnetGenerator(3, 3, ngf, n_blocks, upsample=upsample)
        try:
            net.load_state_dict(state)
        except RuntimeError as e:
            raise CheckpointError(f"{path}: not a ResnetGenerator state dict ({e})") from None
        size = {"train": meta.get("load_size"), "native": None}.get(load_size, load_size)
        return cls(net, sha256=sha256_file(path), load_size=int(size) if size else None, device=device,
                   tile=tile, overlap=overlap, batch=batch, precision=precision, compile=compile,
                   device_io=device_io, border=border)

    @classmethod
    def for_config(cls, model: str | Path, gan: Any, direction: str = "AtoB",
                   device: str | torch.device = "cpu") -> "Translator":
        """Load with a GanConfig's translation settings (tile, tile_overlap, translate_batch,
        translate_size, translate_border)."""
        return cls.load(model, direction, device, tile=gan.tile, overlap=gan.tile_overlap,
                        batch=gan.translate_batch, load_size=getattr(gan, "translate_size", "train"),
                        border=getattr(gan, "translate_border", BORDER))

    # ------------------------------------------------------------------------------------ calls
    def __call__(self, images: list[np.ndarray]) -> list[np.ndarray]:
        return self.translate_checked(images)[0]

    def translate_checked(self, images: list[np.ndarray]) -> tuple[list[np.ndarray], list[int]]:
        """Translated images and, per image, the number of non-finite values (NaN/inf) the network
        produced before the uint8 cast (such pixels come out mid-grey; a gate should reject them)."""
        with self._lock, torch.inference_mode():
            return self._translate(images)

    def _translate(self, images: list[np.ndarray]) -> tuple[list[np.ndarray], list[int]]:
        work = []
        for i, img in enumerate(images):
            if not isinstance(img, np.ndarray) or img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
                got = f"{img.dtype} {img.shape}" if isinstance(img, np.ndarray) else type(img).__name__
                raise ValueError(f"image {i}: expected uint8 (H,W,3), got {got}")
            work.append(resize_short_side(img, self.load_size)[0] if self.load_size else img)
        out: list[Any] = [None] * len(images)
        bad = [0] * len(images)
        small: dict[tuple[int, int], list[int]] = {}
        for i, w in enumerate(work):
            if w.shape[0] <= self.tile and w.shape[1] <= self.tile:
                small.setdefault(w.shape[:2], []).append(i)
            else:
                out[i], bad[i] = self._tiled_device(w) if self.device_io else self._tiled(w)
        for idx in small.values():  # same-shape small images share batches
            if self.device_io:  # submit a batch, then collect the previous one: copies overlap compute
                results = self._batched(idx, lambda chunk: self._submit_whole([work[i] for i in chunk]),
                                        collect=self._collect_whole)
            else:
                results = self._batched(idx, lambda chunk: self._whole([work[i] for i in chunk]))
            for i, (y, n) in zip(idx, results):
                out[i], bad[i] = y, n
        return [_resize_to(y, img.shape[:2]) for y, img in zip(out, images)], bad

    def _batched(self, items: list, fn: Callable[[list], Any],
                 collect: Callable[[Any], list] | None = None) -> Iterator:
        """fn over chunks of `self.batch` items, yielding results in order. On CUDA out-of-memory
        the batch is halved (it stays halved for later calls) and the chunk retried; at 1 it raises.
        With `collect`, fn only submits a chunk and collect(fn's handle) waits for its results, one
        chunk later, so the next chunk's host work overlaps this one's device work."""
        s, pending = 0, None
        while s < len(items):
            chunk = items[s:s + self.batch]
            try:
                results = fn(chunk)
            except torch.cuda.OutOfMemoryError:
                if self.batch <= 1:
                    raise
                self.batch = max(1, self.batch // 2)
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
                log.warning("translate: CUDA out of memory at batch %d; retrying with batch %d",
                            len(chunk), self.batch)
                continue
            if collect is None:
                yield from results
            else:
                if pending is not None:
                    yield from collect(pending)
                pending = results
            s += len(chunk)
        if pending is not None:
            yield from collect(pending)

    def _forward(self, x: torch.Tensor, net: nn.Module | None = None) -> torch.Tensor:
        """(N,3,H,W) in [-1,1] -> (N,3,H,W) float32; `self.fast` unless a net is given. The input gets
        `border` px of reflection, cut off the output. A compiled network sees one batch size: a short
        batch is padded with blank images and cut back."""
        x = x.to(self.device, non_blocking=True)
        b = self.border
        if b:  # reflect (replicate on inputs too small to reflect) and cut off below: see BORDER
            x = F.pad(x, (b, b, b, b), mode="reflect" if min(x.shape[-2:]) > b else "replicate")
        x = x.contiguous(memory_format=self.memory_format)
        net = self.fast if net is None else net
        n = x.shape[0]
        if net is not self.net and n < self.batch:
            x = torch.cat([x, x.new_zeros((self.batch - n, *x.shape[1:]))]).contiguous(
                memory_format=self.memory_format)
        if self.amp_dtype is None:
            y = net(x).float()[:n]
        else:
            with torch.autocast(self.device.type, dtype=self.amp_dtype):
                y = net(x).float()[:n]
        return y[..., b:y.shape[-2] - b, b:y.shape[-1] - b] if b else y

    def _host_buffer(self, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        """Pinned on CUDA (asynchronous copies); the caching host allocator reuses it once its
        copies are done."""
        return torch.empty(shape, dtype=dtype, pin_memory=self._pin)

    # ------------------------------------------------------------------ uint8 device path (CUDA)
    def _upload(self, imgs: list[np.ndarray]) -> torch.Tensor:
        """uint8 (H,W,3) images -> (N,3,H,W) float in [-1,1] on the device (data.to_tensor's ops)."""
        h, w = imgs[0].shape[:2]
        host = self._host_buffer((len(imgs), h, w, 3), torch.uint8)
        np.stack(imgs, out=host.numpy())
        x = host.to(self.device, non_blocking=True)
        return x.permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)

    def _submit_whole(self, imgs: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor, Any]:
        self._set_mode("instance")
        h, w = imgs[0].shape[:2]
        x = self._upload(imgs)
        ph, pw = -h % 4, -w % 4
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="reflect" if min(h, w) > max(ph, pw) else "replicate")
        y = self._forward(x)[:, :, :h, :w]
        bad = (~torch.isfinite(y)).sum((1, 2, 3))
        out = self._host_buffer((len(imgs), h, w, 3), torch.uint8)
        out.copy_(_to_uint8_device(y), non_blocking=True)
        bad_host = self._host_buffer((len(imgs),), torch.int64)
        bad_host.copy_(bad, non_blocking=True)
        done = None
        if self.device.type == "cuda":
            done = torch.cuda.Event()
            done.record()
        return out, bad_host, done

    @staticmethod
    def _collect_whole(pending: tuple[torch.Tensor, torch.Tensor, Any]) -> list[tuple[np.ndarray, int]]:
        out, bad, done = pending
        if done is not None:
            done.synchronize()
        arr = out.numpy()
        return [(arr[i].copy(), int(n)) for i, n in enumerate(bad.tolist())]  # copies: the buffer is reused

    def _tile_layout(self, img: np.ndarray):
        """The shared start of both tiled paths: reflect-pad to a multiple of 4 (as _whole does, so
        every tile origin is one), record the full-resolution InstanceNorm statistics and fix them;
        returns (padded image, original (h, w), tile (h, w), row starts, column starts)."""
        h0, w0 = img.shape[:2]
        if h0 % 4 or w0 % 4:
            img = cv2.copyMakeBorder(img, 0, -h0 % 4, 0, -w0 % 4, cv2.BORDER_REFLECT_101)
        h, w = img.shape[:2]
        self._record_stats(img)
        self._set_mode("fixed")
        th, tw = min(self.tile, h), min(self.tile, w)
        return img, (h0, w0), (th, tw), _starts(h, th, self.overlap), _starts(w, tw, self.overlap)

    def _tiled_device(self, img: np.ndarray) -> tuple[np.ndarray, int]:
        """_tiled with the photo, the blending strip and the uint8 result on the device."""
        img, (h0, w0), (th, tw), ys, xs = self._tile_layout(img)
        h, w = img.shape[:2]
        dev = self.device
        src = torch.from_numpy(img).to(dev)  # (h,w,3) uint8
        wx = {x0: torch.from_numpy(_ramp(tw, self.overlap, x0 > 0, x0 + tw < w)).to(dev) for x0 in xs}
        wy = {y0: torch.from_numpy(_ramp(th, self.overlap, y0 > 0, y0 + th < h)).to(dev) for y0 in ys}
        out = torch.empty((h, w, 3), dtype=torch.uint8, device=dev)
        acc = torch.zeros((th, w, 3), dtype=torch.float32, device=dev)
        wsum = torch.zeros((th, w, 1), dtype=torch.float32, device=dev)
        bad = torch.zeros((), dtype=torch.int64, device=dev)
        base = 0

        def flush(upto: int) -> None:
            nonlocal base, acc, wsum
            n = upto - base
            if n <= 0:
                return
            y = acc[:n] / torch.clamp_min(wsum[:n], 1e-8)
            bad.add_((~torch.isfinite(y[:max(0, min(upto, h0) - base), :w0])).sum())
            out[base:upto] = _float_to_uint8_device(y)
            acc = torch.cat([acc[n:], acc.new_zeros((n, w, 3))])
            wsum = torch.cat([wsum[n:], wsum.new_zeros((n, w, 1))])
            base = upto

        def run(chunk: list[tuple[int, int]]) -> list[torch.Tensor]:
            tiles = torch.stack([src[y0:y0 + th, x0:x0 + tw] for y0, x0 in chunk])
            x = tiles.permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)
            return list(self._forward(x).permute(0, 2, 3, 1))

        boxes = [(y0, x0) for y0 in ys for x0 in xs]  # row-major: the strip moves down only
        for (y0, x0), t in zip(boxes, self._batched(boxes, run)):
            if y0 > base:
                flush(y0)
            wgt = wy[y0][:, None, None] * wx[x0][None, :, None]
            t = torch.where(wgt > 0, t, 0.0)  # a NaN in a zero-weight border must not spread
            r = y0 - base
            acc[r:r + th, x0:x0 + tw] += t.clamp(-1.0, 1.0) * wgt
            wsum[r:r + th, x0:x0 + tw] += wgt
        flush(h)
        self._set_mode("instance")
        return out[:h0, :w0].cpu().numpy(), int(bad)

    def _set_mode(self, mode: str) -> None:
        for n in self.norms:
            n.mode = mode

    def _whole(self, imgs: list[np.ndarray]) -> list[tuple[np.ndarray, int]]:
        self._set_mode("instance")
        h, w = imgs[0].shape[:2]
        x = torch.stack([_to_tensor(i) for i in imgs])
        ph, pw = -h % 4, -w % 4
        if ph or pw:  # reflect-pad to a multiple of 4, as the network's own padding does
            x = F.pad(x, (0, pw, 0, ph), mode="reflect" if min(h, w) > max(ph, pw) else "replicate")
        y = self._forward(x)[:, :, :h, :w]
        bad = (~torch.isfinite(y)).sum((1, 2, 3)).tolist()
        return [(_to_uint8(t), int(n)) for t, n in zip(y, bad)]

    def _tiled(self, img: np.ndarray) -> tuple[np.ndarray, int]:
        img, (h0, w0), (th, tw), ys, xs = self._tile_layout(img)
        h, w = img.shape[:2]
        wx = {x0: _ramp(tw, self.overlap, x0 > 0, x0 + tw < w) for x0 in xs}
        out = np.empty((h, w, 3), np.uint8)
        # a strip of rows [base, base+th): rows above the current tile row are final and leave it
        acc = np.zeros((th, w, 3), np.float32)
        wsum = np.zeros((th, w, 1), np.float32)
        base, bad = 0, 0

        def flush(upto: int) -> None:
            nonlocal base, bad
            n = upto - base
            if n <= 0:
                return
            y = acc[:n]  # finished rows, normalised and cast in place (no full-size temporaries)
            y /= np.maximum(wsum[:n], 1e-8)
            bad += int((~np.isfinite(y[:max(0, min(upto, h0) - base), :w0])).sum())  # not the padding
            out[base:upto] = _float_to_uint8(y)
            acc[:th - n], wsum[:th - n] = acc[n:], wsum[n:]  # numpy buffers overlapping copies
            acc[th - n:], wsum[th - n:] = 0.0, 0.0
            base = upto

        def run(chunk: list[tuple[int, int]]) -> list[np.ndarray]:
            x = torch.stack([_to_tensor(img[y0:y0 + th, x0:x0 + tw]) for y0, x0 in chunk])
            return list(self._forward(x).permute(0, 2, 3, 1).cpu().numpy())

        boxes = [(y0, x0) for y0 in ys for x0 in xs]  # row-major: the strip moves down only
        for (y0, x0), t in zip(boxes, self._batched(boxes, run)):
            if y0 > base:
                flush(y0)
            wgt = _ramp(th, self.overlap, y0 > 0, y0 + th < h)[:, None, None] * wx[x0][None, :, None]
            if not np.isfinite(t).all():  # keep a NaN in a zero-weight border from spreading
                t = np.where(wgt > 0, t, 0.0)
            r = y0 - base
            acc[r:r + th, x0:x0 + tw] += np.clip(t, -1.0, 1.0) * wgt
            wsum[r:r + th, x0:x0 + tw] += wgt
        flush(h)
        self._set_mode("instance")
        return out[:h0, :w0], bad

    def _record_stats(self, img: np.ndarray) -> None:
        """Instance-norm statistics of the whole image (downscaled if it has too many pixels)."""
        h, w = img.shape[:2]
        scale = min(1.0, math.sqrt(self.stats_pixels / (h * w)))
        small = img if scale == 1.0 else cv2.resize(img, (max(4, round(w * scale)), max(4, round(h * scale))),
                                                    interpolation=cv2.INTER_AREA)
        sh, sw = small.shape[:2]
        x = F.pad(_to_tensor(small)[None], (0, -sw % 4, 0, -sh % 4), mode="replicate")
        self._set_mode("record")
        if self.fast is self.net:
            self._forward(x)
        else:  # the compiled network has one fixed shape; this one follows the photo
            self._forward(x, self.net)


def _to_tensor(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1))).float().div_(127.5).sub_(1.0)


def _to_uint8(t: torch.Tensor) -> np.ndarray:
    """(3,H,W) in [-1,1] -> (H,W,3) uint8; non-finite values become mid-grey (counted by the caller)."""
    t = torch.nan_to_num(t, nan=0.0, posinf=1.0, neginf=-1.0)
    return ((t.clamp(-1, 1) + 1.0) * 127.5 + 0.5).to(torch.uint8).permute(1, 2, 0).cpu().numpy()


def _to_uint8_device(y: torch.Tensor) -> torch.Tensor:
    """(N,3,H,W) float in [-1,1] -> (N,H,W,3) uint8 on y's device, as _to_uint8 per image."""
    y = torch.nan_to_num(y, nan=0.0, posinf=1.0, neginf=-1.0)
    return ((y.clamp(-1, 1) + 1.0) * 127.5 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).contiguous()


def _float_to_uint8_device(y: torch.Tensor) -> torch.Tensor:
    """_float_to_uint8 on the device: (H,W,3) float32 -> uint8, in the same float32 steps."""
    y = torch.nan_to_num(y, nan=0.0, posinf=1.0, neginf=-1.0)
    return (((y + 1.0) * 127.5) + 0.5).clamp_(0, 255).to(torch.uint8)


def _float_to_uint8(y: np.ndarray) -> np.ndarray:
    """(H,W,3) float32 in [-1,1] -> uint8, overwriting y (non-finite values become mid-grey)."""
    np.nan_to_num(y, copy=False, nan=0.0, posinf=1.0, neginf=-1.0)
    y += 1.0
    y *= 127.5
    y += 0.5
    np.clip(y, 0, 255, out=y)
    return y.astype(np.uint8)


def _resize_to(img: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    h, w = shape
    if img.shape[:2] == (h, w):
        return img
    shrink = img.shape[0] > h
    return cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)


# --------------------------------------------------------------------------------------- folders
def iter_images(root: Path) -> Iterator[Path]:
    for p in sorted(root.rglob("*")):
        hidden = any(s.startswith(".") for s in p.relative_to(root).parts)
        if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file() and not hidden:
            yield p


def translate_files(translator: Translator, pairs: Iterable[tuple[Path, Path]], *,
                    progress: bool = False, io_threads: int | None = None) -> tuple[list[Path], list[dict]]:
    """Translate (input, output) image path pairs; unreadable inputs are reported, not fatal.

    Streams: images are read, translated and written in groups of at most `translator.batch`
    images and batch × tile² pixels (a larger image goes alone), so host memory holds one group.
    Decoding (read ahead by about two groups) and encoding + writing run in a pool of
    `io_threads` threads (OpenCV releases the GIL), beside the translation of the current group.
    `done` lists outputs in input order.
    """
    from pipeline.progress import stage_progress

    pairs = list(pairs)
    failed: list[dict] = []
    budget = translator.batch * translator.tile ** 2
    threads = io_threads or min(8, max(2, (os.cpu_count() or 2)))
    writes: list[tuple[Path, Future]] = []

    with stage_progress("translate", len(pairs), unit="img", enabled=progress) as bar, \
            ThreadPoolExecutor(threads, thread_name_prefix="translate-io") as pool:

        unfinished: deque[Future] = deque()

        def write(group: list[tuple[Path, np.ndarray]]) -> None:
            for dst, y in zip([d for d, _ in group], translator([img for _, img in group])):
                fut = pool.submit(_encode_write, dst, y)
                writes.append((dst, fut))
                unfinished.append(fut)
            while len(unfinished) > 4 * translator.batch:  # encoding behind: hold at most ~4 groups
                unfinished.popleft().result()
            bar.advance(len(group))

        reads: deque[tuple[Path, Path, Future]] = deque()
        ahead = 2 * translator.batch
        todo = iter(pairs)

        def refill() -> None:
            while len(reads) < ahead:
                nxt = next(todo, None)
                if nxt is None:
                    return
                reads.append((nxt[0], nxt[1], pool.submit(_read_rgb, nxt[0])))

        group: list[tuple[Path, np.ndarray]] = []
        pixels = 0
        refill()
        while reads:
            src, dst, fut = reads.popleft()
            refill()
            rgb = fut.result()
            if rgb is None:
                failed.append({"file": str(src), "reason": "unreadable image"})
                bar.advance(1)
                continue
            n = rgb.shape[0] * rgb.shape[1]
            if group and (len(group) >= translator.batch or pixels + n > budget):
                write(group)
                group, pixels = [], 0
            group.append((dst, rgb))
            pixels += n
        if group:
            write(group)
    done = []
    for dst, fut in writes:
        if fut.result():
            done.append(dst)
        else:
            failed.append({"file": str(dst), "reason": "cannot encode"})
    return done, failed


def _read_rgb(path: Path) -> np.ndarray | None:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    return None if bgr is None else cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _encode_write(dst: Path, rgb: np.ndarray) -> bool:
    from pipeline.store import atomic_write_bytes

    good, buf = cv2.imencode(dst.suffix or ".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if good:
        atomic_write_bytes(dst, buf.tobytes())
    return bool(good)
