"""Materials, light and scene composition for the procedural replica (A) / metal (B) demo set.

`render_scene(rng, "A" | "B", size)` draws one photo: a background (a bright textured print bed
for A, a dark noisy workbench for B), parts and clutter at random poses, each a raised solid with
a side wall, shaded by its domain's material (`plastic`: matte saturated colour with layer lines;
`metal`: grey, brushed, specular with a reflected environment), cast shadows, scene light,
optics blur and sensor noise. Boxes come from the visible masks after occlusion, so they are
tight. All randomness comes from the generator passed in: same generator state, same bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import cv2
import numpy as np

from pipeline.demo.parts import CLUTTER, PARTS, PartKind

Domain = Literal["A", "B"]
HardCase = Literal["low_contrast", "overexposed"]
HARD_CASES: tuple[HardCase, ...] = ("low_contrast", "overexposed")

# Filament colours, linear-ish RGB in [0, 1]: bright and saturated, as replicas usually are.
FILAMENT = np.array(
    [
        (0.86, 0.12, 0.10), (0.95, 0.45, 0.05), (0.95, 0.78, 0.08), (0.12, 0.32, 0.86),
        (0.10, 0.62, 0.22), (0.52, 0.16, 0.72), (0.88, 0.12, 0.52), (0.05, 0.60, 0.62),
    ],
    np.float32,
)
# Print beds: textured gold PEI, grey PEI, cream glass sheet.
BEDS = np.array([(0.80, 0.69, 0.44), (0.80, 0.80, 0.77), (0.88, 0.85, 0.76)], np.float32)
TILT = 0.5  # the camera looks slightly from the front: a part of height t shows t*TILT of side wall
LIGHT_A = np.array([-0.3, -0.5, 0.81], np.float32)  # (x right, y down, z to camera), unit-ish


@dataclass
class Instance:
    """One part as drawn: `mask` (H, W) bool visible pixels, `bbox` xywh pixels of that mask."""

    category: str
    mask: np.ndarray
    visibility: float  # visible pixels / pixels of the whole part (occluded and off-image included)
    bbox: list[float]
    kept: bool  # visibility >= min_visibility and something visible


@dataclass
class Scene:
    """A rendered photo: `image` (H, W, 3) uint8 RGB and every part drawn, bottom to top."""

    image: np.ndarray
    domain: str
    hard: str | None
    instances: list[Instance] = field(default_factory=list)

    @property
    def kept(self) -> list[Instance]:
        return [i for i in self.instances if i.kept]


@dataclass
class _Layer:
    """One object rendered in its own window at (x0, y0) of the scene (may reach outside)."""

    x0: int
    y0: int
    alpha: np.ndarray  # (h, w) coverage in [0, 1], top face and side wall
    rgb: np.ndarray  # (h, w, 3) shaded colour in [0, inf): highlights may clip later
    shadow: np.ndarray  # (h, w) darkening in [0, 1] of whatever lies below


# ---------------------------------------------------------------------------------------- geometry
@dataclass
class _Solid:
    """A part mask placed at a pose and extruded: window arrays share one shape (h, w)."""

    top: np.ndarray  # coverage of the top face
    full: np.ndarray  # coverage of top face + side wall
    z: np.ndarray  # side-wall height (px) of each pixel, 0 at the bed
    normal: np.ndarray  # (h, w, 3) top-face normals: flat centre, bevelled rim
    edge: np.ndarray  # distance to the top face's outline, px
    u: np.ndarray  # coordinate along the part's long axis, px
    v: np.ndarray  # coordinate across it, px
    warp: np.ndarray  # (2, 3) local -> window affine, to carry part-space textures along
    origin: tuple[int, int]  # window (x0, y0) in the scene
    lift: int


def _place(
    local: np.ndarray, angle: float, cx: float, cy: float, lift: int, pad: int, bevel: float
) -> _Solid:
    """Rotate a part mask by `angle` (deg), centre it at scene (cx, cy), extrude by `lift` px;
    the top face's rim rounds off over `bevel` px."""
    hl, wl = local.shape
    rot = cv2.getRotationMatrix2D((wl / 2, hl / 2), angle, 1.0)
    c, s = abs(rot[0, 0]), abs(rot[0, 1])
    bw, bh = wl * c + hl * s, wl * s + hl * c
    w, h = int(np.ceil(bw)) + 2 * pad, int(np.ceil(bh)) + lift + 2 * pad
    x0, y0 = int(np.floor(cx - w / 2)), int(np.floor(cy - (h + lift) / 2))
    ccx, ccy = cx - x0, cy - y0 + lift / 2  # footprint centre in window coords (sub-pixel)
    rot[:, 2] += (ccx - wl / 2, ccy - hl / 2)
    foot = cv2.warpAffine(local, rot, (w, h), flags=cv2.INTER_LINEAR).astype(np.float32) / 255
    full, z = foot.copy(), np.zeros_like(foot)
    for k in range(1, lift + 1):  # the wall: the footprint swept up to the top face
        layer = np.roll(foot, -k, axis=0)
        full = np.maximum(full, layer)
        z[layer >= 0.5] = k
    top = np.roll(foot, -lift, axis=0)
    edge = cv2.distanceTransform((top >= 0.5).astype(np.uint8), cv2.DIST_L2, 3)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    a = np.deg2rad(angle)
    u = (xs - ccx) * np.cos(a) - (ys - ccy + lift) * np.sin(a)
    v = (xs - ccx) * np.sin(a) + (ys - ccy + lift) * np.cos(a)
    return _Solid(top, full, z, _bevel_normals(edge, bevel), edge, u, v, rot, (x0, y0), lift)


