"""Faults: a SIGKILLed ingest at several points, a full disk, two processes on one output root.
After each, the rerun's results equal an uninterrupted run's, no partial file is read as
complete, nothing is left half-built, and earlier dataset versions are intact. (CycleGAN
training, synthesis and YOLO arms are killed and resumed in tests/gan, tests/synth and
tests/flows; bench/reliability.py sweeps kill points over every stage.)"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "configs" / "tiny.yaml"
# A bigger tiny set and one image per shard: ingest takes long enough to be killed part-way.
SLOW = ["data.demo.n_a=60", "data.demo.n_b_unlabelled=60", "data.shard_size=1", "runtime.workers=1"]


def metalize(*args: str, root: Path, wait: bool = True):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "pipeline.cli", *args, f"runtime.output_root={root}"]
    if not wait:
        return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                start_new_session=True)
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def versions(root: Path) -> list[Path]:
    d = root / "data" / "datasets"
    return sorted(p for p in d.iterdir() if p.is_dir() and not p.name.startswith(".")) if d.is_dir() else []


def tree(version: Path) -> dict[str, str]:
    """File hashes of a version, less its record of where it was written (config.yaml names the
    output root) and the manifest that hashes that record."""
    from pipeline.store import hash_tree

    return hash_tree(version, exclude=("manifest.json", "config.yaml", ".lock"))


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """An uninterrupted ingest of the slow tiny set: (version dir, file hashes)."""
    root = tmp_path_factory.mktemp("ref")
    proc = metalize("ingest", str(TINY), *SLOW, root=root)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (v,) = versions(root)
    return v, tree(v)


def _images_written(root: Path) -> int:
    d = root / "data" / "datasets"
    return sum(1 for p in d.glob(".*.partial/images/*/*/*")) if d.is_dir() else 0


@pytest.mark.parametrize("kill_after", [1, 40, 100])
def test_sigkilled_ingest_reruns_to_the_same_version(reference, tmp_path, kill_after) -> None:
    """Killed after `kill_after` images are written into the version being built; rerun."""
    root = tmp_path / "out"
    # The demo photos are rendered first: render them once so the kill lands inside ingest.
    shutil.copytree(reference[0].parents[2] / "data" / "raw", root / "data" / "raw")
    proc = metalize("ingest", str(TINY), *SLOW, root=root, wait=False)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None and _images_written(root) < kill_after:
        time.sleep(0.005)
    assert proc.poll() is None, "ingest finished before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(30)
    assert not versions(root), "a killed ingest left a version that looks complete"

    again = metalize("ingest", str(TINY), *SLOW, root=root)
    assert again.returncode == 0, again.stderr[-2000:]
    (v,) = versions(root)
    assert v.name == reference[0].name and tree(v) == reference[1]
    from pipeline.store import verify_manifest

    assert verify_manifest(v) == []
    assert not list((root / "data" / "datasets").glob(".*.partial")), "stale half-built folders left behind"


def test_two_processes_on_one_output_root_build_one_version(reference, tmp_path) -> None:
    root = tmp_path / "out"
    shutil.copytree(reference[0].parents[2] / "data" / "raw", root / "data" / "raw")
    procs = [metalize("ingest", str(TINY), *SLOW, root=root, wait=False) for _ in range(2)]
    for p in procs:
        p.wait(300)
        assert p.returncode == 0, p.stderr.read().decode()[-2000:]
    (v,) = versions(root)
    assert tree(v) == reference[1]


@pytest.fixture
def small_disk(tmp_path):
    """A 6 MB tmpfs (needs root and mount; skipped where the machine does not allow it)."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_full_disk_fails_clearly_and_keeps_the_previous_version(small_disk) -> None:
    from pipeline.store import verify_manifest

    first = metalize("ingest", str(TINY), root=small_disk)
    assert first.returncode == 0, first.stderr[-2000:]
    (kept,) = versions(small_disk)
    # Fill the disk up, then ask for a bigger version of the data.
    with open(small_disk / "filler", "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
    (small_disk / "filler").unlink()
    with open(small_disk / "filler", "wb") as f:  # leave ~200 kB: the new version needs more
        free = shutil.disk_usage(small_disk).free
        f.write(b"\0" * max(0, free - 200_000))
    proc = metalize("ingest", str(TINY), "data.demo.n_b_unlabelled=200", root=small_disk)
    text = " ".join(proc.stderr.split())
    assert proc.returncode != 0
    assert "No space left on device" in text and "Traceback" not in text, text[-2000:]
    assert str(small_disk) in text  # names where it could not write
    assert versions(small_disk) == [kept] and verify_manifest(kept) == []
    leftovers = [p.name for p in small_disk.rglob("*") if p.name.endswith((".partial", ".tmp"))]
    assert not leftovers, leftovers
