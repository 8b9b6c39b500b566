"""Picture grids for the report: test detections per arm, and synthetic images beside their source.

Boxes are drawn with OpenCV on copies scaled to a readable cell size (small demo images are
enlarged, full-size photos shrunk); matplotlib lays the cells out with titles. Returns PNG bytes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from matplotlib.figure import Figure

from pipeline.data.coco import CocoSet, ImageRecord
from pipeline.data.version import DatasetError, DatasetVersion
from pipeline.detect.metrics import ArmResult, CompareMetrics, RunRecord
from pipeline.report.plots import colour, figure_png

GT_RGB = (46, 204, 113)  # green: ground truth everywhere
PRED_RGB = (230, 57, 70)  # red: detections
CELL = 320  # display side of a cell, pixels


@dataclass
class Grid:
    png: bytes | None
    shown: list[dict[str, Any]] = field(default_factory=list)  # what is in it (ids, counts)
    note: str | None = None  # why it is empty or partial


def _scaled(rgb: np.ndarray) -> tuple[np.ndarray, float]:
    h, w = rgb.shape[:2]
    s = CELL / max(h, w)
    interp = cv2.INTER_CUBIC if s > 1 else cv2.INTER_AREA
    return cv2.resize(rgb, (max(1, round(w * s)), max(1, round(h * s))), interpolation=interp), s


def draw_boxes(rgb: np.ndarray, boxes: list[tuple[list[float], str]], colour_rgb: tuple[int, int, int],
               scale: float, dashed: bool = False) -> np.ndarray:
    """Draw (xywh pixel box, label) pairs on a scaled copy; labels in a filled tag above the box."""
    out = rgb
    for (x, y, w, h), label in boxes:
        p1 = (int(round(x * scale)), int(round(y * scale)))
        p2 = (int(round((x + w) * scale)), int(round((y + h) * scale)))
        if dashed:
            _dashed_rect(out, p1, p2, colour_rgb)
        else:
            cv2.rectangle(out, p1, p2, colour_rgb, 2, cv2.LINE_AA)
        if label:
            (tw, th), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, 0.4, 1)
            ty = max(th + 3, p1[1])
            cv2.rectangle(out, (p1[0], ty - th - 3), (p1[0] + tw + 4, ty), colour_rgb, -1)
            cv2.putText(out, label, (p1[0] + 2, ty - 2), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1,
                        cv2.LINE_AA)
    return out


def _dashed_rect(img: np.ndarray, p1: tuple[int, int], p2: tuple[int, int], c: tuple[int, int, int]) -> None:
    (x1, y1), (x2, y2) = p1, p2
    step = 6
    for x in range(x1, x2, 2 * step):
        cv2.line(img, (x, y1), (min(x + step, x2), y1), c, 2)
        cv2.line(img, (x, y2), (min(x + step, x2), y2), c, 2)
    for y in range(y1, y2, 2 * step):
        cv2.line(img, (x1, y), (x1, min(y + step, y2)), c, 2)
        cv2.line(img, (x2, y), (x2, min(y + step, y2)), c, 2)


def _grid_png(cells: list[list[np.ndarray | str | None]], col_titles: list[str], row_titles: list[str],
              title_colours: list[str] | None, dpi: int, cell_in: float = 2.3) -> bytes:
    """Lay out RGB cells (or a text string for an empty cell) in rows x columns."""
    rows, cols = len(cells), len(cells[0])
    fig = Figure(figsize=(cell_in * cols, cell_in * rows + 0.35))
    for r, row in enumerate(cells):
        for c, cell in enumerate(row):
            ax = fig.add_subplot(rows, cols, r * cols + c + 1)
            ax.set_xticks([])
            ax.set_yticks([])
            for s in ax.spines.values():
                s.set_color("#d0d5dd")
            if isinstance(cell, np.ndarray):
                ax.imshow(cell)
            elif cell == "":  # padding at the end of the last row
                ax.axis("off")
            else:
                ax.set_facecolor("#f2f4f7")
                ax.text(0.5, 0.5, cell or "", ha="center", va="center", fontsize=8, color="#475467",
                        transform=ax.transAxes, wrap=True)
            if r == 0 and col_titles[c]:
                ax.set_title(col_titles[c], fontsize=9, fontweight="bold",
                             color=title_colours[c] if title_colours else "#111")
            if c == 0 and row_titles[r]:
                ax.set_ylabel(row_titles[r], fontsize=8)
    fig.subplots_adjust(wspace=0.04, hspace=0.08)
    return figure_png(fig, dpi)


# --------------------------------------------------------------------------- test detections
def pick_test_images(test: CocoSet, n: int) -> list[ImageRecord]:
    """The n test images with the most ground-truth boxes (ties by id): busy scenes show the
    differences between arms best, and the choice is the same for every arm and every rerun."""
    counts = {im.id: 0 for im in test.images}
    for a in test.annotations:
        counts[a.image_id] = counts.get(a.image_id, 0) + 1
    return sorted(test.images, key=lambda im: (-counts[im.id], im.id))[:n]


def _first_ok_run(arm: ArmResult) -> RunRecord | None:
    ok = sorted((r for r in arm.runs if r.ok and r.predictions), key=lambda r: r.seed)
    return ok[0] if ok else None


def detections_grid(metrics: CompareMetrics, compare_dir: Path, dataset: DatasetVersion, n: int,
                    threshold: float, dpi: int = 110) -> Grid:
    """Rows = the same n test images; columns = ground truth, then each arm's detections (its
    lowest successful seed) with score >= threshold in red over the ground truth in green."""
    if n <= 0:
        return Grid(None, note="disabled (report.n_detection_samples = 0)")
    test = dataset.coco("B", "test")
    names = {c.id: c.name for c in test.categories}
    images = pick_test_images(test, n)
    if not images:
        return Grid(None, note="the test split has no images")
    gt = test.anns_by_image()
    preds: dict[str, dict[int, list[dict[str, Any]]]] = {}
    missing = []
    for a in metrics.arms:
        run = _first_ok_run(a)
        if run is None:
            missing.append(f"{a.name} (no successful run)")
            continue
        try:
            res = json.loads((compare_dir / run.predictions).read_text())
        except (OSError, ValueError) as e:
            missing.append(f"{a.name} ({run.predictions} unreadable: {type(e).__name__})")
            continue
        by_img: dict[int, list[dict[str, Any]]] = {}
        for d in res:
            if d.get("score", 0) >= threshold:
                by_img.setdefault(d["image_id"], []).append(d)
        preds[a.name] = by_img
    arms = [a for a in metrics.arms if a.name in preds]
    note = ("Not shown: " + ", ".join(missing) + ".") if missing else None
    cells, shown = [], []
    for im in images:
        try:
            rgb = dataset.read_rgb(im)
        except DatasetError as e:
            cells.append([str(e)] + [None] * len(arms))
            continue
        base, s = _scaled(rgb)
        gt_boxes = [(a.bbox, names.get(a.category_id, "?")) for a in gt.get(im.id, [])]
        row: list[np.ndarray | str | None] = [draw_boxes(base.copy(), gt_boxes, GT_RGB, s)]
        info = {"image_id": im.id, "file_name": im.file_name, "gt": len(gt_boxes), "detections": {}}
        for a in arms:
            p = preds[a.name]
            dets = sorted(p.get(im.id, []), key=lambda d: -d["score"])
            img = draw_boxes(base.copy(), [(a_.bbox, "") for a_ in gt.get(im.id, [])], GT_RGB, s, dashed=True)
            labels = [(d["bbox"], f"{names.get(d['category_id'], '?')} {d['score']:.2f}") for d in dets]
            img = draw_boxes(img, labels, PRED_RGB, s)
            row.append(img)
            info["detections"][a.name] = len(dets)
        cells.append(row)
        shown.append(info)
    titles = ["ground truth"] + [a.name for a in arms]
    colours = ["#111"] + [colour(a.name, i) for i, a in enumerate(arms)]
    png = _grid_png(cells, titles, [f"#{im.id}" for im in images], colours, dpi)
    return Grid(png, shown, note)


# -------------------------------------------------------------------------- synthetic samples
def synthetic_grid(augmented: DatasetVersion, dataset: DatasetVersion | None, n: int, dpi: int = 110,
                   pairs_per_row: int = 3, randomized_seed: int | None = None) -> Grid:
    """Up to n synthetic images from the augmented B_train (boxes drawn), each beside the replica
    photo it was translated from when the source dataset is at hand, and, with
    `randomized_seed` (the real+replica-aug arm ran), beside the classical randomisation of the
    same photo that arm trained on (no GAN): the images the GAN has to beat."""
    if n <= 0:
        return Grid(None, note="disabled (report.n_synthetic_samples = 0)")
    try:
        aug = augmented.coco("B", "train")
    except DatasetError as e:
        return Grid(None, note=str(e))
    synth = [im for im in aug.images if im.synthetic]
    if not synth:
        return Grid(None, note="the augmented dataset holds no synthetic images (all rejected by the gate?)")
    step = max(1, len(synth) // n)  # spread over the set rather than the first shard only
    chosen = synth[::step][:n]
    names = {c.id: c.name for c in aug.categories}
    aug_boxes = aug.anns_by_image()
    src, src_boxes = None, {}
    if dataset is not None and dataset.has("A", "train"):
        src = {im.id: im for im in dataset.coco("A", "train").images}
        src_boxes = dataset.coco("A", "train").anns_by_image()
    cells: list[list[np.ndarray | str | None]] = []
    row: list[np.ndarray | str | None] = []
    shown = []
    rand = None
    if src is not None and randomized_seed is not None:
        from pipeline.synth.randomize import metal_randomization

        rand = metal_randomization(randomized_seed)
        pairs_per_row = max(1, (pairs_per_row * 2) // 3)
    per_item = 1 if src is None else 3 if rand is not None else 2
    for im in chosen:
        try:
            rgb, s = _scaled(augmented.read_rgb(im))
        except DatasetError as e:
            rgb, s = None, 1.0
            err = str(e)
        syn_cell = (draw_boxes(rgb, [(a.bbox, names.get(a.category_id, "?")) for a in aug_boxes.get(im.id, [])],
                               GT_RGB, s) if rgb is not None else err)
        if src is not None:
            a_im = src.get(im.source_image_id) if im.source_image_id is not None else None
            if a_im is None:
                row += ["source replica not found"] * (per_item - 1)
            else:
                try:
                    raw = dataset.read_rgb(a_im)
                    a_boxes = [(a.bbox, names.get(a.category_id, "?")) for a in src_boxes.get(a_im.id, [])]
                    a_rgb, a_s = _scaled(raw)
                    row.append(draw_boxes(a_rgb, a_boxes, GT_RGB, a_s))
                    if rand is not None:
                        from pipeline.synth.randomize import randomize_image

                        r_rgb, r_s = _scaled(randomize_image(rand, raw, randomized_seed, a_im.id))
                        row.append(draw_boxes(r_rgb, a_boxes, GT_RGB, r_s))
                except DatasetError as e:
                    row += [str(e)] * (per_item - 1)
        row.append(syn_cell)
        gate = im.extra.get("gate") or {}
        shown.append({"image_id": im.id, "source_image_id": im.source_image_id, "gate": gate,
                      "boxes": len(aug_boxes.get(im.id, []))})
        if len(row) == per_item * pairs_per_row:
            cells.append(row)
            row = []
    if row:
        cells.append(row + [""] * (per_item * pairs_per_row - len(row)))
    cols = per_item * min(pairs_per_row, len(chosen))
    cells = [r[:cols] for r in cells]
    item_titles = (["synthetic metal"] if src is None else
                   ["replica (A)", "randomised\n(no GAN)", "synthetic metal\n(GAN)"] if rand is not None
                   else ["replica (A)", "synthetic metal"])
    titles = (item_titles * pairs_per_row)[:cols]
    note = None if src is not None else "source replica photos not shown (no dataset version given)"
    return Grid(_grid_png(cells, titles, [""] * len(cells), None, dpi, cell_in=2.0), shown, note)
