"""The resumable training loop of every translator: data, steps, logs, images, atomic checkpoints.

Work directory layout (rank 0 writes):
    checkpoints/last.pt      weights, optimisers, schedulers, scaler, every rank's image pools,
                             RNG states, step, config hash, loss history (torch.save of plain data)
    checkpoints/last.json    {"step": int} — a cheap progress marker for humans and tests
    samples/step_XXXXXX.png  A, G(A), F(G(A)) / B, F(B), G(F(B)) grids
    tensorboard/             scalars and the same grids (when tensorboard is installed)

A checkpoint whose config hash differs from this run's is ignored (training restarts), so a
resume never mixes two configurations.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.distributed as dist

from pipeline.gan import display_name
from pipeline.gan.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from pipeline.gan.data import ImageItem, StepSampler, UnpairedDataset, seed_worker, to_uint8
from pipeline.gan.model import make_model
from pipeline.gan.cyclegan import CycleGAN, GanOptions
from pipeline.progress import stage_progress
from pipeline.store import atomic_write_bytes, atomic_write_json

log = logging.getLogger(__name__)
StepCallback = Callable[[int, CycleGAN], None]


@dataclass
class FitResult:
    step: int
    history: list[dict[str, float]]
    train_seconds: float  # wall time of optimisation steps, summed over resumes
    resumed_from: int  # 0 = fresh start
    samples: list[Path]
    model: CycleGAN


@dataclass
class FitOptions:
    load_size: int
    crop_size: int
    batch_size: int = 1
    object_aware_crops: bool = False
    num_workers: int = 0
    checkpoint_every: int = 1000
    log_every: int = 50
    image_every: int = 1000


def dist_info() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def fit(opt: GanOptions, fopt: FitOptions, a: list[ImageItem], b: list[ImageItem], work_dir: Path, *,
        device: str | torch.device = "cpu", seed: int = 0, config_hash: str = "", progress: bool = True,
        callbacks: list[StepCallback] | None = None) -> FitResult:
    """Train (or resume) to opt.iterations steps in work_dir; returns the history and timings."""
    rank, world = dist_info()
    device = torch.device(device)
    work_dir = Path(work_dir)
    ckpt_path = work_dir / "checkpoints" / "last.pt"
    model = make_model(opt, device, seed=seed, rank=rank, world_size=world)

    step, history, elapsed, window = 0, [], 0.0, {}
    resumed = _try_resume(model, ckpt_path, config_hash, rank, world)
    if resumed is not None:
        step, history, elapsed, window = resumed
        if rank == 0:
            log.info("resuming CycleGAN training at step %d from %s", step, ckpt_path)
    else:
        _seed_all(seed + rank)
    start = step

    # On CUDA the workers hand over uint8 crops (a quarter of the bytes through shared and pinned
    # memory); the model normalises them on the device to the same values.
    cuda = device.type == "cuda"
    ds = UnpairedDataset(a, b, load_size=fopt.load_size, crop_size=fopt.crop_size, seed=seed,
                         length=opt.iterations * world * fopt.batch_size,
                         object_aware=fopt.object_aware_crops, uint8=cuda,
                         box_weight=getattr(opt, "structure_box_weight", 1.0))
    loader = torch.utils.data.DataLoader(
        ds, batch_size=fopt.batch_size,
        sampler=StepSampler(step, opt.iterations, fopt.batch_size, rank, world),
        num_workers=fopt.num_workers, pin_memory=cuda, worker_init_fn=seed_worker,
        persistent_workers=False, prefetch_factor=4 if fopt.num_workers else None)

    writer = _tensorboard(work_dir / "tensorboard") if rank == 0 else None
    samples: list[Path] = []
    bar = stage_progress(display_name(getattr(opt, "model", "cyclegan")), opt.iterations, done=step,
                         unit="it", enabled=progress and rank == 0)
    sums = {k: torch.tensor(v, device=device) for k, v in window.items()}
    n_in_window = int(window.get("_n", 0))
    status = None
    t0 = time.perf_counter()
    try:
        with bar:
            for batch in loader:
                model.set_input(batch)
                try:
                    model.optimize_parameters()
                except torch.cuda.OutOfMemoryError as e:
                    raise TrainingOutOfMemoryError(
                        f"CUDA out of memory in a CycleGAN training step at "
                        f"gan.batch_size={fopt.batch_size}, gan.crop_size={fopt.crop_size}: lower "
                        f"gan.batch_size (or gan.crop_size, gan.ngf) and rerun; it resumes from the last "
                        f"checkpoint. ({e})") from e
                step += 1
                for k, v in model.losses.items():  # accumulate on device: no sync per step
                    sums[k] = sums.get(k, 0) + v.detach().float()
                n_in_window += 1
                if step % fopt.log_every == 0 or step == opt.iterations:
                    means = _window_means(sums, n_in_window)  # the one host sync of a log window
                    row = {"step": step, "lr": model.lr, **means}
                    history.append(row)
                    sums, n_in_window = {}, 0
                    if writer is not None:
                        for k, v in row.items():
                            if k != "step":
                                writer.add_scalar(f"loss/{k}" if k != "lr" else "lr", v, step)
                    status = _describe(row)
                if rank == 0 and (step % fopt.image_every == 0 or step == opt.iterations):
                    png = work_dir / "samples" / f"step_{step:06d}.png"
                    samples.append(_save_grid(model, png, writer, step))
                bar.advance(1, status)
                if step % fopt.checkpoint_every == 0 or step == opt.iterations:
                    window = {k: float(v) for k, v in sums.items()} | {"_n": n_in_window}
                    _checkpoint(model, ckpt_path, step, config_hash, history,
                                elapsed + time.perf_counter() - t0, window, rank)
                for cb in callbacks or []:
                    cb(step, model)
    finally:
        if writer is not None:
            writer.close()
    elapsed += time.perf_counter() - t0
    return FitResult(step, history, elapsed, start, samples, model)


class TrainingOutOfMemoryError(RuntimeError):
    """CUDA ran out of memory in a training step; the message names gan.batch_size. Training never
    shrinks the batch by itself: it is a hyper-parameter, and the model key would no longer
    describe the run."""


# ----------------------------------------------------------------------------------- checkpoints
def _rng_state() -> dict[str, Any]:
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "python": random.getstate(),
        "numpy": [np.asarray(x).tolist() if isinstance(x, np.ndarray) else x for x in np.random.get_state()],
    }


def _set_rng_state(s: dict[str, Any]) -> None:
    torch.set_rng_state(s["torch"])
    if s["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])
    py = s["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    npst = s["numpy"]
    np.random.set_state((npst[0], np.asarray(npst[1], dtype=np.uint32), *npst[2:]))


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _checkpoint(model: CycleGAN, path: Path, step: int, config_hash: str, history: list, elapsed: float,
                window: dict[str, float], rank: int) -> None:
    """Every rank contributes its pools and RNG state; rank 0 writes one file atomically."""
    per_rank = {"pools": model.pool_states(), "rng": _rng_state(), "window": window}
    _, world = dist_info()
    if world > 1:
        gathered: list[Any] = [None] * world
        dist.all_gather_object(gathered, per_rank)
    else:
        gathered = [per_rank]
    if rank == 0:
        state = {"step": step, "config_hash": config_hash, "world_size": world, "history": history,
                 "elapsed": elapsed, "ranks": gathered, **model.state_dict()}
        save_checkpoint(path, state)
        atomic_write_json(path.with_suffix(".json"), {"step": step, "config_hash": config_hash})
    if world > 1:
        dist.barrier()


def _try_resume(model: CycleGAN, path: Path, config_hash: str, rank: int, world: int):
    if not path.is_file():
        return None
    try:
        state = load_checkpoint(path, model.device)
    except CheckpointError as e:  # e.g. a disk filled up mid-write on an old file system
        log.warning("%s; starting from scratch", e)
        return None
    if state.get("config_hash") != config_hash:
        log.warning("%s was written by another configuration; starting from scratch", path)
        return None
    model.load_state_dict(state)
    ranks = state["ranks"]
    mine = ranks[rank] if state.get("world_size") == world and rank < len(ranks) else None
    if mine is None:
        log.warning("%s: written by %s ranks, now %d; image pools restart empty", path,
                    state.get("world_size"), world)
        _seed_all(state["step"] * 7919 + rank)
        return state["step"], list(state["history"]), float(state["elapsed"]), {}
    model.load_pool_states(mine["pools"])
    _set_rng_state(mine["rng"])
    return state["step"], list(state["history"]), float(state["elapsed"]), dict(mine.get("window") or {})


# --------------------------------------------------------------------------------------- logging
def _window_means(sums: dict[str, torch.Tensor], n: int) -> dict[str, float]:
    """Mean of each loss over the window (sums are device tensors), read in one transfer."""
    keys = [k for k in sums if k != "_n"]
    if not keys:
        return {}
    values = torch.stack([sums[k].float().reshape(()) for k in keys]).tolist()
    return {k: v / n for k, v in zip(keys, values)}


def _describe(row: dict[str, float]) -> str:
    keys = ("G", "D_A", "D_B", "cycle_A", "cycle_B")
    return " ".join(f"{k} {row[k]:.3f}" for k in keys if k in row)


def _tensorboard(logdir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # optional on bare GPU hosts
        return None
    return SummaryWriter(str(logdir))


def visual_grid(images: list[torch.Tensor]) -> np.ndarray:
    """2k (3,H,W) images in [-1,1] -> (2H,kW,3) uint8, the first k over the others: CycleGAN's
    A, G(A), F(G(A)) over B, F(B), G(F(B)); CUT's A, G(A) over B, G(B)."""
    tiles = [to_uint8(t) for t in images]
    k = len(tiles) // 2
    return np.concatenate([np.concatenate(tiles[:k], 1), np.concatenate(tiles[k:], 1)], 0)


def _save_grid(model: CycleGAN, path: Path, writer, step: int) -> Path:
    grid = visual_grid(model.visuals())
    ok, png = cv2.imencode(".png", cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
    if ok:
        atomic_write_bytes(path, png.tobytes())
    if writer is not None:
        writer.add_image("A_GA_FGA__B_FB_GFB", grid, step, dataformats="HWC")
    return path
