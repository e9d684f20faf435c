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


def _clips(x: Tensor, num_segments: int) -> Tensor:
    """A `(N*T, C, H, W)` map viewed as `(N, T, C, H, W)` (no copy; the memory format kept)."""
    nt = x.shape[0]
    if nt % num_segments:
        raise ValueError(f"temporal_shift: batch {nt} is not a multiple of num_segments={num_segments}")
    return x.view(nt // num_segments, num_segments, *x.shape[1:])


def temporal_shift(x: Tensor, num_segments: int, fold_div: int = 8) -> Tensor:
    """Shift 1/fold_div of the channels one frame back and 1/fold_div one frame forward in time.

    Writes each output element exactly once (no zero-filled full tensor), keeps `x`'s memory format.
    The writes go to the output tensor itself, not through a view of it: tracers that do not follow
    aliases (the TorchScript-based ONNX exporter) then record them; written through `out.view_as(...)`,
    that exporter exported the shift as a constant of zeros (`empty_like` folded, the writes lost).
    """
    fold = x.shape[1] // fold_div
    src = _clips(x, num_segments)
    out = torch.empty_like(src)  # same strides as `src`, so the final view keeps x's memory format
    out[:, :-1, :fold] = src[:, 1:, :fold]  # frame t sees t+1 ("shift left")
    out[:, -1, :fold] = 0
    out[:, 1:, fold : 2 * fold] = src[:, :-1, fold : 2 * fold]  # frame t sees t-1 ("shift right")
    out[:, 0, fold : 2 * fold] = 0
    out[:, :, 2 * fold :] = src[:, :, 2 * fold :]
    return out.view(x.shape)


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
        """The causal shift: channels `[0, fold)` of frame t are frame t-1's, the rest frame t's."""
        src = _clips(x, self.num_segments)
        t, fold = src.shape[1], x.shape[1] // self.fold_div
        out = torch.empty_like(src)
        out[:, :, :fold] = self.with_past(src[:, :, :fold], 1, dim=1)[:, :t]  # frame t sees t-1
        out[:, :, fold:] = src[:, :, fold:]
        return out.view(x.shape)

    def extra_repr(self) -> str:
        return f"num_segments={self.num_segments}, fold_div={self.fold_div}" + (", causal=True" if self.causal else "")
