"""Equal budget: every arm sees the same images per epoch; real B oversampled in mixed arms."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from pipeline.detect.arms import build_training_set, epoch_budget, epoch_list, plan_arms


def test_epoch_list_fills_budget_and_oversamples_real():
    real = [Path(f"r{i}") for i in range(10)]
    extra = [Path(f"a{i}") for i in range(120)]
    mixed = epoch_list(real, extra, oversample=3, n=150, seed=0)
    assert len(mixed) == 150
    c = Counter(mixed)
    assert all(c[p] == 3 for p in real) and all(c[p] == 1 for p in extra)
    only_real = epoch_list(real, [], oversample=3, n=150, seed=0)
    assert len(only_real) == 150 and set(Counter(only_real).values()) == {15}  # repeated to fill


def test_epoch_list_partial_cycle_is_a_seeded_sample():
    real = [Path(f"r{i}") for i in range(4)]
    extra = [Path(f"a{i}") for i in range(6)]
    a = epoch_list(real, extra, oversample=2, n=25, seed=1)  # cycle of 14: one whole + 11 sampled
    assert len(a) == 25 and a == epoch_list(real, extra, oversample=2, n=25, seed=1)
    assert Counter(a)[Path("r0")] >= 2
    assert a != epoch_list(real, extra, oversample=2, n=25, seed=2)


def test_arms_share_one_budget(tiny_config, tiny_dataset, fake_augmented):
    plans = {p.name: p for p in plan_arms(tiny_config, tiny_dataset, fake_augmented)}
    assert all(p.unavailable is None for p in plans.values())
    n_real = len(tiny_dataset.coco("B", "train").images)
    k = tiny_config.detect.real_oversample
    n = epoch_budget(tiny_config, list(plans.values()))
    assert n == max(n_real * k + len(tiny_dataset.coco("A", "train").images),
                    n_real * k + len(tiny_dataset.coco("B", "oracle").images),
                    n_real * k + len(tiny_dataset.coco("A", "train").images))  # synthetic = one per A here
    tiny_config.detect.images_per_epoch = 40
    assert epoch_budget(tiny_config, list(plans.values())) == 40


def test_training_sets_have_equal_epochs_and_labels(tiny_config, tiny_dataset, fake_augmented, tmp_path):
    plans = plan_arms(tiny_config, tiny_dataset, fake_augmented)
    n = epoch_budget(tiny_config, plans)
    real_names = {Path(im.file_name).name for im in tiny_dataset.coco("B", "train").images}
    for plan in plans:
        ts = build_training_set(plan, tiny_config, tiny_dataset, n, tmp_path / plan.name, seed=0)
        lines = ts.train_list.read_text().splitlines()
        assert len(lines) == n, plan.name
        for line in set(lines):
            img = Path(line)
            assert img.is_file()
            label = Path(str(img).replace("/images/", "/labels/")).with_suffix(".txt")
            assert label.is_file()
        real_share = sum(Path(x).name in real_names for x in lines if "/B_train/" in x)
        if plan.mixed:  # whole cycles hold each real image k times; the partial cycle may add more
            k = tiny_config.detect.real_oversample
            assert real_share >= len(real_names) * k * (n // plan.natural_size(k))
            assert len(set(lines)) == plan.train_images
        else:
            assert real_share == n
        assert ts.names == tiny_dataset.category_names
        assert len(ts.val_list.read_text().splitlines()) == len(tiny_dataset.coco("B", "val").images)


def test_unavailable_arms_say_why(tiny_config, tiny_dataset):
    plans = {p.name: p for p in plan_arms(tiny_config, tiny_dataset, None)}
    assert "no augmented dataset" in plans["real+synthetic"].unavailable
    assert plans["real"].unavailable is None and plans["oracle"].unavailable is None


def test_yolo_labels_are_normalised_cxcywh(tiny_dataset, tmp_path):
    from pipeline.data.formats import write_yolo

    coco = tiny_dataset.coco("B", "train")
    paths = write_yolo(coco, tiny_dataset.root, tmp_path / "y")
    im = coco.images[0]
    a = coco.anns_by_image()[im.id][0]
    rows = (tmp_path / "y" / "labels" / f"{paths[0].stem}.txt").read_text().splitlines()
    cls, cx, cy, w, h = rows[0].split()
    x, y, bw, bh = a.bbox
    assert int(cls) == [c.id for c in sorted(coco.categories, key=lambda c: c.id)].index(a.category_id)
    assert float(cx) == pytest.approx((x + bw / 2) / im.width, abs=1e-5)
    assert float(h) == pytest.approx(bh / im.height, abs=1e-5)


def test_replica_aug_arm_randomises_photos_and_keeps_every_box(tiny_config, tiny_dataset, tmp_path):
    """real+replica-aug: one randomised copy of every A photo per variant, drawn anew per seed;
    photometric only, so each copy carries exactly its source photo's boxes."""
    import cv2
    import numpy as np

    from pipeline.detect.arms import build_phases

    tiny_config.detect.replica_aug_variants = 2
    plan = next(p for p in plan_arms(tiny_config, tiny_dataset, None) if p.name == "real+replica-aug")
    a = tiny_dataset.coco("A", "train")
    n_real = len(tiny_dataset.coco("B", "train").images)
    k = tiny_config.detect.real_oversample
    assert plan.natural_size(k, 2) == n_real * k + 2 * len(a.images)
    (phase,) = build_phases(plan, tiny_config, tiny_dataset, plan.natural_size(k, 2), tmp_path / "s0", seed=0)
    lines = phase.data.train_list.read_text().splitlines()
    randomized = sorted({x for x in lines if "_randomized/" in x})
    assert len(randomized) == 2 * len(a.images) and phase.epochs == tiny_config.detect.epochs
    by_stem = {Path(im.file_name).stem: im for im in a.images}
    anns = a.anns_by_image()
    for path in randomized:
        img = Path(path)
        src = by_stem[img.stem.rsplit("_rand", 1)[0]]
        original = tiny_dataset.read_rgb(src)
        out = cv2.cvtColor(cv2.imread(str(img)), cv2.COLOR_BGR2RGB)
        assert out.shape == original.shape and not np.array_equal(out, original)
        rows = (img.parent.parent / "labels" / f"{img.stem}.txt").read_text().splitlines()
        h, w = original.shape[:2]
        want = sorted((x.bbox[0] + x.bbox[2] / 2) / w for x in anns.get(src.id, []))
        assert sorted(float(r.split()[1]) for r in rows) == pytest.approx(want, abs=1e-5)
    other = build_phases(plan, tiny_config, tiny_dataset, 10, tmp_path / "s1", seed=1)[0].data.train_list
    first = sorted(Path(x) for x in lines if "_randomized/" in x)[0]
    again = Path(str(first).replace(str(tmp_path / "s0"), str(tmp_path / "s1")))
    assert other.is_file() and again.is_file()
    assert not np.array_equal(cv2.imread(str(first)), cv2.imread(str(again)))  # new draw per seed


