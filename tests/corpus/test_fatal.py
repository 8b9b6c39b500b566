"""Bad inputs that stop a command by design (tests/corpus/fatal.py): each ends with a clear
error - exit status 2 for configuration, 1 for an ingest that cannot give a dataset, no
traceback, one message naming the file or key - and writes nothing. Run in-process (fast);
bench/reliability.py runs each as its own process in an empty sandbox."""

from __future__ import annotations

import sys
import traceback
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from fatal import build_fatal, classify  # noqa: E402



@pytest.fixture(scope="module")
def fatal_cases(tmp_path_factory):
    root = tmp_path_factory.mktemp("fatal")
    return root, {c.id: c for c in build_fatal(root)}


def _ids(kind: str | None = None) -> list[str]:
    """Case ids; `run` cases (Prefect's temporary server: seconds each) are run as processes."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:  # the ids only: the module fixture writes the files
        return [c.id for c in build_fatal(Path(tmp)) if (c.kind == "run") == (kind == "run")]


@pytest.mark.parametrize("case_id", _ids())
def test_fatal_case_is_a_clear_error(fatal_cases, case_id) -> None:
    from typer.testing import CliRunner

    from pipeline.cli import app, commands  # noqa: F401  (registers the sub-commands)

    root, cases = fatal_cases
    case = cases[case_id]
    result = CliRunner().invoke(app, list(case.args))
    output = result.output
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        output += "".join(traceback.format_exception(result.exception))
    outcome, detail = classify(case, result.exit_code, output)
    assert outcome == "clear fatal", f"{case.what}: {outcome}: {detail}"
    out = root / "fatal" / case_id / "out"
    assert not out.exists() or not any((out / "data" / "datasets").glob("fatal-*")), "a dataset was written"


@pytest.mark.slow
def test_an_ingest_error_in_metalize_run_is_one_line_not_a_traceback(fatal_cases) -> None:
    """In the CLI's pre-flight ingest or in the flow's subflow (where Prefect would log the
    traceback twice and typer print a third): the last line is the error, naming the key."""
    import os
    import subprocess

    root, cases = fatal_cases
    case = cases["run-categories-differ"]
    env = {**os.environ, "PYTHONPATH": str(HERE.parents[1]), "PREFECT_LOGGING_LEVEL": "INFO"}
    p = subprocess.run([sys.executable, "-m", "pipeline.cli", *case.args], cwd=root, env=env, capture_output=True,
                       text=True, timeout=600)
    outcome, detail = classify(case, p.returncode, p.stdout + p.stderr)
    assert outcome == "clear fatal", f"{outcome}: {detail}"
    lines = [ln for ln in p.stderr.strip().splitlines() if "| INFO " not in ln]
    assert lines[-1].startswith("error: Class A and Class B categories differ"), lines[-3:]
