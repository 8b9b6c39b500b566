"""The `metalize` command line: one sub-command per stage, each a thin wrapper over `pipeline/`.

Every command takes a profile YAML and `section.key=value` overrides with the same names as the
config file, e.g. `metalize train-gan configs/demo.yaml gan.iterations=500`.
"""

from __future__ import annotations

import typer

app = typer.Typer(
    name="metalize",
    help="Synthetic metal images from 3D-printed replicas, and whether they help your detector.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)


def main() -> None:
    from pipeline.cli import commands  # noqa: F401  (registers the sub-commands)

    try:
        app()
    except OSError as e:
        # A full disk or a folder we may not write is the machine's state, not a bug: one line
        # naming the path, no traceback. Inputs that cannot be read are quarantined before this.
        from pipeline.cli.common import os_error_text, print_error

        print_error(os_error_text(e))
        raise SystemExit(1) from None
