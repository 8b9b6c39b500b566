"""The ultralytics YOLO backend (AGPL-3.0): train from `yolo11n.yaml` (or local .pt weights),
predict to COCO results, and ultralytics' own val mAP as a cross-check.

Every arm gets the same call: same model, epochs, imgsz, batch, augmentation and seed; only the
training list differs. Runs write under the arm's run directory, never ./runs.
"""

from __future__ import annotations

import csv
import functools
import time
from pathlib import Path
from typing import Any

from pipeline.config import RunConfig
from pipeline.detect.base import Detector, TrainingSet, TrainOutcome
from pipeline.detect.offline import amp_setting, ensure_offline, train_precision


class DetectorError(RuntimeError):
    """Training or prediction could not run (bad weights path, empty training set...)."""


LAST_EVERY = 10  # epochs between the last.pt writes that ultralytics' NaN recovery falls back to


@functools.cache
def trainer_class(cpu_bf16: bool = False) -> type:
    """ultralytics' DetectionTrainer, writing its checkpoints when they are needed instead of after
    every epoch. Stock ultralytics serialises a checkpoint each epoch (a half-precision copy of the
    EMA model, the optimiser state and results.csv) for last.pt, and best.pt whenever the
    validation fitness ties or beats the best so far. Here a new best is kept in memory (a copy of
    the EMA weights), last.pt is written every `LAST_EVERY` epochs (what NaN recovery reloads), and
    the final epoch writes best.pt and last.pt as stock ultralytics would have left them: the same
    EMA weights in each, so the same predictions. About 2% of a run: 15 demo epochs on one thread,
    two runs side by side, twice: 107.4 and 103.0 s stock, 105.7 and 100.2 s here.

    `cpu_bf16`: the network's forward and backward run under CPU bf16 autocast (oneDNN's AMX
    kernels) and the loss in fp32, as `CpuBf16Forward` wraps it; ultralytics autocasts on CUDA only.
    Weights, optimiser and EMA stay fp32; validation and prediction run in fp32."""
    from ultralytics.models.yolo.detect import DetectionTrainer

    class Trainer(DetectionTrainer):
        _best: tuple[int, dict, Any, dict] | None = None

        def _setup_train(self):
            super()._setup_train()
            if cpu_bf16:  # after the optimiser and EMA are built on the bare model
                self.model = cpu_bf16_forward(self.model)

        def save_model(self) -> bool:
            self._resync_ema()
            if self.stop or self.epoch + 1 >= self.epochs:  # the last epoch (or an early stop)
                return self._save_final()
            if self.best_fitness == self.fitness:
                self._best = (self.epoch, dict(self.metrics), self.fitness, self._ema_weights())
            if (self.epoch + 1) % LAST_EVERY == 0:
                return super().save_model()
            return True

        def _save_final(self) -> bool:
            best = self._best
            if best is not None and self.fitness != self.best_fitness:  # best.pt from the earlier best
                ema, now, live = self.ema.ema, (self.epoch, self.metrics, self.fitness), self._ema_weights()
                self.epoch, self.metrics, self.fitness, state = best
                ema.load_state_dict(state)
                try:
                    super().save_model()  # writes best.pt (fitness == best) and a last.pt, replaced below
                finally:
                    ema.load_state_dict(live)
                    self.epoch, self.metrics, self.fitness = now
            return super().save_model()

        def _resync_ema(self) -> None:
            """What stock save_model does to the live EMA every epoch, checkpoint or not: a NaN/Inf
            tensor in the running average is replaced by the model's where that one is finite.
            Done every epoch here too, so training takes the same path on the epochs that write
            nothing."""
            import torch
            from ultralytics.utils.torch_utils import unwrap_model

            ema = self.ema.ema.state_dict()
            if all(torch.isfinite(v).all() for v in ema.values() if isinstance(v, torch.Tensor)):
                return
            live = unwrap_model(self.model).state_dict()
            for k, v in ema.items():
                if isinstance(v, torch.Tensor) and not torch.isfinite(v).all() and torch.isfinite(live[k]).all():
                    v.copy_(live[k])

        def _ema_weights(self) -> dict:
            return {k: v.detach().clone() for k, v in self.ema.ema.state_dict().items()}

    return Trainer


