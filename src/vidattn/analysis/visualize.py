"""Spatio-temporal attention maps of a video, drawn as the W3 paper's Fig. 3 (RGB row, then one row per
model: W3, CBAM, ... over 5 evenly sampled frames) and as an animated side-by-side GIF/MP4.

What is drawn: each attention block's spatial mask ("where", in [0, 1]; W3's M^s of eq. 6, CBAM's spatial
gate, the UCF-101 C3D model's gate averaged over channels), from one forward pass of the model's
`vidattn.inference.Predictor` on the clip it classifies (its input spec, one view: same frames, same
resize/crop as `vidattn test` and `vidattn predict`), so the overlay sits on exactly the pixels the model saw.

Aggregation (:func:`aggregate_maps`), one map per input frame:
1. keep the blocks of the last ``stages`` stage(s) that have spatial masks (default 1: ``layer4``, the
   masks closest to the classifier; ``layer3`` doubles the resolution: ``stages=2``);
2. upsample each block's ``(T', h, w)`` mask to the clip's ``(T, H, W)`` with trilinear interpolation
   (``align_corners=False``): bilinear in space, and in time each input frame reads the mask at its own
   temporal position (a 3D model that halved time maps input frames 2j and 2j+1 around mask j; 2D models
   have ``T' = T``, so time is untouched);
3. average the upsampled masks over the kept blocks.
Values are not renormalised: a row's colour scale spans that model's minimum to maximum over the whole
clip (its colour bar shows the raw mask values), so frames where a model attends less look colder ---
the "when" that W3 adds and CBAM, frame by frame, lacks.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vidattn.config import Config
from vidattn.data.clips import InputSpec
from vidattn.data.video import default_font, write_video
from vidattn.inference import Predictor, load_predictor

logger = logging.getLogger(__name__)

__all__ = [
    "attention_maps",
    "aggregate_maps",
    "frame_attention",
    "denormalize",
    "overlay",
    "GridLayout",
    "plot_attention_grid",
    "write_attention_video",
    "visualize_video",
]

PathLike = str | os.PathLike
ArrayLike = np.ndarray | Tensor


def _spatial_maps(predictor: Predictor, clip: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
    """First-head logits (B, K) and every block's spatial mask of a clip batch, from one forward pass."""
    out = predictor.run(clip, return_all=True)
    maps = {name: m["spatial"] for name, m in out.attention.items() if "spatial" in m}
    if not maps:
        name = _model_config(predictor.model).get("name", type(predictor.model).__name__)
        raise ValueError(f"{name} has no spatial attention to visualise (no W3, CBAM or gate module)")
    return out.mean_logits()[0], maps


def attention_maps(predictor: Predictor, clip: Tensor) -> dict[str, Tensor]:
    """Every block's spatial attention mask from one forward pass of the predictor (eval mode, no gradients).

    ``clip``: ``(3, T, H, W)`` (returns block name -> ``(T', h, w)``) or a batch ``(B, 3, T, H, W)``
    (-> ``(B, T', h, w)``). Names are the model's ("layer3.2"; "gate" for the C3D attention model); ``T'``
    is smaller than ``T`` after a 3D model's temporal pooling. Values in [0, 1].
    """
    single = clip.dim() == 4
    _, maps = _spatial_maps(predictor, clip)
    return {k: (v[0] if single else v).cpu() for k, v in maps.items()}


def _stage_of(block: str) -> str:
    match = re.match(r"(layer\d+)\.", block)
    return match.group(1) if match else block


def select_blocks(names: Sequence[str], stages: int | Sequence[str] = 1) -> list[str]:
    """Block names of the last ``stages`` stages (an int), or of the named stages/blocks (a sequence)."""
    order: list[str] = []
    for name in names:
        if _stage_of(name) not in order:
            order.append(_stage_of(name))
    if isinstance(stages, int):
        if stages < 1:
            raise ValueError(f"stages must be >= 1, got {stages}")
        keep = set(order[-stages:])
        return [n for n in names if _stage_of(n) in keep]
    wanted = set(stages)
    chosen = [n for n in names if n in wanted or _stage_of(n) in wanted]
    if not chosen:
        raise ValueError(f"no attention blocks in {sorted(wanted)}; the model has stages {order}")
    return chosen


