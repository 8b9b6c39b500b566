"""One rank of the "model finished while rank 0 waited for the lock" test (gloo, 2 processes).

usage: RANK=r WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=p \
       python ddp_decision_worker.py CONFIG OUTPUT_ROOT DATASET
Rank 1 never sees the finished manifest itself (as when the other run finishes after its check);
training is replaced by an error, so a rank that would train fails instead of hanging.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pipeline.gan.training_run as training_run
from pipeline.config import load_config
from pipeline.data.version import DatasetVersion


def main() -> None:
    config, root, dataset = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    cfg = load_config(config, [f"runtime.output_root={root}", "runtime.device=cpu"])
    if os.environ["RANK"] == "1":
        training_run._finished = lambda model_dir: None

    def must_not_train(*args, **kwargs):
        raise SystemExit(f"rank {os.environ['RANK']} started training a finished model")

    training_run._train = must_not_train
    res = training_run.train_translator(cfg, DatasetVersion.open(dataset), progress=False)
    print(json.dumps({"cached": res.cached, "model_dir": str(res.model_dir)}))


if __name__ == "__main__":
    main()
