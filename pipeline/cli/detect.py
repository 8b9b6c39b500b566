"""`metalize compare`: train the detector arms and evaluate them on held-out real B."""

from __future__ import annotations

from pathlib import Path

import typer

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
    for part in arms_tables(cfg, result):
        console.print(part)
    typer.echo(str(result.metrics_path))


def arms_tables(cfg: RunConfig, result) -> list:
    """The verdict, arms and comparisons as rich tables, from the report's own table builders."""
    from pipeline.report import tables
    from pipeline.report.build import summary_facts
    from pipeline.tables import to_rich
    from rich.text import Text

    f = summary_facts(cfg.report, result.out_dir, result.metrics)
    title = f"{result.metrics.dataset['id']}: {result.metrics.test['images']} real B test images"
    arms = tables.arms(f)
    notes = [f.verdict, *f.secondary, *[f"warning: {w}" for w in f.warnings]]
    return [to_rich(arms, title + (" (cached)" if result.cached else "")),
            to_rich(tables.comparisons(f)), Text("\n".join(notes))]
