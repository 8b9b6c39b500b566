"""Shared CLI plumbing: config loading with readable errors, environment defaults."""

from __future__ import annotations

import os
from pathlib import Path

import typer
from rich.console import Console

from pipeline.config import ConfigError, RunConfig, load_config

console = Console(stderr=True)

CONFIG_ARG = typer.Argument(None, help="profile YAML, e.g. configs/demo.yaml (default: built-in)")
OVERRIDES_ARG = typer.Argument(None, help="overrides: section.key=value ...", show_default=False)


def offline_env() -> None:
    """Defaults that keep every stage offline and quiet; a user's own settings win."""
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("MPLBACKEND", "Agg")
    # Prefect's ephemeral API server gets 20 s to start by default: too short on a busy 2-core box.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")


def load(config: Path | None, overrides: list[str] | None) -> RunConfig:
    """Load the run config or exit with status 2 and a one-line reason."""
    offline_env()
    try:
        return load_config(config, overrides or [])
    except ConfigError as e:
        console.print(f"[bold red]config error:[/] {e}")
        raise typer.Exit(2) from None


def fail(message: str, code: int = 1) -> None:
    console.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code)
