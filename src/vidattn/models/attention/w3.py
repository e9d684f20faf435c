"""W3, the what-where-when video attention module (Perez-Rua et al., "Knowing What, Where and When to
Look: Efficient Video Action Modeling with Attention", 2020; Sec. 3.1-3.3, eqs. 1-6).

Given a clip's feature map F (T x C x H x W per clip):
- channel-temporal ("what-when", eqs. 3-4): per-frame avg- and max-pooled channel descriptors through a
  shared MLP (reduction r), summed, sigmoid -> M^c-frm (T x C); two 1D temporal convolutions (kernel 3)
  over each channel's sequence, sigmoid -> M^c; F^c = M^c * F.
- spatio-temporal ("where-when", eqs. 5-6): per-frame channel-avg and channel-max maps [avg, max], one 7x7
  2D conv, sigmoid -> M^s-frm (T x H x W); two 3x3x3 3D convs over the stacked maps, sigmoid -> M^s;
  F^s = M^s * F^c.
The module works on a 2D recognizer's `(N*T, C, H, W)` map (with `num_segments`) and on a 3D network's
`(N, C, T, H, W)` map alike, without copies: both are viewed as `(N, T, C, H, W)`.
Choices the paper leaves open (defaults documented in docs/models.md): reduction ratio, whether the
temporal 1D convs are depthwise, the hidden width and activation of the two-layer temporal nets, and the
initialisation. Two sigmoid masks that start near 0.5 scale every attended residual branch by ~0.25 and
stall training from scratch and fine-tuning alike (docs/models.md, measured); by default the last layer
before each sigmoid starts with bias `mask_init_bias` = 3, so both masks open near sigmoid(3) = 0.95 and a
fresh W3 branch is ~0.9 x the plain one. `mask_init_bias=None` keeps PyTorch's default (paper-literal).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vidattn.models.attention.gating import apply_mask
from vidattn.models.frames import as_frames, conv2d_activation, conv3d_on_frames, is_plain_conv


class W3Attention(nn.Module):
    """W3 attention for `channels` feature channels.

    Args:
        reduction: MLP bottleneck ratio r of eq. 3 (hidden size `max(channels // r, min_hidden)`).
        temporal_kernel: K of the temporal convolutions (paper: 3 for both sub-modules).
        channel_temporal_groups: "depthwise" (each channel's sequence on its own, the paper's
            "per-channel temporal relationships") or "full" (C->C 1D convs).
        spatial_temporal_hidden: channels between the two 3D convs of eq. 6.
        spatial: False removes the spatio-temporal sub-module (Table 5 "w/o SA").
        temporal: False removes both temporal nets, leaving frame-level attention (Table 5 "w/o TA").
        mask_init_bias: initial bias of the last layer before each mask's sigmoid (masks start near
            sigmoid(bias)); None keeps PyTorch's default initialisation.
    """

    def __init__(
        self,
        channels: int,
        num_segments: int | None = None,
        reduction: int = 16,
        min_hidden: int = 8,
        temporal_kernel: int = 3,
        spatial_kernel: int = 7,
        channel_temporal_groups: str = "depthwise",
        spatial_temporal_hidden: int = 4,
        spatial: bool = True,
        temporal: bool = True,
        mask_init_bias: float | None = 3.0,
    ) -> None:
        super().__init__()
        if channel_temporal_groups not in ("depthwise", "full"):
            raise ValueError(f"channel_temporal_groups must be 'depthwise' or 'full', not {channel_temporal_groups!r}")
        self.num_segments = num_segments
        self.spatial = spatial
        self.temporal = temporal
        hidden = max(channels // reduction, min_hidden)
        # theta_c-frm: the shared MLP of eq. 3 (1x1 "convs" as linear layers on pooled descriptors).
        self.channel_mlp = nn.Sequential(
            nn.Linear(channels, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, channels)
        )
        pad = temporal_kernel // 2
        if temporal:
            groups = channels if channel_temporal_groups == "depthwise" else 1
            # theta_c-vid of eq. 4: two 1D temporal convolutions over each channel's sequence.
            self.channel_temporal = nn.Sequential(
                nn.Conv1d(channels, channels, temporal_kernel, padding=pad, groups=groups),
                nn.ReLU(inplace=True),
                nn.Conv1d(channels, channels, temporal_kernel, padding=pad, groups=groups),
            )
        if spatial:
            # theta_s-frm of eq. 5: one 7x7 conv on the stacked [avg, max] channel-pooled maps.
            self.spatial_conv = nn.Conv2d(2, 1, spatial_kernel, padding=spatial_kernel // 2)
            if temporal:
                # theta_s-vid of eq. 6: two 3x3x3 convs over the T stacked frame maps.
                k = temporal_kernel
                self.spatial_temporal = nn.Sequential(
                    nn.Conv3d(1, spatial_temporal_hidden, (k, 3, 3), padding=(pad, 1, 1)),
                    nn.ReLU(inplace=True),
                    nn.Conv3d(spatial_temporal_hidden, 1, (k, 3, 3), padding=(pad, 1, 1)),
                )
        if mask_init_bias is not None:
            self.open_masks(mask_init_bias)

    def open_masks(self, bias: float) -> None:
        """Set the bias of the last layer before each sigmoid mask to `bias` (eq. 3's MLP output enters
        twice, avg + max, so it gets half). Masks then start near sigmoid(bias) for any input."""
        if self.temporal:
            nn.init.constant_(self.channel_temporal[-1].bias, bias)
        else:
            nn.init.constant_(self.channel_mlp[-1].bias, bias / 2)
        if self.spatial:
            last = self.spatial_temporal[-1] if self.temporal else self.spatial_conv
            nn.init.constant_(last.bias, bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_with_maps(x)[0]

    def forward_with_maps(self, x: Tensor, residual: Tensor | None = None, overwrite: bool = False
                          ) -> tuple[Tensor, dict[str, Tensor]]:
        """Attend `x` (+ `residual`, added in the last multiply); also return the masks: "channel" (N, T, C)
        and, with `spatial`, "spatial" (N, T, H, W). `overwrite`: `x` is the caller's temporary and may be
        reused for the output when autograd is off (`gating.apply_mask`).

        Speed: every full-size op runs on a 4D channels-last map (a broadcast multiply on a 5D view of it is
        several times slower); a 3D network's channels-last-3d `(N, C, T, H, W)` map is `(N*T, C, H, W)`
        frames in memory and is attended as such. Full-size passes: two reads for the pooled descriptors,
        the channel multiply, two reads for the channel-pooled maps, the spatial multiply fused with the
        residual add.
        """
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
        # Eq. 3: frame-level channel attention from avg- and max-pooled descriptors, one MLP call for both.
        d = torch.cat((x.mean(dim=layout.spatial_dims), x.amax(dim=layout.spatial_dims)))
        d = self.channel_mlp(layout.descriptors(d))  # (2N, T, C)
        m_c = torch.sigmoid(d[:n] + d[n:])
        if self.temporal:  # Eq. 4: temporal reasoning over each channel's sequence.
            conv_a, relu, conv_b = self.channel_temporal
            m_c = torch.sigmoid(_conv_over_time(relu(_conv_over_time(m_c, conv_a)), conv_b))
        maps = {"channel": m_c}
        channel_mask = layout.channel_mask(m_c).to(x.dtype)
        if not self.spatial:
            return apply_mask(x, channel_mask, residual, overwrite), maps
        f_c = apply_mask(x, channel_mask, overwrite=overwrite)
        # Eq. 5: frame-level spatial attention from channel-pooled [avg, max] maps, stacked channels-last
        # as (N*T, 2, H, W) frames, the layout oneDNN's small 2D convs run fastest on.
        pooled = torch.stack((f_c.mean(dim=1), f_c.amax(dim=1)), dim=-1)  # (N*T, H, W, 2) or (N, T, H, W, 2)
        pooled = pooled.reshape(-1, *pooled.shape[-3:]).permute(0, 3, 1, 2)
        m_s = conv2d_activation(pooled, self.spatial_conv, "sigmoid").view(n, t, 1, *pooled.shape[2:])
        if self.temporal:  # Eq. 6: two 3D convs over the stacked frame maps (as 2D convs on CPU: `frames`).
            conv_a, _, conv_b = self.spatial_temporal  # conv, ReLU, conv
            m_s = conv3d_on_frames(conv3d_on_frames(m_s, conv_a, "relu"), conv_b, "sigmoid")
        m_s = m_s.squeeze(2)
        maps["spatial"] = m_s
        # f_c is this module's own tensor (or the caller's, with overwrite): the last multiply may reuse it
        return apply_mask(f_c, layout.spatial_mask(m_s).to(f_c.dtype), residual, overwrite=True), maps


def _conv_over_time(v: Tensor, conv: nn.Conv1d) -> Tensor:
    """`conv` (stride 1, "same" padding) over the time axis of `v` (N, T, C), returned as (N, T, C').

    The depthwise case (the default of eq. 4) runs as k shifted multiply-adds on the (N, T, C) sequence
    itself: the same sums as `conv`, without the transposes and the per-call overhead of a convolution
    primitive on a map of a few thousand numbers (16 such convs per W3 network, two per block).
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
