"""One translator training run, the GAN stage's work: train (or resume, or reuse) a CycleGAN,
CUT or FastCUT for a dataset.

`train_translator(cfg, dataset)` -> GanResult. The model directory
`<output_root>/models/<gan.model>/<key12>/` is keyed by the training part of the gan config, the
GAN seed and the dataset manifest; it holds G_AB.safetensors (A→B), G_BA.safetensors (B→A,
CycleGAN only), model_card.md, metrics.json, losses.csv, config.yaml, samples/*.png,
tensorboard/, checkpoints/ and, written last, manifest.json (kind "cyclegan" for every
translator, as the rest of the pipeline looks for it): a directory with a manifest is finished
and reused, one without is resumed from its last checkpoint.

Run under `torchrun --nproc_per_node=N -m pipeline.gan.training_run CONFIG [OVERRIDES] --dataset DIR`
for DistributedDataParallel training (gloo on CPU, nccl on CUDA).
"""

from __future__ import annotations

import contextlib
import csv
import gc
import io
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist

from pipeline import store
from pipeline.gan.accel import compile_cache
from pipeline.gan.checkpoint import save_weights
from pipeline.gan.data import training_images
from pipeline.gan.training_loop import FitOptions, StepCallback, fit

if TYPE_CHECKING:
    from pipeline.config import RunConfig
    from pipeline.data.version import DatasetVersion

KIND = "cyclegan"
# gan fields that change how a trained model is used or how fast it trains, not what it learns
NOT_TRAINING = ("tile", "tile_overlap", "translate_batch", "translate_size", "translate_border",
                "num_workers", "cuda_graphs")


@dataclass
class GanResult:
    model_dir: Path
    cached: bool
    metrics: dict[str, Any] = field(default_factory=dict)


def gan_seed(cfg: "RunConfig") -> int:
    """The seed of the GAN's weights, crops and pool: gan.seed, else the run's seed."""
    return cfg.runtime.seed if cfg.gan.seed is None else cfg.gan.seed


def training_section(cfg: "RunConfig") -> dict[str, Any]:
    section = cfg.gan.model_dump(mode="json")
    for k in NOT_TRAINING:
        section.pop(k, None)
    section["seed"] = gan_seed(cfg)  # gan.seed None and runtime.seed k train the same model as gan.seed k
    return section


def model_dir_for(cfg: "RunConfig", dataset: "DatasetVersion") -> Path:
    key = store.stage_key("gan", training_section(cfg), [dataset.manifest])
    return cfg.runtime.models_dir / cfg.gan.model / key[:12]


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        name = f"cuda:{local_rank}"
    return torch.device(name)


def train_translator(cfg: "RunConfig", dataset: "DatasetVersion", *, progress: bool = True,
                   callbacks: list[StepCallback] | None = None) -> GanResult:
    """Train, resume or reuse the CycleGAN for `dataset`; see the module docstring for outputs."""
    model_dir = model_dir_for(cfg, dataset)
    if (done := finished_model(model_dir)) is not None:
        return done
    created_group = _init_distributed(cfg)
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    try:
        # rank 0 decides under the directory lock (another run may finish the model while we wait)
        # and tells every rank, so no rank trains, and waits in a collective, alone
        with store.dir_lock(model_dir) if rank == 0 else contextlib.nullcontext():
            done = _finished(model_dir) if rank == 0 else None
            if world > 1:
                decision = [done is not None]
                dist.broadcast_object_list(decision, src=0)
                if decision[0] and done is None:
                    done = _finished(model_dir) or GanResult(model_dir, True, {})
            if done is not None:
                return done
            return _train(cfg, dataset, model_dir, rank, world, progress, callbacks)
    finally:
        if created_group:
            # DDP wrappers left in reference cycles would otherwise die at interpreter exit, after
            # the group: a gloo rank once aborted there ("terminate called without an active exception")
            gc.collect()
            dist.destroy_process_group()


