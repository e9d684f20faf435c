"""Subprocess entry for tests: ``python _train_script.py CONFIG [key=value ...]`` -> run_training.

Also runs under ``torchrun``; ``--eval RUN_DIR --out FILE --split SPLIT [key=value ...]`` runs
``run_evaluation`` instead and (rank 0) writes the metrics as JSON to FILE.
"""

import json
import sys

from vidattn.config import load_config
from vidattn.engine.evaluate import run_evaluation
from vidattn.engine.train import run_training

if __name__ == "__main__":
    args = sys.argv[1:]
    if args[0] == "--eval":
        run_dir, out, split, overrides = args[1], args[3], args[5], args[6:]
        result = run_evaluation(run_dir, split=split, overrides=overrides)
        if out and result.output_dir is not None:  # rank 0 only
            with open(out, "w") as fh:
                json.dump(result.metrics, fh)
    else:
        run_training(load_config(args[0], args[1:]))
