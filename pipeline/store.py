"""Content hashing, atomic writes, manifests with lineage, and per-directory locks.

Every produced directory (dataset version, model, report) holds a `manifest.json`:

    {"kind": "dataset", "id": "demo-3f2a...", "created": "...", "code_version": "...",
     "config": {...section...}, "config_hash": "...", "parents": [<parent manifests>],
     "files": {"relative/path": "sha256", ...}, "summary": {...}}

A stage's cache key is the hash of its parents' manifest hashes, its config section and the code
version: unchanged inputs give the same key, so the stage is skipped.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import fcntl
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pipeline import __version__

MANIFEST = "manifest.json"
_CHUNK = 1 << 20
_UMASK = os.umask(0)
os.umask(_UMASK)


class LockedError(RuntimeError):
    """Another process holds the lock on an output directory."""


# ------------------------------------------------------------------------------------------ hashing
def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def hash_json(obj: Any) -> str:
    return sha256_bytes(json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode())


def hash_tree(root: str | Path, exclude: tuple[str, ...] = (MANIFEST,)) -> dict[str, str]:
    """{relative posix path: sha256} for every regular file under root (symlinks not followed)."""
    root = Path(root)
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            p = Path(dirpath) / name
            rel = p.relative_to(root).as_posix()
            if rel in exclude or p.is_symlink() or not p.is_file():
                continue
            out[rel] = sha256_file(p)
    return out


def code_version() -> str:
    """Package version plus the git commit when run from a checkout (no git call at import)."""
    head = Path(__file__).resolve().parent.parent / ".git" / "HEAD"
    try:
        ref = head.read_text().strip()
        if ref.startswith("ref: "):
            ref_file = head.parent / ref[5:]
            sha = ref_file.read_text().strip() if ref_file.exists() else _packed_ref(head.parent, ref[5:])
        else:
            sha = ref
        return f"{__version__}+g{sha[:10]}" if sha else __version__
    except OSError:
        return __version__


def _packed_ref(git_dir: Path, ref: str) -> str:
    packed = git_dir / "packed-refs"
    if packed.exists():
        for line in packed.read_text().splitlines():
            if line.endswith(" " + ref):
                return line.split()[0]
    return ""


def stage_key(stage: str, config_section: Any, parents: list[dict[str, Any]]) -> str:
    """Cache key for a stage: its name, config section, parents' content and the package version.

    The package version (not the git commit) stands for the code, so a docs-only commit does not
    invalidate every cached stage; bump the version when outputs change.
    """
    return hash_json(
        {
            "stage": stage,
            "config": config_section,
            "parents": [p.get("files_hash") or p.get("id") for p in parents],
            "code": __version__,
        }
    )


# ---------------------------------------------------------------------------------- atomic writes
def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write to a temp file in the same directory, fsync, then rename over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; outputs get the usual mode
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any, indent: int | None = 2) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=indent, default=str) + "\n")


@contextlib.contextmanager
def atomic_dir(final: str | Path) -> Iterator[Path]:
    """Build a directory under a temp name and rename it into place only when the block succeeds."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".partial", dir=final.parent))
    try:
        yield tmp
        if final.exists():  # someone else finished the same content first: keep theirs
            _rmtree(tmp)
        else:
            os.replace(tmp, final)
    except BaseException:
        _rmtree(tmp)
        raise


def _rmtree(p: Path) -> None:
    import shutil

    shutil.rmtree(p, ignore_errors=True)


# --------------------------------------------------------------------------------------- manifests
def write_manifest(
    directory: str | Path,
    *,
    kind: str,
    id: str,
    config: Any,
    parents: list[dict[str, Any]] | None = None,
    summary: dict[str, Any] | None = None,
    files: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Hash the directory's files and write its manifest.json atomically; returns the manifest."""
    directory = Path(directory)
    files = hash_tree(directory) if files is None else files
    manifest = {
        "kind": kind,
        "id": id,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "code_version": code_version(),
        "config": config,
        "config_hash": hash_json(config),
        "parents": [_parent_ref(p) for p in parents or []],
        "files": files,
        "files_hash": hash_json(files),
        "summary": summary or {},
    }
    atomic_write_json(directory / MANIFEST, manifest)
    return manifest


def _parent_ref(p: dict[str, Any]) -> dict[str, Any]:
    """Parents are kept as a small reference plus their own lineage, not their file lists."""
    return {k: p[k] for k in ("kind", "id", "config_hash", "files_hash", "code_version", "parents") if k in p}


def read_manifest(directory: str | Path) -> dict[str, Any] | None:
    p = Path(directory) / MANIFEST
    if not p.is_file():
        return None
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def verify_manifest(directory: str | Path) -> list[str]:
    """Files whose content no longer matches the manifest (missing ones included)."""
    directory = Path(directory)
    manifest = read_manifest(directory)
    if manifest is None:
        return [MANIFEST]
    bad = []
    for rel, digest in manifest["files"].items():
        p = directory / rel
        if not p.is_file() or sha256_file(p) != digest:
            bad.append(rel)
    return bad


# ------------------------------------------------------------------------------------------- locks
@contextlib.contextmanager
def dir_lock(directory: str | Path, wait: bool = True) -> Iterator[Path]:
    """Exclusive advisory lock on `directory/.lock` (released when the process dies)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    lock_path = directory / ".lock"
    with open(lock_path, "a+") as f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except OSError as e:
            if e.errno in (errno.EAGAIN, errno.EACCES):
                raise LockedError(f"{directory} is locked by another run") from None
            raise
        try:
            yield directory
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def utcnow_id() -> str:
    """A sortable, unique-enough run id: 20261125-093012-ab12."""
    now = _dt.datetime.now(_dt.timezone.utc)
    return now.strftime("%Y%m%d-%H%M%S-") + os.urandom(2).hex()
