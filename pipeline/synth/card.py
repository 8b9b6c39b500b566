"""Dataset card of an augmented version: card/README.md plus PNGs.

class_balance.png   real vs synthetic boxes per class, and the planned balance before/after
box_sizes.png       histograms of box size sqrt(w·h) in pixels, real vs synthetic
pairs.png           A (after the image's affine map) | synthetic, transferred boxes drawn
rejected.png        thumbnails of rejected images / dropped boxes (source | synthetic, red = failed)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np

from pipeline.data.coco import CocoSet
from pipeline.data.version import DatasetVersion
from pipeline.store import atomic_write_bytes, atomic_write_text
from pipeline.synth import geometry as geo


def _save_fig(fig, path: Path) -> None:
    import io

    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def class_balance_png(path: Path, names: list[str], real: dict[str, int], synthetic: dict[str, int],
                      balance: dict[str, Any]) -> int:
    """Boxes per class written, and beside it the planned class share before/after balancing
    when balancing changed it (identical bars show nothing: that panel is left out). Legends sit
    outside the axes, where they cannot hide a bar. Returns the number of panels drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def share(d: dict[str, int]) -> list[float]:
        tot = max(1, sum(d.values()))
        return [d.get(n, 0) / tot for n in names]

    before, after = share(balance["before"]), share(balance["after"])
    planned = bool(balance.get("target")) or not np.allclose(before, after)
    x = np.arange(len(names))
    fig, axes = plt.subplots(1, 2 if planned else 1, figsize=(11 if planned else 5.6, 3.2), squeeze=False)
    axes = axes[0]
    axes[0].bar(x - 0.2, [real.get(n, 0) for n in names], 0.4, label="real B")
    axes[0].bar(x + 0.2, [synthetic.get(n, 0) for n in names], 0.4, label="synthetic B")
    axes[0].set_title("boxes per class (written)")
    if planned:
        axes[1].bar(x - 0.27, before, 0.27, label="before balancing")
        axes[1].bar(x, after, 0.27, label="after balancing")
        if balance.get("target"):
            axes[1].bar(x + 0.27, [balance["target"][n] for n in names], 0.27, label="target")
        axes[1].set_title("planned class share, real + synthetic")
    for ax in axes:
        ax.set_xticks(x, names, rotation=30, ha="right")
        legend_outside(ax)
    fig.tight_layout()
    _save_fig(fig, path)
    return len(axes)


def legend_outside(ax) -> None:
    """The legend right of the axes (saved with bbox_inches="tight"): it never covers a bar."""
    ax.legend(fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)


def box_sizes_png(path: Path, real: CocoSet, synthetic_sizes: np.ndarray) -> None:
    """Histograms of sqrt(w·h) (pixels): real B boxes vs synthetic boxes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    r = np.array([np.sqrt(max(a.area, 0.0)) for a in real.annotations])
    s = np.asarray(synthetic_sizes, dtype=np.float64)
    top = max(1.0, float(r.max()) if len(r) else 0.0, float(s.max()) if len(s) else 0.0)
    bins = np.linspace(0, top, 25)
    fig, ax = plt.subplots(figsize=(5, 3))
    # An empty side (e.g. every synthetic image rejected) has no density to normalise.
    ax.hist(r, bins=bins, alpha=0.6, density=len(r) > 0, label=f"real B ({len(r)})")
    ax.hist(s, bins=bins, alpha=0.6, density=len(s) > 0, label=f"synthetic B ({len(s)})")
    ax.set_xlabel("box size sqrt(w·h), pixels")
    ax.set_ylabel("density")
    legend_outside(ax)
    _save_fig(fig, path)


def _draw(img: np.ndarray, boxes: list[list[float]], color=(0, 255, 0)) -> np.ndarray:
    img = np.ascontiguousarray(img.copy())
    for x, y, w, h in boxes:
        cv2.rectangle(img, (int(x), int(y)), (int(x + w) - 1, int(y + h) - 1), color, 1)
    return img


def mapped_source(rgb: np.ndarray, im, pad_value: int = 0) -> np.ndarray:
    """The A image in the synthetic image's frame: its `affine`, then its `augment_affine` (when
    augmented), with the same padding as generation, so the written boxes fit both panels."""
    size = (im.width, im.height)
    # The translated frame is as large as the written image (augmentation keeps the size).
    a = geo.warp_image(rgb, geo.ImageTransform(np.array(im.extra["affine"], dtype=np.float64), size),
                       border_value=(pad_value,) * 3)
    aug = im.extra.get("augment_affine")
    if aug is not None:
        a = geo.warp_image(a, geo.ImageTransform(np.array(aug, dtype=np.float64), size),
                           border_value=(pad_value,) * 3)
    return a


def pairs_png(path: Path, dataset: DatasetVersion, root: Path, sample: list, n: int,
              pad_value: int = 0) -> int:
    """Grid of up to n rows `A (mapped) | synthetic`, both with the transferred boxes.

    sample: [(synthetic ImageRecord, its annotations)], e.g. the first n written.
    """
    a_train = {im.file_name: im for im in dataset.coco("A", "train").images}
    rows = []
    for im, anns in sample[:n]:
        src = a_train.get(im.extra.get("source_file", ""))
        if src is None:
            continue
        a = mapped_source(dataset.read_rgb(src), im, pad_value)
        s = cv2.cvtColor(cv2.imread(str(root / im.file_name), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        boxes = [a_.bbox for a_ in anns]
        gap = np.full((a.shape[0], 4, 3), 255, np.uint8)
        pair = np.concatenate([_draw(a, boxes), gap, _draw(s, boxes)], 1)
        if pair.shape[0] != 256:
            pair = cv2.resize(pair, (256 * pair.shape[1] // pair.shape[0], 256))
        rows.append(pair)
    if not rows:
        return 0
    w = max(r.shape[1] for r in rows)
    padded = [np.pad(r, ((2, 2), (0, w - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    grid = np.concatenate(padded, 0)
    ok, buf = cv2.imencode(".png", cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
    atomic_write_bytes(path, buf.tobytes())
    return len(rows)


def rejected_png(path: Path, root: Path, thumbnails: list[str]) -> int:
    imgs = [cv2.imread(str(root / t), cv2.IMREAD_COLOR) for t in thumbnails]
    imgs = [i for i in imgs if i is not None]
    if not imgs:
        return 0
    h = max(i.shape[0] for i in imgs)
    w = max(i.shape[1] for i in imgs)
    tiles = [np.pad(i, ((0, h - i.shape[0] + 4), (0, w - i.shape[1] + 4), (0, 0)), constant_values=255)
             for i in imgs]
    cols = 2
    while len(tiles) % cols:
        tiles.append(np.full_like(tiles[0], 255))
    grid = np.concatenate([np.concatenate(tiles[r : r + cols], 1) for r in range(0, len(tiles), cols)], 0)
    ok, buf = cv2.imencode(".png", grid)
    atomic_write_bytes(path, buf.tobytes())
    return len(imgs)


def _camera_lines(camera: dict | None) -> list[str]:
    """The camera match's source statistics (synth/camera.py), when it was on."""
    if not camera:
        return []
    k, bed, high, noise = (f"{camera[n + '_median']:.3g} ± {camera[n + '_std']:.2g}"
                           for n in ("k", "bed", "highlight", "noise"))
    return [f"Camera match: each synthetic image took the vignette, bed and highlight levels and noise "
            f"of one of {camera['photos']} real B photos (vignette k {k}, bed {bed}, highlights {high}, "
            f"noise {noise} grey levels; median ± std).", ""]


