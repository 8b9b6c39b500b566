"""Small on-disk dataset versions and deterministic 'generators' for the synth tests.

`mini_dataset`: A_train = 12 images (64×48, asymmetric on purpose) of coloured parts (filled
rectangles and discs with an inner hole) on a bright bed; B_train/B_val = 3 grey parts on dark.
`metalize` is a deterministic A→B image function: grey, darker, low contrast; edges preserved.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from pipeline.data.coco import Annotation, Category, CocoSet, ImageRecord
from pipeline.data.version import DatasetVersion
from pipeline.store import sha256_file, write_manifest

NAMES = ["bracket", "gear", "nut"]
W, H = 64, 48


def _scene(rng: np.random.Generator, domain: str, n_parts: int):
    if domain == "A":
        img = np.full((H, W, 3), (235, 232, 225), np.uint8)
    else:
        img = np.full((H, W, 3), 40, np.uint8)
    boxes = []
    for _ in range(n_parts):
        cls = int(rng.integers(0, len(NAMES)))
        w, h = int(rng.integers(12, 22)), int(rng.integers(12, 20))
        x, y = int(rng.integers(1, W - w - 1)), int(rng.integers(1, H - h - 1))
        colour = (200, 60, 40) if domain == "A" else (150, 150, 155)
        if cls == 1:
            cv2.ellipse(img, (x + w // 2, y + h // 2), (w // 2, h // 2), 0, 0, 360, colour, -1)
            cv2.circle(img, (x + w // 2, y + h // 2), max(2, min(w, h) // 5), img[0, 0].tolist(), -1)
        else:
            cv2.rectangle(img, (x, y), (x + w - 1, y + h - 1), colour, -1)
            if cls == 2:
                cv2.rectangle(img, (x + w // 3, y + h // 3), (x + 2 * w // 3, y + 2 * h // 3), img[0, 0].tolist(), -1)
        boxes.append((cls + 1, [float(x), float(y), float(w), float(h)]))
    return img, boxes


def make_dataset(root: Path, n_a: int = 12, n_b: int = 3, seed: int = 0, broken_a: int | None = None) -> DatasetVersion:
    rng = np.random.default_rng(seed)
    cats = [Category(i + 1, n) for i, n in enumerate(NAMES)]
    for domain, split, n in (("A", "train", n_a), ("B", "train", n_b), ("B", "val", n_b)):
        coco = CocoSet(categories=cats)
        for i in range(n):
            img, boxes = _scene(rng, domain, 2 if i % 3 else 3)
            rel = f"images/{domain}/{split}/{domain.lower()}{i:03d}.png"
            p = root / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(p), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
            if broken_a is not None and domain == "A" and i == broken_a:
                p.write_bytes(b"not a png")
            coco.images.append(ImageRecord(i + 1, rel, W, H, domain, split, sha256_file(p)))
            for cid, b in boxes:
                coco.annotations.append(Annotation(len(coco.annotations) + 1, i + 1, cid, b))
        coco.save(root / "annotations" / f"{domain}_{split}.json")
    write_manifest(root, kind="dataset", id=root.name, config={"seed": seed}, summary={"categories": NAMES})
    return DatasetVersion.open(root)


def metalize(images: list[np.ndarray]) -> list[np.ndarray]:
    """Deterministic stand-in for A→B: grey, darker, low contrast; keeps every edge in place."""
    out = []
    for im in images:
        g = cv2.cvtColor(im, cv2.COLOR_RGB2GRAY).astype(np.float32)
        g = 255 - g  # bright bed -> dark background, as in B
        g = 30 + 0.6 * g
        out.append(np.repeat(np.clip(g, 0, 255).astype(np.uint8)[..., None], 3, axis=2))
    return out


def fake_model_dir(root: Path) -> Path:
    """A CycleGAN model dir whose weights are only hashed (tests inject the generator)."""
    d = root / "models" / "cyclegan" / "fake-000000000000"
    d.mkdir(parents=True)
    (d / "G_AB.safetensors").write_bytes(b"weights stand-in")  # only hashed, never loaded here
    write_manifest(d, kind="cyclegan", id=d.name, config={})
    return d


def real_model_dir(root: Path, name: str, seed: int, *, nan: bool = False) -> Path:
    """A CycleGAN model dir holding a real (random-initialised, tiny) ResnetGenerator as
    G_AB.safetensors, as the GAN stage saves it; nan=True poisons one bias so every output is NaN."""
    import torch

    from pipeline.gan.checkpoint import save_weights
    from pipeline.gan.networks import ResnetGenerator, init_weights

    torch.manual_seed(seed)
    net = init_weights(ResnetGenerator(3, 3, ngf=8, n_blocks=2))
    state = net.state_dict()
    if nan:
        state["model.1.bias"] = torch.full_like(state["model.1.bias"], float("nan"))
    d = root / "models" / "cyclegan" / name
    d.mkdir(parents=True)
    meta = {"ngf": 8, "n_blocks": 2, "load_size": None, "direction": "AtoB"}
    save_weights(d / "G_AB.safetensors", state, meta)
    write_manifest(d, kind="cyclegan", id=name, config={"seed": seed})
    return d


def permissive_gate() -> dict:
    """Gate settings that accept every output (tests of provenance, not of quality)."""
    return {"min_box_edge_f1": 0.0, "max_box_offset": None, "max_seam": None, "min_std": 0.0,
            "max_saturated_fraction": 1.0, "max_checkerboard": 1.0}
