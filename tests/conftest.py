"""Shared fixtures: offline environment, the tiny profile, one tiny dataset version per session,
and one Prefect test harness per session (starting a harness costs seconds)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"

# Before anything imports ultralytics or prefect.
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see pipeline/__init__.py


@pytest.fixture(scope="session", autouse=True)
def _isolated_state(tmp_path_factory: pytest.TempPathFactory):
    """Ultralytics settings, Prefect's database, matplotlib's and torch's caches live in a temp dir,
    never in $HOME (and not under the first in-process CLI call's output root, which the CLI would
    choose when they are unset)."""
    state = tmp_path_factory.mktemp("state")
    os.environ["YOLO_CONFIG_DIR"] = str(state / "ultralytics")
    os.environ.setdefault("PREFECT_HOME", str(state / "prefect"))
    os.environ.setdefault("MPLCONFIGDIR", str(state / "matplotlib"))
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(state / "torchinductor"))
    yield


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Output root shared by the session's tiny runs (data/, models/, reports/)."""
    return tmp_path_factory.mktemp("tiny-out")


@pytest.fixture
def tiny_config(tiny_root: Path):
    """A fresh RunConfig of the tiny profile writing under the session's tiny root."""
    from pipeline.config import load_config

    return load_config(REPO / "configs" / "tiny.yaml", [f"runtime.output_root={tiny_root}"])


@pytest.fixture(scope="session")
def tiny_dataset(tiny_root: Path):
    """The tiny demo data ingested once: a DatasetVersion with A_train, B_train/val/test/..."""
    from pipeline.config import load_config
    from pipeline.data.ingest import ingest

    cfg = load_config(REPO / "configs" / "tiny.yaml", [f"runtime.output_root={tiny_root}"])
    return ingest(cfg).version


@pytest.fixture(scope="session")
def prefect_harness():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def bsdata() -> Path:
    root = SHARED_DATA / "bsdata"
    if not root.is_dir():
        pytest.skip(f"{root} not found (../shared/data beside the checkout)")
    return root


def copy_tree(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst
