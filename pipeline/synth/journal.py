"""Per-shard journals: the resumption record of a synthesis run.

`shards/<k>.jsonl` holds one JSON line per finished work item (outputs with sha256, rejections,
counters; flushed at once, fsync'ed per batch); `shards/<k>.done.json` marks a finished shard. A line whose outputs no longer
hash to the recorded values, or a torn last line, does not count.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pipeline.store import sha256_file


def journal_paths(staging: Path, index: int) -> tuple[Path, Path]:
    d = staging / "shards"
    return d / f"{index:05d}.jsonl", d / f"{index:05d}.done.json"


def read_journal(path: Path) -> list[dict[str, Any]]:
    """Complete lines of a shard journal; a torn last line (killed mid-write) is ignored."""
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def outputs_intact(staging: Path, row: dict[str, Any]) -> bool:
    for out in row["outputs"]:
        p = staging / out["image"]["file_name"]
        if not p.is_file() or sha256_file(p) != out["image"]["sha256"]:
            return False
    return True


def append_row(f, row: dict[str, Any], *, sync: bool = True) -> None:
    """Append one line. flush() hands it to the OS, so it survives the process being killed;
    fsync (sync=True) also survives a power cut. Callers fsync once per batch: a line lost to a
    power cut only makes its item recomputed, and its image is then kept (same bytes)."""
    f.write(json.dumps(row, separators=(",", ":")) + "\n")
    f.flush()
    if sync:
        os.fsync(f.fileno())


def shard_done(staging: Path, index: int) -> bool:
    """A shard is done when its done record exists and every recorded output verifies by hash."""
    journal, done = journal_paths(staging, index)
    if not done.is_file():
        return False
    rows = read_journal(journal)
    try:
        expected = json.loads(done.read_text())["items"]
    except (OSError, json.JSONDecodeError, KeyError):
        return False
    return len(rows) == expected and all(outputs_intact(staging, r) for r in rows)


def collect(out_dir: Path, n_shards: int) -> Iterable[dict[str, Any]]:
    """Stream the journal rows of shards 0..n-1 in order (one work item per row)."""
    for k in range(n_shards):
        yield from read_journal(journal_paths(out_dir, k)[0])
