"""The bad-input corpus: a tiny but complete Metalize input tree in which every kind of bad file
a factory photo archive holds sits beside good data, each with the outcome we promise.

    python tests/corpus/build.py OUT_DIR        # writes OUT_DIR/inputs, OUT_DIR/corpus.yaml, cases.json

`build_corpus(root)` renders the tiny demo photos (the good bulk: enough labelled A and B for
every stage to run), then adds sources in every format holding the bad cases, a folder
`outside/` that symlinks, absolute and `../` paths point at, and a run config (tiny profile,
output root `root/out`). Each `Case` names the file, the outcome (`skipped`, `normalised`,
`kept`, `clean` (no row at all), `box dropped`, `box clipped`, `annotation dropped`, `source
skipped`) and a regex the quarantine reason must match. Nothing is checked in as a binary blob: this script makes it all.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import cv2
import numpy as np
import yaml
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "data"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import extremes  # noqa: E402
from build_helpers import Case  # noqa: E402
from build_helpers import write as _write  # noqa: E402
from ingest_helpers import exif_rotated_jpeg, pil_bytes, png16, png_header_only, scene  # noqa: E402

CATEGORIES = ["tensile_specimen", "gear", "bracket", "hex_nut"]
NON_UTF8 = os.fsdecode(b"gear-\xff\xfe.png")  # a Latin-1 era file name; not valid UTF-8
UNICODE = "zahnrad-ß-歯車.png"


@dataclass
class Corpus:
    root: Path
    inputs: Path
    outside: Path
    out: Path
    config: Path
    cases: list[Case]


# ------------------------------------------------------------------------------------- helpers
def _png(img: np.ndarray) -> bytes:
    return cv2.imencode(".png", img[:, :, ::-1])[1].tobytes()


def _jpg(img: np.ndarray) -> bytes:
    return cv2.imencode(".jpg", img[:, :, ::-1])[1].tobytes()


def _labelme(image_path: str, shapes: list[dict], w: int = 64, h: int = 48) -> str:
    return json.dumps({"version": "5.4.1", "flags": {}, "shapes": shapes, "imagePath": image_path,
                       "imageData": None, "imageHeight": h, "imageWidth": w})


def _rect(label: str, x0: float, y0: float, x1: float, y1: float) -> dict:
    return {"label": label, "points": [[x0, y0], [x1, y1]], "shape_type": "rectangle", "flags": {}}


# ---------------------------------------------------------------------------------------- cases
def _images_case_source(d: Path, outside: Path) -> tuple[dict, list[Case]]:
    """B COCO source whose images are bad in every way a file can be bad."""
    img = d / "images"
    good = scene(64, 48, seed=3)
    files: dict[str, bytes] = {
        "good.jpg": _jpg(good),
        "zero.jpg": b"",
        "trunc.jpg": _jpg(scene(64, 48, seed=4))[:300],
        "trunc.png": _png(scene(64, 48, seed=5))[:200],
        "png-named.jpg": _png(scene(64, 48, seed=6)),  # wrong extension: decoded by content
        "text.png": b"this is a shell script, not an image\n",
        "bomb.png": png_header_only(40000, 40000),
        "depth16.png": png16(gray=False, w=64, h=48)[0],
        "cmyk.jpg": pil_bytes(Image.fromarray(scene(64, 48, seed=7)).convert("CMYK"), "JPEG"),
        "palette.png": pil_bytes(Image.fromarray(scene(64, 48, seed=8)).convert("P")),
        "alpha.png": pil_bytes(Image.fromarray(np.dstack([scene(64, 48, seed=9), np.full((48, 64), 90, np.uint8)]))),
        "gray.jpg": pil_bytes(Image.fromarray(scene(64, 48, seed=10)[:, :, 0]), "JPEG"),
        "exif-rot.jpg": exif_rotated_jpeg(6, w=64, h=48),  # displayed 48 x 64
        "one-pixel.png": _png(np.full((1, 1, 3), 128, np.uint8)),
        UNICODE: _png(scene(64, 48, seed=11)),
        "good-copy.jpg": _jpg(good),  # the same photo under another name
    }
    for name, data in files.items():
        _write(img / name, data)
    (img / "link-out.png").symlink_to(outside / "secret.png")
    names = list(files) + ["link-out.png", "missing.png", "../outside/secret.png", str(outside / "secret.png")]
    images = [{"id": i + 1, "file_name": n, "width": 64, "height": 48} for i, n in enumerate(names)]
    for im in images:
        if im["file_name"] == "exif-rot.jpg":
            im.update(width=48, height=64)
        if im["file_name"] == "one-pixel.png":
            im.update(width=1, height=1)
    anns = [{"id": i + 1, "image_id": im["id"], "category_id": 2, "bbox": [10, 8, 20, 16], "area": 320, "iscrowd": 0}
            for i, im in enumerate(images) if im["file_name"] != "one-pixel.png"]
    _write(d / "annotations.json", json.dumps({"images": images, "annotations": anns,
                                                "categories": [{"id": i + 1, "name": n} for i, n in enumerate(CATEGORIES)]}))
    cases = [
        Case("zero-byte", "image", "zero-byte file", "zero.jpg", "skipped", r"zero-byte"),
        Case("truncated-jpeg", "image", "JPEG cut at 300 bytes", "trunc.jpg", "skipped", r"truncated|corrupt"),
        Case("truncated-png", "image", "PNG cut at 200 bytes", "trunc.png", "skipped", r"truncated|corrupt"),
        Case("wrong-extension", "image", "a PNG named .jpg", "png-named.jpg", "kept"),
        Case("non-image", "image", "text bytes named .png", "text.png", "skipped", r"not an image"),
        Case("decompression-bomb", "image", "PNG header declaring 40000x40000 px", "bomb.png", "skipped",
             r"decompression bomb|exceeds data\.max_pixels"),
        Case("16-bit", "image", "16-bit RGB PNG", "depth16.png", "normalised", r"16-bit"),
        Case("cmyk", "image", "CMYK JPEG", "cmyk.jpg", "normalised", r"CMYK"),
        Case("palette", "image", "palette PNG", "palette.png", "normalised", r"palette"),
        Case("alpha", "image", "RGBA PNG", "alpha.png", "normalised", r"alpha"),
        Case("grayscale", "image", "grayscale JPEG", "gray.jpg", "normalised", r"grayscale"),
        Case("exif-rotated", "image", "JPEG with EXIF orientation 6", "exif-rot.jpg", "normalised", r"EXIF orientation"),
        Case("one-pixel", "image", "1x1 pixel PNG", "one-pixel.png", "skipped", r"too small|1x1"),
        Case("unicode-name", "image", "file name with non-ASCII letters", UNICODE, "kept"),
        Case("duplicate-name", "image", "the same photo under two names", "good-copy.jpg", "kept"),
        Case("symlink-out", "path", "image symlink resolving outside the root", "link-out.png", "skipped",
             r"outside the image root"),
        Case("missing-image", "annotation", "annotation for a file that does not exist", "missing.png",
             "skipped", r"missing"),
        Case("dotdot-path", "path", "file_name with ../", "secret.png", "skipped", r"escapes the image root"),
        Case("absolute-path", "path", "absolute file_name", "secret.png", "skipped", r"absolute path"),
    ]
    return {"images": str(img), "annotations": str(d / "annotations.json"), "format": "coco", "split": "train"}, cases


def _boxes_case_source(d: Path) -> tuple[dict, list[Case]]:
    """B COCO source with good images and every kind of bad box or record."""
    img = d / "images"
    for i in range(4):
        _write(img / f"boxes{i}.png", _png(scene(64, 48, seed=20 + i)))
    images = [{"id": i + 1, "file_name": f"boxes{i}.png", "width": 64, "height": 48} for i in range(4)]
    images += [{"id": 2, "file_name": "boxes3.png"},  # duplicate image id
               {"id": 9, "width": 64}]  # no file_name
    bad = [
        ("nan", [float("nan"), 4, 10, 10]), ("inf", [4, 4, float("inf"), 10]),
        ("negative", [20, 20, -8, 10]), ("zero-area", [20, 20, 0, 10]),
        ("outside", [200, 200, 10, 10]), ("partly-outside", [56, 40, 16, 16]), ("mostly-inside", [50, 30, 20, 20]),
    ]
    anns = [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [4, 4, 20, 14]}]
    anns += [{"id": 10 + k, "image_id": 1, "category_id": 1, "bbox": b} for k, (_, b) in enumerate(bad)]
    anns += [
        {"id": 30, "image_id": 2, "category_id": 77, "bbox": [4, 4, 10, 10]},  # unknown category
        {"id": 31, "image_id": 42, "category_id": 1, "bbox": [4, 4, 10, 10]},  # unknown image
        {"id": 32, "image_id": 3, "category_id": 1},  # no bbox
        {"id": 33, "image_id": 3, "category_id": 1, "bbox": "wide"},  # wrong type
        {"id": 1, "image_id": 3, "category_id": 1, "bbox": [2, 2, 10, 10]},  # duplicate annotation id
    ]
    text = json.dumps({"images": images, "annotations": anns,
                       "categories": [{"id": i + 1, "name": n} for i, n in enumerate(CATEGORIES)]})
    _write(d / "annotations.json", text)  # json writes NaN and Infinity tokens, as many tools do
    cases = [
        Case("box-nan", "annotation", "box with NaN", "boxes0.png", "box dropped", r"NaN"),
        Case("box-inf", "annotation", "box with inf", "boxes0.png", "box dropped", r"NaN/inf|inf"),
        Case("box-negative", "annotation", "negative width", "boxes0.png", "box dropped", r"negative"),
        Case("box-zero", "annotation", "zero-area box", "boxes0.png", "box dropped", r"zero-area"),
        Case("box-outside", "annotation", "box outside the image", "boxes0.png", "box dropped", r"outside the image"),
        Case("box-partly-outside", "annotation", "box 25% inside (clipped only when at least half inside)", "boxes0.png",
             "box dropped", r"25% inside"),
        Case("box-mostly-inside", "annotation", "box 63% inside", "boxes0.png", "box clipped", r"63% inside"),
        Case("unknown-category", "annotation", "unknown category id", "boxes1.png", "box dropped",
             r"unknown category"),
        Case("unknown-image", "annotation", "annotation for an unknown image id", "B-boxes/annotations.json",
             "annotation dropped", r"missing image id 42"),
        Case("missing-bbox", "annotation", "annotation without bbox", "B-boxes/annotations.json", "box dropped",
             r"bbox None"),
        Case("bbox-wrong-type", "annotation", "bbox that is a string", "B-boxes/annotations.json", "box dropped",
             r"bbox 'wide'"),
        Case("duplicate-image-id", "annotation", "two images with id 2", "boxes3.png", "skipped",
             r"duplicate image id"),
        Case("image-without-file-name", "annotation", "image record without file_name", "B-boxes/annotations.json",
             "skipped", r"file_name"),
        Case("duplicate-annotation-id", "annotation", "two annotations with id 1", "B-boxes/annotations.json",
             "annotation kept", r"duplicate annotation id 1"),
    ]
    return {"images": str(img), "annotations": str(d / "annotations.json"), "format": "coco", "split": "train"}, cases


def _broken_sources(root: Path) -> tuple[list[dict], list[Case]]:
    """Whole annotation files that cannot be read: the source is skipped, the run goes on."""
    srcs, cases = [], []
    for name, text, reason, what in [
        ("malformed", '{"images": [{"id": 1, "file_name": "x.png"', r"not valid JSON", "truncated COCO JSON"),
        ("wrong-schema", json.dumps({"images": {"1": "x.png"}, "annotations": "none"}), r"images|schema|list",
         "COCO JSON whose images is not a list"),
        ("not-utf8", b'{"images": [], "note": "\xff\xfe"}', r"UTF-8|decode|JSON", "annotation file not UTF-8"),
    ]:
        d = root / f"B-{name}"
        _write(d / "images" / "ok.png", _png(scene(64, 48, seed=30)))
        _write(d / "annotations.json", text)
        srcs.append({"images": str(d / "images"), "annotations": str(d / "annotations.json"), "format": "coco",
                     "split": "train"})
        cases.append(Case(f"coco-{name}", "annotation", what, f"B-{name}/annotations.json", "source skipped", reason))
    return srcs, cases


def _yolo_source(d: Path) -> tuple[dict, list[Case]]:
    """A YOLO source (Class A) with bad label lines and a non-UTF-8 file name."""
    img, lab = d / "images", d / "labels"
    for i in range(3):
        _write(img / f"yolo{i}.png", _png(scene(64, 48, seed=40 + i)))
    _write(img / NON_UTF8, _png(scene(64, 48, seed=44)))
    _write(lab / "classes.txt", "\n".join(CATEGORIES) + "\n")
    _write(lab / "yolo0.txt", "1 0.5 0.5 0.3 0.3\n1 0.5 0.5\n")  # second line: 3 fields
    _write(lab / "yolo1.txt", "2 1.5 0.5 0.2 0.2\n2 0.4 0.4 0.2 0.2\n")  # first: centre outside [0,1]
    _write(lab / "yolo2.txt", "9 0.5 0.5 0.2 0.2\nx y z w h\n0 0.3 0.3 0.2 0.2\n")  # class 9, non-numeric
    _write(lab / (Path(NON_UTF8).stem + ".txt"), "3 0.5 0.5 0.25 0.25\n")
    cases = [
        Case("yolo-field-count", "annotation", "YOLO line with 3 fields", "yolo0.txt", "box dropped", r"malformed"),
        Case("yolo-out-of-range", "annotation", "YOLO centre 1.5", "yolo1.png", "box dropped", r"outside the image"),
        Case("yolo-class-index", "annotation", "YOLO class 9 of 4", "yolo2.txt", "box dropped", r"class index 9"),
        Case("yolo-non-numeric", "annotation", "YOLO line of letters", "yolo2.txt", "box dropped", r"malformed"),
        Case("yolo-float-edges", "annotation", "YOLO box inside the image (float edges)", "yolo0.png", "clean"),
        Case("non-utf8-name", "image", "file name that is not UTF-8", "gear-", "kept"),
    ]
    return {"images": str(img), "annotations": str(lab), "format": "yolo"}, cases


def _labelme_source(d: Path, outside: Path) -> tuple[dict, list[Case]]:
    """A labelme source (Class B train) with bad shapes and foreign imagePaths."""
    img, js = d / "images", d / "json"
    for i in range(3):
        _write(img / f"lm{i}.png", _png(scene(64, 48, seed=50 + i)))
    _write(js / "lm0.json", _labelme("../images/lm0.png", [
        _rect("gear", 4, 4, 30, 20),
        {"label": "gear", "points": [[1, 1], [9, 9]], "shape_type": "polygon", "flags": {}},  # 2 points
        {"label": "bracket", "points": [[5, 5], [20, 5], [12, 18]], "shape_type": "polygon", "flags": {}},
    ]))
    _write(js / "lm1.json", _labelme(str(outside / "secret.png"), [_rect("gear", 2, 2, 10, 10)]))
    _write(js / "lm2.json", _labelme("../../outside/secret.png", [_rect("gear", 2, 2, 10, 10)]))
    _write(js / "lm3.json", _labelme("lm2.png", [_rect("gear", 2, 2, 12, 12)]))
    _write(js / "lm4.json", json.dumps({"shapes": "none", "imagePath": 7}))
    (js / "lm5.json").symlink_to(outside / "labels.json")
    cases = [
        Case("polygon-2-points", "annotation", "polygon with 2 points", "lm0.json", "box dropped", r"points|polygon"),
        Case("labelme-absolute", "path", "labelme imagePath absolute, outside the root", "lm1.json", "skipped",
             r"absolute|outside|not found"),
        Case("labelme-dotdot", "path", "labelme imagePath ../ out of the root", "lm2.json", "skipped",
             r"escapes|outside|not found"),
        Case("labelme-wrong-schema", "annotation", "labelme JSON whose shapes is a string", "lm4.json", "skipped",
             r"shapes"),
        Case("labelme-symlink-out", "path", "labelme JSON symlinked from outside the root", "lm5.json", "skipped",
             r"outside"),
    ]
    return {"images": str(img), "annotations": str(js), "format": "labelme", "split": "train"}, cases


def _unlabelled_source(d: Path, outside: Path) -> tuple[dict, list[Case]]:
    img = d / "images"
    _write(img / "pool0.png", _png(scene(64, 48, seed=60)))
    _write(img / "pool-zero.png", b"")
    _write(img / ("pool-" + NON_UTF8), _png(scene(64, 48, seed=61)))
    (img / "pool-link.png").symlink_to(outside / "secret.png")
    cases = [
        Case("unlabelled-zero-byte", "image", "zero-byte unlabelled photo", "pool-zero.png", "skipped", r"zero-byte"),
        Case("unlabelled-symlink-out", "path", "unlabelled symlink out of the root", "pool-link.png", "skipped",
             r"outside the image root"),
        Case("unlabelled-non-utf8", "image", "unlabelled photo with a non-UTF-8 name", "pool-gear-", "kept"),
    ]
    return {"images": str(img), "format": "none", "split": "unlabelled"}, cases


# ------------------------------------------------------------------------------------------ build
def build_corpus(root: Path) -> Corpus:
    """Write the corpus under `root` (inputs/, outside/, corpus.yaml); return it with its cases."""
    from pipeline.config import load_config
    from pipeline.demo.dataset import render_demo

    root = Path(root)
    inputs, outside, out = root / "inputs", root / "outside", root / "out"
    _write(outside / "secret.png", _png(np.full((48, 64, 3), 250, np.uint8)))
    _write(outside / "labels.json", _labelme("secret.png", [_rect("gear", 1, 1, 9, 9)]))
    tiny = load_config(REPO / "configs" / "tiny.yaml")
    demo = render_demo(tiny.data.demo, tiny.runtime.seed, inputs / "demo")

    def plain(src) -> dict:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in src.model_dump().items() if v is not None}

    a = [plain(s) for s in demo.a]
    b = [plain(s) for s in demo.b]
    cases: list[Case] = []
    single = [("B", lambda: _images_case_source(inputs / "B-images", outside)),
              ("B", lambda: _boxes_case_source(inputs / "B-boxes")),
              ("B", lambda: _labelme_source(inputs / "B-labelme", outside)),
              ("B", lambda: _unlabelled_source(inputs / "B-pool", outside)),
              ("A", lambda: _yolo_source(inputs / "A-yolo")),
              # Issue 14's classes: numeric extremes, control characters, pathological JSON, volume.
              ("A", lambda: extremes.yolo_source(inputs / "A-yolo-x")),
              ("B", lambda: extremes.coco_source(inputs / "B-coco-x")),
              ("B", lambda: extremes.labelme_source(inputs / "B-labelme-x")),
              ("B", lambda: extremes.names_source(inputs / "B-pool-names"))]
    # Each case's group is the input folder of its source: bench/reliability.py ingests a group
    # alone to tell which case broke a run that did not finish.
    for domain, build in single:
        src, more = build()
        (a if domain == "A" else b).append(src)
        cases += [replace(c, group=Path(src["images"]).relative_to(inputs).parts[0]) for c in more]
    for build in (lambda: _broken_sources(inputs), lambda: extremes.json_sources(inputs)):
        srcs, more = build()  # one source per case, in order
        b += srcs
        cases += [replace(c, group=Path(s["images"]).relative_to(inputs).parts[0]) for c, s in zip(more, srcs)]

    raw = yaml.safe_load((REPO / "configs" / "tiny.yaml").read_text())
    raw["profile"] = "corpus"
    raw["runtime"]["output_root"] = str(out)
    # the run must finish; the arms are the tiny profile's business (two keep it short)
    raw["detect"]["arms"] = ["real", "real+synthetic"]
    raw["data"] = {"name": "corpus", "source": "folders", "a": a, "b": b, "categories": CATEGORIES,
                   "split": {"use_source_split": False}, "max_annotation_mb": extremes.MAX_MB}
    config = _write(root / "corpus.yaml", yaml.safe_dump(raw, sort_keys=False, allow_unicode=True))
    corpus = Corpus(root, inputs, outside, out, config, cases)
    _write(root / "cases.json", json.dumps([asdict(c) for c in cases], indent=1, ensure_ascii=False))
    return corpus


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    c = build_corpus(Path(sys.argv[1]))
    print(f"{len(c.cases)} cases; inputs {c.inputs}; config {c.config}")
