"""What every stage flow shares: the retry rule for transient failures, and the "gpu" global
concurrency limit that keeps two GPU stages off one device."""

from __future__ import annotations

import logging

from pipeline.store import is_transient

GPU_LIMIT = "gpu"
log = logging.getLogger(__name__)


def retry_on_oserror(task, task_run, state) -> bool:
    """Retry a failed task only when it failed with a transient OSError (a network file system
    hiccup); a full disk, a permission error, bad data or a bug would only fail again, so those
    fail fast."""
    try:
        state.result(raise_on_failure=True)
    except OSError as e:
        return is_transient(e)
    except BaseException:
        return False
    return False


def ensure_gpu_limit(name: str = GPU_LIMIT, slots: int = 1) -> bool:
    """Create the global concurrency limit `name` with `slots` slots unless it exists.

    Idempotent, and safe in ephemeral mode (the limit then lives in the ephemeral database). An
    existing limit is left as it is, so an operator can give a multi-GPU host more slots
    (`prefect gcl update gpu --limit 2`). Returns True when the limit exists afterwards; a server
    that cannot be reached is logged, not fatal (the stage then runs unthrottled).
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    try:
        with get_client(sync_client=True) as client:
            try:
                client.read_global_concurrency_limit_by_name(name)
                return True
            except ObjectNotFound:
                pass
            try:
                client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=slots))
                log.info("created the global concurrency limit %r with %d slot(s)", name, slots)
            except ObjectAlreadyExists:  # another run created it in between
                pass
            return True
    except Exception as e:  # noqa: BLE001 - throttling is a courtesy; the work must not fail for it
        log.warning("could not create the global concurrency limit %r (%s: %s); running unthrottled",
                    name, type(e).__name__, e)
        return False
