"""Ultralytics stays offline: a whole arm (train, predict, own val) with the network blocked for
the process makes no connection attempt, and the settings/fonts that prevent them are in place."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from detect_helpers import REPO

BLOCKED_RUN = textwrap.dedent("""
    import json, socket, sys, traceback
    attempts = []
    def blocked(name):
        def f(*args, **kwargs):
            attempts.append({"call": name, "args": repr(args[:2])[:120],
                             "where": traceback.format_stack(limit=8)[-3].strip()})
            raise OSError(f"network blocked by test ({name})")
        return f
    socket.socket.connect = blocked("connect")
    socket.socket.connect_ex = blocked("connect_ex")
    socket.create_connection = blocked("create_connection")
    socket.getaddrinfo = blocked("getaddrinfo")

    if __name__ == "__main__":
        from pipeline.config import load_config
        from pipeline.data.version import DatasetVersion
        from pipeline.detect.compare import plan_runs
        from pipeline.detect.runs import run_arm_seed
        cfg_path, root, dataset, out = sys.argv[1:5]
        cfg = load_config(cfg_path, [f"runtime.output_root={root}", "detect.arms=[real]"])
        ds = DatasetVersion.open(dataset)
        _, _, specs = plan_runs(cfg, ds, None, out)
        rec = run_arm_seed(cfg, ds, None, specs[0])  # in this process: the patched sockets apply
        print("RESULT " + json.dumps({"attempts": attempts, "status": rec["status"]}))
""")


@pytest.mark.slow
def test_arm_with_network_blocked_makes_no_connection_attempt(tiny_root, tiny_dataset, tmp_path):
    script = tmp_path / "blocked_run.py"
    script.write_text(BLOCKED_RUN)
    env = {k: v for k, v in os.environ.items() if not k.startswith("YOLO_")}  # no help from the caller
    env["YOLO_CONFIG_DIR"] = str(tmp_path / "yolo-config")  # fresh: no fonts, default settings
    env["PYTHONPATH"] = str(REPO)
    proc = subprocess.run([sys.executable, str(script), str(REPO / "configs" / "tiny.yaml"), str(tiny_root),
                           str(tiny_dataset.root), str(tmp_path / "compare")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    result = json.loads(lines[-1][len("RESULT "):])
    assert result["status"] == "ok"
    assert result["attempts"] == []
    assert not (tmp_path / "runs").exists()  # nothing written to ./runs


def test_ensure_offline_settings_and_fonts(tmp_path):
    code = textwrap.dedent("""
        import json, os
        from pipeline.detect.offline import ensure_offline
        ensure_offline()
        from ultralytics.utils import SETTINGS, USER_CONFIG_DIR, ONLINE
        from ultralytics.utils import checks
        print(json.dumps({"sync": SETTINGS["sync"], "online": ONLINE, "autoinstall": checks.AUTOINSTALL,
                          "fonts": sorted(p.name for p in USER_CONFIG_DIR.glob("*.ttf"))}))
    """)
    env = {k: v for k, v in os.environ.items() if not k.startswith("YOLO_")}
    env["YOLO_CONFIG_DIR"] = str(tmp_path)
    env["PYTHONPATH"] = str(REPO)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got == {"sync": False, "online": False, "autoinstall": False,
                   "fonts": ["Arial.Unicode.ttf", "Arial.ttf"]}
    assert json.loads((Path(tmp_path) / "Ultralytics" / "settings.json").read_text())["sync"] is False
