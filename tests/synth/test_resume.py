"""Kill-and-resume: a SIGKILLed run restarted keeps (never rewrites) what it wrote, leaves no torn
files, and ends with exactly what an uninterrupted run produces."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
from synth_helpers import metalize

from pipeline.config import RunConfig
from pipeline.synth.generate import Generator, collect, generate, read_journal

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
SCRIPT = """
import sys, time
from pathlib import Path
sys.path.insert(0, {helpers!r})
from synth_helpers import metalize
from pipeline.config import RunConfig
from pipeline.data.version import DatasetVersion
from pipeline.synth import outputs
from pipeline.synth.generate import Generator, generate

write_png = outputs.write_png

def slow_write(path, rgb):  # a kill then lands between an image's write and its journal line
    sha = write_png(path, rgb)
    time.sleep(0.15)
    return sha

outputs.write_png = slow_write
cfg = RunConfig()
cfg.gan.translate_batch = 2
cfg.synth = cfg.synth.model_copy(update={{"shard_size": 4, "variants": 2}})
generate(cfg, DatasetVersion.open(sys.argv[1]), [Generator("f" * 64, metalize)], Path(sys.argv[2]), progress=False)
"""


def _cfg() -> RunConfig:
    cfg = RunConfig()
    cfg.gan.translate_batch = 2
    cfg.synth = cfg.synth.model_copy(update={"shard_size": 4, "variants": 2})
    return cfg


def _journal_lines(out: Path) -> int:
    return sum(len(read_journal(p)) for p in (out / "shards").glob("*.jsonl")) if (out / "shards").is_dir() else 0


def _recorded(out: Path) -> dict[str, str]:
    """{file name: sha256} of every journalled output."""
    return {o["image"]["file_name"]: o["image"]["sha256"]
            for p in sorted((out / "shards").glob("*.jsonl"))
            for row in read_journal(p) for o in row["outputs"]}


def _on_disk(out: Path) -> dict[str, tuple[int, int]]:
    """(inode, mtime) of every PNG under out (outputs and thumbnails), journalled or not."""
    return {p.relative_to(out).as_posix(): (p.stat().st_ino, p.stat().st_mtime_ns)
            for p in sorted(out.rglob("*.png"))}


def test_sigkill_mid_run_then_resume(mini_dataset, tmp_path):
    out = tmp_path / "staging"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.Popen(
        [sys.executable, "-c", SCRIPT.format(helpers=str(HERE)), str(mini_dataset.root), str(out)], env=env
    )
    deadline = time.time() + 60
    while len(_on_disk(out)) < 7 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = _on_disk(out)
    assert 7 <= len(before) < 2 * 12  # killed part-way
    assert _journal_lines(out) < 2 * 12
    # Nothing torn: every image on disk decodes (temp files are hidden dot-files, never outputs).
    for p in (out / "images").rglob("*.png"):
        assert cv2.imread(str(p)) is not None, p

    res = generate(_cfg(), mini_dataset, [Generator("f" * 64, metalize)], out, progress=False)
    after = _on_disk(out)
    for name, stamp in before.items():  # every file written before the kill is kept, none rewritten
        if not Path(name).name.startswith("."):
            assert after.get(name) == stamp, f"{name} was rewritten"
    assert not [n for n in after if Path(n).name.startswith(".")]  # no temp file left
    assert sum(s.resumed for s in res.shards) >= 1

    fresh = tmp_path / "fresh"
    ref = generate(_cfg(), mini_dataset, [Generator("f" * 64, metalize)], fresh, progress=False)
    assert _recorded(out) == _recorded(fresh)
    assert set(_on_disk(out)) == set(_on_disk(fresh))  # no orphan image either
    assert res.totals().accepted == ref.totals().accepted
    rows = [json.dumps(r, sort_keys=True) for r in collect(out, len(res.shards))]
    assert len(rows) == res.items  # one journal line per work item, none duplicated


def test_torn_journal_line_and_tampered_file_are_redone(mini_dataset, tmp_path):
    out = tmp_path / "staging"
    gen = [Generator("f" * 64, metalize)]
    res = generate(_cfg(), mini_dataset, gen, out, progress=False)
    journal = out / "shards" / "00000.jsonl"
    first = read_journal(journal)[0]["outputs"][0]["image"]["file_name"]
    (out / first).write_bytes(b"torn")  # a damaged output
    (out / "shards" / "00001.done.json").unlink()
    with open(out / "shards" / "00001.jsonl", "a") as f:
        f.write('{"item": "half a li')  # killed mid-append
    res2 = generate(_cfg(), mini_dataset, gen, out, progress=False)
    assert cv2.imread(str(out / first)) is not None
    assert res2.totals().accepted == res.totals().accepted
    assert len(read_journal(out / "shards" / "00001.jsonl")) == len(read_journal(journal))
