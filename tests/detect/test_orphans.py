"""A comparison killed from outside leaves no detector training behind it (Linux)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from detect_helpers import REPO
from pipeline.detect import runs

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux-only")

PARENT = textwrap.dedent("""
    import concurrent.futures as cf, multiprocessing as mp, os, sys, time
    from pipeline.detect.runs import die_with_parent

    def work(path):
        open(path, "w").write(str(os.getpid()))
        time.sleep(120)

    if __name__ == "__main__":
        init = die_with_parent if sys.argv[2] == "on" else None
        with cf.ProcessPoolExecutor(1, mp_context=mp.get_context("spawn"), initializer=init,
                                    initargs=(os.getpid(),) if init else ()) as pool:
            pool.submit(work, sys.argv[1]).result()
""")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie waiting for its (new) parent to reap it is dead too
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (OSError, IndexError):
        return False


def _orphan_survives(tmp_path: Path, mode: str) -> bool:
    script, pid_file = tmp_path / f"parent_{mode}.py", tmp_path / f"worker_{mode}.pid"
    script.write_text(PARENT)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    parent = subprocess.Popen([sys.executable, str(script), str(pid_file), mode], env=env)
    deadline = time.monotonic() + 60
    while not (pid_file.exists() and pid_file.read_text()) and time.monotonic() < deadline:
        time.sleep(0.1)
    worker = int(pid_file.read_text())
    parent.send_signal(signal.SIGKILL)
    parent.wait(10)
    deadline = time.monotonic() + 10
    while _alive(worker) and time.monotonic() < deadline:
        time.sleep(0.1)
    survived = _alive(worker)
    if survived:
        os.kill(worker, signal.SIGKILL)
    return survived


@linux
def test_workers_die_with_a_killed_parent(tmp_path):
    assert _orphan_survives(tmp_path, "off")  # without it the worker outlives its parent: the test has teeth
    assert not _orphan_survives(tmp_path, "on")


def test_isolated_runs_start_their_workers_with_it(monkeypatch, tmp_path):
    seen = {}

    class Pool:
        def __init__(self, *args, **kwargs):
            seen.update(kwargs)
            raise OSError("no pool here")

    monkeypatch.setattr(runs.cf, "ProcessPoolExecutor", Pool)
    spec = runs.RunSpec("real", 0, tmp_path / "run", "key", 10)  # nothing cached there
    rec = runs.run_isolated(None, None, None, spec)
    assert rec["status"] == "failed" and "no pool here" in rec["error"]
    assert seen["initializer"] is runs.die_with_parent
    assert seen["initargs"] == (os.getpid(),)
