"""The report's charts (matplotlib, Agg), each returned as PNG bytes or None when there is no data.

All figures use `matplotlib.figure.Figure` directly (no pyplot state), so they are safe to draw
from worker threads and never open a window.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from pipeline.detect.arm_specs import SPECS
from pipeline.detect.metrics import ArmResult, CompareMetrics, RunRecord, Summary

ARM_COLOURS = {s.name: s.colour for s in SPECS if s.colour}
_EXTRA = ["#8e5cc4", "#c44e52", "#4c9aa8", "#a6761d"]
TRAINING_COLUMNS = [  # ultralytics results.csv columns, in the order they are plotted
    ("train/box_loss", "train box loss"),
    ("train/cls_loss", "train class loss"),
    ("val/box_loss", "val box loss"),
    ("metrics/mAP50-95(B)", "val mAP@[.5:.95]"),
]


def colour(arm: str, i: int = 0) -> str:
    return ARM_COLOURS.get(arm, _EXTRA[i % len(_EXTRA)])


def figure_png(fig: Figure, dpi: int) -> bytes:
    """PNG bytes of a figure, RGB (no alpha) and optimised: every figure is base64-inlined in the
    HTML, so bytes matter (photo grids shrink by about an eighth)."""
    from PIL import Image

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight", facecolor="white")
    out = io.BytesIO()
    Image.open(io.BytesIO(buf.getvalue())).convert("RGB").save(out, format="PNG", optimize=True)
    return out.getvalue()


_png = figure_png


def _style(ax) -> None:
    ax.spines[["top", "right"]].set_visible(False)
    ax.grid(axis="y", color="#e5e7eb", linewidth=0.8)
    ax.set_axisbelow(True)
    ax.tick_params(labelsize=9)


def _ok_runs(arm: ArmResult) -> list[RunRecord]:
    return [r for r in arm.runs if r.ok]


# ------------------------------------------------------------------------------------ bar chart
def map_bars(metrics: CompareMetrics, ci_percent: int = 95, dpi: int = 110) -> bytes | None:
    """mAP@[.5:.95] per arm (bar = mean, error bar = std over seeds, dots = seeds) and, beside
    it, the paired-bootstrap uplift of real+synthetic over each baseline with its CI."""
    arms = metrics.arms
    if not arms:
        return None
    comps = metrics.comparisons
    fig = Figure(figsize=(9.6 if comps else 6.4, 3.6))
    if comps:
        gs = fig.add_gridspec(1, 2, width_ratios=[1.6, 1], wspace=0.35)
        ax, axc = fig.add_subplot(gs[0]), fig.add_subplot(gs[1])
    else:
        ax, axc = fig.add_subplot(1, 1, 1), None
    x = np.arange(len(arms))
    top = 0.0
    for i, a in enumerate(arms):
        s = a.summary.get("map") or Summary()
        mean, std = s.mean, s.std
        if mean is None:
            ax.text(i, 0.005, "failed", ha="center", va="bottom", color="#b42318", fontsize=9, rotation=90)
            continue
        ax.bar(i, mean, 0.62, color=colour(a.name, i), alpha=0.9,
               yerr=std if std else None, capsize=5, error_kw={"elinewidth": 1.2, "ecolor": "#333"})
        seeds = [r.metrics["map"] for r in _ok_runs(a) if r.metrics and r.metrics.get("map") is not None]
        if len(seeds) > 1:
            ax.scatter(np.full(len(seeds), i) + np.linspace(-0.12, 0.12, len(seeds)), seeds, s=12, color="#111",
                       zorder=3, alpha=0.7)
        top = max(top, mean + (std or 0), *seeds) if seeds else max(top, mean + (std or 0))
        ax.text(i, mean + (std or 0) + 0.01 * max(top, 0.1), f"{mean:.3f}", ha="center", va="bottom", fontsize=9)
    ax.set_xticks(x, [a.name for a in arms])
    ax.set_ylabel("mAP@[.5:.95] on real B test", fontsize=9)
    ax.set_ylim(0, max(0.1, top * 1.18))
    ax.set_title("Detector accuracy per arm (mean ± std over seeds)", fontsize=10, loc="left")
    _style(ax)
    if axc is not None:
        for j, c in enumerate(comps):
            sig = c.significant
            col = "#1f6fb2" if sig and c.delta > 0 else "#b42318" if sig else "#6b7280"
            axc.plot([c.ci_low, c.ci_high], [j, j], color=col, linewidth=3, solid_capstyle="round")
            axc.plot(c.delta, j, "o", color=col, markersize=7)
            axc.text(c.delta, j + 0.18, f"{c.delta:+.3f}", ha="center", va="bottom", fontsize=9)
        axc.axvline(0, color="#111", linewidth=0.8)
        axc.set_yticks(range(len(comps)), [f"vs {c.baseline}" for c in comps])
        axc.set_ylim(-0.7, len(comps) - 0.3)
        lo = min(min(c.ci_low for c in comps), 0)
        hi = max(max(c.ci_high for c in comps), 0)
        pad = max(0.02, 0.15 * (hi - lo))
        axc.set_xlim(lo - pad, hi + pad)
        axc.set_xlabel(f"Δ mAP, real+synthetic − baseline ({ci_percent}% CI)", fontsize=9)
        axc.set_title("Uplift (paired bootstrap)", fontsize=10, loc="left")
        _style(axc)
        axc.grid(axis="x", color="#e5e7eb", linewidth=0.8)
    return _png(fig, dpi)


# ------------------------------------------------------------------------------------ PR curves
def load_pr(path: Path) -> tuple[np.ndarray, dict[str, np.ndarray]] | None:
    """(recall (101,), {class: precision (101,)}) with pycocotools' -1 (no instances) as NaN."""
    try:
        d = json.loads(Path(path).read_text())
        rec = np.asarray(d["recall"], dtype=float)
        prec = {k: np.where(np.asarray(v, dtype=float) < 0, np.nan, np.asarray(v, dtype=float))
                for k, v in d["precision"].items()}
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return rec, prec


