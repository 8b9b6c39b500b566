"""ImagePool (Shrivastava et al. 2017): the discriminators see a history of generated images.

With probability 0.5 a new fake is returned as is, otherwise it swaps places with a random stored
one. The pool owns its random generator so that a checkpoint can restore it exactly.

The random decisions never depend on the images, so `plan(n)` makes them on the host before the
images exist; `query` applies a plan to a list of stored tensors, `query_static` applies one given
as a device tensor to a fixed (pool_size, C, H, W) buffer. The latter has no host logic that depends
on the data, so a CUDA graph can capture it: the same decisions, the same images, in any mode.
"""

from __future__ import annotations

import random
from typing import Any

import torch

Plan = list[tuple[int, int, int]]  # per image: (return the stored image, store the new one, slot)


class ImagePool:
    def __init__(self, pool_size: int = 50, seed: int = 0):
        self.pool_size = pool_size
        self.images: list[torch.Tensor] = []
        self.rng = random.Random(seed)
        self.buffer: torch.Tensor | None = None  # static mode: (pool_size, C, H, W)
        self.count = 0  # images stored (the list's length, or the filled part of the buffer)

    def plan(self, n: int) -> Plan:
        """The decisions for the next n images, drawn from the pool's RNG exactly as `query` would."""
        out: Plan = []
        if self.pool_size == 0:
            return out
        for _ in range(n):
            if self.count < self.pool_size:
                out.append((0, 1, self.count))
                self.count += 1
            elif self.rng.uniform(0, 1) > 0.5:
                out.append((1, 1, self.rng.randint(0, self.pool_size - 1)))
            else:
                out.append((0, 0, 0))
        return out

    def query(self, images: torch.Tensor) -> torch.Tensor:
        """(N,C,H,W) fakes in -> (N,C,H,W) mix of these and stored fakes (detached)."""
        if self.pool_size == 0:
            return images.detach()
        if self.buffer is not None:
            plan = torch.tensor(self.plan(images.shape[0]), dtype=torch.long).T.to(images.device)
            return self.query_static(images, plan)
        out = []
        for image, (take, store, slot) in zip(images.detach(), self.plan(images.shape[0])):
            image = image.unsqueeze(0)
            if take:
                out.append(self.images[slot].clone())
            else:
                out.append(image)
            if store and slot == len(self.images):
                self.images.append(image.clone())
            elif store:
                self.images[slot] = image.clone()
        return torch.cat(out, 0)

    # ------------------------------------------------------------------------------ static mode
    def make_static(self, like: torch.Tensor) -> None:
        """Move the stored images into one buffer shaped, typed and laid out like `like` (N,C,H,W)."""
        if self.buffer is not None or self.pool_size == 0:
            return
        shape = (self.pool_size, *like.shape[1:])
        fmt = (torch.channels_last if like.dim() == 4 and like.is_contiguous(memory_format=torch.channels_last)
               and not like.is_contiguous() else torch.contiguous_format)
        self.buffer = torch.zeros(shape, dtype=like.dtype, device=like.device).contiguous(memory_format=fmt)
        for i, t in enumerate(self.images):
            self.buffer[i].copy_(t[0])
        self.images = []

    def query_static(self, images: torch.Tensor, plan: torch.Tensor) -> torch.Tensor:
        """`query` with the decisions as a (3, N) int64 device tensor (rows: take, store, slot),
        images processed in order as the list version does. No host synchronisation."""
        images = images.detach()
        if self.pool_size == 0:
            return images
        assert self.buffer is not None, "make_static first"
        out = []
        for j in range(images.shape[0]):
            new = images[j:j + 1]
            slot = plan[2, j:j + 1]
            stored = self.buffer.index_select(0, slot)
            out.append(torch.where(plan[0, j].bool(), stored, new))
            self.buffer.index_copy_(0, slot, torch.where(plan[1, j].bool(), new, stored))
        return torch.cat(out, 0)

    # ------------------------------------------------------------------------------ checkpoints
    def stored(self) -> list[torch.Tensor]:
        """The stored images, each (1,C,H,W), in slot order."""
        if self.buffer is not None:
            return [self.buffer[i:i + 1] for i in range(self.count)]
        return list(self.images)

    def state_dict(self) -> dict[str, Any]:
        """Tensors on CPU and the RNG state (loadable with torch.load(weights_only=True))."""
        return {"pool_size": self.pool_size, "images": [t.cpu() for t in self.stored()],
                "rng": self.rng.getstate()}

    def load_state_dict(self, state: dict[str, Any], device: torch.device | str = "cpu") -> None:
        self.pool_size = int(state["pool_size"])
        images = [t.to(device) for t in state["images"]]
        self.count = len(images)
        if self.buffer is not None:  # keep the buffer (a captured graph points at it)
            self.buffer.zero_()
            for i, t in enumerate(images):
                self.buffer[i].copy_(t[0])
        else:
            self.images = images
        rng = state["rng"]
        self.rng.setstate((rng[0], tuple(rng[1]), rng[2]))
