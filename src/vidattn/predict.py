"""Predict actions in video files: top-k labels and probabilities per video (the UCF-101 paper's Fig. 2),
as JSON, and videos annotated with their top-5.

One clip per video, sampled and transformed as the model was evaluated (:class:`InputSpec`):

- 2D recognizers (TSN/TSM/TAM, + W3/CBAM): TSN test sampling (segment centres), short side
  ``round(size * 256 / 224)``, centre crop ``size`` (224).
- I3D: the centre window of ``T`` frames ``stride`` apart (``stride = max(1, 64 // T)``, TSM's dense recipe).
- C3D (the UCF-101 paper): the centre 16 consecutive frames, resized to 128x171, centre crop 112.

When the weights file sits in an engine run directory (a ``config.yaml`` beside it), its ``data`` section
(crop size, resize, sampling, stride, mean/std) overrides these defaults, so a model trained at 56 px on
SynthActions is run at 56 px. Explicit arguments override both.

Class names come from an argument (a list, or a ``classes.txt`` file, one name per line), else from the
weights' metadata (a ``classes`` or ``class_names`` list in ``vidattn_config`` or its ``options``), else from
a ``classes.txt`` beside the weights, else ``"0"``, ``"1"``, ...
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from vidattn.data import VideoError, open_video
from vidattn.data.sampling import consecutive_test_indices, tsn_test_indices
from vidattn.data.transforms import IMAGENET_MEAN, IMAGENET_STD, ClipTransform, build_test_transform
from vidattn.models import build_from_weights
from vidattn.models.compat import find_weights

logger = logging.getLogger(__name__)

__all__ = [
    "InputSpec",
    "load_model",
    "input_spec",
    "run_data_config",
    "resolve_class_names",
    "load_clip",
    "predict_videos",
    "write_predictions_json",
    "annotate_video",
    "write_video",
]

PathLike = str | os.PathLike
ClassNames = Sequence[str] | Sequence[Sequence[str]] | PathLike | None


@dataclass(frozen=True)
class InputSpec:
    """How one test clip is taken from a video: which frames (``sampling``) and which geometry.

    ``sampling``: ``"tsn"`` (segment centres), ``"dense"`` (centre window of ``num_frames`` frames
    ``stride`` apart) or ``"consecutive"`` (centre window of consecutive frames). ``resize`` is what
    :func:`vidattn.data.transforms.build_test_transform` takes (short side, ``(h, w)``, ``"auto"``).
    """

    num_frames: int
    sampling: str = "tsn"
    stride: int = 1
    size: int = 224
    resize: int | tuple[int, int] | str = "auto"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def indices(self, video_frames: int) -> np.ndarray:
        """The ``(T,)`` frame indices of the test clip of a video with ``video_frames`` frames."""
        if self.sampling == "tsn":
            return tsn_test_indices(video_frames, self.num_frames)[0]
        if self.sampling == "consecutive":
            return consecutive_test_indices(video_frames, self.num_frames)[0]
        if self.sampling == "dense":  # the centre window; loops (``% F``) when the video is shorter
            start = max((video_frames - self.num_frames * self.stride) // 2, 0)
            return (start + np.arange(self.num_frames, dtype=np.int64) * self.stride) % video_frames
        raise ValueError(f"unknown sampling {self.sampling!r}; choose 'tsn', 'dense' or 'consecutive'")

    def transform(self) -> ClipTransform:
        """The single-view test transform (resize, centre crop, normalise)."""
        return build_test_transform(self.size, resize=self.resize, mean=self.mean, std=self.std)


def load_model(model_or_weights: nn.Module | PathLike, device: str | torch.device = "cpu"
               ) -> tuple[nn.Module, Path | None]:
    """An eval-mode model and the weights file it came from (None for a model object, which is put in eval
    mode on `device` in place).

    ``model_or_weights``: a model, one of our safetensors files, or an engine run directory (its best,
    else last, weights).
    """
    if isinstance(model_or_weights, nn.Module):
        return model_or_weights.to(device).eval(), None
    path = Path(model_or_weights)
    path = find_weights(path) if path.is_dir() else path
    return build_from_weights(path).to(device).eval(), path


def _model_config(model: nn.Module) -> dict[str, Any]:
    config = getattr(model, "vidattn_config", None)
    return config if isinstance(config, dict) else {}


def run_data_config(weights: PathLike | None) -> dict[str, Any]:
    """The ``data`` section of an engine run's ``config.yaml`` beside the weights, if there is one."""
    if weights is None or not (Path(weights).parent / "config.yaml").is_file():
        return {}
    weights = Path(weights)
    import yaml

    with open(weights.parent / "config.yaml", encoding="utf-8") as f:
        cfg = yaml.safe_load(f) or {}
    data = cfg.get("data") if isinstance(cfg, dict) else None
    return data if isinstance(data, dict) else {}


