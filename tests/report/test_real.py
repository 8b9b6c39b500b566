"""The report on a real tiny run: CycleGAN -> synthesis -> comparison (two arms, one epoch) ->
report with detections, synthetic samples, GAN quality and lineage; the CLI finds the inputs
from the lineage; the Prefect flow publishes the arms table."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from report_helpers import html_text, md_table, read

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def real_run(tiny_root: Path, tiny_dataset):
    """(cfg, dataset, gan_dir, augmented, run_dir) of a real tiny experiment (GAN and synthesis
    are shared with the other tiny tests of the session through their caches)."""
    from pipeline.config import load_config
    from pipeline.detect.compare import compare
    from pipeline.gan.training_run import train_translator
    from pipeline.run import run_dir_for
    from pipeline.synth.stage import synthesize

    cfg = load_config(REPO / "configs" / "tiny.yaml", [f"runtime.output_root={tiny_root}",
                                                      "detect.arms=[real, real+synthetic]"])
    gan = train_translator(cfg, tiny_dataset, progress=False)
    aug = synthesize(cfg, tiny_dataset, gan.model_dir, progress=False).version
    run_dir = run_dir_for(cfg, tiny_dataset.root, aug.root)
    compare(cfg, tiny_dataset, aug, run_dir / "compare", progress=False)
    return cfg, tiny_dataset, gan.model_dir, aug, run_dir


def test_report_on_a_real_run(real_run, tmp_path: Path) -> None:
    from pipeline.report.build import build_report

    cfg, ds, gan_dir, aug, run_dir = real_run
    out = tmp_path / "report"
    res = build_report(cfg, run_dir / "compare", out, dataset=ds, gan_dir=gan_dir, augmented=aug)
    m = json.loads(res.metrics.read_text())
    assert {"map_bars", "pr_curves", "per_class_ap", "training_curves", "detections", "synthetic",
            "gan_samples", "dataset_card", "augmented_card"} <= set(m["report"]["figures"]), m["report"]["omitted"]
    shown = m["report"]["samples"]
    assert len(shown["detections"]) == cfg.report.n_detection_samples
    test_ids = {im.id for im in ds.coco("B", "test").images}
    assert {d["image_id"] for d in shown["detections"]} <= test_ids
    synthetic = {im.id: im for im in aug.coco("B", "train").images if im.synthetic}
    assert shown["synthetic"] and all(s["image_id"] in synthetic for s in shown["synthetic"])
    md = read(res.markdown)
    photos = aug.manifest["summary"]["camera"]["photos"]  # the tiny profile matches the camera, as the demo
    assert f"sensor noise of one of {photos} real metal photos (camera matching" in md
    rows = {r["arm"]: r for r in md_table(md, "arm")}
    for arm in m["arms"]:
        s = arm["summary"]["map"]
        assert rows[arm["name"]]["mAP@[.5:.95]"] == (f"{s['mean']:.3f}" if s["std"] is None else
                                                    f"{s['mean']:.3f} ± {s['std']:.3f}")
    # GAN quality and lineage come from the model's own files
    q = json.loads((gan_dir / "metrics.json").read_text())["quality"]
    text, _, _ = html_text(read(res.html))
    assert f"{q['structure']['edge_f1']:.3f}" in text and f"{q['cycle_l1']:.3f}" in text
    gan_manifest = json.loads((gan_dir / "manifest.json").read_text())
    for needle in (ds.id, aug.id, gan_manifest["id"], gan_manifest["summary"]["generator_sha256"]["AtoB"]):
        assert needle in text
    from pipeline.store import sha256_file

    checkpoints = {r["role"]: r for r in m["report"]["lineage"] if r["role"].endswith(" checkpoint")}
    for arm in m["arms"]:
        for r in arm["runs"]:
            if r["status"] == "ok":  # the trained best.pt, hashed from the file itself
                row = checkpoints[f"{arm['name']} seed {r['seed']} checkpoint"]
                assert row["hash"] == sha256_file(run_dir / "compare" / r["weights"]) and row["hash"] in text
    parents = json.loads((out / "manifest.json").read_text())["parents"]
    assert {p["kind"] for p in parents} == {"comparison", "dataset", "augmented", "cyclegan"}
    assert "Demo data rendered procedurally" in text  # attribution for the data used


def test_cli_report_finds_inputs_from_the_lineage(real_run) -> None:
    from typer.testing import CliRunner

    from pipeline.cli import app
    from pipeline.cli import commands  # noqa: F401

    cfg, ds, gan_dir, aug, run_dir = real_run
    res = CliRunner().invoke(app, ["report", str(run_dir)])
    assert res.exit_code == 0, res.output
    html = Path(res.stdout.strip().splitlines()[-1])
    assert html == run_dir / "report.html" and html.is_file()
    rep = json.loads((run_dir / "metrics.json").read_text())["report"]
    assert rep["dataset"] == ds.id and rep["augmented"] == aug.id and rep["gan"]["id"] == gan_dir.name
    bad = CliRunner().invoke(app, ["report", str(run_dir / "runs")])
    assert bad.exit_code == 1 and "neither a run dir" in bad.output


def test_report_flow_publishes_the_arms_table(real_run, prefect_harness, tmp_path: Path) -> None:
    from prefect.client.orchestration import get_client

    from flows.report import report_flow

    cfg, ds, gan_dir, aug, run_dir = real_run
    res = report_flow(cfg, run_dir / "compare", tmp_path / "flow-report", dataset=ds, gan_dir=gan_dir,
                      augmented=aug)
    assert res.html.is_file() and not res.cached

    async def latest():
        async with get_client() as client:
            return await client.read_latest_artifacts()

    arts = [a for a in asyncio.run(latest()) if a.key == "metalize-report"]
    assert arts and "| real+synthetic |" in arts[0].data and res.verdict in arts[0].data
    assert report_flow(cfg, run_dir / "compare", tmp_path / "flow-report", dataset=ds, gan_dir=gan_dir,
                       augmented=aug).cached
