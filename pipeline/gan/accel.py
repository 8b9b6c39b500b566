"""Which speed levers to pull on this device: precision, channels_last and translation batch "auto".

Measured on the 2-core reference CPU (Xeon with AMX bf16, bench/results/gan*.json): bf16 autocast
made a CycleGAN training step 1.3-1.6x and translation 1.7-3.2x faster than fp32, with a tiny
training's losses within a few percent of fp32; channels_last made CPU steps 15-28 % slower. On
CUDA both help (tensor cores, NHWC cuDNN kernels). Hence "auto": bf16 on CUDA and on CPUs with
native bf16 matrix units (AMX or AVX512-BF16), else fp32; channels_last on CUDA only.
"""

from __future__ import annotations

import functools

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
