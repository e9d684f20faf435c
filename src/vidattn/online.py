"""Online recognition: a causal 2D recognizer fed one frame at a time, its per-frame logits exactly the offline
causal model's on the same clip, and the running video-level prediction.

A causal model (`causal=True`, docs/models.md: TSM's online shift, W3 with eqs. 4 and 6 padded on the past
side) computes frame t from frames <= t only. `OnlineRecognizer` runs a 1-frame twin of it
(`VideoRecognizer.with_num_segments(1)`, the same weights) on the Predictor's path (`vidattn.inference`:
eval mode, folded BatchNorm, channels-last, the fast layer, autocast) with every causal module streaming
(`vidattn.models.causal`): the shift keeps the last frame's shifted fold, each causal conv the last k-1
steps of its input, zeros at a stream's start (the offline zero padding). So a stream of any length equals
the offline causal model run on that whole clip, frame by frame (tests/test_online.py).

The video-level prediction after t frames is the TSN consensus of the offline model over those frames: the
mean of the frame logits so far, then softmax (W3: "averaging the frame-level predictions").
The runner takes every frame it is given: the spec's sampling and clip length do not apply (which frames
to feed, e.g. every `data.stride`-th of a stream for a model trained on dense clips, is the caller's choice);
its resize, centre crop and normalisation do (`preprocess`, the Predictor's transform).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from vidattn.data.clips import InputSpec
from vidattn.inference import Predictor, resolve_model_input
from vidattn.models.causal import look_ahead, reset_streams, set_streaming
from vidattn.models.fast import reference
from vidattn.models.recognizer import VideoRecognizer

logger = logging.getLogger(__name__)

_PRECISION = {None: "fp32", torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}


@dataclass
class StepResult:
    """What one `OnlineRecognizer.step` returns; tensors are fp32, on the model's device.

    index: 0-based frame index in this stream.
    frame_logits: (K,) this frame's logits (the first head's; every head's in `heads`).
    video_probs: (K,) the running video-level prediction: softmax of the mean of the frame logits so far
        (the offline model's TSN consensus over frames 0..index); every head's in `video_heads`.
    spatial_mask: (h, w) the last W3/CBAM block's spatial mask of this frame, with `keep_maps` (else None).
    latency_ms: wall time of the step (preprocessing included when given a uint8 frame).
    """

    index: int
    frame_logits: Tensor
    video_probs: Tensor
    spatial_mask: Tensor | None
    latency_ms: float
    heads: tuple[Tensor, ...] = ()
    video_heads: tuple[Tensor, ...] = ()


class OnlineRecognizer:
    """Frame-by-frame recognition with a causal 2D recognizer (see the module docstring).

    `model` must be a causal 2D recognizer. The runner's 1-frame twin shares its parameters and buffers (moved
    with the twin to `device`); the Predictor prepares the twin only (eval mode, BatchNorm folded into copies
    of the convs, fast modules), so build a new runner after changing the weights. `spec`: its input
    (default: the config defaults, `inference.resolve_model_input`).
    `fast=False` runs the reference modules with BatchNorm unfolded on contiguous memory (for checking).
    `dtype`: None or torch.float32 (the model's own precision), torch.bfloat16 / torch.float16 (autocast, as
    the Predictor's `precision`). `classes`: names per head (else resolved as the Predictor's).
    """

    def __init__(self, model: nn.Module, spec: InputSpec | None = None, *, fast: bool = True,
                 device: str | torch.device = "cpu", dtype: torch.dtype | None = None,
                 classes: Sequence[Sequence[str]] | None = None) -> None:
        _check_online(model)
        if dtype not in _PRECISION:
            raise ValueError(f"OnlineRecognizer: dtype must be one of {list(_PRECISION)}, not {dtype}")
        resolved = resolve_model_input(model, spec=spec)
        self.spec: InputSpec = resolved.spec
        heads = [list(names) for names in (classes if classes is not None else resolved.classes)]
        self.class_names: list[str] | None = heads[0] if heads else None
        self.predictor = Predictor(model.with_num_segments(1), device, _PRECISION[dtype],
                                   channels_last="auto" if fast else False, fold_bn=fast, spec=self.spec,
                                   classes=heads, spec_origin=resolved.origin)
        if not fast:
            reference(self.predictor.model)
        set_streaming(self.predictor.model)
        self._transform = self.spec.single_view().transform()
        self.frames_seen = 0
        self._logit_sums: list[Tensor] = []

    @classmethod
    def from_weights(cls, path: str | os.PathLike, *, fast: bool = True, device: str | torch.device = "cpu",
                     dtype: torch.dtype | None = None) -> OnlineRecognizer:
        """The runner of a run directory or a weights file, with its input spec and class names, resolved as
        `vidattn.inference.load_predictor` resolves them (`resolve_model_input`)."""
        resolved = resolve_model_input(path)
        if resolved.origin == "defaults":
            logger.warning("%s: no recipe beside the weights; frames are resized, cropped and normalised with the "
                           "config defaults (%s)", path, resolved.spec)
        return cls(resolved.model, resolved.spec, fast=fast, device=device, dtype=dtype, classes=resolved.classes)

    def preprocess(self, frame: np.ndarray) -> Tensor:
        """One RGB uint8 frame (H, W, 3) as the model's input (3, h, w): the spec's resize, centre crop and
        normalisation, the transform the Predictor's clips go through."""
        if not isinstance(frame, (np.ndarray, Tensor)) or frame.dtype not in (np.uint8, torch.uint8) \
                or tuple(frame.shape[2:]) != (3,) or frame.ndim != 3:
            raise ValueError(f"OnlineRecognizer.preprocess: expected one RGB uint8 frame (H, W, 3), got "
                             f"{getattr(frame, 'dtype', type(frame).__name__)} {tuple(getattr(frame, 'shape', ()))}")
        clip, _ = self._transform(frame[None])  # (3, 1, h, w)
        return clip[:, 0]

    def step(self, frame: Tensor | np.ndarray, keep_maps: bool = False) -> StepResult:
        """Feed the next frame of the stream: a uint8 (H, W, 3) frame (preprocessed) or a (3, h, w) float
        tensor (used as is)."""
        start = time.perf_counter()
        if isinstance(frame, np.ndarray) or frame.dtype == torch.uint8:
            frame = self.preprocess(frame)
        elif frame.dim() != 3 or frame.shape[0] != 3 or not frame.is_floating_point():
            raise ValueError(f"OnlineRecognizer.step: expected a uint8 (H, W, 3) frame or a float (3, h, w) tensor, "
                             f"got {frame.dtype} {tuple(frame.shape)}")
        out = self.predictor.run(frame[:, None], return_all=keep_maps)  # a 1-frame clip; logits (1, 1, K) per head
        heads = tuple(z[0, 0] for z in out.logits)
        # running sums in fp64: the mean over frames is then the offline consensus to fp32 rounding
        self._logit_sums = [z.double() + s for z, s in zip(heads, self._logit_sums)] if self._logit_sums \
            else [z.double() for z in heads]
        self.frames_seen += 1
        video = tuple((s / self.frames_seen).float().softmax(dim=-1) for s in self._logit_sums)
        masks = [m["spatial"] for m in out.attention.values() if "spatial" in m]
        if self.predictor.plan.device.type == "cuda":
            torch.cuda.synchronize(self.predictor.plan.device)  # the latency of the work, not of queueing it
        return StepResult(index=self.frames_seen - 1, frame_logits=heads[0], video_probs=video[0],
                          spatial_mask=masks[-1][0, 0] if masks else None,
                          latency_ms=(time.perf_counter() - start) * 1e3, heads=heads, video_heads=video)

    def reset(self) -> None:
        """Start a new stream: every cache cleared, frame index and running prediction back to zero."""
        reset_streams(self.predictor.model)
        self.frames_seen = 0
        self._logit_sums = []


def _check_online(model: nn.Module) -> None:
    """A one-line error unless `model` is a 2D recognizer whose every module sees the past only."""
    config = getattr(model, "vidattn_config", None)
    name = config["name"] if isinstance(config, dict) and "name" in config else type(model).__name__
    if not isinstance(model, VideoRecognizer) or not model.per_frame:
        raise ValueError(f"OnlineRecognizer: {name} is not a 2D recognizer; online recognition runs a causal "
                         "tsm_* / tsm_w3_* / tsm_cbam_* / tsn_* model frame by frame")
    ahead = look_ahead(model)
    if ahead:
        more = f" and {len(ahead) - 1} more" if len(ahead) > 1 else ""
        raise ValueError(f"OnlineRecognizer: {name} is not causal ({ahead[0]}{more} look at later frames); build it "
                         "with causal=True (model.options: {causal: true})")
