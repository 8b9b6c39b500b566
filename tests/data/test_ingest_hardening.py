"""Ingest against inputs that used to slip through: file names that are not UTF-8, empty and
broken copies taken for duplicates, an output root inside the photos, and I/O errors at the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

sys.path.insert(0, str(Path(__file__).parent))  # ingest_helpers lives beside this file (importlib mode)
from ingest_helpers import coco_json, json_strings, scene, tree_hash, write_rgb
from pipeline.config import validate_config
from pipeline.data.ingest import IngestError, ingest

REPO = Path(__file__).resolve().parents[2]
LATIN1 = os.fsdecode(b"gear-\xff\xfe.png")  # how Python names a file whose name is not UTF-8


def config(out: Path, a: list[dict], b: list[dict]):
    return validate_config({"runtime": {"output_root": str(out), "workers": 1},
                            "data": {"name": "h", "source": "folders", "a": a, "b": b,
                                     "split": {"train": 1.0, "val": 0.0, "test": 0.0}}})


def labelled(folder: Path, names: list[str]) -> dict:
    for i, n in enumerate(names):
        if not (folder / n).exists():
            write_rgb(folder / n, 48, 32, seed=i)
    images = [{"id": i + 1, "file_name": n} for i, n in enumerate(names)]
    anns = [{"id": i + 1, "image_id": i + 1, "category_id": 1, "bbox": [4, 4, 12, 10]} for i in range(len(names))]
    return {"images": str(folder), "annotations": str(coco_json(folder.with_suffix(".json"), images, anns, ["gear"]))}



def test_names_that_are_not_utf8_are_percent_encoded_in_every_output(tmp_path):
    pool = tmp_path / "pool"
    pool.mkdir()
    (pool / LATIN1).write_bytes(cv2.imencode(".png", scene(48, 32, seed=5))[1].tobytes())  # cv2.imwrite: no such names
    (pool / ("broken-" + LATIN1)).write_bytes(b"not an image")  # its quarantine row names it
    a, b = labelled(tmp_path / "A", ["a.png"]), labelled(tmp_path / "B", ["b.png"])
    result = ingest(config(tmp_path / "out", [a], [b, {"images": str(pool), "format": "none"}]), progress=False)
    root = result.version.root
    for p in root.rglob("*"):
        os.fsencode(p.name).decode("utf-8")  # raises on a raw non-UTF-8 byte
        if p.suffix in (".json", ".jsonl"):
            text = p.read_text(encoding="utf-8")
            docs = [json.loads(x) for x in text.splitlines() if x] if p.suffix == ".jsonl" else [json.loads(text)]
            for s in (s for d in docs for s in json_strings(d)):
                s.encode("utf-8")  # raises on a lone surrogate ("\udcff")
    (im,) = result.version.coco("B", "unlabelled").images
    assert im.extra["original"] == "B1:gear-%FF%FE.png" and im.file_name.endswith("b1-gear-%FF%FE.png")
    (row,) = [r for r in result.quarantine if "broken" in r["file"]]
    assert row["file"] == str(pool / "broken-gear-%FF%FE.png")


def test_empty_and_broken_copies_are_not_noted_as_identical_photos(tmp_path):
    b = tmp_path / "B"
    b.mkdir()
    for name in ("e1.png", "e2.png"):
        (b / name).write_bytes(b"")
    for name in ("t1.png", "t2.png"):
        (b / name).write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)  # the same broken bytes twice
    write_rgb(b / "ok.png", 48, 32, seed=1)
    (b / "ok-copy.png").write_bytes((b / "ok.png").read_bytes())
    src = labelled(b, ["e1.png", "e2.png", "t1.png", "t2.png", "ok.png", "ok-copy.png"])
    result = ingest(config(tmp_path / "out", [labelled(tmp_path / "A", ["a.png"])], [src]), progress=False)
    notes = [r for r in result.notes if r["action"] == "all copies kept"]
    assert [r["reason"] for r in notes] == ["2 identical images in B_train"]
    assert {Path(f).name for f in notes[0]["file"].split(", ")} == {"ok.png", "ok-copy.png"}
    skipped = {Path(r["file"]).name: r["reason"] for r in result.quarantine if r["action"].startswith("image skipped")}
    assert skipped["e1.png"] == skipped["e2.png"] == "zero-byte file"
    assert "corrupt" in skipped["t1.png"] and "corrupt" in skipped["t2.png"]


def test_an_output_root_set_in_code_inside_the_inputs_is_refused_before_any_write(tmp_path):
    a, b = labelled(tmp_path / "A", ["a.png"]), labelled(tmp_path / "B", ["b.png"])
    cfg = config(tmp_path / "out", [a], [b])
    cfg.runtime.output_root = tmp_path / "B" / "out"  # a section assigned in code: no RunConfig check ran
    before = tree_hash(tmp_path)
    with pytest.raises(IngestError, match=r"runtime.output_root .* is inside data.b\[0\].images"):
        ingest(cfg, progress=False)
    assert tree_hash(tmp_path) == before


def test_cli_reports_an_os_error_in_one_line_naming_the_path(tmp_path):
    """No traceback for the machine's state (here: the output root lies under a file)."""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "pipeline.cli", "ingest", str(REPO / "configs" / "tiny.yaml"),
                           f"runtime.output_root={blocker / 'out'}"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: Not a directory: {blocker / 'out'}"), proc.stderr[-2000:]


def test_every_dataset_version_has_yolo_labels_and_a_data_yaml(tmp_path):
    """Roboflow-style: the version trains with `yolo train data=<version>/data.yaml` as it is."""
    import yaml

    write_rgb(tmp_path / "A" / "a.png", 48, 32, seed=99)  # not a copy of a B photo
    a = labelled(tmp_path / "A", ["a.png"])
    b = labelled(tmp_path / "B", [f"b{i}.png" for i in range(4)])
    cfg = validate_config({"runtime": {"output_root": str(tmp_path / "out"), "workers": 1},
                           "data": {"name": "h", "source": "folders", "a": [a], "b": [b],
                                    "split": {"train": 0.34, "val": 0.33, "test": 0.33}}})
    v = ingest(cfg, progress=False).version
    data = yaml.safe_load((v.root / "data.yaml").read_text())
    assert {k: data[k] for k in ("train", "val", "test", "nc")} == {
        "train": "images/B/train", "val": "images/B/val", "test": "images/B/test", "nc": 1}
    assert data["names"] == {0: "gear"}
    for domain, split in v.splits():
        if split == "unlabelled":
            continue
        for im in v.coco(domain, split).images:
            label = v.root / "labels" / Path(im.file_name).relative_to("images").with_suffix(".txt")
            assert label.read_text() == "0 0.208333 0.281250 0.250000 0.312500\n"  # [4, 4, 12, 10] on 48x32


def test_names_too_long_once_flattened_are_shortened_and_stay_unique(tmp_path):
    pool = tmp_path / "pool"
    deep = pool.joinpath(*["f" * 60] * 4)
    for name in ("leaf.png", "leaf2.png"):
        write_rgb(deep / name, seed=len(name))
    a, b = labelled(tmp_path / "A", ["a.png"]), labelled(tmp_path / "B", ["b.png"])
    result = ingest(config(tmp_path / "out", [a], [b, {"images": str(pool), "format": "none"}]), progress=False)
    names = [Path(im.file_name).name for im in result.version.coco("B", "unlabelled").images]
    assert len(set(names)) == 2 and all(len(n.encode()) <= 200 for n in names), names
    assert all(n.startswith("b1-" + "f" * 60) and "leaf" in n for n in names)
