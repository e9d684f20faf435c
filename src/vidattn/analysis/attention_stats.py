"""Attention against SynthActions' ground truth: *where* (the actor's box), *when* (the frames in which
the action happens) and *what* (how channel masks vary across videos and classes).

Where. Share of the spatial attention mass inside the actor's box, against the box's share of the frame
(SynthActions records the actor's box in every frame): ``ratio = mass_in_box / box_area_fraction``, 1 for
attention spread evenly (or blind to the actor), above 1 when the model looks at the actor more than at
the rest of the frame.

Geometry: the model sees a resized, centre-cropped clip, and its maps live on that crop. Rather than
re-deriving the transform's arithmetic for boxes, :func:`synth_attention_in_box` paints each box as a
mask image on the original frame (pixels weighted by how much of them the box covers) and sends the masks
through the *same* resize and crop as the clip; the maps are upsampled to the crop
(:func:`vidattn.analysis.visualize.aggregate_maps`). Both then share one pixel grid, whatever the
transform, and a box partly cut off by the crop counts only inside the crop. "The frame" is the crop the
model sees.

When. One attention level per sampled frame, from each source: ``"channel"`` = the channel(-temporal)
mask M^c averaged over channels, ``"spatial"`` = the spatial mask M^s averaged (or max-ed) over pixels;
each block's ``(T', ...)`` masks are read at the input frames' temporal positions (linear interpolation,
as :func:`~vidattn.analysis.visualize.aggregate_maps` does in time; 2D models have ``T' = T``) and averaged
over the chosen blocks. A sampled frame (index ``i`` in the video) is *inside* when
``start <= i < end`` of the video's action window (``windows.json``). :func:`temporal_attention_in_window`:
``ratio`` = mean level inside / mean level outside (1 = no preference for the action's frames).

What. Each video's channel mask (M^c averaged over its frames, the chosen blocks' channels concatenated):
:func:`channel_mask_variation` measures how much it changes across videos and how much of that is class.

Sigmoid masks sit in a narrow band (W3 and CBAM start near 0.95), which pulls raw ratios towards 1: every
where/when figure also comes "above the minimum" (each frame's minimum pixel for where, each clip's minimum
frame level for when).
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vidattn.analysis.visualize import _stage_of, aggregate_maps, select_blocks
from vidattn.data.clips import InputSpec, load_clips
from vidattn.data.transforms import ClipTransform
from vidattn.inference import Predictor, default_spec, load_predictor, resolve_source
from vidattn.models import build_from_weights

logger = logging.getLogger(__name__)

__all__ = [
    "box_masks",
    "transform_box_masks",
    "attention_in_mask",
    "attention_in_box",
    "temporal_attention_in_window",
    "frames_in_window",
    "frame_weights",
    "channel_mask_variation",
    "read_windows",
    "synth_attention_in_box",
    "synth_attention_metrics",
    "plot_attention_metrics",
    "plot_temporal_profile",
]


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


# ---------------------------------------------------------------- when


def frames_in_window(indices: np.ndarray | Sequence[int], window: tuple[int, int]) -> np.ndarray:
    """``(T,)`` bool: which sampled frames (their indices in the video) lie in ``window = (start, end)``,
    ``start <= i < end``."""
    start, end = window
    idx = np.asarray(indices)
    return (idx >= start) & (idx < end)


def temporal_attention_in_window(frame_weights: np.ndarray | torch.Tensor, inside: np.ndarray,
                                 subtract_min: bool = False) -> dict[str, float]:
    """How much of a clip's attention falls on the frames in which the action happens.

    ``frame_weights``: ``(T,)`` non-negative attention levels, one per sampled frame (or ``(V, T)``: several
    clips, pooled); ``inside``: bool of the same shape, True for the frames in the action window. Returns
    ``{"mass_inside", "mass_outside", "inside_fraction", "ratio", "num_frames"}``: the shares of the total
    weight on inside and on outside frames, the share of frames inside, and ``ratio`` = mean weight of an
    inside frame / mean weight of an outside frame (1 = no preference for the action's frames). ``ratio``
    is NaN without frames on both sides or without weight, inf when only inside frames have weight.
    ``subtract_min``: the weights above each clip's (row's) minimum, since sigmoid masks sit in a narrow
    band that pulls the raw ratio towards 1.
    """
    w = frame_weights.detach().cpu().numpy() if isinstance(frame_weights, torch.Tensor) else frame_weights
    w = np.asarray(w, dtype=np.float64)
    inside = np.asarray(inside, dtype=bool)
    if w.shape != inside.shape or w.ndim not in (1, 2):
        raise ValueError(f"frame_weights {w.shape} and inside {inside.shape} must both be (T,) or (V, T)")
    if subtract_min and w.size:
        w = w - w.min(axis=-1, keepdims=True)
    w, inside = w.ravel(), inside.ravel()
    nan = float("nan")
    total, n_in, n_out = float(w.sum()), int(inside.sum()), int((~inside).sum())
    mass_in = float(w[inside].sum()) / total if total > 0 else nan
    mass_out = float(w[~inside].sum()) / total if total > 0 else nan
    mean_in = float(w[inside].mean()) if n_in else nan
    mean_out = float(w[~inside].mean()) if n_out else nan
    if math.isnan(mean_in) or math.isnan(mean_out):
        ratio = nan
    elif mean_out > 0:
        ratio = mean_in / mean_out
    else:
        ratio = math.inf if mean_in > 0 else nan
    return {"mass_inside": mass_in, "mass_outside": mass_out,
            "inside_fraction": n_in / w.size if w.size else nan, "ratio": ratio, "num_frames": int(w.size)}


def frame_weights(masks: Mapping[str, torch.Tensor | np.ndarray], num_frames: int, reduce: str = "mean"
                  ) -> np.ndarray:
    """One attention level per input frame from some blocks' masks, ``(num_frames,)`` float64.

    ``masks``: block -> ``(T', ...)`` mask of one clip (channel ``(T', C)``, spatial ``(T', h, w)``). Each
    is reduced over everything but time (``reduce``: ``"mean"`` or ``"max"``), read at the input frames'
    temporal positions (linear, ``align_corners=False``, as :func:`aggregate_maps`; untouched when
    ``T' = num_frames``), then averaged over the blocks.
    """
    if reduce not in ("mean", "max"):
        raise ValueError(f"reduce must be 'mean' or 'max', not {reduce!r}")
    if not masks:
        raise ValueError("no masks given")
    levels = []
    for m in masks.values():
        flat = torch.as_tensor(m).float().reshape(m.shape[0], -1)
        level = flat.mean(dim=1) if reduce == "mean" else flat.amax(dim=1)
        if level.shape[0] != num_frames:
            level = F.interpolate(level[None, None], size=num_frames, mode="linear", align_corners=False)[0, 0]
        levels.append(level)
    return torch.stack(levels).mean(dim=0).double().numpy()


def read_windows(root: str | os.PathLike) -> dict[str, tuple[int, int]] | None:
    """A SynthActions root's ``windows.json`` (``{video_id: [start, end)}``, frame indices of the video
    during which the actor performs the action), or None when the dataset has none (classic mode)."""
    path = Path(root) / "windows.json"
    if not path.is_file():
        return None
    with open(path, encoding="utf-8") as f:
        raw = json.load(f)
    return {vid: (int(w[0]), int(w[1])) for vid, w in raw.items()}


# ---------------------------------------------------------------- what


def channel_mask_variation(masks: np.ndarray | torch.Tensor, labels: np.ndarray | Sequence[int]
                           ) -> dict[str, float]:
    """How much per-video channel masks ``(V, C)`` vary, and how much of it is class (``labels`` ``(V,)``).

    Returns (all standard deviations with ``ddof=0``, averaged over channels):
    ``std_across_samples`` (each channel's std over the V videos), ``between_class_std`` (std over the
    class means, each class counted once), ``within_class_std`` (pooled: the rms deviation of each video
    from its class mean), ``class_separability`` = between / within (inf when masks depend on the class
    only, NaN when they do not vary, both up to float round-off), ``num_videos``, ``num_classes``, ``num_channels``.
    """
    x = masks.detach().cpu().numpy() if isinstance(masks, torch.Tensor) else masks
    x = np.asarray(x, dtype=np.float64)
    labels = np.asarray(labels)
    if x.ndim != 2 or labels.shape != (x.shape[0],) or not x.shape[0]:
        raise ValueError(f"masks must be (V, C) and labels (V,), got {x.shape} and {labels.shape}")
    classes, inverse = np.unique(labels, return_inverse=True)
    means = np.stack([x[inverse == k].mean(axis=0) for k in range(len(classes))])  # (K, C)
    between = float(means.std(axis=0).mean())
    within = float(np.sqrt(((x - means[inverse]) ** 2).mean(axis=0)).mean())
    tol = 1e-9 * max(1.0, float(np.abs(x).max()))  # float round-off of a mean of equal values
    if within > tol:
        separability = between / within
    else:
        separability = math.inf if between > tol else float("nan")
    return {"std_across_samples": float(x.std(axis=0).mean()), "between_class_std": between,
            "within_class_std": within, "class_separability": separability,
            "num_videos": int(x.shape[0]), "num_classes": int(len(classes)), "num_channels": int(x.shape[1])}


# ---------------------------------------------------------------- one pass over a SynthActions split


@dataclass
class _Group:
    """One set of blocks the figures are computed from (the chosen stages, or one stage), and what one
    pass over the videos collected for it."""

    spatial: list[str]
    channel: list[str]
    where_raw: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)
    where_floor: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)
    when: dict[str, list[tuple[np.ndarray, np.ndarray]]] = field(
        default_factory=lambda: {"channel": [], "spatial": []})
    what: list[np.ndarray] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)

    @property
    def blocks(self) -> list[str]:
        return self.spatial + [b for b in self.channel if b not in self.spatial]


def _block_maps(predictor: Predictor, clip: Tensor) -> dict[str, dict[str, Tensor]]:
    """Every block's masks of one clip ``(3, T, H, W)`` from one forward pass of the predictor, batch dim
    dropped: "spatial" ``(T', h, w)``, "channel" ``(T', C)``."""
    out = predictor.run(clip, return_all=True)
    return {name: {k: v[0].cpu() for k, v in m.items()} for name, m in out.attention.items()}


def _choose(names: list[str], stages: int | Sequence[str]) -> list[str]:
    if not names:
        return []
    if isinstance(stages, int):
        return select_blocks(names, stages)
    wanted = set(stages)
    return [n for n in names if n in wanted or _stage_of(n) in wanted]


def _groups(maps: Mapping[str, Mapping[str, Tensor]], stages: int | Sequence[str], by_stage: bool
            ) -> dict[str, _Group]:
    spatial = [n for n, m in maps.items() if "spatial" in m]
    channel = [n for n, m in maps.items() if "channel" in m]
    if not spatial and not channel:
        raise ValueError("the model has no attention masks (no W3, CBAM or gate module)")
    groups = {"": _Group(_choose(spatial, stages), _choose(channel, stages))}
    if not groups[""].blocks:
        raise ValueError(f"no attention blocks in {stages}; the model has {list(maps)}")
    if by_stage:
        for stage in dict.fromkeys(_stage_of(n) for n in maps):
            groups[stage] = _Group([n for n in spatial if _stage_of(n) == stage],
                                   [n for n in channel if _stage_of(n) == stage])
    return groups


def _setup(model_or_weights: nn.Module | str | os.PathLike, root: str | os.PathLike, split: str,
           spec: InputSpec | None, device: str | torch.device) -> tuple[Predictor, Any, InputSpec]:
    """The predictor (fp32), the split and the input: ``spec``, else the run's (one view), else -- a bare
    model or weights file -- the config defaults at SynthActions' own test geometry (frames resized to the
    dataset's ``size`` square, no crop)."""
    from vidattn.data import SynthActions

    dataset = SynthActions(root, split)
    model = model_or_weights
    if spec is None and not isinstance(model, nn.Module) and resolve_source(model).config is None:
        model = build_from_weights(resolve_source(model).weights)
    if spec is None and isinstance(model, nn.Module):
        side = int(dataset.config["size"])
        t = int((getattr(model, "vidattn_config", None) or {}).get("num_segments") or getattr(model, "num_segments", 8))
        spec = replace(default_spec(t), size=side, resize=(side, side))
    predictor = load_predictor(model, device, "fp32", spec=spec)
    assert predictor.spec is not None
    return predictor, dataset, predictor.spec.single_view()


def _collect(predictor: Predictor, dataset: Any, spec: InputSpec, records: Sequence[Any],
             stages: int | Sequence[str], *, min_opacity: float, where_only: bool = False,
             windows: Mapping[str, tuple[int, int]] | None = None, by_stage: bool = False,
             spatial_reduce: str = "mean") -> tuple[dict[str, _Group], list[dict[str, Any]]]:
    """The one loop over the videos: per group of blocks, the where / when / what raw material; and per
    video, the chosen blocks' frame levels. ``where_only``: skip the videos without a visible actor and
    collect nothing else."""
    groups: dict[str, _Group] | None = None
    videos: list[dict[str, Any]] = []
    for record in records:
        clips = load_clips(record.path, spec)
        clip, frames, indices = clips.clip, clips.frames, clips.indices[0]
        boxes = dataset.boxes(record.video_id)[indices]
        keep = boxes[:, 4] >= min_opacity
        if where_only and not keep.any():
            continue
        maps = _block_maps(predictor, clip)
        if groups is None:
            groups = _groups(maps, stages, by_stage)
            if where_only and not groups[""].spatial:
                model = predictor.model
                name = getattr(model, "vidattn_config", {}).get("name", type(model).__name__)
                raise ValueError(f"{name} has no spatial attention (no W3, CBAM or gate module)")
        t = clip.shape[1]
        window = windows.get(record.video_id) if windows is not None else None
        inside = frames_in_window(indices, window) if window is not None else None
        box_pixels = None
        video: dict[str, Any] = {"video_id": record.video_id, "label": int(record.label),
                                 "frame_indices": indices.tolist(),
                                 "window": list(window) if window is not None else None, "frame_weights": {}}
        for key, group in groups.items():
            if group.spatial and keep.any():
                if box_pixels is None:
                    box_pixels = transform_box_masks(spec, boxes, *frames.shape[1:3])
                agg = aggregate_maps({b: maps[b]["spatial"] for b in group.spatial}, t, tuple(clip.shape[2:]),
                                     group.spatial).numpy()
                group.where_raw.append(_frame_stats(agg[keep], box_pixels[keep], False))
                group.where_floor.append(_frame_stats(agg[keep], box_pixels[keep], True))
            if where_only:
                continue
            levels = {}
            if group.channel:
                levels["channel"] = frame_weights({b: maps[b]["channel"] for b in group.channel}, t)
            if group.spatial:
                levels["spatial"] = frame_weights({b: maps[b]["spatial"] for b in group.spatial}, t, spatial_reduce)
            if inside is not None:
                for source, level in levels.items():
                    group.when[source].append((level, inside))
            if group.channel:  # M^c averaged over the frames, the blocks' channels side by side
                group.what.append(np.concatenate([maps[b]["channel"].mean(dim=0).numpy() for b in group.channel]))
                group.labels.append(int(record.label))
            if key == "":
                video["frame_weights"] = {k: v.tolist() for k, v in levels.items()}
        videos.append(video)
    return groups or {}, videos


def _where_summary(group: _Group) -> dict[str, Any]:
    out: dict[str, Any] = dict(_summary(*map(np.concatenate, zip(*group.where_raw))))
    above = _summary(*map(np.concatenate, zip(*group.where_floor)))
    out.update({f"{k}_above_min": v for k, v in above.items() if k != "num_frames"})
    out["num_videos"] = len(group.where_raw)
    return out


def _when_summary(pairs: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, Any]:
    """Frames of all clips pooled; "above min" subtracts each clip's own minimum first."""
    inside = np.concatenate([p[1] for p in pairs])
    out: dict[str, Any] = temporal_attention_in_window(np.concatenate([p[0] for p in pairs]), inside)
    above = temporal_attention_in_window(np.concatenate([p[0] - p[0].min() for p in pairs]), inside)
    out.update({f"{k}_above_min": v for k, v in above.items() if k in ("mass_inside", "mass_outside", "ratio")})
    out["num_videos"] = len(pairs)
    return out


def _group_summary(group: _Group) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if group.where_raw:
        out["where"] = _where_summary(group)
    when = {source: _when_summary(pairs) for source, pairs in group.when.items() if pairs}
    if when:
        out["when"] = when
    if group.what:
        out["what"] = channel_mask_variation(np.stack(group.what), group.labels)
    out["blocks"] = group.blocks
    return out


@torch.no_grad()
def synth_attention_in_box(
    model_or_weights: nn.Module | str | os.PathLike,
    root: str | os.PathLike,
    split: str = "test",
    *,
    spec: InputSpec | None = None,
    stages: int | Sequence[str] = 1,
    max_videos: int | None = None,
    min_opacity: float = 0.5,
    device: str | torch.device = "cpu",
) -> dict[str, Any]:
    """How much of a model's spatial attention falls inside the actor's box on a SynthActions split.

    Each video is run as at test time (one view of the model's input spec, through its
    :class:`vidattn.inference.Predictor` in fp32; without ``spec`` nor a run ``config.yaml``,
    SynthActions' own test geometry: frames resized to the dataset's ``size`` square, no crop). Frames
    where the actor is mostly invisible (``opacity < min_opacity``: fade in/out) are left out. Returns
    frame-weighted means over the split: ``mass_in_box``, ``box_area_fraction``, ``ratio``, the same three
    above each frame's minimum (``*_above_min``), and
    ``num_videos``, ``num_frames``, ``blocks``. (:func:`synth_attention_metrics` adds when and what.)
    """
    predictor, dataset, spec = _setup(model_or_weights, root, split, spec, device)
    records = dataset.records[:max_videos] if max_videos is not None else dataset.records
    groups, _ = _collect(predictor, dataset, spec, records, stages, min_opacity=min_opacity, where_only=True)
    if not groups or not groups[""].where_raw:
        raise ValueError(f"{root}: no frames with a visible actor in split {split!r}")
    out = _where_summary(groups[""])
    out.update({"blocks": groups[""].spatial, "split": split, "input_size": spec.size})
    logger.info("%s %s: %.1f%% of the attention in the actor's box, which covers %.1f%% of the frame (%.2fx)",
                root, split, 100 * out["mass_in_box"], 100 * out["box_area_fraction"], out["ratio"])
    return out


@torch.no_grad()
def synth_attention_metrics(
    model_or_weights: nn.Module | str | os.PathLike,
    root: str | os.PathLike,
    split: str = "test",
    *,
    spec: InputSpec | None = None,
    stages: int | Sequence[str] = 1,
    max_videos: int | None = None,
    min_opacity: float = 0.5,
    spatial_reduce: str = "mean",
    by_stage: bool = False,
    per_video: bool = False,
    device: str | torch.device = "cpu",
) -> dict[str, Any]:
    """Where, when and what of a model's attention on a SynthActions split, from one pass over its videos
    (each run as in :func:`synth_attention_in_box`).

    Returns ``{"where", "when", "what", "num_videos", "blocks", "split", "input_size"}``:

    - ``where``: :func:`synth_attention_in_box`'s figures (``mass_in_box``, ``box_area_fraction``,
      ``ratio``, ``*_above_min``, ``num_frames``, ``num_videos``); absent without spatial masks.
    - ``when``: ``{"channel": {...}, "spatial": {...}}``, :func:`temporal_attention_in_window` over the
      frames of all videos pooled (``mass_inside``, ``mass_outside``, ``inside_fraction``, ``ratio``,
      ``num_frames``, ``mass_inside_above_min``, ``mass_outside_above_min``, ``ratio_above_min`` with each
      clip's minimum level subtracted, ``num_videos``); the frame levels as in :func:`frame_weights`, the
      spatial one reduced over pixels by ``spatial_reduce``. Absent without ``windows.json``; "spatial"
      absent without spatial masks.
    - ``what``: :func:`channel_mask_variation` of the videos' frame-averaged channel masks by class.

    Blocks: the last ``stages`` stage(s) (default 1: ``layer4``) or the named stages/blocks. ``by_stage``
    adds ``"by_stage"``: stage -> the same ``where`` / ``when`` / ``what`` / ``blocks`` for each stage
    with attention. ``per_video`` adds ``"per_video"``: per video its ``video_id``, ``label``,
    ``frame_indices``, ``window`` and ``frame_weights`` (source -> ``(T,)`` levels, for
    :func:`plot_temporal_profile`).
    """
    predictor, dataset, spec = _setup(model_or_weights, root, split, spec, device)
    records = dataset.records[:max_videos] if max_videos is not None else dataset.records
    windows = read_windows(root)
    groups, videos = _collect(predictor, dataset, spec, records, stages, min_opacity=min_opacity, windows=windows,
                              by_stage=by_stage, spatial_reduce=spatial_reduce)
    if not videos:
        raise ValueError(f"{root}: no videos in split {split!r}")
    out = _group_summary(groups[""])
    out.update({"num_videos": len(videos), "split": split, "input_size": spec.size})
    if by_stage:
        out["by_stage"] = {stage: _group_summary(g) for stage, g in groups.items() if stage}
    if per_video:
        out["per_video"] = videos
    return out


# ---------------------------------------------------------------- figures


def _finite(x: Any) -> float | None:
    return float(x) if isinstance(x, (int, float)) and math.isfinite(x) else None


def _bars(ax: Any, models: list[str], series: dict[str, list[Any]], title: str, ylabel: str,
          reference: float | None) -> None:
    width = 0.8 / max(len(series), 1)
    for j, (label, values) in enumerate(series.items()):
        xs = np.arange(len(models)) + (j - (len(series) - 1) / 2) * width
        heights = [_finite(v) for v in values]
        bars = ax.bar(xs, [h if h is not None else 0.0 for h in heights], width, label=label)
        for x, h, v in zip(xs, heights, values):
            if h is None:
                ax.text(x, 0, "inf" if v == math.inf else "n/a", ha="center", va="bottom", fontsize=7)
        ax.bar_label(bars, labels=[f"{h:.2f}" if h is not None else "" for h in heights], fontsize=7)
    if reference is not None:
        ax.axhline(reference, color="0.3", linestyle="--", linewidth=1)
    tallest = max([h for v in series.values() for h in map(_finite, v) if h is not None] + [reference or 0.0])
    ax.set_ylim(0, 1.4 * tallest if tallest > 0 else 1.0)  # room for the legend above the bars
    ax.set_xticks(np.arange(len(models)), models)
    ax.set_title(title, fontsize=10)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.legend(fontsize=7, loc="upper left", ncol=2)


def plot_attention_metrics(results_by_model: Mapping[str, Mapping[str, Any]], path: str | os.PathLike) -> Path:
    """Bar charts of :func:`synth_attention_metrics` results, one group of bars per model
    (``{"W3": results, "CBAM": results}``): where ratio (raw, above min), when ratio (channel and spatial
    sources, raw and above min), and what's class separability when any model has it. Dashed line at 1 =
    no preference. Missing figures are marked "n/a". Saves a PNG and returns its path."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    models = list(results_by_model)
    res = [results_by_model[m] for m in models]
    where = {"raw": [r.get("where", {}).get("ratio") for r in res],
             "above min": [r.get("where", {}).get("ratio_above_min") for r in res]}
    when = {f"{source}{suffix}": [r.get("when", {}).get(source, {}).get(f"ratio{key}") for r in res]
            for source in ("channel", "spatial") for key, suffix in (("", ""), ("_above_min", ", above min"))}
    panels = [(where, "where: mass in box / box area", "ratio", 1.0),
              (when, "when: mean level in window / outside", "ratio", 1.0)]
    if any("what" in r for r in res):
        panels.append(({"between / within": [r.get("what", {}).get("class_separability") for r in res]},
                       "what: channel-mask class separability", "std ratio", None))
    fig = Figure(figsize=(1.2 + len(panels) * (1.5 + 1.1 * len(models)), 3.6), dpi=100)
    FigureCanvasAgg(fig)
    for i, (series, title, ylabel, ref) in enumerate(panels):
        _bars(fig.add_subplot(1, len(panels), i + 1), models, series, title, ylabel, ref)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def plot_temporal_profile(
    frame_weights: Any,
    windows: Sequence[tuple[int, int]],
    path: str | os.PathLike,
    *,
    frame_indices: Sequence[Sequence[int]] | None = None,
    bins: Sequence[float] = tuple(np.linspace(-1.0, 2.0, 13)),
    subtract_min: bool = False,
    title: str | None = None,
) -> Path:
    """Mean attention level against the position relative to the action window, one line per series.

    ``frame_weights``: per-video levels, a ``(V, T)`` array or a list of ``(T_v,)`` arrays (e.g. a
    ``synth_attention_metrics(..., per_video=True)`` result's ``frame_weights["channel"]``), or a mapping
    name -> such levels for several series (``{"W3": ..., "CBAM": ...}``, same videos). ``windows``: each
    video's ``(start, end)``; ``frame_indices``: each video's sampled frame indices (default 0..T-1).
    A frame at index i sits at ``u = (i - start) / (end - start)``: 0..1 inside the window, < 0 before,
    >= 1 after; each video's levels are divided by its own mean (1 = the clip's average; with
    ``subtract_min``, the levels above the clip's minimum), then averaged in the ``bins`` of u (frames
    beyond the edges go to the end bins). Saves a PNG and returns its path.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    series = dict(frame_weights) if isinstance(frame_weights, Mapping) else {"attention": frame_weights}
    edges = np.asarray(bins, dtype=np.float64)
    centres = (edges[:-1] + edges[1:]) / 2
    fig = Figure(figsize=(6.0, 3.6), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.axvspan(0.0, 1.0, color="0.9", label="action window")
    ax.axhline(1.0, color="0.5", linestyle="--", linewidth=1)
    for name, per_video in series.items():
        if len(per_video) != len(windows):
            raise ValueError(f"{name}: {len(per_video)} videos of levels for {len(windows)} windows")
        sums, counts = np.zeros(len(centres)), np.zeros(len(centres))
        for v, levels in enumerate(per_video):
            levels = np.asarray(levels, dtype=np.float64)
            idx = np.arange(len(levels)) if frame_indices is None else np.asarray(frame_indices[v])
            start, end = windows[v]
            u = (idx - start) / max(end - start, 1)
            b = np.clip(np.searchsorted(edges, u, side="right") - 1, 0, len(centres) - 1)
            if subtract_min:
                levels = levels - levels.min()
            mean = levels.mean()
            if mean > 0:
                np.add.at(sums, b, levels / mean)
                np.add.at(counts, b, 1)
        with np.errstate(invalid="ignore"):
            profile = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
        ax.plot(centres, profile, marker="o", label=name)
    ax.set_xlabel("position relative to the action window (0 = start, 1 = end)", fontsize=8)
    ax.set_ylabel("level above clip min / its mean" if subtract_min else "attention level / clip mean",
                  fontsize=8)
    ax.ticklabel_format(axis="y", useOffset=False)
    ax.set_title(title or "attention over time around the action", fontsize=10)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path