def aggregate_maps(maps: Mapping[str, Tensor], num_frames: int, size: tuple[int, int],
                   stages: int | Sequence[str] = 1) -> Tensor:
    """One attention map per input frame: the mean over the chosen blocks (last ``stages`` stages by
    default) of each block's mask, trilinearly upsampled to ``(num_frames, *size)`` (module docstring).

    ``maps`` as returned by :func:`attention_maps`; returns ``(T, H, W)`` or ``(B, T, H, W)`` likewise.
    """
    blocks = select_blocks(list(maps), stages)
    single = maps[blocks[0]].dim() == 3
    total = None
    for name in blocks:
        m = maps[name].float()
        m = m.unsqueeze(0) if single else m
        up = F.interpolate(m.unsqueeze(1), size=(num_frames, *size), mode="trilinear", align_corners=False)
        total = up if total is None else total + up
    result = (total / len(blocks)).squeeze(1)
    return result[0] if single else result


def denormalize(clip: Tensor, spec: InputSpec) -> np.ndarray:
    """A normalised clip ``(3, T, H, W)`` back to uint8 frames ``(T, H, W, 3)`` (the pixels the model saw)."""
    mean = torch.tensor(spec.mean).view(3, 1, 1, 1)
    std = torch.tensor(spec.std).view(3, 1, 1, 1)
    pixels = ((clip.float().cpu() * std + mean) * 255.0).round().clamp(0, 255).to(torch.uint8)
    return pixels.permute(1, 2, 3, 0).numpy()


@dataclass
class FrameAttention:
    """One model's attention over one clip: per-frame maps and its video-level probabilities."""

    maps: np.ndarray  # (T, H, W), float32
    probs: np.ndarray  # (K,) softmax of the (first head's) logits
    blocks: list[str] = field(default_factory=list)


def frame_attention(predictor: Predictor, clip: Tensor, stages: int | Sequence[str] = 1) -> FrameAttention:
    """Per-input-frame attention maps (``aggregate_maps``) and class probabilities of a ``(3, T, H, W)`` clip."""
    logits, maps = _spatial_maps(predictor, clip)
    blocks = select_blocks(list(maps), stages)
    agg = aggregate_maps({k: maps[k][0].cpu() for k in blocks}, clip.shape[1], tuple(clip.shape[2:]), blocks)
    return FrameAttention(agg.numpy().astype(np.float32), logits[0].softmax(-1).cpu().numpy(), blocks)


def _value_range(m: np.ndarray) -> tuple[float, float]:
    lo, hi = float(m.min()), float(m.max())
    if hi - lo < 1e-6:
        lo, hi = lo - 0.5e-3, hi + 0.5e-3
    return lo, hi


def overlay(frame: np.ndarray, attention: np.ndarray, vmin: float, vmax: float, cmap: str = "jet",
            alpha: float = 0.5) -> np.ndarray:
    """uint8 ``(H, W, 3)`` frame blended with the colour-mapped ``(H, W)`` map (scaled by ``vmin..vmax``)."""
    import matplotlib

    norm = np.clip((np.asarray(attention, np.float32) - vmin) / (vmax - vmin), 0.0, 1.0)
    colours = matplotlib.colormaps[cmap](norm)[..., :3] * 255.0
    return np.clip((1 - alpha) * frame.astype(np.float32) + alpha * colours, 0, 255).astype(np.uint8)


@dataclass
class GridLayout:
    """What :func:`plot_attention_grid` drew: row names top to bottom, the columns' frame labels and the
    PNG's pixel geometry (``size`` = (width, height); each cell is ``cell_px`` square)."""

    path: Path
    rows: list[str]
    columns: list[int]
    cell_px: int
    size: tuple[int, int]
    value_ranges: dict[str, tuple[float, float]] = field(default_factory=dict)


_DPI = 100
_CELL_IN, _LEFT_IN, _RIGHT_IN, _TOP_IN, _BOTTOM_IN = 1.6, 0.55, 0.75, 0.6, 0.1


def _as_numpy(x: ArrayLike) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, Tensor) else np.asarray(x)


