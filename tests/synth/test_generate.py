"""Generation: boxes follow pixels, provenance, variants, balancing, augmentation, bad inputs."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from synth_helpers import NAMES, make_dataset, metalize

from pipeline.config import RunConfig
from pipeline.synth import geometry as geo
from pipeline.synth.generate import Generator, collect, generate, plan_items, shard_items

SHA = "f" * 64


def _cfg(**synth) -> RunConfig:
    cfg = RunConfig()
    cfg.gan.translate_batch = 4
    cfg.synth = cfg.synth.model_copy(update={"shard_size": 5, **synth})
    return cfg


def _outputs(out_dir, n_shards):
    return [o for row in collect(out_dir, n_shards) for o in row["outputs"]]


def _read(path):
    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def test_identity_geometry_keeps_boxes_and_records_provenance(mini_dataset, tmp_path):
    res = generate(_cfg(), mini_dataset, [Generator(SHA, metalize)], tmp_path, progress=False)
    a = mini_dataset.coco("A", "train")
    assert res.items == len(a.images)
    outs = _outputs(tmp_path, len(res.shards))
    assert len(outs) == res.totals().accepted > 0
    src_boxes = {(an.image_id, tuple(an.bbox)) for an in a.annotations}
    for o in outs:
        im = o["image"]
        assert im["synthetic"] is True and im["domain"] == "B" and im["split"] == "train"
        assert im["generator"] == SHA and im["source_image_id"] in {r.id for r in a.images}
        assert {"nonfinite", "saturated", "std", "checkerboard"} <= set(im["gate"])
        for ann in o["annotations"]:
            assert (im["source_image_id"], tuple(ann["bbox"])) in src_boxes
            assert ann["gate"]["edge_f1"] is None or ann["gate"]["edge_f1"] >= 0.25
        # The stored pixels are exactly the translation of the source.
        src = mini_dataset.read_rgb(next(r for r in a.images if r.id == im["source_image_id"]))
        np.testing.assert_array_equal(_read(tmp_path / im["file_name"]), metalize([src])[0])


def test_variants_with_jitter_boxes_follow_the_recorded_affine(mini_dataset, tmp_path):
    cfg = _cfg(variants=3, jitter=0.25, fit="resize", image_size=56)
    res = generate(cfg, mini_dataset, [Generator(SHA, metalize)], tmp_path, progress=False)
    a = mini_dataset.coco("A", "train")
    by_id, anns = {r.id: r for r in a.images}, a.anns_by_image()
    outs = _outputs(tmp_path, len(res.shards))
    assert {o["image"]["variant"] for o in outs} == {0, 1, 2}
    for o in outs:
        im = o["image"]
        t = geo.ImageTransform(np.array(im["affine"]), (im["width"], im["height"]))
        assert (im["width"], im["height"]) == (56, 56)
        src = mini_dataset.read_rgb(by_id[im["source_image_id"]])
        # The recorded affine is rounded to 1e-6: interpolation may differ by one grey level.
        diff = _read(tmp_path / im["file_name"]).astype(int) - metalize([geo.warp_image(src, t)])[0]
        assert np.abs(diff).max() <= 1
        src_ann = {an.id: an for an in anns[im["source_image_id"]]}
        for ann in o["annotations"]:
            expect, vis = geo.transform_boxes(np.array([src_ann[ann["source_annotation_id"]].bbox]), t)
            np.testing.assert_allclose(ann["bbox"], expect[0], atol=1e-3)
            assert vis[0] >= cfg.synth.min_visibility


def test_tiling_splits_and_clips(mini_dataset, tmp_path):
    cfg = _cfg(fit="resize", image_size=88, tile=48, tile_overlap=8)  # 2×2 tiles, 8 px shared
    res = generate(cfg, mini_dataset, [Generator(SHA, metalize)], tmp_path, progress=False)
    outs = _outputs(tmp_path, len(res.shards))
    assert {o["image"]["tile"] for o in outs} == {0, 1, 2, 3}
    for o in outs:
        assert (o["image"]["width"], o["image"]["height"]) == (48, 48)
        for ann in o["annotations"]:
            x, y, w, h = ann["bbox"]
            assert 0 <= x and 0 <= y and x + w <= 48 + 1e-6 and y + h <= 48 + 1e-6
    t = res.totals()
    assert t.boxes_dropped_geometry > 0  # parts cut by a tile border below min_visibility


def test_two_generators_each_get_every_image(mini_dataset, tmp_path):
    inverted = Generator("e" * 64, lambda ims: [255 - m for m in ims])
    res = generate(_cfg(), mini_dataset, [Generator(SHA, metalize), inverted], tmp_path, progress=False)
    gens = [o["image"]["generator"] for o in _outputs(tmp_path, len(res.shards))]
    assert res.items == 2 * len(mini_dataset.coco("A", "train").images)
    assert set(gens) == {SHA, "e" * 64}


def test_class_balancing_moves_toward_the_target(mini_dataset):
    a = mini_dataset.coco("A", "train")
    real = mini_dataset.coco("B", "train").class_counts()
    items0, bal0 = plan_items(_cfg(), a, real, 1)
    items, bal = plan_items(_cfg(balance_classes=True, max_balance_factor=2.0), a, real, 1)
    assert bal0["before"] == bal0["after"] and len(items0) == len(a.images)
    assert len(items0) < len(items) <= 2 * len(items0)

    def spread(d):
        v = np.array([d[n] for n in NAMES], float)
        return (v / v.sum()).max() - (v / v.sum()).min()

    assert spread(bal["after"]) < spread(bal["before"])
    # An explicit target: make "bracket" (rarest in A) dominant.
    _, bal2 = plan_items(_cfg(balance_classes=True, target_distribution={"bracket": 1.0}), a, real, 1)
    assert bal2["after"]["bracket"] > bal2["before"]["bracket"]
    with pytest.raises(ValueError, match="unknown categories"):
        plan_items(_cfg(balance_classes=True, target_distribution={"spoon": 1.0}), a, real, 1)


def test_augmentation_counts_and_is_deterministic(mini_dataset, tmp_path):
    cfg = _cfg(augment=True, variants=2)
    r1 = generate(cfg, mini_dataset, [Generator(SHA, metalize)], tmp_path / "one", progress=False)
    r2 = generate(cfg, mini_dataset, [Generator(SHA, metalize)], tmp_path / "two", progress=False)
    o1, o2 = _outputs(tmp_path / "one", len(r1.shards)), _outputs(tmp_path / "two", len(r2.shards))
    assert [o["image"]["sha256"] for o in o1] == [o["image"]["sha256"] for o in o2]
    t = r1.totals()
    assert t.boxes_kept == sum(len(o["annotations"]) for o in o1) <= t.boxes_in
    assert t.aug_boxes_clipped + t.aug_boxes_dropped > 0  # shifts/rotations cut some parts
    for o in o1:
        for ann in o["annotations"]:
            x, y, w, h = ann["bbox"]
            assert x >= 0 and y >= 0
            assert x + w <= o["image"]["width"] + 1e-3 and y + h <= o["image"]["height"] + 1e-3
    assert any(o["image"]["augment_seed"] is not None for o in o1)


def test_one_unreadable_source_is_listed_not_fatal(tmp_path):
    ds = make_dataset(tmp_path / "ds-broken", n_a=6, broken_a=2)
    res = generate(_cfg(), ds, [Generator(SHA, metalize)], tmp_path / "out", progress=False)
    rows = [r for row in collect(tmp_path / "out", len(res.shards)) for r in row["rejections"]]
    bad = [r for r in rows if r["check"] == "unreadable_source"]
    assert len(bad) == 1 and "a002.png" in bad[0]["source_file"] and "cannot be read" in bad[0]["error"]
    assert res.totals().accepted >= 4


def test_wrong_shape_output_is_rejected(mini_dataset, tmp_path):
    crop = Generator(SHA, lambda ims: [m[:-2] for m in ims])
    res = generate(_cfg(), mini_dataset, [crop], tmp_path, progress=False)
    rows = [r for row in collect(tmp_path, len(res.shards)) for r in row["rejections"]]
    assert res.totals().accepted == 0 and rows and all(r["check"] == "shape" for r in rows)


def test_shards_partition_the_items(mini_dataset):
    items, _ = plan_items(_cfg(variants=2), mini_dataset.coco("A", "train"), {}, 1)
    chunks = shard_items(items, 5)
    assert sum(map(len, chunks)) == len(items) and max(map(len, chunks)) == 5
    assert len({it.key for it in items}) == len(items)


def test_recorded_maps_reproduce_every_box_with_augmentation_on(mini_dataset, tmp_path):
    """affine (A -> translated frame) then augment_affine (the flip/affine albumentations applied)
    give every written box exactly, and put the A pixels where the written pixels are."""
    from pipeline.data.coco import CocoSet
    from pipeline.gan.quality import edge_f1
    from pipeline.synth.card import mapped_source

    cfg = _cfg(augment=True, variants=3, fit="resize", image_size=56, jitter=0.2)
    res = generate(cfg, mini_dataset, [Generator(SHA, metalize)], tmp_path, progress=False)
    a = mini_dataset.coco("A", "train")
    by_id, anns = {r.id: r for r in a.images}, {an.id: an for an in a.annotations}
    outs = _outputs(tmp_path, len(res.shards))
    moved = fixed = 0
    for o in outs:
        im = o["image"]
        size = (im["width"], im["height"])
        t = geo.ImageTransform(np.array(im["affine"]), size)
        aug = geo.ImageTransform(np.array(im["augment_affine"]), size)
        moved += not np.allclose(aug.matrix, geo.identity())
        for ann in o["annotations"]:
            mid, _ = geo.transform_boxes(np.array([anns[ann["source_annotation_id"]].bbox]), t)
            expect, vis = geo.transform_boxes(mid, aug)
            np.testing.assert_allclose(ann["bbox"], expect[0], atol=2e-3)
            assert ann["visibility"] >= cfg.synth.min_visibility * vis[0] - 1e-3
        # The card's A panel goes through both maps: its edges sit where the written image's are
        # (photometric noise aside), unlike the A image through the first map alone.
        record = CocoSet.from_dict({"images": [im]}).images[0]
        src = mini_dataset.read_rgb(by_id[im["source_image_id"]])
        written = _read(tmp_path / im["file_name"])
        both = edge_f1(metalize([mapped_source(src, record)])[0], written)
        first_only = edge_f1(metalize([geo.warp_image(src, t)])[0], written)
        assert both >= max(0.35, first_only - 1e-9), im["file_name"]
        fixed += both > first_only + 0.3
    assert moved >= 3 and fixed >= 3  # flips and affines did happen, and the panel follows them



def test_the_same_generator_twice_is_refused(mini_dataset, tmp_path):
    with pytest.raises(ValueError, match="same generator"):
        generate(_cfg(), mini_dataset, [Generator(SHA, metalize)] * 2, tmp_path, progress=False)