def arm_pr(arm: ArmResult, compare_dir: Path) -> tuple[np.ndarray, dict[str, np.ndarray]] | None:
    """The arm's PR curves averaged over its seeds (per class)."""
    curves = [c for r in _ok_runs(arm) if r.pr_curve and (c := load_pr(compare_dir / r.pr_curve))]
    if not curves:
        return None
    recall = curves[0][0]
    classes = list(curves[0][1])
    with np.errstate(all="ignore"), _quiet():
        prec = {k: np.nanmean(np.stack([c[1][k] for c in curves if k in c[1]]), axis=0) for k in classes}
    return recall, prec


def pr_curves(metrics: CompareMetrics, compare_dir: Path, dpi: int = 110) -> bytes | None:
    """Precision-recall (IoU .5:.95 averaged, all areas, 100 dets): mean over classes, then per
    class, one line per arm."""
    per_arm = {a.name: pr for a in metrics.arms if (pr := arm_pr(a, compare_dir))}
    if not per_arm:
        return None
    classes = list(metrics.categories or next(iter(per_arm.values()))[1])
    panels = ["all classes (mean)"] + (classes if len(classes) <= 7 else [])
    cols = len(panels) if len(panels) <= 5 else 4
    rows = math.ceil(len(panels) / cols)
    fig = Figure(figsize=(2.6 * cols + 0.6, 2.4 * rows + 0.5))
    axes = [fig.add_subplot(rows, cols, i + 1) for i in range(len(panels))]
    for i, (name, (recall, prec)) in enumerate(per_arm.items()):
        with np.errstate(all="ignore"), _quiet():
            mean = np.nanmean(np.stack(list(prec.values())), axis=0)
        for ax, panel in zip(axes, panels):
            y = mean if panel == panels[0] else prec.get(panel)
            if y is None or np.all(np.isnan(y)):
                continue
            ax.plot(recall, y, color=colour(name, i), linewidth=1.8 if name == "real+synthetic" else 1.3,
                    label=name)
    for ax, panel in zip(axes, panels):
        ax.set_title(panel, fontsize=9, loc="left")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("recall", fontsize=8)
        ax.set_ylabel("precision", fontsize=8)
        _style(ax)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, frameon=False, loc="upper center", ncols=len(labels),
               bbox_to_anchor=(0.5, 1.0 + 0.08 / rows))
    fig.subplots_adjust(hspace=0.55, wspace=0.35)
    return _png(fig, dpi)


