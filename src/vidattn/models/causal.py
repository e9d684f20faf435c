"""Causal temporal modules: what fills the time steps before a clip's first frame (TSM's online mode; W3 with
eqs. 4 and 6 padded on the past side only).

A causal module's output at frame t depends on frames <= t only: it prepends the `steps` input steps it
needs before the first frame, then computes without any padding on the future side. `PastFrames.with_past`
is the one place those steps come from:
- offline (the default): zeros, the causal zero padding;
- streaming (`set_streaming(model, True)`, only `vidattn.online.OnlineRecognizer` does it): the last `steps`
  input steps of the previous call, zeros at a stream's start (`reset_streams`), so a model fed one frame at
  a time computes exactly what it computes offline on the whole clip.
Users: `TemporalShift(causal=True)` (one past step of its shifted fold) and `CausalConv1d` / `CausalConv3d`
(k-1 past steps of their input), W3's temporal convolutions when `W3Attention(causal=True)`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class PastFrames:
    """Mixin of a causal temporal module: its memory of the input steps before the current call's first."""

    causal: bool = True  # False: a module that could keep past frames but looks ahead (the bidirectional shift)
    streaming: bool = False  # class default: offline, the steps before the first frame are zeros
    past: Tensor | None = None  # streaming: the last input steps seen (None at a stream's start)

    def with_past(self, x: Tensor, steps: int, dim: int) -> Tensor:
        """`x` with the `steps` input steps before its first prepended along the time axis `dim`: zeros
        offline and at a stream's start, else the last `steps` of what came before (then kept from this call)."""
        past = self.past if self.streaming and self.past is not None else \
            x.new_zeros(*x.shape[:dim], steps, *x.shape[dim + 1:])
        padded = torch.cat((past, x), dim)
        if self.streaming:
            self.past = padded.narrow(dim, padded.shape[dim] - steps, steps)
        return padded

    def reset_past(self) -> None:
        """Forget the stream: the next call starts from zeros."""
        self.past = None


class _CausalConv:
    """Shared forward of the causal convolutions: the time axis (dim 2) padded on the past side only."""

    def _check_causal(self) -> None:
        if self.padding[0] != 0 or self.stride[0] != 1:
            raise ValueError(f"{type(self).__name__}: temporal padding {self.padding[0]} and stride {self.stride[0]}; "
                             "a causal conv pads the past side itself (give temporal padding 0, stride 1)")

    @property
    def context(self) -> int:
        """Past steps each output needs beyond its own: dilation x (k - 1)."""
        return self.dilation[0] * (self.kernel_size[0] - 1)

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(self.with_past(x, self.context, dim=2))


class CausalConv1d(_CausalConv, PastFrames, nn.Conv1d):
    """`nn.Conv1d` over (N, C, T) whose output at t sees inputs t-k+1..t (k-1 zeros before the first
    frame, none after). Built with temporal padding 0; parameters and names are `nn.Conv1d`'s."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._check_causal()


class CausalConv3d(_CausalConv, PastFrames, nn.Conv3d):
    """`nn.Conv3d` over (N, C, T, H, W), causal in T as `CausalConv1d`; its spatial padding is its own."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._check_causal()


def causal_modules(model: nn.Module) -> list[PastFrames]:
    """Every causal module of `model` that keeps past frames."""
    return [m for m in model.modules() if isinstance(m, PastFrames) and m.causal]


def set_streaming(model: nn.Module, on: bool = True) -> int:
    """Switch every causal module of `model` to streaming (or back to offline), each from a fresh stream;
    returns how many there are."""
    modules = causal_modules(model)
    for m in modules:
        m.streaming = on
        m.reset_past()
    return len(modules)


def reset_streams(model: nn.Module) -> None:
    """Start a new stream: every causal module forgets its past frames."""
    for m in causal_modules(model):
        m.reset_past()


def look_ahead(model: nn.Module) -> list[str]:
    """Names of the modules of `model` whose output at a frame depends on later frames: those with
    `causal = False` (the bidirectional shift, W3 with centred temporal convolutions, TAM, non-local)."""
    return [name for name, m in model.named_modules() if getattr(m, "causal", True) is False]
