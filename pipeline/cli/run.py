"""`metalize run` (the whole flow once) and `metalize serve` (the flow on a schedule)."""

from __future__ import annotations

from pathlib import Path

import typer

from pipeline.cli import app
from pipeline.cli.common import CONFIG_ARG, OVERRIDES_ARG, console, fail, load


@app.command()
def run(config: Path = CONFIG_ARG, overrides: list[str] = OVERRIDES_ARG) -> None:
    """Run ingest → CycleGAN → synthesize → compare → report; prints the report path last."""
    cfg = load(config, overrides)  # fail fast on a bad config, before Prefect starts
    from pipeline.data.ingest import ingest
    from pipeline.data.version import DatasetError
    from pipeline.preflight import preflight

    try:  # and on too little data: the flow's own ingest then finds this version cached
        preflight(cfg, ingest(cfg, progress=True).version)
    except (DatasetError, ValueError) as e:
        fail(str(e))
        return
    from flows.end_to_end import metalize_pipeline

    result = metalize_pipeline(config=str(config) if config else None, overrides=list(overrides or []))
    for name, st in result["stages"].items():
        console.print(f"  {name:<11} {'cached' if st['cached'] else 'ran':<7} {st['seconds']:>7.1f} s  {st['dir']}")
    console.print("[bold green]report:[/]")
    typer.echo(result["report"])


@app.command()
def serve(
    config: Path = CONFIG_ARG,
    overrides: list[str] = OVERRIDES_ARG,
    cron: str = typer.Option(None, help='cron schedule, e.g. "0 2 * * *"'),
    interval: float = typer.Option(None, help="seconds between runs (instead of --cron)"),
    name: str = typer.Option(None, help="deployment name (default: metalize-<profile>)"),
) -> None:
    """Serve the pipeline as a scheduled deployment (needs a Prefect server: PREFECT_API_URL)."""
    cfg = load(config, overrides)
    if (cron is None) == (interval is None):
        console.print("[bold red]error:[/] give exactly one of --cron or --interval")
        raise typer.Exit(2)
    from flows.deploy import serve_pipeline

    serve_pipeline(
        config=str(config) if config else None,
        overrides=list(overrides or []),
        name=name or f"metalize-{cfg.profile}",
        cron=cron,
        interval=interval,
    )
