"""Translate images A→B (or B→A) with a trained generator: batched, any size, tiled when large.

Images are first resized so the short side equals the training load_size (the scale the generator
learned), translated, and resized back, so the output has the input's shape and boxes stay valid.
A working image larger than `tile` is cut into overlapping tiles; tiles are blended with
raised-cosine weights that taper only where a neighbour overlaps, so there are no seams. Instance
norm statistics for the tiles come from one pass over the whole image (downscaled to at most
`stats_pixels` pixels when larger), so every tile is normalised like the whole image would be.
Device memory is bounded by batch × tile² (and stats_pixels), not by the image size.
"""

from __future__ import annotations

import copy
import math
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.gan.checkpoint import CheckpointError, load_weights, read_metadata
from pipeline.gan.data import resize_short_side
from pipeline.gan.networks import ResnetGenerator
from pipeline.store import sha256_file

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}


class _TileNorm(nn.Module):
    """Instance norm (no affine) that can record one image's statistics and reuse them for its tiles."""

    def __init__(self, eps: float = 1e-5):
        super().__init__()
        self.eps, self.mode = eps, "instance"
        self.mean: torch.Tensor | None = None
        self.var: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "instance":
            return F.instance_norm(x, eps=self.eps)
        if self.mode == "record":
            xf = x.float()
            self.var, self.mean = torch.var_mean(xf, dim=(2, 3), keepdim=True, correction=0)
            return ((xf - self.mean) * torch.rsqrt(self.var + self.eps)).to(x.dtype)
        return ((x.float() - self.mean) * torch.rsqrt(self.var + self.eps)).to(x.dtype)


def _swap_norms(net: nn.Module) -> list[_TileNorm]:
    norms = []
    for name, child in net.named_children():
        if isinstance(child, nn.InstanceNorm2d):
            norm = _TileNorm(child.eps)
            setattr(net, name, norm)
            norms.append(norm)
        else:
            norms += _swap_norms(child)
    return norms


