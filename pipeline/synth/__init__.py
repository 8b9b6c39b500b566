"""Synthetic metal images: translate labelled A, carry boxes through one affine map per image,
gate on quality, export an augmented COCO/YOLO dataset.


geometry.py   affine maps (resize, letterbox, crop, tiles) applied to pixels and boxes
plan.py       work items (A image, generator, variant) and the class-balance plan
generate.py   streaming, resumable shards with an injected translate callable; outputs.py one
              output image (geometry job, gate decisions, augmentation, PNG, journal record)
augment.py    optional albumentations pipeline, its geometric map recorded per image
gate.py       per-image and per-box quality checks -> rejected.jsonl rows; artifacts.py the
              checkerboard and seam scores
journal.py    per-shard journals: the resumption record
export.py     the augmented dataset version (COCO, YOLO layout, manifest); card.py its card
stage.py      `synthesize(cfg, dataset, model_dir) -> SynthResult`, cached and resumable
"""

from __future__ import annotations

from typing import Any

__all__ = ["synthesize", "SynthResult"]


def __getattr__(name: str) -> Any:  # keep `import pipeline.synth.geometry` free of torch/prefect
    if name in __all__:
        from pipeline.synth import stage

        return getattr(stage, name)
    raise AttributeError(name)