# ---------------------------------------------------------------------------------- per-class AP
def per_class_ap(metrics: CompareMetrics, per_class_mean: dict[str, dict[str, float | None]],
                 dpi: int = 110) -> bytes | None:
    """Grouped bars: classes on x, one bar per arm (mean AP over seeds, error bar = std)."""
    classes = metrics.categories
    arms = [a for a in metrics.arms if _ok_runs(a)]
    if not classes or not arms:
        return None
    fig = Figure(figsize=(max(6.4, 0.6 * len(classes) * max(1, len(arms))), 3.0))
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / len(arms)
    x = np.arange(len(classes))
    for i, a in enumerate(arms):
        means = [per_class_mean.get(a.name, {}).get(c) for c in classes]
        stds = []
        for c in classes:
            vals = [r.per_class_ap.get(c) for r in _ok_runs(a) if r.per_class_ap]
            vals = [v for v in vals if v is not None]
            stds.append(float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0)
        ax.bar(x - 0.4 + width * (i + 0.5), [m if m is not None else 0 for m in means], width * 0.92,
               yerr=[s if s else 0 for s in stds] if any(stds) else None, capsize=2,
               color=colour(a.name, i), label=a.name, error_kw={"elinewidth": 0.9})
        for xi, m in zip(x, means):
            if m is None:
                ax.text(xi - 0.4 + width * (i + 0.5), 0.003, "n/a", rotation=90, ha="center", fontsize=7)
    ax.set_xticks(x, classes, fontsize=9)
    ax.set_ylabel("AP@[.5:.95]", fontsize=9)
    ax.set_ylim(0, max(0.1, ax.get_ylim()[1]))
    # Anchored by its lower edge just above the axes: with more arms than one row holds it grows
    # upwards, never down over the bars (an upper-left anchor at 1.16 covered the tallest ones).
    ax.legend(fontsize=8, frameon=False, ncols=min(4, len(arms)), loc="lower left", bbox_to_anchor=(0, 1.02),
              borderaxespad=0)
    _style(ax)
    return _png(fig, dpi)


# ----------------------------------------------------------------------------- training curves
def read_results_csv(path: Path) -> dict[str, list[float]]:
    """Ultralytics results.csv as {column: values}; column names stripped (old versions pad them)."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    out: dict[str, list[float]] = {}
    for row in rows:
        for k, v in row.items():
            if k is None:
                continue
            try:
                out.setdefault(k.strip(), []).append(float(v))
            except (TypeError, ValueError):
                out.setdefault(k.strip(), []).append(float("nan"))
    return out


def training_curves(metrics: CompareMetrics, compare_dir: Path, dpi: int = 110) -> bytes | None:
    """Loss and validation mAP per epoch from each run's results.csv; one colour per arm,
    one line per seed."""
    series: list[tuple[int, str, int, dict[str, list[float]]]] = []
    for i, a in enumerate(metrics.arms):
        for r in _ok_runs(a):
            p = compare_dir / r.results_csv if r.results_csv else None
            if p is None or not p.is_file():
                continue
            try:
                series.append((i, a.name, r.seed, read_results_csv(p)))
            except (OSError, ValueError, csv.Error):
                continue
    if not series:
        return None
    cols = [(c, label) for c, label in TRAINING_COLUMNS if any(c in s[3] for s in series)]
    if not cols:
        return None
    fig = Figure(figsize=(2.6 * len(cols) + 0.6, 2.6))
    axes = [fig.add_subplot(1, len(cols), j + 1) for j in range(len(cols))]
    labelled = set()
    for i, name, seed, data in series:
        epochs = data.get("epoch") or list(range(1, len(next(iter(data.values()))) + 1))
        for ax, (c, _) in zip(axes, cols):
            if c in data:
                label = name if name not in labelled else None
                ax.plot(epochs, data[c], color=colour(name, i), linewidth=1.3, alpha=0.85, label=label,
                        marker="o" if len(epochs) < 3 else None, markersize=3)
        labelled.add(name)
    for ax, (_, label) in zip(axes, cols):
        ax.set_title(label, fontsize=9, loc="left")
        ax.set_xlabel("epoch", fontsize=8)
        _style(ax)
    axes[0].legend(fontsize=8, frameon=False)
    fig.subplots_adjust(wspace=0.35)
    return _png(fig, dpi)


class _quiet:
    """Silence numpy's 'mean of empty slice' warnings for classes absent from every run."""

    def __enter__(self):
        import warnings

        self._w = warnings.catch_warnings()
        self._w.__enter__()
        warnings.simplefilter("ignore", category=RuntimeWarning)

    def __exit__(self, *exc):
        return self._w.__exit__(*exc)
