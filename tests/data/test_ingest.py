"""The ingest stage end to end on hand-made folders holding every kind of bad input, plus the
tiny demo profile: quarantine rows, untouched inputs, caching, strict mode, categories, CLI."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))  # ingest_helpers lives beside this file (importlib mode)
from ingest_helpers import coco_json, exif_rotated_jpeg, pil_bytes, png16, png_header_only, scene, tree_hash, write_rgb
from pipeline.config import validate_config
from pipeline.data.ingest import IngestError, ingest

CATS = ["gear", "hex_nut"]


def make_inputs(root: Path) -> Path:
    """root/B (COCO, every bad case), root/B2 (a duplicate given to test), root/A (YOLO)."""
    b = root / "B" / "images"
    write_rgb(b / "good1.jpg", 60, 40, seed=1)
    write_rgb(b / "good2.png", 60, 40, seed=2)
    (b / "zero.png").write_bytes(b"")
    jpg = cv2.imencode(".jpg", scene(64, 64))[1].tobytes()
    (b / "trunc.jpg").write_bytes(jpg[: len(jpg) // 2])
    (b / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    (b / "text.png").write_text("not an image at all\n")
    (b / "gray16.png").write_bytes(png16(gray=True)[0])
    (b / "gray.png").write_bytes(pil_bytes(Image.fromarray(scene(30, 20)[:, :, 0])))
    (b / "palette.png").write_bytes(pil_bytes(Image.fromarray(scene(30, 20)).convert("P")))
    (b / "alpha.png").write_bytes(pil_bytes(Image.fromarray(np.dstack([scene(30, 20), np.full((20, 30), 128, np.uint8)]))))
    (b / "exif.jpg").write_bytes(exif_rotated_jpeg(6, w=40, h=24))  # displayed 24 x 40
    (b / "bomb.png").write_bytes(png_header_only(9000, 9000))
    (root / "outside.png").write_bytes((b / "good2.png").read_bytes())
    (b / "link.png").symlink_to(root / "outside.png")
    images = [
        {"id": 1, "file_name": "good1.jpg", "width": 60, "height": 40},
        {"id": 2, "file_name": "good2.png", "width": 60, "height": 40},
        {"id": 3, "file_name": "zero.png"}, {"id": 4, "file_name": "trunc.jpg"},
        {"id": 5, "file_name": "corrupt.png"}, {"id": 6, "file_name": "text.png"},
        {"id": 7, "file_name": "gray16.png"}, {"id": 8, "file_name": "gray.png"},
        {"id": 9, "file_name": "palette.png"}, {"id": 10, "file_name": "alpha.png"},
        {"id": 11, "file_name": "exif.jpg", "width": 24, "height": 40},
        {"id": 12, "file_name": "bomb.png"},
        {"id": 13, "file_name": "missing.png"},
        {"id": 14, "file_name": str(root / "outside.png")},
        {"id": 15, "file_name": "../outside.png"},
        {"id": 16, "file_name": "link.png"},
        {"id": 2, "file_name": "dup-id.png"},
        {"id": 17, "file_name": "good1.jpg"},
    ]
    box = lambda i, img, cat, bbox: {"id": i, "image_id": img, "category_id": cat, "bbox": bbox}  # noqa: E731
    anns = [
        box(1, 1, 1, [5, 5, 10, 10]),
        box(2, 1, 2, [55, 30, 10, 10]),       # 50% inside: clipped to [55, 30, 5, 10]
        box(3, 1, 1, [float("nan"), 1, 2, 2]),
        box(4, 1, 1, [5, 5, 0, 4]),
        box(5, 1, 1, [5, 5, -3, 4]),
        box(6, 1, 1, [100, 100, 5, 5]),
        box(7, 1, 9, [5, 5, 10, 10]),         # unknown category id
        box(8, 99, 1, [5, 5, 10, 10]),        # no such image
        box(9, 11, 2, [2, 20, 10, 12]),       # in displayed (rotated) coordinates
        box(10, 4, 1, [1, 1, 5, 5]),
    ]
    coco_json(root / "B" / "ann.json", images, anns, CATS)
    # The same photo as good1.jpg in a held-out source: it must not stay in train.
    write_rgb(root / "B2" / "images" / "good1_copy.jpg", 60, 40, seed=1)
    coco_json(root / "B2" / "ann.json", [{"id": 1, "file_name": "good1_copy.jpg"}],
              [box(1, 1, 1, [5, 5, 10, 10])], CATS)
    a = root / "A"
    for i in range(3):
        write_rgb(a / "images" / f"a{i}.png", 50, 50, seed=10 + i)
    (a / "labels").mkdir()
    (a / "labels" / "classes.txt").write_text("gear\nhex_nut\n")
    (a / "labels" / "a0.txt").write_text("0 0.5 0.5 0.2 0.2\n1 0.2 0.2 0.1 0.1\n")
    (a / "labels" / "a1.txt").write_text("1 0.5 0.5 0.4 0.4\n")
    return root


def config(inputs: Path, out: Path, **data):
    raw = {
        "runtime": {"output_root": str(out), "workers": 2, "seed": 0},
        "data": {
            "name": "mixed", "source": "folders", "shard_size": 4,
            "a": [{"images": str(inputs / "A" / "images"), "annotations": str(inputs / "A" / "labels"), "format": "yolo"}],
            "b": [
                {"images": str(inputs / "B" / "images"), "annotations": str(inputs / "B" / "ann.json"), "split": "train"},
                {"images": str(inputs / "B2" / "images"), "annotations": str(inputs / "B2" / "ann.json"), "split": "test"},
            ],
            **data,
        },
    }
    return validate_config(raw)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    inputs = make_inputs(tmp_path_factory.mktemp("inputs"))
    before = tree_hash(inputs)
    out = tmp_path_factory.mktemp("out")
    result = ingest(config(inputs, out), progress=False)
    return inputs, out, before, result


def rows_for(result, name: str, notes: bool = False) -> list[tuple[str, str]]:
    rows = result.notes if notes else result.quarantine
    return [(r["reason"], r["action"]) for r in rows if r["file"].rsplit(":", 1)[-1].endswith(name)
            or r["file"].endswith("#" + name)]


def test_raw_inputs_are_never_modified(built):
    inputs, _, before, _ = built
    assert tree_hash(inputs) == before


EXPECTED = {
    "zero.png": ("zero-byte file", "image skipped"),
    "trunc.jpg": ("truncated image data", "image skipped with its 1 boxes"),
    "corrupt.png": ("corrupt image header", "image skipped"),
    "text.png": ("not an image", "image skipped"),
    "gray16.png": ("16-bit", "normalised to 8-bit RGB PNG (image kept)"),
    "gray.png": ("grayscale", "normalised to 8-bit RGB PNG (image kept)"),
    "palette.png": ("palette", "normalised to 8-bit RGB PNG (image kept)"),
    "alpha.png": ("alpha channel", "normalised to 8-bit RGB PNG (image kept)"),
    "exif.jpg": ("EXIF orientation 6 applied to pixels", "normalised to 8-bit RGB PNG (image kept)"),
    "bomb.png": ("9000x9000 = 81000000 px exceeds data.max_pixels", "image skipped"),
    "dup-id.png": ("duplicate image id 2", "image skipped (first kept)"),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_bad_image_has_its_row(built, name):
    """Problems are quarantine rows; an image kept as shown, only re-encoded, is a note instead."""
    result = built[3]
    reason, action = EXPECTED[name]
    note = action.startswith("normalised")
    assert any(reason in r and a == action for r, a in rows_for(result, name, note)), rows_for(result, name, note)
    assert not rows_for(result, name, not note)


def test_bad_paths_in_annotations_name_the_annotation_file(built):
    """A bad file_name is the annotation's fault: the row names ann.json and the image id, the
    reason quotes the offending path."""
    inputs, result = built[0], built[3]
    ann = inputs / "B" / "ann.json"
    expected = {
        13: "missing image file 'missing.png' under",
        14: f"absolute path '{inputs / 'outside.png'}' (must be relative to",
        15: "path '../outside.png' escapes the image root",
        16: "symlink 'link.png' resolves outside the image root",
    }
    for image_id, reason in expected.items():
        rows = [r for r in result.quarantine if r["file"] == f"{ann}#image {image_id}"]
        assert len(rows) == 1 and reason in rows[0]["reason"] and rows[0]["action"] == "image skipped", rows
    assert not any(r["file"] == str(inputs / "outside.png") for r in result.quarantine)


def test_box_and_annotation_rows(built):
    result = built[3]
    good = rows_for(result, "good1.jpg")
    expected = [
        ("partly outside the image (50% inside the 60x40 image)", "box clipped"),
        ("has NaN/inf", "box dropped"),
        ("is zero-area", "box dropped"),
        ("is negative width/height", "box dropped"),
        ("is outside the image (0% inside", "box dropped"),
        ("unknown category id 9", "box dropped"),
        ("duplicate file name (image ids 1 and 17)", "image skipped (first kept)"),
    ]
    for reason, action in expected:
        assert any(reason in r and a == action for r, a in good), (reason, good)
    assert any(r["reason"] == "points to missing image id 99" and r["action"] == "annotation dropped"
               for r in result.quarantine)
    assert any("identical images given different splits ['test', 'train']" in r["reason"] for r in result.quarantine)


def test_version_contents(built):
    _, out, _, result = built
    v = result.version
    assert v.root.parent == out / "data" / "datasets" and v.id.startswith("mixed-") and not result.cached
    assert v.category_names == CATS and v.manifest["kind"] == "dataset"
    for name in ("config.yaml", "quarantine.jsonl", "card/README.md", "card/samples.png",
                 "card/class_balance.png", "card/box_sizes.png"):
        assert (v.root / name).is_file(), name
    for domain, split in v.splits():
        COCO(str(v.annotation_path(domain, split)))  # every split loads with pycocotools
    b_train, b_test = v.coco("B", "train"), v.coco("B", "test")
    kept = sorted(im.extra["original"].split(":", 1)[1] for im in b_train.images)
    assert kept == ["alpha.png", "exif.jpg", "good2.png", "gray.png", "gray16.png", "palette.png"]
    # good1.jpg has a byte-identical copy in the test source: both went to test.
    assert sorted(im.extra["original"] for im in b_test.images) == ["B0:good1.jpg", "B1:good1_copy.jpg"]
    g1 = next(im for im in b_test.images if im.extra["original"] == "B0:good1.jpg")
    assert sorted(a.bbox for a in b_test.annotations if a.image_id == g1.id) == [[5, 5, 10, 10], [55, 30, 5, 10]]
    assert v.image_path(g1).read_bytes() == (built[0] / "B" / "images" / "good1.jpg").read_bytes()  # copied as is
    for im in b_train.images + b_test.images:
        rgb = v.read_rgb(im)
        assert rgb.dtype == np.uint8 and rgb.shape == (im.height, im.width, 3)
    exif = next(im for im in b_train.images if im.extra["original"].endswith("exif.jpg"))
    assert (exif.width, exif.height) == (24, 40) and exif.file_name.endswith(".png")
    assert [a.bbox for a in b_train.annotations if a.image_id == exif.id] == [[2, 20, 10, 12]]
    a_train = v.coco("A", "train")
    assert len(a_train.images) == 3 and a_train.class_counts() == {"gear": 1, "hex_nut": 2}
    assert result.counts["A_train"] == {"images": 3, "boxes": 3}
    assert v.manifest["summary"]["quarantined"] == len(result.quarantine)
    lines = (v.root / "quarantine.jsonl").read_text().splitlines()
    assert [json.loads(x) for x in lines] == result.quarantine


def test_same_inputs_are_cached_and_config_changes_make_a_new_version(built, tmp_path):
    inputs, out, _, first = built
    stamp = {p: p.stat().st_mtime_ns for p in first.version.root.rglob("*") if p.is_file()}
    again = ingest(config(inputs, out), progress=False)
    assert again.cached and again.version.root == first.version.root
    assert {p: p.stat().st_mtime_ns for p in first.version.root.rglob("*") if p.is_file()} == stamp
    assert again.counts == first.counts and again.quarantine == first.quarantine
    # Parallelism and shard size do not change the output, so not the id either.
    same = ingest(config(inputs, out, shard_size=100), progress=False)
    assert same.cached and same.version.id == first.version.id
    other = ingest(config(inputs, tmp_path, clip_min_inside=0.9), progress=False)
    assert other.version.id != first.version.id
    assert any("partly outside" in r and a == "box dropped" for r, a in
               [(r["reason"], r["action"]) for r in other.quarantine if "good1.jpg" in r["file"]]) is False
    assert any("50% inside" in r["reason"] and r["action"] == "box dropped" for r in other.quarantine)


def test_strict_raises_on_the_first_problem_and_writes_nothing(built, tmp_path):
    inputs = built[0]
    with pytest.raises(IngestError, match=r"\(--strict\)"):
        ingest(config(inputs, tmp_path), strict=True, progress=False)
    assert not list((tmp_path / "data" / "datasets").glob("mixed-*"))


def test_category_mismatch_is_a_clear_error(tmp_path):
    inputs = make_inputs(tmp_path / "in")
    (inputs / "A" / "labels" / "classes.txt").write_text("gear\nHex Nut\n")
    with pytest.raises(IngestError) as e:
        ingest(config(inputs, tmp_path / "out"), progress=False)
    assert "A = ['Hex Nut', 'gear'], B = ['gear', 'hex_nut']" in str(e.value)
    fixed = ingest(config(inputs, tmp_path / "out", category_map={"Hex Nut": "hex_nut"}), progress=False)
    assert fixed.version.category_names == CATS
    with pytest.raises(IngestError, match=r"categories \['hex_nut'\] are not in data.categories"):
        ingest(config(inputs, tmp_path / "out", categories=["gear"], category_map={"Hex Nut": "hex_nut"}),
               progress=False)


def test_tiny_demo_profile(tiny_dataset, tiny_config):
    demo = tiny_config.data.demo
    m = tiny_dataset.manifest
    counts = m["summary"]["counts"]
    assert counts["A_train"]["images"] == demo.n_a
    assert counts["B_train"]["images"] == demo.n_b_train and counts["B_test"]["images"] == demo.n_b_test
    assert counts["B_val"]["images"] == demo.n_b_val and counts["B_unlabelled"]["images"] == demo.n_b_unlabelled
    assert counts["B_oracle"]["images"] == demo.n_b_oracle
    assert tiny_dataset.category_names == ["tensile_specimen", "gear", "bracket", "hex_nut"]
    assert m["summary"]["quarantined"] == 0 and m["parents"][0]["kind"] == "demo-render"
    again = ingest(tiny_config, progress=False)
    assert again.cached and again.version.root == tiny_dataset.root


def test_cli(built, tmp_path):
    from pipeline.cli import app, commands  # noqa: F401  (commands registers the sub-commands)

    inputs = built[0]
    cfg = config(inputs, tmp_path)
    path = tmp_path / "cfg.yaml"
    path.write_text(cfg.to_yaml())
    runner = CliRunner()
    ok = runner.invoke(app, ["ingest", str(path), "runtime.workers=1"])
    assert ok.exit_code == 0, ok.output
    version_dir = Path(ok.stdout.strip().splitlines()[-1])
    assert version_dir.is_dir() and version_dir.parent == tmp_path / "data" / "datasets"
    assert "B_train" in ok.output
    # The quarantine summary: rows per action, reasons with example files, where the full list is.
    out = ok.output
    n = len((version_dir / "quarantine.jsonl").read_text().splitlines())
    assert f"quarantine: {n} rows by action and reason:" in out
    assert "normalised to 8-bit RGB PNG" not in out.split("notes:")[0]  # kept images are notes
    assert "notes: 6 rows about images kept as they are:\n  5 x normalised to 8-bit RGB PNG (image kept)\n" in out
    assert "  1 x all copies kept\n" in out and f"full list: {version_dir / 'notes.jsonl'}" in out
    assert "    1 x missing image file '…' under … (e.g. ann.json#image 13)\n" in out
    assert f"full list: {version_dir / 'quarantine.jsonl'}" in out
    strict = runner.invoke(app, ["ingest", str(path), "--strict"])
    assert strict.exit_code == 1 and "--strict" in strict.output
    bad = runner.invoke(app, ["ingest", str(path), "data.shard_sise=3"])
    assert bad.exit_code == 2 and "shard_size" in bad.output


def test_labelme_source_with_embedded_image(tmp_path):
    import base64

    src = tmp_path / "lm"
    write_rgb(src / "images" / "on_disk.jpg", 50, 30, seed=3)
    embedded = cv2.imencode(".png", scene(40, 20, seed=4)[:, :, ::-1])[1].tobytes()
    (src / "labels").mkdir()
    (src / "labels" / "on_disk.json").write_text(json.dumps({
        "imagePath": "on_disk.jpg", "imageData": None, "imageWidth": 50, "imageHeight": 30,
        "shapes": [{"label": "pit", "points": [[1, 2], [9, 3], [5, 8]], "shape_type": "polygon"}]}))
    (src / "labels" / "inline.json").write_text(json.dumps({
        "imagePath": "gone.png", "imageData": base64.b64encode(embedded).decode(), "imageWidth": 40,
        "imageHeight": 20, "shapes": [{"label": "pit", "points": [[2, 2], [12, 10]], "shape_type": "rectangle"}]}))
    cfg = validate_config({"runtime": {"output_root": str(tmp_path / "out")}, "data": {
        "name": "lm", "source": "folders", "split": {"train": 1.0, "val": 0.0, "test": 0.0},
        "b": [{"images": str(src / "images"), "annotations": str(src / "labels"), "format": "labelme"}]}})
    result = ingest(cfg, progress=False)
    train = result.version.coco("B", "train")
    assert result.quarantine == [] and len(train.images) == 2
    inline = next(im for im in train.images if "inline" in im.extra["original"])
    assert result.version.image_path(inline).read_bytes() == embedded
    assert [a.bbox for a in train.annotations if a.image_id == inline.id] == [[2, 2, 10, 8]]


def test_configuration_mistakes_are_fatal_and_named(tmp_path):
    inputs = make_inputs(tmp_path / "in")
    cfg = config(inputs, tmp_path / "out")
    cfg.data.b[0].annotations = inputs / "B" / "typo.json"
    with pytest.raises(IngestError, match=r"data.b\[0\].annotations: .*typo.json not found"):
        ingest(cfg, progress=False)
    cfg = config(inputs, tmp_path / "out")
    cfg.data.a[0].images = inputs / "nowhere"
    with pytest.raises(IngestError, match=r"data.a\[0\].images: folder .*nowhere not found"):
        ingest(cfg, progress=False)
    # A source whose annotation file is unreadable is one bad file: quarantined, the rest goes on.
    (inputs / "B2" / "ann.json").write_text("{broken")
    result = ingest(config(inputs, tmp_path / "out"), progress=False)
    assert any(r["action"] == "source skipped" and "not valid JSON" in r["reason"] for r in result.quarantine)
    assert result.counts["B_train"]["images"] > 0


def test_transient_io_errors_are_retried(tmp_path, monkeypatch):
    import pipeline.stages.base as runner
    import pipeline.stages.ingest as ing  # the ingest stage's unit calls validate_shard

    inputs = make_inputs(tmp_path / "in")
    real, calls = ing.validate_shard, []

    def flaky(shard, build_dir):
        calls.append(shard.index)
        if calls.count(shard.index) == 1 and shard.index == 1:
            raise OSError(5, "Input/output error")
        return real(shard, build_dir)

    monkeypatch.setattr(ing, "validate_shard", flaky)
    monkeypatch.setattr(runner.time, "sleep", lambda s: None)
    result = ingest(config(inputs, tmp_path / "out"), progress=False)
    assert calls.count(1) == 2 and result.counts["B_train"]["images"] == 6


def test_two_concurrent_runs_build_one_version(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    inputs = make_inputs(tmp_path / "in")
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: ingest(config(inputs, tmp_path / "out"), progress=False), range(2)))
    assert results[0].version.root == results[1].version.root
    assert sorted(r.cached for r in results) == [False, True]
    leftovers = [p.name for p in (tmp_path / "out" / "data" / "datasets").iterdir() if p.name != ".lock"]
    assert leftovers == [results[0].version.root.name]  # no half-built temp folders
