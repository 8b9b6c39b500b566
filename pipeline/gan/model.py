"""Translators behind one training interface: `make_model(opt, device)` builds the model that
`gan.model` names. Each has set_input, optimize_parameters, losses, visuals, lr, networks(),
state_dict / load_state_dict and pool states; `G_AB` is the A→B generator the stage saves, and
`G_BA` the inverse where the model has one (CycleGAN), else None.
"""

from __future__ import annotations

import importlib
from typing import Any

import torch

from pipeline.gan import TRANSLATORS

MODELS = tuple(TRANSLATORS)


def make_model(opt: Any, device: str | torch.device = "cpu", *, seed: int = 0, rank: int = 0, world_size: int = 1):
    """The translator `opt.model` names in pipeline.gan.TRANSLATORS (CycleGAN by default)."""
    name = getattr(opt, "model", "cyclegan")
    if name not in TRANSLATORS:
        raise ValueError(f"gan.model {name!r}: expected one of {', '.join(MODELS)}")
    module, _, cls = TRANSLATORS[name][0].partition(":")
    return getattr(importlib.import_module(module), cls)(opt, device, seed=seed, rank=rank, world_size=world_size)


def inverse_generator(model: Any) -> torch.nn.Module | None:
    """The B→A generator of a model that has one."""
    return getattr(model, "G_BA", None)
