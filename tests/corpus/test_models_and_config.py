"""The rest of the bad-input corpus: model files and configurations, through the CLI as a user
meets them. Each ends with a non-zero exit and one readable line naming the file or key; none
runs code from a file, none writes anything."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "configs" / "tiny.yaml"


def metalize(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


class _RunsCode:
    """Unpickling this calls os.system: what a malicious checkpoint does."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(scope="module")
def model_files(tmp_path_factory) -> dict[str, Path]:
    from pipeline.gan.checkpoint import save_weights
    from pipeline.gan.networks import ResnetGenerator

    d = tmp_path_factory.mktemp("models")
    net = ResnetGenerator(3, 3, 8, 2)
    good = save_weights(d / "good.safetensors", net.state_dict(), {"ngf": 8, "n_blocks": 2, "load_size": 64})
    files = {"good": good, "marker": d / "code-ran"}
    torch.save({"state_dict": _RunsCode(files["marker"])}, d / "runs-code.pt")
    files["runs-code"] = d / "runs-code.pt"
    data = good.read_bytes()
    (d / "truncated.safetensors").write_bytes(data[: len(data) // 2])
    files["truncated"] = d / "truncated.safetensors"
    other = ResnetGenerator(3, 3, 16, 2)
    files["wrong-arch"] = save_weights(d / "wrong-arch.safetensors", other.state_dict(),
                                       {"ngf": 8, "n_blocks": 2, "load_size": 64})  # metadata lies
    from pipeline.gan.networks import PatchDiscriminator

    files["discriminator"] = save_weights(d / "discriminator.safetensors", PatchDiscriminator(3, 8).state_dict())
    files["not-weights"] = d / "notes.safetensors"
    files["not-weights"].write_text("these are my notes\n")
    imgs = d / "images"
    imgs.mkdir()
    import cv2
    import numpy as np

    cv2.imwrite(str(imgs / "a.png"), np.full((40, 40, 3), 120, np.uint8))
    files["images"] = imgs
    return files


@pytest.mark.parametrize("name, message", [
    ("runs-code", r"refus|unsafe|not allowed|weights_only"),
    ("truncated", r"not a readable safetensors"),
    ("wrong-arch", r"does not match|size mismatch|shape"),
    ("discriminator", r"not a ResnetGenerator"),
    ("not-weights", r"not a readable safetensors"),
])
def test_bad_model_file_is_refused_by_translate(model_files, tmp_path, name, message) -> None:
    import re

    out = tmp_path / "out"
    proc = metalize("translate", str(model_files[name]), str(model_files["images"]), str(out), "--device", "cpu",
                    cwd=tmp_path)
    text = " ".join((proc.stdout + proc.stderr).split())
    assert proc.returncode != 0, text
    assert str(model_files[name].name) in text and re.search(message, text, re.I), text
    assert "Traceback" not in text
    assert not model_files["marker"].exists(), "the pickle's code ran"
    assert not out.exists() or not any(out.iterdir())


def test_good_model_file_translates(model_files, tmp_path) -> None:
    out = tmp_path / "out"
    proc = metalize("translate", str(model_files["good"]), str(model_files["images"]), str(out), "--device", "cpu",
                    cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (out / "a.png").is_file()


@pytest.mark.parametrize("override, message", [
    ("gan.iteratons=5", r"unknown key 'gan.iteratons' \(did you mean 'gan.iterations'\?\)"),
    ("detect.epochs=many", r"detect.epochs.*integer"),
    ("data.demo.image_size=-64", r"data.demo.image_size.*greater than or equal"),
    ("gan.crop_size=0", r"gan.crop_size"),
    ("runtime.workers=-1", r"runtime.workers"),
])
def test_bad_config_values_are_named(tmp_path, override, message) -> None:
    import re

    proc = metalize("ingest", str(TINY), override, cwd=tmp_path)
    text = " ".join(proc.stderr.split())
    assert proc.returncode == 2 and re.search(message, text), text
    assert not list(tmp_path.iterdir())


def test_missing_paths_and_an_output_root_inside_the_inputs_are_refused(tmp_path) -> None:
    import yaml

    images = tmp_path / "photos"
    images.mkdir()
    raw = {"data": {"name": "mine", "source": "folders",
                    "a": [{"images": str(images), "format": "none", "split": "unlabelled"}],
                    "b": [{"images": str(tmp_path / "nowhere"), "format": "none", "split": "unlabelled"}]},
           "runtime": {"output_root": str(tmp_path / "out")}}
    cfg = tmp_path / "mine.yaml"
    cfg.write_text(yaml.safe_dump(raw))
    proc = metalize("ingest", str(cfg), cwd=tmp_path)
    text = " ".join(proc.stderr.split())
    assert proc.returncode != 0 and "nowhere" in text and "not found" in text, text

    raw["data"]["b"][0]["images"] = str(images)
    raw["runtime"]["output_root"] = str(images / "metalize-out")
    cfg.write_text(yaml.safe_dump(raw))
    before = sorted(p.name for p in images.iterdir())
    proc = metalize("ingest", str(cfg), cwd=tmp_path)
    text = " ".join(proc.stderr.split())
    assert proc.returncode != 0 and "output_root" in text and "inside" in text, text
    assert sorted(p.name for p in images.iterdir()) == before  # nothing written into the photos


def test_unknown_config_file_and_bad_yaml(tmp_path) -> None:
    proc = metalize("ingest", str(tmp_path / "nope.yaml"), cwd=tmp_path)
    assert proc.returncode == 2 and "not found" in proc.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("gan: [unclosed\n")
    proc = metalize("ingest", str(bad), cwd=tmp_path)
    assert proc.returncode == 2 and "bad.yaml" in proc.stderr
