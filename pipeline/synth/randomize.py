"""Classical domain randomisation of replica photos toward metal: the cheap rival of the GAN.

`metal_randomization(seed)` is an albumentations pipeline of photometric steps only, so every box
stays exactly where it was (no geometric step: nothing to clip or drop). It pushes a bright,
saturated replica photo toward the look of metal on a workbench without learning anything:
grey or desaturated colour; the brightness ramp inverted half the time (a bright print bed becomes
a dark bench, and parts light on it); reduced contrast; an exposure (a bounded gamma) that
brings the mean grey level into the range of metal-on-bench photos (METAL_MEAN: a free gamma and
brightness shift made one copy in eight nearly black, its labelled parts invisible, which made
the rival weaker than it should be); a brushed texture (noise smeared along one direction); a
few specular glints; optics blur; sensor noise.
`randomize_set` writes one randomised copy (or several) of every photo of a labelled set; each
copy is a pure function of (seed, image id, variant): `randomize_image` redraws any one of them.
If a GAN cannot beat this, the report must say so: it is the `real+replica-aug` arm.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from pipeline.data.coco import CocoSet, ImageRecord
from pipeline.gan.data import seed_independently
from pipeline.store import atomic_write_bytes

# The mean grey level the exposure step draws from: the demo's real metal photos lie between 35
# and 154 (5th-95th percentile 39-117); an exposure outside it is a photo nobody would label.
METAL_MEAN = (40.0, 120.0)


def expose(img: np.ndarray, target: float, max_gamma: float = 2.5) -> np.ndarray:
    """Set the mean grey level of uint8 `img` to `target` by a gamma within [1/max_gamma,
    max_gamma] (order-preserving: every edge stays an edge; a flat image stays flat), then, if
    that bounded gamma cannot reach it, by an affine lift of the floor or a gain. A stronger gamma
    would blow the sensor noise of a dark bench up into white speckle."""
    x = img.astype(np.float32) / 255.0
    t = target / 255.0
    bound = float(np.log2(max_gamma))
    lo, hi = -bound, bound  # log2 of the gamma exponent
    for _ in range(16):  # bisection: mean(x ** 2**g) falls as g rises
        mid = (lo + hi) / 2
        if float(np.power(x, 2.0 ** mid).mean()) > t:
            lo = mid
        else:
            hi = mid
    y = np.power(x, 2.0 ** ((lo + hi) / 2))
    m = float(y.mean())
    if m < t - 1e-3:
        lift = (t - m) / (1.0 - m)  # the floor that brings the mean to t, the white point kept
        y = lift + (1.0 - lift) * y
    elif m > t + 1e-3:
        y *= t / m
    return np.clip(y * 255.0 + 0.5, 0, 255).astype(np.uint8)


def _transforms():
    """The three custom photometric steps, as albumentations ImageOnlyTransforms (built lazily so
    importing this module does not import albumentations)."""
    import albumentations as A

    class BrushedTexture(A.ImageOnlyTransform):
        """Adds grey noise smeared along one random direction (brushed or machined metal)."""

        def __init__(self, amplitude: tuple[float, float] = (4.0, 14.0), length: tuple[int, int] = (7, 21),
                     p: float = 0.5):
            super().__init__(p=p)
            self.amplitude, self.length = amplitude, length

        def get_params_dependent_on_data(self, params, data):
            h, w = params["shape"][:2]
            rng = self.random_generator
            return {"noise": rng.standard_normal((h, w)).astype(np.float32),
                    "angle": float(rng.uniform(0, 180)),
                    "length": int(rng.integers(self.length[0], self.length[1] + 1)),
                    "amplitude": float(rng.uniform(*self.amplitude))}

        def apply(self, img, noise, angle, length, amplitude, **params):
            k = np.zeros((length, length), np.float32)
            k[length // 2, :] = 1.0 / length
            rot = cv2.getRotationMatrix2D(((length - 1) / 2, (length - 1) / 2), angle, 1.0)
            k = cv2.warpAffine(k, rot, (length, length))
            k /= max(float(k.sum()), 1e-6)
            streaks = cv2.filter2D(noise, -1, k, borderType=cv2.BORDER_REFLECT)
            streaks *= amplitude / max(float(streaks.std()), 1e-6)
            out = img.astype(np.float32) + streaks[..., None]
            return np.clip(out, 0, 255).astype(np.uint8)

    class SpecularGlints(A.ImageOnlyTransform):
        """Adds a few bright elongated Gaussian highlights (specular reflections)."""

        def __init__(self, count: tuple[int, int] = (1, 4), strength: tuple[float, float] = (40.0, 140.0),
                     p: float = 0.5):
            super().__init__(p=p)
            self.count, self.strength = count, strength

        def get_params_dependent_on_data(self, params, data):
            h, w = params["shape"][:2]
            rng = self.random_generator
            n = int(rng.integers(self.count[0], self.count[1] + 1))
            side = min(h, w)
            glints = [(float(rng.uniform(0, w)), float(rng.uniform(0, h)),
                       float(rng.uniform(0.02, 0.10) * side), float(rng.uniform(0.005, 0.03) * side),
                       float(rng.uniform(0, np.pi)), float(rng.uniform(*self.strength))) for _ in range(n)]
            return {"glints": glints}

        def apply(self, img, glints, **params):
            h, w = img.shape[:2]
            yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
            light = np.zeros((h, w), np.float32)
            for cx, cy, major, minor, theta, strength in glints:
                c, s = np.cos(theta), np.sin(theta)
                u = (xx - cx) * c + (yy - cy) * s
                v = -(xx - cx) * s + (yy - cy) * c
                light += strength * np.exp(-0.5 * ((u / major) ** 2 + (v / minor) ** 2))
            return np.clip(img.astype(np.float32) + light[..., None], 0, 255).astype(np.uint8)

    class Exposure(A.ImageOnlyTransform):
        """Sets the mean grey level to a draw from `mean` by a gamma (see `expose`)."""

        def __init__(self, mean: tuple[float, float] = METAL_MEAN, p: float = 1.0):
            super().__init__(p=p)
            self.mean = mean

        def get_params_dependent_on_data(self, params, data):
            return {"target": float(self.random_generator.uniform(*self.mean))}

        def apply(self, img, target, **params):
            return expose(img, target)

    return BrushedTexture, SpecularGlints, Exposure


def metal_randomization(seed: int):
    """The albumentations pipeline (photometric only: boxes are unchanged), seeded."""
    import albumentations as A

    BrushedTexture, SpecularGlints, Exposure = _transforms()
    return A.Compose(
        [
            A.OneOf([A.ToGray(p=1.0), A.ColorJitter(brightness=0, contrast=0, saturation=(0.0, 0.3), hue=0,
                                                    p=1.0)], p=0.9),
            A.InvertImg(p=0.6),
            A.RandomBrightnessContrast(brightness_limit=0.0, contrast_limit=(-0.4, 0.1), p=0.7),
            Exposure(p=1.0),
            BrushedTexture(p=0.5),
            SpecularGlints(p=0.5),
            A.OneOf([A.GaussianBlur(blur_limit=(3, 5), p=1.0), A.MotionBlur(blur_limit=(3, 5), p=1.0)], p=0.3),
            A.OneOf([A.GaussNoise(std_range=(0.01, 0.05), p=1.0),
                     A.ISONoise(color_shift=(0.005, 0.02), intensity=(0.05, 0.2), p=1.0)], p=0.7),
        ],
        seed=seed,
    )


def randomize_image(aug, rgb: np.ndarray, seed: int, image_id: int, variant: int = 0) -> np.ndarray:
    """One randomised copy of an image (H,W,3) uint8 RGB, the same for the same (seed, id, variant)."""
    seed_independently(aug, np.random.SeedSequence([seed, image_id, variant]))
    return aug(image=rgb)["image"]


def randomize_set(coco: CocoSet, root: Path, out_root: Path, *, seed: int, variants: int = 1,
                  read_rgb=None) -> CocoSet:
    """Write `variants` randomised copies of every image of `coco` (file names relative to `root`)
    under out_root/images/, and return their COCO set (file names relative to out_root, same
    boxes, `extra["randomized_from"]` = the source image id). Deterministic from `seed`."""
    aug = metal_randomization(seed)
    images: list[ImageRecord] = []
    anns = []
    by_image = coco.anns_by_image()
    next_img, next_ann = 1, 1
    for im in coco.images:
        path = Path(root) / im.file_name
        if read_rgb is not None:
            rgb = read_rgb(im)
        else:
            bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if bgr is None:
                raise ValueError(f"{path}: unreadable image")
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        for v in range(variants):
            out = randomize_image(aug, rgb, seed, im.id, v)
            rel = Path("images") / f"{Path(im.file_name).stem}_rand{v}.png"
            ok, png = cv2.imencode(".png", cv2.cvtColor(out, cv2.COLOR_RGB2BGR))
            if not ok:
                raise RuntimeError(f"could not encode {rel}")
            atomic_write_bytes(Path(out_root) / rel, png.tobytes())
            images.append(ImageRecord(next_img, rel.as_posix(), im.width, im.height, domain=im.domain,
                                      split=im.split, synthetic=True, source_image_id=im.id,
                                      extra={"randomized_from": im.id, "variant": v}))
            for a in by_image.get(im.id, []):
                anns.append(type(a)(next_ann, next_img, a.category_id, list(a.bbox)))
                next_ann += 1
            next_img += 1
    return CocoSet(images, anns, list(coco.categories))
