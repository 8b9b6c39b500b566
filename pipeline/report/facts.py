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

from pipeline.detect.arm_specs import ARM_SPECS, SPECS
from pipeline.detect.metrics import ArmResult, CompareMetrics, Comparison, RunRecord, Summary
from pipeline.report.verdict import Evidence, Judgement, Rules, judge

TREATMENT = "real+synthetic"
CONTROL = "real+replica"
METRIC_LABEL = "mAP@[.5:.95]"
SUMMARY_KEYS = ("map", "map50", "map75", "map_small", "map_medium", "map_large")
SIZE_LABELS = {"map_small": "APs (< 32² px)", "map_medium": "APm (32²–96² px)", "map_large": "APl (> 96² px)"}
ARM_NOTES = {s.name: s.note for s in SPECS}


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
    summary: dict[str, dict[str, Any]]  # SUMMARY_KEYS -> {"mean","std","n"}
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
    verdict_kind: str  # "gain" | "loss" | "inconclusive" (pipeline.report.verdict)
    secondary: list[str]  # further plain sentences (control comparison, caveats)
    ci_percent: int
    metrics: CompareMetrics  # the comparison's metrics.json
    arms: list[ArmFacts]
    comparisons: list[Comparison]
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
    warnings: list[str] = field(default_factory=list)  # e.g. evaluator cross-check gaps
    badge: str = ""  # "significant gain", "inconclusive: single training seed", ...

    @property
    def single_seed(self) -> bool:
        """Every comparison rests on one training seed per arm."""
        return bool(self.comparisons) and all(len(c.seeds or []) == 1 for c in self.comparisons)

    def arm(self, name: str) -> ArmFacts | None:
        return next((a for a in self.arms if a.name == name), None)

    def derived(self) -> dict[str, Any]:
        """The numbers the report adds to metrics.json (so every printed number is stored)."""
        return {
            "verdict": self.verdict,
            "verdict_kind": self.verdict_kind,
            "verdict_badge": self.badge,
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
def training_recipe(cfg: dict) -> str:
    """'50 epochs at 128 px', and how the mixed arms end when they fine-tune on real B."""
    text = f"{cfg.get('epochs')} epochs at {cfg.get('imgsz')} px"
    if k := cfg.get("real_finetune_epochs"):
        text += f" (the arms adding replica or synthetic images: the last {k} on real B alone)"
    return text


def synthetic_caption(f: ReportFacts) -> str:
    """What the synthetic grid shows (three columns when the classical rival ran)."""
    if f.samples.get("synthetic_randomized"):
        text = ("Replica photo, the same photo randomised toward metal without a GAN (what the real+replica-aug "
                "arm trained on), and the synthetic metal image the GAN made from it, with the transferred boxes.")
    else:
        text = "Replica photo (left) and the synthetic metal image translated from it (right), with the transferred boxes."
    camera = ((f.augmented or {}).get("summary") or {}).get("camera")
    if camera:
        text += (f" Each synthetic image then took the vignette, bed and highlight levels and sensor noise of one of "
                 f"{camera['photos']} real metal photos (camera matching, synth.camera_match).")
    return text


def _mean(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return sum(vals) / len(vals) if vals else None


def arm_facts(arm: ArmResult, categories: list[str]) -> ArmFacts:
    ok = [r for r in arm.runs if r.ok]
    per_class = {c: _mean([(r.per_class_ap or {}).get(c) for r in ok]) for c in categories}
    return ArmFacts(
        name=arm.name, status=arm.status, error=arm.error, seeds_ok=len(ok), seeds_total=len(arm.runs),
        train_images=arm.train_images, images_per_epoch=arm.images_per_epoch,
        summary={k: (arm.summary[k] if k in arm.summary else _size_summary(ok, k)).model_dump()
                 for k in SUMMARY_KEYS},
        per_class_ap=per_class,
        train_seconds=_mean([r.train_seconds for r in ok]),
        train_images_per_s=_mean([r.train_images_per_s for r in ok]),
        ultralytics_map=_mean([r.ultralytics_map for r in ok]),
        failed_runs=[{"seed": r.seed, "error": r.error} for r in arm.runs if not r.ok],
    )


def comparison_facts(metrics: CompareMetrics, report: Any, alpha: float) -> ReportFacts:
    """The verdict, arms and comparisons of one comparison's metrics.json and nothing the report
    adds (datasets, figures, lineage): what the CLI and the Prefect artifacts show, through the
    report's own table builders. `report` is a ReportConfig or its JSON dump."""
    head, kind, secondary, badge = verdict(metrics, alpha, Rules.from_config(report))
    report_json = report if isinstance(report, dict) else report.model_dump(mode="json")
    return ReportFacts(
        title=report_json.get("title", ""), verdict=head, verdict_kind=kind, secondary=secondary,
        ci_percent=ci_percent(alpha), metrics=metrics,
        arms=[arm_facts(a, metrics.categories) for a in metrics.arms],
        comparisons=list(metrics.comparisons), dataset=None, augmented=None, gan=None,
        lineage=[], attributions=[], notes={}, config={"report": report_json},
        warnings=[w["message"] for w in metrics.warnings if w.get("message")], badge=badge)


def _size_summary(ok: list[RunRecord], key: str) -> Summary:
    """A metric's mean ± std over seeds from the runs, for a metrics.json summarised before it
    summarised every metric key."""
    from statistics import mean, stdev

    v = [r.metrics[key] for r in ok if (r.metrics or {}).get(key) is not None]
    return Summary(mean=mean(v) if v else None, std=stdev(v) if len(v) > 1 else None, n=len(v))


# ------------------------------------------------------------------------------------- verdict
RIVAL_WORDS = {s.name: s.rival for s in SPECS if s.rival}  # real+synthetic must beat these too
RIVALS = tuple(RIVAL_WORDS)


def judge_comparison(c: Comparison | None, metrics: CompareMetrics, rules: Rules) -> Judgement:
    """The verdict on one stored comparison, from the evidence in metrics.json (a metrics.json
    written before comparisons recorded their run counts: one run per paired seed)."""
    if c is None:
        return judge(None, Evidence(0, 0, 0, None), rules)
    n_runs = min(c.runs) if c.runs else len(c.seeds or [])
    test = metrics.test
    best = max((m for a in metrics.arms if (m := a.mean()) is not None), default=None)
    ev = Evidence(n_runs, int(test.get("images") or 0), int(sum((test.get("instances") or {}).values())), best)
    return judge(c.model_dump(), ev, rules)


def verdict(metrics: CompareMetrics | dict[str, Any], alpha: float,
            rules: Rules = Rules()) -> tuple[str, str, list[str], str]:
    """(headline, outcome, further sentences, badge), all from the numbers in metrics.json.

    The headline answers the question the report exists for: did real+synthetic beat real photos
    alone? Its outcome is gain, loss or inconclusive (pipeline.report.verdict: a claim needs an
    interval that excludes zero, two or more training runs per arm, a large enough test split and
    an arm that learnt something). The further sentences judge it against each rival arm that
    ran (the replica control, the classical randomisation, pre-training), name the best arm and
    the share of the real -> oracle gap it closes."""
    if isinstance(metrics, dict):
        metrics = CompareMetrics.model_validate(metrics)
    ci = ci_percent(alpha)
    arms = {a.name: a for a in metrics.arms}
    comps = {c.baseline: c for c in metrics.comparisons if c.treatment == TREATMENT}
    skipped = {c.baseline: c.reason for c in metrics.comparisons_skipped if c.treatment == TREATMENT}
    secondary: list[str] = []
    main = comps.get("real")
    if main is None:
        why = _why_missing(arms, "real", skipped)
        return f"No verdict: {why}.", "inconclusive", secondary, "inconclusive: no comparison"
    j = judge_comparison(main, metrics, rules)
    numbers = (f"{METRIC_LABEL} {num(_arm_mean(arms, TREATMENT))} for real+synthetic vs "
               f"{num(_arm_mean(arms, 'real'))} for real photos alone {_span(main, ci)}")
    if j.outcome == "gain":
        headline = f"Yes: real+synthetic beat real photos alone. {numbers}."
    elif j.outcome == "loss":
        headline = f"No: real+synthetic did significantly worse than real photos alone. {numbers}."
    else:
        headline = f"Inconclusive ({'; '.join(j.reasons)}). {numbers}."
    for rival in RIVALS:
        if rival not in arms:
            continue
        c = comps.get(rival)
        if c is None:
            secondary.append(f"Against {RIVAL_WORDS[rival]}: not compared ({_why_missing(arms, rival, skipped)}).")
            continue
        r = judge_comparison(c, metrics, rules)
        word = {"gain": "beat", "loss": "did significantly worse than", "inconclusive": "did not clearly beat"}
        sentence = f"real+synthetic {word[r.outcome]} {RIVAL_WORDS[rival]}: {num(_arm_mean(arms, rival))} {_span(c, ci)}"
        if r.outcome == "inconclusive" and r.reasons:
            sentence += f", inconclusive: {'; '.join(r.reasons)}"
        secondary.append(sentence + ".")
        if ARM_SPECS[rival].randomize and r.outcome == "loss":
            secondary.append("The GAN did worse than the cheap classical randomisation of the replicas: on this "
                             "evidence the translation is not worth its training cost.")
        elif ARM_SPECS[rival].randomize and r.outcome == "inconclusive":
            secondary.append("The GAN has not been shown to beat the cheap classical randomisation of the "
                             "replicas: until it is, the translation has not earned its training cost.")
    contenders = {n: m for n in arms if n != "oracle" and (m := _arm_mean(arms, n)) is not None}
    if contenders:
        best = max(contenders, key=contenders.get)
        line = f"Best arm: {best} ({num(contenders[best])})"
        if (o := _arm_mean(arms, "oracle")) is not None:
            line += f"; the oracle, with as many extra real labelled photos, reaches {num(o)}"
        gap = metrics.gap_closed.get(TREATMENT)
        if gap and gap.point is not None and math.isfinite(gap.point):
            line += (f"; real+synthetic closes {_pct(gap.point)} of the real -> oracle gap ({ci}% CI "
                     f"{_pct(gap.ci_low)} to {_pct(gap.ci_high)})")
        secondary.append(line + ".")
    if min(main.runs or [len(main.seeds or [])]) == 1:
        secondary.append("Only one training run per arm: the interval covers test-image sampling only, not "
                         "training noise, so no claim is made either way. bench/efficacy.py trains several "
                         "GAN and detector seeds.")
    return headline, j.outcome, secondary, j.badge


def _pct(v: float | None) -> str:
    return "–" if v is None or not math.isfinite(v) else f"{100 * v:.0f}%"


def _span(c: Comparison, ci: int) -> str:
    tag = "significant" if c.significant else "not significant"
    return (f"({num(c.delta, sign=True)}, {ci}% CI {num(c.ci_low, sign=True)} to "
            f"{num(c.ci_high, sign=True)}: {tag})")


def _why_missing(arms: dict[str, ArmResult], baseline: str, skipped: dict[str, str | None]) -> str:
    """Why real+synthetic has no comparison with `baseline`, in words."""
    for name in (TREATMENT, baseline):
        a = arms.get(name)
        if a is None:
            return f"the {name} arm was not part of this comparison"
        if a.status == "unavailable":
            return f"the {name} arm could not run ({_short(a.error)})"
        if a.status != "ok" and not a.runs:
            return f"the {name} arm did not run ({_short(a.error)})"
        if a.status != "ok":
            return f"the {name} arm failed ({_short(a.error)})"
    if skipped.get(baseline):
        return f"no paired comparison with {baseline}: {_short(skipped[baseline])}"
    return f"no paired comparison with {baseline} was computed"


def _arm_mean(arms: dict[str, ArmResult], name: str) -> float | None:
    return arms[name].mean() if name in arms else None


def ci_percent(alpha: float) -> int:
    return int(round(100 * (1 - alpha)))


def _short(text: str | None, n: int = 120) -> str:
    t = (text or "no error recorded").strip().splitlines()[0]
    return t if len(t) <= n else t[: n - 1] + "…"


# ------------------------------------------------------------------------------ lineage, credits
def lineage(compare: dict[str, Any] | None, dataset: dict[str, Any] | None, augmented: dict[str, Any] | None,
            gan: dict[str, Any] | None, metrics: CompareMetrics | None = None) -> list[dict[str, str]]:
    """Rows {"role","kind","id","hash","code"} for each manifest the report stands on (hash = files
    hash), the detector's start point and every trained checkpoint (hash = sha256 of the file)."""
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
    if metrics is not None:
        rows += _detector_rows(metrics, (compare or {}).get("files") or {})
    return rows


def _detector_rows(metrics: CompareMetrics, compare_files: dict[str, str]) -> list[dict[str, str]]:
    """The detector's start point (YAML, or local weights with their sha256) and the best.pt of
    every finished run (its sha256 from the run record, else from the comparison's manifest)."""
    rows = []
    det = metrics.detector
    if det:
        code = f"ultralytics {det['ultralytics']}" if det.get("ultralytics") else ""
        start = "start weights" if det.get("weights_sha256") else "model definition (from scratch)"
        rows.append({"role": f"detector {start}", "kind": det.get("backend", ""),
                     "id": Path(str(det.get("model", ""))).name, "hash": det.get("weights_sha256") or "",
                     "code": code})
    for a in metrics.arms:
        for r in a.runs:
            if not r.ok or not r.weights:
                continue
            sha = r.weights_sha256 or compare_files.get(r.weights, "")
            rows.append({"role": f"{a.name} seed {r.seed} checkpoint", "kind": "YOLO weights",
                         "id": str(r.weights), "hash": sha, "code": ""})
    return rows


BSDATA = ("Real metal photos from BSData (Schlagenhauf & Landwehr 2021, \"Industrial Machine Tool Element "
          "Surface Defect Dataset\", arXiv:2103.13003, github.com/2Obe/BSData), licensed CC BY-SA 4.0; "
          "images shown here are derived from it and shared under the same license.")
DEMO = ("Demo data rendered procedurally by pipeline/demo/ (no third-party images).")
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
