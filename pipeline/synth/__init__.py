"""Synthetic metal images: translate labelled A, carry boxes through one affine map per image,
gate on quality, export an augmented COCO/YOLO dataset.


geometry.py  affine maps (resize, letterbox, crop, tiles) applied to pixels and boxes
generate.py  streaming, resumable generation with an injected translate callable
gate.py      per-image and per-box quality checks -> rejected.jsonl rows
export.py    the augmented dataset version (COCO, YOLO layout, manifest); card.py its card
stage.py     `synthesize(cfg, dataset, model_dir) -> SynthResult`, cached and resumable
"""

from __future__ import annotations

from typing import Any

__all__ = ["synthesize", "SynthResult"]


def __getattr__(name: str) -> Any:  # keep `import pipeline.synth.geometry` free of torch/prefect
    if name in __all__:
        from pipeline.synth import stage

        return getattr(stage, name)
    raise AttributeError(name)
