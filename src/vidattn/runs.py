"""The run-directory layout: the names of the files a training run writes, and `find_weights`.

A run directory (written by `vidattn.engine.train`) holds `config.yaml` (resolved config),
`checkpoint.pt` (the training state, the commit point), `model_best.safetensors` /
`model_last.safetensors` (weights with their `vidattn_config`), `classes.txt`, `metrics.csv`,
`curves.png` and `run.json`. `vidattn test`, `predict`, `visualize` and `load_predictor` take the
directory. This module imports nothing of vidattn, so every layer may use it.
"""

from __future__ import annotations

from pathlib import Path

CHECKPOINT = "checkpoint.pt"
LAST_WEIGHTS = "model_last.safetensors"
BEST_WEIGHTS = "model_best.safetensors"
CONFIG_FILE = "config.yaml"

__all__ = ["BEST_WEIGHTS", "CHECKPOINT", "CONFIG_FILE", "LAST_WEIGHTS", "find_weights"]


def find_weights(run_or_file: str | Path, prefer: str = "best") -> Path:
    """Weights file of a run directory (``model_best`` then ``model_last``), or the file itself."""
    p = Path(run_or_file)
    if p.is_file():
        return p
    if not p.is_dir():
        raise FileNotFoundError(f"{p}: no such run directory or weights file")
    order = [BEST_WEIGHTS, LAST_WEIGHTS] if prefer == "best" else [LAST_WEIGHTS, BEST_WEIGHTS]
    for name in order:
        if (p / name).is_file():
            return p / name
    raise FileNotFoundError(f"{p}: run directory has neither {BEST_WEIGHTS} nor {LAST_WEIGHTS}")