def finished_model(model_dir: Path) -> GanResult | None:
    """The finished model in model_dir, else None; always None under torchrun (rank 0 decides
    for every rank under the folder's lock, so no rank skips the collectives alone)."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 or dist.is_initialized():
        return None
    return _finished(model_dir)


def _finished(model_dir: Path) -> GanResult | None:
    m = store.read_manifest(model_dir)
    if m is None or m.get("kind") != KIND:
        return None
    metrics = m.get("summary", {}).get("metrics", {})
    return GanResult(model_dir, True, metrics)


def _init_distributed(cfg: "RunConfig") -> bool:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or dist.is_initialized():
        return False
    device = resolve_device(cfg.runtime.device, int(os.environ.get("LOCAL_RANK", "0")))
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return True


def _train(cfg: "RunConfig", dataset: "DatasetVersion", model_dir: Path, rank: int, world: int,
           progress: bool, callbacks: list[StepCallback] | None) -> GanResult:
    g = cfg.gan
    device = resolve_device(cfg.runtime.device, int(os.environ.get("LOCAL_RANK", "0")))
    if cfg.runtime.threads:
        torch.set_num_threads(cfg.runtime.threads)
    if device.type == "cuda":  # fixed crop sizes: let cuDNN pick the fastest kernels; TF32 for fp32 runs
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    if g.compile:  # compiled kernels persist with the run's outputs: a resumed or repeated run reuses them
        compile_cache(cfg.runtime.output_root)
    a, b = training_images(dataset)
    section = training_section(cfg)
    fopt = FitOptions(load_size=g.load_size, crop_size=g.crop_size, batch_size=g.batch_size,
                      object_aware_crops=g.object_aware_crops, num_workers=g.num_workers,
                      checkpoint_every=g.checkpoint_every, log_every=g.log_every, image_every=g.image_every)
    deterministic = g.deterministic and device.type == "cpu"
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        result = fit(g, fopt, a, b, model_dir, device=device, seed=gan_seed(cfg),
                     config_hash=store.hash_json(section), progress=progress, callbacks=callbacks)
    finally:
        torch.use_deterministic_algorithms(was_deterministic)
    checksums = _rank_checksums(result.model, world)
    if rank != 0:
        dist.barrier()
        return GanResult(model_dir, False, {})

    meta = {"ngf": g.ngf, "n_blocks": g.n_blocks, "upsample": g.upsample, "load_size": g.load_size,
            "crop_size": g.crop_size, "dataset": dataset.id, "iterations": result.step, "model": g.model}
    m = result.model
    save_weights(model_dir / "G_AB.safetensors", m.G_AB.state_dict(), {**meta, "direction": "AtoB"})
    if getattr(m, "G_BA", None) is not None:  # CUT/FastCUT have no inverse generator
        save_weights(model_dir / "G_BA.safetensors", m.G_BA.state_dict(), {**meta, "direction": "BtoA"})
    t0 = time.perf_counter()
    from pipeline.gan.quality import evaluate_quality

    translation = dict(device=str(device), tile=g.tile, overlap=g.tile_overlap, batch=g.translate_batch,
                       border=g.translate_border)
    quality = evaluate_quality(model_dir, dataset, n_images=g.quality_images, seed=cfg.runtime.seed,
                               critic_steps=g.quality_steps, inception_weights=g.inception_weights,
                               **translation)
    realism_steps = 2 * g.quality_steps if g.realism_steps is None else g.realism_steps
    critic = None
    if realism_steps > 0:
        from pipeline.gan.quality import fit_realism_critic

        critic = fit_realism_critic(model_dir, dataset, n_images=max(4 * g.quality_images, 64),
                                    steps=realism_steps, seed=cfg.runtime.seed, **translation)
    images = result.step * g.batch_size * world
    metrics = {
        "iterations": result.step, "resumed_from": result.resumed_from, "world_size": world,
        "train_seconds": round(result.train_seconds, 2),
        "iterations_per_s": round(result.step / result.train_seconds, 3) if result.train_seconds else None,
        "images_per_s": round(2 * images / result.train_seconds, 2) if result.train_seconds else None,
        "quality_seconds": round(time.perf_counter() - t0, 2),
        "final_losses": result.history[-1] if result.history else {},
        "quality": quality, "realism_critic": critic, "hardware": hardware(device),
        "rank_checksums": checksums, "precision": result.model.precision,
        "channels_last": result.model.memory_format == torch.channels_last,
    }
    store.atomic_write_json(model_dir / "metrics.json", metrics)
    store.atomic_write_text(model_dir / "losses.csv", _csv(result.history))
    store.atomic_write_text(model_dir / "config.yaml", cfg.to_yaml())
    card = model_card(cfg, dataset, metrics, result.samples, model_dir)
    store.atomic_write_text(model_dir / "model_card.md", card)
    files = {k: v for k, v in store.hash_tree(model_dir).items()
             if not k.startswith(("checkpoints/", "tensorboard/")) and k != ".lock"}
    shas = {"AtoB": files["G_AB.safetensors"]} | ({"BtoA": files["G_BA.safetensors"]}
                                                  if "G_BA.safetensors" in files else {})
    store.write_manifest(model_dir, kind=KIND, id=model_dir.name, config=section, parents=[dataset.manifest],
                         summary={"metrics": metrics, "generator_sha256": shas}, files=files)
    if world > 1:
        dist.barrier()
    return GanResult(model_dir, False, metrics)


def _rank_checksums(model: Any, world: int) -> list[float]:
    """Every rank's sum of all weights (float64); DDP keeps replicas identical, so they must agree."""
    total = float(sum(p.detach().double().sum() for net in model.networks().values() for p in net.parameters()))
    if world == 1:
        return [total]
    sums: list[Any] = [None] * world
    dist.all_gather_object(sums, total)
    if max(sums) - min(sums) > 1e-6 * max(1.0, abs(sums[0])):
        raise RuntimeError(f"DDP replicas diverged: per-rank weight sums {sums}")
    return sums


