"""Stage progress: plain lines when stderr is not a terminal, nothing when disabled."""

from __future__ import annotations

import io

from pipeline.progress import stage_progress


def test_plain_lines_off_a_terminal_report_count_rate_and_status() -> None:
    out = io.StringIO()
    with stage_progress("CycleGAN", total=10, done=2, unit="it", every_s=0.0, stream=out) as bar:
        for _ in range(8):
            bar.advance(1, "G 0.5")
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("CycleGAN: 3/10 it (30%)") and "[G 0.5]" in lines[0]
    assert lines[-1].startswith("CycleGAN: 10/10 it in ")
    assert len(lines) == 9


def test_throttled_and_disabled() -> None:
    out = io.StringIO()
    with stage_progress("ingest", total=100, every_s=3600, stream=out) as bar:
        bar.advance(50)
    assert out.getvalue().splitlines() == [out.getvalue().splitlines()[-1]]  # only the final line
    quiet = io.StringIO()
    with stage_progress("x", total=3, enabled=False, stream=quiet) as bar:
        bar.advance(3)
    assert quiet.getvalue() == ""