def _ramp(n: int, overlap: int, taper_start: bool, taper_end: bool) -> np.ndarray:
    """1-D raised-cosine weights: 1 inside, rising over `overlap` pixels at tapered ends."""
    w = np.ones(n, np.float32)
    k = min(overlap, n // 2)
    if k > 0:
        rise = (0.5 - 0.5 * np.cos(np.pi * (np.arange(k) + 0.5) / k)).astype(np.float32)
        if taper_start:
            w[:k] = rise
        if taper_end:
            w[n - k:] = rise[::-1]
    return w


def _starts(size: int, tile: int, overlap: int) -> list[int]:
    if size <= tile:
        return [0]
    stride = max(4, tile - overlap)
    n = math.ceil((size - tile) / stride) + 1
    return sorted({min(i * stride, size - tile) for i in range(n)})


class Translator:
    """`Translator.load(model_dir)(images)` -> translated images (uint8 RGB (H,W,3), same shapes)."""

    def __init__(self, net: ResnetGenerator, *, sha256: str = "", load_size: int | None = None,
                 device: str | torch.device = "cpu", tile: int = 512, overlap: int = 64, batch: int = 8,
                 precision: str = "auto", stats_pixels: int = 1024 * 1024):
        self.device = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                                   ("cpu" if device == "auto" else device))
        self.net = copy.deepcopy(net).eval().to(self.device)  # its norms are swapped below
        self.norms = _swap_norms(self.net)
        self.sha256, self.load_size = sha256, load_size
        self.tile = max(16, tile // 4 * 4)  # the generator needs sides divisible by 4
        self.overlap = min(overlap, self.tile // 2)
        self.batch, self.stats_pixels = batch, stats_pixels
        if precision == "auto":
            precision = "bf16" if self.device.type == "cuda" else "fp32"
        self.amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
        if self.device.type == "cuda":
            self.net = self.net.to(memory_format=torch.channels_last)
        self._lock = threading.Lock()  # calls switch the norm layers' mode: one call at a time

    @classmethod
    def load(cls, model: str | Path, direction: str = "AtoB", device: str | torch.device = "cpu", *,
             tile: int = 512, overlap: int = 64, batch: int = 8, load_size: int | None | str = "train",
             precision: str = "auto") -> "Translator":
        """Build from a model directory (G_AB/G_BA.safetensors) or one weights file.

        load_size="train" resizes to the generator's training scale (from the weights' metadata);
        None translates at the input's own resolution.
        """
        if direction not in ("AtoB", "BtoA"):
            raise ValueError(f"direction must be AtoB or BtoA, got {direction!r}")
        path = Path(model)
        if path.is_dir():
            path = path / ("G_AB.safetensors" if direction == "AtoB" else "G_BA.safetensors")
        meta = read_metadata(path) if path.is_file() else {}
        state = load_weights(path)
        ngf = int(meta.get("ngf") or state["model.1.weight"].shape[0])
        n_blocks = int(meta.get("n_blocks") or len({k.split(".")[1] for k in state if ".conv_block." in k}))
        net = ResnetGenerator(3, 3, ngf, n_blocks)
        try:
            net.load_state_dict(state)
        except RuntimeError as e:
            raise CheckpointError(f"{path}: not a ResnetGenerator state dict ({e})") from None
        size = meta.get("load_size") if load_size == "train" else load_size
        return cls(net, sha256=sha256_file(path), load_size=int(size) if size else None, device=device, tile=tile,
                   overlap=overlap, batch=batch, precision=precision)

    # ------------------------------------------------------------------------------------ calls
    def __call__(self, images: list[np.ndarray]) -> list[np.ndarray]:
        with self._lock, torch.inference_mode():
            return self._translate(images)

    def _translate(self, images: list[np.ndarray]) -> list[np.ndarray]:
        work = []
        for i, img in enumerate(images):
            if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
                raise ValueError(f"image {i}: expected uint8 (H,W,3), got {img.dtype} {img.shape}")
            work.append(resize_short_side(img, self.load_size)[0] if self.load_size else img)
        out: list[np.ndarray | None] = [None] * len(images)
        small: dict[tuple[int, int], list[int]] = {}
        for i, w in enumerate(work):
            if w.shape[0] <= self.tile and w.shape[1] <= self.tile:
                small.setdefault(w.shape[:2], []).append(i)
            else:
                out[i] = self._tiled(w)
        for idx in small.values():  # same-shape small images share batches
            for s in range(0, len(idx), self.batch):
                chunk = idx[s:s + self.batch]
                for i, y in zip(chunk, self._whole([work[i] for i in chunk])):
                    out[i] = y
        return [_resize_to(y, img.shape[:2]) for y, img in zip(out, images)]

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, non_blocking=True)
        if self.device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        if self.amp_dtype is None:
            return self.net(x).float()
        with torch.autocast(self.device.type, dtype=self.amp_dtype):
            return self.net(x).float()

    def _set_mode(self, mode: str) -> None:
        for n in self.norms:
            n.mode = mode

    def _whole(self, imgs: list[np.ndarray]) -> list[np.ndarray]:
        self._set_mode("instance")
        h, w = imgs[0].shape[:2]
        x = torch.stack([_to_tensor(i) for i in imgs])
        ph, pw = -h % 4, -w % 4
        if ph or pw:  # reflect-pad to a multiple of 4, as the network's own padding does
            x = F.pad(x, (0, pw, 0, ph), mode="reflect" if min(h, w) > max(ph, pw) else "replicate")
        y = self._forward(x)[:, :, :h, :w]
        return [_to_uint8(t) for t in y]

    def _tiled(self, img: np.ndarray) -> np.ndarray:
        h, w = img.shape[:2]
        # 1) instance-norm statistics of the whole image (downscaled if it has too many pixels)
        scale = min(1.0, math.sqrt(self.stats_pixels / (h * w)))
        small = img if scale == 1.0 else cv2.resize(img, (max(4, round(w * scale)), max(4, round(h * scale))),
                                                    interpolation=cv2.INTER_AREA)
        sh, sw = small.shape[:2]
        x = F.pad(_to_tensor(small)[None], (0, -sw % 4, 0, -sh % 4), mode="replicate")
        self._set_mode("record")
        self._forward(x)
        # 2) overlapping tiles, normalised with those statistics, blended by raised-cosine weights
        self._set_mode("fixed")
        th, tw = min(self.tile, h // 4 * 4 or 4), min(self.tile, w // 4 * 4 or 4)
        acc = np.zeros((h, w, 3), np.float32)
        wsum = np.zeros((h, w, 1), np.float32)
        boxes = [(y0, x0) for y0 in _starts(h, th, self.overlap) for x0 in _starts(w, tw, self.overlap)]
        for s in range(0, len(boxes), self.batch):
            chunk = boxes[s:s + self.batch]
            x = torch.stack([_to_tensor(img[y0:y0 + th, x0:x0 + tw]) for y0, x0 in chunk])
            y = self._forward(x).clamp_(-1, 1).permute(0, 2, 3, 1).cpu().numpy()
            for (y0, x0), t in zip(chunk, y):
                wy = _ramp(th, self.overlap, y0 > 0, y0 + th < h)
                wx = _ramp(tw, self.overlap, x0 > 0, x0 + tw < w)
                wgt = (wy[:, None] * wx[None, :])[..., None]
                acc[y0:y0 + th, x0:x0 + tw] += t * wgt
                wsum[y0:y0 + th, x0:x0 + tw] += wgt
        self._set_mode("instance")
        out = acc / np.maximum(wsum, 1e-8)
        return np.clip((out + 1.0) * 127.5 + 0.5, 0, 255).astype(np.uint8)


def _to_tensor(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1))).float().div_(127.5).sub_(1.0)