def plot_attention_grid(
    frames_uint8: ArrayLike,
    maps: Mapping[str, ArrayLike],
    path: PathLike,
    num_frames: int = 5,
    title: str | None = None,
    *,
    frame_labels: Sequence[int] | None = None,
    row_notes: Mapping[str, str] | None = None,
    cmap: str = "jet",
    alpha: float = 0.5,
) -> GridLayout:
    """Save a PNG in the style of the W3 paper's Fig. 3: row "RGB", then one row per model in ``maps``
    (``{"W3": (T, H, W), "CBAM": (T, H, W)}``), over ``num_frames`` evenly sampled frames of the clip,
    each map overlaid on its frame with a per-row colour bar of the raw mask values.

    ``frame_labels``: the T frames' indices in the video (column titles); ``row_notes``: a second line
    under a row's name (e.g. its top-1 prediction).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    frames = _as_numpy(frames_uint8)
    t = frames.shape[0]
    arrays = {name: _as_numpy(m).astype(np.float32) for name, m in maps.items()}
    for name, m in arrays.items():
        if m.shape != frames.shape[:3]:
            raise ValueError(f"map {name!r} has shape {m.shape}; expected (T, H, W) = {frames.shape[:3]}")
    cols = np.unique(np.floor(np.linspace(0, t - 1, min(num_frames, t)) + 0.5).astype(int))  # first, last, even
    labels = list(frame_labels) if frame_labels is not None else list(range(t))
    rows = ["RGB", *arrays]
    width = _LEFT_IN + len(cols) * _CELL_IN + _RIGHT_IN
    height = _TOP_IN + len(rows) * _CELL_IN + _BOTTOM_IN
    fig = Figure(figsize=(width, height), dpi=_DPI)
    FigureCanvasAgg(fig)
    ranges = {name: _value_range(m) for name, m in arrays.items()}
    for r, row in enumerate(rows):
        bottom = (height - _TOP_IN - (r + 1) * _CELL_IN) / height
        for c, i in enumerate(cols):
            ax = fig.add_axes(((_LEFT_IN + c * _CELL_IN) / width, bottom, 0.96 * _CELL_IN / width,
                               0.96 * _CELL_IN / height))
            ax.set_xticks([])
            ax.set_yticks([])
            if row == "RGB":
                ax.imshow(frames[i])
                ax.set_title(f"frame {labels[i]}", fontsize=9)
            else:
                ax.imshow(overlay(frames[i], arrays[row][i], *ranges[row], cmap=cmap, alpha=alpha))
            if c == 0:
                note = (row_notes or {}).get(row)
                ax.set_ylabel(row if not note else f"{row}\n{note}", fontsize=10 if not note else 8)
        if row != "RGB":
            cax = fig.add_axes(((_LEFT_IN + len(cols) * _CELL_IN + 0.08) / width, bottom + 0.06 * _CELL_IN / height,
                                0.12 / width, 0.84 * _CELL_IN / height))
            mappable = fig.colorbar(_scalar_mappable(cmap, Normalize(*ranges[row])), cax=cax)
            mappable.ax.tick_params(labelsize=7)
            mappable.set_label("mask value", fontsize=7)
    if title:
        fig.suptitle(title, fontsize=11, y=1 - 0.12 / height, va="top")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=_DPI)
    size = (round(width * _DPI), round(height * _DPI))
    return GridLayout(path, rows, [labels[i] for i in cols], round(_CELL_IN * _DPI), size, ranges)


def _scalar_mappable(cmap: str, norm: Any) -> Any:
    from matplotlib.cm import ScalarMappable

    return ScalarMappable(norm=norm, cmap=cmap)


def _panel_label(panel: np.ndarray, text: str, strip: int) -> np.ndarray:
    from PIL import Image, ImageDraw


    img = Image.new("RGB", (panel.shape[1], panel.shape[0] + strip), (20, 20, 20))
    img.paste(Image.fromarray(panel), (0, strip))
    ImageDraw.Draw(img).text((4, 2), text, font=default_font(max(10, strip - 6)), fill=(255, 255, 255))
    return np.asarray(img)


def write_attention_video(
    frames: ArrayLike,
    maps: Mapping[str, ArrayLike],
    path: PathLike,
    fps: float = 2.0,
    *,
    frame_labels: Sequence[int] | None = None,
    min_side: int = 160,
    cmap: str = "jet",
    alpha: float = 0.5,
) -> Path:
    """Animated RGB | model 1 | model 2 ... panels, one output frame per clip frame: ``.gif`` (Pillow) or
    ``.mp4`` (PyAV) by extension. Colour scales as in :func:`plot_attention_grid` (per model, whole clip)."""
    from PIL import Image

    frames = _as_numpy(frames)
    arrays = {name: _as_numpy(m).astype(np.float32) for name, m in maps.items()}
    ranges = {name: _value_range(m) for name, m in arrays.items()}
    h, w = frames.shape[1:3]
    scale = max(1.0, min_side / min(h, w))
    size = (round(w * scale), round(h * scale))
    strip = 22
    labels = list(frame_labels) if frame_labels is not None else list(range(frames.shape[0]))
    out = []
    for i, frame in enumerate(frames):
        panels = [(f"RGB  frame {labels[i]}", frame)]
        panels += [(name, overlay(frame, m[i], *ranges[name], cmap=cmap, alpha=alpha)) for name, m in arrays.items()]
        if scale != 1.0:
            panels = [(text, np.asarray(Image.fromarray(p).resize(size, Image.BILINEAR))) for text, p in panels]
        out.append(np.concatenate([_panel_label(p, text, strip) for text, p in panels], axis=1))
    return write_video(out, path, fps=fps)


def _model_config(model: nn.Module) -> dict[str, Any]:
    config = getattr(model, "vidattn_config", None)
    return config if isinstance(config, dict) else {}


def _row_name(model: nn.Module, weights: Any) -> str:  # noqa: ANN401
    name = str(_model_config(model).get("name", type(model).__name__))
    for key, label in (("w3", "W3"), ("cbam", "CBAM"), ("c3d_attention", "3D-CNN+Attention")):
        if key in name.split("_") or name == key:
            return label
    return name if isinstance(weights, nn.Module) else f"{name} ({Path(weights).stem})"


def visualize_video(
    video_path: PathLike,
    weights_path: nn.Module | PathLike,
    out_dir: PathLike,
    compare_weights: nn.Module | PathLike | None = None,
    num_frames: int = 5,
    *,
    spec: InputSpec | None = None,
    config: Config | None = None,
    overrides: Sequence[str] = (),
    stages: int | Sequence[str] = 1,
    class_names: Sequence[str] | PathLike | None = None,
    mp4: bool = False,
    fps: float = 2.0,
    device: str = "cpu",
    precision: str = "fp32",
) -> dict[str, Path]:
    """Attention figure and animation of one video for a model (and optionally a second one to compare,
    e.g. W3 vs CBAM, run on the very same clip).

    The clip is one view (first clip, centre crop) of the model's input spec, as
    :func:`vidattn.inference.load_predictor` finds it (``spec``, else ``config`` / the run's ``config.yaml``
    with ``overrides``, else the config defaults). Writes into ``out_dir``: ``attention.png`` (Fig. 3 style,
    ``num_frames`` columns), ``attention.gif`` (every clip frame), ``attention.mp4`` when ``mp4``, and
    ``attention.json`` (rows, frame indices, blocks used, value ranges, each model's top-5). Returns
    ``{"png", "gif", ["mp4",] "json"}`` -> path.
    """
    def predictor_of(source: nn.Module | PathLike, spec: InputSpec | None) -> Predictor:
        return load_predictor(source, device, precision, spec=spec, config=config, overrides=overrides,
                              class_names=class_names)

    first = predictor_of(weights_path, spec)
    assert first.spec is not None
    view = first.spec.single_view()
    clips = first.load(video_path, views=False)
    clip, indices = clips.clip, clips.indices[0]
    frames = denormalize(clip, view)
    predictors = [(first, weights_path)]
    if compare_weights is not None:
        predictors.append((predictor_of(compare_weights, view), compare_weights))
    maps: dict[str, np.ndarray] = {}
    notes: dict[str, str] = {}
    summary: dict[str, Any] = {"video": str(video_path), "frame_indices": indices.tolist(), "input": {
        "size": view.size, "resize": view.resize, "sampling": view.sampling}, "models": {}}
    for p, w in predictors:
        row = _row_name(p.model, w)
        if row in maps:
            row = f"{row} ({len(maps)})" if isinstance(w, nn.Module) else f"{row} ({Path(w).stem})"
        result = frame_attention(p, clip, stages)
        names = p.classes[0] if p.classes else [str(i) for i in range(len(result.probs))]
        order = np.argsort(-result.probs)[:5]
        top = [{"label": names[i], "probability": round(float(result.probs[i]), 4)} for i in order]
        maps[row] = result.maps
        notes[row] = f"pred: {top[0]['label']} {top[0]['probability']:.2f}"
        summary["models"][row] = {"model": _model_config(p.model).get("name"),
                                  "weights": None if isinstance(w, nn.Module) else str(w),
                                  "blocks": result.blocks, "topk": top}
    out_dir = Path(out_dir)
    title = f"{Path(video_path).name}: spatial attention, mean of {_stages_text(stages)}"
    layout = plot_attention_grid(frames, maps, out_dir / "attention.png", num_frames, title,
                                 frame_labels=indices.tolist(), row_notes=notes)
    for row, rng in layout.value_ranges.items():
        summary["models"][row]["value_range"] = [round(v, 4) for v in rng]
    written = {"png": layout.path}
    for ext in ("gif", "mp4") if mp4 else ("gif",):
        written[ext] = write_attention_video(frames, maps, out_dir / f"attention.{ext}", fps=fps,
                                             frame_labels=indices.tolist())
    summary["files"] = {k: str(v) for k, v in written.items()}
    written["json"] = out_dir / "attention.json"
    written["json"].write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    logger.info("attention of %s written to %s", video_path, out_dir)
    return written


def _stages_text(stages: int | Sequence[str]) -> str:
    if isinstance(stages, int):
        return "the last stage's blocks" if stages == 1 else f"the last {stages} stages' blocks"
    return ", ".join(stages)
