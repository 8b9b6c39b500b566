"""Readers and writers: COCO <-> YOLO <-> labelme round trips keep boxes within 0.5 px, and each
malformed annotation becomes a quarantine row (or a FormatError without an issues list)."""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from pycocotools.coco import COCO

sys.path.insert(0, str(Path(__file__).parent))  # ingest_helpers lives beside this file (importlib mode)
from ingest_helpers import coco_json, write_rgb
from pipeline.data.coco import Annotation, Category, CocoSet, ImageRecord
from pipeline.data.formats import (
    FormatError,
    read_coco,
    read_labelme,
    read_yolo,
    write_coco,
    write_labelme,
    write_yolo,
)

CATS = ["gear", "hex_nut", "bracket"]


@pytest.fixture
def coco_set(tmp_path):
    """Three odd-sized images with fractional boxes, one without boxes."""
    root = tmp_path / "imgs"
    rng = np.random.default_rng(0)
    images, anns = [], []
    for i, (w, h) in enumerate([(97, 61), (64, 64), (33, 120)], start=1):
        write_rgb(root / f"im{i}.png", w, h, seed=i)
        images.append(ImageRecord(i, f"im{i}.png", w, h))
        for _ in range(0 if i == 2 else 3):
            bw, bh = rng.uniform(2, w / 2), rng.uniform(2, h / 2)
            x, y = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
            anns.append(Annotation(len(anns) + 1, i, int(rng.integers(1, 4)), [x, y, bw, bh]))
    return root, CocoSet(images, anns, [Category(i + 1, n) for i, n in enumerate(CATS)])


def boxes_by_file(c: CocoSet) -> dict[str, list[tuple[str, list[float]]]]:
    names = {k.id: k.name for k in c.categories}
    files = {im.id: im.file_name.rsplit("/", 1)[-1].rsplit(".", 1)[0] for im in c.images}
    out: dict[str, list] = {f: [] for f in files.values()}
    for a in c.annotations:
        out[files[a.image_id]].append((names[a.category_id], a.bbox))
    return {k: sorted(v, key=lambda t: (t[0], t[1])) for k, v in out.items()}


def assert_same_boxes(a: CocoSet, b: CocoSet, tol: float = 0.5) -> None:
    ba, bb = boxes_by_file(a), boxes_by_file(b)
    assert ba.keys() == bb.keys()
    for f in ba:
        assert [n for n, _ in ba[f]] == [n for n, _ in bb[f]], f
        for (_, x), (_, y) in zip(ba[f], bb[f]):
            assert np.abs(np.array(x) - np.array(y)).max() <= tol, (f, x, y)


def test_coco_yolo_labelme_round_trip(coco_set, tmp_path):
    root, original = coco_set
    path = write_coco(original, tmp_path / "ann.json")
    COCO(str(path))  # loads with pycocotools
    back = read_coco(path)
    assert back.category_names == CATS
    assert_same_boxes(original, back, tol=0.001)

    yolo_dir = tmp_path / "yolo"
    written = write_yolo(back, root, yolo_dir)
    assert [p.name for p in written] == ["im1.png", "im2.png", "im3.png"]
    assert (yolo_dir / "labels" / "im2.txt").read_text() == ""  # background image: empty label file
    line = (yolo_dir / "labels" / "im1.txt").read_text().splitlines()[0].split()
    assert 0 <= int(line[0]) < 3 and all(0 <= float(v) <= 1 for v in line[1:])
    from_yolo = read_yolo(yolo_dir / "images", yolo_dir / "labels", names=CATS)
    assert_same_boxes(original, from_yolo)

    lm_dir = tmp_path / "labelme"
    write_labelme(from_yolo, yolo_dir / "images", lm_dir)
    from_labelme = read_labelme(lm_dir, yolo_dir / "images")
    assert set(from_labelme.category_names) <= set(CATS)
    # labelme ids follow first appearance; compare by name
    assert_same_boxes(original, from_labelme)
    assert {im.file_name for im in from_labelme.images} == {"im1.png", "im2.png", "im3.png"}


