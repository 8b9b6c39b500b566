"""A digest of everything a pipeline run wrote, with what legitimately changes between runs taken
out: the output root's path, folder names keyed by volatile content, timings, dates, code
versions, machine facts and files that embed them (ultralytics .pt, logs, label caches).

`python tests/golden/digest.py OUTPUT_ROOT > tests/golden/tiny.json` records a run;
tests/test_golden.py reruns the tiny profile and compares. Used to show that a refactor leaves
every output unchanged: the same files, and the same bytes or the same JSON where they matter.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import platform
import re
import sys
from pathlib import Path
from typing import Any

# files whose bytes hold times, hostnames, absolute paths or pickled library state
SKIP_SUFFIXES = (".pt", ".lock", ".cache", ".log", ".html")
SKIP_PARTS = {"cache", "tensorboard", "checkpoints", ".locks"}
SKIP_NAMES = {".lock", "runs.jsonl", "render.json", "model_card.md", "args.yaml"}
# JSON keys whose values are times, dates, versions, machine facts or hashes of such files
VOLATILE_KEYS = {"created", "code_version", "timings", "hardware", "files", "files_hash", "key", "id",
                 "train_seconds", "train_cpu_seconds", "train_images_per_s", "iterations_per_s",
                 "images_per_s", "quality_seconds", "seconds", "weights_sha256", "rank_checksums",
                 "elapsed", "elapsed_s", "figures", "lineage", "parents", "config_hash"}
VOLATILE_PREFIXES = ("train_seconds", "train_cpu_seconds", "train_images_per_s")  # and their _mean
VOLATILE_CSV_COLUMNS = {"time"}
# CPU features that change which kernels run, and so the last bits of float results
MATH_FLAGS = {"avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile"}
# synthetic images are named after their generator's sha256 and kept or rejected by the gate:
# on another machine their names and number change with the GAN's last bits
GATE_OPTIONAL = re.compile(r"/card/rejected(/|\.png$)")  # only written when the gate rejected some
SYNTHETIC_NAME = re.compile(r"syn-\d+-[0-9a-f]{8}-v\d+|\d{5}-syn-\d+-[0-9a-f]{8}-v\d+")


def machine() -> dict[str, str]:
    """What the floating-point results depend on: bytes are compared only on a matching machine."""
    import cv2
    import numpy
    import torch

    info = _cpuinfo()
    cpu = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")),
               platform.machine())
    flags = next((set(line.split(":", 1)[1].split()) for line in info if line.startswith("flags")), set())
    return {"cpu": cpu, "cpu_flags": " ".join(sorted(flags & MATH_FLAGS)), "torch_cpu": torch.backends.cpu.get_cpu_capability(),
            "threads": str(torch.get_num_threads()), "torch": torch.__version__, "numpy": numpy.__version__,
            "opencv": cv2.__version__, "python": platform.python_version()}


def _cpuinfo() -> list[str]:
    try:
        return Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return []


def names(root: Path) -> dict[str, str]:
    """Content-keyed folder names -> their role, longest first (a dataset id prefixes others)."""
    roles: dict[str, str] = {}
    for pattern, role in (("data/datasets/*-aug-*", "AUGMENTED"), ("models/*/*", "MODEL"),
                          ("reports/*-*", "RUN"), ("data/raw/*", "RAW"), ("data/datasets/*", "DATASET")):
        for d in sorted(root.glob(pattern)):
            if d.is_dir() and d.name not in roles:
                roles[d.name] = role
    return dict(sorted(roles.items(), key=lambda kv: -len(kv[0])))


def _text(s: str, root: Path, roles: dict[str, str]) -> str:
    s = s.replace(str(root.resolve()), "<ROOT>").replace(str(root), "<ROOT>")
    for name, role in roles.items():
        s = s.replace(name, role)
    return s


# in Markdown: hashes of files that hold times, the stage keys made from them, and timing cells
MD_VOLATILE = [(re.compile(r"\b[0-9a-f]{64}\b"), "<SHA256>"), (re.compile(r"compare-[0-9a-f]{12}"), "compare-<KEY>"),
               (re.compile(r"\b\d+\.\d+\.\d+\+g[0-9a-f]+\b"), "<CODE-VERSION>"),
               (re.compile(r"[\d.]+ s of training"), "<T> s of training"),
               (re.compile(r"^(\| [^|]+ \| )[\d.–]+ \| [\d.–]+ \|", re.M), r"\1<T> | <T> |"),
               (re.compile(r"^\| (\w+_s) \| [\d.]+ \|", re.M), r"| \1 | <T> |")]


def _clean(obj: Any, root: Path, roles: dict[str, str]) -> Any:
    if isinstance(obj, dict):
        return {_text(k, root, roles): _clean(v, root, roles) for k, v in obj.items()
                if k not in VOLATILE_KEYS and not k.startswith(VOLATILE_PREFIXES)}
    if isinstance(obj, list):
        return [_clean(v, root, roles) for v in obj]
    if isinstance(obj, str):
        return _text(obj, root, roles)
    if isinstance(obj, float):
        return round(obj, 6)  # the last bits of float sums vary with thread scheduling
    return obj


def _csv(text: str) -> str:
    rows = list(csv.reader(io.StringIO(text)))
    if not rows:
        return text
    keep = [i for i, h in enumerate(rows[0]) if h.strip() not in VOLATILE_CSV_COLUMNS]
    return "\n".join(",".join(r[i] for i in keep if i < len(r)) for r in rows)


def file_digest(p: Path, root: Path, roles: dict[str, str]) -> str:
    data = p.read_bytes()
    if p.suffix == ".json":
        try:
            data = json.dumps(_clean(json.loads(data), root, roles), sort_keys=True).encode()
        except ValueError:
            pass
    elif p.suffix == ".jsonl":
        lines = [json.dumps(_clean(json.loads(x), root, roles), sort_keys=True) for x in data.decode().splitlines() if x]
        data = "\n".join(lines).encode()
    elif p.suffix == ".csv":
        data = _csv(_text(data.decode(), root, roles)).encode()
    elif p.suffix == ".md":
        text = _text(data.decode(), root, roles)
        for pattern, repl in MD_VOLATILE:
            text = pattern.sub(repl, text)
        data = text.encode()
    elif p.suffix in (".txt", ".yaml"):
        data = _text(data.decode(), root, roles).encode()
    return hashlib.sha256(data).hexdigest()


def digest(root: str | Path) -> dict[str, str]:
    """{normalised relative path: sha256 of the normalised content} of every kept file."""
    root = Path(root)
    roles = names(root)
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if (not p.is_file() or p.suffix in SKIP_SUFFIXES or p.name in SKIP_NAMES
                or SKIP_PARTS & set(rel.parts)):
            continue
        out[_text(str(rel), root, roles)] = file_digest(p, root, roles)
    return out


def kinds(paths: list[str] | set[str]) -> set[str]:
    """The kinds of files a run wrote, with synthetic image names collapsed: what must match on
    any machine."""
    return {SYNTHETIC_NAME.sub("SYNTHETIC", p) for p in paths if not GATE_OPTIONAL.search(p)}


def record(root: str | Path) -> dict[str, Any]:
    return {"machine": machine(), "files": digest(root)}


if __name__ == "__main__":
    json.dump(record(sys.argv[1]), sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")
