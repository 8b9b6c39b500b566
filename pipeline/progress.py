"""Progress of a long stage, wherever it runs: a rich bar on a terminal, a plain line every
`every_s` seconds (and at the end) when stderr is a log file, CI or a Prefect worker.

    with stage_progress("CycleGAN", total=2000, done=500, unit="it") as bar:
        bar.advance(1, "G 0.812 D_A 0.231")

One bar at a time per process (rich allows one live display); a bar opened while another is live
falls back to plain lines. `enabled=False` makes every call a no-op.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO

_live_lock = threading.Lock()
_live = False


class StageProgress:
    """Counts work done out of `total`; shows rate and time left. Thread-safe `advance`."""

    def __init__(self, description: str, total: int, *, done: int = 0, unit: str = "it",
                 enabled: bool = True, every_s: float = 30.0, stream: TextIO | None = None):
        self.description, self.total, self.done, self.unit = description, max(0, int(total)), int(done), unit
        self.enabled, self.every_s = enabled, every_s
        self.stream = stream if stream is not None else sys.stderr
        self.status = ""
        self._start_done = self.done
        self._t0 = self._last = time.monotonic()
        self._lock = threading.Lock()
        self._rich = None
        self._task = None
        self._owns_live = False

    # ------------------------------------------------------------------------------- lifecycle
    def __enter__(self) -> "StageProgress":
        global _live
        if not self.enabled:
            return self
        if _isatty(self.stream):
            with _live_lock:
                if not _live:
                    _live = self._owns_live = True
        if self._owns_live:
            from rich.console import Console
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                       TimeRemainingColumn)

            self._rich = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                  TextColumn("{task.fields[rate]}"), TimeRemainingColumn(),
                                  TextColumn("{task.fields[status]}"),
                                  console=Console(file=self.stream), transient=True)
            self._task = self._rich.add_task(self.description, total=self.total, completed=self.done,
                                             rate="", status="")
            self._rich.start()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        global _live
        if not self.enabled:
            return
        if self._rich is not None:
            self._rich.stop()
            with _live_lock:
                _live = False
        if exc_type is None:
            self._line(final=True)

    # ---------------------------------------------------------------------------------- update
    def advance(self, n: int = 1, status: str | None = None) -> None:
        if not self.enabled:
            return
        with self._lock:
            self.done += n
            if status is not None:
                self.status = status
            if self._rich is not None:
                self._rich.update(self._task, completed=self.done, rate=self.rate_text(), status=self.status)
            elif time.monotonic() - self._last >= self.every_s:
                self._line()

    @property
    def rate(self) -> float:
        """Units per second since this bar opened (resumed work not counted)."""
        dt = time.monotonic() - self._t0
        return (self.done - self._start_done) / dt if dt > 0 else 0.0

    def rate_text(self) -> str:
        r = self.rate
        if r <= 0:
            return f"-- {self.unit}/s"
        return f"{r:.2f} {self.unit}/s" if r >= 1 else f"{1 / r:.1f} s/{self.unit}"

    def eta_s(self) -> float | None:
        r = self.rate
        return (self.total - self.done) / r if r > 0 and self.total else None

    def _line(self, final: bool = False) -> None:
        self._last = time.monotonic()
        if self._rich is not None and not final:
            return
        elapsed = self._last - self._t0
        if final:
            text = f"{self.description}: {self.done}/{self.total} {self.unit} in {_hms(elapsed)}"
        else:
            eta = self.eta_s()
            pct = f" ({100 * self.done / self.total:.0f}%)" if self.total else ""
            text = (f"{self.description}: {self.done}/{self.total} {self.unit}{pct}, {self.rate_text()}"
                    + (f", about {_hms(eta)} left" if eta is not None else ""))
        if self.status:
            text += f"  [{self.status}]"
        print(text, file=self.stream, flush=True)


def stage_progress(description: str, total: int, **kwargs) -> StageProgress:
    """A StageProgress to use as a context manager (see the module docstring)."""
    return StageProgress(description, total, **kwargs)


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _hms(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"