def test_yolo_names_from_classes_txt_polygons_and_bad_lines(tmp_path):
    imgs, labels = tmp_path / "images", tmp_path / "labels"
    write_rgb(imgs / "a.png", 100, 50)
    labels.mkdir()
    (labels / "classes.txt").write_text("gear\nhex_nut\n")
    (labels / "a.txt").write_text(
        "0 0.5 0.5 0.2 0.4\n"          # box: x 40..60, y 15..35
        "1 0.1 0.1 0.3 0.1 0.2 0.5\n"  # polygon -> x 10..30, y 5..25
        "7 0.5 0.5 0.1 0.1\n"          # unknown class index
        "0 0.5 nope\n"                 # malformed
    )
    (labels / "orphan.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    issues: list[dict] = []
    c = read_yolo(imgs, labels, issues=issues)
    assert c.category_names == ["gear", "hex_nut"]
    got = sorted((a.category_id, [round(v, 3) for v in a.bbox]) for a in c.annotations)
    assert got == [(1, [40.0, 15.0, 20.0, 20.0]), (2, [10.0, 5.0, 20.0, 20.0])]
    reasons = {(r["reason"].split(" (")[0].split(" '")[0], r["action"]) for r in issues}
    assert ("unknown class index 7", "box dropped") in reasons
    assert ("malformed label line", "box dropped") in reasons
    assert ("label file has no matching image", "labels ignored") in reasons
    with pytest.raises(FormatError, match="unknown class index"):
        read_yolo(imgs, labels)  # no issues list: the first problem raises
    (labels / "classes.txt").unlink()
    with pytest.raises(FormatError, match="class names not found"):
        read_yolo(imgs, labels, issues=[])


def test_labelme_shapes_paths_and_embedded_image(tmp_path):
    imgs, labels = tmp_path / "images", tmp_path / "labels"
    write_rgb(imgs / "a.jpg", 120, 80)
    labels.mkdir()
    poly = [[10.2, 20.5], [30.7, 18.1], [25.0, 40.9]]
    (labels / "a.json").write_text(json.dumps({
        "imagePath": "../images/a.jpg", "imageData": None, "imageWidth": 120, "imageHeight": 80,
        "shapes": [
            {"label": "pit", "points": poly, "shape_type": "polygon"},
            {"label": "pit", "points": [[50, 60], [40, 50]], "shape_type": "rectangle"},
            {"label": "scratch", "points": [[60, 40], [63, 44]], "shape_type": "circle"},
            {"label": "pit", "points": [[1, 1], [5, 5]], "shape_type": "line"},
        ],
    }))
    # Image only inside the JSON (imageData), not on disk.
    png = (imgs / "a.jpg").read_bytes()
    (labels / "b.json").write_text(json.dumps({
        "imagePath": "b.jpg", "imageData": base64.b64encode(png).decode(), "shapes": [],
    }))
    (labels / "broken.json").write_text("{not json")
    issues: list[dict] = []
    c = read_labelme(labels, imgs, issues)
    assert c.category_names == ["pit", "scratch"]
    a = next(im for im in c.images if im.file_name == "a.jpg")
    boxes = [x.bbox for x in c.annotations if x.image_id == a.id]
    assert boxes[0] == pytest.approx([10.2, 18.1, 20.5, 22.8])  # the polygon's extent
    assert boxes[1] == [40, 50, 10, 10]  # rectangle corners in either order
    assert boxes[2] == pytest.approx([55, 35, 10, 10])  # circle: centre (60,40), radius 5
    b = next(im for im in c.images if im.file_name != "a.jpg")
    assert b.extra["image_data_from"].endswith("b.json")
    rows = {(r["file"].rsplit("/", 1)[-1], r["action"]) for r in issues}
    assert ("a.json#shape 3", "box dropped") in rows
    assert ("broken.json", "image skipped") in rows


def test_coco_structural_problems(tmp_path):
    write_rgb(tmp_path / "a.png")
    path = coco_json(
        tmp_path / "ann.json",
        images=[
            {"id": 1, "file_name": "a.png", "width": 48, "height": 32},
            {"id": 1, "file_name": "b.png", "width": 48, "height": 32},  # duplicate id
            {"id": 2, "file_name": "a.png", "width": 48, "height": 32},  # duplicate file name
        ],
        annotations=[
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4]},
            {"id": 2, "image_id": 9, "category_id": 1, "bbox": [1, 2, 3, 4]},  # missing image
            {"id": 3, "image_id": 1, "category_id": 5, "bbox": [1, 2, 3, 4]},  # unknown category
            {"id": 4, "image_id": 1, "category_id": 1, "bbox": [1, 2, 3]},  # malformed box
        ],
        categories=["gear"],
    )
    issues: list[dict] = []
    c = read_coco(path, issues)
    assert [im.file_name for im in c.images] == ["a.png"]
    assert len(c.annotations) == 1
    got = [(r["reason"], r["action"]) for r in issues]
    assert got == [
        ("duplicate image id 1 (also 'a.png')", "image skipped (first kept)"),
        ("duplicate file name (image ids 1 and 2)", "image skipped (first kept)"),
        ("points to missing image id 9", "annotation dropped"),
        ("unknown category id 5", "box dropped"),
        ("bbox [1, 2, 3] is not [x, y, w, h]", "box dropped"),
    ]
    with pytest.raises(FormatError, match="duplicate image id 1"):
        read_coco(path)
    (tmp_path / "bad.json").write_text("[1, 2")
    with pytest.raises(FormatError, match="not valid JSON"):
        read_coco(tmp_path / "bad.json")


