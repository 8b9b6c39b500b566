"""Each arm's training set, under the equal-budget rule.

Arms add images to the scarce labelled real B train set:
    real              nothing (the baseline)
    real+replica      the raw labelled A photos (control: is it just more boxes?)
    real+replica-aug  the A photos with classical photometric randomisation toward metal, no GAN
                      (pipeline.synth.randomize; drawn anew per detector seed): the cheap rival
    real+synthetic    the accepted A->B translations with transferred boxes (the method)
    synthetic->real   pre-train on the synthetic images alone, then fine-tune on real B
                      (`detect.pretrain_fraction` of the epochs, then the rest)
    oracle            extra real labelled B (demo data only)

Every arm sees the same number of images per epoch N, for the same number of epochs. The
real-only arm repeats real B to fill N; the mixed arms oversample real B x`detect.real_oversample`
so they do not see the real photos less often than the baseline and lose for that reason alone.
N is `detect.images_per_epoch`, or the largest arm's natural size (real x oversample + extra). An
epoch is a text file of image paths with repeats, which ultralytics reads as its train split. An
arm trains in one phase, or two for synthetic->real (each phase its own epoch list of N images).
With `detect.real_finetune_epochs` = k, the arms that add replica or synthetic images spend the
last k epochs of their one phase on real B alone (N images, the learning rate decaying on).
"""

from __future__ import annotations

import math
import random
import shutil
from dataclasses import dataclass
from pathlib import Path

import yaml

from pipeline.config import RunConfig
from pipeline.data.coco import CocoSet
from pipeline.data.formats import write_yolo
from pipeline.data.version import DatasetVersion
from pipeline.detect.arm_specs import ARM_SPECS
from pipeline.detect.base import TrainingSet
from pipeline.store import atomic_write_text



@dataclass(frozen=True)
class ImageSet:
    """A labelled image set: COCO (file_name relative to root) plus the folder it lives in."""

    label: str  # e.g. "B_train", "A_train", "synthetic"
    coco: CocoSet
    root: Path

    def __len__(self) -> int:
        return len(self.coco.images)


@dataclass(frozen=True)
class ArmPlan:
    """What one arm trains on; `unavailable` says why it cannot run on these inputs.

    extra: images mixed with real B in every epoch; randomize: extra is randomised toward metal
    at build time; pretrain: images of a first phase trained alone (then real B alone)."""

    name: str
    real: ImageSet | None
    extra: ImageSet | None
    unavailable: str | None = None
    randomize: bool = False
    pretrain: ImageSet | None = None

    @property
    def mixed(self) -> bool:
        return self.extra is not None

    def natural_size(self, oversample: int, variants: int = 1) -> int:
        """Images per epoch this arm would see without the budget: real x k + extra (a pre-training
        set counts as extra would: it must not make the budget smaller than the mixed arm's)."""
        if self.real is None:
            return 0
        if self.pretrain is not None:
            return len(self.real) * oversample + len(self.pretrain)
        extra = len(self.extra) * (variants if self.randomize else 1) if self.extra else 0
        return len(self.real) * (oversample if self.mixed else 1) + extra

    @property
    def train_images(self) -> int:
        """Distinct training images (randomised copies counted once per source photo)."""
        return sum(len(s) for s in (self.real, self.extra, self.pretrain) if s is not None)

    @property
    def uses_augmented(self) -> bool:
        return ARM_SPECS[self.name].uses_synthetic


@dataclass(frozen=True)
class Phase:
    """One training phase of an arm: its data and how many epochs."""

    name: str  # "train", or "pretrain" / "finetune"
    data: TrainingSet
    epochs: int


def slug(arm: str) -> str:
    """A folder name for an arm: 'real+synthetic' -> 'real-synthetic'."""
    return arm.replace("+", "-")