def cpu_bf16_forward(model):
    """`model` wrapped so that a training call, model(batch) -> (loss, loss items), runs the network
    in bf16 on the CPU and the loss in fp32. The wrapper keeps the model as `.module`, as DDP does,
    so ultralytics' unwrap_model() finds it for the EMA, checkpoints and NaN recovery."""
    import torch
    from torch.utils._pytree import tree_map

    def fp32(t):
        return t.float() if isinstance(t, torch.Tensor) and t.is_floating_point() else t

    class CpuBf16Forward(torch.nn.Module):
        def __init__(self, module: torch.nn.Module):
            super().__init__()
            self.module = module

        def forward(self, batch: dict):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                preds = self.module(batch["img"])
            return self.module.loss(batch, tree_map(fp32, preds))

    return CpuBf16Forward(model)


def finetune_on(train_list: Path, epochs: int):
    """An `on_train_epoch_start` callback: from epoch `trainer.epochs - epochs` on, the trainer's
    batches come from `train_list` (the same number of images as its own list, so the same batches
    per epoch) instead of its train split. The optimiser, EMA, learning-rate schedule, augmentation
    and mosaic closing carry on as they were: one run whose last epochs see other images."""

    def swap(trainer) -> None:
        if getattr(trainer, "finetuning", False) or trainer.epoch < trainer.epochs - epochs:
            return
        from ultralytics.utils import LOCAL_RANK

        old = trainer.train_loader
        new = trainer.get_dataloader(str(train_list), batch_size=trainer.batch_size // max(trainer.world_size, 1),
                                     rank=LOCAL_RANK, mode="train")
        if len(new) != len(old):
            raise DetectorError(f"{train_list}: {len(new.dataset)} images make {len(new)} batches per epoch, "
                                f"the train split {len(old)}: a fine-tuning list must match its run's budget")
        trainer.train_loader, trainer.finetuning = new, True
        if hasattr(old, "close"):
            old.close()
        if trainer.args.close_mosaic and trainer.epoch > trainer.epochs - trainer.args.close_mosaic:
            trainer._close_dataloader_mosaic()  # the loop closed mosaic on the loader just replaced
            new.reset()  # as the loop does after closing: workers restart with the closed dataset

    return swap


def resolve_device(device: str) -> str:
    """'auto' -> 'cuda:0' when CUDA is available, else 'cpu'; explicit values pass through."""
    if device != "auto":
        return device
    import torch

    return "cuda:0" if torch.cuda.is_available() else "cpu"


