"""Translators behind one training interface: `make_model(opt, device)` builds the model that
`gan.model` names. Each has set_input, optimize_parameters, losses, visuals, lr, networks(),
state_dict / load_state_dict and pool states; `G_AB` is the A→B generator the stage saves, and
`G_BA` the inverse where the model has one (CycleGAN), else None.
"""

from __future__ import annotations

from typing import Any

import torch

MODELS = ("cyclegan", "cut", "fastcut")


def make_model(opt: Any, device: str | torch.device = "cpu", *, seed: int = 0, rank: int = 0, world_size: int = 1):
    """CycleGAN (default) or CUT / FastCUT, from `opt.model`."""
    name = getattr(opt, "model", "cyclegan")
    if name == "cyclegan":
        from pipeline.gan.cyclegan import CycleGAN

        return CycleGAN(opt, device, seed=seed, rank=rank, world_size=world_size)
    if name in ("cut", "fastcut"):
        from pipeline.gan.cut import CUT

        return CUT(opt, device, seed=seed, rank=rank, world_size=world_size)
    raise ValueError(f"gan.model {name!r}: expected one of {', '.join(MODELS)}")


def inverse_generator(model: Any) -> torch.nn.Module | None:
    """The B→A generator of a model that has one."""
    return getattr(model, "G_BA", None)
