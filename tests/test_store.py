"""Hashes, atomic writes, manifests with lineage, locks."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline import store


def test_atomic_write_leaves_no_temp_and_replaces(tmp_path: Path) -> None:
    p = tmp_path / "sub" / "x.json"
    store.atomic_write_json(p, {"a": 1})
    store.atomic_write_json(p, {"a": 2})
    assert p.read_text().strip().endswith("}") and '"a": 2' in p.read_text()
    assert [q.name for q in p.parent.iterdir()] == ["x.json"]


def test_atomic_write_failure_keeps_old_content(tmp_path: Path) -> None:
    p = tmp_path / "x.json"
    store.atomic_write_json(p, {"a": 1})
    with pytest.raises(TypeError):
        store.atomic_write_bytes(p, "not bytes")  # type: ignore[arg-type]
    assert '"a": 1' in p.read_text()
    assert [q.name for q in tmp_path.iterdir()] == ["x.json"]


def test_atomic_dir_only_appears_when_complete(tmp_path: Path) -> None:
    final = tmp_path / "version"
    with pytest.raises(RuntimeError):
        with store.atomic_dir(final) as d:
            (d / "f").write_text("x")
            raise RuntimeError("killed")
    assert not final.exists() and list(tmp_path.iterdir()) == []
    with store.atomic_dir(final) as d:
        (d / "f").write_text("x")
    assert (final / "f").read_text() == "x"


def test_manifest_hashes_files_and_detects_tampering(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("hello")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "b.bin").write_bytes(b"\x00\x01")
    parent = {"kind": "dataset", "id": "p1", "config_hash": "c", "files_hash": "f", "files": {"big": "x"}}
    m = store.write_manifest(tmp_path, kind="model", id="m1", config={"k": 1}, parents=[parent])
    assert set(m["files"]) == {"a.txt", "d/b.bin"}
    assert m["files"]["a.txt"] == store.sha256_bytes(b"hello")
    assert m["parents"][0]["id"] == "p1" and "files" not in m["parents"][0]
    assert store.read_manifest(tmp_path)["id"] == "m1"
    assert store.verify_manifest(tmp_path) == []
    (tmp_path / "a.txt").write_text("changed")
    assert store.verify_manifest(tmp_path) == ["a.txt"]


def test_stage_key_depends_on_config_and_parents() -> None:
    p1 = {"files_hash": "aaa"}
    p2 = {"files_hash": "bbb"}
    k = store.stage_key("gan", {"lr": 1}, [p1])
    assert k == store.stage_key("gan", {"lr": 1}, [p1])
    assert k != store.stage_key("gan", {"lr": 2}, [p1])
    assert k != store.stage_key("gan", {"lr": 1}, [p2])
    assert k != store.stage_key("synth", {"lr": 1}, [p1])


_HOLDER = (
    "import sys; from pipeline import store\n"
    "with store.dir_lock(sys.argv[1]):\n"
    "    print('locked', flush=True); sys.stdin.read()\n"
)


def test_dir_lock_excludes_other_processes(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(tmp_path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(store.LockedError, match="locked by another run"):
            with store.dir_lock(tmp_path, wait=False):
                pass
    finally:
        proc.communicate("", timeout=30)
    with store.dir_lock(tmp_path, wait=False):
        pass


def test_code_version_mentions_package_version() -> None:
    from pipeline import __version__

    assert store.code_version().startswith(__version__)
    assert os.path.basename(store.utcnow_id())


def test_atomic_write_gives_the_usual_file_mode(tmp_path: Path) -> None:
    p = store.atomic_write_text(tmp_path / "x.txt", "x")
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    assert p.stat().st_mode & 0o777 == plain.stat().st_mode & 0o777


def test_atomic_dirs_honour_the_umask(tmp_path: Path) -> None:
    """tempfile.mkdtemp makes 0700 folders: a worker under another account could not read the
    dataset versions, demo renders and models built through atomic_dir."""
    plain = tmp_path / "plain"
    plain.mkdir()
    with store.atomic_dir(tmp_path / "version") as d:
        (d / "x.txt").write_text("x")
    assert (tmp_path / "version").stat().st_mode & 0o777 == plain.stat().st_mode & 0o777
    # A stricter umask is honoured too (in a child process: the umask is process-wide).
    code = ("import os, sys; os.umask(0o027); from pipeline import store\n"
            "with store.atomic_dir(sys.argv[1]) as d: pass\n"
            "print(oct(os.stat(sys.argv[1]).st_mode & 0o777))")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "strict")], env=env, capture_output=True,
                         text=True, check=True).stdout.strip()
    assert out == "0o750"


# A run that dies (os._exit: no cleanup, like SIGKILL) while building a folder and writing a file.
_DIES = """
import os, sys
from pathlib import Path
from pipeline import store
root = Path(sys.argv[1])
building = store.atomic_dir(root / "v2")
(building.__enter__() / "half.png").write_bytes(b"x" * 100)
fd, _ = __import__("tempfile").mkstemp(prefix=".x.json.", suffix=".tmp", dir=root)
os.write(fd, b"{half")
os._exit(9)
"""

# A live run: holds a folder and a temp file under construction until stdin closes.
_BUILDS = """
import os, sys, tempfile
from pathlib import Path
from pipeline import store
root = Path(sys.argv[1])
with store.atomic_dir(root / "v3") as d:
    (d / "img.png").write_bytes(b"x" * 100)
    fd, _ = tempfile.mkstemp(prefix=".y.json.", suffix=".tmp", dir=root)
    store._try_lock(fd)
    os.write(fd, b"{building")
    print("building", flush=True)
    sys.stdin.read()
