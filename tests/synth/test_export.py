"""The augmented version: COCO loads with pycocotools, provenance, YOLO layout, card, manifest,
cache hit on rerun; the CycleGAN itself is replaced by a deterministic image function."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from synth_helpers import fake_model_dir as _model_dir
from synth_helpers import metalize

from pipeline.config import RunConfig
from pipeline.store import verify_manifest
from pipeline.synth import stage
from pipeline.synth.generate import Generator


def _run(cfg, dataset, model_dir):
    plan = stage.prepare(cfg, dataset, model_dir)
    gens = [Generator(plan.generator_shas[0], metalize)]
    return plan, stage.finalize(plan, [stage.run_plan_shard(plan, k, gens) for k in range(len(plan.shards))])


@pytest.fixture(scope="module")
def published(mini_dataset, tmp_path_factory):
    root = tmp_path_factory.mktemp("out")
    cfg = RunConfig()
    cfg.runtime.output_root = root
    cfg.synth = cfg.synth.model_copy(update={"shard_size": 5, "variants": 2, "n_card_examples": 4})
    model = _model_dir(root)
    plan, res = _run(cfg, mini_dataset, model)
    return cfg, plan, res, model


def test_coco_loads_with_pycocotools_and_carries_provenance(published, mini_dataset):
    from pycocotools.coco import COCO

    cfg, plan, res, _ = published
    v = res.version
    assert v.manifest["kind"] == "augmented" and not res.cached and res.accepted > 0
    coco = COCO(str(v.annotation_path("B", "train")))
    real = mini_dataset.coco("B", "train")
    imgs = coco.loadImgs(coco.getImgIds())
    syn = [im for im in imgs if im["synthetic"]]
    assert len(imgs) - len(syn) == len(real.images) and len(syn) == res.accepted
    a_ids = {im.id for im in mini_dataset.coco("A", "train").images}
    for im in syn:
        assert im["domain"] == "B" and im["split"] == "train"
        assert im["source_image_id"] in a_ids and im["generator"] == plan.generator_shas[0]
        assert set(im["gate"]) >= {"saturated", "std", "checkerboard"}
        assert (v.root / im["file_name"]).is_file()
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == mini_dataset.category_names
    raw = json.loads(v.annotation_path("B", "train").read_text())
    assert len({im["id"] for im in raw["images"]}) == len(raw["images"])  # ids never collide
    assert len({a["id"] for a in raw["annotations"]}) == len(raw["annotations"])
    assert {a["image_id"] for a in raw["annotations"]} <= {im["id"] for im in raw["images"]}
    syn_ids = {im["id"] for im in syn}
    n_syn_boxes = sum(1 for a in raw["annotations"] if a["image_id"] in syn_ids)
    assert n_syn_boxes == sum(v.manifest["summary"]["boxes"]["synthetic"].values())


def test_yolo_layout_and_data_yaml(published):
    _, _, res, _ = published
    y = res.version.root / "yolo"
    data = yaml.safe_load((y / "data.yaml").read_text())
    assert data["train"] == "train/images" and data["val"] == "val/images" and data["nc"] == 3
    # Every split of the parent is exported: this mini parent has no B test (tests/synth/test_e2e.py
    # checks one that has).
    assert "test" not in data and not (y / "test").exists()
    n_imgs = len(list((y / "train" / "images").iterdir()))
    assert n_imgs == len(list((y / "train" / "labels").glob("*.txt"))) > res.accepted
    for lbl in (y / "train" / "labels").glob("*.txt"):
        for line in lbl.read_text().splitlines():
            c, *xywh = line.split()
            assert 0 <= int(c) < 3 and all(0 <= float(v) <= 1 for v in xywh)


def test_manifest_lineage_hashes_card_and_rejected(published, mini_dataset):
    _, plan, res, model = published
    v = res.version
    m = v.manifest
    assert [p["kind"] for p in m["parents"]] == ["dataset", "cyclegan"]
    assert m["parents"][0]["id"] == mini_dataset.id and m["parents"][1]["id"] == model.name
    assert verify_manifest(v.root) == []
    assert "annotations/B_train.json" in m["files"] and not any(f.startswith("shards/") for f in m["files"])
    assert not any(Path(f).name.startswith(".") for f in m["files"])
    assert m["summary"]["categories"] == mini_dataset.category_names
    for f in ("README.md", "class_balance.png", "box_sizes.png", "pairs.png"):
        assert (v.root / "card" / f).is_file(), f
    readme = (v.root / "card" / "README.md").read_text()
    assert mini_dataset.id in readme and "| bracket |" in readme
    for line in (v.root / "rejected.jsonl").read_text().splitlines():
        row = json.loads(line)
        assert {"image", "box", "check", "score", "threshold", "action"} <= set(row)
    assert not plan.staging.exists() and (v.root / "config.yaml").is_file()


def test_rerun_is_a_cache_hit_and_a_config_change_is_not(published, mini_dataset):
    cfg, plan, res, model = published
    again = stage.synthesize(cfg, mini_dataset, model, progress=False)
    assert again.cached and again.version.root == res.version.root and again.accepted == res.accepted
    other = cfg.model_copy(deep=True)
    other.synth.gate.min_box_edge_f1 = 0.9
    assert stage.prepare(other, mini_dataset, model).final != plan.final


def test_missing_weights_named_in_the_error(mini_dataset, tmp_path):
    with pytest.raises(FileNotFoundError, match="G_AB.safetensors"):
        stage.prepare(RunConfig(), mini_dataset, tmp_path)


def _flaky(images):
    """Every third image comes out constant (rejected), every other one mirrored (its parts moved:
    boxes dropped, or the image rejected when most of them fail)."""
    out = []
    for k, im in enumerate(metalize(images)):
        if k % 3 == 0:
            im = np.full_like(im, 90)
        elif k % 2 == 0:
            im = np.ascontiguousarray(im[:, ::-1])
        out.append(im)
    return out


def _right_half_lost(images):
    """The right half of every output is noise around its mean grey: parts there are gone (their
    boxes dropped), parts on the left kept."""
    out = []
    for k, im in enumerate(metalize(images)):
        im = im.copy()
        rng = np.random.default_rng(k)
        half = im[:, im.shape[1] // 2:]
        im[:, im.shape[1] // 2:] = np.clip(half.mean() + rng.normal(0, 6, half.shape), 0, 255).astype(np.uint8)
        out.append(im)
    return out


def _run_gated(mini_dataset, root: Path, translate=_flaky, synth: dict | None = None, **gate):
    cfg = RunConfig()
    cfg.runtime.output_root = root
    cfg.gan.translate_batch = 4
    cfg.synth = cfg.synth.model_copy(update={"shard_size": 5, "variants": 2, "n_card_examples": 3,
                                             "balance_classes": True, **(synth or {}),
                                             "gate": cfg.synth.gate.model_copy(update=gate)})
    model = _model_dir(root)
    plan = stage.prepare(cfg, mini_dataset, model)
    gens = [Generator(plan.generator_shas[0], translate)]
    res = stage.finalize(plan, [stage.run_plan_shard(plan, k, gens) for k in range(len(plan.shards))])
    return cfg, plan, res


@pytest.fixture(scope="module")
def with_rejects(mini_dataset, tmp_path_factory):
    return _run_gated(mini_dataset, tmp_path_factory.mktemp("rejects"))


def test_erase_dropped_paints_over_exactly_the_dropped_boxes(mini_dataset, tmp_path):
    from pipeline.synth.gate import box_window

    _, plain_plan, plain = _run_gated(mini_dataset, tmp_path / "plain", _right_half_lost)
    _, plan, erased = _run_gated(mini_dataset, tmp_path / "erased", _right_half_lost, erase_dropped=True)
    assert plan.key != plain_plan.key and erased.accepted == plain.accepted  # same decisions, other pixels
    rows = [json.loads(line) for line in (erased.version.root / "rejected.jsonl").read_text().splitlines()]
    dropped: dict[str, list] = {}
    for r in rows:
        if r["action"] == "drop_box":
            dropped.setdefault(r["image"], []).append(r["bbox"])
    coco = erased.version.coco("B", "train")
    plain_images = {im.file_name: im for im in plain.version.coco("B", "train").images}
    assert 0 < len(dropped) < len(coco.images)  # some images lost a box, others did not
    for image in coco.images:
        name = image.file_name
        a, b = plain.version.read_rgb(plain_images[name]), erased.version.read_rgb(image)
        if Path(name).name not in dropped:
            assert np.array_equal(a, b), name  # nothing dropped: the very same pixels
            continue
        changed = np.any(a != b, axis=-1)
        inside = np.zeros_like(changed)
        for box in dropped[Path(name).name]:
            x0, y0, x1, y1 = box_window(np.array(box), a.shape[1::-1], 0.1)
            inside[y0:y1, x0:x1] = True
        assert changed.any() and not (changed & ~inside).any(), name  # only inside the dropped windows
        for ann in coco.anns_by_image().get(image.id, []):  # kept boxes keep their pixels
            x, y, w, h = (int(round(v)) for v in ann.bbox)
            assert np.array_equal(a[y:y + h, x:x + w], b[y:y + h, x:x + w]), name


def test_camera_match_changes_pixels_only(mini_dataset, tmp_path):
    from pipeline.synth.camera import apply_camera
    from pipeline.synth.outputs import seed_of
    from pipeline.synth.plan import WorkItem

    _, plain_plan, plain = _run_gated(mini_dataset, tmp_path / "plain", metalize)
    _, plan, matched = _run_gated(mini_dataset, tmp_path / "camera", metalize, synth={"camera_match": True})
    camera = stage.load_camera(plan)
    assert stage.load_camera(plain_plan) is None and camera is not None and plan.key != plain_plan.key
    # measured on the real B photos of the dataset (train here; val is never read)
    b = mini_dataset.coco("B", "train").images
    assert camera.summary()["photos"] == len(b)
    assert matched.version.manifest["summary"]["camera"] == camera.summary()
    assert plain.version.manifest["summary"]["camera"] is None
    card = (matched.version.root / "card" / "README.md").read_text()
    assert f"and noise of one of {len(b)} real B photos" in card
    assert "Camera match" not in (plain.version.root / "card" / "README.md").read_text()
    a_coco, b_coco = plain.version.coco("B", "train"), matched.version.coco("B", "train")
    assert [(im.file_name, [x.bbox for x in a_coco.anns_by_image().get(im.id, [])]) for im in a_coco.images] \
        == [(im.file_name, [x.bbox for x in b_coco.anns_by_image().get(im.id, [])]) for im in b_coco.images]
    plain_by_name = {im.file_name: im for im in a_coco.images}
    for im in b_coco.images:
        if im.synthetic:  # exactly the plain image through the camera, seeded by its work item
            item = WorkItem(im.source_image_id, 0, im.extra["variant"])
            seed = seed_of(RunConfig().runtime.seed, "camera", item.key, im.extra["tile"])
            expected = apply_camera(plain.version.read_rgb(plain_by_name[im.file_name]), camera, seed)
            assert np.array_equal(matched.version.read_rgb(im), expected), im.file_name
    for im in b_coco.images:
        if not im.synthetic:  # the real photos are copied, untouched
            assert np.array_equal(matched.version.read_rgb(im), mini_dataset.read_rgb(
                next(r for r in b if r.file_name == im.file_name)))


def test_camera_match_enters_the_synthesis_key_only_when_on(mini_dataset, tmp_path, monkeypatch):
    from pipeline.synth import camera

    seen = []
    real_key = stage.stage_key
    monkeypatch.setattr(stage, "stage_key", lambda name, section, parents: seen.append(section)
                        or real_key(name, section, parents))
    # planning (which every cache check does) reads no photos: the camera is fitted when shards run
    monkeypatch.setattr(stage, "_camera", lambda root: pytest.fail("prepare fitted the camera"))
    cfg = RunConfig()
    cfg.runtime.output_root = tmp_path
    model = _model_dir(tmp_path)
    stage.prepare(cfg, mini_dataset, model)
    cfg.synth = cfg.synth.model_copy(update={"camera_match": True})
    stage.prepare(cfg, mini_dataset, model)
    # off: the key of the versions made before the setting existed (and of the runs trained on them)
    assert "camera_match" not in seen[0]["synth"] and "camera_revision" not in seen[0]
    # on: the setting and the camera code's revision (a changed camera redoes the cached sets)
    assert seen[1]["synth"]["camera_match"] is True and seen[1]["camera_revision"] == camera.REVISION
    assert {k: v for k, v in seen[1]["synth"].items() if k != "camera_match"} == seen[0]["synth"]


def test_rejections_are_listed_with_thumbnails_in_the_card(with_rejects):
    cfg, plan, res = with_rejects
    v = res.version
    rows = [json.loads(line) for line in (v.root / "rejected.jsonl").read_text().splitlines()]
    assert res.rejected > 0 and len(rows) >= res.rejected
    checks = {r["check"] for r in rows}
    assert "near_constant" in checks and checks & {"box_edge_f1", "box_offset"}
    for r in rows:
        assert {"image", "source_image_id", "generator", "box", "check", "score", "threshold", "action"} \
            <= set(r)
        assert r["action"] in ("reject_image", "drop_box") and r["generator"] == plan.generator_shas[0]
        if r["check"] == "near_constant":
            assert r["score"] < r["threshold"] and r["box"] is None and r["action"] == "reject_image"
        if r["check"] in ("box_edge_f1", "box_offset"):
            assert (r["score"] < r["threshold"]) == (r["check"] == "box_edge_f1")  # F1 low, offset high
            assert isinstance(r["box"], int) and len(r["bbox"]) == 4
    by_check = v.manifest["summary"]["gate"]["by_check"]
    counted = {c: sum(r["check"] == c for r in rows) for c in checks}
    assert {k: d["count"] for k, d in by_check.items()} == counted
    # Boxes dropped count boxes, not failed checks: a box failing edge F1 and the offset check is one box.
    dropped = {(r["image"], r["source_image_id"], r["box"]) for r in rows if r["action"] == "drop_box"}
    assert v.manifest["summary"]["gate"]["dropped_boxes"] == len(dropped)
    assert f"{len(dropped)} boxes dropped by the gate" in (v.root / "card" / "README.md").read_text()
    # Thumbnails: shards wrote several each; only the card's n examples ship, each one listed.
    thumbs = sorted({r["thumbnail"] for r in rows if r["thumbnail"]})
    on_disk = sorted(p.relative_to(v.root).as_posix() for p in (v.root / "card" / "rejected").glob("*.png"))
    assert thumbs == on_disk and 0 < len(on_disk) <= cfg.synth.n_card_examples < len(plan.shards) * 3
    assert all(t in v.manifest["files"] for t in thumbs)
    readme = (v.root / "card" / "README.md").read_text()
    assert (v.root / "card" / "rejected.png").is_file() and "![rejected](rejected.png)" in readme
    import cv2

    grid = cv2.imread(str(v.root / "card" / "rejected.png"))
    assert grid is not None and grid.shape[0] >= 2 * 48  # at least one row of source | synthetic pairs
    assert sum(f"`{r['image']}` {r['check']}" in readme for r in rows if r["thumbnail"]) >= len(thumbs)


def test_card_shows_class_balance_before_and_after(with_rejects, mini_dataset):
    _, plan, res = with_rejects
    bal = res.version.manifest["summary"]["balance"]
    assert bal["extra_variants"] > 0 and bal["after"] != bal["before"]
    readme = (res.version.root / "card" / "README.md").read_text()
    real = mini_dataset.coco("B", "train").class_counts()
    syn = res.version.manifest["summary"]["boxes"]["synthetic"]
    for n in mini_dataset.category_names:
        assert f"| {n} | {real.get(n, 0)} | {syn[n]} | {bal['before'][n]} | {bal['after'][n]} |" in readme


def test_class_share_panel_only_when_balancing_changed_it(tmp_path):
    """Identical before/after bars show nothing: that panel is left out; legends sit outside."""
    from pipeline.synth.card import class_balance_png

    names = ["gear", "nut"]
    same = {"before": {"gear": 4, "nut": 2}, "after": {"gear": 8, "nut": 4}}  # the same shares
    assert class_balance_png(tmp_path / "a.png", names, {"gear": 3}, {"gear": 5}, same) == 1
    changed = {"before": {"gear": 4, "nut": 2}, "after": {"gear": 4, "nut": 4}}
    assert class_balance_png(tmp_path / "b.png", names, {"gear": 3}, {"gear": 5}, changed) == 2
    import cv2

    assert cv2.imread(str(tmp_path / "a.png")).shape[1] < cv2.imread(str(tmp_path / "b.png")).shape[1]
