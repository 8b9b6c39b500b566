"""One table, three renderers: a `Table` of plain strings is built once (pipeline.report.tables,
pipeline.experiment) and drawn as Markdown (reports, Prefect artifacts), HTML (report.html,
pipeline.report.html) or a rich table (the CLI), so the surfaces cannot disagree on a number."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class Table:
    headers: list[str]
    rows: list[list[str]]
    numeric: list[bool]  # right-align these columns
    caption: str = ""
    row_classes: list[str] | None = None  # css hints per row ("failed", "treatment")
    row_notes: list[str] | None = None  # a short line shown under the first cell (HTML)


def to_markdown(t: Table) -> str:
    esc = lambda s: s.replace("|", "\\|").replace("\n", " ")  # noqa: E731
    head = "| " + " | ".join(esc(h) for h in t.headers) + " |"
    sep = "|" + "|".join("---:" if n else "---" for n in t.numeric) + "|"
    body = ["| " + " | ".join(esc(c) for c in row) + " |" for row in t.rows]
    out = "\n".join([head, sep, *body])
    return out + (f"\n\n*{t.caption}*" if t.caption else "")


def to_rich(t: Table, title: str | None = None) -> Any:
    """A rich.table.Table of `t`, its caption under it."""
    from rich.table import Table as RichTable
    from rich.text import Text

    out = RichTable(title=title, caption=t.caption or None)
    for h, numeric in zip(t.headers, t.numeric):
        out.add_column(h, justify="right" if numeric else "left")
    for row in t.rows:
        out.add_row(*(Text(c) for c in row))  # cells are text, never rich markup (errors hold "[...]")
    return out
