"""Image decoding/normalisation, box checks and path safety: each bad case, its reason and action."""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))  # ingest_helpers lives beside this file (importlib mode)
from ingest_helpers import exif_rotated_jpeg, pil_bytes, png16, png_header_only, scene
from pipeline.data.validate import (
    BoxCheck,
    InputProblem,
    check_box,
    load_image,
    quarantine_row,
    safe_image_path,
    utf8_name,
)

MAX = 10_000_000


def decoded(data: bytes) -> np.ndarray:
    """What any later stage sees: OpenCV's decode (which applies EXIF) as RGB."""
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    assert bgr.dtype == np.uint8 and bgr.ndim == 3 and bgr.shape[2] == 3
    return bgr[:, :, ::-1]


def problem(data: bytes, max_pixels: int = MAX) -> str:
    with pytest.raises(InputProblem) as e:
        load_image(data, max_pixels)
    assert e.value.action == "image skipped"
    return e.value.reason


def test_plain_rgb_jpeg_and_png_are_kept_byte_for_byte():
    for ext in (".jpg", ".png"):
        data = cv2.imencode(ext, scene(40, 30))[1].tobytes()
        img = load_image(data, MAX)
        assert img.copied and img.data == data and img.ext == ext and img.notes == []
        assert (img.width, img.height) == (40, 30)


@pytest.mark.parametrize(
    "data, expected",
    [
        (b"", "zero-byte file"),
        (b"hello, this is a text file\n" * 10, "not an image"),
        (b"\x89PNG\r\n\x1a\n" + os.urandom(200), "corrupt"),
    ],
    ids=["zero-byte", "non-image", "corrupt"],
)
def test_unusable_files_are_skipped_with_reason(data, expected):
    assert expected in problem(data)


