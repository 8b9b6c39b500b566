"""The procedural demo set: determinism, independent streams, tight boxes, visibility, splits,
the look of the two domains, COCO output and the `metalize demo-data` command."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from pipeline.config import DemoDataConfig, load_config
from pipeline.demo import dataset as demo
from pipeline.demo.dataset import (
    DemoDataError,
    demo_dir,
    render_demo,
    render_one,
    scene_rng,
    split_counts,
)
from pipeline.demo.parts import CATEGORIES
from pipeline.demo.render import render_scene

REPO = Path(__file__).resolve().parents[2]
SMALL = DemoDataConfig(
    image_size=64, n_a=6, n_b_train=3, n_b_val=2, n_b_test=4, n_b_unlabelled=3, n_b_oracle=2
)


def _files(root: Path) -> dict[str, bytes]:
    """Every image and annotation file (render.json holds timings, so it is left out)."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.suffix in (".png", ".json") and p.name != "render.json"
    }


@pytest.fixture(scope="module")
def small_render(tmp_path_factory: pytest.TempPathFactory):
    return render_demo(SMALL, 7, tmp_path_factory.mktemp("demo") / "out")


# ---------------------------------------------------------------------------------- reproducibility
def test_same_seed_same_bytes_other_seed_other_images(small_render, tmp_path, monkeypatch):
    again = render_demo(SMALL, 7, tmp_path / "again")
    assert _files(again.root) == _files(small_render.root)
    monkeypatch.setattr(demo, "PARALLEL_PIXELS", 0)  # use the pool even for this tiny set
    parallel = render_demo(SMALL, 7, tmp_path / "parallel", workers=2)
    assert _files(parallel.root) == _files(small_render.root)
    other = _files(render_demo(SMALL, 8, tmp_path / "other").root)
    first = _files(small_render.root)
    pngs = [k for k in first if k.endswith(".png")]
    assert sum(first[k] != other[k] for k in pngs) == len(pngs)


def test_progress_counts_every_rendered_image(small_render, tmp_path, capsys):
    shown = render_demo(SMALL, 7, tmp_path / "shown", progress=True)
    total = sum(split_counts(SMALL).values())
    assert f"render demo data: {total}/{total} img in " in capsys.readouterr().err
    assert _files(shown.root) == _files(small_render.root)
    render_demo(SMALL, 7, tmp_path / "quiet")
    assert capsys.readouterr().err == ""


def test_changing_one_split_count_leaves_other_images_unchanged(small_render, tmp_path):
    bigger = SMALL.model_copy(update={"n_b_test": 9, "n_a": 8})
    changed = _files(render_demo(bigger, 7, tmp_path / "bigger").root)
    before = _files(small_render.root)
    for rel, data in before.items():
        if rel.endswith(".png"):
            assert changed[rel] == data, rel  # the first n_a A images and every B image are kept
    assert len([k for k in changed if k.startswith("B/test/images/")]) == 9
    assert len([k for k in changed if k.startswith("A/train/images/")]) == 8


# ------------------------------------------------------------------------------------------- boxes
def test_boxes_are_tight_around_visible_masks():
    checked = 0
    for i in range(12):
        scene = render_scene(scene_rng(0, "B", "test", i), "B" if i % 2 else "A", 96, parts_per_image=(2, 5))
        for inst in scene.kept:
            x, y, w, h = (int(v) for v in inst.bbox)
            m = inst.mask
            assert m[y, x : x + w].any() and m[y + h - 1, x : x + w].any()  # top and bottom rows touch
            assert m[y : y + h, x].any() and m[y : y + h, x + w - 1].any()  # left and right columns
            assert m.sum() == m[y : y + h, x : x + w].sum()  # nothing visible outside the box
            checked += 1
    assert checked > 20


