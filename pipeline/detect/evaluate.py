"""COCO evaluation with pycocotools, independent of the trainer.

`coco_eval(gt_json, results, max_dets)` runs COCOeval (bbox) once, with `max_dets` detections
per image for every number, and returns mAP@[.5:.95], AP50, AP75, APs/m/l, per-class AP (None
for a class with no instance in the split — never a number made up from an empty split), PR
curves (precision at COCO's 101 recall points, averaged over IoU 0.5:0.95, area all) and the
per-image matching that `stats.bootstrap_map` re-accumulates for confidence intervals.
"""

from __future__ import annotations

import contextlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

METRIC_KEYS = ("map", "map50", "map75", "map_small", "map_medium", "map_large")


@dataclass
class PerImageEval:
    """COCOeval's per-image matching at area 'all' and the largest maxDets, per class.

    For class k (category order): scores (n,), image index (n,) into image_ids, tp (T, n) bool
    and counted (T, n) bool (False = ignored detection), sorted by descending score as COCO's
    accumulate() does; npig (I,) non-ignored ground truths per image.
    """

    image_ids: list[int]
    iou_thrs: np.ndarray  # (T,)
    rec_thrs: np.ndarray  # (R=101,)
    classes: list[dict[str, np.ndarray]] = field(default_factory=list)

    @property
    def n_images(self) -> int:
        return len(self.image_ids)


@dataclass
class CocoEvalResult:
    metrics: dict[str, float | None]  # METRIC_KEYS; None where the split has no box of that size
    per_class_ap: dict[str, float | None]
    pr_curve: dict[str, Any]  # {"recall": [101], "precision": {name: [101] | None}}
    per_image: PerImageEval
    instances: dict[str, int]


def load_gt(gt_json: str | Path):
    """pycocotools COCO for a ground-truth file (its chatter silenced)."""
    from pycocotools.coco import COCO

    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(gt_json))


def coco_eval(gt, results: list[dict[str, Any]], max_dets: int = 100) -> CocoEvalResult:
    """Evaluate COCO results (bbox xywh pixels, score) against ground truth `gt` (a path or a
    pycocotools COCO). Every image of the ground truth counts, detections or not."""
    from pycocotools.cocoeval import COCOeval

    if not hasattr(gt, "getCatIds"):
        gt = load_gt(gt)
    cat_ids = sorted(gt.getCatIds())
    names = [gt.cats[c]["name"] for c in cat_ids]
    instances = {n: len(gt.getAnnIds(catIds=[c], iscrowd=False)) for n, c in zip(names, cat_ids)}
    img_ids = set(gt.getImgIds())
    unknown = {r["image_id"] for r in results} - img_ids
    if unknown:
        raise ValueError(f"results name {len(unknown)} image ids not in the ground truth, "
                         f"e.g. {sorted(unknown)[:3]}")

    with contextlib.redirect_stdout(io.StringIO()):
        dt = gt.loadRes(results) if results else _empty_results(gt)
        E = COCOeval(gt, dt, "bbox")
        # One detection limit only. COCOeval.summarize() reads AP at maxDets == 100 whatever the
        # setting (a -1 otherwise), while the matching and the bootstrap use maxDets[-1]; so every
        # metric is read from E.eval["precision"] at the one limit, and summarize() is not called.
        E.params.maxDets = [max_dets]
        E.evaluate()
        E.accumulate()
    metrics = ap_summary(E)
    if all(v == 0 for v in instances.values()):
        metrics = {k: None for k in METRIC_KEYS}
    precision = E.eval["precision"]  # (T, R, K, A, M)
    per_class: dict[str, float | None] = {}
    curves: dict[str, list[float] | None] = {}
    for k, name in enumerate(names):
        p = precision[:, :, k, 0, -1]
        if instances[name] == 0 or not (p > -1).any():
            per_class[name], curves[name] = None, None
            continue
        per_class[name] = float(p[p > -1].mean())
        curves[name] = [round(float(v), 5) for v in np.where(p > -1, p, np.nan).mean(axis=0)]
    pr = {"recall": [round(float(r), 2) for r in E.params.recThrs], "precision": curves}
    return CocoEvalResult(metrics, per_class, pr, per_image_eval(E), instances)