def _bevel_normals(edge: np.ndarray, width: float = 2.0, slope: float = 1.2) -> np.ndarray:
    """Normals of a flat top whose rim rounds off over `width` px: where the light catches."""
    height = 1 - (1 - np.clip(edge / width, 0, 1)) ** 2
    height = cv2.GaussianBlur(height, (0, 0), 0.7)
    gx = cv2.Sobel(height, cv2.CV_32F, 1, 0, ksize=3) / 8 * slope * width
    gy = cv2.Sobel(height, cv2.CV_32F, 0, 1, ksize=3) / 8 * slope * width
    n = np.stack([-gx, -gy, np.ones_like(gx)], -1)
    return n / np.linalg.norm(n, axis=-1, keepdims=True)


# --------------------------------------------------------------------------------------- materials
def plastic(sol: _Solid, colour: np.ndarray, light: np.ndarray, px: float, rng: np.random.Generator,
            layer_lines: bool = True) -> np.ndarray:
    """Matte printed plastic under soft light: Lambert shading, raster and perimeter lines on top,
    layer lines on the side wall. Returns (h, w, 3) RGB."""
    ambient = 0.62
    shade = ambient + (1 - ambient) * np.clip(sol.normal @ light, 0, 1)
    if layer_lines:
        period = max(2.0, 1.8 * px)
        angle = rng.choice([np.pi / 4, -np.pi / 4])
        raster = np.sin(2 * np.pi * (sol.u * np.cos(angle) + sol.v * np.sin(angle)) / period)
        perimeter = np.sin(2 * np.pi * sol.edge / period)
        lines = np.where(sol.edge < 2.5 * period, perimeter, raster)
        shade = shade * (1 + 0.07 * lines)
    side = 0.68 * (1 + (0.14 * np.sin(2 * np.pi * sol.z / max(1.5, 1.2 * px)) if layer_lines else 0))
    shade = np.where(sol.top >= 0.5, shade, side)
    halo = 0.05 * np.clip(sol.normal @ _half(light), 0, 1) ** 6  # a faint sheen, not a reflection
    return colour * shade[..., None] + halo[..., None]


