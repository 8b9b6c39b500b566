"""Small real inputs for the ingest tests: images in every awkward form and a tree hash."""

from __future__ import annotations

import hashlib
import io
import json
import os
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
from PIL import Image


def scene(w: int, h: int, seed: int = 0) -> np.ndarray:
    """(h, w, 3) uint8 RGB: a noisy background with a few bright rectangles."""
    rng = np.random.default_rng(seed)
    img = rng.integers(30, 80, (h, w, 3), dtype=np.uint8)
    for _ in range(3):
        x, y = int(rng.integers(0, w - 8)), int(rng.integers(0, h - 8))
        img[y : y + 8, x : x + 8] = rng.integers(150, 255, 3)
    return img


def write_rgb(path: Path, w: int = 48, h: int = 32, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), scene(w, h, seed)[:, :, ::-1])
    return path


def pil_bytes(img: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def png16(gray: bool, w: int = 20, h: int = 10) -> tuple[bytes, np.ndarray]:
    """16-bit PNG bytes and the uint16 array they hold (RGB order)."""
    rng = np.random.default_rng(1)
    a = rng.integers(0, 65536, (h, w) if gray else (h, w, 3), dtype=np.uint16)
    ok, buf = cv2.imencode(".png", a if gray else a[:, :, ::-1])
    assert ok
    return buf.tobytes(), a


def exif_rotated_jpeg(orientation: int = 6, w: int = 40, h: int = 24) -> bytes:
    """JPEG stored w x h with a white block at the stored top-left and an EXIF Orientation tag."""
    a = np.full((h, w, 3), 20, np.uint8)
    a[:8, :8] = 255
    im = Image.fromarray(a)
    exif = Image.Exif()
    exif[0x0112] = orientation
    return pil_bytes(im, "JPEG", exif=exif.tobytes(), quality=95)


def png_header_only(w: int, h: int) -> bytes:
    """A PNG whose IHDR declares w x h but holds almost no data (a decompression-bomb stand-in)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b"")


def tree_hash(root: Path) -> dict[str, str]:
    """{relative path: sha256 or 'link->target'} of everything under root, plus mtimes."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(filenames + dirnames):
            p = Path(dirpath) / name
            rel = p.relative_to(root).as_posix()
            if p.is_symlink():
                out[rel] = "link->" + os.readlink(p)
            elif p.is_file():
                st = p.stat()
                out[rel] = hashlib.sha256(p.read_bytes()).hexdigest() + f":{st.st_mtime_ns}:{st.st_mode:o}"
            else:
                out[rel] = f"dir:{p.stat().st_mode:o}"
    return out


def coco_json(path: Path, images: list[dict], annotations: list[dict], categories: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({
        "images": images,
        "annotations": annotations,
        "categories": [{"id": i + 1, "name": n} for i, n in enumerate(categories)],
    }))
    return path


def json_strings(x):
    """Every key and string value in a parsed JSON document."""
    if isinstance(x, dict):
        for k, v in x.items():
            yield k
            yield from json_strings(v)
    elif isinstance(x, list):
        for v in x:
            yield from json_strings(v)
    elif isinstance(x, str):
        yield x
