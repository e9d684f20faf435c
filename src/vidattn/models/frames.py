"""3D convolutions on clips held as frames `(N, T, C, H, W)`, computed as 2D convolutions where that is faster.

PyTorch's CPU Conv3d runs its slow vol2col kernel for few input channels (the UCF-101 paper's RGB conv,
W3's 1-4 channel maps of eq. 6) and for 1x1x1 kernels it is no faster than the 2D one. A kt x kh x kw conv
over T is the same sums as a kh x kw 2D conv over the kt neighbouring frames stacked as channels, which runs
on oneDNN's channels-last 2D kernels; stacking copies only the (small) input. Measured on the 2-core CPU
(docs/performance.md): the UCF-101 model's 3->64 3x3x3 conv on 16x112x112 takes 19 ms instead of 57 ms.
Without autograd, a ReLU or sigmoid that follows the conv on a large map runs inside oneDNN's kernel as a
post-op (the fusion `torch.compile` makes on CPU), saving one full pass over the output.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

ACTIVATIONS = {None: lambda y: y, "relu": torch.relu_, "sigmoid": torch.sigmoid_}


def as_frames(clip: Tensor) -> Tensor:
    """A clip batch `(N, C, T, H, W)` as frames `(N*T, C, H, W)`: a view of the same memory when the clip is
    channels-last-3d (it then is channels-last frames), a copy otherwise."""
    return clip.transpose(1, 2).flatten(0, 1)


def is_plain_conv(conv: nn.Module) -> bool:
    """A stock Conv1d/2d/3d with zero numeric padding and no hooks: its forward is exactly `F.convNd` of its
    parameters, so the helpers here may compute it their own way (subclasses, hooked or string-padded convs
    are called as modules)."""
    return (type(conv) in (nn.Conv1d, nn.Conv2d, nn.Conv3d) and not conv._forward_hooks
            and not conv._forward_pre_hooks and conv.padding_mode == "zeros" and not isinstance(conv.padding, str))


def conv3d_on_frames(frames: Tensor, conv: nn.Conv3d, activation: str | None = None) -> Tensor:
    """`activation(conv(clip))` for a clip held as frames `(N, T, C, H, W)`; returns frames `(N, T', C', H', W')`.

    `activation`: None, "relu" or "sigmoid". On CPU (a plain conv, temporal stride and dilation 1, one group)
    the result is a view of a channels-last `(N*T', C', H', W')` map; elsewhere (CUDA, other convs) it is
    `conv` itself on the transposed view.
    """
    stackable = is_plain_conv(conv) and conv.stride[0] == 1 and conv.dilation[0] == 1 and conv.groups == 1
    if frames.device.type != "cpu" or not stackable:
        return ACTIVATIONS[activation](conv(frames.transpose(1, 2))).transpose(1, 2)
    n = frames.shape[0]
    kt, pt = conv.kernel_size[0], conv.padding[0]
    v = frames.permute(0, 1, 3, 4, 2)  # (N, T, H, W, C)
    if kt > 1 or pt > 0:
        v = _stack_neighbours(v, kt, pt)
    stacked = v.flatten(0, 1).permute(0, 3, 1, 2)  # for kt=1, a view when the clip is channels-last frames
    weight = conv.weight.flatten(1, 2)  # (C', C*kt, kh, kw), the stacked channel order c*kt + i
    y = _conv2d_activation(stacked, weight.contiguous(memory_format=torch.channels_last), conv.bias,
                           conv.stride[1:], conv.padding[1:], conv.dilation[1:], 1, activation)
    return y.view(n, -1, *y.shape[1:])


def conv2d_activation(x: Tensor, conv: nn.Conv2d, activation: str | None) -> Tensor:
    """`activation(conv(x))` for a 2D conv module, the activation fused where `_conv2d_activation` says."""
    if not is_plain_conv(conv):
        return ACTIVATIONS[activation](conv(x))
    return _conv2d_activation(x, conv.weight, conv.bias, conv.stride, conv.padding, conv.dilation, conv.groups,
                              activation)


def _stack_neighbours(v: Tensor, kt: int, pt: int) -> Tensor:
    """(N, T, H, W, C) -> (N, T', H, W, C*kt): channel c*kt + i of frame t is channel c of frame t+i-pt, zero
    beyond the clip's ends (the temporal zero padding); written once, without a padded copy."""
    n, t, h, w, c = v.shape
    t_out = t + 2 * pt - kt + 1
    out = v.new_empty(n, t_out, h, w, c, kt)
    for i in range(kt):
        lo = min(max(0, pt - i), t_out)  # output frames [lo, hi) have their source frame inside the clip
        hi = max(lo, min(t_out, t + pt - i))
        part = out[..., i]
        part[:, lo:hi] = v[:, lo + i - pt:hi + i - pt]
        part[:, :lo] = 0
        part[:, hi:] = 0
    return out.view(n, t_out, h, w, c * kt)


def _conv2d_activation(x: Tensor, weight: Tensor, bias: Tensor | None, stride: tuple[int, ...],
                       padding: tuple[int, ...], dilation: tuple[int, ...], groups: int,
                       activation: str | None) -> Tensor:
    """`activation(conv2d(x))`; the activation fused into oneDNN's fp32 CPU kernel when nothing needs grads
    and the input is large (the fused primitive's fixed cost, ~0.05 ms, exceeds the saved pass on W3's
    small maps: measured on 8x2x56x56 0.90 ms fused vs 0.78 ms unfused, on 16x9x112x112 17 vs 19 ms).
    The fused op has no autograd formula, so it runs only when no input, weight or bias needs a gradient."""
    needs_grad = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (x, weight, bias))
    fused = (activation is not None and _FUSED_CONV is not None and x.device.type == "cpu"
             and torch.backends.mkldnn.enabled and x.dtype == torch.float32
             and x.numel() >= _FUSE_MIN_NUMEL and not torch.is_autocast_enabled("cpu") and not needs_grad)
    if fused:
        return _FUSED_CONV(x, weight, bias, list(padding), list(stride), list(dilation), groups, activation, [],
                           "")
    y = F.conv2d(x, weight, bias, stride=stride, padding=padding, dilation=dilation, groups=groups)
    return ACTIVATIONS[activation](y)


_FUSE_MIN_NUMEL = 1 << 20
# oneDNN conv + post-op (what inductor emits for conv+relu on CPU); absent from builds without oneDNN
_FUSED_CONV = getattr(torch.ops.mkldnn, "_convolution_pointwise", None) if torch.backends.mkldnn.is_available() \
    else None
