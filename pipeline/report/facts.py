"""What the report says, computed once from metrics.json and the manifests.

Markdown and HTML both render a `ReportFacts`, so the two documents cannot disagree, and every
number is formatted by `num()` from the value stored in the report's metrics.json (a test parses
them back). Nothing here draws or writes files.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TREATMENT = "real+synthetic"
METRIC_LABEL = "mAP@[.5:.95]"
ARM_NOTES = {
    "real": "labelled real metal (B) only: the baseline",
    "real+replica": "plus the raw labelled replica (A) photos: the control",
    "real+synthetic": "plus the synthetic metal images made from the replicas: the method",
    "oracle": "plus as many extra real labelled metal photos: the ceiling",
}


def num(v: float | None, digits: int = 3, sign: bool = False) -> str:
    """A metric as the report prints it: fixed decimals, '–' for missing/NaN."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return f"{v:+.{digits}f}" if sign else f"{v:.{digits}f}"


def mean_std(s: dict[str, Any]) -> str:
    """'0.412 ± 0.013' from a summary {"mean","std","n"}; no ± with a single seed."""
    if s.get("mean") is None:
        return "–"
    return num(s["mean"]) + (f" ± {num(s['std'])}" if s.get("std") is not None else "")


@dataclass
class ArmFacts:
    """One row of the arms table; means are over the arm's successful seeds."""

    name: str
    status: str
    error: str | None
    seeds_ok: int
    seeds_total: int
    train_images: int
    images_per_epoch: int
    summary: dict[str, dict[str, Any]]  # map/map50/map75 -> {"mean","std","n"}
    per_class_ap: dict[str, float | None]  # mean over seeds
    train_seconds: float | None  # mean over seeds
    train_images_per_s: float | None
    ultralytics_map: float | None  # mean over seeds, ultralytics' own validator on B test
    failed_runs: list[dict[str, Any]] = field(default_factory=list)  # {"seed","error"}

    @property
    def note(self) -> str:
        return ARM_NOTES.get(self.name, "")


@dataclass
class ReportFacts:
    title: str
    verdict: str
    verdict_kind: str  # "uplift" | "drop" | "no-difference" | "unknown"
    secondary: list[str]  # further plain sentences (control comparison, caveats)
    ci_percent: int
    metrics: dict[str, Any]  # the comparison's metrics.json
    arms: list[ArmFacts]
    comparisons: list[dict[str, Any]]
    dataset: dict[str, Any] | None  # dataset manifest summary + id
    augmented: dict[str, Any] | None
    gan: dict[str, Any] | None  # {"id","metrics","generator_sha256"}
    lineage: list[dict[str, str]]  # {"role","kind","id","hash"}
    attributions: list[str]
    notes: dict[str, str]  # section -> why it is omitted / caveat
    config: dict[str, Any]  # resolved run config (JSON)
    figures: dict[str, bytes] = field(default_factory=dict)  # name -> PNG bytes
    figure_notes: dict[str, str] = field(default_factory=dict)
    samples: dict[str, Any] = field(default_factory=dict)  # which images the sample grids show

    def arm(self, name: str) -> ArmFacts | None:
        return next((a for a in self.arms if a.name == name), None)

    def derived(self) -> dict[str, Any]:
        """The numbers the report adds to metrics.json (so every printed number is stored)."""
        return {
            "verdict": self.verdict,
            "verdict_kind": self.verdict_kind,
            "verdict_more": self.secondary,
            "ci_percent": self.ci_percent,
            "arms": {
                a.name: {"per_class_ap_mean": a.per_class_ap, "train_seconds_mean": a.train_seconds,
                         "train_images_per_s_mean": a.train_images_per_s,
                         "ultralytics_map_mean": a.ultralytics_map,
                         "ultralytics_minus_pycocotools": (None if a.ultralytics_map is None
                                                           or a.summary["map"]["mean"] is None
                                                           else a.ultralytics_map - a.summary["map"]["mean"]),
                         "seeds_ok": a.seeds_ok, "seeds_total": a.seeds_total}
                for a in self.arms
            },
        }


