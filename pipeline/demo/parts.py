"""Part and clutter shapes for the procedural demo set, one function per shape.

Every function takes a `np.random.Generator` and a size in pixels (the shape's longest extent)
and returns a uint8 mask (H, W) in part coordinates: 255 inside, 0 outside and in holes,
anti-aliased edges, the long axis along x and a 2-pixel empty margin. Geometry is drawn from
the same distributions in both domains, so replica (A) and metal (B) parts differ only in
material and light.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

_SHIFT = 4  # cv2 fixed-point bits: sub-pixel vertices keep small parts smooth
_ONE = 1 << _SHIFT
_MARGIN = 2


def _canvas(w: float, h: float) -> np.ndarray:
    return np.zeros((int(np.ceil(h)) + 2 * _MARGIN, int(np.ceil(w)) + 2 * _MARGIN), np.uint8)


def _fp(points: np.ndarray) -> np.ndarray:
    """(N, 2) float pixel coordinates (margin added) -> fixed-point int32 for cv2."""
    return np.round((points + _MARGIN) * _ONE).astype(np.int32)


def _fill(mask: np.ndarray, points: np.ndarray, value: int = 255) -> None:
    cv2.fillPoly(mask, [_fp(points)], value, lineType=cv2.LINE_AA, shift=_SHIFT)


_CIRCLE = np.stack([np.cos(np.linspace(0, 2 * np.pi, 32, endpoint=False)),
                    np.sin(np.linspace(0, 2 * np.pi, 32, endpoint=False))], 1)


def _disc(mask: np.ndarray, cx: float, cy: float, r: float, value: int = 0) -> None:
    # a 32-gon: cv2.circle renders sub-pixel radii of small holes as diamonds
    _fill(mask, _CIRCLE * max(r, 0.7) + (cx, cy), value)


# ------------------------------------------------------------------------------------------ parts
def tensile_specimen(rng: np.random.Generator, length: float) -> np.ndarray:
    """Dog-bone tensile bar (ISO 527 / ASTM D638 outline): wide grips, cosine fillets, narrow gauge."""
    grip_w = length * rng.uniform(0.2, 0.28)
    gauge_w = grip_w * rng.uniform(0.45, 0.62)
    grip_l = length * rng.uniform(0.2, 0.28)
    fillet_l = length * rng.uniform(0.06, 0.1)
    x = np.linspace(0.0, length, 96)
    d = np.minimum(x, length - x)  # distance from the nearer end
    t = np.clip((d - grip_l) / fillet_l, 0.0, 1.0)
    half = grip_w / 2 - (grip_w - gauge_w) / 2 * (1 - np.cos(np.pi * t)) / 2
    cy = grip_w / 2
    outline = np.concatenate([np.stack([x, cy - half], 1), np.stack([x[::-1], cy + half[::-1]], 1)])
    mask = _canvas(length, grip_w)
    _fill(mask, outline)
    return mask


def gear(rng: np.random.Generator, diameter: float) -> np.ndarray:
    """Spur gear: trapezoidal teeth, a bore and, on larger gears, lightening holes."""
    r_tip = diameter / 2
    teeth = int(rng.integers(10, 19))
    r_root = r_tip * (1 - rng.uniform(0.12, 0.2))
    pitch = 2 * np.pi / teeth
    phase = rng.uniform(0, pitch)
    # root -> flank -> tip -> flank per tooth: (angle offset within a pitch, radius)
    profile = [(0.0, r_root), (0.22, r_tip), (0.48, r_tip), (0.7, r_root)]
    pts = [
        (r * np.cos(phase + (k + f) * pitch), r * np.sin(phase + (k + f) * pitch))
        for k in range(teeth)
        for f, r in profile
    ]
    mask = _canvas(diameter, diameter)
    _fill(mask, np.array(pts) + r_tip)
    r_bore = r_tip * rng.uniform(0.12, 0.24)
    _disc(mask, r_tip, r_tip, r_bore)
    if rng.random() < 0.5:
        n, ring, r_hole = int(rng.integers(4, 7)), (r_bore + r_root) / 2, (r_root - r_bore) * 0.17
        for k in range(n):
            a = 2 * np.pi * k / n
            _disc(mask, r_tip + ring * np.cos(a), r_tip + ring * np.sin(a), r_hole)
    return mask


def bracket(rng: np.random.Generator, length: float) -> np.ndarray:
    """Angle bracket seen from above: an L plate with mounting holes and an optional gusset."""
    a = length
    b = length * rng.uniform(0.5, 0.9)
    w = length * rng.uniform(0.18, 0.28)
    mask = _canvas(a, b)
    _fill(mask, np.array([(0, 0), (a, 0), (a, w), (w, w), (w, b), (0, b)], float))
    if rng.random() < 0.5:
        g = min(a, b) * rng.uniform(0.2, 0.3)
        _fill(mask, np.array([(w - 1, w - 1), (w + g, w - 1), (w - 1, w + g)], float))
    r = w * rng.uniform(0.16, 0.26)
    for t in (0.55, 0.85) if rng.random() < 0.6 else (0.7,):
        _disc(mask, w + (a - w) * t, w / 2, r)
        _disc(mask, w / 2, w + (b - w) * t, r)
    return mask


def hex_nut(rng: np.random.Generator, size: float) -> np.ndarray:
    """Hex nut from above: a regular hexagon (size = across corners) with a threaded bore."""
    r = size / 2
    a = np.deg2rad(np.arange(6) * 60.0)
    mask = _canvas(size, size)
    _fill(mask, np.stack([r + r * np.cos(a), r + r * np.sin(a)], 1))
    _disc(mask, r, r, r * rng.uniform(0.42, 0.55))
    return mask


# ---------------------------------------------------------------------------------------- clutter
def cable(rng: np.random.Generator, size: float) -> np.ndarray:
    """A loose strand (filament string, cable, zip tie): a smooth random curve."""
    n = 6
    steps = rng.normal(0, 0.35, n).cumsum() + rng.uniform(0, 2 * np.pi)
    seg = size / n
    pts = np.cumsum(np.stack([np.cos(steps), np.sin(steps)], 1) * seg, 0)
    pts -= pts.min(0)
    thick = max(1, round(size * rng.uniform(0.04, 0.07)))
    mask = _canvas(*(pts.max(0) + 2 * thick))
    cv2.polylines(mask, [_fp(_chaikin(pts, 3) + thick)], False, 255, thick, cv2.LINE_AA, _SHIFT)
    return mask


def _chaikin(pts: np.ndarray, rounds: int) -> np.ndarray:
    """Corner cutting: an open polyline -> a smooth curve through the same region."""
    for _ in range(rounds):
        q = 0.75 * pts[:-1] + 0.25 * pts[1:]
        r = 0.25 * pts[:-1] + 0.75 * pts[1:]
        pts = np.concatenate([pts[:1], np.stack([q, r], 1).reshape(-1, 2), pts[-1:]])
    return pts


def tag(rng: np.random.Generator, size: float) -> np.ndarray:
    """A paper label or tape strip: a rounded rectangle."""
    w, h = size, size * rng.uniform(0.3, 0.6)
    rad = h * rng.uniform(0.05, 0.25)
    mask = _canvas(w, h)
    _fill(mask, np.array([(rad, 0), (w - rad, 0), (w - rad, h), (rad, h)], float))
    _fill(mask, np.array([(0, rad), (w, rad), (w, h - rad), (0, h - rad)], float))
    for cx, cy in ((rad, rad), (w - rad, rad), (rad, h - rad), (w - rad, h - rad)):
        _disc(mask, cx, cy, rad, 255)
    return mask


def scrap(rng: np.random.Generator, size: float) -> np.ndarray:
    """An irregular lump (purge blob, rag, chip): a star-convex polygon with smoothed radii."""
    n = 24
    raw = rng.uniform(0.55, 1.0, n)
    # circular smoothing so the outline closes without a kink
    radii = (np.roll(raw, -1) + 2 * raw + np.roll(raw, 1)) / 4 * size / 2
    a = np.linspace(0, 2 * np.pi, n, endpoint=False)
    pts = np.stack([size / 2 + radii * np.cos(a), size / 2 + radii * np.sin(a) * 0.7], 1)
    mask = _canvas(size, size)
    _fill(mask, pts)
    return mask


# ------------------------------------------------------------------------------------- catalogue
@dataclass(frozen=True)
class PartKind:
    """A shape with its size relative to the scene's base part size and its thickness."""

    name: str
    draw: Callable[[np.random.Generator, float], np.ndarray]
    scale: float  # longest extent / base size
    thickness: float  # height above the bed / longest extent


PARTS: tuple[PartKind, ...] = (
    PartKind("tensile_specimen", tensile_specimen, 1.0, 0.06),
    PartKind("gear", gear, 0.65, 0.12),
    PartKind("bracket", bracket, 0.72, 0.1),
    PartKind("hex_nut", hex_nut, 0.4, 0.35),
)
CLUTTER: tuple[PartKind, ...] = (
    PartKind("cable", cable, 0.8, 0.04),
    PartKind("tag", tag, 0.55, 0.01),
    PartKind("scrap", scrap, 0.35, 0.12),
)
CATEGORIES: list[str] = [p.name for p in PARTS]
