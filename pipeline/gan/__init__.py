"""Unpaired translators (CycleGAN, CUT, FastCUT): networks, losses, image pool, training,
checkpoints, tiled translation and offline quality metrics.

cyclegan.py holds the CycleGAN model (its step reads like the paper), cut.py CUT/FastCUT, model.py
picks one; training_loop.py is the resumable training loop; training_run.py trains one model
directory for a dataset (and is the torchrun entry point). quality.py and realism.py measure the
result; accel.py holds the speed levers by device, graphs.py whole-step CUDA graph capture.

`train_translator(cfg, dataset) -> GanResult` (training_run.py) trains or reuses a model directory;
`translate.Translator.load(model_dir)` translates images; `quality` measures realism and structure.
Module tops import only torch, numpy, OpenCV, safetensors, PyYAML and rich (no Prefect, pydantic or
albumentations), so training and translation also run on a bare GPU host.
"""

from __future__ import annotations

from typing import Any

__all__ = ["GanResult", "train_translator"]

# The translators `gan.model` can name: adding one is a class with the training interface of
# model.py (set_input, optimize_parameters, losses, visuals, state_dict, ...) and one line here.
# name -> ("module:Class", what it is)
TRANSLATORS: dict[str, tuple[str, str]] = {
    "cyclegan": ("pipeline.gan.cyclegan:CycleGAN", "CycleGAN, two generators with cycle consistency"),
    "cut": ("pipeline.gan.cut:CUT", "CUT, one generator, PatchNCE + identity NCE"),
    "fastcut": ("pipeline.gan.cut:CUT", "FastCUT, PatchNCE x10, no identity"),
}


def display_name(model: str) -> str:
    """How logs and progress bars name a translator: 'CycleGAN', 'CUT', 'FastCUT'."""
    return TRANSLATORS[model][1].split(",")[0] if model in TRANSLATORS else model


def __getattr__(name: str) -> Any:  # lazy: importing pipeline.gan stays cheap
    if name in __all__:
        from pipeline.gan import training_run

        return getattr(training_run, name)
    raise AttributeError(name)