"""


def test_leftovers_of_killed_runs_are_removed_and_live_work_is_not(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    dead = subprocess.run([sys.executable, "-c", _DIES, str(tmp_path)], env=env, capture_output=True, text=True)
    assert dead.returncode == 9, dead.stderr
    stale = sorted(p.name for p in tmp_path.iterdir())
    assert len(stale) == 2 and stale[0].startswith(".v2.") and stale[1].startswith(".x.json.")
    (tmp_path / ".keep.partial").mkdir()  # a resumable stage's fixed staging name: not ours
    live = subprocess.Popen([sys.executable, "-c", _BUILDS, str(tmp_path)], env=env, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert live.stdout.readline().strip() == "building"
        building = {p.name for p in tmp_path.iterdir()} - set(stale) - {".keep.partial"}
        with store.atomic_dir(tmp_path / "v1") as d:  # cleans its parent first
            (d / "f").write_text("x")
        names = {p.name for p in tmp_path.iterdir()}
        assert names == {"v1", ".keep.partial", *building}, names  # the dead run's two are gone
        assert len(building) == 2
    finally:
        live.communicate("", timeout=30)
    # Its folder became v3; the temp file it left is stale now that it has exited.
    assert [n.startswith(".y.json.") for n in store.remove_stale(tmp_path)] == [True]
    assert {p.name for p in tmp_path.iterdir()} == {"v1", "v3", ".keep.partial"}


def test_a_fresh_unlocked_temp_is_left_alone(tmp_path: Path) -> None:
    """Between mkstemp and its flock a writer's temp is unlocked: an empty young one is spared."""
    (tmp_path / ".a.json.abcdefgh.tmp").write_bytes(b"")
    (tmp_path / ".a.json.bcdefghi.tmp").write_bytes(b"{")
    assert store.remove_stale(tmp_path) == [".a.json.bcdefghi.tmp"]
    old = time.time() - 3600
    os.utime(tmp_path / ".a.json.abcdefgh.tmp", (old, old))
    assert store.remove_stale(tmp_path) == [".a.json.abcdefgh.tmp"]


def test_write_errors_name_the_file(tmp_path: Path, monkeypatch) -> None:
    # /dev/full: every write fails with ENOSPC, as on a full disk; the bare error names no file.
    with pytest.raises(OSError) as e:
        store.write_bytes(Path("/dev/full"), b"x" * 10)
    assert e.value.errno == errno.ENOSPC and e.value.filename == "/dev/full"
    assert not store.is_transient(e.value) and store.is_transient(OSError(errno.EIO, "I/O error"))

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    target = tmp_path / "m.json"
    with pytest.raises(OSError) as e:
        store.atomic_write_json(target, {"a": 1})
    assert e.value.errno == errno.ENOSPC and e.value.filename == str(target)
    assert list(tmp_path.iterdir()) == []  # no temp file left behind

    def denied(*a, **k):
        raise OSError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(store.tempfile, "mkstemp", denied)
    with pytest.raises(PermissionError) as e:  # the errno keeps its subclass
        store.atomic_write_json(target, {"a": 1})
    assert e.value.filename == str(target)
