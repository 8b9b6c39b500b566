"""Readers and writers for the annotation formats users bring: COCO JSON, YOLO txt and labelme JSON.

Every reader returns a `CocoSet` (boxes xywh, absolute pixels) whose `file_name`s are relative to
the image folder *as written in the annotations* - ingest checks them (absolute, `..`, symlinks)
before reading any file. Categories keep the source's names with ids 1..K in source order; ingest
maps names across sources.

Readers take an optional `issues` list. Given one, a problem (duplicate image id, unknown
category id, annotation without image, malformed line...) is appended as a quarantine row
`{file, reason, action}` and reading goes on; without one, the first problem raises
`FormatError`. A file that cannot be parsed at all always raises `FormatError`.

Files found by walking a folder (labelme JSON, YOLO txt) are as untrusted as the paths inside
them: one that resolves outside its folder (a symlink) is refused with a row, its image left out.
The COCO file named in the config is trusted.

Writers: `write_coco` (pycocotools-loadable JSON), `write_yolo` (ultralytics layout, images
linked), `write_yolo_labels` (label files beside an existing images/ tree) with
`write_yolo_data_yaml`, and `write_labelme` (rectangles, imageData null).
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from pipeline.data.coco import Annotation, Category, CocoSet, ImageRecord
from pipeline.data.jsonfile import DEFAULT_MAX_BYTES, JsonFileError, read_json
from pipeline.data.validate import (
    IMAGE_EXTS,
    display_size,
    has_control_chars,
    inside_root,
    quarantine_row,
    short_repr,
    utf8_name,
)
from pipeline.store import atomic_write_json, atomic_write_text


class FormatError(ValueError):
    """An annotation file cannot be read; the message names the file and the problem."""


class YoloNamesError(FormatError):
    """No YOLO class names were given or found (a configuration mistake, not a bad file)."""


# Ids and indices beyond int64 break pycocotools and numpy; no real export has them.
_MAX_ID = 2**63 - 1


def _problem(issues: list[dict] | None, file: str | Path, reason: str, action: str) -> None:
    if issues is None:
        raise FormatError(f"{file}: {reason}")
    issues.append(quarantine_row(file, reason, action))


def _load_json(path: Path, max_bytes: int = DEFAULT_MAX_BYTES, issues: list[dict] | None = None) -> Any:
    """The parsed file (see jsonfile.read_json); keys given twice in one object become a row."""
    try:
        value, duplicates = read_json(path, max_bytes)
    except JsonFileError as e:
        raise FormatError(str(e)) from None
    if duplicates:
        keys = ", ".join(repr(k) for k in duplicates[:5]) + (" ..." if len(duplicates) > 5 else "")
        _problem(issues, path, f"key {keys} given twice in one object", "last value used (as JSON readers do)")
    return value


def _number(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValueError(v)
    return float(v)


def _whole(v: Any, what: str) -> int:
    """An integer field (an id, a class index): ints, or floats without a fraction (3.0); anything
    else (strings, 1.5, NaN, inf, beyond int64) raises ValueError saying what it is."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValueError(f"{what} {_short(v)} is not a number" if v is not None else f"no {what}")
    if isinstance(v, float) and not math.isfinite(v):
        raise ValueError(f"{what} {v!r} is not finite")
    if isinstance(v, float) and not v.is_integer():
        raise ValueError(f"{what} {v!r} is not a whole number")
    if abs(v) > _MAX_ID:
        raise ValueError(f"{what} {_short(v)} is too large")
    return int(v)


def _declared_size(width: Any, height: Any) -> tuple[tuple[int, int], str | None]:
    """((width, height), problem) of an annotation's declared image size; (0, 0) means unknown
    (missing, or not a positive whole number: the problem says which)."""
    if width is None and height is None:
        return (0, 0), None
    try:
        w, h = _whole(width, "declared width"), _whole(height, "declared height")
        if w <= 0 or h <= 0:
            raise ValueError(f"declared size {w}x{h} is empty")
    except ValueError as e:
        return (0, 0), str(e)
    return (w, h), None


def _text_problem(v: Any, what: str) -> str | None:
    """Why `v` is no usable name (category, label); None when it is one."""
    if not isinstance(v, str):
        return f"{what} {_short(v)} is {type(v).__name__}, not text"
    if not v.strip():
        return f"empty {what}"
    if has_control_chars(v):
        return f"{what} {utf8_name(v)!r} contains control characters"
    return None


