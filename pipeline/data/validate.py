"""Image and box validation for ingest: every problem becomes a quarantine row, never a crash.

A quarantine row is `{"file": str, "reason": str, "action": str}`; `action` says what ingest did
("image skipped", "box dropped", "box clipped", "normalised to 8-bit RGB PNG", ...).

Images. `load_image` reads the bytes once, hashes them, and asks Pillow for the *declared* size
from the header before any pixel is decoded, so a decompression bomb (over `data.max_pixels`) and
an image too small to hold a part (a side under `data.min_image_side`) are refused cheaply. Then it
decodes fully (a truncated or corrupt file fails here) and decides:
- plain 8-bit RGB JPEG/PNG without an EXIF rotation: the original bytes are kept (fast path);
- anything else is normalised to 8-bit RGB and re-encoded as PNG: 16-bit (grayscale scaled by
  1/257; 16-bit RGB keeps its high byte, as Pillow reads it), grayscale, palette, CMYK, alpha
  (composited over white, what a viewer shows) and other formats (TIFF, BMP, WebP...).

EXIF orientation. The rotation/flip from the EXIF Orientation tag is applied to the pixels and the
tag is dropped (the written PNG has no EXIF), so every later reader (OpenCV applies EXIF by
default, ultralytics too, PIL does not) sees the same pixels. Boxes are taken to be in the
*displayed* orientation - what labelme, CVAT and COCO annotators show the annotator - so they are
kept as they are and checked against the displayed width and height.

Names. A file name that is not UTF-8 reaches Python as lone surrogates; `utf8_name` turns those
bytes into `%FF` so every output name, "original" label and quarantine row is valid UTF-8.

Boxes (`check_boxes`, xywh in pixels): NaN/inf, negative or zero width/height are dropped; boxes
partly outside the image are clipped when at least `clip_min_inside` of their area is inside,
otherwise dropped; boxes thinner than `min_box_size` pixels after clipping are dropped.
"""

from __future__ import annotations

import io
import math
import os
import re
import reprlib
import warnings
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from pipeline.store import sha256_bytes

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
# Kept byte for byte when 8-bit RGB without rotation; MPO is a camera JPEG with extra frames.
_KEEP_FORMATS = {"JPEG": ".jpg", "MPO": ".jpg", "PNG": ".png"}
_EXIF_ORIENTATION = 0x0112
# Magic numbers of formats Pillow reads: a file starting with one is a corrupt image, not a non-image.
_SIGNATURES = (b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"BM", b"II*\x00", b"MM\x00*", b"RIFF")


class InputProblem(Exception):
    """One input (image, annotation, box) is bad; carries the quarantine reason and action."""

    def __init__(self, reason: str, action: str = "image skipped"):
        super().__init__(reason)
        self.reason = reason
        self.action = action

    def row(self, file: str | Path) -> dict[str, str]:
        return quarantine_row(file, self.reason, self.action)


def quarantine_row(file: str | Path, reason: str, action: str) -> dict[str, str]:
    """A quarantine row; every field passes through `utf8_name` (rows are written as JSON)."""
    return {"file": utf8_name(str(file)), "reason": utf8_name(reason), "action": utf8_name(action)}


def utf8_name(text: str) -> str:
    """`text` as valid UTF-8 on one line: file-name bytes that were not UTF-8 and control
    characters are percent-encoded.

    Python reads bytes that are not UTF-8 as lone surrogates (os.fsdecode(b"gear-\\xff.png") is
    "gear-\\udcff.png"), which no UTF-8 file name or JSON string can hold; they become "%FF" as in a
    URL ("gear-%FF.png"). Any other lone surrogate (a JSON "\\ud800" escape) becomes U+FFFD.
    Control characters (NUL, newline, tab, escape, DEL, C1, and the line/paragraph separators
    that `str.splitlines` breaks on) become their UTF-8 bytes percent-encoded ("a%0Ab.png"): a
    name with a newline would split the one-path-per-line lists that YOLO training reads, and an
    escape sequence would reach the terminal. A literal "%" is kept as it is: output names stay
    readable, and ingest makes clashing names unique.
    """
    if text.isascii() and text.isprintable():
        return text
    text = _SURROGATES.sub(_escape_surrogate, text)
    return _CONTROL.sub(lambda m: "".join(f"%{b:02X}" for b in m.group().encode("utf-8")), text)


