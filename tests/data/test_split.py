"""Content-hash splits: deterministic, stable when data grows, duplicates never straddle splits,
explicit splits honoured (the most held-out one wins for conflicting duplicates)."""

from __future__ import annotations

import hashlib
import json
import random

import pytest

from pipeline.config import SplitConfig
from pipeline.data.split import (
    HELD_OUT,
    PlacedImage,
    SplitItem,
    assign_splits,
    hash_split,
    identical_note,
    lookup_split,
    read_split_file,
    separate_held_out,
)


def sha(i: int) -> str:
    return hashlib.sha256(f"photo-{i}".encode()).hexdigest()


def test_deterministic_and_roughly_proportional():
    cfg = SplitConfig(train=0.2, val=0.2, test=0.6)
    items = [SplitItem(sha(i)) for i in range(2000)]
    a, _ = assign_splits(items, cfg, seed=0)
    b, _ = assign_splits(items, cfg, seed=0)
    assert a == b
    share = {s: a.count(s) / len(a) for s in ("train", "val", "test")}
    assert share["train"] == pytest.approx(0.2, abs=0.03) and share["test"] == pytest.approx(0.6, abs=0.03)
    c, _ = assign_splits(items, cfg, seed=1)
    assert c != a  # the seed matters


def test_adding_photos_never_moves_existing_ones():
    cfg = SplitConfig()
    first, _ = assign_splits([SplitItem(sha(i)) for i in range(100)], cfg, 0)
    grown, _ = assign_splits([SplitItem(sha(i)) for i in range(300)][::-1], cfg, 0)
    assert grown[::-1][:100] == first


def test_duplicates_share_a_split_and_explicit_wins():
    cfg = SplitConfig()
    dup = sha(7)
    items = [SplitItem(dup, label="a.jpg"), SplitItem(sha(8)), SplitItem(dup, label="copy/a.jpg")]
    splits, rows = assign_splits(items, cfg, 0)
    assert splits[0] == splits[2] and rows == []
    # One copy explicitly in test: every copy goes to test, nothing of it can be trained on.
    items[2] = SplitItem(dup, explicit="test", label="copy/a.jpg")
    splits, _ = assign_splits(items, cfg, 0)
    assert splits[0] == splits[2] == "test"
    # Conflicting explicit splits: the most held-out wins and a row says so.
    items[0] = SplitItem(dup, explicit="train", label="a.jpg")
    splits, rows = assign_splits(items, cfg, 0)
    assert splits[0] == splits[2] == "test"
    assert rows[0]["file"] == "a.jpg, copy/a.jpg" and "most held-out wins" in rows[0]["action"]


def test_split_file_train_shares_val_but_test_is_exact():
    cfg = SplitConfig(use_source_split=True, val_from_source_train=0.25)
    items = [SplitItem(sha(i), explicit="train" if i < 400 else "test", from_split_file=True)
             for i in range(500)]
    splits, _ = assign_splits(items, cfg, 0)
    assert splits[400:] == ["test"] * 100
    assert set(splits[:400]) == {"train", "val"}
    assert splits[:400].count("val") / 400 == pytest.approx(0.25, abs=0.07)
    # A source's own `split: train` is literal: no val carved out.
    literal = [SplitItem(sha(i), explicit="train") for i in range(50)]
    assert set(assign_splits(literal, cfg, 0)[0]) == {"train"}


def test_a_photos_split_depends_on_its_content_alone():
    """Removing other photos, renaming (labels) and reordering never move a photo; its split is
    hash_split of its content and the seed."""
    cfg = SplitConfig()
    items = [SplitItem(sha(i), label=f"img{i}.jpg") for i in range(300)]
    full = dict(zip((it.sha256 for it in items), assign_splits(items, cfg, 0)[0]))
    assert full == {it.sha256: hash_split(it.sha256, 0, cfg) for it in items}
    rng = random.Random(0)
    for _ in range(5):
        subset = rng.sample(items, 120)  # 180 others removed, the rest shuffled
        renamed = [SplitItem(it.sha256, label=f"renamed/{rng.random()}.png") for it in subset]
        splits, _ = assign_splits(renamed, cfg, 0)
        moved = {it.sha256 for it, s in zip(renamed, splits) if s != full[it.sha256]}
        assert not moved


def test_copies_of_held_out_photos_are_dropped_from_training_splits():
    t, v, o, tr = sha(1), sha(2), sha(3), sha(4)
    images = [
        PlacedImage(t, "B", "test", "B/t.jpg"),
        PlacedImage(t, "B", "unlabelled", "pool/t.jpg"),   # a test photo in the CycleGAN pool
        PlacedImage(t, "A", "train", "A/t.jpg"),           # ... and among the replicas
        PlacedImage(v, "B", "val", "B/v.jpg"),
        PlacedImage(v, "A", "unlabelled", "A/v.jpg"),
        PlacedImage(o, "B", "oracle", "B/o.jpg"),
        PlacedImage(o, "B", "train", "B/o_copy.jpg"),
        PlacedImage(tr, "B", "train", "B/tr.jpg"),         # training copies of a training photo: kept
        PlacedImage(tr, "A", "train", "A/tr.jpg"),
        PlacedImage(sha(5), "A", "train", "A/alone.jpg"),
    ]
    drop, groups = separate_held_out(images)
    assert drop == {
        1: "duplicate of held-out image B/t.jpg (B_test)",
        2: "duplicate of held-out image B/t.jpg (B_test)",
        4: "duplicate of held-out image B/v.jpg (B_val)",
        6: "duplicate of held-out image B/o.jpg (B_oracle)",
    }
    assert groups == [[7, 8]]
    assert identical_note([images[i] for i in groups[0]]) == {
        "file": "B/tr.jpg, A/tr.jpg", "reason": "2 identical images in A_train, B_train", "action": "all copies kept"}
    assert set(HELD_OUT) == {"test", "val", "oracle"}


def test_read_split_file_forms(tmp_path):
    bs = tmp_path / "image_data.json"
    bs.write_text(json.dumps({"images": [
        {"filename": "a.jpg", "train_test_split": "train"},
        {"filename": "b.jpg", "train_test_split": "test"},
        {"filename": "c.jpg", "train_test_split": None},
    ]}))
    assert read_split_file(bs) == {"a.jpg": "train", "b.jpg": "test"}
    lists = tmp_path / "lists.json"
    lists.write_text(json.dumps({"training": ["x/a.jpg"], "validation": ["b.jpg"]}))
    m = read_split_file(lists)
    assert m == {"x/a.jpg": "train", "b.jpg": "val"}
    assert lookup_split(m, "x/a.jpg") == "train" and lookup_split(m, "y/b.jpg") == "val"
    assert lookup_split(m, "zzz.jpg") is None
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"a.jpg": "holdout-ish"}))
    with pytest.raises(ValueError, match="unknown split 'holdout-ish'"):
        read_split_file(bad)


def test_small_sets_get_every_requested_split():
    cfg = SplitConfig(train=0.2, val=0.2, test=0.6)
    for offset in range(0, 400, 10):  # forty different sets of ten photos
        splits, _ = assign_splits([SplitItem(sha(offset + i)) for i in range(10)], cfg, 0)
        assert {"train", "val", "test"} <= set(splits), splits
    # Two photos cannot fill three splits: nothing is forced.
    splits, _ = assign_splits([SplitItem(sha(i)) for i in range(2)], cfg, 0)
    assert splits == [hash_split(sha(i), 0, cfg) for i in range(2)]
