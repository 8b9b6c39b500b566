"""Reading untrusted JSON files (COCO, labelme, split files) with bounds, never a crash.

`read_json(path, max_bytes)` returns the parsed value and the keys that appeared twice in one
object, or raises `JsonFileError` naming the file and the problem:

- larger than `max_bytes` (`data.max_annotation_mb`): refused from its size, before reading;
- not UTF-8 (a UTF-8 byte-order mark, as Windows tools write, is accepted);
- nested deeper than `MAX_DEPTH` arrays/objects: counted on the raw text before parsing, so
  `[[[[...]]]]` a million deep is refused in one pass instead of exhausting Python's recursion
  limit (the parser's or that of whatever later walks or prints the value);
- numbers Python will not convert (more than 4300 digits: its int-conversion limit);
- malformed JSON.

NaN and Infinity literals (Python's `json` writes them) are parsed; readers check every number.
Duplicate keys are legal JSON whose meaning differs by reader (Python keeps the last): they are
returned so the reader can say so in a quarantine row instead of guessing silently.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np

# Per-file bound on annotation files (JSON and YOLO txt): data.max_annotation_mb, same default.
DEFAULT_MAX_BYTES = 1024 * 10**6
# COCO needs 5 levels (file, annotations, one annotation, segmentation, one polygon); labelme 4.
MAX_DEPTH = 32
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


class JsonFileError(ValueError):
    """A JSON file cannot be read; the message names the file and the problem."""


def nesting_depth(data: bytes) -> int:
    """Deepest nesting of arrays/objects in JSON text (brackets inside strings do not count)."""
    brackets = _STRING.sub(b"", data).translate(None, _NOT_BRACKETS)
    if not brackets:
        return 0
    b = np.frombuffer(brackets, np.uint8)
    step = np.where((b == ord("[")) | (b == ord("{")), 1, -1).astype(np.int64)
    return int(np.cumsum(step).max())


def read_json(path: str | Path, max_bytes: int) -> tuple[Any, list[str]]:
    """(value, keys that appeared more than once in one object) from a JSON file; see module doc."""
    path = Path(path)
    if path.is_dir():
        raise JsonFileError(f"{path}: is a folder, not a JSON file")
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise JsonFileError(f"{path}: {size / 1e6:.1f} MB, more than data.max_annotation_mb="
                                f"{max_bytes / 1e6:g} (raise it if the file is genuine)")
        data = path.read_bytes()
    except FileNotFoundError:
        raise JsonFileError(f"{path}: file not found") from None
    except PermissionError as e:
        raise JsonFileError(f"{path}: cannot read: {e.strerror}") from None
    return parse_json(data, str(path))


def parse_json(data: bytes, name: str) -> tuple[Any, list[str]]:
    """`read_json` for bytes already read; `name` is used in messages."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise JsonFileError(f"{name}: not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start})") from None
    depth = nesting_depth(data)
    if depth > MAX_DEPTH:
        raise JsonFileError(f"{name}: arrays/objects nested {depth} deep (at most {MAX_DEPTH}): "
                            "not an annotation file")
    duplicates: list[str] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        d = dict(items)
        if len(d) != len(items):
            seen: set[str] = set()
            duplicates.extend(k for k, _ in items if k in seen or seen.add(k))
        return d

    try:
        value = json.loads(text, object_pairs_hook=pairs)
    except json.JSONDecodeError as e:
        raise JsonFileError(f"{name}: not valid JSON ({e})") from None
    except (ValueError, RecursionError) as e:  # int-conversion limit; recursion is bounded above
        why = "a number with more than 4300 digits" if "digits" in str(e) else _first_line(e)
        raise JsonFileError(f"{name}: unreadable JSON value ({why})") from None
    return value, sorted(set(duplicates))


def _first_line(e: BaseException) -> str:
    text = str(e).splitlines()[0] if str(e) else type(e).__name__
    return text if len(text) <= 160 else text[:157] + "..."
