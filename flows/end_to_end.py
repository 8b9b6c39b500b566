"""The end-to-end flow: ingest → train CycleGAN → synthesize → compare → report, as subflows.

Each stage caches itself (its output directory is keyed by its inputs' manifests, its config
section and the code version), so a rerun of an unchanged flow only checks hashes, a changed
value reruns just the stages downstream of it, and a killed run continues from the last finished
stage (and, inside CycleGAN training and the comparison, from their checkpoints).

Not named `flows/pipeline.py`: Prefect loads a deployment's entrypoint file with its folder first
on `sys.path`, where such a file would shadow the `pipeline` package.
"""

from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run

from flows.compare import compare_flow
from flows.ingest import ingest_flow
from flows.report import report_flow
from flows.synthesize import synthesize_flow
from flows.train_gan import train_gan_flow
from pipeline.config import load_config
from pipeline.preflight import preflight
from pipeline.run import record_run, run_dir_for
from pipeline.store import dir_lock


@flow(name="metalize-pipeline", validate_parameters=True)
def metalize_pipeline(config: str | None = None, overrides: list[str] | None = None) -> dict:
    """Run the whole experiment for one profile.

    Returns {"report": <report.html>, "run_dir": ..., "stages": {stage: {"dir", "cached", "seconds"}}}.
    """
    log = get_run_logger()
    cfg = load_config(config, overrides or [])
    log.info("profile %s, output root %s", cfg.profile, cfg.runtime.output_root.resolve())
    stages: dict[str, dict] = {}
    clock = _Clock()

    with clock("ingest"):
        ingested = ingest_flow(cfg)
    dataset = ingested.version
    stages["ingest"] = _stage(dataset.root, ingested.cached, clock.seconds["ingest"])
    preflight(cfg, dataset)  # too little data stops here, before any training
    with clock("gan"):
        gan = train_gan_flow(cfg, dataset)
    stages["gan"] = _stage(gan.model_dir, gan.cached, clock.seconds["gan"])
    with clock("synthesize"):
        synth = synthesize_flow(cfg, dataset, gan.model_dir)
    augmented = synth.version
    stages["synthesize"] = _stage(augmented.root, synth.cached, clock.seconds["synthesize"])

    run_dir = run_dir_for(cfg, dataset.root, augmented.root)
    with dir_lock(run_dir):  # a second run of the same experiment waits, then finds it cached
        with clock("compare"):
            compared = compare_flow(cfg, dataset, augmented, run_dir / "compare")
        stages["compare"] = _stage(compared.out_dir, compared.cached, clock.seconds["compare"])
        with clock("report"):
            report = report_flow(
                cfg, run_dir / "compare", run_dir, dataset=dataset, gan_dir=gan.model_dir, augmented=augmented
            )
        stages["report"] = _stage(run_dir, report.cached, clock.seconds["report"])
    html = report.html
    record_run(cfg, run_dir, html, dataset.root, augmented.root, gan.model_dir, flow_run.get_id())
    # The per-stage table is the run's artifact (the UI) and the CLI's closing lines: printed once.
    create_markdown_artifact(
        key="metalize-run",
        markdown=_summary(cfg.profile, Path(html), stages),
        description="Metalize pipeline run",
    )
    return {"report": str(html), "run_dir": str(run_dir), "stages": stages}


class _Clock:
    """Wall seconds per stage; announces each stage on stderr so a long run shows where it is."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, name: str):
        print(f"== {name}", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = time.perf_counter() - t0


def _stage(directory: Path, cached: bool, seconds: float) -> dict:
    return {"dir": str(directory), "cached": bool(cached), "seconds": round(seconds, 2)}


def _summary(profile: str, html: Path, stages: dict[str, dict]) -> str:
    rows = "\n".join(
        f"| {name} | {'cached' if st['cached'] else 'ran'} | {st['seconds']:.0f} | `{Path(st['dir']).name}` |"
        for name, st in stages.items()
    )
    return (
        f"# Metalize run ({profile})\n\n**Report:** [{html}](file://{html.resolve()})\n\n"
        f"| stage | status | seconds | output |\n|---|---|---:|---|\n{rows}\n"
    )