def write_card(
    root: Path,
    dataset: DatasetVersion,
    real: CocoSet,
    synthetic,  # export.SyntheticStats: counts, box sizes, a sample and rejection examples
    summary: dict[str, Any],
    n_examples: int,
    pad_value: int = 0,
) -> Path:
    """Write root/card/{README.md, *.png}; returns the README path."""
    card = root / "card"
    card.mkdir(parents=True, exist_ok=True)
    names = real.category_names
    real_counts, syn_counts = real.class_counts(), dict(synthetic.class_counts)
    class_balance_png(card / "class_balance.png", names, real_counts, syn_counts, summary["balance"])
    box_sizes_png(card / "box_sizes.png", real, np.frombuffer(synthetic.box_sizes, dtype=np.float32))
    n_pairs = pairs_png(card / "pairs.png", dataset, root, synthetic.sample, n_examples, pad_value)
    rejection_examples = synthetic.examples
    thumbs = list(synthetic.thumbnails)[:n_examples]
    n_rej = rejected_png(card / "rejected.png", root, thumbs)

    lines = [
        f"# {summary['id']}",
        "",
        f"Augmented dataset: the real labelled B train split plus synthetic B images translated from "
        f"labelled A by CycleGAN generator(s) {', '.join(g['sha256'][:12] for g in summary['generators'])}, "
        f"boxes transferred through one affine map per image and checked by the quality gate.",
        "",
        f"Parent dataset: `{dataset.id}`. Images: {summary['images']['real']} real + "
        f"{summary['images']['synthetic']} synthetic; "
        f"{summary['gate']['rejected_images']} synthetic images rejected, "
        f"{summary['gate']['dropped_boxes']} boxes dropped by the gate.",
        "",
        *_camera_lines(summary.get("camera")),
        "| class | real B boxes | synthetic boxes | planned before balancing | planned after |",
        "|---|---:|---:|---:|---:|",
    ]
    for n in names:
        lines.append(
            f"| {n} | {real_counts.get(n, 0)} | {syn_counts.get(n, 0)} | "
            f"{summary['balance']['before'].get(n, 0)} | {summary['balance']['after'].get(n, 0)} |"
        )
    lines += ["", "![class balance](class_balance.png)", "", "![box sizes](box_sizes.png)", ""]
    if n_pairs:
        lines += [f"## A | synthetic ({n_pairs} examples, boxes as transferred)", "",
                  "![pairs](pairs.png)", ""]
    lines += ["## Gate", "", "| check | rejections | threshold |", "|---|---:|---:|"]
    for check, (count, thr) in sorted(summary["gate"]["by_check"].items()):
        lines.append(f"| {check} | {count} | {thr} |")
    if n_rej:
        lines += ["", f"Rejected examples (source | synthetic; red = failed box), {n_rej} shown:", "",
                  "![rejected](rejected.png)", ""]
        for r in rejection_examples[: n_examples * 2]:
            if r.get("thumbnail") in thumbs:
                score = "—" if r["score"] is None else f"{r['score']:.3f}"
                lines.append(f"- `{r['image']}` {r['check']} = {score} "
                             f"(threshold {r['threshold']}), {r['action']}")
    # Timings stay in the manifest: the card's content depends only on the data.
    counts = {k: v for k, v in summary["counts"].items() if k != "seconds"}
    lines += ["", "Counts: " + ", ".join(f"{k} {v}" for k, v in counts.items()), ""]
    return atomic_write_text(card / "README.md", "\n".join(lines))

