"""report.html: one self-contained page (inline CSS, figures as base64 PNG, no external requests)."""

from __future__ import annotations

import base64
from html import escape

import yaml

from pipeline.report import tables
from pipeline.report.facts import ReportFacts, synthetic_caption, training_recipe
from pipeline.tables import Table

CSS = """
:root { --ink:#1d2433; --muted:#5b6474; --line:#e4e7ec; --bg:#f7f8fa; --accent:#1f6fb2; }
* { box-sizing:border-box; }
body { margin:0; background:var(--bg); color:var(--ink);
  font:15px/1.55 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif; }
main { max-width:1060px; margin:0 auto; padding:32px 28px 64px; }
header h1 { font-size:28px; line-height:1.25; margin:0 0 6px; letter-spacing:-0.01em; }
header .meta { color:var(--muted); font-size:13.5px; }
nav { margin:18px 0 8px; font-size:13px; display:flex; flex-wrap:wrap; gap:6px 14px; }
nav a { color:var(--accent); text-decoration:none; }
section { background:#fff; border:1px solid var(--line); border-radius:10px; padding:20px 24px; margin:18px 0; }
h2 { font-size:19px; margin:0 0 12px; }
h3 { font-size:15px; margin:18px 0 8px; color:#344054; }
.verdict { border-left:6px solid #98a2b3; }
.verdict.gain { border-left-color:#1f9d55; } .verdict.loss { border-left-color:#d92d20; }
.verdict.inconclusive { border-left-color:#f79009; }
.verdict .headline { font-size:19px; font-weight:600; line-height:1.4; margin:0 0 8px; }
.verdict p { margin:6px 0; }
.pill { display:inline-block; font-size:12px; font-weight:600; padding:2px 10px; border-radius:999px;
  background:#eef2f6; color:#344054; margin-bottom:10px; text-transform:uppercase; letter-spacing:.04em; }
.gain .pill { background:#e3f5ea; color:#17683a; } .loss .pill { background:#fdeceb; color:#a1261b; }
.inconclusive .pill { background:#fef3e2; color:#93500b; }
.warning { color:#93500b; background:#fef3e2; border-radius:6px; padding:6px 10px; }
table { border-collapse:collapse; width:100%; font-size:13.5px; margin:6px 0 2px; }
th, td { padding:6px 10px; border-bottom:1px solid var(--line); text-align:left; vertical-align:top; }
th { background:#f2f4f7; font-weight:600; color:#344054; }
th.num { white-space:normal; }
td.status { min-width:130px; max-width:240px; overflow-wrap:break-word; }
td.num, th.num { text-align:right; font-variant-numeric:tabular-nums; white-space:nowrap; }
tr.treatment td { background:#f0f6fc; } tr.failed td { color:#a1261b; background:#fff6f5; }
tr.unavailable td { color:var(--muted); }
caption { caption-side:bottom; text-align:left; color:var(--muted); font-size:12.5px; padding-top:6px; }
.scroll { overflow-x:auto; }
figure { margin:8px 0 4px; } figure img { max-width:100%; height:auto; display:block; margin:0 auto; }
figcaption { color:var(--muted); font-size:12.5px; margin-top:6px; }
.note { color:var(--muted); font-style:italic; }
.sub { color:var(--muted); font-size:12px; font-weight:400; max-width:190px; white-space:normal; }
code, pre { font-family:ui-monospace,"DejaVu Sans Mono",Menlo,monospace; font-size:12.5px; }
td code { word-break:break-all; font-size:11.5px; }
pre { background:#f6f8fa; border:1px solid var(--line); border-radius:6px; padding:12px; overflow-x:auto; }
details summary { cursor:pointer; color:var(--accent); margin:10px 0; }
.grid2 { display:grid; grid-template-columns:1fr 1fr; gap:18px; }
@media (max-width: 800px) { .grid2 { grid-template-columns:1fr; } }
footer { color:var(--muted); font-size:12px; text-align:center; margin-top:28px; }
"""

SECTIONS = [("verdict", "Verdict"), ("arms", "Arms"), ("accuracy", "Accuracy"), ("pr", "PR curves"),
            ("per-class", "Per-class AP"), ("training", "Training"), ("detections", "Detections"),
            ("synthetic", "Synthetic samples"), ("datasets", "Datasets"), ("gan", "CycleGAN"),
            ("lineage", "Lineage"), ("timings", "Timings"), ("config", "Config"), ("credits", "Attribution")]


