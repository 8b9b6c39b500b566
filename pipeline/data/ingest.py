"""The ingest stage: user (or demo) photos + annotations -> one validated, hashed dataset version.

    plan_ingest(cfg)        read annotation files, check paths, hash every image, assign splits,
                            compute the version id (cheap: no pixel is decoded)
    validate_shard(shard)   per shard of `data.shard_size` images: decode, normalise, check boxes,
                            write the image into the version being built (run in a thread pool,
                            or as Prefect tasks by flows/ingest.py)
    finalize_ingest(...)    COCO JSON per domain and split, quarantine.jsonl, config.yaml, card,
                            manifest.json

`ingest(cfg)` runs the three. The version id is `<data.name>-<key12>` where the key hashes the
data config (less knobs that do not change the output: strict, shard_size, dask), the seed, the
package version and every planned image (content hash, boxes, split): unchanged inputs give the
same id and the stage returns `cached=True` without decoding anything. Raw inputs are only read.
Images are held one at a time per worker, so pixel memory does not grow with the dataset; only
per-image metadata does (about 5 kB an image: bench/ingest.py measured 134 MB peak RSS at 1,000
and 185 MB at 10,000 256-px JPEGs).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline import store
from pipeline.config import RunConfig, SourceConfig
from pipeline.data.coco import Annotation, Category, CocoSet, ImageRecord
from pipeline.data.formats import FormatError, iter_image_files, read_coco, read_labelme, read_yolo
from pipeline.data.split import SplitItem, assign_splits, lookup_split, read_split_file
from pipeline.data.validate import (
    BoxCheck,
    InputProblem,
    check_box,
    load_image,
    quarantine_row,
    safe_image_path,
)
from pipeline.data.version import DatasetVersion

# Always written (possibly empty) so downstream stages can rely on them.
STANDARD_SPLITS = (("A", "train"), ("B", "train"), ("B", "val"), ("B", "test"))
_KEY_EXCLUDE = {"strict", "shard_size", "dask"}


class IngestError(RuntimeError):
    """Fatal ingest problem (bad configuration, category mismatch, or any problem with --strict)."""


@dataclass
class IngestResult:
    version: DatasetVersion
    cached: bool
    quarantine: list[dict]  # rows {file, reason, action}
    counts: dict  # "<D>_<split>" -> {"images": int, "boxes": int}


@dataclass
class ImageTask:
    """One planned image: where it comes from, where it goes, and its boxes (xywh px)."""

    key: int
    domain: str
    split: str
    src: str  # path of the raw file (or of the labelme JSON embedding it); quarantine rows name it
    label: str  # "<domain><source index>:<relative path>", kept as the image's "original"
    out_stem: str  # images/<D>/<split>/<name> without extension, relative to the version
    sha256: str
    labelled: bool
    embedded: bool = False
    declared: tuple[int, int] = (0, 0)
    boxes: list[tuple[int, list[float], int]] = field(default_factory=list)  # (category id, xywh, iscrowd)
    explicit: str | None = None  # split given by the source or a split file
    from_split_file: bool = False  # a split file's "train" means train+val


@dataclass
class Shard:
    index: int
    tasks: list[ImageTask]
    max_pixels: int
    boxes: BoxCheck
    strict: bool


@dataclass
class ShardResult:
    index: int
    records: list[dict]  # {"key", "file_name", "width", "height", "sha256", "copied", "boxes"}
    rows: list[dict]


@dataclass
class IngestPlan:
    cfg: RunConfig
    key: str
    categories: list[str]
    tasks: list[ImageTask]
    rows: list[dict]
    parents: list[dict]
    strict: bool

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
            Shard(i // size, self.tasks[i : i + size], self.cfg.data.max_pixels, check, self.strict)
            for i in range(0, len(self.tasks), size)
        ]

    def result(self, cached: bool) -> IngestResult:
        version = DatasetVersion.open(self.version_dir)
        lines = (self.version_dir / "quarantine.jsonl").read_text(encoding="utf-8").splitlines()
        rows = [json.loads(ln) for ln in lines if ln]
        return IngestResult(version, cached, rows, version.manifest["summary"]["counts"])


# ------------------------------------------------------------------------------------------- plan
def plan_ingest(cfg: RunConfig, *, strict: bool | None = None) -> IngestPlan:
    """Read every source's annotations, hash its images and assign splits (no pixel decoding)."""
    strict = cfg.data.strict if strict is None else strict
    rows: list[dict] = []

    def report(row: dict) -> None:
        if strict:
            raise IngestError(f"{row['file']}: {row['reason']} (--strict)")
        rows.append(row)

    parents: list[dict] = []
    a_sources, b_sources, fixed_categories = list(cfg.data.a), list(cfg.data.b), cfg.data.categories
    if cfg.data.source == "demo":
        from pipeline.data.demo import demo_dir, render_demo

        demo = render_demo(cfg.data.demo, cfg.runtime.seed, demo_dir(cfg))
        a_sources, b_sources = demo.a, demo.b
        fixed_categories = fixed_categories or demo.categories
        render = json.loads((demo.root / "render.json").read_text(encoding="utf-8"))
        parents.append({"kind": "demo-render", "id": demo.root.name, "files_hash": render.get("key")})
    if not a_sources and not b_sources:
        raise IngestError("data.a and data.b are both empty: nothing to ingest (or use data.source: demo)")

    read = [(d, i, s, _read_source(d, i, s, report)) for d, srcs in (("A", a_sources), ("B", b_sources))
            for i, s in enumerate(srcs)]
    categories = _categories(cfg, read, fixed_categories)
    tasks = _tasks(cfg, read, categories, report)
    _hash_tasks(tasks, cfg.runtime.workers, report)
    tasks = [t for t in tasks if t.sha256]

    b_tasks = [t for t in tasks if t.domain == "B" and not t.split]
    items = [SplitItem(t.sha256, t.explicit, t.from_split_file, t.src) for t in b_tasks]
    splits, split_rows = assign_splits(items, cfg.data.split, cfg.runtime.seed)
    for row in split_rows:
        report(row)
    for t, s in zip(b_tasks, splits):
        t.split = s
    _name_outputs(tasks)

    key_config = {k: v for k, v in cfg.data.model_dump(mode="json").items() if k not in _KEY_EXCLUDE}
    planned = [(t.domain, t.split, t.label, t.sha256, t.out_stem, t.boxes) for t in tasks]
    key = store.stage_key(
        "ingest", {"data": key_config, "seed": cfg.runtime.seed},
        [*parents, {"files_hash": store.hash_json({"images": planned, "rows": rows, "cats": categories})}],
    )
    return IngestPlan(cfg, key, categories, tasks, rows, parents, strict)


