"""The GPU check of issue 16: every CUDA case of bench/gan.py that decides a target, in priority
order, each in its own process with a timeout, inside a global time budget (default 450 s, compiles
included). A case that fails is recorded with its error and the others still run; when the budget
runs out the remaining cases are listed as not run. Ends with one line per target: met / not met /
not run.

    bash bench/gpu_check.sh                 # on a CUDA host: bench/results/gan_cuda.json (+ $OUT/)
    bash bench/gpu_check.sh --cpu-smoke     # the same code paths at toy sizes on this CPU
                                            # (CUDA graphs run uncaptured, torch.compile via aot_eager)

Needs torch, numpy, OpenCV and safetensors only. The compile cases share one fresh Inductor cache
directory: the first pays the full compile, the second (a fresh process, same shapes) shows what a
repeated or resumed run pays.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent


def _load_gan_bench():
    spec = importlib.util.spec_from_file_location("gan_bench", BENCH / "gan.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def plan(smoke: bool) -> list[dict]:
    """(case, min_s: skip unless this much budget is left, timeout_s). Order = priority."""
    dev = "cpu" if smoke else "cuda"
    threads = 2 if smoke else 8
    size, ngf, blocks = (32, 8, 2) if smoke else (256, 64, 9)
    n_tr = 64 if smoke else 2048
    batch_tr = 16 if smoke else 128
    photo = (512, 384) if smoke else (4096, 3072)
    tile, tile_batch = (128, 4) if smoke else (512, 8)
    iters = 3 if smoke else 20
    backend = "aot_eager" if smoke else None  # inductor's C++ codegen takes minutes on 2 CPU cores

    def train(name, variant, batch, warmup=5, **kw):
        c = {"kind": "train", "name": name, "device": dev, "threads": threads, "size": size, "ngf": ngf,
             "blocks": blocks, "variant": variant, "batch": batch, "warmup": warmup, "iters": iters,
             "blocks_of_iters": 2 if smoke else 3, **kw}
        if "compile" in variant and backend:
            c["compile_backend"] = backend
        return c

    def translate(name, n, batch, h, w, tile_, **kw):
        c = {"kind": "translate", "name": name, "device": dev, "threads": threads, "size": 0 if n == 1 else size,
             "ngf": ngf, "blocks": blocks, "precision": "bf16", "batch": batch, "h": h, "w": w, "tile": tile_,
             "n": n, "device_io": True, **kw}
        if kw.get("compile") and backend:
            c["compile_backend"] = backend
        return c

    check = {"kind": "check", "name": "check: captured step == eager step; uint8 device path == host path",
             "device": dev, "threads": threads, "size": 32 if smoke else 64, "ngf": 8 if smoke else 16,
             "blocks": 2 if smoke else 3, "steps": 6}
    env = {"kind": "env", "name": "environment and bf16 matmul rate", "device": dev, "threads": threads}
    big = dict(timed_calls=3)
    plan_ = [
        (env, 10, 60),
        (check, 20, 120),
        (train("train b1: bf16 + CUDA graph", "bf16_graph", 1), 20, 120),
        (train("train b8: bf16 + CUDA graph", "bf16_graph", 8), 20, 120),
        (translate("translate 256²: uint8 device path, bf16", n_tr, batch_tr, size, size, max(size, 512)), 15, 90),
        (translate("tiled photo: uint8 device path, bf16", 1, tile_batch, photo[1], photo[0], tile, **big), 15, 90),
        (train("train b1: bf16 + compile + CUDA graph (cold cache)", "bf16_compile_graph", 1, cache="cold"),
         90, 300),
        (train("train b1: bf16 + compile + CUDA graph (cached, fresh process)", "bf16_compile_graph", 1,
               cache="warm"), 30, 180),
        (train("train b8: bf16 + compile + CUDA graph", "bf16_compile_graph", 8, cache="shared"), 60, 240),
        (translate("translate 256²: uint8 device path, bf16, compiled", n_tr, batch_tr, size, size,
                   max(size, 512), compile=True), 40, 180),
        (translate("tiled photo: uint8 device path, bf16, compiled", 1, tile_batch, photo[1], photo[0], tile,
                   compile=True, **big), 40, 180),
        (dict(check, name="check: compiled + captured step == eager step", compile=True,
              **({"compile_backend": backend} if backend else {})), 40, 150),
        (train("train b1: bf16 eager (baseline)", "bf16", 1), 15, 90),
        (train("train b8: bf16 eager (baseline)", "bf16", 8), 15, 90),
        (translate("translate 256²: host path (before this issue), bf16", n_tr // 2, 64 if not smoke else 8, size,
                   size, max(size, 512), device_io=False), 15, 90),
        (train("train b1: bf16 + compile, no graph", "bf16_compile", 1, cache="shared"), 30, 150),
        # the other translators' eager step at the same size (gan.model cut / fastcut), last in priority
        (train("train b8: CUT bf16 eager", "bf16_cut", 8), 15, 90),
        (train("train b8: FastCUT bf16 eager", "bf16_fastcut", 8), 15, 90),
    ]
    return plan_


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cpu-smoke", action="store_true", help="toy sizes on the CPU, same code paths")
    ap.add_argument("--budget", type=float, default=None, help="seconds for all cases (default 450; smoke 900)")
    ap.add_argument("--out", type=Path, default=None,
                    help="default bench/results/gan_cuda.json (smoke: bench/results/gan_cpu_smoke.json)")
    args = ap.parse_args()
    smoke = args.cpu_smoke
    budget = args.budget or (900.0 if smoke else 450.0)
    out_path = args.out or (BENCH / "results" / ("gan_cpu_smoke.json" if smoke else "gan_cuda.json"))
    gan = _load_gan_bench()
    cache_dir = Path(tempfile.mkdtemp(prefix="metalize-inductor-"))  # fresh: the first compile is cold
    t0 = time.perf_counter()
    results: list[dict] = []
    print(f"gpu_check: {'CPU smoke run' if smoke else 'CUDA'}; budget {budget:.0f} s; inductor cache {cache_dir}",
          flush=True)
    try:
        for case, min_s, timeout in plan(smoke):
            left = budget - (time.perf_counter() - t0)
            name = case["name"]
            if left < min_s:
                results.append({**case, "error": "not run: time budget spent", "skipped": True})
                print(f"  SKIP  {name}: {left:.0f} s left of the budget, needs about {min_s} s", flush=True)
                continue
            env = {"TORCHINDUCTOR_CACHE_DIR": str(cache_dir)}
            r = gan.spawn(case, timeout=min(timeout, left), env=env)
            results.append(r)
            print(f"  {'FAIL' if 'error' in r else 'ok  '}  {name}: {describe(r)}", flush=True)
            write(out_path, gan, results, t0, budget, smoke)
    finally:
        shutil.rmtree(cache_dir, ignore_errors=True)
    report = write(out_path, gan, results, t0, budget, smoke)
    print(f"\nwrote {out_path} ({time.perf_counter() - t0:.0f} s)", flush=True)
    if os.environ.get("OUT") and not smoke:
        dst = Path(os.environ["OUT"]) / "gan_cuda.json"
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(out_path, dst)
        print(f"copied to {dst}", flush=True)
    print("\ntargets (issue 16):")
    for line in target_lines(report, smoke):
        print("  " + line)
    return 0


def describe(r: dict) -> str:
    if "error" in r:
        tail = (r.get("stderr_tail") or "").strip().splitlines()[-3:]
        return r["error"] + ("" if not tail else "  | " + " | ".join(tail))
    k = r["kind"]
    if k == "env":
        return (f"{r.get('gpu', 'no GPU')}, torch {r['torch']}, triton {r.get('triton')}, "
                f"bf16 matmul {r.get('bf16_matmul_tflops', float('nan')):.0f} TFLOP/s")
    if k == "check":
        t = {p: r[f"train_{p}"] for p in ("fp32", "bf16") if f"train_{p}" in r}
        text = "; ".join(f"{p} {v['mode']} (captured {v['captured']}"
                         + (f", capture failed: {v['capture_error']}" if v.get("capture_error") else "")
                         + f"): loss rel diff {v['max_rel_loss_diff']:.2e}, weight diff "
                         f"{v['max_abs_weight_diff']:.2e}, lr equal {v['lr_equal']}" for p, v in t.items())
        if "translate_uint8" in r:
            text += f"; uint8 path max diff {r['translate_uint8']['max_grey_level_diff']} grey levels"
        return text + f" -> {'OK' if r['ok'] else 'MISMATCH'}"
    if k == "train":
        first = ", ".join(f"{s:.2f}" for s in r["first_steps_s"][:5])
        return (f"{r['pairs_per_s']:.1f} pairs/s ({r['s_per_iter'] * 1000:.1f} ms/step, {r['tflops']:.0f} TFLOP/s), "
                f"first steps {first} s, peak {r['peak_mb']:.0f} MB, captured {r.get('captured')}"
                + (f" (capture failed: {r['capture_error']})" if r.get("capture_error") else ""))
    return (f"{r['img_per_s']:.1f} img/s ({r['seconds']:.3f} s for {r['n']}), warm-up {r['warmup_s']:.1f} s, "
            f"peak {r['peak_mb']:.0f} MB GPU / {r['rss_peak_mb']:.0f} MB RSS")


def write(out_path: Path, gan, results: list[dict], t0: float, budget: float, smoke: bool) -> dict:
    env = next((r for r in results if r.get("kind") == "env" and "error" not in r), {})
    summary = gan.summarise([r for r in results if not r.get("skipped")])
    out = {"what": "bench/gpu_check.py (issue 16)", "smoke": smoke, "host": platform.node(),
           "gpu": env.get("gpu"), "torch": env.get("torch"), "bf16_matmul_tflops": env.get("bf16_matmul_tflops"),
           "budget_s": budget, "wall_s": time.perf_counter() - t0,
           "not_run": [r["name"] for r in results if r.get("skipped")],
           "failed": [{"name": r["name"], "error": r["error"]} for r in results
                      if "error" in r and not r.get("skipped")],
           "targets": summary["targets"], "rows": summary["rows"], "raw": results}
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(out, indent=1, default=str) + "\n")
    os.replace(tmp, out_path)
    return out


def target_lines(report: dict, smoke: bool) -> list[str]:
    lines = []
    for t in report["targets"]:
        if t["target"].startswith("CPU"):
            continue  # measured by bench/gan.py on the reference CPU
        name = t["target"].replace("CUDA ", "")
        if smoke:
            state = "not run (CPU smoke run: toy sizes, no CUDA)"
        elif t["met"] is None:
            state = "not run"
        else:
            state = "met" if t["met"] else "not met"
        value = t.get("value")
        extra = ""
        if "cached_first_step_s" in t and t.get("cached_first_step_s") is not None:
            extra = f", cached {t['cached_first_step_s']:.1f} s"
        if t.get("gpu_mb") is not None:
            extra += f", {t['gpu_mb']:.0f} MB GPU"
        shown = "" if value is None else f" [{value:.3g}{extra}]"
        lines.append(f"{state:>8}: {name}{shown}")
    texts = {False: "captured step gives the eager step's losses, weights, lr and pools; uint8 device path "
                    "within 1 grey level of the host path",
             True: "compiled + captured step gives the eager step's losses and weights (bf16 tolerance)"}
    for r in report["raw"]:
        if r.get("kind") == "check":
            ok = "error" not in r and r.get("ok")
            state = "met" if ok else ("not run" if r.get("skipped") else "not met")
            lines.append(f"{state:>8}: {texts[bool(r.get('compile'))]}")
    return lines


if __name__ == "__main__":
    raise SystemExit(main())
