"""Which speed levers to pull on this device: precision, channels_last, cuda_graphs and translation
batch "auto".

Measured on the 2-core reference CPU (Xeon with AMX bf16, bench/results/gan*.json): bf16 autocast
made a CycleGAN training step 1.3-1.6x and translation 1.7-3.2x faster than fp32, with a tiny
training's losses within a few percent of fp32; channels_last made CPU steps 15-28 % slower. On
CUDA both help (tensor cores, NHWC cuDNN kernels). Hence "auto": bf16 on CUDA and on CPUs with
native bf16 matrix units (AMX or AVX512-BF16), else fp32; channels_last on CUDA only. Whole-step
CUDA graphs (graphs.py) remove the per-kernel launch cost that bounds a batch-1 step on a GPU.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import torch

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


@functools.lru_cache(maxsize=1)
def cpu_has_fast_bf16() -> bool:
    """True when oneDNN can run bf16 convolutions natively here (AMX tiles or AVX512-BF16)."""
    cpu = getattr(torch, "cpu", None)
    for probe in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"):
        fn = getattr(cpu, probe, None)
        try:
            if fn is not None and fn():
                return True
        except RuntimeError:  # a torch build without the probe's backend
            continue
    return False


def resolve_precision(precision: str, device: str | torch.device) -> str:
    """"auto" -> "bf16" on CUDA (when supported) and on bf16-capable CPUs, else "fp32"; others unchanged."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision != "auto":
        return precision
    dev = torch.device(device)
    if dev.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if dev.type == "cpu" and cpu_has_fast_bf16() else "fp32"


def amp_dtype(precision: str) -> torch.dtype | None:
    """The autocast dtype of a resolved precision (None = plain fp32)."""
    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)


def use_channels_last(setting: bool | str, device: str | torch.device) -> bool:
    """"auto" -> CUDA only (slower on CPU); True/False are honoured as given (e.g. for benchmarks)."""
    if setting == "auto":
        return torch.device(device).type == "cuda"
    return bool(setting)


# Tiles or images per generator forward pass with gan.translate_batch "auto" (bench/translate_batch.py,
# bench/results/translate_batch_*.json). On CPU a batch only adds memory traffic: the activations of
# 8 tiles of 512 px do not stay in cache and are faulted in anew, so a 2064x1544 photo took about
# twice the CPU time at batch 8 as at 1; one tile at a time is fastest. On CUDA batches fill the GPU.
AUTO_TRANSLATE_BATCH = {"cpu": 1, "cuda": 8}


def translation_batch(batch: int | str, device: str | torch.device) -> int:
    """`gan.translate_batch` for this device ("auto" = CUDA when there is one): "auto" ->
    AUTO_TRANSLATE_BATCH; an int as given (>= 1)."""
    if batch == "auto":
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        return AUTO_TRANSLATE_BATCH.get(torch.device(device).type, 1)
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"translate batch must be 'auto' or an int >= 1, got {batch!r}")
    return batch


def use_cuda_graphs(setting: bool | str, device: str | torch.device, *, world_size: int = 1,
                    precision: str = "bf16", gan_mode: str = "lsgan") -> bool:
    """Whether to capture the whole training step as a CUDA graph (pipeline/gan/graphs.py).

    "auto" -> on for a single-process CUDA run in bf16/fp32 with lsgan, vanilla or hinge losses. Never
    with fp16 (the grad scaler reads its inf check on the host every step) or DistributedDataParallel
    (its bucketed all-reduce is not captured here); wgangp draws random numbers inside the step, which
    a graph replays from its own generator offsets, so it is opt-in (True). True where impossible
    falls back to no graphs with a warning rather than failing a run.
    """
    if setting not in ("auto", True, False):
        raise ValueError(f"cuda_graphs must be auto, true or false, got {setting!r}")
    dev = torch.device(device)
    possible = dev.type == "cuda" and world_size == 1 and precision != "fp16"
    if setting == "auto":
        return possible and gan_mode != "wgangp"
    if setting and not possible:
        import logging

        logging.getLogger(__name__).warning(
            "gan.cuda_graphs=true needs one CUDA device and bf16/fp32 (here: %s, %d process(es), %s); "
            "training without CUDA graphs", dev.type, world_size, precision)
    return bool(setting) and possible


def compile_cache(output_root: str | os.PathLike) -> Path:
    """Point torch.compile's on-disk caches (Inductor's FX graph cache, the AOTAutograd cache and the
    Triton kernels under them, all on by default) at <output_root>/cache/torchinductor unless the
    user chose a place (TORCHINDUCTOR_CACHE_DIR). A second run of the same networks and shapes then
    loads compiled kernels instead of generating them. Takes effect before the first compile."""
    path = Path(os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR",
                                      os.path.abspath(Path(output_root) / "cache" / "torchinductor")))
    path.mkdir(parents=True, exist_ok=True)
    return path