def _read_source(domain: str, index: int, src: SourceConfig, report) -> CocoSet | None:
    """The source's annotations as a CocoSet (file names relative to src.images); None = skipped."""
    where = f"data.{domain.lower()}[{index}]"
    if not Path(src.images).is_dir():
        raise IngestError(f"{where}.images: folder {src.images} not found")
    if src.format != "none" and src.annotations is None:
        raise IngestError(f"{where}: format {src.format} needs `annotations:` (a file or folder)")
    if src.annotations is not None and not Path(src.annotations).exists():
        # A wrong path is a configuration mistake, not a bad input: fail instead of ingesting nothing.
        raise IngestError(f"{where}.annotations: {src.annotations} not found")
    issues: list[dict] = []
    try:
        if src.format == "none":
            files = iter_image_files(Path(src.images))
            coco = CocoSet(images=[ImageRecord(i + 1, p.relative_to(src.images).as_posix(), 0, 0)
                                   for i, p in enumerate(files)])
        elif src.format == "coco":
            coco = read_coco(src.annotations, issues)
        elif src.format == "yolo":
            coco = read_yolo(src.images, src.annotations, src.names, issues)
        else:
            coco = read_labelme(src.annotations, src.images, issues)
    except FormatError as e:
        report(quarantine_row(src.annotations or src.images, str(e), "source skipped"))
        return None
    for row in issues:
        report(row)
    return coco


def _categories(cfg: RunConfig, read: list, fixed: list[str] | None) -> list[str]:
    """Final category names (ids 1..K): data.categories, else the union in first-seen order."""
    cmap = cfg.data.category_map
    per_domain: dict[str, set[str]] = {"A": set(), "B": set()}
    order: list[str] = []
    for domain, _, src, coco in read:
        if coco is None or src.format == "none":
            continue
        for name in coco.category_names:
            final = cmap.get(name, name)
            per_domain[domain].add(final)
            if final not in order:
                order.append(final)
    if fixed:
        unknown = sorted((per_domain["A"] | per_domain["B"]) - set(fixed))
        if unknown:
            raise IngestError(f"categories {unknown} are not in data.categories {list(fixed)}; "
                              "add them or rename them with data.category_map")
        return list(fixed)
    has_a = any(c is not None and s.format != "none" for d, _, s, c in read if d == "A")
    has_b = any(c is not None and s.format != "none" for d, _, s, c in read if d == "B")
    if has_a and has_b and per_domain["A"] != per_domain["B"]:
        raise IngestError(
            f"Class A and Class B categories differ: A = {sorted(per_domain['A'])}, "
            f"B = {sorted(per_domain['B'])}; "
            "map names with data.category_map or list them in data.categories"
        )
    return order


