"""Verdicts that never overclaim: one comparison's interval -> gain, loss or inconclusive.

A difference is called a gain (or a loss) only when its confidence interval excludes zero AND the
evidence can carry a claim: at least two training runs per arm (one seed cannot show training
noise, and an interval without it reads as certainty), a test split of at least
`report.min_test_images` images and `report.min_test_boxes` boxes (a 1-image test set gave a
zero-width interval), and at least one arm scoring above `report.min_map` (when every arm is ~0
every difference is noise around nothing). Each reason that makes a verdict inconclusive is kept,
in words, so the report's badge can name it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Outcome = Literal["gain", "loss", "inconclusive"]
OUTCOME_LABEL = {"gain": "significant gain", "loss": "significant loss", "inconclusive": "inconclusive"}
MIN_RUNS = 2


@dataclass(frozen=True)
class Rules:
    """Minimum evidence for a claim (from the report config)."""

    min_test_images: int = 30
    min_test_boxes: int = 50
    min_map: float = 0.01

    @classmethod
    def from_config(cls, report: Any) -> "Rules":
        """From a ReportConfig (or its JSON dump); keys it lacks keep their defaults."""
        get = report.get if isinstance(report, dict) else lambda k, d: getattr(report, k, d)
        return cls(int(get("min_test_images", cls.min_test_images)),
                   int(get("min_test_boxes", cls.min_test_boxes)), float(get("min_map", cls.min_map)))


@dataclass(frozen=True)
class Evidence:
    """What a comparison stands on."""

    runs: int  # finished training runs behind the comparison, the fewer of the two arms
    test_images: int
    test_boxes: int
    best_map: float | None  # the best arm's mean mAP (None: no arm finished)


@dataclass(frozen=True)
class Judgement:
    outcome: Outcome
    delta: float | None
    ci_low: float | None
    ci_high: float | None
    reasons: list[str] = field(default_factory=list)  # why inconclusive, shortest first

    @property
    def badge(self) -> str:
        """'significant gain', or 'inconclusive: single training seed' (the first reason)."""
        if self.outcome != "inconclusive" or not self.reasons:
            return OUTCOME_LABEL[self.outcome]
        return f"inconclusive: {self.reasons[0]}"


def judge(comparison: dict[str, Any] | None, evidence: Evidence, rules: Rules = Rules()) -> Judgement:
    """The verdict on one comparison {"delta", "ci_low", "ci_high"} (None: it could not be made)."""
    reasons = []
    if comparison is None or comparison.get("delta") is None:
        return Judgement("inconclusive", None, None, None, ["no comparison could be made"])
    lo, hi, delta = comparison["ci_low"], comparison["ci_high"], comparison["delta"]
    if evidence.runs < MIN_RUNS:
        reasons.append("single training seed" if evidence.runs == 1 else "no finished training run")
    if evidence.test_images < rules.min_test_images:
        reasons.append(f"test split of {evidence.test_images} images "
                       f"(report.min_test_images {rules.min_test_images})")
    if evidence.test_boxes < rules.min_test_boxes:
        reasons.append(f"test split of {evidence.test_boxes} boxes (report.min_test_boxes {rules.min_test_boxes})")
    if evidence.best_map is None or evidence.best_map < rules.min_map:
        reasons.append(f"every arm scores ~0 mAP (best {_fmt(evidence.best_map)} < report.min_map "
                       f"{rules.min_map:g})")
    if lo <= 0 <= hi:
        reasons.append("the confidence interval covers zero")
    if reasons:
        # the interval covering zero is the usual, least alarming reason: name evidence gaps first
        return Judgement("inconclusive", delta, lo, hi, reasons)
    return Judgement("gain" if lo > 0 else "loss", delta, lo, hi, [])


def outcome_text(comparison: dict[str, Any]) -> str:
    """'gain', 'loss' or 'inconclusive (reasons)' as stored with a comparison; one written before
    verdicts existed says whether its CI excludes zero."""
    if "outcome" not in comparison:
        return "significant" if comparison.get("significant") else "not significant"
    reasons = comparison.get("reasons") or []
    return comparison["outcome"] + (f" ({'; '.join(reasons)})" if reasons else "")


def _fmt(v: float | None) -> str:
    return "–" if v is None else f"{v:.3f}"