def test_write_yolo_clips_boxes_to_the_image(tmp_path):
    write_rgb(tmp_path / "src" / "a.png", 100, 50)
    c = CocoSet([ImageRecord(1, "a.png", 100, 50)],
                [Annotation(1, 1, 1, [90, -10, 20, 30]), Annotation(2, 1, 1, [120, 10, 5, 5])],
                [Category(1, "gear")])
    write_yolo(c, tmp_path / "src", tmp_path / "yolo")
    lines = (tmp_path / "yolo" / "labels" / "a.txt").read_text().splitlines()
    assert lines == ["0 0.950000 0.200000 0.100000 0.400000"]  # x 90..100, y 0..20; the other is outside


def test_yolo_names_from_a_data_yaml_path(tmp_path):
    write_rgb(tmp_path / "images" / "a.png", 40, 20)
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "a.txt").write_text("1 0.5 0.5 0.5 0.5\n")
    (tmp_path / "data.yaml").write_text("names:\n  0: gear\n  1: hex_nut\n")
    c = read_yolo(tmp_path / "images", names=[str(tmp_path / "data.yaml")])  # labels/ beside images/
    assert c.category_names == ["gear", "hex_nut"]
    assert [(a.category_id, a.bbox) for a in c.annotations] == [(2, [10.0, 5.0, 20.0, 10.0])]


def test_coco_duplicate_annotation_ids_keep_both_boxes_with_a_row(tmp_path):
    write_rgb(tmp_path / "a.png")
    path = coco_json(tmp_path / "ann.json", images=[{"id": 1, "file_name": "a.png"}], categories=["gear"],
                     annotations=[{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4]},
                                  {"id": 1, "image_id": 1, "category_id": 1, "bbox": [5, 6, 7, 8]},
                                  {"id": 1, "image_id": 1, "category_id": 1, "bbox": [9, 9, 2, 2]}])
    issues: list[dict] = []
    c = read_coco(path, issues)
    assert [(a.id, a.bbox) for a in c.annotations] == [(1, [1, 2, 3, 4]), (2, [5, 6, 7, 8]), (3, [9, 9, 2, 2])]
    assert [(r["file"], r["reason"], r["action"]) for r in issues] == [
        (f"{path}#annotation 1", "duplicate annotation id 1", "annotation kept (renumbered)")] * 2


