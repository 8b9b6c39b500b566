"""One arm trained with one seed: `run_arm_seed` trains, predicts the real B test split and
evaluates it; `run_isolated` does that in a fresh spawned process and turns any crash (an
exception, a killed or crashed worker) into a failed record instead of an exception.

Files of a run, under <compare out_dir>/runs/<arm>/seed<k>/: data/ (YOLO layout), train/
(ultralytics run, weights, results.csv), train.log (the worker's stdout/stderr), predictions.json,
pr_curve.json, run.json (the done record; its presence with a matching key means "finished") or
failed.json.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import json
import multiprocessing as mp
import os
import shutil
import sys
import threading
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.config import RunConfig
from pipeline.data.version import DatasetVersion
from pipeline.detect.arms import build_phases, plan_arms, write_eval_set
from pipeline.detect.backends import make_detector
from pipeline.detect.evaluate import coco_eval, write_results
from pipeline.store import atomic_write_json, dir_lock, sha256_file

RUN_RECORD = "run.json"
FAILED_RECORD = "failed.json"
TRAINING_MARKER = "training.json"  # {"key": ...} while a run trains under its folder's lock
TRAIN_LOG = "train.log"  # the worker's own output (ultralytics' epoch bars)
# Every run record has these keys, whatever its status (metrics.json arms[].runs[] plus "key").
RUN_FIELDS = ("seed", "status", "error", "metrics", "per_class_ap", "ultralytics_map", "ultralytics_map50",
              "ultralytics_map_diff", "train_seconds", "train_images_per_s", "train_cpu_seconds",
              "train_threads", "images_seen", "weights", "weights_sha256", "predictions", "results_csv",
              "pr_curve", "key")


@dataclass(frozen=True)
class RunSpec:
    """One arm trained with one seed."""

    arm: str
    seed: int
    run_dir: Path
    key: str  # cache key: detect config, detector identity, arm, seed, budget, input manifests
    images_per_epoch: int


def cached_record(spec: RunSpec) -> dict[str, Any] | None:
    """The done record of a finished run with the same key whose outputs are still there."""
    p = spec.run_dir / RUN_RECORD
    try:
        rec = json.loads(p.read_text())
    except (OSError, ValueError):
        return None
    out_dir = spec.run_dir.parents[2]
    if rec.get("key") != spec.key or rec.get("status") != "ok":
        return None
    if not all((out_dir / rec[k]).is_file() for k in ("weights", "predictions", "pr_curve")):
        return None
    return rec


def _siblings(spec: RunSpec, name: str) -> list[Path]:
    """`name` in the same run's folder of the sibling comparisons (same layout, same parent)."""
    out_dir = spec.run_dir.parents[2]
    rel = spec.run_dir.relative_to(out_dir)
    return [p for p in sorted(out_dir.parent.parent.glob(f"*/{out_dir.name}/{rel.as_posix()}/{name}"))
            if p.parent != spec.run_dir]


def adopt_finished_run(spec: RunSpec) -> dict[str, Any] | None:
    """A finished run with the same key in a sibling comparison (same layout under the same
    parent folder: another GAN seed, another GAN variant), linked into this comparison so the arm
    is not trained again; None when there is none. The key covers everything that decides the
    run (detect config, detector, arm, seed, budget, device and the input manifests), so an arm
    that does not use the GAN is trained once for every GAN it is compared with."""
    for candidate in _siblings(spec, RUN_RECORD):
        src = candidate.parent
        src_rec = cached_record(RunSpec(spec.arm, spec.seed, src, spec.key, spec.images_per_epoch))
        if src_rec is None:
            continue
        tmp = spec.run_dir.with_name(f".{spec.run_dir.name}.adopt")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(src, tmp, copy_function=_link_or_copy,
                        ignore=shutil.ignore_patterns("data", ".lock", TRAINING_MARKER))
        shutil.rmtree(spec.run_dir, ignore_errors=True)
        spec.run_dir.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, spec.run_dir)
        return cached_record(spec)
    return None


