"""The comparison report: plots, Markdown, self-contained HTML and metrics.json.

build.py (`build_report`, the stage) gathers `facts.py` (verdict, arm rows, lineage, credits: every
number once), draws `plots.py` (bar chart with uplift CIs, PR curves, per-class AP, training
curves) and `samples.py` (test detections per arm, synthetic samples), and renders the same
`tables.py` through `markdown.py` (report.md) and `html.py` (report.html).
"""
