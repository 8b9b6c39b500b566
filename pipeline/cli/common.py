"""Shared CLI plumbing: config loading with readable errors, environment defaults."""

from __future__ import annotations

import os
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

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
    # Prefect makes PREFECT_HOME but not its parents, then fails to open its database there.
    for var in ("PREFECT_HOME", "YOLO_CONFIG_DIR"):
        if os.environ.get(var):
            Path(os.environ[var]).expanduser().mkdir(parents=True, exist_ok=True)


def load(config: Path | None, overrides: list[str] | None) -> RunConfig:
    """Load the run config or exit with status 2 and a one-line reason."""
    offline_env()
    try:
        cfg = load_config(config, overrides or [])
    except ConfigError as e:
        console.print(f"[bold red]config error:[/] {escape(str(e))}", soft_wrap=True)
        raise typer.Exit(2) from None
    # torch keeps kernels of its fused CPU optimisers and of torch.compile in
    # $TMPDIR/torchinductor_<user>, left there after the run: keep them with the run's other outputs.
    cache = cfg.runtime.output_root / "cache" / "torchinductor"
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", os.path.abspath(cache))
    return cfg


def cached_dataset(cfg: RunConfig):
    """The ingest version this config would produce, if it was already produced; else exit with
    what to run first."""
    from pipeline.data.ingest import plan_ingest

    plan = plan_ingest(cfg)
    if not plan.cached:
        fail(f"no ingested dataset for this config at {plan.version_dir}; run `metalize ingest` first "
             "or pass --dataset DIR")
    return plan.result(cached=True).version


def fail(message: str, code: int = 1) -> None:
    print_error(message)
    raise typer.Exit(code)


def print_error(message: str) -> None:
    """`error: <message>` on stderr, on one line: paths stay whole for grep and copy."""
    console.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)


def os_error_text(e: OSError) -> str:
    """`No space left on device: /out/data/datasets/...`: the system's words and the path."""
    what = e.strerror or str(e)
    paths = [str(p) for p in (e.filename, e.filename2) if p is not None]
    text = f"{what}: {' -> '.join(paths)}" if paths else what
    if isinstance(e, PermissionError) and paths:
        text += " (this user may not write or read there; check runtime.output_root and the input folders)"
    return text
