"""Reliability figures: bad inputs tried, faults injected, how many ended as expected, data lost.

    .venv/bin/python bench/reliability.py [--quick] [--no-faults]

1. The bad-input corpus (tests/corpus/build.py, extremes.py) through `metalize run` in a sandbox
   (empty HOME, TMPDIR and working directory, no library state folder set): each case's outcome -
   quarantined or kept as promised, or silent (the run finished without the promised row) - inputs
   byte-identical after, nothing outside the roots read in, nothing written outside the output
   root. A run that does not finish is retried group by group to name the case that crashed
   (traceback) or aborted it.
2. Configuration files, overrides and ingests that cannot give a dataset (tests/corpus/fatal.py),
   each its own `metalize` process in its own empty sandbox: a clear error (exit 1/2, no
   traceback, the file or key named), or a crash, an abort that names nothing, a silent success.
   Model files and configuration mistakes: tests/corpus/test_models_and_config.py, case by case.
3. Faults: one uninterrupted tiny run is the reference; then each stage is SIGKILLed at several
   points (ingest after k images, CycleGAN after step s, synthesis after k images, YOLO during an
   arm's training and between arms) in a copy of the reference's output root less that stage's
   output, and run again. Expected: the rerun equals the reference (ingest and synthesis byte for
   byte, CycleGAN weights within 1e-5 relative, detector mAP within MAP_TOL), no partial file is
   left or read, every manifest verifies. Plus a full disk (tmpfs) and two concurrent processes.

Writes bench/results/reliability.json (cases, outcomes: quarantined / kept / clear fatal / crash /
abort / silent, writes outside the output root) and prints the table README's "Reliability" shows.
Target: 0 crash, 0 abort without a file named, 0 silent, 0 writes outside.
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
# What each case promised: a quarantine row (the run goes on), or the input kept as it is.
KEPT = ("kept", "clean", "normalised")
OUTCOMES = ("quarantined", "kept", "clear fatal", "crash", "abort", "silent")


def _stray(root: Path) -> list[str]:
    """What appeared in the sandbox's home, temp folder and working directory (must be nothing)."""
    return [f"{d}/{p.relative_to(root / d)}" for d in ("home", "tmp", "work") if (root / d).is_dir()
            for p in (root / d).rglob("*")]


def _failure(output: str, exit_code: int) -> str:
    """How a run that should have finished stopped: a crash (traceback), else an abort."""
    return "crash" if "Traceback (most recent call last)" in output or exit_code not in (0, 1, 2) else "abort"


def corpus_figures(tmp: Path) -> dict:
    """The corpus through one `metalize run`; each case quarantined / kept as promised, or silent.
    When the run does not finish, each group of cases is ingested alone to tell which broke it."""
    import test_corpus as tc
    from build import build_corpus
    from ingest_helpers import tree_hash

    root = tmp / "corpus"
    corpus = build_corpus(root)
    before = (tree_hash(corpus.inputs), tree_hash(corpus.outside))
    env = tc.sandbox_env(root)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pipeline.cli", "run", str(corpus.config)], cwd=root / "work",
                          env=env, capture_output=True, text=True, timeout=3600)
    seconds = time.perf_counter() - t0
    cases: dict[str, dict] = {}
    if proc.returncode == 0:
        rows, kept, notes = tc._rows(corpus), tc._kept_originals(corpus), tc._rows(corpus, "notes.jsonl")
        for c in corpus.cases:
            problem = tc.outcome_problems(c, rows, kept, notes)
            outcome = "silent" if problem else ("kept" if c.expect in KEPT else "quarantined")
            cases[c.id] = {"kind": c.kind, "what": c.what, "outcome": outcome, **({"detail": problem} if problem else {})}
    else:
        cases = _attribute_failure(corpus, tmp, proc.stderr + proc.stdout, proc.returncode)
    untouched = (tree_hash(corpus.inputs), tree_hash(corpus.outside)) == before
    return {"ran": proc.returncode == 0, "seconds": round(seconds, 1), "cases": cases,
            "by_kind": {k: sum(1 for c in corpus.cases if c.kind == k) for k in sorted({c.kind for c in corpus.cases})},
            "inputs_byte_identical": untouched, "written_outside_output_root": _stray(root),
            **({"error": proc.stderr[-3000:]} if proc.returncode else {})}