def _labelme_file(path: Path, **fields) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"imagePath": "a.png", "imageData": None, "shapes": [], **fields}))
    return path


def test_labelme_degenerate_polygons_and_wrong_types(tmp_path):
    imgs, labels = tmp_path / "images", tmp_path / "labels"
    write_rgb(imgs / "a.png", 60, 40)
    _labelme_file(labels / "a.json", shapes=[
        {"label": "pit", "points": [[1, 1], [9, 9]], "shape_type": "polygon"},  # a line, not an outline
        {"label": "pit", "points": [[1, 1]], "shape_type": "polygon"},
        {"label": "pit", "points": [[1, 1], [9, 1], [5, 8]], "shape_type": "polygon"},
        {"label": "pit", "points": [[1, 1], [9, 9]], "shape_type": "rectangle"},  # two corners: fine
    ])
    shapes_str = _labelme_file(labels / "s.json", shapes="none", imagePath=7)
    path_int = _labelme_file(labels / "p.json", imagePath=["a.png"])
    _labelme_file(labels / "n.json", imagePath="b.png", shapes=None)  # null shapes: an image without boxes
    write_rgb(imgs / "b.png", 60, 40, seed=2)
    issues: list[dict] = []
    c = read_labelme(labels, imgs, issues)
    assert sorted(im.file_name for im in c.images) == ["a.png", "b.png"]
    assert [a.bbox for a in c.annotations] == [[1, 1, 8, 7], [1, 1, 8, 8]]
    rows = [(Path(r["file"]).name, r["reason"], r["action"]) for r in issues]
    assert ("a.json#shape 0", "polygon with 2 points (needs at least 3)", "box dropped") in rows
    assert ("a.json#shape 1", "polygon with 1 points (needs at least 3)", "box dropped") in rows
    by_file = {f: (reason, action) for f, reason, action in rows}
    # One row for the whole file, not one per character of the string "none".
    assert sum(f.startswith("s.json") for f, _, _ in rows) == 1
    assert by_file[shapes_str.name] == ("not a labelme file ('shapes' is str 'none', not a list; "
                                        "'imagePath' is int 7, not a string)", "image skipped")
    assert by_file[path_int.name][0] == "not a labelme file ('imagePath' is list ['a.png'], not a string)"


