"""The synthesize flow: shard tasks on a thread pool and on a local Dask cluster (threads) give
the same augmented version as the plain function, file for file; a rerun is cached. The
generator is the deterministic stand-in."""

from __future__ import annotations

import threading

import pytest
from synth_helpers import fake_model_dir as _model_dir
from synth_helpers import metalize

from pipeline.config import RunConfig
from pipeline.synth import stage
from pipeline.synth.generate import Generator


@pytest.fixture
def fake_generators(monkeypatch):
    monkeypatch.setattr(stage, "load_generators", lambda plan: [Generator(plan.generator_shas[0], metalize)])


def _where(monkeypatch, ss, log) -> None:
    """Append, for every shard task, whether it ran on a Dask worker or a plain thread, to `log`
    (a file: the Dask runner ships a pickled copy of the task, so an in-memory list stays empty)."""
    real_run = ss.run_plan_shard

    def spy(plan, index, *args, **kwargs):
        from distributed import get_worker

        try:
            where = f"dask:{get_worker().address}"
        except ValueError:  # not inside a Dask worker
            where = f"thread:{threading.current_thread().name}"
        with open(log, "a") as f:
            f.write(where + "\n")
        return real_run(plan, index, *args, **kwargs)

    monkeypatch.setattr(ss, "run_plan_shard", spy)


def _content(version) -> dict[str, str]:
    """{file: sha256} of a version, but config.yaml (it names the output root)."""
    return {k: v for k, v in version.manifest["files"].items() if k != "config.yaml"}


@pytest.mark.parametrize("dask", [False, True])
def test_flow_runs_shards_and_publishes(dask, prefect_harness, fake_generators, mini_dataset, tmp_path,
                                        monkeypatch):
    import flows.synthesize as fs
    import pipeline.stages.synth as ss  # where the shard unit calls run_plan_shard

    cfg = RunConfig()
    cfg.runtime.output_root = tmp_path / "flow"
    cfg.runtime.workers = 2
    cfg.synth = cfg.synth.model_copy(update={"shard_size": 4, "dask": dask})
    model = _model_dir(tmp_path)
    log = tmp_path / "where.txt"
    _where(monkeypatch, ss, log)
    res = fs.synthesize_flow(cfg, mini_dataset, model)
    where = log.read_text().splitlines()
    assert not res.cached and res.accepted > 0
    assert res.version.manifest["kind"] == "augmented"
    n_shards = len(stage.prepare(cfg, mini_dataset, model).shards)
    assert len(where) == n_shards > 1
    if dask:  # every shard ran on the local Dask cluster's worker
        assert all(w.startswith("dask:") for w in where), where
    else:
        assert all(w.startswith("thread:") for w in where), where
    # The same content as the plain function publishes elsewhere, file for file.
    plain_cfg = cfg.model_copy(deep=True)
    plain_cfg.runtime.output_root = tmp_path / "plain"
    direct = stage.synthesize(plain_cfg, mini_dataset, model, progress=False)
    assert not direct.cached and direct.version.id == res.version.id
    assert _content(direct.version) == _content(res.version)
    again = fs.synthesize_flow(cfg, mini_dataset, model)
    assert again.cached and again.accepted == res.accepted


def test_shard_task_retries_only_on_oserror(prefect_harness, fake_generators, mini_dataset, tmp_path,
                                            monkeypatch):
    import flows.synthesize as fs
    import pipeline.stages.synth as ss  # where the shard unit calls run_plan_shard

    calls = {"n": 0}
    real_run = ss.run_plan_shard

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
    monkeypatch.setattr(ss, "run_plan_shard", flaky)
    res = fs.synthesize_flow(cfg, mini_dataset, model)
    assert calls["n"] == 2 and res.accepted > 0

    def broken(plan, index):
        calls["n"] += 1
        raise ValueError("a bug, not a transient error")

    calls["n"] = 0
    cfg2 = cfg.model_copy(deep=True)
    cfg2.synth.gate.min_std = 5.0  # another cache key
    monkeypatch.setattr(ss, "run_plan_shard", broken)
    with pytest.raises(ValueError, match="a bug"):
        fs.synthesize_flow(cfg2, mini_dataset, model)
    assert calls["n"] == 1
