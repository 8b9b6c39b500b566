"""Content hashing, atomic writes, manifests with lineage, and per-directory locks.

Every produced directory (dataset version, model, report) holds a `manifest.json`:

    {"kind": "dataset", "id": "demo-3f2a...", "created": "...", "code_version": "...",
     "config": {...section...}, "config_hash": "...", "parents": [<parent manifests>],
     "files": {"relative/path": "sha256", ...}, "summary": {...}}

Atomic writes build `.<name>.<random>.tmp` files and `.<name>.<random>.partial` folders, locked
while their writer lives; `remove_stale` (run by every `atomic_dir` on its parent) removes those of
killed runs. An OSError from a write names the file (a full disk says only "No space left").
Folders are made with the process's umask (tempfile makes them 0700), so a worker under another
account in the same group can read the results. Locks are `filelock`'s (flock on POSIX,
LockFileEx on Windows); a temp folder cannot be opened, hence not locked, on Windows, so there
leftovers of killed runs stay (README: platforms).

A stage's cache key is the hash of its parents' manifest hashes, its config section and the code
version: unchanged inputs give the same key, so the stage is skipped.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import hashlib
import json
import os
import re
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout, lock_descriptor

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
# Temp names: `.<name>.<random>.tmp` files and `.<name>.<random>.partial` folders (random: the
# 8 characters tempfile draws). Their writer holds an flock on them while it lives, so a leftover
# of a killed run is told from live work by taking that lock (see `remove_stale`).
_TMP_FILE = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")
_TMP_DIR = re.compile(r"^\..+\.[a-z0-9_]{8}\.partial$")
# A writer takes its lock right after creating the temp: an empty one this young may be unlocked yet.
_FRESH_S = 60.0
# Retrying these cannot help: the disk stays full, the file system read-only, the mode the same.
_PERMANENT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG,
                     errno.ENAMETOOLONG}


def is_transient(e: OSError) -> bool:
    """Whether an I/O error may pass on a retry (a network file system hiccup), unlike a full disk."""
    return e.errno not in _PERMANENT_ERRNOS


def _naming(e: OSError, path: Path) -> OSError:
    """`e` naming `path` when it names no file: `write()` on a full disk says only "No space left
    on device". The errno picks the subclass (PermissionError, ...), as OSError() does itself."""
    if e.filename is not None or e.errno is None:
        return e
    named = OSError(e.errno, e.strerror, str(path))
    named.__cause__ = e
    return named


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Plain write (parents created) for files inside a folder built by `atomic_dir`; an OSError
    names the file."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    except OSError as e:
        raise _naming(e, path) from None
    return path


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write to a temp file in the same directory, fsync, then rename over `path`. An OSError
    (full disk, permission) names `path` and leaves no temp file behind."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise _naming(e, path) from None
    try:
        _try_lock(fd)  # released when the fd closes or the process dies: then the temp is stale
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; outputs get the usual mode
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(e, OSError):
            raise _naming(e, path) from None
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any, indent: int | None = 2) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=indent, default=str) + "\n")


@contextlib.contextmanager
def atomic_dir(final: str | Path) -> Iterator[Path]:
    """Build a directory under a temp name and rename it into place only when the block succeeds.

    Leftovers of killed runs beside it (`remove_stale`) are removed first: without that every
    SIGKILL would leave a half-built copy on disk for good.
    """
    final = Path(final)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        remove_stale(final.parent)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".partial", dir=final.parent))
        os.chmod(tmp, 0o777 & ~_UMASK)  # mkdtemp makes 0700; outputs get the usual mode
    except OSError as e:
        raise _naming(e, final.parent) from None
    fd = None
    try:
        fd = _open_dir(tmp)
        _try_lock(fd)  # held until the rename: a folder we can lock is a dead run's
        yield tmp
        if final.exists():  # someone else finished the same content first: keep theirs
            _rmtree(tmp)
        else:
            os.replace(tmp, final)
    except BaseException:
        _rmtree(tmp)
        raise
    finally:
        if fd is not None:
            os.close(fd)


def remove_stale(folder: str | Path) -> list[str]:
    """Remove the temp files and partial folders of atomic writes in `folder` (not below it)
    whose writer is gone; returns their names.

    A writer holds an flock on its temp while it lives, so one we can lock is a dead run's. An
    empty temp younger than a minute is left alone (its writer may not have locked it yet);
    temps of other kinds (a resumable stage's fixed `.<name>.partial`) never match the pattern.
    Where flock is not supported (some network file systems) nothing is removed.
    """
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    now = time.time()
    for entry in entries:
        is_dir = _TMP_DIR.match(entry.name) and entry.is_dir(follow_symlinks=False)
        if not is_dir and not (_TMP_FILE.match(entry.name) and entry.is_file(follow_symlinks=False)):
            continue
        try:
            fd = _open_dir(entry.path) if is_dir else os.open(entry.path, os.O_RDONLY)
        except OSError:
            continue
        try:
            if fd is None or not lock_descriptor(fd, blocking=False):
                continue  # a live writer's (or, on Windows, a folder that cannot be locked)
            st = os.fstat(fd)
            empty = not os.listdir(entry.path) if is_dir else st.st_size == 0
            if empty and now - st.st_mtime < _FRESH_S:
                continue
            if is_dir:
                _rmtree(Path(entry.path))
            else:
                os.unlink(entry.path)
            removed.append(entry.name)
        except OSError:  # locks unsupported here: not ours to remove
            continue
        finally:
            if fd is not None:
                os.close(fd)
    return removed


def _open_dir(path: str | Path) -> int | None:
    """A descriptor on a folder to lock (None where folders cannot be opened: Windows)."""
    if not hasattr(os, "O_DIRECTORY"):
        return None
    return os.open(path, os.O_RDONLY | os.O_DIRECTORY)


def _try_lock(fd: int | None) -> None:
    if fd is None:
        return
    with contextlib.suppress(OSError):  # no locks (some network file systems): temps just stay
        lock_descriptor(fd, blocking=False)


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
    """Exclusive advisory lock on `directory/.lock` (released when the process dies); LockedError
    at once when `wait` is False and another process holds it."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    # A fresh FileLock object per call (not the per-path singleton): two threads of one process
    # exclude each other, as two processes do.
    lock = FileLock(directory / ".lock", timeout=-1 if wait else 0, is_singleton=False, thread_local=False,
                    preserve_lock_file=True, fallback_to_soft=False)  # a soft lock outlives a killed run
    try:
        lock.acquire()
    except Timeout:
        raise LockedError(f"{directory} is locked by another run") from None
    try:
        yield directory
    finally:
        lock.release()


def utcnow_id() -> str:
    """A sortable, unique-enough run id: 20261125-093012-ab12."""
    now = _dt.datetime.now(_dt.timezone.utc)
    return now.strftime("%Y%m%d-%H%M%S-") + os.urandom(2).hex()
