"""build_report(): the comparison's metrics.json + manifests -> report.html, report.md, metrics.json.

Output (out_dir, usually reports/<run_id>/ with the comparison in compare/ beside it):

    report.html   self-contained (inline CSS, base64 figures)
    report.md     same content, figures referenced from figures/
    figures/*.png
    metrics.json  the comparison's metrics.json plus a "report" block (verdict, derived numbers,
                  lineage, what was omitted and why)
    config.yaml   the resolved run config
    manifest.json kind "report"; parents = comparison, dataset, augmented and CycleGAN manifests

Cached: an unchanged report config and unchanged parents (same stage key) with intact files
returns the existing report. Missing parts (no GAN dir, no augmented dataset, a figure that cannot
be drawn) leave a note in their section instead of failing the report.
"""

from __future__ import annotations

import json
import logging
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from pipeline.config import RunConfig
from pipeline.data.version import DatasetVersion
from pipeline.detect.arm_specs import ARM_SPECS
from pipeline.detect.metrics import CompareMetrics
from pipeline.report import plots, samples
from pipeline.report.facts import ReportFacts, attributions, comparison_facts, lineage
from pipeline.report.html import render_html
from pipeline.report.markdown import FIGURE_DIR, render_markdown
from pipeline.store import (atomic_write_bytes, atomic_write_json, atomic_write_text, code_version, dir_lock,
                            read_manifest, sha256_file, stage_key, verify_manifest, write_manifest)

log = logging.getLogger(__name__)
KIND = "report"


class ReportError(RuntimeError):
    """The comparison output cannot be reported (missing or malformed metrics.json)."""


@dataclass
class ReportResult:
    html: Path
    markdown: Path
    metrics: Path
    cached: bool = False
    verdict: str = ""


def load_compare_metrics(path: Path) -> CompareMetrics:
    """The comparison's metrics.json (contract 5), validated as `CompareMetrics` (old schemas
    read with their later keys defaulted); ReportError naming the file when it is not one."""
    try:
        return CompareMetrics.load(path)
    except ValueError as e:
        raise ReportError(str(e)) from None


def report_key(cfg: RunConfig, metrics_path: Path, parents: list[dict[str, Any]]) -> str:
    return stage_key(KIND, {"report": cfg.report.model_dump(mode="json"), "profile": cfg.profile},
                     parents + [{"id": sha256_file(metrics_path)}])


def build_report(cfg: RunConfig, compare_dir: Path, out_dir: Path, *, dataset: DatasetVersion | None = None,
                 gan_dir: Path | None = None, augmented: DatasetVersion | None = None) -> ReportResult:
    """Write report.html, report.md, metrics.json and manifest.json into out_dir (see module doc)."""
    compare_dir, out_dir = Path(compare_dir), Path(out_dir)
    metrics_path = compare_dir / "metrics.json"
    metrics = load_compare_metrics(metrics_path)
    notes: dict[str, str] = {}
    gan_manifest = _gan_manifest(gan_dir, notes)
    parents = [m for m in (read_manifest(compare_dir), dataset.manifest if dataset else None,
                           augmented.manifest if augmented else None, gan_manifest) if m]
    key = report_key(cfg, metrics_path, parents)
    # The caller may hold out_dir's own lock (the pipeline does, for the whole run): lock beside it.
    with dir_lock(out_dir.parent / ".locks" / f"report-{out_dir.name}"):
        if (hit := cached_report(out_dir, key)) is not None:
            return hit
        facts = gather(cfg, metrics, compare_dir, dataset, augmented, gan_dir if gan_manifest else None,
                       gan_manifest, notes)
        return write_report(cfg, facts, metrics, out_dir, key, parents)


def _randomized_seed(metrics: CompareMetrics) -> int | None:
    """The detector seed whose randomised replicas the report shows (the real+replica-aug arm's
    lowest finished seed; its training images are a function of that seed), else None."""
    arm = next((a for a in metrics.arms if (spec := ARM_SPECS.get(a.name)) and spec.randomize), None)
    seeds = [r.seed for r in arm.runs if r.ok] if arm is not None else []
    return min(seeds) if seeds else None


def cached_report(out_dir: Path, key: str) -> ReportResult | None:
    m = read_manifest(out_dir)
    if m is None or m.get("kind") != KIND or m.get("summary", {}).get("key") != key or verify_manifest(out_dir):
        return None
    return ReportResult(out_dir / "report.html", out_dir / "report.md", out_dir / "metrics.json", True,
                        m["summary"].get("verdict", ""))


def _gan_manifest(gan_dir: Path | None, notes: dict[str, str]) -> dict[str, Any] | None:
    if gan_dir is None:
        notes["gan"] = "No CycleGAN model directory was given, so its quality metrics are not shown."
        return None
    m = read_manifest(gan_dir)
    if m is None or m.get("kind") != "cyclegan":
        notes["gan"] = f"{gan_dir}: not a finished CycleGAN model (no cyclegan manifest.json); section omitted."
        return None
    return m


