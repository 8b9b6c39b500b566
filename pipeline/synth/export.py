"""Publish generated shards as an augmented dataset version (manifest kind "augmented").

Layout (inside the version root, see pipeline/data/version.py):

    annotations/B_train.json   real labelled B train + accepted synthetic images (COCO; each
                               synthetic image: synthetic, source_image_id, generator, gate, affine)
    images/B/train/            real images (hard links into the parent) and syn-*.png
    rejected.jsonl             one row per gate failure (image, box, check, score, threshold, action)
    yolo/                      ultralytics layout: train/ (this split), val/ and test/ (the parent's
                               real B val and test), data.yaml
    card/                      README.md + PNGs
    config.yaml, manifest.json lineage: the ingest version and the CycleGAN model(s)
"""

from __future__ import annotations

import json
import os
import shutil
from array import array
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from pipeline.config import RunConfig
from pipeline.data.coco import Annotation, CocoSet, ImageRecord
from pipeline.data.version import DatasetVersion
from pipeline.store import atomic_write_text, hash_tree, write_manifest
from pipeline.synth.camera import CameraProfile
from pipeline.synth.card import write_card
from pipeline.synth.journal import collect


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists():
        return
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


@dataclass
class SyntheticStats:
    """What the card and summary need from the synthetic images, without holding them all."""

    images: int = 0
    class_counts: Counter[str] = field(default_factory=Counter)
    box_sizes: array = field(default_factory=lambda: array("f"))  # sqrt(w*h) per box, pixels
    sample: list[tuple[ImageRecord, list[Annotation]]] = field(default_factory=list)  # first n, for the card
    gate: dict[str, Any] = field(default_factory=dict)
    examples: list[dict[str, Any]] = field(default_factory=list)  # rejection rows with a shown thumbnail
    thumbnails: list[str] = field(default_factory=list)  # shown rejected thumbnails (relative paths)


def _json_list(f, items, first: bool) -> bool:
    for d in items:
        f.write(("" if first else ",") + json.dumps(d, separators=(",", ":"), default=str))
        first = False
    return first


