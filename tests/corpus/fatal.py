"""The bad inputs that stop a command by design: broken config files, bad overrides, and ingest
setups that cannot give a dataset (a missing folder, categories that disagree, no labelled photo
left...). Each must end with a clear error: a non-zero exit, no traceback, a message naming the
file or key at fault. `classify` tells that apart from a crash, an abort that names nothing, and a
silent success; tests/corpus/test_fatal.py runs the cases in-process, bench/reliability.py runs
each as its own `metalize` process in an empty sandbox.

    cases = build_fatal(root)        # writes root/fatal/<case>/..., returns FatalCase list
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import yaml

from build_helpers import write

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "configs" / "tiny.yaml"


@dataclass(frozen=True)
class FatalCase:
    id: str
    kind: str  # config | override | ingest | run (the same, through `metalize run` and Prefect)
    what: str
    args: tuple[str, ...]  # after `metalize`
    message: str  # regex the output must match
    names: str  # the file or key the message must name
    exit_code: int  # 2: configuration, 1: the command could not do its work


def classify(case: FatalCase, exit_code: int, output: str) -> tuple[str, str]:
    """(outcome, detail): "clear fatal" as promised, else "crash" (a traceback or an unexpected
    exit status), "abort" (stopped, but the message names no file/key or says something else) or
    "silent" (exit 0: the mistake went through)."""
    text = " ".join(output.split())
    if "Traceback (most recent call last)" in output or exit_code not in (0, 1, 2):
        return "crash", text[-300:]
    if exit_code == 0:
        return "silent", "exit status 0"
    if " ".join(case.names.split()) not in text:
        return "abort", f"message does not name {case.names!r}: {text[-300:]}"
    if not re.search(case.message, text) or exit_code != case.exit_code:
        return "abort", f"exit {exit_code}, message not /{case.message}/: {text[-300:]}"
    return "clear fatal", ""


def _photo(path: Path, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    img = rng.integers(30, 200, (48, 64, 3), dtype=np.uint8)
    return write(path, cv2.imencode(".png", img)[1].tobytes())


def _coco(folder: Path, names: list[str], category: str = "gear", seed: int = 0) -> dict:
    """A COCO source: `names` photos with one box each; returns its source config."""
    for i, n in enumerate(names):
        _photo(folder / "images" / n, seed + i)
    doc = {"images": [{"id": i + 1, "file_name": n, "width": 64, "height": 48} for i, n in enumerate(names)],
           "annotations": [{"id": i + 1, "image_id": i + 1, "category_id": 1, "bbox": [4, 4, 20, 14]}
                           for i in range(len(names))],
           "categories": [{"id": 1, "name": category}]}
    write(folder / "ann.json", json.dumps(doc))
    return {"images": str(folder / "images"), "annotations": str(folder / "ann.json"), "format": "coco"}


def _config(d: Path, a: list[dict], b: list[dict], **data) -> Path:
    raw = {"profile": "fatal", "runtime": {"device": "cpu", "workers": 1, "output_root": str(d / "out")},
           "data": {"name": "fatal", "source": "folders", "a": a, "b": b, **data}}
    return write(d / "config.yaml", yaml.safe_dump(raw, sort_keys=False))


def build_fatal(root: Path) -> list[FatalCase]:
    """Write every case's files under root/fatal/ and return the cases."""
    base = Path(root) / "fatal"
    cases: list[FatalCase] = []

    def config_file(cid: str, content: str | bytes, what: str, message: str, names: str | None = None) -> None:
        path = write(base / cid / "config.yaml", content)
        cases.append(FatalCase(cid, "config", what, ("ingest", str(path)), message, names or str(path), 2))

    config_file("config-empty", "", "empty config file", r"config file is empty")
    config_file("config-blank", "  \n\n\t\n", "config file of blank lines", r"config file is empty")
    config_file("config-comments", "# my settings\n# gan:\n#   iterations: 5\n", "config file of comments only",
                r"holds no settings")
    config_file("config-null", "null\n", "config file holding null", r"holds no settings")
    config_file("config-latin1", b"data:\n  name: caf\xe9\n", "config file in Latin-1", r"not UTF-8 text")
    config_file("config-utf16", "data:\n  name: demo\n".encode("utf-16"), "config file in UTF-16", r"not UTF-8")
    config_file("config-binary", cv2.imencode(".png", np.zeros((4, 4, 3), np.uint8))[1].tobytes(),
                "a PNG given as config file", r"not UTF-8")
    config_file("config-list", "- gan\n- detect\n", "config file holding a list", r"top level must be a mapping")
    config_file("config-scalar", "demo\n", "config file holding one word", r"top level must be a mapping")
    config_file("config-duplicate", "gan:\n  ngf: 8\ndetect:\n  epochs: 1\ngan:\n  ndf: 8\n",
                "config file with the section gan twice", r"line 5, column 1: key 'gan' given twice")
    config_file("config-syntax", "gan: [unclosed\n", "config file with a YAML syntax error", r"not valid YAML")
    config_file("config-tabs", "gan:\n\tngf: 8\n", "config file indented with a tab", r"not valid YAML")
    config_file("config-deep", "a: " + "[" * 5000 + "]" * 5000 + "\n", "config nested 5,000 deep",
                r"nested too deeply")
    config_file("config-unknown-key", "gan:\n  iteratons: 5\n", "config key misspelt",
                r"unknown key 'gan.iteratons' \(did you mean 'gan.iterations'\?\)")
    config_file("config-wrong-type", "detect:\n  epochs: many\n", "config value of the wrong type",
                r"'detect.epochs'.*integer", "detect.epochs")
    config_file("config-split-sum", "data:\n  split: {train: 0.5, val: 0.5, test: 0.5}\n",
                "split fractions that do not sum to 1", r"sum to 1", "data.split")
    folder = base / "config-folder"
    folder.mkdir(parents=True, exist_ok=True)
    cases.append(FatalCase("config-folder", "config", "a folder given as config file", ("ingest", str(folder)),
                           r"is a folder, not a config file", str(folder), 2))
    missing = base / "config-missing.yaml"
    cases.append(FatalCase("config-missing", "config", "config file that does not exist",
                           ("ingest", str(missing)), r"config file not found", str(missing), 2))

    for cid, override, message, names in [
        ("override-unknown", "gan.iteratons=5", r"did you mean 'gan.iterations'", "gan.iteratons"),
        ("override-type", "gan.iterations=many", r"'gan.iterations'.*integer", "gan.iterations=many"),
        ("override-no-equals", "gan.iterations", r"expected section.key=value", "gan.iterations"),
        ("override-not-section", "data.name.x=1", r"name is not a section", "data.name.x=1"),
        ("override-negative", "runtime.workers=-1", r"greater than or equal to 0", "runtime.workers=-1"),
        ("override-no-config-typo", "runtime.output_rot=out", r"did you mean 'runtime.output_root'",
         "runtime.output_rot"),
    ]:
        args = ("ingest", override) if cid == "override-no-config-typo" else ("ingest", str(TINY), override)
        cases.append(FatalCase(cid, "override", f"override {override}", args, message, names, 2))

    def ingest_case(cid: str, what: str, a: list[dict], b: list[dict], message: str, names: str, **data) -> None:
        cfg = _config(base / cid, a, b, **data)
        cases.append(FatalCase(cid, "ingest", what, ("ingest", str(cfg)), message, names, 1))

    def ok(cid: str, part: str, names=("p0.png", "p1.png"), **kw) -> dict:
        return _coco(base / cid / part, list(names), **kw)

    d = base / "ingest-images-missing"
    ingest_case("ingest-images-missing", "source images folder that does not exist", [ok(d.name, "A")],
                [{"images": str(d / "nowhere"), "format": "none", "split": "unlabelled"}],
                r"data.b\[0\].images: folder .* not found", str(d / "nowhere"))
    d = base / "ingest-annotations-missing"
    b = ok(d.name, "B") | {"annotations": str(d / "B" / "typo.json")}
    ingest_case(d.name, "annotation file that does not exist", [ok(d.name, "A")], [b],
                r"data.b\[0\].annotations: .* not found", str(d / "B" / "typo.json"))
    d = base / "ingest-coco-folder"
    b = ok(d.name, "B") | {"annotations": str(d / "B" / "images")}
    ingest_case(d.name, "COCO annotations given as a folder", [ok(d.name, "A")], [b],
                r"is not a COCO JSON file", "data.b[0].annotations")
    d = base / "ingest-yolo-no-names"
    _photo(d / "B" / "images" / "y.png", 5)
    write(d / "B" / "labels" / "y.txt", "0 0.5 0.5 0.2 0.2\n")
    ingest_case(d.name, "YOLO labels without class names", [ok(d.name, "A")],
                [{"images": str(d / "B" / "images"), "annotations": str(d / "B" / "labels"), "format": "yolo"}],
                r"YOLO class names not found", "data.b[0].names")
    d = base / "ingest-yolo-names-missing"
    _photo(d / "B" / "images" / "y.png", 6)
    write(d / "B" / "labels" / "y.txt", "0 0.5 0.5 0.2 0.2\n")
    ingest_case(d.name, "YOLO names file that does not exist", [ok(d.name, "A")],
                [{"images": str(d / "B" / "images"), "annotations": str(d / "B" / "labels"), "format": "yolo",
                  "names": [str(d / "names.txt")]}], r"names file .* not found", str(d / "names.txt"))
    d = base / "ingest-categories-differ"
    ingest_case(d.name, "Class A and B with different categories", [ok(d.name, "A")],
                [ok(d.name, "B", category="hex_nut", seed=10)], r"Class A and Class B categories differ",
                "data.category_map")
    d = base / "ingest-category-not-listed"
    ingest_case(d.name, "a category missing from data.categories", [ok(d.name, "A")],
                [ok(d.name, "B", seed=10)], r"are not in data.categories", "data.categories",
                categories=["bracket"])
    d = base / "ingest-output-inside-input"
    cfg = _config(d, [ok(d.name, "A")], [ok(d.name, "B", seed=10)])
    raw = yaml.safe_load(cfg.read_text())
    raw["runtime"]["output_root"] = str(d / "B" / "images" / "out")
    write(cfg, yaml.safe_dump(raw, sort_keys=False))
    cases.append(FatalCase(d.name, "ingest", "output root inside an input folder", ("ingest", str(cfg)),
                           r"runtime.output_root .* is inside data.b\[0\].images", "runtime.output_root", 2))
    d = base / "ingest-no-labelled-b"
    b = _coco(d / "B", ["z0.png", "z1.png"])
    for n in ("z0.png", "z1.png"):
        (d / "B" / "images" / n).write_bytes(b"")
    ingest_case(d.name, "every labelled Class B photo broken", [ok(d.name, "A")], [b],
                r"no labelled Class B image left.*zero-byte file", str(d / "B" / "images"))
    d = base / "ingest-nothing"
    ingest_case(d.name, "folders source with no sources at all", [], [], r"data.a and data.b are both empty",
                "data.a and data.b")
    for cid, text, message in [
        ("split-file-malformed", '{"images": [', r"not valid JSON"),
        ("split-file-unknown-split", '{"p0.png": "holdout-2"}', r"unknown split 'holdout-2'"),
        ("split-file-duplicate-key", '{"p0.png": "train", "p0.png": "test"}', r"key 'p0.png' given twice"),
        ("split-file-deep", "[" * 50_000 + "]" * 50_000, r"nested 50000 deep"),
    ]:
        d = base / f"ingest-{cid}"
        split_file = write(d / "split.json", text)
        b = ok(d.name, "B", seed=10) | {"split_file": str(split_file)}
        ingest_case(d.name, f"BSData-style {cid.replace('-', ' ')}", [ok(d.name, "A")], [b],
                    rf"data.b\[0\].split_file: .*{message}", str(split_file), split={"use_source_split": True})
    # The same errors met inside the Prefect flow of `metalize run`: one line, no traceback.
    for cid in ("ingest-categories-differ", "ingest-no-labelled-b", "ingest-yolo-no-names"):
        c = next(c for c in cases if c.id == cid)
        cases.append(FatalCase("run-" + cid.removeprefix("ingest-"), "run", c.what + " (metalize run)",
                               ("run", *c.args[1:]), c.message, c.names, c.exit_code))
    return cases
