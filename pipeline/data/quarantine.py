"""Quarantine rows summarised for people: grouped by action and kind of reason, a few examples each.

A dataset version's quarantine.jsonl has one row `{file, reason, action}` per problem; reasons
name the offending value ("missing image file 'p7.png' under /data/B", "box [5.0, 5.0, 0.0, 4.0]
is zero-area"), so rows are grouped by the reason with its specifics masked - quoted strings,
bracketed lists, paths and numbers - which puts 300 missing files in one line of a summary.
Used by the CLI, the dataset card and the error ingest raises when a domain ends up empty.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import PurePath

_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
_BRACKETS = re.compile(r"\[[^\]]*\]")
_PATH = re.compile(r"(?<![\w.])(?:[A-Za-z]:)?[/\\][^\s,;()]+")
_SIZE = re.compile(r"\b\d+x\d+\b")  # 60x40
_NUMBER = re.compile(r"(?<![A-Za-z_\d.])\d+(?:\.\d+)?(?![\d.]|-bit)")


def reason_kind(text: str) -> str:
    """`text` with its specifics masked: "missing image file '…' under …", "box […] is zero-area"."""
    text = _QUOTED.sub("'…'", text)
    text = _BRACKETS.sub("[…]", text)
    text = _PATH.sub("…", text)
    return _NUMBER.sub("N", _SIZE.sub("NxN", text))


@dataclass
class QuarantineGroup:
    """Rows sharing an action and a kind of reason; `examples` are the first rows, in file order."""

    action: str
    kind: str
    count: int = 0
    examples: list[dict] = field(default_factory=list)


def group_rows(rows: list[dict], examples: int = 3) -> list[QuarantineGroup]:
    """Groups by (action, reason kind), largest first (ties: first seen first)."""
    groups: dict[tuple[str, str], QuarantineGroup] = {}
    for r in rows:
        key = (reason_kind(r["action"]), reason_kind(r["reason"]))
        g = groups.setdefault(key, QuarantineGroup(*key))
        g.count += 1
        if len(g.examples) < examples:
            g.examples.append(r)
    return sorted(groups.values(), key=lambda g: -g.count)  # sorted() is stable: ties keep first-seen order


def short_file(file: str) -> str:
    """The file part people recognise: base name plus any `#image 3` / `:12` locator."""
    return ", ".join(PurePath(f).name or f for f in file.split(", "))


def summary_text(rows: list[dict], max_kinds: int = 3, examples: int = 2) -> str:
    """One line for an error message, per action its commonest reasons; a reason met once is
    given as written: `source skipped: not valid JSON (... line 1 column 2) (A.json); image
    skipped: 3 x zero-byte file (e.g. a.png, b.png, +1 more)`."""
    by_action: dict[str, list[QuarantineGroup]] = {}
    for g in group_rows(rows, examples):
        by_action.setdefault(g.action, []).append(g)
    parts = []
    for action, groups in sorted(by_action.items(), key=lambda kv: -sum(g.count for g in kv[1])):
        said = []
        for g in groups[:max_kinds]:
            if g.count == 1:
                said.append(f"{g.examples[0]['reason']} ({short_file(g.examples[0]['file'])})")
            else:
                names = ", ".join(short_file(r["file"]) for r in g.examples)
                said.append(f"{g.count} x {g.kind} (e.g. {names}" + (f", +{g.count - len(g.examples)} more)"
                                                                    if g.count > len(g.examples) else ")"))
        rest = sum(g.count for g in groups[max_kinds:])
        parts.append(f"{action}: " + ", ".join(said) + (f", + {rest} other rows" if rest else ""))
    return "; ".join(parts)


def summary_lines(rows: list[dict], max_kinds: int = 3, examples: int = 2) -> list[str]:
    """Plain text: a line per action (largest first), under it its commonest reasons with
    example files::

        9 x image skipped
          3 x missing image file '…' under … (e.g. ann.json#image 13, ann.json#image 14, +1 more)
          1 x zero-byte file (e.g. zero.png)
          + 5 rows of 4 other reasons
    """
    by_action: dict[str, list[QuarantineGroup]] = {}
    for g in group_rows(rows, examples):
        by_action.setdefault(g.action, []).append(g)
    ordered = sorted(by_action.items(), key=lambda kv: -sum(g.count for g in kv[1]))
    lines = []
    for action, groups in ordered:
        lines.append(f"{sum(g.count for g in groups)} x {action}")
        for g in groups[:max_kinds]:
            names = [short_file(r["file"]) for r in g.examples]
            more = f", +{g.count - len(names)} more" if g.count > len(names) else ""
            lines.append(f"  {g.count} x {g.kind} (e.g. {', '.join(names)}{more})")
        rest = groups[max_kinds:]
        if rest:
            lines.append(f"  + {sum(g.count for g in rest)} rows of {len(rest)} other reasons")
    return lines
