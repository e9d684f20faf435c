"""Does the attention fall on the actor? Share of the spatial attention mass inside the actor's box,
against the box's share of the frame (SynthActions records the actor's box in every frame).

``ratio = mass_in_box / box_area_fraction``: 1 for attention spread evenly (or blind to the actor), above 1
when the model looks at the actor more than at the rest of the frame.

Geometry: the model sees a resized, centre-cropped clip, and its maps live on that crop. Rather than
re-deriving the transform's arithmetic for boxes, :func:`synth_attention_in_box` paints each box as a
mask image on the original frame (pixels weighted by how much of them the box covers) and sends the masks
through the *same* resize and crop as the clip; the maps are upsampled to the crop
(:func:`vidattn.analysis.visualize.aggregate_maps`). Both then share one pixel grid, whatever the
transform, and a box partly cut off by the crop counts only inside the crop. "The frame" is the crop the
model sees.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from vidattn.analysis.visualize import frame_attention
from vidattn.data.transforms import ClipTransform
from vidattn.predict import InputSpec, input_spec, load_clip, load_model, run_data_config

logger = logging.getLogger(__name__)

__all__ = ["box_masks", "transform_box_masks", "attention_in_mask", "attention_in_box", "synth_attention_in_box"]


def box_masks(boxes: np.ndarray, height: int, width: int) -> np.ndarray:
    """Boxes ``(T, 4+)`` (pixels x0, y0, x1, y1, exclusive ends, fractions allowed) as ``(T, H, W)`` masks:
    each pixel ``[j, j+1) x [i, i+1)`` weighted by the fraction of it the box covers."""
    boxes = np.asarray(boxes, dtype=np.float64)[:, :4]
    x0, y0, x1, y1 = (boxes[:, k, None] for k in range(4))
    cols, rows = np.arange(width)[None], np.arange(height)[None]
    wx = np.clip(np.minimum(x1, cols + 1) - np.maximum(x0, cols), 0.0, 1.0)  # (T, W)
    wy = np.clip(np.minimum(y1, rows + 1) - np.maximum(y0, rows), 0.0, 1.0)  # (T, H)
    return wy[:, :, None] * wx[:, None, :]


def _frame_stats(maps: np.ndarray, masks: np.ndarray, subtract_min: bool) -> tuple[np.ndarray, np.ndarray]:
    maps = np.asarray(maps, dtype=np.float64)
    masks = np.asarray(masks, dtype=np.float64)
    if maps.shape != masks.shape or maps.ndim != 3:
        raise ValueError(f"maps {maps.shape} and masks {masks.shape} must both be (T, H, W)")
    if subtract_min:
        maps = maps - maps.min(axis=(1, 2), keepdims=True)
    total = maps.sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        mass = np.where(total > 0, (maps * masks).sum(axis=(1, 2)) / total, np.nan)
    return mass, masks.mean(axis=(1, 2))


def _summary(mass: np.ndarray, area: np.ndarray) -> dict[str, float]:
    valid = ~np.isnan(mass)
    if not valid.any():
        nan = float("nan")
        return {"mass_in_box": nan, "box_area_fraction": nan, "ratio": nan, "num_frames": 0}
    m, a = float(mass[valid].mean()), float(area[valid].mean())
    return {"mass_in_box": m, "box_area_fraction": a, "ratio": m / a if a > 0 else float("nan"),
            "num_frames": int(valid.sum())}


def attention_in_mask(maps: np.ndarray, masks: np.ndarray, subtract_min: bool = False) -> dict[str, float]:
    """Like :func:`attention_in_box` with the boxes already drawn as ``(T, H, W)`` masks in [0, 1]."""
    return _summary(*_frame_stats(maps, masks, subtract_min))


def attention_in_box(maps: np.ndarray | torch.Tensor, boxes: np.ndarray, subtract_min: bool = False
                     ) -> dict[str, float]:
    """Share of the attention mass inside the actor's box, averaged over frames.

    ``maps``: ``(T, H, W)`` non-negative, on the pixel grid of the boxes (upsampled to the frame size);
    ``boxes``: ``(T, 4)`` (or ``(T, 5)``, the opacity column ignored) pixel x0, y0, x1, y1, ends exclusive.
    Returns ``{"mass_in_box", "box_area_fraction", "ratio", "num_frames"}``: the mean over frames of each
    frame's mass share and of its box's share of the frame, and ``ratio`` = the first over the second
    (1 = no preference for the box). Frames whose map sums to zero are left out. ``subtract_min``:
    measure the mass above each frame's minimum (sigmoid masks rarely go below ~0.5, which pulls the raw
    ratio towards 1).
    """
    maps = maps.detach().cpu().numpy() if isinstance(maps, torch.Tensor) else np.asarray(maps)
    if maps.ndim != 3:
        raise ValueError(f"maps must be (T, H, W), got shape {maps.shape}")
    boxes = np.asarray(boxes)
    if boxes.ndim != 2 or boxes.shape[0] != maps.shape[0] or boxes.shape[1] < 4:
        raise ValueError(f"boxes must be (T, 4) with T = {maps.shape[0]}, got shape {boxes.shape}")
    return attention_in_mask(maps, box_masks(boxes, *maps.shape[1:]), subtract_min)


def transform_box_masks(spec: InputSpec, boxes: np.ndarray, height: int, width: int) -> np.ndarray:
    """``(T, h, w)`` masks of boxes on ``height`` x ``width`` frames, painted on the frames and then resized
    and cropped exactly as ``spec`` transforms the clip (the pixel grid of the model's maps)."""
    painted = np.round(box_masks(boxes, height, width) * 255).astype(np.uint8)
    geometry = ClipTransform(ops=spec.transform().ops, mean=(0.0, 0.0, 0.0), std=(1 / 255,) * 3)
    out, _ = geometry(np.repeat(painted[..., None], 3, axis=-1))  # float (3, T, h, w) in 0..255
    return (out[0] / 255.0).numpy()


@torch.no_grad()
def synth_attention_in_box(
    model_or_weights: nn.Module | str | os.PathLike,
    root: str | os.PathLike,
    split: str = "test",
    *,
    size: int | None = None,
    stages: int | Sequence[str] = 1,
    max_videos: int | None = None,
    min_opacity: float = 0.5,
    device: str | torch.device = "cpu",
) -> dict[str, Any]:
    """How much of a model's spatial attention falls inside the actor's box on a SynthActions split.

    Each video is run as at test time (the model's test clip, :func:`vidattn.predict.input_spec`; without a
    run ``config.yaml`` nor ``size``, SynthActions' own test geometry: frames resized to ``size`` x ``size``
    of the dataset, no crop). Frames where the actor is mostly invisible (``opacity < min_opacity``:
    fade in/out) are left out. Returns frame-weighted means over the split: ``mass_in_box``,
    ``box_area_fraction``, ``ratio``, the same three above each frame's minimum (``*_above_min``), and
    ``num_videos``, ``num_frames``, ``blocks``.
    """
    from vidattn.data import SynthActions

    model, weights = load_model(model_or_weights, device)
    dataset = SynthActions(root, split)
    if size is None and not run_data_config(weights):
        side = int(dataset.config["size"])
        spec = input_spec(model, weights, size=side, resize=(side, side))
    else:
        spec = input_spec(model, weights, size=size)
    records = dataset.records[:max_videos] if max_videos is not None else dataset.records
    raw: list[tuple[np.ndarray, np.ndarray]] = []
    floor: list[tuple[np.ndarray, np.ndarray]] = []
    blocks: list[str] = []
    for record in records:
        clip, frames, indices = load_clip(record.path, spec)
        boxes = dataset.boxes(record.video_id)[indices]
        keep = boxes[:, 4] >= min_opacity
        if not keep.any():
            continue
        result = frame_attention(model, clip, stages)
        blocks = result.blocks
        masks = transform_box_masks(spec, boxes, *frames.shape[1:3])
        raw.append(_frame_stats(result.maps[keep], masks[keep], False))
        floor.append(_frame_stats(result.maps[keep], masks[keep], True))
    if not raw:
        raise ValueError(f"{root}: no frames with a visible actor in split {split!r}")
    out: dict[str, Any] = dict(_summary(*map(np.concatenate, zip(*raw))))
    above = _summary(*map(np.concatenate, zip(*floor)))
    out.update({f"{k}_above_min": v for k, v in above.items() if k != "num_frames"})
    out.update({"num_videos": len(raw), "blocks": blocks, "split": split, "input_size": spec.size})
    logger.info("%s %s: %.1f%% of the attention in the actor's box, which covers %.1f%% of the frame (%.2fx)",
                root, split, 100 * out["mass_in_box"], 100 * out["box_area_fraction"], out["ratio"])
    return out
