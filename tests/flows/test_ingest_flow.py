"""The ingest Prefect flow: per-shard tasks, retries on OSError only, card artifact, Dask runner."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from pipeline.config import validate_config


def make_folder(root: Path, n: int = 7) -> Path:
    rng = np.random.default_rng(0)
    images, anns = [], []
    for i in range(n):
        img = rng.integers(0, 255, (40, 56, 3), dtype=np.uint8)
        (root / "images").mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / "images" / f"p{i}.png"), img)
        images.append({"id": i + 1, "file_name": f"p{i}.png", "width": 56, "height": 40})
        anns.append({"id": i + 1, "image_id": i + 1, "category_id": 1 + i % 2, "bbox": [4, 4, 20, 12]})
    (root / "images" / "broken.png").write_bytes(b"")
    images.append({"id": n + 1, "file_name": "broken.png"})
    (root / "ann.json").write_text(json.dumps({"images": images, "annotations": anns,
                                               "categories": [{"id": 1, "name": "gear"}, {"id": 2, "name": "nut"}]}))
    return root


def cfg_for(folder: Path, out: Path, **data):
    return validate_config({
        "runtime": {"output_root": str(out), "workers": 2},
        "data": {"name": "flowtest", "source": "folders", "shard_size": 3,
                 "b": [{"images": str(folder / "images"), "annotations": str(folder / "ann.json")}], **data},
    })


def test_flow_builds_the_same_version_as_the_function_and_publishes_the_card(prefect_harness, tmp_path,
                                                                              capsys):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from flows.ingest import ingest_flow
    from pipeline.data.ingest import ingest

    folder = make_folder(tmp_path / "in")
    result = ingest_flow(cfg_for(folder, tmp_path / "flow"))
    assert not result.cached
    # Progress on stderr (a plain line when not a terminal), as `metalize run` shows it.
    assert "ingest flowtest: 7/7 img in " in capsys.readouterr().err  # the zero-byte file is refused when hashed
    plain = ingest(cfg_for(folder, tmp_path / "plain"), progress=False)
    assert result.version.id == plain.version.id and result.counts == plain.counts
    assert result.quarantine == plain.quarantine == [
        {"file": str(folder / "images" / "broken.png"), "reason": "zero-byte file", "action": "image skipped"}]
    assert sum(c["images"] for c in result.counts.values()) == 7
    again = ingest_flow(cfg_for(folder, tmp_path / "flow"))
    assert again.cached and again.version.root == result.version.root

    with get_client(sync_client=True) as client:
        arts = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["dataset-card-flowtest"])))
    assert arts and "| B_train |" in arts[0].data and "zero-byte file" in arts[0].data


def test_shard_tasks_retry_on_oserror_only(prefect_harness, tmp_path, monkeypatch):
    import flows.ingest as fi
    import pipeline.stages.ingest as si  # where the shard unit calls validate_shard
    from pipeline.data.ingest import validate_shard

    calls: list[int] = []

    def flaky(shard, build_dir):
        calls.append(shard.index)
        if shard.index == 0 and calls.count(0) == 1:
            raise OSError(5, "Input/output error (simulated NFS hiccup)")
        return validate_shard(shard, build_dir)

    monkeypatch.setattr(si, "validate_shard", flaky)
    folder = make_folder(tmp_path / "in")
    result = fi.ingest_flow(cfg_for(folder, tmp_path / "out"))
    assert calls.count(0) == 2 and calls.count(1) == 1  # shard 0 retried once, others ran once
    assert sum(c["images"] for c in result.counts.values()) == 7

    def broken(shard, build_dir):
        calls.append(shard.index)
        raise ValueError("a bug, not an I/O error")

    calls.clear()
    monkeypatch.setattr(si, "validate_shard", broken)
    with pytest.raises(ValueError, match="a bug"):
        fi.ingest_flow(cfg_for(folder, tmp_path / "out2"))
    # None retried. A queued shard may be cancelled once the first failure stops the flow, so
    # count attempts per shard rather than shards.
    assert calls and len(calls) == len(set(calls))
    assert not list((tmp_path / "out2" / "data" / "datasets").glob("flowtest-*"))  # nothing half-written

    def full(shard, build_dir):
        calls.append(shard.index)
        raise OSError(28, "No space left on device", str(build_dir / "x.png"))

    calls.clear()
    monkeypatch.setattr(si, "validate_shard", full)
    with pytest.raises(OSError, match="No space left"):
        fi.ingest_flow(cfg_for(folder, tmp_path / "out3"))
    assert calls and len(calls) == len(set(calls))  # a full disk is not retried: it would only fail again


def test_dask_task_runner(prefect_harness, tmp_path, capsys):
    from flows.ingest import ingest_flow

    folder = make_folder(tmp_path / "in")
    result = ingest_flow(cfg_for(folder, tmp_path / "out", dask=True), progress=False)
    assert sum(c["images"] for c in result.counts.values()) == 7 and len(result.quarantine) == 1
    assert "ingest flowtest" not in capsys.readouterr().err


def test_flow_handles_plans_larger_than_prefect_parameter_limits(prefect_harness, tmp_path):
    """1,500 planned images serialise to well over the API's 512 kB limit for flow-run parameters;
    the shards must therefore never be parameters of a (sub)flow."""
    from flows.ingest import ingest_flow

    n = 1500
    img = cv2.imencode(".png", np.full((8, 8, 3), 90, np.uint8))[1].tobytes()
    (tmp_path / "in" / "images").mkdir(parents=True)
    images = []
    for i in range(n):
        # Distinct bytes per image (content hashes decide splits), written without re-encoding.
        (tmp_path / "in" / "images" / f"{i:05d}.png").write_bytes(img + i.to_bytes(4, "big"))
        images.append({"id": i + 1, "file_name": f"{i:05d}.png"})
    (tmp_path / "in" / "ann.json").write_text(json.dumps({"images": images, "annotations": [],
                                                          "categories": [{"id": 1, "name": "gear"}]}))
    result = ingest_flow(cfg_for(tmp_path / "in", tmp_path / "out", shard_size=500))
    assert sum(c["images"] for c in result.counts.values()) == n and result.quarantine == []
