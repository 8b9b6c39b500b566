"""End to end on the tiny profile: ingest → CycleGAN (a few steps) → synthesize with the real
Translator → the augmented version loads with pycocotools, its YOLO layout trains ultralytics."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import yaml

from pipeline.config import load_config

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow  # trains the tiny CycleGAN (shared with the gan tests in one session)


@pytest.fixture(scope="module")
def e2e(tiny_dataset, tiny_root):
    from pipeline.gan import train_translator
    from pipeline.synth import synthesize

    cfg = load_config(REPO / "configs" / "tiny.yaml", [f"runtime.output_root={tiny_root}"])
    gan = train_translator(cfg, tiny_dataset, progress=False)
    return cfg, gan, synthesize(cfg, tiny_dataset, gan.model_dir, progress=False)


def test_augmented_version_from_a_trained_generator(e2e, tiny_dataset):
    from pycocotools.coco import COCO

    from pipeline.gan.translate import Translator
    from pipeline.store import verify_manifest
    from pipeline.synth import synthesize

    cfg, gan, res = e2e
    v = res.version
    assert res.accepted + res.rejected > 0
    coco = COCO(str(v.annotation_path("B", "train")))
    syn = [im for im in coco.loadImgs(coco.getImgIds()) if im.get("synthetic")]
    assert len(syn) == res.accepted
    sha = Translator.load(gan.model_dir, direction="AtoB", device="cpu").sha256
    a_ids = {im.id for im in tiny_dataset.coco("A", "train").images}
    for im in syn:
        assert im["generator"] == sha and im["source_image_id"] in a_ids and "gate" in im
    parents = v.manifest["parents"]
    assert [p["kind"] for p in parents] == ["dataset", "cyclegan"]
    assert parents[0]["id"] == tiny_dataset.id and parents[1]["id"] == gan.model_dir.name
    assert verify_manifest(v.root) == []
    assert (v.root / "yolo" / "data.yaml").is_file() and (v.root / "card" / "README.md").is_file()
    again = synthesize(cfg, tiny_dataset, gan.model_dir, progress=False)
    assert again.cached and again.version.root == v.root


def test_ultralytics_trains_one_epoch_from_data_yaml(e2e, tiny_dataset, tmp_path):
    import matplotlib

    cfg, _, res = e2e
    cfg_dir = Path(os.environ["YOLO_CONFIG_DIR"])
    cfg_dir.mkdir(parents=True, exist_ok=True)
    font = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    if not (cfg_dir / "Arial.ttf").exists():  # ultralytics would download Arial.ttf otherwise
        shutil.copy(font, cfg_dir / "Arial.ttf")
    from ultralytics import YOLO

    data = res.version.root / "yolo" / "data.yaml"
    n_train = len(list((res.version.root / "yolo" / "train" / "images").iterdir()))
    assert yaml.safe_load(data.read_text())["nc"] == len(res.version.category_names)
    model = YOLO("yolo11n.yaml")
    model.train(data=str(data), imgsz=64, epochs=1, batch=8, workers=0, amp=False, device="cpu", plots=False,
                pretrained=False, project=str(tmp_path), name="yolo", exist_ok=True, verbose=False, val=True)
    assert len(model.trainer.train_loader.dataset) == n_train
    assert (tmp_path / "yolo" / "weights" / "last.pt").is_file()
    assert "metrics/mAP50-95(B)" in model.trainer.metrics
    # Every split is exported, the real B test photos too; and the parent ingest version itself
    # is a YOLO dataset (labels beside images/, data.yaml with train/val/test), as Roboflow's are.
    n_test = len(tiny_dataset.coco("B", "test").images)
    for data_yaml in (data, _copy_of_parent(res, tmp_path) / "data.yaml"):
        test_dir = data_yaml.parent / yaml.safe_load(data_yaml.read_text())["test"]
        assert len(list(test_dir.iterdir())) == n_test > 0
        metrics = model.val(data=str(data_yaml), split="test", imgsz=64, batch=8, device="cpu", plots=False,
                            project=str(tmp_path), name="val", exist_ok=True, verbose=False)
        assert 0 <= metrics.box.map <= 1


def _copy_of_parent(res, tmp_path: Path) -> Path:
    """A copy of the augmented version's parent (ultralytics writes label caches beside labels/)."""
    from pipeline.data.version import DatasetVersion

    src = res.version.root.parent / res.version.manifest["parents"][0]["id"]
    dst = tmp_path / "parent"
    shutil.copytree(src, dst)
    assert DatasetVersion.open(dst).has("B", "test")
    return dst
