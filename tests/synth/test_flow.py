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
