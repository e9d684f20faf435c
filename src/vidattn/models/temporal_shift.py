"""Temporal Shift Module (Lin et al., "TSM: Temporal Shift Module for Efficient Video Understanding", ICCV 2019).

On a `(N*T, C, H, W)` map viewed as `(N, T, C, H, W)`, with `fold = C // fold_div`: channels `[0, fold)` of
frame t take frame t+1's values, channels `[fold, 2*fold)` take frame t-1's, the rest are unchanged;
missing neighbours at the clip ends are zeros. No parameters, no multiply-accumulates.

`causal=True` is TSM's online (uni-directional) shift: channels `[0, fold)` of frame t take frame t-1's
values (zeros at t=0), nothing comes from the future, the rest are unchanged (the official online demo
shifts one fold of 1/8 from the past). The frame before the first comes from `PastFrames.with_past`
(`vidattn.models.causal`): zeros offline, the cached last frame in a stream.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from vidattn.models.causal import PastFrames


def temporal_shift(x: Tensor, num_segments: int, fold_div: int = 8) -> Tensor:
    """Shift 1/fold_div of the channels one frame back and 1/fold_div one frame forward in time.

    The channels of each frame split into three groups: the first `fold` take the next frame's values, the
    next `fold` the previous frame's, the rest stay; a zero frame fills the missing neighbour at each clip
    end. Views and concatenations only, no writes into a tensor: exporters trace it as a few Slice/Concat
    ops and its backward is a slice of the gradient. The output is contiguous; the Predictor's
    `models.fast.FastTemporalShift` keeps `x`'s memory format.
    """
    c = x.shape[1]
    fold = c // fold_div
    clips = as_clips(x, num_segments)
    # torch.split, not Tensor.split: torch 2.6's ONNX exporter cannot name the method (`torch._tensor.split`)
    ahead, behind, kept = torch.split(clips, (fold, fold, c - 2 * fold), dim=2)
    zero = ahead.new_zeros((clips.shape[0], 1, *ahead.shape[2:]))  # one frame of one group
    ahead = torch.cat((ahead[:, 1:], zero), dim=1)  # frame t sees t+1 ("shift left")
    behind = torch.cat((zero, behind[:, :-1]), dim=1)  # frame t sees t-1 ("shift right")
    return torch.cat((ahead, behind, kept), dim=2).view(x.shape)


def as_clips(x: Tensor, num_segments: int) -> Tensor:
    """Frames `(N*T, C, H, W)` viewed as clips `(N, T, C, H, W)` (no copy); a batch of incomplete clips is
    an error."""
    nt = x.shape[0]
    if nt % num_segments:
        raise ValueError(f"temporal_shift: batch {nt} is not a multiple of num_segments={num_segments}")
    return x.view(nt // num_segments, num_segments, *x.shape[1:])


class TemporalShift(PastFrames, nn.Module):
    """`temporal_shift` as a module for a residual block's `temporal` slot; `causal=True`: the online shift."""

    def __init__(self, channels: int, num_segments: int, fold_div: int = 8, causal: bool = False) -> None:
        super().__init__()
        self.num_segments = num_segments
        self.fold_div = fold_div
        self.causal = causal

    def forward(self, x: Tensor) -> Tensor:
        return self.shift_from_past(x) if self.causal else temporal_shift(x, self.num_segments, self.fold_div)

    def shift_from_past(self, x: Tensor) -> Tensor:
        """The causal shift: channels `[0, fold)` of frame t are frame t-1's, the rest frame t's (a
        concatenation, as `temporal_shift`)."""
        clips = as_clips(x, self.num_segments)
        fold = x.shape[1] // self.fold_div
        shifted, kept = torch.split(clips, (fold, x.shape[1] - fold), dim=2)
        shifted = self.with_past(shifted, 1, dim=1)[:, :-1]  # frame t sees t-1
        return torch.cat((shifted, kept), dim=2).view(x.shape)

    def extra_repr(self) -> str:
        return f"num_segments={self.num_segments}, fold_div={self.fold_div}" + (", causal=True" if self.causal else "")
