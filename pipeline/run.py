"""Where a pipeline run writes, and the ledger of runs.

A run's directory is content-addressed, `reports/<data.name>-<key12>/`, where the key covers the
detect and report config and the dataset/augmented versions it compares: rerunning an unchanged
flow finds its finished report (cached), and two runs of the same experiment share one directory
under a lock instead of clobbering each other. Every finished run is appended to
`reports/runs.jsonl` (time, key, report path, who ran it).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import socket
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from pipeline.config import RunConfig
from pipeline.store import read_manifest, stage_key

LEDGER = "runs.jsonl"


class RunRecord(BaseModel):
    """One line of reports/runs.jsonl."""

    model_config = ConfigDict(frozen=True, extra="allow")

    finished: str
    run_dir: str
    report: str
    dataset: str
    augmented: str | None
    model: str | None
    profile: str
    config_hash: str
    flow_run_id: str | None
    host: str


def run_dir_for(cfg: RunConfig, dataset_dir: Path, augmented_dir: Path | None) -> Path:
    parents = [m for m in (read_manifest(dataset_dir), read_manifest(augmented_dir) if augmented_dir else None) if m]
    key = stage_key(
        "compare",
        {"detect": cfg.detect.keyed(), "report": cfg.report.model_dump(mode="json")},
        parents,
    )
    return cfg.runtime.reports_dir / f"{cfg.data.name}-{key[:12]}"


def record_run(
    cfg: RunConfig,
    run_dir: Path,
    report: Path,
    dataset_dir: Path,
    augmented_dir: Path | None,
    model_dir: Path | None,
    flow_run_id: str | None = None,
) -> RunRecord:
    """Append one line to reports/runs.jsonl (O_APPEND: concurrent writers never interleave)."""
    rec = RunRecord(
        finished=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        run_dir=str(run_dir),
        report=str(report),
        dataset=dataset_dir.name,
        augmented=augmented_dir.name if augmented_dir else None,
        model=model_dir.name if model_dir else None,
        profile=cfg.profile,
        config_hash=cfg.hash(),
        flow_run_id=flow_run_id,
        host=socket.gethostname(),
    )
    ledger = cfg.runtime.reports_dir / LEDGER
    ledger.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(rec.model_dump()) + "\n").encode()
    fd = os.open(ledger, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)
    return rec


def read_runs(cfg: RunConfig) -> list[RunRecord]:
    """The ledger's runs, oldest first; a line that is not a run record (a torn write from a
    killed process, an edit by hand) is skipped."""
    ledger = cfg.runtime.reports_dir / LEDGER
    if not ledger.is_file():
        return []
    runs = []
    for line in ledger.read_text().splitlines():
        try:
            runs.append(RunRecord.model_validate_json(line))
        except ValidationError:
            continue
    return runs