def table_html(t: Table, code_cols: tuple[int, ...] = ()) -> str:
    head = "".join(f'<th class="num">{escape(h)}</th>' if n else f"<th>{escape(h)}</th>"
                   for h, n in zip(t.headers, t.numeric))
    body = []
    for i, row in enumerate(t.rows):
        cls = (t.row_classes or [""] * len(t.rows))[i]
        cells = []
        for j, (c, n) in enumerate(zip(row, t.numeric)):
            text = f"<code>{escape(c)}</code>" if j in code_cols and c else escape(c)
            if j == 0 and t.row_notes and t.row_notes[i]:
                text = f"<strong>{text}</strong><div class=\"sub\">{escape(t.row_notes[i])}</div>"
            klass = "num" if n else "status" if t.headers[j] == "status" else ""
            cells.append(f'<td class="{klass}">{text}</td>' if klass else f"<td>{text}</td>")
        body.append((f'<tr class="{cls}">' if cls else "<tr>") + "".join(cells) + "</tr>")
    cap = f"<caption>{escape(t.caption)}</caption>" if t.caption else ""
    return (f'<div class="scroll"><table>{cap}<thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>')


def two_columns(t: Table) -> str:
    """A long two-column key/value table shown side by side in halves."""
    half = (len(t.rows) + 1) // 2
    first = Table(t.headers, t.rows[:half], t.numeric, t.caption)
    return f'<div class="grid2">{table_html(first)}{table_html(Table(t.headers, t.rows[half:], t.numeric))}</div>'


def _img(png: bytes, alt: str, caption: str = "", width: int | None = None, upscale: bool = False) -> str:
    data = base64.b64encode(png).decode("ascii")
    style = f' style="max-width:{width}px"' if width else ""
    if upscale:  # small training snapshots: show them at a readable size
        style = f' style="width:min(100%, {width or 640}px)"'
    cap = f"<figcaption>{escape(caption)}</figcaption>" if caption else ""
    return f'<figure><img alt="{escape(alt)}" src="data:image/png;base64,{data}"{style}>{cap}</figure>'


def _figure(f: ReportFacts, name: str, alt: str, caption: str = "", width: int | None = None) -> str:
    if name in f.figures:
        return _img(f.figures[name], alt, caption, width)
    return f'<p class="note">{escape(f.figure_notes.get(name, "not available"))}</p>'


def _note(text: str) -> str:
    return f'<p class="note">{escape(text)}</p>'


def _section(sid: str, title: str, body: str, extra_class: str = "") -> str:
    cls = f' class="{extra_class}"' if extra_class else ""
    return f'<section id="{sid}"{cls}><h2>{escape(title)}</h2>{body}</section>'


