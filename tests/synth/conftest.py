"""Fixtures for the synth tests (helpers live in synth_helpers.py)."""

from __future__ import annotations

import pytest
from synth_helpers import make_dataset

from pipeline.data.version import DatasetVersion


@pytest.fixture(scope="session")
def mini_dataset(tmp_path_factory: pytest.TempPathFactory) -> DatasetVersion:
    return make_dataset(tmp_path_factory.mktemp("mini") / "mini-0123456789ab")
