"""The end-to-end flow: ingest → train CycleGAN → synthesize → compare → report, as subflows.

Each stage caches itself (its output directory is keyed by its inputs' manifests, its config
section and the code version), so a rerun of an unchanged flow only checks hashes, a changed
value reruns just the stages downstream of it, and a killed run continues from the last finished
stage (and, inside CycleGAN training and the comparison, from their checkpoints).
"""

from __future__ import annotations

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
from pipeline.run import record_run, run_dir_for
from pipeline.store import dir_lock


@flow(name="metalize-pipeline", log_prints=True, validate_parameters=True)
def metalize_pipeline(config: str | None = None, overrides: list[str] | None = None) -> str:
    """Run the whole experiment for one profile; returns the path of report.html."""
    log = get_run_logger()
    cfg = load_config(config, overrides or [])
    log.info("profile %s, output root %s", cfg.profile, cfg.runtime.output_root.resolve())

    ingested = ingest_flow(cfg)
    dataset = ingested.version
    gan = train_gan_flow(cfg, dataset)
    synth = synthesize_flow(cfg, dataset, gan.model_dir)
    augmented = synth.version

    run_dir = run_dir_for(cfg, dataset.root, augmented.root)
    with dir_lock(run_dir):  # a second run of the same experiment waits, then finds it cached
        compare_flow(cfg, dataset, augmented, run_dir / "compare")
        report = report_flow(
            cfg, run_dir / "compare", run_dir, dataset=dataset, gan_dir=gan.model_dir, augmented=augmented
        )
    record_run(cfg, run_dir, report.html, dataset.root, augmented.root, gan.model_dir, flow_run.get_id())
    create_markdown_artifact(
        key="metalize-run",
        markdown=_summary(cfg.profile, report.html, dataset.root, gan.model_dir, augmented.root),
        description="Metalize pipeline run",
    )
    log.info("report: %s", report.html)
    return str(report.html)


def _summary(profile: str, html: Path, dataset: Path, model: Path, augmented: Path) -> str:
    return (
        f"# Metalize run ({profile})\n\n"
        f"- report: [{html}](file://{Path(html).resolve()})\n"
        f"- dataset: `{dataset.name}`\n- CycleGAN: `{model.name}`\n- augmented: `{augmented.name}`\n"
    )
