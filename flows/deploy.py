"""Schedules: serve the pipeline from this process (`flow.serve`) or build a deployment for a
work pool (`prefect deploy`, see prefect.yaml). Both need a Prefect server (PREFECT_API_URL)."""

from __future__ import annotations

from datetime import timedelta

from flows.end_to_end import metalize_pipeline


def pipeline_deployment(
    *,
    config: str | None,
    overrides: list[str],
    name: str,
    cron: str | None = None,
    interval: float | None = None,
):
    """A RunnerDeployment of the pipeline with its config path and overrides as parameters."""
    return metalize_pipeline.to_deployment(
        name=name,
        cron=cron,
        interval=timedelta(seconds=interval) if interval else None,
        parameters={"config": config, "overrides": overrides},
        tags=["metalize"],
        # Overlapping scheduled runs queue instead of racing for the GPU and the output root.
        concurrency_limit=1,
        description="Metalize: ingest → CycleGAN → synthesize → compare → report",
    )


def serve_pipeline(
    *,
    config: str | None,
    overrides: list[str],
    name: str,
    cron: str | None = None,
    interval: float | None = None,
    limit: int | None = None,
) -> None:
    """Block and run scheduled flow runs of the pipeline in this process."""
    from prefect import serve

    serve(
        pipeline_deployment(config=config, overrides=overrides, name=name, cron=cron, interval=interval),
        limit=limit,
    )


def main(argv: list[str] | None = None) -> None:
    """`python -m flows.deploy --name N (--cron C | --interval S) [--config FILE] -- [overrides]`:
    what `metalize serve` runs."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m flows.deploy", description=main.__doc__)
    ap.add_argument("--name", required=True)
    ap.add_argument("--config", default=None)
    when = ap.add_mutually_exclusive_group(required=True)
    when.add_argument("--cron")
    when.add_argument("--interval", type=float)
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args(argv)
    serve_pipeline(config=args.config, overrides=args.overrides, name=args.name, cron=args.cron,
                   interval=args.interval)


if __name__ == "__main__":
    main()
