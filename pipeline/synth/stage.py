"""The synthesize stage: plan → shards → export, cached by content and resumable after a kill.

`synthesize(cfg, dataset, model_dir)` is the whole stage. The three steps are public so the
Prefect flow can run shards as separate tasks: `prepare` (cache key, staging dir, work plan),
`run_plan_shard` (one shard; loads the CycleGAN translators once per process) and `finalize`.

Output: `<output_root>/data/datasets/<data.name>-aug-<key12>/` (kind "augmented"). Work happens in
the sibling `.<name>.partial/` whose name is fixed by the cache key, so a killed run resumes there;
the finished directory is renamed into place in one step.
"""

from __future__ import annotations

import functools
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.config import RunConfig
from pipeline.data.version import DatasetVersion
from pipeline.store import dir_lock, read_manifest, sha256_file, stage_key
from pipeline.synth.export import export_version
from pipeline.synth.generate import Generator, ShardSummary, WorkItem, plan_items, run_shard, shard_items


@dataclass
class SynthResult:
    version: DatasetVersion
    cached: bool
    accepted: int
    rejected: int


@dataclass
class SynthPlan:
    cfg: RunConfig
    dataset: DatasetVersion
    checkpoints: list[Path]  # generator weights files, first = the stage's CycleGAN
    generator_shas: list[str]
    key: str
    final: Path
    staging: Path
    shards: list[list[WorkItem]]
    balance: dict[str, Any]
    parents: list[dict[str, Any]] = field(default_factory=list)

    @property
    def version_id(self) -> str:
        return self.final.name


def checkpoint_file(path: str | Path) -> Path:
    """A generator weights file: the path itself, or <model_dir>/G_AB.safetensors."""
    p = Path(path)
    f = p / "G_AB.safetensors" if p.is_dir() else p
    if not f.is_file():
        raise FileNotFoundError(f"{p}: no CycleGAN generator weights (expected G_AB.safetensors)")
    return f


def resolve_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def prepare(cfg: RunConfig, dataset: DatasetVersion, model_dir: Path) -> SynthPlan:
    """Cache key, output paths and the work plan (deterministic for the same inputs)."""
    checkpoints = [checkpoint_file(model_dir)] + [checkpoint_file(c) for c in cfg.synth.checkpoints]
    shas = [sha256_file(c) for c in checkpoints]
    parents = [dataset.manifest]
    for c in checkpoints:
        m = read_manifest(c.parent)
        if m is not None and m not in parents:
            parents.append(m)
    key = stage_key(
        "synthesize",
        {"synth": cfg.synth.model_dump(mode="json"), "generators": shas, "seed": cfg.runtime.seed},
        parents,
    )
    final = cfg.runtime.data_dir / "datasets" / f"{cfg.data.name}-aug-{key[:12]}"
    a_train = dataset.coco("A", "train")
    real = dataset.coco("B", "train").class_counts() if dataset.has("B", "train") else {}
    items, balance = plan_items(cfg, a_train, real, len(checkpoints))
    return SynthPlan(
        cfg, dataset, checkpoints, shas, key, final, final.parent / f".{final.name}.partial",
        shard_items(items, cfg.synth.shard_size), balance, parents,
    )


@functools.lru_cache(maxsize=4)
def _translators(paths: tuple[str, ...], device: str, tile: int, overlap: int, batch: int) -> tuple[Any, ...]:
    from pipeline.gan.translate import Translator

    return tuple(
        Translator.load(p, direction="AtoB", device=device, tile=tile, overlap=overlap, batch=batch)
        for p in paths
    )


def load_generators(plan: SynthPlan) -> list[Generator]:
    """The plan's checkpoints as Translators (cached per process), wrapped as `Generator`s."""
    g = plan.cfg.gan
    trs = _translators(tuple(str(c) for c in plan.checkpoints), resolve_device(plan.cfg.runtime.device),
                       g.tile, g.tile_overlap, g.translate_batch)
    return [
        Generator(sha, _serialised(tr), name=str(c))
        for sha, tr, c in zip(plan.generator_shas, trs, plan.checkpoints)
    ]


def _serialised(translator: Any):
    """One call at a time per Translator: it switches its norm layers' mode per call (tiling), so
    concurrent shard threads must not interleave inside it; their checks and I/O still overlap."""
    lock = _locks.setdefault(id(translator), threading.Lock())

    def translate(images):
        with lock:
            return translator(images)

    return translate


_locks: dict[int, threading.Lock] = {}


def run_plan_shard(plan: SynthPlan, index: int, generators: list[Generator] | None = None) -> ShardSummary:
    """Generate shard `index` of the plan into its staging directory (skips a verified done shard)."""
    plan.staging.mkdir(parents=True, exist_ok=True)
    gens = generators if generators is not None else load_generators(plan)
    a_train = plan.dataset.coco("A", "train")
    return run_shard(plan.cfg, plan.dataset, a_train, gens, plan.shards[index], index, plan.staging)


def finalize(plan: SynthPlan, summaries: list[ShardSummary]) -> SynthResult:
    """Export the staged shards as the augmented version and move it into place."""
    totals = ShardSummary(-1)
    for s in summaries:
        totals.add({k: v for k, v in s.__dict__.items() if k != "index"})
    counts = {k: v for k, v in totals.__dict__.items() if k not in ("index", "seconds")}
    counts["seconds"] = {k: round(v, 3) for k, v in totals.seconds.items()}
    export_version(
        plan.cfg, plan.dataset, plan.staging, n_shards=len(plan.shards), version_id=plan.version_id,
        parents=plan.parents,
        generators=[{"sha256": s, "file": str(c)} for s, c in zip(plan.generator_shas, plan.checkpoints)],
        balance=plan.balance, counts=counts,
    )
    if plan.final.exists():  # finished concurrently by another run with the same key: keep theirs
        import shutil

        shutil.rmtree(plan.staging, ignore_errors=True)
    else:
        os.replace(plan.staging, plan.final)
    return SynthResult(DatasetVersion.open(plan.final), False, totals.accepted, totals.rejected)


def cached_result(plan: SynthPlan) -> SynthResult | None:
    m = read_manifest(plan.final)
    if m is None:
        return None
    c = m.get("summary", {}).get("counts", {})
    accepted, rejected = int(c.get("accepted", 0)), int(c.get("rejected", 0))
    return SynthResult(DatasetVersion.open(plan.final), True, accepted, rejected)


def synth_lock(plan: SynthPlan):
    """Lock held for the whole stage so two runs of the same key never share a staging dir."""
    return dir_lock(plan.final.parent / ".locks" / plan.final.name)


def synthesize(
    cfg: RunConfig, dataset: DatasetVersion, model_dir: Path, *, progress: bool = True
) -> SynthResult:
    """Translate labelled A_train with the CycleGAN at `model_dir`, gate, and publish the
    augmented version (real B train + accepted synthetic). Cached on (dataset, generator weights,
    synth config); resumes a killed run from its verified shards."""
    plan = prepare(cfg, dataset, model_dir)
    hit = cached_result(plan)
    if hit is not None:
        return hit
    with synth_lock(plan):
        hit = cached_result(plan)
        if hit is not None:
            return hit
        gens = load_generators(plan)
        from rich.progress import Progress

        summaries = []
        with Progress(disable=not progress, transient=True) as bar:
            task = bar.add_task("synthesize", total=len(plan.shards))
            for k in range(len(plan.shards)):
                summaries.append(run_plan_shard(plan, k, gens))
                bar.advance(task)
        return finalize(plan, summaries)
