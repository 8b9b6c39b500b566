"""Baseline runs ahead of the GAN: which runs train early, on how many threads, and how the
comparison takes them over (adopts the finished, waits for the one in flight, trains the rest)."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

from detect_helpers import REPO
from pipeline.detect import ahead as ahead_mod
from pipeline.detect.ahead import gan_threads, plan_ahead
from pipeline.detect.compare import plan_runs
from pipeline.detect.runs import RUN_RECORD, TRAINING_MARKER, run_record
from pipeline.stages import compare as compare_stage


def _config(root: Path, *extra: str):
    from pipeline.config import load_config

    return load_config(REPO / "configs" / "tiny.yaml", [
        f"runtime.output_root={root}", "runtime.threads=2", "detect.parallel_arms=2",
        "detect.images_per_epoch=16", "detect.arms=[real, oracle, real+synthetic]", *extra])


class FakeRuns:
    """Stands in for run_isolated: records who trained what on how many threads, writes a done
    record with its files; a run of an arm in `hold` blocks until `release` is set."""

    def __init__(self, hold: tuple[str, ...] = ()):
        self.calls: list[tuple[str, int | None, bool]] = []
        self.hold, self.started, self.release = hold, threading.Event(), threading.Event()

    def __call__(self, cfg, dataset, augmented, spec, *, threads=None, raise_oserror=False, cancel=None):
        self.calls.append((spec.arm, threads, augmented is not None))
        if spec.arm in self.hold:
            self.started.set()
            assert self.release.wait(30)
        out_dir = spec.run_dir.parents[2]
        files = {}
        for name in ("weights", "predictions", "pr_curve"):
            p = spec.run_dir / f"{name}.bin"
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(f"{spec.arm} {name}")
            files[name] = os.path.relpath(p, out_dir)
        rec = run_record(spec, "ok", **files)
        (spec.run_dir / RUN_RECORD).write_text(json.dumps(rec))
        return rec


@pytest.fixture
def fake_runs(monkeypatch):
    def install(hold: tuple[str, ...] = ()) -> FakeRuns:
        fake = FakeRuns(hold)
        monkeypatch.setattr(ahead_mod, "run_isolated", fake)
        monkeypatch.setattr(compare_stage, "run_isolated", fake)
        return fake

    return install


def test_baselines_train_ahead_on_a_runs_share_of_the_cores(tmp_path, tiny_dataset, fake_runs):
    cfg = _config(tmp_path)
    fake = fake_runs()
    ahead, why = plan_ahead(cfg, tiny_dataset)
    assert why == "" and ahead.arms == ["real", "oracle"]  # real+synthetic needs the GAN
    assert ahead.threads == 1
    with gan_threads(cfg, ahead) as gan_cfg:
        assert gan_cfg.runtime.threads == 1 and cfg.runtime.threads == 2  # the rest for the GAN
    ahead.start().join()
    assert fake.calls == [("real", 1, False), ("oracle", 1, False)]
    assert {k[0] for k in ahead.records} == {"real", "oracle"}
    # a second start finds them done: nothing trains twice
    again = plan_ahead(cfg, tiny_dataset)[0]
    again.start().join()
    assert len(fake.calls) == 2 and set(again.records) == set(ahead.records)


def test_comparison_waits_for_the_run_in_flight_and_trains_what_was_not_started(
        tmp_path, tiny_dataset, fake_augmented, fake_runs):
    cfg = _config(tmp_path)
    fake = fake_runs(hold=("real",))
    ahead = plan_ahead(cfg, tiny_dataset)[0].start()
    assert fake.started.wait(30)
    ahead.stop()  # as the experiment does when the synthetic set is ready: oracle never starts here
    [in_flight] = [s for s in ahead.specs if s.arm == "real"]
    assert json.loads((in_flight.run_dir / TRAINING_MARKER).read_text())["key"] == in_flight.key

    out = cfg.runtime.reports_dir / "tiny-final" / "compare"
    specs = {s.arm: s for s in plan_runs(cfg, tiny_dataset, fake_augmented, out)[2]}
    stage, got = compare_stage.CompareStage(), {}

    def unit(arm: str) -> None:
        got[arm] = stage.run_unit(compare_stage.ArmRun(cfg, tiny_dataset, fake_augmented, specs[arm], 1))

    waiter = threading.Thread(target=unit, args=("real",))
    waiter.start()
    waiter.join(0.5)
    assert waiter.is_alive()  # blocked on the baseline's lock, not training it a second time
    fake.release.set()
    waiter.join(30)
    ahead.join()
    assert got["real"]["key"] == specs["real"].key and got["real"]["status"] == "ok"
    assert os.path.samefile(specs["real"].run_dir / "weights.bin", in_flight.run_dir / "weights.bin")
    assert not (in_flight.run_dir / TRAINING_MARKER).exists()
    for arm in ("oracle", "real+synthetic"):
        unit(arm)
    assert fake.calls == [("real", 1, False), ("oracle", 1, True), ("real+synthetic", 1, True)]


@pytest.mark.parametrize(("extra", "threads"), [
    ([], {"real": 1, "oracle": 1, "real+synthetic": 2}),  # alone after the GAN: every core
    (["detect.seeds=[0, 1]"], {"real": 1, "oracle": 1, "real+synthetic": 1}),  # two side by side
    (["detect.baselines_ahead=false"], {"real": 1, "oracle": 1, "real+synthetic": 1}),
])
def test_runs_on_synthetic_images_share_the_cores_the_baselines_left(tmp_path, tiny_dataset, fake_augmented,
                                                                     extra, threads):
    """A run's threads follow from the config alone: the same whatever is cached or in flight."""
    cfg = _config(tmp_path, *extra)
    plan = compare_stage.COMPARE.plan(cfg, tiny_dataset, fake_augmented, tmp_path / "compare")
    units = compare_stage.COMPARE.units(compare_stage.CompareWork(plan, {}))
    assert {(u.spec.arm, u.spec.seed): u.threads for u in units} == {
        (arm, seed): n for arm, n in threads.items() for seed in cfg.detect.seeds}


