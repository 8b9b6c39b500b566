"""The Prefect flow and `metalize compare` wire the same comparison (on the tiny run's outputs)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner


@pytest.mark.slow
def test_flow_runs_a_task_per_run_and_publishes_the_table(prefect_harness, tiny_compare, tiny_dataset,
                                                          fake_augmented, tmp_path):
    from prefect.client.orchestration import get_client

    from flows.compare import compare_flow

    cfg, first = tiny_compare
    out = tmp_path / "compare"
    shutil.copytree(first.out_dir, out)  # finished runs, but no comparison yet: tasks reuse them
    (out / "manifest.json").unlink()
    (out / "metrics.json").unlink()
    result = compare_flow(cfg, tiny_dataset, fake_augmented, out)
    assert not result.cached and result.metrics_path.is_file()
    assert [a.status for a in result.metrics.arms] == ["ok", "ok"]
    assert result.metrics.arms[0].runs[0].metrics == first.metrics.arms[0].runs[0].metrics

    async def artifact():
        async with get_client() as client:
            return await client.read_latest_artifacts()

    import asyncio

    arts = [a for a in asyncio.run(artifact()) if a.key == "detector-comparison"]
    assert arts and "| real+synthetic | ok |" in arts[0].data and "real+synthetic vs real" in arts[0].data
    again = compare_flow(cfg, tiny_dataset, fake_augmented, out)
    assert again.cached


@pytest.mark.slow
def test_cli_compare_prints_metrics_path(tiny_compare, tiny_root, tiny_dataset, fake_augmented):
    from pipeline.cli import app
    from pipeline.cli import commands  # noqa: F401

    cfg, first = tiny_compare
    res = CliRunner().invoke(app, ["compare", "configs/tiny.yaml", f"runtime.output_root={tiny_root}",
                                   "detect.arms=[real, real+synthetic]", "detect.parallel_arms=2",
                                   "--dataset", str(tiny_dataset.root),
                                   "--augmented", str(fake_augmented.root),
                                   "--out", str(first.out_dir)])
    assert res.exit_code == 0, res.output
    assert str(first.metrics_path) in res.stdout
    assert json.loads(first.metrics_path.read_text())["arms"][0]["name"] == "real"


def test_cli_compare_bad_dataset_is_a_clear_error(tmp_path):
    from pipeline.cli import app
    from pipeline.cli import commands  # noqa: F401

    res = CliRunner().invoke(app, ["compare", "configs/tiny.yaml", f"runtime.output_root={tmp_path}",
                                   "--dataset", str(tmp_path / "nope")])
    assert res.exit_code == 1
    assert "not a dataset version" in " ".join(res.output.split())  # rich wraps lines


def test_flow_table_labels_the_ci_with_the_comparisons_own_level(tmp_path):
    """The compare flow's artifact is drawn by the report's table builders: same verdict, same
    rows, the CI labelled with the level the comparison's bootstrap used."""
    from flows.compare import arms_markdown
    from pipeline.config import load_config
    from pipeline.detect.compare import CompareResult
    from pipeline.detect.metrics import CompareMetrics

    cfg = load_config(Path(__file__).resolve().parents[2] / "configs" / "tiny.yaml")
    summary = {k: {"mean": 0.4, "std": None, "n": 1} for k in ("map", "map50", "map75")}
    arm = {"status": "ok", "error": None, "summary": summary, "train_images": 6, "images_per_epoch": 12}
    m = {"dataset": {"id": "tiny-1"}, "test": {"images": 10}, "categories": [],
         "arms": [{"name": "real", **arm}, {"name": "real+synthetic", **arm},
                  {"name": "real+replica", **arm, "status": "failed", "error": "RuntimeError: boom"}],
         "comparisons": [{"treatment": "real+synthetic", "baseline": "real", "delta": 0.0, "ci_low": -0.01,
                          "ci_high": 0.02, "alpha": 0.1, "significant": False}],
         "comparisons_skipped": [{"treatment": "real+synthetic", "baseline": "real+replica",
                                  "reason": "real+replica failed: RuntimeError: boom"}],
         "warnings": [{"kind": "crosscheck", "message": "real seed 0: ultralytics' own mAP 0.600 vs ..."}]}
    md = arms_markdown(cfg, CompareResult(tmp_path, tmp_path / "metrics.json", False, CompareMetrics.model_validate(m)))
    assert "| comparison | Δ mAP@[.5:.95] | 90% CI |" in md and "95%" not in md
    assert "| real+synthetic vs real | +0.000 | -0.010 to +0.020 | – | – | inconclusive" in md
    assert "| real+replica | failed: RuntimeError: boom |" in md
    assert "| real+synthetic vs real+replica | – | – | – | – | not computed: real+replica failed: RuntimeError: boom |" in md
    assert "**Warning:** real seed 0: ultralytics' own mAP 0.600" in md
    assert md.splitlines()[4].startswith("**Inconclusive")  # the verdict, as the report words it
