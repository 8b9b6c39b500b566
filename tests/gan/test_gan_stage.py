"""The CycleGAN stage end to end on the tiny dataset: model directory, cache, CLI, Prefect flow, DDP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from pipeline.config import load_config
from pipeline.gan import train_translator
from pipeline.gan.training_run import model_dir_for, training_section
from pipeline.store import read_manifest, stage_key, verify_manifest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def trained(tiny_dataset, tiny_root):
    cfg = load_config(REPO / "configs" / "tiny.yaml", [f"runtime.output_root={tiny_root}"])
    return cfg, train_translator(cfg, tiny_dataset, progress=False)


def test_model_directory_is_complete_and_cached(trained, tiny_dataset):
    from pipeline.gan.translate import Translator

    cfg, res = trained
    d = res.model_dir
    assert d.parent == cfg.runtime.models_dir / "cyclegan"
    assert d.name == stage_key("gan", training_section(cfg), [tiny_dataset.manifest])[:12]
    for f in ("G_AB.safetensors", "G_BA.safetensors", "model_card.md", "metrics.json", "losses.csv",
              "config.yaml", "checkpoints/last.pt"):
        assert (d / f).is_file(), f
    assert sorted(p.name for p in (d / "samples").glob("*.png")) == ["step_000006.png", "step_000012.png"]
    grid = cv2.imread(str(d / "samples" / "step_000012.png"))
    assert grid.shape == (2 * 64, 3 * 64, 3)  # A, G(A), F(G(A)) over B, F(B), G(F(B))
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(d / "tensorboard")).Reload()
    assert {"loss/G", "loss/cycle_A", "lr"} <= set(events.Tags()["scalars"])
    assert [e.step for e in events.Scalars("loss/G")] == [4, 8, 12]  # log_every 4
    assert [e.step for e in events.Images("A_GA_FGA__B_FB_GFB")] == [6, 12]  # the same grids as the PNGs
    m = read_manifest(d)
    assert m["kind"] == "cyclegan" and m["parents"][0]["id"] == tiny_dataset.id
    assert verify_manifest(d) == [] and not any(k.startswith("checkpoints/") for k in m["files"])
    assert Translator.load(d).sha256 == m["summary"]["generator_sha256"]["AtoB"]
    metrics = json.loads((d / "metrics.json").read_text())
    assert metrics["iterations"] == cfg.gan.iterations and metrics["train_seconds"] > 0
    q = metrics["quality"]
    assert 0 <= q["realism"]["accuracy"] <= 1 and q["realism"]["ci_low"] <= q["realism"]["accuracy"]
    assert q["structure"]["n_boxes"] > 0 and 0 <= q["structure"]["box_edge_f1"] <= 1
    assert q["cycle_l1"] > 0 and q["cycle_l1_B"] > 0  # A→B→A and B→A→B
    assert np.isfinite(q["realism"]["kid"]) and q["realism"]["kid_std"] > 0  # 3 held-out B per fold
    card = (d / "model_card.md").read_text()
    assert tiny_dataset.id in card and "critic accuracy" in card and "samples/step_000012.png" in card
    # One KID scale: the card prints metrics.json's value as the report does (no x100 anywhere).
    from pipeline.report.tables import gan_quality

    kid = f"{q['realism']['kid']:.3f} ± {q['realism']['kid_std']:.3f}"
    assert f"| KID on critic features (lower = closer to real B) | {kid} |" in card and "×100" not in card
    assert gan_quality(q).rows[1][:2] == ["KID on critic features (lower = closer to real B)", kid]
    # the realism critic for the synthesis gate: saved, listed, described, loadable
    from pipeline.gan.quality import REALISM_CRITIC, load_realism_scorer

    critic = metrics["realism_critic"]
    assert REALISM_CRITIC in m["files"] and critic["steps"] == 2 * cfg.gan.quality_steps
    assert 0 <= critic["heldout_accuracy"] <= 1
    assert f"`{REALISM_CRITIC}`" in card and "held-out accuracy" in card
    score = load_realism_scorer(d)
    p = score(tiny_dataset.read_rgb(tiny_dataset.coco("B", "test").images[0]))
    assert isinstance(p, float) and 0.0 <= p <= 1.0
    assert metrics["precision"] in ("fp32", "bf16") and metrics["channels_last"] is False
    again = train_translator(cfg, tiny_dataset, progress=False)
    assert again.cached and again.model_dir == d and again.metrics["iterations"] == cfg.gan.iterations


def test_model_key_ignores_translation_settings(trained, tiny_dataset):
    cfg, res = trained
    same = load_config(REPO / "configs" / "tiny.yaml", [f"runtime.output_root={cfg.runtime.output_root}",
                                                          "gan.tile=128", "gan.translate_batch=2",
                                                          "gan.translate_border=0"])
    other = load_config(REPO / "configs" / "tiny.yaml", [f"runtime.output_root={cfg.runtime.output_root}",
                                                           "gan.iterations=13"])
    assert model_dir_for(same, tiny_dataset) == res.model_dir != model_dir_for(other, tiny_dataset)


def test_cli_trains_fastcut_and_synthesis_uses_it(tiny_dataset, tmp_path):
    """gan.model=fastcut through the user's commands: train-gan (no inverse network, so no cycle
    error to print) and synthesize with the model it printed."""
    from pipeline.cli import app
    from pipeline.cli import commands  # noqa: F401

    runner = CliRunner()
    base = [str(REPO / "configs" / "tiny.yaml"), f"runtime.output_root={tmp_path}", "gan.model=fastcut"]
    out = runner.invoke(app, ["train-gan", *base, "--dataset", str(tiny_dataset.root)])
    assert out.exit_code == 0, out.output
    assert "box edge F1" in out.output and "cycle L1" not in out.output
    model = Path(out.stdout.strip().splitlines()[-1])
    assert model.parent == tmp_path / "models" / "fastcut"
    assert (model / "G_AB.safetensors").is_file() and not (model / "G_BA.safetensors").exists()
    assert json.loads((model / "metrics.json").read_text())["quality"]["cycle_l1"] is None
    out = runner.invoke(app, ["synthesize", *base, "--dataset", str(tiny_dataset.root), "--model", str(model)])
    assert out.exit_code == 0, out.output
    aug = Path(out.stdout.strip().splitlines()[-1])
    assert read_manifest(aug)["parents"][1]["id"] == model.name
    assert any((aug / "images").rglob("*.png"))


def test_quality_and_critic_translate_with_the_configured_border(tiny_dataset, tmp_path, monkeypatch):
    """The model's metrics and the gate's realism critic see the pixels synthesis will write."""
    from pipeline.gan import quality
    from pipeline.gan.translate import Translator

    borders = []

    class Seen(Exception):
        pass

    def load(*args, border, **kwargs):
        borders.append(border)
        raise Seen

    monkeypatch.setattr(Translator, "load", load)
    cfg = load_config(REPO / "configs" / "tiny.yaml",
                      [f"runtime.output_root={tmp_path}", "gan.translate_border=0"])
    with pytest.raises(Seen):
        train_translator(cfg, tiny_dataset, progress=False)
    model = next((tmp_path / "models").glob("*/*"))
    with pytest.raises(Seen):
        quality.fit_realism_critic(model, tiny_dataset, border=4)
    assert borders == [0, 4]


def test_cli_train_gan_and_translate(trained, tiny_dataset, tmp_path):
    from pipeline.cli import app
    from pipeline.cli import commands  # noqa: F401

    cfg, res = trained
    runner = CliRunner()
    out = runner.invoke(app, ["train-gan", str(REPO / "configs" / "tiny.yaml"),
                              f"runtime.output_root={cfg.runtime.output_root}",
                              "--dataset", str(tiny_dataset.root)])
    assert out.exit_code == 0, out.output
    assert out.stdout.strip().splitlines()[-1] == str(res.model_dir)

    src = tmp_path / "photos"
    (src / "sub").mkdir(parents=True)
    cv2.imwrite(str(src / "a.png"), np.full((50, 70, 3), 200, np.uint8))
    cv2.imwrite(str(src / "sub" / "b.jpg"), np.full((130, 90, 3), 90, np.uint8))
    (src / "broken.png").write_bytes(b"not an image")
    before = {p: p.stat().st_mtime_ns for p in src.rglob("*")}
    out = runner.invoke(app, ["translate", str(res.model_dir), str(src), str(tmp_path / "out"),
                              "--device", "cpu"])
    assert out.exit_code == 0, out.output
    assert cv2.imread(str(tmp_path / "out" / "a.png")).shape == (50, 70, 3)
    assert cv2.imread(str(tmp_path / "out" / "sub" / "b.jpg")).shape == (130, 90, 3)
    log = json.loads((tmp_path / "out" / "translations.json").read_text())
    assert len(log["images"]) == 2 and [f["file"].endswith("broken.png") for f in log["failed"]] == [True]
    assert {p: p.stat().st_mtime_ns for p in src.rglob("*")} == before  # inputs untouched

    # --native: the photo's own resolution, tiled (130 px > tile 64) instead of resized to the training 64 px
    out = runner.invoke(app, ["translate", str(res.model_dir), str(src), str(tmp_path / "native"),
                              "--device", "cpu", "--native", "--tile", "64", "--precision", "fp32"])
    assert out.exit_code == 0, out.output
    native = cv2.imread(str(tmp_path / "native" / "sub" / "b.jpg"))
    assert native.shape == (130, 90, 3)
    assert json.loads((tmp_path / "native" / "translations.json").read_text())["scale"] == "native"
    out = runner.invoke(app, ["translate", str(res.model_dir), str(src), str(tmp_path / "o2"), "--native",
                              "--size", "80"])
    assert out.exit_code == 2 and "exclude" in out.output

    out = runner.invoke(app, ["translate", str(res.model_dir), str(tiny_dataset.root), str(tmp_path / "ds"),
                              "--direction", "BtoA"])
    assert out.exit_code == 0, out.output
    n_b = sum(len(tiny_dataset.coco(d, s).images) for d, s in tiny_dataset.splits() if d == "B")
    assert len(json.loads((tmp_path / "ds" / "translations.json").read_text())["images"]) == n_b
    out = runner.invoke(app, ["translate", str(res.model_dir), str(src), str(src / "inside")])
    assert out.exit_code == 2 and not (src / "inside").exists()


def test_flow_retry_resumes_from_the_last_checkpoint(prefect_harness, tiny_dataset, tiny_root):
    from flows.train_gan import train_gan_flow

    cfg = load_config(REPO / "configs" / "tiny.yaml", [f"runtime.output_root={tiny_root}", "runtime.seed=7",
                                                       "gan.quality_steps=5"])
    failures = []

    def flaky_disk(step, model):
        if step == 8 and not failures:  # after the checkpoint at step 6
            failures.append(step)
            raise OSError("simulated: network filesystem went away")

    res = train_gan_flow(cfg, tiny_dataset, callbacks=[flaky_disk])
    assert failures == [8] and not res.cached
    assert res.metrics["resumed_from"] == 6 and res.metrics["iterations"] == cfg.gan.iterations
    assert read_manifest(res.model_dir)["kind"] == "cyclegan"


@pytest.mark.slow
def test_torchrun_ddp_two_processes_gloo(tiny_dataset, tmp_path):
    torchrun = Path(sys.executable).with_name("torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [str(torchrun), "--nproc_per_node=2", "--standalone", "-m",
           "pipeline.gan.training_run", str(REPO / "configs" / "tiny.yaml"), f"runtime.output_root={tmp_path}",
           "gan.iterations=6", "gan.checkpoint_every=3", "gan.quality_steps=5",
           "--dataset", str(tiny_dataset.root)]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert p.returncode == 0, p.stderr[-3000:]
    model_dir = Path(p.stdout.strip().splitlines()[-1])
    metrics = json.loads((model_dir / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["iterations"] == 6
    assert read_manifest(model_dir)["kind"] == "cyclegan"
    sums = metrics["rank_checksums"]  # every replica's weight sum after training
    assert len(sums) == 2 and sums[0] == pytest.approx(sums[1], rel=1e-9, abs=1e-9)
    from pipeline.gan.checkpoint import load_checkpoint

    models = load_checkpoint(model_dir / "checkpoints" / "last.pt")["models"]  # what rank 0 wrote at the end
    saved = sum(float(v.double().sum()) for sd in models.values() for v in sd.values()
                if v.is_floating_point())
    assert saved == pytest.approx(sums[0], rel=1e-9)


def test_ranks_follow_rank_0_when_the_model_was_finished_meanwhile(tiny_dataset, tmp_path):
    import socket

    from pipeline.store import write_manifest

    tiny = REPO / "configs" / "tiny.yaml"
    cfg = load_config(tiny, [f"runtime.output_root={tmp_path}", "runtime.device=cpu"])
    model_dir = model_dir_for(cfg, tiny_dataset)
    model_dir.mkdir(parents=True)
    write_manifest(model_dir, kind="cyclegan", id=model_dir.name, config={},
                   summary={"metrics": {"iterations": 1}})
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    worker = REPO / "tests" / "gan" / "ddp_decision_worker.py"
    procs = [subprocess.Popen(
        [sys.executable, str(worker), str(tiny), str(tmp_path), str(tiny_dataset.root)], cwd=REPO,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "RANK": str(r),
             "LOCAL_RANK": str(r), "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
        for r in (0, 1)]
    try:  # before the fix rank 1 trained alone and hung in its first collective
        outs = [p.communicate(timeout=120) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-2000:]
        res = json.loads(out.strip().splitlines()[-1])
        assert res == {"cached": True, "model_dir": str(model_dir)}
