"""Optional albumentations pipeline on synthetic images; boxes clipped or dropped by BboxParams."""

from __future__ import annotations

import cv2
import numpy as np

from pipeline.config import RunConfig


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
    )


def _on_border(b: np.ndarray, w: int, h: int) -> np.ndarray:
    b = np.asarray(b, dtype=float).reshape(-1, 4)
    x0, y0, x1, y1 = b[:, 0], b[:, 1], b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    return (x0 <= 0.5) | (y0 <= 0.5) | (x1 >= w - 0.5) | (y1 >= h - 0.5)


def augment(
    transform, image: np.ndarray, boxes: np.ndarray, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Returns (image, boxes (M, 4), kept indices (M,), newly clipped count)."""
    transform.set_random_seed(seed)
    h, w = image.shape[:2]
    out = transform(image=image, bboxes=np.asarray(boxes, dtype=np.float32), ids=np.arange(len(boxes)))
    kept = np.asarray(out["ids"], dtype=int)
    nb = np.asarray(out["bboxes"], dtype=np.float64).reshape(-1, 4)
    # "Clipped" = now touches the border but did not before (the box got cut by the image edge).
    if not len(kept):
        return out["image"], nb, kept, 0
    clipped = int(np.sum(_on_border(nb, w, h) & ~_on_border(np.asarray(boxes)[kept], w, h)))
    return out["image"], nb, kept, clipped
