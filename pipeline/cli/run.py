"""`metalize run` (the whole experiment once) and `metalize serve` (its Prefect flow on a schedule)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import typer

from pipeline.cli import app
from pipeline.cli.common import (CONFIG_ARG, OVERRIDES_ARG, config_args, console, load, os_error_text,
                                 print_error)


@app.command()
def run(
    config: str | None = CONFIG_ARG,
    overrides: list[str] = OVERRIDES_ARG,
    prefect: bool = typer.Option(False, "--prefect", help="run as the Prefect flow (python -m flows.end_to_end): "
                                 "subflows, tasks and artifacts in Prefect's UI, the flow run id in the ledger"),
) -> None:
    """Run ingest → CycleGAN → synthesize → compare → report; prints the report path last.

    The stages run in this process (pipeline.experiment). With --prefect the same stages run as
    Prefect flows; without PREFECT_API_URL Prefect then starts a temporary local server for the
    run (127.0.0.1, a free port, stopped at the end; see SECURITY.md).
    """
    cfg = load(config, overrides)  # fail fast on a bad config
    if prefect:
        path, overrides = config_args(config, overrides)
        cmd = [sys.executable, "-m", "flows.end_to_end", *([os.path.abspath(path)] if path else []), *overrides]
        raise typer.Exit(subprocess.call(cmd, cwd=_repo_root()))
    from pipeline.experiment import experiment

    code = run_or_fail(lambda: experiment(cfg).to_dict(), print_stages)
    if code:
        raise typer.Exit(code)


def run_or_fail(call: Callable[[], dict], show: Callable[[dict], None]) -> int:
    """Run the experiment; a user's or the machine's error ends with its one-line message (status
    1), not a traceback. Returns the exit status."""
    expected = user_errors()
    for name in ("prefect.flow_runs", "prefect.task_runs"):
        logging.getLogger(name).addFilter(_NoTraceback(expected))
    try:
        result = call()
    except (*expected, ValueError) as e:
        print_error(os_error_text(e) if isinstance(e, OSError) else str(e))
        return 1
    show(result)
    return 0


def print_stages(result: dict) -> None:
    """The per-stage table on stderr, then the report's path on stdout."""
    from pipeline.experiment import stage_table
    from pipeline.tables import to_rich

    console.print(to_rich(stage_table(result)))
    console.print("[bold green]report:[/]")
    typer.echo(result["report"])


def _repo_root() -> str:
    """The folder holding flows/ (the checkout), from which `python -m flows...` runs."""
    return str(Path(__file__).resolve().parents[2])


def user_errors() -> tuple[type[BaseException], ...]:
    """Errors that are the user's or the machine's to fix, each with a message naming the file,
    key or path: a run ends with that message, not a traceback. Anything else is a bug."""
    from pipeline.config import ConfigError
    from pipeline.demo.dataset import DemoDataError
    from pipeline.data.formats import FormatError
    from pipeline.data.sources import IngestError
    from pipeline.data.version import DatasetError
    from pipeline.gan.checkpoint import CheckpointError
    from pipeline.gan.training_loop import TrainingOutOfMemoryError
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
    path, overrides = config_args(config, overrides)
    cmd = [sys.executable, "-m", "flows.deploy", "--name", name or f"metalize-{cfg.profile}",
           *(["--cron", cron] if cron is not None else ["--interval", str(interval)]),
           # runs start in the server's working directory: the config goes by absolute path
           *(["--config", os.path.abspath(path)] if path else []), "--", *overrides]
    raise typer.Exit(subprocess.call(cmd, cwd=_repo_root()))