# ------------------------------------------------------------------------------------------- COCO
def read_coco(path: str | Path, issues: list[dict] | None = None,
              max_bytes: int = DEFAULT_MAX_BYTES) -> CocoSet:
    """COCO detection JSON -> CocoSet. Images keep `file_name` as written; declared sizes kept.

    Every field is checked for its type: ids must be whole numbers (not 1.5, NaN, inf or text),
    declared sizes positive whole numbers, iscrowd 0 or 1, names text without control characters.
    """
    path = Path(path)
    d = _load_json(path, max_bytes, issues)
    if not isinstance(d, dict) or not isinstance(d.get("images"), list):
        raise FormatError(f"{path}: not a COCO file (no 'images' list)")
    for key in ("annotations", "categories"):
        if d.get(key) is not None and not isinstance(d[key], list):
            raise FormatError(f"{path}: not a COCO file ('{key}' is {type(d[key]).__name__}, not a list)")
    cats: list[Category] = []
    seen_cat: set[int] = set()
    for c in d.get("categories") or []:
        try:
            if not isinstance(c, dict):
                raise ValueError(f"category {_short(c)} is not an object")
            cid = _whole(c.get("id"), "category id")
            problem = _text_problem(c.get("name"), "category name")
            if problem:
                raise ValueError(problem)
        except ValueError as e:
            _problem(issues, path, str(e), "category ignored")
            continue
        if cid in seen_cat:
            _problem(issues, path, f"duplicate category id {cid}", "later category ignored")
            continue
        seen_cat.add(cid)
        cats.append(Category(cid, c["name"]))
    # Source ids are renumbered 1..K in source order so every reader hands ingest the same form.
    remap = {c.id: i + 1 for i, c in enumerate(cats)}
    categories = [Category(remap[c.id], c.name) for c in cats]

    images: list[ImageRecord] = []
    by_id: dict[int, ImageRecord] = {}
    by_name: dict[str, int] = {}
    for k, im in enumerate(d["images"]):
        # Rows name the image's file_name where it has one, else its place in the list.
        named = isinstance(im, dict) and isinstance(im.get("file_name"), str) and im["file_name"]
        try:
            if not isinstance(im, dict):
                raise ValueError(f"image entry {_short(im)} is not an object")
            iid = _whole(im.get("id"), "image id")
            name = im.get("file_name")
            if not isinstance(name, str) or not name:
                raise ValueError(f"image entry {_short(im)} lacks a file_name")
        except ValueError as e:
            _problem(issues, f"{path}#{im['file_name']}" if named else f"{path}#images[{k}]", str(e), "image skipped")
            continue
        if iid in by_id:
            _problem(issues, f"{path}#{name}", f"duplicate image id {iid} (also {by_id[iid].file_name!r})",
                     "image skipped (first kept)")
            continue
        if name in by_name:
            _problem(issues, f"{path}#{name}", f"duplicate file name (image ids {by_name[name]} and {iid})",
                     "image skipped (first kept)")
            continue
        size, problem = _declared_size(im.get("width"), im.get("height"))
        if problem:
            _problem(issues, f"{path}#{name}", problem, "declared size ignored (the image's own is used)")
        rec = ImageRecord(iid, name, *size)
        by_id[iid], by_name[name] = rec, iid
        images.append(rec)

    anns: list[Annotation] = []
    seen_ann: set[Any] = set()
    for k, a in enumerate(d.get("annotations") or []):
        if not isinstance(a, dict):
            _problem(issues, f"{path}#annotations[{k}]", f"annotation {_short(a)} is not an object",
                     "annotation dropped")
            continue
        aid = a.get("id", "?")
        where = f"{path}#annotation {_short(aid)}"
        if aid != "?" and _hashable(aid) in seen_ann:
            # Ids are renumbered on reading, so both boxes can stay; the row says the file is odd.
            _problem(issues, where, f"duplicate annotation id {_short(aid)}", "annotation kept (renumbered)")
        seen_ann.add(_hashable(aid))
        try:
            image_id = _whole(a.get("image_id"), "image_id")
            cat = _whole(a.get("category_id"), "category_id")
        except ValueError as e:
            _problem(issues, where, f"annotation lacks a usable image_id or category_id: {e}", "annotation dropped")
            continue
        if image_id not in by_id:
            _problem(issues, where, f"points to missing image id {image_id}", "annotation dropped")
            continue
        where = f"{path}#{by_id[image_id].file_name}"
        if cat not in remap:
            _problem(issues, where, f"unknown category id {cat}", "box dropped")
            continue
        crowd = a.get("iscrowd", 0)
        if crowd is None or (not isinstance(crowd, bool) and isinstance(crowd, (int, float)) and crowd in (0, 1)):
            crowd = int(crowd or 0)
        else:
            _problem(issues, where, f"iscrowd {_short(crowd)} is not 0 or 1", "box dropped")
            continue
        bbox = a.get("bbox")
        if not bbox and a.get("segmentation"):
            try:
                bbox = _polygons_bbox(a["segmentation"])
            except ValueError as e:
                _problem(issues, where, f"segmentation {e}", "box dropped")
                continue
        try:
            if not isinstance(bbox, list) or len(bbox) != 4:
                raise ValueError(bbox)
            box = [_number(v) for v in bbox]
        except (TypeError, ValueError):
            _problem(issues, where, f"bbox {_short(bbox)} is not [x, y, w, h]", "box dropped")
            continue
        anns.append(Annotation(len(anns) + 1, image_id, remap[cat], box, crowd))
    return CocoSet(images, anns, categories, {"source": str(path)})


