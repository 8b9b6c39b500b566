"""Deterministic splits from content hashes: the same photo always lands in the same split.

Each image gets a number u in [0, 1) from sha256(seed, content sha256); u below `train` goes to
train, below `train + val` to val, else test. Because u depends only on the photo's bytes and
the seed, adding or removing other photos never moves a photo between splits (a test photo never
becomes a training photo in a later dataset version), and byte-identical duplicates always share
a split. One exception keeps tiny sets usable: a requested split that would be empty takes the
photo nearest to its interval (see `_fill_empty_splits`).

Duplicates across domains and pools (`separate_held_out`): a byte copy of a held-out photo (B val,
test or oracle) elsewhere - in the unlabelled B pool or among the Class A photos - would let the
CycleGAN or a detector train on a test photo, so such copies are dropped; copies that are all in
training splits are kept and noted.

Explicit splits win: a source's `split:` setting, or a split file such as BSData's
image_data.json when `split.use_source_split` is on; if copies of one photo were given different
explicit splits the most held-out one wins (test > val > oracle > train > unlabelled) so nothing
leaks from test into training.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pipeline.config import SplitConfig
from pipeline.data.jsonfile import DEFAULT_MAX_BYTES, JsonFileError, read_json
from pipeline.data.validate import quarantine_row, short_repr

# Most held-out first: the split a group of duplicates takes when its members disagree.
_PRECEDENCE = ("test", "val", "oracle", "train", "unlabelled")
# Never trained on by the arms that are compared (oracle is the oracle arm's alone).
HELD_OUT = ("test", "val", "oracle")
_ALIASES = {"training": "train", "train": "train", "val": "val", "valid": "val", "validation": "val",
            "dev": "val", "test": "test", "testing": "test", "holdout": "test"}


@dataclass(frozen=True)
class SplitItem:
    """One image to place: its content hash, an explicit split (or None), and whether the explicit
    split came from a split file (its `train` may then be shared with val)."""

    sha256: str
    explicit: str | None = None
    from_split_file: bool = False
    label: str = ""  # for quarantine messages


def split_unit(sha256: str, seed: int, salt: str = "split") -> float:
    """u in [0, 1) from the content hash and the seed."""
    h = hashlib.sha256(f"{salt}:{seed}:{sha256}".encode()).digest()
    return int.from_bytes(h[:8], "big") / 2**64


def hash_split(sha256: str, seed: int, cfg: SplitConfig) -> str:
    u = split_unit(sha256, seed)
    if u < cfg.train:
        return "train"
    if u < cfg.train + cfg.val:
        return "val"
    return "test"


def assign_splits(items: Sequence[SplitItem], cfg: SplitConfig, seed: int) -> tuple[list[str], list[dict]]:
    """Split per item (same order) and quarantine rows for conflicting explicit splits."""
    groups: dict[str, list[int]] = defaultdict(list)
    for i, it in enumerate(items):
        groups[it.sha256].append(i)
    out = [""] * len(items)
    rows: list[dict] = []
    hashed: dict[str, str] = {}  # groups placed by hash (not explicitly), for _fill_empty_splits
    for sha, members in groups.items():
        explicit = {items[i].explicit for i in members if items[i].explicit}
        if explicit:
            split = min(explicit, key=_PRECEDENCE.index)
            if len(explicit) > 1:
                rows.append(quarantine_row(
                    ", ".join(items[i].label for i in members),
                    f"identical images given different splits {sorted(explicit)}",
                    f"all copies put in {split} (most held-out wins)",
                ))
            from_file = all(items[i].from_split_file for i in members if items[i].explicit == "train")
            if split == "train" and from_file:
                if split_unit(sha, seed, salt="val-from-train") < cfg.val_from_source_train:
                    split = "val"
        else:
            split = hash_split(sha, seed, cfg)
            hashed[sha] = split
        for i in members:
            out[i] = split
    for sha, split in _fill_empty_splits(hashed, cfg, seed).items():
        for i in groups[sha]:
            out[i] = split
    return out, rows


@dataclass(frozen=True)
class PlacedImage:
    """An image with its final split, for `separate_held_out`."""

    sha256: str
    domain: str  # "A" | "B"
    split: str  # train | val | test | oracle | unlabelled
    file: str  # for quarantine messages


def separate_held_out(images: Sequence[PlacedImage]) -> tuple[dict[int, str], list[list[int]]]:
    """Copies to drop so that no held-out photo also sits in a training split.

    Returns ({index: reason} for every copy in a training split (A train/unlabelled, B train or
    unlabelled) of a photo that is also held out, the groups (lists of indices) of identical
    photos that are all kept). Copies within held-out splits are left to `assign_splits` (labelled
    B duplicates share one split already). Ingest notes a kept group (`identical_note`) only once
    its copies have passed validation: broken copies are no photos.
    """
    groups: dict[str, list[int]] = defaultdict(list)
    for i, im in enumerate(images):
        groups[im.sha256].append(i)
    drop: dict[int, str] = {}
    kept_groups: list[list[int]] = []
    for members in groups.values():
        if len(members) < 2:
            continue
        held = [i for i in members if images[i].split in HELD_OUT]
        if held:
            first = images[held[0]]
            for i in members:
                if images[i].split not in HELD_OUT:
                    drop[i] = f"duplicate of held-out image {first.file} ({first.domain}_{first.split})"
        kept = [i for i in members if i not in drop]
        if len(kept) > 1:
            kept_groups.append(kept)
    return drop, kept_groups


def identical_note(copies: Sequence[PlacedImage]) -> dict[str, str]:
    """The quarantine row noting identical photos that are all kept."""
    where = sorted({f"{im.domain}_{im.split}" for im in copies})
    return quarantine_row(", ".join(im.file for im in copies),
                          f"{len(copies)} identical images in {', '.join(where)}", "all copies kept")


def _fill_empty_splits(hashed: dict[str, str], cfg: SplitConfig, seed: int) -> dict[str, str]:
    """Moves that leave no requested split empty when there are enough photos.

    With few photos a threshold can leave a split empty (10 photos at train=0.2: one time in ten
    no training photo at all). The photo whose u lies nearest the empty split's interval moves
    there, taken from a split that keeps at least one photo. Only such small sets are affected;
    a photo moves only while its split would otherwise stay empty.
    """
    tv = cfg.train + cfg.val
    bounds = {"train": (0.0, cfg.train), "val": (cfg.train, tv), "test": (tv, 1.0)}
    wanted = [s for s, (lo, hi) in bounds.items() if hi > lo]
    current = dict(hashed)
    if len(current) < len(wanted):
        return {}
    moves: dict[str, str] = {}
    for split in wanted:
        counts = {s: sum(1 for v in current.values() if v == s) for s in bounds}
        if counts[split]:
            continue
        lo, hi = bounds[split]
        donors = [sha for sha, s in current.items() if counts[s] > 1]
        if not donors:
            continue
        u = {sha: split_unit(sha, seed) for sha in donors}
        best = min(donors, key=lambda sha: (max(lo - u[sha], u[sha] - hi, 0.0), sha))
        current[best] = moves[best] = split
    return moves


def read_split_file(path: str | Path, max_bytes: int = DEFAULT_MAX_BYTES) -> dict[str, str]:
    """{file name: split} from a split file. Accepted forms:
    BSData's image_data.json (`{"images": [{"filename", "train_test_split"}]}`), a plain mapping
    `{"a.jpg": "train"}`, or `{"train": [...], "test": [...]}`. Entries without a split are left out.
    """
    path = Path(path)
    try:
        d, duplicates = read_json(path, max_bytes)
    except JsonFileError as e:
        raise ValueError(f"cannot read split file {e}") from None
    if duplicates:  # which of two values counts is a guess: the split of a test photo must not be one
        raise ValueError(f"{path}: key {duplicates[0]!r} given twice in one object")
    out: dict[str, str] = {}
    if isinstance(d, dict) and isinstance(d.get("images"), list):
        for rec in d["images"]:
            if not isinstance(rec, dict):
                raise ValueError(f"{path}: image entry {short_repr(rec, 60)} is not an object")
            name = rec.get("filename") or rec.get("file_name") or rec.get("file")
            split = rec.get("train_test_split") or rec.get("split")
            if name and split:
                out[str(name)] = _canonical(split, path)
    elif isinstance(d, dict) and d and all(isinstance(v, list) for v in d.values()):
        for split, names in d.items():
            for name in names:
                out[str(name)] = _canonical(split, path)
    elif isinstance(d, dict):
        out = {str(k): _canonical(v, path) for k, v in d.items() if v}
    else:
        raise ValueError(f"{path}: split file must be a JSON object")
    return out


def _canonical(split: str, path: Path) -> str:
    s = _ALIASES.get(str(split).strip().lower()) if isinstance(split, str) else None
    if s is None:
        raise ValueError(f"{path}: unknown split {short_repr(split, 60)} (use train, val or test)")
    return s


def lookup_split(mapping: dict[str, str], rel: str) -> str | None:
    """The explicit split of an image by its relative path, else by its base name."""
    return mapping.get(rel) or mapping.get(Path(rel).name)
