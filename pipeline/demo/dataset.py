"""The embedded demo dataset: procedural photos of printed replicas (A) and metal parts (B).

`render_demo(cfg.data.demo, cfg.runtime.seed, demo_dir(cfg))` writes plain COCO folders that the
ingest stage reads like any user's data:

    <out>/A/train/{images/*.png, annotations.json}          labelled replicas (n_a)
    <out>/B/{train,val,test,oracle}/{images, annotations.json}   labelled metal
    <out>/B/unlabelled/images/*.png                          metal pool for the CycleGAN
    <out>/render.json                                        what made it (config, seed, key)

Every scene has its own random stream keyed by (seed, domain, split, index), so changing one
split's count leaves every other image byte-identical. Shapes live in
`parts`, materials, light and scene composition in `render`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import multiprocessing
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from pipeline import store
from pipeline.config import DemoDataConfig, RunConfig, SourceConfig
from pipeline.demo.parts import CATEGORIES
from pipeline.demo.render import HARD_CASES, Scene, render_scene
from pipeline.progress import stage_progress

RENDER_VERSION = 2  # bump when the renderer's output changes: it is part of the folder's key
RENDER_FILE = "render.json"
LABELLED_B = ("train", "val", "test", "oracle")
PARALLEL_PIXELS = 50_000_000  # about 10 s of rendering on one core


class DemoDataError(RuntimeError):
    """The output folder exists but holds something other than this render."""


@dataclass
class DemoSources:
    """Where a render lives and how ingest should read it."""

    root: Path
    categories: list[str]
    a: list[SourceConfig]
    b: list[SourceConfig]


# -------------------------------------------------------------------------------------------- keys
def demo_key(cfg: DemoDataConfig, seed: int) -> str:
    """sha256 of the demo config, the seed and the renderer version: names the render."""
    return store.hash_json({"demo": cfg.model_dump(mode="json"), "seed": seed, "renderer": RENDER_VERSION})


def demo_dir(cfg: RunConfig) -> Path:
    """Default folder of a run's demo render: <output_root>/data/raw/demo-<key12>."""
    return cfg.runtime.data_dir / "raw" / f"demo-{demo_key(cfg.data.demo, cfg.runtime.seed)[:12]}"


def scene_rng(seed: int, domain: str, split: str, index: int) -> np.random.Generator:
    """The independent random stream of one scene."""
    digest = hashlib.sha256(f"metalize-demo/{seed}/{domain}/{split}/{index}".encode()).digest()
    return np.random.default_rng(np.random.SeedSequence(int.from_bytes(digest[:16], "little")))


def split_counts(cfg: DemoDataConfig) -> dict[tuple[str, str], int]:
    """(domain, split) -> number of images, in writing order."""
    return {
        ("A", "train"): cfg.n_a,
        ("B", "train"): cfg.n_b_train,
        ("B", "val"): cfg.n_b_val,
        ("B", "test"): cfg.n_b_test,
        ("B", "oracle"): cfg.n_b_oracle,
        ("B", "unlabelled"): cfg.n_b_unlabelled,
    }


def render_one(cfg: DemoDataConfig, seed: int, domain: str, split: str, index: int) -> Scene:
    """Scene `index` of (domain, split): a share `cfg.hard_fraction` of scenes is a hard case."""
    rng = scene_rng(seed, domain, split, index)
    hard = HARD_CASES[int(rng.integers(len(HARD_CASES)))] if rng.random() < cfg.hard_fraction else None
    return render_scene(
        rng,
        domain,
        cfg.image_size,
        parts_per_image=cfg.parts_per_image,
        clutter_per_image=cfg.clutter_per_image,
        hard=hard,
        min_visibility=cfg.min_visibility,
    )


