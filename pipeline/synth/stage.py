"""The synthesize stage: plan → shards → export, cached by content and resumable after a kill.

`synthesize(cfg, dataset, model_dir)` is the whole stage (`pipeline.stages.SYNTH` run here). Its
steps: `prepare` (cache key, staging dir, work plan), `run_plan_shard` (one shard, the stage's
unit; loads the CycleGAN translators once per process) and `finalize`.

Output: `<output_root>/data/datasets/<data.name>-aug-<key12>/` (kind "augmented"). Work happens in
the sibling `.<name>.partial/` whose name is fixed by the cache key, so a killed run resumes there;
the finished directory is renamed into place in one step.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.config import RunConfig
from pipeline.data.version import DatasetVersion
from pipeline.store import atomic_write_json, dir_lock, read_manifest, sha256_file, stage_key
from pipeline.synth.camera import REVISION as CAMERA_REVISION, CameraProfile, fit_camera
from pipeline.synth.export import export_version
from pipeline.synth.gate import REVISION as GATE_REVISION, Realism
from pipeline.synth.generate import Generator, ShardSummary, WorkItem, plan_items, run_shard, shard_items

# synth settings that change how the work is done, not a pixel or a box of the result
RUN_ONLY = ("shard_size", "dask", "prefetch", "n_card_examples")
# synth settings added after cached versions existed: they enter the key only when switched on, so
# the versions made without them (and the detector runs trained on those) stay valid
KEY_WHEN_SET = ("camera_match",)
# real photos the camera match measures (evenly spaced over B_unlabelled + B_train beyond this)
CAMERA_PHOTOS = 512


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
    translation: dict[str, Any] = field(default_factory=dict)  # see translation_settings
    model_dir: Path | None = None
    shard_size: int = 64

    @property
    def version_id(self) -> str:
        return self.final.name

    @property
    def n_items(self) -> int:
        return sum(map(len, self.shards))


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


def translation_settings(cfg: RunConfig) -> dict[str, Any]:
    """Everything besides the weights that changes the translated pixels (part of the cache key).

    size: gan.translate_size ("train" = the generator's training scale, "native" = the image's
    own, or a short side in pixels); tile_overlap None = the Translator's default; precision:
    gan.precision resolved on this device ("auto" = bf16 on CUDA and on bf16-capable CPUs), so
    the key names what actually ran; device: its kind (cuda:0 and cuda:1 give the same pixels).
    """
    from pipeline.gan.accel import resolve_precision

    kind = resolve_device(cfg.runtime.device).split(":")[0]
    return {"tile": cfg.gan.tile, "tile_overlap": cfg.gan.tile_overlap, "size": cfg.gan.translate_size,
            "border": cfg.gan.translate_border, "device": kind,
            "precision": resolve_precision(cfg.gan.precision, kind)}


def _unique_generators(checkpoints: list[Path], shas: list[str]) -> None:
    seen: dict[str, Path] = {}
    for c, sha in zip(checkpoints, shas):
        if sha in seen:
            raise ValueError(
                f"synth.checkpoints: {c} holds the same generator as {seen[sha]} (sha256 {sha[:12]}); "
                "list each checkpoint once (its outputs would overwrite each other)")
        seen[sha] = c


def _model_manifest(weights: Path) -> dict[str, Any] | None:
    """The manifest of the model a weights file belongs to: its folder's, or the one above (a
    snapshot kept in <model_dir>/<sub>/), for the lineage."""
    for d in (weights.parent, weights.parent.parent):
        m = read_manifest(d)
        if m is not None:
            return m
    return None


@functools.lru_cache(maxsize=4)
def _camera(dataset_root: str) -> CameraProfile:
    """The camera statistics of the real metal photos the GAN learns from (B_unlabelled + B_train;
    B_val and B_test are never read), at most CAMERA_PHOTOS of them, evenly spaced. A dataset
    version never changes under its folder, so its root names it."""
    from pipeline.gan.data import B_SPLITS

    dataset = DatasetVersion.open(dataset_root)
    recs = [r for d, s in B_SPLITS if dataset.has(d, s) for r in dataset.coco(d, s).images]
    if not recs:
        raise ValueError(f"{dataset.root}: synth.camera_match needs real B photos (B_unlabelled or B_train)")
    if len(recs) > CAMERA_PHOTOS:
        recs = [recs[i] for i in sorted({int(i) for i in np.linspace(0, len(recs) - 1, CAMERA_PHOTOS)})]
    return fit_camera(dataset.read_rgb(r) for r in recs)


def load_camera(plan: SynthPlan) -> CameraProfile | None:
    """The camera profile with synth.camera_match (None without), fitted once per process when
    shards run: not in `prepare`, which cache checks call too (a cached set reads no photos)."""
    return _camera(str(plan.dataset.root)) if plan.cfg.synth.camera_match else None


def _plan_file(staging: Path) -> Path:
    return staging / "shards" / "plan.json"


def prepare(cfg: RunConfig, dataset: DatasetVersion, model_dir: Path) -> SynthPlan:
    """Cache key, output paths and the work plan (deterministic for the same inputs).

    A begun run keeps the shard size it started with (recorded in its staging directory), so a
    restart with another `synth.shard_size` resumes instead of mixing two partitions.
    """
    checkpoints = [checkpoint_file(model_dir)] + [checkpoint_file(c) for c in cfg.synth.checkpoints]
    shas = [sha256_file(c) for c in checkpoints]
    _unique_generators(checkpoints, shas)
    parents = [dataset.manifest]
    for c in checkpoints:
        m = _model_manifest(c)
        if m is not None and m not in parents:
            parents.append(m)
    translation = translation_settings(cfg)
    synth = {k: v for k, v in cfg.synth.model_dump(mode="json").items()
             if k not in RUN_ONLY and not (k in KEY_WHEN_SET and not v)}
    section = {"synth": synth, "translate": translation, "generators": shas, "seed": cfg.runtime.seed,
               "gate_revision": GATE_REVISION}
    if cfg.synth.camera_match:
        section["camera_revision"] = CAMERA_REVISION
    key = stage_key("synthesize", section, parents)
    final = cfg.runtime.data_dir / "datasets" / f"{cfg.data.name}-aug-{key[:12]}"
    staging = final.parent / f".{final.name}.partial"
    shard_size = cfg.synth.shard_size
    if _plan_file(staging).is_file():
        shard_size = int(json.loads(_plan_file(staging).read_text())["shard_size"])
    a_train = dataset.coco("A", "train")
    real = dataset.coco("B", "train").class_counts() if dataset.has("B", "train") else {}
    items, balance = plan_items(cfg, a_train, real, len(checkpoints))
    plan = SynthPlan(cfg, dataset, checkpoints, shas, key, final, staging, shard_items(items, shard_size),
                     balance, parents, translation, Path(model_dir), shard_size)
    if cfg.synth.gate.min_realism is not None:
        load_realism(plan)  # fail before any work when the threshold cannot be applied
    return plan


@functools.lru_cache(maxsize=4)
def _translators(paths: tuple[str, ...], device: str, tile: int, overlap: int, batch: int, size: Any,
                 precision: str, border: int) -> tuple[Any, ...]:
    from pipeline.gan.translate import Translator

    return tuple(
        Translator.load(p, direction="AtoB", device=device, tile=tile, overlap=overlap, batch=batch,
                        load_size=size, precision=precision, border=border)
        for p in paths
    )


def load_generators(plan: SynthPlan) -> list[Generator]:
    """The plan's checkpoints as Translators (cached per process), wrapped as `Generator`s.

    A Translator serialises its own calls (it switches its norm layers' mode per call), so
    concurrent shard threads never interleave inside it; their checks and I/O still overlap.
    """
    t = plan.translation
    trs = _translators(tuple(str(c) for c in plan.checkpoints), resolve_device(plan.cfg.runtime.device),
                       t["tile"], t["tile_overlap"], plan.cfg.gan.translate_batch, t["size"], t["precision"],
                       t["border"])
    return [Generator(sha, tr, name=str(c), translate_checked=tr.translate_checked)
            for sha, tr, c in zip(plan.generator_shas, trs, plan.checkpoints)]


@functools.lru_cache(maxsize=4)
def _realism(model_dir: str, device: str) -> Realism | None:
    from pipeline.gan.quality import load_realism_scorer

    return load_realism_scorer(model_dir, device=device)


def load_realism(plan: SynthPlan) -> Realism | None:
    """P(real metal) per image from the model's realism critic (None when it has none).

    Scores are recorded on every image whenever a critic exists (it is cheap); with
    synth.gate.min_realism set, a model without one is an error rather than a silent no-op.
    """
    if plan.model_dir is None or not Path(plan.model_dir).is_dir():
        scorer = None
    else:
        scorer = _realism(str(plan.model_dir), resolve_device(plan.cfg.runtime.device))
    if scorer is None and plan.cfg.synth.gate.min_realism is not None:
        raise ValueError(
            f"{plan.model_dir}: synth.gate.min_realism = {plan.cfg.synth.gate.min_realism} needs the model's "
            "realism critic, and this CycleGAN model has none (retrain it with a gan version that saves "
            "one, or set synth.gate.min_realism=null)")
    return scorer


# Item callbacks of the plans being run in this process, by plan key (see `reporting`).
_ON_ITEMS: dict[str, Callable[[int], None]] = {}


@contextlib.contextmanager
def reporting(plan: SynthPlan, on_items: Callable[[int], None]) -> Iterator[None]:
    """While open, shard runs of `plan` in this process report finished items to `on_items`.

    Prefect shard tasks (threads, or a local Dask cluster of threads) get only the plan and an
    index; this is how they reach their flow's progress bar without it becoming a parameter.
    """
    _ON_ITEMS[plan.key] = on_items
    try:
        yield
    finally:
        _ON_ITEMS.pop(plan.key, None)


def run_plan_shard(plan: SynthPlan, index: int, generators: list[Generator] | None = None) -> ShardSummary:
    """Generate shard `index` of the plan into its staging directory (skips a verified done shard).

    Generators and the model's realism critic are loaded once per process unless given; finished
    items go to the callback registered with `reporting`.
    """
    plan_file = _plan_file(plan.staging)
    if not plan_file.is_file():
        atomic_write_json(plan_file, {"shard_size": plan.shard_size, "key": plan.key})
    gens = generators if generators is not None else load_generators(plan)
    a_train = plan.dataset.coco("A", "train")
    return run_shard(plan.cfg, plan.dataset, a_train, gens, plan.shards[index], index, plan.staging,
                     realism=load_realism(plan), camera=load_camera(plan), on_items=_ON_ITEMS.get(plan.key))


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
        balance=plan.balance, counts=counts, camera=load_camera(plan),
    )
    return _publish(plan)


def _publish(plan: SynthPlan) -> SynthResult:
    """Move an exported staging directory into place (it holds its manifest already)."""
    shutil.rmtree(plan.staging / "shards", ignore_errors=True)  # kept until the manifest was written
    if plan.final.exists():  # finished concurrently by another run with the same key: keep theirs
        shutil.rmtree(plan.staging, ignore_errors=True)
    else:
        os.replace(plan.staging, plan.final)
    hit = cached_result(plan)
    if hit is None:
        raise RuntimeError(f"{plan.final}: published without a readable manifest.json")
    return SynthResult(hit.version, False, hit.accepted, hit.rejected)


def resume_exported(plan: SynthPlan) -> SynthResult | None:
    """A run killed after its manifest was written but before the rename: publish it."""
    m = read_manifest(plan.staging)
    if m is None or m.get("kind") != "augmented" or m.get("id") != plan.version_id:
        return None
    return _publish(plan)


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
    synth and translation settings); resumes a killed run from its verified shards."""
    from pipeline.stages import SYNTH, run_stage

    return run_stage(SYNTH, SYNTH.plan(cfg, dataset, model_dir), progress=progress)