class YoloDetector(Detector):
    name = "yolo"

    def __init__(self, cfg: RunConfig, *, threads: int | None = None):
        self.cfg = cfg
        self.d = cfg.detect
        self.device = resolve_device(cfg.runtime.device)
        self.precision = train_precision(self.device, self.d.amp)  # bf16 | fp32
        self.threads = threads

    # ------------------------------------------------------------------------------------ model
    def _model(self, source: str | Path):
        ensure_offline()
        if self.threads and self.device == "cpu":
            import torch
            from ultralytics.utils import torch_utils

            torch.set_num_threads(self.threads)  # arms side by side: split the cores, don't fight
            # ...and keep them split: every train/val/predict call's select_device() resets torch to
            # ultralytics' NUM_THREADS, min(8, cores - 1), whatever the run was given
            torch_utils.NUM_THREADS = self.threads
        from ultralytics import YOLO

        return YOLO(str(source), task="detect")

    def _start_point(self) -> tuple[str, bool]:
        """(model source, pretrained flag): local .pt weights when configured, else the YAML."""
        if self.d.weights is not None:
            w = Path(self.d.weights)
            if not w.is_file():
                raise DetectorError(f"detect.weights {w}: file not found "
                                    "(only local weights are used; nothing is downloaded)")
            return str(w), True
        if not self.d.model.endswith((".yaml", ".yml")):
            raise DetectorError(
                f"detect.model {self.d.model!r}: expected a model YAML such as yolo11n.yaml "
                "(set detect.weights to start from a local .pt file)"
            )
        return self.d.model, False

    def identity(self) -> dict[str, Any]:
        """{"backend", "model" (YAML or weights path), "weights_sha256" (None for a YAML start),
        "ultralytics" (version), "precision" (bf16 | fp32, as `detect.amp` resolves here)}: a
        retrained .pt under the same path, another ultralytics, or bf16 where fp32 ran is another
        experiment. Raises DetectorError when the configured start point is unusable."""
        from importlib.metadata import PackageNotFoundError, version

        from pipeline.store import sha256_file

        source, pretrained = self._start_point()
        try:  # metadata, not an import: importing ultralytics here would skip ensure_offline()
            ul = version("ultralytics")
        except PackageNotFoundError:
            ul = None
        return {"backend": self.name, "model": source,
                "weights_sha256": sha256_file(source) if pretrained else None, "ultralytics": ul,
                "precision": self.precision}

    # ------------------------------------------------------------------------------------ train
    def train(self, data: TrainingSet, out_dir: Path, *, seed: int, epochs: int | None = None,
              init: Path | None = None, name: str = "train") -> TrainOutcome:
        source, pretrained = (str(init), True) if init is not None else self._start_point()
        model = self._model(source)
        n_per_epoch = sum(1 for line in data.train_list.read_text().splitlines() if line.strip())
        if n_per_epoch == 0:
            raise DetectorError(f"{data.train_list}: empty training list")
        args: dict[str, Any] = dict(
            data=str(data.data_yaml),
            epochs=epochs or self.d.epochs,
            imgsz=self.d.imgsz,
            batch=self.d.batch,
            device=self.device,
            seed=seed,
            deterministic=True,
            workers=self.d.workers,
            patience=self.d.patience,
            pretrained=pretrained,
            amp=amp_setting(self.device, self.d.amp),
            # absolute: ultralytics puts a relative project under its runs_dir (./runs/detect/...)
            project=str(Path(out_dir).resolve()),
            name=name,
            exist_ok=True,
            plots=False,  # results.csv is written regardless; plots cost CPU time
            val=True,
            cache=False,
            verbose=False,
        )
        args.update(self.d.extra_args)  # same extra args for every arm
        if data.finetune_list is not None and data.finetune_epochs:
            model.add_callback("on_train_epoch_start", finetune_on(data.finetune_list, data.finetune_epochs))
        t0, c0 = time.perf_counter(), time.process_time()
        cpu_bf16 = self.device == "cpu" and self.precision == "bf16"
        model.train(trainer=trainer_class(cpu_bf16), **args)
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
        run = Path(model.trainer.save_dir)
        weights = run / "weights" / "best.pt"
        if not weights.is_file():
            weights = run / "weights" / "last.pt"
        if not weights.is_file():
            raise DetectorError(f"{run}: training finished without weights")
        results_csv = run / "results.csv"
        epochs_run = _epochs_in(results_csv) or epochs or self.d.epochs
        last = run / "weights" / "last.pt"
        return TrainOutcome(
            weights=weights,
            results_csv=results_csv if results_csv.is_file() else None,
            train_seconds=seconds,
            images_seen=n_per_epoch * epochs_run,
            cpu_seconds=cpu,
            last_weights=last if last.is_file() else weights,
        )

    # ---------------------------------------------------------------------------------- predict
    def predict(self, weights: Path, images: list[tuple[int, Path]],
                category_ids: list[int]) -> list[dict[str, Any]]:
        model = self._model(weights)
        out: list[dict[str, Any]] = []
        step = max(1, self.d.batch)
        for i in range(0, len(images), step):
            chunk = images[i : i + step]
            results = model.predict(
                [str(p) for _, p in chunk],
                conf=self.d.conf,
                iou=self.d.nms_iou,
                imgsz=self.d.imgsz,
                max_det=self.d.max_det,
                device=self.device,
                verbose=False,
                save=False,
            )
            for (image_id, _), r in zip(chunk, results):
                boxes = r.boxes
                xyxy = boxes.xyxy.cpu().numpy()
                for (x1, y1, x2, y2), c, s in zip(xyxy, boxes.cls.cpu().numpy(), boxes.conf.cpu().numpy()):
                    out.append(
                        {
                            "image_id": int(image_id),
                            "category_id": int(category_ids[int(c)]),
                            "bbox": [round(float(x1), 2), round(float(y1), 2),
                                     round(float(x2 - x1), 2), round(float(y2 - y1), 2)],
                            "score": round(float(s), 5),
                        }
                    )
        return out

    def self_check(self, weights: Path, data_yaml: Path, out_dir: Path) -> dict[str, float] | None:
        """ultralytics' own mAP on data_yaml's `val` entry (we point it at the test split)."""
        model = self._model(weights)
        m = model.val(
            data=str(data_yaml),
            split="val",
            imgsz=self.d.imgsz,
            batch=self.d.batch,
            conf=self.d.conf,
            iou=self.d.nms_iou,
            max_det=self.d.max_det,
            device=self.device,
            workers=self.d.workers,
            plots=False,
            project=str(Path(out_dir).resolve()),
            name="selfcheck",
            exist_ok=True,
            verbose=False,
        )
        return {"map": float(m.box.map), "map50": float(m.box.map50)}


def _epochs_in(results_csv: Path) -> int:
    """Number of epochs recorded in ultralytics' results.csv (0 when missing)."""
    if not results_csv.is_file():
        return 0
    with open(results_csv, newline="") as f:
        return sum(1 for _ in csv.DictReader(f))
