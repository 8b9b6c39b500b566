"""The YOLO backend's small pieces without training: start point, device, AMP, identity, and the
conversion of ultralytics predictions to COCO results (a wrong one would only show as a low mAP)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.detect.offline import amp_setting, train_precision
from pipeline.detect.yolo import DetectorError, YoloDetector, resolve_device


def test_start_point_is_the_yaml_or_local_weights(tiny_config, tmp_path):
    assert YoloDetector(tiny_config)._start_point() == ("yolo11n.yaml", False)  # from scratch
    w = tmp_path / "start.pt"
    w.write_bytes(b"not really a checkpoint")
    tiny_config.detect.weights = w
    assert YoloDetector(tiny_config)._start_point() == (str(w), True)
    tiny_config.detect.weights = tmp_path / "missing.pt"
    with pytest.raises(DetectorError, match=r"missing\.pt: file not found"):
        YoloDetector(tiny_config)._start_point()
    tiny_config.detect.weights = None
    tiny_config.detect.model = "yolo11n.pt"  # a hub name: would download
    with pytest.raises(DetectorError, match="expected a model YAML"):
        YoloDetector(tiny_config)._start_point()


def test_identity_hashes_the_start_weights(tiny_config, tmp_path):
    import hashlib
    from importlib.metadata import version

    scratch = YoloDetector(tiny_config).identity()
    assert scratch["weights_sha256"] is None and scratch["ultralytics"] == version("ultralytics")
    w = tmp_path / "start.pt"
    w.write_bytes(b"weights v1")
    tiny_config.detect.weights = w
    first = YoloDetector(tiny_config).identity()
    assert first["weights_sha256"] == hashlib.sha256(b"weights v1").hexdigest()
    w.write_bytes(b"weights v2")  # retrained in place: same path, another experiment
    assert YoloDetector(tiny_config).identity()["weights_sha256"] != first["weights_sha256"]


def test_run_key_follows_the_weights_content(tiny_config, tiny_dataset, tmp_path):
    from pipeline.detect.compare import plan_runs

    tiny_config.detect.arms = ["real"]
    w = tmp_path / "start.pt"
    w.write_bytes(b"weights v1")
    tiny_config.detect.weights = w
    key1 = plan_runs(tiny_config, tiny_dataset, None, tmp_path / "c")[2][0].key
    w.write_bytes(b"weights v2")
    key2 = plan_runs(tiny_config, tiny_dataset, None, tmp_path / "c")[2][0].key
    assert key1 != key2
    w.unlink()
    with pytest.raises(ValueError, match=r"start\.pt: file not found"):
        plan_runs(tiny_config, tiny_dataset, None, tmp_path / "c")


def test_resolve_device(monkeypatch):
    import torch

    assert resolve_device("cpu") == "cpu" and resolve_device("cuda:1") == "cuda:1"  # explicit: as given
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == "cuda:0"


def test_amp_setting(monkeypatch):
    import torch

    from pipeline.gan import accel

    for fast in (True, False):  # the CPU's bf16 is the trainer's own: ultralytics never autocasts there
        monkeypatch.setattr(accel, "cpu_has_fast_bf16", lambda fast=fast: fast)
        assert amp_setting("cpu") is False
        assert train_precision("cpu") == ("bf16" if fast else "fp32") and train_precision("cpu", "off") == "fp32"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert amp_setting("cuda:0") == "bf16" and train_precision("cuda:0") == "bf16"
    assert amp_setting("cuda:0", "off") is False and train_precision("cuda:0", "off") == "fp32"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert amp_setting("cuda:0") is False  # fp16 would run ultralytics' AMP check (a download)


class _FakeYolo:
    """Stands in for ultralytics.YOLO at predict time: returns real ultralytics Results built from
    the boxes given per image path, and records the arguments it was called with."""

    def __init__(self, boxes: dict[str, list[list[float]]], names: dict[int, str]):
        self.boxes, self.names, self.calls = boxes, names, []

    def predict(self, sources, **kwargs):
        import torch
        from ultralytics.engine.results import Results

        self.calls.append({"sources": list(sources), **kwargs})
        out = []
        for src in sources:
            data = torch.tensor(self.boxes.get(src, []), dtype=torch.float32).reshape(-1, 6)
            out.append(Results(np.zeros((48, 64, 3), np.uint8), path=src, names=self.names, boxes=data))
        return out


def test_predict_converts_ultralytics_boxes_to_coco_results(tiny_config, tmp_path):
    from pipeline.detect.offline import ensure_offline

    ensure_offline()  # before the first ultralytics import in this process
    tiny_config.detect.batch = 2  # three images: two predict() calls
    det = YoloDetector(tiny_config)
    paths = [str(tmp_path / f"{i}.png") for i in range(3)]
    # rows: x1, y1, x2, y2 (pixels), confidence, class index
    fake = _FakeYolo({paths[0]: [[10.0, 5.0, 30.5, 25.0, 0.9, 2.0], [0.0, 0.0, 8.0, 4.0, 0.25, 0.0]],
                      paths[2]: [[40.25, 12.0, 60.0, 47.5, 0.123456, 1.0]]},
                     {0: "tensile_specimen", 1: "gear", 2: "bracket"})
    det._model = lambda source: fake
    images = [(101, Path(paths[0])), (7, Path(paths[1])), (55, Path(paths[2]))]
    res = det.predict(tmp_path / "best.pt", images, category_ids=[3, 9, 11])
    assert res == [
        {"image_id": 101, "category_id": 11, "bbox": [10.0, 5.0, 20.5, 20.0], "score": 0.9},
        {"image_id": 101, "category_id": 3, "bbox": [0.0, 0.0, 8.0, 4.0], "score": 0.25},
        {"image_id": 55, "category_id": 9, "bbox": [40.25, 12.0, 19.75, 35.5], "score": 0.12346},
    ]
    assert [c["sources"] for c in fake.calls] == [paths[:2], paths[2:]]
    d = tiny_config.detect
    assert all(c["conf"] == d.conf and c["max_det"] == d.max_det and c["imgsz"] == d.imgsz
               and c["iou"] == d.nms_iou for c in fake.calls)


def test_training_writes_under_the_run_dir_even_when_it_is_relative(tiny_config, tmp_path, monkeypatch):
    """ultralytics puts a relative `project` under its runs_dir (./runs/detect/<project>): the
    backend must hand it an absolute one so nothing lands outside the comparison."""
    from types import SimpleNamespace

    from pipeline.detect.base import TrainingSet

    class FakeTrainModel:
        def train(self, **args):
            self.args = args
            save = Path(args["project"]) / args["name"]
            (save / "weights").mkdir(parents=True)
            (save / "weights" / "best.pt").write_bytes(b"w")
            self.trainer = SimpleNamespace(save_dir=save)

    monkeypatch.chdir(tmp_path)
    (tmp_path / "train.txt").write_text("a.png\nb.png\n")
    fake = FakeTrainModel()
    det = YoloDetector(tiny_config)
    det._model = lambda source: fake
    ts = TrainingSet(tmp_path / "data.yaml", tmp_path / "train.txt", tmp_path / "val.txt", ["gear"])
    out = det.train(ts, Path("reports/x/compare/runs/real/seed0"), seed=3)
    assert Path(fake.args["project"]) == tmp_path / "reports/x/compare/runs/real/seed0"
    assert out.weights == tmp_path / "reports/x/compare/runs/real/seed0/train/weights/best.pt"
    assert fake.args["seed"] == 3 and fake.args["pretrained"] is False and fake.args["amp"] is False
    assert out.images_seen == 2 * tiny_config.detect.epochs


def test_a_run_keeps_the_threads_it_was_given(tiny_config, monkeypatch):
    """ultralytics' select_device() (every train, val and predict call) resets torch to its own
    NUM_THREADS, min(8, cores - 1): runs side by side must keep their share of the cores."""
    import torch

    from pipeline.detect.offline import ensure_offline

    ensure_offline()
    from ultralytics.utils import NUM_THREADS, torch_utils

    monkeypatch.setattr(torch_utils, "NUM_THREADS", NUM_THREADS)  # restored after the test
    before = torch.get_num_threads()
    wanted = NUM_THREADS + 1  # anything but ultralytics' own choice
    try:
        YoloDetector(tiny_config, threads=wanted)._model(tiny_config.detect.model)
        torch_utils.select_device("cpu", verbose=False)
        assert torch.get_num_threads() == wanted
    finally:
        torch.set_num_threads(before)


def test_checkpoints_written_at_the_end_hold_what_ultralytics_writes_each_epoch(tiny_dataset, tmp_path,
                                                                               monkeypatch):
    """Our trainer serialises two checkpoints instead of one per epoch, and its best.pt and last.pt
    hold what stock ultralytics' hold: the EMA weights after the best epoch and after the last
    (validation fitness scripted so that the best epoch is neither the first nor the last). Each
    run's files are checked against the EMA it had after each epoch, so the test holds even where
    two trainings in one process are not bitwise equal (CPU kernels)."""
    import torch
    from ultralytics import YOLO
    from ultralytics.engine.trainer import BaseTrainer
    from ultralytics.models.yolo.detect import DetectionTrainer

    from pipeline.detect.offline import ensure_offline
    from pipeline.detect.yolo import LAST_EVERY, trainer_class

    ensure_offline()
    fitness = [0.1, 0.3, 0.2, 0.25]  # best after epoch 2 of 4 (nbs=8: an optimiser step per batch)
    best_epoch, last_epoch = 1, 3
    assert len(fitness) < LAST_EVERY
    writes: list[int] = []
    stock_save = BaseTrainer.save_model

    def counted(self):
        writes.append(self.epoch)
        return stock_save(self)

    monkeypatch.setattr(BaseTrainer, "save_model", counted)
    emas: list[dict[str, torch.Tensor]] = []  # the live EMA after each epoch's save_model

    def scripted(base: type) -> type:
        class Scripted(base):
            def validate(self):
                metrics, _ = super().validate()
                f = fitness[self.epoch]
                if self.best_fitness is None or self.best_fitness < f:
                    self.best_fitness = f
                return metrics, f

            def save_model(self):
                done = super().save_model()
                emas.append({k: v.detach().clone() for k, v in self.ema.ema.state_dict().items()})
                return done
        return Scripted

    def weights(trainer) -> dict[str, dict[str, torch.Tensor]]:
        w = Path(trainer.save_dir) / "weights"
        ckpts = {n: torch.load(w / n, weights_only=False) for n in ("best.pt", "last.pt")}
        return {n: (c["ema"] or c["model"]).state_dict() for n, c in ckpts.items()}  # stripped: "model"

    def as_written(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: v.half() if v.is_floating_point() else v for k, v in state.items()}  # fp16 on disk

    runs = {}
    for name, base in (("stock", DetectionTrainer), ("ours", trainer_class())):
        writes.clear()
        emas.clear()
        model = YOLO("yolo11n.yaml")
        model.train(trainer=scripted(base), data=str(tiny_dataset.root / "data.yaml"), imgsz=64, epochs=4,
                    batch=8, nbs=8, workers=0, amp=False, device="cpu", plots=False, pretrained=False, seed=0,
                    deterministic=True, project=str(tmp_path), name=name, exist_ok=True, verbose=False)
        assert len(emas) == len(fitness)
        runs[name] = (list(writes), weights(model.trainer), {"best.pt": as_written(emas[best_epoch]),
                                                              "last.pt": as_written(emas[last_epoch])})
    assert runs["stock"][0] == [0, 1, 2, 3]
    assert runs["ours"][0] == [1, 3]  # the best epoch's weights, swapped in at the end, then the last
    for name, (_, files, expected) in runs.items():
        for n in ("best.pt", "last.pt"):
            assert files[n].keys() == expected[n].keys() == runs["stock"][1][n].keys()
            assert all(torch.equal(files[n][k], expected[n][k]) for k in expected[n]), (name, n)
    ours = runs["ours"][1]
    assert not all(torch.equal(ours["best.pt"][k], ours["last.pt"][k]) for k in ours["best.pt"])


def test_a_poisoned_ema_is_resynced_every_epoch_as_stock_save_model_does():
    """Stock save_model replaces a NaN/Inf EMA tensor by the model's each epoch; ours writes no
    checkpoint on most epochs but must change the EMA the same way (else training diverges from
    stock's after the first non-finite average). A tensor non-finite in both is left alone."""
    import copy
    from types import SimpleNamespace

    import torch

    from pipeline.detect.yolo import trainer_class

    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Linear(2, 2))
    ema = copy.deepcopy(model)
    with torch.no_grad():
        ema[0].bias.add_(1.0)  # finite and different from the model: must stay the EMA's
        ema[0].weight[0, 0] = float("nan")
        ema[1].weight[1, 1] = float("inf")
        model[1].weight[1, 1] = float("nan")  # non-finite in both
    finite_bias = ema[0].bias.clone()
    trainer_class()._resync_ema(SimpleNamespace(ema=SimpleNamespace(ema=ema), model=model))
    assert torch.equal(ema[0].weight, model[0].weight)
    assert torch.equal(ema[0].bias, finite_bias)
    assert torch.isinf(ema[1].weight[1, 1]) and torch.equal(ema[1].bias, model[1].bias)