def test_heavily_occluded_parts_are_dropped():
    kept_vis, dropped_vis = [], []
    for i in range(40):
        rng = scene_rng(1, "A", "train", i)
        scene = render_scene(rng, "A", 64, parts_per_image=(4, 6), min_visibility=0.5)
        for inst in scene.instances:
            (kept_vis if inst.kept else dropped_vis).append(inst.visibility)
    assert dropped_vis, "crowded scenes must hide some parts"
    assert min(kept_vis) >= 0.5 and max(dropped_vis) < 0.5
    assert any(v < 0.999 for v in kept_vis), "partly occluded parts stay annotated above the threshold"


def test_coco_boxes_match_the_rendered_scene(small_render):
    coco = json.loads((small_render.root / "B/test/annotations.json").read_text())
    scene = render_one(SMALL, 7, "B", "test", 2)
    boxes = [a["bbox"] for a in coco["annotations"] if a["image_id"] == 3]
    assert boxes == [inst.bbox for inst in scene.kept]
    png = cv2.imread(str(small_render.root / "B/test/images" / coco["images"][2]["file_name"]))
    assert np.array_equal(cv2.cvtColor(png, cv2.COLOR_BGR2RGB), scene.image)


# ------------------------------------------------------------------------------------ splits, COCO
def test_splits_counts_and_coco_loads(small_render):
    from pycocotools.coco import COCO

    root = small_render.root
    assert small_render.categories == CATEGORIES and len(CATEGORIES) >= 4
    for (domain, split), n in split_counts(SMALL).items():
        images = sorted((root / domain / split / "images").glob("*.png"))
        assert len(images) == n, (domain, split)
        assert cv2.imread(str(images[0])).shape == (64, 64, 3)
        ann = root / domain / split / "annotations.json"
        if split == "unlabelled":
            assert not ann.exists()
            continue
        coco = COCO(str(ann))
        assert len(coco.getImgIds()) == n
        assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == CATEGORIES
        for a in coco.loadAnns(coco.getAnnIds()):
            x, y, w, h = a["bbox"]
            assert w > 0 and h > 0 and x >= 0 and y >= 0 and x + w <= 64 and y + h <= 64
    by_split = {(s.split, s.format) for s in small_render.b}
    assert by_split == {("train", "coco"), ("val", "coco"), ("test", "coco"), ("oracle", "coco"),
                        ("unlabelled", "none")}
    assert [s.split for s in small_render.a] == ["train"] and small_render.a[0].annotations.is_file()


def test_all_part_classes_appear(tmp_path):
    cfg = SMALL.model_copy(update={"n_a": 12, "n_b_test": 12})
    root = render_demo(cfg, 3, tmp_path / "r").root
    for domain, split in (("A", "train"), ("B", "test")):
        coco = json.loads((root / domain / split / "annotations.json").read_text())
        assert {a["category_id"] for a in coco["annotations"]} == set(range(1, len(CATEGORIES) + 1))


# ----------------------------------------------------------------------------------------- domains
def _stats(domain: str, hard: str | None = None, n: int = 12, size: int = 96) -> dict[str, float]:
    sat, bg, part, noise, clipped = [], [], [], [], []
    for i in range(n):
        scene = render_scene(scene_rng(5, domain, "stats", i), domain, size, hard=hard)
        rgb = scene.image.astype(np.float32) / 255
        hsv = cv2.cvtColor(scene.image, cv2.COLOR_RGB2HSV).astype(np.float32) / 255
        grey = rgb.mean(-1)
        on_part = np.zeros(grey.shape, bool)
        for inst in scene.instances:
            on_part |= inst.mask
        ring = cv2.dilate(on_part.astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool)
        background = ~ring
        smooth = cv2.GaussianBlur(grey, (0, 0), 2.0)
        sat.append(hsv[..., 1][on_part].mean())
        bg.append(grey[background].mean())
        part.append(grey[on_part].mean())
        noise.append((grey - smooth)[background].std())
        clipped.append((scene.image[on_part] >= 250).all(-1).mean())
    return {k: float(np.mean(v)) for k, v in
            dict(sat=sat, bg=bg, part=part, noise=noise, clipped=clipped).items()}


