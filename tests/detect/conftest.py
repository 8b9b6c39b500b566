"""Fixtures for the detector tests: a hand-made augmented version and one tiny comparison run
shared by the end-to-end, cache, flow and CLI tests (training is the expensive part)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# importlib mode: make detect_helpers (beside this file) importable for every detect test module.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from detect_helpers import compare_config, make_augmented  # noqa: E402

from pipeline.data.version import DatasetVersion  # noqa: E402


@pytest.fixture(scope="session")
def fake_augmented(tiny_dataset, tmp_path_factory) -> DatasetVersion:
    return make_augmented(tiny_dataset, tmp_path_factory.mktemp("aug") / "tiny-aug-000000000000")


@pytest.fixture(scope="session")
def tiny_compare(tiny_root, tiny_dataset, fake_augmented, tmp_path_factory):
    """One real comparison: arms real and real+synthetic, one seed, one epoch, two at a time."""
    from pipeline.detect.compare import compare

    cfg = compare_config(tiny_root)
    out = tmp_path_factory.mktemp("compare") / "compare"
    return cfg, compare(cfg, tiny_dataset, fake_augmented, out, progress=False)