@contextlib.contextmanager
def training(spec: RunSpec) -> Iterator[None]:
    """Hold the run's folder while it trains, marked with its key: a sibling comparison that needs
    the same run waits for it (`await_sibling`) instead of training it a second time."""
    with dir_lock(spec.run_dir):
        marker = spec.run_dir / TRAINING_MARKER
        atomic_write_json(marker, {"key": spec.key, "pid": os.getpid()})
        try:
            yield
        finally:
            marker.unlink(missing_ok=True)


def await_sibling(spec: RunSpec) -> dict[str, Any] | None:
    """Wait for the sibling runs with this key that are training now (e.g. baselines trained ahead
    of the GAN), then adopt a finished one; None when none finished. A marker left by a killed
    run holds no lock: nothing to wait for."""
    for marker in _siblings(spec, TRAINING_MARKER):
        try:
            key = json.loads(marker.read_text()).get("key")
        except (OSError, ValueError):
            continue
        if key == spec.key:
            with dir_lock(marker.parent):
                pass
    return adopt_finished_run(spec)


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def run_arm_seed(cfg: RunConfig, dataset: DatasetVersion, augmented: DatasetVersion | None, spec: RunSpec,
                 *, threads: int | None = None) -> dict[str, Any]:
    """Train one arm with one seed, predict the B test split, evaluate; returns the run record
    (schema of metrics.json arms[].runs[]) and writes it as run.json. Raises on failure."""
    if (rec := cached_record(spec)) is not None:
        return rec
    out_dir = spec.run_dir.parents[2]
    plan = next(p for p in plan_arms(cfg, dataset, augmented) if p.name == spec.arm)
    (spec.run_dir / FAILED_RECORD).unlink(missing_ok=True)
    phases = build_phases(plan, cfg, dataset, spec.images_per_epoch, spec.run_dir / "data", spec.seed)
    detector = make_detector(cfg, threads=threads)
    trained, start = None, None
    for ph in phases:  # one phase, or pre-train then fine-tune from the pre-trained weights
        name = "train" if ph is phases[-1] else ph.name
        # an interrupted run's partial ultralytics dir would append to its results.csv: start clean
        shutil.rmtree(spec.run_dir / name, ignore_errors=True)
        done = detector.train(ph.data, spec.run_dir, seed=spec.seed, epochs=ph.epochs, init=start, name=name)
        start = done.last_weights
        trained = done if trained is None else done.after(trained)

    test = dataset.coco("B", "test")
    cat_ids = [c.id for c in sorted(test.categories, key=lambda c: c.id)]
    images = [(im.id, dataset.image_path(im)) for im in test.images]
    results = detector.predict(trained.weights, images, cat_ids)
    predictions = write_results(spec.run_dir / "predictions.json", results)
    ev = coco_eval(dataset.annotation_path("B", "test"), results, cfg.detect.max_det)
    pr_curve = atomic_write_json(spec.run_dir / "pr_curve.json", ev.pr_curve, indent=None)
    test_yaml = write_eval_set(dataset, "B", "test", spec.run_dir / "data" / "eval")
    own = detector.self_check(trained.weights, test_yaml, spec.run_dir)
    ours = ev.metrics["map"]

    import torch

    rel = lambda p: os.path.relpath(p, out_dir)  # noqa: E731
    rec = run_record(
        spec, "ok",
        metrics=ev.metrics,
        per_class_ap=ev.per_class_ap,
        ultralytics_map=own["map"] if own else None,
        ultralytics_map50=own["map50"] if own else None,
        ultralytics_map_diff=(own["map"] - ours) if own and ours is not None else None,
        train_seconds=round(trained.train_seconds, 2),
        train_images_per_s=round(trained.images_seen / trained.train_seconds, 2)
        if trained.train_seconds else None,
        train_cpu_seconds=round(trained.cpu_seconds, 2) if trained.cpu_seconds is not None else None,
        train_threads=torch.get_num_threads(),  # the run's numbers depend on it (CPU float reductions)
        images_seen=trained.images_seen,
        weights=rel(trained.weights),
        weights_sha256=sha256_file(trained.weights),
        predictions=rel(predictions),
        results_csv=rel(trained.results_csv) if trained.results_csv else None,
        pr_curve=rel(pr_curve),
    )
    atomic_write_json(spec.run_dir / RUN_RECORD, rec)  # last: its presence means "done"
    return rec


