"""The `metalize` command line: one sub-command per stage, each a thin wrapper over `pipeline/`.

Every command takes a profile YAML and `section.key=value` overrides with the same names as the
config file, e.g. `metalize train-gan configs/demo.yaml gan.iterations=500`; the YAML may be left
out (`metalize ingest runtime.output_root=out`: built-in defaults plus the overrides).
"""

from __future__ import annotations

import typer

from pipeline import __version__

app = typer.Typer(
    name="metalize",
    help="Synthetic metal images from 3D-printed replicas, and whether they help your detector.\n\n"
    "metalize run CONFIG runs every stage; or one by one: demo-data, ingest, train-gan, synthesize, compare, "
    "report. Any config key can be overridden as section.key=value; metalize COMMAND -h for details.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"metalize {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: bool = typer.Option(False, "--version", "-V", callback=_version, is_eager=True,
                                 help="print the version and exit"),
) -> None:
    """The options every command shares (the app's help text is set above)."""


def main() -> None:
    from pipeline.cli import commands  # noqa: F401  (registers the sub-commands)
    from pipeline.cli import common

    common.OWN_PROCESS = True
    try:
        app()
    except OSError as e:
        # A full disk or a folder we may not write is the machine's state, not a bug: one line
        # naming the path, no traceback. Inputs that cannot be read are quarantined before this.
        common.print_error(common.os_error_text(e))
        raise SystemExit(1) from None