def metal(sol: _Solid, grey: np.ndarray, light: np.ndarray, px: float, rng: np.random.Generator,
          local_shape: tuple[int, int], strength: float = 1.0) -> np.ndarray:
    """Machined metal: dull grey albedo, brushed grain along the part, a reflected environment
    (a bright/dark horizon across the face), Blinn-Phong highlights on the bevels; `strength`
    scales the light (over-exposure). Returns (h, w, 3) RGB."""
    hl, wl = local_shape
    grain = rng.normal(0, 1, (hl, wl)).astype(np.float32)
    grain = cv2.blur(grain, (max(5, int(15 * px)) | 1, 1))  # streaks along the part's long axis
    grain /= grain.std() + 1e-6
    h, w = sol.top.shape
    grain = cv2.warpAffine(grain, sol.warp, (w, h), flags=cv2.INTER_LINEAR)
    grain = np.roll(grain, -sol.lift, axis=0) * 0.08
    face = sol.top >= 0.5
    d = rng.uniform(0, 2 * np.pi)
    along = sol.u * np.cos(d) + sol.v * np.sin(d)
    span = max(float(np.ptp(along[face])) if face.any() else 1.0, 1.0)
    # a mirror-ish face shows the room: a soft bright/dark horizon across it
    horizon = 1 / (1 + np.exp(-(along - rng.uniform(-0.3, 0.3) * span) / (0.1 * span)))
    env = 0.05 + rng.uniform(0.15, 0.4) * horizon
    # brushed metal smears a highlight across the grain: a band along v at some u
    u_span = max(float(np.ptp(sol.u[face])) if face.any() else 1.0, 1.0)
    band = np.exp(-(((sol.u - rng.uniform(-0.35, 0.35) * u_span) / (rng.uniform(0.05, 0.12) * u_span)) ** 2))
    n_l = np.clip(sol.normal @ light, 0, 1)
    spec = rng.uniform(0.6, 1.0) * np.clip(sol.normal @ _half(light), 0, 1) ** rng.uniform(12, 30)
    spec = spec + rng.uniform(0.1, 0.3) * band
    top = (grey[None, None] * (0.3 + 0.4 * n_l)[..., None] + env[..., None]) * (1 + grain[..., None])
    top = top + spec[..., None] * (1 + 2 * grain[..., None])
    wall_tone = rng.uniform(0.5, 1.1)
    wall = grey * wall_tone * (0.7 + 0.5 * (sol.z / max(sol.lift, 1)))[..., None]
    wall = wall + (0.5 * np.exp(-((sol.z - 0.7 * sol.lift) ** 2) / 1.5))[..., None] * (rng.random() < 0.5)
    return np.where((sol.top >= 0.5)[..., None], top, wall) * strength


def _half(light: np.ndarray) -> np.ndarray:
    h = light + np.array([0, 0, 1], np.float32)
    return (h / np.linalg.norm(h)).astype(np.float32)


# ------------------------------------------------------------------------------------- backgrounds
def _smooth_noise(rng: np.random.Generator, size: int, sigma: float) -> np.ndarray:
    """(size, size) zero-mean, unit-std noise with features about `sigma` px wide."""
    n = cv2.GaussianBlur(rng.normal(0, 1, (size, size)).astype(np.float32), (0, 0), max(sigma, 0.3))
    return n / (n.std() + 1e-6)


def print_bed(rng: np.random.Generator, size: int, px: float) -> np.ndarray:
    """Bright textured PEI sheet: powder-coat speckle over a slow sheen. (H, W, 3) in [0, 1]."""
    base = BEDS[rng.integers(len(BEDS))] * rng.uniform(0.95, 1.05, 3).astype(np.float32)
    tex = 0.035 * _smooth_noise(rng, size, 0.6 * px) + 0.025 * _smooth_noise(rng, size, size / 5)
    return base[None, None] * (1 + tex[..., None])


def workbench(rng: np.random.Generator, size: int, px: float, level: float) -> np.ndarray:
    """Dark, low-saturation bench or plate with blotches and a few scratches, mean about `level`."""
    tint = 1 + rng.uniform(-0.04, 0.04, 3).astype(np.float32)
    tex = 0.12 * _smooth_noise(rng, size, size / 8) + 0.05 * _smooth_noise(rng, size, 0.8 * px)
    img = level * tint[None, None] * (1 + tex[..., None])
    scratches = np.zeros((size, size), np.float32)
    for _ in range(int(rng.integers(0, 6))):
        p, q = rng.uniform(0, size, 2), rng.uniform(0, size, 2)
        cv2.line(scratches, tuple(int(t) for t in p), tuple(int(t) for t in q), 1.0, 1, cv2.LINE_AA)
    return img + (0.08 * scratches)[..., None]


def _spotlight(rng: np.random.Generator, size: int, lo: float, hi: float) -> np.ndarray:
    """(size, size) light falloff from a random centre: lo at the edges, hi in the spot."""
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) / size
    cx, cy = rng.uniform(0.2, 0.8, 2)
    r2 = (xs - cx) ** 2 + (ys - cy) ** 2
    return lo + (hi - lo) * np.exp(-r2 / (2 * rng.uniform(0.25, 0.45) ** 2))


