"""CycleGAN: networks, losses, image pool, training, checkpoints, tiled translation and offline
quality metrics (quality.py; the realism critics in realism.py; speed levers by device in accel.py;
whole-step CUDA graph capture in graphs.py).

`train_cyclegan(cfg, dataset) -> GanResult` (stage.py) trains or reuses a model directory;
`translate.Translator.load(model_dir)` translates images; `quality` measures realism and structure.
Module tops import only torch, numpy, OpenCV, safetensors, PyYAML and rich (no Prefect, pydantic or
albumentations), so training and translation also run on a bare GPU host.
"""

from __future__ import annotations

from typing import Any

__all__ = ["GanResult", "train_cyclegan"]


def __getattr__(name: str) -> Any:  # lazy: importing pipeline.gan stays cheap
    if name in __all__:
        from pipeline.gan import stage

        return getattr(stage, name)
    raise AttributeError(name)
