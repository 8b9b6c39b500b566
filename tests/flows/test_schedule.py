"""A real Prefect server on 127.0.0.1: a served deployment of the tiny pipeline with a short
interval schedule is started by the scheduler, completes, and leaves its report behind."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(api: str, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"prefect server exited with {proc.returncode}")
        try:
            if httpx.get(f"{api}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"prefect server at {api} not healthy after {timeout} s")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def test_scheduler_starts_a_served_deployment(tmp_path: Path, tiny_root: Path, pipeline_run) -> None:
    port = _free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ,
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "PREFECT_API_URL": api,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_UI_ENABLED": "false",
        "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "2",
        "PREFECT_RUNNER_POLL_FREQUENCY": "2",
        "PREFECT_LOGGING_LEVEL": "WARNING",
    }
    env.pop("PREFECT_API_KEY", None)
    logs = tmp_path / "logs"
    logs.mkdir()
    server = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env, cwd=tmp_path, stdout=open(logs / "server.log", "wb"), stderr=subprocess.STDOUT,
    )
    served = None
    try:
        _wait_healthy(api, server, timeout=120)
        code = (
            "from flows.deploy import serve_pipeline;"
            f"serve_pipeline(config={str(REPO / 'configs' / 'tiny.yaml')!r},"
            f" overrides=['runtime.output_root={tiny_root}'], name='tiny-scheduled', interval=20, limit=1)"
        )
        served = subprocess.Popen(
            [sys.executable, "-c", code], env=env, cwd=REPO,
            stdout=open(logs / "serve.log", "wb"), stderr=subprocess.STDOUT,
        )
        run = _wait_for_completed_run(api, served, timeout=300, logs=logs)
        assert run["deployment_id"] is not None
        ledger = [json.loads(x) for x in (tiny_root / "reports" / "runs.jsonl").read_text().splitlines()]
        mine = [r for r in ledger if r["flow_run_id"] == run["id"]]
        assert mine, "the scheduled run did not record its report"
        assert Path(mine[0]["report"]).is_file()
    finally:
        if served is not None:
            _stop(served)
        _stop(server)


def _wait_for_completed_run(api: str, served: subprocess.Popen, timeout: float, logs: Path) -> dict:
    """The first finished run of a deployment (the server also holds many runs still scheduled)."""
    finished = {"flow_runs": {"deployment_id": {"is_null_": False},
                              "state": {"type": {"any_": ["COMPLETED", "FAILED", "CRASHED"]}}}}
    deadline = time.monotonic() + timeout
    seen: list[str] = []
    while time.monotonic() < deadline:
        if served.poll() is not None and served.returncode != 0:
            raise AssertionError(f"serve exited {served.returncode}:\n{(logs / 'serve.log').read_text()[-3000:]}")
        r = httpx.post(f"{api}/flow_runs/filter", json={**finished, "limit": 5}, timeout=10)
        r.raise_for_status()
        for run in r.json():
            state = run["state"]["type"]
            if state == "COMPLETED":
                return run
            raise AssertionError(f"scheduled run {state}:\n{(logs / 'serve.log').read_text()[-3000:]}")
        r = httpx.post(f"{api}/flow_runs/filter", json={"limit": 5, "sort": "EXPECTED_START_TIME_DESC"}, timeout=10)
        seen = [f"{run['name']}:{(run.get('state') or {}).get('type')}" for run in r.json()]
        time.sleep(2)
    raise TimeoutError(f"no scheduled run finished in {timeout} s; latest runs {seen}")


def test_deployment_entrypoint_loads_like_a_worker_loads_it() -> None:
    """A worker loads prefect.yaml's entrypoint as a script with its folder first on sys.path; no
    module there may shadow the `pipeline` package (a fresh process, as on a worker)."""
    import yaml

    entry = yaml.safe_load((REPO / "prefect.yaml").read_text())["deployments"][0]["entrypoint"]
    code = (
        "from prefect.flows import load_flow_from_entrypoint;"
        f"f = load_flow_from_entrypoint({entry!r}); print(f.name)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith("metalize-pipeline")
