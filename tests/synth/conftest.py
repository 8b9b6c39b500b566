"""Fixtures for the synth tests (helpers live in synth_helpers.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# importlib mode: make synth_helpers (beside this file) importable for every synth test module.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from synth_helpers import make_dataset  # noqa: E402

from pipeline.data.version import DatasetVersion  # noqa: E402


@pytest.fixture(scope="session")
def mini_dataset(tmp_path_factory: pytest.TempPathFactory) -> DatasetVersion:
    return make_dataset(tmp_path_factory.mktemp("mini") / "mini-0123456789ab")
