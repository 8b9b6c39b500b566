"""The bad-input corpus (tests/corpus/build.py) through the whole pipeline, as a user runs it:
`metalize run corpus.yaml` in a sandbox whose HOME, TMPDIR and working directory are empty
folders and where no library state folder is set (the CLI must choose them under the output
root). Every case ends as promised, the run finishes with a report, the inputs are byte
identical afterwards, nothing outside the input roots got in, nothing was written outside the
output root and no output name holds a control character."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO / "tests" / "data"))
from build import Case, build_corpus  # noqa: E402
from ingest_helpers import json_strings, tree_hash  # noqa: E402

pytestmark = pytest.mark.slow


# Library state folders a user may set; the sandbox sets none, so the CLI has to place them.
STATE_VARS = ("YOLO_CONFIG_DIR", "MPLCONFIGDIR", "TORCHINDUCTOR_CACHE_DIR", "XDG_CACHE_HOME", "XDG_CONFIG_HOME")


def sandbox_env(root: Path) -> dict[str, str]:
    """Environment whose home, temp folder and working directory (run with cwd=root/work) are
    empty folders under root, and where no library state folder is set."""
    dirs = {k: root / v for k, v in {"HOME": "home", "TMPDIR": "tmp"}.items()}
    for d in (*dirs.values(), root / "work"):
        d.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "PYTEST")) and k not in STATE_VARS}
    env.update({k: str(v) for k, v in dirs.items()})
    env.update(YOLO_OFFLINE="1", PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_LOGGING_LEVEL="WARNING",
               MPLBACKEND="Agg", OMP_WAIT_POLICY="PASSIVE", PYTHONPATH=str(REPO))
    return env


@pytest.fixture(scope="module")
def corpus_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    corpus = build_corpus(root)
    before = (tree_hash(corpus.inputs), tree_hash(corpus.outside))
    work = root / "work"
    proc = subprocess.run([sys.executable, "-m", "pipeline.cli", "run", str(corpus.config)], cwd=work,
                          env=sandbox_env(root), capture_output=True, text=True, timeout=900)
    return corpus, before, proc


def _version(corpus) -> Path:
    (version,) = [p for p in (corpus.out / "data" / "datasets").iterdir() if p.name.startswith("corpus-")
                  and "-aug-" not in p.name]
    return version


def _rows(corpus, name: str = "quarantine.jsonl") -> list[dict]:
    """Quarantine rows (problems), or with name="notes.jsonl" the notes (images kept as shown)."""
    lines = (_version(corpus) / name).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line]


def _kept_originals(corpus) -> list[str]:
    out = []
    for f in (_version(corpus) / "annotations").glob("*.json"):
        out += [im.get("original", "") for im in json.loads(f.read_text(encoding="utf-8"))["images"]]
    return out


def outcome_problems(case: Case, rows: list[dict], kept: list[str], notes: list[dict] | None = None) -> str | None:
    """Why `case` did not end as promised (None when it did). Normalised images are notes, never
    quarantine rows."""
    # A bad path inside an annotation file is reported against that file, naming the path.
    if case.expect == "normalised":
        if any(case.file in r["file"] for r in rows):
            return f"normalised image {case.file} is a quarantine row, not a note"
        rows = notes or []
    mine = [r for r in rows if case.file in r["file"] or case.file in r["reason"]]
    present = any(case.file in o for o in kept)
    if case.expect == "clean":
        return None if not mine else f"expected no row, got {mine}"
    if case.expect == "kept":
        skipped = [r for r in mine if "skipped" in r["action"]]
        return None if present and not skipped else f"expected kept; present={present}, rows={mine}"
    wanted = {"skipped": "image skipped", "normalised": "normalised"}.get(case.expect, case.expect)
    hits = [r for r in mine if r["action"].startswith(wanted) and re.search(case.reason, r["reason"])]
    if not hits:
        return f"expected {case.expect!r} /{case.reason}/, rows for {case.file!r}: {mine}"
    if case.expect == "skipped" and present and case.kind == "image":
        return f"expected skipped but the image is in the version ({case.file})"
    if case.expect == "normalised" and not present:
        return f"normalised but missing from the version ({case.file})"
    return None


def test_the_run_finishes_and_prints_the_report_path(corpus_run) -> None:
    corpus, _, proc = corpus_run
    assert proc.returncode == 0, proc.stderr[-4000:]
    report = Path(proc.stdout.strip().splitlines()[-1])
    assert report.name == "report.html" and report.is_file() and corpus.out in report.parents
    metrics = json.loads((report.parent / "metrics.json").read_text())
    assert all(a["status"] in ("ok", "unavailable") for a in metrics["arms"]), metrics["arms"]


def test_every_case_ends_as_promised(corpus_run) -> None:
    corpus, _, proc = corpus_run
    assert proc.returncode == 0, proc.stderr[-4000:]
    rows, kept, notes = _rows(corpus), _kept_originals(corpus), _rows(corpus, "notes.jsonl")
    problems = {c.id: p for c in corpus.cases if (p := outcome_problems(c, rows, kept, notes))}
    assert not problems, json.dumps(problems, indent=1, ensure_ascii=False)


def test_inputs_are_byte_identical_and_nothing_outside_got_in(corpus_run) -> None:
    import hashlib

    corpus, before, _ = corpus_run
    assert (tree_hash(corpus.inputs), tree_hash(corpus.outside)) == before
    secret = hashlib.sha256((corpus.outside / "secret.png").read_bytes()).hexdigest()
    version = _version(corpus)
    shas = {hashlib.sha256(p.read_bytes()).hexdigest() for p in (version / "images").rglob("*") if p.is_file()}
    assert secret not in shas


def test_nothing_is_written_outside_the_output_root(corpus_run) -> None:
    corpus, _, _ = corpus_run
    root = corpus.root
    expected = {"inputs", "outside", "out", "corpus.yaml", "cases.json", "home", "tmp", "work"}
    assert {p.name for p in root.iterdir()} == expected
    for d in ("home", "work", "tmp"):
        assert not any((root / d).iterdir()), f"{d}/ holds {[p.name for p in (root / d).rglob('*')][:10]}"
    # The libraries' state went under the output root (Prefect's database, ultralytics' settings...).
    assert {"prefect", "ultralytics", "matplotlib"} <= {p.name for p in (corpus.out / "cache").iterdir()}


def test_ingest_alone_writes_nothing_outside_the_output_root(tmp_path) -> None:
    """`metalize ingest` with no config file, only overrides, from an empty working directory."""
    env = sandbox_env(tmp_path)
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "pipeline.cli", "ingest", f"runtime.output_root={out}",
                           "data.demo.image_size=64", "data.demo.n_a=4", "data.demo.n_b_train=2", "data.demo.n_b_val=2",
                           "data.demo.n_b_test=2", "data.demo.n_b_unlabelled=2", "data.demo.n_b_oracle=0"],
                          cwd=tmp_path / "work", env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert Path(proc.stdout.strip().splitlines()[-1]).parent == out / "data" / "datasets"
    for d in ("home", "work", "tmp"):
        assert not any((tmp_path / d).iterdir()), f"{d}/ holds {[p.name for p in (tmp_path / d).rglob('*')][:10]}"


def test_every_output_file_is_valid_utf8_json(corpus_run) -> None:
    """Non-UTF-8 input names never leak into outputs as lone surrogates or raw bytes."""
    corpus, _, _ = corpus_run


    for f in corpus.out.rglob("*"):
        if f.suffix not in (".json", ".jsonl"):
            continue
        text = f.read_bytes().decode("utf-8")  # raises on raw non-UTF-8 bytes
        docs = [json.loads(x) for x in text.splitlines() if x] if f.suffix == ".jsonl" else [json.loads(text)]
        for s in (s for d in docs for s in json_strings(d)):
            s.encode("utf-8")  # raises on lone surrogates ("\udcff")
    from pipeline.data.validate import has_control_chars

    for p in corpus.out.rglob("*"):
        os.fsencode(p.name).decode("utf-8")  # every written file name is UTF-8 too
        # ... on one line (YOLO reads one path a line), printable, and short enough for any file system
        assert not has_control_chars(p.name) and len(os.fsencode(p.name)) <= 255, repr(p.name)
