"""Streaming generation of synthetic B images from labelled A images, shard by shard.

A *work item* is (A image, generator, variant). Each item becomes one or more output images
(several when tiling): the A image goes through one affine map (fit → optional variant jitter →
tile crop, see geometry.py), is translated by the injected generator, judged by the gate, then
optionally augmented with albumentations, and written atomically as PNG.

Resumable: every finished item appends one fsync'ed line to `shards/<k>.jsonl` (outputs with
their sha256, rejections, counters); a finished shard gets `shards/<k>.done.json`. On restart an
item is skipped when its journal line exists and every output file still hashes to the recorded
value; torn journal lines are dropped; nothing already written is rewritten. Memory is bounded by
one translate batch, whatever the number of images.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from pipeline.config import RunConfig
from pipeline.data.coco import Annotation, CocoSet, ImageRecord
from pipeline.data.version import DatasetVersion
from pipeline.store import atomic_write_bytes, atomic_write_json, atomic_write_text, sha256_bytes
from pipeline.synth import geometry as geo
from pipeline.synth.augment import augment, build_augment
from pipeline.synth.gate import GateResult, Realism, as_uint8, gate
from pipeline.synth.journal import (
    append_row,
    collect,
    journal_paths,
    outputs_intact,
    read_journal,
    shard_done,
)
from pipeline.synth.plan import WorkItem, plan_items, shard_items, target_fractions

__all__ = ["Generator", "GenerateResult", "ShardSummary", "WorkItem", "collect", "generate", "plan_items",
           "read_journal", "run_shard", "shard_items", "target_fractions"]

Translate = Callable[[list[np.ndarray]], list[np.ndarray]]
IMAGE_DIR = "images/B/train"


@dataclass(frozen=True)
class Generator:
    """An A→B translation: `translate` maps uint8 RGB (H, W, 3) images to same-shape outputs."""

    sha256: str  # of the checkpoint file; recorded on every synthetic image
    translate: Translate
    name: str = ""


@dataclass
class ShardSummary:
    index: int
    items: int = 0
    resumed: int = 0  # items found complete and verified on disk
    outputs: int = 0
    accepted: int = 0
    rejected: int = 0
    empty: int = 0  # outputs with no box left after geometry (not written)
    boxes_in: int = 0
    boxes_kept: int = 0
    boxes_dropped_geometry: int = 0
    boxes_dropped_gate: int = 0
    aug_boxes_clipped: int = 0
    aug_boxes_dropped: int = 0
    # read = decode + geometry; write = augmentation, PNG encode and atomic write
    seconds: dict[str, float] = field(
        default_factory=lambda: {"read": 0.0, "translate": 0.0, "checks": 0.0, "write": 0.0}
    )

    def add(self, other: dict[str, Any]) -> None:
        for k, v in other.items():
            if k == "seconds":
                for s, t in v.items():
                    self.seconds[s] = self.seconds.get(s, 0.0) + t
            elif k not in ("index",):
                setattr(self, k, getattr(self, k) + v)


# ------------------------------------------------------------------------------------- the shard
def _seed(*parts: Any) -> int:
    return int.from_bytes(hashlib.sha256(":".join(map(str, parts)).encode()).digest()[:4], "little")


def output_name(item: WorkItem, gen_sha: str, tile: int, n_tiles: int) -> str:
    t = f"-t{tile}" if n_tiles > 1 else ""
    return f"syn-{item.source_id:06d}-{gen_sha[:8]}-v{item.variant}{t}.png"


def _thumbnail(source: np.ndarray, synthetic: np.ndarray, boxes: np.ndarray, bad: list[int]) -> np.ndarray:
    """Source | synthetic side by side, failing boxes red, others green; height <= 128 px."""
    syn = as_uint8(np.nan_to_num(np.asarray(synthetic, dtype=np.float64), nan=0.0, posinf=255.0, neginf=0.0))
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


def write_png(path: Path, rgb: np.ndarray) -> str:
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise OSError(f"{path}: PNG encoding failed")
    data = buf.tobytes()
    atomic_write_bytes(path, data)
    return sha256_bytes(data)


def run_shard(
    cfg: RunConfig,
    dataset: DatasetVersion,
    a_train: CocoSet,
    generators: list[Generator],
    items: list[WorkItem],
    index: int,
    staging: Path,
    *,
    realism: Realism | None = None,
    n_thumbnails: int | None = None,
) -> ShardSummary:
    """Generate one shard into `staging` (images/, shards/, card/rejected/), resuming if begun."""
    journal, done = journal_paths(staging, index)
    summary = ShardSummary(index)
    if shard_done(staging, index):
        for r in read_journal(journal):
            summary.add(r["stats"])
        summary.resumed = summary.items
        return summary
    journal.parent.mkdir(parents=True, exist_ok=True)
    # Keep only complete, verified lines; a torn tail would corrupt the next append.
    rows = [r for r in read_journal(journal) if outputs_intact(staging, r)]
    atomic_write_text(journal, "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in rows))
    finished = {r["item"] for r in rows}
    for r in rows:
        summary.add(r["stats"])
    summary.resumed = len(rows)

    images = {im.id: im for im in a_train.images}
    anns = a_train.anns_by_image()
    transform = build_augment(cfg) if cfg.synth.augment else None
    n_thumbs = cfg.synth.n_card_examples if n_thumbnails is None else n_thumbnails
    thumbs = len(list((staging / "card" / "rejected").glob(f"{index:05d}-*.png")))
    todo = [it for it in items if it.key not in finished]
    batch = max(1, cfg.gan.translate_batch)
    with open(journal, "a", encoding="utf-8") as jf:
        for start in range(0, len(todo), batch):
            chunk = todo[start : start + batch]
            # Geometry for every output of the chunk; pixels of one batch only live in memory.
            jobs: list[dict[str, Any]] = []
            t0 = time.perf_counter()
            cache: dict[int, np.ndarray] = {}
            per_item: dict[str, dict[str, Any]] = {
                it.key: {"item": it.key, "outputs": [], "rejections": [], "stats": {"items": 1}}
                for it in chunk
            }
            for it in chunk:
                rec = images[it.source_id]
                try:
                    if it.source_id not in cache:
                        cache = {it.source_id: dataset.read_rgb(rec)}
                except Exception as e:  # one unreadable source never stops the run
                    per_item[it.key]["rejections"].append(
                        {"image": None, "source_image_id": it.source_id, "source_file": rec.file_name,
                         "generator": generators[it.generator].sha256, "variant": it.variant,
                         "thumbnail": None,
                         "check": "unreadable_source", "score": None, "threshold": None, "box": None,
                         "action": "reject_image", "error": str(e)}
                    )
                    continue
                jobs.extend(_geometry_jobs(cfg, it, rec, cache[it.source_id], anns.get(rec.id, [])))
            t1 = time.perf_counter()
            by_gen: dict[int, list[int]] = {}
            for j, job in enumerate(jobs):
                if job["boxes"].size:
                    by_gen.setdefault(job["item"].generator, []).append(j)
            for g, idx in by_gen.items():
                outs = generators[g].translate([jobs[j]["source"] for j in idx])
                if len(outs) != len(idx):
                    raise RuntimeError(
                        f"generator {generators[g].name or g} returned {len(outs)} images for {len(idx)}"
                    )
                for j, out in zip(idx, outs):
                    jobs[j]["synthetic"] = out
            t2 = time.perf_counter()
            t_checks = t_write = 0.0
            for job in jobs:
                row, gen = per_item[job["item"].key], generators[job["item"].generator]
                st = row["stats"]
                st["boxes_in"] = st.get("boxes_in", 0) + job["n_boxes_in"]
                lost = job["n_boxes_in"] - len(job["boxes"])
                st["boxes_dropped_geometry"] = st.get("boxes_dropped_geometry", 0) + lost
                if not job["boxes"].size:
                    st["empty"] = st.get("empty", 0) + 1
                    continue
                st["outputs"] = st.get("outputs", 0) + 1
                tc = time.perf_counter()
                if np.shape(job["synthetic"])[:2] != job["source"].shape[:2]:
                    res = GateResult(False, [False] * len(job["boxes"]), {}, [], [
                        {"check": "shape", "score": None, "threshold": None, "box": None,
                         "action": "reject_image",
                         "error": f"output {np.shape(job['synthetic'])} vs input {job['source'].shape}"}])
                else:
                    res = gate(job["source"], job["synthetic"], job["boxes"], cfg.synth.gate, realism=realism)
                t_checks += time.perf_counter() - tc
                tw = time.perf_counter()
                name = output_name(job["item"], gen.sha256, job["tile"], job["n_tiles"])
                if res.rejections:
                    thumb = None
                    same_shape = np.shape(job["synthetic"])[:2] == job["source"].shape[:2]
                    if same_shape and thumbs < n_thumbs and (not res.accepted or thumbs < n_thumbs // 2):
                        thumb = f"card/rejected/{index:05d}-{Path(name).stem}.png"
                        bad = [r["box"] for r in res.rejections if r["box"] is not None]
                        pic = _thumbnail(job["source"], job["synthetic"], job["boxes"], bad)
                        write_png(staging / thumb, pic)
                        thumbs += 1
                    for r in res.rejections:
                        row["rejections"].append(
                            {"image": name, "source_image_id": job["item"].source_id,
                             "source_file": job["source_file"],
                             "generator": gen.sha256, "variant": job["item"].variant, "thumbnail": thumb, **r}
                        )
                if not res.accepted:
                    st["rejected"] = st.get("rejected", 0) + 1
                    t_write += time.perf_counter() - tw
                    continue
                out = _finish_output(cfg, transform, job, res, name, gen, staging, st)
                t_write += time.perf_counter() - tw
                if out is not None:
                    row["outputs"].append(out)
            t3 = time.perf_counter()
            # Time split of the chunk goes to its first item (only totals are ever reported).
            first = per_item[chunk[0].key]["stats"]
            rest = t3 - t2 - t_checks  # everything after translation that is not a check
            first["seconds"] = {"read": t1 - t0, "translate": t2 - t1, "checks": t_checks, "write": rest}
            for it in chunk:
                append_row(jf, per_item[it.key])
                summary.add(per_item[it.key]["stats"])
    atomic_write_json(done, {"shard": index, "items": len(items)})
    return summary


def _geometry_jobs(
    cfg: RunConfig, it: WorkItem, rec: ImageRecord, rgb: np.ndarray, anns: list[Annotation]
) -> list[dict[str, Any]]:
    """One job per output image of a work item: the warped source and its transferred boxes."""
    h, w = rgb.shape[:2]
    base = geo.fit_transform(w, h, cfg.synth.image_size, cfg.synth.fit)
    if it.variant > 0:
        rng = np.random.default_rng(_seed(cfg.runtime.seed, it.key))
        base = geo.jitter_transform(base, cfg.synth.jitter, rng)
    tiles = geo.tile_transforms(base, cfg.synth.tile, cfg.synth.tile_overlap)
    src_boxes = np.array([a.bbox for a in anns], dtype=np.float64).reshape(-1, 4)
    jobs = []
    for k, t in enumerate(tiles):
        boxes, vis = geo.transform_boxes(src_boxes, t)
        ok = (vis >= cfg.synth.min_visibility) & (boxes[:, 2] * boxes[:, 3] >= max(cfg.synth.min_area, 1e-6))
        jobs.append({
            "item": it, "tile": k, "n_tiles": len(tiles), "transform": t, "source_file": rec.file_name,
            "source": geo.warp_image(rgb, t, border_value=(cfg.synth.pad_value,) * 3),
            "boxes": boxes[ok], "visibility": vis[ok], "anns": [a for a, keep in zip(anns, ok) if keep],
            "n_boxes_in": len(anns),
        })
    return jobs


def _finish_output(
    cfg, transform, job, res: GateResult, name: str, gen: Generator, staging: Path, st: dict
) -> dict | None:
    """Apply the gate's box decisions and optional augmentation, write the PNG, return its record."""
    keep = np.array(res.keep, dtype=bool)
    st["boxes_dropped_gate"] = st.get("boxes_dropped_gate", 0) + int((~keep).sum())
    image = as_uint8(job["synthetic"])
    boxes, anns = job["boxes"][keep], [a for a, k in zip(job["anns"], keep) if k]
    vis, box_scores = job["visibility"][keep], [s for s, k in zip(res.box_scores, keep) if k]
    seed = None
    if transform is not None:
        seed = _seed(cfg.runtime.seed, "augment", job["item"].key, job["tile"])
        image, boxes, kept, clipped = augment(transform, image, boxes, seed)
        st["aug_boxes_dropped"] = st.get("aug_boxes_dropped", 0) + len(anns) - len(kept)
        st["aug_boxes_clipped"] = st.get("aug_boxes_clipped", 0) + clipped
        anns, vis, box_scores = [anns[i] for i in kept], vis[kept], [box_scores[i] for i in kept]
        if not len(kept):
            st["empty"] = st.get("empty", 0) + 1
            return None
    h, w = image.shape[:2]
    file_name = f"{IMAGE_DIR}/{name}"
    sha = write_png(staging / file_name, np.ascontiguousarray(image))
    st["accepted"] = st.get("accepted", 0) + 1
    st["boxes_kept"] = st.get("boxes_kept", 0) + len(anns)
    record = ImageRecord(
        id=0, file_name=file_name, width=w, height=h, domain="B", split="train", sha256=sha,
        synthetic=True, source_image_id=job["item"].source_id, generator=gen.sha256,
        extra={"gate": {k: round(v, 5) for k, v in res.image_scores.items()}, "variant": job["item"].variant,
               "tile": job["tile"], "affine": job["transform"].to_list(), "source_file": job["source_file"],
               "augment_seed": seed},
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


# ------------------------------------------------------------------------------------ the driver
@dataclass
class GenerateResult:
    out_dir: Path
    items: int
    shards: list[ShardSummary]
    balance: dict[str, Any]

    def totals(self) -> ShardSummary:
        t = ShardSummary(-1)
        for s in self.shards:
            t.add({k: v for k, v in s.__dict__.items() if k != "index"})
        return t


def generate(
    cfg: RunConfig,
    dataset: DatasetVersion,
    generators: list[Generator],
    out_dir: Path,
    *,
    realism: Realism | None = None,
    shards: Iterable[int] | None = None,
    progress: bool = True,
) -> GenerateResult:
    """Translate every labelled A_train image with every generator into `out_dir` (resumable).

    Returns per-shard counters; `collect(out_dir)` reads the written records back.
    """
    if not generators:
        raise ValueError("generate: no generator given")
    a_train = dataset.coco("A", "train")
    real_counts = dataset.coco("B", "train").class_counts() if dataset.has("B", "train") else {}
    items, balance = plan_items(cfg, a_train, real_counts, len(generators))
    chunks = shard_items(items, cfg.synth.shard_size)
    wanted = range(len(chunks)) if shards is None else list(shards)
    results = []
    from rich.progress import Progress

    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task("synthesize", total=len(wanted))
        for k in wanted:
            results.append(
                run_shard(cfg, dataset, a_train, generators, chunks[k], k, out_dir, realism=realism)
            )
            bar.advance(task)
    return GenerateResult(out_dir, len(items), results, balance)
