"""Whole-step CUDA graphs: run a step function eagerly a few times, capture it once, replay it.

At batch 1 a CycleGAN step launches a few thousand small kernels and the GPU waits for the host
between them; a replayed graph launches them all at once. What a graph needs from the step (see
the "whole-network capture" notes of torch.cuda): fixed shapes and addresses (inputs copied into
static buffers before each replay), no host synchronisation and no host decision that depends on
device data (the image pool's draws are made on the host beforehand), optimizer state on the
device (fused Adam keeps its step counters there; the learning rate is a device tensor filled from
the host schedule before each replay).

`StepGraph(warmup)` runs `fn` uncaptured `warmup` times on a side stream (cuDNN autotuning, lazy
optimizer state and torch.compile's first-call compilation happen there), captures it on the next
call and replays it afterwards. If capture fails, it says why once and keeps running `fn` eagerly,
which computes the same thing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch

log = logging.getLogger(__name__)


class StepGraph:
    def __init__(self, device: torch.device, warmup: int = 3, capture: bool = True,
                 before_capture: Callable[[], None] | None = None,
                 after_failure: Callable[[], None] | None = None):
        self.device, self.warmup = device, warmup
        self.capture = capture and device.type == "cuda"
        self.before_capture, self.after_failure = before_capture, after_failure
        self.graph: torch.cuda.CUDAGraph | None = None
        self.calls = 0
        self.capture_seconds: float | None = None
        self.failure: str | None = None  # why capture failed, if it did
        self._stream = torch.cuda.Stream(device) if self.capture else None

    @property
    def captured(self) -> bool:
        return self.graph is not None

    def reset(self) -> None:
        """Forget the graph (e.g. after the optimizer state was replaced): the next call recaptures."""
        self.graph = None

    def __call__(self, fn: Callable[[], None]) -> None:
        self.calls += 1
        if not self.capture:
            fn()
        elif self.graph is not None:
            self.graph.replay()
        elif self.calls <= self.warmup:
            side, main = self._stream, torch.cuda.current_stream(self.device)
            side.wait_stream(main)
            with torch.cuda.stream(side):
                fn()
            main.wait_stream(side)
        else:
            self._capture(fn)

    def _capture(self, fn: Callable[[], None]) -> None:
        import time

        t0 = time.perf_counter()
        torch.cuda.synchronize(self.device)
        if self.before_capture is not None:
            self.before_capture()
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph, capture_error_mode="thread_local"):  # DataLoader threads may pin
                fn()
        except Exception as e:  # an op that cannot be captured: same maths, uncaptured
            self.failure = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            log.warning("CUDA graph capture of the training step failed; continuing without graphs (%s)",
                        self.failure)
            self.capture = False
            torch.cuda.synchronize(self.device)
            if self.after_failure is not None:
                self.after_failure()
            fn()
            return
        graph.replay()  # capture records without running: this call's step runs here
        self.graph = graph
        self.capture_seconds = time.perf_counter() - t0