def run_record(spec: RunSpec, status: str, error: str | None = None, **values: Any) -> dict[str, Any]:
    """A run record with every RUN_FIELDS key (None where the run has no value)."""
    unknown = set(values) - set(RUN_FIELDS)
    if unknown:
        raise KeyError(f"not run record fields: {sorted(unknown)}")
    rec = dict.fromkeys(RUN_FIELDS)
    rec.update(values, seed=spec.seed, status=status, error=error, key=spec.key)
    return rec


def failed_record(spec: RunSpec, error: BaseException | str) -> dict[str, Any]:
    """A run that crashed, with its error; written as failed.json (which does not count as done)."""
    msg = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
    rec = run_record(spec, "failed", msg)
    try:
        atomic_write_json(spec.run_dir / FAILED_RECORD, rec)
    except OSError:
        pass
    return rec


def _child(cfg_json: str, dataset_root: str, augmented_root: str | None, spec: RunSpec,
           threads: int | None) -> dict:
    """Entry point of a spawned worker process."""
    _output_to(spec.run_dir / TRAIN_LOG)
    cfg = RunConfig.model_validate_json(cfg_json)
    aug = DatasetVersion.open(augmented_root) if augmented_root else None
    try:
        return run_arm_seed(cfg, DatasetVersion.open(dataset_root), aug, spec, threads=threads)
    except OSError:
        raise
    except Exception as e:  # re-raised as a plain RuntimeError: library exceptions may not pickle
        raise RuntimeError(f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=4)}") from None


def _output_to(path: Path) -> None:
    """Send this process's stdout/stderr (ultralytics' per-epoch bars) to the run's log file: runs
    train side by side and the parent shows one progress line for all of them."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def run_isolated(cfg: RunConfig, dataset: DatasetVersion, augmented: DatasetVersion | None, spec: RunSpec,
                 *, threads: int | None = None, raise_oserror: bool = False,
                 cancel: threading.Event | None = None) -> dict[str, Any]:
    """`run_arm_seed` in a fresh spawned process (its own torch threads; a segfault or OOM kill
    cannot take the comparison down). Failures come back as failed records; an OSError is
    re-raised when `raise_oserror` (so an orchestrator can retry transient I/O errors). Setting
    `cancel` kills the process: the run comes back failed."""
    if (rec := cached_record(spec)) is not None:
        return rec
    ctx = mp.get_context("spawn")
    try:
        with cf.ProcessPoolExecutor(max_workers=1, mp_context=ctx, initializer=die_with_parent,
                                    initargs=(os.getpid(),)) as pool:
            fut = pool.submit(_child, cfg.model_dump_json(), str(dataset.root),
                              str(augmented.root) if augmented else None, spec, threads)
            while cancel is not None and not fut.done():
                if cancel.wait(0.5):
                    _kill_workers(pool)
                    return failed_record(spec, "cancelled: the experiment stopped while this run trained")
            return fut.result()
    except OSError as e:
        if raise_oserror:
            raise
        return failed_record(spec, e)
    except cf.process.BrokenProcessPool as e:
        return failed_record(spec, f"worker process died ({e}): killed from outside, e.g. by the "
                                   "out-of-memory killer, or crashed in native code")
    except Exception as e:
        return failed_record(spec, _first_line(e))


def die_with_parent(parent: int) -> None:
    """Worker initializer: on Linux the kernel kills this worker when the process that started it
    dies, so a comparison killed from outside (SIGKILL, the out-of-memory killer, a `kill` of the
    main process alone) leaves no detector training on behind it; elsewhere nothing."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # it died before the call above: nobody is left to kill us
        os._exit(1)


def _kill_workers(pool: cf.ProcessPoolExecutor) -> None:
    """Kill the pool's running worker processes: `kill_workers` from Python 3.14; before it there is
    no public way to stop a task that has started, so its process table is read."""
    if hasattr(pool, "kill_workers"):
        pool.kill_workers()
        return
    for proc in list(pool._processes.values()):
        proc.kill()


def _first_line(e: BaseException) -> str:
    text = str(e)
    if isinstance(e, RuntimeError):  # from _child: drop the traceback it carries
        return text.split("\nTraceback")[0].strip()
    return f"{type(e).__name__}: {text}"
