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
from pipeline.report.verdict import Rules


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
        assert row["verdict"] == ("significant gain" if c["ci_low"] > 0 else
                                  "inconclusive: the confidence interval covers zero")
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
    head, kind, more, badge = verdict(m, 0.05)
    real, rep, syn, oracle = (m["arms"][i]["summary"]["map"]["mean"] for i in (0, 1, 2, 3))
    # three seeds, 150 test images, CI above zero: a gain, said with its numbers
    assert kind == "gain" and badge == "significant gain"
    assert head == (f"Yes: real+synthetic beat real photos alone. mAP@[.5:.95] {syn:.3f} for real+synthetic vs "
                    f"{real:.3f} for real photos alone (+0.060, 95% CI +0.021 to +0.099: significant).")
    # the replica control's CI covers zero: not beaten, and why
    assert more[0] == (f"real+synthetic did not clearly beat the untranslated replica photos (the control): "
                       f"{rep:.3f} (+0.040, 95% CI -0.004 to +0.082: not significant), inconclusive: the "
                       "confidence interval covers zero.")
    assert more[1] == (f"Best arm: real+synthetic ({syn:.3f}); the oracle, with as many extra real labelled "
                       f"photos, reaches {oracle:.3f}.")
    assert len(more) == 2  # three seeds: no single-seed caveat

    m["comparisons"][0].update(delta=-0.08, ci_low=-0.12, ci_high=-0.03, significant=True)
    head, kind, _, badge = verdict(m, 0.05)
    assert kind == "loss" and badge == "significant loss"
    assert head.startswith("No: real+synthetic did significantly worse than real photos alone.")
    assert "90% CI" in verdict(m, 0.10)[0]

    m["comparisons"][0].update(delta=-0.012, ci_low=-0.05, ci_high=0.03, significant=False)
    head, kind, _, badge = verdict(m, 0.05)
    assert kind == "inconclusive" and badge == "inconclusive: the confidence interval covers zero"
    assert head.startswith("Inconclusive (the confidence interval covers zero). ")
    assert "(-0.012, 95% CI -0.050 to +0.030: not significant)" in head

    # the control arm failed: its comparison is skipped and the sentence says why
    m = _metrics(fixture_run)
    m["arms"][1].update(status="failed", error="RuntimeError: out of memory")
    m["comparisons_skipped"] = [{"treatment": "real+synthetic", "baseline": "real+replica",
                                 "reason": "real+replica failed: RuntimeError: out of memory"}]
    m["comparisons"] = m["comparisons"][:1]
    head, kind, more, _ = verdict(m, 0.05)
    assert kind == "gain"
    assert more[0] == ("Against the untranslated replica photos (the control): not compared (the real+replica "
                       "arm failed (RuntimeError: out of memory)).")


@pytest.mark.parametrize("change, reason", [
    (lambda m: m["comparisons"][0].update(seeds=[0], runs=[1, 1]), "single training seed"),
    (lambda m: m["test"].update(images=1), "test split of 1 images (report.min_test_images 5)"),
    (lambda m: m["test"].update(instances={"gear": 3}), "test split of 3 boxes (report.min_test_boxes 5)"),
    (lambda m: [a["summary"]["map"].update(mean=0.004) for a in m["arms"]],
     "every arm scores ~0 mAP (best 0.004 < report.min_map 0.01)"),
])
def test_weak_evidence_is_inconclusive_even_with_a_ci_above_zero(report_cfg, fixture_run, change, reason):
    """A single training seed, a tiny test split or arms that learnt nothing never carry a claim,
    however narrow the interval (a 1-image test gave a zero-width CI that read as certainty)."""
    m = _metrics(fixture_run)
    assert m["comparisons"][0]["ci_low"] > 0
    change(m)
    head, kind, _, badge = verdict(m, 0.05, Rules.from_config(report_cfg.report))
    assert kind == "inconclusive" and badge == f"inconclusive: {reason}"
    assert head.startswith(f"Inconclusive ({reason}). ")


def _with_replica_aug(m: dict, **comparison) -> dict:
    """metrics with a real+replica-aug arm (a copy of the second arm) and its comparison."""
    aug = json.loads(json.dumps(m["arms"][1]))
    aug["name"] = "real+replica-aug"
    m["arms"].insert(2, aug)
    m["comparisons"].append({**m["comparisons"][1], "baseline": "real+replica-aug", **comparison})
    return m


def test_the_cheap_rival_is_named_when_the_gan_does_not_beat_it(report_cfg, fixture_run: Path) -> None:
    m = _with_replica_aug(_metrics(fixture_run), delta=-0.03, ci_low=-0.05, ci_high=-0.01, significant=True)
    _, kind, more, _ = verdict(m, 0.05)
    assert kind == "gain"
    assert any(s.startswith("real+synthetic did significantly worse than the replicas with classical photometric "
                            "randomisation, no GAN (the cheap rival)") for s in more)
    assert ("The GAN did worse than the cheap classical randomisation of the replicas: on this evidence the "
            "translation is not worth its training cost.") in more


def test_an_unproven_win_over_the_cheap_rival_is_not_called_a_loss(report_cfg, fixture_run: Path) -> None:
    """A single seed ahead of the classical randomisation is 'not shown', never 'not worth it'."""
    m = _with_replica_aug(_metrics(fixture_run), delta=0.025, ci_low=-0.001, ci_high=0.05, significant=False)
    _, _, more, _ = verdict(m, 0.05)
    assert any(s.startswith("real+synthetic did not clearly beat the replicas with classical") for s in more)
    assert ("The GAN has not been shown to beat the cheap classical randomisation of the replicas: until it is, "
            "the translation has not earned its training cost.") in more
    assert not any("not worth" in s for s in more)


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
    assert json.loads(res.metrics.read_text())["report"]["verdict_kind"] == "inconclusive"


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


def test_the_header_says_when_the_mixed_arms_end_on_real_b(report_cfg, fixture_run: Path) -> None:
    m = _metrics(fixture_run)
    m["config"]["real_finetune_epochs"] = 0
    _save(fixture_run, m)
    res = build_report(report_cfg, fixture_run / "compare", fixture_run)
    assert "on real B alone" not in read(res.markdown)
    m["config"]["real_finetune_epochs"] = 10
    _save(fixture_run, m)
    res = build_report(report_cfg, fixture_run / "compare", fixture_run)
    want = "(the arms adding replica or synthetic images: the last 10 on real B alone)"
    assert want in read(res.markdown) and want in html_text(read(res.html))[0]