# ------------------------------------------------------------------------------------------ render
def render_demo(cfg: DemoDataConfig, seed: int, out_dir: Path, *, workers: int = 1,
                progress: bool = False) -> DemoSources:
    """Render every split into `out_dir` (atomically; skipped when it already holds this render).

    Images are 8-bit RGB PNGs of `cfg.image_size` px; COCO boxes are xywh pixels of the visible
    part, categories have ids 1..K in `CATEGORIES` order. `workers` > 1 renders large sets (over
    `PARALLEL_PIXELS` pixels in all) in that many processes; the bytes are the same because
    every scene has its own random stream. `progress` shows images rendered on stderr
    (pipeline.progress). Raises DemoDataError when
    `out_dir` holds a different render or other files (it never overwrites them).
    """
    out_dir = Path(out_dir)
    key = demo_key(cfg, seed)
    if out_dir.exists():
        if out_dir.is_dir() and not any(out_dir.iterdir()):
            out_dir.rmdir()  # an empty folder (e.g. made by a user for --out) holds nothing to keep
        else:
            _check_existing(out_dir, key)
            return _sources(out_dir, cfg)
    started = time.perf_counter()
    counts: dict[str, dict[str, int]] = {}
    n_images = sum(split_counts(cfg).values())
    if n_images * cfg.image_size**2 < PARALLEL_PIXELS:
        workers = 1  # starting processes costs more than a small render
    bar = stage_progress("render demo data", n_images, unit="img", enabled=progress)
    with store.atomic_dir(out_dir) as tmp, _mapper(workers) as mapper, bar:
        for (domain, split), n in split_counts(cfg).items():
            folder = tmp / domain / split
            counts[f"{domain}_{split}"] = _write_split(folder, cfg, seed, domain, split, n, mapper,
                                                       bar.advance)
        seconds = time.perf_counter() - started
        store.atomic_write_json(
            tmp / RENDER_FILE,
            {
                "key": key,
                "seed": seed,
                "renderer": RENDER_VERSION,
                "config": cfg.model_dump(mode="json"),
                "categories": CATEGORIES,
                "counts": counts,
                "seconds": round(seconds, 3),
                "images_per_s": round(n_images / max(seconds, 1e-9), 1),
            },
        )
    return _sources(out_dir, cfg)


@contextlib.contextmanager
def _mapper(workers: int) -> Iterator[Callable]:
    """`map`, or a process pool's map when workers > 1 (spawned: safe beside torch threads)."""
    if workers <= 1:
        yield map
        return
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        yield lambda fn, jobs: pool.map(fn, jobs, chunksize=8)


def _render_png(job: tuple[DemoDataConfig, int, str, str, int]) -> tuple[bytes, str | None, list[tuple]]:
    """One scene as PNG bytes, its hard case and its kept parts (category, bbox, visibility)."""
    scene = render_one(*job)
    ok, png = cv2.imencode(".png", cv2.cvtColor(scene.image, cv2.COLOR_RGB2BGR))
    if not ok:
        raise DemoDataError(f"scene {job[2:]}: PNG encoding failed")
    return png.tobytes(), scene.hard, [(i.category, i.bbox, i.visibility) for i in scene.kept]


def _write_split(
    folder: Path, cfg: DemoDataConfig, seed: int, domain: str, split: str, n: int, mapper: Callable = map,
    advance: Callable[[int], None] = lambda n: None,
) -> dict[str, int]:
    """Write n images (and COCO annotations unless unlabelled); returns image/box counts."""
    images_dir = folder / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    size = cfg.image_size
    jobs = [(cfg, seed, domain, split, i) for i in range(n)]
    for i, (png, hard, parts) in enumerate(mapper(_render_png, jobs)):
        name = f"{domain.lower()}-{split}-{i:05d}.png"
        store.write_bytes(images_dir / name, png)  # inside the render's atomic_dir; errors name the file
        advance(1)
        images.append({"id": i + 1, "file_name": name, "width": size, "height": size, "hard": hard})
        for category, bbox, visibility in parts:
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": i + 1,
                    "category_id": CATEGORIES.index(category) + 1,
                    "bbox": bbox,
                    "area": bbox[2] * bbox[3],
                    "iscrowd": 0,
                    "visibility": round(visibility, 3),
                }
            )
    if split != "unlabelled":
        coco = {
            "info": {"description": f"Metalize demo, domain {domain}, split {split}", "seed": seed},
            "images": images,
            "annotations": annotations,
            "categories": [
                {"id": k + 1, "name": c, "supercategory": "part"} for k, c in enumerate(CATEGORIES)
            ],
        }
        store.write_bytes(folder / "annotations.json", json.dumps(coco).encode("utf-8"))
    return {"images": n, "boxes": len(annotations)}


