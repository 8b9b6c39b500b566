"""report.html rendered by headless Chromium: the screenshot is not blank and the numbers of
metrics.json are in the rendered page's text. Skipped (with the reason) without chromium; `make
test` installs it via scripts/test-deps.sh."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium not on PATH: `make test` installs it with "
                                "scripts/test-deps.sh only when run as root; else apt-get install chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chromium(html: Path, profile: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args, html.resolve().as_uri()],
                          capture_output=True, text=True, timeout=120)


def test_chromium_renders_the_report(report_cfg, fixture_run: Path, tmp_path: Path) -> None:
    import cv2

    from pipeline.report.build import build_report

    res = build_report(report_cfg, fixture_run / "compare", fixture_run)
    png = tmp_path / "report.png"
    shot = chromium(res.html, tmp_path / "profile", f"--screenshot={png}", "--window-size=1200,3000")
    assert png.is_file(), shot.stderr[-2000:]
    img = cv2.imread(str(png))
    assert img.shape[:2] == (3000, 1200)
    assert float(img.std()) > 20  # text, tables and charts, not a blank page
    # the bar chart's colours made it onto the page (real+synthetic blue, #1f6fb2 in BGR)
    assert (np.abs(img.astype(int) - [178, 111, 31]).sum(axis=2) < 30).sum() > 500

    dom = chromium(res.html, tmp_path / "profile", "--dump-dom").stdout
    from report_helpers import html_text

    text, _, _ = html_text(dom)
    m = json.loads(res.metrics.read_text())
    for arm in m["arms"]:
        s = arm["summary"]["map"]
        assert f"{s['mean']:.3f} ± {s['std']:.3f}" in text
    for c in m["comparisons"]:
        assert f"{c['delta']:+.3f}" in text and f"{c['ci_low']:+.3f} to {c['ci_high']:+.3f}" in text
    assert m["report"]["verdict"] in text.replace("\n", " ")
