"""Work plan of a synthesis run: which A images get how many variants from which generator.

A work item is (A image, generator, variant); the plan is deterministic for the same inputs, so
shards (consecutive runs of items) have stable indices across restarts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.config import RunConfig
from pipeline.data.coco import CocoSet


@dataclass(frozen=True)
class WorkItem:
    source_id: int  # A_train image id
    generator: int  # index into the generator list
    variant: int  # 0 = plain fit; > 0 adds a seeded geometric jitter (and augmentation seed)

    @property
    def key(self) -> str:
        return f"{self.source_id}:{self.generator}:{self.variant}"


def target_fractions(names: list[str], target: dict[str, float] | None) -> np.ndarray:
    """Normalised target share per category (uniform when None); unknown names are an error."""
    if target is None:
        return np.full(len(names), 1.0 / len(names))
    unknown = sorted(set(target) - set(names))
    if unknown:
        raise ValueError(f"synth.target_distribution: unknown categories {unknown} (have {names})")
    t = np.array([max(0.0, float(target.get(n, 0.0))) for n in names])
    if t.sum() <= 0:
        raise ValueError("synth.target_distribution: all shares are zero")
    return t / t.sum()


def plan_items(
    cfg: RunConfig, a_train: CocoSet, real_counts: dict[str, int], n_generators: int
) -> tuple[list[WorkItem], dict[str, Any]]:
    """Work items in a deterministic order, plus the class-balance plan.

    Every A image gets `synth.variants` variants per generator. With `balance_classes`, extra
    variants of A images holding under-represented classes are added greedily (largest average
    deficit first) until the planned real B + synthetic class shares stop improving or the
    budget (`max_balance_factor`, `max_variants_per_image`) is spent.
    """
    names = a_train.category_names
    col = {c.id: i for i, c in enumerate(sorted(a_train.categories, key=lambda c: c.id))}
    images = sorted(a_train.images, key=lambda im: im.id)
    row = {im.id: i for i, im in enumerate(images)}
    per_image = np.zeros((len(images), len(names)))
    for a in a_train.annotations:
        if a.image_id in row:
            per_image[row[a.image_id], col[a.category_id]] += 1
    base_v = cfg.synth.variants
    variants = np.full(len(images), base_v, dtype=int)
    real = np.array([real_counts.get(n, 0) for n in names], dtype=float)
    before = real + n_generators * (per_image * variants[:, None]).sum(0)
    counts = before.copy()
    extra = 0
    target = None
    if cfg.synth.balance_classes and len(images):
        target = target_fractions(names, cfg.synth.target_distribution)
        budget = int((cfg.synth.max_balance_factor - 1.0) * len(images) * base_v)
        sizes = np.maximum(per_image.sum(1), 1)
        while extra < budget:
            deficit = target * counts.sum() - counts
            gain = (per_image @ deficit) / sizes
            gain[variants >= max(cfg.synth.max_variants_per_image, base_v)] = -np.inf
            best = int(np.argmax(gain))
            if not np.isfinite(gain[best]) or gain[best] <= 0:
                break
            variants[best] += 1
            counts += n_generators * per_image[best]
            extra += 1
    items = [
        WorkItem(im.id, g, v)
        for i, im in enumerate(images)
        for g in range(n_generators)
        for v in range(variants[i])
    ]
    balance = {
        "categories": names,
        "real": dict(zip(names, real.astype(int).tolist())),
        "before": dict(zip(names, before.astype(int).tolist())),
        "after": dict(zip(names, counts.astype(int).tolist())),
        "target": None if target is None else dict(zip(names, target.round(4).tolist())),
        "extra_variants": extra,
    }
    return items, balance


def shard_items(items: list[WorkItem], size: int) -> list[list[WorkItem]]:
    return [items[i : i + size] for i in range(0, len(items), size)]