def test_walked_annotation_files_linking_out_of_their_folder_are_refused(tmp_path):
    outside = tmp_path / "outside"
    write_rgb(outside / "secret.png", 40, 30)
    _labelme_file(outside / "foreign.json", imagePath="secret.png",
                  shapes=[{"label": "pit", "points": [[1, 1], [9, 9]], "shape_type": "rectangle"}])
    (outside / "foreign.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    # labelme: a JSON symlinked from outside the annotation folder
    imgs, labels = tmp_path / "lm" / "images", tmp_path / "lm" / "labels"
    write_rgb(imgs / "a.png", 40, 30)
    _labelme_file(labels / "a.json")
    (labels / "link.json").symlink_to(outside / "foreign.json")
    issues: list[dict] = []
    c = read_labelme(labels, imgs, issues)
    assert [im.file_name for im in c.images] == ["a.png"] and not c.annotations
    assert [(r["file"], r["action"]) for r in issues] == [(str(labels / "link.json"), "image skipped")]
    assert "resolves outside the annotation root" in issues[0]["reason"]
    # YOLO: a label file symlinked from outside; the photo would pass as background: left out
    imgs, labels = tmp_path / "yolo" / "images", tmp_path / "yolo" / "labels"
    write_rgb(imgs / "a.png", 40, 30)
    write_rgb(imgs / "b.png", 40, 30, seed=3)
    labels.mkdir()
    (labels / "a.txt").symlink_to(outside / "foreign.txt")
    (labels / "b.txt").write_text("0 0.5 0.5 0.5 0.5\n")
    issues = []
    c = read_yolo(imgs, labels, names=["gear"], issues=issues)
    assert [im.file_name for im in c.images] == ["b.png"] and len(c.annotations) == 1
    assert [(r["file"], r["action"]) for r in issues] == [(str(labels / "a.txt"), "image skipped")]
    assert "resolves outside the annotation root" in issues[0]["reason"]


# -------------------------------------------------- numeric extremes, names, volume (issue 14)
def test_coco_numeric_fields_are_checked_not_converted(tmp_path):
    """ids must be whole numbers (not 1.5, inf, text), sizes positive whole numbers, iscrowd 0/1:
    each bad value is a row naming the file and record, never an OverflowError or a silent int()."""
    images = [{"id": 1, "file_name": "a.png", "width": 48, "height": 32},
              {"id": float("inf"), "file_name": "inf.png"}, {"id": 2.5, "file_name": "frac.png"},
              {"id": "3", "file_name": "text.png"}, {"id": 4, "file_name": "wide.png", "width": float("inf"),
                                                      "height": 32},
              {"id": 5.0, "file_name": "five.png", "width": 48.0, "height": 32}, [1, 2]]
    anns = [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4]},
            {"id": 2, "image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4], "iscrowd": float("inf")},
            {"id": 3, "image_id": float("inf"), "category_id": 1, "bbox": [1, 2, 3, 4]},
            {"id": 4, "image_id": 1, "category_id": 1.5, "bbox": [1, 2, 3, 4]},
            {"id": 5, "image_id": 1, "category_id": 1, "segmentation": [[1, 2, float("nan"), 4, 5, 6]]},
            "not an annotation"]
    path = tmp_path / "ann.json"
    path.write_text(json.dumps({"images": images, "annotations": anns,
                                "categories": [{"id": 1, "name": "gear"}, {"id": float("nan"), "name": "x"},
                                               {"id": 3, "name": "bolt\nhead"}]}))
    issues: list[dict] = []
    c = read_coco(path, issues)
    assert [(im.file_name, im.width) for im in c.images] == [("a.png", 48), ("wide.png", 0), ("five.png", 48)]
    assert len(c.annotations) == 1 and c.category_names == ["gear"]
    got = {(r["file"].split("ann.json")[-1], r["reason"], r["action"]) for r in issues}
    assert got == {
        ("", "category id nan is not finite", "category ignored"),
        ("", "category name 'bolt%0Ahead' contains control characters", "category ignored"),
        ("#inf.png", "image id inf is not finite", "image skipped"),
        ("#frac.png", "image id 2.5 is not a whole number", "image skipped"),
        ("#text.png", "image id '3' is not a number", "image skipped"),
        ("#wide.png", "declared width inf is not finite", "declared size ignored (the image's own is used)"),
        ("#images[6]", "image entry [1, 2] is not an object", "image skipped"),
        ("#a.png", "iscrowd inf is not 0 or 1", "box dropped"),
        ("#annotation 3", "annotation lacks a usable image_id or category_id: image_id inf is not finite",
         "annotation dropped"),
        ("#annotation 4", "annotation lacks a usable image_id or category_id: category_id 1.5 is not a whole number",
         "annotation dropped"),
        ("#a.png", "segmentation polygon has a coordinate that is not a finite number", "box dropped"),
        ("#annotations[5]", "annotation 'not an annotation' is not an object", "annotation dropped"),
    }


