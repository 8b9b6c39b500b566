"""More of the bad-input corpus (see build.py): the classes issue 14 found by hand.

- numeric extremes in every numeric field of every format (inf, NaN, huge, fractional, text);
- control characters in file names, inside annotations and on disk (NUL, newline, tab, escape,
  DEL, U+2028) and names too long for a file system once flattened;
- pathological JSON: nesting a hundred thousand deep, numbers of thousands of digits, files over
  data.max_annotation_mb, keys given twice, a byte-order mark, UTF-16, empty and null files;
- YOLO lines whose field count fits neither a box nor a polygon, and annotation volume (more
  boxes on one image than data.max_boxes_per_image).

Each builder returns (source configs, cases); every photo is distinct (its own seed) so that no
case turns into a duplicate of another photo. The corpus config sets data.max_annotation_mb to
MAX_MB so that the oversize cases stay small.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import cv2
import numpy as np

from build_helpers import Case, write  # noqa: I001 - a sibling module (tests/corpus on sys.path)

CATEGORIES = ["tensile_specimen", "gear", "bracket", "hex_nut"]
MAX_MB = 1.0
BIG = int(1.2 * MAX_MB * 1e6)  # bytes: over the corpus's data.max_annotation_mb
MAX_BOXES = 1000  # DataConfig.max_boxes_per_image's default
_seed = itertools.count(1000)


def _photo(path: Path) -> Path:
    """A distinct 64x48 PNG photo (noise and bright blocks from its own seed)."""
    rng = np.random.default_rng(next(_seed))
    img = rng.integers(30, 80, (48, 64, 3), dtype=np.uint8)
    for _ in range(3):
        x, y = int(rng.integers(0, 56)), int(rng.integers(0, 40))
        img[y : y + 8, x : x + 8] = rng.integers(150, 255, 3)
    return write(path, cv2.imencode(".png", img[:, :, ::-1])[1].tobytes())


# ------------------------------------------------------------------------------------------- YOLO
def yolo_source(d: Path) -> tuple[dict, list[Case]]:
    """Class A YOLO labels: one image and label file per case."""
    img, lab = d / "images", d / "labels"
    write(lab / "classes.txt", "\n".join(CATEGORIES) + "\n")
    box = "0 0.5 0.5 0.2 0.2\n"
    labels: dict[str, tuple[str | bytes, str, str, str]] = {
        # name: (label file, expect, reason regex, what)
        "class-inf": ("inf 0.5 0.5 0.2 0.2\n", "box dropped", r"class inf is not finite", "YOLO class inf"),
        "class-nan": ("nan 0.5 0.5 0.2 0.2\n", "box dropped", r"class nan is not finite", "YOLO class NaN"),
        "class-frac": ("1.5 0.5 0.5 0.2 0.2\n", "box dropped", r"class 1\.5 is not a whole number",
                       "YOLO class 1.5"),
        "class-huge": ("1e30 0.5 0.5 0.2 0.2\n", "box dropped", r"class 1e\+30 is too large", "YOLO class 1e30"),
        "class-negative": ("-1 0.5 0.5 0.2 0.2\n", "box dropped", r"unknown class index -1", "YOLO class -1"),
        "class-word": ("gear 0.5 0.5 0.2 0.2\n", "box dropped", r"class 'gear' is not a number", "YOLO class name"),
        "class-float": ("1.0 0.5 0.5 0.2 0.2\n", "clean", "", "YOLO class written 1.0 (a whole number)"),
        "coord-nan": ("0 nan 0.5 0.2 0.2\n", "box dropped", r"NaN or infinite", "YOLO centre NaN"),
        "coord-inf": ("0 0.5 0.5 inf 0.2\n", "box dropped", r"NaN or infinite", "YOLO width inf"),
        "coord-overflow": ("0 0.5 0.5 1e400 0.2\n", "box dropped", r"NaN or infinite", "YOLO width 1e400"),
        "coord-huge": ("0 0.5 0.5 1e300 0.2\n", "box dropped", r"outside the image", "YOLO width 1e300"),
        "values-5": ("0 0.5 0.5 0.2 0.2 0.9\n", "box dropped", r"5 values after the class",
                     "YOLO box with a confidence column (6 fields)"),
        "values-2": ("0 0.5 0.5\n", "box dropped", r"2 values after the class", "YOLO line of 3 fields"),
        "values-7": ("2 0.1 0.1 0.5 0.1 0.5 0.5 0.9\n", "box dropped", r"7 values after the class",
                     "YOLO polygon with an odd coordinate count"),
        "commas": ("0,0.5,0.5,0.2,0.2\n", "box dropped", r"is not a number", "YOLO line with commas"),
        "comment": ("0 0.5 0.5 0.2 0.2 # gear\n", "box dropped", r"malformed", "YOLO line with a comment"),
        "not-utf8": (box.encode() + b"\xff\xfe 0.5 0.5 0.2 0.2\n", "box dropped", r"malformed",
                     "YOLO label bytes that are not UTF-8"),
        "bom": ("\ufeff" + box, "clean", "", "YOLO label file with a UTF-8 byte-order mark"),
        "crlf": ("0 0.5 0.5 0.2 0.2\r\n1 0.3 0.3 0.2 0.2\r\n", "clean", "", "YOLO label with CRLF line ends"),
        "triangle": ("2 0.2 0.2 0.6 0.2 0.4 0.7\n", "clean", "", "YOLO polygon of 3 points"),
        "polygon-nan": ("2 0.2 0.2 nan 0.2 0.4 0.7\n", "box dropped", r"NaN or infinite", "YOLO polygon with NaN"),
        "empty": ("", "clean", "", "empty YOLO label file (a background image)"),
        "many": (box * (MAX_BOXES + 1), "skipped", rf"{MAX_BOXES + 1} boxes on one image",
                 f"{MAX_BOXES + 1} YOLO boxes on one image"),
        "too-large": ("0 0.5 0.5 0.1 0.1\n" * (BIG // 18 + 1), "skipped", r"MB, more than data.max_annotation_mb",
                      "YOLO label file over data.max_annotation_mb"),
    }
    cases = []
    for name, (text, expect, reason, what) in labels.items():
        _photo(img / f"y-{name}.png")
        write(lab / f"y-{name}.txt", text)
        # Line problems name the label file and line; a box outside the image names the image.
        file = f"y-{name}.png" if "outside" in reason else f"y-{name}.txt"
        cases.append(Case(f"yolo-{name}", "annotation", what, file, expect, reason))
    return {"images": str(img), "annotations": str(lab), "format": "yolo"}, cases


# ------------------------------------------------------------------------------------------- COCO
def coco_source(d: Path) -> tuple[dict, list[Case]]:
    """Class B COCO file whose every numeric and name field is wrong somewhere."""
    img = d / "images"
    ann = d / "annotations.json"
    cases: list[Case] = []
    images: list = []

    def image(name: str, **fields) -> dict:
        rec = {"id": len(images) + 1, "file_name": name, "width": 64, "height": 48, **fields}
        images.append(rec)
        return rec

    def case(cid: str, what: str, file: str, expect: str, reason: str = "") -> None:
        cases.append(Case(f"coco-{cid}", "annotation", what, file, expect, reason))

    ok = image("cx-ok.png")
    _photo(img / "cx-ok.png")
    for cid, value, reason, what in [
        ("id-inf", float("inf"), r"image id inf is not finite", "COCO image id Infinity"),
        ("id-frac", 1.5, r"image id 1\.5 is not a whole number", "COCO image id 1.5"),
        ("id-string", "7", r"image id '7' is not a number", "COCO image id given as text"),
        ("id-huge", 10**30, r"image id .* is too large", "COCO image id 10^30"),
    ]:
        _photo(img / f"cx-{cid}.png")
        image(f"cx-{cid}.png", id=value)
        case(cid, what, f"cx-{cid}.png", "skipped", reason)
    images.append({"file_name": "cx-no-id.png", "width": 64, "height": 48})
    _photo(img / "cx-no-id.png")
    case("no-id", "COCO image without id", "cx-no-id.png", "skipped", r"no image id")
    for cid, fields, reason, what in [
        ("w-inf", {"width": float("inf")}, r"declared width inf is not finite", "COCO width Infinity"),
        ("h-negative", {"height": -48}, r"declared size 64x-48 is empty", "COCO height -48"),
        ("w-frac", {"width": 63.5}, r"declared width 63\.5 is not a whole number", "COCO width 63.5"),
        ("w-string", {"width": "64px"}, r"declared width '64px' is not a number", "COCO width as text"),
    ]:
        _photo(img / f"cx-{cid}.png")
        image(f"cx-{cid}.png", **fields)
        case(cid, what, f"cx-{cid}.png", "declared size ignored", reason)
    image("cx-nul\0.png")
    case("name-nul", "COCO file_name with a NUL character", "cx-nul%00.png", "skipped", r"NUL")
    image("cx-newline\nabsent.png")
    case("name-newline-absent", "COCO file_name with a newline, no such file", "cx-newline%0Aabsent.png",
         "skipped", r"missing image file")
    for cid, name, shown, what in [
        ("name-newline", "cx-newline\nreal.png", "cx-newline%0Areal", "COCO file_name with a newline (file exists)"),
        ("name-escape", "cx-esc\x1b[31mred.png", "cx-esc%1B[31mred", "COCO file_name with a terminal escape"),
    ]:
        _photo(img / name)
        image(name)
        case(cid, what, shown, "kept")
    image("x" * 5000 + ".png")
    case("name-long", "COCO file_name of 5004 characters", "file name of 5004 characters", "skipped",
         r"at most 4096")
    at = "B-coco-x/annotations.json#"  # rows about records name the file and the record
    dot = image(".")
    case("name-dot", "COCO file_name '.' (the image folder)", f"{at}image {dot['id']}", "skipped",
         r"not a regular file")
    k = len(images)
    images.append([1, 2])
    case("image-not-object", "COCO image entry that is a list", f"{at}images[{k}]", "skipped", r"not an object")

    # Annotations: each problem on its own image so that every row names a distinct file.
    anns: list = [{"id": 1, "image_id": ok["id"], "category_id": 2, "bbox": [4, 4, 20, 14]}]
    for cid, fields, expect, reason, what in [
        ("ann-image-inf", {"image_id": float("inf")}, "annotation dropped", r"image_id inf is not finite",
         "COCO annotation image_id Infinity"),
        ("ann-cat-frac", {"category_id": 2.5}, "annotation dropped", r"category_id 2\.5 is not a whole number",
         "COCO annotation category_id 2.5"),
        ("ann-cat-null", {"category_id": None}, "annotation dropped", r"no category_id",
         "COCO annotation category_id null"),
    ]:
        aid = 9000 + len(anns)
        anns.append({"id": aid, "image_id": ok["id"], "category_id": 1, "bbox": [4, 4, 10, 10], **fields})
        case(cid, what, f"{at}annotation {aid}", expect, reason)
    for cid, fields, expect, reason, what in [
        ("iscrowd-inf", {"iscrowd": float("inf")}, "box dropped", r"iscrowd inf is not 0 or 1", "COCO iscrowd Infinity"),
        ("iscrowd-2", {"iscrowd": 2}, "box dropped", r"iscrowd 2 is not 0 or 1", "COCO iscrowd 2"),
        ("bbox-huge", {"bbox": [1e308, 1e308, 1e308, 1e308]}, "box dropped", r"outside the image",
         "COCO bbox of 1e308"),
        ("bbox-overflow", {"bbox": [0, 0, float("inf"), 10]}, "box dropped", r"NaN/inf", "COCO bbox width Infinity"),
        ("bbox-strings", {"bbox": ["1", "2", "3", "4"]}, "box dropped", r"is not \[x, y, w, h\]",
         "COCO bbox of strings"),
        ("seg-word", {"bbox": None, "segmentation": [["a", 1, 2, 3, 4, 5]]}, "box dropped",
         r"segmentation .*not a finite number", "COCO segmentation with text"),
        ("seg-nan", {"bbox": None, "segmentation": [[1, 2, float("nan"), 4, 5, 6]]}, "box dropped",
         r"segmentation .*not a finite number", "COCO segmentation with NaN"),
        ("seg-odd", {"bbox": None, "segmentation": [[1, 2, 3, 4, 5]]}, "box dropped", r"odd number",
         "COCO polygon with an odd coordinate count"),
    ]:
        name = f"cx-{cid}.png"
        _photo(img / name)
        rec = image(name)
        anns.append({"id": 9000 + len(anns), "image_id": rec["id"], "category_id": 1, "bbox": [4, 4, 10, 10],
                     **fields})
        case(cid, what, name, expect, reason)
    k = len(anns)
    anns.append(42)
    case("ann-not-object", "COCO annotation that is a number", f"{at}annotations[{k}]", "annotation dropped",
         r"not an object")
    name = "cx-many.png"
    _photo(img / name)
    rec = image(name)
    anns += [{"id": 20000 + i, "image_id": rec["id"], "category_id": 1, "bbox": [1, 1, 8, 8]}
             for i in range(MAX_BOXES + 1)]
    case("many", f"{MAX_BOXES + 1} COCO boxes on one image", f"{at}image {rec['id']}", "skipped",
         rf"{MAX_BOXES + 1} boxes on one image")
    categories: list = [{"id": i + 1, "name": n} for i, n in enumerate(CATEGORIES)]
    categories += [{"id": float("nan"), "name": "extra"}, {"id": 99, "name": "bolt\nhead"},
                   {"id": 98, "name": ["x"]}]
    case("cat-id-nan", "COCO category id NaN", "category id nan", "category ignored", r"not finite")
    case("cat-name-newline", "COCO category name with a newline", "bolt%0Ahead", "category ignored",
         r"control characters")
    case("cat-name-list", "COCO category name that is a list", "category name ['x']", "category ignored",
         r"is list, not text")
    text = json.dumps({"images": images, "annotations": anns, "categories": categories})
    # A key given twice (legal JSON, read differently by different tools): said, never guessed silently.
    text = text.replace('"bbox": [4, 4, 20, 14]}', '"bbox": [4, 4, 20, 14], "bbox": [4, 4, 22, 14]}', 1)
    write(ann, text)
    case("duplicate-key", "COCO annotation with bbox given twice", "key 'bbox' given twice", "last value used")
    return {"images": str(img), "annotations": str(ann), "format": "coco", "split": "train"}, cases


def json_sources(root: Path) -> tuple[list[dict], list[Case]]:
    """Whole COCO files that are pathological JSON: each its own source with one good photo."""
    good = {"images": [{"id": 1, "file_name": "{name}", "width": 64, "height": 48}], "annotations": [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [4, 4, 20, 14]}],
        "categories": [{"id": i + 1, "name": n} for i, n in enumerate(CATEGORIES)]}
    valid = json.dumps(good)
    files: dict[str, tuple[str | bytes, str, str, str]] = {
        "deep": ("[" * 100_000 + "]" * 100_000, "source skipped", r"nested 100000 deep",
                 "COCO file of arrays nested 100,000 deep"),
        "deep-inside": (valid[:-1] + ', "info": ' + "[" * 5000 + "]" * 5000 + "}", "source skipped",
                        r"nested \d+ deep", "COCO file with a 5,000-deep value inside"),
        "digits": (valid.replace('"id": 1,', '"id": 1' + "0" * 5000 + ",", 1), "source skipped",
                   r"more than 4300 digits", "COCO image id of 5,001 digits"),
        "float-digits": (valid.replace('"id": 1,', '"id": 1' + "0" * 400 + ".0,", 1), "skipped",
                         r"not finite", "COCO image id of 401 digits with a fraction (overflows to inf)"),
        "oversize": (valid[:-1] + ', "info": "' + "x" * BIG + '"}', "source skipped",
                     r"MB, more than data.max_annotation_mb", "COCO file over data.max_annotation_mb"),
        "bom": ("\ufeff" + valid, "kept", "", "COCO file with a UTF-8 byte-order mark"),
        "utf16": (valid.encode("utf-16"), "source skipped", r"not UTF-8", "COCO file in UTF-16"),
        "empty": ("", "source skipped", r"not valid JSON", "empty COCO file"),
        "null": ("null", "source skipped", r"not a COCO file", "COCO file holding null"),
        "categories-dict": (valid.replace('"categories": [', '"categories": {"list": [', 1)[:-1] + "}}",
                            "source skipped", r"'categories' is dict", "COCO categories that are an object"),
        "images-twice": ('{"images": [], ' + valid[1:], "last value used", r"key 'images' given twice",
                         "COCO file with 'images' given twice"),
    }
    srcs, cases = [], []
    for name, (text, expect, reason, what) in files.items():
        d = root / f"B-json-{name}"
        photo = f"json-{name}.png"
        _photo(d / "images" / photo)
        write(d / "annotations.json", text.replace("{name}", photo) if isinstance(text, str) else
              text.decode("utf-16").replace("{name}", photo).encode("utf-16"))
        srcs.append({"images": str(d / "images"), "annotations": str(d / "annotations.json"), "format": "coco",
                     "split": "train"})
        cases.append(Case(f"json-{name}", "annotation", what, photo if expect == "kept" else f"B-json-{name}/",
                          expect, reason))
    return srcs, cases


# ---------------------------------------------------------------------------------------- labelme
def _labelme(image_path: str, shapes: list, **fields) -> dict:
    return {"version": "5.4.1", "flags": {}, "shapes": shapes, "imagePath": image_path, "imageData": None,
            "imageHeight": 48, "imageWidth": 64, **fields}


def _rect(label, x0, y0, x1, y1, kind: object = "rectangle") -> dict:
    return {"label": label, "points": [[x0, y0], [x1, y1]], "shape_type": kind, "flags": {}}


def labelme_source(d: Path) -> tuple[dict, list[Case]]:
    """Class B labelme JSON, one file per case."""
    img, js = d / "images", d / "json"
    gear = _rect("gear", 4, 4, 30, 20)
    docs: dict[str, tuple[object, str, str, str]] = {
        "w-inf": (_labelme("lx-w-inf.png", [gear], imageWidth=float("inf")), "declared size ignored",
                  r"declared width inf is not finite", "labelme imageWidth Infinity"),
        "h-frac": (_labelme("lx-h-frac.png", [gear], imageHeight=47.5), "declared size ignored",
                   r"declared height 47\.5 is not a whole number", "labelme imageHeight 47.5"),
        "path-nul": (_labelme("lx-path-nul\0.png", [gear]), "skipped", r"NUL", "labelme imagePath with a NUL"),
        "path-newline": (_labelme("lx-path\nnewline.png", [gear]), "skipped", r"missing image file",
                         "labelme imagePath with a newline, no such file"),
        "label-newline": (_labelme("lx-label-newline.png", [_rect("gear\n", 4, 4, 30, 20)]), "box dropped",
                          r"label 'gear%0A' contains control characters", "labelme label with a newline"),
        "label-number": (_labelme("lx-label-number.png", [_rect(3, 4, 4, 30, 20)]), "box dropped",
                         r"label 3 is int, not text", "labelme label that is a number"),
        "far-apart": (_labelme("lx-far-apart.png", [_rect("gear", -1e308, 0, 1e308, 10)]), "box dropped",
                      r"points too far apart", "labelme rectangle from -1e308 to 1e308"),
        "circle-huge": (_labelme("lx-circle-huge.png", [_rect("gear", 10, 10, 1e308, 10, "circle")]),
                        "box dropped", r"circle radius too large", "labelme circle of radius 1e308"),
        "shape-type": (_labelme("lx-shape-type.png", [_rect("gear", 4, 4, 30, 20, {"kind": 1})]), "box dropped",
                       r"has no box", "labelme shape_type that is an object"),
        "points-word": (_labelme("lx-points-word.png", [{"label": "gear", "points": "abc",
                                                          "shape_type": "polygon"}]),
                        "box dropped", r"non-numeric points", "labelme points given as text"),
        "many": (_labelme("lx-many.png", [_rect("gear", 1, 1, 9, 9)] * (MAX_BOXES + 1)), "skipped",
                 rf"{MAX_BOXES + 1} boxes on one image", f"{MAX_BOXES + 1} labelme shapes on one image"),
        "deep": ("[" * 100_000 + "]" * 100_000, "skipped", r"nested 100000 deep", "labelme JSON nested 100,000 deep"),
        "digits": (json.dumps(_labelme("lx-digits.png", [gear])).replace('"imageWidth": 64',
                                                                         '"imageWidth": 6' + "4" * 5000),
                   "skipped", r"more than 4300 digits", "labelme imageWidth of 5,001 digits"),
        "oversize": (json.dumps(_labelme("lx-oversize.png", [gear], note="x" * BIG)), "skipped",
                     r"MB, more than data.max_annotation_mb", "labelme JSON over data.max_annotation_mb"),
        "shapes-twice": (json.dumps(_labelme("lx-shapes-twice.png", [gear])).replace(
            '"shapes": [', '"shapes": [], "shapes": [', 1), "last value used", r"key 'shapes' given twice",
            "labelme JSON with 'shapes' given twice"),
    }
    cases = []
    for name, (doc, expect, reason, what) in docs.items():
        _photo(img / f"lx-{name}.png")
        write(js / f"lx-{name}.json", doc if isinstance(doc, str) else json.dumps(doc))
        cases.append(Case(f"labelme-{name}", "annotation", what, f"lx-{name}.json", expect, reason))
    return {"images": str(img), "annotations": str(js), "format": "labelme", "split": "train"}, cases


# ------------------------------------------------------------------------------------ names on disk
def names_source(d: Path) -> tuple[dict, list[Case]]:
    """Unlabelled photos whose own file names hold control characters, or whose flattened path is
    too long for one file name: kept, written under a safe name."""
    img = d / "images"
    cases = []
    for cid, name, shown in [
        ("newline", "nl\nname.png", "nl%0Aname"), ("tab", "tab\tname.png", "tab%09name"),
        ("escape", "esc\x1b[2Jname.png", "esc%1B[2Jname"), ("line-separator", "ls\u2028name.png", "ls%E2%80%A8name"),
        ("del", "del\x7fname.png", "del%7Fname"),
    ]:
        _photo(img / name)
        cases.append(Case(f"disk-name-{cid}", "path", f"photo whose file name holds {cid}", shown, "kept"))
    deep = img.joinpath(*[f"level-{i}-" + "d" * 40 for i in range(6)])
    _photo(deep / "deep-leaf.png")
    cases.append(Case("disk-deep-path", "path", "photo 6 folders of 48 characters deep (flattened name too long)",
                      "deep-leaf.png", "kept"))
    return {"images": str(img), "format": "none", "split": "unlabelled"}, cases
