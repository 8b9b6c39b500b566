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
