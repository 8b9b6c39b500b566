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


def __getattr__(name: str) -> Any:  # lazy: importing pipeline.gan stays cheap
    if name in __all__:
        from pipeline.gan import training_run

        return getattr(training_run, name)
    raise AttributeError(name)
