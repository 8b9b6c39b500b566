"""`metalize train-gan` and `metalize translate`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import typer

from pipeline.cli import app
from pipeline.cli.common import CONFIG_ARG, OVERRIDES_ARG, config_args, console, fail, load


@app.command("train-gan")
def train_gan(
    config: str | None = CONFIG_ARG,
    overrides: list[str] = OVERRIDES_ARG,
    dataset: Path | None = typer.Option(None, "--dataset",
                                        help="dataset version folder (default: ingest(cfg), cached)"),
    nproc: int = typer.Option(1, "--nproc-per-node", min=1,
                              help=">1: DistributedDataParallel via torchrun, one process per GPU"),
) -> None:
    """Train (or resume, or reuse) the CycleGAN; prints the model directory on stdout."""
    cfg = load(config, overrides)
    from pipeline.data.version import DatasetError, DatasetVersion

    try:
        if dataset is not None:
            version = DatasetVersion.open(dataset)
        else:
            from pipeline.data.ingest import ingest

            version = ingest(cfg, progress=True).version
        from pipeline.preflight import preflight

        preflight(cfg, version, compare=False)  # before minutes of training, not after
    except (DatasetError, ValueError, RuntimeError) as e:
        fail(str(e))
        return
    if nproc > 1:
        _torchrun(nproc, *config_args(config, overrides), version.root)
        return
    from pipeline.gan import train_translator

    result = train_translator(cfg, version, progress=True)
    q = result.metrics.get("quality", {})
    if q:
        r, r0 = q["realism"], q["realism_raw_a"]
        cycle = "" if q.get("cycle_l1") is None else f", cycle L1 {q['cycle_l1']:.3f}"  # CUT has no inverse
        console.print(f"realism critic accuracy: translated {r['accuracy']:.2f} (raw A "
                      f"{r0['accuracy']:.2f}; 0.5 = indistinguishable), box edge F1 "
                      f"{q['structure']['box_edge_f1'] or float('nan'):.2f}{cycle}")
    cached = " (cached)" if result.cached else ""
    console.print(f"model card: {result.model_dir / 'model_card.md'}{cached}")
    typer.echo(str(result.model_dir))


def _torchrun(nproc: int, config: Path | None, overrides: list[str], dataset: Path) -> None:
    exe = shutil.which("torchrun") or str(Path(sys.executable).with_name("torchrun"))
    cmd = [exe, f"--nproc_per_node={nproc}", "-m", "pipeline.gan.training_run", *([os.path.abspath(config)] if config else []),
           *overrides, "--dataset", str(dataset)]
    console.print(" ".join(cmd))
    rc = subprocess.call(cmd, env={**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")})
    if rc:
        raise typer.Exit(rc)


@app.command()
def translate(
    model_dir: Path = typer.Argument(..., help="CycleGAN model directory (or one G_*.safetensors file)"),
    inputs: Path = typer.Argument(..., help="folder of images, or a dataset version folder"),
    out_dir: Path = typer.Argument(..., help="where translated images go (mirrors the input layout)"),
    direction: str = typer.Option("AtoB", "--direction", help="AtoB (replica → metal) or BtoA"),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda | cuda:N"),
    tile: int = typer.Option(512, "--tile", help="tile side in pixels for large images"),
    overlap: int | None = typer.Option(None, "--overlap", help="tile overlap in pixels (default: half the "
                                                             "generator's receptive field)"),
    batch: str = typer.Option("auto", "--batch",
                              help="images or tiles per forward pass: auto (1 on CPU, 8 on CUDA) or a number "
                                   "(halved on CUDA out-of-memory)"),
    native: bool = typer.Option(False, "--native",
                                help="translate at each photo's own resolution (tiled when larger than "
                                     "--tile) instead of the training scale"),
    size: int | None = typer.Option(None, "--size", min=16,
                                    help="translate with the short side resized to SIZE pixels (default: "
                                         "the training scale)"),
    precision: str = typer.Option("auto", "--precision", help="auto | fp32 | bf16 (auto: bf16 on CUDA and "
                                                              "bf16-capable CPUs)"),
    border: int = typer.Option(8, "--border", min=0,
                               help="pixels of reflection around each image or tile, cut off after the "
                                    "generator (it draws noise along zero-padded top and left edges); a "
                                    "multiple of 4, 0 = none"),
) -> None:
    """Translate every image (any size; output keeps each input's size). Inputs are never modified.

    By default each image is resized to the generator's training scale, translated and resized
    back; --native keeps the photo's resolution (fine texture at full size, tiled), --size picks
    another scale."""
    from pipeline.gan.checkpoint import CheckpointError
    from pipeline.gan.translate import Translator, iter_images, translate_files
    from pipeline.store import atomic_write_json, read_manifest

    if direction not in ("AtoB", "BtoA"):
        fail(f"--direction must be AtoB or BtoA, got {direction!r}", 2)
    if native and size is not None:
        fail("--native and --size exclude each other", 2)
    load_size: int | str = "native" if native else (size if size is not None else "train")
    if batch != "auto" and not (batch.isdigit() and int(batch) >= 1):
        fail(f"--batch must be auto or a whole number >= 1, got {batch!r}", 2)
    if not inputs.exists():
        fail(f"{inputs}: not found", 2)
    if out_dir.resolve() == inputs.resolve() or inputs.resolve() in out_dir.resolve().parents:
        fail(f"{out_dir}: must not be inside the input folder {inputs} (inputs are never modified)", 2)
    try:
        translator = Translator.load(model_dir, direction, device, tile=tile, overlap=overlap,
                                     batch=batch if batch == "auto" else int(batch),
                                     load_size=load_size, precision=precision, border=border)
    except (CheckpointError, ValueError, OSError) as e:
        fail(str(e))
        return
    manifest = read_manifest(inputs)
    if manifest is not None:  # a dataset version: every image of the source domain
        from pipeline.data.version import DatasetVersion

        version = DatasetVersion.open(inputs)
        domain = "A" if direction == "AtoB" else "B"
        pairs = [(version.image_path(im), out_dir / im.file_name)
                 for d, s in version.splits() if d == domain for im in version.coco(d, s).images]
    else:
        pairs = [(p, out_dir / p.relative_to(inputs)) for p in iter_images(inputs)]
    if not pairs:
        fail(f"{inputs}: no images found")
    done, failed = translate_files(translator, pairs, progress=True)
    written = set(done)
    atomic_write_json(out_dir / "translations.json", {
        "model": str(model_dir), "direction": direction, "generator": translator.sha256,
        "scale": load_size, "tile": translator.tile, "overlap": translator.overlap,
        "border": translator.border,
        "precision": translator.precision,
        "images": [{"input": str(s), "output": str(d.relative_to(out_dir))}
                   for s, d in pairs if d in written],
        "failed": failed})
    examples = f": {json.dumps(failed[:3])}" if failed else ""
    console.print(f"{len(done)} translated, {len(failed)} failed{examples}")
    typer.echo(str(out_dir))
    if failed and not done:
        raise typer.Exit(1)
