"""The detector interface the comparison talks to, so backends can be swapped.

A backend trains on a YOLO-layout training set (a `data.yaml` whose `train` is a text file of
image paths, repeats allowed, with labels beside them under `labels/`) and predicts COCO results.
YOLO (ultralytics, AGPL-3.0) is the default; a permissively licensed detector such as
torchvision's Faster R-CNN can be added by subclassing `Detector` and naming it in
`backends.BACKENDS`, without touching `arms.py`, `evaluate.py` or `compare.py`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class TrainingSet:
    """One arm's training data in YOLO layout.

    data_yaml: ultralytics data file (path, train, val, names).
    train_list: text file, one absolute image path per line; one pass over it is one epoch.
    val_list: text file of the validation images (real B val).
    names: class names; class index i is category id i+1 in the dataset's COCO files.
    finetune_list, finetune_epochs: the last `finetune_epochs` epochs pass over this list instead
    (as many images as train_list: real B alone), within the same run and learning-rate schedule.
    """

    data_yaml: Path
    train_list: Path
    val_list: Path
    names: list[str]
    finetune_list: Path | None = None
    finetune_epochs: int = 0


@dataclass(frozen=True)
class TrainOutcome:
    weights: Path  # checkpoint to evaluate (best on val)
    results_csv: Path | None  # per-epoch curves (losses, val metrics)
    train_seconds: float  # wall clock
    images_seen: int  # images per epoch x epochs actually run
    cpu_seconds: float | None = None  # process CPU time: throughput that a busy machine does not skew
    last_weights: Path | None = None  # the final epoch's checkpoint (a next phase starts from it)

    def after(self, earlier: "TrainOutcome") -> "TrainOutcome":
        """This phase's outcome with an earlier phase's cost added (time and images seen)."""
        cpu = None if self.cpu_seconds is None or earlier.cpu_seconds is None else self.cpu_seconds + earlier.cpu_seconds
        return TrainOutcome(self.weights, self.results_csv, self.train_seconds + earlier.train_seconds,
                            self.images_seen + earlier.images_seen, cpu, self.last_weights)


class Detector(ABC):
    """Train on a `TrainingSet`, predict to COCO results. Implementations must stay offline."""

    name: str = "detector"

    @abstractmethod
    def train(self, data: TrainingSet, out_dir: Path, *, seed: int, epochs: int | None = None,
              init: Path | None = None, name: str = "train") -> TrainOutcome:
        """Train from scratch (or configured weights, or `init`: an earlier phase's checkpoint) with
        this seed for `epochs` (None: detect.epochs); write everything under out_dir/name."""

    @abstractmethod
    def predict(self, weights: Path, images: list[tuple[int, Path]],
                category_ids: list[int]) -> list[dict[str, Any]]:
        """COCO results [{image_id, category_id, bbox xywh pixels, score}] for (image_id, path) pairs;
        class index i maps to category_ids[i]."""

    def identity(self) -> dict[str, Any]:
        """What decides a trained model besides the config: the backend library's version and the
        sha256 of any start weights. It goes into every run's cache key and into metrics.json."""
        return {"backend": self.name}

    def self_check(self, weights: Path, data_yaml: Path, out_dir: Path) -> dict[str, float] | None:
        """The backend's own mAP on data_yaml's `val` split ({"map", "map50"}), as a cross-check of
        our pycocotools numbers; None when the backend has no evaluator of its own."""
        return None

