"""`metalize demo-data`: render the procedural replica/metal demo set."""

from __future__ import annotations

from pipeline.cli import app  # noqa: F401
