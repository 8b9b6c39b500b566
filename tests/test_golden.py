"""Outputs stay the same: a tiny-profile run compared with the digest recorded before a change
(tests/golden/tiny.json, made by tests/golden/digest.py; see its docstring for what is left out).

The kinds of files are compared everywhere (synthetic image names collapsed: they carry the
generator's hash). The exact list and the contents are compared byte for byte (after taking out
times, dates, versions and paths) on a machine like the one that recorded the digest (CPU model
and math features, threads, library versions): the GAN and detector train in floating point,
whose last bits depend on them.
After an intended change of outputs, rerun the tiny profile and record the digest again:
    metalize run configs/tiny.yaml runtime.output_root=/tmp/t && python tests/golden/digest.py /tmp/t > tests/golden/tiny.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "golden"))  # importlib mode: no package for tests/golden
import digest as golden  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_a_tiny_run_writes_the_recorded_outputs(tmp_path: Path) -> None:
    from pipeline.config import load_config
    from pipeline.experiment import experiment

    recorded = json.loads((REPO / "tests" / "golden" / "tiny.json").read_text())
    cfg = load_config(REPO / "configs" / "tiny.yaml", [f"runtime.output_root={tmp_path / 'out'}"])
    experiment(cfg, progress=False)
    now = golden.digest(tmp_path / "out")

    then, kinds = golden.kinds(set(recorded["files"])), golden.kinds(set(now))
    missing, extra = sorted(then - kinds), sorted(kinds - then)
    assert not missing and not extra, f"files no longer written: {missing[:10]}; new files: {extra[:10]}"
    if golden.machine() != recorded["machine"]:
        pytest.skip(f"the kinds of files match; contents not compared on {golden.machine()} "
                    f"(recorded on {recorded['machine']})")
    assert set(now) == set(recorded["files"]), sorted(set(now) ^ set(recorded["files"]))[:10]
    changed = sorted(k for k, v in now.items() if recorded["files"][k] != v)
    assert not changed, f"{len(changed)} outputs changed, e.g. {changed[:10]}"
