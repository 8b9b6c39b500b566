"""Quarantine summaries: rows grouped by action and kind of reason, with example files."""

from __future__ import annotations

from pipeline.data.quarantine import group_rows, reason_kind, short_file, summary_lines, summary_text


def row(file: str, reason: str, action: str = "image skipped") -> dict:
    return {"file": file, "reason": reason, "action": action}


def test_reason_kind_masks_names_paths_and_numbers_but_keeps_the_words():
    assert (reason_kind("missing image file 'p7.png' under /data/B/images")
            == "missing image file '…' under …")
    assert reason_kind("box [5.0, 5.0, 0.0, 4.0] is zero-area") == "box […] is zero-area"
    assert (reason_kind("box [55.0, 30.0, 10.0, 10.0] partly outside the image (50% inside the 60x40 image)")
            == "box […] partly outside the image (N% inside the NxN image)")
    assert reason_kind("16-bit") == "16-bit"
    assert reason_kind("EXIF orientation 6 applied") == "EXIF orientation N applied"
    assert reason_kind("thinner than data.min_box_size=1.5 px") == "thinner than data.min_box_size=N px"


def test_groups_are_largest_first_with_examples_in_file_order():
    rows = [row(f"/d/B/ann.json#image {i}", f"missing image file 'p{i}.png' under /d/B") for i in range(5)]
    rows += [row("/d/B/zero.png", "zero-byte file"),
             row("/d/B/a.jpg", "box [1, 2, 0, 3] is zero-area", "box dropped")]
    groups = group_rows(rows, examples=2)
    assert [(g.action, g.kind, g.count) for g in groups] == [
        ("image skipped", "missing image file '…' under …", 5),
        ("image skipped", "zero-byte file", 1),
        ("box dropped", "box […] is zero-area", 1),
    ]
    assert [r["file"] for r in groups[0].examples] == ["/d/B/ann.json#image 0", "/d/B/ann.json#image 1"]


def test_summary_lines_per_action_with_examples_and_the_rest_counted():
    rows = [row(f"/d/ann.json#image {i}", f"missing image file 'p{i}.png' under /d") for i in range(4)]
    rows += [row("/d/z.png", "zero-byte file"), row("/d/t.png", "not an image (unrecognised format)"),
             row("/d/c.png", "corrupt image header"),
             row("/d/x.jpg", "box [nan, 1, 2, 2] has NaN/inf", "box dropped")]
    lines = summary_lines(rows, max_kinds=2, examples=2)
    assert lines == [
        "7 x image skipped",
        "  4 x missing image file '…' under … (e.g. ann.json#image 0, ann.json#image 1, +2 more)",
        "  1 x zero-byte file (e.g. z.png)",
        "  + 2 rows of 2 other reasons",
        "1 x box dropped",
        "  1 x box […] has NaN/inf (e.g. x.jpg)",
    ]
    assert summary_lines([]) == []
    assert short_file("/a/b/one.jpg, /a/c/two.jpg") == "one.jpg, two.jpg"


def test_summary_text_is_one_line_and_quotes_single_reasons_as_written():
    rows = [row("/d/A.json", "not valid JSON (Expecting value: line 1 column 2)", "source skipped")]
    rows += [row(f"/d/p{i}.png", "zero-byte file") for i in range(3)]
    assert summary_text(rows) == (
        "image skipped: 3 x zero-byte file (e.g. p0.png, p1.png, +1 more); "
        "source skipped: not valid JSON (Expecting value: line 1 column 2) (A.json)")
