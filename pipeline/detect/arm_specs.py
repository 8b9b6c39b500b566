"""The detector arms, in one table: adding an arm is one `ArmSpec` here.

Everything else reads this table: the config's allowed `detect.arms` (pipeline.config), what each
arm trains on (arms.plan_arms), which detect settings enter its cache key (compare), whether it
depends on the GAN, the report's legend, rivals and plot colours. This module imports nothing
from the project, so the config can use it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Extra = Literal["replicas", "synthetic", "oracle"]  # what an arm adds to real B


@dataclass(frozen=True)
class ArmSpec:
    name: str
    note: str  # the report's legend
    extra: Extra | None = None  # images mixed with real B (or pre-trained on, see `pretrain`)
    randomize: bool = False  # the extra images are randomised toward metal (classical, no GAN)
    pretrain: bool = False  # pre-train on the extra images alone, then fine-tune on real B
    settings: tuple[str, ...] = ()  # detect keys only this arm reads (kept out of other arms' keys)
    rival: str | None = None  # words for it when real+synthetic must beat it (the verdict)
    colour: str | None = None  # plot colour (else the palette's next)

    @property
    def uses_synthetic(self) -> bool:
        return self.extra == "synthetic"

    @property
    def finetunes_on_real(self) -> bool:
        """Reads detect.real_finetune_epochs: its last epochs may train on real B alone."""
        return "real_finetune_epochs" in self.settings


# read by the arms that mix real B with other images (how often real B repeats in their epochs);
# the real arm and the two phases of synthetic->real train on one set alone
MIXED = ("real_oversample",)
# read by the arms that mix real B with images that are not real metal photos: their last epochs
# may train on real B alone (the oracle's extra images are real: nothing to fine-tune away from)
ADDS_NON_REAL = (*MIXED, "real_finetune_epochs")

SPECS: tuple[ArmSpec, ...] = (
    ArmSpec("real", "labelled real metal (B) only: the baseline", colour="#7b8794"),
    ArmSpec("real+replica", "plus the raw labelled replica (A) photos: the control", extra="replicas",
            settings=ADDS_NON_REAL, rival="the untranslated replica photos (the control)", colour="#e08a2c"),
    ArmSpec("real+replica-aug", "plus the replica photos randomised toward metal (classical, no GAN): the cheap "
            "rival", extra="replicas", randomize=True, settings=(*ADDS_NON_REAL, "replica_aug_variants"),
            rival="the replicas with classical photometric randomisation, no GAN (the cheap rival)"),
    ArmSpec("real+synthetic", "plus the synthetic metal images made from the replicas: the method",
            extra="synthetic", settings=(*ADDS_NON_REAL, "synthetic_keep"), colour="#1f6fb2"),
    ArmSpec("synthetic->real", "pre-trained on the synthetic images alone, then fine-tuned on real B",
            extra="synthetic", pretrain=True, settings=("synthetic_keep", "pretrain_fraction"),
            rival="pre-training on the synthetic images, then fine-tuning on real"),
    ArmSpec("oracle", "plus as many extra real labelled metal photos: the ceiling", extra="oracle",
            settings=MIXED, colour="#2f9e6b"),
)
ARM_SPECS: dict[str, ArmSpec] = {s.name: s for s in SPECS}
ARMS: tuple[str, ...] = tuple(ARM_SPECS)
USES_SYNTHETIC: tuple[str, ...] = tuple(s.name for s in SPECS if s.uses_synthetic)  # arms that depend on the GAN
ARM_SETTINGS: frozenset[str] = frozenset(k for s in SPECS for k in s.settings)  # keys some arm alone reads
