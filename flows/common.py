"""What every stage flow shares: the retry rule for transient failures."""

from __future__ import annotations


def retry_on_oserror(task, task_run, state) -> bool:
    """Retry a failed task only when it failed with an OSError (disk full, network filesystem
    hiccup); bad data or a bug would only fail again, so those fail fast."""
    try:
        state.result(raise_on_failure=True)
    except OSError:
        return True
    except BaseException:
        return False
    return False
