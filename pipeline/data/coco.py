"""The one in-memory form of an annotated image set: COCO with Metalize's per-image fields.

Boxes are absolute-pixel `[x, y, w, h]` (COCO). Each image also carries `domain` ("A" replica /
"B" metal), `split` ("train" | "val" | "test" | "unlabelled" | "oracle"), `sha256` of its bytes,
and for synthetic images `synthetic`, `source_image_id`, `generator` (checkpoint sha256) and
`gate` (quality scores). Saved files load with `pycocotools.coco.COCO`.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pipeline.store import atomic_write_json

DOMAINS = ("A", "B")
SPLITS = ("train", "val", "test", "unlabelled", "oracle")


@dataclass
class Category:
    id: int
    name: str
    supercategory: str = "part"


@dataclass
class ImageRecord:
    id: int
    file_name: str  # relative to the dataset directory (posix)
    width: int
    height: int
    domain: str = "A"
    split: str = "train"
    sha256: str = ""
    synthetic: bool = False
    source_image_id: int | None = None
    generator: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. original path, gate scores

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(d.pop("extra"))
        return d


@dataclass
class Annotation:
    id: int
    image_id: int
    category_id: int
    bbox: list[float]  # x, y, w, h in pixels
    iscrowd: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def area(self) -> float:
        return float(self.bbox[2] * self.bbox[3])

    def to_dict(self) -> dict[str, Any]:
        d = {
            "id": self.id,
            "image_id": self.image_id,
            "category_id": self.category_id,
            "bbox": [round(float(v), 3) for v in self.bbox],
            "area": round(self.area, 3),
            "iscrowd": self.iscrowd,
        }
        d.update(self.extra)
        return d


_IMAGE_KEYS = {f for f in ImageRecord.__dataclass_fields__ if f != "extra"}
_ANN_KEYS = {"id", "image_id", "category_id", "bbox", "iscrowd"}


@dataclass
class CocoSet:
    images: list[ImageRecord] = field(default_factory=list)
    annotations: list[Annotation] = field(default_factory=list)
    categories: list[Category] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    # ---------------------------------------------------------------------------- conversion
    def to_dict(self) -> dict[str, Any]:
        return {
            "info": self.info,
            "images": [im.to_dict() for im in self.images],
            "annotations": [a.to_dict() for a in self.annotations],
            "categories": [asdict(c) for c in self.categories],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "CocoSet":
        images = []
        for im in d.get("images", []):
            known = {k: im[k] for k in _IMAGE_KEYS if k in im}
            extra = {k: v for k, v in im.items() if k not in _IMAGE_KEYS}
            images.append(ImageRecord(**known, extra=extra))
        anns = []
        for a in d.get("annotations", []):
            extra = {k: v for k, v in a.items() if k not in _ANN_KEYS | {"area", "segmentation"}}
            anns.append(
                Annotation(
                    id=int(a["id"]),
                    image_id=int(a["image_id"]),
                    category_id=int(a["category_id"]),
                    bbox=[float(v) for v in a["bbox"]],
                    iscrowd=int(a.get("iscrowd", 0)),
                    extra=extra,
                )
            )
        cats = [Category(int(c["id"]), str(c["name"]), c.get("supercategory", "part")) for c in d.get("categories", [])]
        return cls(images, anns, cats, dict(d.get("info", {})))

    def save(self, path: str | Path) -> Path:
        """Atomic write of COCO JSON (loadable by pycocotools)."""
        return atomic_write_json(path, self.to_dict(), indent=None)

    @classmethod
    def load(cls, path: str | Path) -> "CocoSet":
        with open(path, encoding="utf-8") as f:
            return cls.from_dict(json.load(f))

    # ------------------------------------------------------------------------------- queries
    def anns_by_image(self) -> dict[int, list[Annotation]]:
        out: dict[int, list[Annotation]] = defaultdict(list)
        for a in self.annotations:
            out[a.image_id].append(a)
        return out

    @property
    def category_names(self) -> list[str]:
        return [c.name for c in sorted(self.categories, key=lambda c: c.id)]

    def category_id(self, name: str) -> int:
        for c in self.categories:
            if c.name == name:
                return c.id
        raise KeyError(name)

    def subset(self, predicate) -> "CocoSet":
        """Images for which predicate(image) is true, with their annotations; same categories."""
        images = [im for im in self.images if predicate(im)]
        ids = {im.id for im in images}
        anns = [a for a in self.annotations if a.image_id in ids]
        return CocoSet(images, anns, list(self.categories), dict(self.info))

    def class_counts(self) -> dict[str, int]:
        names = {c.id: c.name for c in self.categories}
        counts = {n: 0 for n in self.category_names}
        for a in self.annotations:
            counts[names[a.category_id]] += 1
        return counts

    def merged(self, other: "CocoSet") -> "CocoSet":
        """Concatenate two sets with the same category names, renumbering ids of `other`."""
        if self.category_names != other.category_names:
            raise ValueError(f"category mismatch: {self.category_names} vs {other.category_names}")
        img_off = max((im.id for im in self.images), default=0)
        ann_off = max((a.id for a in self.annotations), default=0)
        images = list(self.images) + [
            ImageRecord(**{**asdict(im), "id": im.id + img_off}) for im in other.images
        ]
        anns = list(self.annotations) + [
            Annotation(a.id + ann_off, a.image_id + img_off, a.category_id, list(a.bbox), a.iscrowd, dict(a.extra))
            for a in other.annotations
        ]
        return CocoSet(images, anns, list(self.categories), dict(self.info))
