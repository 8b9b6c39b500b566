"""Prefect flows: thin wrappers that call `pipeline/` functions as tasks and add retries, caching, artifacts and schedules."""
