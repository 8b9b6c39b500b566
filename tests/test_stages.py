"""The Stage protocol and its runners: one sequence (done? -> claim -> units -> finish) for every
stage, here (threads) and under Prefect (tasks); and the package boundary it stands for."""

from __future__ import annotations

import ast
import contextlib
import errno
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from pipeline.stages import Progress, Stage, run_stage

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Result:
    value: list[int]
    cached: bool


class Squares(Stage):
    """A toy stage: squares its units into `store`; finish returns None (read back by `done`)."""

    name = "squares"

    def __init__(self, n: int = 5, workers: int = 1, fail: dict[int, list[BaseException]] | None = None,
                 recover_to: int | None = None, finished_elsewhere: bool = False):
        self.n, self._workers, self.fail, self.recover_to = n, workers, fail or {}, recover_to
        self.finished_elsewhere = finished_elsewhere
        self.store: list[int] | None = None
        self.calls: list[int] = []
        self.threads: set[str] = set()
        self.claims = 0
        self.advanced: list[tuple[int, str | None]] = []

    def done(self, plan):
        return Result(self.store, True) if self.store is not None else None

    @contextlib.contextmanager
    def claim(self, plan):
        self.claims += 1
        if self.finished_elsewhere:  # another run published it while we waited for the lock
            self.store = [-1]
            yield None
            return
        yield plan

    def units(self, work):
        return list(range(self.n))

    def run_unit(self, unit):
        self.calls.append(unit)
        self.threads.add(threading.current_thread().name)
        if self.fail.get(unit):
            raise self.fail[unit].pop(0)
        time.sleep(0.01 * (self.n - unit))  # later units finish first on a pool
        return unit * unit

    def recover(self, unit, error):
        if self.recover_to is None:
            raise error
        return self.recover_to

    def finish(self, work, outputs):
        self.store = outputs
        return None

    def workers(self, work):
        return self._workers

    def progress(self, work, units):
        return Progress("squares", len(units))

    def status(self, unit, output):
        return f"{unit} -> {output}"


def test_runs_units_in_order_and_reads_the_result_back_as_fresh():
    s = Squares(workers=3)
    r = run_stage(s, "plan", progress=False)
    assert r == Result([0, 1, 4, 9, 16], False)  # unit order, though the pool finished them backwards
    assert len(s.threads) > 1
    again = run_stage(s, "plan", progress=False)
    assert again.cached and s.claims == 1  # done before claiming: no lock, no work


def test_a_run_finished_elsewhere_while_waiting_is_cached_and_runs_nothing():
    s = Squares(finished_elsewhere=True)
    r = run_stage(s, "plan", progress=False)
    assert r == Result([-1], True) and s.calls == []


def test_transient_io_errors_are_retried_others_fail_or_recover(monkeypatch):
    monkeypatch.setattr(time, "sleep", lambda s: None)
    s = Squares(fail={2: [OSError(errno.EIO, "NFS hiccup")]})
    assert run_stage(s, "plan", progress=False).value == [0, 1, 4, 9, 16]
    assert s.calls.count(2) == 2

    s = Squares(fail={2: [OSError(errno.ENOSPC, "No space left on device")]})
    with pytest.raises(OSError, match="No space"):
        run_stage(s, "plan", progress=False)
    assert s.calls.count(2) == 1 and s.store is None  # nothing finished

    s = Squares(fail={1: [ValueError("a bug")]}, recover_to=-7)  # the stage keeps a failed unit
    assert run_stage(s, "plan", progress=False).value == [0, -7, 4, 9, 16]
    assert s.calls.count(1) == 1  # a bug is not retried


def test_prefect_tasks_run_the_same_units_to_the_same_result(prefect_harness):
    from prefect import flow

    from flows.stage import run_stage_flow

    @flow
    def squares_flow(stage):
        return run_stage_flow(stage, "plan", progress=False)

    local, tasks = Squares(workers=2), Squares(workers=2)
    assert squares_flow(tasks) == run_stage(local, "plan", progress=False)
    assert sorted(tasks.calls) == sorted(local.calls) == list(range(5))
    kept = Squares(fail={3: [ValueError("a bug")]}, recover_to=0)
    assert squares_flow(kept).value == [0, 1, 4, 0, 16]


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_no_module_in_pipeline_imports_flows_or_prefect():
    offenders = {str(p.relative_to(REPO)): sorted(_imports(p) & {"flows", "prefect", "prefect_dask"})
                 for p in (REPO / "pipeline").rglob("*.py")}
    assert not {k: v for k, v in offenders.items() if v}


def test_every_stage_flow_is_the_generic_adapter():
    """Each flow file wires one StageFlow; none repeats the stage's sequence."""
    from flows.end_to_end import FLOWS

    assert set(FLOWS) == {"ingest", "gan", "synthesize", "compare", "report"}
    for name in ("ingest", "train_gan", "synthesize", "compare", "report"):
        text = (REPO / "flows" / f"{name}.py").read_text()
        assert "StageFlow(" in text and "dir_lock" not in text and "as_completed" not in text