def has_control_chars(text: str) -> bool:
    """Whether `text` holds a character `utf8_name` would percent-encode as a control character."""
    return _CONTROL.search(text) is not None


def short_repr(v: object, limit: int = 80) -> str:
    """repr of an untrusted value, cut to about `limit` characters without building a huge string
    first (a list of a million items, a number with thousands of digits)."""
    r = reprlib.Repr()
    r.maxstring, r.maxother, r.maxlong = limit, limit, limit
    r.maxlist = r.maxtuple = r.maxdict = r.maxset = 6
    text = utf8_name(r.repr(v))
    return text if len(text) <= limit else text[: limit - 3] + "..."


_SURROGATES = re.compile("[\ud800-\udfff]")
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# Longer names are no file on any common file system (PATH_MAX is 4096 on Linux).
_MAX_NAME = 4096


def _escape_surrogate(m: re.Match) -> str:
    code = ord(m.group())
    return f"%{code - 0xDC00:02X}" if 0xDC80 <= code <= 0xDCFF else "\ufffd"


# ------------------------------------------------------------------------------------------ paths
def safe_image_path(root: Path, name: str) -> Path:
    """Resolve `name` (a file_name/imagePath from an annotation) inside `root`, or raise.

    Refused: absolute paths, paths that leave `root` through `..`, and symlinks (of the file or
    any folder on the way) that resolve outside `root`. Annotations are user data: a COCO file
    must not be able to make ingest read /etc/passwd or another user's photos.
    """
    if not name or not str(name).strip():
        raise InputProblem("empty file name")
    shown = utf8_name(str(name))  # reasons quote the name: never as raw bytes or "\\udcff" escapes
    if "\x00" in name:  # no file system allows it; os calls would raise ValueError on it
        raise InputProblem(f"file name {shown!r} contains a NUL character")
    if len(name) > _MAX_NAME:
        raise InputProblem(f"file name of {len(name)} characters {short_repr(shown, 60)} (at most {_MAX_NAME})")
    posix = str(name).replace("\\", "/")
    if posix.startswith("/") or PurePosixPath(posix).is_absolute() or (len(posix) > 1 and posix[1] == ":"):
        raise InputProblem(f"absolute path {shown!r} (must be relative to {root})")
    norm = os.path.normpath(posix)
    if norm == ".." or norm.startswith("../"):
        raise InputProblem(f"path {shown!r} escapes the image root {root}")
    path = root / norm
    real_root = root.resolve()
    try:
        real = path.resolve(strict=False)
    except (OSError, RuntimeError) as e:  # symlink loops
        raise InputProblem(f"path {shown!r} cannot be resolved: {e}") from None
    except UnicodeEncodeError:  # a JSON "\\ud800" escape: no file can have this name
        raise InputProblem(f"file name {shown!r} is not valid text") from None
    if not real.is_relative_to(real_root):
        raise InputProblem(f"symlink {shown!r} resolves outside the image root {root} (to {real})")
    try:
        exists, is_file = path.exists(), path.is_file()
    except OSError as e:  # a component too long, a permission error on the way
        raise InputProblem(f"path {shown!r} cannot be read: {e.strerror or e}") from None
    if not exists:
        raise InputProblem(f"missing image file {shown!r} under {root}")
    if not is_file:
        raise InputProblem(f"{shown!r} is not a regular file")
    return path


def inside_root(root: Path, path: Path) -> bool:
    """Whether `path` (found by walking `root`) still lies inside `root` once symlinks resolve."""
    try:
        return path.resolve(strict=False).is_relative_to(root.resolve())
    except (OSError, RuntimeError, UnicodeEncodeError):
        return False


