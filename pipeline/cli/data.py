"""`metalize` sub-commands for the data stage."""

from __future__ import annotations

from pipeline.cli import app  # noqa: F401