# ------------------------------------------------------------------------------------ gathering
def gather(cfg: RunConfig, metrics: CompareMetrics, compare_dir: Path, dataset: DatasetVersion | None,
           augmented: DatasetVersion | None, gan_dir: Path | None, gan_manifest: dict[str, Any] | None,
           notes: dict[str, str]) -> ReportFacts:
    """Everything the report shows, figures included (each figure failing alone, with a note)."""
    r = cfg.report
    facts = summary_facts(r, compare_dir, metrics)
    gan = None
    if gan_dir is not None and gan_manifest is not None:
        gm = _read_json(gan_dir / "metrics.json") or gan_manifest.get("summary", {}).get("metrics") or {}
        gan = {"id": gan_manifest.get("id"), "metrics": gm,
               "generator_sha256": gan_manifest.get("summary", {}).get("generator_sha256")}
    if dataset is None:
        notes["dataset"] = "No dataset version was given: dataset counts and test detections are not shown."
    if augmented is None:
        notes["augmented"] = "No augmented dataset was given: synthetic samples and their counts are not shown."
        notes["synthetic"] = notes["augmented"]
    recorded = dataset.manifest.get("config", {}).get("data") if dataset else None
    data_cfg = recorded or cfg.data.model_dump(mode="json")
    facts = dataclasses.replace(
        facts,
        dataset={"id": dataset.id, "summary": dataset.manifest.get("summary", {})} if dataset else None,
        augmented={"id": augmented.id, "summary": augmented.manifest.get("summary", {})} if augmented else None,
        gan=gan,
        lineage=lineage(read_manifest(compare_dir), dataset.manifest if dataset else None,
                        augmented.manifest if augmented else None, gan_manifest, metrics),
        attributions=attributions(data_cfg), notes=notes, config=cfg.model_dump(mode="json"),
    )
    shown: dict[str, Any] = {}
    per_class_mean = {a.name: a.per_class_ap for a in facts.arms}
    draw: dict[str, Callable[[], bytes | None]] = {
        "map_bars": lambda: plots.map_bars(metrics, facts.ci_percent, r.dpi),
        "pr_curves": lambda: plots.pr_curves(metrics, compare_dir, r.dpi),
        "per_class_ap": lambda: plots.per_class_ap(metrics, per_class_mean, r.dpi),
        "training_curves": lambda: plots.training_curves(metrics, compare_dir, r.dpi),
    }
    if dataset is not None:
        draw["detections"] = lambda: _grid(shown, "detections", samples.detections_grid(
            metrics, compare_dir, dataset, r.n_detection_samples, r.detection_threshold, r.dpi), facts)
    else:
        facts.figure_notes["detections"] = notes["dataset"]
    if augmented is not None:
        rand_seed = _randomized_seed(metrics)
        if rand_seed is not None and dataset is not None:
            shown["synthetic_randomized"] = {"detector_seed": rand_seed}
        draw["synthetic"] = lambda: _grid(shown, "synthetic", samples.synthetic_grid(
            augmented, dataset, r.n_synthetic_samples, r.dpi, randomized_seed=rand_seed), facts)
    for name, version in (("dataset_card", dataset), ("augmented_card", augmented)):
        card = version.root / "card" / "class_balance.png" if version is not None else None
        if card is not None and card.is_file():
            draw[name] = card.read_bytes
    if gan_dir is not None:
        pngs = sorted((gan_dir / "samples").glob("*.png"))
        draw["gan_samples"] = lambda: pngs[-1].read_bytes() if pngs else None
    for name, fn in draw.items():
        try:
            png = fn()
        except Exception as e:  # a figure must never take the report down; say what happened
            log.warning("report figure %s failed: %s", name, e)
            facts.figure_notes[name] = f"Figure could not be drawn: {type(e).__name__}: {e}"
            continue
        if png:
            facts.figures[name] = png
        else:
            facts.figure_notes.setdefault(name, "No data for this figure (no successful run wrote it).")
    facts.notes.update({k: v for k, v in shown.pop("_notes", {}).items() if v})
    facts.samples = shown
    return facts


def summary_facts(report: Any, compare_dir: Path, metrics: CompareMetrics) -> ReportFacts:
    """The verdict, arms and comparisons of the comparison in compare_dir, at the CI level its
    bootstrap used: what the report opens with, and all the CLI and the Prefect artifacts show."""
    return comparison_facts(metrics, report, comparison_alpha(compare_dir, report.alpha, metrics))


def comparison_alpha(compare_dir: Path, default: float, metrics: CompareMetrics | None = None) -> float:
    """The CI level the comparison's bootstrap used (recorded with its comparisons, else its saved
    config), so the report's "95% CI" label matches the interval even when the report is built
    with another config."""
    import yaml

    recorded = {c.alpha for c in (metrics.comparisons if metrics is not None else [])} - {None}
    if len(recorded) == 1:
        return float(recorded.pop())

    try:
        saved = yaml.safe_load((Path(compare_dir) / "config.yaml").read_text()) or {}
        return float(saved["report"]["alpha"])
    except (OSError, ValueError, KeyError, TypeError, yaml.YAMLError):
        return default