def render_html(f: ReportFacts) -> str:
    m = f.metrics
    test, cfg = m.test, m.config
    kind_label = f.badge or f.verdict_kind
    meta = (f"Dataset <code>{escape(str(m.dataset.get('id')))}</code> · held-out test: "
            f"{test.get('images')} real metal images, {sum((test.get('instances') or {}).values())} boxes · "
            f"{escape(str(cfg.get('model')))}, {escape(training_recipe(cfg))}, "
            f"seeds {escape(str(cfg.get('seeds')))}")
    parts = [f"<header><h1>{escape(f.title)}</h1><div class=\"meta\">{meta}</div></header>",
             "<nav>" + "".join(f'<a href="#{sid}">{escape(t)}</a>' for sid, t in SECTIONS) + "</nav>"]

    verdict = (f'<span class="pill">{kind_label}</span><p class="headline">{escape(f.verdict)}</p>'
               + "".join(f"<p>{escape(s)}</p>" for s in f.secondary)
               + "".join(f'<p class="warning">Warning: {escape(w)}</p>' for w in f.warnings))
    parts.append(_section("verdict", "Verdict", verdict, f"verdict {f.verdict_kind}"))

    body = table_html(tables.arms(f))
    if f.comparisons or m.comparisons_skipped:
        body += "<h3>Uplift of real+synthetic</h3>" + table_html(tables.comparisons(f))
    parts.append(_section("arms", "Arms", body))
    parts.append(_section("accuracy", "Accuracy per arm", _figure(
        f, "map_bars", "mAP per arm with uplift CIs",
        "Bars: mean over seeds, error bars: std, dots: single seeds."
        + (" Right: paired-bootstrap uplift with its CI; an interval that does not cross zero is significant."
           if f.comparisons else ""))
        + "<h3>AP by object size</h3>" + table_html(tables.size_ap(f))))
    parts.append(_section("pr", "Precision–recall curves", _figure(
        f, "pr_curves", "PR curves", f"IoU .5:.95 averaged, all object sizes, {cfg.get('max_det', 100)} "
        "detections per image; mean over seeds.")))
    parts.append(_section("per-class", "Per-class AP", _figure(f, "per_class_ap", "per-class AP", width=900)
                          + table_html(tables.per_class(f))))
    parts.append(_section("training", "Training curves", _figure(
        f, "training_curves", "training curves", "From each run's ultralytics results.csv; one line per seed.")))
    thr = (f.config.get("report") or {}).get("detection_threshold")
    parts.append(_section("detections", "Test detections per arm", _figure(
        f, "detections", "test detections",
        f"The same held-out test images for every arm (lowest successful seed). Green: ground truth "
        f"(dashed under detections); red: detections with score ≥ {thr}.")
        + (_note(f.notes["detections"]) if f.notes.get("detections") and "detections" in f.figures else "")))
    if "synthetic" in f.figures:
        syn = _figure(f, "synthetic", "synthetic samples", synthetic_caption(f))
        syn += _note(f.notes["synthetic"]) if f.notes.get("synthetic") else ""
    else:
        syn = _note(f.notes.get("synthetic") or f.figure_notes.get("synthetic", "not available"))
    parts.append(_section("synthetic", "Synthetic samples", syn))

    ds = ""
    if f.dataset:
        ds += f"<h3>Dataset version <code>{escape(f.dataset['id'])}</code></h3>"
        ds += table_html(tables.dataset_splits(f.dataset["summary"]))
        if "dataset_card" in f.figures:
            ds += _img(f.figures["dataset_card"], "dataset class balance", "From the dataset card "
                       "(card/README.md in the dataset version).", width=720)
    else:
        ds += _note(f.notes.get("dataset", "dataset version not given"))
    if f.augmented:
        ds += f"<h3>Augmented version <code>{escape(f.augmented['id'])}</code></h3>"
        ds += table_html(tables.augmented_summary(f.augmented["summary"]))
        if "augmented_card" in f.figures:
            ds += _img(f.figures["augmented_card"], "augmented class balance", "From the augmented "
                       "dataset's card: boxes per class, real vs synthetic.", width=820)
        gate = tables.gate_summary(f.augmented["summary"])
        ds += two_columns(gate) if gate else ""
    else:
        ds += _note(f.notes.get("augmented", "augmented dataset not given"))
    parts.append(_section("datasets", "Datasets", ds))

    if f.gan:
        gm = f.gan["metrics"]
        q = gm.get("quality") or {}
        g = (f"<p>Model <code>{escape(f.gan['id'])}</code>: {gm.get('iterations', '?')} iterations, "
             f"{gm.get('train_seconds', '?')} s of training ({gm.get('iterations_per_s', '?')} it/s).</p>")
        if q:
            g += table_html(tables.gan_quality(q, gm.get("realism_critic"))) + table_html(tables.gan_structure(q))
        if "gan_samples" in f.figures:
            g += _img(f.figures["gan_samples"], "CycleGAN samples",
                      "Last training sample. Rows: A, G(A), F(G(A)) / B, F(B), G(F(B)).", width=560, upscale=True)
    else:
        g = _note(f.notes.get("gan", "CycleGAN model not given"))
    parts.append(_section("gan", "CycleGAN quality", g))

    parts.append(_section("lineage", "Lineage", table_html(tables.lineage(f), code_cols=(3,)) if f.lineage
                          else _note("No manifests found: the inputs of this comparison cannot be traced.")))
    tm = (table_html(tables.timings(f)) + '<div class="grid2">'
          + table_html(tables.key_values(m.timings, "comparison wall time, seconds"))
          + table_html(tables.key_values(m.hardware, "hardware of the comparison")) + "</div>")
    parts.append(_section("timings", "Timings and hardware", tm))
    conf = (two_columns(tables.key_values(cfg, "detect section used by the comparison"))
            + "<details><summary>Full run configuration (YAML)</summary><pre>"
            + escape(yaml.safe_dump(f.config, sort_keys=False)) + "</pre></details>")
    parts.append(_section("config", "Configuration", conf))
    parts.append(_section("credits", "Attribution and licenses",
                          "<ul>" + "".join(f"<li>{escape(a)}</li>" for a in f.attributions) + "</ul>"))
    parts.append("<footer>Generated by Metalize · numbers from metrics.json beside this file</footer>")
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{escape(f.title)}</title><style>{CSS}</style></head><body><main>"
            + "\n".join(parts) + "</main></body></html>\n")
