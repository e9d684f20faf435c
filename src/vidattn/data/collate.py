"""Batch assembly that tolerates skipped samples.

Datasets built with ``on_error="skip"`` return ``None`` for a sample whose file cannot be read.
:func:`collate_clips` drops those and reports how many in ``batch["num_skipped"]``; because the count
travels inside the batch it survives DataLoader worker processes, so the training loop can sum it per
epoch and report it at the end.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import default_collate

__all__ = ["collate_clips"]


def collate_clips(batch: list[dict[str, Any] | None]) -> dict[str, Any]:
    """Stack ``clip``/``label``/``index``, list ``video_id``, drop ``None`` samples into ``num_skipped``.

    If every sample of the batch was skipped, ``clip`` and ``label`` are ``None``.
    """
    kept = [b for b in batch if b is not None]
    out: dict[str, Any] = {"num_skipped": len(batch) - len(kept)}
    if not kept:
        out.update(clip=None, label=None, index=torch.empty(0, dtype=torch.long), video_id=[])
        return out
    out["clip"] = torch.stack([b["clip"] for b in kept])
    labels = [b["label"] for b in kept]
    out["label"] = torch.stack(labels) if isinstance(labels[0], torch.Tensor) else torch.tensor(labels)
    out["index"] = torch.tensor([b["index"] for b in kept], dtype=torch.long)
    out["video_id"] = [b["video_id"] for b in kept]
    extra = [k for k in kept[0] if k not in out]
    for key in extra:
        out[key] = default_collate([b[key] for b in kept])
    return out
