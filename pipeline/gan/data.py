"""Unpaired A/B training images from a dataset version.

A = every labelled replica photo (A_train); B = the unlabelled metal pool plus the labelled real B
train split (B_unlabelled + B_train). B_val and B_test are never read: they judge the detector.

Sample k of the run (a global counter over steps, ranks and batch positions) is a pure function
of (seed, k): which A and which B image, and the crop/flip. So a resumed run, any number of
DataLoader workers or another rank layout sees exactly the images an uninterrupted run would.
Items: {"A": (3,crop,crop), "B": (3,crop,crop)} float32 in [-1,1], or with uint8=True the crops
themselves, (crop,crop,3) uint8 RGB, for a trainer that normalises on its device (CycleGAN.set_input);
and "A_weight" (1,crop,crop): `box_weight` inside the replica's boxes (as cropped), 1 elsewhere, for
the structure term.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

if TYPE_CHECKING:
    from pipeline.data.version import DatasetVersion

log = logging.getLogger(__name__)

A_SPLITS = (("A", "train"),)
B_SPLITS = (("B", "unlabelled"), ("B", "train"))
NEVER = (("B", "val"), ("B", "test"))  # held out for the detector comparison


@dataclass(frozen=True)
class ImageItem:
    path: Path
    boxes: list[list[float]] = field(default_factory=list)  # xywh, pixels


def training_images(dataset: "DatasetVersion") -> tuple[list[ImageItem], list[ImageItem]]:
    """(A items, B items) for CycleGAN training; raises if either domain is empty."""
    out: dict[str, list[ImageItem]] = {"A": [], "B": []}
    for domain, split in A_SPLITS + B_SPLITS:
        assert (domain, split) not in NEVER
        if not dataset.has(domain, split):
            continue
        coco = dataset.coco(domain, split)
        by_image = coco.anns_by_image()
        for im in coco.images:
            boxes = [list(a.bbox) for a in by_image.get(im.id, [])]
            out[domain].append(ImageItem(dataset.image_path(im), boxes))
    for d, wanted in (("A", "A_train"), ("B", "B_unlabelled or B_train")):
        if not out[d]:
            raise ValueError(f"{dataset.root}: no Class {d} images for CycleGAN training (need {wanted})")
    return out["A"], out["B"]


def to_tensor(rgb: np.ndarray) -> torch.Tensor:
    """(H,W,3) uint8 -> (3,H,W) float32 in [-1,1]."""
    return torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1))).float().div_(127.5).sub_(1.0)


def to_uint8(t: torch.Tensor) -> np.ndarray:
    """(3,H,W) in [-1,1] -> (H,W,3) uint8."""
    arr = ((t.detach().float().clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8)
    return arr.permute(1, 2, 0).cpu().numpy()


def resize_short_side(rgb: np.ndarray, short: int) -> tuple[np.ndarray, float]:
    """Resize so min(H,W) == short (area filter when shrinking); returns (image, scale)."""
    h, w = rgb.shape[:2]
    scale = short / min(h, w)
    if scale == 1.0:
        return rgb, 1.0
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC), scale


class UnpairedDataset(Dataset):
    """Index = global sample number; each call draws one A and one B image and crops both.

    load_size: short side after resizing (the paper's 286); crop_size: square crop (256).
    object_aware: crops of labelled images keep at least one box (albumentations'
    AtLeastOneBBoxRandomCrop), so the generator trains on parts, not empty background.
    uint8: items are the (crop,crop,3) uint8 crops instead of float tensors (same draws).
    box_weight: value of "A_weight" inside the A crop's boxes (1 outside).
    """

    def __init__(self, a: list[ImageItem], b: list[ImageItem], *, load_size: int, crop_size: int, seed: int,
                 length: int, object_aware: bool = False, flip: bool = True, cache_mb: int = 512,
                 uint8: bool = False, box_weight: float = 1.0):
        if load_size < crop_size:
            raise ValueError(f"load_size {load_size} is smaller than crop_size {crop_size}")
        self.a, self.b = a, b
        self.load_size, self.crop_size, self.seed, self.length = load_size, crop_size, seed, length
        self.object_aware, self.flip, self.uint8, self.box_weight = object_aware, flip, uint8, box_weight
        self._cache: dict[Path, tuple[np.ndarray, list[list[float]]]] = {}
        self._cache_bytes, self._cache_limit = 0, cache_mb << 20
        self._bad: set[Path] = set()
        self._plain = self._object = self._plain_boxes = None  # albumentations, built lazily per process

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, k: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, int(k)])
        a, a_boxes = self._sample(self.a, rng)
        b, _ = self._sample(self.b, rng)
        weight = np.ones((1, *a.shape[:2]), np.float32)
        for x, y, w, h in a_boxes:  # pixels covered by a box, rounded outward
            weight[0, int(y) : int(np.ceil(y + h)), int(x) : int(np.ceil(x + w))] = self.box_weight
        if self.uint8:
            a, b = torch.from_numpy(np.ascontiguousarray(a)), torch.from_numpy(np.ascontiguousarray(b))
        else:
            a, b = to_tensor(a), to_tensor(b)
        return {"A": a, "B": b, "A_weight": torch.from_numpy(weight)}

    # ------------------------------------------------------------------------------------------
    def _sample(self, items: list[ImageItem], rng: np.random.Generator) -> tuple[np.ndarray, list]:
        for _ in range(16):  # a bad file is logged and replaced by another draw, never fatal
            item = items[int(rng.integers(len(items)))]
            aug_seed = int(rng.integers(2**31 - 1))
            loaded = self._load(item)
            if loaded is not None:
                return self._augment(*loaded, aug_seed)
        raise RuntimeError(f"16 draws in a row hit unreadable images (last: {item.path})")

    def _load(self, item: ImageItem) -> tuple[np.ndarray, list[list[float]]] | None:
        hit = self._cache.get(item.path)
        if hit is not None:
            return hit
        if item.path in self._bad:
            return None
        bgr = cv2.imread(str(item.path), cv2.IMREAD_COLOR)
        if bgr is None:
            self._bad.add(item.path)
            log.warning("%s: unreadable image, skipped in CycleGAN training", item.path)
            return None
        rgb, scale = resize_short_side(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), self.load_size)
        h, w = rgb.shape[:2]
        boxes = []
        for x, y, bw, bh in item.boxes:  # scaled, clipped, degenerate ones dropped
            x0, y0 = max(0.0, x * scale), max(0.0, y * scale)
            x1, y1 = min(float(w), (x + bw) * scale), min(float(h), (y + bh) * scale)
            if x1 - x0 >= 1 and y1 - y0 >= 1:
                boxes.append([x0, y0, x1 - x0, y1 - y0])
        if self._cache_bytes + rgb.nbytes <= self._cache_limit:
            self._cache[item.path] = (rgb, boxes)
            self._cache_bytes += rgb.nbytes
        return rgb, boxes

    def _pipelines(self) -> tuple[Any, Any]:
        if self._plain is None:
            import albumentations as A

            flip = [A.HorizontalFlip(p=0.5)] if self.flip else []
            c = self.crop_size
            self._plain = A.Compose([A.RandomCrop(c, c), *flip])
            bbox = A.BboxParams(format="coco", label_fields=["labels"], clip=True, min_visibility=0.0)
            self._object = A.Compose([A.AtLeastOneBBoxRandomCrop(c, c), *flip], bbox_params=bbox)
            self._plain_boxes = A.Compose([A.RandomCrop(c, c), *flip], bbox_params=bbox)
        return self._plain, self._object, self._plain_boxes

    def _augment(self, rgb: np.ndarray, boxes: list[list[float]], seed: int) -> tuple[np.ndarray, list]:
        """The crop (and flip) of one image, with its boxes as cropped (xywh pixels)."""
        plain, objectwise, plain_boxes = self._pipelines()
        pipe = (objectwise if self.object_aware else plain_boxes) if boxes else plain
        seed_independently(pipe, np.random.SeedSequence(seed))
        if boxes:
            out = pipe(image=rgb, bboxes=boxes, labels=[0] * len(boxes))
            return out["image"], [list(b) for b in out["bboxes"]]
        return pipe(image=rgb)["image"], []


def seed_independently(transform, seq: np.random.SeedSequence) -> None:
    """Seed an albumentations transform and, recursively, each of its children with a generator of
    its own. albumentations' set_random_seed gives every child the same seed, so their coin flips
    agree (a flip decided by the crop's draw; in a long pipeline every step applied, or none)."""
    from albumentations.core.composition import BaseCompose

    transform.set_random_seed(int(seq.generate_state(1)[0]))
    children = list(transform.transforms) if isinstance(transform, BaseCompose) else []
    for child, child_seq in zip(children, seq.spawn(len(children))):
        seed_independently(child, child_seq)


class StepSampler(torch.utils.data.Sampler[int]):
    """Sample numbers for steps [start, total) of one rank: step s, rank r, position j ->
    (s·world + r)·batch + j. Resuming at step s continues the exact sequence."""

    def __init__(self, start: int, total: int, batch: int, rank: int = 0, world: int = 1):
        self.start, self.total, self.batch, self.rank, self.world = start, total, batch, rank, world

    def __iter__(self):
        for s in range(self.start, self.total):
            base = (s * self.world + self.rank) * self.batch
            yield from range(base, base + self.batch)

    def __len__(self) -> int:
        return max(0, self.total - self.start) * self.batch


def seed_worker(worker_id: int) -> None:
    """DataLoader workers: one OpenCV thread each (the workers are the parallelism); all
    randomness comes from per-sample seeds, so worker seeding only guards third-party code."""
    cv2.setNumThreads(1)
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    import random

    random.seed(seed)
