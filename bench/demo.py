"""`make demo` end to end, timed: a clean clone of this checkout's HEAD runs the demo profile's
whole experiment (`metalize run`) on CPU; set-up is excluded (the clone uses this checkout's virtualenv).

    .venv/bin/python bench/demo.py [--config configs/demo.yaml] [override ...]

Writes bench/results/demo.json: wall seconds per stage and in all, the target (<= 20 minutes on
2 cores), the machine's load, and the report's headline numbers (mAP per arm, verdict). Run on
a quiet machine: the numbers are wall-clock.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
TARGET_S = 20 * 60

# What `make demo` runs (`metalize run`): the experiment with every stage in this process.
_RUN = """
import json, sys
from pipeline.config import load_config
from pipeline.experiment import experiment
result = experiment(load_config(sys.argv[1], sys.argv[3:])).to_dict()
open(sys.argv[2], "w").write(json.dumps(result))
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="configs/demo.yaml")
    ap.add_argument("--out", default=str(BENCH / "results" / "demo.json"))
    ap.add_argument("--keep", metavar="DIR", help="copy the run's report folder here (to look at it)")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="metalize-demo-bench-") as tmp:
        clone = Path(tmp) / "metalize"
        subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True)
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=clone, capture_output=True, text=True,
                                check=True).stdout.strip()
        env = {
            **{k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"},  # as `make demo` runs
            "PYTHONPATH": str(clone),  # the clone's code, this checkout's installed dependencies
            "YOLO_OFFLINE": "1",
            "YOLO_CONFIG_DIR": str(clone / ".cache" / "ultralytics"),
            "PREFECT_HOME": str(clone / ".cache" / "prefect"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_LOGGING_LEVEL": "WARNING",
            "MPLBACKEND": "Agg",
        }
        for var in ("YOLO_CONFIG_DIR", "PREFECT_HOME"):  # as `make demo` does (state-dirs)
            Path(env[var]).mkdir(parents=True, exist_ok=True)
        result_file = Path(tmp) / "result.json"
        load_before = os.getloadavg()
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", _RUN, args.config, str(result_file), *args.overrides],
                              cwd=clone, env=env)
        wall = time.perf_counter() - t0
        load_after = os.getloadavg()
        if proc.returncode != 0:
            print(f"demo run failed with exit code {proc.returncode}", file=sys.stderr)
            return proc.returncode
        result = json.loads(result_file.read_text())
        run_dir = clone / result["run_dir"]  # relative to the clone unless output_root is absolute
        metrics = json.loads((run_dir / "metrics.json").read_text())
        if args.keep:
            shutil.copytree(run_dir, Path(args.keep) / run_dir.name, dirs_exist_ok=True)
            print(f"report kept in {Path(args.keep) / run_dir.name}", file=sys.stderr)

    record = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "commit": commit,
        "config": args.config,
        "overrides": args.overrides,
        "cpu_count": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in load_after],
        "wall_s": round(wall, 1),
        "stages_s": {name: st["seconds"] for name, st in result["stages"].items()},
        "cached": {name: st["cached"] for name, st in result["stages"].items()},
        "target_s": TARGET_S,
        "met": wall <= TARGET_S,
        "verdict": metrics.get("report", {}).get("verdict"),
        "arms": {a["name"]: {"status": a["status"], **{k: (a.get("summary") or {}).get(k)
                                                        for k in ("map", "map50")}}
                 for a in metrics["arms"]},
        "comparisons": [{k: c.get(k) for k in ("treatment", "baseline", "delta", "ci_low", "ci_high", "significant")}
                        for c in metrics.get("comparisons", [])],
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
