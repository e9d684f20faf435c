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
temporal 1D convs are depthwise, the hidden width and activation of the two-layer temporal nets.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


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

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_with_maps(x)[0]

    def forward_with_maps(self, x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """Attend `x`; also return the masks: "channel" (N, T, C) and, with `spatial`, "spatial" (N, T, H, W)."""
        v = _as_ntchw(x, self.num_segments)
        n, t, c = v.shape[:3]
        # Eq. 3: frame-level channel attention from avg- and max-pooled descriptors (N, T, C).
        d_avg = v.mean(dim=(3, 4))
        d_max = v.amax(dim=(3, 4))
        m_c = torch.sigmoid(self.channel_mlp(d_avg) + self.channel_mlp(d_max))
        if self.temporal:  # Eq. 4: temporal reasoning over each channel's sequence.
            m_c = torch.sigmoid(self.channel_temporal(m_c.transpose(1, 2))).transpose(1, 2)
        f_c = v * m_c[..., None, None]
        maps = {"channel": m_c}
        if not self.spatial:
            return _restore(f_c, x), maps
        # Eq. 5: frame-level spatial attention from channel-pooled [avg, max] maps (N*T, 2, H, W).
        pooled = torch.stack((f_c.mean(dim=2), f_c.amax(dim=2)), dim=2).flatten(0, 1)
        m_s = torch.sigmoid(self.spatial_conv(pooled)).view(n, 1, t, *v.shape[3:])
        if self.temporal:  # Eq. 6: 3D conv over the stacked frame maps (N, 1, T, H, W).
            m_s = torch.sigmoid(self.spatial_temporal(m_s))
        m_s = m_s.squeeze(1)
        maps["spatial"] = m_s
        return _restore(f_c * m_s[:, :, None], x), maps


def _as_ntchw(x: Tensor, num_segments: int | None) -> Tensor:
    """View `(N*T, C, H, W)` (2D recognizers) or `(N, C, T, H, W)` (3D networks) as `(N, T, C, H, W)`."""
    if x.dim() == 5:
        return x.transpose(1, 2)
    if num_segments is None:
        raise ValueError("a 4D (N*T, C, H, W) input needs num_segments")
    return x.view(x.shape[0] // num_segments, num_segments, *x.shape[1:])


def _restore(v: Tensor, like: Tensor) -> Tensor:
    """Inverse of `_as_ntchw` for a result computed on the `(N, T, C, H, W)` view of `like`."""
    return v.transpose(1, 2) if like.dim() == 5 else v.reshape(like.shape)