def input_spec(model: nn.Module, weights: PathLike | None = None, *, size: int | None = None,
               resize: int | tuple[int, int] | str | None = None) -> InputSpec:
    """The test clip a model expects: defaults by model family, then the run's ``config.yaml`` (if the
    weights sit in a run directory), then the explicit ``size`` / ``resize``."""
    config = _model_config(model)
    name = str(config.get("name", type(model).__name__)).lower()
    t = int(config.get("num_segments", getattr(model, "num_segments", 8)))
    if name.startswith("c3d"):
        spec = InputSpec(t, "consecutive", size=112, resize=(128, 171))
    elif name.startswith("i3d") or getattr(model, "per_frame", True) is False:
        spec = InputSpec(t, "dense", stride=max(1, 64 // t))
    else:
        spec = InputSpec(t, "tsn")
    data = run_data_config(weights)
    if data:
        logger.info("input size and sampling from %s", Path(weights).parent / "config.yaml")
        run_resize = data.get("resize") or data.get("scale_size")
        spec = replace(
            spec,
            sampling=data.get("sampling", spec.sampling),
            stride=int(data.get("stride", spec.stride)) if data.get("sampling") == "dense" else spec.stride,
            size=int(data.get("crop_size", spec.size)),
            resize=tuple(run_resize) if isinstance(run_resize, list) else (run_resize or spec.resize),
            mean=tuple(data.get("mean", spec.mean)),
            std=tuple(data.get("std", spec.std)),
        )
    if size is not None:
        spec = replace(spec, size=size, resize=resize if resize is not None else "auto")
    elif resize is not None:
        spec = replace(spec, resize=resize)
    return spec


def _read_class_file(path: Path) -> list[str]:
    with open(path, encoding="utf-8") as f:
        names = [line.strip() for line in f if line.strip()]
    # UCF-101's classInd.txt ("1 ApplyEyeMakeup") as well as one name per line.
    if names and all(len(n.split()) == 2 and n.split()[0].isdigit() for n in names):
        names = [n.split()[1] for n in names]
    return names


def resolve_class_names(model: nn.Module, class_names: ClassNames = None, weights: PathLike | None = None
                        ) -> list[list[str]]:
    """Class names per classifier head (one list for single-head models).

    Order: ``class_names`` (a list, a list per head, or a ``classes.txt`` path), the weights' metadata
    (``classes`` / ``class_names`` in ``vidattn_config`` or its ``options``), ``classes.txt`` beside the
    weights, then the label indices as strings. A list whose length differs from the classifier's is an error.
    """
    config = {**_weights_metadata(weights), **_model_config(model)}
    sizes = config.get("num_classes", _head_sizes(model))
    sizes = [int(sizes)] if isinstance(sizes, int) else [int(s) for s in sizes]
    names: Any = class_names
    source = "class_names"
    if isinstance(names, (str, os.PathLike)):
        source = str(names)
        names = _read_class_file(Path(names))
    if names is None:
        for where in (config, config.get("options") or {}):
            names = names or where.get("classes") or where.get("class_names")
        source = f"{weights}: vidattn_config metadata"
    if names is None and weights is not None and (Path(weights).parent / "classes.txt").is_file():
        source = str(Path(weights).parent / "classes.txt")
        names = _read_class_file(Path(weights).parent / "classes.txt")
    if names is None:
        return [[str(i) for i in range(k)] for k in sizes]
    per_head = [list(names)] if names and isinstance(names[0], str) else [list(n) for n in names]
    if [len(n) for n in per_head] != sizes:
        raise ValueError(f"{source}: {len(per_head[0]) if len(per_head) == 1 else [len(n) for n in per_head]} "
                         f"class names for a classifier of {sizes if len(sizes) > 1 else sizes[0]} classes; "
                         "give one name per class (--classes FILE)")
    return per_head


def annotated_names(videos: Sequence[PathLike], topk: int) -> list[str]:
    """Output file names for ``predict --annotate``, distinct even for videos of the same stem
    (``x.avi``/``x.mp4`` -> ``x.avi_top5.mp4``/``x.mp4_top5.mp4``; same names in other folders get ``-2``...)."""
    stems = [Path(v).stem for v in videos]
    names = [Path(v).stem if stems.count(Path(v).stem) == 1 else Path(v).name for v in videos]
    out: list[str] = []
    for name in names:
        candidate, n = f"{name}_top{topk}.mp4", 2
        while candidate in out:
            candidate, n = f"{name}-{n}_top{topk}.mp4", n + 1
        out.append(candidate)
    return out


def _weights_metadata(weights: PathLike | None) -> dict[str, Any]:
    """``vidattn_config`` of a safetensors file, read from its header only (the model rebuilt from it by
    ``create_model`` keeps name/classes/segments/options, not extra keys such as ``classes``)."""
    if weights is None or Path(weights).suffix != ".safetensors" or not Path(weights).is_file():
        return {}
    from safetensors import safe_open

    with safe_open(str(weights), framework="pt") as f:
        meta = f.metadata() or {}
    try:
        config = json.loads(meta.get("vidattn_config", "{}"))
    except json.JSONDecodeError:
        return {}
    return config if isinstance(config, dict) else {}


def _head_sizes(model: nn.Module) -> list[int]:
    head = getattr(model, "head", None)
    fcs = [m for m in (head.modules() if head is not None else []) if isinstance(m, nn.Linear)]
    return [fc.out_features for fc in fcs] or [0]


def _frames_kw(frame_template: str | None, start_index: int) -> dict[str, Any]:
    """Frame-folder options for ``open_video`` (ignored for video files)."""
    return {"start_index": start_index, **({"frame_template": frame_template} if frame_template else {})}


def load_clip(video_path: PathLike, spec: InputSpec, *, frame_template: str | None = None,
              start_index: int = 1) -> tuple[Tensor, np.ndarray, np.ndarray]:
    """One test clip of a video: ``(clip (3, T, H, W) float, frames uint8 (T, H, W, 3) as read,
    indices (T,))``. Raises :class:`vidattn.data.VideoError` for unreadable files.

    A frame folder's files are named by ``frame_template`` (``str.format`` or printf style: mmaction2's
    ``img_{:05d}.jpg`` / ``img_%05d.jpg``; default ``{:05d}.jpg``) from ``start_index``."""
    with open_video(video_path, **_frames_kw(frame_template, start_index)) as reader:
        indices = spec.indices(reader.num_frames)
        frames = reader.read(indices)
    clip, _ = spec.transform()(frames)
    return clip, frames, indices


def _topk(probs: Tensor, names: list[str], k: int) -> list[dict[str, Any]]:
    p, idx = probs.topk(min(k, probs.numel()))
    return [{"label": names[i], "index": int(i), "probability": round(float(q), 6)}
            for q, i in zip(p.tolist(), idx.tolist())]


@torch.no_grad()
def predict_videos(
    model_or_weights: nn.Module | PathLike,
    paths: Sequence[PathLike],
    topk: int = 5,
    class_names: ClassNames = None,
    *,
    size: int | None = None,
    spec: InputSpec | None = None,
    device: str | torch.device = "cpu",
    on_error: str = "raise",
    frame_template: str | None = None,
    start_index: int = 1,
) -> list[dict[str, Any]]:
    """Top-``topk`` labels with softmax probabilities for each video, one clip each (see module docstring).

    Returns one JSON-serialisable dict per path: ``{"video", "model", "frame_indices", "topk": [{"label",
    "index", "probability"}, ...]}``, sorted by probability; multi-head models (EPIC verb/noun) also get
    ``"heads"``, one such list per head (``"topk"`` is the first head's). ``on_error="skip"``: an
    unreadable video gets ``{"video", "error"}`` (and a logged warning) instead of stopping the run.
    ``frame_template`` / ``start_index``: how the files of frame folders among ``paths`` are named.
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    model, weights = load_model(model_or_weights, device)
    spec = spec or input_spec(model, weights, size=size)
    names = resolve_class_names(model, class_names, weights)
    model_name = _model_config(model).get("name", type(model).__name__)
    results = []
    for path in paths:
        try:
            clip, _, indices = load_clip(path, spec, frame_template=frame_template, start_index=start_index)
        except VideoError as e:
            if on_error == "raise":
                raise
            logger.warning("skipping %s: %s", path, e)
            results.append({"video": str(path), "error": str(e)})
            continue
        logits = model(clip.unsqueeze(0).to(device))
        heads = logits if isinstance(logits, tuple) else (logits,)
        per_head = [_topk(z[0].float().softmax(-1).cpu(), n, topk) for z, n in zip(heads, names)]
        result = {"video": str(path), "model": model_name, "frame_indices": indices.tolist(), "topk": per_head[0]}
        if len(per_head) > 1:
            result["heads"] = per_head
        logger.info("%s: %s (%.3f)", path, per_head[0][0]["label"], per_head[0][0]["probability"])
        results.append(result)
    return results


def write_predictions_json(predictions: Sequence[dict[str, Any]], path: PathLike) -> Path:
    """Write the predictions as indented JSON (parent directories created); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(list(predictions), indent=2) + "\n", encoding="utf-8")
    return path


def write_video(frames: Sequence[np.ndarray] | np.ndarray, path: PathLike, fps: float = 8.0) -> Path:
    """Write uint8 RGB frames ``(T, H, W, 3)``: ``.gif`` with Pillow (looping), ``.mp4`` as H.264 with PyAV
    (odd sizes padded to even), ``.avi`` as MPEG-4 Part 2. Returns the path."""
    path = Path(path)
    frames = [np.ascontiguousarray(f, dtype=np.uint8) for f in frames]
    if not frames:
        raise ValueError(f"{path}: no frames to write")
    path.parent.mkdir(parents=True, exist_ok=True)
    ext = path.suffix.lower()
    if ext == ".gif":
        from PIL import Image

        images = [Image.fromarray(f) for f in frames]
        images[0].save(path, save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0)
        return path
    if ext not in (".mp4", ".avi"):
        raise ValueError(f"{path}: unsupported video extension {ext!r}; use .gif, .mp4 or .avi")
    import av

    h, w = frames[0].shape[:2]
    ph, pw = h + h % 2, w + w % 2  # yuv420p needs even sizes
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264" if ext == ".mp4" else "mpeg4", rate=Fraction(fps).limit_denominator(1000))
        stream.width, stream.height, stream.pix_fmt = pw, ph, "yuv420p"
        if ext == ".mp4":
            stream.options = {"crf": "20", "preset": "veryfast"}
        stream.codec_context.thread_count = 1
        for f in frames:
            if (ph, pw) != (h, w):
                f = np.pad(f, ((0, ph - h), (0, pw - w), (0, 0)), mode="edge")
            out.mux(stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        out.mux(stream.encode())
    return path


def default_font(px: int) -> Any:
    """Pillow's built-in font at `px` pixels (a bitmap font on Pillow < 10.1)."""
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=px)  # Pillow >= 10.1: a scalable built-in font
    except TypeError:
        return ImageFont.load_default()


def annotate_frames(frames: np.ndarray, prediction: dict[str, Any], min_side: int = 256, k: int = 5
                    ) -> list[np.ndarray]:
    """Frames with the prediction's top-``k`` (label, probability bar) drawn in a box at the top left;
    frames whose short side is under ``min_side`` are upscaled first so the text stays readable."""
    from PIL import Image, ImageDraw

    h, w = frames.shape[1:3]
    scale = max(1.0, min_side / min(h, w))
    out_w, out_h = round(w * scale), round(h * scale)
    font_px = max(10, out_h // 22)
    font = default_font(font_px)
    rows = prediction["topk"][:k]
    line = int(font_px * 1.35)
    box_w = min(out_w - 8, int(font_px * 15))
    box_h = line * len(rows) + 8
    bar_w = box_w // 4
    annotated = []
    for frame in frames:
        img = Image.fromarray(frame)
        if scale != 1.0:
            img = img.resize((out_w, out_h), Image.BILINEAR)
        overlay = Image.new("RGBA", img.size, (0, 0, 0, 0))
        draw = ImageDraw.Draw(overlay)
        draw.rectangle((4, 4, 4 + box_w, 4 + box_h), fill=(0, 0, 0, 150))
        for r, row in enumerate(rows):
            y = 8 + r * line
            p = float(row["probability"])
            colour = (255, 230, 90, 255) if r == 0 else (255, 255, 255, 255)
            draw.rectangle((8, y + 2, 8 + bar_w, y + line - 3), outline=(200, 200, 200, 255))
            draw.rectangle((8, y + 2, 8 + round(bar_w * p), y + line - 3), fill=colour)
            draw.text((14 + bar_w, y), f"{p:.2f} {row['label']}", font=font, fill=colour)
        annotated.append(np.asarray(Image.alpha_composite(img.convert("RGBA"), overlay).convert("RGB")))
    return annotated


def annotate_video(video_path: PathLike, prediction: dict[str, Any], out_path: PathLike, *,
                   max_frames: int | None = None, fps: float | None = None, min_side: int = 256,
                   frame_template: str | None = None, start_index: int = 1) -> Path:
    """Write the video (``.mp4`` or ``.gif``) with the prediction's top-5 overlaid on every frame.

    ``prediction`` is one entry of :func:`predict_videos`. ``max_frames`` caps the frames read (from the
    start); ``fps`` defaults to the source's. Small videos are upscaled to a short side of ``min_side``.
    ``frame_template`` / ``start_index``: the file names of a frame folder (see :func:`load_clip`).
    """
    if "topk" not in prediction:
        raise ValueError(f"{video_path}: prediction has no 'topk' ({prediction.get('error', 'no result')})")
    with open_video(video_path, **_frames_kw(frame_template, start_index)) as reader:
        n = reader.num_frames if max_frames is None else min(reader.num_frames, max_frames)
        frames = reader.read(np.arange(n))
        fps = fps or reader.fps or 25.0
    return write_video(annotate_frames(frames, prediction, min_side=min_side), out_path, fps=fps)
