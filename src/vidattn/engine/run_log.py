"""What a run writes besides checkpoints: ``metrics.csv``, ``curves.png``, ``run.json``, TensorBoard.

``curves.png`` follows the UCF-101 paper's Figure 3: one row per split (train, val, test), with the
loss and the top-1 accuracy per epoch side by side. Only rank 0 writes.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import platform
import sys
from pathlib import Path
from typing import Any

import numpy
import torch

import vidattn
from vidattn.engine.checkpoint import atomic_write_text

__all__ = ["MetricsLog", "read_metrics_csv", "plot_curves", "versions", "write_run_json", "TBWriter"]

logger = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")


def read_metrics_csv(path: str | Path) -> list[dict[str, float]]:
    """Rows of a ``metrics.csv`` as dicts of floats (empty cells are NaN)."""
    with open(path, newline="", encoding="utf-8") as fh:
        return [
            {k: (float(v) if v not in ("", None) else math.nan) for k, v in row.items()} for row in csv.DictReader(fh)
        ]


class MetricsLog:
    """Per-epoch rows kept in memory and rewritten atomically (columns may grow, e.g. test metrics)."""

    def __init__(self, path: str | Path, rows: list[dict[str, float]] | None = None) -> None:
        self.path = Path(path)
        self.rows: list[dict[str, float]] = list(rows or [])

    def append(self, row: dict[str, float]) -> None:
        self.rows.append(dict(row))
        columns: list[str] = []
        for r in self.rows:
            columns += [k for k in r if k not in columns]
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=columns, restval="", lineterminator="\n")
        writer.writeheader()
        for r in self.rows:
            writer.writerow({k: (f"{v:.10g}" if isinstance(v, float) else v) for k, v in r.items()})
        atomic_write_text(self.path, buf.getvalue())


def plot_curves(rows: list[dict[str, float]], path: str | Path, title: str = "") -> Path | None:
    """Loss and top-1 accuracy per epoch, one row of panels per split present (Figure 3 layout)."""
    splits = [s for s in SPLITS if any(math.isfinite(r.get(f"{s}_loss", math.nan)) for r in rows)]
    if not splits:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(splits), 2, figsize=(9, 3 * len(splits)), squeeze=False)
    for i, split in enumerate(splits):
        for j, (key, label) in enumerate([("loss", "loss"), ("top1", "top-1 accuracy (%)")]):
            pts = [(r["epoch"], r.get(f"{split}_{key}", math.nan)) for r in rows]
            pts = [(e, v) for e, v in pts if math.isfinite(v)]
            ax = axes[i][j]
            if pts:
                ax.plot(*zip(*pts), marker="o", markersize=3)
            ax.set_title(f"{split} {label}")
            ax.set_xlabel("epoch")
            ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    tmp.replace(path)
    return path


def versions() -> dict[str, str]:
    """Versions of the things that change numbers."""
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "vidattn": getattr(vidattn, "__version__", "unknown"),
        "cuda": str(torch.version.cuda),
    }


def write_run_json(path: str | Path, **fields: Any) -> Path:  # noqa: ANN401 - JSON-serialisable values
    """``run.json``: resolved config, versions, seed, final metrics, anything else given."""
    data = {"versions": versions(), **fields}
    return atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False, default=str))


class TBWriter:
    """TensorBoard scalars when ``torch.utils.tensorboard`` is importable; otherwise a no-op."""

    def __init__(self, log_dir: str | Path, enabled: bool = True) -> None:
        self._writer = None
        if not enabled:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard is an optional extra
            logger.info("tensorboard not installed: skipping TensorBoard scalars (pip install vidattn[tensorboard])")
            return
        self._writer = SummaryWriter(str(log_dir))

    def scalars(self, values: dict[str, float], step: int) -> None:
        if self._writer is None:
            return
        for key, value in values.items():
            if isinstance(value, (int, float)) and math.isfinite(value):
                self._writer.add_scalar(key.replace("_", "/", 1), value, step)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
