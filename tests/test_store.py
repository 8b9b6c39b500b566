"""Hashes, atomic writes, manifests with lineage, locks."""

from __future__ import annotations

import os
import subprocess
import sys
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
