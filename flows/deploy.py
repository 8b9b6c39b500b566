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