@pytest.mark.parametrize("runner", ["local", "prefect"])
def test_a_run_with_every_core_trains_after_the_others_without_passive_waiting(
        tmp_path, tiny_dataset, fake_augmented, fake_runs, monkeypatch, request, runner):
    """The lone run on synthetic images waits for the baselines the comparison still trains (two
    side by side, OpenMP threads sleeping) and then spawns with OpenMP's default waiting; the
    same with the units as Prefect tasks (the flows' runner)."""
    from pipeline.detect.compare import shared_core_env
    from pipeline.stages.base import map_local

    run_units = map_local
    if runner == "prefect":
        from flows.stage import task_units

        request.getfixturevalue("prefect_harness")
        run_units = task_units()

    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    # a seed of its own per case: the other case's finished runs (same keys) would be adopted
    cfg = _config(tmp_path, f"detect.seeds=[{int(runner == 'prefect')}]")
    fake = fake_runs(hold=("oracle",))
    seen: dict[str, tuple[str | None, bool]] = {}
    inner = fake.__call__

    def spy(cfg, dataset, augmented, spec, **kw):
        seen[spec.arm] = (os.environ.get("OMP_WAIT_POLICY"), fake.release.is_set())
        if spec.arm == "real":
            threading.Timer(0.5, fake.release.set).start()  # the oracle finishes after real
        return inner(cfg, dataset, augmented, spec, **kw)

    monkeypatch.setattr(compare_stage, "run_isolated", spy)
    stage = compare_stage.COMPARE
    work = compare_stage.CompareWork(stage.plan(cfg, tiny_dataset, fake_augmented, tmp_path / "compare"), {})
    units = stage.units(work)
    assert [(u.spec.arm, u.alone) for u in units] == [("real", False), ("oracle", False), ("real+synthetic", True)]
    with shared_core_env(stage.workers(work)):  # as run_stage does (stage.environment)
        outputs = run_units(stage, units, stage.workers(work), lambda unit, out: None)
    assert [c[:2] for c in fake.calls][-1] == ("real+synthetic", 2)
    assert seen["real"][0] == seen["oracle"][0] == "PASSIVE"
    assert seen["real+synthetic"] == (None, True)  # after the held oracle, default waiting
    assert "OMP_WAIT_POLICY" not in os.environ  # restored when the comparison ends
    assert [o["status"] for o in outputs] == ["ok"] * 3


@pytest.mark.parametrize(("extra", "why"), [
    (["detect.baselines_ahead=false"], "is false"),
    (["detect.images_per_epoch=null"], "images_per_epoch is not fixed"),
    (["detect.parallel_arms=1"], "no core left for the GAN"),
    (["detect.arms=[real+synthetic]"], "no arm trains without synthetic images"),
])
def test_no_baselines_ahead_when_they_cannot_help(tmp_path, tiny_dataset, extra, why):
    ahead, reason = plan_ahead(_config(tmp_path, *extra), tiny_dataset)
    assert ahead is None and why in reason


def test_gan_keeps_its_config_without_runs_beside_it(tmp_path):
    import torch

    cfg, before = _config(tmp_path), torch.get_num_threads()
    with gan_threads(cfg, None) as gan_cfg:
        assert gan_cfg is cfg
    assert torch.get_num_threads() == before


def test_cancel_kills_the_run_in_flight(tmp_path, tiny_dataset):
    """When the experiment fails, the baseline in flight is killed, not waited for."""
    import time

    cfg = _config(tmp_path, "detect.epochs=500", "detect.arms=[real, oracle]")
    ahead = plan_ahead(cfg, tiny_dataset)[0].start()
    marker = ahead.specs[0].run_dir / TRAINING_MARKER
    deadline = time.monotonic() + 60
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert marker.exists()
    time.sleep(1.0)  # the worker process is up
    t0 = time.monotonic()
    ahead.cancel()
    ahead.join()
    assert time.monotonic() - t0 < 15  # 500 epochs would take many minutes
    [rec] = ahead.records.values()  # the oracle never started
    assert rec["status"] == "failed" and rec["error"].startswith("cancelled")
    assert not marker.exists()
