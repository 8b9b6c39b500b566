"""Untrusted JSON files are read with bounds: size, nesting depth, digit count, encoding; keys
given twice are reported, never silently resolved."""

from __future__ import annotations

import pytest

from pipeline.data.jsonfile import JsonFileError, nesting_depth, parse_json, read_json


def test_depth_counts_brackets_outside_strings_only() -> None:
    assert nesting_depth(b'{"a": [1, [2]], "b": "[[[[", "c": "\\"[["}') == 3
    assert nesting_depth(b"17") == 0


@pytest.mark.parametrize("data, message", [
    (b"[" * 100_000 + b"]" * 100_000, r"nested 100000 deep \(at most 32\)"),
    (b'{"id": 1' + b"0" * 5000 + b"}", r"a number with more than 4300 digits"),
    (b'{"name": "caf\xe9"}', r"not UTF-8 text \(byte 0xe9 at offset 13\)"),
    (b'\xff\xfe{\x00}\x00', r"not UTF-8"),
    (b'{"images": [', r"not valid JSON"),
    (b"", r"not valid JSON"),
])
def test_pathological_json_is_a_clear_error_naming_the_file(data: bytes, message: str) -> None:
    with pytest.raises(JsonFileError, match=r"^ann\.json: .*" + message):
        parse_json(data, "ann.json")


def test_bom_nan_and_duplicate_keys() -> None:
    value, dup = parse_json(b'\xef\xbb\xbf{"a": NaN, "b": 1, "b": 2, "c": {"d": 1, "d": 1}}', "x.json")
    assert value["b"] == 2 and value["a"] != value["a"]  # NaN parsed; the last value, as JSON readers do
    assert dup == ["b", "d"]


def test_size_is_checked_before_reading(tmp_path) -> None:
    f = tmp_path / "big.json"
    f.write_text('{"info": "' + "x" * 2000 + '"}')
    with pytest.raises(JsonFileError, match=r"big\.json: 0\.0 MB, more than data\.max_annotation_mb=0\.001"):
        read_json(f, max_bytes=1000)
    assert read_json(f, max_bytes=10_000)[0]["info"] == "x" * 2000
    with pytest.raises(JsonFileError, match="file not found"):
        read_json(tmp_path / "nope.json", 10)
    with pytest.raises(JsonFileError, match="is a folder"):
        read_json(tmp_path, 10)