# ------------------------------------------------------------------------------------- planning
def plan_arms(cfg: RunConfig, dataset: DatasetVersion, augmented: DatasetVersion | None) -> list[ArmPlan]:
    """One plan per configured arm, in config order. Arms whose data is missing are kept with
    the reason in `unavailable` so the comparison can report them instead of dropping them."""
    if not dataset.has("B", "train"):
        raise ValueError(f"{dataset.root}: no labelled real B train split (annotations/B_train.json)")
    real = ImageSet("B_train", dataset.coco("B", "train"), dataset.root)
    if not real.coco.images:
        raise ValueError(f"{dataset.annotation_path('B', 'train')}: no images in the real B train split")
    plans = []
    for arm in cfg.detect.arms:
        spec = ARM_SPECS[arm]
        extra, why = None, None
        if spec.extra == "replicas":
            extra, why = _split_or_reason(dataset, "A", "train", "no labelled A photos")
        elif spec.extra == "oracle":
            extra, why = _split_or_reason(dataset, "B", "oracle",
                                          "no extra labelled B (only demo data has an oracle split)")
        elif spec.extra == "synthetic":
            if augmented is None:
                why = "no augmented dataset given (run synthesis first)"
            elif not augmented.has("B", "train"):
                why = f"{augmented.root}: no annotations/B_train.json"
            else:
                syn = augmented.coco("B", "train").subset(lambda im: bool(im.synthetic))
                if syn.category_names != real.coco.category_names:
                    why = (f"{augmented.root}: categories {syn.category_names} "
                           f"differ from {real.coco.category_names}")
                elif not syn.images:
                    why = f"{augmented.root}: no accepted synthetic images"
                else:
                    syn, why = most_realistic(syn, cfg.detect.synthetic_keep, augmented.root)
                    extra = ImageSet("synthetic", syn, augmented.root) if why is None else None
        if why is not None:
            plans.append(ArmPlan(arm, None, None, unavailable=why))
        elif spec.pretrain:
            plans.append(ArmPlan(arm, real, None, pretrain=extra))
        else:
            plans.append(ArmPlan(arm, real, extra, randomize=spec.randomize))
    return plans


def most_realistic(syn: CocoSet, share: float, root: Path) -> tuple[CocoSet, str | None]:
    """The `share` of synthetic images the realism critic found most like real metal (its P(real)
    recorded by the gate; ties keep their order), or a reason why they cannot be ranked."""
    if share >= 1.0:
        return syn, None
    scores = {im.id: (im.extra.get("gate") or {}).get("realism") for im in syn.images}
    if any(v is None for v in scores.values()):
        return syn, (f"{root}: detect.synthetic_keep={share} ranks by realism, but the gate recorded no realism "
                     "score (the translator has no realism critic: gan.realism_steps > 0 trains one)")
    n = max(1, math.ceil(share * len(syn.images)))
    keep = {im.id for im in sorted(syn.images, key=lambda im: -scores[im.id])[:n]}
    return syn.subset(lambda im: im.id in keep), None


def _split_or_reason(dataset: DatasetVersion, domain: str, split: str,
                     missing: str) -> tuple[ImageSet | None, str | None]:
    if not dataset.has(domain, split):
        return None, f"{missing}: {dataset.root} has no {domain}_{split} split"
    coco = dataset.coco(domain, split)
    if not coco.images:
        return None, f"{missing}: {domain}_{split} is empty"
    return ImageSet(f"{domain}_{split}", coco, dataset.root), None


def epoch_budget(cfg: RunConfig, plans: list[ArmPlan]) -> int:
    """Images per epoch N shared by every arm."""
    if cfg.detect.images_per_epoch is not None:
        return cfg.detect.images_per_epoch
    sizes = [p.natural_size(cfg.detect.real_oversample, cfg.detect.replica_aug_variants)
             for p in plans if p.unavailable is None]
    if not sizes:
        raise ValueError("no arm can run: " + "; ".join(f"{p.name}: {p.unavailable}" for p in plans))
    return max(sizes)


def epoch_list(real: list[Path], extra: list[Path], oversample: int, n: int, seed: int) -> list[Path]:
    """N image paths for one epoch: cycles of (real x oversample + extra) — just real when there
    is no extra — repeated whole, the last cycle a seeded sample without replacement."""
    if not real:
        raise ValueError("empty real training set")
    cycle = list(real) * (oversample if extra else 1) + list(extra)
    reps, rest = divmod(n, len(cycle))
    rng = random.Random(seed)
    return cycle * reps + rng.sample(cycle, rest)