def test_cpu_bf16_forward_runs_the_network_in_bf16_and_the_loss_in_fp32(tiny_dataset):
    import torch
    from ultralytics.nn.tasks import DetectionModel
    from ultralytics.utils import IterableSimpleNamespace
    from ultralytics.utils.torch_utils import unwrap_model

    from pipeline.detect.yolo import cpu_bf16_forward

    torch.manual_seed(0)
    model = DetectionModel("yolo11n.yaml", nc=2, verbose=False).train()
    model.args = IterableSimpleNamespace(box=7.5, cls=0.5, dfl=1.5)  # the loss reads its gains here
    seen: list[torch.dtype] = []
    model.model[0].conv.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    batch = {"img": torch.rand(2, 3, 64, 64), "batch_idx": torch.tensor([0.0, 1.0]),
             "cls": torch.tensor([[0.0], [1.0]]), "bboxes": torch.tensor([[0.5, 0.5, 0.3, 0.3]] * 2)}
    wrapped = cpu_bf16_forward(model)
    assert unwrap_model(wrapped) is model  # ultralytics finds the model for the EMA and checkpoints
    loss, items = wrapped(batch)
    assert seen == [torch.bfloat16]
    assert loss.dtype == torch.float32 and torch.isfinite(loss).all()
    loss.sum().backward()
    grad = model.model[0].conv.weight.grad
    assert model.model[0].conv.weight.dtype == torch.float32 and grad is not None and grad.abs().sum() > 0
    fp32_loss, _ = model(batch)  # the same batch in fp32: close, not equal
    assert not torch.equal(loss, fp32_loss)
    torch.testing.assert_close(loss, fp32_loss, rtol=0.05, atol=0.05)