def _csv(history: list[dict[str, float]]) -> str:
    keys = sorted({k for row in history for k in row}, key=lambda k: (k != "step", k != "lr", k))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys)
    w.writeheader()
    w.writerows(history)
    return buf.getvalue()


def hardware(device: torch.device) -> dict[str, Any]:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    hw = {"device": str(device), "cpu": cpu, "cpu_count": os.cpu_count(),
          "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
          "python": platform.python_version()}
    if device.type == "cuda":
        hw["gpu"] = torch.cuda.get_device_name(device)
    return hw


def model_card(cfg: "RunConfig", dataset: "DatasetVersion", metrics: dict[str, Any], samples: list[Path],
               model_dir: Path) -> str:
    q = metrics["quality"]
    r, r0, s = q["realism"], q["realism_raw_a"], q["structure"]
    g = cfg.gan
    fmt = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
    rows = "\n".join(f"| {k} | `{v}` |" for k, v in cfg.gan.model_dump(mode="json").items())
    last = f"samples/{samples[-1].name}" if samples else None
    up = "resize-convolution" if g.upsample == "resize" else "transposed-convolution"
    structure = (f", structure term λ {g.lambda_structure} (×{g.structure_box_weight} inside boxes)"
                 if g.lambda_structure > 0 else "")
    if g.model == "cyclegan":
        title = f"# CycleGAN {model_dir.name}: replica (A) ↔ metal (B)"
        what = (f"ResNet-{g.n_blocks} generators (ngf {g.ngf}, {up} upsampling) and {g.n_layers_d}-layer PatchGAN "
                f"discriminators (ndf {g.ndf}), {g.gan_mode} loss, λ_cycle {g.lambda_cycle}, identity "
                f"{g.lambda_identity}{structure}")
        files = "- `G_AB.safetensors`: A→B (makes synthetic metal); `G_BA.safetensors`: B→A."
    else:
        nce = g.lambda_nce if g.lambda_nce is not None else (1.0 if g.model == "cut" else 10.0)
        title = f"# {'CUT' if g.model == 'cut' else 'FastCUT'} {model_dir.name}: replica (A) → metal (B)"
        what = (f"A ResNet-{g.n_blocks} generator (ngf {g.ngf}, {up} upsampling) and a {g.n_layers_d}-layer "
                f"PatchGAN discriminator (ndf {g.ndf}), {g.gan_mode} loss, PatchNCE λ {nce} over "
                f"{g.nce_patches} patches per layer{' with identity NCE' if g.model == 'cut' else ''}{structure}")
        files = "- `G_AB.safetensors`: A→B (makes synthetic metal); no inverse generator (no cycle)."
    lines = [
        title,
        "",
        f"{what}, trained {metrics['iterations']} iterations on {g.crop_size}² crops of images resized to short "
        f"side {g.load_size}.",
        "",
        files,
        f"- dataset: `{dataset.id}` (manifest files hash `{dataset.manifest.get('files_hash', '')[:16]}`), "
        "trained on A_train + B_unlabelled + B_train; B_val/B_test never seen.",
        f"- GAN seed {gan_seed(cfg)}, code {store.code_version()}.",
        "",
        "## Quality (offline, no downloaded weights)",
        "",
        "| metric | translated A→B | raw A (baseline) |",
        "|---|---|---|",
        f"| realism: critic accuracy real B vs set (0.5 = indistinguishable) | {fmt(r['accuracy'])} "
        f"[{fmt(r['ci_low'])}, {fmt(r['ci_high'])}], n={r['n']} | {fmt(r0['accuracy'])} "
        f"[{fmt(r0['ci_low'])}, {fmt(r0['ci_high'])}] |",
        # The same scale as metrics.json and the report (no ×100: these are not Inception KIDs).
        f"| KID on critic features (lower = closer to real B) | {fmt(r['kid'])} ± {fmt(r['kid_std'])} | "
        f"{fmt(r0['kid'])} ± {fmt(r0['kid_std'])} |",
        f"| diversity (pairwise feature distance / real B's) | {fmt(r['diversity_ratio'])} | "
        f"{fmt(r0['diversity_ratio'])} |",
        "",
        f"Structure A vs G(A): edge F1 {fmt(s['edge_f1'])}, gradient SSIM {fmt(s['gradient_ssim'])}; inside "
        f"{s['n_boxes']} boxes: edge F1 {fmt(s['box_edge_f1'])}, gradient SSIM "
        f"{fmt(s['box_gradient_ssim'])}. Cycle error |A − F(G(A))| = {fmt(q['cycle_l1'])}, "
        f"|B − G(F(B))| = {fmt(q.get('cycle_l1_B'))} (fractions of 255). Real B reference: "
        f"{q['b_reference']}; {q['n_a']} A, {q['n_b']} B images.",
    ]
    c = metrics.get("realism_critic")
    if c:
        lines += ["", f"Realism critic for the synthesis gate: `{c['file']}` ({c['trained_on']}; "
                  f"{c['steps']} steps at {c['size']}²): held-out accuracy {fmt(c['heldout_accuracy'])} "
                  f"[{fmt(c['ci_low'])}, {fmt(c['ci_high'])}], n={c['n_heldout']}. "
                  "`pipeline.gan.quality.load_realism_scorer(model_dir)` gives P(real metal) per image."]
    if "inception" in q:
        lines += ["", f"Inception ({q['inception']['weights']}): FID {q['inception']['fid']:.2f}, "
                  f"KID {q['inception']['kid']:.4f} ± {q['inception']['kid_std']:.4f}."]
    lines += [
        "", "## Training", "",
        f"{metrics['train_seconds']} s of training ({metrics['iterations_per_s']} it/s, "
        f"{metrics['world_size']} process(es), resumed from step {metrics['resumed_from']}; "
        f"{metrics.get('precision', 'fp32')}{', channels_last' if metrics.get('channels_last') else ''}), "
        f"quality metrics {metrics['quality_seconds']} s. "
        "Loss curves: `losses.csv`, TensorBoard: `tensorboard/`.",
        "", "Final losses (mean over the last log window): "
        + ", ".join(f"{k} {v:.3f}" for k, v in metrics["final_losses"].items() if k not in ("step", "lr")),
        "", f"Hardware: {metrics['hardware']}",
    ]
    if last:
        lines += ["", "## Samples", "", "Rows: A, G(A), F(G(A)) / B, F(B), G(F(B)).", "",
                  f"![last sample]({last})"]
    lines += ["", "## Configuration", "", "| key | value |", "|---|---|", rows, ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """torchrun entry point: python -m pipeline.gan.training_run CONFIG [OVERRIDES...] [--dataset DIR]."""
    import argparse

    from pipeline.config import load_config
    from pipeline.data.version import DatasetVersion

    ap = argparse.ArgumentParser(prog="python -m pipeline.gan.training_run")
    ap.add_argument("config", nargs="?")
    ap.add_argument("overrides", nargs="*")
    ap.add_argument("--dataset", type=Path, default=None)
    args = ap.parse_args(argv)
    cfg = load_config(args.config, args.overrides)
    if args.dataset is not None:
        dataset = DatasetVersion.open(args.dataset)
    else:
        from pipeline.data.ingest import ingest

        dataset = ingest(cfg, progress=False).version
    res = train_translator(cfg, dataset, progress=int(os.environ.get("RANK", "0")) == 0)
    if int(os.environ.get("RANK", "0")) == 0:
        print(res.model_dir)


if __name__ == "__main__":
    main()