def test_synthetic_then_real_arm_pretrains_on_synthetic_alone(tiny_config, tiny_dataset, fake_augmented,
                                                              tmp_path):
    from pipeline.detect.arms import build_phases

    tiny_config.detect.epochs = 10
    tiny_config.detect.pretrain_fraction = 0.3
    plans = plan_arms(tiny_config, tiny_dataset, fake_augmented)
    plan = next(p for p in plans if p.name == "synthetic->real")
    assert plan.uses_augmented and not plan.mixed
    n = epoch_budget(tiny_config, plans)
    pre, fine = build_phases(plan, tiny_config, tiny_dataset, n, tmp_path, seed=0)
    assert (pre.name, pre.epochs, fine.name, fine.epochs) == ("pretrain", 3, "finetune", 7)
    pre_lines = pre.data.train_list.read_text().splitlines()
    fine_lines = fine.data.train_list.read_text().splitlines()
    assert len(pre_lines) == len(fine_lines) == n  # the same images per epoch as every other arm
    assert all("/synthetic/" in x for x in pre_lines) and all("/B_train/" in x for x in fine_lines)
    assert fine.data.train_list.name == "train.txt" and pre.data.data_yaml.name == "pretrain_data.yaml"


def test_synthetic_keep_trains_on_the_most_realistic_images(tiny_config, tiny_dataset, fake_augmented):
    """detect.synthetic_keep ranks the accepted synthetic images by the realism critic's P(real metal)
    (recorded by the gate) and keeps the top share; without scores the arm says why it cannot."""
    from pipeline.detect.arms import most_realistic

    syn = fake_augmented.coco("B", "train").subset(lambda im: bool(im.synthetic))
    for k, im in enumerate(syn.images):
        im.extra = {"gate": {"realism": (k * 7919 % 13) / 13}}
    scores = {im.id: im.extra["gate"]["realism"] for im in syn.images}
    kept, why = most_realistic(syn, 0.25, fake_augmented.root)
    assert why is None and len(kept.images) == -(-len(syn.images) // 4)
    assert min(scores[im.id] for im in kept.images) >= max(
        scores[im.id] for im in syn.images if im.id not in {k.id for k in kept.images})
    assert {a.image_id for a in kept.annotations} <= {im.id for im in kept.images}
    assert most_realistic(syn, 1.0, fake_augmented.root)[0] is syn
    tiny_config.detect.synthetic_keep = 0.5
    plan = next(p for p in plan_arms(tiny_config, tiny_dataset, fake_augmented) if p.name == "real+synthetic")
    assert "recorded no realism score" in plan.unavailable and "gan.realism_steps" in plan.unavailable


def test_real_finetune_lists_real_b_alone_for_the_arms_adding_non_real_images(tiny_config, tiny_dataset,
                                                                             fake_augmented, tmp_path):
    from pipeline.config import DetectConfig

    tiny_config.detect.epochs = 5
    tiny_config.detect.real_finetune_epochs = 2
    plans = plan_arms(tiny_config, tiny_dataset, fake_augmented)
    n = epoch_budget(tiny_config, plans)
    tuned = {}
    for plan in plans:
        ts = build_training_set(plan, tiny_config, tiny_dataset, n, tmp_path / plan.name, seed=0)
        tuned[plan.name] = ts.finetune_epochs
        if ts.finetune_list is not None:
            lines = ts.finetune_list.read_text().splitlines()
            assert len(lines) == n and all("/B_train/" in x for x in lines)  # the same budget, real B only
            assert set(lines) == {x for x in ts.train_list.read_text().splitlines() if "/B_train/" in x}
    assert tuned == {"real": 0, "real+replica": 2, "real+replica-aug": 2, "real+synthetic": 2,
                     "synthetic->real": 0, "oracle": 0}
    with pytest.raises(ValueError, match="real_finetune_epochs"):
        DetectConfig(epochs=3, real_finetune_epochs=3)
