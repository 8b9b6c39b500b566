"""Benchmark of the synthesize stage: throughput, time split and peak memory (streaming check).

    .venv/bin/python bench/synth.py [--sizes 1000 10000] [--device cpu] [--out bench/results/synth.json]

Source images: the demo renderer's labelled A set at 64 px (100 images, ingested once into a temp
output root); every image gets `variants = N / 100` work items, so N synthetic images stream
through translate → gate → write. Generator: a randomly initialised ResnetGenerator of the tiny
profile's shape (ngf 8, 2 blocks) unless --ngf/--blocks say otherwise — the bench measures the
stage, not the GAN, and a random generator exercises every gate path (its outputs fail some
checks, which costs the same as passing them). Each size runs in a fresh process so its peak RSS
(ru_maxrss) is its own; "generate" is translate + checks + PNG writes + journal, "export" the
COCO/YOLO/card publication that follows.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def _dataset(root: Path):
    from pipeline.config import load_config
    from pipeline.data.ingest import ingest

    cfg = load_config(REPO / "configs" / "tiny.yaml", [f"runtime.output_root={root}", "data.name=bench",
                                                       "data.demo.n_a=100"])
    return ingest(cfg, progress=False).version


def _generator(ngf: int, blocks: int, device: str, batch: int):
    import numpy as np
    import torch

    from pipeline.gan.networks import ResnetGenerator
    from pipeline.synth.generate import Generator

    torch.manual_seed(0)
    net = ResnetGenerator(3, 3, ngf=ngf, n_blocks=blocks).to(device).eval()

    @torch.inference_mode()
    def translate_checked(images: list[np.ndarray]) -> tuple[list[np.ndarray], list[int]]:
        """As the Translator does: count non-finite outputs before the uint8 cast."""
        x = torch.from_numpy(np.stack(images)).to(device).permute(0, 3, 1, 2).float() / 127.5 - 1
        y = torch.cat([net(x[i : i + batch]) for i in range(0, len(x), batch)])
        bad = (~torch.isfinite(y)).flatten(1).sum(1).tolist()
        out = list(((y.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy())
        return out, [int(b) for b in bad]

    return Generator("0" * 64, lambda ims: translate_checked(ims)[0], translate_checked=translate_checked,
                     name=f"random ResnetGenerator ngf={ngf} blocks={blocks}")


def run_one(n: int, args) -> dict:
    """Generate + export n synthetic images in this process; returns timings and peak RSS."""
    import resource

    import torch

    from pipeline.config import load_config
    from pipeline.synth.export import export_version
    from pipeline.synth.generate import generate

    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="synth-bench-"))
    ds = _dataset(Path(args.data_root))
    n_src = len(ds.coco("A", "train").images)
    variants = max(1, round(n / n_src))
    cfg = load_config(REPO / "configs" / "tiny.yaml", [
        f"runtime.output_root={work}", f"synth.variants={variants}", "synth.shard_size=256",
        f"gan.translate_batch={args.batch}", f"synth.prefetch={str(args.prefetch).lower()}"])
    gen = _generator(args.ngf, args.blocks, args.device, args.batch)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    res = generate(cfg, ds, [gen], work / "staging", progress=False)
    t_gen = time.perf_counter() - t0
    cpu_gen = time.process_time() - cpu0  # robust to other jobs sharing the machine
    rss_gen = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tot = res.totals()
    t1 = time.perf_counter()
    export_version(cfg, ds, work / "staging", n_shards=len(res.shards), version_id="bench-aug",
                   parents=[ds.manifest],
                   generators=[{"sha256": gen.sha256, "file": gen.name}], balance=res.balance, counts={})
    t_exp = time.perf_counter() - t1
    rss_exp = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    sec = tot.seconds
    busy = sum(sec.values())
    outputs = tot.accepted + tot.rejected
    checks_io = sec["checks"] + sec["read"] + sec["write"] + sec.get("journal", 0.0)
    return {
        "images": outputs,
        "accepted": tot.accepted,
        "rejected": tot.rejected,
        "generate_s": round(t_gen, 2),
        "images_per_s": round(outputs / t_gen, 1),
        "cpu_s_per_image": round(cpu_gen / max(outputs, 1), 4),
        "export_s": round(t_exp, 2),
        "images_per_s_with_export": round(outputs / (t_gen + t_exp), 1),
        "seconds": {k: round(v, 2) for k, v in sec.items()},
        "share_translate": round(sec["translate"] / busy, 3),
        "share_checks_io": round(checks_io / busy, 3),
        # The target (GPU: <= 0.2): checks + read + write + journal, per second translating.
        "checks_io_over_translate": round(checks_io / sec["translate"], 3),
        # With prefetch the next batch translates during this one's checks and writes: what the
        # overlap leaves of them on the wall clock, per second translating (0 = fully hidden).
        "wall_beyond_translate_over_translate": round(max(0.0, t_gen - sec["translate"]) / sec["translate"],
                                                      3),
        "unaccounted_s": round(max(0.0, t_gen - busy), 2) if not args.prefetch else None,
        "peak_rss_mb_before": round(rss0 / 1024, 1),
        "peak_rss_mb_generate": round(rss_gen / 1024, 1),
        "peak_rss_mb_export": round(rss_exp / 1024, 1),
        "load_average_1min_at_end": round(os.getloadavg()[0], 2),  # other jobs on the machine
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--ngf", type=int, default=8)
    ap.add_argument("--blocks", type=int, default=2)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--prefetch", action=argparse.BooleanOptionalAction, default=True,
                    help="translate the next batch while checking/writing the current one (synth.prefetch)")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "synth.json")
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)  # child mode
    ap.add_argument("--data-root", help=argparse.SUPPRESS)
    args = ap.parse_args()
    os.environ.setdefault("YOLO_OFFLINE", "1")
    if args.one:
        print(json.dumps(run_one(args.one, args)))
        return
    data_root = tempfile.mkdtemp(prefix="synth-bench-data-")
    _dataset(Path(data_root))
    runs = {}
    for n in args.sizes:
        cmd = [sys.executable, __file__, "--one", str(n), "--data-root", data_root, "--device", args.device,
               "--threads", str(args.threads), "--ngf", str(args.ngf), "--blocks", str(args.blocks),
               "--batch", str(args.batch), "--prefetch" if args.prefetch else "--no-prefetch"]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        runs[str(n)] = json.loads(out.strip().splitlines()[-1])
        print(n, runs[str(n)], flush=True)
    import torch

    result = {
        "benchmark": "synthesize stage: translate + gate + PNG write (generate), then export",
        "generator": f"random-init ResnetGenerator ngf={args.ngf} n_blocks={args.blocks} (bench stand-in, "
                     "not a trained model)",
        "images": "demo renderer A set, 64 px, 100 sources x variants",
        "device": args.device,
        "threads": args.threads,
        "batch": args.batch,
        "prefetch": args.prefetch,
        "hardware": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                     "torch": torch.__version__,
                     "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None},
        "runs": runs,
    }
    sizes = sorted(runs, key=int)
    if len(sizes) >= 2:
        lo, hi = runs[sizes[0]], runs[sizes[-1]]
        result["rss_growth_mb_generate"] = round(hi["peak_rss_mb_generate"] - lo["peak_rss_mb_generate"], 1)
        result["rss_growth_mb_export"] = round(hi["peak_rss_mb_export"] - lo["peak_rss_mb_export"], 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
