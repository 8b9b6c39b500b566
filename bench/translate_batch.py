"""How many tiles per forward pass to translate a large photo: the default of gan.translate_batch
("auto") per device.

    .venv/bin/python bench/translate_batch.py [--device cpu|cuda] [--repeats 3] [--quick]

Translates one 2064x1544 photo (BSData's size) at its native resolution, tiled (512-px tiles, the
default overlap), with a ResNet-9 ngf-64 generator (the full profile's) at translate batch 1, 2, 4
and 8, each in a fresh process (OMP_WAIT_POLICY=PASSIVE set before torch loads; on CPU 2 threads)
so that the allocator starts clean. Reports per batch: wall seconds, CPU seconds (user + system),
minor page faults and peak RSS (CUDA: peak allocated memory), best of `--repeats` (other jobs on a
shared machine only ever add time). The rule `pipeline.gan.accel.translation_batch` applies is
checked against the measurement and written beside it.

Writes bench/results/translate_batch_<device>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent

_CHILD = r"""
import json, os, resource, sys, time
import numpy as np, torch
sys.path.insert(0, sys.argv[1])
from pipeline.gan.networks import ResnetGenerator
from pipeline.gan.translate import Translator

device, batch, w, h = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
if device == "cpu":
    torch.set_num_threads(int(sys.argv[6]))
torch.manual_seed(0)
net = ResnetGenerator(3, 3, 64, 9)
tr = Translator(net, device=device, tile=512, batch=batch, precision="auto")
rng = np.random.default_rng(0)
img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
tr([img[:600, :600]])  # warm-up: kernels, allocator
if device.startswith("cuda"):
    torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats()
r0, t0, c0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter(), time.process_time()
out = tr([img])
if device.startswith("cuda"):
    torch.cuda.synchronize()
wall, cpu = time.perf_counter() - t0, time.process_time() - c0
r1 = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"batch": batch, "wall_s": wall, "cpu_s": cpu, "minor_faults": r1.ru_minflt - r0.ru_minflt,
                  "peak_rss_mb": r1.ru_maxrss / 1024, "precision": tr.precision, "tile": tr.tile,
                  "overlap": tr.overlap, "out_shape": list(out[0].shape),
                  "cuda_peak_mb": torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda") else None}))
"""


def run_case(device: str, batch: int, w: int, h: int, threads: int) -> dict:
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": str(threads)}
    p = subprocess.run([sys.executable, "-c", _CHILD, str(REPO), device, str(batch), str(w), str(h), str(threads)],
                       env=env, capture_output=True, text=True, timeout=3600)
    if p.returncode:
        raise SystemExit(f"batch {batch} failed:\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="a 1032x772 photo, one repeat")
    ap.add_argument("--batches", default="1,2,4,8")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    w, h = (1032, 772) if args.quick else (2064, 1544)
    repeats = 1 if args.quick else args.repeats
    batches = [int(b) for b in args.batches.split(",")]
    runs: dict[int, list[dict]] = {b: [] for b in batches}
    load = os.getloadavg()
    for _ in range(repeats):  # round-robin: a busy spell on a shared machine hits every batch alike
        for b in batches:
            runs[b].append(run_case(args.device, b, w, h, args.threads))
            print(f"batch {b}: {runs[b][-1]['wall_s']:.2f} s wall, {runs[b][-1]['cpu_s']:.2f} s CPU", flush=True)
    best = {b: min(r, key=lambda x: x["wall_s"]) for b, r in runs.items()}
    sys.path.insert(0, str(REPO))
    from pipeline.gan.accel import translation_batch

    chosen = translation_batch("auto", args.device)
    fastest = min(best, key=lambda b: best[b]["wall_s"])
    record = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "device": args.device, "photo": [w, h], "generator": "ResNet-9, ngf 64", "tile": 512,
        "threads": args.threads if args.device == "cpu" else None, "repeats": repeats,
        "machine": platform.processor() or platform.machine(), "loadavg_before": load,
        "best": {str(b): best[b] for b in batches},
        "wall_s": {str(b): [round(r["wall_s"], 3) for r in runs[b]] for b in batches},
        "fastest_batch": fastest, "auto_resolves_to": chosen,
        "auto_within_10pct_of_fastest": best.get(chosen, {"wall_s": float("inf")})["wall_s"]
        <= 1.1 * best[fastest]["wall_s"],
    }
    out = Path(args.out or BENCH / "results" / f"translate_batch_{args.device.split(':')[0]}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps({k: record[k] for k in ("fastest_batch", "auto_resolves_to", "auto_within_10pct_of_fastest")}))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
