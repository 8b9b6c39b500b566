"""Reliability figures: bad inputs tried, faults injected, how many ended as expected, data lost.

    .venv/bin/python bench/reliability.py [--quick]

1. The bad-input corpus (tests/corpus/build.py) through `metalize run` in a sandbox (empty HOME,
   TMPDIR and working directory): each case's promised outcome, inputs byte-identical after,
   nothing outside the roots read in, nothing written outside the output root.
2. Model files and configuration mistakes: tests/corpus/test_models_and_config.py, case by case.
3. Faults: one uninterrupted tiny run is the reference; then each stage is SIGKILLed at several
   points (ingest after k images, CycleGAN after step s, synthesis after k images, YOLO during an
   arm's training and between arms) in a copy of the reference's output root less that stage's
   output, and run again. Expected: the rerun equals the reference (ingest and synthesis byte for
   byte, CycleGAN weights within 1e-5 relative, detector mAP within MAP_TOL), no partial file is
   left or read, every manifest verifies. Plus a full disk (tmpfs) and two concurrent processes.

Writes bench/results/reliability.json and prints the table README's "Reliability" shows.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO / "tests" / "corpus"))
sys.path.insert(0, str(REPO / "tests" / "data"))
sys.path.insert(0, str(REPO))

TINY = REPO / "configs" / "tiny.yaml"
# Long enough to be killed part-way at every stage, still a few minutes in all.
OVERRIDES = ["data.demo.n_a=40", "data.shard_size=2", "runtime.workers=1", "gan.iterations=30",
             "gan.checkpoint_every=5", "synth.shard_size=4", "detect.epochs=3"]
MAP_TOL = 1e-6
WEIGHT_RTOL = 1e-5


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "YOLO_OFFLINE": "1", "OMP_WAIT_POLICY": "PASSIVE",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_LOGGING_LEVEL": "WARNING", "MPLBACKEND": "Agg"}


def metalize(args: list[str], root: Path, **kw) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "pipeline.cli", *args, str(TINY), *OVERRIDES, f"runtime.output_root={root}"]
    return subprocess.Popen(cmd, cwd=REPO, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True, **kw)


def finish(args: list[str], root: Path) -> tuple[int, str]:
    p = metalize(args, root)
    _, err = p.communicate(timeout=1800)
    return p.returncode, err.decode(errors="replace")[-2000:]


# ----------------------------------------------------------------------------- 1. the corpus
def corpus_figures(tmp: Path) -> dict:
    import test_corpus as tc
    from build import build_corpus
    from ingest_helpers import tree_hash

    root = tmp / "corpus"
    corpus = build_corpus(root)
    before = (tree_hash(corpus.inputs), tree_hash(corpus.outside))
    (root / "work").mkdir()
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pipeline.cli", "run", str(corpus.config)], cwd=root / "work",
                          env=tc.sandbox_env(root), capture_output=True, text=True, timeout=3600)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        return {"ran": False, "error": proc.stderr[-2000:], "cases": len(corpus.cases), "as_expected": 0}
    rows, kept = tc._rows(corpus), tc._kept_originals(corpus)
    problems = {c.id: p for c in corpus.cases if (p := tc.outcome_problems(c, rows, kept))}
    untouched = (tree_hash(corpus.inputs), tree_hash(corpus.outside)) == before
    stray = [d for d in ("home", "work", "tmp") if any((root / d).iterdir())]
    return {"ran": True, "seconds": round(seconds, 1), "cases": len(corpus.cases),
            "as_expected": len(corpus.cases) - len(problems), "problems": problems,
            "by_kind": {k: sum(1 for c in corpus.cases if c.kind == k) for k in sorted({c.kind for c in corpus.cases})},
            "inputs_byte_identical": untouched, "written_outside_output_root": stray}


# -------------------------------------------------------------------- 2. model files and configs
def pytest_cases(test_file: Path, tmp: Path) -> dict:
    xml = tmp / f"{test_file.stem}.xml"
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(test_file),
                    f"--junitxml={xml}"], cwd=REPO, env=env(), capture_output=True, timeout=3600)
    cases = []
    for tc in ET.parse(xml).getroot().iter("testcase"):
        failed = tc.find("failure") is not None or tc.find("error") is not None
        skipped = tc.find("skipped") is not None
        cases.append({"case": tc.get("name"), "outcome": "skipped" if skipped else ("failed" if failed else "ok")})
    return {"cases": len(cases), "as_expected": sum(c["outcome"] == "ok" for c in cases),
            "skipped": [c["case"] for c in cases if c["outcome"] == "skipped"],
            "failed": [c["case"] for c in cases if c["outcome"] == "failed"]}


# --------------------------------------------------------------------------------- 3. faults
def _count(root: Path, pattern: str) -> int:
    return sum(1 for _ in root.glob(pattern))


def _step(root: Path) -> int:
    steps = [json.loads(p.read_text()).get("step", 0) for p in root.glob("models/cyclegan/*/checkpoints/last.json")]
    return max(steps, default=0)


def _epochs_in_training(root: Path) -> int:
    """Epochs finished by an arm that has not finished (results.csv rows, no run.json yet)."""
    best = 0
    for csv in root.glob("reports/*/compare/runs/*/*/train/results.csv"):
        if not (csv.parent.parent / "run.json").exists():
            best = max(best, len(csv.read_text().splitlines()) - 1)
    return best


def kill_when(args: list[str], root: Path, ready, timeout: float = 900) -> bool:
    """Start `metalize <args>`, SIGKILL its process group once ready() is true; False if it ended first."""
    p = metalize(args, root)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and p.poll() is None:
        if ready():
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(30)
            return True
        time.sleep(0.02)
    if p.poll() is None:
        os.killpg(p.pid, signal.SIGKILL)
    p.wait(30)
    return False


def _hashes(d: Path, skip: tuple[str, ...] = ("manifest.json", "config.yaml", ".lock")) -> dict[str, str]:
    from pipeline.store import hash_tree

    return {k: v for k, v in hash_tree(d, exclude=skip).items() if not k.startswith("card/")}


def _weights_close(a: Path, b: Path) -> bool:
    import torch
    from safetensors.torch import load_file

    for name in ("G_AB.safetensors", "G_BA.safetensors"):
        x, y = load_file(str(a / name)), load_file(str(b / name))
        if x.keys() != y.keys() or not all(torch.allclose(x[k], y[k], rtol=WEIGHT_RTOL, atol=1e-7) for k in x):
            return False
    return True


def _maps(root: Path) -> dict[str, float]:
    out = {}
    for rj in root.glob("reports/*/compare/runs/*/*/run.json"):
        r = json.loads(rj.read_text())
        out[f"{r.get('arm')}/{r.get('seed')}"] = (r.get("metrics") or {}).get("map")
    return out


def _clean(root: Path) -> list[str]:
    """Leftovers a finished run must not have: partial folders and temp files; bad manifests."""
    from pipeline.store import verify_manifest

    bad = [str(p.relative_to(root)) for p in root.rglob("*") if p.name.endswith((".partial", ".tmp"))]
    for m in root.rglob("manifest.json"):
        if verify_manifest(m.parent):
            bad.append(f"{m.parent.relative_to(root)}: manifest does not verify")
    return bad


def fault_figures(tmp: Path, quick: bool) -> list[dict]:
    ref = tmp / "ref"
    rc, err = finish(["run"], ref)
    if rc:
        raise SystemExit(f"reference run failed:\n{err}")
    datasets = ref / "data" / "datasets"
    ingest_dir = next(p for p in datasets.iterdir() if p.is_dir() and "-aug-" not in p.name and not p.name.startswith("."))
    aug_dir = next(p for p in datasets.iterdir() if "-aug-" in p.name)
    model_dir = next((ref / "models" / "cyclegan").iterdir())
    ref_maps = _maps(ref)

    def fresh(name: str, drop: list[Path]) -> Path:
        root = tmp / name
        shutil.copytree(ref, root, symlinks=True)
        for d in drop:
            shutil.rmtree(root / d.relative_to(ref))
        return root

    n_ingest = sum(1 for _ in ingest_dir.glob("images/*/*/*"))
    n_aug = sum(1 for _ in aug_dir.glob("images/*/*/*"))
    points = {
        "ingest": [1, n_ingest // 2, n_ingest - 2] if not quick else [n_ingest // 2],
        "gan": [5, 15, 25] if not quick else [15],
        "synthesize": [1, n_aug // 2] if not quick else [n_aug // 2],
        "compare": ["mid-arm", "between-arms"] if not quick else ["mid-arm"],
    }
    results = []
    for stage, where in points.items():
        for point in where:
            name = f"{stage}-{point}"
            if stage == "ingest":
                root = fresh(name, [ingest_dir, aug_dir, model_dir, ref / "reports"])
                ready = lambda r=root, k=point: _count(r / "data" / "datasets", ".*.partial/images/*/*/*") >= k  # noqa: E731
                args = ["ingest"]
            elif stage == "gan":
                root = fresh(name, [model_dir, aug_dir, ref / "reports"])
                ready = lambda r=root, s=point: _step(r) >= s  # noqa: E731
                args = ["train-gan"]
            elif stage == "synthesize":
                root = fresh(name, [aug_dir, ref / "reports"])
                ready = lambda r=root, k=point: _count(r / "data" / "datasets", ".*aug*.partial/**/*.png") >= k  # noqa: E731
                args = ["synthesize"]
            else:
                root = fresh(name, [ref / "reports"])
                if point == "mid-arm":
                    ready = lambda r=root: _epochs_in_training(r) >= 1  # noqa: E731
                else:
                    ready = lambda r=root: _count(r, "reports/*/compare/runs/*/*/run.json") >= 1  # noqa: E731
                args = ["compare"]
            t0 = time.perf_counter()
            killed = kill_when(args, root, ready)
            rc, err = finish(args, root)
            if stage == "ingest":
                same = _hashes(root / ingest_dir.relative_to(ref)) == _hashes(ingest_dir)
            elif stage == "gan":
                same = _weights_close(root / model_dir.relative_to(ref), model_dir)
            elif stage == "synthesize":
                same = _hashes(root / aug_dir.relative_to(ref)) == _hashes(aug_dir)
            else:
                got = _maps(root)
                same = got.keys() == ref_maps.keys() and all(
                    abs((got[k] or 0) - (ref_maps[k] or 0)) <= MAP_TOL for k in got)
            leftovers = _clean(root)
            ok = killed and rc == 0 and same and not leftovers
            results.append({"fault": f"SIGKILL {stage} at {point}", "killed": killed, "rerun_rc": rc,
                            "equals_uninterrupted": same, "leftovers": leftovers[:5], "as_expected": ok,
                            "seconds": round(time.perf_counter() - t0, 1), **({"error": err} if rc else {})})
            print(f"  {results[-1]['fault']}: {'ok' if ok else 'NOT AS EXPECTED'}", flush=True)
            shutil.rmtree(root, ignore_errors=True)
    faults = pytest_cases(REPO / "tests" / "corpus" / "test_faults.py", tmp)
    results.append({"fault": "tests/corpus/test_faults.py (ingest kills, full disk, two processes)",
                    "cases": faults["cases"], "as_expected": faults["as_expected"] == faults["cases"],
                    "skipped": faults["skipped"], "failed": faults["failed"]})
    return results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="one kill point per stage")
    ap.add_argument("--out", default=str(BENCH / "results" / "reliability.json"))
    args = ap.parse_args()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="metalize-reliability-") as tmp:
        tmp = Path(tmp)
        print("== bad-input corpus through metalize run", flush=True)
        corpus = corpus_figures(tmp)
        print("== model files and configuration mistakes", flush=True)
        models = pytest_cases(REPO / "tests" / "corpus" / "test_models_and_config.py", tmp)
        print("== faults", flush=True)
        faults = fault_figures(tmp, args.quick)
    kills = [f for f in faults if f["fault"].startswith("SIGKILL")]
    other = [f for f in faults if not f["fault"].startswith("SIGKILL")][0]
    n_faults = len(kills) + other["cases"]
    faults_ok = sum(f["as_expected"] for f in kills) + (other["cases"] - len(other["failed"]) - len(other["skipped"]))
    data_lost = (not corpus.get("inputs_byte_identical", False)) or any(f.get("leftovers") for f in kills)
    record = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "bad_inputs": {"tried": corpus["cases"] + models["cases"],
                       "as_expected": corpus["as_expected"] + models["as_expected"]},
        "faults": {"injected": n_faults, "as_expected": faults_ok},
        "data_lost": data_lost,
        "corpus": corpus, "models_and_config": models, "fault_runs": faults,
        "wall_s": round(time.perf_counter() - t0, 1),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n")
    print(f"\n| | tried | as expected |\n|---|---:|---:|\n"
          f"| bad inputs (corpus through `metalize run`) | {corpus['cases']} | {corpus['as_expected']} |\n"
          f"| model files and configuration mistakes (CLI) | {models['cases']} | {models['as_expected']} |\n"
          f"| faults (SIGKILL per stage, full disk, concurrent runs) | {n_faults} | {faults_ok} |\n"
          f"\ndata lost: {'YES' if data_lost else 'none'} (inputs byte-identical: "
          f"{corpus.get('inputs_byte_identical')}; written outside the output root: "
          f"{corpus.get('written_outside_output_root') or 'nothing'})")
    ok = record["bad_inputs"]["tried"] == record["bad_inputs"]["as_expected"] and n_faults == faults_ok
    return 0 if ok and not data_lost else 1


if __name__ == "__main__":
    raise SystemExit(main())