def test_replicas_are_saturated_on_bright_beds_metal_is_grey_noisy_and_dark():
    a, b = _stats("A"), _stats("B")
    assert a["sat"] > 0.5 and b["sat"] < 0.15 and a["sat"] > 3 * b["sat"]
    assert a["bg"] > 0.65 and b["bg"] < 0.35  # bright print bed vs dark bench
    # sensor noise in the dim shop: more than 5 grey levels, and a far lower signal-to-noise ratio
    # than the replicas' bed speckle
    assert b["noise"] > 0.02 and b["noise"] / b["bg"] > 3 * a["noise"] / a["bg"]
    assert b["part"] - b["bg"] < a["bg"] - b["bg"]  # metal parts sit close to a dark background


def test_hard_cases_lower_contrast_and_blow_out_highlights():
    normal, low, hot = _stats("B"), _stats("B", "low_contrast"), _stats("B", "overexposed")
    assert abs(low["part"] - low["bg"]) < 0.5 * abs(normal["part"] - normal["bg"])
    assert hot["clipped"] > normal["clipped"] + 0.1
    a_low = _stats("A", "low_contrast")
    assert a_low["sat"] < 0.5 * _stats("A")["sat"]  # pale filament on a pale bed


def test_hard_fraction_sets_the_share_of_hard_scenes(tmp_path):
    cfg = SMALL.model_copy(update={"hard_fraction": 1.0})
    coco = json.loads((render_demo(cfg, 0, tmp_path / "h").root / "A/train/annotations.json").read_text())
    assert {im["hard"] for im in coco["images"]} <= {"low_contrast", "overexposed"}
    none = SMALL.model_copy(update={"hard_fraction": 0.0})
    coco = json.loads((render_demo(none, 0, tmp_path / "n").root / "A/train/annotations.json").read_text())
    assert {im["hard"] for im in coco["images"]} == {None}


# ------------------------------------------------------------------------------- folder and CLI
def test_existing_render_is_reused_and_a_different_one_is_refused(small_render, tmp_path):
    png = next((small_render.root / "A/train/images").glob("*.png"))
    mtime = png.stat().st_mtime_ns
    assert render_demo(SMALL, 7, small_render.root).root == small_render.root
    assert png.stat().st_mtime_ns == mtime
    with pytest.raises(DemoDataError, match="different demo render"):
        render_demo(SMALL, 8, small_render.root)
    user = tmp_path / "mine"
    user.mkdir()
    (user / "photo.jpg").write_bytes(b"keep me")
    with pytest.raises(DemoDataError, match="not a demo render"):
        render_demo(SMALL, 7, user)
    assert (user / "photo.jpg").read_bytes() == b"keep me"


def test_cli_writes_the_folder_and_a_preview(tmp_path):
    from typer.testing import CliRunner

    from pipeline.cli import app, commands  # noqa: F401  (registers the sub-commands)

    args = ["demo-data", str(REPO / "configs/tiny.yaml"), f"runtime.output_root={tmp_path}",
            "data.demo.n_a=4", "data.demo.n_b_test=4", "data.demo.n_b_unlabelled=2", "data.demo.n_b_oracle=2"]
    result = CliRunner().invoke(app, [*args, "--preview"])
    assert result.exit_code == 0, result.output
    cfg = load_config(REPO / "configs/tiny.yaml", args[2:])
    root = demo_dir(cfg)
    assert str(root) in result.output.splitlines()[-1]
    preview = cv2.imread(str(root / "preview.png"))
    assert preview is not None and preview.shape[0] >= 2 * 256 and preview.shape[1] >= 4 * 256
    assert (root / "B/test/annotations.json").is_file()

    clash = CliRunner().invoke(app, [*args[:-1], "data.demo.n_b_oracle=3", "--out", str(root)])
    assert clash.exit_code == 1 and "different demo render" in clash.output
