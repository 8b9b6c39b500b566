"""Which `Detector` a config asks for: `detect.backend` names one entry of `BACKENDS`.

Backends are imported only when chosen (ultralytics is heavy and must not load before
`offline.ensure_offline()`), and the interface in `base` never imports an implementation.
"""

from __future__ import annotations

import importlib

from pipeline.config import RunConfig
from pipeline.detect.base import Detector

BACKENDS: dict[str, str] = {"yolo": "pipeline.detect.yolo:YoloDetector"}


def make_detector(cfg: RunConfig, *, threads: int | None = None) -> Detector:
    """The backend named by cfg.detect.backend."""
    target = BACKENDS.get(cfg.detect.backend)
    if target is None:
        raise ValueError(f"detect.backend {cfg.detect.backend!r}: unknown detector backend "
                         f"(known: {', '.join(sorted(BACKENDS))})")
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)(cfg, threads=threads)