def _grid(shown: dict[str, Any], name: str, grid: samples.Grid, facts: ReportFacts) -> bytes | None:
    shown[name] = grid.shown
    if grid.note:
        shown.setdefault("_notes", {})[name] = grid.note
        if grid.png is None:
            facts.figure_notes[name] = grid.note
    return grid.png


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


# -------------------------------------------------------------------------------------- writing
def write_report(cfg: RunConfig, facts: ReportFacts, metrics: CompareMetrics, out_dir: Path, key: str,
                 parents: list[dict[str, Any]]) -> ReportResult:
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    fig_dir = out_dir / FIGURE_DIR
    for name, png in facts.figures.items():
        written.append(atomic_write_bytes(fig_dir / f"{name}.png", png))
    previous = read_manifest(out_dir) or {}
    if previous.get("kind") == KIND:  # figures an earlier report wrote that this one no longer draws
        for rel in previous.get("files", {}):
            if rel.startswith(f"{FIGURE_DIR}/") and out_dir / rel not in written:
                (out_dir / rel).unlink(missing_ok=True)
    report_block = {
        "title": facts.title,
        "code_version": code_version(),
        "key": key,
        **facts.derived(),
        "dataset": facts.dataset["id"] if facts.dataset else None,
        "augmented": facts.augmented["id"] if facts.augmented else None,
        "gan": {"id": facts.gan["id"], "quality": facts.gan["metrics"].get("quality")} if facts.gan else None,
        "lineage": facts.lineage,
        "warnings": facts.warnings,
        "attributions": facts.attributions,
        "omitted": {**facts.notes, **{f"figure:{k}": v for k, v in facts.figure_notes.items()
                                      if k not in facts.figures}},
        "samples": facts.samples,
        "figures": sorted(facts.figures),
    }
    written.append(atomic_write_json(out_dir / "metrics.json", {**metrics.dump(), "report": report_block}))
    written.append(atomic_write_text(out_dir / "report.md", render_markdown(facts)))
    written.append(atomic_write_text(out_dir / "config.yaml", cfg.to_yaml()))
    written.append(atomic_write_text(out_dir / "report.html", render_html(facts)))
    files = {p.relative_to(out_dir).as_posix(): sha256_file(p) for p in written}
    summary = {"key": key, "verdict": facts.verdict, "verdict_kind": facts.verdict_kind, "badge": facts.badge,
               "map": {a.name: a.summary["map"]["mean"] for a in facts.arms}}
    write_manifest(out_dir, kind=KIND, id=f"report-{key[:12]}", config=cfg.report.model_dump(mode="json"),
                   parents=parents, summary=summary, files=files)
    return ReportResult(out_dir / "report.html", out_dir / "report.md", out_dir / "metrics.json", False,
                        facts.verdict)


# ------------------------------------------------------------------------------------ discovery
def find_inputs(cfg: RunConfig, compare_dir: Path
                ) -> tuple[DatasetVersion | None, DatasetVersion | None, Path | None]:
    """(dataset, augmented, CycleGAN dir) that a comparison was made from, found by the ids in its
    manifest's lineage under the config's output root (or the root its run dir lives in)."""
    m = read_manifest(compare_dir)
    if m is None:
        return None, None, None
    run_root = Path(compare_dir).resolve().parent.parent.parent  # <root>/reports/<run>/compare
    roots = [Path(cfg.runtime.output_root).resolve(), run_root]
    where = {"dataset": ("data", "datasets"), "augmented": ("data", "datasets"),
             "cyclegan": ("models", "cyclegan")}
    found: dict[str, Path] = {}
    for ref in _walk(m.get("parents") or []):  # direct parents first, then their lineage
        kind, rid = ref.get("kind"), ref.get("id")
        if kind not in where or kind in found or not rid:
            continue
        for root in roots:
            # translator models live under models/<gan.model>/ (cyclegan, cut, fastcut)
            candidates = (sorted(root.joinpath("models").glob(f"*/{rid}")) if kind == "cyclegan"
                          else [root.joinpath(*where[kind], rid)])
            d = next((c for c in candidates if (c / "manifest.json").is_file()), None)
            if d is not None:
                found[kind] = d
                break
    open_ = lambda k: DatasetVersion.open(found[k]) if k in found else None  # noqa: E731
    return open_("dataset"), open_("augmented"), found.get("cyclegan")


def _walk(refs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Breadth-first over a manifest's parent references."""
    out, queue = [], list(refs)
    while queue:
        r = queue.pop(0)
        out.append(r)
        queue.extend(r.get("parents") or [])
    return out