def _check_existing(out_dir: Path, key: str) -> None:
    try:
        found = json.loads((out_dir / RENDER_FILE).read_text(encoding="utf-8")).get("key")
    except (OSError, ValueError, AttributeError):
        found = None
    if found is None:
        raise DemoDataError(f"{out_dir}: exists and is not a demo render (no readable {RENDER_FILE}); "
                            "choose another output folder")
    if found != key:
        raise DemoDataError(f"{out_dir}: holds a different demo render (key {found[:12]}, wanted "
                            f"{key[:12]}); choose another output folder or remove that one")


def _sources(root: Path, cfg: DemoDataConfig) -> DemoSources:
    def labelled(domain: str, split: str) -> SourceConfig:
        folder = root / domain / split
        return SourceConfig(images=folder / "images", annotations=folder / "annotations.json",
                            format="coco", split=split)

    a = [labelled("A", "train")]
    b = [labelled("B", s) for s in LABELLED_B if split_counts(cfg)[("B", s)] > 0]
    if cfg.n_b_unlabelled > 0:
        b.append(SourceConfig(images=root / "B" / "unlabelled" / "images", format="none", split="unlabelled"))
    return DemoSources(root=root, categories=list(CATEGORIES), a=a, b=b)


# ----------------------------------------------------------------------------------------- preview
_CLASS_BGR = [(40, 200, 40), (230, 160, 30), (30, 140, 255), (210, 60, 210), (0, 220, 220), (255, 90, 90)]


def preview_grid(
    sources: DemoSources, per_row: int = 6, rows_per_domain: int = 2, tile: int = 256
) -> np.ndarray:
    """A grid of labelled A (top) and B (bottom) samples with boxes and class names drawn.

    Tiles are upscaled by an integer factor (nearest neighbour, so pixels stay honest) to at
    least `tile` px. Returns (H, W, 3) uint8 BGR, ready for cv2.imencode.
    """
    rows = []
    for domain, src in (("A", sources.a), ("B", sources.b)):
        folders = [s for s in src if s.annotations is not None]
        picks = []
        for s in folders:
            coco = json.loads(Path(s.annotations).read_text(encoding="utf-8"))
            by_image: dict[int, list[dict]] = {}
            for a in coco["annotations"]:
                by_image.setdefault(a["image_id"], []).append(a)
            picks += [(Path(s.images) / im["file_name"], by_image.get(im["id"], []), f"{domain} {s.split}")
                      for im in coco["images"]]
        picks = picks[: per_row * rows_per_domain]
        tiles = [_preview_tile(p, anns, label, tile) for p, anns, label in picks]
        if not tiles:
            continue
        blank = np.zeros_like(tiles[0])
        tiles += [blank] * (-len(tiles) % per_row)
        rows += [np.hstack(tiles[i : i + per_row]) for i in range(0, len(tiles), per_row)]
    return np.vstack(rows)


def _preview_tile(path: Path, anns: list[dict], label: str, tile: int) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    f = max(1, int(np.ceil(tile / img.shape[0])))
    img = cv2.resize(img, None, fx=f, fy=f, interpolation=cv2.INTER_NEAREST)
    for a in anns:
        x, y, w, h = (round(v * f) for v in a["bbox"])
        colour = _CLASS_BGR[(a["category_id"] - 1) % len(_CLASS_BGR)]
        cv2.rectangle(img, (x, y), (x + w - 1, y + h - 1), colour, 1)
        cv2.putText(img, CATEGORIES[a["category_id"] - 1], (x + 1, max(y - 3, 9)), cv2.FONT_HERSHEY_SIMPLEX,
                    0.33, colour, 1, cv2.LINE_AA)
    white = (255, 255, 255)
    cv2.putText(img, label, (4, img.shape[0] - 5), cv2.FONT_HERSHEY_SIMPLEX, 0.4, white, 1, cv2.LINE_AA)
    return img


def write_preview(sources: DemoSources, path: Path | None = None) -> Path:
    """preview_grid() as a PNG (default `<root>/preview.png`), written atomically."""
    path = Path(path) if path is not None else sources.root / "preview.png"
    ok, png = cv2.imencode(".png", preview_grid(sources))
    if not ok:
        raise DemoDataError(f"{path}: PNG encoding failed")
    return store.atomic_write_bytes(path, png.tobytes())
