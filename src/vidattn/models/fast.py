"""The fast layer: `optimize(model)` swaps modules of a built model for fast equivalents, in place.

The model definitions (`resnet.py`, `attention/`, `c3d_attention.py`) are the reference: plain `nn` layers in
the papers' order. Each fast module here is a subclass of its reference module that keeps every parameter,
buffer and name (state dicts, `open_masks`, isinstance checks are unchanged) and overrides only the forward,
computing the same sums faster on CPU; `tests/models/test_fast.py` checks every one against its reference,
outputs and gradients. `reference(model)` swaps them back. The Predictor (`vidattn.inference`) applies
`optimize`; anything else may (gradients are right: every in-place or fused shortcut runs only when
autograd is off). What each one buys, measured on this project's 2-core CPU (`benchmarks/fast.py`,
docs/performance.md, fp32, 8x224 / 16x112 clips):

- `FastW3` (TSM+W3-R50 1.36-1.42x the reference on channels-last memory, the 16 W3 modules 2.9-3.3x):
  every full-size multiply on the 4D `(N*T, C, H, W)` map, not a 5D view of it; a 3D network's
  channels-last-3d map attended as the `(N*T, C, H, W)` frames it is in memory; the avg/max descriptors
  through one MLP call; eq. 4's depthwise 1D convs as k shifted multiply-adds on `(N, T, C)` (3-7% of W3's
  time); eq. 6's 3D convs as 2D convs over stacked neighbouring frames (8-14%).
- `FastCBAM`, and `FastBasicBlock`/`FastBottleneck` for blocks with W3 or CBAM: the block hands its identity
  to the attention, whose last mask multiply and the residual add run as one `addcmul` pass, written into
  the block's own map without autograd (W3 modules with their add: 1.08x).
- `FastTemporalShift` (TSM-R50 in the Predictor 1.14x): without autograd, a clone of the input (its memory
  format kept) with the two shifted folds overwritten; the reference's concatenations return a contiguous map,
  a layout change on every channels-last block (with autograd the reference runs: the writes' backward is slow).
- `FastC3D` (2.1x): the UCF-101 model's Conv3d layers as 2D convs over the kt neighbouring frames stacked
  as channels (PyTorch's CPU Conv3d runs a slow vol2col kernel for 3 input channels), the ReLU/sigmoid
  fused into oneDNN's conv on large maps without autograd (1.01-1.11x; the layer's only private torch op),
  the gate multiply in place, the 3D adaptive average pooling as 2D pooling per frame then a mean over
  time (slow on channels-last-3d maps otherwise).
Measured and dropped: folding the clip into channels-last frames for the stem (no gain).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vidattn.models.attention.cbam import CBAM
from vidattn.models.attention.w3 import W3Attention
from vidattn.models.c3d_attention import C3DAttention
from vidattn.models.recognizer import Logits, VideoOutput
from vidattn.models.resnet import BasicBlock, Bottleneck
from vidattn.models.temporal_shift import TemporalShift, as_clips


def optimize(model: nn.Module) -> nn.Module:
    """Swap every reference module of `model` that has a fast equivalent for it, in place; returns `model`.

    Modules keep their parameters and names; only their class (hence forward) changes. Subclasses of the
    reference modules (someone else's variant) are left alone, and so are blocks without W3/CBAM attention
    (nothing to fuse: the reference block already adds in place).
    """
    for module in model.modules():
        fast = FAST.get(type(module))
        unfusable = isinstance(module, (BasicBlock, Bottleneck)) and type(module.attn) not in _FUSABLE_ATTENTION
        if fast is not None and not unfusable:
            module.__class__ = fast
    return model


def reference(model: nn.Module) -> nn.Module:
    """Undo `optimize`: every fast module back to its reference class, in place; returns `model`."""
    back = {fast: ref for ref, fast in FAST.items()}
    for module in model.modules():
        if type(module) in back:
            module.__class__ = back[type(module)]
    return model


# ------------------------------------------------------------------------------------------- mask multiply

def apply_mask(x: Tensor, mask: Tensor, residual: Tensor | None = None, overwrite: bool = False) -> Tensor:
    """`x * mask` (+ `residual`), in one pass; written into `x` when `overwrite` and autograd is off.

    `mask` broadcasts against `x`. With autograd on, `x` is never modified (it is saved for backward).
    """
    if overwrite and not torch.is_grad_enabled():
        return x.mul_(mask) if residual is None else torch.addcmul(residual, x, mask, out=x)
    return x * mask if residual is None else torch.addcmul(residual, x, mask)


# ------------------------------------------------------------------------------------------ residual blocks

class _FusedResidual:
    """A block whose attention adds the identity in its last mask multiply (`apply_mask`)."""

    def forward_with_maps(self, x: Tensor) -> tuple[Tensor, dict[str, Tensor] | None]:
        out, identity = self.branches(x)
        maps = None
        if self.attn is None:
            out += identity
        else:
            out, maps = self.attn.forward_with_maps(out, residual=identity, overwrite=True)
        return self.finish(out), maps


class FastBasicBlock(_FusedResidual, BasicBlock):
    """`BasicBlock` with the residual add fused into the attention's last multiply."""


class FastBottleneck(_FusedResidual, Bottleneck):
    """`Bottleneck` with the residual add fused into the attention's last multiply."""


# ------------------------------------------------------------------------------------------- temporal shift

class FastTemporalShift(TemporalShift):
    """`TemporalShift` that, without autograd, returns a map of the input's memory format: a copy of the input
    (`clone`, a memory-speed copy) whose two shifted channel folds are then overwritten (the reference's
    concatenations return a contiguous map, which on channels-last frames costs a layout change; slice copies
    of the unshifted 3/4 were 1.1-1.5x slower than the clone). With autograd it is the reference."""

    def forward(self, x: Tensor) -> Tensor:
        if torch.is_grad_enabled():
            return super().forward(x)
        fold = x.shape[1] // self.fold_div
        src = as_clips(x, self.num_segments)
        out = src.clone()  # same strides as `src`, so the final view keeps x's memory format
        if self.causal:  # the online shift: one fold from frame t-1 (`with_past`: zeros, or the stream's cache)
            out[:, :, :fold] = self.with_past(src[:, :, :fold], 1, dim=1)[:, :-1]
            return out.view(x.shape)
        out[:, :-1, :fold] = src[:, 1:, :fold]  # frame t sees t+1
        out[:, -1, :fold] = 0
        out[:, 1:, fold : 2 * fold] = src[:, :-1, fold : 2 * fold]  # frame t sees t-1
        out[:, 0, fold : 2 * fold] = 0
        return out.view(x.shape)


# ------------------------------------------------------------------------------------------------ attention

class FastCBAM(CBAM):
    """`CBAM` whose last multiply adds a residual and may overwrite its input (no autograd)."""

    def forward_with_maps(self, x: Tensor, residual: Tensor | None = None, overwrite: bool = False
                          ) -> tuple[Tensor, dict[str, Tensor]]:
        """Attend `x` (+ `residual`); `overwrite`: `x` is the caller's temporary (used without autograd)."""
        m_c = self.channel_mask(x)
        f = apply_mask(x, m_c[:, :, None, None], overwrite=overwrite)
        m_s = self.spatial_mask(f)
        return apply_mask(f, m_s, residual, overwrite=True), {"channel": m_c, "spatial": m_s[:, 0]}


class FastW3(W3Attention):
    """`W3Attention` on channels-last memory (see the module docstring); the same masks and output."""

    def forward_with_maps(self, x: Tensor, residual: Tensor | None = None, overwrite: bool = False
                          ) -> tuple[Tensor, dict[str, Tensor]]:
        """Attend `x` (+ `residual`, added in the last multiply); `overwrite`: `x` is the caller's
        temporary and may hold the output when autograd is off."""
        if x.dim() == 5 and x.is_contiguous(memory_format=torch.channels_last_3d) and not x.is_contiguous():
            n, t = x.shape[0], x.shape[2]
            frames = None if residual is None else as_frames(residual)
            out, maps = self._attend(as_frames(x), t, frames, overwrite)
            return out.view(n, t, *out.shape[1:]).transpose(1, 2), maps
        return self._attend(x, self.num_segments, residual, overwrite)

    def _attend(self, x: Tensor, num_segments: int | None, residual: Tensor | None, overwrite: bool
                ) -> tuple[Tensor, dict[str, Tensor]]:
        layout = _Layout(x, num_segments)
        n, t = layout.n, layout.t
        # Eq. 3, one MLP call for both descriptors.
        d = self.channel_mlp(layout.descriptors(frame_descriptors(x, layout.spatial_dims)))  # (2N, T, C)
        m_c = torch.sigmoid(d[:n] + d[n:])
        if self.temporal:  # Eq. 4.
            conv_a, relu, conv_b = self.channel_temporal
            m_c = torch.sigmoid(_conv_over_time(relu(_conv_over_time(m_c, conv_a)), conv_b))
        maps = {"channel": m_c}
        channel_mask = layout.channel_mask(m_c).to(x.dtype)
        if not self.spatial:
            return apply_mask(x, channel_mask, residual, overwrite), maps
        f_c = apply_mask(x, channel_mask, overwrite=overwrite)
        # Eq. 5 on channels-last (N*T, 2, H, W) frames, the layout oneDNN's small 2D convs run fastest on.
        pooled = channel_pooled(f_c)  # (N*T, H, W, 2) or (N, T, H, W, 2)
        pooled = pooled.reshape(-1, *pooled.shape[-3:]).permute(0, 3, 1, 2)
        m_s = torch.sigmoid_(self.spatial_conv(pooled)).view(n, t, 1, *pooled.shape[2:])
        if self.temporal:  # Eq. 6 as 2D convs over stacked frames.
            conv_a, _, conv_b = self.spatial_temporal  # conv, ReLU, conv
            m_s = conv3d_on_frames(conv3d_on_frames(m_s, conv_a, "relu"), conv_b, "sigmoid")
        m_s = m_s.squeeze(2)
        maps["spatial"] = m_s
        # f_c is this module's own tensor (or the caller's, with overwrite): the last multiply may reuse it
        return apply_mask(f_c, layout.spatial_mask(m_s).to(f_c.dtype), residual, overwrite=True), maps


def frame_descriptors(x: Tensor, spatial_dims: tuple[int, ...]) -> Tensor:
    """Eq. 3's avg- and max-pooled descriptors over `spatial_dims`, stacked along dim 0 (two reductions)."""
    return torch.cat((x.mean(dim=spatial_dims), x.amax(dim=spatial_dims)))


def channel_pooled(f_c: Tensor) -> Tensor:
    """Eq. 5's channel-avg and channel-max maps of F^c (channels at dim 1), stacked on a last axis of 2."""
    return torch.stack((f_c.mean(dim=1), f_c.amax(dim=1)), dim=-1)


def _conv_over_time(v: Tensor, conv: nn.Conv1d) -> Tensor:
    """`conv` (stride 1, "same" padding) over the time axis of `v` (N, T, C), returned as (N, T, C').

    The depthwise case (the default of eq. 4) runs as k shifted multiply-adds on the (N, T, C) sequence
    itself: the same sums as `conv`, without the transposes and the per-call overhead of a convolution
    primitive on a map of a few thousand numbers (16 such convs per W3 network, two per block). Any other
    conv, e.g. a causal one (`vidattn.models.causal`, which pads the past side itself), is called as a module.
    """
    c, (k,) = v.shape[-1], conv.kernel_size
    if not is_plain_conv(conv) or conv.groups != c or conv.out_channels != c or conv.stride != (1,) \
            or conv.dilation != (1,) or 2 * conv.padding[0] != k - 1:
        return conv(v.transpose(1, 2)).transpose(1, 2)
    t, pad = v.shape[1], conv.padding[0]
    padded = F.pad(v, (0, 0, pad, pad))  # zero steps at both clip ends
    weight = conv.weight[:, 0, :]  # (C, k)
    out = padded[:, :t] * weight[:, 0] if conv.bias is None else torch.addcmul(conv.bias, padded[:, :t], weight[:, 0])
    for i in range(1, k):
        out = torch.addcmul(out, padded[:, i:i + t], weight[:, i])
    return out


class _Layout:
    """Where N, T, C live in a `(N*T, C, H, W)` (2D recognizers) or `(N, C, T, H, W)` (3D networks) map."""

    def __init__(self, x: Tensor, num_segments: int | None) -> None:
        self.five_d = x.dim() == 5
        if self.five_d:
            self.n, self.t = x.shape[0], x.shape[2]
            self.spatial_dims: tuple[int, ...] = (3, 4)
        else:
            if num_segments is None:
                raise ValueError("a 4D (N*T, C, H, W) input needs num_segments")
            if x.shape[0] % num_segments:
                raise ValueError(f"W3: batch {x.shape[0]} is not a multiple of num_segments={num_segments}")
            self.n, self.t = x.shape[0] // num_segments, num_segments
            self.spatial_dims = (2, 3)

    def descriptors(self, d: Tensor) -> Tensor:
        """Pooled descriptors, (K*N*T, C) or (K*N, C, T), as (K*N, T, C)."""
        return d.transpose(1, 2) if self.five_d else d.view(-1, self.t, d.shape[-1])

    def channel_mask(self, m_c: Tensor) -> Tensor:
        """(N, T, C) -> broadcastable against the map."""
        if self.five_d:
            return m_c.transpose(1, 2)[..., None, None]
        # contiguous in C: a mask strided along the map's innermost (channels-last) axis is a slow gather
        return m_c.reshape(-1, m_c.shape[-1]).contiguous().view(-1, m_c.shape[-1], 1, 1)

    def spatial_mask(self, m_s: Tensor) -> Tensor:
        """(N, T, H, W) -> broadcastable against the map."""
        return m_s.unsqueeze(1) if self.five_d else m_s.reshape(-1, 1, *m_s.shape[2:])


# ----------------------------------------------------------------------------------- UCF-101 paper's model

class FastC3D(C3DAttention):
    """`C3DAttention` on channels-last frames (see the module docstring); the same logits and maps."""

    def forward_features(self, x: Tensor, keep_maps: bool = False) -> VideoOutput:
        """Features as `(B, C, T, H, W)`, on CPU a view of channels-last `(B*T, C, H, W)` frames."""
        self.check_clip(x)
        f = conv3d_on_frames(x.transpose(1, 2), self.conv, "relu")  # (B, T, C, H, W)
        maps: dict[str, dict[str, Tensor]] = {}
        if self.gate is not None:
            g = conv3d_on_frames(f, self.gate, "sigmoid") if isinstance(self.gate, nn.Conv3d) else torch.sigmoid(f)
            if keep_maps:
                maps["gate"] = {"spatial": g.mean(dim=2)}  # (B, T, H, W), averaged over channels
            f = apply_mask(f, g, overwrite=True)  # f is this forward's own map
        return VideoOutput(logits=(), features=f.transpose(1, 2), attention=maps)

    def forward_head(self, features: Tensor) -> Logits:
        """The 3D adaptive average pooling as 2D pooling per frame, then over time (each output bin is a
        product of a time and a space bin: the same averages), then the reference's layers."""
        b, c, t = features.shape[:3]
        t_out, h_out, w_out = self.pool.output_size
        frames = F.adaptive_avg_pool2d(as_frames(features), (h_out, w_out)).reshape(b, t, c, h_out, w_out)
        if t % t_out == 0:  # equal bins: a mean over each group of frames
            pooled = frames.view(b, t_out, t // t_out, c, h_out, w_out).mean(dim=2).transpose(1, 2)
        else:
            pooled = F.adaptive_avg_pool3d(frames.transpose(1, 2), (t_out, h_out, w_out))
        return self.head(self.fc(pooled))


FAST: dict[type[nn.Module], type[nn.Module]] = {  # reference class -> its fast subclass
    W3Attention: FastW3, CBAM: FastCBAM, BasicBlock: FastBasicBlock, Bottleneck: FastBottleneck,
    C3DAttention: FastC3D, TemporalShift: FastTemporalShift,
}
_FUSABLE_ATTENTION = (W3Attention, CBAM, FastW3, FastCBAM)  # `optimize` makes these take a residual


# ------------------------------------------------------------------------ 3D convolutions as 2D convolutions

def as_frames(clip: Tensor) -> Tensor:
    """A clip batch `(N, C, T, H, W)` as frames `(N*T, C, H, W)`: a view of the same memory when the clip is
    channels-last-3d (it then is channels-last frames), a copy otherwise."""
    return clip.transpose(1, 2).flatten(0, 1)


def is_plain_conv(conv: nn.Module) -> bool:
    """A stock Conv1d/2d/3d with zero numeric padding and no hooks: its forward is exactly `F.convNd` of its
    parameters, so the helpers here may compute it their own way (subclasses such as the causal convs of
    `vidattn.models.causal`, hooked or string-padded convs are called as modules)."""
    return (type(conv) in (nn.Conv1d, nn.Conv2d, nn.Conv3d) and not conv._forward_hooks
            and not conv._forward_pre_hooks and conv.padding_mode == "zeros" and not isinstance(conv.padding, str))


def conv3d_on_frames(frames: Tensor, conv: nn.Conv3d, activation: str | None = None) -> Tensor:
    """`activation(conv(clip))` for a clip held as frames `(N, T, C, H, W)`; returns frames `(N, T', C', H', W')`.

    A kt x kh x kw conv over T is the same sums as a kh x kw 2D conv over the kt neighbouring frames stacked
    as channels (channel `c*kt + i`, the weight's own order); stacking copies only the input.
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


ACTIVATIONS = {None: lambda y: y, "relu": torch.relu_, "sigmoid": torch.sigmoid_}


def _stack_neighbours(v: Tensor, kt: int, pt: int) -> Tensor:
    """(N, T, H, W, C) -> (N, T', H, W, C*kt): channel c*kt + i of frame t is channel c of frame t+i-pt, zero
    beyond the clip's ends (the temporal zero padding); written once, without a padded copy."""
    n, t, h, w, c = v.shape
    t_out = t + 2 * pt - kt + 1
    out = v.new_empty(n, t_out, h, w, c, kt)
    for i in range(kt):
        lo = min(max(0, pt - i), t_out)  # output frames [lo, hi) have their source frame inside the clip
        hi = max(lo, min(t_out, t + pt - i))
        # index `out` afresh each time: a view taken before `out` joined the graph breaks autograd
        out[..., i][:, lo:hi] = v[:, lo + i - pt:hi + i - pt]
        out[..., i][:, :lo] = 0
        out[..., i][:, hi:] = 0
    return out.view(n, t_out, h, w, c * kt)


def _conv2d_activation(x: Tensor, weight: Tensor, bias: Tensor | None, stride: tuple[int, ...],
                       padding: tuple[int, ...], dilation: tuple[int, ...], groups: int,
                       activation: str | None) -> Tensor:
    """`activation(conv2d(x))`; the activation fused into oneDNN's fp32 CPU kernel when nothing needs grads
    and the input is large (the fused primitive's fixed cost exceeds the saved pass on W3's small maps).
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
