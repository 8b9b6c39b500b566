"""Helpers for the report tests: read the numbers back out of report.md / report.html."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path


def md_table(md: str, first_header: str, having: str | None = None) -> list[dict[str, str]]:
    """Rows of the Markdown table whose first header cell is `first_header` (and which has a
    column named `having`, when given)."""
    lines = md.splitlines()
    for i, line in enumerate(lines):
        cells = _cells(line)
        if cells and cells[0] == first_header and (having is None or having in cells):
            rows = []
            for row in lines[i + 2:]:
                if not row.startswith("|"):
                    break
                rows.append(dict(zip(cells, _cells(row))))
            return rows
    raise AssertionError(f"no table starting with {first_header!r}")


def _cells(line: str) -> list[str]:
    if not line.startswith("|"):
        return []
    return [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self.imgs: list[dict[str, str]] = []
        self.links: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag in ("style", "script"):
            self._skip += 1
        if tag == "img":
            self.imgs.append(a)
        for k in ("href", "src"):
            if a.get(k):
                self.links.append(a[k])

    def handle_endtag(self, tag):
        if tag in ("style", "script"):
            self._skip -= 1
        if tag in ("td", "th", "p", "li", "div", "h1", "h2", "h3", "tr", "caption", "figcaption"):
            self.parts.append("\n")

    def handle_data(self, data):
        if not self._skip:
            self.parts.append(data)


def html_text(html: str) -> tuple[str, list[dict[str, str]], list[str]]:
    """(visible text with a newline after each cell/block, img attributes, href/src values)."""
    p = _Text()
    p.feed(html)
    return re.sub(r"[ \t]+", " ", "".join(p.parts)), p.imgs, p.links


def read(p: Path) -> str:
    return p.read_text(encoding="utf-8")
