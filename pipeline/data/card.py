"""Dataset card: card/README.md plus class balance, box-size histogram and a sample grid with boxes.

Written by ingest into every dataset version; the Prefect flow publishes the README's summary
as a Markdown artifact.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.data.coco import CocoSet
from pipeline.store import atomic_write_bytes, atomic_write_text

CELL = 192  # sample grid cell side, pixels
_COLOURS = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
            (70, 240, 240), (240, 50, 230)]


def write_card(root: Path, name: str, summary: dict[str, Any], sets: dict[tuple[str, str], CocoSet],
               rows: list[dict], notes: list[dict] | None = None, n_samples: int = 4) -> str:
    """Write root/card/{README.md, class_balance.png, box_sizes.png, samples.png}; returns the
    Markdown summary (counts table, quarantine and notes by action). Image paths in `sets` are
    relative to `root`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    card = root / "card"
    card.mkdir(parents=True, exist_ok=True)
    cats = summary["categories"]
    labelled = {f"{d}_{s}": c for (d, s), c in sorted(sets.items()) if s != "unlabelled" and c.images}

    fig, ax = plt.subplots(figsize=(7, 3.2), dpi=100)
    width = 0.8 / max(1, len(labelled))
    for k, (split, coco) in enumerate(labelled.items()):
        counts = coco.class_counts()
        ax.bar(np.arange(len(cats)) + k * width, [counts.get(c, 0) for c in cats], width, label=split)
    ax.set_xticks(np.arange(len(cats)) + width * (len(labelled) - 1) / 2, cats, rotation=20)
    ax.set_ylabel("boxes")
    ax.set_title("Class balance per split")
    if labelled:  # right of the axes: a legend inside would cover bars
        ax.legend(fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    _save(fig, card / "class_balance.png")

    fig, ax = plt.subplots(figsize=(7, 3.2), dpi=100)
    for domain in ("A", "B"):
        sides = [np.sqrt(a.area) for (d, _), c in sets.items() if d == domain for a in c.annotations]
        if sides:
            ax.hist(sides, bins=30, alpha=0.6, label=f"Class {domain} ({len(sides)} boxes)")
    ax.set_xlabel("box size sqrt(w*h), pixels")
    ax.set_ylabel("boxes")
    ax.set_title("Box sizes (COCO small < 32 <= medium < 96 <= large)")
    for edge in (32, 96):
        ax.axvline(edge, color="grey", lw=0.8, ls="--")
    if any(c.annotations for c in sets.values()):
        ax.legend(fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    _save(fig, card / "box_sizes.png")

    _sample_grid(root, sets, cats, card / "samples.png", n_samples)

    md = summary_markdown(name, summary, rows, notes)
    atomic_write_text(card / "README.md", md + "\n## Figures\n\n![class balance](class_balance.png)\n\n"
                      "![box sizes](box_sizes.png)\n\n![samples](samples.png)\n")
    return md


def summary_markdown(name: str, summary: dict[str, Any], rows: list[dict], notes: list[dict] | None = None) -> str:
    """Counts per split and class, quarantined inputs and notes by action (Markdown)."""
    cats = summary["categories"]
    lines = [f"# Dataset {name}", "", f"Categories (id order): {', '.join(cats) or 'none'}", "",
             "| split | images | boxes | " + " | ".join(cats) + " |",
             "|---|---:|---:|" + "---:|" * len(cats)]
    for split, c in summary["counts"].items():
        inst = summary["instances"].get(split, {})
        per_class = " | ".join(str(inst.get(n, 0)) for n in cats)
        lines.append(f"| {split} | {c['images']} | {c['boxes']} | {per_class} |")
    lines += ["", f"Quarantine: {len(rows)} rows (see quarantine.jsonl)."] + _by_action(rows)
    if notes:
        lines += ["", f"Notes: {len(notes)} rows about inputs kept as they are shown (see notes.jsonl)."]
        lines += _by_action(notes)
    if summary.get("normalised"):
        lines += ["", f"{summary['normalised']} images were normalised to 8-bit RGB PNG; "
                  "the rest are the original bytes."]
    return "\n".join(lines) + "\n"


def _by_action(rows: list[dict]) -> list[str]:
    """A Markdown table: rows per action with the first example."""
    if not rows:
        return []
    lines = ["", "| action | rows | example |", "|---|---:|---|"]
    first: dict[str, dict] = {}
    for r in rows:
        first.setdefault(r["action"], r)
    for action, n in Counter(r["action"] for r in rows).most_common():
        ex = first[action]
        lines.append(f"| {action} | {n} | `{ex['file']}`: {ex['reason']} |".replace("\n", " "))
    return lines


def _save(fig, path: Path) -> None:
    import io

    import matplotlib.pyplot as plt

    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None}, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def _sample_grid(
    root: Path, sets: dict[tuple[str, str], CocoSet], cats: list[str], out: Path, n: int
) -> None:
    """Up to n images of each labelled split (A_train, B_train, ...) as one row each, boxes drawn.

    Cells are CELL px tall and as wide as the images' typical aspect ratio (up to 3:1), so wide
    photos such as BSData's 2700x950 spindles are not shrunk to a strip.
    """
    import cv2

    labelled = [(k, c) for k, c in sorted(sets.items()) if k[1] != "unlabelled" and c.images]
    aspects = [im.width / max(1, im.height) for _, c in labelled for im in c.images[:n]]
    cell_w = int(CELL * min(3.0, max(1.0, float(np.median(aspects)) if aspects else 1.0)))
    rows = []
    for (domain, split), coco in labelled:
        by_image = coco.anns_by_image()
        # Prefer images with boxes: the grid is there to show the boxes fit the parts.
        chosen = sorted(coco.images, key=lambda im: (im.id not in by_image, im.id))[:n]
        cells = []
        for im in chosen:
            bgr = cv2.imread(str(root / im.file_name), cv2.IMREAD_COLOR)
            if bgr is None:
                continue
            s = min(cell_w / im.width, CELL / im.height)
            thumb = cv2.resize(bgr, (max(1, round(im.width * s)), max(1, round(im.height * s))),
                               interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_NEAREST)
            for a in by_image.get(im.id, []):
                x, y, w, h = (v * s for v in a.bbox)
                r, g, b = _COLOURS[(a.category_id - 1) % len(_COLOURS)]
                # Tiny defects (a few px after scaling) still get a visible frame.
                cx, cy, hw, hh = x + w / 2, y + h / 2, max(w, 4) / 2, max(h, 4) / 2
                cv2.rectangle(thumb, (int(cx - hw), int(cy - hh)), (int(round(cx + hw)), int(round(cy + hh))),
                              (b, g, r), 1)
            cell = np.full((CELL, cell_w, 3), 40, np.uint8)
            cell[: thumb.shape[0], : thumb.shape[1]] = thumb
            cells.append(cell)
        if not cells:
            continue
        cells += [np.full((CELL, cell_w, 3), 40, np.uint8)] * (n - len(cells))
        label = np.full((CELL, 90, 3), 255, np.uint8)
        cv2.putText(label, f"{domain}_{split}", (4, CELL // 2), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1)
        rows.append(np.hstack([label, *cells]))
    grid = np.vstack(rows) if rows else np.full((CELL, CELL, 3), 255, np.uint8)
    legend = np.full((22, grid.shape[1], 3), 255, np.uint8)
    x = 4
    for k, name in enumerate(cats):
        r, g, b = _COLOURS[k % len(_COLOURS)]
        cv2.putText(legend, name, (x, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (b, g, r), 1)
        x += 12 + 9 * len(name)
    ok, buf = cv2.imencode(".png", np.vstack([legend, grid]))
    if ok:
        atomic_write_bytes(out, buf.tobytes())
