"""The report's charts show what they claim: no legend covers a bar, however many arms."""

from __future__ import annotations

import pytest

from pipeline.detect.metrics import CompareMetrics
from pipeline.report import plots


@pytest.mark.parametrize("n_arms", [2, 6])
def test_per_class_legend_never_covers_a_bar(monkeypatch, n_arms: int) -> None:
    captured = {}
    monkeypatch.setattr(plots, "_png", lambda fig, dpi: captured.setdefault("fig", fig) and b"")
    names = ["real", "real+replica", "real+synthetic", "oracle", "real+replica-aug", "synthetic->real"][:n_arms]
    classes = ["tensile_specimen", "gear", "bracket", "hex_nut"]
    run = {"seed": 0, "status": "ok", "per_class_ap": {c: 0.9 for c in classes}}
    metrics = CompareMetrics(dataset={}, test={}, categories=classes, comparisons=[],
                             arms=[{"name": n, "status": "ok", "summary": {}, "runs": [run]} for n in names])
    plots.per_class_ap(metrics, {n: {c: 0.95 for c in classes} for n in names})  # bars up to the top
    fig = captured["fig"]
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    renderer = FigureCanvasAgg(fig).get_renderer()
    (ax,) = fig.axes
    legend = ax.get_legend().get_window_extent(renderer)
    bars = [p.get_window_extent(renderer) for p in ax.patches]
    assert len(bars) == n_arms * len(classes)
    assert not any(legend.overlaps(b) for b in bars)


def _overlaps(fig) -> list[str]:
    """Legends that cover a bar of their own axes, by bar label."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    renderer = FigureCanvasAgg(fig).get_renderer()
    hits = []
    for ax in fig.axes:
        legend = ax.get_legend()
        if legend is None:
            continue
        box = legend.get_window_extent(renderer)
        hits += [f"{ax.get_title()}: bar {i}" for i, p in enumerate(ax.patches)
                 if p.get_height() > 0 and box.overlaps(p.get_window_extent(renderer))]
    return hits


def test_card_legends_never_cover_a_bar(monkeypatch, tmp_path) -> None:
    """The synthetic card's class charts and the dataset card's class balance, bars at full height."""
    from pipeline.synth import card as synth_card

    figs = []
    monkeypatch.setattr(synth_card, "_save_fig", lambda fig, path: figs.append(fig))
    names = ["tensile_specimen", "gear", "bracket", "hex_nut"]
    even = {n: 10 for n in names}
    synth_card.class_balance_png(tmp_path / "c.png", names, even, even,
                                 {"before": even, "after": {**even, "gear": 30}, "target": None})
    (fig,) = figs
    assert len(fig.axes) == 2 and _overlaps(fig) == []

    from pipeline.data import card as data_card
    from pipeline.data.coco import Annotation, Category, CocoSet, ImageRecord

    cats = [Category(i + 1, n) for i, n in enumerate(names)]
    sets = {}
    for split in ("train", "val", "test"):
        images = [ImageRecord(1, f"images/B/{split}/x.png", 64, 48)]
        anns = [Annotation(k + 1, 1, c.id, [1, 1, 8, 8]) for k, c in enumerate(cats * 5)]
        sets[("B", split)] = CocoSet(images, anns, cats)
    saved = []
    monkeypatch.setattr(data_card, "_save", lambda fig, path: saved.append(fig))
    monkeypatch.setattr(data_card, "_sample_grid", lambda *a, **k: None)
    data_card.write_card(tmp_path, "x", {"categories": names, "counts": {}, "instances": {}}, sets, [])
    assert saved and all(_overlaps(f) == [] for f in saved)
