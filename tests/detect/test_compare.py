"""End to end on the tiny profile: arms train one epoch, evaluate, and metrics.json holds the
contract-5 schema; reruns reuse finished runs; a crashing arm is reported, not dropped."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from pipeline.store import sha256_file

from detect_helpers import compare_config, make_augmented
from pipeline.detect.compare import compare
from pipeline.detect.runs import RUN_FIELDS

METRIC_KEYS = {"map", "map50", "map75", "map_small", "map_medium", "map_large"}
RUN_KEYS = set(RUN_FIELDS) - {"key"}  # the cache key stays in run.json


def check_schema(m: dict, out_dir: Path) -> None:
    """Contract 5, key by key; relative paths must exist under out_dir."""
    assert set(m) >= {"dataset", "augmented", "categories", "test", "config", "detector", "arms",
                      "comparisons", "comparisons_skipped", "warnings", "timings", "hardware"}
    assert set(m["detector"]) == {"backend", "model", "weights_sha256", "ultralytics", "precision"}
    assert m["detector"]["precision"] in {"fp32", "bf16"}
    assert isinstance(m["dataset"]["id"], str)
    assert m["augmented"] is None or isinstance(m["augmented"]["id"], str)
    assert isinstance(m["test"]["images"], int) and set(m["test"]["instances"]) == set(m["categories"])
    assert m["config"]["epochs"] >= 1
    for a in m["arms"]:
        assert a["name"] in {"real", "real+replica", "real+synthetic", "oracle"}
        assert a["status"] in {"ok", "failed", "unavailable"}
        assert a["error"] is None or isinstance(a["error"], str)
        assert (a["status"] == "unavailable") == (a["runs"] == [] and a["images_per_epoch"] == 0 and
                                                  bool(a["error"]))
        assert isinstance(a["train_images"], int) and isinstance(a["images_per_epoch"], int)
        assert set(a["summary"]) == METRIC_KEYS
        for k in METRIC_KEYS:
            assert set(a["summary"][k]) == {"mean", "std", "n"}
        for r in a["runs"]:
            assert set(r) == RUN_KEYS  # the same keys for ok and failed runs
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
            assert r["weights_sha256"] == sha256_file(out_dir / r["weights"])
            pr = json.loads((out_dir / r["pr_curve"]).read_text())
            assert len(pr["recall"]) == 101 and set(pr["precision"]) == set(m["categories"])
            assert all(v is None or len(v) == 101 for v in pr["precision"].values())
            preds = json.loads((out_dir / r["predictions"]).read_text())
            assert all(set(p) == {"image_id", "category_id", "bbox", "score"} for p in preds)
    for c in m["comparisons"]:
        assert c["treatment"] == "real+synthetic" and c["baseline"] in {"real", "real+replica"}
        assert c["metric"] == "map" and c["ci_low"] <= c["ci_high"] and isinstance(c["significant"], bool)
        assert isinstance(c["resamples"], int) and 0 < c["alpha"] < 1
    for c in m["comparisons_skipped"]:
        assert c["treatment"] == "real+synthetic" and c["reason"]
    for w in m["warnings"]:
        assert w["kind"] == "crosscheck" and w["message"]
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
    for log in ((result.out_dir / r["predictions"]).parent / "train.log"
                for a in m["arms"] for r in a["runs"]):  # each worker's own output, not the terminal
        assert "Epoch" in log.read_text(errors="replace"), log
    (c,) = m["comparisons"]
    assert c["baseline"] == "real" and c["resamples"] == cfg.detect.bootstrap_resamples
    assert c["alpha"] == cfg.report.alpha
    # the point estimate is the difference of the two arms' mAPs on the whole test split, and the
    # percentile interval of the resampled differences holds it
    maps = {a["name"]: a["runs"][0]["metrics"]["map"] for a in m["arms"]}
    assert c["delta"] == pytest.approx(maps["real+synthetic"] - maps["real"], abs=1e-12)
    assert c["ci_low"] <= c["delta"] <= c["ci_high"]
    assert m["detector"]["model"] == "yolo11n.yaml" and m["detector"]["weights_sha256"] is None
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
    again = compare(cfg, tiny_dataset, fake_augmented, first.out_dir, progress=False)
    assert again.cached and again.metrics.dump() == json.loads(first.metrics_path.read_text())
    # an interrupted comparison (no metrics yet) resumes from the runs' done records
    (first.out_dir / "manifest.json").unlink()
    weights = first.out_dir / first.metrics.arms[0].runs[0].weights
    mtime = weights.stat().st_mtime_ns
    resumed = compare(cfg, tiny_dataset, fake_augmented, first.out_dir, progress=False)
    assert not resumed.cached and weights.stat().st_mtime_ns == mtime
    assert [a.runs[0].metrics for a in resumed.metrics.arms] == \
        [a.runs[0].metrics for a in first.metrics.arms]  # nothing retrained: same weights


@pytest.mark.slow
def test_crashing_arm_is_reported_failed_with_its_error(tiny_root, tiny_dataset, tmp_path):
    cfg = compare_config(tiny_root, "detect.arms=[real, real+replica, real+synthetic]",
                         "detect.extra_args={not_a_yolo_arg: 1}")
    result = compare(cfg, tiny_dataset, None, tmp_path / "compare", progress=False)
    m = json.loads(result.metrics_path.read_text())
    check_schema(m, result.out_dir)
    assert [a["name"] for a in m["arms"]] == ["real", "real+replica", "real+synthetic"]
    for a in m["arms"][:2]:
        assert a["status"] == "failed" and "not_a_yolo_arg" in a["error"]
        assert a["runs"][0]["status"] == "failed" and "not_a_yolo_arg" in a["runs"][0]["error"]
    # no augmented dataset: the arm could not run at all, which is not a crash
    syn = m["arms"][2]
    assert syn["status"] == "unavailable" and "no augmented dataset given" in syn["error"]
    assert m["comparisons"] == []
    assert {c["baseline"]: c["reason"].split(":")[0] for c in m["comparisons_skipped"]} == {
        "real": "real+synthetic unavailable", "real+replica": "real+synthetic unavailable"}
    manifest = json.loads((result.out_dir / "manifest.json").read_text())
    assert manifest["summary"]["failed_runs"] == 2  # and a rerun will retry them


def _copy_compare(first, dst: Path) -> Path:
    import shutil

    shutil.copytree(first.out_dir, dst)
    (dst / "manifest.json").unlink()  # no finished comparison: runs are resumed from their records
    return dst


@pytest.mark.slow
def test_one_arm_crashing_leaves_the_others_and_skips_its_comparisons(tiny_compare, tiny_dataset, tmp_path):
    """real+synthetic crashes (its synthetic images vanished) while real succeeds: real keeps its
    numbers, the comparison that needs real+synthetic is skipped with the reason, and the
    verdict says so."""
    from pipeline.report.facts import verdict

    cfg, first = tiny_compare
    from pipeline.data.version import DatasetVersion
    from pipeline.store import write_manifest

    broken = make_augmented(tiny_dataset, tmp_path / "broken-aug")
    for p in (broken.root / "images" / "B" / "train").glob("syn_*"):
        p.unlink()
    # a new content hash (as a re-published version would have), so the cached run is not reused
    write_manifest(broken.root, kind="augmented", id=broken.root.name, config={},
                   parents=[tiny_dataset.manifest], summary=broken.manifest["summary"])
    broken = DatasetVersion.open(broken.root)
    out = _copy_compare(first, tmp_path / "compare")
    result = compare(cfg, tiny_dataset, broken, out, progress=False)
    m = json.loads(result.metrics_path.read_text())
    check_schema(m, out)
    real, syn = m["arms"]
    assert real["status"] == "ok" and real["error"] is None
    assert real["runs"] == first.metrics.dump()["arms"][0]["runs"]  # reused, not retrained
    assert syn["status"] == "failed" and syn["error"].startswith("FileNotFoundError")
    assert "syn_" in syn["error"]  # names the missing file
    assert m["comparisons"] == []
    (skip,) = m["comparisons_skipped"]
    assert skip["baseline"] == "real"
    assert skip["reason"].startswith("real+synthetic failed: FileNotFoundError")
    head, kind, _, badge = verdict(m, cfg.report.alpha)
    assert kind == "inconclusive" and badge == "inconclusive: no comparison"
    assert head.startswith("No verdict: the real+synthetic arm failed (FileNotFoundError")


@pytest.mark.slow
def test_failed_control_skips_only_the_control_comparison(tiny_compare, tiny_dataset, fake_augmented,
                                                          tmp_path):
    from pipeline.detect.compare import finish, plan_runs
    from pipeline.detect.runs import failed_record
    from pipeline.report.facts import verdict

    cfg, first = tiny_compare
    cfg = cfg.model_copy(deep=True)
    cfg.detect.arms = ["real", "real+replica", "real+synthetic"]
    out = _copy_compare(first, tmp_path / "compare")
    plans, n, specs = plan_runs(cfg, tiny_dataset, fake_augmented, out)
    records = {(a["name"], r["seed"]): {**r, "key": "k"} for a in first.metrics.dump()["arms"] for r in a["runs"]}
    replica = next(s for s in specs if s.arm == "real+replica")
    records[("real+replica", replica.seed)] = failed_record(replica, RuntimeError("CUDA out of memory"))
    m = finish(cfg, tiny_dataset, fake_augmented, out, plans, n, records, 0.0).metrics.dump()
    check_schema(m, out)
    assert [a["status"] for a in m["arms"]] == ["ok", "failed", "ok"]
    assert [c["baseline"] for c in m["comparisons"]] == ["real"]
    assert m["comparisons_skipped"] == [{"treatment": "real+synthetic", "baseline": "real+replica",
                                         "reason": "real+replica failed: RuntimeError: CUDA out of memory"}]
    _, _, more, _ = verdict(m, cfg.report.alpha)
    assert ("Against the untranslated replica photos (the control): not compared (the real+replica arm failed "
            "(RuntimeError: CUDA out of memory)).") in more


def test_worker_killed_mid_run_is_a_failed_run(tiny_config, tiny_dataset, tmp_path):
    """SIGKILL of the spawned training process (as the OOM killer would) -> a failed record that
    says the worker died; nothing is marked done."""
    import multiprocessing as mp
    import os
    import signal
    import threading

    from pipeline.detect.compare import plan_runs
    from pipeline.detect.runs import RUN_RECORD, run_isolated

    tiny_config.detect.arms = ["real"]
    _, _, (spec,) = plan_runs(tiny_config, tiny_dataset, None, tmp_path / "compare")
    before = {p.pid for p in mp.active_children()}
    out: dict = {}
    t = threading.Thread(target=lambda: out.update(rec=run_isolated(tiny_config, tiny_dataset, None, spec)))
    t.start()
    deadline = time.monotonic() + 60
    child = None
    while child is None and time.monotonic() < deadline and t.is_alive():
        child = next((p for p in mp.active_children() if p.pid not in before and p.pid), None)
        time.sleep(0.05)
    assert child is not None, "the worker process never started"
    os.kill(child.pid, signal.SIGKILL)  # our own child, by its id
    t.join(timeout=60)
    assert not t.is_alive()
    rec = out["rec"]
    assert rec["status"] == "failed" and "worker process died" in rec["error"]
    assert set(rec) == set(RUN_FIELDS) and rec["metrics"] is None
    assert not (spec.run_dir / RUN_RECORD).exists()


def test_crosscheck_gap_beyond_tolerance_is_a_warning():
    from pipeline.detect.compare import crosscheck_warnings
    from pipeline.detect.metrics import ArmResult

    def run(seed, ours, theirs, status="ok"):
        return {"seed": seed, "status": status, "metrics": {"map": ours}, "ultralytics_map": theirs,
                "ultralytics_map_diff": theirs - ours}

    arms = [ArmResult(name="real", status="ok", summary={}, runs=[run(0, 0.40, 0.42), run(1, 0.40, 0.52)]),
            ArmResult(name="oracle", status="failed", summary={}, runs=[run(0, 0.30, 0.10, status="failed")])]
    (w,) = crosscheck_warnings(arms, tolerance=0.05)
    assert (w["arm"], w["seed"]) == ("real", 1) and w["diff"] == pytest.approx(0.12)
    assert "ultralytics' own mAP 0.520 vs pycocotools 0.400 (+0.120, tolerance 0.05)" in w["message"]
    assert crosscheck_warnings(arms, tolerance=0.2) == []


def test_a_setting_retrains_only_the_arms_that_read_it(tiny_config, tiny_dataset, fake_augmented, tmp_path):
    """real_oversample shapes the epochs of the arms that mix real B with other images; the real
    arm and synthetic->real (one set per phase) keep their cache keys, so they are not retrained."""
    from pipeline.detect.compare import plan_runs

    tiny_config.detect.images_per_epoch = 40  # a fixed budget: the oversample cannot change it
    before = {s.arm: s.key for s in plan_runs(tiny_config, tiny_dataset, fake_augmented, tmp_path / "c")[2]}
    tiny_config.detect.real_oversample += 1
    after = {s.arm: s.key for s in plan_runs(tiny_config, tiny_dataset, fake_augmented, tmp_path / "c")[2]}
    assert {a for a in before if before[a] == after[a]} == {"real", "synthetic->real"}


def test_real_finetune_retrains_only_the_arms_that_add_non_real_images(tiny_config, tiny_dataset, fake_augmented,
                                                                       tmp_path):
    """The fine-tuning epochs on real B belong to the arms that add replica or synthetic images;
    off (0), the setting is not in any key, so runs trained before it existed stay cached."""
    from pipeline.detect.compare import _run_config, plan_runs

    tiny_config.detect.images_per_epoch, tiny_config.detect.epochs = 40, 3
    before = {s.arm: s.key for s in plan_runs(tiny_config, tiny_dataset, fake_augmented, tmp_path / "c")[2]}
    assert all("real_finetune_epochs" not in _run_config(tiny_config, arm) for arm in before)
    tiny_config.detect.real_finetune_epochs = 1
    after = {s.arm: s.key for s in plan_runs(tiny_config, tiny_dataset, fake_augmented, tmp_path / "c")[2]}
    assert {a for a in before if before[a] == after[a]} == {"real", "synthetic->real", "oracle"}