def stream_synthetic(root: Path, n_shards: int, real: CocoSet, info: dict[str, Any], *, n_sample: int,
                     yolo_chunk: int = 256) -> SyntheticStats:
    """One pass over the shard journals writing annotations/B_train.json (real + synthetic),
    rejected.jsonl and the synthetic half of yolo/train; memory stays flat in the number of images.

    Synthetic ids continue after the real ones (images and annotations), as `CocoSet.merged` does.
    """
    from pipeline.data.formats import write_yolo

    names = {c.id: c.name for c in real.categories}
    st = SyntheticStats()
    by_check: Counter[str] = Counter()
    thresholds: dict[str, Any] = {}
    rejected_images = dropped = 0
    shown: list[str] = []  # the card's rejected thumbnails: the first n_sample that exist
    img_id = max((im.id for im in real.images), default=0)
    ann_id = max((a.id for a in real.annotations), default=0)
    tmp_i, tmp_a = root / ".images.json.tmp", root / ".annotations.json.tmp"
    tmp_r = root / ".rejected.jsonl.tmp"
    chunk: list[tuple[ImageRecord, list[Annotation]]] = []

    def flush() -> None:
        if chunk:
            part = CocoSet([c[0] for c in chunk], [a for c in chunk for a in c[1]], list(real.categories))
            write_yolo(part, root, root / "yolo" / "train")
            chunk.clear()

    with open(tmp_i, "w", encoding="utf-8") as fi, open(tmp_a, "w", encoding="utf-8") as fa, \
            open(tmp_r, "w", encoding="utf-8") as rej:
        first_i = _json_list(fi, (im.to_dict() for im in real.images), True)
        first_a = _json_list(fa, (a.to_dict() for a in real.annotations), True)
        for row in collect(root, n_shards):
            # One journal row is one work item: its rejected images are counted within it. A box
            # failing two checks has two rejection rows: boxes are counted once each.
            row_rejected: set[str] = set()
            row_dropped: set[tuple[str, int]] = set()
            for r in row["rejections"]:
                thumb = r.get("thumbnail")
                if thumb and thumb not in shown and len(shown) < n_sample and (root / thumb).is_file():
                    shown.append(thumb)
                if thumb and thumb not in shown:
                    r = {**r, "thumbnail": None}  # not shipped: only the card's examples are kept
                rej.write(json.dumps(r, separators=(",", ":")) + "\n")
                by_check[r["check"]] += 1
                thresholds[r["check"]] = r["threshold"]
                if r["action"] == "reject_image":
                    row_rejected.add(f"{r['image']}|{r['source_image_id']}")
                elif r["box"] is not None:
                    row_dropped.add((f"{r['image']}|{r['source_image_id']}", r["box"]))
                if r["thumbnail"] and len(st.examples) < 2 * n_sample:
                    st.examples.append(r)
            rejected_images += len(row_rejected)
            dropped += len(row_dropped)
            for out in row["outputs"]:
                img_id += 1
                im = CocoSet.from_dict({"images": [out["image"]]}).images[0]
                im.id = img_id
                anns = []
                for a in out["annotations"]:
                    ann_id += 1
                    extra = {k: v for k, v in a.items() if k not in ("category_id", "bbox")}
                    anns.append(Annotation(ann_id, img_id, int(a["category_id"]), list(a["bbox"]), 0, extra))
                    st.class_counts[names[int(a["category_id"])]] += 1
                    st.box_sizes.append(float(np.sqrt(max(anns[-1].area, 0.0))))
                first_i = _json_list(fi, [im.to_dict()], first_i)
                first_a = _json_list(fa, (a.to_dict() for a in anns), first_a)
                st.images += 1
                if len(st.sample) < n_sample:
                    st.sample.append((im, anns))
                chunk.append((im, anns))
                if len(chunk) >= yolo_chunk:
                    flush()
        flush()
    out = root / "annotations" / "B_train.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write('{"info":' + json.dumps(info) + ',"images":[')
        with open(tmp_i, encoding="utf-8") as part:
            shutil.copyfileobj(part, f)
        f.write('],"annotations":[')
        with open(tmp_a, encoding="utf-8") as part:
            shutil.copyfileobj(part, f)
        f.write('],"categories":' + json.dumps([asdict(c) for c in real.categories]) + "}\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, out)
    os.replace(tmp_r, root / "rejected.jsonl")
    tmp_i.unlink()
    tmp_a.unlink()
    st.gate = {"rejected_images": rejected_images, "dropped_boxes": dropped,
               "by_check": {k: (v, thresholds[k]) for k, v in by_check.items()}}
    st.thumbnails = shown
    return st


def prune_thumbnails(root: Path, keep: list[str]) -> int:
    """Delete rejected thumbnails the card does not show (shards write a few each); returns count."""
    keep_set = {root / k for k in keep}
    gone = 0
    for p in sorted((root / "card" / "rejected").glob("*.png")):
        if p not in keep_set:
            p.unlink()
            gone += 1
    return gone


def write_data_yaml(yolo_dir: Path, names: list[str], has_val: bool, has_test: bool = False) -> Path:
    """data.yaml without `path`: ultralytics then resolves train/val/test relative to this file."""
    data = {
        "train": "train/images",
        "val": "val/images" if has_val else "train/images",
        **({"test": "test/images"} if has_test else {}),
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
    camera: CameraProfile | None = None,
) -> dict[str, Any]:
    """Turn a staging directory holding finished shards into a complete version; returns manifest."""
    from pipeline.data.formats import write_yolo

    # A killed run can leave the hidden temp file of an interrupted atomic write behind.
    for stale in root.rglob(".*.tmp"):
        stale.unlink()
    a_categories = dataset.coco("A", "train").categories
    real = dataset.coco("B", "train") if dataset.has("B", "train") else CocoSet(categories=a_categories)
    if real.category_names != [c.name for c in sorted(a_categories, key=lambda c: c.id)]:
        raise ValueError(f"{dataset.root}: B_train categories {real.category_names} differ from A_train's")
    for im in real.images:
        _link_or_copy(dataset.image_path(im), root / im.file_name)
    write_yolo(real, root, root / "yolo" / "train")
    info = {"description": f"{version_id}: real B train + synthetic B", "parent": dataset.id}
    syn = stream_synthetic(root, n_shards, real, info, n_sample=cfg.synth.n_card_examples)
    has_val, has_test = dataset.has("B", "val"), dataset.has("B", "test")
    if has_val:
        write_yolo(dataset.coco("B", "val"), dataset.root, root / "yolo" / "val")
    if has_test:  # evaluation only (`yolo val split=test`); no training reads yolo/
        write_yolo(dataset.coco("B", "test"), dataset.root, root / "yolo" / "test")
    write_data_yaml(root / "yolo", real.category_names, has_val, has_test)
    gate = syn.gate

    summary = {
        "id": version_id,
        "categories": real.category_names,
        "images": {"real": len(real.images), "synthetic": syn.images},
        "boxes": {"real": real.class_counts(),
                  "synthetic": {n: syn.class_counts.get(n, 0) for n in real.category_names}},
        "generators": generators,
        "balance": balance,
        "gate": gate,
        "counts": counts,
        "camera": None if camera is None else camera.summary(),
    }
    write_card(root, dataset, real, syn, summary, cfg.synth.n_card_examples, cfg.synth.pad_value)
    prune_thumbnails(root, syn.thumbnails)
    atomic_write_text(root / "config.yaml", cfg.to_yaml())
    summary["gate"]["by_check"] = {k: {"count": c, "threshold": t} for k, (c, t) in gate["by_check"].items()}
    # The journals stay until the manifest is written: a kill before that resumes from them.
    files = {k: v for k, v in hash_tree(root).items() if not k.startswith("shards/")}
    manifest = write_manifest(
        root,
        kind="augmented",
        id=version_id,
        config={"synth": cfg.synth.model_dump(mode="json")},
        parents=parents,
        summary=summary,
        files=files,
    )
    # Journals were the resumption record; everything they held now lives in the outputs above.
    shutil.rmtree(root / "shards", ignore_errors=True)
    return manifest

