"""Prefect flow for the synthesize stage: one `synthesize-shard` task per `synth.shard_size` items.

The stage is `pipeline.stages.SYNTH`; `flows.stage` turns its shards into tasks on a thread pool
of `runtime.workers`, or on a local Dask cluster of threads sharing one loaded generator when
`synth.dask` is true (torch releases the GIL in its kernels; a GPU is shared the same way). A
retried or re-run shard resumes from its journal and never rewrites a verified image. The
artifact is the augmented dataset's card.
"""

from __future__ import annotations

import re
from pathlib import Path

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from flows.stage import StageFlow, dask, threads
from pipeline.config import RunConfig
from pipeline.report import tables
from pipeline.data.version import DatasetVersion
from pipeline.stages import SYNTH
from pipeline.synth.stage import SynthResult
from pipeline.tables import to_markdown


def card_markdown(result: SynthResult) -> str:
    """The augmented set's counts and quality-gate checks, drawn by the report's table builders."""
    s = result.version.manifest["summary"]
    gate = tables.gate_summary(s)
    return "\n".join([
        f"# {result.version.id}", "",
        f"{s['images']['real']} real + {s['images']['synthetic']} synthetic B train images "
        f"({'cached' if result.cached else 'new'}); {s['gate']['rejected_images']} rejected, "
        f"{s['gate']['dropped_boxes']} boxes dropped.", "",
        to_markdown(tables.augmented_summary(s)), "",
        *([to_markdown(gate), ""] if gate is not None else []),
        f"Card: `{result.version.root / 'card' / 'README.md'}`"])


def publish(cfg: RunConfig, result: SynthResult) -> None:
    create_markdown_artifact(
        key="augmented-card-" + re.sub(r"[^a-z0-9-]+", "-", cfg.data.name.lower()),
        markdown=card_markdown(result),
        description=f"augmented dataset {result.version.id}",
    )
    get_run_logger().info("augmented %s (%s): %d accepted, %d rejected", result.version.root,
                          "cached" if result.cached else "new", result.accepted, result.rejected)


SYNTH_FLOW = StageFlow(SYNTH, publish, runner=lambda cfg: dask(processes=False) if cfg.synth.dask else threads)


@flow(name="synthesize", validate_parameters=False)
def synthesize_flow(cfg: RunConfig, dataset: DatasetVersion, model_dir: Path, progress: bool = True) -> SynthResult:
    """Translate labelled A with the CycleGAN at model_dir into an augmented version (cached)."""
    return SYNTH_FLOW.run(SYNTH.plan(cfg, dataset, Path(model_dir)), progress=progress)
