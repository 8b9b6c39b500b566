"""`metalize synthesize`: translate labelled A into synthetic B and publish the augmented version."""

from __future__ import annotations

from pathlib import Path

import typer

from pipeline.cli import app
from pipeline.cli.common import CONFIG_ARG, OVERRIDES_ARG, cached_dataset, console, fail, load
from pipeline.config import RunConfig
from pipeline.store import read_manifest



def cached_model(cfg: RunConfig, dataset_id: str, dataset=None) -> Path:
    """The CycleGAN this config trains on `dataset`, if it was already trained."""
    from pipeline.gan.training_run import model_dir_for

    d = model_dir_for(cfg, dataset)
    m = read_manifest(d)
    if m is None or m.get("kind") != "cyclegan":
        fail(f"no CycleGAN for dataset {dataset_id} with this gan config at {d}; run "
             "`metalize train-gan` first or pass --model DIR")
    return d


@app.command()
def synthesize(
    config: str | None = CONFIG_ARG,
    overrides: list[str] = OVERRIDES_ARG,
    dataset: Path = typer.Option(None, "--dataset", help="dataset version dir (default: cached ingest)"),
    model: Path = typer.Option(None, "--model", help="CycleGAN model dir or G_AB.safetensors "
                               "(default: the cached CycleGAN of this config)"),
) -> None:
    """Translate labelled A images, gate them, and publish <output_root>/data/datasets/<name>-aug-<id>/.

    Prints the augmented version's folder on stdout; counts go to stderr.
    """
    cfg = load(config, overrides)
    from pipeline.data.version import DatasetError, DatasetVersion
    from pipeline.gan.checkpoint import CheckpointError

    try:
        ds = DatasetVersion.open(dataset) if dataset else cached_dataset(cfg)
        model_dir = model if model else cached_model(cfg, ds.id, ds)
        from pipeline.synth.stage import synthesize as run

        result = run(cfg, ds, model_dir, progress=True)
    except (DatasetError, FileNotFoundError, ValueError, CheckpointError) as e:
        fail(str(e))
        return
    from pipeline.report import tables
    from pipeline.tables import to_rich

    s = result.version.manifest["summary"]
    console.print(to_rich(tables.augmented_summary(s), result.version.id + (" (cached)" if result.cached else "")))
    if (gate := tables.gate_summary(s)) is not None:
        console.print(to_rich(gate))
    console.print(
        f"images: {s['images']['real']} real + {s['images']['synthetic']} synthetic; "
        f"{s['gate']['rejected_images']} rejected, {s['gate']['dropped_boxes']} boxes dropped "
        f"({result.version.root / 'rejected.jsonl'})"
    )
    typer.echo(str(result.version.root))
