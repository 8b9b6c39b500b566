"""One output image of a work item: its geometry job, the written PNG and its journal record.

A *job* is one output image (one tile) of a work item: the A image warped by the output's affine
map, its transferred boxes, and — after translation — the synthetic pixels. `finish_output`
applies the gate's box decisions and the optional augmentation, writes the PNG and returns the
record that goes into the shard journal.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from pipeline.config import RunConfig
from pipeline.data.coco import Annotation, ImageRecord
from pipeline.store import atomic_write_bytes, sha256_bytes, sha256_file
from pipeline.synth import geometry as geo
from pipeline.synth.augment import augment
from pipeline.synth.camera import CameraProfile, apply_camera
from pipeline.synth.gate import GateResult, as_uint8, erase_boxes
from pipeline.synth.plan import WorkItem

IMAGE_DIR = "images/B/train"


@dataclass
class Job:
    item: WorkItem
    tile: int
    n_tiles: int
    transform: geo.ImageTransform
    source_file: str
    source: np.ndarray  # (H, W, 3) uint8, the A image in the output frame
    boxes: np.ndarray  # (N, 4) xywh pixels in that frame
    visibility: np.ndarray  # (N,)
    anns: list[Annotation]
    n_boxes_in: int
    synthetic: np.ndarray | None = None
    nonfinite: int = 0  # NaN/inf values the generator reported for this output


def seed_of(*parts: Any) -> int:
    return int.from_bytes(hashlib.sha256(":".join(map(str, parts)).encode()).digest()[:4], "little")


def output_name(item: WorkItem, gen_sha: str, tile: int, n_tiles: int) -> str:
    t = f"-t{tile}" if n_tiles > 1 else ""
    return f"syn-{item.source_id:06d}-{gen_sha[:8]}-v{item.variant}{t}.png"


def geometry_jobs(
    cfg: RunConfig, it: WorkItem, rec: ImageRecord, rgb: np.ndarray, anns: list[Annotation]
) -> list[Job]:
    """One job per output image of a work item: the warped source and its transferred boxes."""
    h, w = rgb.shape[:2]
    base = geo.fit_transform(w, h, cfg.synth.image_size, cfg.synth.fit)
    if it.variant > 0:
        rng = np.random.default_rng(seed_of(cfg.runtime.seed, it.key))
        base = geo.jitter_transform(base, cfg.synth.jitter, rng)
    tiles = geo.tile_transforms(base, cfg.synth.tile, cfg.synth.tile_overlap)
    src_boxes = np.array([a.bbox for a in anns], dtype=np.float64).reshape(-1, 4)
    jobs = []
    for k, t in enumerate(tiles):
        boxes, vis = geo.transform_boxes(src_boxes, t)
        ok = (vis >= cfg.synth.min_visibility) & (boxes[:, 2] * boxes[:, 3] >= max(cfg.synth.min_area, 1e-6))
        jobs.append(Job(
            it, k, len(tiles), t, rec.file_name,
            geo.warp_image(rgb, t, border_value=(cfg.synth.pad_value,) * 3),
            boxes[ok], vis[ok], [a for a, keep in zip(anns, ok) if keep], len(anns),
        ))
    return jobs


def write_png(path: Path, rgb: np.ndarray) -> str:
    """Atomically write `rgb` as PNG; returns its sha256. A file already holding exactly these
    bytes (left by a killed run before its journal line) is kept, not rewritten."""
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise OSError(f"{path}: PNG encoding failed")
    data = buf.tobytes()
    sha = sha256_bytes(data)
    if path.is_file() and path.stat().st_size == len(data) and sha256_file(path) == sha:
        return sha
    atomic_write_bytes(path, data)
    return sha


def thumbnail(source: np.ndarray, synthetic: np.ndarray, boxes: np.ndarray, bad: list[int]) -> np.ndarray:
    """Source | synthetic side by side, failing boxes red, others green; height <= 128 px."""
    syn = as_uint8(np.asarray(synthetic))
    panels = []
    for img in (source, syn):
        img = np.ascontiguousarray(img.copy())
        for i, b in enumerate(np.asarray(boxes).reshape(-1, 4)):
            color = (255, 0, 0) if i in bad else (0, 255, 0)
            cv2.rectangle(img, (int(b[0]), int(b[1])), (int(b[0] + b[2]) - 1, int(b[1] + b[3]) - 1), color, 1)
        panels.append(img)
    pair = np.concatenate(panels, axis=1)
    s = min(1.0, 128 / pair.shape[0])
    return cv2.resize(pair, None, fx=s, fy=s, interpolation=cv2.INTER_AREA) if s < 1 else pair


def _add(st: dict[str, Any], key: str, n: int) -> None:
    st[key] = st.get(key, 0) + n


def finish_output(
    cfg: RunConfig, transform, job: Job, res: GateResult, name: str, gen_sha: str, staging: Path, st: dict,
    camera: CameraProfile | None = None,
) -> dict | None:
    """Apply the gate's box decisions (dropping boxes, and erasing their pixels where configured), the
    camera match (with a profile) and the optional augmentation, write the PNG, return its record.

    Recorded maps: `affine` takes the A image to the translated frame (the gate compared the two
    there); `augment_affine` (None without augmentation) takes that frame to the written pixels.
    Every written box is transform_boxes(transform_boxes(A box, affine), augment_affine).
    """
    keep = np.array(res.keep, dtype=bool)
    _add(st, "boxes_dropped_gate", int((~keep).sum()))
    image = as_uint8(job.synthetic)
    boxes, anns = job.boxes[keep], [a for a, k in zip(job.anns, keep) if k]
    if cfg.synth.gate.erase_dropped and not keep.all():
        image = erase_boxes(image, job.boxes[~keep], boxes, cfg.synth.gate.box_margin)
    if camera is not None:
        image = apply_camera(image, camera, seed_of(cfg.runtime.seed, "camera", job.item.key, job.tile))
    vis, box_scores = job.visibility[keep], [s for s, k in zip(res.box_scores, keep) if k]
    seed, aug_map = None, None
    if transform is not None:
        seed = seed_of(cfg.runtime.seed, "augment", job.item.key, job.tile)
        before = boxes
        a = augment(transform, image, boxes, seed)
        _add(st, "aug_boxes_dropped", len(anns) - len(a.kept))
        _add(st, "aug_boxes_clipped", a.clipped)
        image, boxes, aug_map = a.image, a.boxes, a.affine
        # Visibility of each box through both maps: geometry's share times augmentation's share.
        _, aug_vis = geo.transform_boxes(before[a.kept], geo.ImageTransform(aug_map, image.shape[1::-1]))
        anns, vis = [anns[i] for i in a.kept], vis[a.kept] * aug_vis
        box_scores = [box_scores[i] for i in a.kept]
        if not len(a.kept):
            _add(st, "empty", 1)
            return None
    h, w = image.shape[:2]
    file_name = f"{IMAGE_DIR}/{name}"
    sha = write_png(staging / file_name, np.ascontiguousarray(image))
    _add(st, "accepted", 1)
    _add(st, "boxes_kept", len(anns))
    record = ImageRecord(
        id=0, file_name=file_name, width=w, height=h, domain="B", split="train", sha256=sha,
        synthetic=True, source_image_id=job.item.source_id, generator=gen_sha,
        extra={"gate": {k: round(v, 5) for k, v in res.image_scores.items()}, "variant": job.item.variant,
               "tile": job.tile, "affine": job.transform.to_list(), "source_file": job.source_file,
               "augment_seed": seed,
               "augment_affine": None if aug_map is None else geo.ImageTransform(aug_map, (w, h)).to_list()},
    )
    return {
        "image": record.to_dict(),
        "annotations": [
            {"category_id": a.category_id, "bbox": [round(float(v), 3) for v in b],
             "source_annotation_id": a.id, "visibility": round(float(v), 4),
             "gate": {k: (None if s is None else round(s, 5)) for k, s in sc.items()}}
            for a, b, v, sc in zip(anns, boxes, vis, box_scores)
        ],
    }
