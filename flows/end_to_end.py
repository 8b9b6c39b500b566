"""The end-to-end flow: `pipeline.experiment` with every stage a Prefect subflow.

ingest -> train CycleGAN -> synthesize -> compare -> report, each stage a subflow whose units
(shards, the training, arm x seed runs) are tasks and which publishes its artifact; the run's
per-stage table is the flow's own artifact. Caching, resuming and lineage are the experiment's
(see pipeline/experiment.py).

Not named `flows/pipeline.py`: Prefect loads a deployment's entrypoint file with its folder first
on `sys.path`, where such a file would shadow the `pipeline` package.

`python -m flows.end_to_end [CONFIG] [section.key=value ...]` runs it once (what `metalize run
--prefect` does) and prints the report's path last.
"""

from __future__ import annotations

import sys
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run

from flows.compare import COMPARE_FLOW
from flows.ingest import INGEST_FLOW
from flows.report import REPORT_FLOW
from flows.synthesize import SYNTH_FLOW
from flows.train_gan import GAN_FLOW
from pipeline.config import load_config
from pipeline.experiment import experiment, summary_markdown
from pipeline.stages import Stage

FLOWS = {f.stage.name: f for f in (INGEST_FLOW, GAN_FLOW, SYNTH_FLOW, COMPARE_FLOW, REPORT_FLOW)}


def as_subflow(stage: Stage, plan: Any) -> Any:
    return FLOWS[stage.name].subflow(plan)


@flow(name="metalize-pipeline", validate_parameters=True)
def metalize_pipeline(config: str | None = None, overrides: list[str] | None = None) -> dict:
    """Run the whole experiment for one profile.

    Returns {"report": <report.html>, "run_dir": ..., "stages": {stage: {"dir", "cached", "seconds"}}}.
    """
    cfg = load_config(config, overrides or [])
    get_run_logger().info("profile %s, output root %s", cfg.profile, cfg.runtime.output_root.resolve())
    result = experiment(cfg, run=as_subflow, flow_run_id=flow_run.get_id())
    create_markdown_artifact(key="metalize-run", markdown=summary_markdown(cfg.profile, result),
                             description="Metalize pipeline run")
    return result.to_dict()


def main(argv: list[str] | None = None) -> int:
    """Run the flow once with the CLI's config handling, error messages and closing lines."""
    import typer

    from pipeline.cli import common
    from pipeline.cli.common import config_args, load
    from pipeline.cli.run import print_stages, run_or_fail

    common.OWN_PROCESS = True  # this process is the command's own: temporary files go under the output root
    args = list(sys.argv[1:] if argv is None else argv)
    config, overrides = config_args(args[0] if args else None, args[1:])
    try:
        load(config, overrides)  # fail fast on a bad config; sets the state folders
    except typer.Exit as e:
        return e.exit_code
    path = str(config.resolve()) if config else None
    return run_or_fail(lambda: metalize_pipeline(config=path, overrides=overrides), print_stages)


if __name__ == "__main__":
    sys.exit(main())