def _hashable(v: Any) -> Any:
    return v if isinstance(v, (int, float, str)) else repr(v)


def _polygons_bbox(seg: Any) -> list[float] | None:
    """xywh around COCO polygon segmentation ([[x0,y0,x1,y1,...], ...]); None for RLE (no box to
    take). ValueError when a polygon has an odd number of values or a value that is not a finite
    number (min/max would skip a NaN silently)."""
    if not isinstance(seg, list):
        return None
    xs, ys = [], []
    for poly in seg:
        if not isinstance(poly, list):
            continue
        if len(poly) % 2:
            raise ValueError(f"polygon has an odd number of coordinates ({len(poly)})")
        try:
            vals = [_number(v) for v in poly]
        except ValueError:
            vals = [math.nan]
        if not all(math.isfinite(v) for v in vals):
            raise ValueError("polygon has a coordinate that is not a finite number")
        xs += vals[0::2]
        ys += vals[1::2]
    if not xs:
        return None
    return [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]


def write_coco(coco: CocoSet, path: str | Path) -> Path:
    """Atomic COCO JSON (pycocotools-loadable)."""
    return coco.save(path)


# ------------------------------------------------------------------------------------------- YOLO
def _list_images(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTS and p.is_file())


def read_yolo_names(names: list[str] | None, *search: Path) -> list[str]:
    """Class names: an explicit list, a classes.txt/data.yaml path given as the only entry, or a
    classes.txt / data.yaml (with `names:`) found in one of `search`. Raises YoloNamesError when
    there are none: without names no box has a class."""
    if names and not (len(names) == 1 and names[0].endswith((".txt", ".yaml", ".yml"))):
        return [str(n) for n in names]
    if names:  # a file named by the user is used or refused, never silently replaced
        given = Path(names[0])
        if not given.is_file():
            raise YoloNamesError(f"YOLO class names file {given} not found")
        found = _names_from(given)
        if not found:
            raise YoloNamesError(f"{given}: no class names in it")
        return found
    for folder in search:
        for c in (folder / "classes.txt", folder / "data.yaml"):
            if c.is_file():
                found = _names_from(c)
                if found:
                    return found
                if c.suffix == ".txt":
                    raise YoloNamesError(f"{c}: no class names in it")
    where = ", ".join(str(s) for s in search)
    raise YoloNamesError(f"YOLO class names not found: give names: [...] or put classes.txt in {where}")


def _names_from(path: Path) -> list[str]:
    """Names in a classes.txt (one a line) or an ultralytics data.yaml (`names:` list or dict)."""
    text = path.read_text(encoding="utf-8-sig", errors="replace")
    if path.suffix == ".txt":
        return [ln.strip() for ln in text.splitlines() if ln.strip()]
    try:
        d = yaml.safe_load(text) or {}
    except (yaml.YAMLError, RecursionError) as e:
        raise YoloNamesError(f"{path}: not valid YAML ({str(e).splitlines()[0] if str(e) else 'too deep'})") from None
    n = d.get("names") if isinstance(d, dict) else None
    if isinstance(n, dict):
        try:
            return [str(n[k]) for k in sorted(n, key=int)]
        except (TypeError, ValueError):
            raise YoloNamesError(f"{path}: names keys must be class indices 0..K-1") from None
    return [str(x) for x in n] if isinstance(n, list) else []


