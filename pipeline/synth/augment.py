"""Optional albumentations pipeline on synthetic images; boxes clipped or dropped by BboxParams.

The geometric part (flip, affine) is an affine map like every other step, so it is recorded per
image (`augment_affine`): the written boxes are exactly `transform_boxes` of the pre-augmentation
boxes through it (albumentations' own box maths: corners, axis-aligned extent, clip).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from pipeline.config import RunConfig
from pipeline.synth import geometry as geo


def build_augment(cfg: RunConfig):
    """albumentations pipeline for synthetic images; boxes clipped/dropped by BboxParams."""
    import albumentations as A

    return A.Compose(
        [
            A.HorizontalFlip(p=0.5),
            A.Affine(scale=(0.9, 1.1), translate_percent=(-0.1, 0.1), rotate=(-5, 5), p=0.5,
                     border_mode=cv2.BORDER_CONSTANT, fill=cfg.synth.pad_value),
            A.RandomBrightnessContrast(brightness_limit=0.15, contrast_limit=0.15, p=0.5),
            A.GaussNoise(std_range=(0.01, 0.04), p=0.3),
        ],
        bbox_params=A.BboxParams(
            format="coco", label_fields=["ids"], min_visibility=cfg.synth.min_visibility,
            min_area=cfg.synth.min_area, clip=True,
        ),
        seed=cfg.runtime.seed,
        save_applied_params=True,  # the geometric parameters, to record the map
    )


@dataclass
class Augmented:
    image: np.ndarray  # (H, W, 3) uint8
    boxes: np.ndarray  # (M, 4) xywh pixels
    kept: np.ndarray  # (M,) indices into the input boxes
    clipped: int  # boxes newly cut by the image border
    affine: geo.Affine  # (2, 3) edge-coordinate map of the geometric steps applied


def _on_border(b: np.ndarray, w: int, h: int) -> np.ndarray:
    b = np.asarray(b, dtype=float).reshape(-1, 4)
    x0, y0, x1, y1 = b[:, 0], b[:, 1], b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    return (x0 <= 0.5) | (y0 <= 0.5) | (x1 >= w - 0.5) | (y1 >= h - 0.5)


def applied_affine(applied: list[tuple[str, dict]], width: int) -> geo.Affine:
    """The geometric map of albumentations' applied transforms (edge coordinates, left to right).

    Only flips and affines are geometric here; an unknown geometric transform would make the
    recorded map wrong, so it is an error rather than silently ignored.
    """
    m = geo.identity()
    for name, params in applied:
        if name == "HorizontalFlip":
            m = geo.compose(m, np.array([[-1.0, 0.0, float(width)], [0.0, 1.0, 0.0]]))
        elif name == "Affine":
            # bbox_matrix is albumentations' map in edge coordinates (centre at W/2, H/2).
            m = geo.compose(m, np.asarray(params["bbox_matrix"], dtype=np.float64)[:2])
        elif name not in ("RandomBrightnessContrast", "GaussNoise"):
            raise ValueError(f"augmentation {name}: its geometry is not recorded (flip and Affine are)")
    return m


def augment(transform, image: np.ndarray, boxes: np.ndarray, seed: int) -> Augmented:
    """Apply the pipeline with a fixed seed; boxes (N, 4) xywh pixels."""
    transform.set_random_seed(seed)
    h, w = image.shape[:2]
    out = transform(image=image, bboxes=np.asarray(boxes, dtype=np.float32), ids=np.arange(len(boxes)))
    kept = np.asarray(out["ids"], dtype=int)
    nb = np.asarray(out["bboxes"], dtype=np.float64).reshape(-1, 4)
    m = applied_affine(out.get("applied_transforms", []), w)
    # "Clipped" = now touches the border but did not before (the box got cut by the image edge).
    clipped = 0
    if len(kept):
        clipped = int(np.sum(_on_border(nb, w, h) & ~_on_border(np.asarray(boxes)[kept], w, h)))
    return Augmented(out["image"], nb, kept, clipped, m)
