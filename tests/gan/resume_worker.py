"""Subprocess body of the resume test: train the tiny CycleGAN in WORK, optionally SIGKILL itself.

usage: python resume_worker.py DATASET_DIR WORK_DIR ITERATIONS KILL_AT(0 = never)
Writes WORK/result.json (losses history, final weight checksums) when it finishes.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from types import SimpleNamespace

import torch

from pipeline.data.version import DatasetVersion
from pipeline.gan.data import training_images
from pipeline.gan.training_loop import FitOptions, fit


def main() -> None:
    dataset, work = Path(sys.argv[1]), Path(sys.argv[2])
    iterations, kill_at = int(sys.argv[3]), int(sys.argv[4])
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True, warn_only=True)
    opt = SimpleNamespace(ngf=8, ndf=8, n_blocks=2, n_layers_d=3, gan_mode="lsgan", lambda_cycle=10.0,
                          lambda_identity=0.5, lambda_gp=10.0, pool_size=3, lr=2e-4, beta1=0.5,
                          iterations=iterations, decay_from=0.5, precision="fp32", channels_last=False,
                          compile=False)
    fopt = FitOptions(load_size=64, crop_size=48, checkpoint_every=5, log_every=2, image_every=1000)
    a, b = training_images(DatasetVersion.open(dataset))

    def die(step: int, model) -> None:
        if step == kill_at:  # between checkpoints: steps after the last one are lost
            os.kill(os.getpid(), signal.SIGKILL)

    r = fit(opt, fopt, a, b, work, seed=3, config_hash="resume-test", progress=False, callbacks=[die])
    weights = {f"{n}.{k}": float(v.double().sum()) for n in ("G_AB", "G_BA", "D_A", "D_B")
               for k, v in getattr(r.model, n).state_dict().items()}
    (work / "result.json").write_text(json.dumps({"history": r.history, "weights": weights,
                                                  "resumed_from": r.resumed_from}))


if __name__ == "__main__":
    main()