# ---------------------------------------------------------------------------------------- arms
def _mean(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return sum(vals) / len(vals) if vals else None


def arm_facts(arm: dict[str, Any], categories: list[str]) -> ArmFacts:
    runs = arm.get("runs") or []
    ok = [r for r in runs if r.get("status") == "ok"]
    per_class = {c: _mean([(r.get("per_class_ap") or {}).get(c) for r in ok]) for c in categories}
    return ArmFacts(
        name=arm["name"], status=arm.get("status", "failed"), error=arm.get("error"),
        seeds_ok=len(ok), seeds_total=len(runs),
        train_images=int(arm.get("train_images") or 0), images_per_epoch=int(arm.get("images_per_epoch") or 0),
        summary={k: arm.get("summary", {}).get(k) or {"mean": None, "std": None, "n": 0}
                 for k in ("map", "map50", "map75")},
        per_class_ap=per_class,
        train_seconds=_mean([r.get("train_seconds") for r in ok]),
        train_images_per_s=_mean([r.get("train_images_per_s") for r in ok]),
        ultralytics_map=_mean([r.get("ultralytics_map") for r in ok]),
        failed_runs=[{"seed": r.get("seed"), "error": r.get("error")} for r in runs if r.get("status") != "ok"],
    )


# ------------------------------------------------------------------------------------- verdict
def verdict(metrics: dict[str, Any], alpha: float) -> tuple[str, str, list[str]]:
    """(headline sentence, kind, further sentences), all from the numbers in metrics.json."""
    ci = ci_percent(alpha)
    arms = {a["name"]: a for a in metrics.get("arms", [])}
    comps = {c["baseline"]: c for c in metrics.get("comparisons", []) if c.get("treatment") == TREATMENT}
    secondary: list[str] = []
    main = comps.get("real")
    if main is None:
        treat = arms.get(TREATMENT)
        if treat is None:
            why = "the real+synthetic arm was not part of this comparison"
        elif treat.get("status") != "ok" and not treat.get("runs"):
            why = f"the real+synthetic arm did not run ({_short(treat.get('error'))})"
        elif treat.get("status") != "ok":
            why = f"the real+synthetic arm failed ({_short(treat.get('error'))})"
        elif arms.get("real", {}).get("status") != "ok":
            why = f"the real baseline arm failed ({_short(arms.get('real', {}).get('error'))})"
        else:
            why = "no paired comparison with the real baseline was computed"
        return f"No verdict: {why}.", "unknown", secondary

    base_mean, treat_mean = _arm_mean(arms, "real"), _arm_mean(arms, TREATMENT)
    headline, kind = _sentence("Synthetic metal images", main, base_mean, treat_mean, ci)
    if "real+replica" in comps:
        c = comps["real+replica"]
        rep_mean = _arm_mean(arms, "real+replica")
        s, _ = _sentence("Against the replica control (the same replica photos untranslated), the synthetic arm",
                         c, rep_mean, treat_mean, ci, control=True)
        secondary.append(s)
    seeds = main.get("seeds") or []
    if len(seeds) == 1:
        secondary.append("Only one training seed per arm: the interval covers test-image sampling, not training "
                         "noise, so read it as optimistic.")
    return headline, kind, secondary


def _arm_mean(arms: dict[str, dict[str, Any]], name: str) -> float | None:
    return ((arms.get(name) or {}).get("summary") or {}).get("map", {}).get("mean")


def _sentence(subject: str, c: dict[str, Any], before: float | None, after: float | None, ci: int,
              control: bool = False) -> tuple[str, str]:
    d, lo, hi = c["delta"], c["ci_low"], c["ci_high"]
    span = f"({num(d, sign=True)}, {ci}% CI {num(lo, sign=True)} to {num(hi, sign=True)})"
    verb = "raised" if d > 0 else "lowered" if d < 0 else "left"
    change = (f"{verb} {METRIC_LABEL} from {num(before)} to {num(after)}" if d != 0
              else f"left {METRIC_LABEL} at {num(after)}")
    if control:
        change = f"scored {num(after)} vs {num(before)}"
    if c.get("significant"):
        kind = "uplift" if d > 0 else "drop"
        tail = "a significant uplift." if d > 0 else "a significant drop."
    else:
        kind, tail = "no-difference", "no significant difference."
    return f"{subject} {change} {span}: {tail}", kind


def ci_percent(alpha: float) -> int:
    return int(round(100 * (1 - alpha)))


def _short(text: str | None, n: int = 120) -> str:
    t = (text or "no error recorded").strip().splitlines()[0]
    return t if len(t) <= n else t[: n - 1] + "…"


# ------------------------------------------------------------------------------ lineage, credits
def lineage(compare: dict[str, Any] | None, dataset: dict[str, Any] | None, augmented: dict[str, Any] | None,
            gan: dict[str, Any] | None) -> list[dict[str, str]]:
    """Rows {"role","kind","id","hash"} for each manifest the report stands on; hash = files hash."""
    rows = []
    for role, m in (("dataset", dataset), ("CycleGAN model", gan), ("augmented dataset", augmented),
                    ("comparison", compare)):
        if m:
            rows.append({"role": role, "kind": m.get("kind", ""), "id": m.get("id", ""),
                         "hash": m.get("files_hash", ""), "code": m.get("code_version", "")})
    if gan:
        for direction, sha in (gan.get("summary", {}).get("generator_sha256") or {}).items():
            rows.append({"role": f"generator {direction} checkpoint", "kind": "safetensors",
                         "id": "G_AB.safetensors" if direction == "AtoB" else "G_BA.safetensors",
                         "hash": sha, "code": ""})
    if augmented:
        for g in augmented.get("summary", {}).get("generators") or []:
            rows.append({"role": "generator used for synthesis", "kind": "checkpoint",
                         "id": Path(str(g.get("file", ""))).name, "hash": g.get("sha256", ""), "code": ""})
    return rows


BSDATA = ("Real metal photos from BSData (Schlagenhauf & Landwehr 2021, \"Industrial Machine Tool Element "
          "Surface Defect Dataset\", arXiv:2103.13003, github.com/2Obe/BSData), licensed CC BY-SA 4.0; "
          "images shown here are derived from it and shared under the same license.")
DEMO = ("Demo data rendered procedurally by pipeline/data/demo.py (no third-party images).")
ULTRALYTICS = "Detector: Ultralytics YOLO (AGPL-3.0)."


def attributions(data_config: dict[str, Any] | None) -> list[str]:
    """Credits for the data that went into this run, from the dataset's recorded data config."""
    out: list[str] = []
    data = data_config or {}
    if data.get("source") == "demo":
        out.append(DEMO)
    sources = [s for key in ("a", "b") for s in data.get(key) or []]
    paths = [Path(str(s.get(k))) for s in sources for k in ("images", "annotations", "split_file") if s.get(k)]
    def is_bsdata(p: Path) -> bool:
        return any(part.lower() == "bsdata" for part in p.parts) or _license_mentions(p, "BSData")

    if any(is_bsdata(p) for p in paths):
        out.append(BSDATA)
    for p in paths:  # any other source that ships a license file: name it, users must honour it
        lic = _license_file(p)
        if lic and not is_bsdata(p):
            first = next((ln.strip() for ln in lic.read_text(errors="replace").splitlines() if ln.strip()), "")
            line = f"Data from {lic.parent}: license file {lic.name} ({first[:80]})."
            if line not in out:
                out.append(line)
    out.append(ULTRALYTICS)
    return out


def _license_file(p: Path) -> Path | None:
    for d in (p, p.parent, p.parent.parent) if p.is_dir() else (p.parent, p.parent.parent):
        for name in ("LICENSE", "LICENSE.txt", "LICENSE.md"):
            if (d / name).is_file():
                return d / name
    return None


def _license_mentions(p: Path, word: str) -> bool:
    lic = _license_file(p)
    if lic is None:
        return False
    readme = lic.parent / "README.md"
    text = lic.read_text(errors="replace")[:4000]
    if readme.is_file():
        text += readme.read_text(errors="replace")[:4000]
    return word.lower() in text.lower()
