"""Ingest across several sources: copies of held-out photos in other pools, sources that cannot be
read (the run must not pass with an empty domain), bad labelme paths, and renames."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))  # ingest_helpers lives beside this file (importlib mode)
from ingest_helpers import coco_json, write_rgb
from pipeline.config import validate_config
from pipeline.data.ingest import IngestError, ingest

CATS = ["gear", "hex_nut"]
TRAINING = {("A", "train"), ("A", "unlabelled"), ("B", "train"), ("B", "unlabelled")}


def coco_source(folder: Path, names_seeds: dict[str, int], **extra) -> dict:
    """folder/<name> photos (one box each) + folder.json; the SourceConfig dict for them."""
    for name, seed in names_seeds.items():
        write_rgb(folder / name, 48, 32, seed=seed)
    images = [{"id": i + 1, "file_name": n} for i, n in enumerate(names_seeds)]
    anns = [{"id": i + 1, "image_id": i + 1, "category_id": 1, "bbox": [4, 4, 12, 10]}
            for i in range(len(images))]
    ann = coco_json(folder.with_suffix(".json"), images, anns, CATS)
    return {"images": str(folder), "annotations": str(ann), **extra}


def run_config(out: Path, a: list[dict], b: list[dict], **data):
    return validate_config({"runtime": {"output_root": str(out), "workers": 1, "seed": 0},
                            "data": {"name": "multi", "source": "folders", "a": a, "b": b, **data}})


def shas(version, domain: str, split: str) -> dict[str, str]:
    return {im.sha256: im.extra["original"] for im in version.coco(domain, split).images}


# ------------------------------------------------------------------------------- held-out copies
def test_copies_of_held_out_photos_never_reach_a_training_split(tmp_path):
    src = tmp_path / "in"
    b_test = coco_source(src / "Btest", {"t.jpg": 1}, split="test")
    b_hashed = coco_source(src / "B", {f"b{i}.jpg": 10 + i for i in range(8)})  # split by content hash
    a = coco_source(src / "A", {"a.jpg": 30, "a_t.jpg": 1})  # a_t.jpg: byte copy of the B test photo
    pool = src / "pool"
    pool.mkdir()
    shutil.copy(src / "Btest" / "t.jpg", pool / "t_copy.jpg")
    for i in range(8):  # the unlabelled pool holds a copy of every hashed B photo
        shutil.copy(src / "B" / f"b{i}.jpg", pool / f"b{i}_copy.jpg")
    shutil.copy(src / "A" / "a.jpg", pool / "a_copy.jpg")  # A train + B unlabelled: both training
    write_rgb(pool / "u.jpg", 48, 32, seed=40)
    unlabelled = {"images": str(pool), "format": "none", "split": "unlabelled"}
    result = ingest(run_config(tmp_path / "out", [a], [b_test, b_hashed, unlabelled]), progress=False)
    v = result.version

    held = {}
    for split in ("val", "test"):
        held.update(shas(v, "B", split))
    assert len(held) >= 3  # the test photo and some hashed ones: the check below has something to find
    for domain, split in TRAINING:
        if (domain, split) in v.splits():
            leaked = set(shas(v, domain, split)) & set(held)
            assert not leaked, (domain, split, [held[s] for s in leaked])

    rows = {Path(r["file"]).name: r for r in result.quarantine}
    t = str(src / "Btest" / "t.jpg")
    assert rows["t_copy.jpg"]["reason"] == f"duplicate of held-out image {t} (B_test)"
    assert rows["t_copy.jpg"]["action"] == "image skipped"
    assert rows["a_t.jpg"]["reason"] == f"duplicate of held-out image {t} (B_test)"
    assert rows["a_t.jpg"]["action"] == "image skipped with its 1 boxes"
    assert sorted(shas(v, "A", "train").values()) == ["A0:a.jpg"]
    # Copies of B train photos and of the A photo stay (all in training splits) and are noted.
    b_train = shas(v, "B", "train")
    unl = set(shas(v, "B", "unlabelled").values())
    assert "B2:u.jpg" in unl and "B2:a_copy.jpg" in unl
    assert {f"B2:{o.split(':')[1][:-4]}_copy.jpg" for o in b_train.values()} <= unl
    notes = [r for r in result.notes if r["action"] == "all copies kept"]
    assert any(r["reason"] == "2 identical images in A_train, B_unlabelled" for r in notes)
    assert len(notes) == 1 + len(b_train)


# ----------------------------------------------------------------- sources that cannot be read
@pytest.fixture
def two_domains(tmp_path):
    src = tmp_path / "in"
    a = coco_source(src / "A", {f"a{i}.jpg": i for i in range(3)})
    b = coco_source(src / "B", {f"b{i}.jpg": 20 + i for i in range(4)})
    return src, a, b


def test_unreadable_only_source_of_a_domain_fails_and_says_why(two_domains, tmp_path):
    src, a, b = two_domains
    Path(a["annotations"]).write_text("{broken")
    with pytest.raises(IngestError) as e:
        ingest(run_config(tmp_path / "out", [a], [b]), progress=False)
    msg = str(e.value)
    assert msg.startswith(f"no labelled Class A image left from {src / 'A'}")
    assert "source skipped: not valid JSON" in msg and "A.json" in msg
    assert not list((tmp_path / "out" / "data" / "datasets").glob("multi-*"))


def test_every_image_of_a_domain_broken_fails_after_validation(two_domains, tmp_path):
    src, a, b = two_domains
    for p in (src / "A").iterdir():
        p.write_bytes(b"not a photo " + p.name.encode())  # readable, hashable, not decodable
    with pytest.raises(IngestError) as e:
        ingest(run_config(tmp_path / "out", [a], [b]), progress=False)
    assert "no labelled Class A image left" in str(e.value)
    assert ("quarantine: image skipped with its N boxes: 3 x not an image (unrecognised format) "
            "(e.g. a0.jpg, a1.jpg, +1 more)") in str(e.value)
    datasets = tmp_path / "out" / "data" / "datasets"
    assert [p.name for p in datasets.iterdir() if p.name != ".lock"] == []  # no version, no partial


def test_a_b_oracle_pool_alone_is_not_labelled_real_b(two_domains, tmp_path):
    _, a, b = two_domains
    with pytest.raises(IngestError, match="no labelled Class B image left"):
        ingest(run_config(tmp_path / "out", [a], [{**b, "split": "oracle"}]), progress=False)


def test_yolo_without_class_names_is_a_configuration_error(two_domains, tmp_path):
    src, _, b = two_domains
    write_rgb(src / "Y" / "images" / "y.png", 40, 40, seed=5)
    (src / "Y" / "labels").mkdir()
    (src / "Y" / "labels" / "y.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    yolo = {"images": str(src / "Y" / "images"), "annotations": str(src / "Y" / "labels"), "format": "yolo"}
    with pytest.raises(IngestError, match=r"^data.a\[0\].names: YOLO class names not found"):
        ingest(run_config(tmp_path / "out", [yolo], [b]), progress=False)
    with pytest.raises(IngestError, match=r"^data.a\[0\].names: YOLO class names file .*nope.txt not found"):
        named = {**yolo, "names": [str(src / "nope.txt")]}
        ingest(run_config(tmp_path / "out", [named], [b]), progress=False)
    (src / "Y" / "labels" / "classes.txt").write_text("\n")
    with pytest.raises(IngestError, match=r"classes.txt: no class names in it"):
        ingest(run_config(tmp_path / "out", [yolo], [b]), progress=False)
    (src / "Y" / "labels" / "classes.txt").write_text("gear\nhex_nut\n")
    assert ingest(run_config(tmp_path / "out", [yolo], [b]), progress=False).counts["A_train"]["boxes"] == 1


def test_annotations_of_the_wrong_kind_are_a_configuration_error(two_domains, tmp_path):
    src, a, b = two_domains
    with pytest.raises(IngestError, match=r"data.b\[0\].annotations: .* is not a COCO JSON file"):
        ingest(run_config(tmp_path / "out", [a], [{**b, "annotations": str(src / "B")}]), progress=False)
    with pytest.raises(IngestError, match=r"data.b\[0\].annotations: .* is not a folder of labelme files"):
        ingest(run_config(tmp_path / "out", [a], [{**b, "format": "labelme"}]), progress=False)


def test_cli_exits_non_zero_when_a_domain_is_empty(two_domains, tmp_path):
    from pipeline.cli import app, commands  # noqa: F401  (commands registers the sub-commands)

    src, a, b = two_domains
    Path(b["annotations"]).write_text("[]")  # valid JSON, not COCO
    path = tmp_path / "cfg.yaml"
    path.write_text(run_config(tmp_path / "out", [a], [b]).to_yaml())
    res = CliRunner().invoke(app, ["ingest", str(path)])
    assert res.exit_code == 1, res.output
    assert "no labelled Class B image left" in res.output and "not a COCO file" in res.output


# -------------------------------------------------------------------------- labelme bad paths
def labelme(path: Path, image_path: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"imagePath": image_path, "imageData": None, "shapes": [
        {"label": "pit", "points": [[1, 2], [9, 3], [5, 8]], "shape_type": "polygon"}]}))
    return path


def test_labelme_bad_image_paths_name_the_json_and_quote_the_path(tmp_path):
    images, labels = tmp_path / "lm" / "images", tmp_path / "lm" / "labels"
    write_rgb(images / "ok.jpg", 40, 30, seed=1)
    outside = write_rgb(tmp_path / "elsewhere" / "p.png", 40, 30, seed=2)
    (images / "ext").symlink_to(outside.parent, target_is_directory=True)  # a folder link leaving the root
    labelme(labels / "ok.json", "ok.jpg")
    absolute = labelme(labels / "absolute.json", str(outside))
    dotdot = labelme(labels / "dotdot.json", "../../elsewhere/p.png")
    linked = labelme(labels / "linked.json", "ext/p.png")
    cfg = validate_config({"runtime": {"output_root": str(tmp_path / "out")}, "data": {
        "name": "lm", "source": "folders", "split": {"train": 1.0, "val": 0.0, "test": 0.0},
        "b": [{"images": str(images), "annotations": str(labels), "format": "labelme"}]}})
    result = ingest(cfg, progress=False)
    rows = {r["file"]: r for r in result.quarantine}
    assert set(rows) == {str(absolute), str(dotdot), str(linked)}, result.quarantine
    assert rows[str(absolute)]["reason"].startswith(f"absolute path '{outside}'")
    assert rows[str(dotdot)]["reason"].startswith("path '../../elsewhere/p.png' escapes the image root")
    assert rows[str(linked)]["reason"].startswith("symlink 'ext/p.png' resolves outside the image root")
    assert all(r["action"] == "image skipped with its 1 boxes" for r in rows.values())
    assert [im.extra["original"] for im in result.version.coco("B", "train").images] == ["B0:ok.jpg"]


# ------------------------------------------------------------------------------------- renames
def test_renaming_and_removing_photos_never_moves_the_others(tmp_path):
    split = {"train": 0.34, "val": 0.33, "test": 0.33}
    first = coco_source(tmp_path / "v1" / "B", {f"p{i:02d}.jpg": i for i in range(30)})
    one = ingest(run_config(tmp_path / "out", [], [first], split=split), progress=False).version
    before = {sha: s for s in ("train", "val", "test") for sha in shas(one, "B", s)}
    # The same photos under new names, ten others gone, listed in another order.
    renamed = {f"renamed/{i:02d}-photo.jpg": i for i in range(29, 9, -1)}
    second = coco_source(tmp_path / "v2" / "B", renamed)
    two = ingest(run_config(tmp_path / "out", [], [second], split=split), progress=False).version
    after = {sha: s for s in ("train", "val", "test") for sha in shas(two, "B", s)}
    assert len(after) == 20 and set(after) <= set(before)
    assert {sha: before[sha] for sha in after} == after
    assert set(after.values()) == {"train", "val", "test"}
