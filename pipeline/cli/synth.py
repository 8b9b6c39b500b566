"""`metalize synthesize`: translate labelled A into synthetic B and publish the augmented version."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from pipeline.cli import app
from pipeline.cli.common import CONFIG_ARG, OVERRIDES_ARG, console, fail, load
from pipeline.config import RunConfig
from pipeline.store import hash_json, read_manifest


def cached_dataset(cfg: RunConfig):
    """The ingest version this config would produce, if it was already produced."""
    from pipeline.data.ingest import plan_ingest

    plan = plan_ingest(cfg)
    if not plan.cached:
        fail(f"no ingested dataset for this config at {plan.version_dir}; run `metalize ingest` first "
             "or pass --dataset DIR")
    return plan.result(cached=True).version


def cached_model(cfg: RunConfig, dataset_id: str) -> Path:
    """The newest CycleGAN under models/cyclegan/ trained on `dataset_id` with this gan config."""
    root = cfg.runtime.models_dir / "cyclegan"
    want = hash_json(cfg.gan.model_dump(mode="json"))
    found = []
    for d in sorted(root.glob("*/")) if root.is_dir() else []:
        m = read_manifest(d)
        if not m or m.get("kind") != "cyclegan" or dataset_id not in {p.get("id") for p in m.get("parents", [])}:
            continue
        cfg_m = m.get("config", {})
        same = hash_json(cfg_m.get("gan", cfg_m)) == want
        found.append((same, m.get("created", ""), d))
    exact = [f for f in found if f[0]]
    if not exact:
        fail(f"no CycleGAN for dataset {dataset_id} with this gan config under {root}; run "
             "`metalize train-gan` first or pass --model DIR")
    return max(exact, key=lambda f: f[1])[2]


@app.command()
def synthesize(
    config: Path = CONFIG_ARG,
    overrides: list[str] = OVERRIDES_ARG,
    dataset: Path = typer.Option(None, "--dataset", help="dataset version dir (default: cached ingest)"),
    model: Path = typer.Option(None, "--model", help="CycleGAN model dir or G_AB.safetensors "
                               "(default: the cached CycleGAN of this config)"),
    flow: bool = typer.Option(False, "--flow", help="run as the Prefect flow (shard tasks, artifact)"),
) -> None:
    """Translate labelled A images, gate them, and publish <output_root>/data/datasets/<name>-aug-<id>/.

    Prints the augmented version's folder on stdout; counts go to stderr.
    """
    cfg = load(config, overrides)
    from pipeline.data.version import DatasetError, DatasetVersion

    try:
        ds = DatasetVersion.open(dataset) if dataset else cached_dataset(cfg)
        model_dir = model if model else cached_model(cfg, ds.id)
        if flow:
            from flows.synthesize import synthesize_flow

            result = synthesize_flow(cfg, ds, model_dir)
        else:
            from pipeline.synth.stage import synthesize as run

            result = run(cfg, ds, model_dir, progress=True)
    except (DatasetError, FileNotFoundError, ValueError) as e:
        fail(str(e))
        return
    s = result.version.manifest["summary"]
    table = Table(title=result.version.id + (" (cached)" if result.cached else ""))
    for col in ("class", "real boxes", "synthetic boxes"):
        table.add_column(col, justify="left" if col == "class" else "right")
    for n in s["categories"]:
        table.add_row(n, str(s["boxes"]["real"].get(n, 0)), str(s["boxes"]["synthetic"].get(n, 0)))
    console.print(table)
    console.print(
        f"images: {s['images']['real']} real + {s['images']['synthetic']} synthetic; "
        f"{s['gate']['rejected_images']} rejected, {s['gate']['dropped_boxes']} boxes dropped "
        f"({result.version.root / 'rejected.jsonl'})"
    )
    typer.echo(str(result.version.root))