# ------------------------------------------------------------------------------------- on disk
def build_phases(plan: ArmPlan, cfg: RunConfig, dataset: DatasetVersion, n_per_epoch: int, out_dir: Path,
                 seed: int) -> list[Phase]:
    """Write the arm's YOLO layout under out_dir (hardlinks to the dataset's images; randomised
    copies for real+replica-aug) and one epoch list, val list and data.yaml per phase. Each run
    gets its own layout because ultralytics writes label caches beside the labels, and arms run
    side by side. Every phase sees n_per_epoch images per epoch; the phases' epochs add up to
    detect.epochs."""
    if plan.unavailable is not None or plan.real is None:
        raise ValueError(f"arm {plan.name} cannot run: {plan.unavailable}")
    out_dir = Path(out_dir)
    if out_dir.exists():
        shutil.rmtree(out_dir)  # a half-written layout from an interrupted run
    names = plan.real.coco.category_names
    real = write_yolo(plan.real.coco, plan.real.root, out_dir / "train" / plan.real.label)
    val = write_yolo(dataset.coco("B", "val"), dataset.root, out_dir / "val")
    val_list = atomic_write_text(out_dir / "val.txt", "".join(f"{p}\n" for p in val))

    def write_list(path: Path, real_paths: list[Path], extra_paths: list[Path]) -> Path:
        paths = epoch_list(real_paths, extra_paths, cfg.detect.real_oversample, n_per_epoch, seed)
        return atomic_write_text(path, "".join(f"{p}\n" for p in paths))

    def phase(name: str, real_paths: list[Path], extra_paths: list[Path], epochs: int,
              finetune_epochs: int = 0) -> Phase:
        stem = "" if name in ("train", "finetune") else f"{name}_"  # the last phase keeps the usual names
        train_list = write_list(out_dir / f"{stem}train.txt", real_paths, extra_paths)
        data_yaml = write_data_yaml(out_dir / f"{stem}data.yaml", out_dir, train_list, val_list, names)
        finetune_list = write_list(out_dir / "real_train.txt", real_paths, []) if finetune_epochs else None
        return Phase(name, TrainingSet(data_yaml=data_yaml, train_list=train_list, val_list=val_list, names=names,
                                       finetune_list=finetune_list, finetune_epochs=finetune_epochs), epochs)

    if plan.pretrain is not None:
        first = max(1, min(cfg.detect.epochs - 1, round(cfg.detect.epochs * cfg.detect.pretrain_fraction)))
        syn = write_yolo(plan.pretrain.coco, plan.pretrain.root, out_dir / "train" / plan.pretrain.label)
        # the pre-training epochs hold synthetic images alone (cycled to N), then real B alone
        return [phase("pretrain", syn, [], first), phase("finetune", real, [], cfg.detect.epochs - first)]
    extra: list[Path] = []
    if plan.extra is not None:
        coco, root, label = plan.extra.coco, plan.extra.root, plan.extra.label
        if plan.randomize:
            from pipeline.synth.randomize import randomize_set

            root, label = out_dir / "randomized", f"{label}_randomized"
            coco = randomize_set(plan.extra.coco, plan.extra.root, root, seed=seed,
                                 variants=cfg.detect.replica_aug_variants)
        extra = write_yolo(coco, root, out_dir / "train" / label)
    finetune = cfg.detect.real_finetune_epochs if extra and ARM_SPECS[plan.name].finetunes_on_real else 0
    return [phase("train", real, extra, cfg.detect.epochs, finetune)]


def build_training_set(plan: ArmPlan, cfg: RunConfig, dataset: DatasetVersion, n_per_epoch: int, out_dir: Path,
                       seed: int) -> TrainingSet:
    """The last phase's training set (the only one, but for synthetic->real): see build_phases."""
    return build_phases(plan, cfg, dataset, n_per_epoch, out_dir, seed)[-1].data


def write_eval_set(dataset: DatasetVersion, domain: str, split: str, out_dir: Path) -> Path:
    """A YOLO layout + data.yaml whose `val` is the given split (for the backend's own val)."""
    coco = dataset.coco(domain, split)
    paths = write_yolo(coco, dataset.root, out_dir / split)
    lst = atomic_write_text(out_dir / f"{split}.txt", "".join(f"{p}\n" for p in paths))
    return write_data_yaml(out_dir / f"{split}.yaml", out_dir, lst, lst, coco.category_names)


def write_data_yaml(path: Path, root: Path, train: Path, val: Path, names: list[str]) -> Path:
    doc = {"path": str(root.resolve()), "train": str(train.resolve()), "val": str(val.resolve()),
           "names": {i: n for i, n in enumerate(names)}}
    return atomic_write_text(path, yaml.safe_dump(doc, sort_keys=False))
