"""The stage around generation: what the cache key holds, duplicate and extra checkpoints (real
generator files through prepare/load_generators/lineage), the realism threshold, a resumed run's
shard partition, and a kill during export."""

from __future__ import annotations

import json

import pytest
from pycocotools.coco import COCO
from synth_helpers import fake_model_dir, metalize, permissive_gate, real_model_dir

from pipeline.config import RunConfig
from pipeline.store import sha256_file
from pipeline.synth import export, stage
from pipeline.synth.generate import Generator


def _cfg(root, **synth) -> RunConfig:
    cfg = RunConfig()
    cfg.runtime.output_root = root
    cfg.runtime.device = "cpu"
    cfg.synth = cfg.synth.model_copy(update={"shard_size": 5, **synth})
    return cfg


def _key(cfg, dataset, model):
    return stage.prepare(cfg, dataset, model).key


def test_cache_key_holds_pixel_settings_and_ignores_run_only_ones(mini_dataset, tmp_path):
    model = fake_model_dir(tmp_path)
    base = _cfg(tmp_path)
    base.gan.precision = "fp32"
    k0 = _key(base, mini_dataset, model)
    pixel_settings = [("gan", "tile", 256), ("gan", "tile_overlap", 8), ("gan", "translate_size", "native"),
                      ("gan", "translate_size", 96), ("gan", "translate_border", 0),
                      ("gan", "precision", "bf16"),
                      ("runtime", "device", "cuda"), ("runtime", "seed", 1), ("synth", "variants", 2),
                      ("synth", "augment", True)]
    for section, field, value in pixel_settings:
        other = base.model_copy(deep=True)
        setattr(getattr(other, section), field, value)
        assert _key(other, mini_dataset, model) != k0, f"{section}.{field}={value}: not in the key"
    cuda = base.model_copy(deep=True)
    cuda.runtime.device = "cuda:1"  # the same device kind: same pixels
    cuda0 = base.model_copy(deep=True)
    cuda0.runtime.device = "cuda"
    assert _key(cuda, mini_dataset, model) == _key(cuda0, mini_dataset, model)
    assert stage.prepare(cuda0, mini_dataset, model).translation["device"] == "cuda"
    for field, value in [("shard_size", 3), ("n_card_examples", 2), ("dask", True), ("prefetch", False)]:
        other = base.model_copy(deep=True)
        setattr(other.synth, field, value)
        assert _key(other, mini_dataset, model) == k0, f"synth.{field} is run-only but changes the key"
    workers = base.model_copy(deep=True)
    workers.runtime.workers = 7
    assert _key(workers, mini_dataset, model) == k0


def test_the_same_checkpoint_twice_is_refused(mini_dataset, tmp_path):
    model = fake_model_dir(tmp_path)
    copy = tmp_path / "copy.safetensors"
    copy.write_bytes((model / "G_AB.safetensors").read_bytes())
    for dup in (str(model), str(copy)):
        with pytest.raises(ValueError, match="same generator as .*list each checkpoint once"):
            stage.prepare(_cfg(tmp_path, checkpoints=[dup]), mini_dataset, model)


def test_two_real_generator_files_through_prepare_load_and_lineage(mini_dataset, tmp_path):
    """Two checkpoints (as from two epochs or seeds): each translates every A image through the
    real Translator; images, manifest and lineage name both."""
    first = real_model_dir(tmp_path, "gan-one", seed=1)
    second = real_model_dir(tmp_path, "gan-two", seed=2)
    gate = RunConfig().synth.gate.model_copy(update=permissive_gate())
    cfg = _cfg(tmp_path, checkpoints=[str(second / "G_AB.safetensors")], gate=gate)
    plan = stage.prepare(cfg, mini_dataset, first)
    shas = [sha256_file(first / "G_AB.safetensors"), sha256_file(second / "G_AB.safetensors")]
    assert plan.generator_shas == shas and plan.n_items == 2 * len(mini_dataset.coco("A", "train").images)
    gens = stage.load_generators(plan)
    assert [g.sha256 for g in gens] == shas and all(g.translate_checked is not None for g in gens)
    res = stage.synthesize(cfg, mini_dataset, first, progress=False)
    v = res.version
    coco = COCO(str(v.annotation_path("B", "train")))
    syn = [im for im in coco.loadImgs(coco.getImgIds()) if im["synthetic"]]
    assert {im["generator"] for im in syn} == set(shas) and len(syn) == res.accepted == plan.n_items
    names = [im["file_name"] for im in syn]
    assert len(set(names)) == len(names)  # one file per (image, generator)
    m = v.manifest
    assert [p["id"] for p in m["parents"]] == [mini_dataset.id, "gan-one", "gan-two"]
    assert [g["sha256"] for g in m["summary"]["generators"]] == shas


def test_min_realism_without_a_realism_critic_is_a_clear_error(mini_dataset, tmp_path):
    model = fake_model_dir(tmp_path)
    cfg = _cfg(tmp_path)
    cfg.synth.gate.min_realism = 0.5
    with pytest.raises(ValueError, match="min_realism .*realism critic"):
        stage.prepare(cfg, mini_dataset, model)


def test_a_resumed_run_keeps_its_shard_partition(mini_dataset, tmp_path):
    model = fake_model_dir(tmp_path)
    cfg = _cfg(tmp_path, shard_size=5)
    plan = stage.prepare(cfg, mini_dataset, model)
    gens = [Generator(plan.generator_shas[0], metalize)]
    stage.run_plan_shard(plan, 0, gens)  # killed after the first shard
    bigger = cfg.model_copy(deep=True)
    bigger.synth.shard_size = 100  # restarted with another shard size: same key, same staging
    again = stage.prepare(bigger, mini_dataset, model)
    assert again.staging == plan.staging and [len(s) for s in again.shards] == [len(s) for s in plan.shards]
    summaries = [stage.run_plan_shard(again, k, gens) for k in range(len(again.shards))]
    assert summaries[0].resumed == len(plan.shards[0])
    res = stage.finalize(again, summaries)
    assert res.accepted == sum(s.accepted for s in summaries) > 0


