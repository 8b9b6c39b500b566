"""The report's tables as plain strings (pipeline.tables.Table), rendered by markdown.py and html.py,
and by the CLI and the Prefect artifacts from the same builders."""

from __future__ import annotations

from typing import Any

from pipeline.report.facts import SIZE_LABELS, ReportFacts, judge_comparison, mean_std, num
from pipeline.report.verdict import Rules
from pipeline.tables import Table


def arms(f: ReportFacts) -> Table:
    rows, classes, notes = [], [], []
    for a in f.arms:
        status = "ok" if a.status == "ok" and not a.error else a.status
        if a.error:
            status += f": {a.error.splitlines()[0][:160]}"
        notes.append(a.note)
        rows.append([a.name, status, mean_std(a.summary["map"]), mean_std(a.summary["map50"]),
                     mean_std(a.summary["map75"]), f"{a.seeds_ok}/{a.seeds_total}", str(a.train_images),
                     str(a.images_per_epoch)])
        classes.append(a.status if a.status != "ok" else "treatment" if a.name == "real+synthetic" else "")
    return Table(["arm", "status", "mAP@[.5:.95]", "mAP50", "mAP75", "seeds ok", "train images",
                  "images/epoch"], rows, [False, False, True, True, True, True, True, True],
                 "mean ± std over seeds, pycocotools COCOeval on the held-out real B test split", classes, notes)


def size_ap(f: ReportFacts) -> Table:
    """AP by object size (COCO's areas), mean ± std over seeds; – where the test split has no box
    of that size or the arm has no result."""
    rows = [[a.name] + [mean_std(a.summary[k]) for k in SIZE_LABELS] for a in f.arms if a.seeds_ok]
    return Table(["arm", *SIZE_LABELS.values()], rows, [False, True, True, True],
                 "AP@[.5:.95] by box area, mean ± std over seeds; – = no test boxes of that size")


def comparisons(f: ReportFacts) -> Table:
    rules = Rules.from_config(f.config.get("report") or {})
    rows = [[c.label, num(c.delta, sign=True), f"{num(c.ci_low, sign=True)} to {num(c.ci_high, sign=True)}",
             "–" if c.resamples is None else str(c.resamples), _seeds(c.seeds),
             judge_comparison(c, f.metrics, rules).badge]
            for c in f.comparisons]
    rows += [[f"{c.treatment} vs {c.baseline}", "–", "–", "–", "–", f"not computed: {c.reason}"]
             for c in f.metrics.comparisons_skipped]
    caption = ("bootstrap over test images (the same images resampled for both arms) and, with several "
               "seeds, over training seeds")
    if f.single_seed:
        caption += "; one training seed per arm: the CI covers test-image sampling only, not training noise"
    return Table(["comparison", "Δ mAP@[.5:.95]", f"{f.ci_percent}% CI", "resamples", "training seeds",
                  "verdict"], rows, [False, True, True, True, False, False], caption)


def _seeds(seeds: list[int] | None) -> str:
    """`seed 0`, `seeds 0, 1, 2`: a bare "0" read as a count of zero."""
    if not seeds:
        return "–"
    return ("seed " if len(seeds) == 1 else "seeds ") + ", ".join(str(s) for s in seeds)


def per_class(f: ReportFacts) -> Table:
    cats = f.metrics.categories
    inst = f.metrics.test.get("instances") or {}
    arms_ok = [a for a in f.arms if a.seeds_ok]
    rows = [[c, str(inst.get(c, 0))] + [num(a.per_class_ap.get(c)) for a in arms_ok] for c in cats]
    return Table(["class", "test instances"] + [a.name for a in arms_ok], rows,
                 [False, True] + [True] * len(arms_ok),
                 "AP@[.5:.95] per class, mean over seeds; – = no instances")


def timings(f: ReportFacts) -> Table:
    rows = []
    for a in f.arms:
        diff = (None if a.ultralytics_map is None or a.summary["map"]["mean"] is None
                else a.ultralytics_map - a.summary["map"]["mean"])
        rows.append([a.name, num(a.train_seconds, 1), num(a.train_images_per_s, 1), num(a.ultralytics_map),
                     num(diff, sign=True)])
    return Table(["arm", "train s (mean/seed)", "train images/s", "ultralytics val mAP",
                  "ultralytics − pycocotools"], rows, [False, True, True, True, True],
                 "training cost per run; ultralytics' own validator on the same test split as a cross-check")


def key_values(d: dict[str, Any], caption: str = "") -> Table:
    return Table(["key", "value"], [[str(k), _value(v)] for k, v in d.items()], [False, False], caption)