def read_yolo(
    images_dir: str | Path,
    labels_dir: str | Path | None = None,
    names: list[str] | None = None,
    issues: list[dict] | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> CocoSet:
    """ultralytics/darknet txt labels (`cls cx cy w h`, normalised; or `cls x1 y1 x2 y2 ...` polygons).

    Labels mirror the image tree: images_dir/a/b.jpg <-> labels_dir/a/b.txt (default labels_dir:
    the sibling `labels/` of an `images/` folder). An image without a label file is a background
    image (no boxes), as in ultralytics. Image sizes come from the headers (EXIF-rotated).

    A line is a box (class and 4 numbers) or a polygon (class and 3 or more x y pairs); any other
    count, a class that is not a whole number, and NaN/inf values are rows naming the file and
    line, never guessed. A label file above `max_bytes` leaves its image out (its boxes unknown).
    Each image's label file path is kept in `extra["annotation_file"]`.
    """
    images_dir = Path(images_dir)
    if labels_dir is None:
        labels_dir = images_dir.parent / "labels" if images_dir.name == "images" else images_dir
    labels_dir = Path(labels_dir)
    if not images_dir.is_dir():
        raise FormatError(f"{images_dir}: image folder not found")
    class_names = read_yolo_names(names, labels_dir, labels_dir.parent, images_dir.parent)
    categories = [Category(i + 1, n) for i, n in enumerate(class_names)]
    coco = CocoSet(categories=categories, info={"source": str(labels_dir)})
    stems: set[Path] = set()
    idx = 0
    for img in _list_images(images_dir):
        rel = img.relative_to(images_dir)
        stems.add(rel.with_suffix(""))
        txt = labels_dir / rel.with_suffix(".txt")
        if txt.is_file() and not inside_root(labels_dir, txt):
            # Without its labels the photo would pass as a background image: leave it out.
            reason = f"label file resolves outside the annotation root {labels_dir} (to {txt.resolve()})"
            _problem(issues, txt, reason, "image skipped")
            continue
        lines: list[str] = []
        if txt.is_file():
            try:
                lines = _label_lines(txt, max_bytes)
            except FormatError as e:
                _problem(issues, txt, str(e).removeprefix(f"{txt}: "), "image skipped")
                continue
        idx += 1
        # An image linked from outside keeps size 0: ingest refuses it by path before any read.
        size = (display_size(img) or (0, 0)) if inside_root(images_dir, img) else (0, 0)
        extra = {"annotation_file": str(txt)} if lines else {}
        coco.images.append(ImageRecord(idx, rel.as_posix(), size[0], size[1], extra=extra))
        if size == (0, 0):  # unreadable images are quarantined by validation
            continue
        for ln, line in enumerate(lines, start=1):
            parts = line.split()
            if not parts:
                continue
            try:
                cls, vals = _yolo_line(parts)
            except ValueError as e:
                _problem(issues, f"{txt}:{ln}", f"malformed label line {short_repr(line.strip(), 60)}: {e}",
                         "box dropped")
                continue
            if not 0 <= cls < len(class_names):
                reason = f"unknown class index {cls} ({len(class_names)} names)"
                _problem(issues, f"{txt}:{ln}", reason, "box dropped")
                continue
            W, H = size
            if len(vals) == 4:
                cx, cy, w, h = vals
                box = [(cx - w / 2) * W, (cy - h / 2) * H, w * W, h * H]
            else:
                xs, ys = vals[0::2], vals[1::2]
                box = [min(xs) * W, min(ys) * H, (max(xs) - min(xs)) * W, (max(ys) - min(ys)) * H]
            coco.annotations.append(Annotation(len(coco.annotations) + 1, idx, cls + 1, box))
    if labels_dir.is_dir() and labels_dir != images_dir:
        for txt in sorted(labels_dir.rglob("*.txt")):
            rel = txt.relative_to(labels_dir).with_suffix("")
            if rel not in stems and txt.name != "classes.txt":
                _problem(issues, txt, "label file has no matching image", "labels ignored")
    return coco


def _label_lines(txt: Path, max_bytes: int) -> list[str]:
    """Lines of a YOLO label file (a UTF-8 BOM is dropped; bytes that are not UTF-8 become U+FFFD
    and fail as numbers on their line); FormatError when it is too large or unreadable."""
    try:
        size = txt.stat().st_size
        if size > max_bytes:
            raise FormatError(f"{txt}: label file of {size / 1e6:.1f} MB, more than "
                              f"data.max_annotation_mb={max_bytes / 1e6:g}")
        return txt.read_text(encoding="utf-8-sig", errors="replace").splitlines()
    except OSError as e:
        raise FormatError(f"{txt}: cannot read: {e.strerror or e}") from None


def _yolo_line(parts: list[str]) -> tuple[int, list[float]]:
    """(class index, normalised values) of one label line, or ValueError saying what is wrong."""
    try:
        cls_value = float(parts[0])
    except ValueError:
        raise ValueError(f"class {short_repr(parts[0], 20)} is not a number") from None
    cls = _whole(cls_value, "class")
    n = len(parts) - 1
    if n != 4 and (n < 6 or n % 2):
        raise ValueError(f"{n} values after the class: a box has 4 (cx cy w h), a polygon 3 or more "
                         "x y pairs")
    try:
        vals = [float(v) for v in parts[1:]]
    except ValueError:
        raise ValueError("a coordinate is not a number") from None
    if not all(math.isfinite(v) for v in vals):
        raise ValueError("a coordinate is NaN or infinite")
    return cls, vals


def write_yolo(coco: CocoSet, image_root: str | Path, out_dir: str | Path) -> list[Path]:
    """ultralytics layout: out_dir/images/<file> (hardlink, else copy) + out_dir/labels/<stem>.txt.

    Class index = position of the category in id order; boxes as normalised `cx cy w h`, clipped
    to the image (boxes wholly outside are left out). Images without boxes get an empty label file
    (background). Returns the image paths.
    """
    image_root, out_dir = Path(image_root), Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    (out_dir / "labels").mkdir(parents=True, exist_ok=True)
    index = yolo_class_index(coco)
    by_image = coco.anns_by_image()
    used: set[str] = set()
    paths = []
    for im in coco.images:
        name = Path(im.file_name).name
        if name in used:  # same base name from two folders: keep both, disambiguated by id
            name = f"{im.id}_{name}"
        used.add(name)
        dst = out_dir / "images" / name
        _link_or_copy(image_root / im.file_name, dst)
        atomic_write_text(out_dir / "labels" / f"{Path(name).stem}.txt",
                          yolo_label_text(im, by_image.get(im.id, []), index))
        paths.append(dst)
    return paths


def yolo_class_index(coco: CocoSet) -> dict[int, int]:
    """category id -> YOLO class index (position in id order)."""
    return {c.id: i for i, c in enumerate(sorted(coco.categories, key=lambda c: c.id))}


def yolo_label_text(im: ImageRecord, anns: list[Annotation], index: dict[int, int]) -> str:
    """One image's YOLO label file: `cls cx cy w h` per box, normalised and clipped to the image."""
    lines = []
    for a in anns:
        # Clipped to the image: ultralytics rejects a whole label file with a coordinate > 1.
        x, y, w, h = a.bbox
        x0, y0 = max(0.0, x), max(0.0, y)
        x1, y1 = min(float(im.width), x + w), min(float(im.height), y + h)
        if x1 <= x0 or y1 <= y0:
            continue
        lines.append(
            f"{index[a.category_id]} {(x0 + x1) / 2 / im.width:.6f} {(y0 + y1) / 2 / im.height:.6f} "
            f"{(x1 - x0) / im.width:.6f} {(y1 - y0) / im.height:.6f}"
        )
    return "".join(s + "\n" for s in lines)


def write_yolo_labels(coco: CocoSet, root: str | Path) -> list[Path]:
    """Label files beside images already laid out as `root/images/<...>/<name>.<ext>`: one
    `root/labels/<...>/<name>.txt` each, where ultralytics looks for them (it swaps the last
    `/images/` for `/labels/`), so `images/<...>` folders train as they are, without copies."""
    root = Path(root)
    index = yolo_class_index(coco)
    by_image = coco.anns_by_image()
    out = []
    for im in coco.images:
        rel = Path(im.file_name)
        if rel.parts[:1] != ("images",):
            raise ValueError(f"{im.file_name}: not under images/")
        path = root / "labels" / Path(*rel.parts[1:]).with_suffix(".txt")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yolo_label_text(im, by_image.get(im.id, []), index), encoding="utf-8")
        out.append(path)
    return out


