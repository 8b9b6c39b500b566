"""report.md: the same sections as the HTML report, figures referenced as files in figures/."""

from __future__ import annotations

import yaml

from pipeline.report import tables
from pipeline.report.facts import ReportFacts, synthetic_caption, training_recipe
from pipeline.tables import to_markdown as table_md

FIGURE_DIR = "figures"


def arms_markdown(f: ReportFacts) -> str:
    """Verdict, arms table and comparisons: also the Prefect artifact."""
    t = tables.arms(f)
    legend = [f"- **{a}**: {n}" for a, n in zip([r[0] for r in t.rows], t.row_notes or []) if n]
    parts = [f"**{f.verdict}**", *[f"\n{s}" for s in f.secondary], *[f"\n**Warning:** {w}" for w in f.warnings],
             "", table_md(t), "", *legend]
    if f.comparisons or f.metrics.comparisons_skipped:
        parts += ["", table_md(tables.comparisons(f))]
    return "\n".join(parts)


def _figure(f: ReportFacts, name: str, alt: str) -> str:
    if name in f.figures:
        return f"![{alt}]({FIGURE_DIR}/{name}.png)"
    return f"*{f.figure_notes.get(name, 'not available')}*"


def render_markdown(f: ReportFacts) -> str:
    m = f.metrics
    test, cfg = m.test, m.config
    out = [
        f"# {f.title}", "",
        f"Dataset `{m.dataset.get('id')}` · test: {test.get('images')} real metal (B) images, "
        f"{sum((test.get('instances') or {}).values())} boxes · {training_recipe(cfg)}, "
        f"seeds {cfg.get('seeds')} · {cfg.get('model')}", "",
        "## Verdict", "", arms_markdown(f), "",
        "## Accuracy per arm", "", _figure(f, "map_bars", "mAP per arm with uplift CIs"), "",
        table_md(tables.size_ap(f)), "",
        "## Precision–recall curves", "", _figure(f, "pr_curves", "PR curves per arm"), "",
        "## Per-class AP", "", _figure(f, "per_class_ap", "per-class AP"), "", table_md(tables.per_class(f)), "",
        "## Training curves", "", _figure(f, "training_curves", "training curves"), "",
        "## Test detections per arm", "",
        "Green: ground truth; red: detections with score ≥ "
        f"{f.config.get('report', {}).get('detection_threshold')}.",
        "", _figure(f, "detections", "test detections per arm"), "",
        *([f"*{f.notes['detections']}*", ""] if f.notes.get("detections") and "detections" in f.figures else []),
        "## Synthetic samples", "",
    ]
    if "synthetic" in f.figures:
        out += [synthetic_caption(f), "", _figure(f, "synthetic", "synthetic samples"), ""]
        if f.notes.get("synthetic"):
            out += [f"*{f.notes['synthetic']}*", ""]
    else:
        out += [f"*{f.notes.get('synthetic') or f.figure_notes.get('synthetic', 'not available')}*", ""]
    out += ["## Datasets", ""]
    if f.dataset:
        out += [f"Dataset version `{f.dataset['id']}`:", "",
                table_md(tables.dataset_splits(f.dataset["summary"])), ""]
        if "dataset_card" in f.figures:
            out += [_figure(f, "dataset_card", "dataset class balance"), ""]
    else:
        out += [f"*{f.notes.get('dataset', 'dataset version not given')}*", ""]
    if f.augmented:
        out += [f"Augmented version `{f.augmented['id']}`:", "",
                table_md(tables.augmented_summary(f.augmented["summary"])), ""]
        if "augmented_card" in f.figures:
            out += [_figure(f, "augmented_card", "augmented class balance"), ""]
        gate = tables.gate_summary(f.augmented["summary"])
        if gate:
            out += [table_md(gate), ""]
    else:
        out += [f"*{f.notes.get('augmented', 'augmented dataset not given')}*", ""]
    out += ["## CycleGAN quality", ""]
    if f.gan:
        q = f.gan["metrics"].get("quality") or {}
        out += [f"Model `{f.gan['id']}`, {f.gan['metrics'].get('iterations', '?')} iterations, "
                f"{f.gan['metrics'].get('train_seconds', '?')} s of training.", ""]
        if q:
            critic = f.gan["metrics"].get("realism_critic")
            out += [table_md(tables.gan_quality(q, critic)), "", table_md(tables.gan_structure(q)), ""]
        if "gan_samples" in f.figures:
            out += ["Rows: A, G(A), F(G(A)) / B, F(B), G(F(B)) (last training sample).", "",
                    _figure(f, "gan_samples", "CycleGAN samples"), ""]
    else:
        out += [f"*{f.notes.get('gan', 'CycleGAN model not given')}*", ""]
    out += ["## Lineage", "", table_md(tables.lineage(f)), "",
            "## Timings and hardware", "", table_md(tables.timings(f)), "",
            table_md(tables.key_values(m.timings, "comparison wall time, seconds")), "",
            table_md(tables.key_values(m.hardware, "hardware of the comparison")), "",
            "## Configuration", "", table_md(tables.key_values(cfg, "detect section used by the comparison")), "",
            "<details><summary>Full run configuration</summary>", "", "```yaml",
            yaml.safe_dump(f.config, sort_keys=False).rstrip(), "```", "", "</details>", "",
            "## Attribution and licenses", "", *[f"- {a}" for a in f.attributions], ""]
    return "\n".join(out)