def test_bf16_training_on_the_cpu_leaves_plain_ultralytics_checkpoints(tiny_dataset, tmp_path):
    """A run with the CPU bf16 trainer writes checkpoints stock ultralytics loads (no trace of the
    wrapper in them), with finite weights that differ from an fp32 run of the same seed."""
    import torch
    from ultralytics import YOLO

    from pipeline.detect.offline import ensure_offline
    from pipeline.detect.yolo import trainer_class

    ensure_offline()
    ema = {}
    for bf16 in (False, True):
        model = YOLO("yolo11n.yaml")
        model.train(trainer=trainer_class(bf16), data=str(tiny_dataset.root / "data.yaml"), imgsz=64, epochs=2,
                    batch=8, nbs=8, workers=0, amp=False, device="cpu", plots=False, pretrained=False, seed=0,
                    deterministic=True, project=str(tmp_path), name=str(bf16), exist_ok=True, verbose=False)
        assert type(model.trainer.model).__name__ == ("CpuBf16Forward" if bf16 else "DetectionModel")
        ckpt = torch.load(Path(model.trainer.save_dir) / "weights" / "last.pt", weights_only=False)
        saved = ckpt["ema"] or ckpt["model"]  # stripped at the end: the EMA moves to "model"
        assert type(saved).__name__ == "DetectionModel"
        ema[bf16] = saved.float().state_dict()
        assert all(torch.isfinite(v).all() for v in ema[bf16].values())
        assert YOLO(str(Path(model.trainer.save_dir) / "weights" / "best.pt")).predict(
            str(sorted((tiny_dataset.root / "images" / "B" / "test").iterdir())[0]), verbose=False)
    assert any(not torch.equal(ema[False][k], ema[True][k]) for k in ema[False])


