"""`metalize synthesize` with explicit --dataset/--model, and clear errors without them."""

from __future__ import annotations

from pathlib import Path

from synth_helpers import fake_model_dir, metalize
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.cli import commands  # noqa: F401  (registers the sub-commands)
from pipeline.synth import stage
from pipeline.synth.generate import Generator

REPO = Path(__file__).resolve().parents[2]


def test_cli_publishes_and_prints_the_version(monkeypatch, mini_dataset, tmp_path):
    monkeypatch.setattr(stage, "load_generators", lambda plan: [Generator(plan.generator_shas[0], metalize)])
    model = fake_model_dir(tmp_path)
    args = ["synthesize", str(REPO / "configs" / "tiny.yaml"), f"runtime.output_root={tmp_path}",
            "--dataset", str(mini_dataset.root), "--model", str(model)]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    out = Path(res.stdout.strip().splitlines()[-1])
    assert out.name.startswith("tiny-aug-") and (out / "annotations" / "B_train.json").is_file()
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0 and "(cached)" in again.output


def test_cli_without_a_model_says_what_to_run(mini_dataset, tmp_path):
    res = CliRunner().invoke(app, ["synthesize", str(REPO / "configs" / "tiny.yaml"),
                                   f"runtime.output_root={tmp_path}", "--dataset", str(mini_dataset.root)])
    assert res.exit_code == 1
    assert "metalize train-gan" in res.output and "--model" in res.output
