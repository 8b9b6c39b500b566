"""End to end on the tiny profile: arms train one epoch, evaluate, and metrics.json holds the
contract-5 schema; reruns reuse finished runs; a crashing arm is reported, not dropped."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from detect_helpers import compare_config
from pipeline.detect.compare import compare

METRIC_KEYS = {"map", "map50", "map75", "map_small", "map_medium", "map_large"}
RUN_KEYS = {"seed", "status", "error", "metrics", "per_class_ap", "ultralytics_map", "ultralytics_map50",
            "train_seconds", "train_images_per_s", "weights", "predictions", "results_csv", "pr_curve"}


def check_schema(m: dict, out_dir: Path) -> None:
    """Contract 5, key by key; relative paths must exist under out_dir."""
    assert set(m) >= {"dataset", "augmented", "categories", "test", "config", "arms", "comparisons",
                      "timings", "hardware"}
    assert isinstance(m["dataset"]["id"], str)
    assert m["augmented"] is None or isinstance(m["augmented"]["id"], str)
    assert isinstance(m["test"]["images"], int) and set(m["test"]["instances"]) == set(m["categories"])
    assert m["config"]["epochs"] >= 1
    for a in m["arms"]:
        assert a["name"] in {"real", "real+replica", "real+synthetic", "oracle"}
        assert a["status"] in {"ok", "failed"} and (a["error"] is None or isinstance(a["error"], str))
        assert isinstance(a["train_images"], int) and isinstance(a["images_per_epoch"], int)
        for k in ("map", "map50", "map75"):
            assert set(a["summary"][k]) == {"mean", "std", "n"}
        for r in a["runs"]:
            assert set(r) >= RUN_KEYS
            assert r["status"] in {"ok", "failed"}
            if r["status"] != "ok":
                assert r["error"]
                continue
            assert set(r["metrics"]) == METRIC_KEYS
            assert 0.0 <= r["metrics"]["map"] <= 1.0
            assert set(r["per_class_ap"]) == set(m["categories"])
            assert r["train_seconds"] > 0 and r["train_images_per_s"] > 0
            for k in ("weights", "predictions", "results_csv", "pr_curve"):
                assert (out_dir / r[k]).is_file(), k
            pr = json.loads((out_dir / r["pr_curve"]).read_text())
            assert len(pr["recall"]) == 101 and set(pr["precision"]) == set(m["categories"])
            assert all(v is None or len(v) == 101 for v in pr["precision"].values())
            preds = json.loads((out_dir / r["predictions"]).read_text())
            assert all(set(p) == {"image_id", "category_id", "bbox", "score"} for p in preds)
    for c in m["comparisons"]:
        assert c["treatment"] == "real+synthetic" and c["baseline"] in {"real", "real+replica"}
        assert c["metric"] == "map" and c["ci_low"] <= c["ci_high"] and isinstance(c["significant"], bool)
        assert isinstance(c["resamples"], int)
    assert m["timings"]["total_s"] >= 0 and m["timings"]["bootstrap_s"] >= 0
    assert m["hardware"]["device"]


@pytest.mark.slow
def test_tiny_arms_train_evaluate_and_write_metrics(tiny_compare, tiny_dataset):
    cfg, result = tiny_compare
    assert not result.cached
    m = json.loads(result.metrics_path.read_text())
    check_schema(m, result.out_dir)
    assert [a["name"] for a in m["arms"]] == ["real", "real+synthetic"]
    assert all(a["status"] == "ok" and a["runs"][0]["status"] == "ok" for a in m["arms"]), m["arms"]
    assert len({a["images_per_epoch"] for a in m["arms"]}) == 1  # equal budget
    assert m["test"]["images"] == len(tiny_dataset.coco("B", "test").images)
    (c,) = m["comparisons"]
    assert c["baseline"] == "real" and c["resamples"] == cfg.detect.bootstrap_resamples
    assert c["ci_low"] <= c["delta"] <= c["ci_high"] or c["ci_low"] == c["ci_high"]
    # the trainer's own mAP on the same test split is recorded beside ours
    run = m["arms"][0]["runs"][0]
    assert run["ultralytics_map"] is not None
    assert run["ultralytics_map_diff"] == pytest.approx(run["ultralytics_map"] - run["metrics"]["map"])
    assert 0 < run["train_cpu_seconds"]
    assert run["images_seen"] == m["arms"][0]["images_per_epoch"] * cfg.detect.epochs
    manifest = json.loads((result.out_dir / "manifest.json").read_text())
    assert manifest["kind"] == "comparison" and {p["id"] for p in manifest["parents"]} >= {tiny_dataset.id}


@pytest.mark.slow
def test_rerun_reuses_finished_runs(tiny_compare, tiny_dataset, fake_augmented):
    cfg, first = tiny_compare
    t = time.perf_counter()
    again = compare(cfg, tiny_dataset, fake_augmented, first.out_dir, progress=False)
    assert again.cached and again.metrics == json.loads(first.metrics_path.read_text())
    # an interrupted comparison (no metrics yet) resumes from the runs' done records
    (first.out_dir / "manifest.json").unlink()
    weights = first.out_dir / first.metrics["arms"][0]["runs"][0]["weights"]
    mtime = weights.stat().st_mtime_ns
    resumed = compare(cfg, tiny_dataset, fake_augmented, first.out_dir, progress=False)
    assert not resumed.cached and weights.stat().st_mtime_ns == mtime
    assert [a["runs"][0]["metrics"] for a in resumed.metrics["arms"]] == \
        [a["runs"][0]["metrics"] for a in first.metrics["arms"]]
    assert time.perf_counter() - t < 30  # nothing retrained


@pytest.mark.slow
def test_crashing_arm_is_reported_failed_with_its_error(tiny_root, tiny_dataset, tmp_path):
    cfg = compare_config(tiny_root, "detect.arms=[real, real+replica]",
                         "detect.extra_args={not_a_yolo_arg: 1}")
    result = compare(cfg, tiny_dataset, None, tmp_path / "compare", progress=False)
    m = json.loads(result.metrics_path.read_text())
    check_schema(m, result.out_dir)
    assert [a["name"] for a in m["arms"]] == ["real", "real+replica"]
    for a in m["arms"]:
        assert a["status"] == "failed" and "not_a_yolo_arg" in a["error"]
        assert a["runs"][0]["status"] == "failed" and "not_a_yolo_arg" in a["runs"][0]["error"]
    assert m["comparisons"] == []
    manifest = json.loads((result.out_dir / "manifest.json").read_text())
    assert manifest["summary"]["failed_runs"] == 2  # and a rerun will retry them
