"""The run-directory layout: the names of the files a training run writes (`find_weights`, which picks a
readable weights file of a run, lives beside `load_weights` in `vidattn.models.compat`).

A run directory (written by `vidattn.engine.train`) holds `config.yaml` (resolved config),
`checkpoint.pt` (the training state, the commit point), `model_best.safetensors` /
`model_last.safetensors` (weights with their `vidattn_config`), `classes.txt`, `metrics.csv`,
`curves.png` and `run.json`. `vidattn test`, `predict`, `visualize` and `load_predictor` take the
directory. This module imports nothing of vidattn, so every layer may use it.
"""

from __future__ import annotations

CHECKPOINT = "checkpoint.pt"
LAST_WEIGHTS = "model_last.safetensors"
BEST_WEIGHTS = "model_best.safetensors"
CONFIG_FILE = "config.yaml"

__all__ = ["BEST_WEIGHTS", "CHECKPOINT", "CONFIG_FILE", "LAST_WEIGHTS"]
