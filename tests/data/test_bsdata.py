"""Real data: BSData (394 steel ball-screw photos, labelme, 485 `Pitting` polygons) as Class B,
with the authors' train/test split from image_data.json."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from pycocotools.coco import COCO

from pipeline.config import validate_config
from pipeline.data.ingest import ingest


@pytest.fixture(scope="module")
def bs_version(bsdata: Path, tmp_path_factory):
    cfg = validate_config({
        "runtime": {"output_root": str(tmp_path_factory.mktemp("bs")), "workers": 2},
        "data": {
            "name": "bsdata", "source": "folders",
            "b": [{"images": str(bsdata / "images"), "annotations": str(bsdata / "labels"), "format": "labelme",
                   "split_file": str(bsdata / "image_data.json")}],
            "split": {"use_source_split": True, "val_from_source_train": 0.2},
        },
    })
    return ingest(cfg, progress=False)


def test_counts_and_authors_split(bs_version, bsdata):
    result = bs_version
    v = result.version
    assert v.category_names == ["Pitting"]
    sets = {s: v.coco("B", s) for s in ("train", "val", "test")}
    images = sum(len(c.images) for c in sets.values())
    boxes = sum(len(c.annotations) for c in sets.values())
    dropped_images = [r for r in result.quarantine if r["action"].startswith("image skipped")]
    dropped_boxes = [r for r in result.quarantine if r["action"] == "box dropped"]
    # Everything is accounted for: kept + quarantined = what the authors published.
    assert images + len(dropped_images) == 394
    assert boxes + len(dropped_boxes) == 485
    assert images == 394 and boxes == 485 and result.quarantine == []

    authors = {r["filename"]: r["train_test_split"] for r in json.loads((bsdata / "image_data.json").read_text())["images"]}
    got = {im.extra["original"].split(":", 1)[1]: s for s, c in sets.items() for im in c.images}
    assert {f for f, s in got.items() if s == "test"} == {f for f in got if authors[f] == "test"}
    assert Counter(authors[f] for f in got) == {"train": 324, "test": 70}
    assert len(sets["test"].images) == 70 and len(sets["train"].images) + len(sets["val"].images) == 324
    assert 0.1 < len(sets["val"].images) / 324 < 0.3
    for s in ("train", "val", "test"):
        COCO(str(v.annotation_path("B", s)))
    # JPEGs that need no normalisation are stored byte for byte.
    im = sets["test"].images[0]
    assert v.image_path(im).read_bytes() == (bsdata / "images" / im.extra["original"].split(":", 1)[1]).read_bytes()


def test_every_polygon_becomes_a_box_containing_it(bs_version, bsdata):
    v = bs_version.version
    boxes: dict[str, list[list[float]]] = {}
    sizes: dict[str, tuple[int, int]] = {}
    for s in ("train", "val", "test"):
        c = v.coco("B", s)
        names = {im.id: im.extra["original"].split(":", 1)[1] for im in c.images}
        sizes.update({names[im.id]: (im.width, im.height) for im in c.images})
        for a in c.annotations:
            boxes.setdefault(names[a.image_id], []).append(a.bbox)
    n = 0
    for jf in sorted((bsdata / "labels").glob("*.json")):
        d = json.loads(jf.read_text())
        name = d["imagePath"]
        assert sizes[name] == (d["imageWidth"], d["imageHeight"])
        for shape in d["shapes"]:
            pts = np.array(shape["points"])
            x0, y0 = pts.min(0)
            x1, y1 = pts.max(0)
            # The box contains the polygon and is its tight extent (rounded to 0.001 px on disk).
            match = [b for b in boxes[name] if b[0] <= x0 + 1e-3 and b[1] <= y0 + 1e-3
                     and b[0] + b[2] >= x1 - 2e-3 and b[1] + b[3] >= y1 - 2e-3]
            assert any(np.allclose(b, [x0, y0, x1 - x0, y1 - y0], atol=2e-3) for b in match), (name, shape["points"])
            n += 1
    assert n == 485
