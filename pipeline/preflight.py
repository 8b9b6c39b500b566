"""Pre-flight: is there enough data for the requested run? Checked before anything trains.

Every minimum a later stage needs is checked here, right after ingest, so a run on too few photos
stops in a second with one message that names each shortfall, its numbers and the setting to
change, instead of training a CycleGAN for minutes and then failing deep inside a metric:
    CycleGAN training     >= 1 labelled A photo (A_train) and >= 1 real B photo (B_unlabelled + B_train)
    quality metrics       >= 4 A photos and >= 4 held-out real B photos (B_val, else B_unlabelled):
                          a cross-fitted two-sample test needs two photos per set and fold
    realism critic        >= 4 real B training photos and >= 4 A photos (gan.realism_steps > 0)
    detector comparison   >= 1 labelled real B train photo, >= 1 B val photo (model selection) and
                          a test split of >= report.min_test_images photos / report.min_test_boxes boxes
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipeline.config import RunConfig
    from pipeline.data.version import DatasetVersion

MIN_CRITIC_IMAGES = 4  # pipeline.gan.realism: two_sample_test / train_realism_critic


class PreflightError(ValueError):
    """The data cannot support the requested run; the message lists every shortfall."""


@dataclass(frozen=True)
class Shortfall:
    what: str  # "B test split: 6 photos"
    need: str  # "report.min_test_images is 30"
    fix: str  # "add held-out metal photos or lower report.min_test_images"

    def __str__(self) -> str:
        return f"{self.what} ({self.need}): {self.fix}"


def _count(dataset: "DatasetVersion", domain: str, split: str) -> tuple[int, int]:
    """(images, boxes) of one split; (0, 0) when the split does not exist."""
    if not dataset.has(domain, split):
        return 0, 0
    coco = dataset.coco(domain, split)
    return len(coco.images), len(coco.annotations)


def shortfalls(cfg: "RunConfig", dataset: "DatasetVersion", *, gan: bool = True,
               compare: bool = True) -> list[Shortfall]:
    """Every minimum the configured stages need that this dataset version misses."""
    out: list[Shortfall] = []
    a_train, _ = _count(dataset, "A", "train")
    b_unl, _ = _count(dataset, "B", "unlabelled")
    b_train, _ = _count(dataset, "B", "train")
    b_val, _ = _count(dataset, "B", "val")
    b_test, test_boxes = _count(dataset, "B", "test")
    photos = "add photos to data.a / data.b"
    if gan:
        if a_train < 1:
            out.append(Shortfall("A train split: 0 photos", "CycleGAN training needs >= 1 labelled replica photo",
                                 "add labelled replica photos to data.a"))
        if b_unl + b_train < 1:
            out.append(Shortfall("B unlabelled + train: 0 photos", "CycleGAN training needs >= 1 metal photo",
                                 "add metal photos to data.b (unlabelled ones count)"))
        b_ref, ref_name = (b_val, "B val") if b_val else (b_unl, "B unlabelled")
        n = cfg.gan.quality_images
        if min(a_train, n) < MIN_CRITIC_IMAGES or min(b_ref, n) < MIN_CRITIC_IMAGES:
            out.append(Shortfall(f"quality metrics: {min(a_train, n)} A and {min(b_ref, n)} held-out real B "
                                 f"({ref_name}) photos",
                                 f"the two-sample test needs >= {MIN_CRITIC_IMAGES} of each, "
                                 f"gan.quality_images is {n}",
                                 f"{photos}, raise data.split.val, or raise gan.quality_images to >= "
                                 f"{MIN_CRITIC_IMAGES}"))
        realism = 2 * cfg.gan.quality_steps if cfg.gan.realism_steps is None else cfg.gan.realism_steps
        if realism > 0 and min(a_train, b_unl + b_train) < MIN_CRITIC_IMAGES:
            out.append(Shortfall(f"realism critic: {a_train} A and {b_unl + b_train} real B training photos",
                                 f"it needs >= {MIN_CRITIC_IMAGES} of each",
                                 f"{photos} or set gan.realism_steps=0 (no critic: the gate's realism "
                                 "check stays off)"))
    if compare:
        if b_train < 1:
            out.append(Shortfall("B train split: 0 labelled photos", "every detector arm trains on real B",
                                 "add labelled metal photos or raise data.split.train"))
        if b_val < 1:
            out.append(Shortfall("B val split: 0 photos", "the detector selects its checkpoint on B val",
                                 "add labelled metal photos or raise data.split.val"))
        r = cfg.report
        if b_test < r.min_test_images or test_boxes < r.min_test_boxes:
            out.append(Shortfall(f"B test split: {b_test} photos, {test_boxes} boxes",
                                 f"report.min_test_images is {r.min_test_images}, report.min_test_boxes is "
                                 f"{r.min_test_boxes}: a smaller test cannot carry a verdict",
                                 "add held-out labelled metal photos (or raise data.split.test); lower "
                                 "report.min_test_images / report.min_test_boxes only knowingly"))
    return out


def preflight(cfg: "RunConfig", dataset: "DatasetVersion", *, gan: bool = True, compare: bool = True) -> None:
    """Raise PreflightError naming every shortfall (nothing has been trained yet)."""
    found = shortfalls(cfg, dataset, gan=gan, compare=compare)
    if found:
        lines = "\n".join(f"  - {s}" for s in found)
        raise PreflightError(f"pre-flight: {dataset.root} is too small for this run (nothing was trained):\n"
                             f"{lines}")