def _tasks(cfg: RunConfig, read: list, categories: list[str], report) -> list[ImageTask]:
    cmap = cfg.data.category_map
    cat_id = {n: i + 1 for i, n in enumerate(categories)}
    tasks: list[ImageTask] = []
    for domain, index, src, coco in read:
        if coco is None:
            continue
        root = Path(src.images)
        names = {c.id: cmap.get(c.name, c.name) for c in coco.categories}
        try:
            use = src.split_file is not None and cfg.data.split.use_source_split
            split_map = read_split_file(src.split_file) if use else {}
        except ValueError as e:
            raise IngestError(f"data.{domain.lower()}[{index}].split_file: {e}") from None
        by_image = coco.anns_by_image()
        labelled = src.format != "none"
        for im in coco.images:
            label = f"{domain}{index}:{im.file_name}"
            boxes = [(cat_id[names[a.category_id]], list(a.bbox), a.iscrowd) for a in by_image.get(im.id, [])]
            embedded = "image_data_from" in im.extra
            try:
                path = Path(im.extra["image_data_from"]) if embedded else safe_image_path(root, im.file_name)
            except InputProblem as p:
                report(quarantine_row(root / im.file_name, p.reason, _skipped(len(boxes))))
                continue
            if domain == "A":
                split = "train" if labelled and src.split != "unlabelled" else "unlabelled"
                explicit = None
            elif not labelled:
                split, explicit = "unlabelled", None
            else:
                split, explicit = "", src.split or lookup_split(split_map, im.file_name)
            # A split file's "train" means train+val; a source's own `split:` is taken literally.
            tasks.append(ImageTask(len(tasks), domain, split, str(path), label, "", "", labelled, embedded,
                                   (im.width, im.height), boxes, explicit, bool(explicit) and not src.split))
    return tasks


def _skipped(n_boxes: int) -> str:
    return "image skipped" + (f" with its {n_boxes} boxes" if n_boxes else "")


def _hash_tasks(tasks: list[ImageTask], workers: int, report) -> None:
    """Content hash of every planned image (threads: hashlib releases the GIL)."""

    def one(t: ImageTask) -> str | InputProblem:
        try:
            return store.sha256_bytes(_read_bytes(t))
        except InputProblem as p:
            return p
        except (FileNotFoundError, PermissionError, IsADirectoryError) as e:
            return InputProblem(f"cannot read: {e.strerror or e}")

    with ThreadPoolExecutor(max(1, workers)) as pool:
        for t, h in zip(tasks, pool.map(one, tasks)):
            if isinstance(h, InputProblem):
                report(quarantine_row(t.src, h.reason, _skipped(len(t.boxes))))
            else:
                t.sha256 = h


def _read_bytes(t: ImageTask) -> bytes:
    if not t.embedded:
        return Path(t.src).read_bytes()
    try:
        d = json.loads(Path(t.src).read_text(encoding="utf-8"))
        return base64.b64decode(d["imageData"], validate=False)
    except (ValueError, KeyError, TypeError) as e:
        raise InputProblem(f"imageData in {t.src} cannot be decoded: {e}") from None


def _name_outputs(tasks: list[ImageTask]) -> None:
    """images/<D>/<split>/<d><source>-<flattened relative path> (without extension), unique."""
    used: set[str] = set()
    for t in tasks:
        source, _, rel = t.label.partition(":")
        flat = os.path.splitext(rel)[0].replace("/", "__")
        stem = f"images/{t.domain}/{t.split}/{source.lower()}-{flat}"
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

    def report(row: dict) -> None:
        if shard.strict:
            raise IngestError(f"{row['file']}: {row['reason']} (--strict)")
        rows.append(row)

    for t in shard.tasks:
        try:
            img = load_image(_read_bytes(t), shard.max_pixels)
            if img.sha256 != t.sha256:
                raise InputProblem("file changed while ingest was running")
        except InputProblem as p:
            report(quarantine_row(t.src, p.reason, _skipped(len(t.boxes))))
            continue
        except (FileNotFoundError, PermissionError) as e:
            report(quarantine_row(t.src, f"cannot read: {e.strerror or e}", _skipped(len(t.boxes))))
            continue
        if img.notes:
            report(quarantine_row(t.src, "; ".join(img.notes), "normalised to 8-bit RGB PNG (image kept)"))
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
        out = build_dir / (t.out_stem + img.ext)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(img.data)
        records.append({"key": t.key, "file_name": t.out_stem + img.ext, "width": img.width,
                        "height": img.height, "copied": img.copied, "boxes": kept})
    return ShardResult(shard.index, records, rows)


