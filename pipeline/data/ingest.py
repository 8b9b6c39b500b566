"""The ingest stage: user (or demo) photos + annotations -> one validated, hashed dataset version.

    plan_ingest(cfg)        read annotation files, check paths, hash every image (sources.py),
                            assign splits, compute the version id (cheap: no pixel is decoded)
    validate_shard(shard)   per shard of `data.shard_size` images: decode, normalise, check boxes,
                            write the image into the version being built (run in a thread pool,
                            or as Prefect tasks by flows/ingest.py)
    finalize_ingest(...)    COCO JSON per domain and split, quarantine.jsonl, config.yaml, card,
                            manifest.json

Splits (split.py) come from content hashes; a byte copy of a held-out photo (B val/test/oracle)
found in a training split - among the A photos or in the unlabelled B pool - is dropped with a
quarantine row. A domain given labelled sources that keeps no labelled image (its annotation file
unreadable, every photo broken) is an IngestError listing the reasons, never an empty version.
Identical photos kept in several places are noted ("all copies kept") only among the copies that
pass validation: empty or broken files are no photos. An output root inside an input folder is
an IngestError before anything is written.

`ingest(cfg)` runs the three. The version id is `<data.name>-<key12>` where the key hashes the
data config (less knobs that do not change the output: strict, shard_size, dask), the seed, the
package version and every planned image (content hash, boxes, split): unchanged inputs give the
same id and the stage returns `cached=True` without decoding anything. Raw inputs are only read.
Images are held one at a time per worker, so pixel memory does not grow with the dataset; only
per-image metadata does (about 5 kB an image: bench/ingest.py measured 134 MB peak RSS at 1,000
and 185 MB at 10,000 256-px JPEGs).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline import store
from pipeline.config import RunConfig, output_root_problem
from pipeline.data.coco import Annotation, Category, CocoSet, ImageRecord
from pipeline.data.quarantine import summary_text
from pipeline.data.sources import (
    ImageTask,
    IngestError,
    ReadSource,
    hash_tasks,
    labelled_source_paths,
    merge_categories,
    plan_tasks,
    read_image_bytes,
    read_source,
    skipped_action,
)
from pipeline.data.split import PlacedImage, SplitItem, assign_splits, identical_note, separate_held_out
from pipeline.data.validate import BoxCheck, InputProblem, check_box, load_image, quarantine_row
from pipeline.data.version import DatasetVersion

# Always written (possibly empty) so downstream stages can rely on them.
STANDARD_SPLITS = (("A", "train"), ("B", "train"), ("B", "val"), ("B", "test"))
# Problems (an input left out, a box dropped or changed, an annotation disagreeing with its image)
# and notes (an image kept as it is shown, only its encoding normalised; identical copies kept):
# notes are no problem, so neither --strict nor the quarantine count includes them.
QUARANTINE, NOTES = "quarantine.jsonl", "notes.jsonl"
NORMALISED = "normalised to 8-bit RGB PNG (image kept)"
_KEY_EXCLUDE = {"strict", "shard_size", "dask"}


@dataclass
class IngestResult:
    version: DatasetVersion
    cached: bool
    quarantine: list[dict]  # rows {file, reason, action}: problems (quarantine.jsonl)
    counts: dict  # "<D>_<split>" -> {"images": int, "boxes": int}
    notes: list[dict] = field(default_factory=list)  # kept as they are, with a change noted (notes.jsonl)


@dataclass
class Shard:
    index: int
    tasks: list[ImageTask]
    max_pixels: int
    boxes: BoxCheck
    strict: bool
    min_image_side: int = 1


@dataclass
class ShardResult:
    index: int
    records: list[dict]  # {"key", "file_name", "width", "height", "sha256", "copied", "boxes"}
    rows: list[dict]
    notes: list[dict] = field(default_factory=list)


@dataclass
class IngestPlan:
    cfg: RunConfig
    key: str
    categories: list[str]
    tasks: list[ImageTask]
    rows: list[dict]
    parents: list[dict]
    strict: bool
    # Domain -> path prefixes of its labelled sources: each such domain must keep a labelled image.
    labelled_sources: dict[str, list[str]] = field(default_factory=dict)
    # Task keys of identical photos kept in several places: noted once validation has passed them.
    duplicates: list[list[int]] = field(default_factory=list)

    @property
    def version_dir(self) -> Path:
        return self.cfg.runtime.data_dir / "datasets" / f"{self.cfg.data.name}-{self.key[:12]}"

    @property
    def cached(self) -> bool:
        m = store.read_manifest(self.version_dir)
        return m is not None and m.get("kind") == "dataset"

    def shards(self) -> list[Shard]:
        size = self.cfg.data.shard_size
        check = BoxCheck(self.cfg.data.clip_min_inside, self.cfg.data.min_box_size)
        return [
            Shard(i // size, self.tasks[i : i + size], self.cfg.data.max_pixels, check, self.strict,
                  self.cfg.data.min_image_side)
            for i in range(0, len(self.tasks), size)
        ]

    def result(self, cached: bool) -> IngestResult:
        version = DatasetVersion.open(self.version_dir)
        rows, notes = (_read_rows(self.version_dir / name) for name in (QUARANTINE, NOTES))
        return IngestResult(version, cached, rows, version.manifest["summary"]["counts"], notes)


def _read_rows(path: Path) -> list[dict]:
    if not path.is_file():  # versions made before notes.jsonl existed
        return []
    return [json.loads(ln) for ln in path.read_text(encoding="utf-8").splitlines() if ln]


# ------------------------------------------------------------------------------------------- plan
def plan_ingest(cfg: RunConfig, *, strict: bool | None = None, progress: bool = False) -> IngestPlan:
    """Read every source's annotations, hash its images and assign splits (no pixel decoding).
    With data.source demo the demo photos are rendered first (`progress`: shown on stderr)."""
    strict = cfg.data.strict if strict is None else strict
    problem = output_root_problem(cfg)  # also checked on loading; a config edited in code is not
    if problem:
        raise IngestError(problem)
    rows: list[dict] = []

    def report(row: dict) -> None:
        if strict:
            raise IngestError(f"{row['file']}: {row['reason']} (--strict)")
        rows.append(row)

    parents: list[dict] = []
    a_sources, b_sources, fixed_categories = list(cfg.data.a), list(cfg.data.b), cfg.data.categories
    if cfg.data.source == "demo":
        from pipeline.demo.dataset import demo_dir, render_demo

        demo = render_demo(cfg.data.demo, cfg.runtime.seed, demo_dir(cfg), progress=progress)
        a_sources, b_sources = demo.a, demo.b
        fixed_categories = fixed_categories or demo.categories
        render = json.loads((demo.root / "render.json").read_text(encoding="utf-8"))
        parents.append({"kind": "demo-render", "id": demo.root.name, "files_hash": render.get("key")})
    if not a_sources and not b_sources:
        raise IngestError("data.a and data.b are both empty: nothing to ingest (or use data.source: demo)")

    max_bytes = int(cfg.data.max_annotation_mb * 1e6)
    read = [ReadSource(d, i, src, read_source(d, i, src, report, max_bytes))
            for d, srcs in (("A", a_sources), ("B", b_sources)) for i, src in enumerate(srcs)]
    categories = merge_categories(read, cfg.data.category_map, fixed_categories)
    tasks = plan_tasks(read, categories, cfg.data, report)
    hash_tasks(tasks, cfg.runtime.workers, report)
    tasks = [t for t in tasks if t.sha256]

    b_tasks = [t for t in tasks if t.domain == "B" and not t.split]
    items = [SplitItem(t.sha256, t.explicit, t.from_split_file, t.src) for t in b_tasks]
    splits, split_rows = assign_splits(items, cfg.data.split, cfg.runtime.seed)
    for row in split_rows:
        report(row)
    for t, s in zip(b_tasks, splits):
        t.split = s
    tasks, duplicates = _separate_held_out(tasks, report)
    labelled_sources = labelled_source_paths(read)
    _require_labelled(labelled_sources, Counter(t.domain for t in tasks if _is_labelled(t.split)), rows)
    _name_outputs(tasks)

    key_config = {k: v for k, v in cfg.data.model_dump(mode="json").items() if k not in _KEY_EXCLUDE}
    planned = [(t.domain, t.split, t.label, t.sha256, t.out_stem, t.boxes) for t in tasks]
    key = store.stage_key(
        "ingest", {"data": key_config, "seed": cfg.runtime.seed},
        [*parents, {"files_hash": store.hash_json({"images": planned, "rows": rows, "cats": categories})}],
    )
    return IngestPlan(cfg, key, categories, tasks, rows, parents, strict, labelled_sources, duplicates)


def _is_labelled(split: str) -> bool:
    """A labelled photo the compared arms train or are tested on (the oracle pool is extra)."""
    return split in ("train", "val", "test")


def _separate_held_out(tasks: list[ImageTask], report) -> tuple[list[ImageTask], list[list[int]]]:
    """Drop copies (any domain, any pool) of held-out photos from training splits; returns the
    tasks kept and the keys of each group of identical photos kept in several places."""
    placed = [PlacedImage(t.sha256, t.domain, t.split, t.src) for t in tasks]
    drop, groups = separate_held_out(placed)
    for i, reason in sorted(drop.items()):
        report(quarantine_row(tasks[i].src, reason, skipped_action(len(tasks[i].boxes))))
    return [t for i, t in enumerate(tasks) if i not in drop], [[tasks[i].key for i in g] for g in groups]


def _require_labelled(sources: dict[str, list[str]], kept: Counter, rows: list[dict]) -> None:
    """IngestError when a domain given labelled sources keeps no labelled image (an unreadable
    annotation file, every image broken...): an empty dataset must not pass as a success."""
    for domain, prefixes in sorted(sources.items()):
        if kept[domain]:
            continue
        mine = [r for r in rows if r["file"].startswith(tuple(prefixes))] or rows
        why = f"; quarantine: {summary_text(mine)}" if mine else ""
        raise IngestError(f"no labelled Class {domain} image left from {', '.join(prefixes)}{why}")


# File names are limited to 255 bytes on common file systems; a deep source tree flattened into
# one name can exceed that, and the suffixes (-<key>, .png, YOLO's .txt) need room too.
_MAX_STEM_BYTES = 180


def _name_outputs(tasks: list[ImageTask]) -> None:
    """images/<D>/<split>/<d><source>-<flattened relative path> (without extension), unique.
    Names too long for a file system keep their start and end around a hash of the whole name."""
    used: set[str] = set()
    for t in tasks:
        source, _, rel = t.label.partition(":")
        name = f"{source.lower()}-{os.path.splitext(rel)[0].replace('/', '__')}"
        if len(name.encode("utf-8")) > _MAX_STEM_BYTES:
            digest = store.sha256_bytes(name.encode("utf-8"))[:12]
            head = name.encode("utf-8")[:100].decode("utf-8", "ignore")
            tail = name.encode("utf-8")[-60:].decode("utf-8", "ignore")
            name = f"{head}~{digest}~{tail}"
        stem = f"images/{t.domain}/{t.split}/{name}"
        if stem in used:
            stem = f"{stem}-{t.key}"
        used.add(stem)
        t.out_stem = stem


# --------------------------------------------------------------------------------------- validate
def validate_shard(shard: Shard, build_dir: Path) -> ShardResult:
    """Decode, normalise and box-check each image of the shard and write it under build_dir.

    Permanent problems become quarantine rows (or raise IngestError when strict); a transient
    OSError (I/O error, stale NFS handle) propagates so the caller can retry the shard.
    """
    records: list[dict] = []
    rows: list[dict] = []
    notes: list[dict] = []

    def report(row: dict) -> None:
        if shard.strict:
            raise IngestError(f"{row['file']}: {row['reason']} (--strict)")
        rows.append(row)

    for t in shard.tasks:
        try:
            img = load_image(read_image_bytes(t), shard.max_pixels, shard.min_image_side)
            if img.sha256 != t.sha256:
                raise InputProblem("file changed while ingest was running")
        except InputProblem as p:
            report(quarantine_row(t.src, p.reason, skipped_action(len(t.boxes))))
            continue
        except (FileNotFoundError, PermissionError) as e:
            report(quarantine_row(t.src, f"cannot read: {e.strerror or e}", skipped_action(len(t.boxes))))
            continue
        if img.notes:
            notes.append(quarantine_row(t.src, "; ".join(img.notes), NORMALISED))
        if t.declared != (0, 0) and t.declared != (img.width, img.height):
            said = f"{t.declared[0]}x{t.declared[1]}"
            reason = f"annotation says {said} but the image shows {img.width}x{img.height}"
            report(quarantine_row(t.src, reason, "used the image's size"))
        kept = []
        for cat, bbox, crowd in t.boxes:
            box, reason, action = check_box(bbox, img.width, img.height, shard.boxes)
            if reason:
                report(quarantine_row(t.src, reason, action))
            if box is not None:
                kept.append((cat, box, crowd))
        store.write_bytes(build_dir / (t.out_stem + img.ext), img.data)  # inside the partial version
        records.append({"key": t.key, "file_name": t.out_stem + img.ext, "width": img.width,
                        "height": img.height, "copied": img.copied, "boxes": kept})
    return ShardResult(shard.index, records, rows, notes)


# --------------------------------------------------------------------------------------- finalize
def finalize_ingest(plan: IngestPlan, results: list[ShardResult], build_dir: Path) -> dict[str, Any]:
    """Write annotations, quarantine.jsonl, config.yaml, card and manifest; returns the summary."""
    from pipeline.data.card import write_card
    from pipeline.data.formats import write_yolo_data_yaml, write_yolo_labels

    by_key = {t.key: t for t in plan.tasks}
    records = sorted((r for res in results for r in res.records), key=lambda r: r["key"])
    ordered = sorted(results, key=lambda r: r.index)
    rows = plan.rows + [row for res in ordered for row in res.rows]
    notes = [row for res in ordered for row in res.notes] + _duplicate_notes(plan, {r["key"] for r in records})
    cats = [Category(i + 1, n) for i, n in enumerate(plan.categories)]
    sets: dict[tuple[str, str], CocoSet] = {k: CocoSet(categories=list(cats)) for k in STANDARD_SPLITS}
    for rec in records:
        t = by_key[rec["key"]]
        coco = sets.setdefault((t.domain, t.split), CocoSet(categories=list(cats)))
        image_id = len(coco.images) + 1
        coco.images.append(ImageRecord(image_id, rec["file_name"], rec["width"], rec["height"],
                                       domain=t.domain, split=t.split, sha256=t.sha256,
                                       extra={"original": t.label}))
        for cat, box, crowd in rec["boxes"]:
            coco.annotations.append(Annotation(len(coco.annotations) + 1, image_id, cat,
                                               [round(v, 3) for v in box], crowd))
    # Validation may have lost what planning still had (every image corrupt): fail before writing.
    kept = Counter(d for (d, split), c in sets.items() if _is_labelled(split) for _ in c.images)
    _require_labelled(plan.labelled_sources, kept, rows)
    counts, instances = {}, {}
    for (domain, split), coco in sorted(sets.items()):
        name = f"{domain}_{split}"
        coco.info = {"description": f"{plan.cfg.data.name} {name}", "version": plan.version_dir.name}
        coco.save(build_dir / "annotations" / f"{name}.json")
        if split != "unlabelled":
            write_yolo_labels(coco, build_dir)
        counts[name] = {"images": len(coco.images), "boxes": len(coco.annotations)}
        instances[name] = coco.class_counts()
    write_yolo_data_yaml(build_dir / "data.yaml", plan.categories,
                         {s: f"images/B/{s}" for s in ("train", "val", "test")},
                         f"YOLO layout of {plan.version_dir.name}: real Class B (metal) train/val/test, as "
                         "ultralytics reads it\n(`yolo train data=<this file>`); labels/<D>/<split>/ hold "
                         "every labelled split, images/A/train too.")
    store.atomic_write_text(build_dir / QUARANTINE, "".join(json.dumps(r) + "\n" for r in rows))
    store.atomic_write_text(build_dir / NOTES, "".join(json.dumps(r) + "\n" for r in notes))
    store.atomic_write_text(build_dir / "config.yaml", plan.cfg.to_yaml())
    summary = {
        "categories": plan.categories,
        "counts": counts,
        "instances": instances,
        "quarantined": len(rows),
        "quarantine_actions": dict(Counter(r["action"] for r in rows)),
        "notes": len(notes),
        "note_actions": dict(Counter(r["action"] for r in notes)),
        "normalised": sum(1 for r in records if not r["copied"]),
    }
    write_card(build_dir, plan.cfg.data.name, summary, sets, rows, notes)
    config = {"data": plan.cfg.data.model_dump(mode="json"), "seed": plan.cfg.runtime.seed}
    store.write_manifest(build_dir, kind="dataset", id=plan.version_dir.name, config=config,
                         parents=plan.parents, summary=summary)
    return summary


def _duplicate_notes(plan: IngestPlan, valid: set[int]) -> list[dict]:
    """A row per group of identical photos of which at least two copies passed validation."""
    by_key = {t.key: t for t in plan.tasks}
    notes = []
    for group in plan.duplicates:
        copies = [by_key[k] for k in group if k in valid]
        if len(copies) > 1:
            notes.append(identical_note([PlacedImage(t.sha256, t.domain, t.split, t.src) for t in copies]))
    return notes


@contextlib.contextmanager
def building(plan: IngestPlan) -> Iterator[Path | None]:
    """Lock the datasets folder and yield a temp dir that becomes the version when the block
    succeeds; yields None when the version already exists (another run built it)."""
    datasets = plan.version_dir.parent
    with store.dir_lock(datasets):
        if plan.cached:
            yield None
            return
        with store.atomic_dir(plan.version_dir) as tmp:
            yield tmp


# ------------------------------------------------------------------------------------------- run
def ingest(cfg: RunConfig, *, strict: bool | None = None, progress: bool = True) -> IngestResult:
    """Validated, hashed, split dataset version of cfg.data's sources (see module docstring): the
    ingest stage run here, shards on `runtime.workers` threads (pipeline.stages)."""
    from pipeline.stages import INGEST, run_stage

    return run_stage(INGEST, INGEST.plan(cfg, strict=strict, progress=progress), progress=progress)
