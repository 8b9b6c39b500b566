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


def _crowded(n_false: int):
    """One gear on a 200 px image, found only by the lowest-scored of n_false + 1 detections."""
    gt = [[(1, [100, 100, 40, 40])]]
    res = [{"image_id": 1, "category_id": 1, "bbox": [float(i % 10) * 9, float(i // 10) * 6, 8, 5],
            "score": 0.9 - i * 1e-4} for i in range(n_false)]
    res.append({"image_id": 1, "category_id": 1, "bbox": [100, 100, 40, 40], "score": 0.01})
    return gt, res


@pytest.mark.parametrize("max_dets", [100, 300])
def test_every_metric_uses_the_configured_detection_limit(tmp_path, max_dets):
    """150 detections on one image, the hit ranked last: cut at 100 it is lost (AP 0); at 300 it
    counts at precision 1/150. mAP, AP50/75, APm and the bootstrap all agree, never None."""
    gt, res = _crowded(149)
    ev = coco_eval(gt_file(tmp_path, gt), res, max_dets=max_dets)
    want = 0.0 if max_dets == 100 else 1 / 150
    for k in ("map", "map50", "map75"):
        assert ev.metrics[k] == pytest.approx(want, abs=1e-9), k
    # the false detections are small, so the medium range ignores them: only the hit is left
    assert ev.metrics["map_medium"] == pytest.approx(0.0 if max_dets == 100 else 1.0)
    assert ev.metrics["map_small"] is None and ev.metrics["map_large"] is None  # a 40 px box is medium
    assert ev.per_class_ap["gear"] == pytest.approx(want, abs=1e-9)
    assert bootstrap_map(ev.per_image, np.ones(1))[0] == pytest.approx(ev.metrics["map"], abs=1e-12)


def test_metrics_equal_pycocotools_summarize_at_its_default(tmp_path):
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    rng = np.random.default_rng(7)
    gt = [[(int(rng.integers(1, 3)), [*rng.uniform(0, 150, 2).tolist(), *rng.uniform(8, 90, 2).tolist()])
           for _ in range(int(rng.integers(1, 5)))] for _ in range(20)]
    res = noisy_predictions(gt, rng)
    path = gt_file(tmp_path, gt)
    ev = coco_eval(path, res)
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(path))
        E = COCOeval(coco, coco.loadRes(res), "bbox")
        E.evaluate()
        E.accumulate()
        E.summarize()
    for i, k in enumerate(("map", "map50", "map75", "map_small", "map_medium", "map_large")):
        assert ev.metrics[k] == (None if E.stats[i] < 0 else pytest.approx(E.stats[i], abs=1e-12)), k
