"""Publish generated shards as an augmented dataset version (manifest kind "augmented").

Layout (inside the version root, see pipeline/data/version.py):

    annotations/B_train.json   real labelled B train + accepted synthetic images (COCO; each
                               synthetic image: synthetic, source_image_id, generator, gate, affine)
    images/B/train/            real images (hard links into the parent) and syn-*.png
    rejected.jsonl             one row per gate failure (image, box, check, score, threshold, action)
    yolo/                      ultralytics layout: train/ (this split), val/ (parent B_val), data.yaml
    card/                      README.md + PNGs
    config.yaml, manifest.json lineage: the ingest version and the CycleGAN model(s)
"""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

from pipeline.config import RunConfig
from pipeline.data.coco import Annotation, CocoSet, ImageRecord
from pipeline.data.version import DatasetVersion
from pipeline.store import atomic_write_text, write_manifest
from pipeline.synth.card import write_card
from pipeline.synth.generate import collect


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists():
        return
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def build_synthetic(root: Path, n_shards: int, categories) -> tuple[CocoSet, dict[str, Any], list[dict[str, Any]]]:
    """Read the shard journals (streaming) into one COCO set, writing rejected.jsonl on the way.

    Returns (synthetic set with ids 1..n, gate counters, rejection rows that have thumbnails).
    """
    images: list[ImageRecord] = []
    anns: list[Annotation] = []
    by_check: Counter[str] = Counter()
    thresholds: dict[str, Any] = {}
    examples: list[dict[str, Any]] = []
    rejected_images: set[str] = set()
    dropped_boxes = 0
    tmp = root / ".rejected.jsonl.tmp"
    with open(tmp, "w", encoding="utf-8") as rej:
        for row in collect(root, n_shards):
            for r in row["rejections"]:
                rej.write(json.dumps(r, separators=(",", ":")) + "\n")
                by_check[r["check"]] += 1
                thresholds[r["check"]] = r["threshold"]
                if r["action"] == "reject_image":
                    rejected_images.add(f"{r['image']}|{r['source_image_id']}")
                elif r["box"] is not None:
                    dropped_boxes += 1
                if r.get("thumbnail"):
                    examples.append(r)
            for out in row["outputs"]:
                im = CocoSet.from_dict({"images": [out["image"]]}).images[0]
                im.id = len(images) + 1
                images.append(im)
                for a in out["annotations"]:
                    extra = {k: v for k, v in a.items() if k not in ("category_id", "bbox")}
                    anns.append(Annotation(len(anns) + 1, im.id, int(a["category_id"]), list(a["bbox"]), 0, extra))
    os.replace(tmp, root / "rejected.jsonl")
    gate = {
        "rejected_images": len(rejected_images),
        "dropped_boxes": dropped_boxes,
        "by_check": {k: (v, thresholds[k]) for k, v in by_check.items()},
    }
    return CocoSet(images, anns, list(categories)), gate, examples


def write_data_yaml(yolo_dir: Path, names: list[str], has_val: bool) -> Path:
    """data.yaml without `path`: ultralytics then resolves train/val relative to this file."""
    data = {
        "train": "train/images",
        "val": "val/images" if has_val else "train/images",
        "nc": len(names),
        "names": {i: n for i, n in enumerate(names)},
    }
    return atomic_write_text(yolo_dir / "data.yaml", yaml.safe_dump(data, sort_keys=False))


def export_version(
    cfg: RunConfig,
    dataset: DatasetVersion,
    root: Path,
    *,
    n_shards: int,
    version_id: str,
    parents: list[dict[str, Any]],
    generators: list[dict[str, Any]],
    balance: dict[str, Any],
    counts: dict[str, Any],
) -> dict[str, Any]:
    """Turn a staging directory holding finished shards into a complete version; returns manifest."""
    from pipeline.data.formats import write_yolo

    # A killed run can leave the hidden temp file of an interrupted atomic write behind.
    for stale in root.rglob(".*.tmp"):
        stale.unlink()
    real = dataset.coco("B", "train") if dataset.has("B", "train") else CocoSet(categories=dataset.coco("A", "train").categories)
    real.info = {}
    a_categories = dataset.coco("A", "train").categories
    synthetic, gate, examples = build_synthetic(root, n_shards, a_categories)
    for im in real.images:
        _link_or_copy(dataset.image_path(im), root / im.file_name)
    merged = real.merged(synthetic)
    merged.info = {"description": f"{version_id}: real B train + synthetic B", "parent": dataset.id}
    merged.save(root / "annotations" / "B_train.json")

    write_yolo(merged, root, root / "yolo" / "train")
    has_val = dataset.has("B", "val")
    if has_val:
        write_yolo(dataset.coco("B", "val"), dataset.root, root / "yolo" / "val")
    write_data_yaml(root / "yolo", merged.category_names, has_val)

    summary = {
        "id": version_id,
        "categories": merged.category_names,
        "images": {"real": len(real.images), "synthetic": len(synthetic.images)},
        "boxes": {"real": real.class_counts(), "synthetic": synthetic.class_counts()},
        "generators": generators,
        "balance": balance,
        "gate": gate,
        "counts": counts,
    }
    write_card(root, dataset, real, synthetic, summary, examples, cfg.synth.n_card_examples)
    atomic_write_text(root / "config.yaml", cfg.to_yaml())
    # Journals were the resumption record; everything they held now lives in the outputs above.
    shutil.rmtree(root / "shards", ignore_errors=True)
    summary["gate"]["by_check"] = {k: {"count": c, "threshold": t} for k, (c, t) in gate["by_check"].items()}
    return write_manifest(
        root,
        kind="augmented",
        id=version_id,
        config={"synth": cfg.synth.model_dump(mode="json")},
        parents=parents,
        summary=summary,
    )