def test_the_last_epochs_train_on_the_finetuning_list(tiny_config, tiny_dataset, fake_augmented, tmp_path):
    """real+synthetic with real_finetune_epochs=1 of 3: one run (one results.csv of 3 epochs) whose
    last epoch draws its batches from real B alone, mosaic closed as in any last epoch."""
    from pipeline.detect.arms import build_training_set, epoch_budget, plan_arms

    tiny_config.detect.epochs, tiny_config.detect.real_finetune_epochs = 3, 1
    tiny_config.detect.extra_args = {"close_mosaic": 2}  # closed one epoch before the swap: kept closed
    plans = plan_arms(tiny_config, tiny_dataset, fake_augmented)
    plan = next(p for p in plans if p.name == "real+synthetic")
    ts = build_training_set(plan, tiny_config, tiny_dataset, epoch_budget(tiny_config, plans), tmp_path / "d", seed=0)
    det = YoloDetector(tiny_config)
    seen = []
    model = det._model(tiny_config.detect.model)
    model.add_callback("on_train_epoch_end", lambda t: seen.append(
        (t.epoch, {Path(f).parent.parent.name for f in t.train_loader.dataset.im_files}, _mosaic(t.train_loader.dataset) > 0)))
    det._model = lambda source: model
    out = det.train(ts, tmp_path / "run", seed=0)
    assert out.images_seen == 3 * len(ts.train_list.read_text().splitlines())
    assert seen == [(0, {"B_train", "synthetic"}, True), (1, {"B_train", "synthetic"}, False),
                    (2, {"B_train"}, False)]


def test_a_finetuning_list_must_match_the_runs_budget(tmp_path):
    from types import SimpleNamespace

    from pipeline.detect.yolo import finetune_on

    trainer = SimpleNamespace(epoch=4, epochs=5, batch_size=2, world_size=0, train_loader=_Loader(3),
                              get_dataloader=lambda *a, **k: _Loader(2))
    with pytest.raises(DetectorError, match="real.txt: 4 images make 2 batches"):
        finetune_on(tmp_path / "real.txt", 1)(trainer)
    trainer.epoch = 3  # before the fine-tuning epochs: nothing happens
    finetune_on(tmp_path / "real.txt", 1)(trainer)


def _mosaic(dataset) -> float:
    """The probability of the Mosaic step in an ultralytics dataset's transforms (0: closed)."""
    def walk(t):
        if type(t).__name__ == "Mosaic":
            return t.p
        return next((p for c in getattr(t, "transforms", []) if (p := walk(c)) is not None), None)

    return walk(dataset.transforms)


class _Loader:
    def __init__(self, n: int):
        self.n, self.dataset = n, [0] * (2 * n)

    def __len__(self) -> int:
        return self.n
