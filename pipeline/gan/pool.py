"""ImagePool (Shrivastava et al. 2017): the discriminators see a history of generated images.

With probability 0.5 a new fake is returned as is, otherwise it swaps places with a random stored
one. The pool owns its random generator so that a checkpoint can restore it exactly.
"""

from __future__ import annotations

import random
from typing import Any

import torch


class ImagePool:
    def __init__(self, pool_size: int = 50, seed: int = 0):
        self.pool_size = pool_size
        self.images: list[torch.Tensor] = []
        self.rng = random.Random(seed)

    def query(self, images: torch.Tensor) -> torch.Tensor:
        """(N,C,H,W) fakes in -> (N,C,H,W) mix of these and stored fakes (detached)."""
        if self.pool_size == 0:
            return images.detach()
        out = []
        for image in images.detach():
            image = image.unsqueeze(0)
            if len(self.images) < self.pool_size:
                self.images.append(image.clone())
                out.append(image)
            elif self.rng.uniform(0, 1) > 0.5:
                i = self.rng.randint(0, self.pool_size - 1)
                out.append(self.images[i].clone())
                self.images[i] = image.clone()
            else:
                out.append(image)
        return torch.cat(out, 0)

    def state_dict(self) -> dict[str, Any]:
        """Tensors on CPU and the RNG state (loadable with torch.load(weights_only=True))."""
        return {"pool_size": self.pool_size, "images": [t.cpu() for t in self.images],
                "rng": self.rng.getstate()}

    def load_state_dict(self, state: dict[str, Any], device: torch.device | str = "cpu") -> None:
        self.pool_size = int(state["pool_size"])
        self.images = [t.to(device) for t in state["images"]]
        rng = state["rng"]
        self.rng.setstate((rng[0], tuple(rng[1]), rng[2]))
