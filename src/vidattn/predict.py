"""Predict actions in video files: top-k labels and probabilities per video (the UCF-101 paper's Fig. 2),
as JSON, and videos annotated with their top-5.

The application side of the one inference path: each video's clips come from the model's input spec and
run through its :class:`vidattn.inference.Predictor` (:func:`vidattn.inference.load_predictor`), exactly
as ``vidattn test`` samples and scores them: the run's ``config.yaml`` (or the recipe given) says which
frames (TSN segment centres, the centre dense window, the centre 16 consecutive frames), which geometry
(resize, crop) and how many views (``eval.clips`` x ``eval.crops``, overridable like ``vidattn test``'s:
``overrides=["eval.clips=2"]``); a video's score is the mean of its views' softmax.

Class names come from an argument (a list, or a ``classes.txt`` file, one name per line), else from the
weights' metadata (a ``classes`` or ``class_names`` list in ``vidattn_config`` or its ``options``), else from
a ``classes.txt`` beside the weights, else ``"0"``, ``"1"``, ...
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor, nn

from vidattn.config import Config
from vidattn.data import VideoError, open_video
from vidattn.data.clips import InputSpec
from vidattn.data.video import default_font, write_video
from vidattn.inference import ClassNames, Predictor, load_predictor

logger = logging.getLogger(__name__)

__all__ = [
    "predict_videos",
    "topk_labels",
    "write_predictions_json",
    "annotated_names",
    "annotate_frames",
    "annotate_video",
]

PathLike = str | os.PathLike


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


def topk_labels(probs: Tensor, names: Sequence[str], k: int) -> list[dict[str, Any]]:
    """The ``k`` most probable classes of a ``(K,)`` probability vector, most probable first:
    ``[{"label", "index", "probability"}, ...]`` (probabilities rounded to 6 decimals), the entries of
    ``vidattn predict``'s JSON."""
    p, idx = probs.topk(min(k, probs.numel()))
    return [{"label": names[i], "index": int(i), "probability": round(float(q), 6)}
            for q, i in zip(p.tolist(), idx.tolist())]


def predict_videos(
    model_or_weights: Predictor | nn.Module | PathLike,
    paths: Sequence[PathLike],
    topk: int = 5,
    class_names: ClassNames = None,
    *,
    config: Config | None = None,
    overrides: Sequence[str] = (),
    spec: InputSpec | None = None,
    device: str = "auto",
    precision: str = "auto",
    on_error: str = "raise",
    frame_template: str | None = None,
    start_index: int = 1,
) -> list[dict[str, Any]]:
    """Top-``topk`` labels with softmax probabilities (the mean over the views) for each video.

    ``model_or_weights``: a :class:`Predictor`, a model, a weights file or a run directory; the input spec
    and class names as :func:`vidattn.inference.load_predictor` finds them (``config``, ``overrides``,
    ``spec``, ``class_names``). Returns one JSON-serialisable dict per path: ``{"video", "model",
    "frame_indices": one list per clip, "topk": [{"label", "index", "probability"}, ...]}``, sorted by
    probability; multi-head models (EPIC verb/noun) also get ``"heads"``, one such list per head (``"topk"``
    is the first head's). ``on_error="skip"``: an unreadable video gets ``{"video", "error"}`` (and a logged
    warning) instead of stopping the run. ``frame_template`` / ``start_index``: how the files of frame
    folders among ``paths`` are named.
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    predictor = model_or_weights if isinstance(model_or_weights, Predictor) else load_predictor(
        model_or_weights, device, precision, spec=spec, config=config, overrides=overrides, class_names=class_names)
    model_name = (getattr(predictor.model, "vidattn_config", None) or {}).get("name", type(predictor.model).__name__)
    results = []
    for path in paths:
        try:
            clips = predictor.load(path, frame_template=frame_template, start_index=start_index)
        except VideoError as e:
            if on_error == "raise":
                raise
            logger.warning("skipping %s: %s", path, e)
            results.append({"video": str(path), "error": str(e)})
            continue
        scores = predictor.run(clips.clip.unsqueeze(0)).scores("softmax")
        names = predictor.classes or [[str(i) for i in range(z.shape[-1])] for z in scores]
        per_head = [topk_labels(z[0].cpu(), n, topk) for z, n in zip(scores, names)]
        result = {"video": str(path), "model": model_name, "frame_indices": clips.indices.tolist(),
                  "topk": per_head[0]}
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
    ``frame_template`` / ``start_index``: the file names of a frame folder (see :func:`vidattn.data.load_clips`).
    """
    if "topk" not in prediction:
        raise ValueError(f"{video_path}: prediction has no 'topk' ({prediction.get('error', 'no result')})")
    kw: dict[str, Any] = {"start_index": start_index, **({"frame_template": frame_template} if frame_template else {})}
    with open_video(video_path, **kw) as reader:
        n = reader.num_frames if max_frames is None else min(reader.num_frames, max_frames)
        frames = reader.read(np.arange(n))
        fps = fps or reader.fps or 25.0
    return write_video(annotate_frames(frames, prediction, min_side=min_side), out_path, fps=fps)
