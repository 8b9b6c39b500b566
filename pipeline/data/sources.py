"""Sources -> planned images: the first half of planning an ingest (see pipeline/data/ingest.py).

    read_source        one configured source's annotations as a CocoSet (COCO, YOLO, labelme or a
                       plain folder); configuration mistakes raise IngestError, an unreadable
                       annotation file is a quarantine row ("source skipped")
    merge_categories   category names across sources (data.category_map, data.categories)
    plan_tasks         an ImageTask per image whose path stays inside its source's root
    hash_tasks         the content hash of every planned image (no pixel decoding)

`report(row)` receives each quarantine row (or raises, in strict mode). Rows about bad paths
inside annotations name the annotation file (`ann.json#image 7`, the labelme JSON) and quote the
path in the reason.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from pipeline import store
from pipeline.config import DataConfig, SourceConfig
from pipeline.data.coco import CocoSet, ImageRecord
from pipeline.data.formats import (
    DEFAULT_MAX_BYTES,
    FormatError,
    YoloNamesError,
    iter_image_files,
    read_coco,
    read_labelme,
    read_yolo,
)
from pipeline.data.split import lookup_split, read_split_file
from pipeline.data.jsonfile import read_json
from pipeline.data.validate import InputProblem, quarantine_row, safe_image_path, short_repr, utf8_name

Report = Callable[[dict], None]


class IngestError(RuntimeError):
    """Fatal ingest problem: bad configuration, category mismatch, a domain left without labelled
    images, or any problem with --strict."""


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


class ReadSource(NamedTuple):
    """One configured source and its annotations (None: the source could not be read)."""

    domain: str
    index: int
    src: SourceConfig
    coco: CocoSet | None


def read_source(domain: str, index: int, src: SourceConfig, report: Report,
                max_bytes: int = DEFAULT_MAX_BYTES) -> CocoSet | None:
    """The source's annotations as a CocoSet (file names relative to src.images); None = skipped.
    `max_bytes` bounds each annotation file (data.max_annotation_mb)."""
    where = f"data.{domain.lower()}[{index}]"
    if not Path(src.images).is_dir():
        raise IngestError(f"{where}.images: folder {src.images} not found")
    if src.format != "none" and src.annotations is None:
        raise IngestError(f"{where}: format {src.format} needs `annotations:` (a file or folder)")
    if src.annotations is not None and not Path(src.annotations).exists():
        # A wrong path is a configuration mistake, not a bad input: fail instead of ingesting nothing.
        raise IngestError(f"{where}.annotations: {src.annotations} not found")
    if src.format in ("coco", "labelme", "yolo") and src.annotations is not None:
        want_file = src.format == "coco"
        if Path(src.annotations).is_file() != want_file:
            kind = "a COCO JSON file" if want_file else f"a folder of {src.format} files"
            raise IngestError(f"{where}.annotations: {src.annotations} is not {kind} (format: {src.format})")
    issues: list[dict] = []
    try:
        if src.format == "none":
            files = iter_image_files(Path(src.images))
            coco = CocoSet(images=[ImageRecord(i + 1, p.relative_to(src.images).as_posix(), 0, 0)
                                   for i, p in enumerate(files)])
        elif src.format == "coco":
            coco = read_coco(src.annotations, issues, max_bytes)
        elif src.format == "yolo":
            coco = read_yolo(src.images, src.annotations, src.names, issues, max_bytes)
        else:
            coco = read_labelme(src.annotations, src.images, issues, max_bytes)
    except YoloNamesError as e:
        # Without names no box has a class: a configuration mistake, like a wrong path.
        raise IngestError(f"{where}.names: {e}") from None
    except FormatError as e:
        # One unreadable annotation file; the run goes on with the other sources, and fails
        # later (ingest's _require_labelled) if this leaves the domain without labelled images.
        file = str(src.annotations or src.images)
        reason = str(e).removeprefix(f"{file}: ")  # the row names the file already
        report(quarantine_row(file, reason, "source skipped"))
        return None
    for row in issues:
        report(row)
    return coco


def merge_categories(read: list[ReadSource], cmap: dict[str, str], fixed: list[str] | None) -> list[str]:
    """Final category names (ids 1..K): `fixed` (data.categories), else the union of the sources'
    names after `cmap` (data.category_map), in first-seen order. A and B must agree."""
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


def plan_tasks(read: list[ReadSource], categories: list[str], data: DataConfig,
               report: Report) -> list[ImageTask]:
    """An ImageTask per image record whose path is safe (see safe_image_path); splits of labelled
    B are left empty for assign_splits, with any explicit split noted."""
    cmap = data.category_map
    cat_id = {n: i + 1 for i, n in enumerate(categories)}
    tasks: list[ImageTask] = []
    for domain, index, src, coco in read:
        if coco is None:
            continue
        root = Path(src.images)
        names = {c.id: cmap.get(c.name, c.name) for c in coco.categories}
        try:
            use = src.split_file is not None and data.split.use_source_split
            split_map = read_split_file(src.split_file) if use else {}
        except ValueError as e:
            raise IngestError(f"data.{domain.lower()}[{index}].split_file: {e}") from None
        by_image = coco.anns_by_image()
        labelled = src.format != "none"
        for im in coco.images:
            label = f"{domain}{index}:{utf8_name(im.file_name)}"  # output names and JSON are UTF-8
            boxes = [(cat_id[names[a.category_id]], list(a.bbox), a.iscrowd) for a in by_image.get(im.id, [])]
            embedded = "image_data_from" in im.extra
            try:
                path = Path(im.extra["image_data_from"]) if embedded else safe_image_path(root, im.file_name)
                if len(boxes) > data.max_boxes_per_image:
                    raise InputProblem(f"{len(boxes)} boxes on one image, more than data.max_boxes_per_image="
                                       f"{data.max_boxes_per_image}")
            except InputProblem as p:
                # The reason quotes the bad path; the row names the file that holds it.
                report(quarantine_row(_annotation_of(src, im), p.reason, skipped_action(len(boxes))))
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


def _annotation_of(src: SourceConfig, im: ImageRecord) -> str:
    """Where an image record was written: `ann.json#image 7` (COCO), the labelme JSON, or - for
    YOLO and plain folders, whose names come from the folder itself - the image path."""
    if src.format == "coco":
        return f"{src.annotations}#image {im.id}"
    if "annotation_file" in im.extra:  # labelme JSON, YOLO label file
        return str(im.extra["annotation_file"])
    return str(Path(src.images) / im.file_name)


def skipped_action(n_boxes: int) -> str:
    """The quarantine action of an image left out: `image skipped (with its N boxes)`."""
    return "image skipped" + (f" with its {n_boxes} boxes" if n_boxes else "")


def labelled_source_paths(read: list[ReadSource]) -> dict[str, list[str]]:
    """Domain -> path prefixes (images folder, annotations) of its labelled sources."""
    out: dict[str, list[str]] = {}
    for domain, _, src, _ in read:
        if src.format != "none" and src.split != "unlabelled":
            out.setdefault(domain, []).extend(str(p) for p in (src.images, src.annotations) if p is not None)
    return out


def hash_tasks(tasks: list[ImageTask], workers: int, report: Report) -> None:
    """Content hash of every planned image (threads: hashlib releases the GIL); unreadable and
    zero-byte files are quarantined here and keep an empty hash (left out of the plan)."""

    def one(t: ImageTask) -> str | InputProblem:
        try:
            data = read_image_bytes(t)
            if not data:  # never an image; its all-empty hash would group every empty file as copies
                return InputProblem("zero-byte file")
            return store.sha256_bytes(data)
        except InputProblem as p:
            return p
        except (FileNotFoundError, PermissionError, IsADirectoryError) as e:
            return InputProblem(f"cannot read: {e.strerror or e}")

    with ThreadPoolExecutor(max(1, workers)) as pool:
        for t, h in zip(tasks, pool.map(one, tasks)):
            if isinstance(h, InputProblem):
                report(quarantine_row(t.src, h.reason, skipped_action(len(t.boxes))))
            else:
                t.sha256 = h


def read_image_bytes(t: ImageTask) -> bytes:
    """The raw bytes of the task's image (decoded from the labelme JSON when embedded)."""
    if not t.embedded:
        return Path(t.src).read_bytes()
    try:
        d, _ = read_json(t.src, max_bytes=Path(t.src).stat().st_size)  # bounded when it was first read
        return base64.b64decode(d["imageData"], validate=False)
    except (ValueError, KeyError, TypeError) as e:
        raise InputProblem(f"imageData in {t.src} cannot be decoded: {short_repr(str(e), 120)}") from None
