"""Helpers for the detector tests: a hand-made augmented version and the comparison config."""

from __future__ import annotations

import os
from pathlib import Path

from pipeline.data.coco import CocoSet, ImageRecord
from pipeline.data.version import DatasetVersion
from pipeline.store import write_manifest

REPO = Path(__file__).resolve().parents[2]

def make_augmented(dataset: DatasetVersion, root: Path) -> DatasetVersion:
    """An augmented version as synthesis publishes it (contract 4), with the labelled A photos
    standing in for translations: B_train = real B train + images marked synthetic."""
    real = dataset.coco("B", "train")
    a = dataset.coco("A", "train")
    (root / "images" / "B" / "train").mkdir(parents=True)
    images, anns = [], []
    next_img = max(im.id for im in real.images) + 1
    next_ann = max((x.id for x in real.annotations), default=0) + 1
    by_image = a.anns_by_image()
    for im in real.images:
        dst = root / "images" / "B" / "train" / Path(im.file_name).name
        os.link(dataset.image_path(im), dst)
        images.append(ImageRecord(**{**im.__dict__, "file_name": dst.relative_to(root).as_posix()}))
    anns += real.annotations
    for im in a.images:
        dst = root / "images" / "B" / "train" / f"syn_{Path(im.file_name).name}"
        os.link(dataset.image_path(im), dst)
        images.append(ImageRecord(next_img, dst.relative_to(root).as_posix(), im.width, im.height, domain="B",
                                  split="train", sha256=im.sha256, synthetic=True, source_image_id=im.id,
                                  generator="0" * 64, extra={"gate": {"edge_f1": 1.0}}))
        for x in by_image.get(im.id, []):
            anns.append(type(x)(next_ann, next_img, x.category_id, list(x.bbox)))
            next_ann += 1
        next_img += 1
    CocoSet(images, anns, list(real.categories)).save(root / "annotations" / "B_train.json")
    write_manifest(root, kind="augmented", id=root.name, config={}, parents=[dataset.manifest],
                   summary={"categories": dataset.category_names})
    return DatasetVersion.open(root)


def compare_config(tiny_root: Path, *extra: str):
    from pipeline.config import load_config

    return load_config(REPO / "configs" / "tiny.yaml", [f"runtime.output_root={tiny_root}",
                                                          "detect.arms=[real, real+synthetic]",
                                                          "detect.parallel_arms=2", *extra])
