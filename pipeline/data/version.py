"""A dataset version on disk: a self-contained, hashed directory produced by ingest or synthesis.

Layout (`root = <output_root>/data/datasets/<name>-<key12>/`):

    manifest.json                  kind "dataset", lineage, file hashes, counts
    config.yaml                    the resolved run config that made it
    quarantine.jsonl               one row per problem: input left out or changed (file, reason, action)
    notes.jsonl                    one row per input kept as shown with a note (re-encoded, copies)
    annotations/<D>_<split>.json   COCO per domain D in {A, B} and split, e.g. B_test.json
    images/<D>/<split>/<name>      images; COCO file_name is relative to root
    labels/<D>/<split>/<name>.txt  the same boxes as YOLO labels (every labelled split)
    data.yaml                      ultralytics data file: B train/val/test (`yolo train data=...`)
    card/                          README.md + PNGs (class balance, box sizes, samples)

Synthetic (augmented) versions use the same layout with kind "augmented".
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.data.coco import CocoSet, ImageRecord
from pipeline.store import read_manifest


class DatasetError(RuntimeError):
    """A dataset version is missing, incomplete or lacks a requested split."""


@dataclass(frozen=True)
class DatasetVersion:
    root: Path

    @classmethod
    def open(cls, root: str | Path) -> "DatasetVersion":
        root = Path(root)
        if read_manifest(root) is None:
            raise DatasetError(f"{root}: not a dataset version (no readable manifest.json)")
        return cls(root)

    @cached_property
    def manifest(self) -> dict[str, Any]:
        m = read_manifest(self.root)
        if m is None:
            raise DatasetError(f"{self.root}: manifest.json missing or unreadable")
        return m

    @property
    def id(self) -> str:
        return self.manifest["id"]

    def annotation_path(self, domain: str, split: str) -> Path:
        return self.root / "annotations" / f"{domain}_{split}.json"

    def has(self, domain: str, split: str) -> bool:
        return self.annotation_path(domain, split).is_file()

    def splits(self) -> list[tuple[str, str]]:
        out = []
        for p in sorted((self.root / "annotations").glob("*_*.json")):
            d, _, s = p.stem.partition("_")
            out.append((d, s))
        return out

    def coco(self, domain: str, split: str) -> CocoSet:
        p = self.annotation_path(domain, split)
        if not p.is_file():
            have = ", ".join(f"{d}_{s}" for d, s in self.splits()) or "none"
            raise DatasetError(f"{self.root}: no {domain}_{split} split (have: {have})")
        return CocoSet.load(p)

    def image_path(self, image: ImageRecord) -> Path:
        return self.root / image.file_name

    def read_rgb(self, image: ImageRecord) -> np.ndarray:
        """(H, W, 3) uint8 RGB."""
        import cv2

        bgr = cv2.imread(str(self.image_path(image)), cv2.IMREAD_COLOR)
        if bgr is None:
            raise DatasetError(f"{self.image_path(image)}: cannot be read")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    @property
    def category_names(self) -> list[str]:
        return list(self.manifest.get("summary", {}).get("categories", []))
