"""Pre-flight: too little data stops a run before anything trains, naming numbers and settings."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.preflight import PreflightError, preflight, shortfalls

REPO = Path(__file__).resolve().parents[1]


def test_the_tiny_profile_passes(tiny_config, tiny_dataset):
    assert shortfalls(tiny_config, tiny_dataset) == []
    preflight(tiny_config, tiny_dataset)


def test_a_small_test_split_names_the_setting(tiny_config, tiny_dataset):
    tiny_config.report.min_test_images = 30
    with pytest.raises(PreflightError) as e:
        preflight(tiny_config, tiny_dataset)
    n = len(tiny_dataset.coco("B", "test").images)
    boxes = len(tiny_dataset.coco("B", "test").annotations)
    assert f"B test split: {n} photos, {boxes} boxes (report.min_test_images is 30" in str(e.value)
    assert "nothing was trained" in str(e.value)
    assert shortfalls(tiny_config, tiny_dataset, compare=False) == []  # the GAN alone may still train


def test_six_real_photos_fail_before_the_gan_trains(tmp_path):
    """The run the issue saw crash after training: 3 replicas, 6 metal photos. Every shortfall is
    named at once, with its numbers and the setting that fixes it, and no model folder appears."""
    overrides = [f"runtime.output_root={tmp_path}", "data.demo.n_a=3", "data.demo.n_b_train=2",
                 "data.demo.n_b_val=1", "data.demo.n_b_test=3", "data.demo.n_b_unlabelled=0",
                 "data.demo.n_b_oracle=0"]
    proc = subprocess.run([sys.executable, "-m", "pipeline.cli", "train-gan", str(REPO / "configs" / "tiny.yaml"),
                           *overrides], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr
    err = " ".join(proc.stderr.split())
    assert "pre-flight:" in err and "Traceback" not in proc.stderr
    assert "quality metrics: 3 A and 1 held-out real B (B val) photos" in err
    assert "gan.quality_images" in err
    assert "realism critic: 3 A and 2 real B training photos" in err and "gan.realism_steps=0" in err
    assert not (tmp_path / "models").exists()