def test_truncated_jpeg_is_detected():
    data = cv2.imencode(".jpg", scene(64, 64))[1].tobytes()
    assert "truncated" in problem(data[: len(data) // 2])


def test_decompression_bomb_refused_from_header_before_decoding():
    # Declares 30000 x 30000 = 900 Mpx but holds a few bytes: decoding it would be the attack.
    reason = problem(png_header_only(30_000, 30_000), max_pixels=50_000_000)
    assert "decompression bomb" in reason and "not decoded" in reason and "900000000" in reason
    # Under Pillow's own hard limit, our data.max_pixels budget decides, from the header alone.
    reason = problem(png_header_only(9_000, 9_000), max_pixels=50_000_000)
    assert "9000x9000 = 81000000 px exceeds data.max_pixels=50000000" in reason and "not decoded" in reason
    # A normal image over the configured budget is refused with the numbers in the message.
    reason = problem(cv2.imencode(".png", scene(64, 64))[1].tobytes(), max_pixels=1000)
    assert "64x64 = 4096 px exceeds data.max_pixels=1000" in reason


@pytest.mark.parametrize("gray", [True, False], ids=["gray16", "rgb16"])
def test_16bit_is_scaled_to_8bit_rgb(gray):
    data, a16 = png16(gray)
    img = load_image(data, MAX)
    assert not img.copied and img.ext == ".png" and "16-bit" in img.notes
    out = decoded(img.data)
    want = np.rint(a16 / 257.0).astype(np.uint8)
    if gray:
        want = np.repeat(want[:, :, None], 3, axis=2)
    # Pillow reads 16-bit RGB as 8-bit by keeping the high byte: within 1 of the exact scaling.
    assert np.abs(out.astype(int) - want.astype(int)).max() <= 1


def test_grayscale_palette_and_alpha_become_rgb():
    g = Image.fromarray(scene(16, 12)[:, :, 0])
    img = load_image(pil_bytes(g), MAX)
    assert img.notes == ["grayscale"]
    out = decoded(img.data)
    assert (out[:, :, 0] == np.asarray(g)).all() and (out[:, :, 1] == out[:, :, 2]).all()

    p = Image.fromarray(scene(16, 12)).convert("P", palette=Image.Palette.ADAPTIVE, colors=8)
    img = load_image(pil_bytes(p), MAX)
    assert img.notes == ["palette"]
    assert (decoded(img.data) == np.asarray(p.convert("RGB"))).all()

    rgba = np.zeros((12, 16, 4), np.uint8)
    rgba[..., :3] = 10
    rgba[:, :8, 3] = 255  # left half opaque dark, right half fully transparent
    img = load_image(pil_bytes(Image.fromarray(rgba, "RGBA")), MAX)
    assert img.notes == ["alpha channel"]
    out = decoded(img.data)
    assert (out[:, :8] == 10).all() and (out[:, 8:] == 255).all()  # transparent -> white


def test_exif_orientation_is_applied_to_pixels():
    data = exif_rotated_jpeg(6, w=40, h=24)  # 6 = rotate 90 deg clockwise to display
    img = load_image(data, MAX)
    assert (img.width, img.height) == (24, 40)
    assert any("EXIF orientation 6" in n for n in img.notes)
    out = decoded(img.data)  # no EXIF left, so OpenCV cannot rotate it a second time
    assert out.shape[:2] == (40, 24)
    # The white block at the stored top-left is displayed at the top-right after a 90 deg CW turn.
    assert out[:8, -8:].mean() > 200 and out[:8, :8].mean() < 60


def test_box_rules():
    rule = BoxCheck(clip_min_inside=0.5, min_box_size=2.0)
    W, H = 100, 50
    assert check_box([10, 10, 20, 20], W, H, rule) == ([10, 10, 20, 20], None, None)
    box, reason, action = check_box([math.nan, 1, 2, 3], W, H, rule)
    assert box is None and "NaN" in reason and action == "box dropped"
    box, reason, action = check_box([10, 10, -5, 4], W, H, rule)
    assert box is None and "negative" in reason
    box, reason, action = check_box([10, 10, 0, 4], W, H, rule)
    assert box is None and "zero-area" in reason
    box, reason, action = check_box([90, 10, 20, 10], W, H, rule)  # half inside
    assert box == [90, 10, 10, 10] and action == "box clipped" and "50% inside" in reason
    box, reason, action = check_box([-15, -5, 20, 10], W, H, rule)  # 37.5% inside
    assert box is None and "outside" in reason and action == "box dropped"
    box, reason, action = check_box([200, 200, 5, 5], W, H, rule)
    assert box is None and "0% inside" in reason
    box, reason, action = check_box([10, 10, 1.5, 30], W, H, rule)
    assert box is None and "min_box_size" in reason
    box, reason, action = check_box(["a", 1, 2, 3], W, H, rule)
    assert box is None and "not four numbers" in reason


def test_float_error_at_an_edge_is_not_a_clipped_box():
    # YOLO "0 0.2 0.2 0.1 0.1" on a 50 px image: (0.2 - 0.05) * 50 = 7.499999999999999 etc.
    cx, w = 0.2, 0.1
    bbox = [(cx - w / 2) * 50, (cx - w / 2) * 50, w * 50, w * 50]
    box, reason, action = check_box(bbox, 50, 50, BoxCheck())
    assert reason is None and action is None and box == pytest.approx([7.5, 7.5, 5, 5])
    # A box touching the far edge, normalised and back (x + w = 1.0000000000000002 * W).
    box, reason, _ = check_box([0.7 * 30, 0, 0.3 * 30 + 1e-9, 10], 30, 10, BoxCheck())
    assert reason is None and box[0] + box[2] <= 30
    # More than float error is still reported.
    assert check_box([25, 0, 5.01, 10], 30, 10, BoxCheck())[2] == "box clipped"


def test_paths_that_leave_the_root_are_refused(tmp_path):
    root = tmp_path / "images"
    root.mkdir()
    (root / "ok.png").write_bytes(b"x")
    outside = tmp_path / "secret.png"
    outside.write_bytes(b"x")
    (root / "link.png").symlink_to(outside)
    (root / "sub").mkdir()
    (root / "sub" / "inner_link.png").symlink_to(root / "ok.png")  # inside: fine

    assert safe_image_path(root, "ok.png") == root / "ok.png"
    assert safe_image_path(root, "sub/../ok.png") == root / "ok.png"
    assert safe_image_path(root, "sub/inner_link.png").exists()
    cases = {
        str(outside): "absolute path",
        "../secret.png": "escapes the image root",
        "sub/../../secret.png": "escapes the image root",
        "link.png": "resolves outside the image root",
        "missing.png": "missing image file",
        "sub": "not a regular file",
    }
    for name, expected in cases.items():
        with pytest.raises(InputProblem) as e:
            safe_image_path(root, name)
        assert expected in e.value.reason, name


def test_images_too_small_to_hold_a_part_are_skipped():
    one = cv2.imencode(".png", np.full((1, 1, 3), 128, np.uint8))[1].tobytes()
    with pytest.raises(InputProblem) as e:
        load_image(one, MAX, min_side=8)
    assert e.value.reason == "image too small (1x1 px, data.min_image_side=8)"
    thin = cv2.imencode(".png", np.full((7, 64, 3), 90, np.uint8))[1].tobytes()
    with pytest.raises(InputProblem, match=r"64x7 px"):
        load_image(thin, MAX, min_side=8)
    assert load_image(cv2.imencode(".png", np.full((8, 8, 3), 90, np.uint8))[1].tobytes(), MAX, min_side=8).width == 8


def test_names_that_are_not_utf8_are_percent_encoded_everywhere_they_are_shown(tmp_path):
    raw = os.fsdecode(b"gear-\xff\xfe.png")  # how Python reads a Latin-1 era file name
    assert utf8_name(raw) == "gear-%FF%FE.png"
    assert utf8_name("zahnrad-ß-歯車.png") == "zahnrad-ß-歯車.png"  # valid names stay
    assert utf8_name("a\ud800b") == "a\ufffdb"  # a lone surrogate from a JSON escape
    row = quarantine_row(tmp_path / raw, f"missing {raw}", "image skipped")
    assert all(v.encode("utf-8") for v in row.values()) and "gear-%FF%FE.png" in row["file"]
    root = tmp_path / "images"
    root.mkdir()
    for name, expected in [(raw, "missing image file 'gear-%FF%FE.png'"), ("x\ud800.png", "not valid text")]:
        with pytest.raises(InputProblem) as e:
            safe_image_path(root, name)
        assert e.value.reason.startswith(expected) or expected in e.value.reason, e.value.reason
        e.value.reason.encode("utf-8")


def test_corrupt_pixel_data_is_detected():
    data = bytearray(cv2.imencode(".png", scene(64, 64))[1].tobytes())
    data[100:400] = os.urandom(300)  # inside IDAT: the header still parses
    reason = problem(bytes(data))
    assert "corrupt" in reason or "truncated" in reason


def test_other_formats_and_cmyk_are_re_encoded_as_png():
    rgb = scene(24, 16)
    for fmt in ("BMP", "TIFF", "WEBP"):
        img = load_image(pil_bytes(Image.fromarray(rgb), fmt, **({"lossless": True} if fmt == "WEBP" else {})), MAX)
        assert img.notes == [f"{fmt} format"] and img.ext == ".png" and not img.copied
        assert (decoded(img.data) == rgb).all(), fmt
    cmyk = load_image(pil_bytes(Image.fromarray(rgb).convert("CMYK"), "JPEG", quality=95), MAX)
    assert cmyk.notes == ["CMYK"] and decoded(cmyk.data).shape == (16, 24, 3)


def test_control_characters_are_percent_encoded_and_nul_names_refused(tmp_path):
    assert utf8_name("a\nb\tc\x1b[2J\x7f\u2028.png") == "a%0Ab%09c%1B[2J%7F%E2%80%A8.png"
    assert utf8_name("zahnrad-ß.png") == "zahnrad-ß.png"  # printable non-ASCII stays
    (tmp_path / "a\nb.png").write_bytes(b"x")
    assert safe_image_path(tmp_path, "a\nb.png").name == "a\nb.png"  # a real file: found, renamed on output
    with pytest.raises(InputProblem, match=r"file name 'x%00.png' contains a NUL character"):
        safe_image_path(tmp_path, "x\0.png")
    with pytest.raises(InputProblem, match=r"file name of 5004 characters .* \(at most 4096\)"):
        safe_image_path(tmp_path, "x" * 5000 + ".png")
    with pytest.raises(InputProblem, match=r"cannot be read|missing"):
        safe_image_path(tmp_path, "d" * 300 + "/a.png")  # a component longer than the file system allows
