"""Imports every command module so their `@app.command` decorators run."""

from pipeline.cli import data, demo, detect, gan, report, run, synth  # noqa: F401