def _attribute_failure(corpus, tmp: Path, output: str, exit_code: int) -> dict[str, dict]:
    """Ingest each group of cases alone (beside the good demo sources): a group whose ingest fails
    gets crash/abort for its cases; the others are judged by their own version."""
    import test_corpus as tc
    import yaml

    raw = yaml.safe_load(corpus.config.read_text(encoding="utf-8"))
    demo = str(corpus.inputs / "demo")
    out: dict[str, dict] = {}
    for group in sorted({c.group for c in corpus.cases}):
        mine = [c for c in corpus.cases if c.group == group]
        one = tmp / f"group-{group}"
        cfg = dict(raw, runtime={**raw["runtime"], "output_root": str(one / "out")})
        cfg["data"] = {**raw["data"], **{d: [s for s in raw["data"][d] if s["images"].startswith(demo)
                                             or s["images"].startswith(str(corpus.inputs / group))]
                                         for d in ("a", "b")}}
        path = one / "config.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
        p = subprocess.run([sys.executable, "-m", "pipeline.cli", "ingest", str(path)], cwd=REPO, env=env(),
                           capture_output=True, text=True, timeout=900)
        if p.returncode:
            for c in mine:
                out[c.id] = {"kind": c.kind, "what": c.what, "outcome": _failure(p.stderr, p.returncode),
                             "detail": " ".join(p.stderr.split())[-300:]}
            continue
        fake = type(corpus)(corpus.root, corpus.inputs, corpus.outside, one / "out", corpus.config, mine)
        rows, kept, notes = tc._rows(fake), tc._kept_originals(fake), tc._rows(fake, "notes.jsonl")
        for c in mine:
            problem = tc.outcome_problems(c, rows, kept, notes)
            out[c.id] = {"kind": c.kind, "what": c.what,
                         "outcome": "silent" if problem else ("kept" if c.expect in KEPT else "quarantined")}
    # Every group ingests alone: the whole run broke later; say so for every case.
    if all(v["outcome"] in ("quarantined", "kept") for v in out.values()):
        for v in out.values():
            v.update(outcome=_failure(output, exit_code), detail="the whole run stopped: " + output[-300:])
    return out


