"""The `metalize` command line as users of `yolo` expect it: --version, -h, overrides without a
config file, commands in workflow order, help paragraphs the terminal wraps, paths never wrapped
in logs, and every command's library state under the output root."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from pipeline import __version__
from pipeline.cli import app, commands  # noqa: F401  (registers the sub-commands)

REPO = Path(__file__).resolve().parents[1]


def test_version_and_short_help() -> None:
    runner = CliRunner()
    for flag in ("--version", "-V"):
        r = runner.invoke(app, [flag])
        assert r.exit_code == 0 and r.stdout.strip() == f"metalize {__version__}"
    r = runner.invoke(app, ["-h"])
    assert r.exit_code == 0 and "Commands" in r.output
    r = runner.invoke(app, ["ingest", "-h"])
    assert r.exit_code == 0 and "--strict" in r.output


def test_commands_are_listed_in_workflow_order() -> None:
    assert [c.name or c.callback.__name__ for c in app.registered_commands] == [
        "run", "demo-data", "ingest", "train-gan", "translate", "synthesize", "compare", "report", "serve"]


def test_help_paragraphs_are_not_hard_wrapped() -> None:
    """A docstring's source line breaks are not the reader's: the terminal wraps the text."""
    r = CliRunner().invoke(app, ["ingest", "-h"], env={"COLUMNS": "250"})
    assert ("Prints the version folder on stdout; counts and the quarantine summary (rows grouped by action and "
            "reason, a few example files each) go to stderr.") in r.output


def test_overrides_without_a_config_file(tmp_path: Path) -> None:
    """`metalize demo-data runtime.output_root=...`: the first argument is an override, not a file."""
    out = tmp_path / "out"
    r = CliRunner().invoke(app, ["demo-data", f"runtime.output_root={out}", "data.demo.image_size=32",
                                 "data.demo.n_a=2", "data.demo.n_b_train=1", "data.demo.n_b_val=1",
                                 "data.demo.n_b_test=1", "data.demo.n_b_unlabelled=0", "data.demo.n_b_oracle=0"])
    assert r.exit_code == 0, r.output
    assert Path(r.stdout.strip().splitlines()[-1]).parent == out / "data" / "raw"
    typo = CliRunner().invoke(app, ["ingest", "runtime.output_rot=x"])
    assert typo.exit_code == 2 and "did you mean 'runtime.output_root'" in typo.output


def test_long_paths_are_not_wrapped_when_stderr_is_not_a_terminal(tmp_path: Path) -> None:
    deep = tmp_path / ("a-folder-with-a-long-name-" * 4) / "missing.yaml"
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "40"}
    p = subprocess.run([sys.executable, "-m", "pipeline.cli", "ingest", str(deep)], env=env, capture_output=True,
                       text=True, timeout=120, cwd=tmp_path)
    assert p.returncode == 2
    assert f"config error: {deep}: config file not found" in p.stderr.splitlines()
