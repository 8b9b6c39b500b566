"""`metalize demo-data`: render the procedural replica/metal demo set."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from pipeline.cli import app
from pipeline.cli.common import CONFIG_ARG, OVERRIDES_ARG, console, fail, load


@app.command("demo-data")
def demo_data(
    config: str | None = CONFIG_ARG,
    overrides: list[str] = OVERRIDES_ARG,
    out: Path | None = typer.Option(None, "--out", help="output folder (default: data/raw/demo-<hash12>)"),
    preview: bool = typer.Option(False, "--preview", help="also write preview.png: samples with boxes"),
) -> None:
    """Render the demo photos (A: printed replicas, B: metal) with COCO boxes; print the folder."""
    from pipeline.demo.dataset import DemoDataError, demo_dir, render_demo, write_preview

    cfg = load(config, overrides)
    target = out if out is not None else demo_dir(cfg)
    started = time.perf_counter()
    try:
        sources = render_demo(cfg.data.demo, cfg.runtime.seed, target, workers=cfg.runtime.workers,
                              progress=True)
        if preview:
            console.print(f"preview: {write_preview(sources)}")
    except (DemoDataError, OSError) as e:
        fail(str(e))
    console.print(f"demo data ready in {time.perf_counter() - started:.1f} s")
    typer.echo(str(sources.root))