def fatal_figures(tmp: Path) -> dict:
    """Each bad config / override / impossible ingest as its own `metalize` process in an empty
    sandbox: a clear error naming the file or key, or a crash, an abort or a silent success."""
    import test_corpus as tc
    from fatal import build_fatal, classify

    root = tmp / "fatal-cases"
    cases = {}
    stray: list[str] = []
    for case in build_fatal(root):
        box = tmp / "fatal-sandbox" / case.id
        sandbox = tc.sandbox_env(box)  # makes box/home, box/tmp and box/work
        p = subprocess.run([sys.executable, "-m", "pipeline.cli", *case.args], cwd=box / "work", env=sandbox,
                           capture_output=True, text=True, timeout=600)
        outcome, detail = classify(case, p.returncode, p.stdout + p.stderr)
        cases[case.id] = {"kind": case.kind, "what": case.what, "outcome": outcome, "exit_code": p.returncode,
                          "message": " ".join(p.stderr.split())[-240:], **({"detail": detail} if detail else {})}
        stray += [f"{case.id}: {s}" for s in _stray(box)]
    return {"cases": cases, "written_outside_output_root": stray}


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
    ap.add_argument("--no-faults", action="store_true", help="bad inputs only (no SIGKILL sweep)")
    ap.add_argument("--out", default=str(BENCH / "results" / "reliability.json"))
    args = ap.parse_args()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="metalize-reliability-") as tmp:
        tmp = Path(tmp)
        print("== bad-input corpus through metalize run", flush=True)
        corpus = corpus_figures(tmp)
        print("== configuration files, overrides and impossible ingests (one process each)", flush=True)
        fatal = fatal_figures(tmp)
        print("== model files and configuration mistakes", flush=True)
        models = pytest_cases(REPO / "tests" / "corpus" / "test_models_and_config.py", tmp)
        faults = [] if args.no_faults else (print("== faults", flush=True), fault_figures(tmp, args.quick))[1]
    outcomes = {k: 0 for k in OUTCOMES}
    for c in [*corpus["cases"].values(), *fatal["cases"].values()]:
        outcomes[c["outcome"]] += 1
    # Model-file and config tests through the CLI: each asserts a clear error naming the file or key.
    outcomes["clear fatal"] += models["as_expected"]
    outcomes["abort"] += models["cases"] - models["as_expected"] - len(models["skipped"])
    tried = len(corpus["cases"]) + len(fatal["cases"]) + models["cases"]
    as_expected = outcomes["quarantined"] + outcomes["kept"] + outcomes["clear fatal"]
    outside = corpus["written_outside_output_root"] + fatal["written_outside_output_root"]
    kills = [f for f in faults if f["fault"].startswith("SIGKILL")]
    other = next((f for f in faults if not f["fault"].startswith("SIGKILL")), None)
    n_faults = len(kills) + (other["cases"] if other else 0)
    faults_ok = sum(f["as_expected"] for f in kills) + (
        other["cases"] - len(other["failed"]) - len(other["skipped"]) if other else 0)
    data_lost = (not corpus.get("inputs_byte_identical", False)) or any(f.get("leftovers") for f in kills)
    record = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "bad_inputs": {"tried": tried, "as_expected": as_expected, "outcomes": outcomes,
                       "written_outside_output_root": len(outside),
                       "target": "0 crash, 0 abort without a file named, 0 silent, 0 writes outside"},
        "faults": {"injected": n_faults, "as_expected": faults_ok},
        "data_lost": data_lost,
        "corpus": corpus, "fatal": fatal, "models_and_config": models, "fault_runs": faults,
        "written_outside": outside,
        "wall_s": round(time.perf_counter() - t0, 1),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n")
    c_out = {k: sum(1 for v in corpus["cases"].values() if v["outcome"] == k) for k in OUTCOMES}
    f_out = {k: sum(1 for v in fatal["cases"].values() if v["outcome"] == k) for k in OUTCOMES}
    print("\n| | cases | quarantined | kept | clear fatal | crash | abort | silent |\n|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, n, o in [("bad inputs through `metalize run` (tests/corpus)", len(corpus["cases"]), c_out),
                       ("config files, overrides, impossible ingests (one process each)", len(fatal["cases"]), f_out)]:
        print(f"| {name} | {n} | " + " | ".join(str(o[k]) for k in OUTCOMES) + " |")
    print(f"| model files and configuration mistakes (CLI tests) | {models['cases']} | 0 | 0 | "
          f"{models['as_expected']} | 0 | {models['cases'] - models['as_expected']} | 0 |")
    print(f"\nall: {tried} cases, {as_expected} as promised; outcomes {outcomes}; "
          f"written outside the output root: {len(outside)}")
    if faults:
        print(f"faults (SIGKILL per stage, full disk, concurrent runs): {n_faults} injected, {faults_ok} as expected")
    print(f"data lost: {'YES' if data_lost else 'none'} (inputs byte-identical: {corpus.get('inputs_byte_identical')})")
    ok = as_expected == tried and not outside and n_faults == faults_ok
    return 0 if ok and not data_lost else 1


if __name__ == "__main__":
    raise SystemExit(main())
