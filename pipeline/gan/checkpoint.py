"""Safe weights and checkpoints: safetensors, or torch.load(weights_only=True) — never a pickle
that can run code.

Weights (G_AB.safetensors, ...) carry the generator's shape in their metadata so that a file alone
rebuilds its network. Training checkpoints are plain dicts of tensors and numbers written with
torch.save and read back with weights_only=True.
"""

from __future__ import annotations

import io
import json
import pickle
import re
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open
from safetensors.torch import save as st_save

from pipeline.store import atomic_write_bytes


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, truncated or not a checkpoint."""


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint file would need arbitrary code execution (a full pickle) to load."""


def save_weights(path: str | Path, tensors: dict[str, torch.Tensor],
                 metadata: dict[str, Any] | None = None) -> Path:
    """Atomically write a state dict as safetensors; metadata values are stored as JSON strings.
    The same tensors and metadata always give the same bytes (see `_canonical_header`)."""
    meta = {k: json.dumps(v) for k, v in (metadata or {}).items()}
    data = st_save({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, metadata=meta)
    return atomic_write_bytes(path, _canonical_header(data))


def _canonical_header(data: bytes) -> bytes:
    """The safetensors file `data` with its JSON header's keys sorted. safetensors writes the
    metadata map in hash order, which changes from one call to the next: the same weights got a
    different file, and so a different sha256, which names the synthetic images and keys every
    stage downstream. Tensor offsets are relative to the data section, so only the header moves."""
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + n])
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # safetensors pads its header to 8 bytes
    return len(text).to_bytes(8, "little") + text + data[8 + n :]


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The JSON-decoded metadata of a safetensors file ({} for other formats)."""
    path = Path(path)
    if path.suffix != ".safetensors":
        return {}
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{path}: not a readable safetensors file ({e})") from None
    out = {}
    for k, v in meta.items():
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return out


def load_weights(path: str | Path, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """A state dict from .safetensors, or from .pt/.pth via torch.load(weights_only=True)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: weights file not found")
    if path.suffix == ".safetensors":
        try:
            return load_file(str(path), device=str(device))
        except (SafetensorError, OSError) as e:
            raise CheckpointError(f"{path}: not a readable safetensors file ({e})") from None
    state = load_checkpoint(path, device)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: not a state dict of tensors")
    return state


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Atomic torch.save: a killed process leaves the previous checkpoint intact."""
    buf = io.BytesIO()
    torch.save(state, buf)
    return atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> Any:
    """torch.load with weights_only=True; a pickle that references code is refused, naming the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as e:
        msg = str(e)
        # torch's message names the blocked import ("unsupported GLOBAL posix.system ...")
        found = re.search(r"(?:GLOBAL|global)\s+([\w.]+)", msg)
        if found is None:
            msg = f"{path}: not a readable checkpoint (corrupt or not a torch file)"
            raise CheckpointError(msg) from None
        raise UnsafeCheckpointError(
            f"{path}: refused to load — the file is a pickle that would import {found.group(1)} and "
            f"could run code. Only safetensors or plain tensor checkpoints are accepted; re-save it "
            f"with safetensors.torch.save_file(model.state_dict(), ...)."
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(e).__name__}: {e})") from None
