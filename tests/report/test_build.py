"""build_report on a hand-made comparison: numbers equal metrics.json, verdicts follow the
numbers, failed arms and missing parts are shown, the HTML is self-contained, reruns are cached."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from report_helpers import html_text, md_table, read

from pipeline.report.build import ReportError, build_report
from pipeline.report.facts import attributions, verdict


def _metrics(run: Path) -> dict:
    return json.loads((run / "compare" / "metrics.json").read_text())


def _save(run: Path, m: dict) -> None:
    (run / "compare" / "metrics.json").write_text(json.dumps(m))


def test_report_numbers_equal_metrics_json(report_cfg, fixture_run: Path) -> None:
    res = build_report(report_cfg, fixture_run / "compare", fixture_run)
    assert not res.cached and res.html.is_file() and res.markdown.is_file()
    stored = json.loads(res.metrics.read_text())
    assert stored["arms"] == _metrics(fixture_run)["arms"]  # the comparison's numbers, unchanged
    md = read(res.markdown)
    text, _, _ = html_text(read(res.html))
    rows = {r["arm"]: r for r in md_table(md, "arm")}
    assert set(rows) == {"real", "real+replica", "real+synthetic", "oracle"}
    for arm in stored["arms"]:
        for key, col in (("map", "mAP@[.5:.95]"), ("map50", "mAP50"), ("map75", "mAP75")):
            s = arm["summary"][key]
            want = f"{s['mean']:.3f} ± {s['std']:.3f}"
            assert rows[arm["name"]][col] == want
            assert want in text
        assert rows[arm["name"]]["seeds ok"] == f"{len(arm['runs'])}/{len(arm['runs'])}"
    comps = {r["comparison"]: r for r in md_table(md, "comparison")}
    for c in stored["comparisons"]:
        row = comps[f"real+synthetic vs {c['baseline']}"]
        assert row["Δ mAP@[.5:.95]"] == f"{c['delta']:+.3f}"
        assert row["95% CI"] == f"{c['ci_low']:+.3f} to {c['ci_high']:+.3f}"
        assert row["significant"] == ("yes" if c["significant"] else "no")
        assert f"{c['ci_low']:+.3f} to {c['ci_high']:+.3f}" in text
    # per-class AP: mean over seeds, as stored in the report block
    derived = stored["report"]["arms"]
    pc = {r["class"]: r for r in md_table(md, "class")}
    for arm in stored["arms"]:
        for cls, v in derived[arm["name"]]["per_class_ap_mean"].items():
            runs = [r["per_class_ap"][cls] for r in arm["runs"]]
            assert v == pytest.approx(sum(runs) / len(runs))
            assert pc[cls][arm["name"]] == f"{v:.3f}"
    assert stored["report"]["verdict"] in text.replace("\n", " ")


def test_verdict_is_computed_from_the_numbers(report_cfg, fixture_run: Path) -> None:
    m = _metrics(fixture_run)
    head, kind, more = verdict(m, 0.05)
    real, rep, syn = (m["arms"][i]["summary"]["map"]["mean"] for i in (0, 1, 2))
    # beat real (CI above zero) but not the replica control (CI crosses zero): said in plain words
    assert kind == "partial"
    assert head == ("Partly: real+synthetic beat real photos alone, but not the untranslated replica photos "
                    "(the control), so the gain may come from the extra boxes rather than the translation. "
                    f"mAP@[.5:.95] {syn:.3f} vs {real:.3f} for real (+0.060, 95% CI +0.021 to +0.099: "
                    f"significant) and {rep:.3f} for real+replica (+0.040, 95% CI -0.004 to +0.082: "
                    "not significant).")
    assert more == []  # three seeds: no single-seed caveat

    control = m["comparisons"][1]
    control.update(ci_low=0.01, significant=True)
    head, kind, _ = verdict(m, 0.05)
    assert kind == "uplift" and head.startswith("Yes: real+synthetic beat both real photos alone and the "
                                                "untranslated replica photos")
    control.update(delta=-0.05, ci_low=-0.08, ci_high=-0.02, significant=True)
    head, kind, _ = verdict(m, 0.05)
    assert kind == "partial" and "but did significantly worse than the untranslated replica photos" in head

    m["comparisons"][0].update(delta=-0.012, ci_low=-0.05, ci_high=0.03, significant=False)
    head, kind, _ = verdict(m, 0.05)
    assert kind == "no-difference"
    assert head.startswith("No: real+synthetic did not significantly beat real photos alone, and did "
                           "significantly worse than the untranslated replica photos (the control).")
    assert "(-0.012, 95% CI -0.050 to +0.030: not significant)" in head
    m["comparisons"][0].update(delta=-0.08, ci_low=-0.12, ci_high=-0.03, significant=True)
    head, kind, _ = verdict(m, 0.05)
    assert kind == "drop" and head.startswith("No: real+synthetic did significantly worse than real photos alone")
    assert "90% CI" in verdict(m, 0.10)[0]

    # the control arm failed: its comparison is skipped and the headline says why
    m = _metrics(fixture_run)
    m["arms"][1].update(status="failed", error="RuntimeError: out of memory")
    m["comparisons_skipped"] = [{"treatment": "real+synthetic", "baseline": "real+replica",
                                 "reason": "real+replica failed: RuntimeError: out of memory"}]
    m["comparisons"] = m["comparisons"][:1]
    head, kind, _ = verdict(m, 0.05)
    assert kind == "partial"
    assert ("but the replica control was not compared (the real+replica arm failed (RuntimeError: out of "
            "memory)), so it is unknown whether the translation or just the extra boxes helped.") in head


def test_one_seed_says_the_ci_covers_test_images_only(report_cfg, fixture_run: Path) -> None:
    m = _metrics(fixture_run)
    for c in m["comparisons"]:
        c["seeds"] = [0]
    _save(fixture_run, m)
    res = build_report(report_cfg, fixture_run / "compare", fixture_run)
    md = read(res.markdown)
    text, _, _ = html_text(read(res.html))
    for doc in (md, text.replace("\n", " ")):
        assert "the interval covers test-image sampling only, not training noise" in doc
        assert "one training seed per arm: the CI covers test-image sampling only" in doc


def test_size_ap_and_crosscheck_warnings_are_shown(report_cfg, fixture_run: Path) -> None:
    m = _metrics(fixture_run)
    msg = "real seed 1: ultralytics' own mAP 0.513 vs pycocotools 0.412 (+0.101, tolerance 0.05)"
    m["warnings"] = [{"kind": "crosscheck", "arm": "real", "seed": 1, "diff": 0.101, "message": msg}]
    _save(fixture_run, m)
    res = build_report(report_cfg, fixture_run / "compare", fixture_run)
    md = read(res.markdown)
    text, _, _ = html_text(read(res.html))
    rows = {r["arm"]: r for r in md_table(md, "arm", having="APs (< 32² px)")}
    for arm in m["arms"]:
        for key, col in (("map_small", "APs (< 32² px)"), ("map_medium", "APm (32²–96² px)"),
                         ("map_large", "APl (> 96² px)")):
            s = arm["summary"][key]
            want = f"{s['mean']:.3f} ± {s['std']:.3f}"
            assert rows[arm["name"]][col] == want and want in text
    assert f"**Warning:** {msg}" in md and f"Warning: {msg}" in text
    assert json.loads(res.metrics.read_text())["report"]["warnings"] == [msg]


def test_lineage_lists_the_detector_and_every_checkpoint(report_cfg, fixture_run: Path) -> None:
    res = build_report(report_cfg, fixture_run / "compare", fixture_run)
    rows = {r["role"]: r for r in md_table(read(res.markdown), "role")}
    start = rows["detector model definition (from scratch)"]
    assert start["id"] == "yolo11n.yaml" and start["code"].startswith("ultralytics ")
    for arm in _metrics(fixture_run)["arms"]:
        for r in arm["runs"]:
            row = rows[f"{arm['name']} seed {r['seed']} checkpoint"]
            assert row["id"] == r["weights"] and row["sha256 (files / weights)"] == r["weights_sha256"]


def test_failed_arm_is_shown_with_its_error(report_cfg, fixture_run: Path) -> None:
    m = _metrics(fixture_run)
    arm = m["arms"][2]
    err = "RuntimeError: DefaultCPUAllocator: can't allocate memory"
    arm.update(status="failed", error=err)
    for r in arm["runs"]:
        r.update(status="failed", error=err, metrics=None, per_class_ap=None, pr_curve=None, results_csv=None,
                 predictions=None)
    arm["summary"] = {k: {"mean": None, "std": None, "n": 0} for k in ("map", "map50", "map75")}
    m["comparisons"] = []
    _save(fixture_run, m)
    res = build_report(report_cfg, fixture_run / "compare", fixture_run)
    md = read(res.markdown)
    row = {r["arm"]: r for r in md_table(md, "arm")}["real+synthetic"]
    assert row["status"].startswith("failed: RuntimeError: DefaultCPUAllocator")
    assert row["mAP@[.5:.95]"] == "–" and row["seeds ok"] == "0/3"
    assert "No verdict: the real+synthetic arm failed (RuntimeError: DefaultCPUAllocator" in md
    text, _, _ = html_text(read(res.html))
    assert "failed: RuntimeError: DefaultCPUAllocator" in text
    assert json.loads(res.metrics.read_text())["report"]["verdict_kind"] == "unknown"


def test_missing_parts_are_omitted_with_a_note(report_cfg, fixture_run: Path, tmp_path: Path) -> None:
    res = build_report(report_cfg, fixture_run / "compare", fixture_run, gan_dir=tmp_path / "no-such-model")
    md = read(res.markdown)
    assert "not a finished CycleGAN model" in md
    assert "No augmented dataset was given" in md and "No dataset version was given" in md
    omitted = json.loads(res.metrics.read_text())["report"]["omitted"]
    assert {"gan", "augmented", "dataset"} <= set(omitted)
    # a run without its PR curve file loses that figure only
    (fixture_run / "compare" / "runs" / "real" / "seed0" / "pr_curve.json").write_text("{not json")
    res2 = build_report(report_cfg, fixture_run / "compare", tmp_path / "other")
    assert {"map_bars", "pr_curves", "per_class_ap", "training_curves"} <= set(
        json.loads(res2.metrics.read_text())["report"]["figures"])


def test_html_is_self_contained(report_cfg, fixture_run: Path) -> None:
    res = build_report(report_cfg, fixture_run / "compare", fixture_run)
    html = read(res.html)
    _, imgs, links = html_text(html)
    assert len(imgs) >= 4
    for img in imgs:
        assert img["src"].startswith("data:image/png;base64,")
        assert base64.b64decode(img["src"].split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert all(link.startswith(("#", "data:")) for link in links), [x[:40] for x in links]
    assert "@import" not in html and "url(" not in html


def test_rerun_is_cached_until_an_output_changes(report_cfg, fixture_run: Path) -> None:
    first = build_report(report_cfg, fixture_run / "compare", fixture_run)
    manifest = json.loads((fixture_run / "manifest.json").read_text())
    assert manifest["kind"] == "report" and {"report.html", "report.md", "metrics.json"} <= set(manifest["files"])
    assert "compare/metrics.json" not in manifest["files"]  # the comparison has its own manifest
    again = build_report(report_cfg, fixture_run / "compare", fixture_run)
    assert again.cached and again.html == first.html
    first.html.write_text("tampered")
    rebuilt = build_report(report_cfg, fixture_run / "compare", fixture_run)
    assert not rebuilt.cached and "Verdict" in read(rebuilt.html)
    report_cfg.report.title = "Another title"
    assert not build_report(report_cfg, fixture_run / "compare", fixture_run).cached


def test_bad_comparison_output_names_the_file(report_cfg, tmp_path: Path) -> None:
    with pytest.raises(ReportError, match=r"compare/metrics.json: comparison metrics not found"):
        build_report(report_cfg, tmp_path / "compare", tmp_path)
    (tmp_path / "compare").mkdir()
    (tmp_path / "compare" / "metrics.json").write_text("{\"arms\": []")
    with pytest.raises(ReportError, match="not valid JSON"):
        build_report(report_cfg, tmp_path / "compare", tmp_path)
    (tmp_path / "compare" / "metrics.json").write_text("{\"arms\": []}")
    with pytest.raises(ReportError, match="missing dataset, categories, test, comparisons"):
        build_report(report_cfg, tmp_path / "compare", tmp_path)


def test_bsdata_attribution_when_its_photos_are_used(tmp_path: Path) -> None:
    shared = Path(__file__).resolve().parents[3] / "shared" / "data" / "bsdata"
    cfg = {"source": "folders", "b": [{"images": str(shared / "images"), "annotations": str(shared / "labels")}]}
    credits = attributions(cfg)
    assert any("BSData" in c and "CC BY-SA 4.0" in c for c in credits)
    assert not any("BSData" in c for c in attributions({"source": "demo"}))
    own = tmp_path / "mine"
    (own / "images").mkdir(parents=True)
    (own / "LICENSE").write_text("MIT License\n\nCopyright (c) 2026 Someone")
    mine = attributions({"source": "folders", "a": [{"images": str(own / "images")}]})
    assert any("MIT License" in c for c in mine)


def test_ci_label_follows_the_comparisons_own_alpha(report_cfg, fixture_run: Path) -> None:
    """The interval was computed at the comparison's alpha; a report built with another config
    must not relabel it."""
    m = _metrics(fixture_run)
    for c in m["comparisons"]:
        c["alpha"] = 0.10  # recorded with each interval
    _save(fixture_run, m)
    res = build_report(report_cfg, fixture_run / "compare", fixture_run)  # report_cfg.alpha = 0.05
    md = read(res.markdown)
    assert "90% CI +0.021 to +0.099" in md and "95% CI" not in md
    assert json.loads(res.metrics.read_text())["report"]["ci_percent"] == 90
    # an older metrics.json without it: the comparison's saved config decides
    for c in m["comparisons"]:
        del c["alpha"]
    _save(fixture_run, m)
    saved = report_cfg.model_copy(deep=True)
    saved.report.alpha = 0.20
    (fixture_run / "compare" / "config.yaml").write_text(saved.to_yaml())
    md = read(build_report(report_cfg, fixture_run / "compare", fixture_run).markdown)
    assert "80% CI +0.021 to +0.099" in md and "95% CI" not in md


def test_timings_and_stale_figures(report_cfg, fixture_run: Path) -> None:
    res = build_report(report_cfg, fixture_run / "compare", fixture_run)
    derived = json.loads(res.metrics.read_text())["report"]["arms"]
    rows = {r["arm"]: r for r in md_table(read(res.markdown), "arm", having="train s (mean/seed)")}
    for name, d in derived.items():
        assert rows[name]["train s (mean/seed)"] == f"{d['train_seconds_mean']:.1f}"
        assert rows[name]["ultralytics − pycocotools"] == f"{d['ultralytics_minus_pycocotools']:+.3f}"
    mine = fixture_run / "figures" / "notes.png"  # not the report's: must survive a rebuild
    mine.write_bytes(b"user file")
    for r in json.loads((fixture_run / "compare" / "metrics.json").read_text())["arms"][0]["runs"]:
        (fixture_run / "compare" / r["results_csv"]).unlink()
    m = json.loads((fixture_run / "compare" / "metrics.json").read_text())
    for a in m["arms"]:
        for r in a["runs"]:
            r["results_csv"] = None
    (fixture_run / "compare" / "metrics.json").write_text(json.dumps(m))
    build_report(report_cfg, fixture_run / "compare", fixture_run)
    assert not (fixture_run / "figures" / "training_curves.png").exists() and mine.read_bytes() == b"user file"
