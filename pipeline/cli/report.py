"""`metalize report`: build report.html / report.md / metrics.json from a finished comparison."""

from __future__ import annotations

from pathlib import Path

import typer

from pipeline.cli import app
from pipeline.cli.common import OVERRIDES_ARG, config_args, console, fail, load


def resolve_dirs(path: Path) -> tuple[Path, Path]:
    """(compare dir, report dir) from a run dir (holding compare/) or a compare dir itself."""
    if (path / "compare" / "metrics.json").is_file():
        return path / "compare", path
    if (path / "metrics.json").is_file() and (path / "runs").is_dir():
        return path, path.parent
    fail(f"{path}: neither a run dir (with compare/metrics.json) nor a comparison dir (with metrics.json "
         "and runs/); run `metalize compare` first")
    raise AssertionError  # fail() exits


@app.command()
def report(
    run_dir: Path = typer.Argument(..., help="reports/<run-id>/ or its compare/ dir"),
    config: str | None = typer.Argument(None, help="profile YAML (default: the config.yaml saved by the "
                                        "comparison); may be left out before overrides", show_default=False),
    overrides: list[str] = OVERRIDES_ARG,
    dataset: Path = typer.Option(None, "--dataset", help="dataset version dir (default: from the lineage)"),
    augmented: Path = typer.Option(None, "--augmented", help="augmented version dir (default: from the lineage)"),
    gan: Path = typer.Option(None, "--gan", help="CycleGAN model dir (default: from the lineage)"),
    out: Path = typer.Option(None, "--out", help="report dir (default: the run dir)"),
) -> None:
    """Write report.html (self-contained), report.md and metrics.json for a finished comparison.

    The dataset, augmented dataset and CycleGAN are found from the comparison's lineage under the
    output root unless given; a missing one just omits its section. Prints the report.html path.
    """
    compare_dir, default_out = resolve_dirs(run_dir)
    config_file, overrides = config_args(config, overrides)
    if config_file is None and (compare_dir / "config.yaml").is_file():
        config_file = compare_dir / "config.yaml"
    cfg = load(config_file, overrides)
    from pipeline.data.version import DatasetError, DatasetVersion
    from pipeline.report.build import ReportError, build_report, find_inputs

    try:
        found = find_inputs(cfg, compare_dir)
        ds = DatasetVersion.open(dataset) if dataset else found[0]
        aug = DatasetVersion.open(augmented) if augmented else found[1]
        gan_dir = gan or found[2]
        for name, v in (("dataset", ds), ("augmented dataset", aug), ("CycleGAN model", gan_dir)):
            if v is None:
                console.print(f"[yellow]no {name} found: its section will say so[/]")
        result = build_report(cfg, compare_dir, out or default_out, dataset=ds, gan_dir=gan_dir,
                              augmented=aug)
    except (ReportError, DatasetError) as e:
        fail(str(e))
        return
    console.print(f"[bold]{result.verdict}[/]" + (" (cached)" if result.cached else ""))
    typer.echo(str(result.html))