def ap_summary(E) -> dict[str, float | None]:
    """METRIC_KEYS from an accumulated COCOeval at its last maxDets, as COCOeval.summarize()
    computes stats[0:6] at its default 100: the mean of precision (T, R, K, A, M) over the cells
    that have ground truth (-1 marks none); None where no cell has any (e.g. no small boxes)."""
    p = E.params
    precision = E.eval["precision"][..., -1]  # (T, R, K, A) at maxDets[-1]
    area = {lbl: i for i, lbl in enumerate(p.areaRngLbl)}
    t_at = lambda iou: [int(np.argmin(np.abs(np.asarray(p.iouThrs) - iou)))]  # noqa: E731
    sel = {
        "map": (slice(None), area["all"]),
        "map50": (t_at(0.5), area["all"]),
        "map75": (t_at(0.75), area["all"]),
        "map_small": (slice(None), area["small"]),
        "map_medium": (slice(None), area["medium"]),
        "map_large": (slice(None), area["large"]),
    }
    out: dict[str, float | None] = {}
    for key in METRIC_KEYS:
        t, a = sel[key]
        s = precision[t][:, :, :, a]
        out[key] = float(s[s > -1].mean()) if (s > -1).any() else None
    return out


def _empty_results(gt):
    """A results COCO with no detections (loadRes() cannot take an empty list)."""
    from pycocotools.coco import COCO

    dt = COCO()
    dt.dataset = {"images": list(gt.dataset["images"]), "annotations": [],
                  "categories": list(gt.dataset["categories"])}
    dt.createIndex()
    return dt


def per_image_eval(E) -> PerImageEval:
    """Extract COCOeval.evalImgs (after evaluate()) for area 'all', maxDets[-1], per class."""
    p = E.params
    I, A = len(p.imgIds), len(p.areaRng)
    max_det = p.maxDets[-1]
    a = 0  # area 'all'
    classes = []
    for k in range(len(p.catIds)):
        scores, img, tp, counted = [], [], [], []
        npig = np.zeros(I, dtype=np.int64)
        for i in range(I):
            e = E.evalImgs[k * A * I + a * I + i]
            if e is None:
                continue
            npig[i] = int(np.count_nonzero(np.asarray(e["gtIgnore"]) == 0))
            s = np.asarray(e["dtScores"][:max_det], dtype=np.float64)
            if s.size == 0:
                continue
            m = np.asarray(e["dtMatches"])[:, :max_det] > 0
            ig = np.asarray(e["dtIgnore"])[:, :max_det].astype(bool)
            scores.append(s)
            img.append(np.full(s.size, i, dtype=np.int64))
            tp.append(m & ~ig)
            counted.append(~ig)
        T = len(p.iouThrs)
        if scores:
            s = np.concatenate(scores)
            order = np.argsort(-s, kind="mergesort")  # as accumulate() sorts
            cls = {"scores": s[order], "img": np.concatenate(img)[order],
                   "tp": np.concatenate(tp, axis=1)[:, order],
                   "counted": np.concatenate(counted, axis=1)[:, order]}
        else:
            cls = {"scores": np.zeros(0), "img": np.zeros(0, dtype=np.int64),
                   "tp": np.zeros((T, 0), bool), "counted": np.zeros((T, 0), bool)}
        cls["npig"] = npig
        classes.append(cls)
    return PerImageEval(list(p.imgIds), np.asarray(p.iouThrs), np.asarray(p.recThrs), classes)


def write_results(path: Path, results: list[dict[str, Any]]) -> Path:
    from pipeline.store import atomic_write_text

    return atomic_write_text(path, json.dumps(results, separators=(",", ":")))