def test_yolo_lines_are_a_box_or_a_polygon_or_a_row(tmp_path):
    imgs, labels = tmp_path / "images", tmp_path / "labels"
    write_rgb(imgs / "a.png", 100, 50)
    labels.mkdir()
    (labels / "classes.txt").write_text("\ufeffgear\nhex_nut\n", encoding="utf-8")  # BOM: still "gear"
    lines = ["\ufeff0 0.5 0.5 0.2 0.4",  # box (BOM dropped)
             "1.0 0.1 0.1 0.3 0.1 0.2 0.5",  # triangle, class written 1.0
             "inf 0.5 0.5 0.2 0.2", "1.5 0.5 0.5 0.2 0.2", "1e30 0.5 0.5 0.2 0.2", "0 0.5 0.5 0.2 0.2 0.9",
             "0 0.5 0.5", "0 0.5 nan 0.2 0.2", "0 0.5 0.5 1e400 0.2", "0,0.5,0.5,0.2,0.2"]
    (labels / "a.txt").write_text("\r\n".join(lines) + "\r\n", encoding="utf-8")
    issues: list[dict] = []
    c = read_yolo(imgs, labels, issues=issues)
    assert c.category_names == ["gear", "hex_nut"] and len(c.annotations) == 2
    why = {r["file"].rsplit(":", 1)[-1]: r["reason"].split(": ", 1)[-1] for r in issues}
    assert why == {"3": "class inf is not finite", "4": "class 1.5 is not a whole number",
                   "5": "class 1e+30 is too large",
                   "6": "5 values after the class: a box has 4 (cx cy w h), a polygon 3 or more x y pairs",
                   "7": "2 values after the class: a box has 4 (cx cy w h), a polygon 3 or more x y pairs",
                   "8": "a coordinate is NaN or infinite", "9": "a coordinate is NaN or infinite",
                   "10": "class '0,0.5,0.5,0.2,0.2' is not a number"}
    assert all(r["action"] == "box dropped" and r["reason"].startswith("malformed label line") for r in issues)


def test_oversize_label_files_leave_their_image_out(tmp_path):
    imgs, labels = tmp_path / "images", tmp_path / "labels"
    write_rgb(imgs / "a.png")
    write_rgb(imgs / "b.png", seed=1)
    labels.mkdir()
    (labels / "classes.txt").write_text("gear\n")
    (labels / "a.txt").write_text("0 0.5 0.5 0.1 0.1\n" * 100)
    (labels / "b.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    issues: list[dict] = []
    c = read_yolo(imgs, labels, issues=issues, max_bytes=1000)
    assert [im.file_name for im in c.images] == ["b.png"]  # not a background image: its boxes are unknown
    (row,) = issues
    assert row["file"].endswith("a.txt") and row["action"] == "image skipped"
    assert "more than data.max_annotation_mb=0.001" in row["reason"]


def test_labelme_sizes_labels_and_control_characters(tmp_path):
    js, imgs = tmp_path / "json", tmp_path / "images"
    write_rgb(imgs / "a.png", 48, 32)
    rect = {"points": [[1, 1], [9, 9]], "shape_type": "rectangle"}
    shapes = [{**rect, "label": "gear"}, {**rect, "label": "gear\n"}, {**rect, "label": 7},
              {"label": "gear", "points": [[-1e308, 0], [1e308, 5]], "shape_type": "rectangle"}]
    js.mkdir()
    (js / "a.json").write_text(json.dumps({"shapes": shapes, "imagePath": "../images/a.png", "imageData": None,
                                           "imageWidth": 1e999, "imageHeight": 32}))
    (js / "b.json").write_text(json.dumps({"shapes": [{**rect, "label": "gear"}], "imagePath": "b\0.png"}))
    issues: list[dict] = []
    c = read_labelme(js, imgs, issues)  # the NUL name is left to ingest's path check (a row, no ValueError)
    assert [im.file_name for im in c.images] == ["a.png", "b\0.png"] and len(c.annotations) == 2
    rows = {(Path(r["file"]).name, r["reason"]) for r in issues}
    assert rows == {("a.json", "declared width inf is not finite"),
                    ("a.json#shape 1", "label 'gear%0A' contains control characters"),
                    ("a.json#shape 2", "label 7 is int, not text"),
                    ("a.json#shape 3", "rectangle points too far apart ([-1e+308, 0.0, inf, 5.0])")}
