"""`metalize run` (the whole flow once) and `metalize serve` (the flow on a schedule)."""

from __future__ import annotations

import os

import typer

from pipeline.cli import app
from pipeline.cli.common import CONFIG_ARG, OVERRIDES_ARG, config_args, console, load


@app.command()
def run(config: str | None = CONFIG_ARG, overrides: list[str] = OVERRIDES_ARG) -> None:
    """Run ingest → CycleGAN → synthesize → compare → report; prints the report path last.

    Without PREFECT_API_URL, Prefect starts a temporary local server for the run (127.0.0.1, a
    free port, stopped at the end; see SECURITY.md).
    """
    load(config, overrides)  # fail fast on a bad config, before Prefect starts
    path, overrides = config_args(config, overrides)
    from flows.end_to_end import metalize_pipeline

    result = metalize_pipeline(config=os.path.abspath(path) if path else None, overrides=overrides)
    for name, st in result["stages"].items():
        console.print(f"  {name:<11} {'cached' if st['cached'] else 'ran':<7} {st['seconds']:>7.1f} s  {st['dir']}")
    console.print("[bold green]report:[/]")
    typer.echo(result["report"])


@app.command()
def serve(
    config: str | None = CONFIG_ARG,
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

    path, overrides = config_args(config, overrides)
    serve_pipeline(
        config=os.path.abspath(path) if path else None,  # runs start in the server's working directory
        overrides=overrides,
        name=name or f"metalize-{cfg.profile}",
        cron=cron,
        interval=interval,
    )
