"""The end-to-end flow on the tiny profile: it finishes, a rerun is cached, a changed value reruns
only what depends on it, overlapping runs do not clobber each other."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

TINY = str(REPO / "configs" / "tiny.yaml")
pytestmark = pytest.mark.slow


def _mtimes(root: Path) -> dict[str, float]:
    return {str(p): p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file() and p.name != ".lock"}


def test_tiny_pipeline_end_to_end(pipeline_run, tiny_root: Path) -> None:
    result, _ = pipeline_run
    html = Path(result["report"])
    assert html.is_file() and html.stat().st_size > 10_000
    run_dir = Path(result["run_dir"])
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert {a["name"] for a in metrics["arms"]} == {"real", "real+replica", "real+replica-aug", "real+synthetic",
                                                    "synthetic->real", "oracle"}
    assert all(a["status"] == "ok" for a in metrics["arms"]), [a.get("error") for a in metrics["arms"]]
    # lineage: the report's manifest reaches back to the dataset version
    manifest = json.loads((run_dir / "manifest.json").read_text())
    text = json.dumps(manifest["parents"])
    assert Path(result["stages"]["ingest"]["dir"]).name in text
    ledger = [json.loads(line) for line in (tiny_root / "reports" / "runs.jsonl").read_text().splitlines()]
    assert any(r["report"] == str(html) for r in ledger)


def test_second_run_is_fully_cached(pipeline_run, tiny_root: Path) -> None:
    from flows.end_to_end import metalize_pipeline

    first, _ = pipeline_run
    before = _mtimes(Path(first["run_dir"]))
    again = metalize_pipeline(config=TINY, overrides=[f"runtime.output_root={tiny_root}"])
    assert all(st["cached"] for st in again["stages"].values()), again["stages"]
    assert again["report"] == first["report"]
    assert _mtimes(Path(first["run_dir"])) == before  # nothing rewritten


def test_changed_gate_value_reruns_only_downstream(pipeline_run, tiny_root: Path) -> None:
    from flows.end_to_end import metalize_pipeline

    first, _ = pipeline_run
    changed = metalize_pipeline(
        config=TINY, overrides=[f"runtime.output_root={tiny_root}", "synth.gate.min_std=1.5"]
    )
    st = changed["stages"]
    assert st["ingest"]["cached"] and st["gan"]["cached"]
    assert st["ingest"]["dir"] == first["stages"]["ingest"]["dir"]
    assert not st["synthesize"]["cached"] and not st["compare"]["cached"] and not st["report"]["cached"]
    assert changed["run_dir"] != first["run_dir"]
    # arms that use no synthetic image are adopted from the first comparison, not trained again
    runs = {}
    for r in (first, changed):
        m = json.loads((Path(r["run_dir"]) / "metrics.json").read_text())
        runs[r["run_dir"]] = {a["name"]: a["runs"][0] for a in m["arms"]}
    old, new = runs[first["run_dir"]], runs[changed["run_dir"]]
    for arm in ("real", "real+replica", "real+replica-aug", "oracle"):
        assert new[arm]["weights_sha256"] == old[arm]["weights_sha256"], arm
        assert new[arm]["train_seconds"] == old[arm]["train_seconds"], arm
    # the synthetic arm is trained anew (a new key; its own files, not links to the first run's)
    # rather than judged by its train time, which may match to the centisecond
    first_dir, new_dir = (Path(r["run_dir"]) / "compare" for r in (first, changed))
    key = {d: json.loads((d / "runs" / "real-synthetic" / "seed0" / "run.json").read_text())["key"]
           for d in (first_dir, new_dir)}
    assert new["real+synthetic"]["predictions"] and key[new_dir] != key[first_dir]
    assert not os.path.samefile(new_dir / new["real+synthetic"]["weights"],
                                first_dir / old["real+synthetic"]["weights"])
    assert os.path.samefile(new_dir / new["real"]["weights"], first_dir / old["real"]["weights"])


def test_overlapping_runs_share_one_report_without_clobbering(pipeline_run, tiny_root: Path) -> None:
    """Two runs of a new report setting at once: one builds it under the lock, the other finds it."""
    from flows.end_to_end import metalize_pipeline

    overrides = [f"runtime.output_root={tiny_root}", "report.title=Overlap check"]
    results: list[dict] = []
    errors: list[BaseException] = []

    def go() -> None:
        try:
            results.append(metalize_pipeline(config=TINY, overrides=overrides))
        except BaseException as e:  # noqa: BLE001 - surfaced below
            errors.append(e)

    threads = [threading.Thread(target=go) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    assert not errors, errors
    assert len(results) == 2 and results[0]["report"] == results[1]["report"]
    assert sorted(r["stages"]["report"]["cached"] for r in results) == [False, True]
    html = Path(results[0]["report"]).read_text()
    assert "Overlap check" in html


def test_killed_run_resumes_without_redoing_finished_work(pipeline_run, tiny_root: Path) -> None:
    """SIGKILL `metalize run` once its first YOLO arm has finished; the rerun keeps that arm."""
    import os
    import signal
    import subprocess
    import sys

    overrides = [f"runtime.output_root={tiny_root}", "detect.epochs=2"]
    started = time.time()
    cmd = [sys.executable, "-m", "pipeline.cli", "run", TINY, *overrides]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    done: list[Path] = []
    try:
        deadline = time.monotonic() + 400
        while time.monotonic() < deadline and proc.poll() is None:
            done = [p for p in (tiny_root / "reports").glob("*/compare/runs/*/*/run.json")
                    if p.stat().st_mtime > started]
            if done:
                break
            time.sleep(0.5)
        assert done, "no arm finished before the deadline"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
    first_arm = done[0]
    kept = first_arm.stat().st_mtime_ns

    from flows.end_to_end import metalize_pipeline

    result = metalize_pipeline(config=TINY, overrides=overrides)
    assert first_arm.stat().st_mtime_ns == kept  # finished arm not retrained
    assert Path(result["report"]).is_file()
    metrics = json.loads((Path(result["run_dir"]) / "metrics.json").read_text())
    assert all(a["status"] == "ok" for a in metrics["arms"])
    assert not list(Path(result["run_dir"]).rglob("*.partial"))
