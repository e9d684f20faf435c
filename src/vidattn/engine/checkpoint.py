"""Run-directory checkpoints: atomic writes, bit-for-bit resume, safetensors weight export.

A run directory holds

- ``checkpoint.pt``: the training state after the last finished epoch (model, optimizer, grad scaler,
  epoch, optimizer step, best metric, RNG states of Python/NumPy/torch). Only tensors and primitive
  containers are stored, so it loads with ``torch.load(weights_only=True)`` and never unpickles code.
- ``model_last.safetensors`` / ``model_best.safetensors``: weights with the model's ``vidattn_config``
  in the metadata (rebuildable with ``vidattn.models.build_from_weights``).
- ``config.yaml``, ``run.json``, ``metrics.csv``, ``curves.png`` (see ``engine/run_log.py``).

Every write goes to a temporary file in the same directory followed by ``os.replace``: a run killed
at any moment leaves either the old or the new file, never a torn one. A model with non-finite
parameters is never written over a good checkpoint.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import random
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from vidattn.models.compat import chmod_like_open, find_weights, save_weights, weights_problem
from vidattn.runs import BEST_WEIGHTS, CHECKPOINT, CONFIG_FILE, LAST_WEIGHTS

__all__ = [
    "CHECKPOINT",
    "LAST_WEIGHTS",
    "BEST_WEIGHTS",
    "CONFIG_FILE",
    "atomic_write",
    "atomic_write_text",
    "DiskFullError",
    "remove_orphan_temporaries",
    "unwrap",
    "all_finite",
    "capture_rng_state",
    "restore_rng_state",
    "save_training_state",
    "load_training_state",
    "export_weights",
    "find_weights",
    "weights_problem",
]

logger = logging.getLogger(__name__)

# the run-directory layout lives in vidattn.runs (below every layer); re-exported here


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` then atomically move the temporary file onto ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        write(tmp_path)
        chmod_like_open(tmp_path)  # run files are 0644 (with the usual umask), not mkstemp's 0600
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
    except OSError as err:
        if err.errno in (errno.ENOSPC, errno.EDQUOT):
            tmp_path.unlink(missing_ok=True)
            free = shutil.disk_usage(path.parent).free
            raise DiskFullError(err.errno, f"disk full writing {path.name} ({free / 2**20:.1f} MiB free in "
                                f"{path.parent}); the previous file is intact: free space, then resume",
                                str(path)) from None
        raise
    finally:
        tmp_path.unlink(missing_ok=True)
    return path


# ``.{name}.{8 random chars}.tmp[suffix]``: the temporary files of atomic_write and save_weights
_TEMPORARY = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp(\.[A-Za-z0-9]+)?$")


def remove_orphan_temporaries(folder: str | Path) -> list[Path]:
    """Delete the temporary files a killed write left in ``folder`` (not recursive); returns them.

    Call only when no other process writes into ``folder`` (a run's start or resume, on rank 0)."""
    removed = []
    for p in Path(folder).glob(".*"):
        if p.is_file() and _TEMPORARY.match(p.name):
            p.unlink(missing_ok=True)
            removed.append(p)
    if removed:
        logger.info("%s: removed %d temporary files of an interrupted write", folder, len(removed))
    return removed


class DiskFullError(OSError):
    """No space left (or quota exceeded) while writing a run file; the previous version is intact."""

    def __str__(self) -> str:
        return f"{self.filename}: {self.strerror}"


def _torch_save(obj: Any, path: Path) -> None:
    """``torch.save`` through a Python file object: a full disk is an ``OSError(ENOSPC)``, not torch's
    ``unexpected pos`` RuntimeError."""
    with open(path, "wb") as fh:
        torch.save(obj, fh)


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Atomically write a text file."""
    return atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))


def unwrap(model: nn.Module) -> nn.Module:
    """The plain model inside DistributedDataParallel / torch.compile wrappers."""
    while True:
        if hasattr(model, "module") and isinstance(model.module, nn.Module):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


def all_finite(model: nn.Module) -> bool:
    """True if every parameter and buffer of ``model`` is finite."""
    tensors = list(model.parameters()) + list(model.buffers())
    return all(bool(torch.isfinite(t).all()) for t in tensors if t.is_floating_point())


# ----------------------------------------------------------------------------------------------------------
# RNG states as weights_only-loadable values


def capture_rng_state() -> dict[str, Any]:
    """Python, NumPy and torch (CPU + CUDA) generator states as tensors and primitive containers."""
    py_version, py_state, py_gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state: dict[str, Any] = {
        "python": [py_version, list(py_state), py_gauss],
        "numpy": [
            np_name,
            torch.from_numpy(np_keys.astype(np.int64)),
            int(np_pos),
            int(np_has_gauss),
            float(np_gauss),
        ],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`."""
    py_version, py_state, py_gauss = state["python"]
    random.setstate((py_version, tuple(py_state), py_gauss))
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = state["numpy"]
    np.random.set_state((np_name, np_keys.numpy().astype(np.uint32), np_pos, np_has_gauss, np_gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ----------------------------------------------------------------------------------------------------------
# training state


def save_training_state(
    path: str | Path,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    epoch: int,
    step: int,
    best: dict[str, Any] | None = None,
    scaler: torch.amp.GradScaler | None = None,
    config: dict[str, Any] | None = None,
    history: list[dict[str, float]] | None = None,
    rng_per_rank: list[dict[str, Any]] | None = None,
) -> bool:
    """Atomically write the resumable state after ``epoch`` epochs (1-based count of finished epochs).

    ``rng_per_rank``: every process's :func:`capture_rng_state` (gathered under DDP), stored as ``rng``.
    Returns False (and keeps the previous file) if the model has non-finite values.
    """
    model = unwrap(model)
    if not all_finite(model):
        logger.error("model has non-finite parameters: keeping the previous checkpoint %s", path)
        return False
    state = {
        "format": "vidattn-train-state/1",
        "epoch": int(epoch),
        "step": int(step),
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None and scaler.is_enabled() else None,
        "best": best or {},
        # per-epoch metric rows: metrics.csv is rebuilt from them on resume
        "history": [dict(r) for r in history or []],
        # one RNG state per process (DDP ranks draw different dropout masks); default: this process's
        "rng": rng_per_rank if rng_per_rank is not None else [capture_rng_state()],
        # the config travels as JSON text so that any value type survives weights_only loading
        "config_json": json.dumps(config) if config is not None else None,
    }
    atomic_write(path, lambda p: _torch_save(state, p))
    return True


def load_training_state(path: str | Path) -> dict[str, Any]:
    """Load a ``checkpoint.pt`` safely (``weights_only=True``); ``config`` is decoded back to a dict."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no training checkpoint here (expected a run dir's {CHECKPOINT})")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for torn / foreign files
        raise ValueError(f"{path}: not a readable vidattn training checkpoint ({type(err).__name__})") from err
    if not isinstance(state, dict) or state.get("format") != "vidattn-train-state/1":
        raise ValueError(f"{path}: not a vidattn training checkpoint (missing format tag)")
    config_json = state.pop("config_json", None)
    state["config"] = json.loads(config_json) if config_json else None
    return state


def export_weights(model: nn.Module, path: str | Path) -> Path | None:
    """Atomically write the model's weights as safetensors (with its ``vidattn_config``), if finite."""
    model = unwrap(model)
    if not all_finite(model):
        logger.error("model has non-finite parameters: not exporting %s", path)
        return None
    return atomic_write(path, lambda p: save_weights(model, p))