def test_kill_during_export_resumes_without_regenerating(mini_dataset, tmp_path, monkeypatch):
    model = fake_model_dir(tmp_path)
    cfg = _cfg(tmp_path)
    calls = {"translate": 0}

    def counting(images):
        calls["translate"] += len(images)
        return metalize(images)

    monkeypatch.setattr(stage, "load_generators", lambda plan: [Generator(plan.generator_shas[0], counting)])

    def killed(*args, **kwargs):
        raise KeyboardInterrupt("killed while writing the manifest")

    monkeypatch.setattr(export, "write_manifest", killed)
    with pytest.raises(KeyboardInterrupt):
        stage.synthesize(cfg, mini_dataset, model, progress=False)
    first = calls["translate"]
    plan = stage.prepare(cfg, mini_dataset, model)
    assert first > 0 and (plan.staging / "shards").is_dir() and not plan.final.exists()
    monkeypatch.undo()
    monkeypatch.setattr(stage, "load_generators", lambda plan: [Generator(plan.generator_shas[0], counting)])
    res = stage.synthesize(cfg, mini_dataset, model, progress=False)
    assert calls["translate"] == first  # nothing translated again
    counts = res.version.manifest["summary"]["counts"]
    assert counts["resumed"] == counts["items"] == plan.n_items and res.accepted > 0
    assert not (res.version.root / "shards").exists()


def test_kill_after_the_manifest_publishes_the_staged_version(mini_dataset, tmp_path, monkeypatch):
    model = fake_model_dir(tmp_path)
    cfg = _cfg(tmp_path)
    monkeypatch.setattr(stage, "load_generators", lambda plan: [Generator(plan.generator_shas[0], metalize)])
    plan = stage.prepare(cfg, mini_dataset, model)

    def killed(*args, **kwargs):
        raise KeyboardInterrupt("killed before the rename")

    monkeypatch.setattr(stage, "_publish", killed)
    with pytest.raises(KeyboardInterrupt):
        stage.synthesize(cfg, mini_dataset, model, progress=False)
    assert json.loads((plan.staging / "manifest.json").read_text())["id"] == plan.version_id
    monkeypatch.undo()
    monkeypatch.setattr(stage, "load_generators", lambda plan: pytest.fail("regenerated a finished export"))
    res = stage.synthesize(cfg, mini_dataset, model, progress=False)
    assert res.version.root == plan.final and not plan.staging.exists() and res.accepted > 0


def test_nan_from_the_network_is_caught_through_the_real_stage(mini_dataset, tmp_path):
    """A generator whose weights produce NaN: the Translator casts it to uint8, its count reaches
    the gate through translate_checked, and every image is rejected as non-finite."""
    model = real_model_dir(tmp_path, "gan-nan", seed=3, nan=True)
    gate = RunConfig().synth.gate.model_copy(update=permissive_gate())  # only the NaN check can fire
    res = stage.synthesize(_cfg(tmp_path, gate=gate), mini_dataset, model, progress=False)
    rows = [json.loads(line) for line in (res.version.root / "rejected.jsonl").read_text().splitlines()]
    n = len(mini_dataset.coco("A", "train").images)
    assert res.accepted == 0 and res.rejected == n
    assert [r["check"] for r in rows] == ["finite"] * n and all(r["score"] > 0 for r in rows)
    fine = real_model_dir(tmp_path, "gan-fine", seed=3)  # the same network without the NaN
    assert stage.synthesize(_cfg(tmp_path, gate=gate), mini_dataset, fine, progress=False).rejected == 0


def _with_critic(root, name: str, mini_dataset):
    from pipeline.gan.realism import REALISM_CRITIC, train_realism_critic

    d = real_model_dir(root, name, seed=4)
    b_images = mini_dataset.coco("B", "train").images + mini_dataset.coco("B", "val").images
    real = [mini_dataset.read_rgb(im) for im in b_images]
    fake = metalize([mini_dataset.read_rgb(im) for im in mini_dataset.coco("A", "train").images])
    train_realism_critic(d / REALISM_CRITIC, real, fake, steps=5, seed=0)
    return d


def test_realism_scores_are_recorded_and_min_realism_rejects(mini_dataset, tmp_path, monkeypatch):
    model = _with_critic(tmp_path, "gan-critic", mini_dataset)
    monkeypatch.setattr(stage, "load_generators", lambda plan: [Generator(plan.generator_shas[0], metalize)])
    res = stage.synthesize(_cfg(tmp_path), mini_dataset, model, progress=False)
    coco = COCO(str(res.version.annotation_path("B", "train")))
    scores = [im["gate"]["realism"] for im in coco.loadImgs(coco.getImgIds()) if im["synthetic"]]
    assert len(scores) == res.accepted > 0 and all(0.0 <= s <= 1.0 for s in scores)  # recorded, threshold off
    strict = _cfg(tmp_path)
    strict.synth.gate.min_realism = min(1.0, max(scores) + 1e-4)  # above every image's score
    res2 = stage.synthesize(strict, mini_dataset, model, progress=False)
    rows = [json.loads(line) for line in (res2.version.root / "rejected.jsonl").read_text().splitlines()]
    assert res2.accepted == 0 and {r["check"] for r in rows} == {"realism"}
    assert all(r["score"] < r["threshold"] == strict.synth.gate.min_realism for r in rows)
