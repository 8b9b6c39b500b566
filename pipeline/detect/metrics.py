"""The comparison's result, typed: what `compare()` returns and writes as metrics.json.

The models serialise to the same file, keys and key order as before they existed (`dump()`), and
read every metrics.json the project has written (`load()`): keys added by later schemas have
defaults, and unknown keys (the report's own "report" section, say) are kept as they are.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError


class _Record(BaseModel):
    model_config = ConfigDict(extra="allow")


class Summary(_Record):
    """One metric over training seeds: mean ± sample std (None below two values), n seeds."""

    mean: float | None = None
    std: float | None = None
    n: int = 0


class RunRecord(_Record):
    """One arm trained with one seed (the run.json of its folder, less its cache key)."""

    seed: int
    status: str
    error: str | None = None
    metrics: dict[str, float | None] | None = None
    per_class_ap: dict[str, float | None] | None = None
    ultralytics_map: float | None = None
    ultralytics_map50: float | None = None
    ultralytics_map_diff: float | None = None
    train_seconds: float | None = None
    train_images_per_s: float | None = None
    train_cpu_seconds: float | None = None
    train_threads: int | None = None  # torch threads on CPU (absent from runs recorded before)
    images_seen: int | None = None
    weights: str | None = None
    weights_sha256: str | None = None
    predictions: str | None = None
    results_csv: str | None = None
    pr_curve: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"


class ArmResult(_Record):
    name: str
    status: str  # "ok" | "failed" | "unavailable"
    error: str | None = None  # also set for an ok arm that lost some seeds
    train_images: int = 0
    images_per_epoch: int = 0
    runs: list[RunRecord] = []
    summary: dict[str, Summary]  # METRIC_KEYS -> mean ± std over the seeds that finished

    def mean(self, metric: str = "map") -> float | None:
        s = self.summary.get(metric)
        return s.mean if s is not None else None


class Comparison(_Record):
    """real+synthetic against one other arm: bootstrap CI of the mAP difference and its verdict."""

    treatment: str
    baseline: str
    metric: str = "map"
    delta: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    alpha: float | None = None
    resamples: int | None = None
    significant: bool = False
    seeds: list[int] | None = None
    runs: list[int] | None = None  # finished runs of (treatment, baseline)
    outcome: str | None = None
    reasons: list[str] = []

    @property
    def label(self) -> str:
        return f"{self.treatment} vs {self.baseline}"


class SkippedComparison(_Record):
    treatment: str
    baseline: str
    reason: str | None = None


class GapShare(_Record):
    """The share of the real -> oracle gap an arm closes, with its interval."""

    point: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    resamples: int | None = None


class CompareMetrics(_Record):
    dataset: dict[str, Any]
    augmented: dict[str, Any] | None = None
    categories: list[str]
    test: dict[str, Any]  # {"images": int, "instances": {category: boxes}}
    config: dict[str, Any] = {}
    detector: dict[str, Any] = {}
    arms: list[ArmResult]
    comparisons: list[Comparison]
    comparisons_skipped: list[SkippedComparison] = []
    gap_closed: dict[str, GapShare] = {}
    warnings: list[dict[str, Any]] = []
    timings: dict[str, Any] = {}
    hardware: dict[str, Any] = {}

    def arm(self, name: str) -> ArmResult | None:
        return next((a for a in self.arms if a.name == name), None)

    def dump(self) -> dict[str, Any]:
        """The metrics.json document (NaN stays NaN, as json.dumps writes it)."""
        return self.model_dump(mode="python")

    @classmethod
    def load(cls, path: str | Path) -> CompareMetrics:
        """Read a comparison's metrics.json; ValueError naming the file when it is missing, not
        JSON or not a comparison's metrics."""
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"{path}: comparison metrics not found (run `metalize compare` first)")
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise ValueError(f"{path}: not valid JSON ({e})") from None
        if not isinstance(doc, dict):
            raise ValueError(f"{path}: not a comparison metrics.json (top level is not an object)")
        try:
            return cls.model_validate(doc)
        except ValidationError as e:
            missing = [str(err["loc"][0]) for err in e.errors() if err["type"] == "missing" and len(err["loc"]) == 1]
            if missing:
                raise ValueError(f"{path}: not a comparison metrics.json (missing {', '.join(missing)})") from None
            first = e.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise ValueError(f"{path}: not a comparison metrics.json ({where}: {first['msg'].lower()}"
                             + (f"; {e.error_count() - 1} more problem(s)" if e.error_count() > 1 else "")
                             + ")") from None