def _to_uint8(t: torch.Tensor) -> np.ndarray:
    return ((t.clamp(-1, 1) + 1.0) * 127.5 + 0.5).to(torch.uint8).permute(1, 2, 0).cpu().numpy()


def _resize_to(img: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    h, w = shape
    if img.shape[:2] == (h, w):
        return img
    shrink = img.shape[0] > h
    return cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)


# --------------------------------------------------------------------------------------- folders
def iter_images(root: Path) -> Iterator[Path]:
    for p in sorted(root.rglob("*")):
        if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file() and not any(s.startswith(".") for s in p.relative_to(root).parts):
            yield p


def translate_files(translator: Translator, pairs: Iterable[tuple[Path, Path]], *, progress: bool = False,
                    chunk: int = 32) -> tuple[list[Path], list[dict]]:
    """Translate (input, output) image path pairs in chunks; unreadable inputs are reported, not fatal."""
    from pipeline.store import atomic_write_bytes

    pairs = list(pairs)
    done, failed = [], []
    bar = None
    if progress:
        from rich.progress import Progress

        bar = Progress()
        task = bar.add_task("translate", total=len(pairs))
        bar.start()
    try:
        for s in range(0, len(pairs), chunk):
            part = pairs[s:s + chunk]
            imgs, ok = [], []
            for src, dst in part:
                bgr = cv2.imread(str(src), cv2.IMREAD_COLOR)
                if bgr is None:
                    failed.append({"file": str(src), "reason": "unreadable image"})
                    continue
                imgs.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
                ok.append(dst)
            for dst, y in zip(ok, translator(imgs) if imgs else []):
                good, buf = cv2.imencode(dst.suffix or ".png", cv2.cvtColor(y, cv2.COLOR_RGB2BGR))
                if not good:
                    failed.append({"file": str(dst), "reason": "cannot encode"})
                    continue
                atomic_write_bytes(dst, buf.tobytes())
                done.append(dst)
            if bar is not None:
                bar.update(task, advance=len(part))
    finally:
        if bar is not None:
            bar.stop()
    return done, failed
