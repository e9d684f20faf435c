"""Subprocess entry for tests (also under ``torchrun``).

``python _train_script.py CONFIG [key=value ...] [--then-eval SPLIT OUT_JSON]`` runs ``run_training``,
then optionally ``run_evaluation`` of the new run directory on SPLIT (rank 0 writes the metrics JSON).
"""

import json
import sys

from vidattn.config import load_config
from vidattn.engine.distributed import cleanup_distributed, init_distributed
from vidattn.engine.evaluate import run_evaluation
from vidattn.engine.train import run_training

if __name__ == "__main__":
    args = sys.argv[1:]
    then_eval = None
    if "--then-eval" in args:
        i = args.index("--then-eval")
        then_eval, args = args[i + 1 : i + 3], args[:i]
    # one process group for both calls (each call reuses a group it did not create)
    info = init_distributed("cpu")
    result = run_training(load_config(args[0], args[1:]))
    if then_eval:
        split, out = then_eval
        ev = run_evaluation(result.run_dir, split=split, overrides=["eval.batch_size=3"])
        if ev.output_dir is not None:  # rank 0 only
            with open(out, "w") as fh:
                json.dump(ev.metrics, fh)
    cleanup_distributed(info)