def write_yolo_data_yaml(path: str | Path, names: list[str], splits: dict[str, str], comment: str = "") -> Path:
    """An ultralytics data.yaml without `path:` (ultralytics then resolves the split folders
    relative to the file itself, wherever the folder is moved)."""
    data = {**splits, "nc": len(names), "names": dict(enumerate(names))}
    head = "".join(f"# {line}\n" for line in comment.splitlines())
    return atomic_write_text(path, head + yaml.safe_dump(data, sort_keys=False, allow_unicode=True))


def _link_or_copy(src: Path, dst: Path) -> None:
    if dst.exists():
        dst.unlink()
    try:
        os.link(src, dst)
    except OSError:  # other filesystem, or links not allowed
        shutil.copy2(src, dst)


# ---------------------------------------------------------------------------------------- labelme
def read_labelme(
    json_dir: str | Path, images_dir: str | Path | None = None, issues: list[dict] | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> CocoSet:
    """labelme JSON files (one per image) -> CocoSet; polygons/rectangles/circles -> boxes.

    `imagePath` is looked up relative to `images_dir` first, then relative to the JSON file (the
    labelme convention); the chosen `file_name` is relative to `images_dir`. When neither exists
    and the JSON embeds the image (`imageData`), the image record gets
    `extra["image_data_from"] = <json path>` and ingest decodes the embedded bytes.
    A box is the tightest axis-aligned box containing every vertex of the shape.
    """
    json_dir = Path(json_dir)
    images_dir = Path(images_dir) if images_dir is not None else json_dir
    if not json_dir.is_dir():
        raise FormatError(f"{json_dir}: labelme folder not found")
    names: dict[str, int] = {}
    coco = CocoSet(info={"source": str(json_dir)})
    seen: dict[str, Path] = {}
    for jf in sorted(json_dir.rglob("*.json")):
        if not inside_root(json_dir, jf):
            # Walked files are untrusted like the paths inside them: a link out of the folder
            # would make ingest read (and, through imagePath, ingest) files from anywhere.
            reason = f"symlink resolves outside the annotation root {json_dir} (to {jf.resolve()})"
            _problem(issues, jf, reason, "image skipped")
            continue
        try:
            d = _load_json(jf, max_bytes, issues)
            problem = _labelme_schema_problem(d)
            if problem:
                raise FormatError(f"{jf}: not a labelme file ({problem})")
        except FormatError as e:
            _problem(issues, jf, str(e).split(": ", 1)[-1], "image skipped")
            continue
        image_path = d.get("imagePath") or ""
        file_name, extra = _labelme_file_name(jf, image_path, images_dir, bool(d.get("imageData")))
        if file_name in seen:
            _problem(issues, jf, f"duplicate file name {file_name!r} (also in {seen[file_name].name})",
                     "image skipped (first kept)")
            continue
        seen[file_name] = jf
        img_id = len(coco.images) + 1
        extra["annotation_file"] = str(jf)
        size, problem = _declared_size(d.get("imageWidth"), d.get("imageHeight"))
        if problem:
            _problem(issues, jf, problem, "declared size ignored (the image's own is used)")
        coco.images.append(ImageRecord(img_id, file_name, *size, extra=extra))
        for k, s in enumerate(d.get("shapes") or []):
            box = _shape_box(s)
            label = s.get("label") if isinstance(s, dict) else None
            problem = box if isinstance(box, str) else ("shape without label" if label in (None, "") else
                                                         _text_problem(label, "label"))
            if problem:
                _problem(issues, f"{jf}#shape {k}", problem, "box dropped")
                continue
            cid = names.setdefault(label, len(names) + 1)
            coco.annotations.append(Annotation(len(coco.annotations) + 1, img_id, cid, box))
    coco.categories = [Category(i, n) for n, i in names.items()]
    return coco


def _labelme_schema_problem(d: Any) -> str | None:
    """What makes `d` no labelme record (None: it is one). `shapes: null` is an image without
    shapes; anything else that is not a list would be read character by character."""
    if not isinstance(d, dict) or "shapes" not in d or "imagePath" not in d:
        return "needs 'shapes' and 'imagePath'"
    wrong = []
    if d["shapes"] is not None and not isinstance(d["shapes"], list):
        wrong.append(f"'shapes' is {type(d['shapes']).__name__} {_short(d['shapes'])}, not a list")
    if d["imagePath"] is not None and not isinstance(d["imagePath"], str):
        wrong.append(f"'imagePath' is {type(d['imagePath']).__name__} {_short(d['imagePath'])}, not a string")
    if d.get("imageData") is not None and not isinstance(d["imageData"], str):
        wrong.append(f"'imageData' is {type(d['imageData']).__name__}, not base64 text")
    return "; ".join(wrong) or None


def _short(v: Any) -> str:
    return short_repr(v, 40)


def _labelme_file_name(jf: Path, image_path: str, images_dir: Path, embedded: bool) -> tuple[str, dict]:
    posix = image_path.replace("\\", "/")
    if "\x00" in posix:  # no file has such a name (os calls would raise); ingest refuses it with a row
        return posix, {}
    if posix and not os.path.isabs(posix):
        for base in (images_dir, jf.parent):
            full = os.path.normpath(base / posix)
            rel = os.path.relpath(full, images_dir)
            if os.path.isfile(full) and not rel.startswith(".."):
                return Path(rel).as_posix(), {}
    if embedded and posix:
        # The JSON carries the image; name it after the JSON so it stays unique.
        return Path(os.path.relpath(jf, jf.parent)).with_suffix(Path(posix).suffix or ".png").as_posix(), {
            "image_data_from": str(jf)
        }
    return posix, {}


def _shape_box(s: Any) -> list[float] | str:
    """xywh around a labelme shape, or the reason it has none."""
    if not isinstance(s, dict):
        return "shape is not an object"
    kind = s.get("shape_type") or "polygon"
    try:
        pts = [(_number(p[0]), _number(p[1])) for p in s.get("points") or []]
    except (TypeError, ValueError, IndexError):
        return f"{kind} has non-numeric points"
    if any(not (math.isfinite(x) and math.isfinite(y)) for x, y in pts):
        return f"{kind} has NaN/inf points"
    if kind == "circle" and len(pts) >= 2:
        (cx, cy), (px, py) = pts[0], pts[1]
        r = math.hypot(px - cx, py - cy)
        box = [cx - r, cy - r, 2 * r, 2 * r]
        return box if all(math.isfinite(v) for v in box) else f"circle radius too large ({_short(r)})"
    if kind == "polygon" and len(pts) < 3:  # two points are a line: its box is no part's outline
        return f"polygon with {len(pts)} points (needs at least 3)"
    if kind in ("polygon", "rectangle", "mask") and len(pts) >= 2:
        xs, ys = [p[0] for p in pts], [p[1] for p in pts]
        box = [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]
        # 1e308 apart overflows to inf: no image is that large
        return box if all(math.isfinite(v) for v in box) else f"{kind} points too far apart ({_short(box)})"
    return f"{_short(kind)} shape with {len(pts)} points has no box"


def write_labelme(coco: CocoSet, image_root: str | Path, out_dir: str | Path) -> list[Path]:
    """One labelme JSON per image (rectangle shapes, imageData null, imagePath relative to it)."""
    image_root, out_dir = Path(image_root), Path(out_dir)
    names = {c.id: c.name for c in coco.categories}
    by_image = coco.anns_by_image()
    out = []
    for im in coco.images:
        jf = out_dir / Path(im.file_name).with_suffix(".json")
        shapes = []
        for a in by_image.get(im.id, []):
            x, y, w, h = a.bbox
            shapes.append({"label": names[a.category_id], "points": [[x, y], [x + w, y + h]],
                           "group_id": None, "shape_type": "rectangle", "flags": {}})
        rel = os.path.relpath(image_root / im.file_name, jf.parent)
        atomic_write_json(jf, {"version": "5.4.1", "flags": {}, "shapes": shapes,
                               "imagePath": Path(rel).as_posix(), "imageData": None,
                               "imageHeight": im.height, "imageWidth": im.width})
        out.append(jf)
    return out


def iter_image_files(root: Path) -> Iterable[Path]:
    """Image files under root, sorted (for unlabelled folders)."""
    return _list_images(root)
