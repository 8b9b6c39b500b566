"""Shared CLI plumbing: config loading with readable errors, where library state goes, output.

State folders. Every command that loads a config points the libraries it loads at folders under
`<output_root>/cache/` unless the user set them: matplotlib (`MPLCONFIGDIR`), Prefect
(`PREFECT_HOME`: its database and settings), ultralytics (`YOLO_CONFIG_DIR`), torch's kernel
cache (`TORCHINDUCTOR_CACHE_DIR`); and temporary files (`TMPDIR`, always: libraries leave
things there) go to `<output_root>/cache/tmp/`. So a run writes nothing into $HOME, the system
temp folder or the working directory.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from pipeline.config import ConfigError, RunConfig, load_config


def _stderr_console() -> Console:
    """Console on stderr; not a terminal (a log file, CI, a pipe): lines are never wrapped, so
    paths stay whole for grep and copy."""
    terminal = sys.stderr.isatty()
    return Console(stderr=True, soft_wrap=True, width=None if terminal else 100_000)


console = _stderr_console()

CONFIG_ARG = typer.Argument(None, help="profile YAML, e.g. configs/demo.yaml (default: built-in); may be "
                            "left out before overrides", show_default=False)
OVERRIDES_ARG = typer.Argument(None, help="overrides: section.key=value ...", show_default=False)

# The CLI owns its process's environment (TMPDIR included); under a test runner that invokes the
# Typer app in-process, only the state folders a user may set are given defaults.
OWN_PROCESS = False
STATE_DIRS = {"MPLCONFIGDIR": "matplotlib", "PREFECT_HOME": "prefect", "YOLO_CONFIG_DIR": "ultralytics",
              "TORCHINDUCTOR_CACHE_DIR": "torchinductor"}


def offline_env() -> None:
    """Defaults that keep every stage offline and quiet; a user's own settings win."""
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("MPLBACKEND", "Agg")
    # Prefect's ephemeral API server gets 20 s to start by default: too short on a busy 2-core box.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")


def use_state_dirs(output_root: Path) -> Path:
    """Point library state and temporary files under `<output_root>/cache/` (see module doc);
    returns that folder. Folders the user set through the environment are kept."""
    cache = Path(os.path.abspath(output_root)) / "cache"
    for var, sub in STATE_DIRS.items():
        if not os.environ.get(var):
            os.environ[var] = str(cache / sub)
    for var in ("PREFECT_HOME", "YOLO_CONFIG_DIR"):  # Prefect makes PREFECT_HOME but not its parents
        Path(os.environ[var]).expanduser().mkdir(parents=True, exist_ok=True)
    if OWN_PROCESS:
        tmp = cache / "tmp"
        tmp.mkdir(parents=True, exist_ok=True)  # a TMPDIR that does not exist sends Python to /tmp
        os.environ["TMPDIR"] = str(tmp)
        tempfile.tempdir = None  # recomputed from TMPDIR on next use
    return cache


def config_args(config: str | Path | None, overrides: list[str] | None) -> tuple[Path | None, list[str]]:
    """(config file, overrides) as the user meant them: `metalize ingest runtime.output_root=out`
    has no config file, its first argument is an override (unless a file of that name exists)."""
    overrides = list(overrides or [])
    if config is not None and "=" in str(config) and not Path(config).exists():
        return None, [str(config), *overrides]
    return (Path(config) if config is not None else None), overrides


def load(config: str | Path | None, overrides: list[str] | None) -> RunConfig:
    """Load the run config or exit with status 2 and a one-line reason; set the state folders."""
    offline_env()
    path, overrides = config_args(config, overrides)
    try:
        cfg = load_config(path, overrides)
    except ConfigError as e:
        console.print(f"[bold red]config error:[/] {escape(str(e))}")
        raise typer.Exit(2) from None
    use_state_dirs(cfg.runtime.output_root)
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
    console.print(f"[bold red]error:[/] {escape(message)}")


def os_error_text(e: OSError) -> str:
    """`No space left on device: /out/data/datasets/...`: the system's words and the path."""
    what = e.strerror or str(e)
    paths = [str(p) for p in (e.filename, e.filename2) if p is not None]
    text = f"{what}: {' -> '.join(paths)}" if paths else what
    if isinstance(e, PermissionError) and paths:
        text += " (this user may not write or read there; check runtime.output_root and the input folders)"
    return text
