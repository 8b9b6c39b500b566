"""`metalize run` (the whole flow once) and `metalize serve` (the flow on a schedule)."""

from __future__ import annotations

import logging
import os

import typer

from pipeline.cli import app
from pipeline.cli.common import CONFIG_ARG, OVERRIDES_ARG, config_args, console, fail, load, os_error_text


@app.command()
def run(config: str | None = CONFIG_ARG, overrides: list[str] = OVERRIDES_ARG) -> None:
    """Run ingest → CycleGAN → synthesize → compare → report; prints the report path last.

    Without PREFECT_API_URL, Prefect starts a temporary local server for the run (127.0.0.1, a
    free port, stopped at the end; see SECURITY.md).
    """
    cfg = load(config, overrides)  # fail fast on a bad config, before Prefect starts
    path, overrides = config_args(config, overrides)
    expected = user_errors()
    for name in ("prefect.flow_runs", "prefect.task_runs"):
        logging.getLogger(name).addFilter(_NoTraceback(expected))
    from pipeline.data.ingest import ingest
    from pipeline.preflight import preflight

    try:  # and on too little data: the flow's own ingest then finds this version cached
        preflight(cfg, ingest(cfg, progress=True).version)
    except (*expected, ValueError) as e:
        fail(os_error_text(e) if isinstance(e, OSError) else str(e))
        return
    from flows.end_to_end import metalize_pipeline

    try:
        result = metalize_pipeline(config=os.path.abspath(path) if path else None, overrides=overrides)
    except expected as e:
        fail(os_error_text(e) if isinstance(e, OSError) else str(e))
        return
    for name, st in result["stages"].items():
        console.print(f"  {name:<11} {'cached' if st['cached'] else 'ran':<7} {st['seconds']:>7.1f} s  {st['dir']}")
    console.print("[bold green]report:[/]")
    typer.echo(result["report"])


def user_errors() -> tuple[type[BaseException], ...]:
    """Errors that are the user's or the machine's to fix, each with a message naming the file,
    key or path: a run ends with that message, not a traceback. Anything else is a bug."""
    from pipeline.config import ConfigError
    from pipeline.data.demo import DemoDataError
    from pipeline.data.formats import FormatError
    from pipeline.data.sources import IngestError
    from pipeline.data.version import DatasetError
    from pipeline.gan.checkpoint import CheckpointError
    from pipeline.gan.trainer import TrainingOutOfMemoryError
    from pipeline.report.build import ReportError
    from pipeline.store import LockedError

    return (ConfigError, DemoDataError, FormatError, IngestError, DatasetError, CheckpointError,
            TrainingOutOfMemoryError, ReportError, LockedError, OSError)


class _NoTraceback(logging.Filter):
    """Prefect logs every exception that ends a flow or task run with its traceback; for the
    errors in `kinds` the message says it all (and the CLI repeats it as its last line)."""

    def __init__(self, kinds: tuple[type[BaseException], ...]):
        super().__init__()
        self.kinds = kinds

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], self.kinds):
            record.exc_info, record.exc_text = None, None
        return True


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
