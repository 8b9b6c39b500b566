"""The Prefect flow and `metalize compare` wire the same comparison (on the tiny run's outputs)."""

from __future__ import annotations

import json
import shutil

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
    assert [a["status"] for a in result.metrics["arms"]] == ["ok", "ok"]
    assert result.metrics["arms"][0]["runs"][0]["metrics"] == first.metrics["arms"][0]["runs"][0]["metrics"]

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