def _value(v: Any) -> str:
    if isinstance(v, float):
        return f"{round(v, 4):g}" if abs(v) < 1e6 else f"{v:.0f}"
    if isinstance(v, (list, dict)):
        import json

        return json.dumps(v, default=str)
    return "–" if v is None else str(v)


def dataset_splits(summary: dict[str, Any]) -> Table:
    counts = summary.get("counts") or {}
    inst = summary.get("instances") or {}
    cats = list(summary.get("categories") or [])
    rows = [[name, str(c.get("images", 0)), str(c.get("boxes", 0))]
            + [str((inst.get(name) or {}).get(k, 0)) for k in cats]
            for name, c in counts.items() if c.get("images")]
    return Table(["split", "images", "boxes"] + cats, rows, [False, True, True] + [True] * len(cats),
                 "images and boxes per domain/split (A = replica, B = metal); class columns count boxes")


def augmented_summary(summary: dict[str, Any]) -> Table:
    cats = list(summary.get("categories") or [])
    images = summary.get("images") or {}
    boxes = summary.get("boxes") or {}
    rows = [[kind, str(images.get(kind, 0)), str(sum((boxes.get(kind) or {}).values()))]
            + [str((boxes.get(kind) or {}).get(c, 0)) for c in cats] for kind in ("real", "synthetic")]
    return Table(["B_train", "images", "boxes"] + cats, rows, [False, True, True] + [True] * len(cats),
                 "the training set of the real+synthetic arm")


def gate_summary(summary: dict[str, Any]) -> Table | None:
    counts = summary.get("counts") or {}
    gate = summary.get("gate") or {}
    rows = [[k, _value(v)] for k, v in counts.items() if not isinstance(v, (dict, list))]
    for check, d in (gate.get("by_check") or {}).items():
        unit = "boxes" if check.startswith("box_") else "images"
        rows.append([f"{unit} failing {check}", f"{d.get('count')} (threshold {_value(d.get('threshold'))})"])
    if not rows:
        return None
    return Table(["quality gate", "value"], rows, [False, True],
                 "synthesis counts and quality-gate checks (a failing box is dropped; an image is rejected "
                 "when an image check fails or too many of its boxes are dropped)")


def gan_quality(q: dict[str, Any], critic: dict[str, Any] | None = None) -> Table:
    """Realism of the translations; `critic` is the saved realism critic's card (the gate's scorer)."""
    r, r0 = q.get("realism") or {}, q.get("realism_raw_a") or {}

    def acc(d: dict[str, Any]) -> str:
        return f"{num(d.get('accuracy'))} ({num(d.get('ci_low'))}–{num(d.get('ci_high'))})" if d else "–"

    def kid(d: dict[str, Any]) -> str:
        return f"{num(d['kid'])} ± {num(d.get('kid_std'))}" if d.get("kid") is not None else "–"

    rows = [["realism: critic accuracy, real B vs images (0.5 = indistinguishable)", acc(r), acc(r0)],
            ["KID on critic features (lower = closer to real B)", kid(r), kid(r0)],
            ["diversity vs real B (1 = as varied)", num(r.get("diversity_ratio")),
             num(r0.get("diversity_ratio"))]]
    if critic and critic.get("heldout_accuracy") is not None:
        rows.append([f"realism critic used by the gate: held-out accuracy ({critic.get('n_heldout', '?')} images)",
                     f"{num(critic['heldout_accuracy'])} ({num(critic.get('ci_low'))}–{num(critic.get('ci_high'))})",
                     "–"])
    return Table(["metric", "translated A→B", "raw A (no GAN)"], rows, [False, True, True],
                 f"{q.get('n_a', '?')} A and {q.get('n_b', '?')} real B images ({q.get('b_reference', '?')})")


def gan_structure(q: dict[str, Any]) -> Table:
    s = q.get("structure") or {}
    rows = [["edge F1, A vs G(A)", num(s.get("edge_f1"))],
            ["gradient SSIM, A vs G(A)", num(s.get("gradient_ssim"))],
            [f"edge F1 inside {s.get('n_boxes', '?')} boxes", num(s.get("box_edge_f1"))],
            ["gradient SSIM inside boxes", num(s.get("box_gradient_ssim"))],
            ["cycle error |A − F(G(A))| (fraction of 255)", num(q.get("cycle_l1"))],
            ["cycle error |B − G(F(B))| (fraction of 255)", num(q.get("cycle_l1_B"))]]
    return Table(["structure kept by the translation", "value"], rows, [False, True],
                 "do the parts stay where the boxes say they are?")


def lineage(f: ReportFacts) -> Table:
    return Table(["role", "kind", "id", "sha256 (files / weights)", "code"],
                 [[r["role"], r["kind"], r["id"], r["hash"], r["code"]]
                  for r in f.lineage], [False] * 5)
