"""bench/efficacy.py names the code it ran: the commit when it started, and any uncommitted change to
what its processes import (a benchmark run beside an edited working tree once lost runs to it)."""

from __future__ import annotations

import importlib.util
import subprocess
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench" / "efficacy.py"


@pytest.fixture(scope="module")
def efficacy():
    spec = importlib.util.spec_from_file_location("bench_efficacy", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=repo, check=True,
                   capture_output=True)


def test_source_state_lists_uncommitted_code_only(efficacy, tmp_path, monkeypatch):
    for path in ("pipeline/a.py", "configs/demo.yaml", "README.md"):
        (tmp_path / path).parent.mkdir(exist_ok=True)
        (tmp_path / path).write_text("x\n")
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "commit", "-qm", "start")
    monkeypatch.setattr(efficacy, "REPO", tmp_path)
    clean = efficacy.source_state()
    assert len(clean["commit"]) == 10 and clean["uncommitted"] == []
    (tmp_path / "pipeline" / "a.py").write_text("y\n")
    (tmp_path / "configs" / "demo.yaml").write_text("y\n")
    (tmp_path / "README.md").write_text("y\n")  # not code the benchmark runs
    (tmp_path / "pipeline" / "new.py").write_text("y\n")  # untracked: nothing imports it
    dirty = efficacy.source_state()
    assert dirty == {"commit": clean["commit"], "uncommitted": ["configs/demo.yaml", "pipeline/a.py"]}
    assert efficacy._uncommitted(dirty) == " plus uncommitted changes to configs/demo.yaml, pipeline/a.py"
    assert efficacy._uncommitted(clean) == "" and efficacy._uncommitted({"commit": "abc"}) == ""


def test_source_state_outside_a_git_checkout(efficacy, tmp_path, monkeypatch):
    monkeypatch.setattr(efficacy, "REPO", tmp_path)  # e.g. an unpacked release
    assert efficacy.source_state() == {"commit": None, "uncommitted": []}
