"""What the corpus modules share: a case and its promised outcome, and a file writer."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Case:
    id: str
    kind: str  # image | annotation | path
    what: str
    file: str  # a substring of the quarantine row's `file` (or of the kept image's original name)
    expect: str  # skipped | normalised | kept | clean | box dropped | box clipped | annotation dropped/kept |
    #              source skipped | declared size ignored | category ignored | last value used
    reason: str = ""  # regex the quarantine row's reason must match (not used for `kept`)
    group: str = ""  # the input folder (inputs/<group>/) holding the case's source(s)


def write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data, encoding="utf-8")
    return path
