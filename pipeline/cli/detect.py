"""`metalize compare`: train the detector arms and evaluate them on held-out real B."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from pipeline.cli import app
from pipeline.cli.common import CONFIG_ARG, OVERRIDES_ARG, cached_dataset, console, fail, load
from pipeline.config import RunConfig



def default_augmented(cfg: RunConfig, dataset):
    """The augmented version this config synthesizes from `dataset`, if it exists (else None)."""
    from pipeline.gan.training_run import model_dir_for
    from pipeline.store import read_manifest
    from pipeline.synth.stage import cached_result, prepare

    model_dir = model_dir_for(cfg, dataset)
    if (read_manifest(model_dir) or {}).get("kind") != "cyclegan":
        return None
    hit = cached_result(prepare(cfg, dataset, model_dir))
    return hit.version if hit else None


@app.command()
def compare(
    config: str | None = CONFIG_ARG,
    overrides: list[str] = OVERRIDES_ARG,
    dataset: Path = typer.Option(None, "--dataset", help="dataset version dir (default: cached ingest)"),
    augmented: Path = typer.Option(None, "--augmented",
                                   help="augmented version dir (default: cached synthesis)"),
    out: Path = typer.Option(None, "--out", help="output dir (default: reports/<run-id>/compare)"),
) -> None:
    """Train every detector arm x seed under one budget and evaluate on the real B test split.

    Prints the path of metrics.json on stdout; the table of arms goes to stderr. Finished runs
    are reused on rerun; an arm that crashes is reported as failed with its error.
    """
    cfg = load(config, overrides)
    from pipeline.data.version import DatasetError, DatasetVersion

    try:
        ds = DatasetVersion.open(dataset) if dataset else cached_dataset(cfg)
        from pipeline.preflight import preflight

        preflight(cfg, ds, gan=False)
        aug = DatasetVersion.open(augmented) if augmented else default_augmented(cfg, ds)
        if aug is None:
            console.print("[yellow]no augmented dataset: "
                          "the real+synthetic arm will be reported unavailable[/]")
        if out is None:
            from pipeline.run import run_dir_for

            out = run_dir_for(cfg, ds.root, aug.root if aug else None) / "compare"
        from pipeline.detect.compare import compare as run

        result = run(cfg, ds, aug, out, progress=True)
    except (DatasetError, FileNotFoundError, ValueError) as e:
        fail(str(e))
        return
    console.print(arms_table(result.metrics, cached=result.cached))
    typer.echo(str(result.metrics_path))


def _fmt(d: dict) -> str:
    """mean ± std of one metric over seeds."""
    if d["mean"] is None:
        return "–"
    return f"{d['mean']:.3f}" + (f" ± {d['std']:.3f}" if d["std"] else "")


def arms_table(metrics: dict, *, cached: bool = False) -> Table:
    from pipeline.report.verdict import outcome_text

    table = Table(title=f"{metrics['dataset']['id']}: {metrics['test']['images']} real B test images"
                  + (" (cached)" if cached else ""))
    for col in ("arm", "status", "mAP@[.5:.95]", "mAP50", "seeds", "images/epoch"):
        table.add_column(col, justify="left" if col in ("arm", "status") else "right")
    for a in metrics["arms"]:
        s = a["summary"]
        table.add_row(a["name"], a["status"], _fmt(s["map"]), _fmt(s["map50"]), str(s["map"]["n"]),
                      str(a["images_per_epoch"]))
    notes = [f"{a['name']}: {a['error'].splitlines()[0][:200]}" for a in metrics["arms"] if a["error"]]
    for c in metrics["comparisons"]:
        level = f"{round(100 * (1 - c['alpha']))}% CI " if c.get("alpha") is not None else ""
        notes.append(f"{c['treatment']} vs {c['baseline']}: Δ mAP {c['delta']:+.3f} {level}"
                     f"[{c['ci_low']:+.3f}, {c['ci_high']:+.3f}] {outcome_text(c)}")
    notes += [f"{c['treatment']} vs {c['baseline']}: not computed ({c['reason']})"
              for c in metrics.get("comparisons_skipped") or []]
    notes += [f"warning: {w['message']}" for w in metrics.get("warnings") or []]
    table.caption = "\n".join(notes) or None
    return table
