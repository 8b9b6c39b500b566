"""`make bench`: every benchmark in turn, each writing its JSON to bench/results/.

    .venv/bin/python bench/run_all.py [--only ingest gan ...] [--quick]

A benchmark that fails is reported and the others still run; the exit code is non-zero if any
failed. Run on a quiet machine: the numbers are wall-clock.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent

# name -> arguments; --quick trims each to a smoke-sized run.
SUITE: dict[str, tuple[list[str], list[str]]] = {
    "ingest": ([], ["--sizes", "200"]),
    "gan": ([], ["--quick"]),
    "synth": ([], ["--sizes", "200"]),
    "translate_batch": (["--repeats", "1"], ["--quick", "--batches", "1,8", "--out",
                                             "bench/results/translate_batch_tiny.json"]),
    "gate_thresholds": (["--config", "configs/demo.yaml"], ["--config", "configs/tiny.yaml"]),
    "detect": (["configs/demo.yaml"], ["configs/tiny.yaml"]),
    "demo": ([], ["--config", "configs/tiny.yaml", "--out", "bench/results/demo_tiny.json"]),
    "reliability": ([], ["--quick", "--out", "bench/results/reliability_tiny.json"]),
    # ~90 min on 2 cores: G=2 GAN seeds x S=3 detector seeds on the demo profile, every arm
    "efficacy": ([], ["--config", "configs/tiny.yaml", "--det-seeds", "0", "--label", "tiny"]),
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="*", choices=sorted(SUITE), help="run just these")
    ap.add_argument("--quick", action="store_true", help="smoke-sized runs (not for the record)")
    args = ap.parse_args()
    failed = []
    for name in args.only or list(SUITE):
        full, quick = SUITE[name]
        cmd = [sys.executable, str(BENCH / f"{name}.py"), *(quick if args.quick else full)]
        print(f"== {name}: {' '.join(cmd[1:])}", flush=True)
        t0 = time.perf_counter()
        rc = subprocess.call(cmd, cwd=REPO)
        print(f"== {name}: {'ok' if rc == 0 else f'FAILED ({rc})'} in {time.perf_counter() - t0:.0f} s", flush=True)
        if rc:
            failed.append(name)
    print("results in", BENCH / "results")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