# --------------------------------------------------------------------------------------- finalize
def finalize_ingest(plan: IngestPlan, results: list[ShardResult], build_dir: Path) -> dict[str, Any]:
    """Write annotations, quarantine.jsonl, config.yaml, card and manifest; returns the summary."""
    from pipeline.data.card import write_card

    by_key = {t.key: t for t in plan.tasks}
    records = sorted((r for res in results for r in res.records), key=lambda r: r["key"])
    rows = plan.rows + [row for res in sorted(results, key=lambda r: r.index) for row in res.rows]
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
    counts, instances = {}, {}
    for (domain, split), coco in sorted(sets.items()):
        name = f"{domain}_{split}"
        coco.info = {"description": f"{plan.cfg.data.name} {name}", "version": plan.version_dir.name}
        coco.save(build_dir / "annotations" / f"{name}.json")
        counts[name] = {"images": len(coco.images), "boxes": len(coco.annotations)}
        instances[name] = coco.class_counts()
    store.atomic_write_text(build_dir / "quarantine.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    store.atomic_write_text(build_dir / "config.yaml", plan.cfg.to_yaml())
    summary = {
        "categories": plan.categories,
        "counts": counts,
        "instances": instances,
        "quarantined": len(rows),
        "quarantine_actions": dict(Counter(r["action"] for r in rows)),
        "normalised": sum(1 for r in records if not r["copied"]),
    }
    write_card(build_dir, plan.cfg.data.name, summary, sets, rows)
    config = {"data": plan.cfg.data.model_dump(mode="json"), "seed": plan.cfg.runtime.seed}
    store.write_manifest(build_dir, kind="dataset", id=plan.version_dir.name, config=config,
                         parents=plan.parents, summary=summary)
    return summary


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
    """Validated, hashed, split dataset version of cfg.data's sources (see module docstring)."""
    plan = plan_ingest(cfg, strict=strict)
    if plan.cached:
        return plan.result(cached=True)
    with building(plan) as build_dir:
        if build_dir is None:
            return plan.result(cached=True)
        results = run_shards(plan, build_dir, progress=progress)
        finalize_ingest(plan, results, build_dir)
    return plan.result(cached=False)


def run_shards(plan: IngestPlan, build_dir: Path, *, progress: bool = True) -> list[ShardResult]:
    """validate_shard over all shards in a pool of cfg.runtime.workers threads (0 = inline)."""
    shards = plan.shards()
    workers = plan.cfg.runtime.workers
    bar = _progress(progress, len(plan.tasks), plan.cfg.data.name)
    results = []
    with bar as advance:
        if workers <= 1:
            for s in shards:
                results.append(_with_retries(s, build_dir))
                advance(len(s.tasks))
        else:
            with ThreadPoolExecutor(workers) as pool:
                futures = {pool.submit(_with_retries, s, build_dir): s for s in shards}
                try:
                    for f in as_completed(futures):
                        results.append(f.result())
                        advance(len(futures[f].tasks))
                except BaseException:
                    pool.shutdown(wait=True, cancel_futures=True)
                    raise
    return results


def _with_retries(shard: Shard, build_dir: Path, attempts: int = 3, delay_s: float = 1.0) -> ShardResult:
    """validate_shard, retried on transient I/O errors (what the Prefect flow's task retries do)."""
    for attempt in range(1, attempts + 1):
        try:
            return validate_shard(shard, build_dir)
        except OSError:
            if attempt == attempts:
                raise
            time.sleep(delay_s * attempt)
    raise AssertionError("unreachable")


@contextlib.contextmanager
def _progress(enabled: bool, total: int, name: str):
    if not enabled:
        yield lambda n: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn(f"ingest {name}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  transient=True) as bar:
        task = bar.add_task("images", total=total)
        yield lambda n: bar.advance(task, n)
