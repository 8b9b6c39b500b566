"""`make serve` (scripts/serve.sh) checks what answers on its port: a Prefect API is used, anything
else stops it with a message naming the port, and a server that does not come up (exits, or never
answers) stops it loudly with the end of its log. Fast: stub programs stand in for Prefect and
Metalize, and a tiny HTTP server for whatever holds the port."""

from __future__ import annotations

import http.server
import os
import socket
import subprocess
import threading
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Answers(http.server.BaseHTTPRequestHandler):
    routes: dict[str, str] = {}

    def do_GET(self):  # noqa: N802 - the stdlib's name
        body = self.routes.get(self.path, "hello").encode()
        self.send_response(200)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def http_server():
    servers = []

    def start(routes: dict[str, str]) -> int:
        handler = type("H", (_Answers,), {"routes": routes})
        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        return srv.server_address[1]

    yield start
    for s in servers:
        s.shutdown()


def _stub(path: Path, body: str) -> Path:
    path.write_text("#!/usr/bin/env bash\n" + body + "\n")
    path.chmod(0o755)
    return path


def serve(tmp_path: Path, port: int, prefect: str, startup_s: int = 5) -> subprocess.CompletedProcess:
    calls = tmp_path / "metalize-calls.txt"
    metalize = _stub(tmp_path / "metalize", f'echo "$@" >> {calls}')
    env = {**os.environ, "PREFECT_PORT": str(port), "PREFECT_HOST": "127.0.0.1", "PREFECT_BIN": prefect,
           "METALIZE_BIN": str(metalize), "PREFECT_HOME": str(tmp_path / "prefect-home"),
           "PREFECT_STARTUP_S": str(startup_s)}
    return subprocess.run(["bash", str(REPO / "scripts" / "serve.sh"), "configs/tiny.yaml"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)


def test_an_existing_prefect_server_is_used(tmp_path, http_server) -> None:
    port = http_server({"/api/health": "true", "/api/admin/version": '"3.9.1"'})
    proc = serve(tmp_path, port, prefect="/bin/false")
    assert proc.returncode == 0, proc.stderr
    assert "using the Prefect 3.9.1 server already on 127.0.0.1:" in proc.stdout
    assert (tmp_path / "metalize-calls.txt").read_text().split() == ["serve", "configs/tiny.yaml", "--cron", "0",
                                                                     "2", "*", "*", "*"]


def test_another_program_on_the_port_stops_serve(tmp_path, http_server) -> None:
    port = http_server({})  # answers every path with "hello"
    proc = serve(tmp_path, port, prefect="/bin/false")
    assert proc.returncode == 1
    assert f"127.0.0.1:{port} is taken by a program that is not a Prefect server" in proc.stderr
    assert not (tmp_path / "metalize-calls.txt").exists()


def test_a_server_that_exits_stops_serve_with_its_log(tmp_path) -> None:
    prefect = _stub(tmp_path / "fake-prefect", 'echo "database is locked" >&2; exit 3')
    proc = serve(tmp_path, _free_port(), prefect=str(prefect))
    assert proc.returncode == 1
    assert "database is locked" in proc.stderr and "exited before it answered" in proc.stderr
    assert not (tmp_path / "metalize-calls.txt").exists()


def test_a_server_that_never_answers_stops_serve(tmp_path) -> None:
    prefect = _stub(tmp_path / "fake-prefect", "echo starting; exec sleep 60")
    proc = serve(tmp_path, _free_port(), prefect=str(prefect), startup_s=2)
    assert proc.returncode == 1
    assert "did not answer" in proc.stderr and "within 2 s" in proc.stderr and "starting" in proc.stderr