# ------------------------------------------------------------------------------------------- scene
def render_scene(
    rng: np.random.Generator,
    domain: Domain,
    size: int,
    *,
    parts_per_image: tuple[int, int] = (2, 5),
    clutter_per_image: tuple[int, int] = (0, 3),
    hard: HardCase | None = None,
    min_visibility: float = 0.35,
) -> Scene:
    """One photo of `domain` ("A" replica, "B" metal), `size` x `size` pixels.

    Parts (and non-part clutter) land at random positions, angles and scales in random stacking
    order; later ones occlude earlier ones. A part is kept (annotated) when at least
    `min_visibility` of it is visible; its box is the extent of its visible mask.
    `hard`: "low_contrast" (parts close to the background) or "overexposed" (strong light).
    """
    if domain not in ("A", "B"):
        raise ValueError(f"domain must be 'A' or 'B', got {domain!r}")
    px = size / 128  # texture and blur scales are tuned at 128 px
    az = rng.uniform(0, 2 * np.pi)
    bed, scene_colour, grey_level = None, None, 0.0
    if domain == "A":
        canvas = print_bed(rng, size, px)
        bed = canvas.reshape(-1, 3).mean(0)
        light = _unit(0.45 * np.cos(az), 0.45 * np.sin(az), 0.9)
        scene_colour = FILAMENT[rng.integers(len(FILAMENT))] if rng.random() < 0.5 else None
    else:
        grey_level = rng.uniform(0.3, 0.45)
        # reflections lift a part above its albedo: about 0.6 albedo + 0.3 matches its mean
        if hard == "low_contrast":
            bench = (0.6 * grey_level + 0.3) * rng.uniform(0.92, 1.1)
        else:
            bench = rng.uniform(0.14, 0.28)
        canvas = workbench(rng, size, px, bench)
        light = _unit(0.75 * np.cos(az), 0.75 * np.sin(az), 0.65)
    shadow_dir = -light[:2] / (np.linalg.norm(light[:2]) + 1e-6)

    base = size * rng.uniform(0.3, 0.5)
    n_parts = int(rng.integers(parts_per_image[0], parts_per_image[1] + 1))
    n_clutter = int(rng.integers(clutter_per_image[0], clutter_per_image[1] + 1))
    kinds = [PARTS[i] for i in rng.integers(len(PARTS), size=n_parts)]
    kinds += [CLUTTER[i] for i in rng.integers(len(CLUTTER), size=n_clutter)]
    stack: list[tuple[PartKind, np.ndarray, int]] = []  # (kind, scene mask, whole-part pixels)
    for idx in rng.permutation(len(kinds)):
        kind = kinds[idx]
        extent = base * kind.scale * rng.uniform(0.85, 1.15)
        local = kind.draw(rng, extent)
        lift = int(round(kind.thickness * extent * TILT))
        centre = rng.uniform(0.12, 0.88, 2) * size
        if domain == "A":
            sigma, offset, darkness = 2.5 * px, 1.5 * px, 0.22
        else:
            sigma, offset, darkness = 0.8 * px, px + lift, 0.5  # lift is already in px
        pad = int(np.ceil(offset + 3 * sigma)) + 2
        sol = _place(local, rng.uniform(0, 360), centre[0], centre[1], lift, pad, max(2.0, 1.5 * px))
        rgb = _material(kind, sol, domain, hard, light, px, rng, local.shape, bed, scene_colour, grey_level)
        shift = np.float32([[1, 0, shadow_dir[0] * offset], [0, 1, shadow_dir[1] * offset]])
        h, w = sol.full.shape
        shadow = cv2.GaussianBlur(cv2.warpAffine(sol.full, shift, (w, h)), (0, 0), sigma) * darkness
        mask = _composite(canvas, _Layer(sol.origin[0], sol.origin[1], sol.full, rgb, shadow))
        stack.append((kind, mask, int((sol.full >= 0.5).sum())))

    image = _camera(canvas, rng, domain, hard, px)
    instances: list[Instance] = []
    covered = np.zeros((size, size), bool)
    for kind, mask, whole in reversed(stack):  # top of the stack first: it hides what is below
        visible = mask & ~covered
        covered |= mask
        if kind in PARTS:
            vis = float(visible.sum()) / max(whole, 1)
            box = _box(visible)
            instances.append(Instance(kind.name, visible, vis, box, bool(box) and vis >= min_visibility))
    return Scene(image, domain, hard, instances[::-1])


