"""Imports every command module so their `@app.command` decorators run, then lists the commands
in workflow order with help paragraphs that the terminal wraps, not the source."""

import inspect

from pipeline.cli import app, data, demo, detect, gan, report, run, synth  # noqa: F401

WORKFLOW = ("run", "demo-data", "ingest", "train-gan", "translate", "synthesize", "compare", "report", "serve")


def _name(info) -> str:
    return info.name or info.callback.__name__.replace("_", "-")


def _unwrap(text: str | None) -> str | None:
    """Docstring paragraphs on one line each: source line breaks are not the reader's."""
    if not text:
        return text
    paragraphs = inspect.cleandoc(text).split("\n\n")
    return "\n\n".join(" ".join(line.strip() for line in p.splitlines()) for p in paragraphs)


app.registered_commands.sort(key=lambda info: WORKFLOW.index(_name(info)) if _name(info) in WORKFLOW
                             else len(WORKFLOW))
for _info in app.registered_commands:
    _info.help = _unwrap(_info.help or _info.callback.__doc__)