# ----------------------------------------------------------------------------------------- images
@dataclass
class LoadedImage:
    """A validated image ready to be written: `data` is the bytes to store, `ext` its suffix."""

    width: int  # displayed width, pixels
    height: int
    sha256: str  # of the original bytes
    data: bytes
    ext: str  # ".jpg" | ".png"
    copied: bool  # True: `data` is the original file
    notes: list[str] = field(default_factory=list)  # why it was normalised


def display_size(path: str | Path) -> tuple[int, int] | None:
    """(width, height) as displayed (EXIF rotation applied) from the header only; None if unreadable."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as im:
                w, h = im.size
                if _orientation(im) in (5, 6, 7, 8):
                    w, h = h, w
                return int(w), int(h)
    except Exception:  # any unreadable header: the caller treats the size as unknown
        return None


def _orientation(im: Image.Image) -> int:
    try:
        value = im.getexif().get(_EXIF_ORIENTATION, 1)
        return int(value) if int(value) in range(1, 9) else 1
    except Exception:  # a broken EXIF block must not hide an otherwise good image
        return 1


def load_image(data: bytes, max_pixels: int, min_side: int = 1) -> LoadedImage:
    """Validate and normalise one image from its bytes; raises InputProblem when it is unusable.

    `max_pixels` (width x height) and `min_side` (pixels) bound the declared size: larger images
    are possible decompression bombs, ones narrower than `min_side` cannot hold a part.
    """
    if len(data) == 0:
        raise InputProblem("zero-byte file")
    digest = sha256_bytes(data)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise InputProblem(f"possible decompression bomb (not decoded): {e}") from None
    except UnidentifiedImageError:
        if data.startswith(_SIGNATURES):
            raise InputProblem("corrupt image header (image signature, unreadable header)") from None
        raise InputProblem("not an image (unrecognised format)") from None
    except Exception as e:  # Pillow raises many types on garbage headers
        raise InputProblem(f"corrupt image header: {e}") from None

    with im:
        w, h = im.size
        if w <= 0 or h <= 0:
            raise InputProblem(f"declared size {w}x{h} is empty")
        if w * h > max_pixels:
            raise InputProblem(
                f"declared size {w}x{h} = {w * h} px exceeds data.max_pixels={max_pixels} "
                "(possible decompression bomb; not decoded)"
            )
        if min(w, h) < min_side:
            raise InputProblem(f"image too small ({w}x{h} px, data.min_image_side={min_side})")
        fmt = im.format or "?"
        orientation = _orientation(im)
        sixteen_bit = _is_16bit(im, data)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                if fmt == "PNG":  # chunk CRCs: Pillow's decoder alone accepts damaged IDAT data
                    with Image.open(io.BytesIO(data)) as check:
                        check.verify()
                im.load()
        except OSError as e:
            kind = "truncated" if "truncated" in str(e).lower() else "corrupt"
            raise InputProblem(f"{kind} image data: {e}") from None
        except Exception as e:
            raise InputProblem(f"corrupt image data: {e}") from None

        notes = []
        if fmt not in _KEEP_FORMATS:
            notes.append(f"{fmt} format")
        if sixteen_bit:
            notes.append("16-bit")
        if im.mode != "RGB" and not sixteen_bit:
            notes.append(_mode_name(im))
        if orientation != 1:
            notes.append(f"EXIF orientation {orientation} applied to pixels")
        if not notes:
            return LoadedImage(w, h, digest, data, _KEEP_FORMATS[fmt], True)

        rgb = _to_rgb8(ImageOps.exif_transpose(im) if orientation != 1 else im)
    import cv2

    ok, buf = cv2.imencode(".png", rgb[:, :, ::-1], [cv2.IMWRITE_PNG_COMPRESSION, 3])
    if not ok:  # pragma: no cover - OpenCV failing to encode a valid array is not an input problem
        raise RuntimeError("PNG encoding failed")
    return LoadedImage(rgb.shape[1], rgb.shape[0], digest, buf.tobytes(), ".png", False, notes)


def _mode_name(im: Image.Image) -> str:
    names = {"L": "grayscale", "LA": "grayscale+alpha", "P": "palette", "PA": "palette+alpha",
             "RGBA": "alpha channel", "CMYK": "CMYK", "1": "1-bit", "YCbCr": "YCbCr"}
    extra = " with transparency" if im.mode == "P" and "transparency" in im.info else ""
    return names.get(im.mode, f"mode {im.mode}") + extra


def _is_16bit(im: Image.Image, data: bytes) -> bool:
    if im.mode.startswith("I;16") or im.mode in ("I", "F"):
        return True
    # Pillow reads 16-bit-per-channel RGB PNG as 8-bit "RGB"; the IHDR bit depth tells the truth.
    return im.format == "PNG" and len(data) > 24 and data[24] == 16


def _to_rgb8(im: Image.Image) -> np.ndarray:
    """(H, W, 3) uint8 RGB from any Pillow mode; alpha composited over white."""
    if im.mode.startswith("I;16") or im.mode in ("I", "F"):
        a = np.asarray(im, dtype=np.float64)
        scale = 257.0 if a.max(initial=0) > 255 else 1.0  # "I" may hold 8-bit values
        g = np.clip(np.rint(a / scale), 0, 255).astype(np.uint8)
        return np.repeat(g[:, :, None], 3, axis=2)
    if im.mode == "P":
        im = im.convert("RGBA")
    elif im.mode in ("LA", "PA"):
        im = im.convert("RGBA")
    if im.mode == "RGBA":
        bg = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(bg, im)
    return np.asarray(im.convert("RGB"), dtype=np.uint8)


# ------------------------------------------------------------------------------------------ boxes
@dataclass
class BoxCheck:
    """Thresholds for `check_boxes`; see DataConfig for their meaning."""

    clip_min_inside: float = 0.5
    min_box_size: float = 1.0


def check_box(
    bbox: list[float], width: int, height: int, rule: BoxCheck
) -> tuple[list[float] | None, str | None, str | None]:
    """One xywh pixel box against a (width, height) image -> (box or None, reason, action).

    reason/action are None when the box is fine as given.
    """
    try:
        x, y, w, h = (float(v) for v in bbox)
    except (TypeError, ValueError):
        return None, f"box {bbox!r} is not four numbers", "box dropped"
    if not all(math.isfinite(v) for v in (x, y, w, h)):
        return None, f"box {_fmt(bbox)} has NaN/inf", "box dropped"
    if w <= 0 or h <= 0:
        what = "zero-area" if w == 0 or h == 0 else "negative width/height"
        return None, f"box {_fmt(bbox)} is {what}", "box dropped"
    x0, y0 = max(x, 0.0), max(y, 0.0)
    x1, y1 = min(x + w, float(width)), min(y + h, float(height))
    inside = max(0.0, x1 - x0) * max(0.0, y1 - y0) / (w * h)
    reason = action = None
    # Normalised formats (YOLO) round-trip with float error: 1e-6 px past an edge is not "outside".
    eps = 1e-6
    if x >= -eps and y >= -eps and x + w <= width + eps and y + h <= height + eps:
        inside = 1.0
        x, y, w, h = x0, y0, x1 - x0, y1 - y0
    if inside < 1.0:
        where = f"{inside:.0%} inside the {width}x{height} image"
        if inside < rule.clip_min_inside or inside == 0.0:
            return None, f"box {_fmt(bbox)} is outside the image ({where})", "box dropped"
        reason, action = f"box {_fmt(bbox)} partly outside the image ({where})", "box clipped"
        x, y, w, h = x0, y0, x1 - x0, y1 - y0
    if w < rule.min_box_size or h < rule.min_box_size:
        reason = f"box {_fmt([x, y, w, h])} thinner than data.min_box_size={rule.min_box_size} px"
        return None, reason, "box dropped"
    return [x, y, w, h], reason, action


def _fmt(bbox) -> str:
    try:
        return "[" + ", ".join(f"{float(v):.1f}" if abs(float(v)) < 1e7 else f"{float(v):.3g}"
                               for v in bbox) + "]"
    except (TypeError, ValueError, OverflowError):
        return short_repr(bbox)
