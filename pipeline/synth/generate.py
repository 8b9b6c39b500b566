"""Streaming generation of synthetic B images from labelled A images, shard by shard.

A *work item* is (A image, generator, variant). Each item becomes one or more output images
(several when tiling): the A image goes through one affine map (fit → optional variant jitter →
tile crop, see geometry.py), is translated by the injected generator, judged by the gate, then
optionally augmented with albumentations, and written atomically as PNG (outputs.py).

Resumable: every finished item appends one line to `shards/<k>.jsonl` (outputs with their
sha256, rejections, counters) right after its images are written (flushed at once, fsync'ed once
per batch); a finished shard gets
`shards/<k>.done.json`. On restart an item is skipped when its journal line exists and every
output file still hashes to the recorded value; torn journal lines are dropped. An image written
just before a kill, whose line never made it, is recomputed and kept when its bytes are the same
(nothing already written is rewritten). Memory is bounded by two translate batches (the one being
checked and written, and the next one, translated meanwhile when `synth.prefetch` is on).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.config import RunConfig
from pipeline.data.coco import CocoSet
from pipeline.data.version import DatasetVersion
from pipeline.store import atomic_write_json, atomic_write_text
from pipeline.synth.augment import build_augment
from pipeline.synth.camera import CameraProfile
from pipeline.synth.gate import GateResult, Realism, gate
from pipeline.synth.journal import (
    append_row,
    collect,
    journal_paths,
    outputs_intact,
    read_journal,
    shard_done,
)
from pipeline.synth.outputs import Job, finish_output, geometry_jobs, output_name, thumbnail, write_png
from pipeline.synth.plan import WorkItem, plan_items, shard_items, target_fractions

__all__ = ["GenerateResult", "Generator", "ShardSummary", "WorkItem", "collect", "generate", "output_name",
           "plan_items", "read_journal", "run_shard", "shard_items", "target_fractions", "write_png"]

Translate = Callable[[list[np.ndarray]], list[np.ndarray]]
TranslateChecked = Callable[[list[np.ndarray]], tuple[list[np.ndarray], list[int]]]


@dataclass(frozen=True)
class Generator:
    """An A→B translation: `translate` maps uint8 RGB (H, W, 3) images to same-shape outputs.

    translate_checked (optional) also returns, per image, the number of non-finite values the
    network produced before its uint8 cast (the gate's NaN/inf check needs them: a uint8 image
    cannot hold a NaN).
    """

    sha256: str  # of the checkpoint file; recorded on every synthetic image
    translate: Translate
    name: str = ""
    translate_checked: TranslateChecked | None = None

    def run(self, images: list[np.ndarray]) -> tuple[list[np.ndarray], list[int]]:
        if self.translate_checked is not None:
            outs, bad = self.translate_checked(images)
        else:
            outs = self.translate(images)
            bad = [0] * len(outs)
        if len(outs) != len(images) or len(bad) != len(images):
            raise RuntimeError(f"generator {self.name or self.sha256[:12]} returned {len(outs)} images "
                               f"({len(bad)} counts) for {len(images)}")
        return list(outs), [int(b) for b in bad]


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
    # read = decode + geometry; write = thumbnails, augmentation, PNG encode and atomic write;
    # journal = the journal appends (flush per item, fsync per batch). With prefetch, read and
    # translate of the next batch run while this one is checked and written, so the parts can sum
    # to more than the wall time.
    seconds: dict[str, float] = field(
        default_factory=lambda: {"read": 0.0, "translate": 0.0, "checks": 0.0, "write": 0.0, "journal": 0.0}
    )

    def add(self, other: dict[str, Any]) -> None:
        for k, v in other.items():
            if k == "seconds":
                for s, t in v.items():
                    self.seconds[s] = self.seconds.get(s, 0.0) + t
            elif k not in ("index",):
                setattr(self, k, getattr(self, k) + v)


# ------------------------------------------------------------------------------------- the shard
@dataclass
class _Chunk:
    """One translate batch of work items, read, warped and translated."""

    jobs: dict[str, list[Job]]  # per item key, in output order
    rows: dict[str, dict[str, Any]]  # per item key: its journal row so far
    read_s: float
    translate_s: float


class _Shard:
    """What one shard run needs: inputs, generators, gate settings and the thumbnail budget."""

    def __init__(self, cfg: RunConfig, dataset: DatasetVersion, a_train: CocoSet, generators: list[Generator],
                 staging: Path, index: int, realism: Realism | None, n_thumbs: int, thumbs: int,
                 camera: CameraProfile | None = None):
        self.cfg, self.dataset, self.generators, self.camera = cfg, dataset, generators, camera
        self.staging, self.index = staging, index
        self.realism, self.n_thumbs, self.thumbs = realism, n_thumbs, thumbs
        self.images = {im.id: im for im in a_train.images}
        self.anns = a_train.anns_by_image()
        self.transform = build_augment(cfg) if cfg.synth.augment else None

    def prepare(self, chunk: list[WorkItem]) -> _Chunk:
        """Decode, warp and translate a batch (safe to run in a prefetch thread)."""
        t0 = time.perf_counter()
        rows = {it.key: {"item": it.key, "outputs": [], "rejections": [], "stats": {"items": 1}}
                for it in chunk}
        jobs: dict[str, list[Job]] = {it.key: [] for it in chunk}
        cache: dict[int, np.ndarray] = {}
        for it in chunk:
            rec = self.images[it.source_id]
            try:
                if it.source_id not in cache:
                    cache = {it.source_id: self.dataset.read_rgb(rec)}
            except Exception as e:  # one unreadable source never stops the run
                rows[it.key]["rejections"].append(
                    {"image": None, "source_image_id": it.source_id, "source_file": rec.file_name,
                     "generator": self.generators[it.generator].sha256, "variant": it.variant,
                     "thumbnail": None,
                     "check": "unreadable_source", "score": None, "threshold": None, "box": None,
                     "action": "reject_image", "error": str(e)})
                continue
            jobs[it.key] = geometry_jobs(self.cfg, it, rec, cache[it.source_id], self.anns.get(rec.id, []))
        t1 = time.perf_counter()
        by_gen: dict[int, list[Job]] = {}
        for item_jobs in jobs.values():
            for job in item_jobs:
                if job.boxes.size:
                    by_gen.setdefault(job.item.generator, []).append(job)
        for g, batch in by_gen.items():
            outs, bad = self.generators[g].run([j.source for j in batch])
            for job, out, n_bad in zip(batch, outs, bad):
                job.synthetic, job.nonfinite = out, n_bad
        return _Chunk(jobs, rows, t1 - t0, time.perf_counter() - t1)

    def judge(self, job: Job, row: dict[str, Any]) -> float:
        """Gate one output, write it (or its rejection) into `row`; returns the seconds in checks."""
        st = row["stats"]
        st["boxes_in"] = st.get("boxes_in", 0) + job.n_boxes_in
        st["boxes_dropped_geometry"] = st.get("boxes_dropped_geometry", 0) + job.n_boxes_in - len(job.boxes)
        if not job.boxes.size:
            st["empty"] = st.get("empty", 0) + 1
            return 0.0
        st["outputs"] = st.get("outputs", 0) + 1
        gen = self.generators[job.item.generator]
        tc = time.perf_counter()
        same_shape = np.shape(job.synthetic)[:2] == job.source.shape[:2]
        if not same_shape:
            res = GateResult(False, [False] * len(job.boxes), {}, [], [
                {"check": "shape", "score": None, "threshold": None, "box": None, "action": "reject_image",
                 "error": f"output {np.shape(job.synthetic)} vs input {job.source.shape}"}])
        else:
            res = gate(job.source, job.synthetic, job.boxes, self.cfg.synth.gate, realism=self.realism,
                       nonfinite=job.nonfinite)
        checks = time.perf_counter() - tc
        name = output_name(job.item, gen.sha256, job.tile, job.n_tiles)
        if res.rejections:
            thumb = None
            # Half the budget is kept for rejected images; dropped boxes alone fill the rest.
            room = self.thumbs < self.n_thumbs and (not res.accepted or self.thumbs < self.n_thumbs // 2)
            if same_shape and room:
                thumb = f"card/rejected/{self.index:05d}-{Path(name).stem}.png"
                bad = [r["box"] for r in res.rejections if r["box"] is not None]
                write_png(self.staging / thumb, thumbnail(job.source, job.synthetic, job.boxes, bad))
                self.thumbs += 1
            for r in res.rejections:
                row["rejections"].append(
                    {"image": name, "source_image_id": job.item.source_id, "source_file": job.source_file,
                     "generator": gen.sha256, "variant": job.item.variant, "thumbnail": thumb, **r})
        if not res.accepted:
            st["rejected"] = st.get("rejected", 0) + 1
            return checks
        out = finish_output(self.cfg, self.transform, job, res, name, gen.sha256, self.staging, st,
                            self.camera)
        if out is not None:
            row["outputs"].append(out)
        return checks


def _thumbnails_in(rows: list[dict[str, Any]]) -> int:
    return len({r["thumbnail"] for row in rows for r in row["rejections"] if r.get("thumbnail")})


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
    camera: CameraProfile | None = None,
    n_thumbnails: int | None = None,
    on_items: Callable[[int], None] | None = None,
) -> ShardSummary:
    """Generate one shard into `staging` (images/, shards/, card/rejected/), resuming if begun.

    on_items(n) is called as work items finish (resumed ones included), e.g. a progress bar.
    """
    journal, done = journal_paths(staging, index)
    summary = ShardSummary(index)
    tick = on_items or (lambda n: None)
    if shard_done(staging, index):
        for r in read_journal(journal):
            summary.add(r["stats"])
        summary.resumed = summary.items
        tick(summary.items)
        return summary
    journal.parent.mkdir(parents=True, exist_ok=True)
    # Keep only complete, verified lines; a torn tail would corrupt the next append.
    rows = [r for r in read_journal(journal) if outputs_intact(staging, r)]
    atomic_write_text(journal, "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in rows))
    finished = {r["item"] for r in rows}
    for r in rows:
        summary.add(r["stats"])
    summary.resumed = len(rows)
    tick(len(rows))

    n_thumbs = cfg.synth.n_card_examples if n_thumbnails is None else n_thumbnails
    # The budget counts thumbnails of kept rows only, so a resumed shard picks the same ones.
    shard = _Shard(cfg, dataset, a_train, generators, staging, index, realism, n_thumbs, _thumbnails_in(rows),
                   camera)
    todo = [it for it in items if it.key not in finished]
    from pipeline.gan.accel import translation_batch

    batch = translation_batch(cfg.gan.translate_batch, cfg.runtime.device)  # items per translation call
    chunks = [todo[s : s + batch] for s in range(0, len(todo), batch)]
    pool = ThreadPoolExecutor(1, thread_name_prefix=f"synth-prefetch-{index}") \
        if cfg.synth.prefetch and len(chunks) > 1 else None
    try:
        with open(journal, "a", encoding="utf-8") as jf:
            ahead: Future | None = None
            for k, chunk in enumerate(chunks):
                cur = ahead.result() if ahead is not None else shard.prepare(chunk)
                ahead = pool.submit(shard.prepare, chunks[k + 1]) if pool and k + 1 < len(chunks) else None
                for n, it in enumerate(chunk):
                    row = cur.rows[it.key]
                    t0 = time.perf_counter()
                    checks = sum(shard.judge(job, row) for job in cur.jobs[it.key])
                    sec = {"checks": checks, "write": time.perf_counter() - t0 - checks}
                    if n == 0:  # the batch's read and translate time goes to its first item
                        sec.update(read=cur.read_s, translate=cur.translate_s)
                    row["stats"]["seconds"] = sec
                    tj = time.perf_counter()
                    # Right after the item's images: a kill loses at most this item's line.
                    append_row(jf, row, sync=n == len(chunk) - 1)
                    summary.seconds["journal"] += time.perf_counter() - tj
                    summary.add(row["stats"])
                    tick(1)
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
    atomic_write_json(done, {"shard": index, "items": len(items)})
    return summary


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
    from pipeline.progress import stage_progress

    if not generators:
        raise ValueError("generate: no generator given")
    shas = [g.sha256 for g in generators]
    if len(set(shas)) < len(shas):
        dup = next(s for s in shas if shas.count(s) > 1)
        raise ValueError(f"generate: the same generator (sha256 {dup[:12]}) is listed twice; "
                         "its outputs would overwrite each other")
    a_train = dataset.coco("A", "train")
    real_counts = dataset.coco("B", "train").class_counts() if dataset.has("B", "train") else {}
    items, balance = plan_items(cfg, a_train, real_counts, len(generators))
    chunks = shard_items(items, cfg.synth.shard_size)
    wanted = range(len(chunks)) if shards is None else list(shards)
    results = []
    with stage_progress("synthesize", total=sum(len(chunks[k]) for k in wanted), unit="item",
                        enabled=progress) as bar:
        for k in wanted:
            results.append(run_shard(cfg, dataset, a_train, generators, chunks[k], k, out_dir,
                                     realism=realism, on_items=bar.advance))
    return GenerateResult(out_dir, len(items), results, balance)
