"""Fixtures for the report tests: the hand-made comparison (tests/report/fixture/compare, shaped
like a demo run: 4 arms x 3 seeds, PR curves, ultralytics results.csv) copied per test."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # importlib mode: report_helpers beside this file


@pytest.fixture
def fixture_run(tmp_path: Path) -> Path:
    """A run dir holding compare/ (the hand-made comparison); the report goes into the run dir."""
    run = tmp_path / "reports" / "demo-123456789abc"
    shutil.copytree(HERE / "fixture" / "compare", run / "compare")
    return run


@pytest.fixture
def report_cfg(tmp_path: Path):
    from pipeline.config import load_config

    return load_config(HERE.parents[1] / "configs" / "tiny.yaml", [f"runtime.output_root={tmp_path}"])
