"""The synthesize flow: shard tasks on a thread pool and on a local Dask cluster (threads) give
the same augmented version; a rerun is cached. The generator is the deterministic stand-in."""

from __future__ import annotations

import pytest
from synth_helpers import fake_model_dir as _model_dir
from synth_helpers import metalize

from pipeline.config import RunConfig
from pipeline.synth import stage
from pipeline.synth.generate import Generator


@pytest.fixture
def fake_generators(monkeypatch):
    monkeypatch.setattr(stage, "load_generators", lambda plan: [Generator(plan.generator_shas[0], metalize)])


@pytest.mark.parametrize("dask", [False, True])
def test_flow_runs_shards_and_publishes(dask, prefect_harness, fake_generators, mini_dataset, tmp_path):
    from flows.synthesize import synthesize_flow

    cfg = RunConfig()
    cfg.runtime.output_root = tmp_path
    cfg.runtime.workers = 2
    cfg.synth = cfg.synth.model_copy(update={"shard_size": 4, "dask": dask})
    model = _model_dir(tmp_path)
    res = synthesize_flow(cfg, mini_dataset, model)
    assert not res.cached and res.accepted > 0
    assert res.version.manifest["kind"] == "augmented"
    # Same content as the plain function would publish.
    direct = stage.synthesize(cfg, mini_dataset, model, progress=False)
    assert direct.cached and direct.version.root == res.version.root
    again = synthesize_flow(cfg, mini_dataset, model)
    assert again.cached and again.accepted == res.accepted


def test_shard_task_retries_only_on_oserror(prefect_harness, fake_generators, mini_dataset, tmp_path, monkeypatch):
    import flows.synthesize as fs

    calls = {"n": 0}
    real_run = fs.run_plan_shard

    def flaky(plan, index):
        calls["n"] += 1
        if calls["n"] == 1:
            raise OSError("disk hiccup")  # transient: retried
        return real_run(plan, index)

    cfg = RunConfig()
    cfg.runtime.output_root = tmp_path
    cfg.runtime.workers = 1
    cfg.synth = cfg.synth.model_copy(update={"shard_size": 100})  # one shard
    model = _model_dir(tmp_path)
    monkeypatch.setattr(fs, "run_plan_shard", flaky)
    res = fs.synthesize_flow(cfg, mini_dataset, model)
    assert calls["n"] == 2 and res.accepted > 0

    def broken(plan, index):
        calls["n"] += 1
        raise ValueError("a bug, not a transient error")

    calls["n"] = 0
    cfg2 = cfg.model_copy(deep=True)
    cfg2.synth.gate.min_std = 5.0  # another cache key
    monkeypatch.setattr(fs, "run_plan_shard", broken)
    with pytest.raises(ValueError, match="a bug"):
        fs.synthesize_flow(cfg2, mini_dataset, model)
    assert calls["n"] == 1
