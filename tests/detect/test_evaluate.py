"""COCOeval on hand-made ground truth and predictions with known AP."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline.detect.evaluate import coco_eval
from pipeline.detect.stats import bootstrap_map

CATS = [{"id": 1, "name": "gear"}, {"id": 2, "name": "hex_nut"}, {"id": 3, "name": "bracket"}]


def gt_file(tmp_path, boxes_per_image, name="gt.json"):
    """boxes_per_image: list (one per image) of [(category_id, [x, y, w, h]), ...]."""
    images, anns = [], []
    for i, boxes in enumerate(boxes_per_image, start=1):
        images.append({"id": i, "file_name": f"{i}.png", "width": 200, "height": 200})
        for c, b in boxes:
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": c, "bbox": b,
                         "area": b[2] * b[3], "iscrowd": 0})
    p = tmp_path / name
    p.write_text(json.dumps({"images": images, "annotations": anns, "categories": CATS}))
    return p


GT = [
    [(1, [10, 10, 100, 100]), (2, [120, 120, 50, 50])],
    [(1, [50, 50, 100, 100])],
    [(2, [0, 0, 60, 60]), (1, [100, 20, 80, 80])],
]  # no "bracket" anywhere


def perfect(gt):
    return [{"image_id": i, "category_id": c, "bbox": b, "score": 0.9}
            for i, boxes in enumerate(gt, start=1) for c, b in boxes]


def test_perfect_predictions_score_one_and_missing_class_is_null(tmp_path):
    ev = coco_eval(gt_file(tmp_path, GT), perfect(GT))
    assert ev.metrics["map"] == pytest.approx(1.0)
    assert ev.metrics["map50"] == pytest.approx(1.0)
    assert ev.metrics["map75"] == pytest.approx(1.0)
    assert ev.per_class_ap == {"gear": pytest.approx(1.0), "hex_nut": pytest.approx(1.0), "bracket": None}
    assert ev.pr_curve["precision"]["bracket"] is None
    assert len(ev.pr_curve["recall"]) == 101 and ev.pr_curve["precision"]["gear"][-1] == pytest.approx(1.0)
    assert ev.instances == {"gear": 3, "hex_nut": 2, "bracket": 0}
    assert ev.metrics["map_small"] is None  # no box under 32² px: not a number made up from nothing
    assert ev.metrics["map_large"] == pytest.approx(1.0)


def test_known_shift_gives_known_ap(tmp_path):
    # Every box keeps only its top 72 % (IoU 0.72): a hit at IoU .50-.70 (5 of 10 thresholds).
    shifted = [{**r, "bbox": [*r["bbox"][:3], r["bbox"][3] * 0.72]} for r in perfect(GT)]
    ev = coco_eval(gt_file(tmp_path, GT), shifted)
    assert ev.metrics["map"] == pytest.approx(0.5)
    assert ev.metrics["map50"] == pytest.approx(1.0)
    assert ev.metrics["map75"] == pytest.approx(0.0)


def test_false_positive_ranked_first_halves_precision_at_that_recall(tmp_path):
    gt = [[(1, [10, 10, 100, 100])], [(1, [10, 10, 100, 100])]]
    # a confident miss on image 2 outranks a hit on each image: PR points (0,0),(.5,.5),(1,.67)
    res = [{"image_id": 2, "category_id": 1, "bbox": [150, 150, 40, 40], "score": 0.99},
           {"image_id": 1, "category_id": 1, "bbox": [10, 10, 100, 100], "score": 0.9},
           {"image_id": 2, "category_id": 1, "bbox": [10, 10, 100, 100], "score": 0.8}]
    ev = coco_eval(gt_file(tmp_path, gt), res)
    # precision envelope is 2/3 at every recall level up to 1.0 (101 points)
    assert ev.metrics["map"] == pytest.approx(2 / 3, abs=1e-6)


def test_no_detections_is_zero_not_an_error(tmp_path):
    ev = coco_eval(gt_file(tmp_path, GT), [])
    assert ev.metrics["map"] == 0.0
    assert ev.per_class_ap["gear"] == 0.0 and ev.per_class_ap["bracket"] is None


def test_unknown_image_ids_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="not in the ground truth"):
        coco_eval(gt_file(tmp_path, GT),
                  [{"image_id": 99, "category_id": 1, "bbox": [0, 0, 5, 5], "score": 1}])


def noisy_predictions(gt, rng):
    res = []
    for i, boxes in enumerate(gt, start=1):
        for c, (x, y, w, h) in boxes:
            if rng.random() < 0.8:
                res.append({"image_id": i, "category_id": c, "score": float(rng.uniform(0.2, 1)),
                            "bbox": [x + rng.normal(0, 6), y + rng.normal(0, 6), w, h]})
        for _ in range(5):
            res.append({"image_id": i, "category_id": int(rng.integers(1, 3)),
                        "score": float(rng.uniform(0, 0.7)),
                        "bbox": [*rng.uniform(0, 150, 2).tolist(), *rng.uniform(10, 60, 2).tolist()]})
    return res


def test_reweighting_equals_evaluating_the_resampled_set(tmp_path):
    """The bootstrap's shortcut: multiplicities on one COCOeval == COCOeval of the resampled set."""
    rng = np.random.default_rng(3)
    gt = [[(int(rng.integers(1, 3)), [*rng.uniform(0, 120, 2).tolist(), *rng.uniform(20, 70, 2).tolist()])
           for _ in range(int(rng.integers(1, 4)))] for _ in range(12)]
    res = noisy_predictions(gt, rng)
    ev = coco_eval(gt_file(tmp_path, gt), res)
    assert bootstrap_map(ev.per_image, np.ones(12))[0] == pytest.approx(ev.metrics["map"], abs=1e-12)
    map50 = bootstrap_map(ev.per_image, np.ones(12), iou=0.5)[0]
    assert map50 == pytest.approx(ev.metrics["map50"], abs=1e-12)

    picks = rng.integers(0, 12, size=12)  # one bootstrap resample, duplicates and all
    counts = np.bincount(picks, minlength=12).astype(float)
    gt_resampled = [gt[i] for i in sorted(picks)]
    res_resampled = []
    for new_id, old in enumerate(sorted(picks), start=1):
        res_resampled += [{**r, "image_id": new_id} for r in res if r["image_id"] == old + 1]
    direct = coco_eval(gt_file(tmp_path, gt_resampled, "resampled.json"), res_resampled)
    assert bootstrap_map(ev.per_image, counts)[0] == pytest.approx(direct.metrics["map"], abs=1e-9)