def _material(kind: PartKind, sol: _Solid, domain: str, hard: str | None, light: np.ndarray, px: float,
              rng: np.random.Generator, local_shape: tuple[int, int], bed: np.ndarray | None,
              scene_colour: np.ndarray | None, grey_level: float) -> np.ndarray:
    """Shade one object in its domain's material; clutter gets plain matte materials."""
    is_part = kind in PARTS
    if domain == "A":
        if not is_part and kind.name == "tag":  # painter's tape or a paper note
            colour = np.float32((0.3, 0.55, 0.88)) if rng.random() < 0.5 else np.float32((0.93, 0.92, 0.88))
            return plastic(sol, colour, light, px, rng, layer_lines=False)
        if hard == "low_contrast" and is_part:  # natural/white filament on a pale bed
            colour = bed * rng.uniform(0.92, 1.04, 3).astype(np.float32)
        elif scene_colour is not None and is_part:
            colour = scene_colour
        else:
            colour = FILAMENT[rng.integers(len(FILAMENT))]
        colour = colour * np.float32(rng.uniform(0.9, 1.08))
        return plastic(sol, colour, light, px, rng, layer_lines=is_part)
    tint = 1 + rng.uniform(-0.03, 0.03, 3).astype(np.float32)
    if is_part:
        grey = grey_level * rng.uniform(0.85, 1.15) * tint
        strength = rng.uniform(1.6, 2.1) if hard == "overexposed" else 1.0
        return metal(sol, grey, light, px, rng, local_shape, strength)
    if kind.name == "scrap" and rng.random() < 0.5:  # a swarf chip: metal, but not a part
        return metal(sol, grey_level * tint, light, px, rng, local_shape)
    tone = rng.uniform(0.05, 0.12) if kind.name == "cable" else rng.uniform(0.55, 0.8)
    return plastic(sol, np.float32(tone) * tint, light, px, rng, layer_lines=False)


def _composite(canvas: np.ndarray, layer: _Layer) -> np.ndarray:
    """Shadow then paint `layer` onto `canvas` in place; returns its (H, W) bool scene mask."""
    size = canvas.shape[0]
    h, w = layer.alpha.shape
    sx0, sy0 = max(layer.x0, 0), max(layer.y0, 0)
    sx1, sy1 = min(layer.x0 + w, size), min(layer.y0 + h, size)
    mask = np.zeros(canvas.shape[:2], bool)
    if sx0 >= sx1 or sy0 >= sy1:
        return mask
    win = (slice(sy0 - layer.y0, sy1 - layer.y0), slice(sx0 - layer.x0, sx1 - layer.x0))
    region = canvas[sy0:sy1, sx0:sx1]
    a = layer.alpha[win][..., None]
    region *= 1 - layer.shadow[win][..., None]
    region[:] = region * (1 - a) + layer.rgb[win] * a
    mask[sy0:sy1, sx0:sx1] = layer.alpha[win] >= 0.5
    return mask


def _camera(
    img: np.ndarray, rng: np.random.Generator, domain: str, hard: str | None, px: float
) -> np.ndarray:
    """Scene light, exposure, optics blur and sensor noise -> (H, W, 3) uint8."""
    size = img.shape[0]
    if domain == "A":  # soft, even light from a diffuser
        field = _spotlight(rng, size, 0.93, 1.04)
        exposure = rng.uniform(1.1, 1.18) if hard == "overexposed" else rng.uniform(0.97, 1.05)
        noise = 0.008
    else:  # one hard lamp, a small sensor in a dim shop
        field = _spotlight(rng, size, 0.6, 1.2 if hard != "overexposed" else 1.6)
        exposure = rng.uniform(0.9, 1.1)
        noise = rng.uniform(0.025, 0.045)
        grey = img.mean(-1, keepdims=True)
        img = grey + 0.35 * (img - grey)  # metal and shop light wash colour out
    img = img * (field * exposure)[..., None]
    img = cv2.GaussianBlur(img, (0, 0), max(0.4, (0.35 if domain == "A" else 0.5) * px))
    luma = rng.normal(0, noise, img.shape[:2]).astype(np.float32)[..., None]
    chroma = rng.normal(0, noise * 0.3, img.shape).astype(np.float32)
    img = np.clip(img + luma + chroma, 0, 1)
    return np.round(img * 255).astype(np.uint8)


def _box(mask: np.ndarray) -> list[float]:
    """Tight xywh (pixels) of a bool mask: edges on the outermost mask pixels; [] when empty."""
    ys = np.flatnonzero(mask.any(1))
    xs = np.flatnonzero(mask.any(0))
    if len(xs) == 0:
        return []
    return [float(xs[0]), float(ys[0]), float(xs[-1] - xs[0] + 1), float(ys[-1] - ys[0] + 1)]


def _unit(x: float, y: float, z: float) -> np.ndarray:
    v = np.array([x, y, z], np.float32)
    return v / np.linalg.norm(v)
